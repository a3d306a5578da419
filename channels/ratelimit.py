"""Fixed-window rate limits by key (client address, staff name): in process, or in Redis so
every worker and instance counts together (``sessions.backend: redis``).

``hit(key)`` → seconds to wait (0 when allowed). A failing Redis lets requests through (logged):
an outage of the limiter must not take the help desk down.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)


class MemoryLimiter:
    """``limit`` hits per ``window`` seconds per key, counted in this process."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self._clock = limit, window, clock
        self._counts: dict[str, tuple[int, float]] = {}
        self._mutex = threading.Lock()

    def hit(self, key: str) -> float:
        now = self._clock()
        with self._mutex:
            if len(self._counts) > 10_000:
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            count, reset = self._counts.get(key, (0, now + self.window))
            if reset <= now:
                count, reset = 0, now + self.window
            count += 1
            self._counts[key] = (count, reset)
        return 0.0 if count <= self.limit else max(0.0, reset - now)


class RedisLimiter:
    """The same limit shared by every process through Redis (INCR + EXPIRE per window)."""

    def __init__(self, url: str, limit: int, window: float, prefix: str = "chsi-bot:rl:") -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.limit, self.window, self._prefix = limit, int(max(1, window)), prefix

    def hit(self, key: str) -> float:
        slot = int(time.time() // self.window)
        name = f"{self._prefix}{key}:{slot}"
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.incr(name)
            pipe.expire(name, self.window + 1)
            count, _ = pipe.execute()
        except self._errors as e:
            log.warning("rate limiter unavailable (%s); request allowed", e.__class__.__name__)
            return 0.0
        return 0.0 if int(count) <= self.limit else float((slot + 1) * self.window - time.time())


def build_limiter(sessions_cfg: Mapping[str, Any], limit: int, window: float, prefix: str) -> Any:
    """Redis-backed when sessions are shared through Redis, else in process."""
    if str(sessions_cfg.get("backend", "sqlite")).lower() == "redis":
        base = str(sessions_cfg.get("redis_prefix") or "chsi-bot:")
        return RedisLimiter(str(sessions_cfg.get("redis_url", "redis://127.0.0.1:6379/0")), limit, window,
                            prefix=f"{base}rl:{prefix}:")
    return MemoryLimiter(limit, window)
