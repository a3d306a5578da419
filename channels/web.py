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
- ``GET /widget.js``, ``GET /`` (demo help page).

Refusals raise ``ApiError`` (or ``InputRejected``, a 422), which the app turns into
``{"error": code, "message": 中文说明}``. The engine is synchronous and runs in a worker thread.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from handlers.sessions import new_session_id
from handlers.types import Message, Replies, Reply

from . import render
from .base import Channel, ConversationEngine, clean_payload, clean_text
from .config import WebConfig
from .signing import Signer

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
UPLOAD_PATH = "/api/upload"


class ApiError(Exception):
    """A request we refuse: HTTP status, a stable code, a Chinese message for the user."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(code)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def replies_json(replies: Sequence[Reply], sign: Callable[[str], str] = lambda p: p) -> dict:
    """The chat response: each reply's contract fields (button payloads passed through ``sign``),
    its parsed text ("blocks") and image hint; the first intent recognised; the flow active after this turn."""
    out = [{"text": r.text,
            "buttons": [{"label": b.label, "payload": sign(b.payload)} for b in r.buttons],
            "intent": r.intent,
            "flow": r.flow,
            "blocks": render.to_json(r.text),
            "expects_image": r.expects_image} for r in replies]
    return {
        "replies": out,
        "intent": next((r.intent for r in replies if r.intent), None),
        # the engine says which flow is active after the turn; a plain list: the last reply's
        "flow": replies.flow if isinstance(replies, Replies) else (replies[-1].flow if replies else None),
        "expects_image": bool(replies) and replies[-1].expects_image,
    }


class LocalOutbox:
    """The web app's in-process delivery hook for pushed replies: ``WebChannel.send`` publishes a
    session's reply batch here, listeners of that session (``subscribe``) receive it.

    It only reaches listeners in this process and keeps nothing for a session nobody listens to.
    Issue 9 replaces it with the shared event bus (Redis when sessions are shared) and serves it
    to the widget as ``GET /api/chat/events``; the channel code does not change."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[asyncio.Queue]] = {}

    def subscribe(self, session_id: str) -> asyncio.Queue:
        """A queue that receives every batch published for ``session_id`` from now on."""
        queue: asyncio.Queue = asyncio.Queue()
        self._listeners.setdefault(session_id, set()).add(queue)
        return queue

    def unsubscribe(self, session_id: str, queue: asyncio.Queue) -> None:
        listeners = self._listeners.get(session_id)
        if listeners is not None:
            listeners.discard(queue)
            if not listeners:
                del self._listeners[session_id]

    async def publish(self, session_id: str, batch: dict) -> int:
        """Hand ``batch`` to the session's listeners; the number that got it."""
        listeners = list(self._listeners.get(session_id, ()))
        for queue in listeners:
            queue.put_nowait(batch)
        return len(listeners)


class WebChannel(Channel):
    """The widget's channel: the chat API over the engine; ``send`` goes through the app's outbox."""

    name = "web"

    def __init__(self, engine: ConversationEngine, signer: Signer, conf: WebConfig,
                 outbox: LocalOutbox | None = None) -> None:
        self.engine, self.signer, self.conf = engine, signer, conf
        self.outbox = outbox or LocalOutbox()

    def body_limit(self, path: str) -> int:
        """The largest request body accepted on ``path``."""
        return self.conf.max_body_bytes if path == UPLOAD_PATH else self.conf.max_json_bytes

    async def send(self, address: str, replies: Sequence[Reply]) -> None:
        """Push replies to web session ``address`` (the engine session id) via the outbox, as the
        same JSON the chat API answers with (payloads signed for that session)."""
        batch = replies_json(replies, lambda p: self.signer.sign_payload(address, p))
        if not await self.outbox.publish(address, batch):
            log.info("web push: no listener for the session; %d replies not delivered live", len(replies))

    # ---- request handling ---------------------------------------------------------

    def session_of(self, token: Any) -> str:
        """The engine session id behind a client's session token."""
        if token is None or token == "":
            raise ApiError(422, "missing_session", "缺少会话编号（session_id），请先创建会话。")
        session_id = self.signer.verify(token)
        if session_id is None:
            raise ApiError(404, "unknown_session", "会话不存在或已失效，请重新开始对话。")
        return session_id

    async def answer(self, session_id: str, message: Message) -> JSONResponse:
        replies = await run_in_threadpool(self.engine.handle, session_id, message)
        return JSONResponse(replies_json(list(replies), lambda p: self.signer.sign_payload(session_id, p)))

    async def new_session(self) -> JSONResponse:
        """``POST /api/session``."""
        return JSONResponse({"session_id": self.signer.issue(new_session_id())}, status_code=201)

    async def chat(self, request: Request) -> JSONResponse:
        """``POST /api/chat``: text or a signed button payload."""
        data = await json_body(request)
        session_id = self.session_of(data.get("session_id"))
        has_text, has_payload = data.get("text") is not None, data.get("payload") is not None
        if has_text == has_payload:
            raise ApiError(422, "invalid_message", "请发送文字（text）或按钮（payload）中的一项。")
        if has_payload:
            payload = self.signer.open_payload(session_id, clean_payload(data["payload"]))
            if payload is None:
                raise ApiError(422, "unknown_payload", "这个按钮无效或已过期，请重新选择或直接输入您的问题。")
            return await self.answer(session_id, Message.from_button(payload, channel=self.name, address=session_id))
        text = clean_text(data["text"], self.conf.max_text_chars)
        return await self.answer(session_id, Message.from_text(text, channel=self.name, address=session_id))

    async def upload(self, request: Request) -> JSONResponse:
        """``POST /api/upload``: the ID photo as multipart."""
        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            raise ApiError(415, "unsupported_media_type", "请以文件上传（multipart/form-data）方式发送照片。")
        try:
            form = await request.form(max_files=1, max_fields=4)
        except StarletteHTTPException:
            raise ApiError(400, "invalid_upload", "上传内容格式有误，请重新选择照片上传。") from None
        session_id = self.session_of(form.get("session_id"))
        file = form.get("file")
        if file is None or isinstance(file, str):
            raise ApiError(422, "missing_file", "请选择要上传的照片。")
        data = await file.read()
        if not data:
            raise ApiError(422, "empty_file", "上传的文件是空的，请重新选择照片。")
        name = os.path.basename(file.filename or "upload")[:100] or "upload"
        message = Message.from_image(data, name, file.content_type or "application/octet-stream",
                                     channel=self.name, address=session_id)
        return await self.answer(session_id, message)

    def router(self) -> APIRouter:
        """The chat API, the widget script and the demo page."""
        r = APIRouter()
        r.add_api_route("/api/session", self.new_session, methods=["POST"], status_code=201)
        r.add_api_route("/api/chat", self.chat, methods=["POST"])
        r.add_api_route(UPLOAD_PATH, self.upload, methods=["POST"])
        r.add_api_route("/widget.js", widget, methods=["GET"])
        r.add_api_route("/", demo_page, methods=["GET"])
        return r


async def json_body(request: Request) -> dict:
    """The request's JSON object; 415 for another content type, 400 for anything but an object."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "请以 JSON 格式（application/json）发送请求。")
    raw = await request.body()
    try:
        data = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(400, "invalid_json", "请求内容不是有效的 JSON，请检查后重试。") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "请求内容必须是一个 JSON 对象。")
    return data


async def widget() -> FileResponse:
    """``GET /widget.js``: the embeddable widget."""
    return FileResponse(STATIC / "widget.js", media_type="application/javascript; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=300"})


async def demo_page() -> FileResponse:
    """``GET /``: the demo help page with the widget on it."""
    return FileResponse(STATIC / "demo.html", media_type="text/html; charset=utf-8", headers={
        "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                   "img-src 'self' data:; connect-src 'self'; frame-ancestors 'self'",
        "Cache-Control": "no-cache"})
