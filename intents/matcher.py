"""Score a user's question against the FAQ and decide: answer, clarify or out_of_scope.

Built once from the FAQ (index construction does all the work); ``match`` is a
pure function of the text. Scoring for an entry combines
- coverage: the weighted share of the user's words the entry's vocabulary explains
  (unknown content words weigh heavily, so a question about something the FAQ does
  not cover — 解除绑定, 支付失败 — scores low even when it shares topic words);
- similarity: the best of the entry's questions by weighted token F1 and
  character similarity (rapidfuzz), which tolerates typos and reordering;
- keyword evidence: a maintainer-listed phrase appearing in the question (two of an entry's paired
  keywords named — 学信网 and 研招网 — make it the answer when it is close to the best);
- a second, independent signal: cosine of character 1–3-gram TF-IDF vectors, blended in.
The not-covered catalogue (neighbouring services, other sites) is indexed beside the FAQ:
a question whose nearest neighbour is a catalogue question, or whose best entry is no more
than the clarify margin ahead of one, is out of scope, with that group named; so is a message made only of a
group's whole-message phrases (你是机器人吗: the assistant's own group). A message made only of small talk answers that small talk; a message that
orders the bot about (lexicon ``bot_instructions``) is out of scope, and so is a message reporting every step
of its best entry's advice done and still failing (the entry's ``tried``, lexicon ``still_failing``): the result
names that entry (``outrun``) and a person takes over instead of the same answer again.
Candidates are pruned with an inverted index over tokens and character bigrams,
so the cost grows with the entries that share words, not with the FAQ size.
Every threshold and weight is in ``settings.MatcherConfig`` (config.yaml ``matcher``).
"""
from __future__ import annotations

import dataclasses
import functools
import heapq
import itertools
import math
import operator
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from rapidfuzz import fuzz

from faq.model import FAQ, Entry
from settings import MatcherConfig

from .normalize import Clause, Normalised, Normaliser, alternation, clean, is_question, lexicon_key, merge
from .types import OUT_OF_SCOPE, Candidate, MatchResult


@dataclass(frozen=True)
class _Doc:
    entry: int
    text: str
    tokens: frozenset[str]
    weight: float  # Σ token weights


SENSE_REACH = 6      # a cue of a contrast word's other sense fewer characters than this away counts (被禁止了，怎么才能解除)
_MODALS = frozenset({"才能", "才可以", "才行", "可以", "能", "能够", "要", "需要", "应该", "该", "得"})   # (怎么才能解除: no object)
MATCH_CACHE = 4096   # distinct texts whose results a matcher keeps
_MAYBE_PERSONAL = re.compile(r"\d|@|://")   # such a text is matched afresh each time, never kept


# a clause telling what the page said (not one following its prompts: 按照提示 / 根据提示 / 按提示点了找回密码)
_REPORTS = re.compile(r"(?<![按照据])提示|显示|弹出|跳出|蹦出|冒出|写着|说")
# a prompt quoted after a word reporting what a page shows (提示“学号不存在”, 显示「帐号异常」, 弹出来:该号码已被限制使用;
# not after 说: 客服说“等两天就好” quotes a person)
_QUOTE_MARKS = re.compile(r"[“\"「『‘':：]")
_QUOTED = re.compile(r"(?:(?<![按照据])提示|显示|弹出|跳出|弹窗|报错|写着)(?:了|着|出来|出|一句|一行字|框)?\s*"
                     r"(?:[“\"「『‘'](?P<quoted>[^”\"」』’'\n]{2,40})[”\"」』’']|[:：]\s*(?P<after>[^,.!?;，。！？；\n]{2,30}))")
_OTHER_PROMPT = frozenset({"prompt:other"})   # (a tag no normalised word can be: it holds ':')


def _prompt_as_question(clauses: list[Clause], changes: Callable[[Clause], bool]) -> list[Clause]:
    """A story that asks nothing but ends in what the page said (……一直转圈，最后跳出来一句操作被禁止): that
    prompt is what the user brings, so its clause (the last that reports one) is treated as the asking clause —
    unless a clause after it tells of something that ``changes`` the question (……重新绑定邮箱，验证邮件一直收不到:
    the prompt is the story, the mail that never came is the problem)."""
    if len(clauses) < 2 or any(c.asks for c in clauses):
        return clauses
    told = [i for i, c in enumerate(clauses) if c.norm.tokens and _REPORTS.search(c.raw)]
    if not told:
        return clauses
    i = told[-1]
    if any(changes(c) for c in clauses[i + 1:]):
        return clauses
    return [*clauses[:i], dataclasses.replace(clauses[i], asks=True), *clauses[i + 1:]]


class Matcher:
    """The FAQ matcher. Construct with a loaded FAQ; call ``match(text)``."""

    def __init__(self, faq: FAQ, config: MatcherConfig | None = None) -> None:
        self.faq = faq
        self.config = config or MatcherConfig()
        self.normalise = Normaliser(faq)
        self.entries: list[Entry] = list(faq.entries.values())
        # what can be nearest: the FAQ's entries, then one pseudo-entry per not-covered group with questions
        # (a group of whole-message phrases only is found by them alone)
        asked = [g for g in faq.not_covered if g.questions]
        self._groups = [g.id for g in asked]
        self._group_phrases = [g.phrases for g in asked]
        self._n_faq = len(self.entries)   # targets from here on are not-covered groups
        self._targets: list[Entry] = self.entries + [
            Entry(id=f"{OUT_OF_SCOPE}.{g.id}", intent=OUT_OF_SCOPE, question=g.questions[0],
                  alternates=g.questions[1:], answer=g.service) for g in asked]
        self._build_contrast(faq)
        self._prompts = {self.normalise(p).full for p in faq.prompts} - {""}
        per_entry_docs, exact_contrast, intent_vocab = self._build_entries()
        self._build_idf(intent_vocab)
        self._build_index(per_entry_docs, exact_contrast)
        self._build_whole_messages(faq)
        self._build_tried(faq)
        self._position = {e.id: ei for ei, e in enumerate(self.entries)}   # an entry's index by its id
        self._vocab_text = ["|" + "|".join(sorted(self._vocab[ei])) for ei in range(self._n_faq)]   # (``_uses``)

    def _build_contrast(self, faq: FAQ) -> None:
        """What turns a question into another one: the contrast words and their other senses, the
        alternatives a topic offers, the attributes a question may ask."""
        contrast = {self.normalise(w).full for w in faq.contrast_words} - {""}
        # a contrast word is typed with or without 的, and with any word asking how (用别人的身份证 / 用别人身份证,
        # 怎么改 / 如何改): each form is one, and contrast words differing only by a particle are one word
        # (客服电话是多少 / 客服电话多少)
        contrast |= {v for w in contrast for v in _forms(w)}
        alike: dict[str, set[str]] = defaultdict(set)
        for w in contrast:
            alike[_PARTICLES.sub("", _HOW_WORDS.sub("怎么", w))].add(w)
        self._contrast = _alternation(dict.fromkeys(contrast)) if contrast else None
        self._contrast_set = frozenset(contrast)
        self._alike = {w: frozenset(same) for same in alike.values() if len(same) > 1 for w in same}
        self._services = frozenset(self.normalise(w).full for w in faq.other_services) - {""}
        self._symptoms = frozenset(self.normalise(w).full for w in faq.symptoms) - {""}
        # words making a message about the account itself (lexicon ``account_words``)
        self._account_words = frozenset(t for w in faq.account_words for t in self.normalise(w).tokens)
        # a contrast word with a cue of its other sense near it (解除 next to 禁止: lifting a ban, not 解除绑定;
        # 崩溃 in 我要崩溃了: a feeling, not an app crash) does not contrast
        self._senses: dict[str, re.Pattern[str]] = {}
        self._sense_words: dict[str, frozenset[str]] = {}   # such a contrast word's own tokens (什么位置: 位置)
        for word, cues in faq.contrast_senses.items():
            key, normal = self.normalise(word).full, {self.normalise(c).full for c in cues} - {""}
            if normal and key:
                self._senses[key] = _alternation(dict.fromkeys(normal))
                self._sense_words[key] = frozenset(self.normalise(key).tokens) | {key}
                for form in _forms(key):   # (the word's other forms have its other sense: 如何查, 浏览器问题)
                    self._senses.setdefault(form, self._senses[key])
                    self._sense_words.setdefault(form, frozenset(self.normalise(form).tokens) | {form})
        self._sense_re = _alternation(dict.fromkeys(self._senses))   # any word that has another sense
        # the alternatives a topic offers (lexicon ``alternatives``: the four verification routes), each
        # named in a text by a tag "group:alternative" among its contrast words (no normalised word holds ':')
        self._alternatives: dict[str, str] = {}
        self._alternative_tags: dict[str, frozenset[str]] = {}   # intent → all its alternatives' tags
        for g in faq.alternatives:
            self._alternative_tags[g.intent] = self._alternative_tags.get(g.intent, frozenset()).union(
                f"{g.group}:{a}" for a in g.names)
            for alt, words in g.names.items():
                self._alternatives.update((self.normalise(w).full, f"{g.group}:{alt}") for w in words)
        self._alternatives.pop("", None)
        self._all_alternatives = frozenset(self._alternatives.values())
        self._alternatives_re = _alternation(self._alternatives)
        # an answer stating an attribute (安全邮箱仅限注册使用一次: a count) answers the words asking it (几次)
        self._attributes: list[tuple[re.Pattern[str], frozenset[str]]] = []
        for asks, states in faq.attributes.values():
            stating = {n: "" for n in (self.normalise(w).full for w in states) if n}
            self._attributes.append((_alternation(stating), frozenset(self.normalise(w).full for w in asks) - {""}))
        self._asking = frozenset().union(*(asks for _, asks in self._attributes))   # every attribute's asking words

    def _build_entries(self) -> tuple[list[list[tuple[str, tuple[str, ...]]]], dict[str, frozenset[str]],
                                      dict[str, set[str]]]:
        """Each target's contrast words, vocabulary, keywords and paired keywords; returns its questions
        normalised (text, tokens), each question's own contrast words and each intent's vocabulary."""
        asking = self._asking
        self._entry_contrast: list[frozenset[str]] = []
        exact_contrast: dict[str, frozenset[str]] = {}
        per_entry_docs: list[list[tuple[str, tuple[str, ...]]]] = []
        self._vocab: list[frozenset[str]] = []
        self._keywords: list[tuple[str, ...]] = []
        self._paired: list[re.Pattern[str] | None] = []   # an entry's paired keywords, if any
        intent_vocab: dict[str, set[str]] = defaultdict(set)
        for ei, e in enumerate(self._targets):
            questions = [self.normalise(q) for q in (e.question, *e.alternates)]
            keyword_norms = [self.normalise(k) for k in e.keywords]
            # the answer's words count as explained too (document expansion): a user
            # asking about 缓存 or 账号管理 is asking about the entry that mentions them
            # line by line: an answer is longer than a message (normalise keeps MAX_CHARS of a text)
            answer = merge([self.normalise(line) for line in _plain(e.answer).splitlines() if line.strip()])
            asked = frozenset().union(*(self._contrast_words(n) for n in (*questions, *keyword_norms)))
            # an attribute one of its questions asks, it answers in any words (…是什么原因 answers …是啥原因)
            asked |= frozenset().union(*(asks for _, asks in self._attributes if asks & asked))
            if ei >= self._n_faq:   # a not-covered group's subject asked in any words (客服电话 → 客服电话是多少)
                subjects = [n for n in (self.normalise(p).full for p in self._group_phrases[ei - self._n_faq]) if n]
                asked |= frozenset(w for w in self._contrast_set if any(p in w for p in subjects))
            stated = frozenset().union(*(asks for states, asks in self._attributes if states.search(answer.full)))
            self._entry_contrast.append(self._with_alike(self._contrast_words(answer, alternatives=False) | stated
                                                         | self._with_alternatives(asked, e.intent)))
            docs = [(n.text, n.tokens) for n in questions]
            for n in questions:   # what an exact match must also share (审核没通过 and 审核通过 read alike)
                exact_contrast.setdefault(n.text, self._with_alike(self._contrast_words(n, alternatives=False)))
            keywords = [(n.text, n.tokens) for n in keyword_norms]
            vocab = {t for _, toks in docs + keywords for t in toks} | set(answer.tokens)
            per_entry_docs.append(docs)
            self._vocab.append(frozenset(vocab))
            # an attribute's asking word (多久, 几次) is no keyword evidence: it says what is asked of a subject,
            # not which subject (找回密码要多久才能生效 is not the wait before binding)
            self._keywords.append(tuple(k for k, _ in keywords if k and k not in asking))
            paired = {self.normalise(k).text: "" for k in e.paired_keywords} if e.paired_keywords else {}
            paired.pop("", None)
            self._paired.append(_alternation(paired) if len(paired) > 1 else None)
            if e.intent != OUT_OF_SCOPE:  # the catalogue's words stay "unknown" to the FAQ
                intent_vocab[e.intent] |= vocab
        return per_entry_docs, exact_contrast, intent_vocab

    def _build_idf(self, intent_vocab: dict[str, set[str]]) -> None:
        """IDF over intents: words shared by entries of one topic are not penalised."""
        n = len(intent_vocab)
        df: dict[str, int] = defaultdict(int)
        for vocab in intent_vocab.values():
            for t in vocab:
                df[t] += 1
        top = math.log((n + 1) / 1.5)
        self._idf = {t: max(0.05, math.log((n + 1) / (d + 0.5)) / top) for t, d in df.items()}

    def _build_index(self, per_entry_docs: list[list[tuple[str, tuple[str, ...]]]],
                     exact_contrast: dict[str, frozenset[str]]) -> None:
        """The questions as scored: exact matches, the inverted index, each entry's anchors, the
        homophones of frequent words and the character TF-IDF."""
        self._exact: dict[str, int] = {}  # a question typed exactly as the FAQ has it → its entry
        # … with the same contrast words: a negation or a 能注销 that normalising drops keeps them apart
        self._exact_contrast = exact_contrast
        for ei, docs in enumerate(per_entry_docs):
            for text, _ in docs:
                self._exact[text] = ei if self._exact.get(text, ei) == ei else -1  # -1: ambiguous
        self._docs: list[_Doc] = []
        self._index: dict[str, set[int]] = defaultdict(set)  # token or bigram → doc ids
        for ei, docs in enumerate(per_entry_docs):
            for text, toks in docs:
                di = len(self._docs)
                self._docs.append(_Doc(ei, text, frozenset(toks), math.fsum(self.weight(t) for t in set(toks))))
                for key in _keys(text, toks):
                    self._index[key].add(di)
        self._max_postings = max(500, len(self._docs) // 50)
        self._doc_rows = [(d.entry, d.text, d.tokens, d.weight or 1.0) for d in self._docs]   # what _rank reads, unpacked fast
        # a not-covered question's own contrast words (an FAQ question's entry speaks for it: its answer's words count)
        self._doc_contrast: list[frozenset[str] | None] = [
            exact_contrast.get(d.text, frozenset()) if self._targets[d.entry].intent == OUT_OF_SCOPE else None
            for d in self._docs]
        # an entry's anchors: the words every one of its questions uses, when it has many (账号,
        # 密码, 重新注册); a message using none of them asks about something else (a platform's
        # own procedure is not a question about its account)
        self._anchors: list[frozenset[str]] = [
            frozenset.intersection(*(frozenset(t) for _, t in docs))
            if ei < self._n_faq and len(docs) >= self.config.anchor_min_questions else frozenset()
            for ei, docs in enumerate(per_entry_docs)]
        # homophone typos of the FAQ's frequent words are recovered too (用护名 → 用户名)
        seen_in: dict[str, int] = defaultdict(int)
        for d in self._docs:
            if self._targets[d.entry].intent != OUT_OF_SCOPE:
                for t in d.tokens:
                    seen_in[t] += 1
        self.normalise.learn_sounds(t for t, c in seen_in.items() if c >= 2 and len(t) >= 2)
        self._tfidf = _CharTfidf([d.text for d in self._docs])

    def _build_whole_messages(self, faq: FAQ) -> None:
        """What a whole message may be instead of a question: small talk, a question about the assistant
        (a not-covered group's phrases), orders to the bot."""
        self._smalltalk_entry = {t.intent: t.entries[0].id for t in faq.topics if t.intent in faq.smalltalk}
        phrases = {lexicon_key(p): intent for intent, ps in faq.smalltalk.items() for p in ps}
        phrases.pop("", None)
        self._smalltalk = phrases
        self._smalltalk_re = _alternation(phrases)
        # words naming the desk or the bot (你好 客服, 谢谢 机器人): small talk may hold them
        self._addressing = frozenset(t for w in faq.addressing for t in self.normalise(w).tokens)
        # … of them, the site's name (a lexicon word: 学信网) names no one called (学信网，… is no 客服，…)
        self._site = self._addressing & {lexicon_key(w) for w in (*faq.synonyms.values(), *faq.domain_words)}
        # words saying who asks and for whom (家长, 帮孩子问): a clause of them alone before a question is not part of it
        self._askers = frozenset(t for w in faq.askers for t in self.normalise(w).tokens)
        # how the user feels (这网站太难用了, 什么破网站): a clause of it and stopwords alone is no part of the question
        self._complaints = re.compile(alternation({lexicon_key(w) for w in faq.complaints} - {""}) or r"(?!)")
        # a not-covered group's whole-message phrases (questions about the assistant itself: 你是机器人吗)
        about = {lexicon_key(p): g.id for g in faq.not_covered for p in g.phrases}
        about.pop("", None)
        self._about = about
        self._about_re = _alternation(about)
        # the words such a message can hold at all: a message with any other word is neither (checked before the
        # exact test, which normalises what is left once the phrases are taken out: a second normalisation)
        self._whole_words = self._addressing.union(*(self.normalise(p).tokens for p in (*phrases, *about)))
        orders = {lexicon_key(p) for p in faq.bot_instructions} - {""}
        # Chinese phrases anywhere (spaces ignored); latin ones as whole words ("act as" is not in "contact a")
        self._orders_han = _alternation({p.replace(" ", ""): "" for p in orders if not p.isascii()})
        self._orders_latin = re.compile("|".join(rf"(?<![0-9a-z]){re.escape(p)}(?![0-9a-z])" for p in orders
                                                 if p.isascii()) or r"(?!)")

    def _build_tried(self, faq: FAQ) -> None:
        """Each entry's advice as a user reports having followed it (one pattern per step), and the phrases
        saying it did not help."""
        def pattern(phrases: Sequence[str]) -> re.Pattern[str]:
            return re.compile(alternation({_compact(lexicon_key(p)) for p in phrases} - {""}, whole_latin=True))
        self._tried = {e.id: tuple(pattern(step) for step in e.tried) for e in self.entries if e.tried}
        self._still_failing = pattern(faq.still_failing)

    def _outrun(self, raw: str, entry: str | None) -> bool:
        """The message reports every step of the entry's advice done and, after the first, that it still
        fails (清了缓存、等了两个小时，还是提示操作过于频繁): the answer would only repeat it."""
        steps = self._tried.get(entry or "")
        if not steps:
            return False
        text = _compact(raw)
        found = [p.search(text) for p in steps]
        return all(found) and bool(self._still_failing.search(text, min(m.start() for m in found)))

    # ---- helpers -----------------------------------------------------------

    def _contrast_words(self, n: Normalised, alternatives: bool = True) -> frozenset[str]:
        """The contrast words in a text, except one inside a longer word of it (支付 in 支付宝,
        几个 in 好几个: the word typed is another one); and, unless ``alternatives`` is false, the tags of the
        alternatives it names."""
        # a word is found within one clause (绑定微信 支付宝 names no 微信支付); a cue of its other sense may
        # stand across a clause's end (用QQ邮箱注册，提示IP受限)
        parts = n.full.split("\n")
        found = self._found(self._contrast, parts)
        named = self._found(self._alternatives_re if alternatives and self._alternatives else None, parts)

        def typed(w: str) -> bool:
            return not any(len(t) > len(w) and w in t for t in n.tokens)

        return frozenset(w for w in found if typed(w)) | frozenset(self._alternatives[w] for w in named if typed(w))

    def _with_alike(self, words: frozenset[str]) -> frozenset[str]:
        """``words`` with the contrast words differing from one of them only by a particle."""
        return words.union(*(self._alike.get(w, ()) for w in words))

    def _found(self, pattern: re.Pattern[str] | None, parts: list[str]) -> set[str]:
        """The words of ``pattern`` in the clauses ``parts``, except those with a cue of their other sense near."""
        found: set[str] = set()
        if pattern is not None:
            joined, offset = "".join(parts), 0
            for part in parts:
                found.update(m.group(0) for m in pattern.finditer(part)
                             if not self._other_sense(joined, m.group(0), offset + m.start(), offset + m.end()))
                offset += len(part)
        return found

    def _with_alternatives(self, asked: frozenset[str], intent: str) -> frozenset[str]:
        """An entry's contrast words from its questions and keywords, with the alternatives it is about:
        those its questions name when it belongs to their topic and names some; else all of them — an entry
        silent on the routes (or of another topic, where 同学 and 学历 are no route) does not contrast with a
        question naming one, while route 4's limit does with 同学协助最多能请几次. (Its answer names the other
        routes as what is left; what it is asked about is route 4.)"""
        everyone = self._all_alternatives
        return (asked - everyone) | (asked & self._alternative_tags.get(intent, frozenset()) or everyone)

    def _other_sense(self, full: str, word: str, at: int, to: int) -> bool:
        """A cue of the word (found at ``full[at:to]``)'s other sense (lexicon ``contrast_senses``) overlaps it
        or stands within ``SENSE_REACH`` characters of it."""
        cues = self._senses.get(word)
        if cues is None:
            return False
        start, end = at - SENSE_REACH, to + SENSE_REACH
        return any(c.start() < end and c.end() > start for c in cues.finditer(full, max(0, start - 20), end + 20))

    def _bare_other_senses(self, clauses: list[Clause], whole: Normalised) -> frozenset[str]:
        """Contrast words standing alone in their clause, beside no word the FAQ knows but modals (……弹出操作被禁止。……怎么才能解除？;
        找回密码在哪里点，……能不能告诉我大概在什么位置): such a clause asks about the story's object, so a cue of
        the word's other sense anywhere in the message (not only within ``SENSE_REACH`` characters) keeps it
        from contrasting."""
        if not self._senses or len(clauses) < 2 or not self._sense_re.search(whole.full):
            return frozenset()
        bare: set[str] = set()
        for c in clauses:
            found = [w for w in self._contrast_words(c.norm, alternatives=False) if w in self._senses]
            if found:
                inside = frozenset().union(*(self._sense_words[w] for w in found))
                if all(t in inside or t not in self._idf or t in _MODALS for t in c.norm.tokens):
                    bare.update(found)
        return frozenset(w for w in bare if self._senses[w].search(whole.full))

    def _asked_contrast(self, clauses: list[Clause], whole: Normalised) -> frozenset[str]:
        """The contrast words that change what a message of several clauses asks: those of its asking
        clauses (the whole's when none asks), another site or app named anywhere (lexicon
        ``other_services``: 我在智联招聘注册…，说手机号被用过了 is about 智联招聘), and what went wrong told
        anywhere when the question is only 怎么办 (lexicon ``symptoms``: ……收唔到短讯验证码，点算). Another contrast word
        in the story's narration (明天就要截止了，现在该怎么办; 我要崩溃了) does not change the question."""
        everywhere = self._contrast_words(whole)
        asking = [c.norm for c in clauses if c.asks]
        words = [t for c in asking for t in c.tokens]
        if not asking or words and not any(t in self._idf for t in words):
            return everywhere   # (a question in words the FAQ never uses, 正常吗, asks about the story itself)
        told = self._services if words else self._services | self._symptoms
        return self._contrast_words(merge(asking)) | (everywhere & told)

    def _services_named(self, whole: Normalised) -> frozenset[str]:
        """Another site or app named anywhere in the message (lexicon ``other_services``)."""
        return self._contrast_words(whole) & self._services

    def weight(self, token: str) -> float:
        """How much a token says about what was asked (0..1).

        General informativeness (rarity in jieba's dictionary) scaled by how specific the word
        is within the FAQ; a word the FAQ never uses keeps at least ``unknown_floor``.
        """
        cfg = self.config
        if len(token) == 1 or token.isdigit():
            return cfg.short_token_weight
        general = self.normalise.informativeness(token)
        g = (cfg.ascii_unknown_weight if general is None and token.isascii()
             else min(1.0, max(cfg.min_general_weight, general or 1.0)))
        if token in self._idf:
            return g * (cfg.idf_base + cfg.idf_share * self._idf[token])
        return max(g, cfg.unknown_floor)

    # ---- matching ----------------------------------------------------------

    def match(self, text: Any) -> MatchResult:
        """Rank the FAQ entries for ``text`` and decide. Never raises on any str. A pure function of
        ``text`` for this matcher and its ``config``: the last ``MATCH_CACHE`` distinct texts' results
        are kept (help-desk questions repeat; a reload builds a new matcher) — only texts with nothing
        personal data needs (no digit, e-mail or link: what handlers.privacy would mask), so no
        ID number, phone or code stays in memory after its turn."""
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        if _MAYBE_PERSONAL.search(text):
            return self._match(text)
        config, cached = self.__dict__.get("_cached_match") or (None, None)
        if config is not self.config:   # first call, or the config was replaced (calibration)
            config, cached = self.config, functools.lru_cache(MATCH_CACHE)(self._match)
            self.__dict__["_cached_match"] = (config, cached)
        return cached(text)

    def follow_up(self, text: str, after: str) -> MatchResult:
        """``text`` read as it follows the answer to the entry ``after`` (学籍呢, 那兵役登记呢, 不想绑微信呢: what they
        ask is said only with the question answered before). The message is matched again after that entry's
        question; what the two ask together is the answer when the message alone is none and its entry uses the
        message's own words — ``follow_coverage`` of their weight (a follow-up adding a word the entry never uses,
        要多少钱, 换QQ邮箱呢, asks something it does not answer). As ``match`` otherwise."""
        result = self.match(text)
        at = self._position.get(after)
        if result.decision == "answer" or at is None:   # (新号能绑微信吗 says its subject: a question of its own)
            return result
        joined = self.match(f"{self.entries[at].question.rstrip('？?')}，{text}")
        if joined.decision != "answer" or joined.entry is None:
            return result
        own = [t for t in self.normalise(text).tokens if not t.isdigit()]   # (1: a button's number typed, no word)
        if not own:   # no word of a subject: a question (那咋整, 为什么会这样) follows; ？, 哈哈哈 or 😭 asks nothing
            said = clean(text)
            asks = is_question(said) and any(ch.isalpha() for ch in said)
            return dataclasses.replace(joined, asks_again=True) if asks else result
        weights = {t: self.weight(t) for t in own}
        ei = self._position[joined.entry]
        explained = math.fsum(w for t, w in weights.items() if self._uses(ei, t)) / math.fsum(weights.values())
        return joined if explained >= self.config.follow_coverage else result

    def _uses(self, ei: int, word: str) -> bool:
        """Entry ``ei`` uses the word, or a word of it holds the word (征兵 of 征兵网; one character only at a word's
        start: 绑 of 绑定)."""
        return word in self._vocab[ei] or (word if len(word) > 1 else "|" + word) in self._vocab_text[ei]

    def _match(self, text: str) -> MatchResult:
        clauses = self.normalise.clauses(text)
        raw = "".join(c.raw for c in clauses)
        result = self._match_clauses(clauses, raw, self._other_prompt(text))
        if self._outrun(raw, result.entry):   # what the answer advises, the user has done: a person's turn
            return MatchResult("out_of_scope", OUT_OF_SCOPE, None, result.score, result.candidates, outrun=result.entry)
        if all(t in self._idf for c in clauses for t in c.norm.tokens):   # (哈哈: no word at all)
            return dataclasses.replace(result, faq_words=True)
        return result

    def _other_prompt(self, text: str) -> frozenset[str]:
        """A prompt the message quotes (提示“学号不存在”) that is none the FAQ answers (lexicon ``prompts``):
        the message asks about that one, which no entry answers — as a contrast word no entry has."""
        if not self._prompts or not _QUOTE_MARKS.search(text):
            return frozenset()
        for m in _QUOTED.finditer(clean(text)):
            said = self.normalise(m.group("quoted") or m.group("after")).full
            if said and not self._names_prompt(said):
                return _OTHER_PROMPT
        return frozenset()

    def _names_prompt(self, full: str) -> bool:
        """The (normalised, full) text holds one of the prompts the FAQ answers (lexicon ``prompts``: 已被注册, 受限)."""
        return any(p in full for p in self._prompts)

    def _match_clauses(self, clauses: list[Clause], raw: str, prompt: frozenset[str] = frozenset()) -> MatchResult:
        if self._orders_han.search(raw.replace(" ", "")) or self._orders_latin.search(" ".join(raw.split())):
            return MatchResult("out_of_scope", OUT_OF_SCOPE, None, 0.0, ())
        data = [self._gives_value(c) for c in clauses]
        if any(data) and all(d or self._small_talk(c) for d, c in zip(data, clauses)):
            # data given, with small talk at most (我的手机号13812345678; 123456，谢谢): nothing asked yet
            return MatchResult("out_of_scope", OUT_OF_SCOPE, None, 0.0, ())
        if self._whole_words.issuperset(t for c in clauses for t in c.norm.tokens) \
                and not self.normalise.gives_value(raw):   # (123456 在线等: a value is no small talk)
            group = self._group_phrases_only(raw)
            if group:
                return MatchResult("out_of_scope", OUT_OF_SCOPE, None, 1.0, (), group)
            smalltalk = self._smalltalk_only(raw)
            if smalltalk:
                return MatchResult("answer", smalltalk, self._smalltalk_entry[smalltalk], 1.0, ())
        clauses = self._question_only(clauses)
        # a last clause saying what the user does not want (…能重置吗，不想重新注册) is not what is asked
        if len(clauses) > 1 and _UNWANTED.match(clauses[-1].raw.strip()) and any(c.norm.tokens for c in clauses[:-1]):
            clauses = clauses[:-1]
        q = merge([c.norm for c in clauses])
        if not q.tokens:
            return MatchResult("out_of_scope", OUT_OF_SCOPE, None, 0.0, (), feels=any(map(self._complaint, clauses)))
        clauses = _prompt_as_question(clauses, lambda c: bool(self._contrast_words(c.norm, alternatives=False)))
        long = len(q.tokens) > self.config.focus_tokens
        windows = self._question_windows(clauses, long=long)
        referred = self._bare_other_senses(clauses, q)
        services = self._services_named(q) if windows else frozenset()
        if not windows:
            asked = q
        elif long:   # in a long message, only the question's own contrast words change what is asked
            asked = self._asking_sentence(clauses, windows[-1])
        else:        # in a short one, all of it to its question: a remark after it (…？这网站太难用了) is not asked
            asked = merge([c.norm for c in clauses[:_last_asking(clauses) + 1]])
        contrast = (self._contrast_words(asked) | services) - referred - self._asked_in_passing(clauses) | prompt
        ranked = self._rank(q.text, q.tokens, contrast)
        exact = self._exact.get(q.text, -1)
        if exact >= 0 and _unlike(self._exact_contrast.get(q.text), self._contrast_words(q, alternatives=False)):
            exact = -1   # the same words once normalised, not the same question (审核没通过 / 审核通过之后)
        if exact >= 0:  # the user typed one of the FAQ's (or the catalogue's) own questions
            ranked = [(1.0, exact)] + [(min(s, 0.99), ei) for s, ei in ranked if ei != exact]
            return self._decide(ranked, exact=True)
        if windows:
            ranked = self._with_windows(windows, ranked, frozenset(q.tokens), referred, services | prompt)
        line = self._answer_line(len(q.tokens))
        ranked = self._paired_first(ranked, q.text, frozenset(q.tokens))
        decided = self._decide(ranked, line=line, asked=frozenset(q.tokens), qtext=q.text)
        if decided.decision != "answer" and self.config.clause_weight and len(clauses) > 1 \
                and len(q.tokens) >= self.config.clause_min_tokens and ranked and ranked[0][1] < self._n_faq:
            # (an answer already given stays the same when its score is lifted, and so does a message
            # nearest a not-covered question: out of scope either way; not worth the work)
            return self._decide(self._with_clauses(clauses, ranked, q, self._asked_contrast(clauses, q) - referred | prompt, referred),
                                line=line, asked=frozenset(q.tokens), qtext=q.text)
        return decided

    def _asked_in_passing(self, clauses: list[Clause]) -> frozenset[str]:
        """The attributes asked before a last question that asks how to do something and no attribute (……是不是因为我之前
        注册过？怎么才能注册成功？): the guess was in passing, what the user needs is the how, so they change nothing."""
        last = _last_asking(clauses)
        if last < 1 or not _HOW.search(clauses[last].raw) \
                or self._contrast_words(clauses[last].norm, alternatives=False) & self._asking:
            return frozenset()
        return self._contrast_words(merge([c.norm for c in clauses[:last]]), alternatives=False) & self._asking

    def _question_only(self, clauses: list[Clause]) -> list[Clause]:
        """The clauses without what is said around the question: a greeting before it (客服在吗？…, 老师好，…, 客服，…), other
        small talk or who asks before it (好的谢谢，…; 我是家长，帮孩子问一下，…: lexicon ``askers``), and small talk,
        who asks or a cry after it (…怎么办？谢谢, …吗？急！, …在线等). Before or after no question, small talk is
        what is said (好的谢谢，我去试试). A complaint or data given is left out anywhere (``_without_remarks``)."""
        def asked(part: list[Clause]) -> bool:
            return any(c.asks and c.norm.tokens for c in part)

        clauses = self._without_remarks(clauses)
        n = len(clauses)
        talk = [self._small_talk(c) for c in clauses]
        called = [self._called(c) for c in clauses]
        aside = [t is not None or self._asker(c) or k for t, c, k in zip(talk, clauses, called)]
        lead = next((i for i in range(n) if talk[i] != "greeting" and not called[i]), n)
        if lead < n and asked(clauses[lead:]):
            lead = next((i for i in range(n) if not aside[i]), n)
        if lead == n:
            lead = 0
        tail = n
        while tail - lead > 1 and (aside[tail - 1] or not clauses[tail - 1].norm.tokens and not clauses[tail - 1].asks):
            tail -= 1
        if tail == n or (not asked(clauses[lead:tail]) and any(talk[i] != "greeting" for i in range(tail, n))):
            tail = n   # (a greeting after a story is left out all the same: 忘记密码了，怎么没人回复)
        return clauses[lead:tail]

    def _called(self, clause: Clause) -> bool:
        """The clause only calls the desk or the bot (客服，…; 机器人，…): a greeting, not a request for a person."""
        toks = clause.norm.tokens
        return bool(toks) and self._addressing.issuperset(toks) and not self._site.issuperset(toks)

    def _asker(self, clause: Clause) -> bool:
        """The clause says only who asks and for whom (我是家长，帮孩子问一下: lexicon ``askers``)."""
        return bool(clause.norm.tokens) and self._askers.issuperset(clause.norm.tokens)

    def _without_remarks(self, clauses: list[Clause]) -> list[Clause]:
        """The clauses less complaints and data given (either asks nothing of ours), where any other clause is left. The
        question mark after a value is its sentence's (…密码是abc456？): the clause before it asks."""
        kept: list[Clause] = []
        for c in clauses:
            if self._complaint(c):
                continue
            if self._gives_value(c):
                if c.asks and kept:
                    kept[-1] = dataclasses.replace(kept[-1], asks=True)
                continue
            kept.append(c)
        return kept or clauses

    def _gives_value(self, clause: Clause) -> bool:
        """The clause only gives a value, named by one word at most (我手机号是13812345678, 用户名zhangsan2001？), or the
        user's name (我叫张三): data the user offers, not what is asked. A prompt the page showed is no word naming a
        value (操作过于频繁怎么办 <link> asks about the prompt)."""
        if self.normalise.gives_name(clause.raw):
            return True
        return len(clause.norm.tokens) <= 1 and self.normalise.gives_value(clause.raw) \
            and not self._names_prompt(clause.norm.full)

    def _complaint(self, clause: Clause) -> bool:
        """The clause only says how the user feels (这网站太难用了, 什么垃圾网站: lexicon ``complaints``, also as the
        synonyms write it: 效率太低 → 心累), even asking."""
        return not clause.norm.tokens and bool(self._complaints.search(clause.raw)
                                               or self._complaints.search(clause.norm.full))

    def _small_talk(self, clause: Clause) -> str | None:
        """The small-talk intent of a clause made only of small talk (客服在吗: greeting; 谢谢: thanks), else None."""
        if not self._whole_words.issuperset(clause.norm.tokens):
            return None
        return self._smalltalk_only(clause.raw)

    def _smalltalk_only(self, raw: str) -> str | None:
        """The small-talk intent when the whole message is small talk (greetings, thanks,
        goodbyes, "are you there"), fillers and question particles; else None."""
        last = self._made_of(raw, self._smalltalk_re, self._smalltalk)
        return last if last in self._smalltalk_entry else None

    def _group_phrases_only(self, raw: str) -> str | None:
        """The not-covered group whose phrases make up the whole message (with stopwords, small talk
        and addressing words: 你好，你是机器人还是真人？), else None. A message asking for something
        besides (你是机器人吗？我要人工) is matched as usual."""
        return self._made_of(raw, self._about_re, self._about)

    def _made_of(self, raw: str, pattern: re.Pattern[str], meaning: Mapping[str, str]) -> str | None:
        """What the last phrase of ``pattern`` found means, when the message holds one and nothing besides
        its phrases, small talk, stopwords and addressing words; else None."""
        found = [m.group(0) for m in pattern.finditer(raw)]
        if not found:
            return None
        rest = self._smalltalk_re.sub(" ", pattern.sub(" ", raw))
        if set(self.normalise(rest).tokens) - self._addressing:
            return None
        return meaning[found[-1]]

    @staticmethod
    def _question_windows(clauses: list[Clause], long: bool) -> list[Normalised]:
        """A long message: from the last clause that asks something (alone, and with the clause
        before it) to the end. Any message where a complaint follows the question: the asking
        clause on its own too."""
        last = _last_asking(clauses)
        if len(clauses) < 2 or last < 0:
            return []
        spans = [(i, len(clauses)) for i in dict.fromkeys((last, max(0, last - 1)))] if long else []
        if last < len(clauses) - 1:
            spans.append((last, last + 1))
        return [w for w in (merge([c.norm for c in clauses[i:j]]) for i, j in spans) if w.tokens]

    @staticmethod
    def _asking_sentence(clauses: list[Clause], window: Normalised) -> Normalised:
        """The question window whose contrast words change what is asked: the clause before the
        asking one counts only within the same sentence (想把原来的微信解绑，在哪操作？), not across a full
        stop (……明天还要打印报告。怎么解除？: that is the story) unless it asks too (能改吗？改了会影响学历吗).""" 
        last = _last_asking(clauses)
        if last > 0 and clauses[last - 1].ends_sentence and not clauses[last - 1].asks:
            # to the end of the question's own sentence: what follows it is story too (……有几种解决办法？我想挑最快的那个)
            end = next((j + 1 for j in range(last, len(clauses)) if clauses[j].ends_sentence), len(clauses))
            return merge([c.norm for c in clauses[last:end]])
        return window

    def _with_windows(self, windows: list[Normalised], ranked: list[tuple[float, int]],
                      whole: frozenset[str], referred: frozenset[str] = frozenset(),
                      services: frozenset[str] = frozenset()) -> list[tuple[float, int]]:
        """A long message usually ends in its question: an entry that fits the question
        clause gets credit for it, so the backstory does not dilute the question away. Another site named
        anywhere in the message (``services``) still counts (公务员局那个网站的密码忘了，能用学信网的找回密码吗)."""
        full = {ei: s for s, ei in ranked}
        best = dict(full)
        for w in windows:
            for s, ei in self._rank(w.text, w.tokens, (self._contrast_words(w) | services) - referred, whole):
                mixed = self.config.window_discount * (self.config.window_weight * s
                                                       + (1 - self.config.window_weight) * full.get(ei, 0.0))
                if mixed > best.get(ei, -1.0):
                    best[ei] = mixed
        return sorted(((s, ei) for ei, s in best.items()), reverse=True)[: self.config.prune_limit]

    def _with_clauses(self, clauses: list[Clause], ranked: list[tuple[float, int]],
                      whole: Normalised, contrast: frozenset[str],
                      referred: frozenset[str] = frozenset()) -> list[tuple[float, int]]:
        """A message of several clauses (a story, then "what now?", or a question, then the story): the
        topic is often carried by one informative clause while the others — situation, feelings, a generic question — add
        words no entry explains and dilute the whole's score below the answer line. The whole's
        ranking still decides *which* entry; each informative clause is scored alone, and the
        whole's best entry (``clause_span`` widens that to entries close to it) rises toward the
        score of a clause whose own best entry it is, by ``clause_weight``. Not where the message
        holds a contrast word the entry lacks: a story about 闪退 or 解绑 anywhere is not lifted
        toward an entry that never mentions it."""
        cfg = self.config
        scored = []
        for c in clauses:
            toks = set(c.norm.tokens)
            mass = math.fsum(self.weight(t) for t in toks)
            if mass >= cfg.clause_min_weight:
                scored.append((mass, c.norm))
        if not scored or sum(1 for c in clauses if c.norm.tokens) < 2:
            return ranked
        wset = frozenset(whole.tokens)
        full = {ei: s for s, ei in ranked}
        best_clause: dict[int, float] = {}
        for _, n in heapq.nlargest(cfg.clause_max, scored, key=operator.itemgetter(0)):
            # a clause speaks for its own best entry only (a side remark that merely mentions an
            # entry's word does not lift it)
            for s, ei in self._rank(n.text, n.tokens, self._contrast_words(n) - referred, wset)[:1]:
                if s > best_clause.get(ei, -1.0):
                    best_clause[ei] = s
        out = dict(full)
        floor = (ranked[0][0] if ranked else 0.0) - cfg.clause_span
        for ei, s in best_clause.items():
            if full.get(ei, 0.0) < floor or contrast - self._entry_contrast[ei]:
                continue
            base = full.get(ei, 0.0)
            if s > base:
                out[ei] = base + cfg.clause_weight * (s - base)
        return sorted(((s, ei) for ei, s in out.items()), reverse=True)[: cfg.prune_limit]

    def _preselect(self, keys: set[str], weights: Mapping[str, float]) -> dict[int, float]:
        """The questions sharing index keys (words, character bigrams) with the message, with the weight shared."""
        shared: dict[int, float] = defaultdict(float)
        for key in sorted(keys):
            postings = self._index.get(key, ())
            if len(postings) > self._max_postings:
                continue  # a word in most questions selects nothing (it still counts in scoring)
            w = weights.get(key, self.config.bigram_weight)
            for di in postings:
                shared[di] += w
        return shared

    def _rank(self, qtext: str, qtokens: tuple[str, ...], contrast: frozenset[str],
              whole: frozenset[str] = frozenset()) -> list[tuple[float, int]]:
        cfg = self.config
        qset = set(qtokens)
        weights = {t: self.weight(t) for t in qset}
        qweight = math.fsum(weights.values()) or 1.0
        # a long message carries narrative around its question: what an entry does not
        # explain weighs less there than in a short question, where it changes the question
        dilution = min(1.0, cfg.focus_tokens / len(qset)) ** cfg.dilution_power

        # pre-selection: docs sharing tokens, or character bigrams of the words the FAQ does
        # not know (where a typo or an odd word split may hide a known word); best first
        # (in the message's order, then sorted: the same sums in every process, whatever its hash seed)
        unknown = "".join(t for t in dict.fromkeys(qtokens) if t not in self._idf)
        keys = qset.union(_keys(unknown, ()))
        shared = self._preselect(keys, weights)
        if not shared:   # words no question uses as a word (频繁: the questions say 操作过于频繁) select by their bigrams
            shared = self._preselect(_keys("".join(dict.fromkeys(qtokens)), ()) - keys, weights)
        if not shared:
            return []
        doc_ids = sorted(shared, key=shared.__getitem__, reverse=True)[: cfg.prune_limit]   # = heapq.nlargest, in C

        best_sim: dict[int, float] = {}
        unlike: set[int] = set()   # entries whose closest question holds a contrast word the message lacks
        entry_docs: dict[int, list[int]] = defaultdict(list)
        # (the loops below run for every pre-selected question: names they use are bound once here)
        rows, weight_of, asked = self._doc_rows, weights.__getitem__, contrast - self._all_alternatives
        w_f1, w_char, qlen = cfg.w_token_f1, cfg.w_char, len(qtext)
        partial_min, partial_ratio = cfg.partial_min_chars, cfg.partial_length_ratio
        for di in doc_ids:
            entry, text, tokens, dweight = rows[di]
            entry_docs[entry].append(di)
            common = math.fsum(map(weight_of, qset & tokens))
            if common:
                p, r = common / dweight, common / qweight
                f1 = 2 * p * r / (p + r)
            else:
                f1 = 0.0
            char = fuzz.ratio(qtext, text) / 100.0
            if len(text) >= partial_min and qlen > len(text) * partial_ratio:
                char = max(char, cfg.partial_discount * fuzz.partial_ratio(text, qtext) / 100.0)
            sim = w_f1 * f1 + w_char * char
            penalised = text == qtext and _unlike(self._doc_contrast[di], asked)
            if penalised:
                # the same words once normalised, not the same question: a not-covered question about what the
                # message does not say (审核没通过 for 审核通过之后…: normalising drops the negation, the contrast
                # word keeps it) is not its neighbour
                sim *= cfg.contrast_penalty
            if sim > best_sim.get(entry, -1.0):
                best_sim[entry] = sim
                (unlike.add if penalised else unlike.discard)(entry)

        first = []  # (score before the TF-IDF blend, contrast factor, entry)
        account = self._account_words.intersection(whole or qset)
        for ei, sim in best_sim.items():
            covered = math.fsum(map(weight_of, filter(self._vocab[ei].__contains__, weights)))
            coverage = covered / (covered + (qweight - covered) * dilution)
            bonus = cfg.keyword_bonus if any(k in qtext for k in self._keywords[ei]) or self._names_two(ei, qtext) else 0.0
            factor = cfg.contrast_penalty if contrast - self._entry_contrast[ei] or ei in unlike else 1.0
            if self._anchors[ei] and not (self._anchors[ei] & (whole or qset)):
                factor *= cfg.anchor_penalty
            # a not-covered group about a platform's own business (学职平台做职业测评) asked about the account for it
            # (学职平台用学信网账号能登吗): the group's questions never use the account word the message uses
            if account and ei >= self._n_faq and not account <= self._vocab[ei]:
                factor *= cfg.anchor_penalty
            first.append((min(1.0, cfg.w_coverage * coverage + cfg.w_similarity * sim + bonus), factor, ei))

        # the second signal, character n-gram TF-IDF cosine (the entry's closest question), is
        # computed only where it can matter: an entry that even at cosine 1 stays more than the
        # clarify margin below the best entry at cosine 0 can be neither the answer nor its rival
        # (nor among the candidates shown: the few best by their highest possible score get it too)
        w = cfg.w_tfidf
        floor = max(f * (1 - w) * b for b, f, _ in first) - cfg.clarify_margin
        shown = heapq.nlargest(cfg.max_candidates + 2, (f * ((1 - w) * b + w) for b, f, _ in first))[-1]
        qvec = self._tfidf.vector(qtext) if w else {}
        scored = []
        least = min(floor, shown)
        for base, factor, ei in first:
            best = factor * ((1 - w) * base + w)
            cos = self._tfidf.best_cosine(qvec, entry_docs[ei]) if w and best >= least else 0.0
            scored.append((factor * ((1 - w) * base + w * cos), ei))
        scored.sort(reverse=True)
        return scored[: cfg.prune_limit]

    def _paired_first(self, ranked: list[tuple[float, int]], qtext: str,
                      asked: frozenset[str]) -> list[tuple[float, int]]:
        """An entry naming two of its paired keywords (兵役登记 and 学信网: one account for both) within
        ``paired_span`` of the best entry, which names none, is the answer: the pair says what is asked —
        unless the message uses an account word the entry never does (学信网的密码想不起来: recovering it)."""
        span = self.config.paired_span
        if not span or not ranked or ranked[0][1] >= self._n_faq or self._names_two(ranked[0][1], qtext):
            return ranked
        top, account = ranked[0][0], self._account_words & asked
        for s, ei in ranked[1:]:
            if s < top - span:
                break
            if ei < self._n_faq and self._names_two(ei, qtext) and account <= self._vocab[ei]:
                return [(min(1.0, top + self.config.clarify_margin), ei)] + [(r, e) for r, e in ranked if e != ei]
        return ranked

    def _names_two(self, ei: int, qtext: str) -> bool:
        """The message names two different paired keywords of the entry (征兵网 and 考研: one account for both)."""
        paired = self._paired[ei]
        return paired is not None and len(set(paired.findall(qtext))) > 1

    def _answer_line(self, words: int) -> float:
        """The answer threshold for a message of ``words`` words: a long message scores lower for the
        same certainty (its story adds words no entry explains), so it may have a line of its own."""
        cfg = self.config
        if cfg.long_answer_threshold is not None and words >= cfg.long_tokens:
            return cfg.long_answer_threshold
        return cfg.answer_threshold

    def _narrower(self, rival: int, top: int, asked: frozenset[str]) -> bool:
        """The rival explains only part of what the best entry explains of the message (重新注册一个新账号，
        以前的学籍学历信息还保留吗: how to register again explains 重新注册 and 账号, the records entry those and
        学籍 学历 too), and what it leaves out says something (``specific_weight``): not a choice to offer."""
        mine, theirs = asked & self._vocab[top], asked & self._vocab[rival]
        return theirs < mine and math.fsum(self.weight(t) for t in mine - theirs) >= self.config.specific_weight

    def _decide(self, ranked: list[tuple[float, int]], exact: bool = False, line: float | None = None,
                asked: frozenset[str] = frozenset(), qtext: str = "") -> MatchResult:
        cfg = self.config
        answer_line = cfg.answer_threshold if line is None else line
        clarify_line = min(cfg.clarify_threshold, answer_line)
        n_faq = self._n_faq
        candidates = tuple(itertools.islice((Candidate(self.entries[ei].id, self.entries[ei].intent, round(s, 4))
                                             for s, ei in ranked if ei < n_faq), max(cfg.max_candidates, 1)))
        if not ranked:
            return MatchResult("out_of_scope", OUT_OF_SCOPE, None, 0.0, ())
        top_score, top = ranked[0]
        if top >= n_faq:  # nearest is a not-covered question: never answered from the FAQ
            group = self._groups[top - n_faq] if top_score >= cfg.suggest_threshold else None
            return MatchResult("out_of_scope", OUT_OF_SCOPE, None, round(top_score, 4), candidates, group)
        top_entry = self.entries[top]
        rival, rival_ei = next(((s, ei) for s, ei in ranked[1:] if self._targets[ei].intent != top_entry.intent),
                               (0.0, -1))
        # one word (身份证, 学信网, 邮箱): every entry using it explains all of it, and the shortest question ranks first;
        # a rival of another topic close to it is a choice to offer, never a near miss to refuse
        one_word = len(asked) == 1
        margin = cfg.one_word_margin if one_word else cfg.clarify_margin
        if not exact and not one_word and rival_ei >= n_faq and top_score - rival < cfg.clarify_margin \
                and not self._names_two(top, qtext):
            # a not-covered question as close as the best entry: a near miss, not a choice to offer (unless the message
            # names two of the entry's paired keywords: 图像校对 and 考研 ask whether one account serves both)
            group = self._groups[rival_ei - n_faq] if rival >= cfg.suggest_threshold else None
            return MatchResult("out_of_scope", OUT_OF_SCOPE, None, round(top_score, 4), candidates, group)
        if exact or (top_score >= answer_line and (top_score - rival >= margin
                                                   or rival_ei >= 0 and self._narrower(rival_ei, top, asked))):
            return MatchResult("answer", top_entry.intent, top_entry.id, round(top_score, 4), candidates)
        if top_score >= clarify_line:
            return MatchResult("clarify", top_entry.intent, top_entry.id, round(top_score, 4), candidates)
        return MatchResult("out_of_scope", OUT_OF_SCOPE, None, round(top_score, 4), candidates)

    @classmethod
    def from_settings(cls, cfg: Mapping[str, Any]) -> "Matcher":
        """Load the FAQ named in config and build the matcher with config thresholds."""
        from faq.loader import load_faq

        return cls(load_faq(cfg), MatcherConfig.of(cfg))


# asking how to do something (怎么才能注册成功, 点样处理, 有办法解决吗), not what happened (怎么回事) or will (会怎样)
_HOW = re.compile(r"怎么(?!回事|样了)|(?<!会)怎样|如何|咋(?!回事)|点样|点算|(有|有没有|有什么|有冇)(办法|方法)|how (?:do|can|to)")
_UNWANTED = re.compile(r"(?:我|也|并|就|是|都|还|又|实在|真的|暂时)*(?:不想|不要|不用|不打算|不愿意?|不希望|不需要|懒得)")


# particles that change nothing a contrast word says (客服电话是多少 asks what 客服电话多少 asks)
_PARTICLES = re.compile("[是的吗呢了啊呀么嘛]")
_HOW_WORDS = re.compile("如何|怎样|怎么")
_OF = re.compile("(?<!别)的(?=.)")


def _forms(word: str) -> set[str]:
    """The other forms a contrast word is typed in: without 的, and asking how in other words."""
    forms = {_OF.sub("", word)}   # (a 的 ending the word or in 别的 says something: 导致的, 绑了别的)
    if _HOW_WORDS.search(word):
        forms |= {_HOW_WORDS.sub(how, word) for how in ("如何", "怎么", "怎样")}
    return forms - {word}


def _last_asking(clauses: list[Clause]) -> int:
    """The index of the last clause that asks something, -1 where none does."""
    return max((i for i, c in enumerate(clauses) if c.asks), default=-1)


def _unlike(stored: frozenset[str] | None, asked: frozenset[str]) -> bool:
    """A question that reads as the message once normalised but asks something else: the two hold
    contrast words and share none (审核没有通过 / 审核通过之后: 不, 没有 are stopwords). ``None``: not
    compared (an FAQ question, whose entry's answer speaks for it)."""
    return stored is not None and bool(stored or asked) and not stored & asked


def _plain(markdown: str) -> str:
    """Answer text without Markdown link targets (URLs are not words users type)."""
    return re.sub(r"\]\([^)]*\)", "]", markdown)


def _compact(text: str) -> str:
    """``text`` without the spaces beside a CJK character (清了 缓存 is 清了缓存; "clear cache" keeps its own)."""
    return _SPACE_BY_CJK.sub("", text)


_SPACE_BY_CJK = re.compile(r"(?<=[^\x00-\x7f]) +| +(?=[^\x00-\x7f])")


def _alternation(phrases: Mapping[str, str]) -> re.Pattern[str]:
    """One regex matching any of ``phrases``, longest first (never matches when empty)."""
    return re.compile(alternation(phrases))


class _CharTfidf:
    """Character 1–3-gram TF-IDF vectors of the indexed questions (built once); cosine of a
    query against one of them. Grams the index never saw still weigh in the query's norm,
    so text about something else lowers the cosine."""

    def __init__(self, texts: list[str]) -> None:
        grams = [_grams(t) for t in texts]
        df: dict[str, int] = defaultdict(int)
        for g in grams:
            for k in g:
                df[k] += 1
        n = len(texts)
        self._idf = {k: math.log((n + 1) / (d + 1)) + 1.0 for k, d in df.items()}
        self._unseen = math.log(n + 1) + 1.0
        vectors = [self._unit({k: c * self._idf[k] for k, c in g.items()}) for g in grams]
        self._vectors = [(tuple(v), tuple(v.values())) for v in vectors]  # (grams, weights) of each text

    @staticmethod
    def _unit(v: dict[str, float]) -> dict[str, float]:
        norm = math.sqrt(sum(map(operator.mul, v.values(), v.values()))) or 1.0
        return {k: w / norm for k, w in v.items()}

    def vector(self, text: str) -> dict[str, float]:
        idf, unseen = self._idf, self._unseen
        return self._unit({k: c * idf.get(k, unseen) for k, c in _grams(text).items()})

    def cosine(self, query: dict[str, float], doc: int) -> float:
        return self.best_cosine(query, (doc,))

    def best_cosine(self, query: dict[str, float], docs: Sequence[int]) -> float:
        """The highest cosine of ``query`` with any of ``docs`` (one call per entry, not per question); a
        question is short: its grams are walked, all in C."""
        get, zero = query.get, itertools.repeat(0.0)
        return max(sum(map(operator.mul, weights, map(get, grams, zero)))
                   for grams, weights in map(self._vectors.__getitem__, docs))


def _grams(text: str) -> dict[str, int]:
    """How often each character 1-, 2- and 3-gram occurs, in order of first appearance (1-grams first)."""
    return Counter(text[i:i + n] for n in (1, 2, 3) for i in range(len(text) - n + 1))


def _keys(text: str, tokens: tuple[str, ...]) -> set[str]:
    """Index keys: tokens and character bigrams (bigrams catch typos that split words)."""
    keys = set(tokens)
    keys.update("\x00" + text[i:i + 2] for i in range(len(text) - 1))
    return keys
