"""Homophone typo recovery: 用护名 → 用户名, 蜜码 → 密码, 手鸡号 → 手机号, 身份症号 → 身份证号.

Pinyin-input users pick the wrong character of the right sound. Known words (the lexicon's
domain words and synonyms, the FAQ's frequent words) are indexed by their toneless pinyin;
a stretch of the user's text that sounds like one of them but is written differently is
rewritten to it. Guards against over-matching:
- two characters at least, and at least one character written as in the word;
- at most half of the characters differ, and no differing character is a one-character
  stopword (号吗 is not 号码);
- a stretch that is a word in its own right (the tokeniser's dictionary) is left alone,
  as is a stretch that already is a known word.
Character readings come from pypinyin's table: every reading of a word's heteronyms is
indexed; a user's character is read by its most common reading.

Pinyin typed without converting it to characters (zhengjian haoma, weixin saoma) is recovered
the same way: a run of latin words that splits entirely into syllables of the known words is
read syllable by syllable, and each stretch of two or more syllables spelling a known word
becomes that word (an English word that does not split into such syllables is left alone).
"""
from __future__ import annotations

import itertools
import json
import re
import unicodedata
from functools import lru_cache
from importlib import resources
from typing import Callable, Iterable

_HAN = re.compile(r"[\u4e00-\u9fff]+")
# particles a word is followed by (号吗 is 号 + 吗, not a slip for 号码); other one-character
# function words slip like any character (修该 is 修改)
_PARTICLES = frozenset("吗嘛么麽呢吧啊呀哇哦噢喔了啦喽咯嘞呗的地得着过哈")
_LATIN = re.compile(r"[a-z]+(?: [a-z]+)*")


def _toneless(reading: str) -> str:
    """'lǜ' → 'lv', 'hù' → 'hu' (tone marks dropped, ü kept apart from u as v)."""
    out = []
    for ch in unicodedata.normalize("NFD", reading):
        if ch == "\u0308":
            out[-1] = "v"
        elif unicodedata.category(ch) != "Mn":
            out.append(ch)
    return "".join(out)


@lru_cache(maxsize=1)
def _table() -> dict[str, str]:
    """pypinyin's character table (code point as text → readings with tones, comma separated),
    read straight from its JSON: half the time of importing ``pypinyin.pinyin_dict``."""
    return json.loads((resources.files("pypinyin") / "pinyin_dict.json").read_text(encoding="utf-8"))


class Phonetic:
    """Built once from the words to recover; ``__call__`` rewrites homophone typos in text."""

    MAX_LEN = 6
    MAX_SPELLINGS = 16  # readings combinations indexed per word (heteronyms multiply)

    def __init__(self, words: Iterable[str], is_word: Callable[[str], bool], stop_chars: Iterable[str],
                 is_common: Callable[[str], bool] | None = None) -> None:
        self._is_word = is_word
        self._is_common = is_common or is_word
        self._stop = frozenset(stop_chars)
        self._table = _table()
        self._readings: dict[str, tuple[str, ...]] = {}
        self._words: set[str] = set()
        self._spellings: dict[tuple[str, ...], str] = {}  # toneless readings → word
        self._pairs: set[tuple[str, str]] = set()          # adjacent readings inside some word
        self._syllables: set[str] = set()                   # every reading of the known words' characters
        self.add(words)

    def _sounds(self, ch: str) -> tuple[str, ...]:
        """Every toneless reading of a character, the most common first."""
        got = self._readings.get(ch)
        if got is None:
            raw = self._table.get(str(ord(ch)), "")
            got = self._readings[ch] = tuple(dict.fromkeys(_toneless(r) for r in raw.split(",") if r))
        return got

    def add(self, words: Iterable[str]) -> None:
        """Index more words (two to six Chinese characters, each with a known reading)."""
        for w in words:
            if w in self._words or not (2 <= len(w) <= self.MAX_LEN) or not _HAN.fullmatch(w):
                continue
            sounds = [self._sounds(ch) for ch in w]
            if not all(sounds):
                continue
            self._words.add(w)
            for spelling in itertools.islice(itertools.product(*sounds), self.MAX_SPELLINGS):
                self._spellings.setdefault(spelling, w)
                self._pairs.update(zip(spelling, spelling[1:]))
                self._syllables.update(spelling)

    def __call__(self, text: str) -> str:
        if not self._words:
            return text
        return _LATIN.sub(self._latin, _HAN.sub(self._run, text))

    def _latin(self, m: re.Match[str]) -> str:
        """Known words typed as pinyin become the words; anything else stays as typed."""
        out: list[str] = []
        pinyin: list[str] = []  # consecutive latin words that split into syllables
        syllables: list[str] = []
        for word in m.group(0).split(" ") + [""]:
            split = self._split(word) if word else None
            if split is not None:
                pinyin.append(word)
                syllables.extend(split)
                continue
            if pinyin:
                read = self._words_in(syllables)
                out.append(read if not read.isascii() else " ".join(pinyin))
                pinyin, syllables = [], []
            if word:
                out.append(word)
        return " ".join(out)

    def _words_in(self, syl: list[str]) -> str:
        """Syllables with each stretch that spells a known word (longest first) as that word."""
        out: list[str] = []
        i, n = 0, len(syl)
        while i < n:
            for length in range(min(self.MAX_LEN, n - i), 1, -1):
                word = self._spellings.get(tuple(syl[i:i + length]))
                if word:
                    out.append(f" {word} ")
                    i += length
                    break
            else:
                out.append(syl[i])
                i += 1
        return " ".join("".join(out).split())

    def _split(self, word: str) -> list[str] | None:
        """``word`` as syllables of the known words (fewest syllables), or None when it is not such pinyin."""
        n = len(word)
        if n < 2 or n > 6 * self.MAX_LEN:
            return None
        best: list[list[str] | None] = [[]] + [None] * n
        for end in range(1, n + 1):
            for start in range(max(0, end - 6), end):
                head = best[start]
                if head is not None and word[start:end] in self._syllables and \
                        (best[end] is None or len(head) + 1 < len(best[end])):
                    best[end] = head + [word[start:end]]
        return best[n]

    def _run(self, m: re.Match[str]) -> str:
        run = m.group(0)
        n = len(run)
        if n < 2:
            return run
        # a user's character is read by its most common reading
        r = [(self._sounds(ch) or ("",))[0] for ch in run]
        pairs = self._pairs
        linked = [(r[j], r[j + 1]) in pairs for j in range(n - 1)]  # could be inside one word
        best: dict[int, str] = {}
        s = 0
        while s < n - 1:
            if not linked[s]:
                s += 1
                continue
            end = s + 1  # the stretch s..end has every adjacent pair inside some word
            while end < n - 1 and linked[end]:
                end += 1
            for start in range(s, end):
                for length in range(min(self.MAX_LEN, end + 1 - start), 1, -1):
                    word = self._spellings.get(tuple(r[start:start + length]))
                    if word and self._fits(run[start:start + length], word) and \
                            not self._splits_a_word(run, start, start + length):
                        best[start] = word
                        break
            s = end
        if not best:
            return run
        out: list[str] = []
        i = 0
        while i < n:
            word = best.get(i)
            if word:
                out.append(word)
                i += len(word)
            else:
                out.append(run[i])
                i += 1
        return "".join(out)

    def _splits_a_word(self, run: str, start: int, end: int) -> bool:
        """The stretch run[start:end] would cut a two-character word of the text in half (每次输 is
        每次 + 输, not a slip for 次数; 类型招生 is 类型 + 招生, not 研招): the user wrote that word.
        Only a common word counts (``is_common``): jieba also lists rare ones (侧后 in 注侧后)."""
        return (start > 0 and self._is_common(run[start - 1:start + 1])) or \
            (end < len(run) and self._is_common(run[end - 1:end + 1]))

    def _fits(self, sub: str, word: str) -> bool:
        """``sub`` is ``word`` itself, or a homophone typo of it that passes the guards."""
        if sub == word:
            return True
        differ = [k for k in range(len(word)) if sub[k] != word[k]]
        return (len(differ) * 2 <= len(word) and not any(sub[k] in self._stop and sub[k] in _PARTICLES for k in differ)
                and not self._is_word(sub))
