"""What flows between a channel and the engine: messages in, replies out.

Channels map their input to a ``Message`` and render each ``Reply``; nothing
here knows about HTTP, Telegram or terminals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


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
    """One user input: free text, a button payload, or an image."""

    kind: Literal["text", "button", "image"]
    text: str = ""
    payload: str = ""
    image: Image | None = None

    @classmethod
    def from_text(cls, text: str) -> "Message":
        return cls(kind="text", text=text)

    @classmethod
    def from_button(cls, payload: str) -> "Message":
        return cls(kind="button", payload=payload)

    @classmethod
    def from_image(cls, data: bytes, filename: str = "upload", content_type: str = "application/octet-stream") -> "Message":
        return cls(kind="image", image=Image(data, filename, content_type))


@dataclass(frozen=True)
class Reply:
    """One bubble from the bot: Markdown-subset text, optional buttons, and its origin."""

    text: str
    buttons: tuple[Button, ...] = field(default_factory=tuple)
    intent: str | None = None
    flow: str | None = None
    entry: str | None = None
    expects_image: bool = False

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "buttons": [{"label": b.label, "payload": b.payload} for b in self.buttons],
            "intent": self.intent,
            "flow": self.flow,
        }
