"""Clusters of unanswered questions from a generated event log with known groups; the snippets
paste into the YAML and load; `bot.py unanswered` over a stored log."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faq.loader import load_dir
from handlers.db import connect
from handlers.insights import SqlEventStore, TurnEvent
from intents.cli import parse_since
from intents.unanswered import alternates_snippet, cluster, not_covered_snippet, unanswered_questions

from faq_factory import real_matcher

ROOT = Path(__file__).resolve().parent.parent

# three topics users asked about, each in several wordings (some asked more than once)
CERTIFY = ["学历认证要多少钱", "学历认证怎么收费", "做学历认证的费用是多少", "学历认证需要交钱吗",
           "学历认证收费标准", "学历认证要多少钱"]                                       # out of scope
PHONE = ["怎么更换账号绑定的手机号", "手机号换了怎么修改绑定", "绑定手机号怎么换成新号码", "换手机号码了账号怎么改"]  # 没帮助
REFUND = ["报名费能退吗", "报名费退款怎么申请", "交错报名费了怎么退"]                      # before a hand-off
NOISE = ["今天天气怎么样", "你们下班时间是几点", "推荐一部电影"]


def generated_log(now: float, seed: int = 7) -> list[TurnEvent]:
    """Sessions that ask each known group's questions in the way that group goes unanswered."""
    rng = random.Random(seed)
    events: list[TurnEvent] = []
    t = now - 3 * 86400

    def turn(session: str, **kw) -> None:
        nonlocal t
        t += rng.uniform(1, 30)
        events.append(TurnEvent(ts=t, session=session, channel="web", **kw))

    for i, text in enumerate(CERTIFY * 2):                     # 12 out-of-scope turns
        turn(f"c{i}", text=text, decision="out_of_scope", intent="out_of_scope", score=0.3)
    for i, text in enumerate(PHONE * 2):                       # 8 answers voted 没帮助
        s = f"p{i}"
        turn(s, text=text, decision="answer", intent="phone_registered", entry="phone_registered.how", score=0.6)
        turn(s, text="没帮助", decision="feedback", entry="phone_registered.how", feedback="down")
    for i, text in enumerate(REFUND * 2):                      # 6 questions followed by a hand-off
        s = f"r{i}"
        turn(s, text=text, decision="clarify", intent="account_usage", entry="account_usage.platforms", score=0.5)
        turn(s, text="转人工客服", decision="handoff", intent="human_agent")
    for i, text in enumerate(NOISE):
        turn(f"n{i}", text=text, decision="out_of_scope", intent="out_of_scope", score=0.1)
    # answered turns and helpful votes are not unanswered questions
    turn("ok", text="忘记用户名怎么办", decision="answer", entry="recover_account.username", score=0.9)
    turn("ok", text="有帮助", decision="feedback", entry="recover_account.username", feedback="up")
    turn("ok2", text="我的手机是 138****8002", decision="out_of_scope", score=0.2)   # masked: never pasted
    rng.shuffle(events)
    return events


def test_questions_are_taken_from_the_right_turns():
    qs = unanswered_questions(generated_log(time.time()))
    kinds = {(q.text, q.kind) for q in qs}
    assert ("学历认证要多少钱", "out_of_scope") in kinds
    assert ("怎么更换账号绑定的手机号", "not_helpful") in kinds
    assert ("报名费能退吗", "before_handoff") in kinds       # the message before the hand-off, not "转人工客服"
    assert not any(q.text in ("忘记用户名怎么办", "转人工客服", "有帮助", "没帮助") for q in qs)
    assert len(qs) == 12 + 8 + 6 + 3 + 1


def test_a_hand_off_inside_a_flow_the_answer_started_does_not_blame_the_answer():
    """忘记密码了 → answer → 好的 (flow starts) → … → 转人工: the answer helped; the flow's drop-out is
    the Overview's to show. A question asked at a flow step and then a hand-off still counts."""
    t = time.time()
    log = [TurnEvent(ts=t, session="s", channel="web", text="密码忘了咋整", decision="answer",
                     entry="recover_account.password", score=1.0),
           TurnEvent(ts=t + 1, session="s", channel="web", text="好的", decision="flow", flow="recover_password",
                     step="username", flow_event="started"),
           TurnEvent(ts=t + 2, session="s", channel="web", text="（个人信息，已隐藏）", decision="flow",
                     flow="recover_password", step="name"),
           TurnEvent(ts=t + 3, session="s", channel="web", text="（个人信息，已隐藏）", decision="handoff",
                     flow="recover_password", step="name", flow_event="handed_off"),
           TurnEvent(ts=t + 4, session="d", channel="web", text="忘记密码了", decision="answer",
                     entry="recover_account.password", score=1.0),
           TurnEvent(ts=t + 5, session="d", channel="web", text="好的", decision="flow", flow="recover_password",
                     step="username", flow_event="started"),
           TurnEvent(ts=t + 6, session="d", channel="web", text="报名费能退吗", decision="out_of_scope", score=0.2,
                     flow="recover_password", step="username"),
           TurnEvent(ts=t + 7, session="d", channel="web", text="转人工", decision="handoff",
                     flow="recover_password", step="username", flow_event="handed_off")]
    assert [(q.text, q.kind) for q in unanswered_questions(log)] == [("报名费能退吗", "before_handoff")]


def test_a_question_right_after_an_answer_carries_it_and_its_cluster_says_so():
    """那要多少钱 means nothing alone: maintainers see which answer it followed (as the engine read it)."""
    t = time.time()

    def turn(k: int, session: str, text: str, decision: str, **kw) -> TurnEvent:
        return TurnEvent(ts=t + k, session=session, channel="web", text=text, decision=decision, score=kw.pop("score", 0.9),
                         **kw)

    log = [turn(0, "a", "登录提示操作过于频繁", "answer", intent="too_frequent", entry="too_frequent.solutions"),
           turn(1, "a", "没帮助", "feedback", entry="too_frequent.solutions", feedback="down", score=None),
           turn(2, "a", "那要多少钱", "out_of_scope", score=0.2),           # after the answer (a vote between)
           turn(3, "a", "那要多少钱啊", "out_of_scope", score=0.2),         # after an unanswered one: nothing
           turn(4, "b", "邮箱IP受限怎么办", "answer", intent="email_ip_limited", entry="email_ip_limited.how"),
           turn(5, "b", "谢谢", "answer", intent="thanks", entry="thanks.thanks"),   # small talk keeps the context
           turn(6, "b", "要多少钱", "out_of_scope", score=0.2),
           turn(7, "c", "密码忘了", "answer", intent="recover_account", entry="recover_account.password"),
           turn(8, "c", "好的", "flow", flow="recover_password", flow_event="started", score=None),
           turn(9, "c", "要多少钱", "out_of_scope", score=0.2)]            # in the flow the answer started
    questions = unanswered_questions(log)
    assert [(q.text, q.after) for q in questions] == [
        ("登录提示操作过于频繁", None), ("那要多少钱", "too_frequent.solutions"), ("那要多少钱啊", None),
        ("要多少钱", "email_ip_limited.how"), ("要多少钱", None)]
    money = next(c for c in cluster(questions, real_matcher()) if "要多少钱" in c.texts)
    assert money.after() == [("too_frequent.solutions", 1), ("email_ip_limited.how", 1)]


def test_known_groups_come_back_as_clusters_largest_first():
    matcher = real_matcher()
    clusters = cluster(unanswered_questions(generated_log(time.time())), matcher)
    top = clusters[:3]
    assert [c.size for c in top] == [12, 8, 6]
    assert [set(c.texts) for c in top] == [set(CERTIFY), set(PHONE), set(REFUND)]
    assert top[0].kinds == {"out_of_scope": 12} and top[1].kinds == {"not_helpful": 8}
    assert top[2].kinds == {"before_handoff": 6}
    assert top[0].examples(1) == [("学历认证要多少钱", 4)]
    assert all(c.size == 1 for c in clusters[3:])
    assert top[1].nearest_entry and top[1].nearest_entry.startswith("phone_registered.")
    assert top[1].nearest_source.startswith("faq/data/topics/")


def _paste_alternates(folder: Path, source: str, snippet: str) -> None:
    file, _, line = source.rpartition(":")
    path = folder / Path(file).relative_to("faq/data")
    lines = path.read_text(encoding="utf-8").splitlines()
    at = next(i for i in range(int(line) - 1, len(lines)) if lines[i].strip() == "alternates:")
    body = [l for l in snippet.splitlines() if not l.startswith("#")]
    path.write_text("\n".join(lines[:at + 1] + body + lines[at + 1:]) + "\n", encoding="utf-8")


def test_snippets_paste_into_the_yaml_and_load(tmp_path: Path):
    matcher = real_matcher()
    clusters = cluster(unanswered_questions(generated_log(time.time())), matcher)
    faq = matcher.faq
    folder = tmp_path / "data"
    shutil.copytree(ROOT / "faq" / "data", folder)

    phone = clusters[1]
    snippet = alternates_snippet(phone, faq)
    assert snippet and snippet.startswith(f"# {faq.entries[phone.nearest_entry].source.rpartition(':')[0]}, entry ")
    _paste_alternates(folder, faq.entries[phone.nearest_entry].source, snippet)
    new = load_dir(folder)
    known = {q for e in faq.entries.values() for q in (e.question, *e.alternates)}
    known |= {q for g in faq.not_covered for q in g.questions}
    offered = [t for t in PHONE if t not in known]          # what the FAQ already has is not offered again
    assert offered and set(offered) <= set(new.entries[phone.nearest_entry].alternates)
    assert all(t not in snippet for t in PHONE if t in known)

    certify = clusters[0]
    snippet = not_covered_snippet(certify, new)
    assert snippet
    path = folder / "not_covered.yaml"
    if certify.not_covered_group:       # questions for an existing group
        g = new.not_covered_groups[certify.not_covered_group]
        assert f"group {g.id}" in snippet
        text = path.read_text(encoding="utf-8").splitlines()
        at = next(i for i in range(int(g.source.rpartition(":")[2]) - 1, len(text)) if text[i].strip() == "questions:")
        body = [l for l in snippet.splitlines() if not l.startswith("#")]
        path.write_text("\n".join(text[:at + 1] + body + text[at + 1:]) + "\n", encoding="utf-8")
        assert set(CERTIFY) <= set(load_dir(folder).not_covered_groups[g.id].questions)
    else:                               # a new group to fill in
        path.write_text(path.read_text(encoding="utf-8").rstrip("\n") + "\n" + snippet + "\n", encoding="utf-8")
        groups = load_dir(folder).not_covered_groups
        assert set(CERTIFY) <= set(groups["new_topic_1"].questions)
    # the masked example is never offered for pasting
    masked = next(c for c in clusters if "我的手机是 138****8002" in c.texts)
    assert alternates_snippet(masked, faq) is None and not_covered_snippet(masked, faq) is None


def test_a_new_group_snippet_loads(tmp_path: Path):
    matcher = real_matcher()
    faq = matcher.faq
    [c] = [c for c in cluster(unanswered_questions(generated_log(time.time())), matcher) if "推荐一部电影" in c.texts]
    c.not_covered_group = None
    snippet = not_covered_snippet(c, faq)
    folder = tmp_path / "data"
    shutil.copytree(ROOT / "faq" / "data", folder)
    path = folder / "not_covered.yaml"
    path.write_text(path.read_text(encoding="utf-8").rstrip("\n") + "\n" + snippet + "\n", encoding="utf-8")
    assert load_dir(folder).not_covered_groups["new_topic_1"].questions == ("推荐一部电影",)


def test_a_snippet_for_a_group_of_phrases_only_brings_its_questions_key(tmp_path: Path):
    matcher = real_matcher()
    [c] = [c for c in cluster(unanswered_questions(generated_log(time.time())), matcher) if "推荐一部电影" in c.texts]
    c.not_covered_group = "first_registration"
    snippet = not_covered_snippet(c, matcher.faq)
    folder = tmp_path / "data"
    shutil.copytree(ROOT / "faq" / "data", folder)
    path = folder / "not_covered.yaml"
    text = path.read_text(encoding="utf-8").splitlines()
    start = text.index("  - id: first_registration")
    end = next(i for i in range(start + 1, len(text)) if text[i].startswith("  - id:")) - 1   # the group's blank last line
    path.write_text("\n".join(text[:end] + snippet.splitlines()[1:] + text[end:]) + "\n", encoding="utf-8")
    assert load_dir(folder).not_covered_groups["first_registration"].questions == ("推荐一部电影",)


def test_parse_since():
    assert parse_since("7d") == 7 * 86400 and parse_since("12h") == 43200 and parse_since("2w") == 14 * 86400
    with pytest.raises(ValueError):
        parse_since("seven days")


def test_cli_unanswered_reads_the_stored_log(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/bot.db"
    store = SqlEventStore(connect(url))
    now = time.time()
    store.add(sorted(generated_log(now), key=lambda e: e.ts))
    store.add([TurnEvent(ts=now - 30 * 86400, session="old", text="很久以前的问题", decision="out_of_scope", score=0.1),
               TurnEvent(ts=now - 60, session="f", text="绑定微信", decision="answer", intent="bind_wechat_alipay",
                         entry="bind_wechat_alipay.how", score=0.9),
               TurnEvent(ts=now - 50, session="f", text="那二维码多久刷新一次", decision="out_of_scope", score=0.2)])
    cfg = tmp_path / "config.yaml"
    cfg.write_text((ROOT / "config.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    env = {**os.environ, "DATABASE_URL": url}

    def bot(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "bot.py"), "unanswered", *args], capture_output=True,
                              text=True, cwd=ROOT, env=env, timeout=120)

    out = bot("--since", "7d", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [c["size"] for c in data["clusters"][:3]] == [12, 8, 6]
    assert data["clusters"][0]["examples"][0] == {"text": "学历认证要多少钱", "count": 4}
    assert not any(e["text"] == "很久以前的问题" for c in data["clusters"] for e in c["examples"])
    assert all(c["not_covered_yaml"] for c in data["clusters"][:3])
    older = json.loads(bot("--since", "60d", "--json").stdout)
    assert any(e["text"] == "很久以前的问题" for c in older["clusters"] for e in c["examples"])
    text = bot("--since", "7d").stdout
    assert "#1  12 个问题（out_of_scope 12）" in text and "4× 学历认证要多少钱" in text
    assert "mark as not covered" in text
    assert "1× 那二维码多久刷新一次\n    紧接在这些回答之后问的：bind_wechat_alipay.how 1×" in text
    assert bot("--since", "soon").returncode == 2
