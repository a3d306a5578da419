"""The shared channel interface: the one input check, numbered buttons, and push (``Channel.send``)
for the web, console and (in test_telegram.py) Telegram channels."""
from __future__ import annotations

import asyncio
import io

import pytest
from fastapi.testclient import TestClient

from channels.app import create_app
from channels.base import Channel, InputRejected, buttons_as_text, clean_payload, clean_text, numbered_answer
from channels.console import ConsoleChannel
from handlers.handoff_service import user_topic
from handlers.sessions import storage_key
from handlers.types import Button, Reply

CFG = {"web": {"session_secret": "base-test-secret-0123456789abcdef0123"}, "telegram": {"token": ""}}


class SilentEngine:
    def handle(self, session_id, message):
        return [Reply("好的")]


def test_clean_text_and_payload_reject_with_a_code_and_a_chinese_message():
    assert clean_text(" 你好\x00\x07 ", 10) == "你好"
    for value, code in [(12, "invalid_text"), (" \x01 ", "empty_text"), ("长" * 11, "text_too_long")]:
        with pytest.raises(InputRejected) as e:
            clean_text(value, 10)
        assert e.value.code == code and "\u4e00" <= e.value.message[0] <= "\u9fff"
    assert clean_payload("faq:x") == "faq:x"
    for bad in ["", "a\nb", "x" * 301, None]:
        with pytest.raises(InputRejected, match="invalid_payload"):
            clean_payload(bad)


def test_buttons_as_text_and_numbered_answers_map_back_to_payloads():
    reply = Reply("**请选择**：", (Button("甲", "a"), Button("乙", "b")))
    assert buttons_as_text(reply, start=3) == "请选择：\n  3. 甲\n  4. 乙"
    assert numbered_answer(" 2 ", reply.buttons) == "b"
    assert numbered_answer("甲", reply.buttons) is None and numbered_answer("1", ()) is None
    with pytest.raises(InputRejected) as e:
        numbered_answer("3", reply.buttons)
    assert e.value.code == "no_such_option" and "1–2" in e.value.message
    assert numbered_answer("123456", reply.buttons) is None  # an SMS code at a prompt with a button is data
    with pytest.raises(InputRejected) as e:
        numbered_answer("2", reply.buttons[:1])
    assert e.value.message == "没有编号 2 的选项，请输入编号 1。"   # not "1–1 之间"


def test_a_channel_must_implement_send():
    class Mute(Channel):
        name = "mute"
    with pytest.raises(TypeError):
        Mute()  # type: ignore[abstract]


def test_web_send_publishes_on_the_bus_for_that_session_with_signed_payloads():
    with TestClient(create_app(CFG, engine=SilentEngine())) as client:
        web, bus = client.app.state.channels["web"], client.app.state.bus
        assert set(client.app.state.channels) == {"web"}  # no Telegram token: not mounted
        asyncio.run(web.send("s1", [Reply("**客服**：您好", buttons=(Button("好的", "ok"),))]))
        [(_, batch)] = asyncio.run(bus.read(user_topic(storage_key("s1")), "0", 0))
        assert asyncio.run(bus.read(user_topic(storage_key("s2")), "0", 0)) == []
        [reply] = batch["replies"]
        assert reply["text"] == "**客服**：您好" and reply["blocks"][0]["lines"][0][0] == {"text": "客服", "bold": True}
        assert web.signer.open_payload("s1", reply["buttons"][0]["payload"]) == "ok"
        assert web.signer.open_payload("s2", reply["buttons"][0]["payload"]) is None


def test_console_send_prints_numbered_replies():
    out = io.StringIO()
    asyncio.run(ConsoleChannel(out).send("console-1", [Reply("人工客服已接入", (Button("谢谢", "thanks"),))]))
    assert out.getvalue() == "助手：人工客服已接入\n  1. 谢谢\n\n"


def test_a_reply_has_one_json_shape_with_every_field_but_the_internal_entry():
    from dataclasses import fields

    from channels.web import replies_json

    reply = Reply("**好**", (Button("是", "yes"),), intent="i", flow="f", entry="e.x", expects_image=True, author="张")
    shape = reply.to_json(lambda p: "signed:" + p)
    assert set(shape) == {f.name for f in fields(Reply)} - {"entry"}
    assert shape["buttons"] == [{"label": "是", "payload": "signed:yes"}] and shape["author"] == "张"
    web = replies_json([reply], lambda p: "signed:" + p)["replies"][0]
    assert web == {**shape, "blocks": web["blocks"]} and web["blocks"][0]["lines"][0][0]["bold"] is True
