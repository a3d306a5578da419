"""Matcher speed: per-question latency on the real FAQ and on a synthetic 10,000-entry
FAQ, and the cold start of `python bot.py match "x"`.

    python benchmarks/bench_matcher.py [--questions FILE.yaml] [--synthetic 10000]

Latency is measured in-process with time.perf_counter over every question of the
file (default: the held-out set beside this script), repeated; cold start is the
wall time of fresh processes. Prints a small table; nothing is asserted.
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import settings  # noqa: E402
from faq.loader import load_faq  # noqa: E402
from faq.model import FAQ, Entry, Topic  # noqa: E402
from intents.cli import load_items  # noqa: E402
from intents.matcher import Matcher, MatcherConfig  # noqa: E402


def latencies(matcher: Matcher, texts: list[str], rounds: int) -> list[float]:
    """Milliseconds per question of the matching work itself: Matcher.match keeps the results of
    texts it has seen, so repeated rounds through it would time cache hits; ``_match`` is timed."""
    for t in texts[:20]:
        matcher._match(t)  # warm jieba's and the normaliser's own caches
    out = []
    for _ in range(rounds):
        for t in texts:
            start = time.perf_counter()
            matcher._match(t)
            out.append((time.perf_counter() - start) * 1000)
    return sorted(out)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p * len(values)))]


def synthetic_faq(base: FAQ, n: int, seed: int = 7) -> FAQ:
    """The real FAQ plus n synthetic entries built from recombined real vocabulary."""
    rng = random.Random(seed)
    words = sorted({w for e in base.entries.values() for q in (e.question, *e.alternates)
                    for w in q.replace("？", " ").replace("，", " ").split() if w})
    chars = [c for w in words for c in w]
    topics = list(base.topics)
    per_topic = 100
    for t in range(n // per_topic):
        entries = []
        for k in range(per_topic):
            def q() -> str:
                return "".join(rng.choice(chars) for _ in range(rng.randint(6, 14)))
            entries.append(Entry(id=f"synth{t}.e{k}", intent=f"synth{t}", question=q(),
                                 alternates=tuple(q() for _ in range(3)), answer="合成条目"))
        topics.append(Topic(intent=f"synth{t}", title="synthetic", seed_topic=None, entries=tuple(entries)))
    return dataclasses.replace(base, topics=tuple(topics))


def cold_start(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "bot.py"), "match", "x"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return sorted(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", default=str(Path(__file__).with_name("heldout.yaml")))
    ap.add_argument("--synthetic", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--cold-runs", type=int, default=5)
    args = ap.parse_args()

    cfg = settings.load()
    config = MatcherConfig.of(cfg)
    faq = load_faq(cfg)
    texts = [i["text"] for i in load_items(args.questions)]

    start = time.perf_counter()
    real = Matcher(faq, config)
    build_real = time.perf_counter() - start
    lat = latencies(real, texts, args.rounds)
    print(f"real FAQ ({len(faq.entries)} entries, built in {build_real:.2f} s): "
          f"p50 {pct(lat, .5):.3f} ms  p99 {pct(lat, .99):.3f} ms  mean {statistics.fmean(lat):.3f} ms  (n={len(lat)})")

    if args.synthetic:
        big = synthetic_faq(faq, args.synthetic)
        start = time.perf_counter()
        synth = Matcher(big, config)
        build = time.perf_counter() - start
        lat = latencies(synth, texts, max(1, args.rounds // 4))
        print(f"synthetic FAQ ({len(big.entries)} entries, built in {build:.1f} s): "
              f"p50 {pct(lat, .5):.3f} ms  p99 {pct(lat, .99):.3f} ms  mean {statistics.fmean(lat):.3f} ms  (n={len(lat)})")

    if args.cold_runs:
        cs = cold_start(args.cold_runs)
        print(f'cold start `python bot.py match "x"`: median {statistics.median(cs):.2f} s  max {cs[-1]:.2f} s  (runs={len(cs)})')
    return 0


if __name__ == "__main__":
    sys.exit(main())
