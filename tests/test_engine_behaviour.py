"""What users expect of the engine around the flows: interruptions, cancel/back, expiry,
invalid input, the API going down and coming back, restarts, bad input, and privacy."""
from __future__ import annotations

import json
import logging
import sqlite3

import pytest

from accounts.base import ServiceUnavailable
from faq.model import FAQ, Entry, Topic
from handlers.flows import FLOWS
from handlers.flows.base import Ask, Ctx, Flow, Goto, Input
from handlers.flows.recover import USERNAME_SENT
from handlers.sessions import SqliteStore, new_session_id
from support import JPEG, Chat, make_engine
from handlers.types import Message, Reply
from intents.matcher import MatcherConfig
from intents.types import Candidate, MatchResult

from support.flows import BAD_TEXT, PERSONAL, ZS1_PHONE, ZS2_PHONE, ZS_ID, run_full_flows, start_dup, start_username


# ---- interruptions, cancel, back, expiry -------------------------------------------------

def test_faq_question_mid_flow_is_answered_and_the_step_resumes(chat):
    start_username(chat)
    chat.say("张三")
    chat.say("重新注册会影响学籍吗？")
    assert "不会导致您的学籍学历信息消失" in chat.text
    assert "我们继续刚才的办理" in chat.replies[-1].text and "证件类型" in chat.replies[-1].text
    assert chat.flow_step == ("recover_username", "id_type")
    chat.press("居民身份证")
    assert chat.flow_step == ("recover_username", "id_number")


def test_faq_button_mid_flow_answers_and_reprompts(chat):
    start_username(chat)
    chat.send(Message.from_button("faq:recover_account.password"))
    assert "找回密码" in chat.replies[0].text
    assert "姓名" in chat.replies[-1].text and chat.flow_step == ("recover_username", "name")


@pytest.mark.parametrize("word", ["取消", "退出", "算了", "取消。"])
def test_cancel_words_end_the_flow_and_purge(chat, engine, word):
    start_username(chat)
    chat.say("张三")
    chat.say(word)
    assert "已结束“找回用户名”" in chat.text and chat.flow_step is None
    assert "张三" not in json.dumps(engine.store.get(chat.session_id), ensure_ascii=False)


def test_back_goes_one_step_back_and_not_past_the_start(chat):
    start_username(chat)
    chat.say("返回")
    assert "最早一步" in chat.text and chat.flow_step == ("recover_username", "name")
    chat.say("张三")
    chat.press("护照")
    chat.say("上一步")
    assert chat.flow_step == ("recover_username", "id_type")
    chat.send(Message.from_button("cmd:back"))
    assert chat.flow_step == ("recover_username", "name")


def test_idle_flow_expires_with_a_message_and_its_data_is_gone(chat, engine, clock):
    start_username(chat)
    chat.say("张三")
    clock.advance(1801)
    chat.say("居民身份证")
    assert "超过 30 分钟没有操作" in chat.text and "已清除" in chat.text
    assert chat.flow_step is None
    assert "张三" not in json.dumps(engine.store.get(chat.session_id), ensure_ascii=False)
    chat.press("重新开始")
    assert chat.flow_step == ("recover_username", "name")


def test_flow_within_idle_time_continues(chat, clock):
    start_username(chat)
    clock.advance(1700)
    chat.say("张三")
    assert chat.flow_step == ("recover_username", "id_type")


# ---- invalid input at every prompt --------------------------------------------------------

def test_three_invalid_answers_offer_a_person(chat, tmp_path):
    start_username(chat)
    chat.say("张三")
    for i in range(3):
        chat.say("不知道")
        assert "请从下方按钮中选择证件类型" in chat.text
        assert chat.flow_step == ("recover_username", "id_type")
        assert ("转人工客服" in [b.label for b in chat.buttons]) == (i == 2)
    chat.press("转人工客服")
    assert "人工客服" in chat.text and chat.flow_step is None
    [h] = chat.engine.handoffs.list("waiting")
    assert (h.flow, h.step, h.reason) == ("recover_username", "id_type", "invalid_tries")
    assert (h.to_dict()["topic_title"], h.to_dict()["step_label"]) == ("找回用户名", "选择证件类型")
    assert ["用户", "转人工客服"] in h.to_dict()["transcript"]  # the label the user saw, not the payload
    assert "张三" not in json.dumps(h.to_dict(), ensure_ascii=False)


@pytest.mark.parametrize("bad", BAD_TEXT, ids=range(len(BAD_TEXT)))
def test_bad_input_at_every_prompt_is_re_asked_in_chinese(engine, acc, bad):
    """Walk route 4 and send a bad message at each prompt: a Chinese reply, same step."""
    chat = Chat(engine)
    start_dup(chat)
    chat.press("途径4")
    answers = [("zhangsan02", None), ("<code>", None), ("在校生", None), ("北京大学", None),
               ("1700012345", None), ("2017", None), ("本科", None)]
    for answer, _ in answers:
        before = chat.flow_step
        replies = chat.say(bad)
        assert replies and all(r.text for r in replies)
        assert any("\u4e00" <= ch <= "\u9fff" for ch in chat.text)
        assert chat.flow_step == before
        chat.say(acc.latest_code(ZS2_PHONE) if answer == "<code>" else answer)
    assert chat.flow_step == ("id_duplicate", "record_review")


def test_image_where_text_is_expected_and_outside_flows(chat):
    chat.upload(JPEG)
    assert "请用文字描述您的问题" in chat.text
    start_username(chat)
    chat.upload(JPEG)
    assert "这一步需要输入文字" in chat.text and chat.flow_step == ("recover_username", "name")
    chat.send(Message.from_image(b""))
    assert "图片是空的" in chat.text


def test_unknown_and_stale_buttons(chat):
    chat.send(Message.from_button("flow:no_such_flow"))
    assert "选项已失效" in chat.text
    chat.send(Message.from_button("fb:up:no.such.entry"))
    assert "选项已失效" in chat.text


def _ask(ctx: Ctx) -> Reply:
    """Ask anything."""
    return ctx.say("请输入：")


def _keep_bytes(ctx: Ctx, inp: Input) -> Goto:
    """Keep raw bytes in the flow's data (a bug: JSON cannot hold them)."""
    ctx.data["raw"] = b"\x00"
    return Goto("ask")


def test_a_turn_failing_outside_a_step_is_still_one_chinese_reply(engine, monkeypatch):
    """Engine.handle never raises: a session JSON cannot hold is not saved, and the user hears so."""
    monkeypatch.setitem(FLOWS, "t", Flow("t", "测试", "ask", {"ask": Ask(_ask, _keep_bytes)}))
    assert engine.handle("s", Message.from_button("flow:t"))[-1].text == "请输入："
    replies = engine.handle("s", Message.from_text("x"))
    assert len(replies) == 1 and "系统出了点问题" in replies[0].text
    assert engine.store.get("s")["flow"]["data"] == {}   # the last good state is kept
    assert engine.handle("s", Message.from_text("取消"))[0].text.startswith("好的，已结束“测试”")


def test_any_session_id_string_works_and_new_ids_are_unique(engine):
    for sid in ["", "x" * 10000, "../../etc/passwd", "会话\x00"]:
        assert engine.handle(sid, Message.from_text("你好"))
    assert len({new_session_id() for _ in range(100)}) == 100


# ---- the account service down mid-flow, and back ----------------------------------------

def test_service_down_then_retry_reuses_the_idempotency_key(chat, acc):
    start_username(chat)
    chat.say("张三")
    chat.press("居民身份证")
    acc.fail["recover_username"] += [ServiceUnavailable("timeout"), ServiceUnavailable("503")]
    chat.say(ZS_ID)
    assert "暂时无法连接" in chat.text and "重试" in [b.label for b in chat.buttons]
    assert chat.flow_step == ("recover_username", "send")
    chat.say("我该怎么办")  # anything but 重试 keeps the step
    assert chat.flow_step == ("recover_username", "send")
    chat.press("重试")
    assert "暂时无法连接" in chat.text
    chat.say("重试")
    assert chat.text == USERNAME_SENT
    keys = acc.keys["recover_username"]
    assert len(keys) == 3 and len(set(keys)) == 1 and keys[0]
    assert len(acc.outbox(ZS1_PHONE)) == 1  # no double submission


@pytest.mark.parametrize("question", ["忘记用户名咋办", "忘記用戶名怎麼辦"])
def test_a_question_while_a_step_waits_for_retry_is_answered_by_the_matchers_rule(chat, acc, question):
    """One rule (intents.normalize.is_question) says what asks something, for the matcher and the
    engine alike: 咋办 and traditional 怎麼辦 are questions in the middle of a flow too."""
    start_username(chat)
    chat.say("张三")
    chat.press("居民身份证")
    acc.fail["recover_username"].append(ServiceUnavailable("timeout"))
    chat.say(ZS_ID)
    assert chat.flow_step == ("recover_username", "send")
    chat.say(question)
    assert chat.replies[0].entry is not None and "上一步还没有完成" in chat.replies[-1].text
    assert chat.flow_step == ("recover_username", "send")


def test_each_new_step_attempt_gets_a_new_key(chat, acc):
    start_username(chat)
    chat.say("张三")
    chat.press("居民身份证")
    chat.say(ZS_ID)
    start_username(chat)
    chat.say("张三")
    chat.press("居民身份证")
    chat.say(ZS_ID)
    assert len(set(acc.keys["recover_username"])) == 2


def test_http_client_pointed_at_a_closed_port_then_back(chat, engine, acc):
    """The real HTTP client against nothing (connection refused) mid-flow, then the twin again."""
    import socket

    from accounts.client import HttpAccountClient
    from settings import AccountsConfig

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = HttpAccountClient(AccountsConfig(base_url=f"http://127.0.0.1:{port}", api_key="k",
                                          connect_timeout=0.2, read_timeout=0.2, retries=0, backoff=0))
    start_username(chat)
    chat.say("张三")
    chat.press("居民身份证")
    engine.accounts = down
    chat.say(ZS_ID)
    assert "暂时无法连接" in chat.text and chat.flow_step == ("recover_username", "send")
    engine.accounts = acc
    chat.press("重试")
    assert "用户名已通过短信发送至" in chat.text


def test_restart_mid_flow_continues_from_the_sqlite_file(acc, tmp_path, clock):
    path = tmp_path / "sessions.db"
    first = Chat(make_engine(acc, store=SqliteStore(path, clock=clock), data_dir=tmp_path, clock=clock))
    start_username(first)
    first.say("张三")
    second = Chat(make_engine(acc, store=SqliteStore(path, clock=clock), data_dir=tmp_path, clock=clock),
                  session_id=first.session_id)
    second.press  # noqa: B018
    second.say("居民身份证")
    assert "居民身份证号码" in second.text
    second.say(ZS_ID)
    assert "用户名已通过短信发送至" in second.text


# ---- privacy ---------------------------------------------------------------------------

def test_logs_at_debug_never_show_personal_data(engine, acc, caplog):
    caplog.set_level(logging.DEBUG)
    run_full_flows(engine, acc)
    logged = "\n".join(r.getMessage() + str(r.args) for r in caplog.records)
    assert "flow recover_username started" in logged  # the scan sees the engine's logs
    for secret in PERSONAL:
        assert secret not in logged


def test_session_store_holds_no_personal_data_after_flows(acc, tmp_path, clock):
    path = tmp_path / "sessions.db"
    engine = make_engine(acc, store=SqliteStore(path, clock=clock), data_dir=tmp_path, clock=clock)
    chats = run_full_flows(engine, acc)
    for c in chats:
        assert c.flow_step is None
    dump = "\n".join(row[0] for row in sqlite3.connect(path).execute("SELECT state FROM sessions"))
    assert "transcript" in dump
    for secret in PERSONAL:
        assert secret not in dump
    assert "138****8001" in dump  # masked forms are kept


def test_personal_data_is_kept_only_while_the_flow_needs_it(chat, engine):
    start_username(chat)
    chat.say("张三")
    assert engine.store.get(chat.session_id)["flow"]["data"]["name"] == "张三"
    transcript = json.dumps(engine.store.get(chat.session_id)["transcript"], ensure_ascii=False)
    assert "张三" not in transcript and "已隐藏" in transcript


# ---- FAQ answers, feedback, clarify, out of scope, hand-off ---------------------------------

def test_answer_has_related_buttons_and_recorded_feedback(chat, tmp_path):
    chat.say("忘记密码怎么办")
    labels = [b.label for b in chat.replies[0].buttons]
    assert labels[-2:] == ["有帮助", "没帮助"] and len(labels) > 2
    chat.press("有帮助")
    assert "感谢" in chat.text
    chat.say("忘记密码怎么办")
    chat.press("没帮助")
    assert "转人工客服" in [b.label for b in chat.buttons]
    for _ in range(5):   # a replayed vote counts nothing: once per answer shown
        chat.send(Message.from_button("fb:up:recover_account.password"))
        assert "已经评价过" in chat.text
    votes = [json.loads(line) for line in (tmp_path / "feedback.jsonl").read_text().splitlines()]
    assert [(v["entry"], v["helpful"]) for v in votes] == [("recover_account.password", True),
                                                             ("recover_account.password", False)]
    assert chat.session_id not in json.dumps(votes)


def test_feedback_typed_instead_of_tapped_is_a_vote_on_the_answer_just_given(chat, tmp_path):
    """Users type the button's label: 没帮助 / 沒幫助 after an answer is that answer's vote (not "无法回答")."""
    chat.say("忘记用户名怎么办")
    chat.say("沒幫助")
    assert "抱歉没能帮到您" in chat.text and "转人工客服" in [b.label for b in chat.buttons]
    chat.say("忘记密码怎么办")
    chat.say("有帮助")
    assert "感谢您的反馈" in chat.text
    chat.say("有帮助")   # no answer just before: not a second vote
    assert "感谢您的反馈" not in chat.text
    votes = [json.loads(line) for line in (tmp_path / "feedback.jsonl").read_text().splitlines()]
    assert [(v["entry"], v["helpful"]) for v in votes] == [("recover_account.username", False),
                                                             ("recover_account.password", True)]


class Scripted:
    """A matcher test double returning a fixed result (the real one is tested elsewhere)."""

    config = MatcherConfig()

    def __init__(self, result: MatchResult) -> None:
        self.result = result

    def match(self, text: str) -> MatchResult:
        return self.result

    def follow_up(self, text: str, after: str) -> MatchResult:
        return self.result


TINY = FAQ(topics=(Topic("recover_account", "找回", 2, (
    Entry("recover_account.username", "recover_account", "忘记用户名怎么办？", "点“找回用户名”。"),
    Entry("recover_account.password", "recover_account", "忘记密码怎么办？", "点“找回密码”。"))),))


def test_clarify_offers_the_candidate_questions(acc, tmp_path):
    result = MatchResult("clarify", "recover_account", "recover_account.username", 0.6,
                         (Candidate("recover_account.username", "recover_account", 0.6),
                          Candidate("recover_account.password", "recover_account", 0.58)))
    m = Scripted(result)
    m.faq = TINY
    chat = Chat(make_engine(acc, matcher=m, data_dir=tmp_path))
    chat.say("忘了")
    assert "哪一个" in chat.text
    assert [b.label for b in chat.buttons] == ["忘记用户名怎么办？", "忘记密码怎么办？", "都不是，转人工客服"]
    chat.press("忘记密码")
    assert chat.text.startswith("点“找回密码”")


def test_out_of_scope_is_honest_shows_closest_topics_and_offers_a_person(acc, tmp_path):
    m = Scripted(MatchResult("out_of_scope", "out_of_scope", None, 0.45,
                             (Candidate("recover_account.password", "recover_account", 0.45),
                              Candidate("recover_account.username", "recover_account", 0.1))))
    m.faq = TINY
    chat = Chat(make_engine(acc, matcher=m, data_dir=tmp_path))
    chat.say("今天天气怎么样")
    assert "暂时无法回答" in chat.text
    # the distant candidate (below matcher.suggest_threshold) is not suggested
    assert [b.label for b in chat.buttons] == ["忘记密码怎么办？", "转人工客服"]


def test_human_agent_hands_off_with_masked_transcript(chat, tmp_path, engine):
    chat.say(f"我手机 {ZS1_PHONE} 身份证 {ZS_ID} 验证码 123456 收不到")
    chat.say("转人工")
    assert chat.text.startswith(engine.handoff.message)
    [h] = engine.handoffs.list("waiting")
    text = json.dumps(h.to_dict(), ensure_ascii=False)
    assert "138****8001" in text and "1101**********1239" in text
    for secret in (ZS1_PHONE, ZS_ID, "123456"):
        assert secret not in text


def test_each_conversation_acts_as_its_own_client_for_rate_limits(acc, engine):
    """The service's per-client limits must count chat users apart, not the bot as one client."""
    first, second = Chat(engine), Chat(engine)
    for chat in (first, second):
        start_username(chat)
        chat.say("张三")
    start_ids = set(acc.client_ids)
    assert len(start_ids) == 2
    first.press("居民身份证")
    assert set(acc.client_ids) == start_ids  # stable within a conversation
    for cid in start_ids:
        assert "张三" not in cid and ZS_ID not in cid


def test_the_engine_remembers_where_to_reach_the_user(engine):
    engine.handle("reach-1", Message.from_text("你好"))
    assert "reach" not in engine.store.get("reach-1")  # a message without an origin changes nothing
    engine.handle("reach-1", Message.from_text("你好", channel="telegram", address="42"))
    assert engine.store.get("reach-1")["reach"] == {"channel": "telegram", "address": "42"}


def test_a_not_covered_question_gets_its_groups_honest_reply_and_a_person(chat, engine):
    chat.say("请问学位认证报告在哪里申请？")
    group = engine.faq.not_covered_groups["degree"]
    assert chat.text == group.reply and "学信网账号助手" in chat.text
    assert [b.label for b in chat.buttons] == ["转人工客服"]
    assert not any(b.payload.startswith(("faq:", "fb:")) for b in chat.buttons)  # no FAQ answer offered
    chat.press("转人工客服")
    assert "人工客服" in chat.text



def test_advice_followed_without_success_is_not_repeated_but_a_person_offered(chat, engine):
    chat.say("登录提示操作过于频繁，缓存清了，也等了两个小时，还是不行，怎么办？")
    assert "操作过于频繁" in chat.text and "转人工客服" in chat.text and "清除浏览器缓存" not in chat.text
    assert [b.label for b in chat.buttons] == ["转人工客服"]
    chat.press("转人工客服")
    assert "人工客服" in chat.text

def test_a_question_about_the_bot_itself_is_answered_honestly_and_a_person_offered_not_handed_off(chat, engine):
    chat.say("你是机器人吗？")
    assert chat.text == engine.faq.not_covered_groups["assistant"].reply
    assert "不是真人" in chat.text and [b.label for b in chat.buttons] == ["转人工客服"]
    chat.say("那我要找真人客服")                 # asking for a person is a hand-off request
    assert "人工客服" in chat.text and chat.text != engine.faq.not_covered_groups["assistant"].reply


@pytest.mark.parametrize("text", ["我的手机号是13800138002", "110101199903071239", "邮箱 zhangsan@example.com"])
def test_personal_data_sent_with_nothing_asked_is_asked_not_to_be_sent(engine, text):
    chat = Chat(engine)
    chat.say(text)
    assert "请不要在对话中直接发送" in chat.text and "暂时无法回答" not in chat.text
    assert [b.label for b in chat.buttons][-1] == "转人工客服"


def test_a_question_without_personal_data_gets_no_privacy_warning(engine):
    chat = Chat(engine)
    chat.say("今天天气怎么样")
    assert "暂时无法回答" in chat.text and "个人信息" not in chat.text


def test_an_unknown_not_covered_group_falls_back_to_the_general_reply(acc, tmp_path):
    m = Scripted(MatchResult("out_of_scope", "out_of_scope", None, 0.6, (), not_covered="no_such_group"))
    m.faq = TINY
    chat = Chat(make_engine(acc, matcher=m, data_dir=tmp_path))
    chat.say("学位怎么查")
    assert "暂时无法回答" in chat.text and [b.label for b in chat.buttons] == ["转人工客服"]
