"""Test support shared by tests/ and benchmarks/ (not production code; tests/ is on pytest's pythonpath).

- ``Chat``: a fake transport driving an engine (say, press a button, upload);
- ``login``: a guided flow's login step typed by the user; ``login_token``: the same at the API (a token);
- ``Clock``: a settable clock for engines and stores;
- ``photo`` / ``JPEG`` / ``PNG``: real, decodable image bytes;
- ``RecordingEngine``: an engine double that records every call and answers by a given rule;
- ``Outbox``: a hand-off service's ``deliver`` that records what it pushes to users;
- ``make_engine`` / ``default_matcher``: an Engine over the real FAQ, in-memory stores by default.
"""
from __future__ import annotations

import functools
import re
import threading
import time
import uuid
from typing import Any, Callable

from handlers.sessions import new_session_id
from handlers.types import Button, Message, Reply


class Chat:
    """One user talking to an engine; keeps the last replies to press their buttons."""

    def __init__(self, engine: Any, session_id: str | None = None) -> None:
        self.engine = engine
        self.session_id = session_id or new_session_id()
        self.replies: list[Reply] = []

    def send(self, message: Message) -> list[Reply]:
        self.replies = self.engine.handle(self.session_id, message)
        return self.replies

    def say(self, text: str) -> list[Reply]:
        """Type a text message."""
        return self.send(Message.from_text(text))

    def press(self, label: str) -> list[Reply]:
        """Press the button whose label contains ``label`` among the last replies."""
        return self.send(Message.from_button(self.button(label).payload))

    def upload(self, data: bytes, filename: str = "photo.jpg", content_type: str = "image/jpeg") -> list[Reply]:
        """Send an image."""
        return self.send(Message.from_image(data, filename, content_type))

    def button(self, label: str) -> Button:
        """The first button of the last replies whose label contains ``label``."""
        for b in self.buttons:
            if label in b.label:
                return b
        raise AssertionError(f"no button {label!r} in {[b.label for b in self.buttons]}")

    @property
    def buttons(self) -> list[Button]:
        return [b for r in self.replies for b in r.buttons]

    @property
    def text(self) -> str:
        """All text of the last replies (Markup kept; data's escapes (handlers.types.md) undone)."""
        return re.sub(r"\\([\\*\[\]])", r"\1", self.raw)

    @property
    def raw(self) -> str:
        """All text of the last replies exactly as the engine wrote it."""
        return "\n".join(r.text for r in self.replies)

    @property
    def flow_step(self) -> tuple[str, str] | None:
        """The active flow and step, read from the session store."""
        state = self.engine.store.get(self.session_id) or {}
        flow = state.get("flow")
        return (flow["name"], flow["step"]) if flow else None


def login(chat: Any, codes: Any, username: str, phone: str) -> None:
    """At a flow's login prompt: type the username, then the SMS code (``codes.latest_code(phone)``).

    ``chat`` is anything with ``say`` and ``text`` (a ``Chat``, a WeChat ``WxUser``); ``codes`` anything
    with ``latest_code`` (the in-process twin, the live sandbox).
    """
    from handlers.flows.common import LOGIN_CODE_SENT

    assert "用户名" in chat.text, chat.text
    chat.say(username)
    assert LOGIN_CODE_SENT in chat.text   # the same words whether or not the username exists
    chat.say(codes.latest_code(phone))
    assert "登录成功" in chat.text, chat.text


def login_token(accounts: Any, username: str, phone: str, codes: Any = None) -> str:
    """Log in through the account API by SMS code; the user token (codes read from ``codes`` or ``accounts``)."""
    challenge = accounts.start_login(username, idempotency_key=uuid.uuid4().hex)
    return accounts.verify_login(challenge.challenge_id, (codes or accounts).latest_code(phone)).token


class Clock:
    """A settable clock for engines and stores in tests."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@functools.lru_cache(maxsize=4)
def photo(fmt: str = "JPEG", size: tuple[int, int] = (640, 400)) -> bytes:
    """A real, decodable photo (a grey card with a dark band) in ``fmt`` (JPEG or PNG)."""
    import io

    from PIL import Image, ImageDraw

    pic = Image.new("RGB", size, (200, 200, 200))
    ImageDraw.Draw(pic).rectangle((20, 20, size[0] - 20, 80), fill=(40, 40, 90))
    out = io.BytesIO()
    pic.save(out, fmt)
    return out.getvalue()


JPEG = photo()
PNG = photo("PNG")


class RecordingEngine:
    """An engine double with the real signature: records every call (and the thread it ran on) and
    answers with ``answer(message)`` (by default one plain reply)."""

    def __init__(self, answer: Callable[[Message], list[Reply]] | None = None) -> None:
        self.calls: list[tuple[str, Message]] = []
        self.threads: set[str] = set()
        self.answer = answer or (lambda message: [Reply("好的")])
        self._lock = threading.Lock()

    def handle(self, session_id: str, message: Message) -> list[Reply]:
        with self._lock:
            self.calls.append((session_id, message))
            self.threads.add(threading.current_thread().name)
        return self.answer(message)


@functools.lru_cache(maxsize=1)
def default_matcher() -> Any:
    """The real FAQ matcher from config.yaml, built once per process."""
    import settings
    from intents.matcher import Matcher

    return Matcher.from_settings(settings.load())


def make_engine(accounts: Any, *, store: Any = None, data_dir: Any = None, clock: Any = None,
                matcher: Any = None, handoffs: Any = None, limits: Any = None, **overrides: Any) -> Any:
    """An Engine over the real FAQ with the given account client (in-memory stores by default)."""
    from settings import SessionsConfig

    from handlers.engine import Engine
    from handlers.records import FeedbackRecords
    from handlers.sessions import MemoryStore

    m = matcher or default_matcher()
    clock = clock or time.time
    sessions = SessionsConfig(**({"data_dir": str(data_dir)} if data_dir else {}), **overrides)
    return Engine(m.faq, m, accounts, store or MemoryStore(clock=clock), sessions,
                  records=FeedbackRecords(sessions.data_dir, clock=clock), clock=clock, handoffs=handoffs,
                  limits=limits)


class Outbox:
    """Records what a hand-off service pushes to users: (channel, address, replies)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, list]] = []

    def __call__(self, channel: str, address: str, replies: Any) -> None:
        self.sent.append((channel, address, list(replies)))

    @property
    def texts(self) -> list[str]:
        return [r.text for _, _, rs in self.sent for r in rs]
