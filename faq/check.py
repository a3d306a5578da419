"""`python bot.py check`: validate the FAQ folder, list near-duplicate questions and lexicon words that
read alike.

Output and exit codes are relied on by CI (.ci/run) and maintainers: problems one per line on
stderr and exit 1; otherwise a summary line, the warnings (near duplicates, words that read as
another once normalised), and exit 0 (``--strict``: exit 1 when there are warnings).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Mapping

from .loader import check as check_folder
from .loader import faq_dir


def run(cfg: Mapping[str, Any], args: argparse.Namespace) -> int:
    folder = faq_dir(cfg)
    faq, problems = check_folder(folder)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"FAQ check failed: {len(problems)} problem(s) in {folder}", file=sys.stderr)
        return 1
    assert faq is not None
    print(f"FAQ OK: {len(faq.topics)} topics, {len(faq.entries)} entries, "
          f"{sum(1 + len(e.alternates) for e in faq.entries.values())} questions, {len(faq.synonyms)} synonyms")
    from intents.conflicts import alike_words, near_duplicates
    from settings import MatcherConfig

    conflicts = near_duplicates(faq, MatcherConfig.of(cfg))
    alike = alike_words(faq, folder)
    for c in (*conflicts, *alike):
        print(c)
    strict = bool(getattr(args, "strict", False))
    then = "" if strict else " (warnings; --strict fails on them)"
    if conflicts:
        print(f"{len(conflicts)} near duplicate(s): questions the matcher may send to another entry{then}")
    if alike:
        print(f"{len(alike)} lexicon word(s) reading as another once normalised{then}")
    return 1 if (conflicts or alike) and strict else 0
