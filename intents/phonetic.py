"""Homophone typo recovery: 用护名 → 用户名, 蜜码 → 密码, 手鸡号 → 手机号, 身份症号 → 身份证号.

Pinyin-input users pick the wrong character of the right sound. Known words (the lexicon's
domain words and synonyms, the FAQ's frequent words) are indexed by their toneless pinyin;
a stretch of the user's text that sounds like one of them but is written differently is
rewritten to it. Guards against over-matching:
- two characters at least, and at least one character written as in the word;
- at most half of the characters differ (in a word of three or more, all but one may, when
  no two adjacent characters of the stretch are a word themselves: 用护铭 → 用户名), and no
  differing character is a one-character stopword particle (号吗 is not 号码) or a Cantonese one (系咩 is
  not 系咪), nor a function word (``is_function``: 在, 一) at the edge beside a word the user wrote (在注册
  is not 再注册; 可能是人多 is not 实人: a one-character word counts when common alone, ``is_common_char``);
- a stretch that is a word in its own right (the tokeniser's dictionary) is left alone,
  as is a stretch that already is a known word;
- a word only ever typed as it is (``as_typed``: a Cantonese form, 没咗) is no slip's target (没做 stays).
Character readings come from pypinyin's table: a known word's characters are indexed by their two
most common readings (heteronyms: 重 zhong or chong; every reading pypinyin's phrase dictionary gives
the lexicon's words is among them, tests/test_matcher.py checks), not the archaic ones after them; a
user's character is read by its most common reading.

Pinyin typed without converting it to characters (zhengjian haoma, weixin saoma) is recovered
the same way: a run of latin words that splits entirely into syllables of the known words is
read syllable by syllable, and each stretch of two or more syllables spelling a known word
becomes that word (an English word that does not split into such syllables is left alone).

Two chat shorthands are read too:
- pinyin initials (yhm 用户名, sfz 身份证, yzm 验证码, zc 注册): a latin word of consonants only
  (no vowel: an English word is not taken for one) that is the initials of exactly one word the
  normaliser names as abbreviable (``add_initials``; two-letter codes only for its core words);
- pinyin glued to characters (用户ming, shouji号): syllables next to characters that, together,
  spell a known word, the characters written exactly as in the word.
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import re
import unicodedata
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

_HAN = re.compile(r"[\u4e00-\u9fff]+")
# particles a word is followed by (号吗 is 号 + 吗, not a slip for 号码); other one-character
# function words slip like any character (修该 is 修改)
_PARTICLES = frozenset("吗嘛么麽呢吧啊呀哇哦噢喔了啦喽咯嘞呗的地得着过哈")
_LATIN = re.compile(r"[a-z]+(?: [a-z]+)*")
_GLUED = re.compile(r"[\u4e00-\u9fff]+|[a-z]+|[^a-z\u4e00-\u9fff]+")   # character runs, latin runs, the rest
_VOWELS = frozenset("aeiouv")
READINGS = 2   # readings of a known word's character indexed, the most common first (a phrase's own is among them)


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
    read straight from its JSON: half the time of importing ``pypinyin.pinyin_dict``. The file is
    found without importing the package (``importlib.resources.files`` would: pypinyin's
    ``__init__`` loads its phrase dictionary, 0.2 s)."""
    spec = importlib.util.find_spec("pypinyin")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("pypinyin is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return json.loads((folder / "pinyin_dict.json").read_text(encoding="utf-8"))


class Phonetic:
    """Built once from the words to recover; ``__call__`` rewrites homophone typos in text."""

    MAX_LEN = 6
    MAX_SPELLINGS = 16  # readings combinations indexed per word (heteronyms multiply)

    def __init__(self, words: Iterable[str], is_word: Callable[[str], bool], stop_chars: Iterable[str],
                 is_common: Callable[[str], bool] | None = None,
                 as_typed: Callable[[str], bool] | None = None,
                 is_function: Callable[[str], bool] | None = None,
                 is_common_char: Callable[[str], bool] | None = None) -> None:
        self._is_word = is_word
        self._is_common = is_common or is_word
        self._as_typed = as_typed or (lambda w: False)   # words only ever typed as they are (not a slip's target)
        self._is_function = is_function or (lambda ch: False)   # one character, a word as frequent as 在, 是, 有
        self._is_common_char = is_common_char or self._is_function   # one character often a word alone (人, 别; not 审)
        self._stop = frozenset(stop_chars)
        self._table = _table()
        self._readings: dict[str, tuple[str, ...]] = {}
        self._words: set[str] = set()
        self._spellings: dict[tuple[str, ...], str] = {}  # toneless readings → word
        self._pairs: set[tuple[str, str]] = set()          # adjacent readings inside some word
        self._syllables: set[str] = set()                   # every reading of the known words' characters
        self._initials: dict[str, str | None] = {}          # initials → the one word they abbreviate (None: several)
        self._secondary: set[str] = set()                   # ... those spelled by a word's rarer readings only
        self._particles: dict[str, str] = {}                # a particle's syllable → the particle (le → 了)
        self._function: dict[str, str] = {}                 # ... any one-character stopword's (bei → 被)
        self.add(words)

    def _toneless_readings(self, ch: str) -> tuple[str, ...]:
        """A character's readings as pypinyin lists them, the most common first, without tones (repeats kept:
        有 is you, you, wei)."""
        got = self._readings.get(ch)
        if got is None:
            got = self._readings[ch] = tuple(_toneless(r) for r in self._table.get(str(ord(ch)), "").split(",") if r)
        return got

    def _reading(self, ch: str) -> str:
        """A user's character's toneless reading: its most common ("" for a character pypinyin does not read)."""
        return next(iter(self._toneless_readings(ch)), "")

    def _word_sounds(self, ch: str) -> tuple[str, ...]:
        """The toneless readings a character of a known word is indexed by: its two most common (重 is
        zhong or chong), not the archaic ones after them (不 read fu would make 服了 a slip for 不了)."""
        return tuple(dict.fromkeys(self._toneless_readings(ch)[:READINGS]))

    def add(self, words: Iterable[str]) -> None:
        """Index more words (two to six Chinese characters, each with a known reading)."""
        for w in words:
            if w in self._words or not (2 <= len(w) <= self.MAX_LEN) or not _HAN.fullmatch(w):
                continue
            sounds = [self._word_sounds(ch) for ch in w]
            if not all(sounds):
                continue
            self._words.add(w)
            for spelling in itertools.islice(itertools.product(*sounds), self.MAX_SPELLINGS):
                self._spellings.setdefault(spelling, w)
                self._pairs.update(zip(spelling, spelling[1:]))
                self._syllables.update(spelling)

    def add_initials(self, words: Iterable[str], min_letters: int = 3, keep: Iterable[str] = (),
                     block: Callable[[str], int] | None = None) -> None:
        """Read pinyin initials of ``words`` (two to six characters) as the word: codes of at least
        ``min_letters`` letters, consonants only; a code shared by two words reads as neither, and a
        code in ``keep`` (latin words with a meaning of their own) is never read. ``block`` (a word's
        general frequency): these words only take their code away from a word read so far that is
        rarer (sm is 什么 more often than 扫码; zc is 注册 more often than 早晨). A word's code comes from
        its most common readings; the codes of its other indexed readings (重新注册: cxzc besides zxzc)
        read it too where no word's code of its common readings is the same."""
        kept = frozenset(keep)
        alternatives: list[tuple[str, str]] = []
        for w in words:
            if not (2 <= len(w) <= self.MAX_LEN) or not _HAN.fullmatch(w):
                continue
            sounds = [self._word_sounds(ch) for ch in w]
            if not all(sounds):
                continue
            codes = list(dict.fromkeys("".join(r[0] for r in spelling) for spelling in itertools.product(*sounds)))
            code = codes[0]   # the most common readings' (重新注册: zxzc)
            if block is None:
                # the other indexed readings' codes (重新注册: cxzc), where no word's code of its common readings is
                alternatives.extend((c, w) for c in codes[1:] if len(c) >= min_letters and c not in kept
                                    and not _VOWELS.intersection(c))
            if len(code) < min_letters or _VOWELS.intersection(code) or code in kept:
                continue
            if block is None:
                if code in self._secondary:   # a code of a word's common readings outranks another's rarer ones
                    self._secondary.discard(code)
                    self._initials.pop(code)
                self._initials[code] = w if self._initials.get(code, w) == w else None
            elif self._initials.get(code) and block(w) > block(self._initials[code]):   # type: ignore[arg-type]
                self._initials[code] = None
        shared: dict[str, set[str]] = defaultdict(set)
        for c, w in alternatives:
            shared[c].add(w)
        for c, ws in shared.items():
            if c in self._initials and c not in self._secondary:
                continue
            prior = self._initials.get(c, next(iter(ws)))   # (a secondary code read so far, or this one's word)
            self._initials[c] = prior if len(ws) == 1 and prior in ws else None
            self._secondary.add(c)

    def add_particles(self, chars: Iterable[str]) -> None:
        """One-character stopwords ``chars`` in pinyin: in a pinyin sentence that spells known words
        (shenfenzheng bei zhuce le → 身份证被注册了) each is read as such a word; after characters
        (注册le), only a particle (吗, 了, 呢 …) is."""
        for ch in sorted(chars):
            reading = self._reading(ch)
            if reading:
                self._function.setdefault(reading, ch)
                if ch in _PARTICLES:
                    self._particles.setdefault(reading, ch)

    def __call__(self, text: str) -> str:
        if not self._words:
            return text
        if not text.isascii() and not _HAN.fullmatch(text):
            text = self._glued(text)
        return _LATIN.sub(self._latin, _HAN.sub(self._run, text))

    def _glued(self, text: str) -> str:
        """Pinyin glued to characters: 用户ming → 用户名, shouji号 → 手机号, 注册le → 注册了."""
        parts = _GLUED.findall(text)
        for i in range(len(parts) - 1):
            left, right = parts[i], parts[i + 1]
            if _HAN.fullmatch(left) and right.isalpha() and right.isascii():
                parts[i], parts[i + 1] = self._join(left, right, han_first=True)
            elif _HAN.fullmatch(right) and left.isalpha() and left.isascii():
                parts[i + 1], parts[i] = self._join(right, left, han_first=False)
        return "".join(parts)

    def _join(self, han: str, latin: str, han_first: bool) -> tuple[str, str]:
        """(characters, latin) with the longest known word spelled across their boundary made whole:
        at least one character and one syllable, the characters as written in the word."""
        if han_first and latin in self._particles:
            return han + self._particles[latin], ""
        syl = self._split(latin)
        if not syl:
            return han, latin
        for total in range(min(self.MAX_LEN, len(han) + len(syl)), 1, -1):
            for k in range(min(len(han), total - 1), 0, -1):   # k characters, total - k syllables
                j = total - k
                if j > len(syl):
                    continue
                chars = han[-k:] if han_first else han[:k]
                sounds = tuple(self._reading(ch) for ch in chars)
                spelled = sounds + tuple(syl[:j]) if han_first else tuple(syl[-j:]) + sounds
                word = self._spellings.get(spelled)
                if word and (word[:k] if han_first else word[j:]) == chars:
                    if han_first:
                        return han[:-k] + word, " " + "".join(syl[j:]) if j < len(syl) else ""
                    return word + han[k:], "".join(syl[:-j]) + " " if j < len(syl) else ""
        return han, latin

    def _latin(self, m: re.Match[str]) -> str:
        """Known words typed as pinyin become the words; anything else stays as typed."""
        out: list[str] = []
        pinyin: list[str] = []  # consecutive latin words that split into syllables
        syllables: list[str] = []
        words = m.group(0).split(" ")
        splits = [self._split(w) for w in words]
        # initials only among pinyin and other codes: in an English sentence a consonant cluster is an acronym
        codes = all(sp is not None or w in self._initials for w, sp in zip(words, splits))
        for word, split in zip(words + [""], splits + [None]):
            abbreviates = self._initials.get(word) if codes and word and split is None else None
            if abbreviates:   # pinyin initials: the word they stand for, like a word read from pinyin
                split, word = None, f" {abbreviates} "
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
        out: list[tuple[str, bool]] = []   # (text, a known word)
        i, n = 0, len(syl)
        while i < n:
            for length in range(min(self.MAX_LEN, n - i), 1, -1):
                word = self._spellings.get(tuple(syl[i:i + length]))
                if word:
                    out.append((f" {word} ", True))
                    i += length
                    break
            else:
                out.append((syl[i], False))
                i += 1
        if any(known for _, known in out):   # a pinyin sentence: its function words too (zhuce le → 注册 了)
            out = [(f" {self._function[t]} ", True) if not known and t in self._function else (t, known)
                   for t, known in out]
        return " ".join("".join(t for t, _ in out).split())

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
        r = [self._reading(ch) for ch in run]
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
                            not self._splits_a_word(run, start, start + length) and \
                            not self._written_in_a_word(run, start, word):
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
        Only a common word counts (``is_common``: a lexicon word too, 没邮箱 is 没 + 邮箱, not 没有 + 箱): jieba
        also lists rare ones (侧后 in 注侧后)."""
        return (start > 0 and self._is_common(run[start - 1:start + 1])) or \
            (end < len(run) and self._is_common(run[end - 1:end + 1]))

    def _written_in_a_word(self, run: str, start: int, word: str) -> bool:
        """A character of the stretch that differs from ``word`` belongs to a known word written as it is across the
        stretch's edge (先实名认证: 实 is 实名's, not a slip for 显示's 示): the user wrote that word."""
        end, n = start + len(word), len(run)
        for k in (k for k in range(len(word)) if run[start + k] != word[k]):
            p = start + k
            for i in range(max(0, p - self.MAX_LEN + 1), p + 1):
                for j in range(p + 1, min(n, i + self.MAX_LEN) + 1):
                    if (i < start or j > end) and j - i > 1 and run[i:j] in self._words:
                        return True
        return False

    def _fits(self, sub: str, word: str) -> bool:
        """``sub`` is ``word`` itself, or a homophone typo of it that passes the guards."""
        if sub == word:
            return True
        if self._as_typed(word):
            return False
        differ = [k for k in range(len(word)) if sub[k] != word[k]]
        if any(sub[k] in self._stop and sub[k] in _PARTICLES or self._as_typed(sub[k]) for k in differ) \
                or self._is_word(sub):
            return False   # (nor is a Cantonese character: 系咩 is typed as meant, not a slip for 系咪)
        if differ in ([0], [len(sub) - 1]) and self._is_function(sub[differ[0]]):
            rest = sub[1:] if differ == [0] else sub[:-1]
            if (rest in self._words or self._is_word(rest)) if len(rest) > 1 else self._is_common_char(rest):
                return False   # a function word beside a word the user wrote (在注册 is 在 + 注册, not 再注册)
        if len(differ) * 2 <= len(word):
            return True
        # more than half differ (用护铭 for 用户名): a word of three syllables or more, one character as
        # written, and no word of the text inside the stretch (the user wrote those characters)
        return len(word) >= 3 and len(differ) < len(word) and \
            not any(self._is_word(sub[k:k + 2]) for k in range(len(sub) - 1))
