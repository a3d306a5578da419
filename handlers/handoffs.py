"""Hand-offs to a person: the record, its messages, and where they are kept.

A hand-off moves ``waiting → active (claimed by one agent) → closed``, or ends ``abandoned``
(the user left or cancelled). It carries the channel and the address that channel's
``send()`` needs, the reason, the flow and step at the time, the topic, the masked transcript
(button labels as the user saw them, never payload ids or live secrets) and timestamps.

``HandoffStore`` contract (every backend keeps it; ``tests/test_handoff_store.py`` runs one
shared contract test against all of them):

- ``create(...)`` returns the new ``Handoff`` (status ``waiting``); ids are random strings.
- ``get(id)`` → the record or ``None``. ``list(status, limit)``: waiting oldest first, others
  most recently updated first. ``position(id)``: 1-based place among waiting ones (0 if not waiting).
- ``claim(id, agent)`` is atomic: exactly one of several concurrent claims of a waiting
  hand-off wins; the others get ``HandoffConflict``. Claiming one's own active hand-off again
  is a no-op. Closed/abandoned → ``HandoffClosed``; unknown id → ``HandoffNotFound``.
- ``add_message(id, kind, author, text)`` appends to a waiting/active hand-off
  (``HandoffClosed`` otherwise); ``messages(id, after)`` lists them in order (ids increase).
- ``finish(id, status, resolution, agent)`` moves a waiting/active hand-off to ``closed`` or
  ``abandoned`` and forgets the address (a chat id or OpenID is kept only while it is needed);
  a second finish raises ``HandoffClosed``.
- Pushes that did not reach the user (``handlers.redelivery``): ``queue_push(...)`` remembers one
  (the channel, the address as it was, the replies as JSON text, the hand-off message it carries,
  when it is next due) — also for a hand-off already finished (its closing notice).
  ``pushes_waiting(id)`` counts a hand-off's pending ones, ``pushes_pending()`` all of them. ``claim_push(owner, lease)`` is atomic
  across threads and processes: the oldest due push that is the first pending one of its hand-off
  (a later one never overtakes an earlier one) and unclaimed (or its claim's lease ran out — a
  push one holds is not one's to claim again);
  ``push_delivered`` forgets it, ``push_retry`` frees it until its next try, ``push_failed`` keeps
  it marked failed without its address. Each of those three acts only for the claim's owner
  (False otherwise: another instance took it after the lease ran out).
- A backend that fails raises ``HandoffStoreError``; nothing else escapes.
"""
from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal, Protocol, Sequence

from .db import Database, errors_as

Status = Literal["waiting", "active", "closed", "abandoned"]
MessageKind = Literal["user", "agent", "system"]
OPEN: tuple[str, ...] = ("waiting", "active")
STATUSES: tuple[str, ...] = ("waiting", "active", "closed", "abandoned")
REASONS = {  # why the conversation reached a person (shown to staff)
    "user_request": "用户要求转人工",
    "invalid_tries": "多次输入无效",
    "out_of_scope_twice": "连续两次无法回答",
    "not_helpful": "答案没帮助后转人工",
    "api_failure": "账号服务调用失败",
}
RESOLUTIONS = {  # the agent's closing tag
    "solved": "已解决",
    "duplicate_id_route_1": "证件号码被占用：途径一",
    "duplicate_id_route_2": "证件号码被占用：途径二",
    "duplicate_id_route_3": "证件号码被占用：途径三",
    "duplicate_id_route_4": "证件号码被占用：途径四",
    "not_our_topic": "非本平台问题",
    "no_reply": "用户未回复",
    "back_to_bot": "转回智能助手",
    "user_left": "用户退出",
}


class HandoffError(Exception):
    """Base of the store's refusals; ``message`` is Chinese, for staff or the API client."""

    message = "操作失败。"


class HandoffNotFound(HandoffError):
    message = "找不到该会话。"


class HandoffConflict(HandoffError):
    message = "该会话已被其他客服接入。"


class HandoffClosed(HandoffError):
    message = "该会话已结束。"


class HandoffStoreError(HandoffError):
    message = "会话存储暂时不可用，请稍后再试。"


@dataclass(frozen=True)
class HandoffMessage:
    """One line said during a hand-off: by the user (masked), an agent, or the system."""

    id: int
    handoff_id: str
    kind: str
    author: str
    text: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "handoff_id": self.handoff_id, "kind": self.kind, "author": self.author,
                "text": self.text, "created_at": self.created_at}


@dataclass(frozen=True)
class Handoff:
    """One conversation handed to a person."""

    id: str
    session_key: str
    channel: str
    address: str
    status: str
    reason: str
    flow: str | None
    step: str | None
    topic: str | None
    transcript: tuple[tuple[str, str], ...]
    created_at: float
    updated_at: float
    claimed_at: float | None = None
    closed_at: float | None = None
    agent: str | None = None
    resolution: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    def to_dict(self) -> dict[str, Any]:
        """Everything staff may see (the address stays server-side); flow, step and topic also by their Chinese names."""
        from .labels import flow_title, step_label, topic_title

        return {"id": self.id, "channel": self.channel, "status": self.status, "reason": self.reason,
                "reason_label": REASONS.get(self.reason, self.reason), "flow": self.flow, "step": self.step,
                "flow_title": flow_title(self.flow), "step_label": step_label(self.step),
                "topic": self.topic, "topic_title": topic_title(self.topic), "transcript": [list(t) for t in self.transcript],
                "created_at": self.created_at, "updated_at": self.updated_at, "claimed_at": self.claimed_at,
                "closed_at": self.closed_at, "agent": self.agent, "resolution": self.resolution,
                "resolution_label": RESOLUTIONS.get(self.resolution or "", self.resolution)}


@dataclass(frozen=True)
class PendingPush:
    """A push to the user that did not get through and waits to be sent again, in order."""

    id: int
    handoff_id: str
    channel: str
    address: str
    body: str                  # the replies as JSON text (``handlers.redelivery.replies_body``)
    message_id: int | None     # the hand-off message it carries (None: a closing notice)
    created_at: float
    attempts: int = 0


@dataclass(frozen=True)
class NewHandoff:
    """What the engine knows when it hands a conversation over."""

    session_key: str
    channel: str
    address: str
    reason: str
    flow: str | None = None
    step: str | None = None
    topic: str | None = None
    transcript: tuple[tuple[str, str], ...] = field(default_factory=tuple)


class HandoffStore(Protocol):
    """Keeps hand-offs and their messages (contract in the module docstring)."""

    def create(self, new: NewHandoff) -> Handoff: ...

    def get(self, handoff_id: str) -> Handoff | None: ...

    def list(self, status: str, limit: int = 100) -> list[Handoff]: ...

    def position(self, handoff_id: str) -> int: ...

    def claim(self, handoff_id: str, agent: str) -> Handoff: ...

    def add_message(self, handoff_id: str, kind: str, author: str, text: str) -> HandoffMessage: ...

    def messages(self, handoff_id: str, after: int = 0, limit: int = 500) -> list[HandoffMessage]: ...

    def finish(self, handoff_id: str, status: str, resolution: str, agent: str | None = None) -> Handoff: ...

    def queue_push(self, handoff_id: str, channel: str, address: str, body: str, message_id: int | None,
                   due: float) -> PendingPush: ...

    def pushes_waiting(self, handoff_id: str) -> int: ...

    def pushes_pending(self) -> int: ...

    def claim_push(self, owner: str, lease: float) -> PendingPush | None: ...

    def push_delivered(self, push_id: int, owner: str) -> bool: ...

    def push_retry(self, push_id: int, owner: str, due: float, error: str) -> bool: ...

    def push_failed(self, push_id: int, owner: str, error: str) -> bool: ...

    def close(self) -> None: ...


def new_id() -> str:
    """A random hand-off id (not derived from the session)."""
    return "h" + secrets.token_hex(8)


def _check_finish(status: str) -> None:
    if status not in ("closed", "abandoned"):
        raise ValueError(f"finish: status must be closed or abandoned, not {status!r}")


# ---- in memory ------------------------------------------------------------------------

class MemoryHandoffStore:
    """The in-process twin: same contract, nothing survives the process."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._items: dict[str, Handoff] = {}
        self._messages: list[HandoffMessage] = []
        self._pushes: list[dict[str, Any]] = []   # pending and failed, oldest first
        self._push_seq = 0
        self._mutex = threading.Lock()

    def create(self, new: NewHandoff) -> Handoff:
        now = self._clock()
        h = Handoff(new_id(), new.session_key, new.channel, new.address, "waiting", new.reason, new.flow, new.step,
                    new.topic, tuple(tuple(t) for t in new.transcript), now, now)  # type: ignore[misc]
        with self._mutex:
            self._items[h.id] = h
        return h

    def get(self, handoff_id: str) -> Handoff | None:
        with self._mutex:
            return self._items.get(handoff_id)

    def list(self, status: str, limit: int = 100) -> list[Handoff]:
        with self._mutex:
            found = [h for h in self._items.values() if h.status == status]
        if status == "waiting":
            found.sort(key=lambda h: (h.created_at, h.id))
        else:
            found.sort(key=lambda h: (-h.updated_at, h.id))
        return found[:limit]

    def position(self, handoff_id: str) -> int:
        with self._mutex:
            h = self._items.get(handoff_id)
            if h is None or h.status != "waiting":
                return 0
            return 1 + sum(1 for o in self._items.values() if o.status == "waiting"
                           and (o.created_at, o.id) < (h.created_at, h.id))

    def _get(self, handoff_id: str) -> Handoff:
        h = self._items.get(handoff_id)
        if h is None:
            raise HandoffNotFound(handoff_id)
        return h

    def claim(self, handoff_id: str, agent: str) -> Handoff:
        with self._mutex:
            h = self._get(handoff_id)
            if h.status == "active" and h.agent == agent:
                return h
            if h.status == "active":
                raise HandoffConflict(handoff_id)
            if h.status != "waiting":
                raise HandoffClosed(handoff_id)
            now = self._clock()
            h = self._items[handoff_id] = replace(h, status="active", agent=agent, claimed_at=now, updated_at=now)
            return h

    def add_message(self, handoff_id: str, kind: str, author: str, text: str) -> HandoffMessage:
        with self._mutex:
            h = self._get(handoff_id)
            if not h.is_open:
                raise HandoffClosed(handoff_id)
            now = self._clock()
            m = HandoffMessage(len(self._messages) + 1, handoff_id, kind, author, text, now)
            self._messages.append(m)
            self._items[handoff_id] = replace(h, updated_at=now)
            return m

    def messages(self, handoff_id: str, after: int = 0, limit: int = 500) -> list[HandoffMessage]:
        with self._mutex:
            return [m for m in self._messages if m.handoff_id == handoff_id and m.id > after][:limit]

    def finish(self, handoff_id: str, status: str, resolution: str, agent: str | None = None) -> Handoff:
        _check_finish(status)
        with self._mutex:
            h = self._get(handoff_id)
            if not h.is_open:
                raise HandoffClosed(handoff_id)
            now = self._clock()
            h = self._items[handoff_id] = replace(h, status=status, resolution=resolution, closed_at=now,
                                                  updated_at=now, agent=h.agent or agent, address="")
            return h

    def queue_push(self, handoff_id: str, channel: str, address: str, body: str, message_id: int | None,
                   due: float) -> PendingPush:
        with self._mutex:
            self._get(handoff_id)
            self._push_seq += 1
            p = PendingPush(self._push_seq, handoff_id, channel, address, body, message_id, self._clock())
            self._pushes.append({"push": p, "state": "pending", "due": due, "owner": None, "until": 0.0, "error": None})
            return p

    def pushes_waiting(self, handoff_id: str) -> int:
        with self._mutex:
            return sum(1 for i in self._pushes if i["state"] == "pending" and i["push"].handoff_id == handoff_id)

    def pushes_pending(self) -> int:
        with self._mutex:
            return sum(1 for i in self._pushes if i["state"] == "pending")

    def claim_push(self, owner: str, lease: float) -> PendingPush | None:
        with self._mutex:
            now, heads = self._clock(), set()
            for i in self._pushes:
                p = i["push"]
                if i["state"] != "pending" or p.handoff_id in heads:
                    continue
                heads.add(p.handoff_id)   # only the first pending push of a hand-off may go
                if i["due"] <= now and i["until"] <= now:
                    i.update(owner=owner, until=now + lease)
                    return p
            return None

    def _mine(self, push_id: int, owner: str) -> dict[str, Any] | None:
        now = self._clock()
        return next((i for i in self._pushes if i["push"].id == push_id and i["state"] == "pending"
                     and i["owner"] == owner and i["until"] > now), None)

    def push_delivered(self, push_id: int, owner: str) -> bool:
        with self._mutex:
            item = self._mine(push_id, owner)
            if item is not None:
                self._pushes.remove(item)
            return item is not None

    def push_retry(self, push_id: int, owner: str, due: float, error: str) -> bool:
        with self._mutex:
            item = self._mine(push_id, owner)
            if item is not None:
                item.update(push=replace(item["push"], attempts=item["push"].attempts + 1), due=due, owner=None,
                            until=0.0, error=error)
            return item is not None

    def push_failed(self, push_id: int, owner: str, error: str) -> bool:
        with self._mutex:
            item = self._mine(push_id, owner)
            if item is not None:
                item.update(push=replace(item["push"], address="", attempts=item["push"].attempts + 1),
                            state="failed", owner=None, until=0.0, error=error)
            return item is not None

    def close(self) -> None:
        pass


# ---- SQLite / PostgreSQL -------------------------------------------------------------------

MIGRATIONS = [
    """
    CREATE TABLE handoffs (
        id TEXT PRIMARY KEY, session_key TEXT NOT NULL, channel TEXT NOT NULL, address TEXT NOT NULL,
        status TEXT NOT NULL, reason TEXT NOT NULL, flow TEXT, step TEXT, topic TEXT,
        transcript TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
        claimed_at DOUBLE PRECISION, closed_at DOUBLE PRECISION, agent TEXT, resolution TEXT);
    CREATE INDEX handoffs_status ON handoffs (status, created_at);
    CREATE INDEX handoffs_session ON handoffs (session_key);
    CREATE TABLE handoff_messages (
        id {serial}, handoff_id TEXT NOT NULL REFERENCES handoffs (id), kind TEXT NOT NULL,
        author TEXT NOT NULL, text TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL);
    CREATE INDEX handoff_messages_handoff ON handoff_messages (handoff_id, id)
    """,
    # pushes to users that did not get through, sent again in order (handlers/redelivery.py)
    """
    CREATE TABLE handoff_pushes (
        id {serial}, handoff_id TEXT NOT NULL REFERENCES handoffs (id), channel TEXT NOT NULL,
        address TEXT NOT NULL, body TEXT NOT NULL, message_id BIGINT, state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0, due_at DOUBLE PRECISION NOT NULL, claimed_by TEXT,
        claimed_until DOUBLE PRECISION, last_error TEXT, created_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION);
    CREATE INDEX handoff_pushes_pending ON handoff_pushes (state, handoff_id, id)
    """,
]
FAILED_PUSHES_KEPT = 7 * 86400   # a given-up push (no address left) is kept this long, then deleted
_PUSH_COLUMNS = "id, handoff_id, channel, address, body, message_id, created_at, attempts"

_COLUMNS = ("id, session_key, channel, address, status, reason, flow, step, topic, transcript, created_at, "
            "updated_at, claimed_at, closed_at, agent, resolution")


def _row(r: dict[str, Any]) -> Handoff:
    transcript = tuple(tuple(t) for t in json.loads(r["transcript"]))
    return Handoff(**{**r, "transcript": transcript})  # type: ignore[arg-type]


class SqlHandoffStore:
    """Hand-offs in SQLite (the embedded default) or PostgreSQL, through ``handlers.db``."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        with self._errors():
            db.migrate("handoffs", MIGRATIONS)

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return errors_as(HandoffStoreError)

    def create(self, new: NewHandoff) -> Handoff:
        now = self._clock()
        h = Handoff(new_id(), new.session_key, new.channel, new.address, "waiting", new.reason, new.flow, new.step,
                    new.topic, tuple(tuple(t) for t in new.transcript), now, now)  # type: ignore[misc]
        with self._errors():
            self.db.tx().execute(
                f"INSERT INTO handoffs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (h.id, h.session_key, h.channel, h.address, h.status, h.reason, h.flow, h.step, h.topic,
                 json.dumps([list(t) for t in h.transcript], ensure_ascii=False), now, now, None, None, None, None))
        return h

    def get(self, handoff_id: str) -> Handoff | None:
        with self._errors():
            r = self.db.tx().row(f"SELECT {_COLUMNS} FROM handoffs WHERE id = ?", (handoff_id,))
        return _row(r) if r else None

    def list(self, status: str, limit: int = 100) -> list[Handoff]:
        order = "created_at, id" if status == "waiting" else "updated_at DESC, id"
        with self._errors():
            rows = self.db.tx().rows(f"SELECT {_COLUMNS} FROM handoffs WHERE status = ? ORDER BY {order} LIMIT ?",
                                     (status, int(limit)))
        return [_row(r) for r in rows]

    def position(self, handoff_id: str) -> int:
        with self._errors():
            r = self.db.tx().row(
                "SELECT COUNT(*) AS n FROM handoffs w JOIN handoffs h ON h.id = ? AND h.status = 'waiting' "
                "WHERE w.status = 'waiting' AND (w.created_at < h.created_at OR "
                "(w.created_at = h.created_at AND w.id <= h.id))", (handoff_id,))
        return int(r["n"]) if r else 0

    def _current(self, tx: Any, handoff_id: str) -> Handoff:
        r = tx.row(f"SELECT {_COLUMNS} FROM handoffs WHERE id = ?", (handoff_id,))
        if r is None:
            raise HandoffNotFound(handoff_id)
        return _row(r)

    def claim(self, handoff_id: str, agent: str) -> Handoff:
        now = self._clock()
        with self._errors(), self.db.transaction() as tx:
            changed = tx.execute("UPDATE handoffs SET status = 'active', agent = ?, claimed_at = ?, updated_at = ? "
                                 "WHERE id = ? AND status = 'waiting'", (agent, now, now, handoff_id))
            h = self._current(tx, handoff_id)
        if changed == 1 or (h.status == "active" and h.agent == agent):
            return h
        raise HandoffConflict(handoff_id) if h.status == "active" else HandoffClosed(handoff_id)

    def add_message(self, handoff_id: str, kind: str, author: str, text: str) -> HandoffMessage:
        now = self._clock()
        with self._errors(), self.db.transaction() as tx:
            touched = tx.execute("UPDATE handoffs SET updated_at = ? WHERE id = ? AND status IN ('waiting', 'active')",
                                 (now, handoff_id))
            if touched != 1:
                self._current(tx, handoff_id)  # raises HandoffNotFound when unknown
                raise HandoffClosed(handoff_id)
            mid = tx.insert("INSERT INTO handoff_messages (handoff_id, kind, author, text, created_at) "
                            "VALUES (?, ?, ?, ?, ?)", (handoff_id, kind, author, text, now))
        return HandoffMessage(mid, handoff_id, kind, author, text, now)

    def messages(self, handoff_id: str, after: int = 0, limit: int = 500) -> list[HandoffMessage]:
        with self._errors():
            rows = self.db.tx().rows("SELECT id, handoff_id, kind, author, text, created_at FROM handoff_messages "
                                     "WHERE handoff_id = ? AND id > ? ORDER BY id LIMIT ?",
                                     (handoff_id, int(after), int(limit)))
        return [HandoffMessage(**r) for r in rows]

    def finish(self, handoff_id: str, status: str, resolution: str, agent: str | None = None) -> Handoff:
        _check_finish(status)
        now = self._clock()
        with self._errors(), self.db.transaction() as tx:
            changed = tx.execute("UPDATE handoffs SET status = ?, resolution = ?, closed_at = ?, updated_at = ?, "
                                 "agent = COALESCE(agent, ?), address = '' "
                                 "WHERE id = ? AND status IN ('waiting', 'active')",
                                 (status, resolution, now, now, agent, handoff_id))
            h = self._current(tx, handoff_id)
        if changed != 1:
            raise HandoffClosed(handoff_id)
        return h

    def queue_push(self, handoff_id: str, channel: str, address: str, body: str, message_id: int | None,
                   due: float) -> PendingPush:
        now = self._clock()
        with self._errors(), self.db.transaction() as tx:
            self._current(tx, handoff_id)   # raises HandoffNotFound when unknown
            pid = tx.insert("INSERT INTO handoff_pushes (handoff_id, channel, address, body, message_id, due_at, "
                            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (handoff_id, channel, address, body, message_id, due, now))
        return PendingPush(pid, handoff_id, channel, address, body, message_id, now)

    def pushes_waiting(self, handoff_id: str) -> int:
        with self._errors():
            r = self.db.tx().row("SELECT COUNT(*) AS n FROM handoff_pushes WHERE handoff_id = ? AND state = 'pending'",
                                 (handoff_id,))
        return int(r["n"]) if r else 0

    def pushes_pending(self) -> int:
        with self._errors():
            r = self.db.tx().row("SELECT COUNT(*) AS n FROM handoff_pushes WHERE state = 'pending'")
        return int(r["n"]) if r else 0

    def claim_push(self, owner: str, lease: float) -> PendingPush | None:
        now = self._clock()
        with self._errors():
            tx = self.db.tx()
            # the first pending push of each hand-off, when due and free (no claim, or its lease ran out)
            heads = tx.rows(f"SELECT {_PUSH_COLUMNS} FROM handoff_pushes p WHERE state = 'pending' AND due_at <= ? "
                            "AND (claimed_until IS NULL OR claimed_until <= ?) AND NOT EXISTS "
                            "(SELECT 1 FROM handoff_pushes e WHERE e.handoff_id = p.handoff_id "
                            "AND e.state = 'pending' AND e.id < p.id) ORDER BY due_at, id LIMIT 20", (now, now))
            for r in heads:
                # compare-and-set: of two instances seeing the same free push, exactly one changes it
                won = tx.execute("UPDATE handoff_pushes SET claimed_by = ?, claimed_until = ? WHERE id = ? "
                                 "AND state = 'pending' AND (claimed_until IS NULL OR claimed_until <= ?)",
                                 (owner, now + lease, r["id"], now))
                if won == 1:
                    return PendingPush(**r)
        return None

    def _owned(self, sql: str, params: tuple[Any, ...], push_id: int, owner: str) -> bool:
        with self._errors():
            return self.db.tx().execute(f"{sql} WHERE id = ? AND state = 'pending' AND claimed_by = ? "
                                        "AND claimed_until > ?", (*params, push_id, owner, self._clock())) == 1

    def push_delivered(self, push_id: int, owner: str) -> bool:
        return self._owned("DELETE FROM handoff_pushes", (), push_id, owner)

    def push_retry(self, push_id: int, owner: str, due: float, error: str) -> bool:
        return self._owned("UPDATE handoff_pushes SET attempts = attempts + 1, due_at = ?, last_error = ?, "
                           "claimed_by = NULL, claimed_until = NULL", (due, error), push_id, owner)

    def push_failed(self, push_id: int, owner: str, error: str) -> bool:
        now = self._clock()
        done = self._owned("UPDATE handoff_pushes SET state = 'failed', address = '', attempts = attempts + 1, "
                           "last_error = ?, finished_at = ?, claimed_by = NULL, claimed_until = NULL",
                           (error, now), push_id, owner)
        with self._errors():
            self.db.tx().execute("DELETE FROM handoff_pushes WHERE state = 'failed' AND finished_at < ?",
                                 (now - FAILED_PUSHES_KEPT,))
        return done

    def close(self) -> None:
        self.db.close()


def build_handoff_store(url: str, clock: Callable[[], float] = time.time) -> HandoffStore:
    """The store for a database URL (``memory://`` → the in-process twin)."""
    if url.startswith("memory:"):
        return MemoryHandoffStore(clock)
    from .db import shared
    return SqlHandoffStore(shared(url), clock)


def transcript_lines(transcript: Sequence[Sequence[str]]) -> tuple[tuple[str, str], ...]:
    """A transcript as immutable (who, text) pairs."""
    return tuple((str(t[0]), str(t[1])) for t in transcript)
