"""The staff console over HTTP (real app, real engine on the real FAQ, hand-offs and staff accounts
in a SQLite file): sign-in and its lock, cookie flags, CSRF, expiry, roles, the hand-off API
with bad input (clear errors, nothing lost), FAQ search, rate limits."""
from __future__ import annotations

import re

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from accounts.local import LocalAccountClient
from channels.app import create_app
from handlers.db import Database
from handlers.events import MemoryBus
from handlers.handoff_service import HandoffService
from handlers.handoffs import SqlHandoffStore
from handlers.staff import StaffStore
from support import Chat, Clock, make_engine
from handlers.types import Message

PASSWORD = "correct-horse-1"


class World:
    def __init__(self, tmp_path, cfg_extra=None) -> None:
        self.clock = Clock()
        db = Database(f"sqlite:///{tmp_path}/bot.db")
        self.staff = StaffStore(db, self.clock)
        self.service = HandoffService(SqlHandoffStore(db, self.clock), MemoryBus(), clock=self.clock,
                                      agents_online=lambda: len(self.staff.online()))
        self.accounts = LocalAccountClient()
        self.engine = make_engine(self.accounts, data_dir=tmp_path, clock=self.clock, handoffs=self.service)
        cfg = {"web": {"session_secret": "staff-test-secret-0123456789abcdef", "public_url": "http://testserver"},
               "telegram": {"token": ""}, "staff": {"login_rate_limit": 1000}}
        for k, v in (cfg_extra or {}).items():
            cfg[k] = {**cfg.get(k, {}), **v}
        self.app = create_app(cfg, engine=self.engine, staff=self.staff)
        self.staff.add("li", "agent", PASSWORD)
        self.staff.add("wang", "agent", PASSWORD)
        self.staff.add("boss", "admin", PASSWORD)

    def user_hands_off(self, text: str = "转人工") -> tuple[Chat, str]:
        chat = Chat(self.engine)
        real = chat.send
        chat.send = lambda m: real(Message(m.kind, m.text, m.payload, m.image, channel="web", address=chat.session_id))
        chat.say(text)
        return chat, self.service.list("waiting")[-1].id


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.accounts.close()


def sign_in(client: TestClient, name: str = "li", password: str = PASSWORD):
    return client.post("/staff/login", data={"name": name, "password": password}, follow_redirects=False)


def agent_client(world: World, name: str = "li") -> tuple[TestClient, str]:
    client = TestClient(world.app)
    r = sign_in(client, name)
    assert r.status_code == 303 and r.headers["location"] == "/staff"
    csrf = client.get("/staff/api/me").json()["csrf"]
    return client, csrf


def test_nothing_answers_without_a_signed_in_agent(world):
    client = TestClient(world.app)
    r = client.get("/staff", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/staff/login"
    assert client.get("/staff/console.js", follow_redirects=False).status_code == 303
    for method, path in [("GET", "/staff/api/me"), ("GET", "/staff/api/handoffs"), ("GET", "/staff/api/handoffs/x"),
                         ("POST", "/staff/api/handoffs/x/claim"), ("POST", "/staff/api/handoffs/x/messages"),
                         ("GET", "/staff/api/faq?q=密码"), ("GET", "/staff/api/events")]:
        r = client.request(method, path)
        assert r.status_code == 401 and r.json()["error"] == "not_signed_in", path
    page = client.get("/staff/login")
    assert page.status_code == 200 and "客服工作台登录" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_sign_in_sets_a_strict_http_only_cookie_and_the_console_loads(world):
    client = TestClient(world.app)
    r = sign_in(client)
    cookie = r.headers["set-cookie"]
    assert "staff_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/staff" in cookie and "Secure" not in cookie
    page = client.get("/staff")
    assert page.status_code == 200 and 'id="list-waiting"' in page.text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    assert csrf == client.get("/staff/api/me").json()["csrf"]
    assert world.staff.online() == ["li"]


def test_cookie_is_secure_over_https(tmp_path):
    w = World(tmp_path, {"web": {"public_url": "https://help.example.cn"}})
    r = sign_in(TestClient(w.app))
    assert "Secure" in r.headers["set-cookie"]
    r = sign_in(TestClient(World(tmp_path / "b", {}).app, base_url="https://testserver"))
    assert "Secure" in r.headers["set-cookie"]


def test_five_failed_sign_ins_lock_the_account_for_15_minutes(world):
    client = TestClient(world.app)
    for _ in range(4):
        r = sign_in(client, password="wrong-password")
        assert r.status_code == 401 and "用户名或密码错误" in r.text
    r = sign_in(client, password="wrong-password")
    assert r.status_code == 423 and "锁定 15 分钟" in r.text
    assert sign_in(client).status_code == 423            # even the right password
    world.clock.advance(14 * 60)
    assert sign_in(client).status_code == 423
    world.clock.advance(61)
    assert sign_in(client).status_code == 303
    # unknown names look the same as wrong passwords
    assert "用户名或密码错误" in sign_in(client, name="nobody").text


def test_csrf_is_required_on_every_state_changing_request(world):
    client, csrf = agent_client(world)
    _, hid = world.user_hands_off()
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": csrf + "x"}):
        r = client.post(f"/staff/api/handoffs/{hid}/claim", headers=headers)
        assert r.status_code == 403 and r.json()["error"] == "csrf_failed" and "CSRF" in r.json()["message"]
    assert world.service.get(hid)[0].status == "waiting"
    # another agent's token is not this agent's
    _, other_csrf = agent_client(world, "wang")
    assert client.post(f"/staff/api/handoffs/{hid}/claim", headers={"X-CSRF-Token": other_csrf}).status_code == 403
    assert client.post(f"/staff/api/handoffs/{hid}/claim", headers={"X-CSRF-Token": csrf}).status_code == 200
    # sign-out is a form POST that needs the token too
    assert client.post("/staff/logout", data={"csrf": "bad"}).status_code == 403
    r = client.post("/staff/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and world.staff.online() == ["wang"]


def test_expired_disabled_and_re_passworded_sessions_stop_working(world):
    client, csrf = agent_client(world)
    world.clock.advance(12 * 3600 + 1)
    r = client.get("/staff/api/me")
    assert r.status_code == 401 and "登录已过期" in r.json()["message"]
    client, csrf = agent_client(world)
    world.staff.disable("li")
    r = client.get("/staff/api/handoffs")
    assert r.status_code == 401 and "登录已失效" in r.json()["message"]
    assert sign_in(client).status_code == 401
    client, _ = agent_client(world, "wang")
    world.staff.set_password("wang", "another-password")
    assert client.get("/staff/api/me").status_code == 401
    tampered = TestClient(world.app)
    tampered.cookies.set("staff_session", "d2FuZw.1.9999999999.forgedmac", path="/staff")
    assert tampered.get("/staff/api/me").status_code == 401


def test_role_check_is_one_dependency_for_admin_pages(world):
    console = world.app.state.staff_console

    async def insights(staff=Depends(console.require_role("admin"))) -> dict:
        return {"hello": staff.name}

    world.app.add_api_route("/staff/insights-test", insights, methods=["GET"])
    console.add_nav("统计", "/staff/insights-test", role="admin")
    agent, _ = agent_client(world, "li")
    admin, _ = agent_client(world, "boss")
    r = agent.get("/staff/insights-test")
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert admin.get("/staff/insights-test").json() == {"hello": "boss"}
    page = agent.get("/staff/insights", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})  # a browser
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert "您没有权限访问此页面" in page.text and 'href="/staff"' in page.text
    assert "/staff/insights-test" in admin.get("/staff").text
    assert "/staff/insights-test" not in agent.get("/staff").text


def test_queue_claim_reply_close_over_the_api(world):
    client, csrf = agent_client(world)
    h = {"X-CSRF-Token": csrf}
    chat, hid = world.user_hands_off()
    assert "排在第 1 位" in chat.text
    waiting = client.get("/staff/api/handoffs?status=waiting").json()["handoffs"]
    assert [x["id"] for x in waiting] == [hid] and waiting[0]["reason_label"] == "用户要求转人工"
    assert "transcript" not in waiting[0] and "address" not in waiting[0]
    detail = client.get(f"/staff/api/handoffs/{hid}").json()
    assert ["用户", "转人工"] in detail["handoff"]["transcript"]
    assert client.post(f"/staff/api/handoffs/{hid}/claim", headers=h).json()["handoff"]["agent"] == "li"
    r = client.post(f"/staff/api/handoffs/{hid}/messages", json={"text": "您好，我是小李"}, headers=h)
    assert r.status_code == 200 and r.json()["message"]["author"] == "li"
    assert chat.say("我的用户名忘了") == []
    msgs = client.get(f"/staff/api/handoffs/{hid}").json()["messages"]
    assert [m["kind"] for m in msgs] == ["system", "agent", "user"]
    after = msgs[1]["id"]
    assert [m["text"] for m in client.get(f"/staff/api/handoffs/{hid}?after={after}").json()["messages"]] == \
        ["我的用户名忘了"]
    r = client.post(f"/staff/api/handoffs/{hid}/close", json={"resolution": "solved"}, headers=h)
    assert r.json()["handoff"]["status"] == "closed" and r.json()["handoff"]["resolution_label"] == "已解决"
    chat.say("忘记用户名怎么办")
    assert "找回用户名" in chat.text
    assert [x["id"] for x in client.get("/staff/api/handoffs?status=closed").json()["handoffs"]] == [hid]


def test_bad_input_gets_clear_errors_and_loses_nothing(world):
    client, csrf = agent_client(world)
    h = {"X-CSRF-Token": csrf}
    _, hid = world.user_hands_off()
    client.post(f"/staff/api/handoffs/{hid}/claim", headers=h)
    cases = [
        ({"text": ""}, 422, "invalid_reply", "不能为空"),
        ({"text": "   \n "}, 422, "invalid_reply", "不能为空"),
        ({"text": "字" * 2001}, 422, "invalid_reply", "2000 字以内"),
        ({"text": 12}, 422, "invalid_reply", "不能为空"),
    ]
    for body, status, code, words in cases:
        r = client.post(f"/staff/api/handoffs/{hid}/messages", json=body, headers=h)
        assert (r.status_code, r.json()["error"]) == (status, code) and words in r.json()["message"], body
    r = client.post(f"/staff/api/handoffs/{hid}/messages", content=b"{not json", headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_json"
    r = client.post(f"/staff/api/handoffs/{hid}/messages", data={"text": "x"}, headers=h)
    assert r.status_code == 415
    assert client.post(f"/staff/api/handoffs/{hid}/messages", json={"text": "字" * 2000}, headers=h).status_code == 200
    r = client.post("/staff/api/handoffs/h-nope/messages", json={"text": "你好"}, headers=h)
    assert r.status_code == 404 and r.json()["error"] == "unknown_handoff" and "找不到" in r.json()["message"]
    r = client.get("/staff/api/handoffs?status=whatever")
    assert r.status_code == 422 and r.json()["error"] == "invalid_status"
    r = client.post(f"/staff/api/handoffs/{hid}/close", json={"resolution": "nonsense"}, headers=h)
    assert r.status_code == 422 and "结束原因" in r.json()["message"]
    other, other_csrf = agent_client(world, "wang")
    r = other.post(f"/staff/api/handoffs/{hid}/messages", json={"text": "我来"}, headers={"X-CSRF-Token": other_csrf})
    assert r.status_code == 409 and r.json()["error"] == "already_claimed"
    assert client.post(f"/staff/api/handoffs/{hid}/hand-back", headers=h).status_code == 200
    r = client.post(f"/staff/api/handoffs/{hid}/messages", json={"text": "还在吗"}, headers=h)
    assert r.status_code == 409 and r.json()["error"] == "handoff_closed" and "已结束" in r.json()["message"]
    texts = [m["text"] for m in client.get(f"/staff/api/handoffs/{hid}").json()["messages"]]
    assert texts[1] == "字" * 2000 and "还在吗" not in texts and len(texts) == 2


def test_faq_search_finds_answers_to_insert(world):
    client, _ = agent_client(world)
    results = client.get("/staff/api/faq", params={"q": "忘记密码怎么办"}).json()["results"]
    assert results and results[0]["id"].startswith("recover_account.") and results[0]["answer"]
    assert client.get("/staff/api/faq", params={"q": ""}).json() == {"results": []}


def test_sign_in_attempts_are_rate_limited(tmp_path):
    w = World(tmp_path, {"staff": {"login_rate_limit": 3}})
    client = TestClient(w.app)
    for _ in range(3):
        assert sign_in(client, password="nope-nope").status_code == 401
    r = sign_in(client)
    assert r.status_code == 429 and r.json()["error"] == "rate_limited" and "Retry-After" in r.headers


def test_sign_in_from_another_origin_is_refused(world):
    r = TestClient(world.app).post("/staff/login", data={"name": "li", "password": PASSWORD},
                                   headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert r.status_code == 403 and "staff_session" not in r.headers.get("set-cookie", "")
