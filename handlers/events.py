"""The event bus for live delivery: staff replies to users, queue changes to consoles.

Topics are short strings (``user:<session key>``, ``staff``). Every event gets an id that
increases within its topic; the last ``keep`` events of a topic are kept for ``ttl`` seconds
so a reader that was offline (a reloaded widget, a reconnecting console) catches up from
the last id it saw (SSE ``Last-Event-ID``).

Contract (both backends):
- ``publish(topic, event)`` (sync, callable from any thread) → the event's id; never blocks
  long. Events are JSON objects (stored as JSON text, never pickle).
- ``last_id(topic)`` → the id of the newest event (``"0"`` when none).
- ``await read(topic, after, timeout)`` → the events after ``after`` in order, waiting up to
  ``timeout`` seconds for the first one (``[]`` on timeout).
- An id that is malformed reads from the start of what is kept.
- A failing backend raises ``BusError``.

``MemoryBus`` serves one process; ``RedisBus`` (Redis streams: XADD with MAXLEN, XREAD BLOCK)
reaches readers in every worker process and instance.
"""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import deque
from typing import Any, Callable, Mapping, Protocol

_REDIS_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


class BusError(Exception):
    """The event backend is unreachable or failed."""


class EventBus(Protocol):
    def publish(self, topic: str, event: Mapping[str, Any]) -> str: ...

    def last_id(self, topic: str) -> str: ...

    async def read(self, topic: str, after: str, timeout: float) -> list[tuple[str, dict[str, Any]]]: ...

    def close(self) -> None: ...


class MemoryBus:
    """In-process bus: a bounded deque per topic; asyncio readers are woken thread-safely."""

    def __init__(self, keep: int = 500, ttl: float = 86400, clock: Callable[[], float] = time.monotonic) -> None:
        self._keep, self._ttl, self._clock = keep, ttl, clock
        # ids are "<epoch>-<seq>": an id from before a restart (another epoch) reads all that is kept
        self._epoch = str(int(time.time() * 1000))
        self._topics: dict[str, tuple[deque[tuple[int, dict[str, Any]]], list[float]]] = {}
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._seq = 0
        self._mutex = threading.Lock()

    def publish(self, topic: str, event: Mapping[str, Any]) -> str:
        data = json.loads(json.dumps(dict(event), ensure_ascii=False))
        with self._mutex:
            self._seq += 1
            now = self._clock()
            queue, touched = self._topics.setdefault(topic, (deque(maxlen=self._keep), [now]))
            queue.append((self._seq, data))
            touched[0] = now
            waiters = list(self._waiters.get(topic, ()))
            if self._seq % 256 == 0:
                for name in [t for t, (_, seen) in self._topics.items() if now - seen[0] > self._ttl]:
                    del self._topics[name]
            seq = self._seq
        for loop, flag in waiters:
            try:
                loop.call_soon_threadsafe(flag.set)
            except RuntimeError:  # that reader's loop is gone
                pass
        return f"{self._epoch}-{seq}"

    def last_id(self, topic: str) -> str:
        with self._mutex:
            queue = self._topics.get(topic, (deque(), [0.0]))[0]
            return f"{self._epoch}-{queue[-1][0]}" if queue else "0"

    def _after(self, topic: str, after: str) -> list[tuple[str, dict[str, Any]]]:
        epoch, _, seq = after.partition("-")
        n = int(seq) if epoch == self._epoch and seq.isdigit() and len(seq) < 20 else 0
        with self._mutex:
            queue = self._topics.get(topic, (deque(), [0.0]))[0]
            return [(f"{self._epoch}-{i}", e) for i, e in queue if i > n]

    async def read(self, topic: str, after: str, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        found = self._after(topic, after)
        if found or timeout <= 0:
            return found
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._mutex:
            self._waiters.setdefault(topic, set()).add(waiter)
        try:
            found = self._after(topic, after)  # published between the first look and registering
            if not found:
                try:
                    await asyncio.wait_for(waiter[1].wait(), timeout)
                except asyncio.TimeoutError:
                    return []
                found = self._after(topic, after)
            return found
        finally:
            with self._mutex:
                waiters = self._waiters.get(topic)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[topic]

    def close(self) -> None:
        pass


class RedisBus:
    """Redis streams: one stream per topic, trimmed to ``keep`` entries, expiring ``ttl`` after the last event."""

    def __init__(self, url: str, prefix: str = "chsi-bot:ev:", keep: int = 500, ttl: int = 86400) -> None:
        import redis
        import redis.asyncio as aredis

        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._sync = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._url = url
        self._async: dict[int, Any] = {}  # one asyncio client per event loop
        self._aredis = aredis
        self._prefix, self._keep, self._ttl = prefix, keep, ttl

    def _key(self, topic: str) -> str:
        return self._prefix + topic

    def publish(self, topic: str, event: Mapping[str, Any]) -> str:
        body = json.dumps(dict(event), ensure_ascii=False)
        try:
            pipe = self._sync.pipeline(transaction=False)
            pipe.xadd(self._key(topic), {"e": body}, maxlen=self._keep, approximate=True)
            pipe.expire(self._key(topic), self._ttl)
            event_id, _ = pipe.execute()
        except self._errors as e:
            raise BusError(f"redis publish failed: {e.__class__.__name__}") from e
        return event_id.decode() if isinstance(event_id, bytes) else str(event_id)

    def last_id(self, topic: str) -> str:
        try:
            last = self._sync.xrevrange(self._key(topic), count=1)
        except self._errors as e:
            raise BusError(f"redis read failed: {e.__class__.__name__}") from e
        if not last:
            return "0"
        event_id = last[0][0]
        return event_id.decode() if isinstance(event_id, bytes) else str(event_id)

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._async.get(id(loop))
        if client is None:
            client = self._async[id(loop)] = self._aredis.Redis.from_url(self._url, socket_connect_timeout=5)
        return client

    async def read(self, topic: str, after: str, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        start = after if _REDIS_ID.fullmatch(after) else "0"
        try:
            got = await self._client().xread({self._key(topic): start}, count=200,
                                             block=max(1, int(timeout * 1000)) if timeout > 0 else None)
        except self._errors as e:
            raise BusError(f"redis read failed: {e.__class__.__name__}") from e
        out: list[tuple[str, dict[str, Any]]] = []
        for _, entries in got or ():
            for event_id, fields in entries:
                raw = fields.get(b"e") or fields.get("e")
                try:
                    event = json.loads(raw)
                except (TypeError, ValueError):
                    continue
                out.append((event_id.decode() if isinstance(event_id, bytes) else str(event_id), event))
        return out

    def close(self) -> None:
        self._sync.close()


def build_bus(cfg: Mapping[str, Any]) -> EventBus:
    """Redis streams when ``sessions.backend: redis`` (same ``redis_url``, keys under ``redis_prefix``),
    in-process otherwise."""
    from settings import SessionsConfig

    sessions = SessionsConfig.of(cfg)
    if sessions.backend == "redis":
        return RedisBus(sessions.redis_url, prefix=f"{sessions.redis_prefix}ev:")
    return MemoryBus()
