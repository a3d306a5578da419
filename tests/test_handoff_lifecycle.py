"""The hand-off lifecycle through the engine and the hand-off service (in-memory twins, real FAQ,
the in-process account twin): queue, honest status, user messages to the person, agent replies
pushed to the channel, leaving, closing, reasons, and a transcript without live secrets."""
from __future__ import annotations

import json
import re

import pytest

from accounts.local import LocalAccountClient
from handlers.handoff_service import HandoffService, OfficeHours, ReplyRejected, memory_service
from handlers.handoffs import HandoffClosed, HandoffConflict, HandoffNotFound
from support import Chat, Clock, Outbox, make_engine
from handlers.types import Message, Undeliverable, md, plain

ZS_ID, ZS1_PHONE = "110101199903071239", "13800138001"
MONDAY_10_SHANGHAI = 1_800_000_000 - (1_800_000_000 % 604800) + 4 * 86400 + 2 * 3600  # 1970-01-05 was a Monday


@pytest.fixture
def acc():
    client = LocalAccountClient()
    yield client
    client.close()


@pytest.fixture
def world(acc, tmp_path):
    clock = Clock(MONDAY_10_SHANGHAI)
    outbox = Outbox()
    online = {"n": 1}
    service = memory_service(clock, deliver=outbox, agents_online=lambda: online["n"],
                             hours=OfficeHours.parse("Mon-Fri 08:30-17:30 Asia/Shanghai"))
    engine = make_engine(acc, data_dir=tmp_path, clock=clock, handoffs=service)
    return engine, service, outbox, clock, online


def web_chat(engine) -> Chat:
    chat = Chat(engine)
    real = chat.send
    chat.send = lambda m: real(Message(m.kind, m.text, m.payload, m.image, channel="web", address=chat.session_id))
    return chat


def test_whole_lifecycle_waiting_active_closed_then_the_bot_answers(world):
    engine, service, outbox, clock, _ = world
    chat = web_chat(engine)
    chat.say("忘记密码怎么办")
    chat.press("转人工") if any("转人工" in b.label for b in chat.buttons) else chat.say("转人工")
    assert "排在第 1 位" in chat.text
    [h] = service.list("waiting")
    assert (h.channel, h.address, h.reason) == ("web", chat.session_id, "user_request")
    assert h.topic == "recover_account"
    assert h.to_dict()["topic_title"] == "找回用户名和密码"      # staff see the topic by its FAQ title, not its id

    # waiting: what the user says goes to the queue (an FAQ question is answered too: below)
    chat.say("人呢？怎么还没人回复")
    assert "已收到" in chat.text and "排在第 1 位" in chat.text and "暂时无法回答" not in chat.text
    assert [m.text for m in service.get(h.id)[1]] == ["人呢？怎么还没人回复"]

    # an agent claims and replies: pushed to the user's channel with the agent's name
    service.claim(h.id, "li")
    service.reply(h.id, "li", "您好，我是客服小李")
    (ch, addr, [claimed]), (_, _, [reply]) = outbox.sent
    assert (ch, addr) == ("web", chat.session_id) and "人工客服 li 已接入" in claimed.text
    assert reply.text == "您好，我是客服小李" and reply.author == "人工客服 li"

    # active: the user's messages reach the agent, the bot stays silent
    assert chat.say("我的手机号 13800138001 收不到验证码") == []
    last = service.get(h.id)[1][-1]
    assert last.kind == "user" and "138****8001" in last.text and ZS1_PHONE not in last.text

    # the agent closes: the user is told, and the bot answers again
    service.close(h.id, "li", "solved")
    assert "人工客服已结束本次对话" in outbox.texts[-1]
    assert outbox.sent[-1][:2] == ("web", chat.session_id)         # told where they were…
    assert service.get(h.id)[0].address == ""                      # …and the address is then forgotten
    chat.say("忘记用户名怎么办")
    assert "找回用户名" in chat.text
    assert service.get(h.id)[0].status == "closed"


def test_user_leaves_with_cancel_and_the_hand_off_is_abandoned(world):
    engine, service, *_ = world
    chat = web_chat(engine)
    chat.say("转人工")
    chat.press("取消转人工")
    assert "已取消转人工" in chat.text
    [h] = service.list("abandoned")
    assert h.resolution == "user_left"
    chat.say("忘记用户名怎么办")
    assert "找回用户名" in chat.text
    chat.say("转人工")
    assert len(service.list("waiting")) == 1
    chat.say("结束")
    assert len(service.list("abandoned")) == 2


def test_a_queued_user_who_gives_up_in_words_leaves_the_queue_other_messages_reach_the_agent(world):
    engine, service, *_ = world
    chat = web_chat(engine)
    chat.say("转人工")
    [h] = service.list("waiting")
    for text in ("算了，我还是想问下密码怎么改", "不用了吗？", "我的账号不要了能注销吗", "没事吧"):
        chat.say(text)
        assert "已收到" in chat.text, text
    assert [m.text for m in service.get(h.id)[1]] == ["算了，我还是想问下密码怎么改", "不用了吗？",
                                                      "我的账号不要了能注销吗", "没事吧"]
    chat.say("算了不用了")
    assert "已取消转人工" in chat.text
    assert service.list("waiting") == [] and service.get(h.id)[0].status == "abandoned"
    assert len(service.get(h.id)[1]) == 4          # the give-up itself was not sent to anyone as a message
    chat.say("忘记用户名怎么办")                    # the bot answers again
    assert "找回用户名" in chat.text
    for text in ("不等了，太慢了", "那算了吧", "好的 我自己再看看", "已经解决了，谢谢"):
        chat.say("转人工")
        [h] = service.list("waiting")
        chat.say(text)
        assert "已取消转人工" in chat.text and service.get(h.id)[0].status == "abandoned", text


def test_an_faq_question_while_waiting_is_answered_and_still_reaches_the_person_who_is_told(world):
    engine, service, *_ = world
    chat = web_chat(engine)
    chat.say("转人工")
    [h] = service.list("waiting")
    chat.say("忘记用户名怎么办")
    assert chat.replies[0].entry == "recover_account.username" and "找回用户名" in chat.replies[0].text
    assert "已收到" in chat.replies[-1].text and "取消转人工" in [b.label for b in chat.replies[-1].buttons]
    assert not any(b.payload.startswith(("flow:", "fb:")) for r in chat.replies for b in r.buttons)  # no flow, no vote
    kinds = [(m.kind, m.text) for m in service.get(h.id)[1]]
    assert kinds[0] == ("user", "忘记用户名怎么办") and kinds[1][0] == "system" and "忘记用户名怎么办？" in kinds[1][1]
    assert service.get(h.id)[0].status == "waiting"
    for text in ("人呢", "你好", "谢谢", "今天天气怎么样", "转人工",   # no FAQ answer: only the queue
                 "还要等多久", "要等多久啊", "多久能轮到我"):        # (its wait, not the FAQ's 2 小时)
        chat.say(text)
        assert len(chat.replies) == 1 and chat.replies[0].entry is None and "排在第 1 位" in chat.text, text
    service.claim(h.id, "li")
    assert chat.say("忘记密码怎么办") == []   # with a person: the bot stays silent


def test_an_agent_in_the_conversation_still_reads_never_mind(world):
    engine, service, *_ = world
    chat = web_chat(engine)
    chat.say("转人工")
    [h] = service.list("waiting")
    service.claim(h.id, "li")
    chat.say("算了不用了")                          # said to a person: theirs to answer or close
    assert service.get(h.id)[0].status == "active" and service.get(h.id)[1][-1].text == "算了不用了"


def test_queue_position_and_honest_status(world):
    engine, service, _, clock, online = world
    first, second = web_chat(engine), web_chat(engine)
    first.say("转人工")
    clock.advance(1)
    second.say("转人工")
    assert "排在第 2 位" in second.text
    online["n"] = 0
    second.say("还要多久")
    assert "目前没有人工客服在线" in second.text and "第 2 位" in second.text
    clock.advance(12 * 3600)  # 22:00 in Shanghai: outside hours
    online["n"] = 3
    second.say("有人吗")
    assert "不是人工客服工作时间" in second.text and "周一至周五 08:30–17:30（北京时间）" in second.text
    assert "第 2 位" in second.text
    first.say("取消转人工")
    second.say("现在呢")
    assert "第 1 位" in second.text
    # pressing 转人工 again while queued does not queue twice
    second.say("转人工")
    assert "您已在人工客服队列中" in second.text and len(service.list("waiting")) == 1


def test_reasons_recorded(world, acc):
    engine, service, *_ = world
    oos = web_chat(engine)
    oos.say("今天天气怎么样")
    oos.say("晚饭吃什么好")
    oos.press("转人工")
    unhelpful = web_chat(engine)
    unhelpful.say("忘记用户名怎么办")
    unhelpful.press("没帮助")
    unhelpful.press("转人工")
    reasons = sorted(h.reason for h in service.list("waiting"))
    assert reasons == ["not_helpful", "out_of_scope_twice"]


def at_password_code(engine) -> Chat:
    """A web chat at the SMS-code step of password recovery (the code was sent to ZS1_PHONE)."""
    chat = web_chat(engine)
    chat.say("忘记密码怎么办")
    chat.press("开始找回密码")
    for answer in ("zhangsan01", "张三"):
        chat.say(answer)
    chat.press("居民身份证")
    chat.say(ZS_ID)
    return chat


def test_transcript_has_labels_and_no_live_secrets(world, acc):
    """A reset link, the SMS code and the full ID number never reach the hand-off."""
    engine, service, *_ = world
    chat = at_password_code(engine)
    code = acc.latest_code(ZS1_PHONE)
    chat.say(code)
    link = re.search(r"\[重置密码\]\((http://[^)]+)\)", chat.text).group(1)
    chat.say("转人工")
    [h] = service.list("waiting")
    text = json.dumps(h.to_dict(), ensure_ascii=False)
    token = link.rstrip("/").rsplit("/", 1)[-1]
    for secret in (token, code, ZS_ID, ZS1_PHONE):
        assert secret not in text, secret
    lines = [t[1] for t in h.transcript if t[0] == "用户"]
    assert "开始找回密码" in lines and "居民身份证" in lines   # labels as the user saw them
    assert not any(p in text for p in ("flow:recover_password", "\"handoff\""))


def test_transcript_reads_as_the_user_saw_it_without_markup(world, acc):
    """Staff and help desks read the transcript as text: no "**", no backslash escapes in masked data."""
    engine, service, *_ = world
    chat = at_password_code(engine)
    chat.say("转人工")
    [h] = service.list("waiting")
    bot = [t[1] for t in h.transcript if t[0] == "助手"]
    assert any("验证码已发送至该账号绑定的手机" in line for line in bot), bot
    assert any("我们开始找回密码" in line for line in bot), bot
    assert not any("\\" in line or "**用户名**" in line or "**6 位" in line for line in bot), bot
    assert plain("学号 " + md("17**45") + "，[重置密码](https://x.test/r/abc)") == "学号 17**45，重置密码 (https://x.test/r/abc)"


def test_staff_operations_refuse_bad_input_and_lose_nothing(world):
    engine, service, outbox, *_ = world
    chat = web_chat(engine)
    chat.say("转人工")
    [h] = service.list("waiting")
    with pytest.raises(ReplyRejected, match="不能为空"):
        service.reply(h.id, "li", "   ")
    with pytest.raises(ReplyRejected, match="过长"):
        service.reply(h.id, "li", "字" * 2001)
    with pytest.raises(HandoffNotFound):
        service.reply("h-unknown", "li", "你好")
    service.reply(h.id, "li", "你好")             # a reply to a waiting one claims it
    with pytest.raises(HandoffConflict):
        service.reply(h.id, "wang", "我也来")
    with pytest.raises(HandoffConflict):
        service.close(h.id, "wang", "solved")
    with pytest.raises(ReplyRejected):
        service.close(h.id, "li", "whatever")
    service.hand_back(h.id, "li")
    assert "转回智能助手" in outbox.texts[-1]
    with pytest.raises(HandoffClosed):
        service.reply(h.id, "li", "还有一句")
    with pytest.raises(HandoffClosed):
        service.close(h.id, "li", "solved")
    assert [m.kind for m in service.get(h.id)[1]] == ["system", "agent"]


def test_office_hours_parsing():
    hours = OfficeHours.parse("Mon-Fri 08:30-17:30 Asia/Shanghai")
    assert hours.is_open(MONDAY_10_SHANGHAI)
    assert not hours.is_open(MONDAY_10_SHANGHAI + 5 * 86400)  # Saturday
    assert OfficeHours.parse("").is_open(0)
    assert OfficeHours.parse("Mon,Wed 10:00-12:00").describe() == "周一、周三 10:00–12:00（北京时间）"
    assert OfficeHours.parse("Sat-Sun 10:00-12:00 UTC").describe() == "周六至周日 10:00–12:00（UTC）"
    for bad in ("weekdays", "Mon-Fri 8-17", "Mon-Fri 08:30-17:30 Mars/Olympus"):
        with pytest.raises(ValueError, match="handoff.hours"):
            OfficeHours.parse(bad)


def test_service_without_delivery_still_stores(acc, tmp_path):
    service = HandoffService(memory_service().store, memory_service().bus)
    engine = make_engine(acc, data_dir=tmp_path, handoffs=service)
    chat = Chat(engine)
    chat.say("转人工")
    [h] = service.list("waiting")
    assert "目前没有人工客服在线" in chat.text
    service.reply(h.id, "li", "您好")
    assert service.get(h.id)[1][-1].text == "您好"


@pytest.mark.parametrize("failure, shown", [
    (Undeliverable("用户已离开该渠道"), "没有送达用户：用户已离开该渠道"),
    (ConnectionError("network down"), "没有送达用户：发送失败"),
])
def test_a_push_that_fails_is_shown_to_the_agent_and_the_reply_is_kept(acc, tmp_path, failure, shown):
    def deliver(channel, address, replies):
        raise failure

    service = memory_service(deliver=deliver)
    events = []
    service.listeners.append(lambda kind, h, m: events.append((kind, m and m.kind)))
    chat = Chat(make_engine(acc, data_dir=tmp_path, handoffs=service))
    chat.say("转人工")
    [h] = service.list("waiting")
    service.reply(h.id, "li", "您好")                    # the agent's action itself succeeds
    kinds_texts = [(m.kind, m.text) for m in service.get(h.id)[1]]
    assert ("agent", "您好") in kinds_texts
    assert kinds_texts[-1][0] == "system" and shown in kinds_texts[-1][1]
    assert events[-1] == ("message", "system")          # consoles see it live
