"""General-language word informativeness: jieba's corpus IDF table.

Importing ``jieba.analyse`` costs over a second (it loads the POS tagger too), so
the table is read straight from jieba's package data and kept in a marshal cache
beside jieba's own dictionary cache; later starts load it in a few milliseconds.
"""
from __future__ import annotations

import marshal
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import jieba


def _source() -> Path:
    return Path(jieba.__file__).resolve().parent / "analyse" / "idf.txt"


@lru_cache(maxsize=1)
def table() -> tuple[dict[str, float], float]:
    """(word → IDF, median IDF) of jieba's general corpus."""
    src = _source()
    stat = src.stat()
    cache = Path(tempfile.gettempdir()) / f"chsi-bot-idf-{stat.st_size}-{int(stat.st_mtime)}.marshal"
    try:
        with cache.open("rb") as f:
            idf, median = marshal.load(f)
        return idf, median
    except (OSError, EOFError, ValueError, TypeError):
        pass
    idf = {}
    for line in src.read_text(encoding="utf-8").splitlines():
        word, _, value = line.rpartition(" ")
        if word:
            idf[word] = float(value)
    values = sorted(idf.values())
    median = values[len(values) // 2]
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            marshal.dump((idf, median), f)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only temp dir only costs speed
    return idf, median
