"""The help-desk hand-off API over the real hand-off service (in-memory twin): auth, limits,
listing, masked detail, replies delivered like console replies, closing, and clear errors."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from channels.app import create_app
from settings import ConfigError
from handlers.handoff_service import memory_service
from handlers.handoffs import NewHandoff
from handlers.types import Message, Reply
from support import Outbox
from support.servers import require_redis

TOKEN = "hd-token-0123456789abcdefghijkl"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ZS_ID = "110101199903071239"


class EngineWithHandoffs:
    """The engine's surface the app needs (``handle``) plus its hand-off service."""

    def __init__(self, service) -> None:
        self.handoffs = service

    def handle(self, session_id: str, message: Message) -> list[Reply]:
        return [Reply("好的")]


def config(**handoff):
    return {"web": {"session_secret": "test-secret-0123456789abcdef0123456789"}, "telegram": {"token": ""},
            "handoff": {"api_token": TOKEN, **handoff}}


@pytest.fixture()
def outbox():
    return Outbox()


@pytest.fixture()
def service(outbox):
    return memory_service(deliver=outbox)


@pytest.fixture()
def client(service):
    with TestClient(create_app(config(), engine=EngineWithHandoffs(service))) as c:
        yield c


def open_handoff(service, address="sess-1", transcript=(("用户", "忘记密码怎么办"),)):
    return service.open(NewHandoff(session_key="k" + address, channel="web", address=address,
                                   reason="user_request", flow="reset_password", step="phone",
                                   topic="recover_account", transcript=tuple(transcript)))


def error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code
    assert any("\u4e00" <= ch <= "\u9fff" for ch in body["message"]), body
    return body


def test_api_is_off_without_a_token(service):
    cfg = config()
    cfg["handoff"]["api_token"] = ""
    with TestClient(create_app(cfg, engine=EngineWithHandoffs(service))) as c:
        error(c.get("/api/handoffs", headers=AUTH), 404, "not_found")
        error(c.post("/api/handoffs/h1/messages", headers=AUTH, json={"text": "x", "author": "a"}), 404, "not_found")


def test_a_short_token_is_refused_at_start(service):
    with pytest.raises(ConfigError, match="HANDOFF_API_TOKEN"):
        create_app(config(api_token="short"), engine=EngineWithHandoffs(service))


def test_missing_or_wrong_token_is_401_and_nothing_changes(client, service, outbox):
    h = open_handoff(service)
    error(client.get("/api/handoffs"), 401, "missing_token")
    error(client.get("/api/handoffs", headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"}), 401, "invalid_token")
    error(client.get("/api/handoffs", headers={"Authorization": "Basic " + TOKEN}), 401, "invalid_token")
    error(client.get("/api/handoffs", headers={"Authorization": "Bearer"}), 401, "invalid_token")
    r = client.post(f"/api/handoffs/{h.id}/messages", headers={"Authorization": "Bearer nope"},
                    json={"text": "您好", "author": "Alice"})
    error(r, 401, "invalid_token")
    error(client.post(f"/api/handoffs/{h.id}/close", json={"resolution": "solved"}), 401, "missing_token")
    assert service.get(h.id)[1] == [] and service.get(h.id)[0].status == "waiting" and outbox.sent == []


def test_repeated_wrong_tokens_are_rate_limited(service):
    cfg = config(api_failed_auth_per_minute=3)
    with TestClient(create_app(cfg, engine=EngineWithHandoffs(service))) as c:
        for _ in range(3):
            error(c.get("/api/handoffs", headers={"Authorization": "Bearer wrong"}), 401, "invalid_token")
        r = c.get("/api/handoffs", headers={"Authorization": "Bearer wrong"})
        body = error(r, 429, "rate_limited")
        assert int(r.headers["Retry-After"]) == body["retry_after"] >= 1
        assert c.get("/api/handoffs", headers=AUTH).status_code == 200   # the right token still works


def test_every_route_is_rate_limited(service):
    with TestClient(create_app(config(api_requests_per_minute=5), engine=EngineWithHandoffs(service))) as c:
        assert [c.get("/api/handoffs", headers=AUTH).status_code for _ in range(5)] == [200] * 5
        r = c.get("/api/handoffs", headers=AUTH)
        error(r, 429, "rate_limited")
        assert 1 <= int(r.headers["Retry-After"]) <= 60


def test_list_by_status(client, service):
    first, second = open_handoff(service, "a"), open_handoff(service, "b")
    service.claim(second.id, "li")
    r = client.get("/api/handoffs?status=waiting", headers=AUTH)
    assert r.status_code == 200
    [item] = r.json()["handoffs"]
    assert item["id"] == first.id and item["status"] == "waiting" and item["channel"] == "web"
    assert item["reason"] == "user_request" and item["reason_label"] and item["flow"] == "reset_password"
    assert "transcript" not in item and "address" not in item and "session_key" not in item
    assert [h["id"] for h in client.get("/api/handoffs?status=active", headers=AUTH).json()["handoffs"]] == [second.id]
    assert client.get("/api/handoffs?status=closed", headers=AUTH).json() == {"handoffs": []}
    assert [h["id"] for h in client.get("/api/handoffs", headers=AUTH).json()["handoffs"]] == [first.id]
    error(client.get("/api/handoffs?status=open", headers=AUTH), 422, "invalid_status")
    error(client.get("/api/handoffs?limit=0", headers=AUTH), 422, "invalid_limit")
    error(client.get("/api/handoffs?limit=ten", headers=AUTH), 422, "invalid_limit")


def test_detail_has_a_masked_transcript_and_messages(client, service):
    # Even if a line reached the store unmasked, the help desk never sees it in clear.
    h = open_handoff(service, transcript=(("用户", f"我的身份证 {ZS_ID} 手机 13800138001"),
                                          ("助手", "重置链接 https://chsi.example/reset/AbCdEf0123456789xyz?t=1")))
    service.from_user(h, "验证码是 483920")
    r = client.get(f"/api/handoffs/{h.id}", headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["handoff"]["id"] == h.id and body["handoff"]["step"] == "phone"
    text = r.text
    for secret in (ZS_ID, "13800138001", "AbCdEf0123456789xyz", "483920"):
        assert secret not in text
    assert body["handoff"]["transcript"][0][0] == "用户" and "138****8001" in body["handoff"]["transcript"][0][1]
    [m] = body["messages"]
    assert m["kind"] == "user" and m["text"] == "验证码是 ******"
    assert client.get(f"/api/handoffs/{h.id}?after={m['id']}", headers=AUTH).json()["messages"] == []
    error(client.get(f"/api/handoffs/{h.id}?after=-1", headers=AUTH), 422, "invalid_after")
    error(client.get("/api/handoffs/h0000000000000000", headers=AUTH), 404, "unknown_handoff")
    error(client.get("/api/handoffs/h%20x%3Cscript%3E", headers=AUTH), 404, "unknown_handoff")


def test_reply_reaches_the_user_like_a_console_reply(client, service, outbox):
    h = open_handoff(service)
    r = client.post(f"/api/handoffs/{h.id}/messages", headers=AUTH, json={"text": " 您好，我是客服小王 ", "author": "王芳"})
    assert r.status_code == 201, r.text
    msg = r.json()["message"]
    assert msg["kind"] == "agent" and msg["author"] == "王芳" and msg["text"] == "您好，我是客服小王"
    # the same service call as the console: a waiting hand-off is claimed, then the reply is pushed
    assert service.get(h.id)[0].status == "active" and service.get(h.id)[0].agent == "王芳"
    (ch, addr, [claimed]), (_, _, [reply]) = outbox.sent
    assert (ch, addr) == ("web", "sess-1") and "王芳" in claimed.text
    assert reply.text == "您好，我是客服小王" and reply.author == "人工客服 王芳"
    kinds = [m["kind"] for m in client.get(f"/api/handoffs/{h.id}", headers=AUTH).json()["messages"]]
    assert kinds == ["system", "agent"]


@pytest.mark.parametrize("body, status, code", [
    ({"text": "", "author": "王芳"}, 422, "empty_text"),
    ({"text": "   \n ", "author": "王芳"}, 422, "empty_text"),
    ({"text": "长" * 2001, "author": "王芳"}, 422, "text_too_long"),
    ({"text": 42, "author": "王芳"}, 422, "invalid_text"),
    ({"author": "王芳"}, 422, "invalid_text"),
    ({"text": "您好"}, 422, "invalid_author"),
    ({"text": "您好", "author": ""}, 422, "invalid_author"),
    ({"text": "您好", "author": "名" * 41}, 422, "invalid_author"),
    ([{"text": "您好"}], 400, "invalid_json"),
])
def test_bad_replies_are_refused_and_nothing_is_sent(client, service, outbox, body, status, code):
    h = open_handoff(service)
    out = error(client.post(f"/api/handoffs/{h.id}/messages", headers=AUTH, json=body), status, code)
    if code == "text_too_long":
        assert out["max_chars"] == 2000
    assert service.get(h.id)[1] == [] and service.get(h.id)[0].status == "waiting" and outbox.sent == []


def test_a_reply_of_exactly_2000_characters_is_sent(client, service, outbox):
    h = open_handoff(service)
    assert client.post(f"/api/handoffs/{h.id}/messages", headers=AUTH,
                       json={"text": "长" * 2000, "author": "王芳"}).status_code == 201
    assert outbox.sent[-1][2][0].text == "长" * 2000


def test_bad_json_and_content_type(client, service):
    h = open_handoff(service)
    r = client.post(f"/api/handoffs/{h.id}/messages", headers={**AUTH, "Content-Type": "application/json"},
                    content=b'{"text": "hi", ')
    error(r, 400, "invalid_json")
    r = client.post(f"/api/handoffs/{h.id}/messages", headers=AUTH, content=b"text=hi")
    error(r, 415, "unsupported_media_type")
    assert service.get(h.id)[1] == []


def test_unknown_taken_and_closed_handoffs(client, service, outbox):
    error(client.post("/api/handoffs/h0123456789abcdef/messages", headers=AUTH,
                      json={"text": "您好", "author": "王芳"}), 404, "unknown_handoff")
    error(client.post("/api/handoffs/h0123456789abcdef/close", headers=AUTH,
                      json={"resolution": "solved"}), 404, "unknown_handoff")
    h = open_handoff(service)
    service.claim(h.id, "li")   # taken in the staff console
    error(client.post(f"/api/handoffs/{h.id}/messages", headers=AUTH, json={"text": "您好", "author": "王芳"}),
          409, "handoff_taken")
    assert client.post(f"/api/handoffs/{h.id}/messages", headers=AUTH,
                       json={"text": "您好", "author": "li"}).status_code == 201
    sent = len(outbox.sent)
    r = client.post(f"/api/handoffs/{h.id}/close", headers=AUTH, json={"resolution": "solved", "author": "王芳"})
    assert r.status_code == 200 and r.json()["handoff"]["status"] == "closed"
    assert r.json()["handoff"]["resolution"] == "solved"
    [(_, _, [notice])] = outbox.sent[sent:]
    assert "结束" in notice.text
    error(client.post(f"/api/handoffs/{h.id}/messages", headers=AUTH, json={"text": "还在吗", "author": "li"}),
          409, "handoff_closed")
    error(client.post(f"/api/handoffs/{h.id}/close", headers=AUTH, json={"resolution": "solved"}),
          409, "handoff_closed")
    assert [x["id"] for x in client.get("/api/handoffs?status=closed", headers=AUTH).json()["handoffs"]] == [h.id]


def test_close_needs_a_known_resolution(client, service):
    h = open_handoff(service)
    for body in ({}, {"resolution": "done"}, {"resolution": "user_left"}, {"resolution": "back_to_bot"}):
        out = error(client.post(f"/api/handoffs/{h.id}/close", headers=AUTH, json=body), 422, "invalid_resolution")
        assert "solved" in out["allowed"]
    assert service.get(h.id)[0].status == "waiting"
    r = client.post(f"/api/handoffs/{h.id}/close", headers=AUTH, json={"resolution": "not_our_topic"})
    assert r.status_code == 200 and r.json()["handoff"]["agent"] == "api"


def test_the_api_is_in_the_apps_openapi(client):
    spec = client.app.openapi()
    paths = spec["paths"]
    assert set(paths) >= {"/api/handoffs", "/api/handoffs/{handoff_id}", "/api/handoffs/{handoff_id}/messages",
                          "/api/handoffs/{handoff_id}/close"}
    body = paths["/api/handoffs/{handoff_id}/messages"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["schema"]["required"]) == {"text", "author"}
    assert "401" in paths["/api/handoffs"]["get"]["responses"]
    r = client.get("/api/handoffs/openapi.json", headers=AUTH)
    assert r.status_code == 200 and "/api/handoffs/{handoff_id}/close" in r.json()["paths"]
    error(client.get("/api/handoffs/openapi.json"), 401, "missing_token")


def test_rate_limits_are_shared_between_instances_through_redis(service):
    import uuid

    require_redis()
    prefix = f"t-{uuid.uuid4().hex}:"
    cfg = config(api_requests_per_minute=5)
    cfg["sessions"] = {"backend": "redis", "redis_url": "redis://127.0.0.1:6379/0", "redis_prefix": prefix}
    try:
        with TestClient(create_app(cfg, engine=EngineWithHandoffs(service))) as a, \
                TestClient(create_app(cfg, engine=EngineWithHandoffs(service))) as b:
            if time.time() % 60 > 50:   # the limiter counts in fixed minutes: start early in one
                time.sleep(60.5 - time.time() % 60)
            codes = [(a if n % 2 else b).get("/api/handoffs", headers=AUTH).status_code for n in range(6)]
        assert codes == [200] * 5 + [429]   # one budget for both instances
    finally:
        import redis

        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)


# ---- Idempotency-Key ---------------------------------------------------------------------------

def test_a_retried_reply_with_the_same_idempotency_key_is_sent_once(client, service, outbox):
    h = open_handoff(service)
    key = {**AUTH, "Idempotency-Key": "3f1c9a52-0d7e-4c43-9a57-b1f0a4c0e111"}
    body = {"text": "您好，我来帮您处理。", "author": "Alice"}
    first = client.post(f"/api/handoffs/{h.id}/messages", headers=key, json=body)
    again = client.post(f"/api/handoffs/{h.id}/messages", headers=key, json=body)
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    agent_lines = [m for m in service.get(h.id)[1] if m.kind == "agent"]
    assert [m.text for m in agent_lines] == ["您好，我来帮您处理。"]
    assert [r.text for _, _, rs in outbox.sent for r in rs].count("您好，我来帮您处理。") == 1
    # without a key every POST is new; another key is another request
    client.post(f"/api/handoffs/{h.id}/messages", headers=AUTH, json=body)
    client.post(f"/api/handoffs/{h.id}/messages", headers={**AUTH, "Idempotency-Key": "other-1"}, json=body)
    assert len([m for m in service.get(h.id)[1] if m.kind == "agent"]) == 3
    # closing, retried
    close = {**AUTH, "Idempotency-Key": "close-1"}
    done = client.post(f"/api/handoffs/{h.id}/close", headers=close, json={"resolution": "solved"})
    retried = client.post(f"/api/handoffs/{h.id}/close", headers=close, json={"resolution": "solved"})
    assert done.status_code == retried.status_code == 200 and retried.json() == done.json()
    error(client.post(f"/api/handoffs/{h.id}/close", headers=AUTH, json={"resolution": "solved"}), 409,
          "handoff_closed")                       # a real second close is still refused


def test_an_idempotency_key_is_bound_to_its_request_and_a_refusal_frees_it(client, service):
    h = open_handoff(service)
    headers = {**AUTH, "Idempotency-Key": "k-1"}
    error(client.post(f"/api/handoffs/{h.id}/messages", headers=headers, json={"text": " ", "author": "A"}),
          422, "empty_text")
    ok = client.post(f"/api/handoffs/{h.id}/messages", headers=headers, json={"text": "改好了", "author": "A"})
    assert ok.status_code == 201                   # the refused try changed nothing and left the key free
    error(client.post(f"/api/handoffs/{h.id}/messages", headers=headers, json={"text": "另一句", "author": "A"}),
          422, "idempotency_key_reused")
    error(client.post(f"/api/handoffs/{h.id}/close", headers=headers, json={"resolution": "solved"}),
          422, "idempotency_key_reused")
    for bad in (b"", b"x" * 201, "含中文".encode(), b"a b"):
        error(client.post(f"/api/handoffs/{h.id}/messages", headers={**AUTH, "Idempotency-Key": bad},
                          json={"text": "x", "author": "A"}), 422, "invalid_idempotency_key")
    assert [m.text for m in service.get(h.id)[1]] == ["人工客服 A 已接入", "改好了"]


def test_a_retry_reaching_another_instance_is_recognised_through_the_database(tmp_path):
    from handlers.db import Database
    from handlers.events import MemoryBus
    from handlers.handoff_service import HandoffService
    from handlers.handoffs import SqlHandoffStore

    url = f"sqlite:///{tmp_path}/bot.db"
    outboxes = [Outbox(), Outbox()]
    services = [HandoffService(SqlHandoffStore(Database(url)), MemoryBus(), deliver=o) for o in outboxes]
    h = open_handoff(services[0])
    headers = {**AUTH, "Idempotency-Key": "cross-instance-1"}
    answers = []
    for s in services:                              # the first try on instance A, the retry on instance B
        with TestClient(create_app(config(), engine=EngineWithHandoffs(s))) as c:
            answers.append(c.post(f"/api/handoffs/{h.id}/messages", headers=headers,
                                  json={"text": "只发一次", "author": "Alice"}))
    assert [a.status_code for a in answers] == [201, 201] and answers[0].json() == answers[1].json()
    assert answers[1].headers["idempotent-replayed"] == "true"
    assert [m.text for m in services[1].get(h.id)[1] if m.kind == "agent"] == ["只发一次"]
    assert len(outboxes[0].sent) == 2 and outboxes[1].sent == []   # claimed + reply, both from A only


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def keys(request, tmp_path):
    from db_fixture import pg_schema_url
    from handlers.db import Database
    from handlers.idempotency import MemoryIdempotencyStore, SqlIdempotencyStore
    from support import Clock

    clock = Clock()
    if request.param == "memory":
        yield MemoryIdempotencyStore(clock), clock
    elif request.param == "sqlite":
        yield SqlIdempotencyStore(Database(f"sqlite:///{tmp_path}/k.db"), clock), clock
    else:
        gen = pg_schema_url()
        yield SqlIdempotencyStore(Database(next(gen)), clock), clock
        next(gen, None)


def test_idempotency_store_contract(keys):
    from handlers.idempotency import LEASE_SECONDS, TTL_SECONDS, KeyInProgress, KeyReused, Stored

    store, clock = keys
    assert store.begin("a", "f1") is None                     # claimed: do the work
    with pytest.raises(KeyInProgress):
        store.begin("a", "f1")                                # a concurrent retry waits
    with pytest.raises(KeyReused):
        store.begin("a", "f2")
    store.finish("a", 201, {"message": {"text": "好"}})
    assert store.begin("a", "f1") == Stored(201, {"message": {"text": "好"}})
    with pytest.raises(KeyReused):
        store.begin("a", "f2")
    assert store.begin("b", "f1") is None                     # released: free again
    store.release("b")
    assert store.begin("b", "f1") is None
    clock.advance(LEASE_SECONDS + 1)                          # its holder died: one retry takes it over
    assert store.begin("b", "f1") is None
    with pytest.raises(KeyInProgress):
        store.begin("b", "f1")
    store.release("a")                                        # a finished key is not released
    assert store.begin("a", "f1").status == 201
    clock.advance(TTL_SECONDS + 1)                            # forgotten after a day
    assert store.begin("a", "f2") is None
