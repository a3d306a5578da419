"""The outbound hand-off webhook against real local HTTP receivers: signatures, retries, limits."""
from __future__ import annotations

import json
import logging
import socket
import threading

import pytest

from handlers.webhook import WebhookSender, sign, verify
from settings import ConfigError, WebhookConfig
from tests.webhook_receiver import Receiver, poll

SECRET = "whsec-test-0123456789abcdef"


def webhook_config(handoff: dict) -> WebhookConfig:
    """The webhook part of a config whose ``handoff`` section is ``handoff``."""
    return WebhookConfig.of({"handoff": handoff})


def sender_for(url: str, **kw) -> WebhookSender:
    conf = {"webhook_url": url, "webhook_secret": SECRET, "webhook_backoff": 0.01, "webhook_timeout": 5}
    conf.update(kw)
    return WebhookSender(webhook_config(conf))


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_signed_event_reaches_the_receiver_with_id_and_type():
    with Receiver(SECRET) as rx:
        sender = sender_for(rx.url)
        try:
            event_id = sender.emit("handoff.created", {"handoff": {"id": "h1", "channel": "web"}})
            assert event_id and event_id.startswith("evt_")
            (req,) = rx.wait_for(1)
        finally:
            sender.close()
    assert req["signature_ok"], "the receiver's own HMAC of the body must match X-Signature"
    assert req["path"] == "/hooks/chsi?token=abc"
    h = req["headers"]
    assert h["x-event-id"] == event_id and h["x-event-type"] == "handoff.created"
    assert h["content-type"].startswith("application/json") and h["x-delivery-attempt"] == "1"
    body = json.loads(req["body"])
    assert body["id"] == event_id and body["type"] == "handoff.created"
    assert body["data"] == {"handoff": {"id": "h1", "channel": "web"}}
    assert isinstance(body["created_at"], float)
    assert sender.stats["delivered"] == 1 and sender.stats["failed"] == 0


def test_sign_and_verify_cover_the_exact_bytes():
    body = '{"a":"中文"}'.encode()
    assert sign(SECRET, body) == sign(SECRET.encode(), body)
    assert verify(SECRET, body, sign(SECRET, body))
    assert not verify(SECRET, body + b" ", sign(SECRET, body))
    assert not verify("another-secret-000000", body, sign(SECRET, body))
    assert not verify(SECRET, body, None) and not verify(SECRET, body, "")


def test_receiver_failing_twice_then_succeeding_gets_the_same_event_three_times():
    with Receiver(SECRET, statuses=(503, 500)) as rx:
        sender = sender_for(rx.url)
        try:
            event_id = sender.emit("handoff.message", {"n": 1})
            reqs = rx.wait_for(3)
            poll(lambda: sender.stats["delivered"] == 1)
        finally:
            sender.close()
    assert [r["headers"]["x-event-id"] for r in reqs] == [event_id] * 3
    assert [r["headers"]["x-delivery-attempt"] for r in reqs] == ["1", "2", "3"]
    assert len({r["body"] for r in reqs}) == 1 and all(r["signature_ok"] for r in reqs)
    assert sender.stats["attempts"] == 3 and sender.stats["failed"] == 0


def test_backoff_doubles_between_retries():
    waits: list[float] = []
    with Receiver(SECRET, statuses=(502, 502, 502, 502)) as rx:
        conf = webhook_config({"webhook_url": rx.url, "webhook_secret": SECRET,
                                           "webhook_backoff": 0.5, "webhook_retries": 3})
        sender = WebhookSender(conf, sleep=waits.append)
        try:
            sender.emit("handoff.created", {})
            poll(lambda: sender.stats["failed"] == 1)
        finally:
            sender.close()
        assert len(rx.requests) == 4
    assert waits == [0.5, 1.0, 2.0]


def test_429_retry_after_is_honoured():
    waits: list[float] = []
    with Receiver(SECRET, statuses=(429,), headers={"Retry-After": "3"}) as rx:
        conf = webhook_config({"webhook_url": rx.url, "webhook_secret": SECRET, "webhook_backoff": 0.5})
        sender = WebhookSender(conf, sleep=waits.append)
        try:
            sender.emit("handoff.created", {})
            poll(lambda: sender.stats["delivered"] == 1)
        finally:
            sender.close()
    assert waits == [3.0]


def test_a_4xx_is_not_retried():
    with Receiver(SECRET, statuses=(400,)) as rx:
        sender = sender_for(rx.url)
        try:
            sender.emit("handoff.closed", {})
            poll(lambda: sender.stats["failed"] == 1)
            sender.emit("handoff.closed", {"next": True})
            poll(lambda: sender.stats["delivered"] == 1)
        finally:
            sender.close()
        assert len(rx.requests) == 2


def test_wrong_secret_is_rejected_by_a_verifying_receiver():
    with Receiver("the-receivers-own-secret-xx") as rx:
        sender = sender_for(rx.url)
        try:
            sender.emit("handoff.created", {})
            poll(lambda: sender.stats["failed"] == 1)
        finally:
            sender.close()
        assert len(rx.requests) == 1 and not rx.requests[0]["signature_ok"] and rx.events() == []


def test_unreachable_receiver_is_retried_then_given_up_without_blocking_emit():
    sender = sender_for(f"http://127.0.0.1:{closed_port()}/hook", webhook_retries=2)
    try:
        assert sender.emit("handoff.created", {}) is not None
        poll(lambda: sender.stats["failed"] == 1)
        assert sender.stats["attempts"] == 3 and sender.stats["delivered"] == 0
    finally:
        sender.close()


def test_emit_returns_while_the_receiver_is_still_holding_the_request():
    hold = threading.Event()
    with Receiver(SECRET, hold=hold) as rx:
        sender = sender_for(rx.url)
        try:
            sender.emit("handoff.created", {"first": True})
            assert rx.arrived.wait(10)
            # The worker is stuck inside the first POST; emitting more must not wait for it.
            assert sender.emit("handoff.message", {"second": True}) is not None
            assert sender.pending() == 2 and sender.stats["delivered"] == 0
            hold.set()
            poll(lambda: sender.stats["delivered"] == 2)
        finally:
            sender.close()
        assert [e["type"] for e in rx.events()] == ["handoff.created", "handoff.message"]  # in order


@pytest.mark.parametrize("drip", [None, 0.05], ids=["silent", "trickling"])
def test_a_hanging_receiver_costs_each_try_its_timeout_and_the_queue_moves_on(drip):
    """A receiver that takes the request and never answers — silent, or trickling its answer a byte
    at a time so that no single read ever times out — ends each try within twice
    ``webhook_timeout``: the event is retried after its backoff, then given up (kept as failed),
    and the events behind it are delivered. The outbox is never blocked for good, and a try never
    outlives the claim's lease (another instance would send the event a second time)."""
    with Receiver(SECRET, hang=2, drip=drip) as rx:
        sender = sender_for(rx.url, webhook_timeout=0.3, webhook_retries=1, webhook_backoff=0.05)
        try:
            assert 2 * sender.conf.timeout < sender.lease
            sender.emit("handoff.created", {"n": 1})
            sender.emit("handoff.message", {"n": 2})
            poll(lambda: sender.stats["delivered"] == 1, deadline=30)
            assert sender.stats["failed"] == 1 and sender.stats["attempts"] == 3 and sender.pending() == 0
            assert [r["headers"]["x-delivery-attempt"] for r in rx.requests] == ["1", "2", "1"]
            assert [json.loads(r["body"])["data"]["n"] for r in rx.requests] == [1, 1, 2]
            assert [f.type for f in sender.outbox.failed] == ["handoff.created"]
        finally:
            sender.close()


def test_the_environments_proxy_is_used_as_before_and_no_proxy_bypasses_it(monkeypatch):
    """``http_proxy`` set (as ``requests`` honoured it): the POST goes to the proxy with the absolute
    URL; a host in ``no_proxy`` is reached directly."""
    with Receiver(SECRET) as proxy, Receiver(SECRET) as direct:
        monkeypatch.setenv("http_proxy", proxy.url.split("/hooks")[0])
        monkeypatch.setenv("no_proxy", "localhost")
        sender = sender_for("http://desk.invalid/hooks/chsi?token=abc")
        try:
            sender.emit("handoff.created", {})
            poll(lambda: sender.stats["delivered"] == 1)
        finally:
            sender.close()
        assert [r["path"] for r in proxy.requests] == ["http://desk.invalid/hooks/chsi?token=abc"]
        sender = sender_for(direct.url.replace("127.0.0.1", "localhost"))
        try:
            sender.emit("handoff.created", {})
            poll(lambda: sender.stats["delivered"] == 1)
        finally:
            sender.close()
        assert len(proxy.requests) == 1 and [r["path"] for r in direct.requests] == ["/hooks/chsi?token=abc"]


def test_full_queue_drops_and_logs_the_count(caplog):
    hold = threading.Event()
    with Receiver(SECRET, hold=hold) as rx:
        sender = sender_for(rx.url, webhook_queue_size=2)
        try:
            sender.emit("handoff.created", {"n": 0})
            assert rx.arrived.wait(10)          # one in flight, held by the receiver
            with caplog.at_level(logging.WARNING, logger="handlers.webhook"):
                ids = [sender.emit("handoff.message", {"n": n}) for n in range(1, 5)]
            assert ids[:2] == [i for i in ids[:2] if i] and ids[2:] == [None, None]
            assert sender.stats["dropped"] == 2
            assert "2 dropped since start" in caplog.text
            hold.set()
            poll(lambda: sender.stats["delivered"] == 3)
        finally:
            sender.close()
        assert [e["data"]["n"] for e in rx.events()] == [0, 1, 2]


def test_off_without_url_and_no_thread_started():
    sender = WebhookSender(webhook_config({"webhook_url": "", "webhook_secret": ""}))
    assert not sender.enabled and sender.emit("handoff.created", {}) is None
    assert sender._thread is None
    sender.close()


def test_close_delivers_what_is_queued():
    with Receiver(SECRET) as rx:
        sender = sender_for(rx.url)
        for n in range(5):
            sender.emit("handoff.message", {"n": n})
        sender.close(timeout=10)
        assert sender.stats["delivered"] == 5 and len(rx.events()) == 5
        assert sender.emit("handoff.message", {"late": True}) is None


@pytest.mark.parametrize("conf, words", [
    ({"webhook_url": "https://desk.example/hook", "webhook_secret": ""}, "HANDOFF_WEBHOOK_SECRET"),
    ({"webhook_url": "https://desk.example/hook", "webhook_secret": "short"}, "HANDOFF_WEBHOOK_SECRET"),
    ({"webhook_url": "ftp://desk.example/hook", "webhook_secret": SECRET}, "webhook_url"),
    ({"webhook_url": "desk.example/hook", "webhook_secret": SECRET}, "webhook_url"),
    ({"webhook_url": "https://desk.example/hook", "webhook_secret": SECRET, "webhook_retries": -1}, "webhook_retries"),
    ({"webhook_url": "https://desk.example/hook", "webhook_secret": SECRET, "webhook_timeout": "soon"}, "webhook"),
])
def test_bad_settings_are_refused_with_the_key(conf, words):
    with pytest.raises(ConfigError, match=words):
        webhook_config(conf)


def test_zero_retries_stay_zero_and_an_unknown_webhook_key_is_named():
    assert webhook_config({"webhook_retries": 0}).retries == 0
    assert webhook_config({}) == webhook_config({"webhook_retries": None}) and webhook_config({}).retries == 6
    with pytest.raises(ConfigError, match="handoff.webhook_retris: unknown key"):
        webhook_config({"webhook_retris": 0})


# ---- the durable outbox (hand-off database) ---------------------------------------------------

def sql_outbox(kind: str, tmp_path):
    """(outbox, its fake clock, its database URL) on SQLite in ``tmp_path`` or on a PostgreSQL schema of
    its own (dropped after the test): the body of a generator fixture."""
    from db_fixture import pg_schema_url
    from handlers.db import Database
    from support import Clock
    from handlers.webhook import SqlOutbox

    clock = Clock()   # the tables and the claims' leases share one fake clock
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/bot.db"
        yield SqlOutbox(Database(url), clock), clock, url
    else:
        gen = pg_schema_url()
        url = next(gen)
        yield SqlOutbox(Database(url), clock), clock, url
        next(gen, None)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def outbox(request, tmp_path):
    from support import Clock
    from handlers.webhook import MemoryOutbox

    if request.param == "memory":
        clock = Clock()
        yield MemoryOutbox(clock), clock, None
    else:
        yield from sql_outbox(request.param, tmp_path)


def event(n: int):
    from handlers.webhook import Outgoing
    return Outgoing(f"evt_{n}", "handoff.message", json.dumps({"n": n, "text": "中文"}).encode())


def test_outbox_contract(outbox):
    box, clock, _ = outbox
    assert box.claim("a", 30) is None and box.pending() == 0
    assert box.add(event(1), 10) and box.add(event(2), 10)
    first = box.claim("a", 30)
    assert first == event(1)                           # the oldest, bytes intact
    assert box.claim("b", 30) is None                  # only the head is ever in flight: b waits
    assert box.claim("a", 30) == event(1)              # the holder may claim it again (renewal)
    assert box.pending() == 2
    box.finish("evt_1", True)
    assert box.claim("b", 30) == event(2)
    clock.advance(31)                                  # b died mid-delivery: its claim lapses
    assert box.claim("c", 30) == event(2)
    box.renew("evt_2", "b", 30)                        # a lapsed owner cannot take it back
    assert box.claim("b", 30) is None
    box.finish("evt_2", False)                         # given up: no longer pending
    assert box.pending() == 0 and box.claim("c", 30) is None
    assert box.add(event(3), 1) and not box.add(event(4), 1)   # one waiting already: full
    assert box.claim("a", 30) == event(3) and box.add(event(5), 1)   # in flight does not count


@pytest.fixture(params=["sqlite", "postgres"])
def shared(request, tmp_path):
    """A durable outbox (the in-process twin is one process only, lost with it by design)."""
    yield from sql_outbox(request.param, tmp_path)


def test_two_instances_share_one_outbox_each_event_sent_once_in_order(shared):
    box, _, url = shared
    from handlers.db import Database
    from handlers.webhook import SqlOutbox

    with Receiver(SECRET) as rx:
        conf = webhook_config({"webhook_url": rx.url, "webhook_secret": SECRET, "webhook_backoff": 0.01})
        a = WebhookSender(conf, outbox=SqlOutbox(Database(url)))
        b = WebhookSender(conf, outbox=SqlOutbox(Database(url)))
        try:
            ids = [(a if n % 2 else b).emit("handoff.message", {"n": n}) for n in range(12)]
            a.start()
            b.start()
            poll(lambda: a.stats["delivered"] + b.stats["delivered"] == 12)
        finally:
            a.close()
            b.close()
        got = [r["headers"]["x-event-id"] for r in rx.requests]
    assert got == ids                                  # each once, in the order emitted
    assert a.pending() == 0


def test_events_survive_a_restart_and_a_dead_instances_claim(shared):
    box, clock, url = shared
    from handlers.db import Database
    from handlers.webhook import SqlOutbox

    with Receiver(SECRET, statuses=(503,)) as rx:
        conf = webhook_config({"webhook_url": rx.url, "webhook_secret": SECRET, "webhook_backoff": 30})
        first = WebhookSender(conf, outbox=SqlOutbox(Database(url)))
        kept = first.emit("handoff.created", {"n": 1})
        rx.wait_for(1)                                  # tried once (503), now waiting 30 s to retry
        first.close(timeout=1)                          # the instance stops: the event stays stored
        assert box.pending() == 1
        dead = box.claim("crashed-instance", 30)       # another instance claims it and dies
        assert dead is not None and dead.id == kept
        clock.advance(31)                               # its lease lapses (the outbox's clock)
        later = WebhookSender(conf, outbox=box)         # the next start sends it
        later.start()
        try:
            poll(lambda: later.stats["delivered"] == 1)
        finally:
            later.close()
        ids = [r["headers"]["x-event-id"] for r in rx.requests]
    assert ids == [kept, kept] and rx.requests[-1]["signature_ok"] and box.pending() == 0
