"""Live FAQ reload: watch the maintainers' YAML, validate a change, swap in a new matcher.

A background thread polls the FAQ folder's files (path, size, mtime) every ``interval``
seconds. On a change it validates the folder with the loader and builds the new matcher
off the request path; only a valid FAQ replaces the current one, in one assignment, so a
request sees either the old or the new FAQ, never a mix. A broken edit keeps the last good
FAQ and is logged as ``file:line: field: message`` and reported by ``status()`` (shown in
``/healthz`` and the staff console). Each process runs its own watcher, so every worker
reloads by itself; nothing is shared in process memory.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from faq.loader import check
from faq.model import FAQ

from .matcher import Matcher, MatcherConfig

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Snapshot:
    """One loaded FAQ and the matcher built from it."""

    faq: FAQ
    matcher: Matcher
    loaded_at: float
    fingerprint: Fingerprint = ()


@dataclass
class ReloadStats:
    reloads: int = 0            # successful swaps after the first load
    failures: int = 0           # edits rejected (the last good FAQ stayed)
    last_error: list[str] = field(default_factory=list)   # file:line: field: message, of the last rejected edit
    last_error_at: float | None = None
    last_reload_at: float | None = None


def fingerprint(folder: Path) -> Fingerprint:
    """What changes when a maintainer saves, adds, renames or deletes a YAML file."""
    out = []
    for path in sorted([*folder.rglob("*.yaml"), *folder.rglob("*.yml")]):
        try:
            st = path.stat()
        except OSError:
            continue  # deleted between listing and stat: the next poll sees the new state
        out.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(out)


class LiveFAQ:
    """The current FAQ and matcher, kept up to date with the folder by a watcher thread."""

    def __init__(self, folder: str | Path, config: MatcherConfig | None = None, *, interval: float = 1.0,
                 build: Callable[[FAQ, MatcherConfig], Matcher] = Matcher,
                 clock: Callable[[], float] = time.time) -> None:
        self.folder = Path(folder)
        self.config = config or MatcherConfig()
        self.interval = interval
        self._build = build
        self._clock = clock
        self._listeners: list[Callable[[Snapshot], None]] = []
        self.stats = ReloadStats()
        self._failed: Fingerprint | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poll_lock = threading.Lock()
        printed = fingerprint(self.folder)
        faq, problems = check(self.folder)
        if faq is None:
            from faq.loader import FAQError, Problem
            raise FAQError(problems or [Problem(str(self.folder), 1, "", "FAQ not loaded")])
        self._current = Snapshot(faq, self._build(faq, self.config), self._clock(), printed)

    @classmethod
    def from_settings(cls, cfg: Mapping[str, Any]) -> "LiveFAQ":
        """The FAQ folder, matcher thresholds and poll interval from config (``faq.watch_interval``)."""
        from faq.loader import faq_dir
        from settings import FaqConfig

        return cls(faq_dir(cfg), MatcherConfig.of(cfg), interval=FaqConfig.of(cfg).watch_interval)

    @property
    def current(self) -> Snapshot:
        return self._current

    def subscribe(self, listener: Callable[[Snapshot], None]) -> None:
        """Call ``listener(snapshot)`` after each successful reload (from the watcher thread)."""
        self._listeners.append(listener)

    # ---- the watcher -------------------------------------------------------------------

    def poll(self) -> bool:
        """Reload when the folder changed; True when a new FAQ was swapped in."""
        with self._poll_lock:
            printed = fingerprint(self.folder)
            if printed == self._current.fingerprint or printed == self._failed:
                return False
            faq, problems = check(self.folder)
            if printed != fingerprint(self.folder):
                return False  # still being written: look again at the next poll
            if faq is None:
                self._failed = printed
                self.stats.failures += 1
                self.stats.last_error = [str(p) for p in problems]
                self.stats.last_error_at = self._clock()
                for p in problems:
                    log.error("FAQ edit rejected, still serving the last good FAQ: %s", p)
                return False
            try:
                matcher = self._build(faq, self.config)
            except Exception as e:  # a matcher that cannot be built must not take the old one down
                self._failed = printed
                self.stats.failures += 1
                self.stats.last_error = [f"{self.folder}:1: matcher: {e.__class__.__name__}: {e}"]
                self.stats.last_error_at = self._clock()
                log.exception("FAQ edit rejected: the matcher could not be built")
                return False
            self._current = Snapshot(faq, matcher, self._clock(), printed)
            self._failed = None
            self.stats.reloads += 1
            self.stats.last_error = []
            self.stats.last_reload_at = self._current.loaded_at
        log.info("FAQ reloaded: %d entries", len(faq.entries))
        for listener in list(self._listeners):
            try:
                listener(self._current)
            except Exception:
                log.exception("FAQ reload listener failed")
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # never let the watcher die: the next poll tries again
                log.exception("FAQ watcher failed")

    def start(self) -> "LiveFAQ":
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="faq-watcher", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def status(self) -> dict[str, Any]:
        """For /healthz and the console: what is served, and the last rejected edit if it is still pending."""
        s = self.stats
        return {
            "entries": len(self._current.faq.entries),
            "loaded_at": round(self._current.loaded_at, 3),
            "reloads": s.reloads,
            "failures": s.failures,
            "ok": not s.last_error,
            "errors": list(s.last_error),
        }


def watched_engine(cfg: Mapping[str, Any], build_engine: Callable[..., Any]) -> tuple[Any, "LiveFAQ | None"]:
    """``build_engine(cfg, matcher=…)`` over a FAQ that follows saved edits (unless ``faq.watch`` is
    false); the engine and its watcher, not yet started (``live.start()``)."""
    from settings import FaqConfig

    if not FaqConfig.of(cfg).watch:
        return build_engine(cfg), None
    live = LiveFAQ.from_settings(cfg)
    engine = build_engine(cfg, matcher=live.current.matcher)
    live.subscribe(lambda snapshot: engine.use(snapshot.faq, snapshot.matcher))
    return engine, live
