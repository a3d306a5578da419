"""The web channel: the chat HTTP API, the embeddable widget and its demo page.

Routes (``WebChannel.router()``, mounted by channels/app.py):

- ``POST /api/session`` → 201 ``{"session_id"}``: a new, unguessable session id
  (a random id plus an HMAC, so the server recognises ids it issued without
  storing them; a forged or unknown id gets 404 ``unknown_session``).
- ``POST /api/chat`` ``{session_id, text}`` or ``{session_id, payload}`` → the replies.
  Button payloads are opaque to the client: each is signed for its session
  (``<payload>~<mac>``), so a payload this server never offered to this session
  gets 422 ``unknown_payload`` before it reaches the engine.
- ``POST /api/upload`` (multipart: ``session_id``, ``file``) → the replies to an image.
- ``GET /api/chat/events?session_id=…`` → ``text/event-stream``: what staff push to this
  session (``event: reply``, data = the chat response's JSON), a heartbeat comment every 15 s;
  ``Last-Event-ID`` (header, or ``last_event_id`` in the query after a reload) replays what
  was missed. Events come from the shared event bus (``handlers.events``: Redis streams when
  sessions are in Redis), so the stream may be held by any worker or instance.
- ``GET /widget.js``, ``GET /`` (demo help page).

Refusals raise ``ApiError`` (or ``InputRejected``, a 422), which the app turns into
``{"error": code, "message": 中文说明}``. The engine is synchronous: over Redis or memory a turn that
needs nothing slow (an FAQ answer) runs on the event loop (``Engine.try_handle``), anything that
may wait (the account API, the hand-off store, SQLite) in a worker thread.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from handlers.engine import BusySave
from handlers.events import BusError, EventBus, MemoryBus
from handlers.handoff_service import user_topic
from handlers.sessions import new_session_id, storage_key
from handlers.types import Message, Replies, Reply
from settings import WebConfig

from . import render
from .assets import Asset
from .base import Channel, ConversationEngine, InputRejected, clean_payload, clean_text
from .signing import Signer

log = logging.getLogger(__name__)

DEMO_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'self'")
UPLOAD_PATH = "/api/upload"
HEARTBEAT = 15.0
STREAM_SECONDS = 300.0   # a stream ends after this; EventSource reconnects with Last-Event-ID
_EVENT_ID = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?")


_TURN_THREADS = 40   # engine turns at once per process (a turn may wait on the account API)
# A busy SQLite limiter (and a busy session save) is tried again on the loop (0.5, 1, 2, 2 … ms apart)
# for this long before it goes to a thread. Not sooner: a thread holding the machine's limiter lock can
# lose the GIL for the switch interval (5 ms), so every early hand-off made the lock busier for the next
# (serve, 2 workers, wrk c=64: 950–1,214 req/s giving up after 6 tries, ~7 ms; 2,191–2,224 with 20, ~37 ms).
_LIMIT_PATIENCE = 0.04
_turn_pool: ThreadPoolExecutor | None = None


async def _again_soon(attempt: Callable[[], bool], pause: float | None) -> bool:
    """``attempt()`` again after ``pause``, the pause doubling up to 2 ms, while it fails and the pauses
    have not reached ``_LIMIT_PATIENCE`` — awaiting, so the loop serves other requests meanwhile. True
    once it succeeds; False at once for ``pause`` None (nothing worth trying again soon)."""
    waited = 0.0
    while pause is not None and waited < _LIMIT_PATIENCE:
        await asyncio.sleep(pause)
        waited += pause
        if attempt():
            return True
        pause = min(pause * 2, 0.002)
    return False


def _turns() -> ThreadPoolExecutor:
    """The worker threads of engine turns (asyncio's executor: cheaper per call than anyio's)."""
    global _turn_pool
    if _turn_pool is None:
        _turn_pool = ThreadPoolExecutor(_TURN_THREADS, thread_name_prefix="turn")
    return _turn_pool


class FastJSONResponse(JSONResponse):
    """JSONResponse's body (compact, UTF-8) written by orjson: a chat reply is a few KB of blocks,
    about a tenth of the CPU of the json module's."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ApiError(Exception):
    """A request we refuse: HTTP status, a stable code, a Chinese message for the user."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(code)
        self.status, self.code, self.message, self.extra = status, code, message, extra


@functools.lru_cache(maxsize=4096)
def _blocks(text: str) -> list[dict]:
    """``render.to_json(text)``, parsed once per distinct text (FAQ answers repeat; the result is
    only serialised, never changed)."""
    return render.to_json(text)


def replies_json(replies: Sequence[Reply], sign: Callable[[str], str] = lambda p: p) -> dict:
    """The chat response: each reply's JSON (``Reply.to_json``, button payloads passed through ``sign``)
    with its parsed text ("blocks"); the first intent recognised; the flow active after this turn."""
    out = [{**r.to_json(sign), "blocks": _blocks(r.text)} for r in replies]
    return {
        "replies": out,
        "intent": next((r.intent for r in replies if r.intent), None),
        # the engine says which flow is active after the turn; a plain list: the last reply's
        "flow": replies.flow if isinstance(replies, Replies) else (replies[-1].flow if replies else None),
        "expects_image": bool(replies) and replies[-1].expects_image,
    }


class WebChannel(Channel):
    """The widget's channel: the chat API over the engine; ``send`` publishes on the event bus,
    which ``GET /api/chat/events`` streams to the widget."""

    name = "web"

    def __init__(self, engine: ConversationEngine, signer: Signer, conf: WebConfig,
                 bus: EventBus | None = None, limiter: Any = None, limits: Any = None) -> None:
        from handlers.limits import Limits, MemoryLimiter, Throttle

        self.engine, self.signer, self.conf = engine, signer, conf
        self.bus = bus or MemoryBus()
        # abuse limits per address and per conversation (handlers.limits; the engine's, shared through Redis)
        self.limits = limits or getattr(engine, "limits", None) or Limits(MemoryLimiter(), secrets.token_bytes(32))
        # event-stream connections per client per minute (a handlers.limits.Throttle)
        self.limiter = limiter or Throttle.memory("events", conf.events_per_minute, 60)

    @staticmethod
    def _checks(rule_ip: str, rule_session: str | None, client: str, session_id: str | None) -> list[tuple[str, str]]:
        """The address's rule first: a request refused for its conversation still counts for its address."""
        return [(rule_ip, client)] + ([(rule_session, session_id)] if rule_session and session_id else [])

    def _limit(self, rule_ip: str, rule_session: str | None, client: str, session_id: str | None) -> None:
        """429 with Retry-After when this address or this conversation passed its limit."""
        self._refuse(self.limits.hit_all(self._checks(rule_ip, rule_session, client, session_id)))

    def _try_limit(self, rule_ip: str, rule_session: str | None, client: str, session_id: str | None) -> bool:
        """``_limit`` on the event loop: False, with nothing counted, when the limiter would wait (SQLite's
        locks held elsewhere, Redis for a while after it failed) — then call ``_limit`` in a thread."""
        done, wait = self.limits.try_hit_all(self._checks(rule_ip, rule_session, client, session_id))
        if done:
            self._refuse(wait)
        return done

    async def _limit_soon(self, rule_ip: str, rule_session: str | None, client: str, session_id: str | None) -> bool:
        """``_try_limit``, tried again soon while the limiter is busy with another worker's transaction
        (SQLite: half the requests of two workers at c=32 found it so); False: go to a thread after all."""
        def attempt() -> bool:
            return self._try_limit(rule_ip, rule_session, client, session_id)

        return attempt() or await _again_soon(attempt, self.limits.busy_for)

    @staticmethod
    async def _save_soon(pending: BusySave) -> Sequence[Reply]:
        """A turn whose save found SQLite busy with another worker's write: the save tried again soon on
        the loop, the session's lock held meanwhile; then in a thread, where it waits. Not the whole turn
        over again in a thread (which cost as much CPU again as the turn, 1 in 20 turns at c=32 with two
        workers)."""
        loop = asyncio.get_running_loop()
        finishing = None
        try:
            if await _again_soon(pending.retry, pending.busy_for):
                return pending.replies
            finishing = loop.run_in_executor(_turns(), pending.finish)
            return await asyncio.shield(finishing)
        finally:
            if finishing is None or finishing.done():
                pending.close()
            else:   # cancelled (the client left) while the thread saves: the lock is released once it is done
                finishing.add_done_callback(lambda _: pending.close())

    @staticmethod
    def _refuse(wait: int | None) -> None:
        if wait is not None:
            raise ApiError(429, "rate_limited", f"您的操作太频繁了，请 {wait} 秒后再试。", retry_after=wait)

    def body_limit(self, path: str) -> int:
        """The largest request body accepted on ``path``."""
        return self.conf.max_body_bytes if path == UPLOAD_PATH else self.conf.max_json_bytes

    async def send(self, address: str, replies: Sequence[Reply]) -> None:
        """Push replies to web session ``address`` (the engine session id) on the event bus, as the
        same JSON the chat API answers with (payloads signed for that session). Kept for replay,
        so a widget that is offline or reloading gets them when it reconnects."""
        batch = replies_json(replies, lambda p: self.signer.sign_payload(address, p))
        await asyncio.to_thread(self.bus.publish, user_topic(storage_key(address)), batch)

    async def events(self, request: Request) -> StreamingResponse:
        """``GET /api/chat/events``: this session's pushed replies as server-sent events."""
        client = request.client.host if request.client else "unknown"
        wait = await run_in_threadpool(self.limiter.hit, client)
        if wait:
            raise ApiError(429, "rate_limited", f"连接过于频繁，请 {wait} 秒后再试。", retry_after=wait)
        session_id = self.session_of(request.query_params.get("session_id"))
        after = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or "0"
        if not _EVENT_ID.fullmatch(after):
            raise ApiError(422, "invalid_event_id", "Last-Event-ID 格式无效。")
        topic = user_topic(storage_key(session_id))
        return event_stream(request, self.bus, topic, after, "reply", HEARTBEAT)

    # ---- request handling ---------------------------------------------------------

    def session_of(self, token: Any) -> str:
        """The engine session id behind a client's session token."""
        if token is None or token == "":
            raise ApiError(422, "missing_session", "缺少会话编号（session_id），请先创建会话。")
        session_id = self.signer.verify(token)
        if session_id is None:
            raise ApiError(404, "unknown_session", "会话不存在或已失效，请重新开始对话。")
        return session_id

    async def answer(self, session_id: str, message: Message | ApiError | InputRejected,
                     limit: tuple[str, str, str] | None = None) -> JSONResponse:
        """The engine's replies to ``message`` (or the refusal found in it) after the abuse limits
        ``(rule per address, rule per conversation, client)``. The limits and the turn run right here
        when they can finish without waiting (``Limits.try_hit_all``, ``try_handle``: an FAQ answer, a
        command; SQLite's locks taken as try-locks); anything else — a flow's step with the account
        API, the hand-off store, a lock held elsewhere — runs in a worker thread, as the event loop
        must not wait. A thread hand-off costs about as much CPU as the turn (a Redis worker under
        wrk: ~510 µs a FAQ request on the loop, 680–930 µs through the pool, with 10–34 context
        switches instead of ~1)."""
        loop = asyncio.get_running_loop()
        if limit is not None and not await self._limit_soon(*limit, session_id):
            def limited_turn() -> Sequence[Reply]:   # the limiter would wait: it waits here
                self._limit(*limit, session_id)
                return self._handle(session_id, message)

            replies = await loop.run_in_executor(_turns(), limited_turn)
        else:
            try_handle = getattr(self.engine, "try_handle", None)
            replies = try_handle(session_id, self._checked(message), busy=True) if try_handle else None
            if isinstance(replies, BusySave):   # done, but its save found SQLite busy: saved again soon
                replies = await self._save_soon(replies)
            if replies is None:   # it would wait: a worker thread's turn (nothing of the attempt was kept)
                replies = await loop.run_in_executor(_turns(), self._handle, session_id, message)
        return FastJSONResponse(replies_json(replies, lambda p: self.signer.sign_payload(session_id, p)))

    @staticmethod
    def _checked(message: Message | ApiError | InputRejected) -> Message:
        """The message, or its refusal raised (after the limits: a refused request counts)."""
        if not isinstance(message, Message):
            raise message
        return message

    def _handle(self, session_id: str, message: Message | ApiError | InputRejected) -> Sequence[Reply]:
        """``engine.handle`` in a worker thread (a Replies: its .flow is the chat's "flow")."""
        return self.engine.handle(session_id, self._checked(message))

    async def new_session(self, request: Request) -> JSONResponse:
        """``POST /api/session``."""
        if not await self._limit_soon("session_per_ip", None, client_key(request), None):
            await run_in_threadpool(self._limit, "session_per_ip", None, client_key(request), None)
        return JSONResponse({"session_id": self.signer.issue(new_session_id())}, status_code=201)

    async def chat(self, request: Request) -> JSONResponse:
        """``POST /api/chat``: text or a signed button payload."""
        data = await json_body(request)
        session_id = self.session_of(data.get("session_id"))
        client = client_key(request)
        try:
            message: Message | ApiError | InputRejected = self._message(data, session_id, client)
        except (ApiError, InputRejected) as refusal:
            message = refusal
        return await self.answer(session_id, message, ("chat_per_ip", "chat_per_session", client))

    def _message(self, data: dict, session_id: str, client: str) -> Message:
        """The chat request's message: its text, or the button payload it was signed for."""
        has_text, has_payload = data.get("text") is not None, data.get("payload") is not None
        if has_text == has_payload:
            raise ApiError(422, "invalid_message", "请发送文字（text）或按钮（payload）中的一项。")
        if has_payload:
            payload = self.signer.open_payload(session_id, clean_payload(data["payload"]))
            if payload is None:
                raise ApiError(422, "unknown_payload", "这个按钮无效或已过期，请重新选择或直接输入您的问题。")
            return Message.from_button(payload, channel=self.name, address=session_id, client=client)
        text = clean_text(data["text"], self.conf.max_text_chars)
        return Message.from_text(text, channel=self.name, address=session_id, client=client)

    async def upload(self, request: Request) -> JSONResponse:
        """``POST /api/upload``: the ID photo as multipart."""
        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            raise ApiError(415, "unsupported_media_type", "请以文件上传（multipart/form-data）方式发送照片。")
        try:
            form = await request.form(max_files=1, max_fields=4)
        except StarletteHTTPException:
            raise ApiError(400, "invalid_upload", "上传内容格式有误，请重新选择照片上传。") from None
        session_id = self.session_of(form.get("session_id"))
        client = client_key(request)
        await run_in_threadpool(self._limit, "upload_per_ip", "upload_per_session", client, session_id)
        file = form.get("file")
        if file is None or isinstance(file, str):
            raise ApiError(422, "missing_file", "请选择要上传的照片。")
        data = await file.read()
        if not data:
            raise ApiError(422, "empty_file", "上传的文件是空的，请重新选择照片。")
        name = os.path.basename(file.filename or "upload")[:100] or "upload"
        message = Message.from_image(data, name, file.content_type or "application/octet-stream",
                                     channel=self.name, address=session_id, client=client)
        return await self.answer(session_id, message)

    def router(self) -> APIRouter:
        """The chat API, the widget script and the demo page."""
        r = APIRouter()
        # plain Starlette routes (request in, response out): FastAPI's per-request dependency
        # solving and response validation would add nothing here (benchmarks/profile_web.py)
        r.add_route("/api/session", self.new_session, methods=["POST"])
        r.add_route("/api/chat", self.chat, methods=["POST"])
        r.add_route(UPLOAD_PATH, self.upload, methods=["POST"])
        r.add_route("/api/chat/events", self.events, methods=["GET"])
        widget, demo = Asset.load("widget.js"), Asset.load("demo.html")

        async def widget_js(request: Request) -> Response:
            """``GET /widget.js``: the embeddable widget (cached 5 minutes by browsers and CDNs, then
            revalidated with its ETag)."""
            return widget.response(request, "public, max-age=300")

        async def demo_page(request: Request) -> Response:
            """``GET /``: the demo help page with the widget on it."""
            return demo.response(request, "no-cache", {"Content-Security-Policy": DEMO_CSP})

        r.add_api_route("/widget.js", widget_js, methods=["GET"])
        r.add_api_route("/", demo_page, methods=["GET"])
        return r


def event_stream(request: Request, bus: EventBus, topic: str, after: str, name: str, heartbeat: float,
                 on_idle: Callable[[], Awaitable[None]] | None = None) -> StreamingResponse:
    """Server-sent events of one bus topic after ``after``: each as ``id``/``event: name``/``data``
    (JSON), a comment every ``heartbeat`` seconds without events (then ``on_idle`` runs); the
    stream ends after ``STREAM_SECONDS`` (the browser reconnects with Last-Event-ID) or when
    the client leaves. A bus outage pauses the stream, it does not end it."""
    async def stream() -> AsyncIterator[bytes]:
        nonlocal after
        yield b"retry: 2000\n\n"
        ends = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < ends and not await request.is_disconnected():
            try:
                events = await bus.read(topic, after, heartbeat)
            except BusError:
                log.warning("event stream %s: bus unavailable", name)
                await asyncio.sleep(2)
                events = []
            for event_id, event in events:
                after = event_id
                yield f"id: {event_id}\nevent: {name}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()
            if not events:
                yield b": ping\n\n"
                if on_idle is not None:
                    await on_idle()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def client_key(request: Request) -> str:
    """The sender's stable key for abuse limits: its address (behind a proxy, the one uvicorn's
    ``--forwarded-allow-ips`` trusts)."""
    return "ip:" + (request.client.host if request.client else "unknown")


async def json_body(request: Request) -> dict:
    """The request's JSON object; 415 for another content type, 400 for anything but an object."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "请以 JSON 格式（application/json）发送请求。")
    raw = await request.body()
    try:
        data = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(400, "invalid_json", "请求内容不是有效的 JSON，请检查后重试。") from None
    except RecursionError:   # e.g. 30,000 nested arrays: refused, no traceback
        raise ApiError(400, "invalid_json", "请求内容嵌套过深，请检查后重试。") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "请求内容必须是一个 JSON 对象。")
    return data
