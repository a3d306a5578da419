"""Pushing replies to users outside their own requests (a staff answer, a hand-off closing).

``Delivery`` is what ``HandoffService.deliver`` calls: ``delivery(channel, address, replies)``,
from any thread. It runs that channel's ``send`` on the web app's event loop and waits for
it, so a failure (Telegram refusing, Redis down) reaches the caller, who logs it (and keeps the
push for redelivery); a send still running after ``TIMEOUT`` is cancelled and reported as failed.
Without a running loop (scripts, tests) it runs ``send`` in a loop of its own.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Mapping, Sequence

from handlers.types import Reply, Undeliverable

from .base import Channel

log = logging.getLogger(__name__)

TIMEOUT = 20.0


class UnknownChannel(Undeliverable, LookupError):
    """No channel of that name is configured in this process (not retried: it will not pass)."""

    def __init__(self, channel: str) -> None:
        super().__init__(f"本服务没有配置 {channel} 渠道，无法推送")


class Delivery:
    """Channel name → ``Channel.send``, callable from worker threads."""

    def __init__(self, channels: Mapping[str, Channel]) -> None:
        self.channels = dict(channels)
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run sends on ``loop`` (the web app's, set at start-up)."""
        self._loop = loop

    def unbind(self) -> None:
        self._loop = None

    def __call__(self, channel: str, address: str, replies: Sequence[Reply]) -> None:
        target = self.channels.get(channel)
        if target is None:
            raise UnknownChannel(channel)
        coro = target.send(address, list(replies))
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        if on_loop:  # called from the loop itself: never block it
            task = asyncio.ensure_future(coro)
            task.add_done_callback(_log_failure)
        elif self._loop is not None and self._loop.is_running():
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
            try:
                future.result(TIMEOUT)
            except concurrent.futures.TimeoutError:
                future.cancel()   # a send reported as failed (and kept for redelivery) must not go out later
                raise
        else:
            asyncio.run(coro)


def _log_failure(task: "asyncio.Future[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("push to a user failed: %s", type(task.exception()).__name__)
