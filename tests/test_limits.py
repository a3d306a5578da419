"""Abuse limits: one contract for the in-process, the SQLite and the Redis limiter (the same cases over
each); the SQLite file shared by OS processes; SMS limits across conversations."""
from __future__ import annotations

import logging
import secrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from accounts.local import LocalAccountClient
from handlers.flows.common import LOGIN_CODE_SENT
from handlers.limits import Limits, MemoryLimiter, RedisLimiter, Rule, SqliteLimiter, build_limits, parse_rules
from support import Chat, Clock, make_engine
from support.servers import REDIS_URL, hung_redis, require_redis
from handlers.types import Message

def _redis() -> RedisLimiter:
    require_redis()
    return RedisLimiter(REDIS_URL, prefix=f"test-rl-{secrets.token_hex(4)}:")


@pytest.fixture(params=["memory", "sqlite", "redis"])
def limiter(request, tmp_path):
    lim = {"memory": MemoryLimiter, "sqlite": lambda: SqliteLimiter(tmp_path / "limits.db"),
           "redis": _redis}[request.param]()
    yield lim
    lim.close()


@pytest.fixture(params=["memory", "sqlite"])
def clocked(request, tmp_path):
    """A limiter on a settable clock (Redis keeps the server's own time)."""
    clock = Clock(1000.0)
    lim = MemoryLimiter(clock=clock) if request.param == "memory" else SqliteLimiter(tmp_path / "l.db", clock=clock)
    yield lim, clock
    lim.close()


def test_allows_the_limit_then_refuses_with_an_honest_wait(limiter):
    rule = Rule(3, 60)
    assert [limiter.hit("k", rule) for _ in range(3)] == [None, None, None]
    waits = [limiter.hit("k", rule) for _ in range(5)]
    assert all(w is not None and 1 <= w <= 60 for w in waits)
    assert limiter.hit("other", rule) is None   # keys are independent


def test_hit_all_counts_in_order_and_stops_at_the_first_refusal(limiter):
    per_address, per_conversation = Rule(2, 60), Rule(1, 60)
    checks = [("ip", per_address), ("conv", per_conversation)]
    assert limiter.hit_all(checks) is None                 # both counted
    wait = limiter.hit_all(checks)                          # the conversation's limit refuses...
    assert wait is not None and 1 <= wait <= 60
    assert limiter.hit("ip", per_address) is not None      # ...after the address's counted its 2nd
    assert limiter.hit_all([("ip2", per_address), ("conv2", per_conversation)]) is None   # keys independent
    assert limiter.hit_all([("ip", per_address), ("conv3", per_conversation)]) is not None
    assert limiter.hit("conv3", per_conversation) is None  # not reached past the first refusal


def test_a_throttle_limits_one_kind_of_event_per_value_under_hashed_keys(limiter):
    limits = Limits(limiter, b"s" * 32)
    staff, other = limits.throttle("staff", 2, 60), limits.throttle("staff-login", 2, 60)
    assert [staff.hit("10.0.0.1") for _ in range(2)] == [0, 0]
    assert 1 <= staff.hit("10.0.0.1") <= 60                # an int: 0 allowed, else whole seconds
    assert staff.hit("10.0.0.2") == 0 and other.hit("10.0.0.1") == 0   # per value, per kind
    if isinstance(limiter, MemoryLimiter):
        assert not [k for k in limiter._logs if "10.0.0" in k]
    if isinstance(limiter, SqliteLimiter):
        logs = dict(limiter._conn().execute("SELECT key, length(log) / 8 FROM rl_logs"))
        assert sorted(logs.values()) == [1, 1, 2] and not [k for k in logs if "10.0.0" in k]


def test_a_throttle_of_its_own_counts_in_this_process():
    from handlers.limits import Throttle

    t = Throttle.memory("events", 1, 60)
    assert t.hit("a") == 0 and t.hit("a") >= 1 and t.hit("b") == 0


def test_refused_events_are_not_counted_and_the_window_slides(clocked):
    lim, clock = clocked
    rule = Rule(2, 10)
    assert lim.hit("k", rule) is None
    clock.now += 6
    assert lim.hit("k", rule) is None
    assert lim.hit("k", rule) == 4          # the first event leaves the window in 4 s
    clock.now += 4
    assert lim.hit("k", rule) is None       # one slot freed, not the whole window
    assert lim.hit("k", rule) == 6          # now the event at +6 is the oldest


def test_redis_window_expires():
    lim = _redis()
    rule = Rule(1, 1)
    assert lim.hit("k", rule) is None
    assert lim.hit("k", rule) == 1
    import time
    deadline = time.monotonic() + 10
    while lim.hit("k", rule) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_redis_down_lets_events_through():
    lim = RedisLimiter("redis://127.0.0.1:1/0", socket_timeout=0.2)
    assert lim.hit("k", Rule(1, 60)) is None
    assert lim.hit("k", Rule(1, 60)) is None


# ---- SQLite: shared by the processes of one machine --------------------------------------------

def test_sqlite_counts_are_shared_by_every_limiter_on_the_file(tmp_path):
    """Two limiters on one file (two workers) spend one budget: not twice the limit."""
    a, b = SqliteLimiter(tmp_path / "limits.db"), SqliteLimiter(tmp_path / "limits.db")
    try:
        rule = Rule(3, 60)
        assert [a.hit("k", rule), b.hit("k", rule), a.hit("k", rule)] == [None, None, None]
        assert b.hit("k", rule) is not None and a.hit("k", rule) is not None
        assert b.hit_all([("k2", rule), ("k", rule)]) is not None and a.hit("k2", Rule(1, 60)) is not None
    finally:
        a.close()
        b.close()


_HAMMER = """
import sys
sys.path.insert(0, sys.argv[1])
from handlers.limits import Rule, SqliteLimiter
lim = SqliteLimiter(sys.argv[2])
rule = Rule(int(sys.argv[3]), 600)


def hit():
    if sys.argv[5] == "try":   # as the event loop does: try without waiting, else wait in a thread
        done, wait = lim.try_hit_all([("phone", rule)])
        if done:
            return wait
    return lim.hit("phone", rule)


print(sum(hit() is None for _ in range(int(sys.argv[4]))))
"""


@pytest.mark.parametrize("mode", ["hit", "try"])
def test_sqlite_processes_hitting_at_once_allow_exactly_the_limit(tmp_path, mode):
    """Three OS processes, 40 events each at the same time, limit 50: exactly 50 allowed in all
    (each call is one write transaction: no lost update, no event counted twice) — also when each
    event is first tried without waiting (``try_hit_all``), then counted by ``hit`` when busy."""
    root = str(Path(__file__).resolve().parent.parent)
    db = str(tmp_path / "limits.db")
    SqliteLimiter(db).close()   # the schema first, so the racers only race on the counting
    procs = [subprocess.Popen([sys.executable, "-c", _HAMMER, root, db, "50", "40", mode], stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    allowed = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs) and sum(allowed) == 50, allowed


def test_sqlite_forgets_expired_events(tmp_path):
    """A key's old events go when it is hit again; those of keys nobody hits go in the periodic sweep."""
    clock = Clock(1000.0)
    lim = SqliteLimiter(tmp_path / "limits.db", clock=clock)
    lim.SWEEP_EVERY = 10
    try:
        for i in range(5):
            assert lim.hit(f"once-{i}", Rule(1, 60)) is None
        assert _rows(tmp_path) == 5
        clock.now += 61
        assert lim.hit("once-0", Rule(1, 60)) is None    # its own old event dropped, the new one counted
        assert _rows(tmp_path) == 5
        clock.now += 60                                 # a row expires up to a window late (its index moves seldom)
        for _ in range(4):                              # the 10th call sweeps the other expired keys
            lim.hit("busy", Rule(100, 600))
        assert _rows(tmp_path) == 1 + 4
    finally:
        lim.close()


def _rows(tmp_path) -> int:
    """The events kept in the file's logs."""
    with sqlite3.connect(tmp_path / "limits.db") as conn:
        return conn.execute("SELECT coalesce(sum(length(log) / 8), 0) FROM rl_logs").fetchone()[0]


_HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


def test_sqlite_workers_take_turns_on_a_record_lock_a_stuck_one_stops_no_other(tmp_path, caplog):
    """The workers of one machine take turns on ``<db>.lock`` before the transaction (not in SQLite's
    sleeping wait): one that holds it past the timeout (stopped, hung) lets the others' events through
    with the usual warning; once it lets go they count again."""
    lim = SqliteLimiter(tmp_path / "limits.db", timeout=0.1)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path / "limits.db.lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with caplog.at_level(logging.WARNING, logger="handlers.limits"):
            assert [lim.hit("k", Rule(1, 60)) for _ in range(2)] == [None, None]
        assert "letting requests through" in caplog.text
        holder.communicate("\n", timeout=30)
        assert lim.hit("k", Rule(1, 60)) is None and lim.hit("k", Rule(1, 60)) is not None
    finally:
        holder.kill()
        lim.close()


def test_try_hit_all_counts_as_hit_all_does(limiter):
    rule = Rule(2, 60)
    assert limiter.try_hit_all([("k", rule)]) == (True, None)
    assert limiter.try_hit_all([("k2", rule), ("k", rule)]) == (True, None)
    done, wait = limiter.try_hit_all([("k", rule)])
    assert done and wait is not None and 1 <= wait <= 60
    assert limiter.hit("k2", rule) is None and limiter.hit("k2", rule) is not None


def test_sqlite_try_hit_all_never_waits_and_counts_nothing_when_busy(tmp_path, caplog):
    """Another worker on the record lock, or another process in its write transaction: ``(False, None)``
    at once (busy_timeout 0), nothing counted and nothing said (the thread's ``hit`` will wait)."""
    lim = SqliteLimiter(tmp_path / "limits.db", timeout=5.0)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path / "limits.db.lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    writer = sqlite3.connect(tmp_path / "limits.db", isolation_level=None)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with caplog.at_level(logging.WARNING, logger="handlers.limits"):
            started = time.monotonic()
            assert lim.try_hit_all([("k", Rule(1, 60))]) == (False, None)
            holder.communicate("\n", timeout=30)
            writer.execute("BEGIN IMMEDIATE")
            assert lim.try_hit_all([("k", Rule(1, 60))]) == (False, None)
            assert time.monotonic() - started < 1.0
            writer.execute("ROLLBACK")
        assert "letting requests through" not in caplog.text
        assert lim.try_hit_all([("k", Rule(1, 60))]) == (True, None)   # the first counted event
        assert lim.hit("k", Rule(1, 60)) is not None
    finally:
        holder.kill()
        writer.close()
        lim.close()


def test_sqlite_locked_or_broken_lets_events_through_with_a_warning(tmp_path, caplog):
    """Another process holding the write lock past the timeout, or a file that is no database: the
    event passes (an outage of the limiter is not an outage of the bot) and one warning says so."""
    lim = SqliteLimiter(tmp_path / "limits.db", timeout=0.1)
    holder = sqlite3.connect(tmp_path / "limits.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with caplog.at_level(logging.WARNING, logger="handlers.limits"):
            assert [lim.hit("k", Rule(1, 60)) for _ in range(3)] == [None, None, None]
        assert [r.getMessage() for r in caplog.records].count(
            "rate limiter database failed (OperationalError): letting requests through") == 1
        holder.execute("ROLLBACK")
        assert lim.hit("k", Rule(1, 60)) is None and lim.hit("k", Rule(1, 60)) is not None   # counting again
        lim._conn().execute("BEGIN")   # a transaction left open (a ROLLBACK that failed): not stuck
        assert lim.hit("k2", Rule(1, 60)) is None and lim.hit("k2", Rule(1, 60)) is not None
    finally:
        holder.close()
        lim.close()
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    broken = SqliteLimiter(tmp_path / "junk.db")
    assert broken.hit("k", Rule(1, 60)) is None and broken.hit("k", Rule(1, 60)) is None
    broken.close()


def test_keys_are_keyed_hashes_never_the_value():
    limits = Limits(MemoryLimiter(), b"s" * 32)
    key = limits.key("sms_per_target", "user:zhangsan01")
    assert "zhangsan01" not in key and key == limits.key("sms_per_target", "user:zhangsan01")
    assert key != Limits(MemoryLimiter(), b"t" * 32).key("sms_per_target", "user:zhangsan01")
    assert limits.client_id("ip:10.0.0.1") == limits.client_id("ip:10.0.0.1") != limits.client_id("ip:10.0.0.2")


def test_only_the_web_apis_values_are_kept_in_memory_never_a_flows_target():
    limits = Limits(MemoryLimiter(), b"s" * 32)
    limits.hit("sms_per_target", "id:居民身份证:110101199003071234")
    limits.hit("sms_per_client", "client-1")
    assert limits._keys.cache_info().currsize == 0          # an ID number (and a flow's client) is hashed afresh
    limits.hit_all([("chat_per_ip", "10.0.0.1"), ("chat_per_session", "s1")])
    limits.client_id("ip:10.0.0.1")
    assert limits._keys.cache_info().currsize == 3
    assert limits.key("chat_per_ip", "10.0.0.1") == limits._mac("chat_per_ip", "10.0.0.1")


def test_config_rules_are_checked():
    assert parse_rules({"backend": "auto", "chat_per_ip": {"limit": 5, "window": 10}}) == {"chat_per_ip": Rule(5, 10)}
    with pytest.raises(ValueError, match="limits.chat_per_moon"):
        parse_rules({"chat_per_moon": {"limit": 5, "window": 10}})
    with pytest.raises(ValueError, match="limits.chat_per_ip"):
        parse_rules({"chat_per_ip": {"limit": 0, "window": 10}})
    assert isinstance(build_limits({"sessions": {"backend": "redis", "redis_url": REDIS_URL}}, b"x").limiter,
                      RedisLimiter)
    assert isinstance(build_limits({"sessions": {"backend": "sqlite"}}, b"x").limiter, MemoryLimiter)
    assert isinstance(build_limits({"sessions": {"backend": "memory"}}, b"x").limiter, MemoryLimiter)


def test_serve_counts_in_sqlite_beside_the_sessions_when_they_are_in_sqlite(tmp_path):
    """``serve`` (one worker or N) with SQLite sessions and ``limits.backend: auto``: SQLite beside
    the sessions' file, so the workers count together; explicit backends and other sessions stay."""
    from channels.launcher import served_config

    sessions = {"backend": "sqlite", "sqlite_path": str(tmp_path / "s" / "sessions.db")}
    limits = build_limits(served_config({"sessions": sessions}), b"x")
    try:
        assert isinstance(limits.limiter, SqliteLimiter)
        assert limits.hit("sms_per_target", "user:x") is None
        assert (tmp_path / "s" / "sessions.limits.db").exists()
    finally:
        limits.close()
    own = build_limits(served_config({"sessions": sessions, "limits": {"sqlite_path": str(tmp_path / "l.db")}}),
                       b"x")
    own.close()
    assert (tmp_path / "l.db").exists()
    assert served_config({"sessions": sessions, "limits": {"backend": "memory"}})["limits"]["backend"] == "memory"
    assert "limits" not in served_config({"sessions": {"backend": "memory"}})
    assert "limits" not in served_config({"sessions": {"backend": "redis"}})


def test_redis_limits_live_under_the_sessions_key_prefix():
    """Two deployments on one Redis (different ``sessions.redis_prefix``) count apart; the instances of
    one deployment count together."""
    def limits(prefix: str) -> Limits:
        cfg = {"sessions": {"backend": "redis", "redis_url": REDIS_URL, "redis_prefix": prefix},
               "limits": {"sms_per_target": {"limit": 1, "window": 60}}}
        return build_limits(cfg, b"same-secret")

    one, other = f"test-limits-{secrets.token_hex(4)}:", f"test-limits-{secrets.token_hex(4)}:"
    a, b, c = limits(one), limits(one), limits(other)
    try:
        assert a.hit("sms_per_target", "user:x") is None
        assert b.hit("sms_per_target", "user:x") is not None    # same deployment: already spent
        assert c.hit("sms_per_target", "user:x") is None        # another prefix: its own count
    finally:
        for lim in (a, b, c):
            lim.close()


# ---- through the engine: SMS across conversations ------------------------------------------------

def _login_attempt(engine, client: str, username: str) -> str:
    return _login_attempt_in(Chat(engine), client, username)


def _login_attempt_in(chat, client: str, username: str) -> str:
    chat.send(Message(kind="text", text="绑定微信", client=client))
    chat.send(Message(kind="button", payload="flow:bind_account", client=client))
    chat.send(Message(kind="button", payload="provider:wechat", client=client))
    chat.send(Message(kind="text", text=username, client=client))
    return chat.text


def test_one_client_gets_no_more_sms_than_the_limit_whatever_the_conversations(tmp_path):
    acc = LocalAccountClient()
    limits = Limits(MemoryLimiter(), b"k" * 32, {"sms_per_client": Rule(4, 3600), "sms_per_target": Rule(2, 3600)})
    engine = make_engine(acc, data_dir=tmp_path, limits=limits)
    phones = {"zhangsan01": "13800138001", "zhangsan02": "13800138002", "wangwu88": "13700137004"}
    texts = [_login_attempt(engine, "ip:203.0.113.9", name) for _ in range(14) for name in phones]
    sent = sum(len(acc.outbox(p)) for p in phones.values())
    assert sent == 4                                     # the per-client limit, over 42 conversations
    assert sum(LOGIN_CODE_SENT in t for t in texts) == 4
    assert all("太频繁" in t for t in texts if LOGIN_CODE_SENT not in t)
    # another client is limited per account: zhangsan01 already had 2 SMS
    assert "太频繁" in _login_attempt(engine, "ip:198.51.100.7", "zhangsan01")
    assert LOGIN_CODE_SENT in _login_attempt(engine, "ip:198.51.100.7", "wangwu88")
    acc.close()


def test_retries_while_the_account_service_is_down_do_not_spend_the_sms_budget(tmp_path):
    """The same step attempt retried ("重试", same idempotency key: at most one SMS) counts once."""
    from accounts.base import ServiceUnavailable
    from support.flows import Faulty

    acc = Faulty(LocalAccountClient())
    acc.fail["start_login"] = [ServiceUnavailable("down") for _ in range(4)]
    limits = Limits(MemoryLimiter(), b"k" * 32, {"sms_per_client": Rule(2, 3600), "sms_per_target": Rule(2, 3600)})
    engine = make_engine(acc, data_dir=tmp_path, limits=limits)
    chat = Chat(engine)
    assert "暂时无法连接" in _login_attempt_in(chat, "ip:203.0.113.9", "zhangsan01")
    for _ in range(3):   # the service is still down: each retry is told so, none refused as too frequent
        chat.send(Message(kind="button", payload="cmd:retry", client="ip:203.0.113.9"))
        assert "暂时无法连接" in chat.text
    chat.send(Message(kind="button", payload="cmd:retry", client="ip:203.0.113.9"))
    assert LOGIN_CODE_SENT in chat.text
    assert len(set(acc.keys["start_login"])) == 1 and len(acc.inner.outbox("13800138001")) == 1
    acc.inner.close()


def test_the_account_api_sees_one_stable_identity_per_client(tmp_path):
    from support.flows import Faulty

    acc = Faulty(LocalAccountClient())
    engine = make_engine(acc, data_dir=tmp_path, limits=Limits(MemoryLimiter(), b"k" * 32))
    seen = []
    for client in ("ip:203.0.113.9",) * 3 + ("ip:198.51.100.7",):
        acc.client_ids.clear()
        _login_attempt(engine, client, "zhangsan01")
        seen.append(set(acc.client_ids))
    assert seen[0] == seen[1] == seen[2] and len(seen[0]) == 1 and seen[3] != seen[0]
    assert "203.0.113.9" not in next(iter(seen[0]))
    acc.inner.close()


def test_sqlite_logs_agree_with_the_exact_sliding_log_and_their_expiry_covers_them(tmp_path):
    """A key's row holds its counted events in order, as the in-process log does, through drops,
    refusals and sweeps; its ``expires`` is never before its newest event's window ends (the sweep
    forgets no live event) and moves seldom (the index is left alone on most writes)."""
    import array

    clock = Clock(1000.0)
    lim = SqliteLimiter(tmp_path / "limits.db", clock=clock)
    lim.SWEEP_EVERY = 7
    rule = Rule(3, 10)

    def logs() -> dict[str, tuple[float, list[float]]]:
        return {k: (e, array.array("d", log).tolist()) for k, e, log in
                lim._conn().execute("SELECT key, expires, log FROM rl_logs")}

    twin = MemoryLimiter(clock=clock)   # the exact sliding log to agree with
    moves = 0
    try:
        for step in range(40):
            clock.now += 1.5 if step % 5 else 0.25
            key = f"k{step % 2}"
            before = logs().get(key, (None,))[0]
            assert lim.hit(key, rule) == twin.hit(key, rule), step
            expires, log = logs()[key]
            moves += expires != before
            assert log == sorted(log) and log[-1] + rule.window <= expires
            assert [t for t in log if t > clock.now - rule.window] == list(twin._logs[key])
        assert any(twin.hit(k, rule) is not None for k in ("k0", "k1"))   # the walk did reach the limit
        assert moves < 12
        assert lim.hit_all([("k2", Rule(5, 10)), ("k2", Rule(5, 10))]) is None   # one key twice: both counted
        assert len(logs()["k2"][1]) == 2
        clock.now += 100
        for _ in range(7):
            lim.hit("other", Rule(100, 600))   # the 7th call sweeps k0, k1 and k2
        assert set(logs()) == {"other"}
    finally:
        lim.close()


def test_sqlite_file_from_before_the_logs_starts_with_empty_logs(tmp_path):
    """An older version's file (a row per event, a count per key): its tables go, the logs start empty."""
    db = tmp_path / "limits.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE rl_events (key TEXT NOT NULL, at REAL NOT NULL, expires REAL NOT NULL)")
        conn.execute("INSERT INTO rl_events VALUES ('k', ?, ?)", (time.time(), time.time() + 60))
        conn.execute("CREATE TABLE rl_keys (key TEXT PRIMARY KEY, n INTEGER NOT NULL, expires REAL NOT NULL)")
        conn.execute("INSERT INTO rl_keys VALUES ('k', 1, ?)", (time.time() + 60,))
    lim = SqliteLimiter(db)
    try:
        assert lim.hit("k", Rule(1, 60)) is None and lim.hit("k", Rule(1, 60)) is not None
        tables = {name for (name,) in lim._conn().execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"rl_logs"}
        lim._conn().execute("UPDATE rl_logs SET log = x'0102'")   # not a log: read as an empty one
        assert lim.hit("k", Rule(1, 60)) is None and lim.hit("k", Rule(1, 60)) is not None
    finally:
        lim.close()


def test_a_redis_limiter_that_hangs_costs_the_event_loops_try_the_quick_timeout():
    """A server that accepts and never answers: ``try_hit_all`` (the loop's) lets the request through after
    QUICK_TIMEOUT, not the 2 s socket timeout, and the limiter stops being quick."""
    from handlers.sessions import QUICK_TIMEOUT

    with hung_redis() as url:
        limiter = RedisLimiter(url, socket_timeout=2.0)
        started = time.monotonic()
        assert limiter.try_hit_all([("k", Rule(1, 60))]) == (True, None)   # unreachable: let through
        assert time.monotonic() - started < 3 * QUICK_TIMEOUT < 2.0
        assert not limiter.quick and limiter.try_hit_all([("k", Rule(1, 60))]) == (False, None)
        limiter.close()

