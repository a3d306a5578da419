"""A recording stand-in for python-telegram-bot's HTTP layer: every Bot API call is recorded, the
few methods the bot may use get plausible JSON, anything else fails the test (so no real network
call can happen)."""
from __future__ import annotations

import datetime as dtm
import json

from telegram.request import BaseRequest, RequestData

from support import JPEG

TOKEN = "123456:TEST-token-for-offline-tests"
BOT = {"id": 123456, "is_bot": True, "first_name": "学信网账号助手", "username": "chsi_help_bot",
       "can_join_groups": False, "can_read_all_group_messages": False, "supports_inline_queries": False}
DATE = dtm.datetime(2026, 1, 1, tzinfo=dtm.timezone.utc)


class UnexpectedCall(AssertionError):
    pass


class RecordingRequest(BaseRequest):
    """Records every Bot API call; answers getMe/sendMessage/answerCallbackQuery/getFile and the file download."""

    ANSWERS = {"getMe", "sendMessage", "answerCallbackQuery", "getFile", "editMessageReplyMarkup", "setMyCommands"}

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.unexpected: list[str] = []
        self.downloads: list[str] = []
        self._next_id = 1000

    @property
    def read_timeout(self) -> float | None:
        return 1.0

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def do_request(self, url, method, request_data: RequestData | None = None, read_timeout=None,
                         write_timeout=None, connect_timeout=None, pool_timeout=None) -> tuple[int, bytes]:
        if url.startswith("https://api.telegram.org/file/bot") and method == "GET":
            self.downloads.append(url.rsplit("/", 1)[1])
            return 200, JPEG
        prefix = f"https://api.telegram.org/bot{TOKEN}/"
        name = url[len(prefix):] if url.startswith(prefix) else url
        params = request_data.parameters if request_data else {}
        if name not in self.ANSWERS:
            self.unexpected.append(f"{method} {url}")
            raise UnexpectedCall(f"unexpected Bot API call: {method} {url}")
        self.calls.append((name, params))
        return 200, json.dumps({"ok": True, "result": self._result(name, params)}).encode()

    def _result(self, name: str, params: dict):
        if name == "getMe":
            return BOT
        if name in ("answerCallbackQuery", "setMyCommands", "editMessageReplyMarkup"):
            return True
        if name == "getFile":
            return {"file_id": params["file_id"], "file_unique_id": "u-" + params["file_id"],
                    "file_size": len(JPEG), "file_path": f"photos/{params['file_id']}.jpg"}
        self._next_id += 1
        return {"message_id": self._next_id, "date": int(DATE.timestamp()),
                "chat": {"id": int(params["chat_id"]), "type": "private"}, "text": params.get("text", "")}

    def sent(self) -> list[dict]:
        return [p for n, p in self.calls if n == "sendMessage"]

    def named(self, name: str) -> list[dict]:
        return [p for n, p in self.calls if n == name]
