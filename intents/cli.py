"""`python bot.py match | eval | unanswered`: the matcher's command-line interfaces (``check`` is faq/check.py).

Output formats are relied on by other tools; keep them stable.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import yaml

from . import calibration
from .types import MatchResult


def result_json(result: MatchResult, answer: str | None) -> dict[str, Any]:
    """The stable JSON shape of one match."""
    return {
        "intent": result.intent,
        "entry": result.entry,
        "score": result.score,
        "decision": result.decision,
        "answer": answer,
        "candidates": [{"entry": c.entry, "intent": c.intent, "score": c.score} for c in result.candidates],
        "not_covered": result.not_covered,
        "outrun": result.outrun,
    }


def _build(cfg: Mapping[str, Any]):
    from .matcher import Matcher

    matcher = Matcher.from_settings(cfg)
    entries = matcher.faq.entries

    def run(text: Any, first: str | None = None) -> dict[str, Any]:
        """The match of ``text``; after ``first``, as the chat reads it after that question's answer, if any."""
        answered = matcher.match(first) if first is not None else None
        r = matcher.follow_up(text, answered.entry) if answered and answered.decision == "answer" and answered.entry \
            else matcher.match(text)
        answer = entries[r.entry].answer if r.decision == "answer" and r.entry else None
        return result_json(r, answer)

    return run


def match(cfg: Mapping[str, Any], args: argparse.Namespace) -> int:
    run = _build(cfg)
    out = sys.stdout
    if not args.jsonl:
        if args.text is None:
            print('usage: bot.py match "问题"  |  bot.py match --jsonl < lines.jsonl', file=sys.stderr)
            return 2
        out.write(json.dumps(run(args.text), ensure_ascii=False) + "\n")
        return 0
    status = 0
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            problem = f"not JSON ({e.msg} at column {e.colno})" if isinstance(e, json.JSONDecodeError) else "not JSON"
        else:
            text = obj.get("text") if isinstance(obj, dict) else None
            problem = "" if isinstance(text, str) else (
                'no "text" field: each line must be an object like {"text": "忘记密码怎么办"}'
                if not isinstance(obj, dict) or "text" not in obj else '"text" must be a string')
        if problem:
            out.write(json.dumps({"error": f"line {n}: {problem}"}, ensure_ascii=False) + "\n")
            status = 1
            continue
        out.write(json.dumps(run(text), ensure_ascii=False) + "\n")
    out.flush()
    return status


# ---- eval --------------------------------------------------------------------

def evaluate(cfg: Mapping[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy, rejection, per-intent precision/recall, confusions, expect_contains, latency."""
    run = _build(cfg)
    rows = []
    for item in items:
        start = time.perf_counter()
        got = run(item["text"], item.get("first"))
        rows.append((item, got, (time.perf_counter() - start) * 1000))

    in_scope = [(i, g) for i, g, _ in rows if i["intent"] != "out_of_scope"]
    oos = [(i, g) for i, g, _ in rows if i["intent"] == "out_of_scope"]
    with_expect = [(i, g) for i, g, _ in rows if i.get("expect_contains")]
    tp: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    actual: Counter[str] = Counter()
    confusions: Counter[tuple[str, str]] = Counter()
    errors = []
    for i, g, _ in rows:
        want, have = i["intent"], g["intent"]
        actual[want] += 1
        predicted[have] += 1
        if want == have:
            tp[want] += 1
        else:
            confusions[(want, have)] += 1
            errors.append({"text": i["text"], "expected": want, "got": have, "decision": g["decision"],
                           "entry": g["entry"], "score": g["score"]})
    per_intent = {
        k: {"precision": round(tp[k] / predicted[k], 4) if predicted[k] else 0.0,
            "recall": round(tp[k] / actual[k], 4) if actual[k] else 0.0,
            "support": actual[k]}
        for k in sorted(set(actual) | set(predicted))
    }
    latencies = sorted(ms for *_, ms in rows)

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 3) if latencies else 0.0

    def expected(i: dict) -> list[str]:
        want = i["expect_contains"]
        return [str(want)] if isinstance(want, (str, int, float)) else [str(s) for s in want]

    def contains(i: dict, g: dict) -> bool:
        answer = g["answer"] or ""
        return all(s in answer for s in expected(i))

    labelled = [(i["intent"], g) for i, g, _ in rows]
    bands = calibration.reliability(labelled)
    point = calibration.operating_point(labelled)
    missing = [{"text": i["text"], "expect_contains": i["expect_contains"], "entry": g["entry"]}
               for i, g in with_expect if not contains(i, g)]
    return {
        "items": len(rows),
        "in_scope_top1": round(sum(g["intent"] == i["intent"] for i, g in in_scope) / len(in_scope), 4) if in_scope else None,
        "out_of_scope_rejection": round(sum(g["decision"] == "out_of_scope" for _, g in oos) / len(oos), 4) if oos else None,
        "expect_contains": round(1 - len(missing) / len(with_expect), 4) if with_expect else None,
        "latency_ms": {"p50": pct(0.50), "p99": pct(0.99)},
        "per_intent": per_intent,
        "confused_pairs": [{"expected": a, "got": b, "count": n} for (a, b), n in confusions.most_common(10)],
        "errors": errors,
        "expect_missing": missing,
        "reliability": [{"band": b.label, "count": b.count, "share": round(b.share, 4), "precision": round(b.precision, 4)}
                        for b in bands],
        "operating_point": {"precision": round(point.precision, 4), "coverage": round(point.coverage, 4),
                            "clarify_share": round(point.clarify_share, 4),
                            "clarify_useful": round(point.clarify_useful, 4)},
    }


def load_items(path: str | Path) -> list[dict[str, Any]]:
    """The items of an eval set: ``{text, intent, expect_contains?}``, or a follow-up ``{first, then, intent}`` (the
    question typed after the answer to ``first``: read as ``text`` after ``first``)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, list):
        data = [{**x, "text": x["then"]} if isinstance(x, dict) and "then" in x and "first" in x else x for x in data]
    if not isinstance(data, list) or not all(isinstance(x, dict) and "text" in x and "intent" in x for x in data):
        raise ValueError(f"{path}: expected a list of {{text, intent, expect_contains?}} or {{first, then, intent}}")
    return data


def eval(cfg: Mapping[str, Any], args: argparse.Namespace) -> int:  # noqa: A001 - the subcommand's name
    try:
        items = load_items(args.file)
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"eval: {e}", file=sys.stderr)
        return 2
    report = evaluate(cfg, items)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    pct = lambda v: "n/a" if v is None else f"{v * 100:.1f}%"  # noqa: E731
    print(f"items: {report['items']}")
    print("per intent (precision / recall / support):")
    for k, v in report["per_intent"].items():
        print(f"  {k:22s} {v['precision']:.2f} / {v['recall']:.2f} / {v['support']}")
    if report["confused_pairs"]:
        print("most confused (expected → got):")
        for c in report["confused_pairs"]:
            print(f"  {c['expected']} → {c['got']}: {c['count']}")
    print("reliability (top score → share of questions, precision of the top guess):")
    for r in report["reliability"]:
        if r["count"]:
            print(f"  {r['band']}  {r['share'] * 100:5.1f}%  {r['precision'] * 100:5.1f}%  (n={r['count']})")
    op = report["operating_point"]
    print(f"operating point:         answers {pct(op['coverage'])} of questions at {pct(op['precision'])} precision; "
          f"clarifies {pct(op['clarify_share'])} ({pct(op['clarify_useful'])} offer the right topic)")
    print(f"in-scope top-1 accuracy: {pct(report['in_scope_top1'])}")
    print(f"out-of-scope rejection:  {pct(report['out_of_scope_rejection'])}")
    print(f"expect_contains:         {pct(report['expect_contains'])}")
    print(f"latency p50/p99:         {report['latency_ms']['p50']} ms / {report['latency_ms']['p99']} ms")
    return 0


# ---- unanswered -----------------------------------------------------------------------

_SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str) -> float:
    """``7d``, ``12h``, ``30m``, ``2w`` → seconds."""
    m = _SINCE.match(value.strip().lower())
    if not m:
        raise ValueError(f"--since {value!r}: use a number and a unit, e.g. 7d, 12h, 30m, 2w")
    return float(m.group(1)) * _UNITS[m.group(2)]


def unanswered(cfg: Mapping[str, Any], args: argparse.Namespace) -> int:
    """Clusters of questions the bot could not answer, from the stored turn events."""
    from handlers.insights import InsightsStoreError, open_store

    from .matcher import Matcher
    from .unanswered import cluster, report, unanswered_questions

    try:
        seconds = parse_since(args.since)
    except ValueError as e:
        print(f"unanswered: {e}", file=sys.stderr)
        return 2
    since = time.time() - seconds
    try:
        events = open_store(cfg).query(since)
    except InsightsStoreError as e:
        print(f"unanswered: cannot read turn events: {e}", file=sys.stderr)
        return 1
    matcher = Matcher.from_settings(cfg)
    questions = unanswered_questions(events)
    clusters = report(cluster(questions, matcher), matcher.faq, limit=args.limit)
    if args.json:
        print(json.dumps({"since": round(since, 3), "turns": len(events), "questions": len(questions),
                          "clusters": clusters}, ensure_ascii=False, indent=2))
        return 0
    print(f"未能回答的问题（{args.since} 内）：{len(events)} 轮对话，{len(questions)} 个问题，"
          f"{len(clusters)} 组（按数量排列）")
    for c in clusters:
        kinds = ", ".join(f"{k} {n}" for k, n in c["kinds"].items())
        near = (f"{c['nearest_entry']} ({c['nearest_score']:.2f}, {c['nearest_source']})"
                if c["nearest_entry"] else "—")
        print(f"\n#{c['rank']}  {c['size']} 个问题（{kinds}） — 最接近的条目：{near}")
        for ex in c["examples"]:
            print(f"    {ex['count']}× {ex['text']}")
        if c["after"]:
            print("    紧接在这些回答之后问的：" + "，".join(f"{a['entry']} {a['count']}×" for a in c["after"]))
        if c["add_alternates_yaml"]:
            print(f"  作为 {c['nearest_entry']} 的其他问法（add as alternates）：")
            print("\n".join("    " + line for line in c["add_alternates_yaml"].splitlines()))
        if c["not_covered_yaml"]:
            print("  标记为不在解答范围（mark as not covered）：")
            print("\n".join("    " + line for line in c["not_covered_yaml"].splitlines()))
    return 0
