"""Idempotency keys of the help-desk hand-off API (``Idempotency-Key`` on its POSTs): a retried
request with the same key gets the first answer again instead of sending the reply twice.

Kept in the hand-off database (SQLite / PostgreSQL), so a retry that reaches another instance or
worker is recognised too; ``MemoryIdempotencyStore`` is the in-process twin.

``IdempotencyStore`` contract (``tests/test_handoff_api.py`` runs it on every backend):

- ``begin(key, fingerprint)`` claims the key atomically: ``None`` means "yours, do the work"; a
  ``Stored`` is the answer of the finished request with that key and the same fingerprint (replay
  it). ``KeyReused`` when the key was used for a different request, ``KeyInProgress`` while another
  request holds it (a claim older than ``LEASE_SECONDS`` is abandoned and may be taken over).
- ``finish(key, status, body)`` records the answer; ``release(key)`` frees the claim (the request
  was refused or failed and changed nothing, so the same key may be tried again).
- Keys are forgotten ``TTL_SECONDS`` after their first use.
- A backend that fails raises ``IdempotencyStoreError``; nothing else escapes.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .db import Database, errors_as

TTL_SECONDS = 24 * 3600
LEASE_SECONDS = 60.0


class IdempotencyError(Exception):
    message = "操作失败。"


class KeyReused(IdempotencyError):
    message = "该 Idempotency-Key 已用于另一个不同的请求，请为新请求生成新的键。"


class KeyInProgress(IdempotencyError):
    message = "使用该 Idempotency-Key 的请求正在处理中，请稍后重试。"


class IdempotencyStoreError(IdempotencyError):
    message = "会话存储暂时不可用，请稍后再试。"


@dataclass(frozen=True)
class Stored:
    """The answer given to the first request with a key."""

    status: int
    body: Any


class IdempotencyStore(Protocol):
    def begin(self, key: str, fingerprint: str) -> Stored | None: ...

    def finish(self, key: str, status: int, body: Any) -> None: ...

    def release(self, key: str) -> None: ...


class MemoryIdempotencyStore:
    """The in-process twin (one process only)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._rows: dict[str, dict[str, Any]] = {}
        self._mutex = threading.Lock()

    def begin(self, key: str, fingerprint: str) -> Stored | None:
        now = self._clock()
        with self._mutex:
            for k in [k for k, r in self._rows.items() if r["created_at"] < now - TTL_SECONDS]:
                del self._rows[k]
            row = self._rows.get(key)
            if row is None or (not row["done"] and row["claimed_at"] < now - LEASE_SECONDS
                               and row["fingerprint"] == fingerprint):
                self._rows[key] = {"fingerprint": fingerprint, "done": False, "claimed_at": now,
                                   "created_at": row["created_at"] if row else now}
                return None
            if row["fingerprint"] != fingerprint:
                raise KeyReused()
            if not row["done"]:
                raise KeyInProgress()
            return Stored(row["status"], row["body"])

    def finish(self, key: str, status: int, body: Any) -> None:
        with self._mutex:
            if key in self._rows:
                self._rows[key].update(done=True, status=status, body=json.loads(json.dumps(body)))

    def release(self, key: str) -> None:
        with self._mutex:
            row = self._rows.get(key)
            if row is not None and not row["done"]:
                del self._rows[key]


MIGRATIONS = [
    """
    CREATE TABLE idempotency_keys (
        idem_key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0,
        status INTEGER, body TEXT, claimed_at DOUBLE PRECISION NOT NULL, created_at DOUBLE PRECISION NOT NULL);
    CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)
    """,
]


class SqlIdempotencyStore:
    """Keys in the hand-off database (shared by every instance)."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        with self._errors():
            db.migrate("idempotency", MIGRATIONS)

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return errors_as(IdempotencyStoreError)

    def begin(self, key: str, fingerprint: str) -> Stored | None:
        now = self._clock()
        with self._errors():
            tx = self.db.tx()
            tx.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (now - TTL_SECONDS,))
            if tx.execute("INSERT INTO idempotency_keys (idem_key, fingerprint, claimed_at, created_at) "
                          "VALUES (?, ?, ?, ?) ON CONFLICT (idem_key) DO NOTHING", (key, fingerprint, now, now)) == 1:
                return None
            # an abandoned claim (its process died) may be taken over, by exactly one request
            if tx.execute("UPDATE idempotency_keys SET claimed_at = ? WHERE idem_key = ? AND done = 0 "
                          "AND fingerprint = ? AND claimed_at < ?", (now, key, fingerprint, now - LEASE_SECONDS)) == 1:
                return None
            row = tx.row("SELECT fingerprint, done, status, body FROM idempotency_keys WHERE idem_key = ?", (key,))
        if row is None:            # released meanwhile: try once more
            return self.begin(key, fingerprint)
        if row["fingerprint"] != fingerprint:
            raise KeyReused()
        if not row["done"]:
            raise KeyInProgress()
        return Stored(int(row["status"]), json.loads(row["body"]))

    def finish(self, key: str, status: int, body: Any) -> None:
        with self._errors():
            self.db.tx().execute("UPDATE idempotency_keys SET done = 1, status = ?, body = ? WHERE idem_key = ?",
                                 (status, json.dumps(body, ensure_ascii=False), key))

    def release(self, key: str) -> None:
        with self._errors():
            self.db.tx().execute("DELETE FROM idempotency_keys WHERE idem_key = ? AND done = 0", (key,))


def build_idempotency_store(handoff_store: Any, clock: Callable[[], float] = time.time) -> IdempotencyStore:
    """Beside the hand-offs: in their database when they have one, else in process."""
    db = getattr(handoff_store, "db", None)
    return SqlIdempotencyStore(db, clock) if isinstance(db, Database) else MemoryIdempotencyStore(clock)
