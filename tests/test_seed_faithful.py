"""Every FAQ answer reads right against the official FAQ (faq/seed/chsi_faq.md), sentence by sentence.

Each sentence (or ；-clause) of every answer must occur in the seed after normalisation (width,
Markdown, punctuation and spaces ignored) or be one of the bot's own procedural sentences in the
reviewed allow-list tests/seed_allowlist.yaml. An answer never opens with a bare yes/no word:
it is read against every alternate it serves, and "不会。" means opposite things to
"重新注册会让学籍消失吗" and "学历信息还在吗".
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
import yaml

from faq.loader import load_dir

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "faq" / "seed" / "chsi_faq.md"
ALLOW = Path(__file__).resolve().parent / "seed_allowlist.yaml"
BARE_OPENERS = re.compile(r"^\**(?:不会|不需要|不用|不能|可以|能|会|需要|是的?|不是|对|没有)\**[。！，,.!]")
MIN_CHARS = 2


def normalise(text: str) -> str:
    """Width, Markdown links/bold/list markers, punctuation and spaces removed."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"(?m)^\s*(?:[-*]|\d+[.、])\s+", "", text)
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN")


def sentences(answer: str) -> list[str]:
    """The sentences, ；-clauses and ：-lead-ins of an answer, each normalised (empty ones dropped)."""
    parts = re.split(r"[。！？!?；;:\n]+", unicodedata.normalize("NFKC", answer))
    return [n for n in (normalise(p) for p in parts) if n]


def seed_text() -> str:
    return normalise(SEED.read_text(encoding="utf-8"))


def allow_list() -> list[str]:
    return yaml.safe_load(ALLOW.read_text(encoding="utf-8"))["sentences"]


def allowed() -> set[str]:
    """Every sentence part of the allow-list (split as answers are)."""
    return {part for s in allow_list() for part in sentences(s)}


def test_seed_copy_matches_the_shared_seed_when_present():
    shared = ROOT.parent.parent / "shared" / "seed"
    copies = sorted(shared.glob("*.txt")) if shared.is_dir() else []
    assert copies or not shared.is_dir(), f"{shared} exists but holds no seed (*.txt) to compare"
    for path in copies:
        assert path.read_text(encoding="utf-8") == SEED.read_text(encoding="utf-8")


FAQ = load_dir(ROOT / "faq" / "data")


@pytest.mark.parametrize("entry_id", sorted(FAQ.entries))
def test_every_answer_sentence_is_in_the_seed_or_reviewed(entry_id):
    seed, allow = seed_text(), allowed()
    strays = [s for s in sentences(FAQ.entry(entry_id).answer)
              if s not in allow and not (len(s) >= MIN_CHARS and s in seed)]
    assert not strays, f"{entry_id}: sentences neither in the seed nor in {ALLOW.name}: {strays}"


@pytest.mark.parametrize("entry_id", sorted(FAQ.entries))
def test_no_answer_opens_with_a_bare_yes_or_no(entry_id):
    answer = FAQ.entry(entry_id).answer.strip()
    assert not BARE_OPENERS.match(answer), f"{entry_id} opens with a bare yes/no: {answer[:20]!r}"


def test_allow_list_holds_no_seed_sentence_and_no_unused_one():
    seed = seed_text()
    used = {s for e in FAQ.entries.values() for s in sentences(e.answer)}
    for s in allow_list():
        parts = sentences(s)
        assert not all(p in seed for p in parts), f"{s!r} is in the seed: drop it from {ALLOW.name}"
        assert all(p in used for p in parts), f"{s!r} is used by no answer: drop it from {ALLOW.name}"


@pytest.mark.parametrize("entry_id", sorted(FAQ.entries))
def test_no_bold_inside_a_sentence(entry_id):
    """Emphasis only on a whole label ("**友情提示：**"): a ** between two words splits the seed's
    phrase ("绑定**微信**或**支付宝**" no longer contains "绑定微信或支付宝")."""
    for m in re.finditer(r"\*\*([^*\n]+?)\*\*", FAQ.entry(entry_id).answer):
        if m.group(1).endswith("："):
            continue
        text = FAQ.entry(entry_id).answer
        before, after = text[m.start() - 1:m.start()], text[m.end():m.end() + 1]
        assert not (re.match(r"[\u4e00-\u9fff0-9A-Za-z]", before) or re.match(r"[\u4e00-\u9fff0-9A-Za-z]", after)), \
            f"{entry_id}: bold inside a sentence: {text[max(0, m.start() - 6):m.end() + 6]!r}"


def test_the_check_catches_an_invented_sentence():
    seed, allow = seed_text(), allowed()
    invented = "重新注册后旧账号仍可正常使用。"
    assert any(s not in allow and s not in seed for s in sentences(invented))
    assert BARE_OPENERS.match("**不会**。重新注册不会导致您的学籍学历信息消失。")


def test_original_account_is_offered_as_the_alternative_to_re_registering():
    """"可使用原账号登录" follows the framing that it is instead of re-registering, never the cancellation warning."""
    checked = 0
    for entry in FAQ.entries.values():
        paragraphs = [p for p in re.split(r"\n\s*\n", entry.answer)]
        for i, p in enumerate(paragraphs):
            if "可使用原账号登录" in p:
                checked += 1
                before = "\n".join(paragraphs[max(0, i - 1):i + 1])
                assert "重新注册之前" in before, f"{entry.id}: {p!r} reads as if the old account still works"
    assert checked, "no answer offers the original account any more: the check above ran on nothing"


# ---- the flows' own messages against the seed --------------------------------------------------

from accounts.local import LocalAccountClient  # noqa: E402
from support import Chat, make_engine  # noqa: E402

ZS2_PHONE = "13800138002"


@pytest.fixture
def chat(tmp_path):
    accounts = LocalAccountClient()
    chat = Chat(make_engine(accounts, data_dir=tmp_path))
    chat.accounts = accounts
    yield chat
    accounts.close()


def _login(chat: Chat, username: str, phone: str) -> None:
    chat.say(username)
    chat.say(chat.accounts.latest_code(phone))
    assert "登录成功" in chat.text


def test_duplicate_id_flow_opens_with_the_original_account_and_the_old_accounts_fate(chat):
    chat.say("证件号码已被注册怎么办")
    chat.press("开始解决证件号码重复")
    assert "可使用原账号登录" in chat.text and "可以尝试找回密码、找回用户名" in chat.text
    assert chat.text.index("可使用原账号登录") < chat.text.index("我要重新注册")
    assert "旧账号将不能用于征兵、研招报名" in chat.text
    assert {"flow:recover_username", "flow:recover_password"} <= {b.payload for b in chat.buttons}


def test_the_confirmation_says_the_old_account_can_no_longer_be_used(chat):
    chat.say("证件号码已被注册怎么办")
    chat.press("开始解决证件号码重复")
    chat.press("途径2")
    _login(chat, "zhangsan02", ZS2_PHONE)
    assert "旧账号将不能用于征兵、研招报名" in chat.text
    chat.press("确认继续")
    prompt = chat.replies[-1].text
    assert "客服审核由学信网进行人工处理" in prompt and "客服由学信网" not in prompt
    assert "本助手接收 JPG 或 PNG" in prompt  # the service's own limit is worded as the service's


def test_phone_registered_says_change_the_phone_number(chat):
    chat.say("手机号码已被注册怎么办")
    assert "请**更换手机号码**注册" in chat.text or "请更换手机号码注册" in chat.text


def test_service_rules_are_not_worded_as_chsi_facts(chat):
    chat.say("忘记密码怎么办")
    chat.press("开始找回密码")
    chat.say("1abc")
    assert "本服务的用户名" in chat.text
    for answer in ("nobody123", "张三", "居民身份证", "110101199903071239"):
        chat.say(answer)
    assert "我们的记录" not in chat.text and "账号服务" in chat.text


def test_answers_write_the_seeds_sentences_as_the_seed_does():
    """A sentence the seed has without quotation marks is not given some (建议使用“找回用户名”功能核实… where the
    seed writes 建议使用找回用户名功能核实…), nor its half-width brackets made full-width (毕业年份(4 位数字)): a fact
    copied from the seed is then in the answer as written."""
    seed = SEED.read_text(encoding="utf-8")
    added = [(e.id, part) for t in load_dir(ROOT / "faq" / "data").topics if t.seed_topic for e in t.entries
             for part in re.split(r"[。；\n]", e.answer)
             if part not in seed and re.sub(r"[“”]", "", part).replace("（", "(").replace("）", ")") in seed]
    assert not added, added
