"""The Telegram channel offline: real python-telegram-bot objects through the Application.

Every Bot API call goes through ``RecordingRequest``, which answers the few methods
the bot may use with plausible JSON and fails the test on anything else (so no
real network call can happen). The webhook route is driven through the web app.
"""
from __future__ import annotations

import dataclasses

import asyncio
import html
import re

import pytest
from fastapi.testclient import TestClient
from telegram import CallbackQuery, Chat, ChatMemberMember, ChatMemberUpdated, Document, Message as TgMessage
from telegram import MessageEntity, PhotoSize, Update, User

from channels import render
from channels.telegram import CALLBACK_LIMIT, TelegramChannel, TelegramConfigError, build_application, session_id
from channels.app import create_app
from handlers.types import Button, Message, Reply
from support import JPEG, RecordingEngine
from support.telegram import BOT, DATE, TOKEN, RecordingRequest

USER = User(id=42, first_name="小明", is_bot=False, language_code="zh-hans")
CHAT = Chat(id=42, type=Chat.PRIVATE)
FROM_CHAT = {"channel": "telegram", "address": "42"}  # what the adapter sets: send() reaches chat 42
LONG_PAYLOAD = "flow:id_duplicate:route4:confirm_cancel_other_accounts:level=doctoral_candidate"


def answer(message: Message) -> list[Reply]:
    """The engine double's answers: text with markup, buttons (one with a long payload), a photo's size."""
    if message.kind == "image":
        return [Reply(f"已收到照片，共 {len(message.image.data)} 字节。")]
    return [Reply("**请选择**证件类型：\n\n- 居民身份证 <b>不是标签</b> & 更多",
                  buttons=(Button("居民身份证", "flow:id_type:resident_id"), Button("长按钮", LONG_PAYLOAD)))]


@pytest.fixture()
def cfg():
    return {"telegram": {"token": TOKEN, "webhook_secret": "s3cret-token_value", "webhook_path": "/telegram/webhook"},
            "web": {"session_secret": "tg-test-secret-0123456789abcdef0123", "max_text_chars": 100,
                    "max_body_bytes": 1_000_000}}


@pytest.fixture()
def request_recorder():
    return RecordingRequest()


@pytest.fixture()
def engine():
    return RecordingEngine(answer)


def make_message(bot, message_id: int = 1, **kwargs) -> TgMessage:
    msg = TgMessage(message_id=message_id, date=DATE, chat=kwargs.pop("chat", CHAT),
                    from_user=kwargs.pop("from_user", USER), **kwargs)
    msg.set_bot(bot)
    return msg


def command(bot, text: str) -> Update:
    name = text.split()[0]
    entities = [MessageEntity(type=MessageEntity.BOT_COMMAND, offset=0, length=len(name))]
    return Update(1, message=make_message(bot, text=text, entities=entities))


async def feed(app, *updates: Update) -> None:
    async with app:
        for u in updates:
            await app.process_update(u)


def run(app, *updates: Update) -> None:
    asyncio.run(feed(app, *updates))


def test_text_goes_to_the_engine_and_replies_as_html_with_inline_keyboard(cfg, request_recorder, engine):
    app = build_application(cfg, engine, request=request_recorder)
    run(app, Update(1, message=make_message(app.bot, text="  证件号码已被注册  ")))
    assert request_recorder.unexpected == []
    assert engine.calls == [(session_id(42), Message(kind="text", text="证件号码已被注册", client="telegram:42", **FROM_CHAT))]
    assert "MainThread" not in engine.threads  # engine.handle ran off the event loop
    [sent] = request_recorder.sent()
    assert sent["chat_id"] == 42 and sent["parse_mode"] == "HTML"
    assert sent["text"] == "<b>请选择</b>证件类型：\n\n• 居民身份证 &lt;b&gt;不是标签&lt;/b&gt; &amp; 更多"
    keyboard = sent["reply_markup"]["inline_keyboard"]
    assert keyboard[0] == [{"text": "居民身份证", "callback_data": "flow:id_type:resident_id"}]
    long_data = keyboard[1][0]["callback_data"]
    assert len(long_data.encode()) <= CALLBACK_LIMIT and long_data != LONG_PAYLOAD


def test_button_press_answers_the_query_and_sends_the_payload(cfg, request_recorder, engine):
    app = build_application(cfg, engine, request=request_recorder)

    def press(data: str, qid: str) -> Update:
        shown = make_message(app.bot, message_id=int(qid[1:]) + 6, text="请选择", from_user=User(**{k: BOT[k] for k in ("id", "is_bot", "first_name")}))
        query = CallbackQuery(id=qid, from_user=USER, chat_instance="ci", message=shown, data=data)
        query.set_bot(app.bot)
        return Update(2, callback_query=query)

    async def scenario():
        async with app:
            await app.process_update(Update(1, message=make_message(app.bot, text="你好")))
            long_data = request_recorder.sent()[0]["reply_markup"]["inline_keyboard"][1][0]["callback_data"]
            await app.process_update(press("flow:id_type:resident_id", "q1"))
            await app.process_update(press(long_data, "q2"))
            await app.process_update(press("~" + "0" * 40, "q3"))  # a digest from before a restart
    asyncio.run(scenario())
    assert request_recorder.unexpected == []
    assert [p["callback_query_id"] for p in request_recorder.named("answerCallbackQuery")] == ["q1", "q2", "q3"]
    assert [dataclasses.replace(m, client="") for _, m in engine.calls[1:]] == [Message.from_button("flow:id_type:resident_id", **FROM_CHAT),
                                                Message.from_button(LONG_PAYLOAD, **FROM_CHAT)]
    assert "按钮已失效" in request_recorder.sent()[-1]["text"]
    assert [p["message_id"] for p in request_recorder.named("editMessageReplyMarkup")] == [7, 8, 9]


def test_photo_downloads_the_largest_size(cfg, request_recorder, engine):
    app = build_application(cfg, engine, request=request_recorder)
    sizes = [PhotoSize("small", "us", 90, 60, 1000), PhotoSize("large", "ul", 1280, 853, 90000),
             PhotoSize("medium", "um", 320, 213, 9000)]
    run(app, Update(3, message=make_message(app.bot, photo=sizes, caption="我的身份证")))
    assert request_recorder.unexpected == []
    assert request_recorder.named("getFile") == [{"file_id": "large"}]
    assert request_recorder.downloads == ["large.jpg"]
    [(sid, msg)] = engine.calls
    assert msg.kind == "image" and msg.image.data == JPEG and msg.image.content_type == "image/jpeg"
    assert request_recorder.sent()[0]["text"] == f"已收到照片，共 {len(JPEG)} 字节。"


def test_image_document_is_an_image_and_huge_files_are_refused(cfg, request_recorder, engine):
    app = build_application(cfg, engine, request=request_recorder)
    doc = Document("doc1", "ud1", file_name="证件.png", mime_type="image/png", file_size=5000)
    huge = Document("doc2", "ud2", file_name="big.png", mime_type="image/png", file_size=50_000_000)
    run(app, Update(4, message=make_message(app.bot, document=doc)),
        Update(5, message=make_message(app.bot, message_id=2, document=huge)))
    assert request_recorder.unexpected == []
    assert [m.image.filename for _, m in engine.calls] == ["证件.png"]
    assert engine.calls[0][1].image.content_type == "image/png"
    assert "照片超过本助手接收的 5 MB" in request_recorder.sent()[-1]["text"]
    assert request_recorder.named("getFile") == [{"file_id": "doc1"}]


def test_start_help_cancel(cfg, request_recorder, engine):
    app = build_application(cfg, engine, request=request_recorder)
    run(app, command(app.bot, "/start"), command(app.bot, "/help"), command(app.bot, "/cancel"))
    assert request_recorder.unexpected == []
    start, help_, cancel = request_recorder.sent()
    assert "学信网账号助手" in start["text"] and start["parse_mode"] == "HTML"
    assert "/cancel" in help_["text"]
    assert engine.calls == [(session_id(42), Message(kind="text", text="取消", client="telegram:42", **FROM_CHAT))]
    assert cancel["reply_markup"]["inline_keyboard"]


def test_updates_without_a_message_are_ignored(cfg, request_recorder, engine):
    app = build_application(cfg, engine, request=request_recorder)
    edited = make_message(app.bot, text="改过的消息", edit_date=DATE)
    member = ChatMemberUpdated(chat=CHAT, from_user=USER, date=DATE,
                               old_chat_member=ChatMemberMember(user=USER), new_chat_member=ChatMemberMember(user=USER))
    run(app, Update(6, edited_message=edited), Update(7, my_chat_member=member), Update(8))
    assert request_recorder.unexpected == []
    assert request_recorder.sent() == [] and engine.calls == []


def test_unsupported_and_bad_input_get_a_clear_message(cfg, request_recorder, engine):
    app = build_application(cfg, engine, request=request_recorder)
    from telegram import Location
    run(app, Update(9, message=make_message(app.bot, location=Location(116.3, 39.9))),
        Update(10, message=make_message(app.bot, message_id=2, text="长" * 101)),
        Update(11, message=make_message(app.bot, message_id=3, text="群里说话", chat=Chat(id=-100, type=Chat.GROUP))))
    assert request_recorder.unexpected == []
    texts = [p["text"] for p in request_recorder.sent()]
    assert "只能处理文字、按钮和照片" in texts[0]
    assert "消息过长" in texts[1]
    assert len(texts) == 2 and engine.calls == []  # group chats are not served


def test_long_answers_are_split_within_the_limit(cfg, request_recorder):
    long_text = "\n\n".join(f"第{i}段：" + "学信网账号可用于登录学信网各服务平台。" * 40 for i in range(12))
    engine = RecordingEngine(lambda m: [Reply(long_text, buttons=(Button("有帮助", "feedback:yes"),))])
    app = build_application(cfg, engine, request=request_recorder)
    run(app, Update(12, message=make_message(app.bot, text="长答案")))
    sent = request_recorder.sent()
    assert len(sent) > 1 and all(len(visible(p["text"])) <= 4096 for p in sent)
    assert "".join(p["text"] for p in sent).replace("\n", "") == long_text.replace("\n", "")
    assert all(p["text"].startswith("第") for p in sent)  # split between paragraphs
    assert [("reply_markup" in p) for p in sent] == [False] * (len(sent) - 1) + [True]


def test_engine_failure_apologises(cfg, request_recorder):
    def boom(message):
        raise RuntimeError("backend down")
    app = build_application(cfg, RecordingEngine(boom), request=request_recorder)
    run(app, Update(13, message=make_message(app.bot, text="你好")))
    assert request_recorder.unexpected == []
    assert "服务暂时出现问题" in request_recorder.sent()[0]["text"]


def test_an_unexpected_bot_api_call_is_caught(cfg, request_recorder, engine):
    app = build_application(cfg, engine, request=request_recorder)

    async def scenario():
        async with app:
            with pytest.raises(Exception):
                await app.bot.send_photo(42, b"x")
    asyncio.run(scenario())
    [call] = request_recorder.unexpected  # the recorder would fail a test that did this
    assert call.endswith("/sendPhoto") and request_recorder.sent() == []


def test_missing_token_is_a_clear_error(engine):
    with pytest.raises(TelegramConfigError, match="TELEGRAM_BOT_TOKEN"):
        build_application({"telegram": {"token": ""}}, engine)


def test_run_polling_without_token_exits_with_a_message(capsys):
    from channels.telegram import run_polling
    assert run_polling({"telegram": {"token": ""}}) == 2
    assert "TELEGRAM_BOT_TOKEN" in capsys.readouterr().err


# ---- webhook through the web app -------------------------------------------------------

def webhook_update(text: str) -> dict:
    return {"update_id": 500, "message": {"message_id": 1, "date": int(DATE.timestamp()),
                                          "chat": {"id": 42, "type": "private"},
                                          "from": {"id": 42, "is_bot": False, "first_name": "小明"}, "text": text}}


def test_webhook_checks_the_secret_and_processes_updates(cfg, request_recorder, engine):
    with TestClient(create_app(cfg, engine=engine, telegram_request=request_recorder)) as client:
        url = "/telegram/webhook"
        assert client.post(url, json=webhook_update("x")).status_code == 403
        r = client.post(url, json=webhook_update("x"), headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        assert engine.calls == [] and request_recorder.calls == []
        good = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-token_value"}
        assert client.post(url, content=b"{oops", headers={**good, "Content-Type": "application/json"}).status_code == 400
        r = client.post(url, json=webhook_update("忘记密码"), headers=good)
        assert r.status_code == 200
        assert engine.calls == [(session_id(42), Message(kind="text", text="忘记密码", client="telegram:42", **FROM_CHAT))]
        assert request_recorder.sent()[0]["chat_id"] == 42
        assert request_recorder.unexpected == []
        assert [c["command"] for c in request_recorder.named("setMyCommands")[0]["commands"]] == \
            ["start", "help", "cancel"]  # the command menu, as in polling mode


def test_channel_send_pushes_replies_to_the_chat_through_the_bot_api(cfg, request_recorder, engine):
    channel = TelegramChannel(cfg, engine, request_recorder)

    async def scenario():
        await channel.send("42", [Reply("**人工客服**：您好", buttons=(Button("好的", "ok"),)), Reply("还在吗？")])
        await channel.aclose()
    asyncio.run(scenario())
    assert request_recorder.unexpected == [] and engine.calls == []
    first, second = request_recorder.sent()
    assert first["chat_id"] == 42 and first["text"] == "<b>人工客服</b>：您好" and first["parse_mode"] == "HTML"
    assert first["reply_markup"]["inline_keyboard"] == [[{"text": "好的", "callback_data": "ok"}]]
    assert second["text"] == "还在吗？" and "reply_markup" not in second


def test_webhook_without_a_secret_refuses_everything(cfg, request_recorder, engine):
    cfg["telegram"]["webhook_secret"] = ""
    with TestClient(create_app(cfg, engine=engine, telegram_request=request_recorder)) as client:
        r = client.post("/telegram/webhook", json=webhook_update("x"), headers={"X-Telegram-Bot-Api-Secret-Token": ""})
        assert r.status_code == 403 and engine.calls == []


def visible(html_text: str) -> str:
    """The text Telegram shows for an HTML message."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


def test_render_splits_and_escapes():
    chunks = render.telegram_chunks("**" + "&" * 5000 + "**", limit=4096)
    assert [len(visible(c)) for c in chunks] == [4096, 904]
    assert all(c.startswith("<b>") and c.endswith("</b>") for c in chunks)
    assert render.telegram_chunks("[x](javascript:alert(1)) [y](https://a.cn/?q=1&r=\"2\")") == [
        '[x](javascript:alert(1)) <a href="https://a.cn/?q=1&amp;r=&quot;2&quot;">y</a>']
    assert render.telegram_chunks("") == []


# ---- with the real engine ------------------------------------------------------------------

def test_real_engine_answer_keyboard_and_flow_start(cfg, request_recorder, tmp_path):
    from accounts.local import LocalAccountClient
    from support import make_engine

    engine = make_engine(LocalAccountClient(), data_dir=tmp_path)
    app = build_application(cfg, engine, request=request_recorder)

    async def scenario():
        async with app:
            await app.process_update(Update(20, message=make_message(app.bot, text="用户名忘了怎么办")))
            keyboard = [b for p in request_recorder.sent() if "reply_markup" in p
                        for row in p["reply_markup"]["inline_keyboard"] for b in row]
            start = next(b for b in keyboard if b["text"] == "开始找回用户名")
            shown = make_message(app.bot, message_id=9, text="需要我一步步帮您找回用户名吗？")
            query = CallbackQuery(id="q-real", from_user=USER, chat_instance="ci", message=shown,
                                  data=start["callback_data"])
            query.set_bot(app.bot)
            await app.process_update(Update(21, callback_query=query))
            await app.process_update(command(app.bot, "/cancel"))
    asyncio.run(scenario())
    assert request_recorder.unexpected == []
    texts = [p["text"] for p in request_recorder.sent()]
    assert any("<b>找回用户名</b>" in t for t in texts)  # the FAQ answer, bold rendered as HTML
    assert request_recorder.named("answerCallbackQuery") == [{"callback_query_id": "q-real"}]
    assert "姓名" in texts[-2]  # the flow's first prompt
    assert engine.store.get(session_id(42)).get("flow") is None  # /cancel ended it
