"""The WeChat Official Account channel offline, with the real protocol.

The bot's app is driven like WeChat's servers drive it: XML posted to ``wechat.path``, signed
(plain mode) or AES-encrypted and signed with wechatpy's own crypto (safe mode). The WeChat API the
bot calls (token, customer-service send, media download) is a stand-in on an ephemeral port
(tests/wechat_standin.py). Flows run against the live account sandbox.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

import settings
from channels import render
from accounts.local import LocalAccountClient
from settings import SessionsConfig, WeChatConfig
from channels.wechat import (TOO_FAST, WELCOME, UNSUPPORTED, NO_IMAGE_NOW, NO_VOICE_TEXT, Identity, MemoryKV,
                             RedisKV, SqliteKV, WeChatApi, WeChatApiError, WindowClosed)
from channels.app import create_app
from handlers.sessions import SqliteStore
from support import JPEG, Clock, make_engine
from handlers.types import Button, Reply, Undeliverable
from sandbox_fixture import sandbox  # noqa: F401  (the fixture)
from support.wechat import SECRET, TOKEN, Bot, wechat_cfg
from support.servers import require_redis
from wechat_standin import WxUser

ROOT = Path(__file__).resolve().parents[1]

# the standin and make_bot fixtures, Bot and wechat_cfg: tests/support/wechat.py


# ---- the URL check and refusals -------------------------------------------------------------------

def test_url_check_echoes_only_with_a_valid_signature(make_bot):
    bot = make_bot()
    user = bot.user()
    query, _ = user.signed_query("")
    ok = bot.client.get("/wechat", params={**query, "echostr": "4711"})
    assert ok.status_code == 200 and ok.text == "4711"
    for bad in ({**query, "signature": "0" * 40}, {k: v for k, v in query.items() if k != "signature"},
                {**query, "timestamp": str(int(time.time()) - 3600)}, {}):
        r = bot.client.get("/wechat", params={**bad, "echostr": "4711"})
        assert r.status_code == 403 and "4711" not in r.text


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_faq_question_is_answered_passively_with_the_choices_as_a_menu(make_bot, safe):
    bot = make_bot(safe=safe)
    user = bot.user()
    got = user.say("忘记密码怎么办")
    assert got[0].get("passive") and "找回密码" in got[0]["text"]["content"]
    assert any("有帮助" in labels for labels in user.menus)
    assert bot.standin.token_fetches == 1
    # the raw response of a safe-mode bot is encrypted; of a plain one it is the reply XML
    assert ("<Encrypt>" in user.last_body) == safe
    assert ("找回密码" in user.last_body) == (not safe)


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_forged_or_missing_signatures_are_refused_and_nothing_is_processed(make_bot, safe):
    bot = make_bot(safe=safe)
    user = bot.user()
    xml = user.xml("text", Content="忘记密码怎么办")
    query, body = user.signed_query(xml)
    forged = [{**query, "signature": "0" * 40} if not safe else {**query, "msg_signature": "0" * 40},
              {k: v for k, v in query.items() if k not in ("signature", "msg_signature")},
              {**query, "timestamp": str(int(time.time()) - 3600)}]
    if safe:
        forged.append({k: v for k, v in query.items() if k not in ("encrypt_type", "msg_signature")})  # plain post
        at = body.index("<Encrypt>") + len("<Encrypt>") + 20
        tampered = body[:at] + ("A" if body[at] != "A" else "B") + body[at + 1:]   # the signature no longer fits
        assert user.post_raw(query, tampered).status_code == 403
    for q in forged:
        r = user.post_raw(q, body if "encrypt_type" in q or not safe else xml)
        assert r.status_code == 403 and r.text == "forbidden"
    assert bot.session(user) is None and bot.standin.sent == [] and bot.standin.token_fetches == 0


def test_plain_posts_to_a_safe_mode_bot_and_encrypted_posts_to_a_plain_one_are_refused(make_bot):
    safe_bot, plain_bot = make_bot(safe=True), make_bot(path="/wx-plain")
    plain_user = plain_bot.user()
    query, body = plain_user.signed_query(plain_user.xml("text", Content="你好"))
    assert safe_bot.client.post("/wechat", params=query, content=body).status_code == 403
    safe_user = safe_bot.user()
    query, body = safe_user.signed_query(safe_user.xml("text", Content="你好"))
    assert plain_bot.client.post("/wx-plain", params=query, content=body).status_code == 403


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_bad_xml_huge_xml_and_dtds_get_clear_answers_without_a_traceback(make_bot, safe):
    bot = make_bot(safe=safe)
    user = bot.user()
    cases = {
        "<xml><FromUserName>oX</FromUserName><MsgType>text": 400,          # not well-formed
        "<html>not wechat</html>": 400,                                   # no <xml> element
        "<xml><MsgType>text</MsgType></xml>": 400,                          # no sender
        '<!DOCTYPE xml [<!ENTITY a "aaaa">]><xml><FromUserName>&a;</FromUserName></xml>': 400,
    }
    for xml, status in cases.items():
        query, body = user.signed_query(xml)
        r = user.post_raw(query, body)
        assert r.status_code == status, xml
        assert "Traceback" not in r.text and r.text == "bad request"
    huge = user.xml("text", Content="很长" * 5000)          # 30 KB: over wechat.max_body_bytes
    query, body = user.signed_query(huge)
    r = user.post_raw(query, body)
    assert r.status_code == 413 and r.text == "body too large"
    query, body = user.signed_query(user.xml("text", Content="很长" * 20000))   # over every limit of the app
    assert user.post_raw(query, body).status_code == 413
    # without Content-Length (chunked), the limit holds while reading
    r = bot.client.post("/wechat", params=query, content=iter([body.encode()[i:i + 4096]
                                                                for i in range(0, len(body.encode()), 4096)]))
    assert r.status_code == 413
    assert bot.session(user) is None and bot.standin.sent == []


@pytest.mark.parametrize("msgtype", ["location", "video", "shortvideo", "link", "file", "hologram"])
def test_unsupported_message_types_get_a_polite_passive_answer(make_bot, msgtype):
    bot = make_bot()
    user = bot.user()
    got = user.post(user.xml(msgtype, MediaId="m1", Location_X="39.9", Location_Y="116.4", Url="http://x.cn/a"))
    assert user.last_status == 200
    assert [m["text"]["content"] for m in got] == [UNSUPPORTED]
    assert bot.session(user) is None


def test_voice_with_recognition_is_text_without_it_a_request_to_type(make_bot):
    bot = make_bot()
    user = bot.user()
    assert "找回密码" in user.voice("忘记密码怎么办。").__getitem__(0)["text"]["content"]
    assert [m["text"]["content"] for m in user.voice(None)] == [NO_VOICE_TEXT]


def test_events_subscribe_greets_click_starts_a_flow_unsubscribe_purges_it(make_bot):
    bot = make_bot()
    user = bot.user()
    assert user.event("subscribe")[0]["text"]["content"] == render.wechat_chunks(WELCOME)[0]
    user.event("CLICK", "flow:recover_password")
    assert "找回密码" in user.text and bot.session(user)["flow"]["name"] == "recover_password"
    user.say("zhangsan01")
    assert user.event("VIEW", "https://www.chsi.com.cn/") == []          # link menus: nothing to answer
    assert user.event("unsubscribe") == [] and user.last_body == "success"
    assert bot.session(user) is None
    assert bot.channel.kv.get("user:" + bot.channel.ids.user_key(user.openid)) is None
    with pytest.raises(WindowClosed):
        asyncio.run(bot.channel.send(bot.channel.address(user.openid), [Reply("还在吗？")]))


def test_image_is_fetched_only_when_the_flow_waits_for_one(make_bot):
    bot = make_bot()
    user = bot.user()
    assert [m["text"]["content"] for m in user.upload(JPEG)] == [NO_IMAGE_NOW]
    assert bot.standin.media_fetches == []


# ---- de-duplication -------------------------------------------------------------------------------

def user_turns(bot: Bot, user: WxUser) -> int:
    return sum(1 for who, _ in (bot.session(user) or {}).get("transcript", []) if who == "用户")


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
def test_a_retried_msgid_runs_once_and_gets_the_same_passive_reply(make_bot, safe):
    bot = make_bot(safe=safe)
    user = bot.user()
    xml = user.xml("text", msg_id=987654321012, Content="忘记用户名怎么办")
    first = user.post(xml)
    sent = len(bot.standin.sent)
    for _ in range(3):                      # WeChat retries up to three times
        again = user.post(xml)
        assert again == [first[0]]
    assert user_turns(bot, user) == 1 and len(bot.standin.sent) == sent
    cached = bot.channel.kv.get("ans:msg:987654321012")      # kept for the retries, sealed at rest
    assert cached and first[0]["text"]["content"][:10] not in cached
    # an event retried: same sender and CreateTime
    event = user.xml("event", create_time=1_790_000_000, Event="subscribe")
    assert user.post(event) and user.post(event) == user.received[:1]


class SlowEngine:
    """The real engine, taking ``delay`` seconds per turn (an account API that is slow today)."""

    def __init__(self, engine: Any, delay: float) -> None:
        self.engine, self.delay, self.calls = engine, delay, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def handle(self, session_id: str, message: Any) -> Any:
        self.calls += 1
        time.sleep(self.delay)
        return self.engine.handle(session_id, message)


def test_a_slow_turn_answers_success_then_through_the_customer_service_api(make_bot, tmp_path):
    slow = SlowEngine(make_engine(LocalAccountClient(), data_dir=tmp_path), 0.8)
    bot = make_bot(engine=slow, passive_seconds=0.2)
    user = bot.user()
    xml = user.xml("text", msg_id=555000111, Content="忘记密码怎么办")
    query, body = user.signed_query(xml)
    r = user.post_raw(query, body)
    assert r.text == "success"
    # WeChat retries while the turn is still running: nothing runs twice
    assert user.post_raw(query, body).text == "success"
    bot.wait_idle()
    sent = bot.standin.messages_to(user.openid)
    assert sent[0]["msgtype"] == "text" and "找回密码" in sent[0]["text"]["content"]
    assert any(m["msgtype"] == "msgmenu" for m in sent)
    assert slow.calls == 1 and user_turns(bot, user) == 1


def worker_script(config: Path, port_file: Path) -> str:
    return f"""
import socket, sys
sys.path.insert(0, {str(ROOT)!r})
import uvicorn, settings
from channels.app import create_app
cfg = settings.load({str(config)!r})
app = create_app(cfg)
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(64)
open({str(port_file)!r}, "w").write(str(sock.getsockname()[1]))
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
"""


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_retries_across_two_worker_processes_run_once(standin, tmp_path, sandbox, backend):  # noqa: F811
    if backend == "redis":
        require_redis()
    cfg = wechat_cfg(standin, tmp_path, backend=backend)
    cfg["accounts"] = {**cfg["accounts"], "base_url": sandbox.base_url, "api_key": sandbox.api_key}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    workers, ports = [], []
    try:
        for i in range(2):
            port_file = tmp_path / f"port{i}"
            workers.append(subprocess.Popen([sys.executable, "-c", worker_script(config, port_file)], cwd=tmp_path))
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text():
                assert workers[-1].poll() is None and time.monotonic() < deadline, "worker did not start"
                time.sleep(0.05)
            ports.append(int(port_file.read_text()))
        user = WxUser(None, standin, token=TOKEN, app_id=standin.app_id)
        xml = user.xml("text", msg_id=int(time.time() * 1000), Content="密码忘了怎么办")
        query, body = user.signed_query(xml)
        results: list[httpx.Response] = []

        def post(port: int) -> None:
            results.append(httpx.post(f"http://127.0.0.1:{port}/wechat", params=query, content=body, timeout=30))

        threads = [threading.Thread(target=post, args=(p,)) for p in ports + ports]   # two retries on each worker
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(results) == 4 and all(r.status_code == 200 for r in results)
        # exactly one worker ran the turn: the one session in the shared store saw one user message
        from handlers.sessions import build_store
        store = build_store(SessionsConfig.of(cfg))
        ids = Identity(SECRET.encode())
        state = store.get(ids.session_id(user.openid))
        assert state is not None and sum(1 for who, _ in state["transcript"] if who == "用户") == 1
        assert standin.token_fetches <= 1
    finally:
        for w in workers:
            w.terminate()
            w.wait(timeout=10)


# ---- the WeChat API: token, window, menus ----------------------------------------------------------------

def test_token_expiry_mid_conversation_refreshes_once_and_delivers(make_bot):
    bot = make_bot()
    user = bot.user()
    user.say("忘记密码怎么办")
    assert bot.standin.token_fetches == 1
    bot.standin.expire_tokens()              # WeChat answers 42001 to the token we hold
    user.say("手机号已被注册怎么办")
    assert user.menus and bot.standin.token_fetches == 2
    bot.standin.tokens.clear()                # a token revoked (another party fetched one): 40001
    user.say("忘记用户名怎么办")
    assert user.menus and bot.standin.token_fetches == 3


def test_the_token_is_fetched_once_for_workers_sharing_a_store_and_refreshed_before_expiry(standin, tmp_path):
    conf = WeChatConfig.parse(wechat_cfg(standin, tmp_path)["wechat"])
    kv = SqliteKV(tmp_path / "kv.db")

    async def run() -> None:
        a, b = WeChatApi(conf, kv), WeChatApi(conf, SqliteKV(tmp_path / "kv.db"))
        tokens = await asyncio.gather(*(api.access_token() for api in (a, b) for _ in range(5)))
        assert len(set(tokens)) == 1 and standin.token_fetches == 1
        standin.expires_in = 7200
        # a token closer to expiry than the margin is replaced before it runs out
        raw = kv.get(a._key)
        kv.put(a._key, json.dumps({**json.loads(raw), "expires": time.time() + 60}), 60)
        fresh = await b.access_token()
        assert fresh != tokens[0] and standin.token_fetches == 2
        await a.aclose()
        await b.aclose()

    asyncio.run(run())


def test_token_failures_back_off_for_every_worker(standin, tmp_path):
    conf = WeChatConfig.parse(wechat_cfg(standin, tmp_path)["wechat"])
    kv = MemoryKV()

    async def run() -> None:
        api = WeChatApi(conf, kv)
        standin.fail_token_fetches(1)
        with pytest.raises(WeChatApiError) as e:
            await api.access_token()
        assert e.value.errcode == -1 and standin.token_fetches == 1
        with pytest.raises(WeChatApiError, match="backing off"):
            await WeChatApi(conf, kv).access_token()
        assert standin.token_fetches == 1        # nobody asked WeChat again during the backoff
        kv.delete(api._key + ":backoff")
        assert await api.access_token()
        assert standin.token_fetches == 2
        await api.aclose()

    asyncio.run(run())


def test_wrong_app_secret_is_a_clear_error(standin, tmp_path):
    cfg = wechat_cfg(standin, tmp_path, app_secret="wrong")

    async def run() -> None:
        api = WeChatApi(WeChatConfig.parse(cfg["wechat"]), MemoryKV())
        with pytest.raises(WeChatApiError) as e:
            await api.send_custom("oUser", {"msgtype": "text", "text": {"content": "hi"}})
        assert e.value.errcode == 40125
        await api.aclose()

    asyncio.run(run())


def test_send_pushes_within_the_window_and_raises_window_closed_outside(make_bot):
    bot = make_bot()
    user = bot.user()
    user.say("你好")
    address = bot.channel.address(user.openid)
    assert user.openid not in address
    asyncio.run(bot.channel.send(address, [Reply("您好，请问还需要帮助吗？", buttons=(Button("需要", "handoff"),),
                                                  author="人工客服 小王")]))
    pushed = bot.standin.messages_to(user.openid)[-2:]
    assert pushed[0]["text"]["content"] == "【人工客服 小王】\n您好，请问还需要帮助吗？" and pushed[1]["msgtype"] == "msgmenu"
    bot.standin.close_window(user.openid)        # WeChat itself says the window closed
    with pytest.raises(WindowClosed):
        asyncio.run(bot.channel.send(address, [Reply("在吗？")]))
    later = bot.user()
    later.say("你好")
    bot.channel.clock = lambda: time.time() + 49 * 3600   # 49 hours without a message from the user
    before = len(bot.standin.sent)
    with pytest.raises(WindowClosed):
        asyncio.run(bot.channel.send(bot.channel.address(later.openid), [Reply("在吗？")]))
    assert len(bot.standin.sent) == before
    with pytest.raises(ValueError) as e:
        asyncio.run(bot.channel.send("not-an-address", [Reply("x")]))
    assert isinstance(e.value, Undeliverable)                 # not worth retrying


def test_a_push_wechat_refuses_for_good_is_undeliverable_and_a_busy_wechat_is_not(make_bot):
    bot = make_bot()
    user = bot.user()
    user.say("你好")
    address = bot.channel.address(user.openid)
    bot.standin.refuse(user.openid, 43004)                   # the user unsubscribed
    with pytest.raises(Undeliverable) as e:
        asyncio.run(bot.channel.send(address, [Reply("在吗？")]))
    assert "43004" in e.value.reason and isinstance(e.value, WeChatApiError)
    bot.standin.refuse(user.openid, -1)                      # system busy: may pass, so retried later
    with pytest.raises(WeChatApiError) as e:
        asyncio.run(bot.channel.send(address, [Reply("在吗？")]))
    assert not isinstance(e.value, Undeliverable)


def test_refused_menus_fall_back_to_numbered_text_answered_by_number(make_bot):
    bot = make_bot()
    bot.standin.menus_allowed = False
    user = bot.user()
    user.say("忘记密码怎么办")
    assert "回复数字选择" in user.text and not user.menus
    user.number("开始找回密码")
    assert bot.session(user)["flow"]["name"] == "recover_password"


def test_numbered_text_when_menus_are_switched_off_fits_in_the_passive_reply(make_bot):
    bot = make_bot(msgmenu=False)
    user = bot.user()
    got = user.say("忘记密码怎么办")
    assert got[0].get("passive") and "回复数字选择" in user.text
    user.number("有帮助")
    assert "感谢您的反馈" in user.text


def test_long_answers_are_split_under_the_byte_limit_and_links_are_anchors(make_bot):
    bot = make_bot(max_text_bytes=300)
    user = bot.user()
    user.say("忘记密码怎么办")
    texts = [m["text"]["content"] for m in user.received if m["msgtype"] == "text"]
    assert len(texts) > 1 and all(len(t.encode()) <= 300 for t in texts)
    assert "**" not in user.text


def test_a_stale_menu_click_counts_as_typing_its_label(make_bot):
    bot = make_bot()
    user = bot.user()
    user.say("忘记密码怎么办")
    item_id, content = user.choice("有帮助")
    user.say("手机号已被注册怎么办")                  # a newer menu replaces the old one
    user.post(user.xml("text", Content="忘记用户名怎么办", bizmsgmenuid=item_id))
    assert "用户名" in user.text


def test_openids_stay_out_of_logs_records_and_session_keys(make_bot, tmp_path, caplog):
    caplog.set_level("DEBUG")
    # sessions and the channel's own keys in SQLite files, so there are records on disk to search
    engine = make_engine(LocalAccountClient(), store=SqliteStore(tmp_path / "sessions.db"), data_dir=tmp_path)
    bot = make_bot(engine=engine, backend="sqlite")
    user = bot.user()
    user.say("忘记密码怎么办")
    user.say("转人工客服")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "session" in logged and "handed off" in logged
    for secret in (user.openid, "ACCESS_TOKEN_", bot.standin.app_secret):
        assert secret not in logged
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert {"sessions.db", "wechat.db"} <= {path.name for path in files}   # the check below reads them
    for path in files:
        assert user.openid.encode() not in path.read_bytes(), path
    assert user.openid not in json.dumps(bot.session(user), ensure_ascii=False)


def test_config_requires_a_43_character_aes_key():
    with pytest.raises(settings.ConfigError):
        WeChatConfig.parse({"token": "t", "app_id": "a", "app_secret": "s", "aes_key": "short"})


def test_shared_store_twins_keep_the_same_contract(tmp_path):
    stores: list[Any] = [MemoryKV(), SqliteKV(tmp_path / "kv.db")]
    try:
        import redis
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=1).ping()
        stores.append(RedisKV("redis://127.0.0.1:6379/0", prefix=f"test-{secrets.token_hex(6)}:"))
    except Exception:  # noqa: BLE001
        if os.environ.get("CI"):
            raise
    for kv in stores:
        assert not hasattr(kv, "incr")            # counting is the limiter's (handlers.limits), not the store's
        assert kv.add("k", "one", 5) and not kv.add("k", "two", 5) and kv.get("k") == "one"
        kv.delete("k", "two")
        assert kv.get("k") == "one"
        kv.delete("k", "one")
        assert kv.get("k") is None
        kv.put("k", "three", 0.05)
        time.sleep(0.1)
        assert kv.get("k") is None and kv.add("k", "four", 5)
        kv.delete("k")


def test_mounted_only_when_token_app_id_and_secret_are_set(standin, tmp_path):
    cfg = wechat_cfg(standin, tmp_path)
    cfg["wechat"] = {**cfg["wechat"], "app_secret": ""}
    app = create_app(cfg, engine=make_engine(LocalAccountClient(), data_dir=tmp_path))
    assert "wechat" not in app.state.channels
    with TestClient(app) as client:
        assert client.post("/wechat", content="<xml/>").status_code == 404


def test_a_flood_from_one_user_is_answered_without_engine_turns(make_bot, tmp_path):
    slow = SlowEngine(make_engine(LocalAccountClient(), data_dir=tmp_path), 0)
    bot = make_bot(engine=slow, user_messages_per_minute=3)
    user, other = bot.user(), bot.user()
    for _ in range(3):
        user.say("你好")
    assert slow.calls == 3
    assert user.say("你好")[0]["text"]["content"] == "您发送消息太频繁了，请稍等一分钟再发送。"
    assert slow.calls == 3
    other.say("你好")                          # counted per user
    assert slow.calls == 4


@pytest.mark.parametrize("per_minute", [1, 4])
def test_wechat_counts_messages_in_the_apps_one_limiter_exactly_as_configured(make_bot, tmp_path, per_minute):
    """``wechat.user_messages_per_minute`` messages from a user in any 60 s get engine turns, the next
    is refused, and one is allowed again as the oldest leaves the minute — counted by the app's limiter
    (the engine's ``Limits``, throttle ``wechat-messages``), nowhere else: a second app (another
    worker) over the same limiter sees the same count."""
    from handlers.limits import Limits, MemoryLimiter

    clock = Clock(1000.0)
    limits = Limits(MemoryLimiter(clock=clock), b"k" * 32)
    engine = SlowEngine(make_engine(LocalAccountClient(), data_dir=tmp_path, limits=limits), 0)
    first = make_bot(engine=engine, user_messages_per_minute=per_minute)
    second = make_bot(engine=engine, user_messages_per_minute=per_minute)
    assert first.channel.flood.limits is limits and first.channel.flood.rule.limit == per_minute
    user = first.user()
    on_second = second.user(openid=user.openid)
    for i in range(per_minute):
        (user if i % 2 else on_second).say("你好")
        clock.advance(10)
    assert engine.calls == per_minute
    assert user.say("你好")[0]["text"]["content"] == TOO_FAST
    assert on_second.say("你好")[0]["text"]["content"] == TOO_FAST
    assert engine.calls == per_minute
    clock.now = 1000.0 + 60                    # the first message leaves the window: one more allowed
    on_second.say("你好")
    assert engine.calls == per_minute + 1
    assert user.say("你好")[0]["text"]["content"] == TOO_FAST


def test_staff_replies_after_a_hand_off_reach_the_user_and_a_closed_window_is_a_typed_failure(make_bot, tmp_path,
                                                                                              caplog):
    """Through the app's own delivery hook (channels.delivery): the hand-off service → WeChatChannel.send."""
    from handlers.handoff_service import memory_service

    service = memory_service()
    bot = make_bot(engine=make_engine(LocalAccountClient(), data_dir=tmp_path, handoffs=service))
    assert service.deliver is not None          # wired by create_app
    user = bot.user()
    user.say("忘记密码怎么办")
    user.say("转人工客服")
    [handoff] = service.list("waiting")
    assert handoff.channel == "wechat" and user.openid not in handoff.address
    service.reply(handoff.id, "小王", "您好，我来帮您看看。")
    texts = [m["text"]["content"] for m in bot.standin.messages_to(user.openid) if m["msgtype"] == "text"]
    assert "【人工客服 小王】\n您好，我来帮您看看。" in texts
    bot.standin.close_window(user.openid)       # the user stopped writing 48 hours ago
    caplog.clear()
    service.reply(handoff.id, "小王", "还在吗？")
    failed = [r for r in caplog.records if "delivery to wechat failed" in r.getMessage()]
    assert failed and "(WindowClosed)" in failed[0].getMessage()   # the error's class, never its text or a trace
    _, messages = service.get(handoff.id)          # the agent is told, in the conversation itself
    assert messages[-1].kind == "system" and "没有送达" in messages[-1].text and "48 小时" in messages[-1].text


def test_unsubscribing_while_handed_off_abandons_the_hand_off(make_bot, tmp_path):
    from handlers.handoff_service import memory_service

    service = memory_service()
    bot = make_bot(engine=make_engine(LocalAccountClient(), data_dir=tmp_path, handoffs=service))
    user, other = bot.user(), bot.user()
    for u in (user, other):
        u.say("转人工客服")
    waiting = service.list("waiting")
    assert len(waiting) == 2
    user.event("unsubscribe")
    [gone] = service.list("abandoned")
    assert gone.resolution == "user_left" and gone.address == ""      # nobody to write to any more
    assert "取消关注" in service.get(gone.id)[1][-1].text               # staff are told why
    assert [h.id for h in service.list("waiting")] == [h.id for h in waiting if h.id != gone.id]
    other.say("还在排队吗")                                               # the other user's hand-off is untouched
    assert service.get(service.list("waiting")[0].id)[1][-1].text == "还在排队吗"
