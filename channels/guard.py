"""The web app's body-size guard: an ASGI middleware in front of every route."""
from __future__ import annotations

from typing import Any, Callable

from fastapi.responses import JSONResponse


class BodyTooLarge(Exception):
    """The request body passed the size limit while being read."""


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """Every error of the web app: JSON ``{"error": code, "message": 中文说明, ...}``; a ``retry_after``
    (seconds) is also sent as the ``Retry-After`` header."""
    headers = {"Retry-After": str(extra["retry_after"])} if "retry_after" in extra else None
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status, headers=headers)


def too_large(limit: int) -> JSONResponse:
    size = f"{limit / 1024 / 1024:.0f} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"
    return error_response(413, "body_too_large", f"发送的内容过大（上限 {size}），请缩小后再试。", max_bytes=limit)


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
            await too_large(limit)(scope, receive, guarded_send)
            return
        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if started:
                raise
            await too_large(limit)(scope, receive, guarded_send)
