"""Append-only records for staff: answer feedback (JSON lines, no personal data).

Sessions appear only as a short one-way hash (hand-offs live in ``handlers.handoffs``). A record that cannot be written is logged and dropped:
the user's conversation never fails because of it.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from .sessions import storage_key

log = logging.getLogger(__name__)


class Records:
    """feedback.jsonl under one directory."""

    def __init__(self, data_dir: str | Path, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        self.dir = Path(data_dir)
        self._clock = clock
        self._lock = threading.Lock()

    def _append(self, name: str, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            with self._lock:
                self.dir.mkdir(parents=True, exist_ok=True)
                with open(self.dir / name, "a", encoding="utf-8") as f:
                    f.write(line)
        except OSError as e:
            log.error("could not append to %s: %s", name, e.__class__.__name__)

    def feedback(self, session_id: str, entry: str, helpful: bool) -> None:
        """One 有帮助/没帮助 vote on an FAQ entry."""
        self._append("feedback.jsonl", {"ts": round(self._clock(), 3), "session": storage_key(session_id)[:12],
                                        "entry": entry, "helpful": helpful})

    def read(self, name: str) -> list[dict[str, Any]]:
        """All records of one file (for staff tools and tests)."""
        path = self.dir / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
