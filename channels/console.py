"""The terminal channel: ``python bot.py chat`` (a conversation) and ``python bot.py ask "问题"``.

Buttons degrade to a numbered list (``text_replies``); typing a number picks that button.
An image is sent as ``/image path.jpg``. ``ConsoleChannel.send`` prints pushed replies.
"""
from __future__ import annotations

import mimetypes
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

from handlers.sessions import new_session_id
from handlers.types import Button, Message, Reply

from .base import Channel, ConversationEngine, InputRejected, buttons_as_text, numbered_answer
from .render import plain_text

PROMPT = "您："
HELP = ("输入问题即可开始；出现编号选项时输入编号选择；发送图片请输入 /image 图片路径；"
        "输入 /quit 退出。")


def text_replies(replies: Sequence[Reply], start: int = 1) -> tuple[str, list[Button]]:
    """Replies as plain text with their buttons numbered from ``start`` (channels without buttons)."""
    parts: list[str] = []
    buttons: list[Button] = []
    for reply in replies:
        text = buttons_as_text(reply, start + len(buttons))
        buttons.extend(reply.buttons)
        parts.append(text + ("\n（请发送图片：/image 图片路径）" if reply.expects_image else ""))
    return "\n\n".join(parts), buttons


def one_shot_text(replies: Sequence[Reply]) -> str:
    """Replies for ``bot.py ask``, where nothing can be pressed: the texts, related questions as
    commands to ask next, and the chat command for what needs a conversation (flows, hand-off)."""
    parts = [plain_text(r.text) for r in replies if r.text.strip()]
    buttons = [b for r in replies for b in r.buttons]
    questions = [b.label for b in buttons if b.payload.startswith("faq:")]
    if questions:
        parts.append("相关问题（可以接着问）：\n" + "\n".join(f'  python bot.py ask "{q}"' for q in questions))
    if any(b.payload.startswith(("flow:", "handoff", "cmd:")) for b in buttons):
        parts.append("要一步步办理或转人工客服，请在对话中进行：python bot.py chat")
    return "\n\n".join(parts)


def to_message(line: str, buttons: Sequence[Button], session_id: str = "") -> Message | str:
    """The Message a typed line stands for, or a Chinese error to show instead."""
    origin = {"channel": ConsoleChannel.name, "address": session_id}
    text = line.strip()
    try:
        payload = numbered_answer(text, buttons)
    except InputRejected as e:
        return e.message
    if payload is not None:
        return Message.from_button(payload, **origin)
    if text.startswith("/image"):
        path = Path(text[len("/image"):].strip().strip('"'))
        try:
            data = path.read_bytes()
        except OSError:
            return f"读取不到图片文件：{path}"
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Message.from_image(data, path.name, content_type, **origin)
    return Message.from_text(line, **origin)


class ConsoleChannel(Channel):
    """The terminal: one conversation; pushed replies are printed like answers."""

    name = "console"

    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def send(self, address: str, replies: Sequence[Reply]) -> None:
        """Print ``replies`` (the terminal has one user, so ``address`` only labels the session)."""
        print(f"助手：{text_replies(replies)[0]}\n", file=self.out, flush=True)


def converse(engine: ConversationEngine, session_id: str, read: Callable[[], str | None], out: TextIO) -> None:
    """Run a conversation: read lines until EOF or /quit, print the bot's replies."""
    buttons: list[Button] = []
    while True:
        line = read()
        if line is None or line.strip() in ("/quit", "/exit"):
            return
        message = to_message(line, buttons, session_id)
        if isinstance(message, str):
            print(message, file=out)
            continue
        text, buttons = text_replies(engine.handle(session_id, message))
        print(f"助手：{text}\n", file=out)


def _read_line() -> str | None:
    try:
        return input(PROMPT)
    except EOFError:
        return None
    except KeyboardInterrupt:
        print()
        return None


def run(cfg: Mapping[str, Any]) -> int:
    """``python bot.py chat``: a terminal conversation with the configured engine."""
    from handlers.engine import build_engine

    engine = build_engine(cfg)
    print(f"学信网账号助手（终端）。{HELP}\n")
    converse(engine, new_session_id(), _read_line, sys.stdout)
    return 0


def ask(cfg: Mapping[str, Any], text: str) -> int:
    """``python bot.py ask "问题"``: print the reply a user would get (in-memory session)."""
    from handlers.engine import build_engine
    from handlers.sessions import MemoryStore

    engine = build_engine(cfg, store=MemoryStore())
    print(one_shot_text(engine.handle(new_session_id(), Message.from_text(text, channel=ConsoleChannel.name))))
    return 0
