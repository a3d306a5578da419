"""The support lead's overview: turn events and hand-offs of a period, by day.

Pure functions over ``handlers.insights.TurnEvent`` and ``handlers.handoffs.Handoff`` records (no
I/O), used by the console's Overview page. Days are calendar days in ``tz`` (Asia/Shanghai).

Per day: conversations (distinct sessions), questions (typed questions the matcher decided on,
plus hand-off requests) and the share answered directly / clarified / out of scope / handed off,
reply latency p50/p99. For the period: 有帮助 vs 没帮助 per entry; per guided flow the starts,
completions, other endings and the step where users dropped out; hand-off wait (queued →
claimed) and handling (claimed → closed) times.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence
from zoneinfo import ZoneInfo

SHARES = ("answer", "clarify", "out_of_scope", "handoff")
ENDINGS = ("completed", "failed", "cancelled", "expired", "handed_off", "error")


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


@dataclass
class Day:
    day: str
    conversations: int = 0
    questions: int = 0
    decided: Counter = field(default_factory=Counter)   # answer / clarify / out_of_scope / handoff
    latency_p50: float | None = None
    latency_p99: float | None = None
    handoffs: int = 0

    def share(self, decision: str) -> float:
        return self.decided[decision] / self.questions if self.questions else 0.0


@dataclass
class FlowStats:
    flow: str
    started: int = 0
    ended: Counter = field(default_factory=Counter)     # completed / failed / cancelled / ...
    dropped_at: Counter = field(default_factory=Counter)  # step where a flow ended without completing
    unfinished: int = 0                                  # started in the period, no ending seen


@dataclass
class Overview:
    since: float
    until: float
    days: list[Day]
    feedback: dict[str, tuple[int, int]]                # entry → (有帮助, 没帮助)
    flows: list[FlowStats]
    handoff_wait: list[float]                           # seconds queued before an agent claimed
    handoff_handling: list[float]                       # seconds from claim to close
    turns: int = 0

    @property
    def totals(self) -> Day:
        t = Day("total", conversations=sum(d.conversations for d in self.days),
                questions=sum(d.questions for d in self.days), handoffs=sum(d.handoffs for d in self.days))
        for d in self.days:
            t.decided.update(d.decided)
        return t


def _day(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d")


def overview(events: Iterable[Any], handoffs: Iterable[Any], since: float, until: float,
             tz: str = "Asia/Shanghai") -> Overview:
    """Aggregate the period ``[since, until)``."""
    zone = ZoneInfo(tz)
    first = datetime.fromtimestamp(since, zone).date()
    last = datetime.fromtimestamp(max(since, until - 1e-6), zone).date()
    days: dict[str, Day] = {}
    d = first
    while d <= last:
        days[d.isoformat()] = Day(d.isoformat())
        d += timedelta(days=1)

    sessions: dict[str, set[str]] = defaultdict(set)
    latencies: dict[str, list[float]] = defaultdict(list)
    votes: dict[str, Counter] = defaultdict(Counter)
    flows: dict[str, FlowStats] = {}
    open_flows: dict[tuple[str, str], str | None] = {}   # (session, flow) → last step seen
    turns = 0
    for e in sorted(events, key=lambda e: e.ts):
        if not since <= e.ts < until:
            continue
        turns += 1
        key = _day(e.ts, zone)
        day = days.setdefault(key, Day(key))
        sessions[key].add(e.session)
        latencies[key].append(e.latency_ms)
        if e.decision == "handoff" or (e.decision in ("answer", "clarify", "out_of_scope") and e.score is not None):
            day.questions += 1
            day.decided[e.decision] += 1
        if e.decision == "feedback" and e.entry and e.feedback in ("up", "down"):
            votes[e.entry][e.feedback] += 1
        if e.flow:
            stats = flows.setdefault(e.flow, FlowStats(e.flow))
            if e.flow_event == "started":
                stats.started += 1
                open_flows[(e.session, e.flow)] = e.step
            elif e.flow_event in ENDINGS:
                stats.ended[e.flow_event] += 1
                if e.flow_event != "completed":
                    stats.dropped_at[e.step or "（开始前）"] += 1
                open_flows.pop((e.session, e.flow), None)
            elif (e.session, e.flow) in open_flows:
                open_flows[(e.session, e.flow)] = e.step
    for (_, flow), step in open_flows.items():
        flows[flow].unfinished += 1
        flows[flow].dropped_at[step or "（开始前）"] += 1
    for key, day in days.items():
        day.conversations = len(sessions.get(key, ()))
        day.latency_p50 = percentile(latencies.get(key, []), 0.50)
        day.latency_p99 = percentile(latencies.get(key, []), 0.99)

    wait, handling = [], []
    for h in handoffs:
        if not since <= h.created_at < until:
            continue
        key = _day(h.created_at, zone)
        days.setdefault(key, Day(key)).handoffs += 1
        if h.claimed_at:
            wait.append(h.claimed_at - h.created_at)
            if h.closed_at:
                handling.append(h.closed_at - h.claimed_at)
    feedback = {entry: (c["up"], c["down"]) for entry, c in
                sorted(votes.items(), key=lambda kv: (-(kv[1]["up"] + kv[1]["down"]), kv[0]))}
    return Overview(since, until, [days[k] for k in sorted(days)], feedback,
                    sorted(flows.values(), key=lambda f: -f.started), wait, handling, turns)
