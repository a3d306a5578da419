"""A local stand-in for the Telegram Bot API (real HTTP on an ephemeral 127.0.0.1 port) for offline
tests of python-telegram-bot's real stack (HTTPXRequest, Updater, rate limiter) via ``telegram.base_url``.

It answers the methods the bot uses, as the Bot API documents them: ``getMe``, ``getUpdates`` (long
poll, capped at 1 s), ``deleteWebhook``, ``sendMessage``, ``answerCallbackQuery``,
``editMessageReplyMarkup``, ``setMyCommands``, ``getFile`` and file downloads. A token other than
``token`` gets 401 Unauthorized. Knobs: ``push_text``/``push_press``/``push_photo`` queue updates,
``throttle_sends(n, retry_after)`` answers the next n sendMessage calls with 429. Records: ``calls``
(method, params), ``sent`` (the messages delivered), ``downloads``.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from live_server import serving

BOT = {"id": 777000, "is_bot": True, "first_name": "学信网账号助手", "username": "chsi_help_bot",
       "can_join_groups": False, "can_read_all_group_messages": False, "supports_inline_queries": False}


@dataclass
class BotApiStandIn:
    token: str
    base: str = ""
    calls: list[tuple[str, dict]] = field(default_factory=list)
    sent: list[dict] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    updates: list[dict] = field(default_factory=list)
    throttled: int = 0
    retry_after: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)
    _update_ids: Any = field(default_factory=lambda: itertools.count(1))
    _message_ids: Any = field(default_factory=lambda: itertools.count(500))

    # -- the configuration a bot needs to talk to this stand-in --

    @property
    def base_url(self) -> str:
        return f"{self.base}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.base}/file/bot"

    # -- knobs --

    def _push(self, **update: Any) -> int:
        with self.lock:
            uid = next(self._update_ids)
            self.updates.append({"update_id": uid, **update})
            return uid

    def _message(self, chat_id: int, **fields: Any) -> dict:
        return {"message_id": next(self._message_ids), "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "from": {"id": chat_id, "is_bot": False, "first_name": "用户"}, **fields}

    def push_text(self, chat_id: int, text: str) -> int:
        return self._push(message=self._message(chat_id, text=text))

    def push_photo(self, chat_id: int, data: bytes, file_size: int | None = None) -> int:
        file_id = f"photo{len(self.files) + 1}"
        self.files[file_id] = data
        size = {"file_id": file_id, "file_unique_id": "u" + file_id, "width": 800, "height": 600,
                "file_size": file_size if file_size is not None else len(data)}
        return self._push(message=self._message(chat_id, photo=[size]))

    def push_press(self, chat_id: int, message: dict, data: str, query_id: str) -> int:
        shown = {"message_id": message["message_id"], "date": message["date"], "chat": message["chat"],
                 "from": BOT, "text": message.get("text", "")}
        return self._push(callback_query={"id": query_id, "chat_instance": "ci", "data": data, "message": shown,
                                          "from": {"id": chat_id, "is_bot": False, "first_name": "用户"}})

    def throttle_sends(self, n: int, retry_after: int = 1) -> None:
        """The next ``n`` sendMessage calls are refused with 429 and ``retry_after``."""
        self.throttled, self.retry_after = n, retry_after

    # -- reading what happened --

    def named(self, method: str) -> list[dict]:
        with self.lock:
            return [p for m, p in self.calls if m == method]

    def texts(self, chat_id: int) -> list[str]:
        with self.lock:
            return [m["text"] for m in self.sent if m["chat"]["id"] == chat_id]

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """Poll until ``predicate()`` holds (generous deadline: the machine is shared)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"stand-in: condition not met in {timeout} s; calls: "
                                     f"{[m for m, _ in self.calls][-20:]}")
            time.sleep(0.02)

    # -- the HTTP side --

    def build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/bot{token}/{method}")
        async def method(token: str, method: str, request: Request) -> JSONResponse:
            if token != self.token:
                return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
            form = await request.form()
            params = {k: _value(v) for k, v in form.items()}
            with self.lock:
                self.calls.append((method, params))
            answer = await self._answer(method, params)
            if isinstance(answer, JSONResponse):
                return answer
            return JSONResponse({"ok": True, "result": answer})

        @app.get("/file/bot{token}/{path:path}")
        async def download(token: str, path: str) -> Response:
            if token != self.token:
                return Response(status_code=401)
            file_id = path.rsplit("/", 1)[-1].split(".")[0]
            with self.lock:
                self.downloads.append(file_id)
            return Response(self.files.get(file_id, b""), media_type="application/octet-stream")

        return app

    async def _answer(self, method: str, params: dict) -> Any:
        if method == "getMe":
            return BOT
        if method in ("deleteWebhook", "setMyCommands", "answerCallbackQuery", "editMessageReplyMarkup"):
            return True
        if method == "getUpdates":
            offset, wait = int(params.get("offset") or 0), min(float(params.get("timeout") or 0), 1.0)
            deadline = time.monotonic() + wait
            while True:
                with self.lock:
                    ready = [u for u in self.updates if u["update_id"] >= offset]
                if ready or time.monotonic() >= deadline:
                    return ready
                await asyncio.sleep(0.02)
        if method == "sendMessage":
            with self.lock:
                if self.throttled > 0:
                    self.throttled -= 1
                    return JSONResponse({"ok": False, "error_code": 429,
                                         "description": f"Too Many Requests: retry after {self.retry_after}",
                                         "parameters": {"retry_after": self.retry_after}}, 429)
                message = {"message_id": next(self._message_ids), "date": int(time.time()),
                           "chat": {"id": int(params["chat_id"]), "type": "private"}, "from": BOT,
                           "text": params.get("text", ""), "reply_markup": params.get("reply_markup")}
                self.sent.append(message)
            return {k: v for k, v in message.items() if k != "reply_markup" or v}
        if method == "getFile":
            file_id = params["file_id"]
            return {"file_id": file_id, "file_unique_id": "u" + file_id, "file_size": len(self.files.get(file_id, b"")),
                    "file_path": f"photos/{file_id}.jpg"}
        return JSONResponse({"ok": False, "error_code": 400, "description": f"stand-in: no method {method}"}, 400)


def _value(v: Any) -> Any:
    """Form values as the Bot API reads them: JSON for objects and lists."""
    if isinstance(v, str) and v[:1] in "{[":
        with contextlib.suppress(ValueError):
            return json.loads(v)
    return v


@contextlib.contextmanager
def running_bot_api(token: str) -> Iterator[BotApiStandIn]:
    """Serve a stand-in on a free 127.0.0.1 port until the block ends."""
    standin = BotApiStandIn(token)
    with serving(standin.build(), "botapi-standin") as base:
        standin.base = base
        yield standin
