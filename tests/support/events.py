"""The widget's side of the live event stream: a reader of ``text/event-stream`` in a thread."""
from __future__ import annotations

import json
import threading
import time

import requests

DEADLINE = 15.0


class EventReader:
    """Reads a text/event-stream in a thread; ``events`` are (id, event, data dict)."""

    def __init__(self, url: str, params: dict, headers: dict | None = None) -> None:
        self.events: list[tuple[str, str, dict]] = []
        self.comments = 0
        self.status = None
        self._resp = requests.get(url, params=params, headers=headers or {}, stream=True, timeout=60)
        self.status = self._resp.status_code
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        block: dict[str, str] = {}
        try:
            for line in self._resp.iter_lines(decode_unicode=True):
                if line == "":
                    if "data" in block:
                        self.events.append((block.get("id", ""), block.get("event", ""), json.loads(block["data"])))
                    block = {}
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    key, _, value = line.partition(": ")
                    block[key] = value
        except Exception:  # noqa: BLE001 - closed by the test
            pass

    def wait_for(self, predicate, what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if predicate(self.events):
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; got {self.events}")

    def texts(self) -> list[str]:
        return [r["text"] for _, _, data in self.events for r in data["replies"]]

    def close(self) -> None:
        self._resp.close()
