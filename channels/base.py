"""What every channel shares: the engine it talks to, the one input check, the
numbered-text fallback for buttons, and the ``Channel`` interface.

A channel is a thin adapter. Inbound, it turns what the user sent into a
``Message`` (with ``channel`` and ``address`` set), checks it with ``clean_text`` /
``clean_payload`` (``InputRejected`` carries the Chinese message to show), and runs
``engine.handle`` off the event loop. Outbound, it renders each ``Reply``; a channel
without buttons shows them as numbered lines (``buttons_as_text``) and maps a typed
number back to the payload (``numbered_answer``).

``Channel`` has one required method, ``send`` (push replies to a user outside a
request, e.g. a staff member's answer after a hand-off); ``router`` is optional and
is mounted by the web app from the list of channels (channels/app.py).
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Sequence

from handlers.types import Button, Message, Reply

from .render import plain_text

if TYPE_CHECKING:
    from fastapi import APIRouter

_PAYLOAD = re.compile(r"[^\x00-\x1f\x7f]{1,300}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ConversationEngine(Protocol):
    """What a channel needs from the conversation engine (``handlers.engine.Engine``)."""

    def handle(self, session_id: str, message: Message) -> list[Reply]: ...


class InputRejected(Exception):
    """User input a channel refuses before it reaches the engine.

    ``code`` is stable (the web API returns it as ``error``), ``message`` is Chinese for the
    user, ``extra`` holds details worth returning (e.g. ``max_chars``)."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(code)
        self.code, self.message, self.extra = code, message, extra


def clean_text(value: Any, max_chars: int) -> str:
    """User text, checked: a string, not blank, at most ``max_chars``; control characters dropped."""
    if not isinstance(value, str):
        raise InputRejected("invalid_text", "消息内容必须是文字。")
    text = _CONTROL.sub("", value.encode("utf-8", "replace").decode("utf-8")).strip()
    if not text:
        raise InputRejected("empty_text", "消息不能为空，请输入您的问题。")
    if len(text) > max_chars:
        raise InputRejected("text_too_long", f"消息过长（{len(text)} 字），请精简到 {max_chars} 字以内再发送。",
                            max_chars=max_chars)
    return text


def clean_payload(value: Any) -> str:
    """A button payload, checked for shape: a short string without control characters."""
    if not isinstance(value, str) or not _PAYLOAD.fullmatch(value):
        raise InputRejected("invalid_payload", "按钮无效，请重新选择或直接输入您的问题。")
    return value


def buttons_as_text(reply: Reply, start: int = 1) -> str:
    """One reply as plain text with its buttons as numbered lines, numbering from ``start``."""
    lines = [plain_text(reply.text)]
    lines += [f"  {start + i}. {b.label}" for i, b in enumerate(reply.buttons)]
    return "\n".join(lines)


def numbered_answer(text: str, buttons: Sequence[Button]) -> str | None:
    """The payload of the button whose number the user typed; None when ``text`` is not an option
    number (1–2 digits: longer numbers are data, e.g. an SMS code at a prompt offering "重新发送")
    or nothing was offered (then it is ordinary text). A number out of range is ``InputRejected``."""
    typed = text.strip()
    if not typed.isdigit() or len(typed) > 2 or not buttons:
        return None
    n = int(typed)
    if 1 <= n <= len(buttons):
        return buttons[n - 1].payload
    which = "编号 1" if len(buttons) == 1 else f"1–{len(buttons)} 之间的编号"
    raise InputRejected("no_such_option", f"没有编号 {n} 的选项，请输入{which}。")


class Channel(ABC):
    """One way users reach the bot (web widget, Telegram, WeChat, the terminal)."""

    name: ClassVar[str]

    @abstractmethod
    async def send(self, address: str, replies: Sequence[Reply]) -> None:
        """Push ``replies`` to the user at ``address`` (``Message.address`` of their messages),
        outside any request of theirs. Raises when the channel cannot deliver them."""

    def router(self) -> "APIRouter | None":
        """HTTP routes the web app mounts for this channel (API, webhook); None when it has none."""
        return None

    async def aclose(self) -> None:
        """Release what the channel holds (called when the web app shuts down)."""
