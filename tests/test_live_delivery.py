"""Live delivery of staff replies: the widget's event stream on a real server (heartbeat,
Last-Event-ID replay, bad input), Redis delivery across two worker processes, and Telegram
pushes through the Bot API (recorded request, no network)."""
from __future__ import annotations

import secrets
import time

import pytest
import requests
import yaml
from fastapi.testclient import TestClient

from accounts.local import LocalAccountClient
from channels.app import create_app
from handlers.db import Database
from handlers.events import MemoryBus, RedisBus
from handlers.handoff_service import HandoffService
from handlers.handoffs import SqlHandoffStore
from handlers.staff import StaffStore
from support import make_engine
from support.events import EventReader
from support.servers import LiveServer, free_port, require_redis, start, stop, wait_for_url
from support.telegram import TOKEN, RecordingRequest

PASSWORD = "correct-horse-1"
DEADLINE = 15.0


def staff_session(base: str, name: str = "li") -> tuple[requests.Session, dict]:
    s = requests.Session()
    r = s.post(base + "/staff/login", data={"name": name, "password": PASSWORD}, allow_redirects=False)
    assert r.status_code == 303, r.text
    return s, {"X-CSRF-Token": s.get(base + "/staff/api/me").json()["csrf"]}


@pytest.fixture
def live(tmp_path, monkeypatch):
    import channels.staff
    import channels.web
    for module in (channels.web, channels.staff):  # closed test streams are noticed at the next heartbeat
        monkeypatch.setattr(module, "HEARTBEAT", 0.5)
    db = Database(f"sqlite:///{tmp_path}/bot.db")
    staff = StaffStore(db)
    staff.add("li", "agent", PASSWORD)
    service = HandoffService(SqlHandoffStore(db), MemoryBus(), agents_online=lambda: len(staff.online()))
    accounts = LocalAccountClient()
    engine = make_engine(accounts, data_dir=tmp_path, handoffs=service)
    cfg = {"web": {"session_secret": "live-test-secret-0123456789abcdef"}, "telegram": {"token": ""}}
    with LiveServer(create_app(cfg, engine=engine, staff=staff)) as server:
        yield server, service
    accounts.close()


def test_widget_stream_gets_staff_replies_and_replays_after_a_reconnect(live):
    server, service = live
    sid = requests.post(server.url + "/api/session").json()["session_id"]
    r = requests.post(server.url + "/api/chat", json={"session_id": sid, "text": "转人工"}).json()
    assert r["replies"][0]["intent"] == "human_agent"
    reader = EventReader(server.url + "/api/chat/events", {"session_id": sid})
    assert reader.status == 200 and reader._resp.headers["content-type"].startswith("text/event-stream")
    agent, csrf = staff_session(server.url)
    [h] = service.list("waiting")
    agent.post(f"{server.url}/staff/api/handoffs/{h.id}/claim", headers=csrf)
    agent.post(f"{server.url}/staff/api/handoffs/{h.id}/messages", json={"text": "您好，<b>我是小李</b>"}, headers=csrf)
    reader.wait_for(lambda ev: len(ev) == 2, "claim notice and reply")
    first_id, kind, data = reader.events[1]
    assert kind == "reply" and data["replies"][0]["author"] == "人工客服 li"
    assert data["replies"][0]["text"] == "您好，<b>我是小李</b>"
    reader.close()
    # offline: two more replies; reconnecting with Last-Event-ID gets exactly those
    for text in ("第二条", "第三条"):
        agent.post(f"{server.url}/staff/api/handoffs/{h.id}/messages", json={"text": text}, headers=csrf)
    again = EventReader(server.url + "/api/chat/events", {"session_id": sid}, {"Last-Event-ID": first_id})
    again.wait_for(lambda ev: len(ev) >= 2, "the missed replies")
    time.sleep(0.3)
    assert again.texts() == ["第二条", "第三条"]
    again.close()
    # after a reload the widget passes the id in the query (EventSource cannot set the header)
    third = EventReader(server.url + "/api/chat/events", {"session_id": sid, "last_event_id": first_id})
    third.wait_for(lambda ev: len(ev) >= 2, "the missed replies (query)")
    third.close()
    # the user's answer reaches the agent; closing tells the user and the bot answers again
    assert requests.post(server.url + "/api/chat", json={"session_id": sid, "text": "我的用户名忘了"}).json()["replies"] == []
    msgs = agent.get(f"{server.url}/staff/api/handoffs/{h.id}").json()["messages"]
    assert msgs[-1]["kind"] == "user" and msgs[-1]["text"] == "我的用户名忘了"
    agent.post(f"{server.url}/staff/api/handoffs/{h.id}/close", json={"resolution": "solved"}, headers=csrf)
    r = requests.post(server.url + "/api/chat", json={"session_id": sid, "text": "忘记用户名怎么办"}).json()
    assert "找回用户名" in r["replies"][0]["text"]


def test_stream_refuses_bad_sessions_and_ids(live):
    server, _ = live
    r = requests.get(server.url + "/api/chat/events", params={"session_id": "forged.x"}, timeout=10)
    assert r.status_code == 404 and r.json()["error"] == "unknown_session"
    r = requests.get(server.url + "/api/chat/events", timeout=10)
    assert r.status_code == 422 and r.json()["error"] == "missing_session"
    sid = requests.post(server.url + "/api/session").json()["session_id"]
    r = requests.get(server.url + "/api/chat/events", params={"session_id": sid},
                     headers={"Last-Event-ID": "1; DROP"}, timeout=10)
    assert r.status_code == 422 and r.json()["error"] == "invalid_event_id"


class Silent:
    def handle(self, session_id, message):
        return []


def test_stream_connections_are_rate_limited(tmp_path):
    app = create_app({"web": {"session_secret": "rl-test-secret-0123456789abcdef", "events_per_minute": 2},
                      "telegram": {"token": ""}, "handoff": {"database_url": f"sqlite:///{tmp_path}/b.db"}},
                     engine=Silent())
    client = TestClient(app)
    for _ in range(2):
        assert client.get("/api/chat/events", params={"session_id": "forged.x"}).status_code == 404
    r = client.get("/api/chat/events", params={"session_id": "forged.x"})
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"


def test_heartbeat_keeps_the_stream_alive(live):
    server, _ = live
    sid = requests.post(server.url + "/api/session").json()["session_id"]
    reader = EventReader(server.url + "/api/chat/events", {"session_id": sid})
    deadline = time.monotonic() + DEADLINE
    while reader.comments < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    reader.close()
    assert reader.comments >= 2


# ---- Redis across worker processes ---------------------------------------------------------

def test_a_reply_reaches_the_user_whichever_worker_holds_the_stream(tmp_path):
    require_redis()
    prefix = f"test-{secrets.token_hex(4)}:"
    import settings
    StaffStore(Database(f"sqlite:///{tmp_path}/bot.db")).add("li", "agent", PASSWORD)
    procs, urls = [], []
    try:
        for name in ("a", "b"):  # two `python bot.py serve` processes sharing Redis and the database
            port = free_port()
            cfg = settings.load()
            cfg["sessions"].update(backend="redis", redis_url="redis://127.0.0.1:6379/0", redis_prefix=prefix)
            cfg["handoff"].update(database_url=f"sqlite:///{tmp_path}/bot.db", hours="", webhook_url="")
            cfg["web"].update(port=port, public_url=f"http://127.0.0.1:{port}", secret_file=str(tmp_path / "web.key"),
                              session_secret="two-workers-secret-0123456789abcdef")
            cfg["telegram"]["token"] = ""
            cfg["logging"]["level"] = "WARNING"
            path = tmp_path / f"config-{name}.yaml"
            path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
            procs.append(start(["--config", str(path), "serve"]))
            urls.append(wait_for_url(procs[-1]).rstrip("/"))
        a, b = urls
        # the user talks to worker A and holds the stream there
        sid = requests.post(a + "/api/session").json()["session_id"]
        requests.post(a + "/api/chat", json={"session_id": sid, "text": "转人工"})
        reader = EventReader(a + "/api/chat/events", {"session_id": sid})
        # the agent works on worker B
        agent, csrf = staff_session(b)
        [h] = agent.get(b + "/staff/api/handoffs").json()["handoffs"]
        r = agent.post(f"{b}/staff/api/handoffs/{h['id']}/messages", json={"text": "来自另一个进程的回复"}, headers=csrf)
        assert r.status_code == 200, r.text
        reader.wait_for(lambda ev: "来自另一个进程的回复" in [x["text"] for _, _, d in ev for x in d["replies"]],
                        "the reply through Redis")
        reader.close()
        # and the user's next message, sent to worker B, reaches the agent's console on A
        assert requests.post(b + "/api/chat", json={"session_id": sid, "text": "收到，谢谢"}).json()["replies"] == []
        assert agent.get(f"{a}/staff/api/handoffs/{h['id']}").json()["messages"][-1]["text"] == "收到，谢谢"
    finally:
        for proc in procs:
            stop(proc)
        import redis
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)


def test_redis_bus_keeps_order_and_replays(tmp_path):
    require_redis()
    import asyncio
    bus = RedisBus("redis://127.0.0.1:6379/0", prefix=f"test-{secrets.token_hex(4)}:ev:")
    topic = "user:abc"
    assert bus.last_id(topic) == "0"
    ids = [bus.publish(topic, {"n": i}) for i in range(3)]
    got = asyncio.run(bus.read(topic, "0", 1))
    assert [e["n"] for _, e in got] == [0, 1, 2] and [i for i, _ in got] == ids
    assert [e["n"] for _, e in asyncio.run(bus.read(topic, ids[0], 1))] == [1, 2]
    assert asyncio.run(bus.read(topic, ids[-1], 0.2)) == []
    assert asyncio.run(bus.read(topic, "garbage", 0.2))[0][1] == {"n": 0}
    bus._sync.delete(bus._key(topic))
    bus.close()


# ---- Telegram -----------------------------------------------------------------------------------

def test_an_agent_reply_reaches_telegram_through_the_bot_api(tmp_path):
    recorder = RecordingRequest()
    db = Database(f"sqlite:///{tmp_path}/bot.db")
    staff = StaffStore(db)
    staff.add("li", "agent", PASSWORD)
    service = HandoffService(SqlHandoffStore(db), MemoryBus())
    accounts = LocalAccountClient()
    engine = make_engine(accounts, data_dir=tmp_path, handoffs=service)
    cfg = {"telegram": {"token": TOKEN, "webhook_secret": "s3cret-token_value", "webhook_path": "/telegram/webhook"},
           "web": {"session_secret": "tg-live-secret-0123456789abcdef0123"}}
    update = {"update_id": 1, "message": {"message_id": 1, "date": 1_800_000_000, "text": "转人工",
                                          "chat": {"id": 42, "type": "private"},
                                          "from": {"id": 42, "is_bot": False, "first_name": "张"}}}
    with TestClient(create_app(cfg, engine=engine, telegram_request=recorder, staff=staff)) as client:
        r = client.post("/telegram/webhook", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-token_value"})
        assert r.status_code == 200
        [h] = service.list("waiting")
        assert (h.channel, h.address) == ("telegram", "42")
        assert client.post("/staff/login", data={"name": "li", "password": PASSWORD}, follow_redirects=False).status_code == 303
        csrf = {"X-CSRF-Token": client.get("/staff/api/me").json()["csrf"]}
        before = len(recorder.sent())
        r = client.post(f"/staff/api/handoffs/{h.id}/messages", json={"text": "您好 <我是小李> & 同事"}, headers=csrf)
        assert r.status_code == 200
        sent = recorder.sent()[before:]
        assert [m["chat_id"] for m in sent] == [42, 42]          # the claim notice, then the reply
        assert "人工客服 li 已接入" in sent[0]["text"]
        assert sent[1]["text"] == "<b>人工客服 li</b>：\n\n您好 &lt;我是小李&gt; &amp; 同事"
        client.post(f"/staff/api/handoffs/{h.id}/close", json={"resolution": "solved"}, headers=csrf)
        assert "人工客服已结束本次对话" in recorder.sent()[-1]["text"]
        assert recorder.unexpected == []
    accounts.close()


def test_memory_bus_ids_from_before_a_restart_replay_what_is_kept():
    import asyncio
    before = MemoryBus()
    old_id = before.publish("user:k", {"n": 0})
    after_restart = MemoryBus()
    after_restart._epoch = str(int(after_restart._epoch) + 1)   # a later process start
    first = after_restart.publish("user:k", {"n": 1})
    # the widget's saved id is from the old process: it must still get the new event
    assert [e["n"] for _, e in asyncio.run(after_restart.read("user:k", old_id, 0))] == [1]
    assert asyncio.run(after_restart.read("user:k", first, 0)) == []
    assert after_restart.last_id("user:k") == first and after_restart.last_id("other") == "0"
