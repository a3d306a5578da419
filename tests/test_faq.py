"""The FAQ YAML: loading, schema errors with file and line, the checker, the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import settings
from faq.loader import FAQError, check, load_dir

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "faq" / "data"
SEED_INTENTS = ["account_usage", "recover_account", "re_register", "re_register_records", "id_duplicate",
                "phone_registered", "too_frequent", "email_ip_limited", "bind_wechat_alipay"]


# the faq_copy fixture (a private copy of faq/data): tests/support/faq_edit.py


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_real_faq_loads_with_every_topic():
    faq = load_dir(DATA)
    intents = {t.intent for t in faq.topics}
    assert set(SEED_INTENTS) <= intents
    assert {"greeting", "thanks", "goodbye", "human_agent"} <= intents
    assert sorted(t.seed_topic for t in faq.topics if t.seed_topic) == list(range(1, 10))


def test_related_entries_exist_and_flows_are_named():
    faq = load_dir(DATA)
    for e in faq.entries.values():
        assert all(r in faq.entries for r in e.related)
    assert faq.entries["recover_account.username"].offer == "recover_username"
    assert faq.entries["id_duplicate.meaning"].offer == "id_duplicate"


@pytest.mark.parametrize("fact", ["3 次", "证书编号", "学号", "证件重复-客服审核", "发送协助请求", "研招推免"])
def test_duplicate_id_answers_keep_the_seed_facts(fact):
    answers = " ".join(e.answer for e in load_dir(DATA).entries.values() if e.intent == "id_duplicate")
    assert fact in answers


def test_schema_error_names_file_line_and_field(faq_copy: Path):
    path = faq_copy / "topics" / "07_too_frequent.yaml"
    _edit(path, "    question: 提示操作过于频繁，还能用用户名和密码登录吗？",
          "    questoin: 提示操作过于频繁，还能用用户名和密码登录吗？")
    with pytest.raises(FAQError) as err:
        load_dir(faq_copy)
    line = next(i for i, l in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "questoin" in l)
    messages = [str(p) for p in err.value.problems]
    assert any(f"07_too_frequent.yaml:{line}" in m and "questoin" in m for m in messages), messages


def test_the_old_flow_key_is_an_error_naming_its_new_name_offer(faq_copy: Path):
    path = faq_copy / "topics" / "07_too_frequent.yaml"
    _edit(path, "    offer: recover_password", "    flow: recover_password")
    _, problems = check(faq_copy)
    line = next(i for i, l in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "flow: recover" in l)
    assert f"{os.path.relpath(path)}:{line}: entries[0].flow: the key 'flow' is now called 'offer': rename it to offer:" \
        in [str(p) for p in problems]
    assert not any("Additional properties" in str(p) for p in problems)


def test_every_offer_the_schema_allows_is_a_flow_offer_or_the_hand_off():
    from handlers.flows import OFFERS

    schema = json.loads((ROOT / "faq" / "schema.json").read_text(encoding="utf-8"))
    allowed = schema["$defs"]["entry"]["properties"]["offer"]["enum"]
    assert set(allowed) == {None, "human_agent", *OFFERS}
    assert {e.offer for e in load_dir(DATA).entries.values()} <= set(allowed)


def test_yaml_syntax_error_names_the_line(faq_copy: Path):
    path = faq_copy / "topics" / "08_email_ip_limited.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "\n  - id: [unclosed\n", encoding="utf-8")
    _, problems = check(faq_copy)
    assert any("08_email_ip_limited.yaml:" in str(p) and "YAML syntax" in str(p) for p in problems)


def test_libyaml_and_the_pure_python_parser_read_the_faq_alike(monkeypatch):
    """The loader composes with libyaml when PyYAML has it; the data and every line number are what the
    pure-Python parser gives."""
    from faq import loader

    files = sorted(DATA.rglob("*.yaml"))
    fast = {f: list(loader._documents(f)) for f in files}
    monkeypatch.setattr(loader, "_COMPOSER", yaml.SafeLoader)
    assert {f: list(loader._documents(f)) for f in files} == fast


def test_duplicate_ids_and_questions_are_reported(faq_copy: Path):
    path = faq_copy / "topics" / "06_phone_registered.yaml"
    _edit(path, "  - id: phone_registered.reason", "  - id: phone_registered.reason\n    question: 忘记密码怎么办？\n    answer: x\n  - id: phone_registered.reason")
    _, problems = check(faq_copy)
    text = "\n".join(map(str, problems))
    assert "duplicate entry id 'phone_registered.reason'" in text
    assert "also under entry 'recover_account.password'" in text


def test_missing_topic_and_unknown_related_are_reported(faq_copy: Path):
    (faq_copy / "topics" / "08_email_ip_limited.yaml").unlink()
    _, problems = check(faq_copy)
    text = "\n".join(map(str, problems))
    assert "no file defines intent 'email_ip_limited'" in text
    assert "seed topic 8 is not covered" in text
    assert "unknown entry id 'email_ip_limited.how'" in text


def test_entry_id_must_carry_its_intent(faq_copy: Path):
    _edit(faq_copy / "topics" / "04_re_register_records.yaml", "id: re_register_records.records", "id: re_register.records")
    _, problems = check(faq_copy)
    assert any("must start with its topic's intent" in str(p) for p in problems)


def test_not_covered_catalogue_loads_with_replies_that_offer_a_person():
    faq = load_dir(DATA)
    groups = faq.not_covered_groups
    assert {"degree", "status_change", "postgraduate", "conscription", "other_sites"} <= set(groups)
    for g in groups.values():
        assert (g.questions or g.phrases) and "转人工客服" in g.reply
        assert "http" not in g.reply and not any(ch.isdigit() for ch in g.reply)  # no invented URL or phone


def test_not_covered_problems_name_file_line_and_field(faq_copy: Path):
    path = faq_copy / "not_covered.yaml"
    _edit(path, "      - 学位信息怎么查询", "      - 忘记密码怎么办？")           # a question the FAQ answers
    _edit(path, "  - id: status_change", "  - id: degree")                     # a second group with one id
    lines = path.read_text(encoding="utf-8").splitlines()
    at = lambda needle, nth=0: [i for i, l in enumerate(lines, 1) if needle in l][nth]  # noqa: E731
    text = "\n".join(map(str, check(faq_copy)[1]))
    assert f"not_covered.yaml:{at('忘记密码怎么办？')}: groups[2].questions[1]:" in text
    assert "recover_account.password" in text
    assert f"not_covered.yaml:{at('  - id: degree', 1)}: groups[3].id: duplicate group id 'degree'" in text

    _edit(path, "    service: 征兵（", "    servise: 征兵（")                  # a schema error
    problems = check(faq_copy)[1]
    line = path.read_text(encoding="utf-8").splitlines().index("    servise: 征兵（兵役登记、应征报名、参军政策）") + 1
    assert any(f"not_covered.yaml:{line}:" in str(p) and "servise" in str(p) for p in problems), problems


def test_smalltalk_lexicon_accepts_only_smalltalk_intents(faq_copy: Path):
    path = faq_copy / "lexicon.yaml"
    _edit(path, "  thanks: [谢谢,", "  recover_account: [忘了]\n  thanks: [谢谢,")
    _, problems = check(faq_copy)
    assert any("lexicon.yaml:" in str(p) and "smalltalk" in str(p) for p in problems), problems


def test_contrast_senses_must_name_a_contrast_word(faq_copy: Path):
    path = faq_copy / "lexicon.yaml"
    faq, problems = check(faq_copy)
    assert not problems and faq.contrast_senses["解除"]
    _edit(path, "contrast_senses:\n", "contrast_senses:\n  绑定: [微信]\n")   # 绑定 is no contrast word
    _, problems = check(faq_copy)
    line = path.read_text(encoding="utf-8").splitlines().index("  绑定: [微信]") + 1
    assert any(f"lexicon.yaml:{line}:" in str(p) and "contrast_senses.绑定" in str(p) for p in problems), problems
    assert faq.contrast_senses["app"]   # a word naming an alternative (route 1) may have another sense too


def test_a_symptom_must_be_a_contrast_word(faq_copy: Path):
    path = faq_copy / "lexicon.yaml"
    faq, problems = check(faq_copy)
    assert not problems and "收不到" in faq.symptoms
    _edit(path, "symptoms: [", "symptoms: [登录不了, ")   # 登录不了 is no contrast word
    _, problems = check(faq_copy)
    line = next(n for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text.startswith("symptoms:"))
    assert any(f"lexicon.yaml:{line}: symptoms[0]: '登录不了' is not a contrast word" in str(p) for p in problems), problems


def test_a_contrast_word_must_not_be_a_synonym_of_a_word_that_is_none(faq_copy: Path):
    path = faq_copy / "lexicon.yaml"
    _edit(path, "contrast_words: [", "contrast_words: [已被绑定, ")   # reads as 已被注册, the prompt itself
    _, problems = check(faq_copy)
    line = next(i for i, t in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if t.startswith("contrast_words: [已被绑定"))
    assert any(f"lexicon.yaml:{line}:" in str(p) and "'已被绑定' is a synonym of '已被注册'" in str(p)
               for p in problems), problems


def test_a_word_listed_twice_is_named_at_its_second_place_and_nothing_else_is_reported(faq_copy: Path):
    path = faq_copy / "lexicon.yaml"
    _edit(path, "contrast_words: [", "contrast_words: [修改, ")    # 修改 is already a contrast word
    _, problems = check(faq_copy)
    (problem,) = problems   # (not "missing lexicon.yaml" besides: it is there, only invalid)
    words = yaml.safe_load(path.read_text(encoding="utf-8"))["contrast_words"]
    second = words.index("修改", 1)
    assert problem.field == f"contrast_words[{second}]" and problem.message == "'修改' is listed twice"
    assert problem.file.endswith("lexicon.yaml") and problem.line > 1


def test_an_unquoted_yaml_boolean_in_a_word_list_is_explained(faq_copy: Path):
    _edit(faq_copy / "lexicon.yaml", "contrast_words: [", "contrast_words: [on, ")   # YAML 1.1: on is true
    (problem,) = check(faq_copy)[1]
    assert problem.field == "contrast_words[0]" and "put the word in quotes" in problem.message


def test_referents_are_loaded_and_must_read_as_a_lexicon_word(faq_copy: Path):
    path = faq_copy / "lexicon.yaml"
    faq, problems = check(faq_copy)
    number = next(r for r in faq.referents if r.words == ("号码",))
    assert not problems and "身份证" in number.means["证件号码"]
    assert any("重新注册一个" in r.keep and "要" in r.only_after for r in faq.referents)
    _edit(path, "      证件号码: [身份证,", "      身份证号码呀: [身份证,")   # reads as no word the lexicon knows
    _, problems = check(faq_copy)
    line = path.read_text(encoding="utf-8").splitlines().index("      身份证号码呀: [身份证, 证件, 护照]") + 1
    assert any(f"lexicon.yaml:{line}:" in str(p) and "referents[0].means.身份证号码呀" in str(p) for p in problems), problems


def test_things_said_to_be_known_and_prompts_are_loaded_and_validated(faq_copy: Path):
    path = faq_copy / "lexicon.yaml"
    faq, problems = check(faq_copy)
    assert not problems and faq.remembered and "用户名" in faq.remembered.things and "记得" in faq.remembered.markers
    assert "忘记" in faq.remembered.lost and "不是" in faq.remembered.denied
    assert "已被注册" in faq.prompts and "我要重新注册" in faq.prompts
    _edit(path, "  lost: [忘记, ", "  lost: [忘掉了呀, ")                  # reads as no word the lexicon knows
    _, problems = check(faq_copy)
    line = next(n for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "忘掉了呀" in text)
    assert any(f"lexicon.yaml:{line}: remembered.lost[0]: '忘掉了呀' is neither" in str(p) for p in problems), problems


def test_alternatives_and_attributes_are_loaded_and_validated(faq_copy: Path):
    path = faq_copy / "lexicon.yaml"
    faq, problems = check(faq_copy)
    routes = {g.group: g for g in faq.alternatives}["verification_routes"]
    assert not problems and routes.intent == "id_duplicate" and "同学协助" in routes.names["classmate"]
    asks, states = faq.attributes["count"]
    assert "几次" in asks and "几次" in faq.contrast_words and "一次" in states   # asking words contrast
    _edit(path, "    intent: id_duplicate\n    names:", "    intent: id_duplicates\n    names:")   # no such topic
    _, problems = check(faq_copy)
    line = path.read_text(encoding="utf-8").splitlines().index("    intent: id_duplicates") + 1
    assert any(f"lexicon.yaml:{line}:" in str(p) and "alternatives.verification_routes.intent" in str(p)
               for p in problems), problems


def test_lexicon_addressing_and_group_phrases_are_loaded_and_validated(faq_copy: Path):
    faq, problems = check(faq_copy)
    assert not problems and "客服" in faq.addressing and "你是机器人" in faq.not_covered_groups["assistant"].phrases
    _edit(faq_copy / "not_covered.yaml", "    phrases: [你是机器人,", "    phrases: [你是机器人, 你是机器人,")   # a repeat
    _, problems = check(faq_copy)
    assert any("not_covered.yaml:" in str(p) and "phrases" in str(p) for p in problems), problems



def test_lexicon_complaints_are_loaded_and_validated(faq_copy: Path):
    faq, problems = check(faq_copy)
    assert not problems and {"太难用", "气死了"} <= set(faq.complaints) and "太难用" not in faq.stopwords
    _edit(faq_copy / "lexicon.yaml", "complaints: [", "complaints: [3, ")   # not a word
    _, problems = check(faq_copy)
    assert any("lexicon.yaml:" in str(p) and "complaints" in str(p) for p in problems), problems


def test_lexicon_askers_are_loaded_and_validated(faq_copy: Path):
    faq, problems = check(faq_copy)
    assert not problems and {"家长", "孩子", "帮"} <= set(faq.askers)
    _edit(faq_copy / "lexicon.yaml", "askers: [家长,", "askers: [家长, 家长,")   # a repeat
    _, problems = check(faq_copy)
    assert any("lexicon.yaml:" in str(p) and "askers" in str(p) for p in problems), problems


def test_a_key_given_twice_is_a_problem_not_silently_the_last(faq_copy: Path):
    path = faq_copy / "lexicon.yaml"
    first = next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if line.startswith("  能查到: ["))
    _edit(path, "\ncontrast_senses:\n", "\ncontrast_senses:\n  能查到: [有没有账号]\n")   # a second 能查到 above the first
    problems = check(faq_copy)[1]
    assert any(f"lexicon.yaml:{first + 1}: contrast_senses.能查到: '能查到' is given twice (first at line" in str(p)
               for p in problems), problems


def test_a_not_covered_group_needs_questions_or_phrases(faq_copy: Path):
    faq, problems = check(faq_copy)
    assert not problems and not faq.not_covered_groups["first_registration"].questions   # phrases only
    _edit(faq_copy / "not_covered.yaml", "    phrases: [怎么注册学信网账号,", "    phrasez: [怎么注册学信网账号,")
    _, problems = check(faq_copy)
    assert any("not_covered.yaml:" in str(p) and "groups" in str(p) for p in problems), problems


def test_tried_advice_is_loaded_and_needs_still_failing_phrases(faq_copy: Path):
    faq, problems = check(faq_copy)
    tried = faq.entry("too_frequent.solutions").tried
    assert not problems and len(tried) == 2 and "清了缓存" in tried[0] and "等了两个小时" in tried[1]
    assert faq.entry("too_frequent.bind_wait").tried == tried   # the YAML anchor shares one list
    assert "还是不行" in faq.still_failing
    _edit(faq_copy / "lexicon.yaml", "still_failing: [", "unused_still_failing: [")
    _, problems = check(faq_copy)
    assert any("lexicon.yaml" in str(p) and "unused_still_failing" in str(p) for p in problems), problems
    path = faq_copy / "lexicon.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index("unused_still_failing: [")
    path.write_text(text[:start] + text[text.index("]", start) + 2:], encoding="utf-8")   # the list gone
    _, problems = check(faq_copy)
    assert any("07_too_frequent.yaml:" in str(p) and "too_frequent.solutions.tried" in str(p)
               and "still_failing" in str(p) for p in problems), problems


def test_settings_expand_environment_variables(tmp_path: Path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("accounts:\n  base_url: ${CHSI_TEST_X:-http://fallback}\n  api_key: ${CHSI_TEST_Y}\n",
                   encoding="utf-8")
    monkeypatch.setenv("CHSI_TEST_Y", "set")
    assert settings.load(cfg)["accounts"] == {"base_url": "http://fallback", "api_key": "set"}
    monkeypatch.delenv("CHSI_TEST_Y")
    with pytest.raises(settings.ConfigError, match="CHSI_TEST_Y"):
        settings.load(cfg)


# ---- the command line ------------------------------------------------------------

def _bot(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bot.py"), *args], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=120)


def test_cli_match_prints_the_stable_json_shape():
    out = _bot("match", "忘记用户名怎么办")
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
    assert set(obj) == {"intent", "entry", "score", "decision", "answer", "candidates", "not_covered", "outrun"}
    assert obj["decision"] == "answer" and obj["intent"] == "recover_account" and obj["not_covered"] is None
    assert obj["outrun"] is None
    assert obj["entry"] == "recover_account.username" and "找回用户名" in obj["answer"]
    assert all(set(c) == {"entry", "intent", "score"} for c in obj["candidates"])


def test_cli_match_jsonl_keeps_order_and_reports_bad_lines():
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in ["你好", "明天会下雨吗", "邮箱IP受限"]]
    out = _bot("match", "--jsonl", stdin="\n".join(lines[:2] + ["not json"] + lines[2:]) + "\n")
    rows = [json.loads(l) for l in out.stdout.splitlines()]
    assert [r.get("intent") for r in rows] == ["greeting", "out_of_scope", None, "email_ip_limited"]
    assert "error" in rows[2] and out.returncode == 1


def test_cli_eval_reports_every_metric(tmp_path: Path):
    items = [{"text": "忘记密码怎么办", "intent": "recover_account", "expect_contains": ["找回密码"]},
             {"text": "帮我订外卖", "intent": "out_of_scope"}]
    f = tmp_path / "e.yaml"
    f.write_text(yaml.safe_dump(items, allow_unicode=True), encoding="utf-8")
    out = _bot("eval", str(f), "--json")
    report = json.loads(out.stdout)
    assert report["in_scope_top1"] == 1.0 and report["out_of_scope_rejection"] == 1.0
    assert report["expect_contains"] == 1.0
    assert {"p50", "p99"} <= set(report["latency_ms"]) and "per_intent" in report and "confused_pairs" in report
    assert report["operating_point"]["precision"] == 1.0 and report["operating_point"]["coverage"] == 0.5
    assert sum(b["count"] for b in report["reliability"]) == 2
    text = _bot("eval", str(f)).stdout
    assert "in-scope top-1 accuracy: 100.0%" in text and "latency p50/p99" in text
    assert "reliability" in text and "0.90–1.00" in text and "operating point" in text


def test_cli_eval_reads_a_follow_up_after_its_first_question(tmp_path: Path):
    items = [{"first": "重新注册怎么弄", "then": "以前的学籍呢", "intent": "re_register_records"},
             {"first": "明天天气怎么样", "then": "那咋整", "intent": "out_of_scope"}]   # (no answer first: alone)
    f = tmp_path / "follow.yaml"
    f.write_text(yaml.safe_dump(items, allow_unicode=True), encoding="utf-8")
    report = json.loads(_bot("eval", str(f), "--json").stdout)
    assert report["in_scope_top1"] == 1.0 and report["out_of_scope_rejection"] == 1.0 and not report["errors"]


def test_cli_check_passes_on_the_real_faq_and_fails_on_a_broken_one(faq_copy: Path, tmp_path: Path):
    assert _bot("check").returncode == 0
    _edit(faq_copy / "topics" / "02_recover_account.yaml", "related: [recover_account.password,", "related: [recover_account.nope,")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"faq:\n  dir: {faq_copy}\n", encoding="utf-8")
    out = _bot("--config", str(cfg), "check")
    assert out.returncode == 1
    assert "02_recover_account.yaml" in out.stderr and "recover_account.nope" in out.stderr
