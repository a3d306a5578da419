"""Lua scripts on the request path at a fraction of redis-py's client CPU per call.

A chat turn on Redis runs two or three scripts (the session's lock with its state, the save with
the release, the abuse limits). Through redis-py 8 each call costs about 240k CPU instructions on
the client (connection pool, retry wrapper, telemetry, argument encoding, RESP3 parser); the same
EVALSHA written and read here costs about 45k (benchmarks: callgrind, one call, measured both ways).

``LeanScripts(client)`` keeps one connection per thread, opened by redis-py itself (so the URL's
host, port, database, password, TLS and protocol handshake are redis-py's), and then writes the
command and reads the reply on that socket directly.

Error contract (the same exceptions as redis-py, so callers keep ``except redis.RedisError``):
- the server unreachable, the connection dropped or timed out → ``redis.ConnectionError`` /
  ``redis.TimeoutError``; the connection is closed and the next call opens a new one. A call on
  a connection that was already in use (it may have gone stale: a Redis restart) is tried once
  more on a fresh one, as redis-py's own retry would;
- an error reply (e.g. a script error) → ``redis.ResponseError``; ``NOSCRIPT`` (the script cache
  was flushed or the server restarted) is not an error: the script is sent whole (EVAL) once.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import redis


def _arg(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value).encode()
    raise redis.DataError(f"invalid argument type {type(value).__name__}")


def _command(*args: Any) -> bytes:
    """One RESP command (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        kind = type(a)
        if kind is str:
            a = a.encode("utf-8")
        elif kind is not bytes:
            a = _arg(a)
        out += (b"$%d\r\n" % len(a), a, b"\r\n")
    return b"".join(out)


class _Conn:
    """One redis-py connection (connected, handshake done) and a buffered reader of its socket."""

    __slots__ = ("conn", "sock", "reader", "used")

    def __init__(self, conn: Any) -> None:
        conn.connect()
        self.conn, self.sock = conn, conn._sock
        self.reader = self.sock.makefile("rb")
        self.used = False

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.conn.disconnect()

    def reply(self) -> Any:
        """One RESP2/RESP3 reply (push messages skipped); an error reply is returned as ResponseError."""
        while True:
            line = self.reader.readline()
            if not line.endswith(b"\r\n"):
                raise redis.ConnectionError("connection closed by server")
            kind, rest = line[:1], line[1:-2]
            if kind == b">":          # RESP3 push (not ours): read it and go on
                for _ in range(int(rest)):
                    self.reply()
                continue
            if kind in (b"*", b"~"):
                n = int(rest)
                return None if n < 0 else [self.reply() for _ in range(n)]
            if kind in (b"$", b"="):
                n = int(rest)
                if n < 0:
                    return None
                data = self.reader.read(n + 2)
                if len(data) != n + 2:
                    raise redis.ConnectionError("connection closed by server")
                return data[:-2]
            if kind == b":":
                return int(rest)
            if kind == b"_":
                return None
            if kind == b"+":
                return rest
            if kind == b"-":
                return redis.ResponseError(rest.decode("utf-8", "replace"))
            if kind == b"#":
                return rest == b"t"
            if kind == b",":
                return float(rest)
            if kind == b"(":
                return int(rest)
            raise redis.ConnectionError(f"unexpected reply type {kind!r}")


class LeanScripts:
    """Scripts run over connections of their own, one per thread (see the module's docstring)."""

    def __init__(self, client: redis.Redis, socket_timeout: float | None = None) -> None:
        """``socket_timeout``: this set's own, instead of the client's (calls that must not wait long)."""
        self._pool = client.connection_pool
        self._kwargs = dict(self._pool.connection_kwargs)
        if socket_timeout is not None:
            self._kwargs.update(socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
        self._local = threading.local()
        self._all: list[_Conn] = []
        self._mutex = threading.Lock()
        self._closed = False

    def script(self, text: str) -> "LeanScript":
        return LeanScript(self, text)

    def _conn(self) -> _Conn:
        c = getattr(self._local, "conn", None)
        if c is None:
            if self._closed:
                raise redis.ConnectionError("closed")
            pool = self._pool
            c = _Conn(pool.connection_class(**self._kwargs))
            with self._mutex:
                self._all.append(c)
            self._local.conn = c
        return c

    def _drop(self, c: _Conn) -> None:
        self._local.conn = None
        with self._mutex:
            if c in self._all:
                self._all.remove(c)
        try:
            c.close()
        except Exception:   # noqa: BLE001 - closing a broken connection may fail; it is gone either way
            pass

    def call(self, command: bytes, fallback: Callable[[], bytes]) -> Any:
        """Send ``command`` (EVALSHA), or ``fallback()`` (EVAL) when the server lacks the script."""
        for attempt in (0, 1):
            c = self._conn()
            reused = c.used
            try:
                c.sock.sendall(command)
                value = c.reply()
                if isinstance(value, redis.ResponseError) and str(value).startswith("NOSCRIPT"):
                    c.sock.sendall(fallback())
                    value = c.reply()
                c.used = True
            except (OSError, ValueError, redis.ConnectionError) as e:
                self._drop(c)
                if reused and attempt == 0 and not isinstance(e, TimeoutError):
                    continue   # a stale connection (e.g. the server restarted): once more on a fresh one
                if isinstance(e, TimeoutError):
                    raise redis.TimeoutError("Timeout reading from redis") from e
                raise e if isinstance(e, redis.ConnectionError) else redis.ConnectionError(str(e)) from e
            if isinstance(value, redis.ResponseError):
                raise value
            return value
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            conns, self._all = self._all, []
        for c in conns:
            try:
                c.close()
            except Exception:   # noqa: BLE001
                pass


class LeanScript:
    """``script(keys=[...], args=[...])`` as redis-py's ``register_script`` gives, on LeanScripts."""

    __slots__ = ("_owner", "_text", "_sha")

    def __init__(self, owner: LeanScripts, text: str) -> None:
        import hashlib

        self._owner, self._text = owner, text.encode("utf-8")
        self._sha = hashlib.sha1(self._text).hexdigest().encode()

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        tail = (len(keys), *keys, *args)
        return self._owner.call(_command(b"EVALSHA", self._sha, *tail), lambda: _command(b"EVAL", self._text, *tail))
