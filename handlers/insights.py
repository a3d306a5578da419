"""Turn events for insights: one masked record per conversation turn, written off the request path.

Each turn the engine handles becomes a ``TurnEvent``: time, channel, a one-way session key,
the user's text **masked before it gets here** (``handlers.privacy.mask_secrets``, the same rules
as hand-off transcripts; a private flow step's answer is not kept at all), the decision,
intent, entry, score and top candidates, the flow and step after the turn, how a flow ended,
the 有帮助/没帮助 vote, and the reply latency.

``EventWriter.record(event)`` only puts the event on a bounded queue: a full queue drops the
event and counts it (``dropped``) — it never slows a reply. A background thread writes batches
(gathered for up to ``LINGER`` seconds after the first event, so a busy server writes one
transaction per batch, not one per turn; ``flush`` and ``close`` write at once) to the ``EventStore`` and purges events older than ``insights.retention_days`` (default 90)
every ``purge_interval_seconds``.

``EventStore`` contract (``MemoryEventStore`` and ``SqlEventStore`` on SQLite/PostgreSQL via
``handlers.db``, beside the hand-offs):
- ``add(events)`` stores a batch; ``query(since, until)`` returns the events with
  ``since <= ts < until`` oldest first; ``purge(before)`` deletes events older than ``before``
  and returns how many.
- A failing backend raises ``InsightsStoreError``; nothing else escapes.
"""
from __future__ import annotations

import atexit
import json
import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

from settings import InsightsConfig

from .db import Database, errors_as

log = logging.getLogger(__name__)

DECISIONS = ("answer", "clarify", "out_of_scope", "flow", "handoff", "feedback", "person", "command", "rejected")
MAX_TEXT = 500   # a turn event keeps this much of the user's masked message (the engine cuts it)


@dataclass(frozen=True)
class TurnEvent:
    ts: float
    session: str                      # one-way key of the session (never the session id)
    channel: str = ""
    text: str = ""                    # the user's message, masked
    decision: str = ""                # one of DECISIONS
    intent: str | None = None
    entry: str | None = None
    score: float | None = None
    candidates: tuple[tuple[str, float], ...] = ()   # (entry, score), best first
    flow: str | None = None           # the flow active after the turn (or the one that just ended)
    step: str | None = None
    flow_event: str | None = None     # started | completed | failed | cancelled | expired | handed_off | error
    feedback: str | None = None       # up | down
    latency_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["candidates"] = [list(c) for c in self.candidates]
        return d


class InsightsStoreError(Exception):
    """The event store is unreachable or failed."""


class EventStore(Protocol):
    def add(self, events: Sequence[TurnEvent]) -> None: ...

    def query(self, since: float, until: float | None = None) -> list[TurnEvent]: ...

    def purge(self, before: float) -> int: ...


class MemoryEventStore:
    """The in-process twin (tests, the terminal chat)."""

    def __init__(self) -> None:
        self._events: list[TurnEvent] = []
        self._lock = threading.Lock()

    def add(self, events: Sequence[TurnEvent]) -> None:
        with self._lock:
            self._events.extend(events)

    def query(self, since: float, until: float | None = None) -> list[TurnEvent]:
        with self._lock:
            found = [e for e in self._events if e.ts >= since and (until is None or e.ts < until)]
        return sorted(found, key=lambda e: e.ts)

    def purge(self, before: float) -> int:
        with self._lock:
            kept = [e for e in self._events if e.ts >= before]
            n, self._events = len(self._events) - len(kept), kept
        return n


MIGRATIONS = [
    """CREATE TABLE turn_events (
        id {serial},
        ts DOUBLE PRECISION NOT NULL,
        session TEXT NOT NULL,
        channel TEXT NOT NULL,
        text TEXT NOT NULL,
        decision TEXT NOT NULL,
        intent TEXT,
        entry TEXT,
        score DOUBLE PRECISION,
        candidates TEXT NOT NULL,
        flow TEXT,
        step TEXT,
        flow_event TEXT,
        feedback TEXT,
        latency_ms DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX turn_events_ts ON turn_events (ts)""",
]
_COLUMNS = ("ts", "session", "channel", "text", "decision", "intent", "entry", "score", "candidates",
            "flow", "step", "flow_event", "feedback", "latency_ms")


class SqlEventStore:
    """Events in the hand-offs' database (``handlers.db``: SQLite by default, PostgreSQL when configured)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        with errors_as(InsightsStoreError):
            db.migrate("insights", MIGRATIONS)

    def add(self, events: Sequence[TurnEvent]) -> None:
        if not events:
            return
        sql = f"INSERT INTO turn_events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
        with errors_as(InsightsStoreError), self.db.transaction() as tx:
            for e in events:
                tx.execute(sql, (e.ts, e.session, e.channel, e.text, e.decision, e.intent, e.entry, e.score,
                                 json.dumps([list(c) for c in e.candidates], ensure_ascii=False),
                                 e.flow, e.step, e.flow_event, e.feedback, e.latency_ms))

    def query(self, since: float, until: float | None = None) -> list[TurnEvent]:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM turn_events WHERE ts >= ?"
        params: list[Any] = [since]
        if until is not None:
            sql += " AND ts < ?"
            params.append(until)
        with errors_as(InsightsStoreError):
            rows = self.db.tx().rows(sql + " ORDER BY ts, id", params)
        return [TurnEvent(**{**r, "candidates": tuple((str(a), float(b)) for a, b in json.loads(r["candidates"]))})
                for r in rows]

    def purge(self, before: float) -> int:
        with errors_as(InsightsStoreError):
            return self.db.tx().execute("DELETE FROM turn_events WHERE ts < ?", (before,))


# ---- the writer -------------------------------------------------------------------------

@dataclass
class WriterStats:
    written: int = 0
    dropped: int = 0          # the queue was full
    failed: int = 0           # lost because the store failed
    purged: int = 0


LINGER = 0.5   # seconds the writer gathers a batch after its first event


class EventWriter:
    """Bounded queue + one background thread writing batches and purging old events."""

    def __init__(self, store: EventStore, config: InsightsConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config or InsightsConfig()
        self.clock = clock
        self.stats = WriterStats()
        self._queue: queue.Queue[TurnEvent | None] = queue.Queue(maxsize=max(1, self.config.queue_size))
        self._count_lock = threading.Lock()
        self._last_purge = 0.0
        self._closed = False
        self._hurry = threading.Event()   # set by flush/close: write what is queued now
        self._thread = threading.Thread(target=self._run, name="insights-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a short-lived process (bot.py ask) still writes its events

    def record(self, event: TurnEvent) -> None:
        """Queue one event; never blocks (a full queue drops it and counts the drop)."""
        if self._closed:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._count_lock:
                self.stats.dropped += 1

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=1.0)
            except queue.Empty:
                self._maybe_purge()
                continue
            batch = [first]
            if first is not None and self._queue.qsize() < self.config.batch_size:
                self._hurry.wait(LINGER)
            while len(batch) < self.config.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            events = [e for e in batch if e is not None]
            try:
                self.store.add(events)
                self.stats.written += len(events)
            except Exception as e:  # noqa: BLE001 - the writer must survive any backend failure
                self.stats.failed += len(events)
                log.error("insights: %d event(s) not stored: %s", len(events), e.__class__.__name__)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if None in batch:
                return
            self._maybe_purge()

    def _maybe_purge(self) -> None:
        now = self.clock()
        if now - self._last_purge < self.config.purge_interval_seconds:
            return
        self._last_purge = now
        self.purge(now)

    def purge(self, now: float | None = None) -> int:
        """Delete events older than the retention period; how many."""
        cutoff = (self.clock() if now is None else now) - self.config.retention_days * 86400
        try:
            n = self.store.purge(cutoff)
        except Exception as e:  # noqa: BLE001
            log.error("insights: purge failed: %s", e.__class__.__name__)
            return 0
        self.stats.purged += n
        if n:
            log.info("insights: %d event(s) older than %g days purged", n, self.config.retention_days)
        return n

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is written (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        self._hurry.set()
        try:
            while self._queue.unfinished_tasks:
                if time.monotonic() > deadline or not self._thread.is_alive():
                    return False
                time.sleep(0.005)
            return True
        finally:
            self._hurry.clear()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._hurry.set()
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)


def build_writer(cfg: Mapping[str, Any], clock: Callable[[], float] = time.time) -> EventWriter | None:
    """The writer as configured (``insights``), storing beside the hand-offs; None when disabled."""
    from .db import database_url, shared

    conf = InsightsConfig.of(cfg)
    if not conf.enabled:
        return None
    url = database_url(cfg)
    store: EventStore = MemoryEventStore() if url.startswith("memory:") else SqlEventStore(shared(url))
    return EventWriter(store, conf, clock)


def open_store(cfg: Mapping[str, Any]) -> EventStore:
    """The configured event store, for reading (CLI, console)."""
    from .db import database_url, shared

    url = database_url(cfg)
    if url.startswith("memory:"):
        raise InsightsStoreError("events are kept in memory only (handoff.database_url memory:); nothing to read")
    return SqlEventStore(shared(url))
