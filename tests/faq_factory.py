"""Real FAQ objects for tests: the project's FAQ, or small synthetic ones."""
from __future__ import annotations

from functools import lru_cache

import settings
from faq.loader import load_faq
from faq.model import FAQ, Entry, Topic
from intents.matcher import Matcher, MatcherConfig


@lru_cache(maxsize=1)
def real_faq() -> FAQ:
    return load_faq(settings.load())


@lru_cache(maxsize=1)
def real_matcher() -> Matcher:
    return Matcher.from_settings(settings.load())


def make_faq(*entries: tuple[str, str, list[str], str], **lexicon) -> FAQ:
    """entries: (id, question, alternates, answer); the intent is the id's prefix."""
    by_intent: dict[str, list[Entry]] = {}
    for eid, question, alternates, answer in entries:
        intent = eid.split(".")[0]
        by_intent.setdefault(intent, []).append(
            Entry(id=eid, intent=intent, question=question, answer=answer, alternates=tuple(alternates)))
    topics = tuple(Topic(intent=i, title=i, seed_topic=None, entries=tuple(es)) for i, es in by_intent.items())
    return FAQ(topics=topics, **lexicon)


def make_matcher(faq: FAQ, **config) -> Matcher:
    return Matcher(faq, MatcherConfig(**config))
