"""Web channel: the chat HTTP API, the embeddable widget, the demo page, the Telegram webhook.

One ASGI app (FastAPI) over the conversation engine:

- ``POST /api/session`` → 201 ``{"session_id"}``: a new, unguessable session id
  (the engine's id plus an HMAC, so the server recognises ids it issued without
  storing them; a forged or unknown id gets 404 ``unknown_session``).
- ``POST /api/chat`` ``{session_id, text}`` or ``{session_id, payload}`` → the replies.
  Button payloads are opaque to the client: each is signed for its session
  (``<payload>~<mac>``), so a payload this server never offered to this session
  gets 422 ``unknown_payload`` before it reaches the engine.
- ``POST /api/upload`` (multipart: ``session_id``, ``file``) → the replies to an image.
- ``GET /widget.js``, ``GET /`` (demo help page), ``GET /healthz``.
- ``POST {telegram.webhook_path}`` when a Telegram token is configured.

Every error is JSON ``{"error": code, "message": 中文说明}`` with a 4xx status
(5xx only for a failure of ours). The engine is synchronous and runs in a worker thread.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import settings
from channels import render
from handlers.types import Message, Reply
from logsetup import uvicorn_log_config

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
_PAYLOAD = re.compile(r"^[^\x00-\x1f\x7f]{1,300}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TOKEN = re.compile(r"^[A-Za-z0-9_.:\-]{1,256}$")


class Engine(Protocol):
    """What the web and Telegram channels need from the conversation engine."""

    def handle(self, session_id: str, message: Message) -> list[Reply]: ...

    def new_session_id(self) -> str: ...


@dataclass(frozen=True)
class WebConfig:
    """The ``web`` section of config.yaml."""

    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 6 * 1024 * 1024
    max_json_bytes: int = 64 * 1024
    max_text_chars: int = 2000
    session_secret: str = ""
    secret_file: str = "var/web_session.key"

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> "WebConfig":
        d = cls()
        return cls(
            host=str(m.get("host") or d.host),
            port=int(m.get("port") or d.port),
            public_url=str(m.get("public_url") or d.public_url).rstrip("/"),
            cors_origins=tuple(str(o).rstrip("/") for o in (m.get("cors_origins") or ())),
            max_body_bytes=int(m.get("max_body_bytes") or d.max_body_bytes),
            max_json_bytes=int(m.get("max_json_bytes") or d.max_json_bytes),
            max_text_chars=int(m.get("max_text_chars") or d.max_text_chars),
            session_secret=str(m.get("session_secret") or ""),
            secret_file=str(m.get("secret_file") or d.secret_file),
        )


# ---- errors ---------------------------------------------------------------

class ApiError(Exception):
    """A request we refuse: HTTP status, a stable code, a Chinese message for the user."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(code)
        self.status, self.code, self.message, self.extra = status, code, message, extra


class BodyTooLarge(Exception):
    """The request body passed the size limit while being read."""


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


def _too_large(limit: int) -> JSONResponse:
    size = f"{limit / 1024 / 1024:.0f} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"
    return _error(413, "body_too_large", f"发送的内容过大（上限 {size}），请缩小后再试。", max_bytes=limit)


_HTTP_MESSAGES = {
    404: ("not_found", "请求的地址不存在。"),
    405: ("method_not_allowed", "不支持该请求方法。"),
}


# ---- session ids ------------------------------------------------------------

class Signer:
    """HMACs that let the server recognise what it issued without storing it:
    session ids (``<engine id>.<mac>``) and, per session, button payloads (``<payload>~<mac>``)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, purpose: bytes, value: str, size: int) -> str:
        mac = hmac.new(self._secret, purpose + b"\0" + value.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")[:size]

    def issue(self, session_id: str) -> str:
        """The token the client keeps for ``session_id``."""
        return f"{session_id}.{self._mac(b'session', session_id, 32)}"

    def verify(self, token: Any) -> str | None:
        """The engine session id of a token we issued; None for anything else."""
        if not isinstance(token, str) or not _TOKEN.fullmatch(token) or "." not in token:
            return None
        session_id, mac = token.rsplit(".", 1)
        if session_id and hmac.compare_digest(mac, self._mac(b"session", session_id, 32)):
            return session_id
        return None

    def sign_payload(self, session_id: str, payload: str) -> str:
        """The button payload as sent to this session's client."""
        return f"{payload}~{self._mac(b'payload', session_id + chr(0) + payload, 16)}"

    def open_payload(self, session_id: str, signed: str) -> str | None:
        """The engine payload behind a signed one issued to this session; None if we never issued it."""
        payload, _, mac = signed.rpartition("~")
        if payload and hmac.compare_digest(mac, self._mac(b"payload", session_id + chr(0) + payload, 16)):
            return payload
        return None


def load_secret(conf: WebConfig) -> bytes:
    """The signing secret: config/env ``web.session_secret``, else one kept in ``web.secret_file``."""
    if conf.session_secret:
        return conf.session_secret.encode()
    path = settings.resolve_path(conf.secret_file)
    try:
        value = path.read_text(encoding="ascii").strip()
        if len(value) >= 32:
            return value.encode()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(value + "\n")
    return value.encode()


# ---- request checks -----------------------------------------------------------

def clean_text(value: Any, max_chars: int) -> str:
    """User text, checked: a string, not blank, at most ``max_chars``; control characters dropped."""
    if not isinstance(value, str):
        raise ApiError(422, "invalid_text", "消息内容必须是文字。")
    text = _CONTROL.sub("", value.encode("utf-8", "replace").decode("utf-8")).strip()
    if not text:
        raise ApiError(422, "empty_text", "消息不能为空，请输入您的问题。")
    if len(text) > max_chars:
        raise ApiError(422, "text_too_long",
                       f"消息过长（{len(text)} 字），请精简到 {max_chars} 字以内再发送。",
                       max_chars=max_chars)
    return text


def clean_payload(value: Any) -> str:
    """A button payload, checked for shape: a short string without control characters."""
    if not isinstance(value, str) or not _PAYLOAD.fullmatch(value):
        raise ApiError(422, "invalid_payload", "按钮无效，请重新选择或直接输入您的问题。")
    return value


def replies_json(replies: list[Reply], sign: Callable[[str], str] = lambda p: p) -> dict:
    """The chat response: each reply's contract fields (button payloads passed through ``sign``),
    its parsed text ("blocks") and image hint; the first intent recognised; the flow active after this turn."""
    out = []
    for r in replies:
        d = r.to_dict()
        d["buttons"] = [{"label": b.label, "payload": sign(b.payload)} for b in r.buttons]
        out.append({**d, "blocks": render.to_json(r.text), "expects_image": r.expects_image})
    return {
        "replies": out,
        "intent": next((r.intent for r in replies if r.intent), None),
        "flow": replies[-1].flow if replies else None,
        "expects_image": bool(replies) and replies[-1].expects_image,
    }


class Guard:
    """ASGI middleware: refuse request bodies over the limit (by Content-Length and while streaming),
    and mark every response ``X-Content-Type-Options: nosniff``."""

    def __init__(self, app: Callable, limit_for: Callable[[str], int]) -> None:
        self.app, self.limit_for = app, limit_for

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-content-type-options"]
                message = {**message, "headers": headers + [(b"x-content-type-options", b"nosniff")]}
            await send(message)

        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _too_large(limit)(scope, receive, guarded_send)
            return
        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if started:
                raise
            await _too_large(limit)(scope, receive, guarded_send)


# ---- the app ------------------------------------------------------------------

def create_app(cfg: Mapping[str, Any], engine: Engine | None = None, telegram_request: Any = None) -> FastAPI:
    """The ASGI app. ``engine`` defaults to ``handlers.engine.build_engine(cfg)``;
    ``telegram_request`` (a ``telegram.request.BaseRequest``) replaces Telegram's HTTP client in tests."""
    conf = WebConfig.from_mapping(settings.section(cfg, "web"))
    if engine is None:
        from handlers.engine import build_engine
        engine = build_engine(cfg)
    signer = Signer(load_secret(conf))
    telegram = _telegram_hook(cfg, engine, telegram_request)

    async def lifespan(app: FastAPI):
        yield
        if telegram:
            await telegram.shutdown()

    app = FastAPI(title="学信网账号助手", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.engine, app.state.signer, app.state.config = engine, signer, conf

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, message = _HTTP_MESSAGES.get(exc.status_code, ("bad_request", "请求无效。"))
        return _error(exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", "服务暂时出现问题，请稍后再试。")

    async def json_body(request: Request) -> dict:
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

    def session_of(token: Any) -> str:
        if token is None or token == "":
            raise ApiError(422, "missing_session", "缺少会话编号（session_id），请先创建会话。")
        session_id = signer.verify(token)
        if session_id is None:
            raise ApiError(404, "unknown_session", "会话不存在或已失效，请重新开始对话。")
        return session_id

    async def answer(session_id: str, message: Message) -> JSONResponse:
        replies = await run_in_threadpool(engine.handle, session_id, message)
        return JSONResponse(replies_json(list(replies), lambda p: signer.sign_payload(session_id, p)))

    @app.post("/api/session", status_code=201)
    async def new_session() -> JSONResponse:
        session_id = await run_in_threadpool(engine.new_session_id)
        return JSONResponse({"session_id": signer.issue(session_id)}, status_code=201)

    @app.post("/api/chat")
    async def chat(request: Request) -> JSONResponse:
        data = await json_body(request)
        session_id = session_of(data.get("session_id"))
        has_text, has_payload = data.get("text") is not None, data.get("payload") is not None
        if has_text == has_payload:
            raise ApiError(422, "invalid_message", "请发送文字（text）或按钮（payload）中的一项。")
        if has_payload:
            payload = signer.open_payload(session_id, clean_payload(data["payload"]))
            if payload is None:
                raise ApiError(422, "unknown_payload", "这个按钮无效或已过期，请重新选择或直接输入您的问题。")
            return await answer(session_id, Message.from_button(payload))
        return await answer(session_id, Message.from_text(clean_text(data["text"], conf.max_text_chars)))

    @app.post("/api/upload")
    async def upload(request: Request) -> JSONResponse:
        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            raise ApiError(415, "unsupported_media_type", "请以文件上传（multipart/form-data）方式发送照片。")
        try:
            form = await request.form(max_files=1, max_fields=4)
        except StarletteHTTPException:
            raise ApiError(400, "invalid_upload", "上传内容格式有误，请重新选择照片上传。") from None
        session_id = session_of(form.get("session_id"))
        file = form.get("file")
        if file is None or isinstance(file, str):
            raise ApiError(422, "missing_file", "请选择要上传的照片。")
        data = await file.read()
        if not data:
            raise ApiError(422, "empty_file", "上传的文件是空的，请重新选择照片。")
        name = os.path.basename(file.filename or "upload")[:100] or "upload"
        return await answer(session_id, Message.from_image(data, name, file.content_type or "application/octet-stream"))

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/widget.js")
    async def widget() -> FileResponse:
        return FileResponse(STATIC / "widget.js", media_type="application/javascript; charset=utf-8",
                            headers={"Cache-Control": "public, max-age=300"})

    @app.get("/")
    async def demo() -> FileResponse:
        return FileResponse(STATIC / "demo.html", media_type="text/html; charset=utf-8", headers={
            "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                       "img-src 'self' data:; connect-src 'self'; frame-ancestors 'self'",
            "Cache-Control": "no-cache"})

    if telegram:
        @app.post(telegram.path)
        async def telegram_webhook(request: Request) -> Response:
            return await telegram.handle(request)

    if conf.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(conf.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"], allow_credentials=False, max_age=600)
    app.add_middleware(Guard, limit_for=lambda path: conf.max_body_bytes if path == "/api/upload"
                       else conf.max_json_bytes)
    return app


def _telegram_hook(cfg: Mapping[str, Any], engine: Engine, request: Any) -> "Any | None":
    """The Telegram webhook handler when a token is configured, else None (route not mounted)."""
    if not settings.section(cfg, "telegram").get("token"):
        return None
    from channels.telegram import Webhook
    return Webhook(cfg, engine, request)


# ---- running it -------------------------------------------------------------------

def demo_config(cfg: Mapping[str, Any]) -> dict:
    """``cfg`` with embedded defaults: SQLite sessions, everything on localhost, accounts → the sandbox."""
    out = copy.deepcopy(dict(cfg))
    sandbox = settings.section(out, "sandbox")
    host = sandbox.get("host") or "127.0.0.1"
    out["sandbox"] = {**sandbox, "host": host}
    out["accounts"] = {**settings.section(out, "accounts"),
                       "base_url": f"http://{host}:{int(sandbox.get('port') or 8765)}",
                       "api_key": sandbox.get("api_key") or settings.section(out, "accounts").get("api_key")}
    sessions = settings.section(out, "sessions")
    if sessions.get("backend") != "memory":
        sessions["backend"] = "sqlite"
    out["sessions"] = sessions
    out["web"] = {**settings.section(out, "web"), "host": "127.0.0.1"}
    return out


def _bind(host: str, port: int) -> socket.socket | None:
    """A listening socket on host:port, or None when the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        return None
    return sock


def _start_sandbox(cfg: Mapping[str, Any], level: str) -> bool:
    """Serve the account sandbox (config section ``sandbox``) from a daemon thread; False if it did not start."""
    import uvicorn

    from accounts.sandbox import server as sandbox_server

    section = settings.section(cfg, "sandbox")
    host, port = str(section.get("host") or "127.0.0.1"), int(section.get("port") or 8765)
    sock = _bind(host, port)
    if sock is None:
        print(f"端口 {host}:{port} 已被占用：假定那是已启动的账号服务沙箱（python bot.py sandbox），直接使用它。")
        return True
    database = settings.resolve_path(str(section.get("database") or "var/sandbox.db"))
    database.parent.mkdir(parents=True, exist_ok=True)
    _, app = sandbox_server.build(section, str(database))
    server = uvicorn.Server(uvicorn.Config(app, log_config=uvicorn_log_config(level)))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="account-sandbox", daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            print(f"账号服务沙箱未能在 {host}:{port} 启动，请查看上方日志。")
            return False
        time.sleep(0.05)
    print(f"账号服务沙箱：http://{host}:{port}（演示账号见 accounts/README.md）", flush=True)
    return True


def serve(cfg: Mapping[str, Any], with_sandbox: bool = False) -> int:
    """Run the web app with uvicorn (``with_sandbox``: the demo — sandbox + embedded defaults)."""
    import uvicorn

    if with_sandbox:
        cfg = demo_config(cfg)
    level = str(settings.section(cfg, "logging").get("level") or "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    conf = WebConfig.from_mapping(settings.section(cfg, "web"))
    sock = _bind(conf.host, conf.port)
    if sock is None:
        print(f"端口 {conf.host}:{conf.port} 已被占用：请关闭占用它的程序，或设置环境变量 WEB_PORT 换一个端口。")
        return 1
    with sock:
        if with_sandbox and not _start_sandbox(cfg, level):
            return 1
        app = create_app(cfg)
        url = f"http://{conf.host}:{conf.port}/" if with_sandbox else conf.public_url + "/"
        print(f"学信网账号助手已启动，请在浏览器打开：{url}（按 Ctrl+C 停止）", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_config=uvicorn_log_config(level), proxy_headers=False,
                                               server_header=False))
        server.run(sockets=[sock])
    return 0 if server.started else 1
