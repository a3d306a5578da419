"""Where conversation state lives between messages: one small interface, three backends.

Contract (every store keeps it):
- State is a JSON-serialisable ``dict`` (the engine's is ``handlers.state.SessionState.to_json()``, versioned);
  it is stored as JSON text (never pickle).
- ``get(sid)`` returns the saved dict, or ``None`` when there is none, it has expired,
  or the stored text cannot be read back (logged at WARNING without the content).
- ``save(sid, state, ttl)`` replaces the state; it disappears ``ttl`` seconds later
  unless saved again. ``delete(sid)`` removes it (absent is fine).
- ``lock(sid)`` is a context manager holding an exclusive per-session lock, across
  threads and (SQLite, Redis) processes, so two messages from one user never race,
  while different sessions never wait for each other. A holder that crashed loses
  the lock at once (SQLite: an OS record lock the kernel drops with the process) or
  within ``lease`` seconds (Redis: a lease its holder renews while it lives).
  Waiting longer than ``timeout`` raises ``LockTimeout``.
- A backend that is unreachable or broken raises ``StoreError`` (``LockTimeout`` is one);
  nothing else escapes.
- Session ids are opaque strings of any content; stores never log them.
- ``quick``: True when, under a lock taken with ``timeout=0`` (a try-lock: held elsewhere →
  ``LockTimeout`` at once), no call waits on more than one round trip, so a turn may run on the
  web server's event loop (``Engine.try_handle``): memory, Redis, and SQLite, whose calls under
  such a lock use a connection with busy_timeout 0 (a database another writer holds is a
  ``StoreError`` at once: ``StoreBusy`` for a save, which the caller may try again soon, still
  holding the lock — ``Engine.try_handle(..., busy=True)`` — or in a worker thread). Redis's is False for
  ``QUICK_PAUSE`` seconds after a failure: an unreachable server may take its whole socket
  timeout to say so, and that wait belongs in a worker thread; under a try-lock its socket timeout
  is ``QUICK_TIMEOUT``, so a server that hangs costs the event loop that much once.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import logging
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol

import orjson

from settings import SessionsConfig, resolve_path

log = logging.getLogger(__name__)

DEFAULT_LEASE = 2.0     # Redis: a crashed holder's lock is free again within this
DEFAULT_TIMEOUT = 10.0
QUICK_PAUSE = 30.0      # Redis: seconds after a failure during which turns are not tried on the event loop
QUICK_TIMEOUT = 0.5     # Redis: socket timeout of a try-lock's turn (the event loop's), a hung server's cost


class StoreError(Exception):
    """The session backend is unreachable or failed."""


class LockTimeout(StoreError):
    """Another message of the same session held the lock for too long."""


class QuickUntilFailure:
    """``quick`` for a Redis backend (stores and limiters alike): True unless the server failed in the last
    ``QUICK_PAUSE`` seconds (``_failed()`` records that it did), so the event loop does not wait out an
    unreachable server's timeouts again and again."""

    _failed_at = -QUICK_PAUSE   # time.monotonic() of the last failure

    @property
    def quick(self) -> bool:
        return time.monotonic() - self._failed_at >= QUICK_PAUSE

    def _failed(self) -> None:
        self._failed_at = time.monotonic()


class StoreBusy(StoreError):
    """A write under a try-lock found the database busy with another writer's short transaction
    (SQLite's no-wait connection): nothing written; the same write may well succeed a moment later
    (``busy_for``: about how long such a transaction takes), still under the lock."""

    busy_for = 0.0005


class SessionStore(Protocol):
    """Keeps one JSON dict per session id, with expiry and a per-session lock."""

    def get(self, session_id: str) -> dict[str, Any] | None: ...

    def save(self, session_id: str, state: Mapping[str, Any], ttl: int) -> None: ...

    def delete(self, session_id: str) -> None: ...

    def lock(self, session_id: str, timeout: float = DEFAULT_TIMEOUT) -> contextlib.AbstractContextManager[None]: ...

    def close(self) -> None: ...


# orjson: the state's JSON text both ways on every turn, ~300k CPU instructions with the json module
# and ~50k with orjson (callgrind). The same text (compact, UTF-8, keys as strings); what JSON cannot
# hold (a set, a date, an object) is a TypeError as with json, never stored — and so is an int past
# 64 bits, which json would have written (flow data holds strings).
_DUMP_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _dumpb(state: Mapping[str, Any]) -> bytes:
    """The state's JSON as UTF-8 bytes (what Redis stores: no str in between, whose decoding and
    encoding cost as much as the JSON itself for a Chinese transcript)."""
    if not isinstance(state, dict):
        state = dict(state)
    return orjson.dumps(state, option=_DUMP_OPTIONS)


def _dumps(state: Mapping[str, Any]) -> str:
    return _dumpb(state).decode("utf-8")


def _loads(text: str | bytes | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except (ValueError, UnicodeDecodeError):
        log.warning("session state unreadable; treating the session as new")
        return None
    if not isinstance(value, dict):
        log.warning("session state is not an object; treating the session as new")
        return None
    return value


def new_session_id() -> str:
    """A fresh unguessable session id (what a channel uses when it has no id of its own)."""
    return secrets.token_urlsafe(24)


def storage_key(session_id: str) -> str:
    """A fixed-size key for any session id (ids are user-controlled strings)."""
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


def poll_lock(try_acquire: Callable[[], bool], timeout: float, first: float = 0.002, most: float = 0.05) -> None:
    """Call ``try_acquire`` until it succeeds or ``timeout`` passes (then LockTimeout), sleeping
    ``first`` seconds between tries, doubling up to ``most``."""
    deadline = time.monotonic() + timeout
    delay = first
    while not try_acquire():
        if time.monotonic() >= deadline:
            raise LockTimeout("session is busy")
        time.sleep(delay)
        delay = min(delay * 2, most)


class KeyedLocks:
    """Per-key mutexes within one process (created on demand, dropped when unused)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._locks: dict[str, list[Any]] = {}   # key -> [threading.Lock, users]

    @contextlib.contextmanager
    def hold(self, key: str, timeout: float) -> Iterator[None]:
        with self._mutex:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            if not entry[0].acquire(timeout=max(timeout, 0)):
                raise LockTimeout("session is busy")
            try:
                yield
            finally:
                entry[0].release()
        finally:
            with self._mutex:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]


# ---- in memory --------------------------------------------------------------

class MemoryStore:
    """The in-process twin: same contract, nothing survives the process."""

    quick = True

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._data: dict[str, tuple[str, float]] = {}
        self._locks = KeyedLocks()
        self._mutex = threading.Lock()

    def get(self, session_id: str) -> dict[str, Any] | None:
        key = storage_key(session_id)
        with self._mutex:
            item = self._data.get(key)
            if item and item[1] <= self._clock():
                del self._data[key]
                item = None
        return _loads(item[0]) if item else None

    def save(self, session_id: str, state: Mapping[str, Any], ttl: int) -> None:
        text = _dumps(state)
        with self._mutex:
            self._data[storage_key(session_id)] = (text, self._clock() + ttl)

    def delete(self, session_id: str) -> None:
        with self._mutex:
            self._data.pop(storage_key(session_id), None)

    def lock(self, session_id: str, timeout: float = DEFAULT_TIMEOUT) -> contextlib.AbstractContextManager[None]:
        return self._locks.hold(storage_key(session_id), timeout)

    def ping(self) -> None:
        """Always reachable."""

    def close(self) -> None:
        pass


# ---- SQLite -----------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, state TEXT NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires);
DROP TABLE IF EXISTS session_locks;
"""
_LOCK_SPACE = 1 << 62   # record-lock offsets: a 62-bit slice of the key's hash (collisions negligible)


class SqliteStore:
    """The default: one embedded file (WAL), shared safely by threads and processes.

    Every read and write is one short autocommit statement; the per-session lock is not in
    the database at all but an OS record lock (``fcntl``) on one byte of ``<db>.lock`` picked
    by the session's hash, plus a mutex for the threads of this process. Sessions never wait
    for each other, and the kernel releases a crashed process's locks at once.

    Under a lock taken with ``timeout=0`` (the event loop's try-lock) this thread's reads and writes
    go over a second connection whose busy_timeout is 0: a write another process is making is a
    ``StoreError`` at once instead of SQLite's busy wait — ``StoreBusy`` for a save, which the web
    channel tries again on the loop a moment later, still holding the lock (``Engine.try_handle(...,
    busy=True)``); anything else runs the turn in a worker thread."""

    SWEEP_EVERY = 200   # saves between deletions of expired rows
    quick = True        # under a try-lock nothing waits: see the class's docstring

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self._path = str(path)
        self._clock = clock
        self._local = threading.local()
        self._saves = 0
        self._threads = KeyedLocks()
        self._lock_fd: int | None = None
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            # kept open for the store's life: closing any descriptor of the file drops the process's locks
            self._lock_fd = os.open(self._path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with self._errors():
            self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection: the no-wait one while it holds a try-lock (``lock(sid, 0)``; a
        count: the event loop may hold a second one while a busy save waits to be tried again)."""
        name = "nowait_conn" if getattr(self._local, "nowait", 0) > 0 else "conn"
        conn = getattr(self._local, name, None)
        if conn is None:
            timeout = 0.0 if name == "nowait_conn" else DEFAULT_TIMEOUT
            conn = sqlite3.connect(self._path, timeout=timeout, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error:
                conn.close()
                raise
            setattr(self._local, name, conn)
        return conn

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise StoreError(f"session database failed: {e.__class__.__name__}") from e

    def ping(self) -> None:
        """Raise StoreError when the database cannot be read."""
        with self._errors():
            self._conn().execute("SELECT 1 FROM sessions LIMIT 1").fetchall()

    def get(self, session_id: str) -> dict[str, Any] | None:
        with self._errors():
            # the text's UTF-8 bytes as stored (CAST AS BLOB): no Python str decoded for orjson to encode again
            row = self._conn().execute(
                "SELECT CAST(state AS BLOB) FROM sessions WHERE key = ? AND expires > ?",
                (storage_key(session_id), self._clock())).fetchone()
        return _loads(row[0]) if row else None

    def save(self, session_id: str, state: Mapping[str, Any], ttl: int) -> None:
        data, now = _dumpb(state), self._clock()
        with self._errors():
            conn = self._conn()
            try:
                # UTF-8 bytes stored as TEXT (CAST: the same bytes, typed as text) — no Python str in between.
                # An upsert, not INSERT OR REPLACE: the row is rewritten where it is, where REPLACE deletes it
                # and inserts it again under a new rowid (every index entry moved, its pages freed and taken
                # again): 3 pages written to the WAL a save instead of 9, 43 µs instead of 88 (a 3.4 KB state)
                conn.execute("INSERT INTO sessions (key, state, expires) VALUES (?, CAST(? AS TEXT), ?) "
                             "ON CONFLICT (key) DO UPDATE SET state = excluded.state, expires = excluded.expires",
                             (storage_key(session_id), data, now + ttl))
            except sqlite3.OperationalError as e:
                if getattr(e, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY and \
                        conn is getattr(self._local, "nowait_conn", None):
                    raise StoreBusy("session database busy") from e
                raise
            self._saves += 1
            if self._saves % self.SWEEP_EVERY == 0:
                try:
                    conn.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
                except sqlite3.OperationalError:   # busy: the state is saved, the next sweep deletes them
                    pass

    def delete(self, session_id: str) -> None:
        with self._errors():
            self._conn().execute("DELETE FROM sessions WHERE key = ?", (storage_key(session_id),))

    @contextlib.contextmanager
    def lock(self, session_id: str, timeout: float = DEFAULT_TIMEOUT) -> Iterator[None]:
        key = storage_key(session_id)
        deadline = time.monotonic() + timeout
        with self._threads.hold(key, timeout):
            fd = self._lock_fd
            if fd is None:  # ":memory:" is private to this process: the thread lock is enough
                yield
                return
            offset = int(key[:16], 16) % _LOCK_SPACE

            def acquire() -> bool:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
                except (BlockingIOError, PermissionError):
                    return False
                except OSError as e:
                    raise StoreError(f"session lock failed: {e.__class__.__name__}") from e
                return True

            poll_lock(acquire, max(0.0, deadline - time.monotonic()))
            nowait = 1 if timeout <= 0 else 0   # a try-lock's turn must not wait on the database either
            self._local.nowait = getattr(self._local, "nowait", 0) + nowait
            try:
                yield
            finally:
                self._local.nowait -= nowait
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)

    def close(self) -> None:
        for name in ("conn", "nowait_conn"):
            conn = getattr(self._local, name, None)
            if conn is not None:
                conn.close()
                setattr(self._local, name, None)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


# ---- Redis --------------------------------------------------------------------

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# lock (SET NX PX) and, when taken, the session's state, in one round trip
_LOCK_LOAD = """
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
local state = redis.call('get', KEYS[2])
if state then return {1, state} end
return {1}
"""
# the turn's save (SET EX) and the release of its lock, in one round trip
_SAVE_RELEASE = """
redis.call('set', KEYS[2], ARGV[2], 'EX', ARGV[3])
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


class _Renewer:
    """One daemon thread per store renewing the leases this process holds (every third of a lease),
    so a lease can be short — a crashed holder's lock frees itself soon — however long a turn takes."""

    def __init__(self, renew: Callable[[str, str], bool], every: float) -> None:
        self._renew, self._every = renew, every
        self._held: dict[str, str] = {}
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, key: str, token: str) -> None:
        with self._mutex:
            self._held[key] = token
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._loop, name="session-lease", daemon=True)
                self._thread.start()

    def remove(self, key: str, token: str) -> bool:
        """Stop renewing ``key`` if this ``token`` still holds it (a newer holder's entry stays); True if it did."""
        with self._mutex:
            if self._held.get(key) != token:
                return False
            del self._held[key]
            return True

    def _loop(self) -> None:
        while not self._wake.wait(self._every):
            with self._mutex:
                held = list(self._held.items())
            for key, token in held:
                try:
                    # a lease released (and maybe taken again) since the snapshot is not "expired while held"
                    if not self._renew(key, token) and self.remove(key, token):
                        log.warning("a session lease expired while held (process paused longer than the lease?)")
                except StoreError:
                    log.warning("session lease renewal failed; retrying")

    def close(self) -> None:
        with self._mutex:
            self._closed = True
        self._wake.set()


class RedisStore(QuickUntilFailure):
    """Shared state for several bot processes: SET with EX, locks by SET NX PX + token.

    A turn costs two round trips: taking the lock also reads the state (a Lua script), and the
    turn's save is sent with the lock's release (the save is held until then; a ``get`` in
    between sees it). Both scripts go over ``handlers.redis_scripts.LeanScripts`` (same errors as
    redis-py, a fraction of its CPU); everything else through redis-py."""

    def __init__(self, url: str, prefix: str = "chsi-bot:", lease: float = DEFAULT_LEASE,
                 socket_timeout: float = 5.0) -> None:
        import redis  # imported here so the other stores work without the package

        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        self._client = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                            socket_connect_timeout=socket_timeout)
        self._prefix = prefix
        self._lease_ms = int(lease * 1000)
        # a turn's two scripts over lean connections (handlers.redis_scripts: a fifth of redis-py's CPU a call)
        from .redis_scripts import LeanScripts

        self._lean = LeanScripts(self._client)
        # a try-lock's turn runs on the web server's event loop: a server that hangs rather than refusing
        # may hold it for QUICK_TIMEOUT, not the whole socket timeout (and ``quick`` is then False for a while)
        self._lean_quick = LeanScripts(self._client, socket_timeout=min(QUICK_TIMEOUT, socket_timeout))
        self._scripts = _TurnScripts(self._lean)
        self._quick_scripts = _TurnScripts(self._lean_quick)
        self._turns = threading.local()   # .held: session key -> _Held, the locks this thread holds
        renew = self._client.register_script(_RENEW)

        def renew_one(key: str, token: str) -> bool:
            with self._errors():
                return bool(renew(keys=[key], args=[token, self._lease_ms]))

        self._renewer = _Renewer(renew_one, lease / 3)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._redis_errors as e:
            self._failed()
            raise StoreError(f"redis failed: {e.__class__.__name__}") from e

    def _key(self, kind: str, session_id: str) -> str:
        return f"{self._prefix}{kind}:{storage_key(session_id)}"

    def _held(self, session_id: str) -> "_Held | None":
        held = getattr(self._turns, "held", None)
        return held.get(self._key("s", session_id)) if held else None

    def ping(self) -> None:
        """Raise StoreError when the server cannot be reached."""
        with self._errors():
            self._client.ping()

    def get(self, session_id: str) -> dict[str, Any] | None:
        turn = self._held(session_id)
        if turn is not None and turn.state is not _UNREAD:   # read with the lock, or saved since
            return _loads(turn.state)
        with self._errors():
            raw = self._client.get(self._key("s", session_id))
        return _loads(raw)

    def save(self, session_id: str, state: Mapping[str, Any], ttl: int) -> None:
        data = _dumpb(state)
        turn = self._held(session_id)
        if turn is not None:   # sent with the release of the lock
            turn.save = (data, max(1, int(ttl)))
            turn.state = data
            return
        with self._errors():
            self._client.set(self._key("s", session_id), data, ex=max(1, int(ttl)))

    def delete(self, session_id: str) -> None:
        turn = self._held(session_id)
        if turn is not None:
            turn.save, turn.state = None, None
        with self._errors():
            self._client.delete(self._key("s", session_id))

    @contextlib.contextmanager
    def lock(self, session_id: str, timeout: float = DEFAULT_TIMEOUT) -> Iterator[None]:
        key, data, token = self._key("l", session_id), self._key("s", session_id), secrets.token_hex(16)
        scripts = self._quick_scripts if timeout <= 0 else self._scripts
        held = getattr(self._turns, "held", None)
        if held is None:
            held = self._turns.held = {}
        turn = _Held()

        def acquire() -> bool:
            with self._errors():
                reply = scripts.lock_load(keys=[key, data], args=[token, self._lease_ms])
            if not reply[0]:
                return False
            turn.state = reply[1] if len(reply) > 1 else None
            return True

        poll_lock(acquire, timeout)
        self._renewer.add(key, token)
        held[data] = turn
        try:
            yield
        finally:
            del held[data]
            self._renewer.remove(key, token)
            with self._errors():
                if turn.save is not None:
                    scripts.save_release(keys=[key, data], args=[token, turn.save[0], turn.save[1]])
                else:
                    scripts.release(keys=[key], args=[token])

    def close(self) -> None:
        self._renewer.close()
        self._lean.close()
        self._lean_quick.close()
        self._client.close()


_UNREAD = object()


class _TurnScripts:
    """A turn's three scripts over one set of lean connections."""

    __slots__ = ("lock_load", "save_release", "release")

    def __init__(self, lean: Any) -> None:
        self.lock_load = lean.script(_LOCK_LOAD)
        self.save_release = lean.script(_SAVE_RELEASE)
        self.release = lean.script(_RELEASE)


class _Held:
    """A lock this thread holds: the state as read with it (then as saved) and the pending save."""

    __slots__ = ("state", "save")

    def __init__(self) -> None:
        self.state: Any = _UNREAD
        self.save: tuple[bytes, int] | None = None


def build_store(conf: SessionsConfig) -> SessionStore:
    """The store named by config ``sessions.backend`` (sqlite | redis | memory)."""
    if conf.backend == "memory":
        return MemoryStore()
    if conf.backend == "redis":
        return RedisStore(conf.redis_url, prefix=conf.redis_prefix)
    return SqliteStore(resolve_path(conf.sqlite_path))
