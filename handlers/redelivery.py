"""Redelivery: a push to a user that failed for a passing reason is sent again, in order, once.

When an agent's message (or a claim or closing notice) cannot reach the user — the event bus
(Redis) is down, Telegram or WeChat cannot be reached — ``HandoffService`` keeps the push in the
hand-off store (``queue_push``: channel, address, the replies as JSON) and staff see that it did
not reach the user yet. A later push to the same hand-off queues behind it, so the user never gets
a later reply before an earlier one.

``Redeliverer`` (one per serving process, a background thread started by the web app) sends what
is due: it *claims* a push through the store (atomic across workers and instances, with a lease),
sends it through the service's ``deliver``, and then forgets it; staff see 已补发给用户. A push that
fails again waits ``interval`` seconds, then twice as long each time (at most ``max_interval``);
``give_up`` seconds after it was first kept, it is marked failed and staff are told to reach the
user another way. A refusal that will not pass (``Undeliverable``: WeChat's 48-hour window, a
channel not configured here) is not retried: staff see its reason at once.

Exactly once as far as the channel allows: one instance holds a push at a time; a send that
succeeded is forgotten right after. Only a process that dies between the channel taking the
push and the store forgetting it sends it again after the lease. Logs name hand-off ids, push
ids and error classes, never the address or the text.
"""
from __future__ import annotations

import json
import logging
import secrets
import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .handoffs import HandoffError, PendingPush
from .types import Reply, Undeliverable

if TYPE_CHECKING:
    from settings import RedeliveryConfig

    from .handoff_service import HandoffService

log = logging.getLogger(__name__)

LEASE = 60.0   # a claim lasts longer than one send (channels.delivery.TIMEOUT is 20 s)
EXCERPT_CHARS = 30


def replies_body(replies: Sequence[Reply]) -> str:
    """Replies as the JSON text a kept push stores (``Reply.to_json``: every field a channel renders)."""
    return json.dumps([r.to_json() for r in replies], ensure_ascii=False)


def replies_of(body: str) -> list[Reply]:
    """The replies a kept push stored (``replies_body``)."""
    return [Reply.from_json(d) for d in json.loads(body)]


def excerpt(body: str) -> str:
    """The start of a kept push's first text, for the line staff see («您好，请提供…»)."""
    try:
        text = " ".join(replies_of(body)[0].text.split())
    except (ValueError, KeyError, IndexError, TypeError):
        return ""
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def duration(seconds: float) -> str:
    """A give-up time in Chinese: 45 秒, 10 分钟, 1 小时, 1.5 小时."""
    if seconds < 120:
        return f"{seconds:g} 秒"
    if seconds < 7200:
        return f"{seconds / 60:.0f} 分钟"
    return f"{seconds / 3600:.3g} 小时"


class Redeliverer:
    """Sends kept pushes again for one service (contract in the module docstring)."""

    def __init__(self, service: "HandoffService", conf: "RedeliveryConfig", *,
                 clock: Callable[[], float] | None = None) -> None:
        self.service, self.conf = service, conf
        self.clock = clock or service.clock
        self.owner = "r" + secrets.token_hex(8)   # this process's name on its claims
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        service.redelivery = self   # the service now keeps what fails, and wakes this

    def wait_after(self, attempts: int) -> float:
        """Seconds before the next try of a push that failed ``attempts`` times."""
        return min(self.conf.max_interval, self.conf.interval * 2 ** max(0, attempts - 1))

    def wake(self) -> None:
        """Look for due pushes now (a push was kept in this process)."""
        self._wake.set()

    def run_once(self) -> int:
        """Send every push that is due now, each hand-off's in order; how many were tried."""
        tried = 0
        while not self._stop.is_set():
            try:
                push = self.service.store.claim_push(self.owner, LEASE)
            except HandoffError as e:
                log.warning("redelivery: the hand-off store is unavailable (%s)", e.__class__.__name__)
                break
            if push is None:
                break
            tried += 1
            try:
                self._send(push)
            except HandoffError as e:   # the store failed after the send: the lease runs out, another try follows
                log.warning("redelivery: push %d of hand-off %s not settled (%s)", push.id, push.handoff_id,
                            e.__class__.__name__)
        return tried

    def _send(self, push: PendingPush) -> None:
        store = self.service.store
        try:
            if self.service.deliver is None:
                raise Undeliverable("本服务没有配置推送渠道")
            self.service.deliver(push.channel, push.address, replies_of(push.body))
        except Exception as e:  # noqa: BLE001 - whatever the channel raises, the push is settled below
            self._failed(push, e)
            return
        if store.push_delivered(push.id, self.owner):
            log.info("redelivery: push %d of hand-off %s delivered (try %d)", push.id, push.handoff_id,
                     push.attempts + 2)
            self._tell(push, f"已补发给用户：「{excerpt(push.body)}」")
        else:
            log.warning("redelivery: push %d of hand-off %s delivered after its claim ran out", push.id,
                        push.handoff_id)

    def _failed(self, push: PendingPush, e: Exception) -> None:
        store, kind = self.service.store, e.__class__.__name__
        if isinstance(e, Undeliverable):
            log.warning("redelivery: push %d of hand-off %s refused by %s (%s): not retried", push.id,
                        push.handoff_id, push.channel, kind)
            if store.push_failed(push.id, self.owner, kind):
                self._tell(push, f"这条消息没有送达用户：{e.reason}。（「{excerpt(push.body)}」）")
            return
        now = self.clock()
        if now - push.created_at >= self.conf.give_up:
            log.error("redelivery: push %d of hand-off %s given up after %d tries (%s)", push.id, push.handoff_id,
                      push.attempts + 2, kind)
            if store.push_failed(push.id, self.owner, kind):
                self._tell(push, f"这条消息在 {duration(self.conf.give_up)}内一直没能送达用户，已停止补发："
                                 f"「{excerpt(push.body)}」。请改用其他方式联系用户。")
            return
        wait = self.wait_after(push.attempts + 2)   # failed tries so far: the first send, the retries, this one
        log.warning("redelivery: push %d of hand-off %s failed again (%s, try %d); next in %.0f s", push.id,
                    push.handoff_id, kind, push.attempts + 2, wait)
        store.push_retry(push.id, self.owner, now + wait, kind)

    def _tell(self, push: PendingPush, text: str) -> None:
        h = self.service.store.get(push.handoff_id)
        if h is not None:
            self.service.notice(h, text)

    # ---- the background thread ------------------------------------------------------------

    def start(self) -> None:
        """Send due pushes from a background thread (at once: what a stopped instance kept goes out now)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="handoff-redelivery", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - keep the thread alive whatever one push does
                log.exception("redelivery: unexpected failure")
            self._wake.wait(min(self.conf.interval, 5.0))
            self._wake.clear()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (a push being sent finishes; what is left waits for the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def attach(service: "HandoffService", cfg: Any) -> Redeliverer:
    """A redeliverer for ``service`` as configured (``handoff.redeliver_*``); started by the caller."""
    from settings import RedeliveryConfig

    return Redeliverer(service, RedeliveryConfig.of(cfg))
