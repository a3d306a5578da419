"""Choose the matcher's thresholds from a reliability curve on held-out data, not by hand.

    python benchmarks/calibrate.py [--precision 0.975] [--rejection 0.92] [--clarify-useful 0.5] [--long-only] [FILE.yaml ...]

Default data: the private held-out sets benchmarks/heldout.yaml, heldout2.yaml and heldout4.yaml,
pooled (never heldout3.yaml or heldout5.yaml, which are scored only before and after a change, nor the
public dev set).
Each question is matched once per threshold setting with the real decision rule (margin
included). Printed:
1. the answer curve: for each answer_threshold, precision of the answers given and coverage
   (share of all questions answered directly) and out-of-scope rejection (share of the
   out-of-scope questions neither answered nor asked about, in the worst of the sets); walking
   down from the top, the line is lowered while precision reaches --precision, rejection reaches
   --rejection and each step's added answers are right at least --marginal of the time; the chosen
   answer_threshold is the last step that added answers (a step that adds none is not taken: a
   flat stretch of the curve is no evidence for a lower line, only risk on unseen questions);
2. (after the margin, 3.) the clarify curve below it: lowering clarify_threshold a step at a time, the questions
   it adds to the clarified ones and how many of those are offered their right topic; the
   band grows while each step's additions are offered their right topic at least
   --clarify-useful of the time (an in-scope question close to the line is asked about
   rather than rejected; an out-of-scope one asked about instead of rejected counts
   against), and the chosen clarify_threshold is the last step that added such questions;
3. the margin curve at that threshold: the smallest clarify_margin (two intents' top scores
   closer than this are asked about; a not-covered question this close makes the message out of
   scope) whose answers keep the precision and whose out-of-scope rejection is that of the widest
   margin tried (narrowing the near-miss rule may not let near misses through), narrowing only as
   far as the last step that added answers right at least --marginal of the time;
4. the long-message answer curve: messages of ``long_tokens`` words or more score lower for the same
   certainty (their story adds words no entry explains); their own line walks down from the answer line
   as it did, never below the precision it started at, to the last step that added right answers
   (``--long-only`` keeps config.yaml's other lines and walks only this curve);
5. the config lines to set. Nothing is written: copy them into config.yaml.

    python benchmarks/calibrate.py --follow-up [FILE.yaml ...]   (default: benchmarks/followups.yaml)

walks the follow-up curve instead: each item is a first question, the follow-up typed after its answer and the
follow-up's intent in that context (``{first, then, intent}``); the first is matched, and where it is answered the
follow-up is read after that answer (``Matcher.follow_up``). For each follow_coverage from 1.0 down: precision of
the follow-ups answered, in-scope top-1, out-of-scope rejection, and the answers a step adds / of those, right; it
goes down while each step's added answers are right at least --marginal of the time, to the last step that added
right answers. The first line is the follow-ups matched alone (no context).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import settings  # noqa: E402
from faq.loader import load_faq  # noqa: E402
from intents.calibration import operating_point, reliability  # noqa: E402
from intents.cli import load_items, result_json  # noqa: E402
from intents.matcher import Matcher, MatcherConfig  # noqa: E402

HERE = Path(__file__).resolve().parent
RESERVED = {"followups2.yaml", "heldout3.yaml", "heldout5.yaml", "heldout6.yaml", "heldout12.yaml", "heldout13.yaml",
            "heldout14.yaml", "heldout15.yaml", "heldout17.yaml", "heldout18.yaml", "heldout20.yaml",
            "heldout21.yaml", "heldout23.yaml", "heldout25.yaml", "heldout26.yaml", "heldout30.yaml",
            "heldout34.yaml", "heldout37.yaml", "heldout38.yaml", "heldout40.yaml", "heldout43.yaml", "heldout46.yaml", "heldout49.yaml", "heldout50.yaml",
            "heldout51.yaml", "heldout52.yaml", "heldout53.yaml", "heldout57.yaml", "heldout66.yaml", "heldout69.yaml",
            "heldout70.yaml"}  # never tuned on
DEFAULT_SETS = [HERE / "heldout.yaml", HERE / "heldout2.yaml", HERE / "heldout4.yaml"]
FOLLOW_UP_SETS = [HERE / "followups.yaml"]


def grid(low: float, high: float, step: float = 0.01) -> list[float]:
    n = int(round((high - low) / step))
    return [round(low + k * step, 4) for k in range(n + 1)]


def clarified(rows: list[tuple[str, dict]]) -> set[int]:
    return {k for k, (_, got) in enumerate(rows) if got["decision"] == "clarify"}


def rejection(rows: list[tuple[str, dict]], sets: list[int]) -> float:
    """Out-of-scope rejection (share of the out-of-scope questions neither answered nor asked
    about) of the worst of the data sets: each set must reach the target on its own."""
    worst = 1.0
    for k in set(sets):
        oos = [got for (want, got), s in zip(rows, sets) if s == k and want == "out_of_scope"]
        if oos:
            worst = min(worst, sum(got["decision"] == "out_of_scope" for got in oos) / len(oos))
    return worst


def follow_up_curve(matcher: Matcher, base: MatcherConfig, files: list[str], marginal: float) -> int:
    """The follow-up curve (see the module's docstring); prints it and the config line."""
    items = [i for f in files for i in load_items(f) if "first" in i]   # (a follow-up's text is its "then")
    asked = [(matcher.match(i["first"]), i["text"], i["intent"]) for i in items]
    pairs = [(first.entry, then, want) for first, then, want in asked if first.decision == "answer" and first.entry]
    print(f"{len(items)} follow-ups from {', '.join(Path(f).name for f in files)}; {len(pairs)} after an answered first question")

    def figures(read) -> tuple[float, float, float, set[int], list]:
        got = [read(after, then) for after, then, _ in pairs]
        answered = {k for k, g in enumerate(got) if g.decision == "answer"}
        right = sum(got[k].intent == pairs[k][2] for k in answered)
        ins = [k for k, p in enumerate(pairs) if p[2] != "out_of_scope"]
        oos = [k for k, p in enumerate(pairs) if p[2] == "out_of_scope"]
        top1 = sum(got[k].intent == pairs[k][2] and k in answered for k in ins) / max(len(ins), 1)
        rej = sum(got[k].decision == "out_of_scope" for k in oos) / max(len(oos), 1)
        return right / max(len(answered), 1), top1, rej, answered, got

    p, top1, rej, before, _ = figures(lambda after, then: matcher.match(then))
    print("follow_coverage → precision of answers / in-scope top-1 / out-of-scope rejection; answers added / of those, right")
    print(f"  alone {p * 100:5.1f}% / {top1 * 100:5.1f}% / {rej * 100:5.1f}%")
    chosen, stopped = None, False
    for t in reversed(grid(0.0, 1.0, 0.05)):
        matcher.config = base.model_copy(update={"follow_coverage": t})
        p, top1, rej, now, got = figures(lambda after, then: matcher.follow_up(then, after))
        added = sorted(now - before)
        right = sum(got[k].intent == pairs[k][2] for k in added)
        print(f"  {t:.2f}  {p * 100:5.1f}% / {top1 * 100:5.1f}% / {rej * 100:5.1f}%   +{len(added)} / {right}")
        before = now
        if stopped or (added and right / len(added) < marginal):
            stopped = True
            continue
        if chosen is None or added:   # down only to the last step that added right answers
            chosen = t
    matcher.config = base
    print(f"config.yaml matcher:\n  follow_coverage: {'none chosen' if chosen is None else f'{chosen:.2f}'}")
    return 0 if chosen is not None else 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*")
    ap.add_argument("--follow-up", action="store_true", help="walk the follow-up curve on {first, then, intent} items")
    ap.add_argument("--precision", type=float, default=0.975, help="least precision of direct answers")
    ap.add_argument("--rejection", type=float, default=0.92,
                    help="least share of out-of-scope questions rejected in each set (the issue's target)")
    ap.add_argument("--marginal", type=float, default=0.5,
                    help="least share of right answers among those a step down the answer curve adds")
    ap.add_argument("--long-only", action="store_true",
                    help="keep config.yaml's answer_threshold, clarify_threshold and clarify_margin; walk only the "
                         "long messages' answer curve")
    ap.add_argument("--clarify-useful", type=float, default=0.5,
                    help="least share of clarifications that offer the right topic")
    args = ap.parse_args()
    args.files = args.files or [str(p) for p in (FOLLOW_UP_SETS if args.follow_up else DEFAULT_SETS)]
    reserved = sorted({Path(f).name for f in args.files} & RESERVED)
    if reserved:
        print(f"calibrate: {', '.join(reserved)} is scored before and after only; never tune on it", file=sys.stderr)
        return 2

    cfg = settings.load()
    base = MatcherConfig.of(cfg)
    matcher = Matcher(load_faq(cfg), base)
    if args.follow_up:
        return follow_up_curve(matcher, base, args.files, args.marginal)
    items, sets = [], []
    for k, f in enumerate(args.files):
        got = load_items(f)
        items += got
        sets += [k] * len(got)
    texts, wants = [i["text"] for i in items], [i["intent"] for i in items]

    margin = base.clarify_margin

    long_line = None   # the long messages' own answer line: chosen last (4.), the answer line until then

    def decide(answer: float, clarify: float) -> list[tuple[str, dict]]:
        matcher.config = base.model_copy(update={"answer_threshold": answer, "clarify_threshold": clarify,
                                                 "clarify_margin": margin, "long_answer_threshold": long_line})
        return [(w, result_json(matcher.match(t), None)) for w, t in zip(wants, texts)]

    def long_curve(answer: float, clarify: float) -> float | None:
        """4. The long messages' own answer line, walked down from ``answer`` as the answer line was."""
        nonlocal long_line
        print(f"long-message answer curve (messages of {base.long_tokens}+ words; their story adds words no entry "
              "explains): long_answer_threshold → precision / coverage / out-of-scope rejection; answers added / of those, right")
        chosen_long, before, start = None, None, None
        for t in reversed(grid(0.40, answer)):
            long_line = t
            rows = decide(answer, clarify)
            p, rej = operating_point(rows), rejection(rows, sets)
            now = {k for k, (_, got) in enumerate(rows) if got["decision"] == "answer"}
            added = sorted(now - before) if before is not None else []
            right = sum(rows[k][1]["intent"] == rows[k][0] for k in added)
            before = now
            print(f"  {t:.2f}  {p.precision * 100:5.1f}% / {p.coverage * 100:5.1f}% / {rej * 100:5.1f}%   +{len(added)} / {right}")
            floor = p.precision if start is None else min(args.precision, start)   # never below where it started
            start = p.precision if start is None else start
            if p.precision < floor or rej < args.rejection or (added and right / len(added) < args.marginal):
                break
            if chosen_long is None or added:   # as the answer line: down only to the last step that added right answers
                chosen_long = t
        long_line = None
        return None if chosen_long is None or chosen_long >= answer else chosen_long

    print(f"{len(items)} questions from {', '.join(Path(f).name for f in args.files)}")
    print("reliability of the top guess by score band:")
    for b in reliability(decide(base.answer_threshold, base.clarify_threshold)):
        if b.count:
            print(f"  {b.label}  share {b.share * 100:5.1f}%  precision {b.precision * 100:5.1f}%  (n={b.count})")

    if args.long_only:
        line = long_curve(base.answer_threshold, base.clarify_threshold)
        print(f"config.yaml matcher:\n  long_answer_threshold: {'null' if line is None else f'{line:.2f}'}")
        return 0

    print("answer curve (no clarify band), from the top down: threshold → precision / coverage / out-of-scope "
          "rejection; answers added at this step / of those, right")
    chosen, before, stopped = None, None, False
    for t in reversed(grid(0.40, 0.75)):
        rows = decide(t, t)
        p, rej = operating_point(rows), rejection(rows, sets)
        now = {k for k, (_, got) in enumerate(rows) if got["decision"] == "answer"}
        added = sorted(now - before) if before is not None else []
        right = sum(rows[k][1]["intent"] == rows[k][0] for k in added)
        print(f"  {t:.2f}  {p.precision * 100:5.1f}% / {p.coverage * 100:5.1f}% / {rej * 100:5.1f}%   +{len(added)} / {right}")
        before = now
        if stopped:
            continue
        if p.precision < args.precision or rej < args.rejection or \
                (added and right / len(added) < args.marginal):
            stopped = chosen is not None
            continue
        if chosen is None or added:   # the line goes down only to the last step that added right answers
            chosen = (t, p)
    if chosen is not None:
        print(f"  chosen: {chosen[0]:.2f}")
    if chosen is None:
        print(f"no threshold reaches precision {args.precision:.1%} with rejection {args.rejection:.0%}",
              file=sys.stderr)
        return 1
    answer, _ = chosen

    print(f"margin curve at {answer:.2f}: clarify_margin (top two intents closer than this: clarify; "
          "a not-covered question this close: out of scope) → precision / coverage / out-of-scope rejection; "
          "answers added / of those, right")
    chosen_margin, widest, before = None, None, None
    for m in reversed(grid(0.0, 0.08)):
        margin = m
        rows = decide(answer, answer)
        p, rej = operating_point(rows), rejection(rows, sets)
        widest = rej if widest is None else widest
        now = {k for k, (_, got) in enumerate(rows) if got["decision"] == "answer"}
        added = sorted(now - before) if before is not None else []
        right = sum(rows[k][1]["intent"] == rows[k][0] for k in added)
        before = now
        print(f"  {m:.2f}  {p.precision * 100:5.1f}% / {p.coverage * 100:5.1f}% / {rej * 100:5.1f}%   +{len(added)} / {right}")
        # the margin is also the near-miss rule's width: narrowing it may not cost rejection, and
        # it narrows only as far as the last step that added right answers (as the answer line)
        if p.precision < args.precision or rej < max(args.rejection, widest) or \
                (added and right / len(added) < args.marginal):
            break
        if chosen_margin is None or added:
            chosen_margin = m
    margin = chosen_margin

    print(f"clarify curve below {answer:.2f}: threshold → clarified (cumulative) / offering the right topic; "
          "added at this step / of those, offering the right topic")
    clarify, before = answer, clarified(decide(answer, answer))
    for c in reversed(grid(0.30, answer - 0.01)):
        rows = decide(answer, c)
        now = clarified(rows)
        added = [rows[k] for k in sorted(now - before)]
        useful = sum(any(x["intent"] == want for x in got["candidates"]) for want, got in added)
        p = operating_point(rows)
        print(f"  {c:.2f}  {p.clarify_share * 100:5.1f}% / {p.clarify_useful * 100:5.1f}%   +{len(added)} / {useful}")
        if added and (useful / len(added) < args.clarify_useful or rejection(rows, sets) < args.rejection):
            break
        if added:
            clarify = c
        before = now
    long_line = long_curve(answer, clarify)
    final = operating_point(decide(answer, clarify))
    long_text = "off" if long_line is None else f"{long_line:.2f}"
    print(f"chosen: answer_threshold {answer:.2f}, clarify_threshold {clarify:.2f}, clarify_margin {margin:.2f}, "
          f"long_answer_threshold {long_text} → answers {final.coverage:.1%} "
          f"of questions at {final.precision:.1%} precision; clarifies {final.clarify_share:.1%} "
          f"({final.clarify_useful:.1%} offer the right topic)")
    print(f"config.yaml matcher:\n  answer_threshold: {answer:.2f}\n  clarify_threshold: {clarify:.2f}\n"
          f"  clarify_margin: {margin:.2f}\n  long_answer_threshold: {'null' if long_line is None else f'{long_line:.2f}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
