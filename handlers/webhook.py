"""Outbound webhook: hand-off events POSTed to a help desk the team already runs.

Config (section ``handoff``): ``webhook_url`` (empty = off) and ``webhook_secret``
(``HANDOFF_WEBHOOK_SECRET``; required when a URL is set), plus ``webhook_timeout``,
``webhook_retries``, ``webhook_backoff``, ``webhook_queue_size``.

Every event is one JSON object (the envelope; ``channels/README.md`` documents the payloads)::

    {"id": "evt_…", "type": "handoff.created", "created_at": 1764369930.5, "data": {...}}

sent with ``Content-Type: application/json``, ``X-Event-Id`` (= ``id``; the same on every
retry, so receivers de-duplicate), ``X-Event-Type`` and ``X-Signature: sha256=<hex>``, the
HMAC-SHA256 of the exact body bytes with the secret.

Delivery contract:
- ``emit(type, data)`` never blocks and never raises: the body is serialised and signed at
  once, put on a bounded in-process queue and sent by one background thread, in order.
- A network error, a timeout, 429 or 5xx is retried up to ``retries`` times, waiting
  ``backoff`` seconds, then twice as long each time (at most 60 s; a 429's ``Retry-After``
  within that cap is honoured). Any other answer (2xx: delivered; 3xx/4xx: refused) ends it.
- A full queue drops the new event and logs how many were dropped so far (``stats``).
- Logs name the event id, type and the receiver's host, never the body, query string or secret.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import requests

from settings import WebhookConfig

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
USER_AGENT = "chsi-helpdesk-bot-webhook/1"


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-Signature`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, signature: str | None) -> bool:
    """Whether ``signature`` is the right one for ``body`` (constant time), as a receiver checks it."""
    return bool(signature) and hmac.compare_digest(sign(secret, body), str(signature))


def _where(url: str) -> str:
    """Scheme and host of a URL, for logs (paths and queries may hold tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


@dataclass(frozen=True)
class Outgoing:
    """One signed event waiting to be delivered."""

    id: str
    type: str
    body: bytes


Post = Callable[..., requests.Response]


class WebhookSender:
    """Signs events and delivers them from a background thread (contract in the module docstring)."""

    def __init__(self, conf: WebhookConfig, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Any] | None = None) -> None:
        self.conf = conf
        self._clock = clock
        self._queue: queue.Queue[Outgoing | None] = queue.Queue(maxsize=conf.queue_size)
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait   # waits between retries end early on close()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self.stats = {"queued": 0, "delivered": 0, "failed": 0, "dropped": 0, "attempts": 0}
        self._http = requests.Session()
        self._http.headers["User-Agent"] = USER_AGENT

    @property
    def enabled(self) -> bool:
        return self.conf.enabled

    def _count(self, key: str) -> int:
        with self._counts_lock:
            self.stats[key] += 1
            return self.stats[key]

    def emit(self, event_type: str, data: Mapping[str, Any]) -> str | None:
        """Queue one event; its id, or None when off, dropped or unserialisable. Never raises."""
        if not self.enabled or self._stop.is_set():
            return None
        try:
            event_id = "evt_" + secrets.token_hex(12)
            body = json.dumps({"id": event_id, "type": event_type, "created_at": round(self._clock(), 3),
                               "data": data}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            self._ensure_worker()
            self._queue.put_nowait(Outgoing(event_id, event_type, body))
        except queue.Full:
            dropped = self._count("dropped")
            log.warning("webhook queue full (%d waiting): dropped %s event; %d dropped since start",
                        self.conf.queue_size, event_type, dropped)
            return None
        except Exception:  # noqa: BLE001 - a help-desk bridge never breaks the user's turn
            log.exception("webhook: could not queue %s event", event_type)
            return None
        self._count("queued")
        return event_id

    def _ensure_worker(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="handoff-webhook", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._deliver(item)
            except Exception:  # noqa: BLE001 - keep the worker alive whatever one event does
                log.exception("webhook: delivering %s failed unexpectedly", item.id if item else "?")
            finally:
                self._queue.task_done()

    def _headers(self, item: Outgoing, attempt: int) -> dict[str, str]:
        return {"Content-Type": "application/json; charset=utf-8", "X-Event-Id": item.id,
                "X-Event-Type": item.type, "X-Signature": sign(self.conf.secret, item.body),
                "X-Delivery-Attempt": str(attempt)}

    def _deliver(self, item: Outgoing) -> bool:
        """Send one event with retries; True when the receiver took it (2xx)."""
        delay = self.conf.backoff
        where = _where(self.conf.url)
        for attempt in range(1, self.conf.retries + 2):
            self._count("attempts")
            wait: float | None = None
            try:
                r = self._http.post(self.conf.url, data=item.body, headers=self._headers(item, attempt),
                                    timeout=(self.conf.timeout, self.conf.timeout), allow_redirects=False)
                status = r.status_code
                r.close()
            except requests.RequestException as e:
                problem = e.__class__.__name__
            else:
                if 200 <= status < 300:
                    self._count("delivered")
                    log.info("webhook %s %s delivered to %s (try %d)", item.type, item.id, where, attempt)
                    return True
                if status != 429 and status < 500:
                    self._count("failed")
                    log.error("webhook %s %s refused by %s: HTTP %d (not retried)", item.type, item.id, where, status)
                    return False
                problem = f"HTTP {status}"
                if status == 429:
                    wait = _retry_after(r.headers.get("Retry-After"))
            if attempt > self.conf.retries or self._stop.is_set():
                break
            pause = min(MAX_BACKOFF, wait if wait is not None else delay)
            log.warning("webhook %s %s to %s failed (%s, try %d); retrying in %.1f s",
                        item.type, item.id, where, problem, attempt, pause)
            self._sleep(pause)
            delay = min(MAX_BACKOFF, delay * 2)
        self._count("failed")
        log.error("webhook %s %s to %s given up after %d tries (%s)", item.type, item.id, where, attempt, problem)
        return False

    def pending(self) -> int:
        """Events queued and not yet finished (delivered, refused or given up)."""
        return self._queue.unfinished_tasks

    def close(self, timeout: float = 5.0) -> None:
        """Stop: deliver what is queued within ``timeout`` seconds (no more retry waits), then end the thread."""
        if self._thread is None:
            self._stop.set()
            return
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()) / 2)
        self._stop.set()   # cut retry waits short for what is left
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.warning("webhook: %d event(s) not delivered at shutdown", self.pending())
        self._http.close()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form only)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
