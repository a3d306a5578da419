"""Text normalisation and tokenisation: what users type → comparable tokens.

Pipeline (pure, no I/O after construction):
clean (drop control characters, lone surrogates; NFKC folds full-width to half-width)
→ lower case → traditional → simplified (OpenCC)
→ what is no word asked out: clock times (10点), mentions (@学信网客服); e-mail addresses and links read as values
→ slips fixed: emoji sent as text codes out, typos, characters typed twice, homophone slips in characters
  (``intents.phonetic``), the typos again
→ referents resolved, things said to be known set aside → cut into clauses at punctuation
→ punctuation/emoji to spaces → pinyin read as words → synonyms and domain words rewritten to their canonical form
(one pass, longest first) → jieba with the domain dictionary → stopwords, complaints and values the user gives
(13812345678, 5678) dropped.
"""
from __future__ import annotations

import array
import hashlib
import itertools
import logging
import math
import re
import sys
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import jieba
import opencc

from faq.model import FAQ

from .kept import keep
from .phonetic import Phonetic

# median of log(total / frequency) over jieba's default dictionary (0.42.1): the
# surprisal of a typical word, used to put informativeness on a 1.0-at-median scale
_MEDIAN_SURPRISAL = 16.81
# one-character words of chat typed as meant before or after a word (在注册 is 在 + 注册, 大一注册 大一 + 注册), not
# a slip for a character of the same sound (再注册, 已注册); the literary ones (以, 之, 于) slip as any character does
_FUNCTION_CHARS = frozenset("在是有和也就都到一那这还要又把从只对来去等我你他她上下里中")
_COMMON_CHAR_FREQ = 10_000   # a character this frequent alone in jieba's dictionary is often a word of its own (人, 别)
_COMMON_WORD_FREQ = 100   # a word at least this frequent in jieba's dictionary is common (每次, 类型; not 侧后)
# characters only Cantonese writes: a lexicon word holding one (没咗, 有冇) is typed as such, never a slip of
# the pinyin input, so a homophone is never recovered to it (没做 is not 没咗)
_CANTONESE = frozenset("咗冇唔嘅啲喺㗎嚟畀嘢咩乜嗰哋佢睇揾搵攞啱嘞噉咁")
MAX_CHARS = 500  # longer messages are matched on their first MAX_CHARS characters
_KEEP = re.compile(r"[^0-9a-z\u3400-\u4dbf\u4e00-\u9fff]+")
# clause breaks: punctuation (after NFKC full-width ！？；，～ are ASCII; an ellipsis …… is periods), and a space between two
# Chinese characters (chat users separate clauses with spaces: "怎么找回账号 我只记得名字")
_CLAUSE = re.compile(r"[。!?;,、\n…~]+|\.{2,}|(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff])")
_CLAUSE_KEEP = re.compile(f"({_CLAUSE.pattern})")   # the same breaks, kept by re.split
_SENTENCE_END = re.compile(r"[。!?\n]")   # a break that ends a sentence, not only a clause
# a long stretch typed without punctuation (……输了好几次密码然后就弹出操作过于频繁我急着下载报告有什么办法) is cut
# before the words that begin a clause, as if a comma stood there, and before 我 beginning one again (not after a
# word it is the object of: 告诉我, 帮我, 发我, nor 我的 / 我们)
RUN_ON_CHARS = 24
REFERENT_REACH = 4   # a referent's only_after word is at most this many characters before it (还要不要再注册)
_DOUBLED = re.compile(r"([\u4e00-\u9fff])\1")   # a character typed twice in a row (注注册)
# a chat app's emoji as its text code (WeChat: [捂脸], [流泪], [OK], [Facepalm], and its classic faces /::) /:bye); a
# bracketed word the lexicon or the FAQ knows (点了[找回密码]) or small talk ([再见]) is what the user quotes instead
_EMOJI_CODE = re.compile(r"\[([\u4e00-\u9fff]{1,4}|[0-9a-z][0-9a-z !']{0,14})\]|/:[^\s\u3400-\u9fff/]{1,9}")
# an address, not a word asked: an e-mail address or a link the user gives (abc@qq.com, https://…: data, as a phone
# number is; its domain names no mailbox asked about, its path no word), or a mention (@学信网客服 …, as group chats
# send it — WeChat puts a narrow space after the name, which NFKC makes a space) naming whoever is called, as 客服，…
_ADDRESS = re.compile(r"[0-9a-z_.+\-]+@[0-9a-z\-]+(?:\.[0-9a-z\-]+)+"
                      r"|(?:https?://|www\.)[0-9a-z\-._~:/?#\[\]@!$&'()*+,;=%]+")
_MENTION = re.compile(r"(?<!\S)@[^\s@]{1,24}(?=\s|$)")
# when something happened, not what is asked: a clock time (10点, 9点半, 21:30) or a class's year (2020届) — not a step
# clicked (途径3点击) nor how long or how many (2小时, 3次: the seed's own numbers)
_WHEN = re.compile(r"(?<![0-9.])(?:(?:[01]?[0-9]|2[0-4])点(?:[0-5]?[0-9]分?|半|多|钟)?(?![击开进了过下])"
                   r"|(?:[01]?[0-9]|2[0-4]):[0-5][0-9]|(?:[12][0-9])?[0-9]{2}届)(?![0-9])")
# a clause that only gives the user's name (我叫张三, 姓名：李四): data, as a value is, whatever the name's characters
# (姓名填错了 names no one: a name follows 是 or a colon; nor 我叫什么)
_NAME_GIVEN = re.compile(r"\s*(?:(?:我叫|我名叫|我名字叫|我的名字叫)(?!什么|啥|不)[\u4e00-\u9fff·]{2,5}"
                         r"|(?:我名字|我的名字|本人姓名|姓名|名字)[:：是]\s*[\u4e00-\u9fff·]{2,5}|我姓[\u4e00-\u9fff]{1,2})\s*")
_GIVEN = " 00000 "   # what an e-mail address or a link is read as: a value like any other (``_VALUE``), so data given
_CLAUSE_START = re.compile(r"(?<=[\u3400-\u9fff])(?=然后|但是|可是|(?<!通)不过|所以|因为|后来|而且|另外|请问|我想问|想问一下|现在|当时"
                           r"|有什么办法|有没有办法|有啥办法|怎么办|咋办|到底|为什么|为啥)"
                           r"|(?<=[\u3400-\u9fff])(?<![帮给让把被叫和跟对替为使令向与同是说问找请教诉知醒带陪催骗吓逼劝求拉发加像比连])(?=我(?![的们]))")
_ASCII_WORD = re.compile(r"^[0-9a-z][0-9a-z .\-]*$")
# a value the user gives (a phone or ID number, a code, a user name with digits: 13812345678, 5678, zhangsan2001), never
# a word an entry is matched on (a year, 2019, neither)
_VALUE = re.compile(r"\d{4,}|(?=[a-z_.\-]*\d[a-z_.\-]*\d)[0-9a-z_.\-]{6,}")
# a thing said to be known (lexicon ``remembered``): words between it and its marker (用户名我倒是还记得), a word
# joining it to another thing (账号和密码都记得: both known), and what makes a marker say nothing is known:
# a negation or a need right before it (不记得, 忘记得, 要知道用户名吗), a doubt right after it (记得不太清)
_KNOWN_FILL = "我还都也倒是的可"
_KNOWN_JOIN = "和跟与及同或、"
_NOT_KNOWN = ("不没未唔冇忘要需得该能会", "不没清太")

jieba.setLogLevel(logging.WARNING)


@lru_cache(maxsize=1)
def _converter() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


@lru_cache(maxsize=1)
def _base_tokenizer() -> jieba.Tokenizer:
    tokenizer = jieba.Tokenizer()
    cached = read_frequencies(CACHE_DIR)
    if cached is not None:
        tokenizer.FREQ, tokenizer.total = cached
        tokenizer.initialized = True
        return tokenizer
    tokenizer.initialize()
    write_frequencies(CACHE_DIR, tokenizer.FREQ, tokenizer.total)
    return tokenizer


# tables kept by the project between starts: jieba's default dictionary as a plain table of words and
# frequencies, read in a third of the time of jieba's own cache (a marshalled dict in the temp directory, ~0.6 s
# under load); the known words' own readings (phonetic.phrase_readings: no pypinyin import at a start)
CACHE_DIR = Path(__file__).resolve().parent.parent / "var" / "cache"
_FREQ_MAGIC = b"jieba-freq 1\n"


def _dictionary_key() -> str | None:
    """What a cached table is valid for: jieba's version and its dictionary file (path, size, mtime);
    None when that file cannot be found."""
    path = Path(jieba.__file__).with_name(jieba.DEFAULT_DICT_NAME)
    try:
        st = path.stat()
    except OSError:
        return None
    ident = f"{jieba.__version__}|{path}|{st.st_size}|{st.st_mtime_ns}|{sys.byteorder}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def _frequencies_file(directory: Path) -> Path | None:
    key = _dictionary_key()
    return directory / f"jieba-{key}.freq" if key else None


def read_frequencies(directory: Path) -> tuple[dict[str, int], int] | None:
    """jieba's default dictionary (FREQ, total) from the table ``write_frequencies`` left in ``directory``
    for this dictionary file; None when there is none (or it is unreadable)."""
    path = _frequencies_file(directory)
    try:
        data = path.read_bytes() if path else b""
    except OSError:
        return None
    if not data.startswith(_FREQ_MAGIC):
        return None
    try:
        head_end = data.index(b"\n", len(_FREQ_MAGIC)) + 1
        total, count, size = map(int, data[len(_FREQ_MAGIC):head_end].split())
        values = array.array("q")
        start = head_end + count * values.itemsize
        if len(data) != start + size:   # cut short or written over
            return None
        values.frombytes(data[head_end:start])
        words = data[start:].decode("utf-8").split("\n")
    except (ValueError, UnicodeDecodeError):
        return None
    freq = dict(zip(words, values))
    return (freq, total) if len(words) == len(freq) == len(values) == count else None


def write_frequencies(directory: Path, freq: dict[str, int], total: int) -> None:
    """Keep (FREQ, total) for ``read_frequencies``: a header line with the sizes, the counts, then the words one
    per line (``kept.keep``: tables of other dictionary files are removed)."""
    path = _frequencies_file(directory)
    if path is None or any("\n" in w for w in freq):
        return
    values = array.array("q", freq.values())
    words = "\n".join(freq).encode("utf-8")
    header = _FREQ_MAGIC + f"{total} {len(values)} {len(words)}\n".encode()
    keep(path, header + values.tobytes() + words, "jieba-*.freq")


def _fresh_tokenizer() -> jieba.Tokenizer:
    """A jieba tokenizer with the default dictionary, ready for this lexicon's words.

    The dictionary is read once per process (0.4 s); each normaliser gets its own copy
    of the frequency table (a few ms), so rebuilding the matcher (live FAQ reload,
    ``bot.py check``'s leave-out matchers) does not pay the load again."""
    base = _base_tokenizer()
    tokenizer = jieba.Tokenizer()
    with base.lock:
        tokenizer.FREQ, tokenizer.total = dict(base.FREQ), base.total
    tokenizer.initialized = True
    return tokenizer


def to_simplified(text: str) -> str:
    """Traditional characters as simplified (OpenCC t2s); everything else unchanged."""
    return _converter().convert(text)


def clean(text: str) -> str:
    """Drop what cannot be text (lone surrogates, control characters), fold widths, lower-case."""
    # (str.isprintable: no character of category C — control, format, surrogate, private, unassigned — nor a
    # separator but the space; most messages, which then skip the per-character checks)
    if not text.isprintable() and _has_surrogate(text):
        text = text.encode("utf-8", "ignore").decode("utf-8", "ignore")
    text = unicodedata.normalize("NFKC", text[: MAX_CHARS * 2])
    if not text.isprintable():
        text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return _converter().convert(text.lower()).replace("嘅", "的")[:MAX_CHARS]   # (Cantonese 嘅 is 的)


# A message (or a clause of one) that asks something: a question mark or a question word. One rule for
# the matcher (which clause of a long message is its question) and the engine (a question asked in
# the middle of a guided flow is answered from the FAQ, not taken as the step's answer). How long and how
# many ask too (大概多久能解除, 一年能换几次), but not a count of what happened (试了好几次, 等了几天了), nor
# "no matter how / anywhere" (怎么都登不上, 哪里都找不到) or 那么, 这么 (规则还那么复杂).
_QUESTION = re.compile(r"[?？]|吗|(?<![怎这那多要])么|呢|怎(?!么都|么也|样都|样也)|如何|为什么|为何|什么|哪(?![都也]|[儿里][都也])"
                       r"|能否|可否|是否|要不要|是不是|有没有|(?<!那)啥|那啥(?![，,。.!！\s]|$)|咋"   # (那啥，… is a filler)
                       r"|(?<![没过])多久|多长时间|几耐|几多|(?<![好这前了过十])几[次天年位日](?!了)"
                       r"|([\u4e00-\u9fff])[不没唔]\1"   # A-not-A: 会不会, 能不能, 行不行, 可不可以; Cantonese 可唔可以, 係唔係
                       r"|有冇|点样|点算|点解|点办|边个|边度|几时|咩|多少(?![次遍回]了)")   # Cantonese: is there, how, why, which, when, what


# 呢 after what is still to be done or going on (我还要下载报告呢, 正在等着呢) ends a statement, not a question
_STILL = re.compile(r"还要|还得|还在|正在|着呢")


# a worry told (我担心以后找回密码要用, 怕次数用完): a question mark after it asks nothing, a question word in it does
# (担心学历会不会没了)
_WORRY = re.compile(r"\s*(?:我|也|还|就|有点|有些|很|挺|真的|比较)*(?:担心|害怕|生怕|怕)")


def is_question(text: str) -> bool:
    """True when ``text`` (after ``clean``) asks something: a question mark or a question word (after a worry told,
    only a question word)."""
    found = {m.group(0) for m in _QUESTION.finditer(text)}
    if found <= {"?", "？"} and _WORRY.match(text):
        return False
    return bool(found) and (found != {"呢"} or not _STILL.search(text))


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


@dataclass(frozen=True)
class Normalised:
    text: str                 # canonical content text: tokens joined (for character similarity)
    tokens: tuple[str, ...]   # content tokens, stopwords removed
    full: str = ""            # canonical text with stopwords kept, no spaces


class Normaliser:
    """Built once from the FAQ lexicon; ``__call__`` is pure and fast."""

    def __init__(self, faq: FAQ) -> None:
        self.stopwords = frozenset(_key(w) for w in faq.stopwords)
        self._dropped = self.stopwords | {_key(w) for w in faq.complaints}   # complaints say nothing asked either
        self._named = {_key(w) for w in (*faq.synonyms, *faq.synonyms.values(), *faq.domain_words, *faq.contrast_words)}
        rewrite: dict[str, str] = {}
        for word in (*faq.domain_words, *set(faq.synonyms.values())):
            rewrite[_key(word)] = _key(word)
        self.single_char: dict[str, str] = {}
        for variant, canonical in faq.synonyms.items():
            v, c = _key(variant), _key(canonical)
            if len(v) == 1:
                self.single_char[v] = c  # one character: only as a whole token, never inside a word
            else:
                rewrite[v] = c
        self._typos = {_key(wrong): _key(right) for wrong, right in faq.typos.items()}
        # per referent: its words, a name or a word or a phrase to keep, name → what the words then mean, and
        # what must come shortly before a word for it to be read so (None: nothing)
        self._referents: list[tuple[frozenset[str], re.Pattern[str], dict[str, str], re.Pattern[str] | None]] = []
        for ref in faq.referents:
            words, meant = frozenset(map(_key, ref.words)), {_key(n): _key(m) for m, ns in ref.means.items() for n in ns}
            after = re.compile(alternation(set(map(_key, ref.only_after)))) if ref.only_after else None
            self._referents.append((words, re.compile(alternation({*words, *meant, *map(_key, ref.keep)})), meant, after))
        # things said to be known: a thing (any word reading as it), a marker, and a thing's canonical word
        self._said_known: re.Pattern[str] | None = None
        self._thing = re.compile(r"(?!)")
        self._thing_of: dict[str, str] = {}
        self._lost: frozenset[str] = frozenset()
        if faq.remembered:
            things = {_key(t) for t in faq.remembered.things}
            self._thing_of = {w: c for w, c in ((_key(v), _key(c)) for v, c in faq.synonyms.items()) if c in things}
            self._thing_of.update((t, t) for t in things)
            thing = alternation(self._thing_of, whole_latin=True)
            before, after = _NOT_KNOWN
            marker = f"(?<![{before}])(?:{alternation(map(_key, faq.remembered.markers))})(?![{after}])"
            self._thing = re.compile(thing)
            self._lost = frozenset(map(_key, faq.remembered.lost))
            denied = faq.remembered.denied and f"|(?<!是)(?:{alternation(map(_key, faq.remembered.denied))})(?P<denied>{thing})"
            self._said_known = re.compile(f"(?P<before>{thing})[{_KNOWN_FILL}]{{0,4}}{marker}"
                                          f"|{marker}[{_KNOWN_FILL}]{{0,2}}(?P<after>{thing}){denied or ''}")
        self._typo_pattern = _alternation(self._typos)
        self._rewrite = rewrite
        self._pattern = _alternation(rewrite)
        self._tokenizer = _fresh_tokenizer()
        freq, total = self._tokenizer.FREQ, self._tokenizer.total
        self._surprisal = lambda f: math.log(total / f) / _MEDIAN_SURPRISAL  # noqa: E731
        self._added: dict[str, float] = {}  # domain words keep the informativeness they had
        for word in sorted(set(rewrite.values()) | {_key(w) for w in faq.domain_words}):
            if not _ASCII_WORD.match(word):
                self._added[word] = self._surprisal(freq[word]) if freq.get(word) else 1.0
                self._tokenizer.add_word(word, freq=200000)
        base_freq = self._tokenizer.FREQ
        self._stop_chars = frozenset(w for w in self.stopwords if len(w) == 1)
        self._known = set(self._added) | set(self.single_char)  # words a glued stopword may hide
        # contrast words too: a homophone typo of 解绑 or 修改 must not hide what is asked
        self._phonetic = Phonetic(
            (*rewrite, *self._typos.values(), *(_key(w) for w in faq.contrast_words)),
            is_word=lambda w: base_freq.get(w, 0) > 0 and w not in self._added,
            stop_chars=(w for w in self.stopwords if len(w) == 1),
            is_common=lambda w: base_freq.get(w, 0) >= _COMMON_WORD_FREQ,
            as_typed=lambda w: not _CANTONESE.isdisjoint(w),
            is_function=_FUNCTION_CHARS.__contains__,
            is_common_char=lambda ch: base_freq.get(ch, 0) >= _COMMON_CHAR_FREQ,
            readings_dir=CACHE_DIR)
        # pinyin initials (yhm, sfz, zc): the lexicon's own words, two letters and up; its contrast words
        # (not the other sites it names) from three letters; never a latin word the lexicon already reads
        latin = {w for w in (*rewrite, *self.stopwords) if w.isascii()}
        general_tok = _base_tokenizer()
        general = general_tok.FREQ   # general Chinese frequencies, without the lexicon's words
        # (not small talk: xx is a placeholder as often as 谢谢); a code a more frequent stopword shares (sm 什么) is not read
        chat = self._chat = {_key(p) for ps in faq.smalltalk.values() for p in ps}
        core = {_key(w) for w in (*faq.domain_words, *faq.synonyms.values(), *faq.typos.values())} - self.stopwords - chat
        services = {_key(w) for w in faq.other_services}
        self._phonetic.add_initials(sorted(core), min_letters=2, keep=latin)
        self._phonetic.add_initials(sorted({_key(w) for w in faq.contrast_words} - services - core - self.stopwords - chat),
                                    min_letters=3, keep=latin)
        self._phonetic.add_initials(sorted(self.stopwords | chat), min_letters=2, block=lambda w: general.get(w, 0))
        self._phonetic.add_particles(self._stop_chars)
        # the words a lexicon phrase is made of (方便 in 更方便的登录方式) slip too, after the phrases
        general_words = lambda w: len(w) >= 2 and general.get(w, 0) >= _COMMON_WORD_FREQ and w not in self.stopwords  # noqa: E731
        self._phonetic.add(sorted({t for phrase in rewrite if len(phrase) > 2 for t in general_tok.lcut(phrase) if general_words(t)}))

    def learn_sounds(self, words: Iterable[str]) -> None:
        """Also recover homophone typos of these words (the FAQ's frequent words), before the lexicon's."""
        words = list(words)
        self._known.update(words)
        self._phonetic.add(words, first=True)

    def informativeness(self, token: str) -> float | None:
        """How rare a word is in general Chinese (jieba's dictionary frequencies), 1.0 at the
        median word; None for a word the dictionary does not know."""
        if token in self._added:
            return self._added[token]
        f = self._tokenizer.FREQ.get(token)
        return self._surprisal(f) if f else None

    def rewrite(self, text: str) -> str:
        """Cleaned text with typos fixed and synonyms canonical, punctuation as spaces."""
        return self._rewrite_clean(self._read(text))

    def _read(self, text: str) -> str:
        """The message cleaned, its slips fixed and its referents resolved: what both the whole and its clauses
        are rewritten from."""
        return self._resolve(self._fix(clean(text)))

    def _resolve(self, text: str) -> str:
        """Cleaned text with its referents made the things they name and the things said to be known set aside."""
        return self._set_aside(self._refer(text))

    def _set_aside(self, text: str) -> str:
        """A thing the user says they still know (lexicon ``remembered``: 用户名我记得，密码忘了) left out, with
        its marker, where the rest of the message names another thing and says it is lost (忘记, 找回): that one
        is asked about. Nothing is left out when a known thing is joined to another (账号和密码都记得) or named
        again (我记得用户名是拼音加生日…有没有办法把用户名找回来)."""
        if self._said_known is None or not self._said_known.search(text):
            return text
        spans, known = [], set()
        for m in self._said_known.finditer(text):
            group = next(g for g in ("before", "after", "denied") if m.group(g))
            word, (at, to) = m.group(group), m.span(group)
            joined = any(ch and ch in _KNOWN_JOIN for ch in (text[at - 1:at], text[to:to + 1])) or any(
                text.endswith(t, 0, at) or text.startswith(t, to) for t in self._thing_of)
            if not joined:
                spans.append(m.span())
                known.add(self._thing_of[word])
        if not spans:
            return text
        rest = "".join(text[a:b] for a, b in zip((0, *(e for _, e in spans)), (*(s for s, _ in spans), len(text))))
        asked = {self._thing_of[m.group(0)] for m in self._thing.finditer(rest)}
        if known & asked or not asked:     # a known thing named again (记得用户名是拼音…把用户名找回来) is asked too
            return text
        said = self._normalise(self._rewrite_clean(rest)).tokens   # (a token may hold it: 忘记用户名)
        return rest if any(w in t for t in said for w in self._lost) else text

    def _refer(self, text: str) -> str:
        """A bare referent word (lexicon ``referents``) made the thing the message named last before it:
        身份证那一步…说号码已存在 is the ID number. Right after a naming word it is part of a compound (身份证号码:
        the synonyms read it), and with no naming word before it, it keeps its synonym's reading. A referent with
        ``only_after`` words is read so only within REFERENT_REACH characters after one of them, in its clause
        (研招网报名还要重新注册吗; not 今年考研，重新注册步骤)."""
        for words, pattern, meant, after in self._referents:
            if not any(w in text for w in words):
                continue
            out, last, end, pos = [], None, -1, 0
            for m in pattern.finditer(text):
                found = m.group(0)
                if found in meant:
                    last, end = meant[found], m.end()
                elif found in words and last is not None and m.start() != end and _right_after(after, text, m.start()):
                    out += (text[pos:m.start()], last)
                    pos = m.end()
            if out:
                text = "".join(out) + text[pos:]
        return text

    def _fix(self, text: str) -> str:
        """Cleaned text with its slips fixed, before anything else reads it (a referent's naming word, a question
        word, what the user says they did): clock times (10点), addresses (abc@qq.com, @学信网客服) and emoji codes
        ([捂脸]) out, typos, then characters typed twice (注注册), then homophone slips in characters (身份正 → 身份证),
        then the typos again (a slip fixed may complete a rewritten phrase: 微信账好 → 微信账号 → 微信). Punctuation
        stays."""
        unread = self._unemoji(_unaddressed(_untimed(text)))
        return self._retyped(self._phonetic.characters(self._undoubled(self._retyped(unread))))

    def _unemoji(self, text: str) -> str:
        """Emoji sent as text codes ([捂脸]) taken out, a space in their place: how the user feels, not a word asked."""
        if "[" not in text and "/:" not in text:
            return text
        return _EMOJI_CODE.sub(lambda m: m.group(0) if m.group(1) and self._quoted(m.group(1)) else " ", text)

    def _quoted(self, code: str) -> bool:
        """The bracketed text holds a word the lexicon or the FAQ knows, or is small talk: quoted, not an emoji."""
        return code in self._chat or any(code[a:b] in self._known
                                         for a in range(len(code)) for b in range(a + 2, len(code) + 1))

    def _retyped(self, text: str) -> str:
        """The lexicon's typos rewritten (one pass, longest first)."""
        return self._typo_pattern.sub(lambda m: self._typos[m.group(0)], text) if self._typos else text

    def _undoubled(self, text: str) -> str:
        """A character typed twice inside a known word (重新注注册, 账账号) typed once: only where the pair is no word
        of its own (谢谢, 看看) and, typed once, it is part of a known word with a character beside it."""
        if not _DOUBLED.search(text):
            return text
        for m in reversed(list(_DOUBLED.finditer(text))):
            i = m.start()
            if self._tokenizer.FREQ.get(m.group(0)):
                continue
            once = text[:i] + text[i + 1:]
            if any(once[a:a + n] in self._known for n in range(2, 7) for a in range(max(0, i - n + 1), i + 1)
                   if a + n <= len(once)):
                text = once
        return text

    def _rewrite_clean(self, text: str) -> str:
        """Fixed text (``_fix``) with pinyin read as words and synonyms canonical, punctuation as spaces."""
        text = self._phonetic.latin(_KEEP.sub(" ", text))
        return self._pattern.sub(lambda m: f" {self._rewrite[m.group(0)]} ", text)

    def tokens(self, rewritten: str) -> tuple[str, ...]:
        out = []
        for chunk in rewritten.split():
            for tok in self._tokenizer.lcut(chunk, HMM=True):
                tok = self._unglued(tok)
                tok = self.single_char.get(tok, tok)
                if tok.strip() and tok not in self._dropped and not self._filler(tok) and not self._value(tok):
                    out.append(tok)
        return tuple(out)

    def _value(self, tok: str) -> bool:
        """A value the user gives (13812345678, zhangsan2001), not a word the lexicon names (12306: another site)."""
        return tok.isascii() and bool(_VALUE.fullmatch(tok)) and tok not in self._named

    @staticmethod
    def gives_name(text: str) -> bool:
        """The (cleaned) clause only gives the user's name (我叫张三)."""
        return bool(_NAME_GIVEN.fullmatch(text))

    def gives_value(self, text: str) -> bool:
        """The (cleaned) text holds a value the user gives (``_value``)."""
        return any(m.group(0) not in self._named for m in _VALUE.finditer(text))

    def _filler(self, tok: str) -> bool:
        """One character said over and over (啊啊啊, 嗯嗯, 呜呜呜): a sound, not a word — a stopword's twice,
        anything's three times."""
        return len(tok) > 1 and tok == tok[0] * len(tok) and (len(tok) > 2 or tok[0] in self._stop_chars) \
            and not tok.isascii()

    def _unglued(self, tok: str) -> str:
        """A word the tokeniser glued a stopword onto (能登 → 登, 号吗 → 号): the known word alone.
        Only where the rest is a domain or frequent FAQ word and the whole is not one."""
        if len(tok) < 2 or tok in self._known:
            return tok
        if tok[0] in self._stop_chars and tok[1:] in self._known:
            return tok[1:]
        if tok[-1] in self._stop_chars and tok[:-1] in self._known:
            return tok[:-1]
        return tok

    def __call__(self, text: str) -> Normalised:
        return self._normalise(self.rewrite(text))

    def _normalise(self, rewritten: str) -> Normalised:
        tokens = self.tokens(rewritten)
        return Normalised(text="".join(tokens), tokens=tokens, full=rewritten.replace(" ", ""))

    def clauses(self, text: str) -> list[Clause]:
        """The message cut at clause punctuation, each clause normalised once
        (``merge`` of all of them equals the whole message normalised)."""
        out = []
        # clause, its break, clause, its break, ... (a referent may point across clauses: resolved first)
        parts = _CLAUSE_KEEP.split(self._read(text))
        for part, brk in itertools.zip_longest(parts[::2], parts[1::2], fillvalue=""):
            pieces = _CLAUSE_START.split(part) if len(part) >= RUN_ON_CHARS else [part]
            for k, piece in enumerate(pieces):
                end = brk if k == len(pieces) - 1 else ""
                if piece.strip():
                    out.append(Clause(piece, self._normalise(self._rewrite_clean(piece)), is_question(piece + end),
                                      bool(_SENTENCE_END.search(end))))
        return out


def _untimed(text: str) -> str:
    """Clock times (10点半, 21:30) and a class's year (2020届) taken out: 昨天晚上10点，… says when, as 昨天晚上，…
    does."""
    return _WHEN.sub("", text) if any(c.isdigit() for c in text) else text


def _unaddressed(text: str) -> str:
    """E-mail addresses (abc@qq.com) and links read as a value given, mentions (@学信网客服 …) taken out."""
    if "@" not in text and "://" not in text and "www." not in text:
        return text
    return _MENTION.sub(" ", _ADDRESS.sub(_GIVEN, text))


def _right_after(words: re.Pattern[str] | None, text: str, at: int) -> bool:
    """One of ``words`` (None: no condition) stands within REFERENT_REACH characters before ``at``, in its clause."""
    return words is None or bool(words.search(_CLAUSE.split(text[max(0, at - REFERENT_REACH):at])[-1]))


@dataclass(frozen=True)
class Clause:
    raw: str              # the cleaned clause as typed, its slips fixed (typos, homophones: Normaliser._fix)
    norm: Normalised
    asks: bool = False    # it asks something (a question word, or the question mark that ended it)
    ends_sentence: bool = False   # a full stop, question or exclamation mark (or a line break) ended it


def merge(parts: list[Normalised]) -> Normalised:
    """Normalised pieces joined into one. Their full texts stay apart (a line break between them): a word
    or phrase is never found across a clause's end (绑定微信 支付宝 does not name 微信支付)."""
    tokens = tuple(t for p in parts for t in p.tokens)
    return Normalised(text="".join(tokens), tokens=tokens, full="\n".join(p.full for p in parts if p.full))


def lexicon_key(word: str) -> str:
    """A lexicon phrase in the form user text takes after cleaning (public name of ``_key``)."""
    return _key(word)


def _key(word: str) -> str:
    """A lexicon word in the form user text takes after cleaning ("re-register" → "re register")."""
    return " ".join(_KEEP.sub(" ", clean(word)).split())


def _alternation(table: dict[str, str]) -> re.Pattern[str]:
    """One regex matching any key of ``table``, longest first; latin words only whole ("hi" is not inside "this")."""
    return re.compile(alternation(table, whole_latin=True))


def alternation(words: Iterable[str], whole_latin: bool = False) -> str:
    """A regex that matches what the alternation of ``words`` longest first matches: at each position the
    longest word found there (with ``whole_latin``, a latin word only where no latin letter or digit
    touches it). Written as a trie — one branch per next character, a word's end optional after its
    longer words — so the engine follows the text's one path instead of trying every word in turn
    (578 lexicon words: ~10× faster). Never matches when ``words`` is empty."""
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}   # a word ends here
    return _trie_node(trie, "", whole_latin) or ("" if "" in trie else r"(?!)")


def _trie_node(node: dict[str, dict], prefix: str, whole_latin: bool) -> str:
    branches = [re.escape(ch) + _trie_node(child, prefix + ch, whole_latin) for ch, child in sorted(node.items()) if ch]
    ends = "" in node
    if ends and whole_latin and _ASCII_WORD.match(prefix):
        # the word's start is checked at its end: the characters before are not a latin letter or digit
        branches.append(rf"(?<![0-9a-z]{re.escape(prefix)})(?![0-9a-z])")
        ends = False
    if not branches:
        return ""
    return "(?:" + "|".join(branches) + ")" + ("?" if ends else "")
