"""Near duplicates in the FAQ, found with the matcher itself (``python bot.py check``).

Three kinds, each reported as ``file:line: field: message``:

- an alternate (or canonical) question that scores closer to another entry than to its
  own once it is left out of its own entry — the matcher would send a user who types it
  (or something like it) to the other entry, or ask which one was meant;
- two entries whose questions overlap heavily: most of their questions score about as
  high for the other entry as for their own, so users cannot be told apart between them;
- a contrast word or other site that reads as one listed before it once normalised (认证报告 is
  验证报告): the matcher sees one word, and the second is one more place to forget in an edit.

A question is scored against its own entry by a matcher built without it (otherwise it
would simply match itself). Matchers are built per question position: the matcher for
position ``j`` lacks the ``j``-th question of every entry, and only the own entry's score is
read from it; the competing entries' scores come from the full FAQ. Everything goes
through the matcher's public interface (``Matcher(faq, config)``, ``match``), so the check
follows whatever scoring the matcher uses.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from faq.loader import LEXICON_FILE, positions
from faq.model import FAQ, Entry

from .matcher import Matcher, MatcherConfig
from .normalize import Normaliser
from .types import SMALLTALK

OVERLAP_SHARE = 0.5       # entries whose questions are confusable this often overlap heavily


@dataclass(frozen=True)
class Conflict:
    """One near duplicate: where it is, which field, what competes with it."""

    file: str
    line: int
    field: str
    entry: str
    other: str          # the competing entry's id
    other_at: str       # the competing entry's "file:line"
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


def _without(faq: FAQ, position: int) -> FAQ:
    """The FAQ with the ``position``-th question of every entry left out (entries keep one at least)."""
    topics = []
    for t in faq.topics:
        entries = []
        for e in t.entries:
            questions = [e.question, *e.alternates]
            if position < len(questions) and len(questions) > 1:
                del questions[position]
                e = dataclasses.replace(e, question=questions[0], alternates=tuple(questions[1:]))
            entries.append(e)
        topics.append(dataclasses.replace(t, entries=tuple(entries)))
    return dataclasses.replace(faq, topics=tuple(topics))


def _scores(matcher: Matcher, text: str) -> dict[str, float]:
    return {c.entry: c.score for c in matcher.match(text).candidates}


class _Lines:
    """Line numbers of questions in the YAML files (the loader records only each entry's line)."""

    def __init__(self) -> None:
        self._files: dict[str, list[str]] = {}

    def of(self, entry: Entry, index: int) -> tuple[str, int]:
        file, _, line = entry.source.rpartition(":")
        start = int(line) if line.isdigit() else 1
        if file not in self._files:
            try:
                self._files[file] = Path(file).read_text(encoding="utf-8").splitlines()
            except OSError:
                self._files[file] = []
        text = [entry.question, *entry.alternates][index]
        lines = self._files[file]
        for n in range(start, len(lines) + 1):
            if text in lines[n - 1]:
                return file, n
        return file, start


def near_duplicates(faq: FAQ, config: MatcherConfig | None = None,
                    build: Callable[[FAQ, MatcherConfig], Matcher] = Matcher) -> list[Conflict]:
    """Every near duplicate in ``faq`` as the matcher with ``config`` sees it."""
    config = config or MatcherConfig()
    wide = config.model_copy(update={"max_candidates": max(len(faq.entries), 1)})
    entries = [e for e in faq.entries.values() if e.intent not in SMALLTALK]
    full = build(faq, wide)
    depth = max((1 + len(e.alternates) for e in entries), default=0)
    own: dict[tuple[str, int], float] = {}
    rivals: dict[tuple[str, int], dict[str, float]] = {}
    for j in range(depth):
        asked = [e for e in entries if j < 1 + len(e.alternates) and len(e.alternates) > 0]
        if not asked:
            continue
        left_out = build(_without(faq, j), wide)
        for e in asked:
            text = [e.question, *e.alternates][j]
            own[(e.id, j)] = _scores(left_out, text).get(e.id, 0.0)
            rivals[(e.id, j)] = {k: s for k, s in _scores(full, text).items()
                                 if k != e.id and faq.entries[k].intent not in SMALLTALK}

    lines = _Lines()
    found: list[Conflict] = []
    confusable: dict[tuple[str, str], int] = defaultdict(int)
    for (eid, j), mine in own.items():
        e = faq.entries[eid]
        for other, score in rivals[(eid, j)].items():
            if score >= mine - config.clarify_margin:
                confusable[(eid, other)] += 1
        if not rivals[(eid, j)]:
            continue
        other, score = max(rivals[(eid, j)].items(), key=lambda kv: kv[1])
        if score <= mine or score < config.clarify_threshold:
            continue
        would = ("the matcher sends it to" if score >= config.answer_threshold
                 and score - mine >= config.clarify_margin else "it scores closer to")
        file, line = lines.of(e, j)
        field = "question" if j == 0 else f"alternates[{j - 1}]"
        text = [e.question, *e.alternates][j]
        found.append(Conflict(file, line, f"{eid}.{field}", eid, other, faq.entries[other].source,
                              f"near duplicate: {text!r} — {would} entry {other!r} ({faq.entries[other].source}, "
                              f"score {score:.2f}) rather than its own entry {eid!r} (score {mine:.2f})"))

    seen: set[frozenset[str]] = set()
    for (a, b) in list(confusable):
        pair = frozenset((a, b))
        if pair in seen:
            continue
        seen.add(pair)
        ea, eb = faq.entries[a], faq.entries[b]
        n = confusable.get((a, b), 0) + confusable.get((b, a), 0)
        total = 2 + len(ea.alternates) + len(eb.alternates)
        if n < 2 or n / total < OVERLAP_SHARE:
            continue
        first, second = sorted((ea, eb), key=lambda e: e.source)
        file, _, line = first.source.rpartition(":")
        found.append(Conflict(file, int(line), f"{first.id}", first.id, second.id, second.source,
                              f"entries overlap: {n} of the {total} questions of {first.id!r} and {second.id!r} "
                              f"({second.source}) score about as high for the other entry; merge them or make "
                              f"their questions distinct"))
    return sorted(found, key=lambda c: (c.file, c.line, c.field))


@dataclass(frozen=True)
class AlikeWord:
    """A lexicon word that reads as one listed before it once normalised."""

    file: str
    line: int
    field: str
    word: str
    same_as: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


def alike_words(faq: FAQ, folder: str | Path) -> list[AlikeWord]:
    """Each word of the lexicon's ``other_services`` and ``contrast_words`` (in ``folder``) that reads as a word
    listed before it once normalised, other sites first (they are contrast words already)."""
    lexicon = Path(folder) / LEXICON_FILE
    at = positions(lexicon)
    listed = [(field, k, word) for field, words in (("other_services", faq.other_services),
                                                    ("contrast_words", faq.contrast_words))
              for k, word in enumerate(words) if (field, k) in at]
    normalise = Normaliser(faq)
    first: dict[str, tuple[str, str]] = {}
    found = []
    for field, k, word in listed:
        key = normalise(word).full
        if not key:
            continue
        kept, kept_field = first.setdefault(key, (word, field))
        if (kept, kept_field) == (word, field):
            continue
        said = f"{word!r} is listed" if word == kept else f"{word!r} reads as {kept!r} once normalised (both are {key!r})"
        where = "" if kept_field == field else f" in {kept_field} (other sites are contrast words already)"
        found.append(AlikeWord(str(lexicon), at[(field, k)], f"{field}[{k}]", word, kept,
                               f"{said}{where}: the matcher sees one word; drop one of them"))
    return found
