"""Rate and abuse limits: how often one client, conversation, staff member, WeChat user or
target account may do something. The one limiter of the bot (the engine's SMS and look-up
limits, the web chat's, the staff console's, the hand-off API's, the live-event streams',
WeChat's messages per user).

Contract (every ``Limiter`` keeps it):
- ``hit(key, rule)`` counts one event for ``key`` and returns ``None`` when it is within
  ``rule`` (at most ``rule.limit`` events in any ``rule.window`` seconds: a sliding log,
  exact), else the whole seconds to wait before one more would be allowed (≥ 1); a refused
  event is not counted, so the wait is honest.
- ``hit_all([(key, rule), ...])`` is ``hit`` for each pair in order, stopping at the first
  refusal (whose wait it returns; the pairs before it stay counted, each being a limit of its
  own) — in one round trip to the backend.
- Keys are HMACs (``Limits.key``): IP addresses, phone numbers and usernames are never
  stored in clear.
- A limiter whose backend is unreachable lets the event through and logs a warning
  (limits must not turn an outage of Redis into an outage of the bot); nothing escapes.
- ``quick``: True when a call never waits on more than one round trip (memory, Redis), so the web
  server may check limits on its event loop; SQLite's may wait for a file lock. Redis's is False
  for ``handlers.sessions.QUICK_PAUSE`` seconds after a failure (its timeout is a wait).
- ``try_hit_all(checks)`` → ``(done, wait)``: ``hit_all`` for a caller that must not wait (the event
  loop): ``(True, wait)`` when it could count without waiting, else ``(False, None)`` with nothing
  counted (then call ``hit_all`` where waiting is fine). SQLite's takes its locks as try-locks and
  writes over a connection with busy_timeout 0; memory's and a quick Redis's are ``hit_all``.
  ``busy_for`` (SQLite): the seconds another worker typically holds what a refused try waited for
  (one short transaction), so an async caller may try again that soon instead of going to a thread.

``MemoryLimiter`` is the in-process twin (one process only); ``SqliteLimiter`` shares the
counts between the workers of one machine (``serve --workers N`` on the SQLite default: one
file beside the sessions' database); ``RedisLimiter`` shares them between workers and instances.
``Limits`` holds the named rules over one limiter; ``Limits.throttle(name, rule)`` is a limit on
one kind of event (``Throttle.hit(value)`` → 0 or seconds to wait). ``build_limits(cfg)`` takes
``limits.backend``; ``auto`` is Redis when the sessions are, else memory (one process: tests,
tools), and ``serve`` turns it into SQLite when the sessions are in SQLite
(``channels.launcher.served_config``): every worker of the machine counts together.
"""
from __future__ import annotations

import array
import base64
import bisect
import collections
import contextlib
import fcntl
import functools
import os
import hmac
import logging
import math
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from settings import LimitsConfig

from .sessions import QUICK_TIMEOUT, LockTimeout, QuickUntilFailure, poll_lock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    """At most ``limit`` events in any ``window`` seconds."""

    limit: int
    window: int


# The rules and their defaults: settings.LimitsConfig (config.yaml ``limits`` overrides each).
DEFAULT_RULES: dict[str, Rule] = {name: Rule(r.limit, r.window) for name, r in LimitsConfig().rules().items()}


class Limiter(Protocol):
    """Counts events per key under a rule."""

    def hit(self, key: str, rule: Rule) -> int | None: ...

    def hit_all(self, checks: Sequence[tuple[str, Rule]]) -> int | None: ...

    def close(self) -> None: ...


class MemoryLimiter:
    """The in-process twin: exact sliding logs in a dict (one process only)."""

    quick = True

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._logs: dict[str, collections.deque[float]] = {}
        self._mutex = threading.Lock()
        self._writer = threading.Lock()   # one transaction at a time per process
        self._hits = 0

    def hit(self, key: str, rule: Rule) -> int | None:
        return self.hit_all(((key, rule),))

    def hit_all(self, checks: Sequence[tuple[str, Rule]]) -> int | None:
        now = self._clock()
        with self._mutex:
            self._hits += 1
            if self._hits % 1000 == 0:
                self._sweep(now)
            for key, rule in checks:
                events = self._logs.setdefault(key, collections.deque())
                while events and events[0] <= now - rule.window:
                    events.popleft()
                if len(events) >= rule.limit:
                    return max(1, math.ceil(events[0] + rule.window - now))
                events.append(now)
            return None

    def try_hit_all(self, checks: Sequence[tuple[str, Rule]]) -> tuple[bool, int | None]:
        return True, self.hit_all(checks)

    def _sweep(self, now: float, horizon: int = 86400) -> None:
        for key in [k for k, v in self._logs.items() if not v or v[-1] <= now - horizon]:
            del self._logs[key]

    def close(self) -> None:
        pass


class SqliteLimiter:
    """Sliding logs in one SQLite file shared by the processes of one machine (WAL).

    One row per key, ``(key, expires, log)``: the times of its counted events, in order, as one blob of
    doubles (at most ``limit`` of them: a refused event is not counted), and a time by which every one
    of them has expired. Each ``hit_all`` is one short write transaction (``BEGIN IMMEDIATE``: the
    file's write lock, for the few statements of one call, never across a request): one SELECT of
    its keys' rows, the expired times cut off and the new one added in Python, the rows written back
    in one ``executemany`` — four statements and a page or two written for two keys, where a row per
    event took ten and about nine (wrk c=32 with two workers: 75 → 57 µs CPU a call; 71 → 35 with
    logs of a few events). ``expires`` (indexed) moves only when it falls short of the new event's
    window, then to two windows ahead, so most writes leave the index alone. A log's bytes are
    rewritten with each event: fine for limits of hundreds or a few thousand (8 bytes an event).
    Every ``SWEEP_EVERY`` calls (per process) a bounded delete removes keys nobody hits any more
    whose every event expired. A file from before (a row per event) starts with empty logs.
    Times are the wall clock (shared by the processes). A database that is locked past ``timeout``
    or broken lets the event through and logs a warning, like Redis down. The processes take turns
    on a record lock of ``<db>.lock`` before the transaction, so its write lock is free when they ask
    for it."""

    SWEEP_EVERY = 500
    SWEEP_ROWS = 5000
    quick = False
    busy_for = 0.0005   # try_hit_all refused: another worker's transaction, a few hundred µs

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time, timeout: float = 2.0) -> None:
        self._path, self._clock, self._timeout = str(path), clock, timeout
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._mutex = threading.Lock()
        self._writer = threading.Lock()   # one transaction at a time per process
        self._hits = 0
        self._warned = 0.0
        self._lock_fd: int | None = None
        self._nowait: sqlite3.Connection | None = None   # try_hit_all's (busy_timeout 0), used under _writer
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self._path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self._create(self._conn())
        except sqlite3.Error as e:
            self._warn(e)

    @staticmethod
    def _create(conn: sqlite3.Connection) -> None:
        """The table; an older version's (a row per event, a count per key) are dropped: empty logs."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in (   # one by one: executescript would commit the transaction first
                    "DROP TABLE IF EXISTS rl_events",
                    "DROP TABLE IF EXISTS rl_keys",
                    "CREATE TABLE IF NOT EXISTS rl_logs (key TEXT PRIMARY KEY, expires REAL NOT NULL, log BLOB NOT NULL)",
                    "CREATE INDEX IF NOT EXISTS rl_logs_expires ON rl_logs (expires)"):
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(self._timeout)
            self._local.conn = conn
        return conn

    def _connect(self, timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")   # counts, not records: a power cut may forget the last ones
        except sqlite3.Error:
            conn.close()
            raise
        with self._mutex:
            self._conns.append(conn)
        return conn

    def _warn(self, e: BaseException) -> None:
        if time.monotonic() - self._warned > 60:   # one warning a minute, not one per request
            self._warned = time.monotonic()
            log.warning("rate limiter database failed (%s): letting requests through", e.__class__.__name__)

    def hit(self, key: str, rule: Rule) -> int | None:
        return self.hit_all(((key, rule),))

    def hit_all(self, checks: Sequence[tuple[str, Rule]]) -> int | None:
        # this process's threads take turns on a mutex, not in SQLite's wait for the write lock (which
        # sleeps up to 100 ms between tries: chat API p99 1.5 s at 32 connections, 0.2 s with the mutex)
        if not self._writer.acquire(timeout=self._timeout):
            self._warn(sqlite3.OperationalError("database is locked"))
            return None
        try:
            with self._between_processes() as held:
                if not held:
                    self._warn(sqlite3.OperationalError("database is locked"))
                    return None
                return self._hit_all(checks)
        finally:
            self._writer.release()

    def try_hit_all(self, checks: Sequence[tuple[str, Rule]]) -> tuple[bool, int | None]:
        """``hit_all`` without waiting (see the module's contract): this process's mutex and the machine's
        record lock are tried once, and the transaction runs over a connection with busy_timeout 0, so a
        lock held elsewhere or SQLITE_BUSY is ``(False, None)`` at once with nothing counted."""
        if not self._writer.acquire(blocking=False):
            return False, None
        try:
            fd = self._lock_fd
            if fd is not None:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:   # held by another process (or failing: hit_all will say so)
                    return False, None
            try:
                if self._nowait is None:
                    self._nowait = self._connect(0.0)
                return True, self._transaction(self._nowait, checks)
            except sqlite3.Error:   # busy, or broken: hit_all waits, or lets the event through and warns
                return False, None
            finally:
                if fd is not None:
                    fcntl.lockf(fd, fcntl.LOCK_UN)
        finally:
            self._writer.release()

    @contextlib.contextmanager
    def _between_processes(self) -> Any:
        """The machine's workers take turns on a record lock of ``<db>.lock`` (tried again after 0.1,
        0.2, 0.4 … at most 1 ms, up to the timeout), not in SQLite's wait for the write lock, which
        sleeps 1, 2, 5, 10 … 100 ms between tries (``serve`` with 2 workers: p99 0.4 s at 32
        connections). Yields False when it timed out (the event is let through, as when locked)."""
        fd = self._lock_fd
        if fd is None:
            yield True
            return

        def acquire() -> bool:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, PermissionError):
                return False
            return True

        try:
            poll_lock(acquire, self._timeout, first=0.0001, most=0.001)
            held = True
        except LockTimeout:
            held = False
        if not held:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)

    def _hit_all(self, checks: Sequence[tuple[str, Rule]]) -> int | None:
        try:
            return self._transaction(self._conn(), checks)
        except sqlite3.Error as e:
            self._warn(e)
            return None

    def _transaction(self, conn: sqlite3.Connection, checks: Sequence[tuple[str, Rule]]) -> int | None:
        """One write transaction counting ``checks`` (sqlite3.Error when it failed: nothing counted)."""
        with self._mutex:
            self._hits += 1
            sweep = self._hits % self.SWEEP_EVERY == 0
        if conn.in_transaction:   # a failed ROLLBACK left one open: never stuck refusing to BEGIN
            conn.rollback()
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = self._clock()   # read under the write lock: events are added in time order
            wait = self._count(conn, checks, now)
            if sweep:
                self._sweep(conn, now)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return wait

    @staticmethod
    def _count(conn: sqlite3.Connection, checks: Sequence[tuple[str, Rule]], now: float) -> int | None:
        keys = [key for key, _ in checks]
        rows: dict[str, tuple[float | None, bytes]] = {key: (expires, log) for key, expires, log in conn.execute(
            _SELECT_LOGS.get(len(keys)) or _select_logs(len(keys)), keys)}
        writes: dict[str, tuple[float | None, bytes]] = {}   # key -> (new expires or None: unchanged, log)
        wait = None
        for key, rule in checks:
            expires, blob = rows.get(key, (None, b""))
            log = array.array("d")
            if len(blob) % log.itemsize == 0:   # else not a log of this version's: empty
                log.frombytes(blob)
            del log[:bisect.bisect_right(log, now - rule.window)]
            if len(log) >= rule.limit:
                wait = max(1, math.ceil(log[0] + rule.window - now))
                break
            bisect.insort(log, now)   # in order even if the wall clock stepped back
            blob = log.tobytes()
            if expires is not None and expires >= now + rule.window:
                writes[key] = (writes.get(key, (None,))[0], blob)
            else:
                expires = now + 2 * rule.window
                writes[key] = (expires, blob)
            rows[key] = (expires, blob)   # the same key again in this call sees this event
        if writes:
            moved = [(key, expires, blob) for key, (expires, blob) in writes.items() if expires is not None]
            if moved:
                conn.executemany("INSERT INTO rl_logs VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
                                 "SET expires = excluded.expires, log = excluded.log", moved)
            kept = [(blob, key) for key, (expires, blob) in writes.items() if expires is None]
            if kept:   # the expires index left alone
                conn.executemany("UPDATE rl_logs SET log = ? WHERE key = ?", kept)
        return wait

    def _sweep(self, conn: sqlite3.Connection, now: float) -> None:
        """Forget up to ``SWEEP_ROWS`` keys whose every event expired (nobody hit them since)."""
        conn.execute("DELETE FROM rl_logs WHERE key IN (SELECT key FROM rl_logs WHERE expires <= ? LIMIT ?)",
                     (now, self.SWEEP_ROWS))

    def close(self) -> None:
        with self._mutex:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()
        self._nowait = None
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)


def _select_logs(n: int) -> str:
    return f"SELECT key, expires, log FROM rl_logs WHERE key IN ({', '.join('?' * n)})"


_SELECT_LOGS = {n: _select_logs(n) for n in range(1, 5)}


# KEYS: the sliding logs; ARGV: window (ms) and limit of each, then the event's unique member
_SLIDING = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local member = ARGV[#ARGV]
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[2 * i - 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms - window)
  if redis.call('ZCARD', key) >= tonumber(ARGV[2 * i]) then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return tonumber(oldest[2]) + window - now_ms
  end
  redis.call('ZADD', key, now_ms, member)
  redis.call('PEXPIRE', key, window)
end
return -1
"""


class RedisLimiter(QuickUntilFailure):
    """Sliding logs in Redis sorted sets (one Lua call per event; the server's clock for all instances)."""

    def __init__(self, url: str, prefix: str = "chsi-bot:rl:", socket_timeout: float = 2.0) -> None:
        import redis

        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        self._client = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                            socket_connect_timeout=socket_timeout)
        from .redis_scripts import LeanScripts   # the chat request's path: a fifth of redis-py's CPU a call

        self._lean = LeanScripts(self._client)
        self._script = self._lean.script(_SLIDING)
        # the event loop's tries (try_hit_all): a server that hangs costs it QUICK_TIMEOUT, not the socket timeout
        self._lean_quick = LeanScripts(self._client, socket_timeout=min(QUICK_TIMEOUT, socket_timeout))
        self._quick_script = self._lean_quick.script(_SLIDING)
        self._prefix = prefix
        self._warned = 0.0

    def hit(self, key: str, rule: Rule) -> int | None:
        return self.hit_all(((key, rule),))

    def hit_all(self, checks: Sequence[tuple[str, Rule]]) -> int | None:
        return self._hit_all(checks, self._script)

    def _hit_all(self, checks: Sequence[tuple[str, Rule]], script: Any) -> int | None:
        args: list[Any] = []
        for _, rule in checks:
            args += (rule.window * 1000, rule.limit)
        args.append(secrets.token_hex(6))
        try:
            wait_ms = int(script(keys=[self._prefix + key for key, _ in checks], args=args))
        except self._redis_errors as e:
            self._failed()
            if time.monotonic() - self._warned > 60:   # one warning a minute, not one per request
                self._warned = time.monotonic()
                log.warning("rate limiter unreachable (%s): letting requests through", e.__class__.__name__)
            return None
        return None if wait_ms < 0 else max(1, math.ceil(wait_ms / 1000))

    def try_hit_all(self, checks: Sequence[tuple[str, Rule]]) -> tuple[bool, int | None]:
        """``hit_all`` while the server answers (one round trip); not for a while after it failed."""
        return (True, self._hit_all(checks, self._quick_script)) if self.quick else (False, None)

    def close(self) -> None:
        self._lean.close()
        self._lean_quick.close()
        self._client.close()


class Limits:
    """The configured rules over one limiter, with keys hashed under the server secret."""

    def __init__(self, limiter: Limiter, secret: bytes, rules: Mapping[str, Rule] | None = None) -> None:
        self.limiter = limiter
        self._secret = secret
        self.rules = {**DEFAULT_RULES, **(rules or {})}
        # the keys of the web API's recent values, in this process's memory only: a chat request needs three
        # (its address's, its conversation's, its client id) and the event loop may try the limiter again —
        # 2.2 µs an HMAC, 0.1 a hit here. Never a flow's target (an ID number, a phone): personal data is
        # kept no longer than its flow needs it.
        self._keys = functools.lru_cache(maxsize=4096)(self._mac)

    _KEPT = frozenset({"chat_per_ip", "chat_per_session", "upload_per_ip", "upload_per_session", "session_per_ip",
                       "client-id"})

    def _mac(self, purpose: str, value: str) -> str:
        mac = hmac.digest(self._secret, purpose.encode() + b"\0" + value.encode("utf-8", "surrogatepass"), "sha256")
        return base64.urlsafe_b64encode(mac[:18]).decode()

    def key(self, purpose: str, value: str) -> str:
        """A short keyed hash of ``value`` for ``purpose`` (never the value itself)."""
        return self._keys(purpose, value) if purpose in self._KEPT else self._mac(purpose, value)

    def hit(self, rule: str, value: str) -> int | None:
        """Count one event of ``rule`` for ``value``; the seconds to wait when over the limit, else None."""
        return self.limiter.hit(f"{rule}:{self.key(rule, value)}", self.rules[rule])

    def hit_all(self, checks: Sequence[tuple[str, str]]) -> int | None:
        """``hit(rule, value)`` for each pair in order up to the first refusal (its wait), in one round trip."""
        return self.limiter.hit_all([(f"{rule}:{self.key(rule, value)}", self.rules[rule]) for rule, value in checks])

    def try_hit_all(self, checks: Sequence[tuple[str, str]]) -> tuple[bool, int | None]:
        """``hit_all`` for a caller that must not wait (the event loop): ``(True, wait)``, or ``(False, None)``
        with nothing counted when it would wait (a limiter without ``try_hit_all`` unless ``quick``)."""
        keyed = [(f"{rule}:{self.key(rule, value)}", self.rules[rule]) for rule, value in checks]
        attempt = getattr(self.limiter, "try_hit_all", None)
        if attempt is not None:
            return attempt(keyed)
        return (True, self.limiter.hit_all(keyed)) if getattr(self.limiter, "quick", False) else (False, None)

    @property
    def busy_for(self) -> float | None:
        """The limiter's ``busy_for`` (None: a refused try will not be worth trying again soon)."""
        return getattr(self.limiter, "busy_for", None)

    def throttle(self, name: str, limit: int, window: int) -> "Throttle":
        """A limit of ``limit`` events per ``window`` seconds per value on events called ``name``."""
        return Throttle(self, name, Rule(int(limit), int(window)))

    def client_id(self, client: str) -> str:
        """The stable identity the account API sees for a channel's user key (e.g. ``ip:1.2.3.4``)."""
        return self.key("client-id", client)[:16]

    def close(self) -> None:
        self.limiter.close()


class Throttle:
    """One kind of event limited per value (a client address, a staff name, a WeChat user):
    ``hit(value)`` counts one and returns 0 when allowed, else the whole seconds to wait (≥ 1)."""

    def __init__(self, limits: Limits, name: str, rule: Rule) -> None:
        self.limits, self.name, self.rule = limits, name, rule

    @classmethod
    def memory(cls, name: str, limit: int, window: int) -> "Throttle":
        """An in-process throttle of its own (a component built without the app's limits)."""
        return Limits(MemoryLimiter(), secrets.token_bytes(32)).throttle(name, limit, window)

    def hit(self, value: str) -> int:
        return self.limits.limiter.hit(f"{self.name}:{self.limits.key(self.name, value)}", self.rule) or 0


def parse_rules(section: Mapping[str, Any]) -> dict[str, Rule]:
    """The rules the ``limits`` section sets (``settings.ConfigError`` naming an unknown or bad one)."""
    return _rules(LimitsConfig.parse(section), only_set=True)


def _rules(conf: LimitsConfig, only_set: bool = False) -> dict[str, Rule]:
    return {name: Rule(r.limit, r.window) for name, r in conf.rules(only_set=only_set).items()}


def build_limits(cfg: Mapping[str, Any], secret: bytes) -> Limits:
    """The limits as configured: ``limits.backend`` memory | sqlite | redis | auto (redis when sessions are)."""
    from settings import SessionsConfig

    conf, sessions = LimitsConfig.of(cfg), SessionsConfig.of(cfg)
    backend = conf.backend
    if backend == "auto":   # `serve` makes it sqlite with SQLite sessions (channels.launcher.served_config)
        backend = "redis" if sessions.backend == "redis" else "memory"
    if backend == "sqlite":
        limiter: Limiter = SqliteLimiter(sqlite_path(conf, sessions))
    elif backend == "redis":
        # under the sessions' key prefix like every other Redis key (two deployments on one Redis count apart)
        limiter = RedisLimiter(conf.redis_url or sessions.redis_url,
                                        prefix=f"{sessions.redis_prefix or 'chsi-bot:'}rl:")
    else:
        limiter = MemoryLimiter()
    return Limits(limiter, secret, _rules(conf))


def sqlite_path(conf: LimitsConfig, sessions: Any) -> Path:
    """``limits.sqlite_path``, else a file beside the sessions' database (``sessions.db`` →
    ``sessions.limits.db``): the workers that share the one share the other."""
    from settings import resolve_path

    if conf.sqlite_path:
        return resolve_path(conf.sqlite_path)
    base = resolve_path(sessions.sqlite_path)
    return base.with_name(f"{base.stem}.limits{base.suffix or '.db'}")
