"""Turns tried on the web server's event loop (``Engine.try_handle``), as the web channel runs them
over Redis, SQLite or memory: the same conversation as through ``handle``; an attempt that would wait
(the account API, the hand-off store, the feedback records, another message's lock, a database
another process is writing) keeps nothing and never waits; images always go to a worker thread, and
so does everything for a while after Redis failed."""
from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

import channels.web
from channels.app import create_app
from handlers.insights import EventWriter, InsightsConfig, MemoryEventStore
from handlers.sessions import MemoryStore, RedisStore, SqliteStore, StoreError, new_session_id
from handlers.types import Message, Reply
from support import JPEG, Chat, make_engine
from support.flows import ZS_ID, Faulty, start_username
from support.servers import REDIS_URL, free_port, require_redis

from accounts.local import LocalAccountClient



class QuickChat(Chat):
    """A user of the web channel: each message tried with ``try_handle``, then ``handle`` when it would wait."""

    def __init__(self, engine: Any, session_id: str | None = None) -> None:
        super().__init__(engine, session_id)
        self.waited: list[str] = []

    def send(self, message: Message) -> list[Reply]:
        replies = self.engine.try_handle(self.session_id, message)
        if replies is None:
            self.waited.append(message.text or message.payload or message.kind)
            replies = self.engine.handle(self.session_id, message)
        self.replies = replies
        return replies


def recorded_engine(clock: Any, tmp_path: Any, store: Any = None) -> tuple[Any, Faulty, EventWriter]:
    acc = Faulty(LocalAccountClient())
    engine = make_engine(acc, clock=clock, data_dir=tmp_path, store=store)
    engine.insights = EventWriter(MemoryEventStore(), InsightsConfig(), clock=clock)
    return engine, acc, engine.insights


def conversation(chat: Chat) -> list[str]:
    """FAQ answers, a vote, a flow begun and cancelled, a hand-off and back: every reply's text."""
    said: list[str] = []
    for step in (lambda: chat.say("忘记密码怎么办"), lambda: chat.press("没帮助"), lambda: chat.say("用户名忘了"),
                 lambda: start_username(chat), lambda: chat.say("张三"), lambda: chat.say("居民身份证"),
                 lambda: chat.say(ZS_ID), lambda: chat.say("取消"), lambda: chat.say("转人工"),
                 lambda: chat.say("你好，还在吗"), lambda: chat.say("取消转人工"), lambda: chat.say("怎么绑定微信")):
        step()
        said += [r.text for r in chat.replies]
    return said


@pytest.fixture(params=["memory", "redis", "sqlite"])
def quick_store(request, tmp_path):
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        store = SqliteStore(tmp_path / "quick-sessions.db")
        yield store
        store.close()
        return
    require_redis()
    store = RedisStore(REDIS_URL, prefix=f"test-{secrets.token_hex(4)}:")
    yield store
    store.close()


def test_quick_turns_hold_the_same_conversation_and_events_as_handle(clock, tmp_path, quick_store):
    plain, plain_acc, plain_events = recorded_engine(clock, tmp_path / "plain")
    quick, quick_acc, quick_events = recorded_engine(clock, tmp_path / "quick", quick_store)
    chat = QuickChat(quick)
    assert conversation(chat) == conversation(Chat(plain))
    # what would wait went to handle, and only that: the vote, the flow's turns (it ends with the ID
    # number: the username is sent), the hand-off's
    assert chat.waited == ["fb:down:recover_account.password", "flow:recover_username", "张三", "居民身份证",
                           ZS_ID, "转人工", "你好，还在吗", "取消转人工"]
    assert plain_events.flush() and quick_events.flush()
    turns = [(e.decision, e.intent, e.entry, e.text) for e in plain_events.store.query(0)]
    assert [(e.decision, e.intent, e.entry, e.text) for e in quick_events.store.query(0)] == turns   # one event a turn
    assert {name: len(keys) for name, keys in quick_acc.keys.items()} == \
        {name: len(keys) for name, keys in plain_acc.keys.items()}   # the same account API calls
    assert votes(tmp_path / "quick") == votes(tmp_path / "plain") == [("recover_account.password", False)]


def votes(data_dir: Any) -> list[tuple[str, bool]]:
    lines = (data_dir / "feedback.jsonl").read_text(encoding="utf-8").splitlines()
    return [(v["entry"], v["helpful"]) for v in map(json.loads, lines)]


def test_an_attempt_that_would_wait_keeps_nothing(clock, tmp_path, quick_store):
    engine, acc, events = recorded_engine(clock, tmp_path, quick_store)
    chat = QuickChat(engine)
    chat.say("用户名忘了")
    before = engine.store.get(chat.session_id)
    assert engine.try_handle(chat.session_id, Message.from_button("flow:recover_username")) is None
    assert engine.store.get(chat.session_id) == before
    assert events.flush() and len(events.store.query(0)) == 1   # the FAQ answer's; no event for the attempt


def test_a_busy_session_is_not_waited_for_on_the_loop(clock, tmp_path, quick_store):
    engine, _, _ = recorded_engine(clock, tmp_path, quick_store)
    sid = new_session_id()
    with engine.store.lock(sid):   # another message of this session is in its turn
        assert engine.try_handle(sid, Message.from_text("忘记密码怎么办")) is None
    assert "找回密码" in engine.try_handle(sid, Message.from_text("忘记密码怎么办"))[0].text


class BrokenStore(MemoryStore):
    def get(self, session_id: str) -> Any:
        raise StoreError("redis failed: ConnectionError")


def test_a_store_failure_is_left_to_the_thread_which_says_it_once(clock, tmp_path, caplog):
    engine, _, _ = recorded_engine(clock, tmp_path, BrokenStore())
    sid = new_session_id()
    assert engine.try_handle(sid, Message.from_text("忘记密码怎么办")) is None
    assert "store failed" not in caplog.text
    assert "系统暂时无法保存对话进度" in engine.handle(sid, Message.from_text("忘记密码怎么办"))[0].text
    assert caplog.text.count("store failed") == 1


def test_images_always_go_to_a_thread(clock, tmp_path):
    memory, _, _ = recorded_engine(clock, tmp_path)
    assert memory.try_handle(new_session_id(), Message.from_image(JPEG, "id.jpg", "image/jpeg")) is None


def test_a_sqlite_database_another_writer_holds_is_not_waited_for_on_the_loop(clock, tmp_path):
    """Another process in its write transaction: the quick turn's save is SQLITE_BUSY at once (busy_timeout
    0), nothing of it kept, and the thread's turn waits for the writer as before."""
    path = tmp_path / "sessions.db"
    engine, _, events = recorded_engine(clock, tmp_path, SqliteStore(path))
    chat = QuickChat(engine)
    chat.say("忘记密码怎么办")
    before = engine.store.get(chat.session_id)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    assert engine.try_handle(chat.session_id, Message.from_text("怎么绑定微信")) is None
    assert time.monotonic() - started < 0.5
    writer.execute("ROLLBACK")
    assert engine.store.get(chat.session_id) == before
    assert events.flush() and len(events.store.query(0)) == 1   # the first turn's; none for the attempt
    assert "微信" in "".join(r.text for r in engine.try_handle(chat.session_id, Message.from_text("怎么绑定微信")))
    writer.close()
    engine.store.close()


def test_a_busy_save_is_kept_with_its_lock_to_be_tried_again(clock, tmp_path):
    """``try_handle(..., busy=True)``: a save that found the database busy (another process in its write
    transaction) is a BusySave — the turn done, the session's lock still held, nothing saved yet; tried
    again once the writer is done it saves the turn as ``handle`` would, and on close releases the lock and
    records the one event of the turn. Closed unsaved, it keeps nothing (an attempt)."""
    from handlers.engine import BusySave

    path = tmp_path / "sessions.db"
    engine, _, events = recorded_engine(clock, tmp_path, SqliteStore(path))
    plain, _, _ = recorded_engine(clock, tmp_path / "plain")
    chat, twin = QuickChat(engine), Chat(plain)
    chat.say("忘记密码怎么办")
    twin.say("忘记密码怎么办")
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        given_up = engine.try_handle(chat.session_id, Message.from_text("用户名忘了"), busy=True)
        assert isinstance(given_up, BusySave) and not given_up.retry()
        given_up.close()   # never saved: nothing kept, the lock free again
        pending = engine.try_handle(chat.session_id, Message.from_text("怎么绑定微信"), busy=True)
        assert isinstance(pending, BusySave) and "微信" in "".join(r.text for r in pending.replies)
        assert engine.try_handle(chat.session_id, Message.from_text("用户名忘了")) is None   # its lock is held
        assert not pending.retry()
        writer.execute("ROLLBACK")
        assert pending.retry()
        pending.close()
        pending.close()   # once only
        twin.say("怎么绑定微信")
        assert engine.store.get(chat.session_id) == plain.store.get(twin.session_id)
        assert events.flush() and [e.text for e in events.store.query(0)] == ["忘记密码怎么办", "怎么绑定微信"]
        # given up on: finished in a thread, where the save waits for the writer
        writer.execute("BEGIN IMMEDIATE")
        pending = engine.try_handle(chat.session_id, Message.from_text("用户名忘了"), busy=True)
        assert isinstance(pending, BusySave)
        with ThreadPoolExecutor(1) as pool:
            finished = pool.submit(pending.finish)
            time.sleep(0.2)
            writer.execute("ROLLBACK")
            assert finished.result(timeout=30) is pending.replies
        pending.close()
        twin.say("用户名忘了")
        assert engine.store.get(chat.session_id) == plain.store.get(twin.session_id)
    finally:
        writer.close()
        engine.store.close()


class CountingPool(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(2)
        self.turns = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        self.turns += 1
        return super().submit(fn, *args, **kwargs)


WEB_CFG = {"web": {"session_secret": "test-secret-0123456789abcdef0123456789"}, "telegram": {"token": ""}}


@pytest.fixture
def pool(monkeypatch):
    """The web channel's turn threads, counting the turns handed to them."""
    pool = CountingPool()
    monkeypatch.setattr(channels.web, "_turns", lambda: pool)
    yield pool
    pool.shutdown()


def faq_answered_on_the_loop(client: TestClient, pool: CountingPool) -> str:
    """A new conversation whose FAQ question is answered without a worker thread; its session id."""
    sid = client.post("/api/session").json()["session_id"]
    r = client.post("/api/chat", json={"session_id": sid, "text": "忘记密码怎么办"})
    assert r.status_code == 200 and "找回密码" in r.json()["replies"][0]["text"] and pool.turns == 0
    return sid


def test_the_web_channel_answers_faq_on_the_loop_and_flows_in_a_thread(clock, tmp_path, pool):
    engine, _, _ = recorded_engine(clock, tmp_path)
    with TestClient(create_app(WEB_CFG, engine=engine)) as client:
        sid = faq_answered_on_the_loop(client, pool)
        r = client.post("/api/chat", json={"session_id": sid, "text": "忘记用户名"})
        start = next(b["payload"] for reply in r.json()["replies"] for b in reply["buttons"]
                     if "开始找回用户名" in b["label"])
        r = client.post("/api/chat", json={"session_id": sid, "payload": start})
        assert r.status_code == 200 and r.json()["flow"] == "recover_username" and pool.turns == 1


_HOLD_SESSION = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX, 1, int(sys.argv[2]))
print("held", flush=True)
sys.stdin.readline()
"""


def test_a_sqlite_session_another_worker_holds_is_not_waited_for_and_freed_when_it_dies(clock, tmp_path):
    """Another worker in this session's turn (its record lock on ``<db>.lock``): the loop's try-lock
    gives up at once; the worker killed, the kernel drops its lock and the next try takes it."""
    import subprocess
    import sys

    from handlers.sessions import storage_key

    engine, _, _ = recorded_engine(clock, tmp_path, SqliteStore(tmp_path / "sessions.db"))
    sid = new_session_id()
    offset = int(storage_key(sid)[:16], 16) % (1 << 62)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_SESSION, str(tmp_path / "sessions.db.lock"), str(offset)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        started = time.monotonic()
        assert engine.try_handle(sid, Message.from_text("忘记密码怎么办")) is None
        assert time.monotonic() - started < 0.5 and engine.store.get(sid) is None
        holder.kill()
        holder.wait(timeout=30)
        assert "找回密码" in engine.try_handle(sid, Message.from_text("忘记密码怎么办"))[0].text
    finally:
        holder.kill()
        engine.store.close()


def test_the_web_channel_answers_faq_on_the_loop_over_sqlite_sessions_and_limits(clock, tmp_path, pool, caplog):
    """``serve``'s default: SQLite sessions and the SQLite limiter, both tried on the loop; a database
    another process is writing sends the request to a thread, which answers it all the same."""
    from handlers.limits import Limits, SqliteLimiter

    engine, _, _ = recorded_engine(clock, tmp_path, SqliteStore(tmp_path / "sessions.db"))
    engine.limits = Limits(SqliteLimiter(tmp_path / "sessions.limits.db"), b"k" * 32)
    try:
        with TestClient(create_app(WEB_CFG, engine=engine)) as client:
            sid = faq_answered_on_the_loop(client, pool)
            writer = sqlite3.connect(tmp_path / "sessions.limits.db", isolation_level=None, check_same_thread=False)
            writer.execute("BEGIN IMMEDIATE")
            pending = pool.submit(time.sleep, 0.3)   # the writer lets go while the thread's turn waits
            pending.add_done_callback(lambda _: writer.execute("ROLLBACK"))
            r = client.post("/api/chat", json={"session_id": sid, "text": "怎么绑定微信"})
            assert r.status_code == 200 and "微信" in r.json()["replies"][0]["text"]
            assert pool.turns == 2 and not writer.in_transaction   # the sleep, then the turn
            assert "letting requests through" not in caplog.text   # the thread's turn waited and counted
            writer.close()
    finally:
        engine.limits.close()
        engine.store.close()


def test_the_web_channel_saves_a_busy_turn_again_on_the_loop(clock, tmp_path, pool):
    """Another process writing the sessions' database for a moment: the turn's save is tried again on
    the loop, not the turn done over in a thread; one held past the patience: the save waits in a thread."""
    engine, _, events = recorded_engine(clock, tmp_path, SqliteStore(tmp_path / "sessions.db"))
    try:
        with TestClient(create_app(WEB_CFG, engine=engine)) as client:
            sid = faq_answered_on_the_loop(client, pool)
            writer = sqlite3.connect(tmp_path / "sessions.db", isolation_level=None, check_same_thread=False)
            for hold, turns in ((0.01, 0), (0.3, 1)):
                writer.execute("BEGIN IMMEDIATE")
                timer = threading.Timer(hold, writer.execute, ("ROLLBACK",))
                timer.start()
                r = client.post("/api/chat", json={"session_id": sid, "text": "怎么绑定微信"})
                timer.join()
                assert r.status_code == 200 and "微信" in r.json()["replies"][0]["text"]
                assert pool.turns == turns
            writer.close()
        with sqlite3.connect(tmp_path / "sessions.db") as db:   # the one conversation: both turns saved
            (text,) = db.execute("SELECT state FROM sessions").fetchone()
        assert [said for who, said in json.loads(text)["transcript"] if "微信" in said and who != "助手"] == \
            ["怎么绑定微信"] * 2
        assert events.flush() and len(events.store.query(0)) == 3
    finally:
        engine.store.close()


class PendingSave:
    """A BusySave's protocol, recorded: never saved by retry; finish() waits for ``go``."""

    busy_for = 0.0005

    def __init__(self) -> None:
        self.replies = [Reply("ok")]
        self.calls: list[str] = []
        self.go = threading.Event()

    def retry(self) -> bool:
        self.calls.append("retry")
        return False

    def finish(self) -> list[Reply]:
        self.calls.append("finish")
        self.go.wait(10)
        return self.replies

    def close(self) -> None:
        self.calls.append("close")


def test_a_busy_save_given_up_by_its_client_still_releases_its_lock_once(monkeypatch, pool):
    """The request cancelled (its client left) while the save is retried: closed at once, never finished;
    while the thread's save runs: closed once that save is done, not before."""
    import asyncio

    from channels.web import WebChannel

    async def cancelled(pending: PendingSave, after: float) -> None:
        task = asyncio.ensure_future(WebChannel._save_soon(pending))   # type: ignore[arg-type]
        await asyncio.sleep(after)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    retried = PendingSave()
    asyncio.run(cancelled(retried, 0.003))
    assert retried.calls[-1] == "close" and set(retried.calls[:-1]) == {"retry"}

    monkeypatch.setattr(channels.web, "_LIMIT_PATIENCE", 0.0)
    finishing = PendingSave()

    async def cancelled_while_finishing() -> None:
        await cancelled(finishing, 0.05)
        assert "close" not in finishing.calls   # the thread still saves: the lock stays held
        finishing.go.set()
        for _ in range(200):
            if "close" in finishing.calls:
                break
            await asyncio.sleep(0.01)

    asyncio.run(cancelled_while_finishing())
    assert finishing.calls == ["finish", "close"]


def test_after_a_redis_failure_turns_and_limits_leave_the_loop_for_a_while():
    """An unreachable Redis may take its whole socket timeout to say so: after a failure, turns and
    limits go to worker threads for QUICK_PAUSE seconds, then are tried on the loop again."""
    from handlers.limits import RedisLimiter, Rule
    from handlers.sessions import QUICK_PAUSE

    closed = free_port()
    store = RedisStore(f"redis://127.0.0.1:{closed}/0", socket_timeout=0.5)
    limiter = RedisLimiter(f"redis://127.0.0.1:{closed}/0", socket_timeout=0.5)
    try:
        assert store.quick and limiter.quick
        with pytest.raises(StoreError):
            store.get("s1")
        assert limiter.hit("k", Rule(1, 60)) is None   # let through, as in any outage
        assert not store.quick and not limiter.quick
        store._failed_at -= QUICK_PAUSE   # noqa: SLF001 - the pause is over
        limiter._failed_at -= QUICK_PAUSE   # noqa: SLF001
        assert store.quick and limiter.quick
    finally:
        store.close()
        limiter.close()
