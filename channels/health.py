"""``GET /readyz``: can this instance serve a conversation right now? Each dependency checked, with detail.

- ``sessions``: the session store answers (``ping``: SQLite reads its table, Redis PINGs).
- ``handoffs``: the hand-off store answers a one-row query.
- ``accounts``: the account API's host accepts a TCP connection (a readiness probe must not
  spend the API's rate limits or need its key).

Every check is bounded by a short timeout and never raises; the details name the failure's
class only (no URLs with credentials, no personal data).
"""
from __future__ import annotations

import socket
import time
from typing import Any, Callable
from urllib.parse import urlsplit

TIMEOUT = 2.0


def _check(probe: Callable[[], Any]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        probe()
    except Exception as e:  # noqa: BLE001 - a readiness probe reports, it does not raise
        return {"ok": False, "error": e.__class__.__name__, "ms": round((time.perf_counter() - started) * 1000, 1)}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def _tcp(base_url: str) -> None:
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=TIMEOUT):
        pass


def readiness(engine: Any, handoffs: Any) -> dict[str, dict[str, Any]]:
    """The checks that apply to this engine and hand-off service, each ``{"ok", "ms"[, "error"]}``."""
    checks: dict[str, dict[str, Any]] = {}
    store = getattr(engine, "store", None)
    if store is not None and hasattr(store, "ping"):
        checks["sessions"] = _check(store.ping)
    hstore = getattr(handoffs, "store", None)
    if hstore is not None and hasattr(hstore, "list"):
        checks["handoffs"] = _check(lambda: hstore.list("waiting", limit=1))
    base_url = getattr(getattr(getattr(engine, "accounts", None), "config", None), "base_url", None)
    if base_url:
        checks["accounts"] = _check(lambda: _tcp(str(base_url)))
    return checks
