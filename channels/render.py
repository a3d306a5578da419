"""The FAQ's Markdown subset, parsed once and rendered per channel.

The subset: paragraphs (blank-line separated, single newlines kept as line
breaks), bullet lists (``-``, ``*``, ``+``), numbered lists (``1.``, ``1、``,
``1)``), ``**bold**`` and ``[links](url)``. A ``#`` heading becomes a bold
paragraph. Anything else is plain text. Only ``http``/``https`` links survive;
other targets (``#``, ``javascript:``, relative paths) keep their text only.

``parse`` gives a small tree that is also sent to the web widget as JSON, so
the widget builds DOM nodes from data and never parses or injects markup.
``telegram_chunks`` renders Telegram HTML, escaped, split under its length limit;
``wechat_chunks`` WeChat text (links as ``<a href>``), split under its byte limit.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import urlsplit

TELEGRAM_LIMIT = 4096
WECHAT_LIMIT = 2000  # bytes: WeChat takes at most 2048 in a text message

_BULLET = re.compile(r"^\s{0,3}[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s{0,3}(\d{1,3})[.、)）]\s*(.*)$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_INLINE = re.compile(r"\*\*(?P<bold>.+?)\*\*|\[(?P<label>[^\]\n]+)\]\((?P<url>[^()\s]+)\)")
# "\*" is a literal "*" (data inserted into a reply is escaped: handlers.types.md): while parsing,
# escaped characters stand as private-use characters that no markup pattern matches
_ESCAPE = re.compile(r"\\([\\*\[\]()_`#+\-.!|>~])")
_ESCAPED_BASE = 0xF0000


def _hide_escapes(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(_ESCAPED_BASE + ord(m.group(1))), text)


_RESTORE = {_ESCAPED_BASE + i: i for i in range(128)}


def _restore(text: str) -> str:
    return text.translate(_RESTORE)
_BREAKS = "。！？；!?;\n，, "


@dataclass(frozen=True)
class Span:
    """A run of text with one style."""

    text: str
    bold: bool = False
    href: str | None = None

    def to_dict(self) -> dict:
        d: dict = {"text": self.text}
        if self.bold:
            d["bold"] = True
        if self.href:
            d["href"] = self.href
        return d


Line = tuple[Span, ...]


@dataclass(frozen=True)
class Item:
    """A paragraph's body or one list item: lines of spans; ``n`` numbers ordered items."""

    lines: tuple[Line, ...]
    n: int | None = None

    def to_dict(self) -> dict:
        d: dict = {"lines": [[s.to_dict() for s in line] for line in self.lines]}
        if self.n is not None:
            d["n"] = self.n
        return d


@dataclass(frozen=True)
class Block:
    """A paragraph (``p``, one item) or a list (``ul``/``ol``)."""

    type: str
    items: tuple[Item, ...]

    def to_dict(self) -> dict:
        if self.type == "p":
            return {"type": "p", "lines": self.items[0].to_dict()["lines"]}
        return {"type": self.type, "items": [i.to_dict() for i in self.items]}


def safe_url(url: str) -> str | None:
    """The URL when it is an absolute http(s) URL with a host, else None."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.strip()


def parse_inline(text: str, bold: bool = False) -> Line:
    """Split one line into spans: ``**bold**`` (links allowed inside) and ``[label](url)``."""
    spans: list[Span] = []
    pos = 0
    for m in _INLINE.finditer(text):
        if m.start() > pos:
            spans.append(Span(text[pos:m.start()], bold))
        if m.group("bold") is not None:
            spans.extend(parse_inline(m.group("bold"), True))
        else:
            spans.append(Span(m.group("label"), bold, safe_url(m.group("url"))))
        pos = m.end()
    if pos < len(text):
        spans.append(Span(text[pos:], bold))
    return tuple(_merge(spans))


def _restored(line: Line) -> Line:
    return tuple(Span(_restore(s.text), s.bold, _restore(s.href) if s.href else None) for s in line)


def _merge(spans: list[Span]) -> Iterator[Span]:
    """Join neighbours of the same style (plain text split around a dropped link)."""
    prev: Span | None = None
    for s in spans:
        if prev and prev.bold == s.bold and prev.href is None and s.href is None:
            prev = Span(prev.text + s.text, prev.bold)
            continue
        if prev:
            yield prev
        prev = s
    if prev:
        yield prev


def parse(markdown: str) -> list[Block]:
    """The block tree of a Markdown-subset text."""
    blocks: list[Block] = []
    para: list[Line] = []
    items: list[list[Line]] = []
    numbers: list[int | None] = []
    kind = ""

    def flush() -> None:
        nonlocal kind
        if para:
            blocks.append(Block("p", (Item(tuple(para)),)))
            para.clear()
        if items:
            blocks.append(Block(kind, tuple(Item(tuple(lines), n) for lines, n in zip(items, numbers))))
            items.clear()
            numbers.clear()
        kind = ""

    text = _hide_escapes(markdown.replace("\r\n", "\n").replace("\r", "\n"))
    for raw in text.split("\n"):
        line = raw.rstrip()
        if not line.strip():
            flush()
            continue
        bullet, numbered, heading = _BULLET.match(line), _NUMBERED.match(line), _HEADING.match(line)
        if bullet or (numbered and numbered.group(2)):
            new_kind = "ul" if bullet else "ol"
            if para or kind != new_kind:
                flush()
            kind = new_kind
            body = bullet.group(1) if bullet else numbered.group(2)
            items.append([_restored(parse_inline(body))])
            numbers.append(None if bullet else int(numbered.group(1)))
        elif heading:
            flush()
            blocks.append(Block("p", (Item((_restored(parse_inline(heading.group(1), True)),)),)))
        elif items:
            items[-1].append(_restored(parse_inline(line.strip())))
        else:
            para.append(_restored(parse_inline(line.strip())))
    flush()
    return blocks


def to_json(markdown: str) -> list[dict]:
    """The block tree as JSON-ready dicts (what the web widget renders)."""
    return [b.to_dict() for b in parse(markdown)]


def plain_text(markdown: str) -> str:
    """The text without markup (bullets as "•", links as "label (url)")."""
    out: list[str] = []
    for block in parse(markdown):
        lines: list[str] = []
        for item in block.items:
            for i, line in enumerate(item.lines):
                prefix = _marker(block, item) if i == 0 else ""
                lines.append(prefix + "".join(f"{s.text} ({s.href})" if s.href else s.text for s in line))
        out.append("\n".join(lines))
    return "\n\n".join(out)


# ---- chat-app messages: Telegram HTML, WeChat text -----------------------------

def _marker(block: Block, item: Item) -> str:
    if block.type == "ul":
        return "• "
    if block.type == "ol":
        return f"{item.n}. "
    return ""


def _tg_len(s: str) -> int:
    """Length as Telegram counts it (UTF-16 code units of the text after entity parsing)."""
    return len(s.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class Style:
    """How one chat app writes a span and counts against its length limit.

    ``wrap(span, text)`` is the markup of (part of) a span; ``unit(ch)`` what one character of
    text counts; ``overhead(span)`` what the markup around a span adds to the count."""

    wrap: Callable[[Span, str], str]
    unit: Callable[[str], int]
    overhead: Callable[[Span], int]


def _tg_wrap(span: Span, text: str) -> str:
    """The span's text, escaped, inside its Telegram HTML tags."""
    out = html.escape(text, quote=False)
    if span.href:
        out = f'<a href="{html.escape(span.href, quote=True)}">{out}</a>'
    if span.bold:
        out = f"<b>{out}</b>"
    return out


_TAG_LIKE = re.compile(r"<(?=[A-Za-z/!?])")


def _wx_href(span: Span) -> str:
    return (span.href or "").replace('"', "%22").replace("<", "%3C").replace(">", "%3E")


def _wx_wrap(span: Span, text: str) -> str:
    """WeChat text: plain, links as ``<a href>`` (the one tag WeChat shows); no bold. Anything
    tag-like in the text is defused (a full-width ＜) so only our own links become links."""
    out = _TAG_LIKE.sub("＜", text).replace("]]>", "]]＞")
    return f'<a href="{_wx_href(span)}">{out}</a>' if span.href else out


TELEGRAM = Style(_tg_wrap, _tg_len, lambda span: 0)
WECHAT = Style(_wx_wrap, lambda ch: len(ch.encode("utf-8")),
               lambda span: len(f'<a href="{_wx_href(span)}"></a>'.encode()) if span.href else 0)


def _span_atoms(span: Span, limit: int, style: Style) -> Iterator[tuple[str, int]]:
    """(markup, counted size) pieces of a span, each at most ``limit``; long text cut at a break.
    A link whose markup alone cannot fit is written as its plain text."""
    overhead = style.overhead(span)
    if overhead >= limit // 2:
        span, overhead = Span(span.text, span.bold), 0
    room, text = limit - overhead, span.text
    while text:
        cut, size = len(text), 0
        for i, ch in enumerate(text):
            size += style.unit(ch)
            if size > room:
                cut = max(i, 1)
                soft = max(text.rfind(b, 0, cut) for b in _BREAKS) + 1
                if soft > cut // 2:
                    cut = soft
                break
        yield style.wrap(span, text[:cut]), sum(style.unit(ch) for ch in text[:cut]) + overhead
        text = text[cut:]


def _block_atoms(block: Block, limit: int, style: Style) -> list[tuple[str, str, int]]:
    """(separator before, markup, counted size) for one block; each piece is balanced markup that fits."""
    atoms: list[tuple[str, str, int]] = []
    for item in block.items:
        for li, line in enumerate(item.lines):
            marker = _marker(block, item) if li == 0 else ("   " if block.type != "p" else "")
            spans = ((Span(marker),) if marker else ()) + line
            for si, span in enumerate(spans):
                for ai, (piece, size) in enumerate(_span_atoms(span, limit, style)):
                    atoms.append(("\n" if atoms and si == 0 and ai == 0 else "", piece, size))
    return atoms


def chunks(markdown: str, limit: int, style: Style) -> list[str]:
    """Messages for one reply in ``style``, each within ``limit`` as the app counts it;
    blocks are kept whole where they fit, long ones split between lines, then spans, then sentences."""
    out: list[str] = []
    current, used = "", 0

    def add(sep: str, piece: str, size: int) -> None:
        nonlocal current, used
        if current and used + len(sep) + size > limit:
            out.append(current)
            current, used = piece, size
        elif current:
            current, used = current + sep + piece, used + len(sep) + size
        else:
            current, used = piece, size

    for block in parse(markdown):
        atoms = _block_atoms(block, limit, style)
        size = sum(len(sep) + n for sep, _, n in atoms)
        if size <= limit:
            add("\n\n", "".join(sep + piece for sep, piece, _ in atoms), size)
            continue
        for i, (sep, piece, n) in enumerate(atoms):
            add("\n\n" if i == 0 else sep, piece, n)
    if current:
        out.append(current)
    return out


def telegram_chunks(markdown: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Telegram HTML messages for one reply, each within ``limit`` visible characters."""
    return chunks(markdown, limit, TELEGRAM)


def wechat_chunks(markdown: str, limit: int = WECHAT_LIMIT) -> list[str]:
    """WeChat text messages for one reply (links as ``<a href>``), each within ``limit`` UTF-8 bytes."""
    return chunks(markdown, limit, WECHAT)
