"""The hand-off API for a help desk the team already runs (channels/README.md, "Help-desk bridge").

A thin HTTP layer over the hand-off service (``handlers.handoff_service``): every route calls the
same service method the staff console calls, so a reply sent here reaches the user exactly like
a console reply, and the lifecycle (claim, close, conflicts) is the service's.

- ``GET  /api/handoffs?status=waiting|active|closed|abandoned&limit=N`` → ``{"handoffs": [...]}``
- ``GET  /api/handoffs/{id}?after=MESSAGE_ID`` → ``{"handoff": {... masked transcript}, "messages": [...]}``
- ``POST /api/handoffs/{id}/messages`` ``{"text", "author"}`` → 201 ``{"message": {...}}``
- ``POST /api/handoffs/{id}/close`` ``{"resolution", "author"?}`` → ``{"handoff": {...}}``

POSTs accept ``Idempotency-Key: <1–200 visible ASCII characters>``: a retry with the same key and
the same request is answered with the first answer (``Idempotent-Replayed: true``) and changes
nothing, on any instance (keys live in the hand-off database for 24 h, ``handlers.idempotency``);
the same key on a different request is 422 ``idempotency_key_reused``, one still running 409
``request_in_progress``. A refused request (4xx) frees its key.

Auth: ``Authorization: Bearer <HANDOFF_API_TOKEN>`` (constant-time comparison); the routes do not
exist (404) when no token is configured. Rate limits per client address (``handlers.limits.Throttle``:
in Redis when the sessions are), failed sign-ins counted apart. Errors are JSON ``{"error": code, "message": 中文说明}``; a refused request changes nothing.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import re
from typing import Any, Awaitable, Callable, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from handlers.handoff_service import HandoffService, ReplyRejected
from handlers.handoffs import (RESOLUTIONS, STATUSES, HandoffClosed, HandoffConflict, HandoffError,
                               HandoffNotFound, HandoffStoreError)
from handlers.helpdesk import public_handoff, public_message
from handlers.idempotency import (IdempotencyError, IdempotencyStore, KeyInProgress, KeyReused,
                                  build_idempotency_store)
from handlers.limits import Throttle
from settings import ConfigError, HandoffApiConfig

from .web import ApiError, json_body

log = logging.getLogger(__name__)

PREFIX = "/api/handoffs"
MAX_AUTHOR_CHARS = 40
CLOSE_RESOLUTIONS = tuple(r for r in RESOLUTIONS if r not in ("back_to_bot", "user_left"))
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Limiter(Protocol):
    """``hit(key)`` → seconds to wait, 0 when allowed (``handlers.limits.Throttle``)."""

    def hit(self, key: str) -> int: ...


# ---- documented bodies (OpenAPI); requests are parsed by hand for clear Chinese errors ----------

class MessageIn(BaseModel):
    text: str = Field(description="the reply shown to the user (1–2000 characters)")
    author: str = Field(description="the agent's display name; the user sees 人工客服 NAME (1–40 characters)")


class CloseIn(BaseModel):
    resolution: str = Field(description="one of: " + ", ".join(CLOSE_RESOLUTIONS))
    author: str | None = Field(default=None, description="who closed it (defaults to the current agent or 'api')")


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


ERRORS_DOC = {
    401: {"description": "missing_token / invalid_token"},
    404: {"description": "unknown_handoff"},
    409: {"description": "handoff_closed / handoff_taken / request_in_progress (same Idempotency-Key)"},
    422: {"description": "empty_text / text_too_long / invalid_author / invalid_resolution / invalid_status / "
                         "invalid_idempotency_key / idempotency_key_reused"},
    429: {"description": "rate_limited (Retry-After)"},
}


def _text(value: Any, field: str, max_chars: int, empty: str, too_long: str) -> str:
    if not isinstance(value, str):
        raise ApiError(422, f"invalid_{field}", f"{field} 必须是字符串。")
    text = _CONTROL.sub("", value).strip()
    if not text:
        raise ApiError(422, empty, f"{field} 不能为空。")
    if len(text) > max_chars:
        raise ApiError(422, too_long, f"{field} 过长（{len(text)} 字），上限 {max_chars} 字，请精简后重新发送。",
                       max_chars=max_chars)
    return text


def _number(value: str, name: str, low: int, high: int) -> int:
    """A whole-number query parameter within bounds."""
    if not value.isdigit() or not low <= int(value) <= high:
        raise ApiError(422, f"invalid_{name}", f"{name} 必须是 {low} 到 {high} 之间的整数。")
    return int(value)


def _refusal(e: HandoffError, handoff_id: str) -> ApiError:
    """The service's refusal as an HTTP error."""
    if isinstance(e, HandoffNotFound):
        return ApiError(404, "unknown_handoff", f"找不到会话 {handoff_id}。")
    if isinstance(e, HandoffClosed):
        return ApiError(409, "handoff_closed", "该会话已结束，不能再回复或关闭；用户再次转人工时会产生新的会话。")
    if isinstance(e, HandoffConflict):
        return ApiError(409, "handoff_taken", "该会话已由另一位客服接入，请在该客服的名下回复，或由其结束会话。")
    if isinstance(e, ReplyRejected):
        return ApiError(422, "invalid_reply", e.message)
    if isinstance(e, HandoffStoreError):
        return ApiError(503, "store_unavailable", e.message)
    return ApiError(400, "refused", getattr(e, "message", "操作失败。"))


class HandoffApi:
    """The routes over one hand-off service (contract in the module docstring)."""

    def __init__(self, service: HandoffService, conf: HandoffApiConfig, requests: Limiter | None = None,
                 failures: Limiter | None = None, idempotency: IdempotencyStore | None = None) -> None:
        """``requests`` / ``failures``: per-address limiters (default: in process, from ``conf``);
        ``idempotency``: where Idempotency-Keys are kept (default: the hand-off database)."""
        if not conf.enabled:
            raise ConfigError("the hand-off API needs handoff.api_token (HANDOFF_API_TOKEN)")
        self.service, self.conf = service, conf
        self.idempotency = idempotency or build_idempotency_store(service.store)
        self._token = conf.token.encode()
        self._requests = requests or Throttle.memory("handoff-api", conf.requests_per_minute, 60)
        self._failures = failures or Throttle.memory("handoff-api-auth", conf.failed_auth_per_minute, 60)

    # ---- guards -----------------------------------------------------------------------

    def _check(self, request: Request) -> None:
        """Rate limits, then the bearer token."""
        client = request.client.host if request.client else "?"
        wait = self._requests.hit(client)
        if not wait:
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)
            if ok:
                return
            wait = self._failures.hit(client)
            if not wait:
                if not header:
                    raise ApiError(401, "missing_token", "缺少访问令牌：请在 Authorization 头中发送 Bearer 令牌。")
                log.warning("hand-off API: wrong token from a client")
                raise ApiError(401, "invalid_token", "访问令牌无效。")
        seconds = max(1, math.ceil(wait))
        raise ApiError(429, "rate_limited", f"请求过于频繁，请 {seconds} 秒后再试。", retry_after=seconds)

    @staticmethod
    def _id(handoff_id: str) -> str:
        if not _ID.fullmatch(handoff_id):
            raise ApiError(404, "unknown_handoff", "找不到该会话（编号格式不正确）。")
        return handoff_id

    async def _call(self, handoff_id: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await run_in_threadpool(fn, *args)
        except HandoffError as e:
            raise _refusal(e, handoff_id) from None

    async def _once(self, request: Request, run: Callable[[], Awaitable[JSONResponse]]) -> JSONResponse:
        """Run a POST at most once per ``Idempotency-Key``: a retry with the same key and the same
        request gets the first answer again (``Idempotent-Replayed: true``), across instances."""
        key = request.headers.get("idempotency-key")
        if key is None:
            return await run()
        if not _IDEMPOTENCY_KEY.fullmatch(key):
            raise ApiError(422, "invalid_idempotency_key",
                           "Idempotency-Key 必须是 1–200 个可见 ASCII 字符（建议使用 UUID）。")
        digest = hashlib.sha256(f"{request.method} {request.url.path}\n".encode() + await request.body())
        try:
            stored = await run_in_threadpool(self.idempotency.begin, key, digest.hexdigest())
        except KeyReused as e:
            raise ApiError(422, "idempotency_key_reused", e.message) from None
        except KeyInProgress as e:
            raise ApiError(409, "request_in_progress", e.message, retry_after=1) from None
        except IdempotencyError as e:
            raise ApiError(503, "store_unavailable", e.message) from None
        if stored is not None:
            return JSONResponse(stored.body, status_code=stored.status, headers={"Idempotent-Replayed": "true"})
        try:
            response = await run()
        except BaseException:   # refused or failed: nothing changed, the same key may be retried
            with contextlib.suppress(IdempotencyError):
                await run_in_threadpool(self.idempotency.release, key)
            raise
        try:
            await run_in_threadpool(self.idempotency.finish, key, response.status_code, json.loads(response.body))
        except IdempotencyError:
            log.error("hand-off API: an answer was not recorded for its Idempotency-Key")
        return response

    # ---- routes -------------------------------------------------------------------------

    async def list(self, request: Request, status: str = "waiting", limit: str = "100") -> JSONResponse:
        """Hand-offs in one state: waiting oldest first, the others most recently updated first."""
        await run_in_threadpool(self._check, request)   # a Redis limiter blocks
        if status not in STATUSES:
            raise ApiError(422, "invalid_status", f"status 必须是 {' / '.join(STATUSES)} 之一。")
        n = _number(limit, "limit", 1, 500)
        found = await self._call("", self.service.list, status, n)
        return JSONResponse({"handoffs": [public_handoff(h, transcript=False) for h in found]})

    async def get(self, request: Request, handoff_id: str, after: str = "0") -> JSONResponse:
        """One hand-off with its masked transcript and its messages (those after message id ``after``)."""
        await run_in_threadpool(self._check, request)   # a Redis limiter blocks
        n = _number(after, "after", 0, 2**62)
        h, messages = await self._call(handoff_id, self.service.get, self._id(handoff_id), n)
        return JSONResponse({"handoff": public_handoff(h), "messages": [public_message(m) for m in messages]})

    async def post_message(self, request: Request, handoff_id: str) -> JSONResponse:
        """An agent's reply, delivered to the user like a console reply (claims a waiting hand-off)."""
        await run_in_threadpool(self._check, request)   # a Redis limiter blocks
        data = await json_body(request)
        text = _text(data.get("text"), "text", self.service.max_reply_chars, "empty_text", "text_too_long")
        author = _text(data.get("author"), "author", MAX_AUTHOR_CHARS, "invalid_author", "invalid_author")
        hid = self._id(handoff_id)

        async def run() -> JSONResponse:
            m = await self._call(handoff_id, self.service.reply, hid, author, text)
            return JSONResponse({"message": public_message(m)}, status_code=201)

        return await self._once(request, run)

    async def close(self, request: Request, handoff_id: str) -> JSONResponse:
        """Close with a resolution; the user is told and the bot answers again."""
        await run_in_threadpool(self._check, request)   # a Redis limiter blocks
        data = await json_body(request)
        resolution = data.get("resolution")
        if resolution not in CLOSE_RESOLUTIONS:
            raise ApiError(422, "invalid_resolution", f"resolution 必须是 {' / '.join(CLOSE_RESOLUTIONS)} 之一。",
                           allowed=list(CLOSE_RESOLUTIONS))
        author = data.get("author")
        author = "api" if author is None else _text(author, "author", MAX_AUTHOR_CHARS, "invalid_author",
                                                     "invalid_author")
        hid = self._id(handoff_id)

        async def run() -> JSONResponse:
            done = await self._call(handoff_id, lambda: self.service.close(hid, author, resolution, admin=True))
            return JSONResponse({"handoff": public_handoff(done, transcript=False)})

        return await self._once(request, run)

    def router(self) -> APIRouter:
        r = APIRouter(prefix=PREFIX, tags=["hand-off API (help desk)"], responses=ERRORS_DOC)
        r.add_api_route("", self.list, methods=["GET"])
        r.add_api_route("/openapi.json", self.openapi, methods=["GET"], include_in_schema=False)
        r.add_api_route("/{handoff_id}", self.get, methods=["GET"])
        r.add_api_route("/{handoff_id}/messages", self.post_message, methods=["POST"], status_code=201,
                        openapi_extra=_body_doc(MessageIn))
        r.add_api_route("/{handoff_id}/close", self.close, methods=["POST"], openapi_extra=_body_doc(CloseIn))
        return r

    async def openapi(self, request: Request) -> JSONResponse:
        """The web app's OpenAPI document (this API included), for the help desk's integrator."""
        await run_in_threadpool(self._check, request)   # a Redis limiter blocks
        return JSONResponse(request.app.openapi())
