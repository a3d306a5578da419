"""How often what users wrap around a question changes the matcher's decision.

    python benchmarks/robustness.py [--only NAME ...] [FILE.yaml ...]

People greet, apologise for the bother or call the desk before they ask (客服在吗？…, 不好意思，…, 客服，…), thank or cry
out after (…？谢谢, …？急！), say who is asking (我是家长，帮孩子问一下，…), complain (…？这网站太难用了) or that no one
replies (…，怎么没人回复), hum or send a face (emmm，…; …？[捂脸] as WeChat sends it), give their phone number or
e-mail address unasked, type a whole story without punctuation or take an input method's wrong character of the
right sound (蜜码) or a character twice (注注册). None of that changes the question. For every question of the data
the matcher gets right, each variant below is matched as well; a variant *breaks* it when an in-scope question no
longer gets its intent, or an out-of-scope one is no longer out of scope.
Printed per variant: broken / right, in scope and out of scope.

Default data: the development sets in this folder (heldout*.yaml less ``calibrate.RESERVED``: the
reserved sets are scored before and after a change only) and ../shared/eval/dev.yaml when it is there.
The variants are written here from general chat habits, not from any evaluation set; a change that
touches matching re-runs this beside `bot.py eval` (README: Measuring).
"""
from __future__ import annotations

import argparse
import functools
import re
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import opencc  # noqa: E402

import settings  # noqa: E402
from calibrate import RESERVED  # noqa: E402
from intents.cli import load_items  # noqa: E402
from intents.matcher import Matcher  # noqa: E402
from intents.types import OUT_OF_SCOPE  # noqa: E402

SMALL_TALK = {"greeting", "thanks", "goodbye", "human_agent"}   # whole-message intents: nothing to wrap
_TRADITIONAL = opencc.OpenCC("s2t")
_PUNCTUATION = re.compile(r"[，。？！、,.?!；;：:\s…~]")


def _question(text: str) -> str:
    """The text with its final question mark or full stop taken off (a variant puts its own back)."""
    return text.rstrip("？?。.!！ ")


VARIANTS: dict[str, tuple[str, Callable[[str], str]]] = {
    "greeting": ("你好，… before it", lambda t: "你好，" + t),
    "are_you_there": ("客服在吗？… before it", lambda t: "客服在吗？" + t),
    "calling": ("客服，… before it", lambda t: "客服，" + t),
    "apology": ("不好意思，… before it", lambda t: "不好意思，" + t),
    "thanks_first": ("好的谢谢，… before it", lambda t: "好的谢谢，" + t),
    "asker": ("我是家长，帮孩子问一下，… before it", lambda t: "我是家长，帮孩子问一下，" + t),
    "candidate": ("我是今年的考生，… before it", lambda t: "我是今年的考生，" + t),
    "take_a_look": ("帮我看看，… before it", lambda t: "帮我看看，" + t),
    "exam_context": ("今年考研，… before it", lambda t: "今年考研，" + t),
    "thanks_after": ("…？谢谢", lambda t: _question(t) + "？谢谢"),
    "urgent": ("…？急！", lambda t: _question(t) + "？急！"),
    "waiting": ("… 在线等", lambda t: _question(t) + " 在线等"),
    "still_there": ("…？在吗", lambda t: _question(t) + "？在吗"),
    "no_reply": ("…，怎么没人回复", lambda t: _question(t) + "，怎么没人回复"),
    "asker_after": ("…？我是家长", lambda t: _question(t) + "？我是家长"),
    "complaint": ("…？这网站太难用了", lambda t: _question(t) + "？这网站太难用了"),
    "chat_mark": ("emmm，… before it", lambda t: "emmm，" + t),
    "emoji_code": ("…？[捂脸] (WeChat's emoji as text)", lambda t: _question(t) + "？[捂脸]"),
    "gives_data": ("我手机号是13812345678，… before it", lambda t: "我手机号是13812345678，" + t),
    "gives_email": ("我的邮箱是zhangsan@qq.com，… before it", lambda t: "我的邮箱是zhangsan@qq.com，" + t),
    "traditional": ("in traditional characters", lambda t: _TRADITIONAL.convert(t)),
    "run_on": ("its punctuation taken out (Chinese only)", lambda t: _PUNCTUATION.sub("", t)),
}


class _Slips:
    """Slips in a word the lexicon knows (its domain words and the words its synonyms read as), one per text, the word
    and the character picked from the text's own hash so every run makes the same slips:
    - a homophone: the character typed as the most frequent other character of the same sound, as an input method's
      first candidate often is (密码 → 蜜码 or 米码, 手机号 → 手鸡号);
    - a doubled character: the character typed twice (重新注注册, 账账号)."""

    MIN_FREQ = 1000   # a character at least this frequent alone in jieba's dictionary is one an input method offers

    def __init__(self) -> None:
        from pypinyin import lazy_pinyin

        from faq.loader import load_faq
        from intents.normalize import _base_tokenizer, alternation

        faq = load_faq(settings.load())
        words = {w for w in (*faq.domain_words, *faq.synonyms.values()) if re.fullmatch(r"[\u4e00-\u9fff]{2,6}", w)}
        self._words = re.compile(alternation(words))
        freq = _base_tokenizer().FREQ
        chars = sorted((ch for ch, f in freq.items() if len(ch) == 1 and "\u4e00" <= ch <= "\u9fff"
                        and f >= self.MIN_FREQ), key=lambda ch: -freq[ch])
        self._reading = lambda ch: lazy_pinyin(ch)[0]
        self._by_sound: dict[str, list[str]] = {}
        for ch in chars:
            self._by_sound.setdefault(self._reading(ch), []).append(ch)

    def _picked(self, text: str) -> tuple[int, int, int] | None:
        """(where the picked word starts, its length, the first character to try), or None where no word is known."""
        found = list(self._words.finditer(text))
        if not found:
            return None
        pick = zlib.crc32(text.encode())
        m = found[pick % len(found)]
        return m.start(), len(m.group(0)), pick // len(found)

    def homophone(self, text: str) -> str | None:
        """The text with one homophone slip, or None where it names no known word or none of its characters has one."""
        picked = self._picked(text)
        if picked is None:
            return None
        start, n, first = picked
        for k in range(n):
            at = start + (first + k) % n
            other = next((ch for ch in self._by_sound.get(self._reading(text[at]), ()) if ch != text[at]), None)
            if other:
                return text[:at] + other + text[at + 1:]
        return None

    def doubled(self, text: str) -> str | None:
        """The text with one character of a known word typed twice, or None where it names no known word."""
        picked = self._picked(text)
        if picked is None:
            return None
        start, n, first = picked
        at = start + first % n
        return text[:at] + text[at] + text[at:]


@functools.cache
def _slips() -> _Slips:
    return _Slips()


VARIANTS["homophone"] = ("one known word's character mistyped (蜜码)", lambda t: _slips().homophone(t) or t)
VARIANTS["doubled"] = ("one known word's character typed twice (注注册)", lambda t: _slips().doubled(t) or t)


def applies(name: str, text: str) -> bool:
    """A variant that would not change the text, or (run_on) would glue latin words together, is skipped."""
    if name == "run_on":
        return not re.search(r"[A-Za-z]{2,}", text) and bool(_PUNCTUATION.search(text))
    if name in ("homophone", "doubled"):
        return getattr(_slips(), name)(text) is not None
    return True


def broken(matcher: Matcher, want: str, text: str) -> bool:
    result = matcher.match(text)
    return result.decision != "out_of_scope" if want == OUT_OF_SCOPE else result.intent != want


def main() -> int:
    here = Path(__file__).resolve().parent
    default = [str(p) for p in sorted(here.glob("heldout*.yaml")) if p.name not in RESERVED]
    dev = ROOT.parent / "shared" / "eval" / "dev.yaml"
    default += [str(dev)] if dev.exists() else []
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*", default=default)
    ap.add_argument("--only", action="append", choices=sorted(VARIANTS), help="run only this variant (repeatable)")
    args = ap.parse_args()
    reserved = sorted({Path(f).name for f in args.files} & RESERVED)
    if reserved:
        print(f"robustness: {', '.join(reserved)} is scored before and after only; never tune on it", file=sys.stderr)
        return 2

    variants = {name: v for name, v in VARIANTS.items() if not args.only or name in args.only}

    matcher = Matcher.from_settings(settings.load())
    items = [i for f in args.files for i in load_items(f) if i["intent"] not in SMALL_TALK]
    right = [i for i in items if not broken(matcher, i["intent"], i["text"])]
    print(f"{len(items)} questions from {len(args.files)} files, {len(right)} matched right as written")
    print(f"{'variant':<14} {'':<40} {'in scope broken':>20} {'out of scope broken':>22}")
    for name, (label, fn) in variants.items():
        counts = {True: [0, 0], False: [0, 0]}   # out of scope? → [broken, tried]
        for i in right:
            if not applies(name, i["text"]):
                continue
            c = counts[i["intent"] == OUT_OF_SCOPE]
            c[1] += 1
            c[0] += broken(matcher, i["intent"], fn(i["text"]))

        def cell(c: list[int]) -> str:
            return f"{c[0]} / {c[1]} ({100 * c[0] / c[1]:.1f}%)" if c[1] else "-"

        print(f"{name:<14} {label:<40} {cell(counts[False]):>20} {cell(counts[True]):>22}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
