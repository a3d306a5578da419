"""The web chat API over a recording engine: contract shape, sessions, limits and clear 4xx errors."""
from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from channels.app import create_app
from channels.signing import Signer
from channels.web import replies_json
from handlers.types import Button, Message, Reply
from support import RecordingEngine

KNOWN_PAYLOADS = {"faq:recover_username", "flow:cancel"}


def answer(message: Message) -> list[Reply]:
    """The engine double's answers, from simple rules."""
    if message.kind == "image":
        return [Reply(f"收到图片 {len(message.image.data)} 字节", flow="identity")]
    if message.kind == "button":
        if message.payload not in KNOWN_PAYLOADS:
            return [Reply("这个按钮已失效，请重新输入您的问题。")]
        return [Reply("好的", intent="recover_account", flow="recover_username")]
    return [Reply("**您好**\n\n- 一\n- 二", buttons=(Button("找回用户名", "faq:recover_username"),),
                  intent="greeting"),
            Reply("请上传照片", flow="identity", expects_image=True)]


@pytest.fixture()
def cfg(tmp_path):
    return {"web": {"max_json_bytes": 4096, "max_body_bytes": 200_000, "max_text_chars": 50,
                    "session_secret": "test-secret-0123456789abcdef0123456789"},
            "telegram": {"token": ""}}


@pytest.fixture()
def engine():
    return RecordingEngine(answer)


@pytest.fixture()
def client(cfg, engine):
    with TestClient(create_app(cfg, engine=engine)) as c:
        yield c


def new_session(client) -> str:
    r = client.post("/api/session")
    assert r.status_code == 201
    return r.json()["session_id"]


def assert_error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code
    assert any("\u4e00" <= ch <= "\u9fff" for ch in body["message"]), body  # a Chinese message
    return body


def test_chat_round_trip_has_the_contract_shape(client, engine):
    sid = new_session(client)
    r = client.post("/api/chat", json={"session_id": sid, "text": "  你好  "})
    assert r.status_code == 200
    body = r.json()
    assert body["intent"] == "greeting" and body["flow"] == "identity" and body["expects_image"] is True
    first = body["replies"][0]
    assert first["text"] == "**您好**\n\n- 一\n- 二"
    [button] = first["buttons"]
    assert button["label"] == "找回用户名" and button["payload"].startswith("faq:recover_username~")
    assert first["blocks"][0] == {"type": "p", "lines": [[{"text": "您好", "bold": True}]]}
    assert first["blocks"][1]["type"] == "ul"
    # the engine got the text trimmed, under the id the server issued, off the event loop
    session_id, message = engine.calls[-1]
    assert message == Message.from_text("你好", channel="web", address=session_id, client="ip:testclient")
    assert sid.startswith(session_id + ".")
    assert engine.threads and "MainThread" not in engine.threads


def first_payload(client, sid: str) -> str:
    """The payload of the first button the bot offers (as signed for this session)."""
    r = client.post("/api/chat", json={"session_id": sid, "text": "你好"})
    return r.json()["replies"][0]["buttons"][0]["payload"]


def test_button_and_upload_reach_the_engine(client, engine):
    sid = new_session(client)
    payload = first_payload(client, sid)
    assert payload.startswith("faq:recover_username~")
    r = client.post("/api/chat", json={"session_id": sid, "payload": payload})
    assert r.json()["flow"] == "recover_username"
    server_sid = sid.rsplit(".", 1)[0]
    assert engine.calls[-1] == (server_sid, Message.from_button("faq:recover_username", channel="web",
                                                                address=server_sid, client="ip:testclient"))
    r = client.post("/api/upload", data={"session_id": sid},
                    files={"file": ("../../etc/id.png", b"\x89PNG\r\n\x1a\nxyz", "image/png")})
    assert r.status_code == 200, r.text
    msg = engine.calls[-1][1]
    assert msg.kind == "image" and msg.image.data == b"\x89PNG\r\n\x1a\nxyz"
    assert msg.image.filename == "id.png" and msg.image.content_type == "image/png"


def test_sessions_are_unguessable_and_forgeries_refused(client, engine):
    a, b = new_session(client), new_session(client)
    assert a != b and len(a.rsplit(".", 1)[1]) >= 32
    for forged in ["s0001", "s0001.AAAA", a[:-1] + ("A" if a[-1] != "A" else "B"), "x" * 300, "<script>"]:
        assert_error(client.post("/api/chat", json={"session_id": forged, "text": "hi"}), 404, "unknown_session")
    assert_error(client.post("/api/chat", json={"session_id": 12, "text": "hi"}), 404, "unknown_session")
    assert_error(client.post("/api/chat", json={"text": "hi"}), 422, "missing_session")
    assert_error(client.post("/api/upload", data={"session_id": "nope.x"},
                             files={"file": ("a.png", b"x", "image/png")}), 404, "unknown_session")
    assert engine.calls == []


def test_a_session_survives_a_restart_with_the_same_secret(cfg, engine):
    with TestClient(create_app(cfg, engine=engine)) as c1:
        sid = new_session(c1)
    with TestClient(create_app(cfg, engine=engine)) as c2:
        assert c2.post("/api/chat", json={"session_id": sid, "text": "还在吗"}).status_code == 200
    assert engine.calls[-1][0] == sid.rsplit(".", 1)[0] and engine.calls[-1][1].text == "还在吗"  # the same session
    other = {**cfg, "web": {**cfg["web"], "session_secret": "another-secret-0123456789abcdef0123"}}
    with TestClient(create_app(other, engine=engine)) as c3:
        assert_error(c3.post("/api/chat", json={"session_id": sid, "text": "hi"}), 404, "unknown_session")


def test_generated_secret_is_kept_in_the_secret_file(tmp_path, engine):
    key = tmp_path / "web.key"
    cfg = {"web": {"secret_file": str(key)}}
    with TestClient(create_app(cfg, engine=engine)) as c1:
        sid = new_session(c1)
    assert key.stat().st_mode & 0o077 == 0
    with TestClient(create_app(cfg, engine=engine)) as c2:
        assert c2.post("/api/chat", json={"session_id": sid, "text": "hi"}).status_code == 200
    assert engine.calls[-1][0] == sid.rsplit(".", 1)[0]   # the restarted app read the same secret: the same session


@pytest.mark.parametrize("body,code", [
    (b"{not json", "invalid_json"),
    (b"", "invalid_json"),
    (b"[1, 2]", "invalid_json"),
    (b"\xff\xfe\x00binary", "invalid_json"),
])
def test_malformed_json_is_a_clear_400(client, body, code):
    r = client.post("/api/chat", content=body, headers={"Content-Type": "application/json"})
    assert_error(r, 400, code)


def test_wrong_content_type_is_415(client):
    sid = new_session(client)
    r = client.post("/api/chat", content=json.dumps({"session_id": sid, "text": "hi"}),
                    headers={"Content-Type": "text/plain"})
    assert_error(r, 415, "unsupported_media_type")
    assert_error(client.post("/api/upload", json={"session_id": sid}), 415, "unsupported_media_type")


def test_message_shape_errors(client, engine):
    sid = new_session(client)
    assert_error(client.post("/api/chat", json={"session_id": sid}), 422, "invalid_message")
    assert_error(client.post("/api/chat", json={"session_id": sid, "text": "a", "payload": "flow:cancel"}),
                 422, "invalid_message")
    assert_error(client.post("/api/chat", json={"session_id": sid, "text": " \n\t\x00 "}), 422, "empty_text")
    assert_error(client.post("/api/chat", json={"session_id": sid, "text": ["a"]}), 422, "invalid_text")
    assert engine.calls == []


def test_over_long_text_gets_a_chinese_message_not_a_500(client, engine):
    sid = new_session(client)
    body = assert_error(client.post("/api/chat", json={"session_id": sid, "text": "字" * 51}), 422, "text_too_long")
    assert "50" in body["message"] and body["max_chars"] == 50
    assert client.post("/api/chat", json={"session_id": sid, "text": "字" * 50}).status_code == 200


@pytest.mark.parametrize("payload", ["", "a" * 301, "a\x00b", 7, ["x"]])
def test_malformed_payload_is_refused(client, engine, payload):
    sid = new_session(client)
    assert_error(client.post("/api/chat", json={"session_id": sid, "payload": payload}), 422, "invalid_payload")
    assert engine.calls == []


def test_payloads_never_offered_to_this_session_are_refused(client, engine):
    sid, other = new_session(client), new_session(client)
    offered = first_payload(client, sid)
    calls = len(engine.calls)
    for payload in ["faq:recover_username", "<script>alert(1)</script>", "level:博士研究生",
                    "faq:no_such_entry~" + offered.rsplit("~", 1)[1], offered + "x"]:
        assert_error(client.post("/api/chat", json={"session_id": sid, "payload": payload}), 422, "unknown_payload")
    # a button is bound to the session it was offered to
    assert_error(client.post("/api/chat", json={"session_id": other, "payload": offered}), 422, "unknown_payload")
    assert len(engine.calls) == calls


def test_an_old_offered_button_still_reaches_the_engine(client, engine):
    sid = new_session(client)
    offered = first_payload(client, sid)
    client.post("/api/chat", json={"session_id": sid, "text": "别的问题"})
    r = client.post("/api/chat", json={"session_id": sid, "payload": offered})
    assert r.status_code == 200 and engine.calls[-1][1].payload == "faq:recover_username"


def test_chinese_payloads_round_trip(cfg):
    eng = RecordingEngine(lambda message: [Reply("请选择学历层次：", buttons=(Button("博士研究生", "level:博士研究生"),))])
    with TestClient(create_app(cfg, engine=eng)) as c:
        sid = new_session(c)
        payload = first_payload(c, sid)
        assert c.post("/api/chat", json={"session_id": sid, "payload": payload}).status_code == 200
        assert eng.calls[-1][1].kind == "button" and eng.calls[-1][1].payload == "level:博士研究生"


def test_oversized_bodies_are_413(client, engine):
    sid = new_session(client)
    big = json.dumps({"session_id": sid, "text": "x" * 5000})
    assert_error(client.post("/api/chat", content=big, headers={"Content-Type": "application/json"}),
                 413, "body_too_large")

    def chunks():  # no Content-Length: the limit holds while streaming too
        for _ in range(10):
            yield b" " * 1000
    assert_error(client.post("/api/chat", content=chunks(), headers={"Content-Type": "application/json"}),
                 413, "body_too_large")
    r = client.post("/api/upload", data={"session_id": sid}, files={"file": ("a.jpg", b"\xff" * 250_000, "image/jpeg")})
    assert_error(r, 413, "body_too_large")
    assert engine.calls == []


def test_upload_errors(client, engine):
    sid = new_session(client)
    assert_error(client.post("/api/upload", data={"session_id": sid}, files={"x": ("a.jpg", b"1", "image/jpeg")}),
                 422, "missing_file")
    assert_error(client.post("/api/upload", data={"session_id": sid}, files={"file": ("a.jpg", b"", "image/jpeg")}),
                 422, "empty_file")
    assert engine.calls == []


def test_unknown_route_and_method_are_json_4xx(client):
    assert_error(client.get("/api/nothing"), 404, "not_found")
    assert_error(client.get("/api/chat"), 405, "method_not_allowed")


def test_engine_crash_is_a_500_with_a_chinese_message(cfg):
    def boom(message):
        raise RuntimeError("boom 110101199003074258")

    with TestClient(create_app(cfg, engine=RecordingEngine(boom)), raise_server_exceptions=False) as c:
        sid = new_session(c)
        r = c.post("/api/chat", json={"session_id": sid, "text": "hi"})
        assert_error(r, 500, "internal_error")
        assert "110101199003074258" not in r.text and "boom" not in r.text   # the error's text stays inside


def test_static_pages_and_health(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    js = client.get("/widget.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("application/javascript")
    page = client.get("/")
    assert page.status_code == 200 and "学信网" in page.text
    assert page.text.count('src="/widget.js"') == 1
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_cors_only_for_configured_origins(cfg, engine):
    cfg["web"]["cors_origins"] = ["https://help.example.edu.cn"]
    with TestClient(create_app(cfg, engine=engine)) as c:
        pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        ok = c.options("/api/chat", headers={"Origin": "https://help.example.edu.cn", **pre})
        assert ok.headers.get("access-control-allow-origin") == "https://help.example.edu.cn"
        bad = c.options("/api/chat", headers={"Origin": "https://evil.example.com", **pre})
        assert "access-control-allow-origin" not in bad.headers
        r = c.post("/api/session", headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in r.headers


def test_no_cors_headers_without_configured_origins(client):
    r = client.post("/api/session", headers={"Origin": "https://help.example.edu.cn"})
    assert "access-control-allow-origin" not in r.headers


def test_telegram_route_absent_without_token(client):
    assert client.post("/telegram/webhook", json={}).status_code == 404


def test_signer_rejects_tampering():
    t = Signer(b"k" * 32)
    token = t.issue("abc")
    assert t.verify(token) == "abc"
    assert t.verify("abd." + token.split(".")[1]) is None
    assert Signer(b"j" * 32).verify(token) is None
    assert t.verify(None) is None and t.verify("") is None and t.verify(".") is None
    signed = t.sign_payload("abc", "yes")
    assert t.open_payload("abc", signed) == "yes"
    assert t.open_payload("abd", signed) is None and t.open_payload("abc", "yes") is None
    assert t.open_payload("abc", "~" + signed.rsplit("~", 1)[1]) is None


def test_replies_json_intent_and_flow():
    body = replies_json([Reply("a", intent="x", flow="f"), Reply("b", intent="y")])
    assert body["intent"] == "x" and body["flow"] is None
    assert replies_json([])["replies"] == [] and replies_json([])["intent"] is None


def test_chat_flood_gets_429_with_retry_after_per_conversation_and_per_address(cfg, engine, caplog):
    from handlers.limits import Limits, MemoryLimiter, Rule

    engine.limits = Limits(MemoryLimiter(), b"k" * 32, {"chat_per_session": Rule(3, 60), "chat_per_ip": Rule(7, 60),
                                                        "session_per_ip": Rule(4, 60)})
    with TestClient(create_app(cfg, engine=engine)) as c:
        first, second = new_session(c), new_session(c)
        codes = [c.post("/api/chat", json={"session_id": first, "text": "你好"}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]          # the conversation's limit
        r = c.post("/api/chat", json={"session_id": first, "text": "你好"})
        assert r.status_code == 429 and r.json()["error"] == "rate_limited" and "太频繁" in r.json()["message"]
        assert 1 <= int(r.headers["Retry-After"]) <= 60 and r.json()["retry_after"] == int(r.headers["Retry-After"])
        codes = [c.post("/api/chat", json={"session_id": second, "text": "你好"}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]               # the address's limit (7, refused ones counted) across conversations
        assert [c.post("/api/session").status_code for _ in range(3)] == [201, 201, 429]
    assert len(engine.calls) == 5


def test_deeply_nested_json_is_400_without_a_traceback(client, caplog):
    sid = new_session(client)
    body = '{"session_id": "%s", "text": %s"x"%s}' % (sid, "[" * 1900, "]" * 1900)
    r = client.post("/api/chat", content=body.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_json"
    assert "Traceback" not in caplog.text and not [rec for rec in caplog.records if rec.exc_info]


def test_readyz_reports_each_dependency(cfg, tmp_path):
    import socket

    from handlers.sessions import RedisStore, SqliteStore

    class Accounts:
        class config:  # noqa: N801 - the shape of HttpAccountClient.config
            base_url = ""

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    eng = RecordingEngine()
    eng.store, eng.accounts = SqliteStore(tmp_path / "s.db"), Accounts()
    Accounts.config.base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    with TestClient(create_app(cfg, engine=eng)) as c:
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready"
        assert set(r.json()["checks"]) == {"sessions", "handoffs", "accounts"}
        assert c.get("/healthz").status_code == 200
        listener.close()
        eng.store = RedisStore("redis://127.0.0.1:1/0", socket_timeout=0.3)
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["status"] == "not_ready"
        checks = r.json()["checks"]
        assert checks["sessions"] == {"ok": False, "error": "StoreError", "ms": checks["sessions"]["ms"]}
        assert checks["accounts"]["ok"] is False and checks["handoffs"]["ok"] is True
        assert c.get("/healthz").status_code == 200   # alive, just not ready
