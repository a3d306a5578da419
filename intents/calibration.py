"""How far the matcher's score can be trusted: reliability by score band, and the
precision/coverage of answering at a threshold. Used by ``python bot.py eval`` (the table)
and ``benchmarks/calibrate.py`` (choosing the thresholds from held-out data).

Every question gets a *guess*: the intent the bot would give if it answered regardless of
its thresholds — the top FAQ candidate, or out_of_scope when nothing matched, when the
nearest question is in the not-covered catalogue, or when the message was small talk or an
order to the bot that was already decided. A guess is right when it is the labelled intent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

OUT_OF_SCOPE = "out_of_scope"
BANDS = (0.0, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0001)


def guess(result: Mapping[str, Any]) -> str:
    """The intent the bot would give for this ``bot.py match`` result if it always answered."""
    if result["decision"] != "out_of_scope" or result.get("not_covered") or result.get("outrun"):
        return result["intent"]
    candidates = result.get("candidates") or []
    return candidates[0]["intent"] if candidates else OUT_OF_SCOPE


@dataclass(frozen=True)
class Band:
    low: float
    high: float
    count: int
    share: float       # of all questions
    precision: float   # right guesses among the band's questions

    @property
    def label(self) -> str:
        return f"{self.low:.2f}–{min(self.high, 1.0):.2f}"


def reliability(rows: Iterable[tuple[str, Mapping[str, Any]]], bands: Sequence[float] = BANDS) -> list[Band]:
    """rows: (labelled intent, match result). One Band per score interval [low, high)."""
    rows = list(rows)
    total = len(rows) or 1
    out = []
    for low, high in zip(bands, bands[1:]):
        inside = [(want, got) for want, got in rows if low <= got["score"] < high]
        right = sum(guess(got) == want for want, got in inside)
        out.append(Band(low, high, len(inside), len(inside) / total, right / len(inside) if inside else 0.0))
    return out


@dataclass(frozen=True)
class Point:
    """What the bot does with its thresholds as set: answers, clarifications, rejections."""

    precision: float        # right answers among the answers given
    coverage: float         # share of all questions answered directly
    clarify_share: float    # share of all questions answered with a clarifying question
    clarify_useful: float   # clarifications that offered the right entry's intent
    answered: int
    total: int


def operating_point(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> Point:
    """Precision and coverage of the decisions actually taken."""
    rows = list(rows)
    answers = [(want, got) for want, got in rows if got["decision"] == "answer"]
    clarified = [(want, got) for want, got in rows if got["decision"] == "clarify"]
    right = sum(got["intent"] == want for want, got in answers)
    useful = sum(any(c["intent"] == want for c in got["candidates"]) for want, got in clarified)
    total = len(rows) or 1
    return Point(precision=right / len(answers) if answers else 1.0, coverage=len(answers) / total,
                 clarify_share=len(clarified) / total, clarify_useful=useful / len(clarified) if clarified else 1.0,
                 answered=len(answers), total=len(rows))
