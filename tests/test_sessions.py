"""One contract, three session stores: the same tests run against each."""
from __future__ import annotations

import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from handlers.sessions import LockTimeout, MemoryStore, RedisStore, SqliteStore, StoreError, build_store
from settings import SessionsConfig
from support import Clock
from support.servers import REDIS_URL, hung_redis, require_redis

def _redis_store(prefix: str) -> RedisStore:
    require_redis()
    return RedisStore(REDIS_URL, prefix=prefix, lease=2.0)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "memory":
        s = MemoryStore()
    elif request.param == "sqlite":
        s = SqliteStore(tmp_path / "sessions.db")
    else:
        s = _redis_store(f"test-{secrets.token_hex(4)}:")
    yield s
    s.close()


def test_absent_session_is_none(store):
    assert store.get("nobody") is None


def test_save_get_roundtrip_keeps_json_types(store):
    state = {"flow": {"name": "x", "step": "id", "data": {"n": 1, "ok": True, "none": None}},
             "transcript": ["用户：你好", "🙂"], "ratio": 0.5}
    store.save("s1", state, ttl=60)
    assert store.get("s1") == state
    assert store.get("s2") is None


def test_save_replaces_and_delete_removes(store):
    store.save("s1", {"v": 1}, ttl=60)
    store.save("s1", {"v": 2}, ttl=60)
    assert store.get("s1") == {"v": 2}
    store.delete("s1")
    assert store.get("s1") is None
    store.delete("s1")  # absent is fine


def test_any_string_is_a_session_id(store):
    odd = ["", "a" * 5000, "\x00\udc80'; DROP TABLE sessions;--", "会话🙂"]
    for i, sid in enumerate(odd):
        store.save(sid, {"i": i}, ttl=60)
    for i, sid in enumerate(odd):
        assert store.get(sid) == {"i": i}


def test_lock_is_exclusive_per_session(store):
    order: list[str] = []
    inside = threading.Event()

    def holder():
        with store.lock("s1"):
            inside.set()
            time.sleep(0.2)
            order.append("first")

    t = threading.Thread(target=holder)
    t.start()
    inside.wait(5)
    with store.lock("s2", timeout=1):  # another session is not blocked
        order.append("other")
    with store.lock("s1", timeout=5):
        order.append("second")
    t.join()
    assert order == ["other", "first", "second"]


def test_lock_times_out_while_held(store):
    with store.lock("s1"):
        with pytest.raises(LockTimeout):
            with store.lock("s1", timeout=0.05):
                pass
    with store.lock("s1", timeout=1):  # released after the with-block
        pass


def test_lock_released_on_exception(store):
    with pytest.raises(RuntimeError):
        with store.lock("s1"):
            raise RuntimeError("boom")
    with store.lock("s1", timeout=0.5):
        pass


def test_no_lost_updates_under_concurrency(store):
    store.save("counter", {"n": 0}, ttl=60)

    def bump():
        for _ in range(10):
            with store.lock("counter"):
                n = store.get("counter")["n"]
                store.save("counter", {"n": n + 1}, ttl=60)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("counter") == {"n": 40}


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_state_expires_after_ttl(kind, tmp_path):
    clock = Clock(1_000_000.0)
    s = MemoryStore(clock=clock) if kind == "memory" else SqliteStore(tmp_path / "s.db", clock=clock)
    s.save("s1", {"v": 1}, ttl=10)
    clock.now += 9
    assert s.get("s1") == {"v": 1}
    clock.now += 2
    assert s.get("s1") is None


def test_redis_state_expires_after_ttl():
    s = _redis_store(f"test-{secrets.token_hex(4)}:")
    s.save("s1", {"v": 1}, ttl=1)
    assert s.get("s1") == {"v": 1}
    time.sleep(1.2)
    assert s.get("s1") is None


def test_sqlite_survives_reopen_and_is_json_on_disk(tmp_path):
    path = tmp_path / "s.db"
    SqliteStore(path).save("s1", {"姓名": "已清除"}, ttl=60)
    assert SqliteStore(path).get("s1") == {"姓名": "已清除"}
    import sqlite3
    raw = sqlite3.connect(path).execute("SELECT state FROM sessions").fetchone()[0]
    assert raw == '{"姓名":"已清除"}'
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_corrupt_row_reads_as_new_session(tmp_path):
    path = tmp_path / "s.db"
    s = SqliteStore(path)
    s.save("s1", {"v": 1}, ttl=60)
    import sqlite3
    with sqlite3.connect(path) as c:
        c.execute("UPDATE sessions SET state = 'not json'")
    assert s.get("s1") is None


_HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from handlers.sessions import RedisStore, SqliteStore
store = SqliteStore({path!r}) if {kind!r} == "sqlite" else RedisStore({url!r}, prefix={prefix!r}, lease=1.0)
with store.lock("s1"):
    print("held", flush=True)
    time.sleep(600)
"""


def _crash_holder(kind: str, **where) -> float:
    """Run a process that takes the lock of "s1", kill -9 it while it holds it; the kill time."""
    root = str(Path(__file__).resolve().parents[1])
    code = _HOLDER.format(root=root, kind=kind, path=str(where.get("path", "")), url=REDIS_URL,
                          prefix=where.get("prefix", ""))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
    finally:
        proc.kill()
        proc.wait()
    return time.monotonic()


def test_sqlite_lock_of_crashed_process_is_free_at_once(tmp_path):
    path = tmp_path / "s.db"
    _crash_holder("sqlite", path=str(path))
    with SqliteStore(path).lock("s1", timeout=0.5):   # the kernel dropped the dead process's record lock
        pass


def test_redis_lock_of_crashed_process_is_free_within_its_lease():
    prefix = f"test-{secrets.token_hex(4)}:"
    _redis_store(prefix)
    killed = _crash_holder("redis", prefix=prefix)
    store = RedisStore(REDIS_URL, prefix=prefix, lease=1.0)
    with store.lock("s1", timeout=10):  # generous wait on a loaded machine; the lease is what frees it
        waited = time.monotonic() - killed
    store.close()
    assert waited < 10


def test_redis_lease_is_renewed_while_held():
    s = _redis_store(f"test-{secrets.token_hex(4)}:")
    other = RedisStore(REDIS_URL, prefix=s._prefix, lease=0.3)
    s._lease_ms, s._renewer._every = 300, 0.1
    with s.lock("s1"):
        time.sleep(1.0)   # three leases long: only renewal keeps it
        with pytest.raises(LockTimeout):
            with other.lock("s1", timeout=0.05):
                pass
    other.close()


def test_redis_lease_renewer_keeps_a_new_holder_when_the_old_lease_ends_during_a_renewal():
    """The renewer works from a snapshot: a lock released and taken again by this process meanwhile
    (a new token) must stay renewed — dropping it let the new lease expire mid-turn."""
    from handlers.sessions import _Renewer

    calls: list[tuple[str, str]] = []
    renewer: _Renewer

    def renew(key: str, token: str) -> bool:
        calls.append((key, token))
        if token == "old":   # between the snapshot and this call: released, then taken again
            assert renewer.remove(key, "old")
            renewer.add(key, "new")
            return False     # the old token no longer holds the key
        return True

    renewer = _Renewer(renew, every=0.01)
    renewer.add("k", "old")
    deadline = time.monotonic() + 30
    while ("k", "new") not in calls:
        assert time.monotonic() < deadline, calls
        time.sleep(0.01)
    renewer.close()
    assert not renewer.remove("k", "old") and renewer.remove("k", "new")


def test_sqlite_processes_exclude_each_other(tmp_path):
    """Four processes bumping one counter under the lock: no lost update."""
    path = tmp_path / "s.db"
    SqliteStore(path).save("counter", {"n": 0}, ttl=60)
    root = str(Path(__file__).resolve().parents[1])
    code = f"""
import sys
sys.path.insert(0, {root!r})
from handlers.sessions import SqliteStore
s = SqliteStore({str(path)!r})
for _ in range(25):
    with s.lock("counter"):
        n = s.get("counter")["n"]
        s.save("counter", {{"n": n + 1}}, ttl=60)
"""
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert SqliteStore(path).get("counter") == {"n": 100}


def test_redis_unreachable_raises_store_error():
    s = RedisStore("redis://127.0.0.1:1/0", socket_timeout=0.5)
    with pytest.raises(StoreError):
        s.get("s1")
    with pytest.raises(StoreError):
        with s.lock("s1", timeout=0.1):
            pass


def test_a_redis_that_hangs_holds_a_try_lock_for_the_quick_timeout_not_the_socket_timeout():
    """A server that accepts and never answers (hung, not refusing): the event loop's try-lock gives up after
    QUICK_TIMEOUT (once per connect or call), and the store stops being ``quick``; a worker's lock would wait
    the 5 s socket timeout."""
    from handlers.sessions import QUICK_TIMEOUT

    with hung_redis() as url:
        store = RedisStore(url, socket_timeout=5.0)
        assert store.quick
        started = time.monotonic()
        with pytest.raises(StoreError):
            with store.lock("s1", timeout=0):
                pass
        assert time.monotonic() - started < 4 * QUICK_TIMEOUT + 0.5 < 5.0
        assert not store.quick
        store.close()


def test_build_store_by_backend(tmp_path):
    assert isinstance(build_store(SessionsConfig(backend="memory")), MemoryStore)
    assert isinstance(build_store(SessionsConfig(backend="sqlite", sqlite_path=str(tmp_path / "x.db"))), SqliteStore)
    with pytest.raises(ValueError, match="sessions.backend: Input should be 'sqlite', 'redis' or 'memory'"):
        SessionsConfig.parse({"backend": "pickle"})


def test_a_redis_turn_is_two_round_trips_and_reads_its_own_save():
    s = _redis_store(f"test-{secrets.token_hex(6)}:")
    other = RedisStore(REDIS_URL, prefix=s._prefix)
    sent = []   # every command, on redis-py's client and on the store's lean script connections
    execute, call = s._client.execute_command, s._lean.call
    s._client.execute_command = lambda *a, **k: sent.append(a[0]) or execute(*a, **k)
    s._lean.call = lambda command, fallback: sent.append(command.split(b"\r\n")[2]) or call(command, fallback)

    def turn(value: int) -> dict | None:
        with s.lock("sid"):
            before = s.get("sid")
            s.save("sid", {"n": value}, 60)
            assert s.get("sid") == {"n": value}         # its own save, before it is sent
            assert other.get("sid") == before            # sent with the release, not before
        return before

    try:
        assert turn(1) is None                           # (the scripts are loaded on first use)
        sent.clear()
        assert turn(2) == {"n": 1}
        assert sent == [b"EVALSHA", b"EVALSHA"]          # lock + read, then save + release
        assert other.get("sid") == {"n": 2}
        with other.lock("sid", timeout=1):               # released
            pass
        with s.lock("sid"):
            s.delete("sid")
            assert s.get("sid") is None
        assert other.get("sid") is None
    finally:
        other.close()
        s.close()
