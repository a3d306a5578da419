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
- ``emit(type, data)`` never blocks on the receiver and never raises: the body is serialised at
  once and stored in the outbox — ``SqlOutbox``, a table in the hand-off database, when there is
  one (``attach`` in handlers/helpdesk.py), so events survive a restart and every instance drains
  one shared queue; else ``MemoryOutbox``, the in-process twin. A background thread per process
  sends them in order, signing each try.
- At least once, in order, across instances: a worker *claims* the oldest waiting event atomically
  (a lease, renewed before each try); only the head of the queue is ever in flight, so two
  instances never send one event at once and events arrive in order. An instance that dies
  mid-delivery leaves its lease to expire and another sends the event again (same ``X-Event-Id``).
- One try (connect, send, the answer's status line and headers) ends within twice ``timeout``,
  whatever the receiver does: ``timeout`` bounds the connection and each read, and a watchdog cuts
  the connection at the try's deadline — a receiver that never answers, or trickles its answer a
  byte at a time, costs each try that long and cannot hold the queue (or outlive the claim's lease).
- A network error, a timeout, 429 or 5xx is retried up to ``retries`` times, waiting
  ``backoff`` seconds, then twice as long each time (at most 60 s; a 429's ``Retry-After``
  within that cap is honoured). Any other answer (2xx: delivered; 3xx/4xx: refused) ends it.
- ``queue_size`` events waiting (not counting the one in flight): a new one is dropped, and the
  log says how many were dropped so far (``stats``). Given-up events stay in the table, marked failed.
- Logs name the event id, type and the receiver's host, never the body, query string or secret.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import secrets
import socket
import ssl
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Protocol
from urllib.parse import urlsplit

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
    """One serialised event waiting to be delivered (signed at each try)."""

    id: str
    type: str
    body: bytes


class Outbox(Protocol):
    """Where events wait (contract: ``tests/test_webhook.py::test_outbox_contract`` on every backend).

    ``add`` → False when ``limit`` events already wait (unclaimed). ``claim(owner, lease)`` → the
    oldest waiting event when nobody else holds it (a claim lasts ``lease`` seconds unless renewed
    or finished), else None; atomic across processes. ``renew``: extend one's claim. ``finish``:
    delivered (removed) or given up (kept, marked failed). ``pending()``: events waiting or in
    flight. Backend failures raise ``OutboxError``."""

    def add(self, event: Outgoing, limit: int) -> bool: ...

    def claim(self, owner: str, lease: float) -> Outgoing | None: ...

    def renew(self, event_id: str, owner: str, lease: float) -> None: ...

    def finish(self, event_id: str, delivered: bool) -> None: ...

    def pending(self) -> int: ...


class OutboxError(Exception):
    """The outbox's storage failed."""


class MemoryOutbox:
    """The in-process twin: one process, lost on exit."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._items: list[dict[str, Any]] = []
        self.failed: list[Outgoing] = []
        self._mutex = threading.Lock()

    def add(self, event: Outgoing, limit: int) -> bool:
        with self._mutex:
            now = self._clock()
            if sum(1 for i in self._items if not (i["until"] and i["until"] > now)) >= limit:
                return False
            self._items.append({"event": event, "owner": None, "until": 0.0})
            return True

    def claim(self, owner: str, lease: float) -> Outgoing | None:
        with self._mutex:
            if not self._items:
                return None
            head, now = self._items[0], self._clock()
            if head["until"] > now and head["owner"] != owner:
                return None
            head.update(owner=owner, until=now + lease)
            return head["event"]

    def renew(self, event_id: str, owner: str, lease: float) -> None:
        with self._mutex:
            for i in self._items:
                if i["event"].id == event_id and i["owner"] == owner:
                    i["until"] = self._clock() + lease

    def finish(self, event_id: str, delivered: bool) -> None:
        with self._mutex:
            for n, i in enumerate(self._items):
                if i["event"].id == event_id:
                    del self._items[n]
                    if not delivered:
                        self.failed.append(i["event"])
                    return

    def pending(self) -> int:
        with self._mutex:
            return len(self._items)


OUTBOX_MIGRATIONS = [
    """
    CREATE TABLE webhook_outbox (
        id {serial}, event_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, body TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending', claimed_by TEXT, claimed_until DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION);
    CREATE INDEX webhook_outbox_state ON webhook_outbox (state, id)
    """,
]
FAILED_KEPT_SECONDS = 7 * 86400


class SqlOutbox:
    """Events in the hand-off database (SQLite / PostgreSQL), shared by every worker and instance."""

    def __init__(self, db: Any, clock: Callable[[], float] = time.time) -> None:
        from .db import DatabaseError

        self.db, self._clock, self._db_error = db, clock, DatabaseError
        with self._errors():
            db.migrate("webhook_outbox", OUTBOX_MIGRATIONS)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._db_error as e:
            raise OutboxError(str(e)) from e

    def add(self, event: Outgoing, limit: int) -> bool:
        now = self._clock()
        with self._errors():
            tx = self.db.tx()
            waiting = tx.row("SELECT COUNT(*) AS n FROM webhook_outbox WHERE state = 'pending' "
                             "AND (claimed_until IS NULL OR claimed_until <= ?)", (now,))
            if waiting and int(waiting["n"]) >= limit:
                return False
            tx.execute("INSERT INTO webhook_outbox (event_id, type, body, created_at) VALUES (?, ?, ?, ?)",
                       (event.id, event.type, event.body.decode("utf-8"), now))
        return True

    def claim(self, owner: str, lease: float) -> Outgoing | None:
        now = self._clock()
        with self._errors():
            tx = self.db.tx()
            head = tx.row("SELECT id, event_id, type, body, claimed_by, claimed_until FROM webhook_outbox "
                          "WHERE state = 'pending' ORDER BY id LIMIT 1")
            if head is None or (head["claimed_until"] and head["claimed_until"] > now and head["claimed_by"] != owner):
                return None
            # compare-and-set: of two instances seeing the same free head, exactly one changes it
            won = tx.execute("UPDATE webhook_outbox SET claimed_by = ?, claimed_until = ? WHERE id = ? "
                             "AND state = 'pending' AND (claimed_until IS NULL OR claimed_until <= ? "
                             "OR claimed_by = ?)", (owner, now + lease, head["id"], now, owner))
        if won != 1:
            return None
        return Outgoing(head["event_id"], head["type"], head["body"].encode("utf-8"))

    def renew(self, event_id: str, owner: str, lease: float) -> None:
        with self._errors():
            self.db.tx().execute("UPDATE webhook_outbox SET claimed_until = ? WHERE event_id = ? AND claimed_by = ? "
                                 "AND state = 'pending'", (self._clock() + lease, event_id, owner))

    def finish(self, event_id: str, delivered: bool) -> None:
        now = self._clock()
        with self._errors():
            tx = self.db.tx()
            if delivered:
                tx.execute("DELETE FROM webhook_outbox WHERE event_id = ?", (event_id,))
            else:
                tx.execute("UPDATE webhook_outbox SET state = 'failed', finished_at = ?, claimed_until = NULL "
                           "WHERE event_id = ?", (now, event_id))
            tx.execute("DELETE FROM webhook_outbox WHERE state = 'failed' AND finished_at < ?",
                       (now - FAILED_KEPT_SECONDS,))

    def pending(self) -> int:
        with self._errors():
            r = self.db.tx().row("SELECT COUNT(*) AS n FROM webhook_outbox WHERE state = 'pending'")
        return int(r["n"]) if r else 0


class TryTimeout(TimeoutError):
    """The receiver did not answer within the try's deadline (it was cut off)."""


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> tuple[int, str | None]:
    """POST ``body`` to ``url``: (status, ``Retry-After``). ``timeout`` bounds the connection and each
    read, and the whole exchange ends within ``2 × timeout`` (else ``TryTimeout``): a watchdog shuts the
    socket down at the deadline, so a receiver trickling its answer cannot hold the call. The proxy of
    the environment (``https_proxy`` / ``http_proxy`` / ``no_proxy``) is used as ``requests`` would;
    redirects are not followed; TLS is verified. Network failures raise ``OSError`` or
    ``http.client.HTTPException``."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host, port = parts.hostname or "", parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    proxy = None if urllib.request.proxy_bypass(host) else urllib.request.getproxies().get(parts.scheme)
    via = urlsplit(proxy) if proxy else None
    conn: http.client.HTTPConnection
    if https:
        conn = http.client.HTTPSConnection(via.hostname if via else host, (via.port or 80) if via else port,
                                           timeout=timeout, context=ssl.create_default_context())
        if via:
            conn.set_tunnel(host, port)
    elif via:
        conn = http.client.HTTPConnection(via.hostname or "", via.port or 80, timeout=timeout)
        target = url   # a plain-HTTP proxy takes the absolute URL
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    cut = threading.Event()

    def cut_off() -> None:
        cut.set()
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)   # the blocked read returns at once

    watchdog = threading.Timer(2 * timeout, cut_off)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.connect()
        if cut.is_set():   # the deadline passed while connecting (before the socket could be cut)
            raise TryTimeout("no connection before the deadline")
        conn.request("POST", target, body=body, headers=dict(headers))
        response = conn.getresponse()
        return response.status, response.getheader("Retry-After")
    except (OSError, http.client.HTTPException) as e:
        if cut.is_set():
            raise TryTimeout(f"no answer within {2 * timeout:g} s") from e
        raise
    finally:
        watchdog.cancel()
        conn.close()


class WebhookSender:
    """Stores events in an outbox and delivers them from a background thread (contract in the module docstring)."""

    POLL_SECONDS = 1.0   # how often an idle worker looks for events other instances stored

    def __init__(self, conf: WebhookConfig, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Any] | None = None, outbox: Outbox | None = None) -> None:
        self.conf = conf
        self._clock = clock
        self.outbox: Outbox = outbox or MemoryOutbox()
        self.owner = "w" + secrets.token_hex(8)      # this sender's name on its claims
        self._stop = threading.Event()     # no more retry waits (closing)
        self._closing = threading.Event()  # no new events; drain, then end
        self._wake = threading.Event()
        self._sleep = sleep or self._stop.wait   # waits between retries end early on close()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self.stats = {"queued": 0, "delivered": 0, "failed": 0, "dropped": 0, "attempts": 0}

    @property
    def enabled(self) -> bool:
        return self.conf.enabled

    @property
    def lease(self) -> float:
        """How long a claim lasts: one try (at most 2 × timeout) with a margin; renewed before each try."""
        return 2 * self.conf.timeout + 30.0

    def _count(self, key: str) -> int:
        with self._counts_lock:
            self.stats[key] += 1
            return self.stats[key]

    def emit(self, event_type: str, data: Mapping[str, Any]) -> str | None:
        """Store one event; its id, or None when off, dropped or unserialisable. Never raises."""
        if not self.enabled or self._closing.is_set():
            return None
        try:
            event_id = "evt_" + secrets.token_hex(12)
            body = json.dumps({"id": event_id, "type": event_type, "created_at": round(self._clock(), 3),
                               "data": data}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            if not self.outbox.add(Outgoing(event_id, event_type, body), self.conf.queue_size):
                dropped = self._count("dropped")
                log.warning("webhook queue full (%d waiting): dropped %s event; %d dropped since start",
                            self.conf.queue_size, event_type, dropped)
                return None
            self.start()
        except Exception:  # noqa: BLE001 - a help-desk bridge never breaks the user's turn
            log.exception("webhook: could not queue %s event", event_type)
            return None
        self._count("queued")
        self._wake.set()
        return event_id

    def start(self) -> None:
        """Start the delivery thread (at once for a shared outbox: events left by a stopped instance go out)."""
        if self._thread is not None or not self.enabled:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="handoff-webhook", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self.outbox.claim(self.owner, self.lease)
            except Exception:  # noqa: BLE001 - storage down: try again shortly
                log.exception("webhook: could not read the outbox")
                item = None
            if item is None:
                if self._closing.is_set() and (self._stop.is_set() or self._idle()):
                    return
                self._wake.wait(0.05 if self._closing.is_set() else self.POLL_SECONDS)
                self._wake.clear()
                continue
            try:
                delivered = self._deliver(item)
                if delivered is None:    # stopping: free the claim for whoever starts next
                    self.outbox.renew(item.id, self.owner, 0.0)
                else:
                    self.outbox.finish(item.id, delivered)
            except Exception:  # noqa: BLE001 - keep the worker alive whatever one event does
                log.exception("webhook: delivering %s failed unexpectedly", item.id)

    def _idle(self) -> bool:
        try:
            return self.outbox.pending() == 0
        except Exception:  # noqa: BLE001
            return True

    def _headers(self, item: Outgoing, attempt: int) -> dict[str, str]:
        return {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT, "X-Event-Id": item.id,
                "X-Event-Type": item.type, "X-Signature": sign(self.conf.secret, item.body),
                "X-Delivery-Attempt": str(attempt)}

    def _deliver(self, item: Outgoing) -> bool | None:
        """Send one event with retries; True when the receiver took it (2xx), False when refused or
        given up, None when stopped before either (it stays in the outbox for the next start)."""
        delay = self.conf.backoff
        where = _where(self.conf.url)
        for attempt in range(1, self.conf.retries + 2):
            self.outbox.renew(item.id, self.owner, self.lease)
            self._count("attempts")
            wait: float | None = None
            try:
                status, retry_after = post(self.conf.url, item.body, self._headers(item, attempt), self.conf.timeout)
            except (OSError, http.client.HTTPException) as e:
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
                    wait = _retry_after(retry_after)
            if attempt > self.conf.retries:
                break
            if self._stop.is_set():
                log.warning("webhook %s %s to %s not delivered before shutdown (%s); kept for the next start",
                            item.type, item.id, where, problem)
                return None
            pause = min(MAX_BACKOFF, wait if wait is not None else delay)
            log.warning("webhook %s %s to %s failed (%s, try %d); retrying in %.1f s",
                        item.type, item.id, where, problem, attempt, pause)
            self.outbox.renew(item.id, self.owner, self.lease + pause)
            self._sleep(pause)
            if self._stop.is_set():
                log.warning("webhook %s %s to %s not delivered before shutdown; kept for the next start",
                            item.type, item.id, where)
                return None
            delay = min(MAX_BACKOFF, delay * 2)
        self._count("failed")
        log.error("webhook %s %s to %s given up after %d tries (%s)", item.type, item.id, where, attempt, problem)
        return False

    def pending(self) -> int:
        """Events stored and not yet finished (delivered, refused or given up), in flight included."""
        return self.outbox.pending()

    def close(self, timeout: float = 5.0) -> None:
        """Stop: take no new events, deliver what waits within ``timeout`` seconds (no more retry waits
        after half of it), then end the thread. In a shared outbox, what is left waits for the next start."""
        self._closing.set()
        self._wake.set()
        if self._thread is None:
            self._stop.set()
            return
        deadline = time.monotonic() + timeout
        self._thread.join(max(0.0, deadline - time.monotonic()) / 2)
        self._stop.set()   # cut retry waits short for what is left
        self._wake.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.warning("webhook: %d event(s) not delivered at shutdown", self._left())

    def _left(self) -> int:
        try:
            return self.pending()
        except Exception:  # noqa: BLE001
            return -1


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form only)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
