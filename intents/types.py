"""The matcher's output: a decision and ranked candidates."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Decision = Literal["answer", "clarify", "out_of_scope"]
OUT_OF_SCOPE = "out_of_scope"
SMALLTALK = frozenset({"greeting", "thanks", "goodbye"})   # the intents of small talk (topic 10), not of account questions


@dataclass(frozen=True)
class Candidate:
    entry: str
    intent: str
    score: float


@dataclass(frozen=True)
class MatchResult:
    """What the user most likely asked. For out_of_scope, intent is "out_of_scope"
    and entry is None; candidates still list the closest FAQ entries. ``not_covered`` names
    the not-covered catalogue group (faq/data/not_covered.yaml) the question is closest to,
    when it is out of scope for that reason; ``outrun`` names the FAQ entry whose whole advice the
    message reports having followed without success (out of scope: the answer has nothing left to offer);
    ``asks_again`` marks a follow-up with no word of its own (那怎么办, 为什么会这样), answered only as it follows the
    answer before; ``feels`` an out-of-scope message that only says how the user feels (烦死了, 什么破网站);
    ``faq_words`` a message with no word the FAQ does not use (邮箱, 学信网, 忘记密码; 哈哈, no word at all): a topic named
    or nothing, never a person's or a school's name."""

    decision: Decision
    intent: str
    entry: str | None
    score: float
    candidates: tuple[Candidate, ...] = field(default_factory=tuple)
    not_covered: str | None = None
    outrun: str | None = None
    asks_again: bool = False
    feels: bool = False
    faq_words: bool = False
