"""A push to the user that fails for a passing reason is kept in the hand-off store and sent again,
in order and once (handlers/redelivery.py): through a real Redis outage to the widget's event
stream (a private redis-server stopped and started, the app served by uvicorn with its background
redeliverer), through Telegram's Bot API failing and coming back (a recording stand-in), by two
service instances sharing one store (SQLite, PostgreSQL), and not at all for a refusal that will not
pass (WeChat's 48-hour window, a user who blocked the Telegram bot); after the configured time it is
given up and staff are told."""
from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest
import requests
from fastapi.testclient import TestClient

from accounts.local import LocalAccountClient
from channels.app import create_app
from db_fixture import db_url  # noqa: F401  (fixture)
from fault_harness import RedisServer, redis_server
from handlers.db import Database
from handlers.events import MemoryBus, RedisBus
from handlers.handoff_service import HandoffService
from handlers.handoffs import Handoff, MemoryHandoffStore, NewHandoff, SqlHandoffStore
from handlers.redelivery import Redeliverer, duration, excerpt, replies_body, replies_of
from handlers.types import Button, Reply, Undeliverable
from settings import RedeliveryConfig
from support import Clock, make_engine
from support.events import EventReader
from support.servers import LiveServer
from support.telegram import TOKEN, RecordingRequest

SECRET = "redelivery-test-secret-0123456789abcdef"
DEADLINE = 60.0


class Transport:
    """A fake channel transport: records what reached each address; ``down`` makes a send fail the
    way a network or Redis outage does, ``refuse`` the way a channel that knows why does."""

    def __init__(self, delay: float = 0.0) -> None:
        self.sent: list[tuple[str, str, str]] = []   # (channel, address, text)
        self.tries = 0
        self.down = False
        self.refuse: str | None = None
        self.delay = delay
        self._mutex = threading.Lock()

    def __call__(self, channel: str, address: str, replies) -> None:
        with self._mutex:
            self.tries += 1
        if self.refuse:
            raise Undeliverable(self.refuse)
        if self.down:
            raise ConnectionError("transport down")
        time.sleep(self.delay)   # a send takes a while: another instance has time to try the same push
        with self._mutex:
            self.sent.extend((channel, address, r.text) for r in replies)

    def texts(self) -> list[str]:
        return [t for _, _, t in self.sent]


def conf(interval: float = 5.0, max_interval: float = 60.0, give_up: float = 3600.0) -> RedeliveryConfig:
    return RedeliveryConfig(interval=interval, max_interval=max_interval, give_up=give_up)


def new(n: int = 1, channel: str = "web") -> NewHandoff:
    return NewHandoff(session_key=f"key{n}", channel=channel, address=f"sid{n}", reason="user_request")


def claimed(channel: str = "web", **timing: float) -> tuple[Clock, "Transport", HandoffService, Redeliverer, Handoff]:
    """A hand-off claimed by agent li over a fake transport, with its redeliverer (``timing``: ``conf``'s)."""
    clock, transport = Clock(), Transport()
    service = HandoffService(MemoryHandoffStore(clock), MemoryBus(), deliver=transport, clock=clock)
    retry = Redeliverer(service, conf(**timing))
    h = service.open(new(channel=channel))
    service.claim(h.id, "li")
    return clock, transport, service, retry, h


def system_lines(service: HandoffService, handoff_id: str) -> list[str]:
    return [m.text for m in service.get(handoff_id)[1] if m.kind == "system"]


# ---- the parts --------------------------------------------------------------------------------

def test_kept_replies_keep_every_field_a_channel_renders():
    replies = [Reply("您好，<b>请提供</b>手机号", (Button("是", "yes"),), intent="handoff", author="人工客服 li"),
               Reply("第二条", flow="recover_password", expects_image=True)]
    assert replies_of(replies_body(replies)) == replies
    assert excerpt(replies_body([Reply("一" * 40)])) == "一" * 30 + "…"
    assert (duration(45), duration(600), duration(3600), duration(5400 * 4)) == ("45 秒", "10 分钟", "60 分钟", "6 小时")


def test_a_failed_reply_is_kept_sent_again_with_back_off_and_staff_see_it_arrive():
    clock, transport, service, retry, h = claimed(interval=5, max_interval=12)
    transport.down = True
    service.reply(h.id, "li", "请提供新手机号。")
    service.reply(h.id, "li", "收到后我帮您改。")   # behind the first: never before it
    lines = system_lines(service, h.id)
    assert "没有送达用户" in lines[-2] and "自动重试" in lines[-2] and "按顺序补发" in lines[-1]
    assert service.store.pushes_waiting(h.id) == 2 and transport.tries == 2   # the second was not even tried

    assert retry.run_once() == 0            # not due before the interval
    clock.advance(5)
    assert retry.run_once() == 1            # tried once (still down): the next wait doubles
    clock.advance(9.9)
    assert retry.run_once() == 0
    clock.advance(0.1)
    assert retry.run_once() == 1            # 10 s later; then at most max_interval (12 s)
    clock.advance(12)
    transport.down = False
    assert retry.run_once() == 2            # both, in order, once
    assert transport.texts() == ["人工客服 li 已接入，正在查看您的问题，请稍候。", "请提供新手机号。", "收到后我帮您改。"]
    assert system_lines(service, h.id)[-2:] == ["已补发给用户：「请提供新手机号。」", "已补发给用户：「收到后我帮您改。」"]
    assert service.store.pushes_waiting(h.id) == 0 and retry.run_once() == 0
    service.reply(h.id, "li", "改好了")     # nothing kept any more: sent at once
    assert transport.texts()[-1] == "改好了" and "改好了" not in system_lines(service, h.id)[-1]


def test_a_refusal_that_will_not_pass_is_told_at_once_and_never_retried():
    clock, transport, service, retry, h = claimed("wechat", interval=1)
    transport.refuse = "用户超过 48 小时没有给公众号发消息"
    service.reply(h.id, "li", "您好")
    assert system_lines(service, h.id)[-1] == "这条消息没有送达用户：用户超过 48 小时没有给公众号发消息。"
    assert service.store.pushes_waiting(h.id) == 0
    tries = transport.tries
    for _ in range(3):
        clock.advance(10)
        assert retry.run_once() == 0
    assert transport.tries == tries

    # a kept push refused on its retry: failed at once with the channel's reason, not tried again
    transport.refuse, transport.down = None, True
    service.reply(h.id, "li", "第二条")
    transport.down, transport.refuse = False, "用户已取消关注"
    clock.advance(1)
    assert retry.run_once() == 1
    assert "没有送达用户：用户已取消关注" in system_lines(service, h.id)[-1]
    clock.advance(3600)
    assert retry.run_once() == 0 and service.store.pushes_waiting(h.id) == 0
    assert transport.texts() == ["人工客服 li 已接入，正在查看您的问题，请稍候。"]   # neither reply ever went


def test_after_the_give_up_time_staff_are_told_and_later_replies_go_again():
    clock, transport, service, retry, h = claimed("telegram", interval=60, max_interval=300, give_up=600)
    transport.down = True
    service.reply(h.id, "li", "请问还在吗？")
    for _ in range(20):
        clock.advance(60)
        retry.run_once()
    assert clock.now - 1_800_000_000.0 >= 600
    assert system_lines(service, h.id)[-1] == ("这条消息在 10 分钟内一直没能送达用户，已停止补发：「请问还在吗？」。"
                                               "请改用其他方式联系用户。")
    assert service.store.pushes_waiting(h.id) == 0
    tries = transport.tries
    clock.advance(3600)
    assert retry.run_once() == 0 and transport.tries == tries   # given up: never tried again
    transport.down = False
    service.reply(h.id, "li", "您好")                            # not held behind the given-up one
    assert transport.texts()[-1] == "您好"


def test_a_closing_notice_that_failed_reaches_the_user_after_the_hand_off_ended():
    clock, transport, service, retry, h = claimed("telegram", interval=1)
    transport.down = True
    service.close(h.id, "li", "solved")
    assert service.store.get(h.id).address == ""              # the hand-off forgot the address ...
    transport.down = False
    clock.advance(1)
    assert retry.run_once() == 1                               # ... the kept push still knows where to go
    assert transport.sent[-1][:2] == ("telegram", "sid1") and "已结束本次对话" in transport.sent[-1][2]


def test_without_a_redeliverer_a_failed_push_is_only_told(tmp_path):
    transport = Transport()
    transport.down = True
    service = HandoffService(MemoryHandoffStore(), MemoryBus(), deliver=transport)
    h = service.open(new())
    service.reply(h.id, "li", "您好")
    assert "没有送达用户：发送失败，请稍后再试" in system_lines(service, h.id)[-1]
    assert service.store.pushes_waiting(h.id) == 0


# ---- two instances, one store --------------------------------------------------------------------

def test_two_instances_sharing_a_store_send_each_kept_push_once_in_order(db_url):
    transport = Transport(delay=0.02)
    services = [HandoffService(SqlHandoffStore(Database(db_url)), MemoryBus(), deliver=transport) for _ in range(2)]
    retries = [Redeliverer(s, conf(interval=0.01, max_interval=0.01)) for s in services]
    a, b = services
    h = a.open(new())
    a.claim(h.id, "li")
    transport.down = True
    texts = [f"第{n}条" for n in range(1, 7)]
    for n, text in enumerate(texts):
        (a if n % 2 else b).reply(h.id, "li", text)            # replies through both instances
    assert a.store.pushes_waiting(h.id) == 6
    transport.down = False
    time.sleep(0.02)
    barrier = threading.Barrier(2)

    def drain(retry: Redeliverer) -> None:
        barrier.wait()
        deadline = time.monotonic() + DEADLINE
        while retry.service.store.pushes_waiting(h.id) and time.monotonic() < deadline:
            retry.run_once()

    threads = [threading.Thread(target=drain, args=(r,)) for r in retries]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE + 10)
    assert transport.texts()[1:] == texts                       # each once, in order
    done = [t for t in system_lines(a, h.id) if t.startswith("已补发给用户")]
    assert done == [f"已补发给用户：「{t}」" for t in texts]
    for s in services:
        s.store.close()


def test_two_background_redeliverers_send_once(db_url):
    transport = Transport(delay=0.01)
    services = [HandoffService(SqlHandoffStore(Database(db_url)), MemoryBus(), deliver=transport) for _ in range(2)]
    retries = [Redeliverer(s, conf(interval=0.05, max_interval=0.1)) for s in services]
    h = services[0].open(new())
    services[0].claim(h.id, "li")
    transport.down = True
    for n in range(4):
        services[n % 2].reply(h.id, "li", f"回复{n}")
    for r in retries:
        r.start()
    try:
        time.sleep(0.3)                                         # a few failed rounds in both
        transport.down = False
        deadline = time.monotonic() + DEADLINE
        while len(transport.sent) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)                                         # time for a second send, if there were one
    finally:
        for r in retries:
            r.close()
    assert transport.texts()[1:] == [f"回复{n}" for n in range(4)]
    for s in services:
        s.store.close()


# ---- a real Redis outage, the widget's event stream -------------------------------------------------

@pytest.fixture
def redis(tmp_path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


@pytest.fixture
def served(tmp_path, redis, monkeypatch):
    """The app (uvicorn, its lifespan: the background redeliverer) with the event bus in a private
    redis-server and the hand-offs in SQLite; retries every 0.2 s."""
    import channels.web
    monkeypatch.setattr(channels.web, "HEARTBEAT", 0.5)
    bus = RedisBus(redis.url, prefix="redeliver-test:ev:")
    service = HandoffService(SqlHandoffStore(Database(f"sqlite:///{tmp_path}/bot.db")), bus)
    accounts = LocalAccountClient()
    engine = make_engine(accounts, data_dir=tmp_path, handoffs=service)
    cfg = {"web": {"session_secret": SECRET}, "telegram": {"token": ""},
           "handoff": {"redeliver_interval": 0.2, "redeliver_max_interval": 0.5, "redeliver_give_up": 600}}
    with LiveServer(create_app(cfg, engine=engine)) as server:
        yield server, service
    accounts.close()
    bus.close()


def test_replies_during_a_redis_outage_reach_the_widget_stream_once_in_order_when_it_is_back(served, redis):
    server, service = served
    sid = requests.post(server.url + "/api/session", timeout=30).json()["session_id"]
    requests.post(server.url + "/api/chat", json={"session_id": sid, "text": "转人工"}, timeout=30)
    [h] = service.list("waiting")
    reader = EventReader(server.url + "/api/chat/events", {"session_id": sid})
    service.claim(h.id, "li")
    reader.wait_for(lambda ev: len(ev) == 1, "the claim notice")

    redis.stop()
    service.reply(h.id, "li", "请提供新手机号。")
    service.reply(h.id, "li", "收到后我帮您改。")
    lines = system_lines(service, h.id)
    assert "没有送达用户" in lines[-2] and "按顺序补发" in lines[-1]
    time.sleep(1.0)                                           # several failed tries while Redis is down
    assert service.store.pushes_waiting(h.id) == 2

    redis.start()
    reader.wait_for(lambda ev: len(ev) >= 3, "the kept replies after Redis is back")
    deadline = time.monotonic() + DEADLINE
    while service.store.pushes_waiting(h.id) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)                                           # a second copy would have arrived by now
    reader.close()
    assert reader.texts() == ["人工客服 li 已接入，正在查看您的问题，请稍候。", "请提供新手机号。", "收到后我帮您改。"]
    assert [data["replies"][0]["author"] for _, _, data in reader.events[1:]] == ["人工客服 li"] * 2
    assert system_lines(service, h.id)[-2:] == ["已补发给用户：「请提供新手机号。」", "已补发给用户：「收到后我帮您改。」"]


# ---- Telegram: the Bot API stand-in failing, then back; a user who blocked the bot -------------------

class FlakyBotApi(RecordingRequest):
    """The recording Bot API stand-in whose sendMessage can fail: ``down`` (502, passes) or
    ``blocked`` (403: the user blocked the bot, for good)."""

    def __init__(self) -> None:
        super().__init__()
        self.mode: str | None = None
        self.refused = 0

    async def do_request(self, url, method, request_data=None, **kwargs):
        if url.endswith("/sendMessage") and self.mode is not None:
            self.refused += 1
            if self.mode == "blocked":
                return 403, b'{"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}'
            return 502, b'{"ok": false, "error_code": 502, "description": "Bad Gateway"}'
        return await super().do_request(url, method, request_data, **kwargs)


def wait_for(check, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_telegram_replies_kept_while_the_bot_api_fails_go_out_in_order_and_a_blocked_user_is_told(tmp_path):
    api = FlakyBotApi()
    service = HandoffService(SqlHandoffStore(Database(f"sqlite:///{tmp_path}/bot.db")), MemoryBus())
    accounts = LocalAccountClient()
    engine = make_engine(accounts, data_dir=tmp_path, handoffs=service)
    cfg = {"telegram": {"token": TOKEN, "webhook_secret": "s3cret-token_value", "webhook_path": "/telegram/webhook"},
           "web": {"session_secret": SECRET},
           "handoff": {"redeliver_interval": 0.2, "redeliver_max_interval": 0.4, "redeliver_give_up": 600}}
    update = {"update_id": 1, "message": {"message_id": 1, "date": 1_800_000_000, "text": "转人工",
                                          "chat": {"id": 42, "type": "private"},
                                          "from": {"id": 42, "is_bot": False, "first_name": "张"}}}
    with TestClient(create_app(cfg, engine=engine, telegram_request=api)) as client:
        assert client.post("/telegram/webhook", json=update,
                           headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-token_value"}).status_code == 200
        [h] = service.list("waiting")
        service.claim(h.id, "li")
        api.mode = "down"
        service.reply(h.id, "li", "第一条")
        service.reply(h.id, "li", "第二条")
        assert "自动重试" in system_lines(service, h.id)[-2] and "按顺序补发" in system_lines(service, h.id)[-1]
        wait_for(lambda: api.refused >= 3, "failed retries")     # retried while the Bot API fails
        before = len(api.sent())
        api.mode = None
        wait_for(lambda: service.store.pushes_waiting(h.id) == 0, "the kept replies sent")
        time.sleep(0.6)                                           # a second copy would be here by now
        assert [m["text"] for m in api.sent()[before:]] == ["<b>人工客服 li</b>：\n\n第一条", "<b>人工客服 li</b>：\n\n第二条"]
        assert {m["chat_id"] for m in api.sent()[before:]} == {42}
        assert system_lines(service, h.id)[-2:] == ["已补发给用户：「第一条」", "已补发给用户：「第二条」"]

        api.mode, api.refused = "blocked", 0
        service.reply(h.id, "li", "第三条")
        assert "没有送达用户：用户已屏蔽机器人" in system_lines(service, h.id)[-1]
        time.sleep(0.6)
        assert api.refused == 1 and service.store.pushes_waiting(h.id) == 0   # not retried
        assert api.unexpected == []
    accounts.close()


def test_a_send_that_outlasts_the_delivery_timeout_is_cancelled_not_left_to_go_out_later(monkeypatch):
    import asyncio

    import channels.delivery
    from channels.base import Channel
    from channels.delivery import Delivery

    class Stuck(Channel):
        name = "stuck"

        def __init__(self) -> None:
            self.cancelled = threading.Event()

        async def send(self, address, replies) -> None:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise

    monkeypatch.setattr(channels.delivery, "TIMEOUT", 0.2)
    channel = Stuck()
    delivery = Delivery({"stuck": channel})
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    try:
        delivery.bind(loop)
        with pytest.raises(TimeoutError):
            delivery("stuck", "sid1", [Reply("您好")])
        assert channel.cancelled.wait(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
