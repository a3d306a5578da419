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
Character readings come from pypinyin: a user's character is read by its most common reading (its
table's first); a known word is spelled by its characters' most common readings and by the reading
pypinyin's phrase dictionary gives the word (重新 is chong xin, 校对 jiao dui), never by a character's other
readings, most of them archaic (位 read li would make 学历证 a slip for 学位证, 遗 read wei 为忘 one for 遗忘).

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

import hashlib
import importlib.util
import json
import re
import unicodedata
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Mapping

from .kept import keep

_HAN = re.compile(r"[\u4e00-\u9fff]+")
# particles a word is followed by (号吗 is 号 + 吗, not a slip for 号码); other one-character
# function words slip like any character (修该 is 修改)
_PARTICLES = frozenset("吗嘛么麽呢吧啊呀哇哦噢喔了啦喽咯嘞呗的地得着过哈")
_LATIN = re.compile(r"[a-z]+(?: [a-z]+)*")
_GLUED = re.compile(r"[\u4e00-\u9fff]+|[a-z]+|[^a-z\u4e00-\u9fff]+")   # character runs, latin runs, the rest
_VOWELS = frozenset("aeiouv")


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
def _folder() -> Path:
    """pypinyin's package folder, found without importing the package (its ``__init__`` loads the phrase
    dictionary, 0.1–0.2 s)."""
    spec = importlib.util.find_spec("pypinyin")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("pypinyin is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def _table() -> dict[str, str]:
    """pypinyin's character table (code point as text → readings with tones, comma separated, the most
    common first), read straight from its JSON: half the time of importing ``pypinyin.pinyin_dict``."""
    return json.loads((_folder() / "pinyin_dict.json").read_text(encoding="utf-8"))


# ---- words' own readings (pypinyin's phrase dictionary), kept in a table file ---------------------------

_READINGS_MAGIC = "pypinyin-phrase-readings 1"
_kept_readings: dict[Path | None, dict[str, tuple[str, ...]]] = {}   # per directory, what this process has read


def _readings_file(directory: Path) -> Path | None:
    """The table for this pypinyin's phrase dictionary (path, size, mtime); None when it cannot be found."""
    try:
        st = (path := _folder() / "phrases_dict.json").stat()
    except (OSError, ModuleNotFoundError):
        return None
    ident = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    return directory / f"pypinyin-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.json"


def read_readings(directory: Path) -> dict[str, tuple[str, ...]]:
    """The words' readings ``write_readings`` left in ``directory`` for this phrase dictionary; empty when
    there are none (or they cannot be read)."""
    path = _readings_file(directory)
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _READINGS_MAGIC or not isinstance(data.get("words"), dict):
        return {}
    return {w: tuple(r.split()) for w, r in data["words"].items() if isinstance(w, str) and isinstance(r, str)}


def write_readings(directory: Path, readings: Mapping[str, tuple[str, ...]]) -> None:
    """Keep ``readings`` for ``read_readings`` (``kept.keep``: tables of other phrase dictionaries are removed)."""
    path = _readings_file(directory)
    if path is not None:
        words = {w: " ".join(r) for w, r in sorted(readings.items())}
        keep(path, json.dumps({"format": _READINGS_MAGIC, "words": words}, ensure_ascii=False).encode("utf-8"),
             "pypinyin-*.json")


def phrase_readings(words: Iterable[str], directory: Path | None = None) -> dict[str, tuple[str, ...]]:
    """Each word's toneless reading as pypinyin's phrase dictionary gives it (重新 chong xin, 校对 jiao dui).
    Read from the table kept in ``directory``; pypinyin is imported (0.1–0.2 s) only for words the table
    lacks, and the table is then written anew. Without a directory, nothing is kept."""
    words = list(dict.fromkeys(words))
    known = _kept_readings.get(directory)
    if known is None:
        known = _kept_readings[directory] = read_readings(directory) if directory else {}
    missing = [w for w in words if w not in known]
    if missing:
        from pypinyin import Style, lazy_pinyin

        for w in missing:
            known[w] = tuple(_toneless(r) for r in lazy_pinyin(w, style=Style.TONE))
        if directory:
            write_readings(directory, known)
    return {w: known[w] for w in words}


class Phonetic:
    """Built once from the words to recover; ``__call__`` rewrites homophone typos in text."""

    MAX_LEN = 6

    def __init__(self, words: Iterable[str], is_word: Callable[[str], bool], stop_chars: Iterable[str],
                 is_common: Callable[[str], bool] | None = None,
                 as_typed: Callable[[str], bool] | None = None,
                 is_function: Callable[[str], bool] | None = None,
                 is_common_char: Callable[[str], bool] | None = None,
                 readings_dir: Path | None = None) -> None:
        self._is_word = is_word
        self._is_common = is_common or is_word
        self._as_typed = as_typed or (lambda w: False)   # words only ever typed as they are (not a slip's target)
        self._is_function = is_function or (lambda ch: False)   # one character, a word as frequent as 在, 是, 有
        self._is_common_char = is_common_char or self._is_function   # one character often a word alone (人, 别; not 审)
        self._stop = frozenset(stop_chars)
        self._table = _table()
        self._readings: dict[str, str] = {}                 # a character → its most common reading
        self._readings_dir = readings_dir                   # where the words' own readings are kept (phrase_readings)
        self._own: dict[str, tuple[str, ...]] = {}          # a word → its own reading (the phrase dictionary's)
        self._words: set[str] = set()
        self._spellings: dict[tuple[str, ...], str] = {}  # toneless readings → word
        self._pairs: set[tuple[str, str]] = set()          # adjacent readings inside some word
        self._syllables: set[str] = set()                   # every reading of the known words' characters
        self._initials: dict[str, str | None] = {}          # initials → the one word they abbreviate (None: several)
        self._secondary: set[str] = set()                   # ... those spelled by a word's rarer readings only
        self._particles: dict[str, str] = {}                # a particle's syllable → the particle (le → 了)
        self._function: dict[str, str] = {}                 # ... any one-character stopword's (bei → 被)
        self.add(words)

    def _reading(self, ch: str) -> str:
        """A character's toneless reading: its most common, pypinyin's first ("" for a character it does not read)."""
        got = self._readings.get(ch)
        if got is None:
            got = self._readings[ch] = _toneless(self._table.get(str(ord(ch)), "").split(",")[0])
        return got

    def _word_spellings(self, word: str) -> list[tuple[str, ...]]:
        """The toneless spellings a known word is indexed by: its characters' most common readings, then the
        word's own reading in pypinyin's phrase dictionary where that differs (重新注册: zhong xin zhu ce, then
        chong xin zhu ce); none when a character has no reading."""
        common = tuple(self._reading(ch) for ch in word)
        if not all(common):
            return []
        own = self._own[word]
        return [common, own] if own != common and len(own) == len(word) and all(map(str.isalpha, own)) else [common]

    def _indexable(self, words: Iterable[str]) -> list[str]:
        """The words of two to six Chinese characters, with their own readings looked up (all at once)."""
        fit = [w for w in words if 2 <= len(w) <= self.MAX_LEN and _HAN.fullmatch(w)]
        self._own.update(phrase_readings((w for w in fit if w not in self._own), self._readings_dir))
        return fit

    def add(self, words: Iterable[str], first: bool = False) -> None:
        """Index more words (two to six Chinese characters, each with a known reading). A spelling two words
        share is read as the word indexed first, or as one of ``words`` when ``first``, indexed or not (the FAQ's
        own words before the lexicon's: 紫助 is 自助, not the contrast word 资助; a word typed as it is stays itself)."""
        for w in self._indexable(words if first else (w for w in words if w not in self._words)):
            spellings = self._word_spellings(w)
            if not spellings:
                continue
            self._words.add(w)
            for spelling in spellings:
                if first:
                    self._spellings[spelling] = w
                else:
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
        its most common readings; the code of its phrase reading (重新注册: cxzc besides zxzc)
        read it too where no word's code of its common readings is the same."""
        kept = frozenset(keep)
        alternatives: list[tuple[str, str]] = []
        for w in self._indexable(words):
            spellings = self._word_spellings(w)
            if not spellings:
                continue
            codes = list(dict.fromkeys("".join(r[0] for r in spelling) for spelling in spellings))
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
        """Both, in the order the normaliser applies them: slips in characters, then pinyin."""
        return self.latin(self.characters(text))

    def characters(self, text: str) -> str:
        """Homophone slips in the text's runs of characters fixed (蜜码 → 密码); nothing else changes, punctuation
        and spacing included."""
        return _HAN.sub(self._run, text) if self._words else text

    def latin(self, text: str) -> str:
        """Pinyin typed without converting it, glued to characters or standing alone, made the known words it
        spells (用户ming → 用户名, zhengjian haoma → 证件 号码: words apart)."""
        if not self._words:
            return text
        if not text.isascii() and not _HAN.fullmatch(text):
            text = self._glued(text)
        return _LATIN.sub(self._latin, text)

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
        if any(k > 0 and self._is_common(sub[k - 1:k + 1]) or k + 1 < len(sub) and self._is_common(sub[k:k + 2])
               for k in differ if self._is_function(sub[k])):
            return False   # a function word in a common word the user wrote (那个页面 is 那个 + 页面, not 哪个页面)
        if len(differ) * 2 <= len(word):
            return True
        # more than half differ (用护铭 for 用户名): a word of three syllables or more, one character as
        # written, and no word of the text inside the stretch (the user wrote those characters)
        return len(word) >= 3 and len(differ) < len(word) and \
            not any(self._is_word(sub[k:k + 2]) for k in range(len(sub) - 1))
