"""The help-desk bridge end to end: a user asks 转人工 through the real engine and web API, a help
desk lists, answers and closes the hand-off over /api/handoffs, and receives signed webhooks for
the lifecycle — verified by a real local receiver. Also: the user's turn never waits for a webhook."""
from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from accounts.local import LocalAccountClient
from channels.app import create_app
from handlers.handoff_service import build_service, memory_service, user_topic
from handlers.helpdesk import HandoffWebhook, attach
from handlers.sessions import storage_key
from support import Chat, make_engine
from handlers.types import Message
from tests.webhook_receiver import Receiver, poll

SECRET = "whsec-bridge-0123456789abcdef"
TOKEN = "hd-token-0123456789abcdefghijkl"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PHONE = "13800138001"


def pushed(service, session_id: str) -> list[dict]:
    """Every reply pushed to a web session so far: what GET /api/chat/events streams to its widget."""
    events = asyncio.run(service.bus.read(user_topic(storage_key(session_id)), "0", 0))
    return [reply for _, batch in events for reply in batch["replies"]]


@pytest.fixture
def acc():
    client = LocalAccountClient()
    yield client
    client.close()


def hook_conf(url: str, **kw) -> dict:
    return {"webhook_url": url, "webhook_secret": SECRET, "webhook_backoff": 0.01, **kw}


def hook_cfg(url: str, **kw) -> dict:
    return {"handoff": hook_conf(url, **kw)}


def say(client: TestClient, session: str, text: str) -> list[dict]:
    r = client.post("/api/chat", json={"session_id": session, "text": text})
    assert r.status_code == 200, r.text
    return r.json()["replies"]


def texts(replies: list[dict]) -> str:
    return "\n".join(r["text"] for r in replies)


def test_full_lifecycle_over_the_api_with_signed_webhooks(acc, tmp_path):
    service = memory_service()   # the app wires its own delivery: the user's channel
    cfg = {"web": {"session_secret": "test-secret-0123456789abcdef0123456789"}, "telegram": {"token": ""},
           "handoff": {"api_token": TOKEN}}
    with Receiver(SECRET) as rx:
        hook = attach(service, hook_cfg(rx.url))
        assert isinstance(hook, HandoffWebhook)
        engine = make_engine(acc, data_dir=tmp_path, handoffs=service)
        with TestClient(create_app(cfg, engine=engine)) as c:
            session = c.post("/api/session").json()["session_id"]
            engine_session = session.rsplit(".", 1)[0]
            say(c, session, "忘记密码怎么办")
            assert "排在第 1 位" in texts(say(c, session, "转人工"))

            # the help desk sees it waiting, with the masked transcript
            [item] = c.get("/api/handoffs?status=waiting", headers=AUTH).json()["handoffs"]
            assert item["channel"] == "web" and item["reason"] == "user_request"
            detail = c.get(f"/api/handoffs/{item['id']}", headers=AUTH).json()
            assert ["用户", "忘记密码怎么办"] in detail["handoff"]["transcript"]

            # what the user says now goes to the hand-off (and the webhook), masked
            assert "已收到" in texts(say(c, session, f"我的手机号 {PHONE} 收不到验证码"))

            # the help desk answers: the user gets it like a console reply, on the widget's event stream
            r = c.post(f"/api/handoffs/{item['id']}/messages", headers=AUTH,
                       json={"text": "您好，请问您的用户名是什么？", "author": "王芳"})
            assert r.status_code == 201, r.text
            claimed, reply = pushed(service, engine_session)
            assert "王芳" in claimed["text"]
            assert reply["text"] == "您好，请问您的用户名是什么？" and reply["author"] == "人工客服 王芳"
            assert [h["id"] for h in c.get("/api/handoffs?status=active", headers=AUTH).json()["handoffs"]] \
                == [item["id"]]

            # while a person is on it, the bot stays quiet and the agent sees the answer
            assert say(c, session, "用户名是 zhangsan") == []
            messages = c.get(f"/api/handoffs/{item['id']}", headers=AUTH).json()["messages"]
            assert [m["kind"] for m in messages] == ["user", "system", "agent", "user"]
            assert messages[0]["text"] == "我的手机号 138****8001 收不到验证码"

            # closed by the help desk: the user is told, and the bot answers again
            r = c.post(f"/api/handoffs/{item['id']}/close", headers=AUTH, json={"resolution": "solved"})
            assert r.status_code == 200 and r.json()["handoff"]["status"] == "closed"
            assert "结束" in pushed(service, engine_session)[-1]["text"]
            assert "找回用户名" in texts(say(c, session, "忘记用户名怎么办"))
            assert c.get("/api/handoffs?status=waiting", headers=AUTH).json() == {"handoffs": []}
        hook.close(timeout=10)

        reqs = rx.wait_for(4)
        assert len(reqs) == 4 and all(r["signature_ok"] for r in reqs)
        events = rx.events()
        assert [e["type"] for e in events] == ["handoff.created", "handoff.message", "handoff.message",
                                               "handoff.closed"]
        assert len({e["id"] for e in events}) == 4
        assert [r["headers"]["x-event-id"] for r in reqs] == [e["id"] for e in events]
        created, first, second, closed = events
        assert created["data"]["handoff"]["id"] == item["id"] and created["data"]["handoff"]["status"] == "waiting"
        assert created["data"]["handoff"]["transcript"][0] == ["用户", "忘记密码怎么办"]
        assert first["data"]["message"]["text"] == "我的手机号 138****8001 收不到验证码"
        assert first["data"]["message"]["kind"] == "user" and second["data"]["message"]["text"] == "用户名是 zhangsan"
        assert closed["data"]["handoff"]["status"] == "closed" and closed["data"]["handoff"]["resolution"] == "solved"
        for r in reqs:   # never the user's address or personal data in clear
            assert PHONE.encode() not in r["body"] and engine_session.encode() not in r["body"]
            assert b'"address"' not in r["body"] and b"session_key" not in r["body"]


def test_user_leaving_sends_handoff_closed_as_abandoned(acc, tmp_path):
    service = memory_service()
    with Receiver(SECRET) as rx:
        hook = attach(service, hook_cfg(rx.url))
        chat = Chat(make_engine(acc, data_dir=tmp_path, handoffs=service))
        chat.say("转人工")
        chat.say("取消转人工")
        assert "已取消转人工" in chat.text
        hook.close(timeout=10)
        rx.wait_for(2)
        closed = rx.events()[-1]
        assert closed["type"] == "handoff.closed"
        assert closed["data"]["handoff"]["status"] == "abandoned"
        assert closed["data"]["handoff"]["resolution"] == "user_left"


def test_the_users_turn_does_not_wait_for_a_slow_help_desk(acc, tmp_path):
    import threading

    hold = threading.Event()
    service = memory_service()
    with Receiver(SECRET, hold=hold) as rx:
        hook = attach(service, hook_cfg(rx.url))
        chat = Chat(make_engine(acc, data_dir=tmp_path, handoffs=service))
        chat.say("转人工")
        assert rx.arrived.wait(10)   # handoff.created is now stuck in the receiver
        # the next turn publishes handoff.message while that POST is still held open
        chat.send(Message.from_text("有人吗"))
        assert "已收到" in chat.text and not hold.is_set()
        assert hook.sender.pending() == 2 and hook.sender.stats["delivered"] == 0
        hold.set()
        poll(lambda: hook.sender.stats["delivered"] == 2)
        hook.close()


def test_an_unreachable_help_desk_never_fails_the_turn(acc, tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    service = memory_service()
    hook = attach(service, hook_cfg(f"http://127.0.0.1:{port}/hook", webhook_retries=1))
    chat = Chat(make_engine(acc, data_dir=tmp_path, handoffs=service))
    chat.say("转人工")
    assert "排在第 1 位" in chat.text
    chat.say("有人吗")
    assert "已收到" in chat.text and len(service.get(service.list("waiting")[0].id)[1]) == 1
    poll(lambda: hook.sender.stats["failed"] == 2)
    assert hook.sender.stats["attempts"] == 4
    hook.close()


def test_build_service_subscribes_the_configured_webhook(tmp_path):
    from handlers.handoffs import MemoryHandoffStore

    cfg = {"handoff": hook_conf("https://desk.example/hook"), "sessions": {"backend": "memory"}}
    service = build_service(cfg, store=MemoryHandoffStore())
    [hook] = [x for x in service.listeners if isinstance(x, HandoffWebhook)]
    assert hook.sender.conf.url == "https://desk.example/hook"
    hook.close(timeout=0)
    off = build_service({"handoff": {}, "sessions": {"backend": "memory"}}, store=MemoryHandoffStore())
    assert not [x for x in off.listeners if isinstance(x, HandoffWebhook)]


def test_agent_replies_and_claims_are_not_echoed_to_the_help_desk():
    service = memory_service()
    with Receiver(SECRET) as rx:
        hook = attach(service, hook_cfg(rx.url))
        from handlers.handoffs import NewHandoff

        h = service.open(NewHandoff(session_key="k", channel="telegram", address="12345", reason="user_request"))
        service.reply(h.id, "li", "您好")          # claims (system message) and replies (agent message)
        service.hand_back(h.id, "li")
        hook.close(timeout=10)
        rx.wait_for(2)
        events = rx.events()
        assert [e["type"] for e in events] == ["handoff.created", "handoff.closed"]
        assert events[1]["data"]["handoff"]["resolution"] == "back_to_bot"
        assert json.dumps(events).find("12345") == -1   # the Telegram chat id stays here


def test_what_staff_must_know_reaches_the_help_desk_as_a_note(acc, tmp_path):
    """The bot answering a queued user from the FAQ, and an agent's reply that did not reach the user, are lines for
    staff: the help desk gets them as handoff.note (never as the customer's handoff.message), masked."""
    from handlers.types import Undeliverable

    def deliver(channel, address, replies):
        raise Undeliverable(f"用户已取消关注公众号（{PHONE}）")

    service = memory_service(deliver=deliver)
    with Receiver(SECRET) as rx:
        hook = attach(service, hook_cfg(rx.url))
        chat = Chat(make_engine(acc, data_dir=tmp_path, handoffs=service))
        chat.say("转人工")
        chat.say("忘记用户名怎么办")
        [h] = service.list("waiting")
        service.reply(h.id, "li", "您好")
        hook.close(timeout=10)
        rx.wait_for(5)
        events = rx.events()   # (the claim's 已接入 did not reach the user either)
        assert [e["type"] for e in events] == ["handoff.created", "handoff.message"] + ["handoff.note"] * 3
        answered, _, undelivered = (e["data"]["message"] for e in events[2:])
        assert answered["kind"] == "system" and "忘记用户名怎么办？" in answered["text"]
        assert undelivered["kind"] == "system" and "没有送达用户" in undelivered["text"]
        assert PHONE not in undelivered["text"] and "138****" in undelivered["text"]

