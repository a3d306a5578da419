"""The FAQ as typed objects, built by faq.loader from the maintainers' YAML."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property


@dataclass(frozen=True)
class Entry:
    """One answerable question: a canonical wording, its alternates, and the answer."""

    id: str
    intent: str
    question: str
    answer: str                      # Markdown subset: paragraphs, lists, **bold**, [links](url)
    alternates: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()   # words that are strong evidence for this entry
    paired_keywords: tuple[str, ...] = ()   # ... evidence when a message names two of them (two platforms)
    tried: tuple[tuple[str, ...], ...] = ()  # the answer's advice as a user reports having followed it, one tuple
                                             # of phrases per step: every step reported, then that it still fails
                                             # (lexicon still_failing), and the answer has nothing left to offer
    related: tuple[str, ...] = ()    # entry ids offered as follow-up buttons
    offer: str | None = None         # what the answer offers next: a guided flow's offer
                                     # (handlers.flows.OFFERS key) or "human_agent" (a hand-off)
    source: str = ""                 # "file:line" for messages to maintainers


@dataclass(frozen=True)
class Topic:
    """An intent: one seed topic (or a small-talk intent) and its entries."""

    intent: str
    title: str
    seed_topic: int | None           # 1..9 for the official FAQ topics
    entries: tuple[Entry, ...]
    source: str = ""


@dataclass(frozen=True)
class NotCovered:
    """A neighbouring service the FAQ does not cover: questions users ask about it, and the
    honest reply (this assistant handles account problems; where to turn; a person)."""

    id: str
    service: str
    reply: str
    questions: tuple[str, ...]
    source: str = ""
    phrases: tuple[str, ...] = ()    # a message made only of these (and small talk, addressing words) is this group's
    at_prompts: bool = False         # also answers a question asked at a flow's prompt (你们会保存我的身份证号吗)


@dataclass(frozen=True)
class Alternatives:
    """Things one topic offers several of (the four verification routes), each with the words naming it."""
    group: str
    intent: str
    names: dict[str, tuple[str, ...]]   # alternative → words naming it


@dataclass(frozen=True)
class Referent:
    """Bare words meaning whichever thing the message named last before them (号码 after 身份证: the ID number)."""
    words: tuple[str, ...]
    means: dict[str, tuple[str, ...]]    # the canonical word they then read as → the words naming that thing
    keep: tuple[str, ...] = ()           # phrases holding one of the words that keep its own reading (重新注册一个)
    only_after: tuple[str, ...] = ()     # if given: read so only a few characters after one of these (还要再注册)


@dataclass(frozen=True)
class Remembered:
    """Things a user may say they still know (用户名我记得) while asking about another (密码忘了)."""
    things: tuple[str, ...]     # canonical words (用户名, 密码, 账号)
    markers: tuple[str, ...]    # words saying a thing is known (记得, 没忘)
    lost: tuple[str, ...]       # canonical words saying the other thing is lost or sought (忘记, 找回)
    denied: tuple[str, ...] = ()  # words right before a thing saying it is not the one meant (不是用户名，是密码)


@dataclass(frozen=True)
class FAQ:
    topics: tuple[Topic, ...]
    synonyms: dict[str, str] = field(default_factory=dict)      # variant → canonical word
    domain_words: tuple[str, ...] = ()                          # kept whole by the tokeniser
    typos: dict[str, str] = field(default_factory=dict)          # misspelling → correct text
    stopwords: tuple[str, ...] = ()                             # ignored when matching
    contrast_words: tuple[str, ...] = ()                        # turn a question into another one
    other_services: tuple[str, ...] = ()                        # ... those naming another site or app (among them)
    symptoms: tuple[str, ...] = ()                              # ... those telling what went wrong (收不到: among them)
    contrast_senses: dict[str, tuple[str, ...]] = field(default_factory=dict)  # contrast word → cues of its other sense
    attributes: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)  # name → (asks, states)
    alternatives: tuple[Alternatives, ...] = ()                  # things a topic offers several of (the routes)
    smalltalk: dict[str, tuple[str, ...]] = field(default_factory=dict)  # intent → whole-message phrases
    bot_instructions: tuple[str, ...] = ()                      # text addressing the bot with orders
    addressing: tuple[str, ...] = ()                            # words naming the desk or bot (客服, 机器人)
    askers: tuple[str, ...] = ()                                # words saying who asks, for whom (家长, 帮孩子问)
    complaints: tuple[str, ...] = ()                            # how the user feels (太难用, 气死了): not asked
    account_words: tuple[str, ...] = ()                         # words making a message about the account itself
    still_failing: tuple[str, ...] = ()                         # a user saying what they did has not helped (还是不行)
    referents: tuple[Referent, ...] = ()                        # bare words read as the thing named before them
    remembered: Remembered | None = None                        # a thing said to be known is not what is asked
    prompts: tuple[str, ...] = ()                               # on-screen prompts the FAQ answers (已被注册)
    not_covered: tuple[NotCovered, ...] = ()                    # neighbouring questions not answered

    @cached_property
    def not_covered_groups(self) -> dict[str, NotCovered]:
        return {g.id: g for g in self.not_covered}

    @cached_property
    def entries(self) -> dict[str, Entry]:
        return {e.id: e for t in self.topics for e in t.entries}

    def entry(self, entry_id: str) -> Entry:
        return self.entries[entry_id]
