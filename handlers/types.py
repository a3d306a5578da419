"""What flows between a channel and the engine: messages in, replies out.

Channels map their input to a ``Message`` and render each ``Reply``; nothing
here knows about HTTP, Telegram or terminals.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping


class Undeliverable(Exception):
    """A channel could not push to its user and knows why; ``reason`` is Chinese, for staff."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Button:
    """A choice offered to the user; ``payload`` comes back as a button message."""

    label: str
    payload: str


@dataclass(frozen=True)
class Image:
    """An uploaded picture (route 2's ID photo); content is checked, not the name."""

    data: bytes
    filename: str = "upload"
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Message:
    """One user input: free text, a button payload, or an image.

    ``channel`` and ``address`` say where it came from and how to reach its sender
    later, outside a request (``Channel.send(address, replies)``): the channel's name
    ("web", "telegram", "wechat", "console") and that channel's own address (web: the
    session id, Telegram: the chat id, WeChat: the OpenID). The adapter sets both;
    the engine remembers them in the session so a hand-off can push a staff reply back.

    ``client`` is the channel's stable key for the sender, for abuse limits and the account API's
    per-client identity (web: ``ip:<address>``, Telegram: ``telegram:<chat id>``); the engine keeps
    only a keyed hash of it.
    """

    kind: Literal["text", "button", "image"]
    text: str = ""
    payload: str = ""
    image: Image | None = None
    channel: str = ""
    address: str = ""
    client: str = ""

    @classmethod
    def from_text(cls, text: str, *, channel: str = "", address: str = "", client: str = "") -> "Message":
        return cls(kind="text", text=text, channel=channel, address=address, client=client)

    @classmethod
    def from_button(cls, payload: str, *, channel: str = "", address: str = "", client: str = "") -> "Message":
        return cls(kind="button", payload=payload, channel=channel, address=address, client=client)

    @classmethod
    def from_image(cls, data: bytes, filename: str = "upload", content_type: str = "application/octet-stream",
                   *, channel: str = "", address: str = "", client: str = "") -> "Message":
        return cls(kind="image", image=Image(data, filename, content_type), channel=channel, address=address,
                   client=client)


_MD_SPECIAL = re.compile(r"([\\*\[\]])")  # what the subset reads as markup inside a line


def md(value: object) -> str:
    """Data (a masked phone "138****8001", a name, a school, a service's message) made literal
    inside the Markdown subset of ``Reply.text``: its markup characters are backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", str(value))


_MD_LINK = re.compile(r"\[([^\]\n]+)\]\(([^()\s]+)\)")
_MD_ESCAPED = re.compile(r"\\([\\*\[\]()_`#+\-.!|>~])")


def plain(text: str) -> str:
    """A reply's Markdown subset as the words the user saw, for people reading a transcript (staff,
    a help desk): no ``**``, links as "label (url)", escapes made by ``md`` undone."""
    text = _MD_LINK.sub(lambda m: f"{m.group(1)} ({m.group(2)})", text)
    text = re.sub(r"(?<!\\)\*\*", "", text)
    return _MD_ESCAPED.sub(r"\1", text)


class Replies(list):
    """The replies of one turn (a list of ``Reply``); ``flow`` names the flow still active after
    the turn (None when none is), which is not the last reply's origin when a flow just ended."""

    flow: str | None = None


@dataclass(frozen=True)
class Reply:
    """One bubble from the bot: Markdown-subset text, optional buttons, and its origin."""

    text: str
    buttons: tuple[Button, ...] = field(default_factory=tuple)
    intent: str | None = None
    flow: str | None = None
    entry: str | None = None
    expects_image: bool = False
    author: str | None = None   # a person's display name (人工客服 NAME); None for the bot

    def to_json(self, sign: Callable[[str], str] = lambda payload: payload) -> dict[str, Any]:
        """The reply's one JSON shape (the web chat API and its live events): every field but ``entry``
        (internal: the answer a feedback vote counts for); button payloads passed through ``sign``."""
        return {"text": self.text,
                "buttons": [{"label": b.label, "payload": sign(b.payload)} for b in self.buttons],
                "intent": self.intent,
                "flow": self.flow,
                "expects_image": self.expects_image,
                "author": self.author}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Reply":
        """The reply ``to_json`` wrote (payloads as they were written)."""
        return cls(str(d["text"]), tuple(Button(str(b["label"]), str(b["payload"])) for b in d.get("buttons") or ()),
                   intent=d.get("intent"), flow=d.get("flow"), expects_image=bool(d.get("expects_image")),
                   author=d.get("author"))
