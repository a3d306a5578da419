"""Turn-event cost: what recording an event adds to a turn, and the background write rate.

    python benchmarks/bench_insights.py [--turns 3000]

1. ``EventWriter.record`` alone (the request path: build nothing, put on the queue), µs per call;
2. ``Engine.handle`` on FAQ questions with and without the writer (in-memory sessions, SQLite
   events in a temporary file): the difference per turn, µs (the trace notes + event + enqueue);
3. the background writer's rate into SQLite (events/s, batches of ``batch_size``).
Measured with time.perf_counter in one process; nothing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))   # support: make_engine

from accounts.local import LocalAccountClient  # noqa: E402
from handlers.db import connect  # noqa: E402
from handlers.insights import EventWriter, InsightsConfig, MemoryEventStore, SqlEventStore, TurnEvent  # noqa: E402
from support import make_engine  # noqa: E402
from handlers.types import Message  # noqa: E402

QUESTIONS = ["忘记用户名怎么办", "密码忘了", "证件号码已被注册怎么办", "操作过于频繁", "邮箱IP受限是什么意思",
             "怎么绑定微信", "手机号被别人注册了", "明天会下雨吗", "学信网账号能登录研招网吗", "你好"]


def per_turn(engine, n: int) -> list[float]:
    out = []
    for i in range(n):
        sid = f"bench-{i % 50}"
        start = time.perf_counter()
        engine.handle(sid, Message.from_text(QUESTIONS[i % len(QUESTIONS)], channel="web", address=sid))
        out.append((time.perf_counter() - start) * 1e6)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=3000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-insights-"))

    # 1. record() alone
    writer = EventWriter(MemoryEventStore(), InsightsConfig(queue_size=10 ** 7))
    event = TurnEvent(ts=time.time(), session="0123456789abcdef", channel="web", text="忘记用户名怎么办",
                      decision="answer", intent="recover_account", entry="recover_account.username", score=0.9,
                      candidates=(("recover_account.username", 0.9), ("recover_account.both", 0.7)), latency_ms=1.0)
    n = 100_000
    start = time.perf_counter()
    for _ in range(n):
        writer.record(event)
    record_us = (time.perf_counter() - start) / n * 1e6
    writer.close()

    # 2. a whole turn with and without the writer
    accounts = LocalAccountClient()
    plain = make_engine(accounts, data_dir=tmp)
    with_events = make_engine(accounts, data_dir=tmp)
    sql_writer = EventWriter(SqlEventStore(connect(f"sqlite:///{tmp}/bot.db")), InsightsConfig())
    with_events.insights = sql_writer
    per_turn(plain, 200), per_turn(with_events, 200)   # warm up
    rounds = []
    for _ in range(3):   # interleaved, so load from other processes hits both alike
        a = statistics.median(per_turn(plain, args.turns // 3))
        b = statistics.median(per_turn(with_events, args.turns // 3))
        rounds.append((a, b))
    sql_writer.flush(60)

    # 3. background write rate into SQLite
    bulk = EventWriter(SqlEventStore(connect(f"sqlite:///{tmp}/bulk.db")), InsightsConfig(queue_size=10 ** 6))
    m = 20_000
    start = time.perf_counter()
    for _ in range(m):
        bulk.record(event)
    bulk.flush(120)
    rate = m / (time.perf_counter() - start)
    bulk.close()

    print(f"record() on the request path:        {record_us:.2f} µs per event")
    for i, (a, b) in enumerate(rounds, 1):
        print(f"turn median, round {i}: without events {a:.0f} µs, with events {b:.0f} µs, difference {b - a:+.0f} µs")
    diff = statistics.median(b - a for a, b in rounds)
    print(f"event cost per turn (median of rounds): {diff:+.0f} µs")
    print(f"background writer into SQLite:       {rate:,.0f} events/s "
          f"(dropped {sql_writer.stats.dropped}, failed {sql_writer.stats.failed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
