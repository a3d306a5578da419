"""Append-only records for staff: answer feedback (JSON lines, no personal data).

Sessions appear only as a short one-way hash (hand-offs live in ``handlers.handoffs``). A record
that cannot be written is logged and dropped: the user's conversation never fails because of it.
A file past ``max_bytes`` is rotated (``name.1`` … ``name.<keep>``, oldest dropped) under an
exclusive file lock, so several processes appending to one directory neither interleave lines
nor rotate twice.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from .sessions import storage_key

log = logging.getLogger(__name__)


class FeedbackRecords:
    """feedback.jsonl under one directory (answer votes; not a student's ``accounts.base.StudentRecord``)."""

    def __init__(self, data_dir: str | Path, clock=time.time,  # type: ignore[no-untyped-def]
                 max_bytes: int = 10 * 1024 * 1024, keep: int = 5) -> None:
        self.dir = Path(data_dir)
        self._clock = clock
        self._lock = threading.Lock()
        self.max_bytes, self.keep = max_bytes, keep

    def _append(self, name: str, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        path = self.dir / name
        try:
            with self._lock:
                self.dir.mkdir(parents=True, exist_ok=True)
                with open(self.dir / f".{name}.lock", "a") as guard:
                    fcntl.flock(guard, fcntl.LOCK_EX)
                    try:
                        if path.exists() and path.stat().st_size + len(line) > self.max_bytes:
                            self._rotate(path)
                        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                        try:
                            os.write(fd, line)
                        finally:
                            os.close(fd)
                    finally:
                        fcntl.flock(guard, fcntl.LOCK_UN)
        except OSError as e:
            log.error("could not append to %s: %s", name, e.__class__.__name__)

    def _rotate(self, path: Path) -> None:
        """name → name.1 → … → name.<keep>; the oldest is dropped."""
        for i in range(self.keep - 1, 0, -1):
            older = path.with_name(f"{path.name}.{i}")
            if older.exists():
                os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
        os.replace(path, path.with_name(f"{path.name}.1"))

    def feedback(self, session_id: str, entry: str, helpful: bool) -> None:
        """One 有帮助/没帮助 vote on an FAQ entry."""
        self._append("feedback.jsonl", {"ts": round(self._clock(), 3), "session": storage_key(session_id)[:12],
                                        "entry": entry, "helpful": helpful})
