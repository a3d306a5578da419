"""What users asked that the bot could not answer, grouped into clusters of similar questions.

The questions come from the turn events (``handlers.insights``): out-of-scope and clarify turns,
the question behind each 没帮助 vote, and the message before each hand-off. Similar questions
are grouped by the cosine similarity of their TF-IDF vectors over the matcher's own tokens plus
character bigrams of the normalised text (so typos and word splits still meet); each question
joins the closest cluster above ``threshold`` (most frequent questions first), else starts one.

A cluster is a candidate FAQ entry or alternate. For each: its size, the kinds of turn, example
texts, the nearest FAQ entry by the matcher, and two snippets for maintainers to paste (the
console and the CLI never write YAML): "add as alternates of entry X" for X's topic file, and
"mark as not covered" for ``faq/data/not_covered.yaml``.
"""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from faq.model import FAQ

from .types import SMALLTALK

KINDS = ("out_of_scope", "clarify", "not_helpful", "before_handoff")
_UNUSABLE = re.compile(r"\*|（个人信息，已隐藏）|［")   # masked or hidden text is not a question to paste
ALTERNATE_INDENT = " " * 6    # `      - ` under an entry's `alternates:` (faq/data/topics/*.yaml)
GROUP_INDENT = " " * 2        # `  - id:` under `groups:` (faq/data/not_covered.yaml)


@dataclass(frozen=True)
class Question:
    text: str
    kind: str            # one of KINDS
    ts: float
    entry: str | None = None   # for not_helpful: the entry whose answer did not help
    after: str | None = None   # the FAQ entry answered just before (a follow-up such as 那要多少钱 is about it)


def unanswered_questions(events: Iterable[Any]) -> list[Question]:
    """The questions behind unanswered turns, from turn events (oldest first). A question counts once,
    by what finally happened to it: a hand-off or a 没帮助 vote outranks out-of-scope/clarify."""
    by_session: dict[str, list[Any]] = defaultdict(list)
    for e in events:
        by_session[e.session].append(e)
    found: dict[tuple[str, float], Question] = {}
    for session, turns in by_session.items():
        turns.sort(key=lambda e: e.ts)
        asked = None   # the last turn where the user typed a question
        answered = None   # the FAQ entry answered last, as the engine reads a follow-up after it
        for e in turns:
            if e.decision in ("out_of_scope", "clarify") and e.score is not None and e.text:
                found.setdefault((session, e.ts), Question(e.text, e.decision, e.ts, after=answered))
            if e.decision == "feedback" and e.feedback == "down" and asked is not None and asked.entry == e.entry:
                found[(session, asked.ts)] = Question(asked.text, "not_helpful", asked.ts, e.entry)
            if e.decision == "handoff" and asked is not None:
                found[(session, asked.ts)] = Question(asked.text, "before_handoff", asked.ts, asked.entry)
                asked = None
            if e.decision == "flow" and e.flow_event == "started":
                asked = None   # the user took the answer's offer: a later hand-off is about the flow (Overview)
            if e.score is not None and e.decision in ("answer", "clarify", "out_of_scope") and e.text:
                asked = e
            if e.decision == "answer" and e.entry and e.intent not in SMALLTALK:
                answered = e.entry
            elif e.decision in ("clarify", "out_of_scope") or e.flow_event == "started":
                answered = None
    return sorted(found.values(), key=lambda q: q.ts)


# ---- clustering -----------------------------------------------------------------------------

@dataclass
class Cluster:
    questions: list[Question] = field(default_factory=list)
    texts: Counter = field(default_factory=Counter)
    vector: dict[str, float] = field(default_factory=dict)    # sum of member vectors
    nearest_entry: str | None = None
    nearest_score: float = 0.0
    nearest_source: str = ""
    not_covered_group: str | None = None

    @property
    def size(self) -> int:
        return len(self.questions)

    @property
    def kinds(self) -> dict[str, int]:
        c = Counter(q.kind for q in self.questions)
        return {k: c[k] for k in KINDS if c[k]}

    def examples(self, n: int = 5) -> list[tuple[str, int]]:
        return self.texts.most_common(n)

    def after(self, n: int = 3) -> list[tuple[str, int]]:
        """The answers its questions most often followed (follow-ups: 那要多少钱 after the answer on 操作过于频繁)."""
        return Counter(q.after for q in self.questions if q.after).most_common(n)

    def pasteable(self, faq: FAQ, n: int = 8) -> list[str]:
        """Example texts fit to paste as questions: not masked, not already in the FAQ."""
        known = {_key(q) for e in faq.entries.values() for q in (e.question, *e.alternates)}
        known |= {_key(q) for g in faq.not_covered for q in g.questions}
        out, seen = [], set()
        for text, _ in self.texts.most_common():
            k = _key(text)
            if not k or k in known or k in seen or _UNUSABLE.search(text) or len(text) > 60:
                continue
            seen.add(k)
            out.append(" ".join(text.split()))
            if len(out) == n:
                break
        return out


def _key(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _features(matcher: Any, text: str) -> Counter:
    """The matcher's tokens, and the character bigrams inside each token (typos and word splits
    still share them; bigrams across word boundaries would only add noise)."""
    feats: Counter = Counter()
    for t in matcher.normalise(text).tokens:
        feats[f"w:{t}"] += 1
        feats.update(f"c:{t[i:i + 2]}" for i in range(len(t) - 1))
    return feats


def _cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    dot = sum(v * b.get(k, 0.0) for k, v in a.items())
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return dot / (na * nb) if na and nb else 0.0


def cluster(questions: Sequence[Question], matcher: Any, threshold: float = 0.35) -> list[Cluster]:
    """Group similar questions, largest cluster first, each with its nearest entry."""
    texts = Counter(q.text for q in questions)
    feats = {t: _features(matcher, t) for t in texts}
    df: Counter = Counter(f for fs in feats.values() for f in fs)
    n_docs = len(feats) or 1
    vectors: dict[str, dict[str, float]] = {}
    for t, fs in feats.items():
        v = {f: (1 + math.log(c)) * (1 + math.log((1 + n_docs) / (1 + df[f]))) for f, c in fs.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        vectors[t] = {f: x / norm for f, x in v.items()}

    clusters: list[Cluster] = []
    home: dict[str, Cluster] = {}
    for text, _ in sorted(texts.items(), key=lambda kv: (-kv[1], kv[0])):
        v = vectors[text]
        best, best_sim = None, threshold
        for c in clusters:
            sim = _cosine(v, c.vector)
            if sim >= best_sim:
                best, best_sim = c, sim
        if best is None:
            best = Cluster()
            clusters.append(best)
        for f, x in v.items():
            best.vector[f] = best.vector.get(f, 0.0) + x
        home[text] = best
    for q in questions:
        c = home[q.text]
        c.questions.append(q)
        c.texts[q.text] += 1

    faq: FAQ = matcher.faq
    for c in clusters:
        scores: dict[str, float] = defaultdict(float)
        groups: Counter = Counter()
        for text, count in c.texts.most_common(20):
            r = matcher.match(text)
            for cand in r.candidates[:3]:
                scores[cand.entry] += cand.score * count
            if r.not_covered:
                groups[r.not_covered] += count
        weight = sum(count for _, count in c.texts.most_common(20)) or 1
        if scores:
            entry, total = max(scores.items(), key=lambda kv: kv[1])
            if entry in faq.entries:
                c.nearest_entry, c.nearest_score = entry, round(total / weight, 3)
                c.nearest_source = faq.entries[entry].source
        if groups:
            c.not_covered_group = groups.most_common(1)[0][0]
    clusters.sort(key=lambda c: (-c.size, -max(c.texts.values())))
    return clusters


# ---- snippets for maintainers ------------------------------------------------------------------

def alternates_snippet(c: Cluster, faq: FAQ, entry: str | None = None) -> str | None:
    """YAML lines to append under ``alternates:`` of ``entry`` (default: the nearest one)."""
    entry = entry or c.nearest_entry
    texts = c.pasteable(faq)
    if not entry or entry not in faq.entries or not texts:
        return None
    e = faq.entries[entry]
    file, _, line = e.source.rpartition(":")
    head = f"# {file}, entry {entry} (line {line}): append under `alternates:`"
    return "\n".join([head, *(f"{ALTERNATE_INDENT}- {_yaml_scalar(t)}" for t in texts)])


def not_covered_snippet(c: Cluster, faq: FAQ, number: int = 1) -> str | None:
    """YAML for ``faq/data/not_covered.yaml``: questions for the nearest group, or a new group to fill in."""
    texts = c.pasteable(faq)
    if not texts:
        return None
    groups = faq.not_covered_groups
    g = groups.get(c.not_covered_group or "")
    if g is not None:
        file, _, line = g.source.rpartition(":")
        where = "append under `questions:`" if g.questions else "append to the group (it has phrases only)"
        head = f"# {file or 'faq/data/not_covered.yaml'}, group {g.id} (line {line}): {where}"
        key = [] if g.questions else [f"{GROUP_INDENT}  questions:"]
        return "\n".join([head, *key, *(f"{ALTERNATE_INDENT}- {_yaml_scalar(t)}" for t in texts)])
    gid = f"new_topic_{number}"
    while gid in groups:
        number += 1
        gid = f"new_topic_{number}"
    lines = ["# faq/data/not_covered.yaml: append under `groups:`, then write the service and an honest reply",
             f"{GROUP_INDENT}- id: {gid}",
             f"{GROUP_INDENT}  service: 待填写（这些问题问的是哪项服务）",
             f"{GROUP_INDENT}  reply: |",
             f"{GROUP_INDENT}    待填写：说明这不在学信网账号助手的解答范围内，以及可以转人工客服。",
             f"{GROUP_INDENT}  questions:",
             *(f"{ALTERNATE_INDENT}- {_yaml_scalar(t)}" for t in texts)]
    return "\n".join(lines)


def _yaml_scalar(text: str) -> str:
    """A plain YAML scalar when safe, else a double-quoted one."""
    import json

    import yaml

    try:
        if yaml.safe_load(text) == text and not text.startswith(("-", "?", "!", "&", "*", "#", "|", ">", "%", "@")):
            return text
    except yaml.YAMLError:
        pass
    return json.dumps(text, ensure_ascii=False)


def report(clusters: Sequence[Cluster], faq: FAQ, limit: int | None = None) -> list[dict[str, Any]]:
    """The clusters as JSON-ready dicts (CLI --json, the console)."""
    out = []
    for i, c in enumerate(clusters[:limit] if limit else clusters, 1):
        out.append({
            "rank": i,
            "size": c.size,
            "kinds": c.kinds,
            "examples": [{"text": t, "count": n} for t, n in c.examples()],
            "after": [{"entry": e, "count": n} for e, n in c.after()],
            "nearest_entry": c.nearest_entry,
            "nearest_score": c.nearest_score,
            "nearest_source": c.nearest_source,
            "not_covered_group": c.not_covered_group,
            "add_alternates_yaml": alternates_snippet(c, faq),
            "not_covered_yaml": not_covered_snippet(c, faq, i),
        })
    return out
