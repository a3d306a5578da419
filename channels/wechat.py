"""WeChat Official Account (公众号) channel: the server URL WeChat calls, over the conversation engine.

Protocol and crypto come from wechatpy (signature check, AES safe mode with EncodingAESKey and
``msg_signature``, XML parsing into typed messages, passive reply XML). The three API calls this
channel makes (access_token, customer-service send, media download) go through ``WeChatApi``,
a small async client on httpx: wechatpy's own client hard-codes the token URL (no local stand-in,
no proxy), keeps the token's expiry per process (a second worker never refreshes before expiry),
retries 40001/42001 by unbounded recursion without backoff, and is synchronous.

What happens to a POST (``wechat.path``):

1. Signature (plain: ``signature`` over token/timestamp/nonce; safe mode: ``msg_signature`` over the
   encrypted body, then AES) and timestamp freshness — wrong or missing → 403, nothing processed.
   Body over ``wechat.max_body_bytes`` → 413; unreadable XML → 400. Never a traceback.
2. De-duplication: WeChat retries a message it got no answer to within 5 s (up to 3 times). The
   first delivery claims its MsgId (events: FromUserName+CreateTime+Event) in the shared store
   (Redis ``SET NX EX`` / SQLite / memory); a retry gets the cached passive reply, or ``success``
   while the first is still running — a turn never runs twice.
3. The turn: text; voice with WeChat's recognition text; an image, fetched with the media API only
   when the last reply asked for the ID photo; events: subscribe → greeting, unsubscribe → the
   session (any flow and its data) deleted, menu CLICK → its key as a button payload. A typed
   number answers the last numbered choices; a ``msgmenu`` click comes back with its menu id.
4. Answer: when the engine finishes within ``wechat.passive_seconds`` the first text goes back as
   the passive reply and the rest (more text, button menus) through the customer-service API;
   otherwise ``success`` now and everything through the customer-service API when ready.

Buttons become a customer-service ``msgmenu`` (clickable, comes back as a message); where that is
refused (no such permission, ``wechat.msgmenu: false``) they become numbered text the user answers
with a number. Links are ``<a href>``; long text is split under WeChat's byte limit.

OpenIDs: engine session ids and store keys are HMACs of the OpenID; a channel address (what
``send`` needs to reach the user, e.g. for a staff reply) is the OpenID sealed with Fernet. Logs
and records never see an OpenID.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
import sqlite3
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, Mapping, Protocol, Sequence

import httpx
import xmltodict
from cryptography.fernet import Fernet, InvalidToken
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.background import BackgroundTask
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.events import BaseEvent
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import ImageMessage, TextMessage, VoiceMessage
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

import settings
from handlers.limits import Limits, build_limits
from handlers.types import Button, Message, Reply, Undeliverable
from settings import WeChatConfig

from . import render
from .base import (Channel, ConversationEngine, InputRejected, buttons_as_text, clean_payload, clean_text,
                   numbered_answer)

log = logging.getLogger(__name__)

WINDOW_SECONDS = 48 * 3600          # customer-service messages: 48 hours after the user's last message
RETRY_SECONDS = 30                  # WeChat retries an unanswered message 3 times within 15 s
TOKEN_ERRORS = (40001, 40014, 42001)  # invalid / expired access_token: refresh and retry once
WINDOW_ERRORS = (45015,)            # "response out of time limit or subscription is canceled"
MENU_REFUSED = (48001, 40008)      # msgmenu not allowed for this account / type: numbered text instead
# a push WeChat refuses for good (not retried): invalid OpenID, not subscribed, on the account's blacklist,
# too many messages since the user last wrote, content too large or of a type refused
REFUSED_FOR_GOOD = (40003, 43004, 43019, 45047, 45002, 40008)

WELCOME = ("您好，欢迎关注！我是学信网账号助手，可以解答学信网账号的常见问题，并一步步帮您办理：\n\n"
           "- 找回用户名、找回密码\n- 证件号码已被注册（身份证重复）的核验\n"
           "- 手机号已被注册、操作过于频繁、邮箱 IP 受限、绑定微信或支付宝\n\n"
           "请直接输入您的问题。有选项时，点选或回复选项前的数字即可。")
UNSUPPORTED = "暂时只能处理文字、语音和图片。请用文字描述您的问题。"
NO_VOICE_TEXT = "没能识别这条语音，请改用文字输入您的问题。"
NO_IMAGE_NOW = ("现在不需要发送图片。请用文字描述您的问题；办理“证件号码已被注册”的客服协助验证时，"
                "按提示再发送证件照片。")
IMAGE_FAILED = "图片没有接收成功，请重新发送一次。"
FAILED = "抱歉，服务暂时出现问题，请稍后再试。"
TOO_FAST = "您发送消息太频繁了，请稍等一分钟再发送。"
MENU_HEAD = "请点选："
NUMBER_HEAD = "回复数字选择："


# ---- shared state: a tiny key-value store ---------------------------------------------------------

class KVError(Exception):
    """The channel's shared store is unreachable or failed."""


class KeyValue(Protocol):
    """Short-lived shared values (dedupe marks, the access_token, per-user menus), strings with expiry.

    Contract: ``add`` sets only when the key is absent (or expired) and says whether it did — atomic
    across threads and processes (SQLite, Redis); ``get`` is the value or None; ``put`` replaces;
    ``delete(key, value)`` removes only while the value is still ``value`` (None: unconditionally).
    A broken backend raises ``KVError``; nothing else escapes. Keys never contain an OpenID.
    Counting (messages per user) is not here: the app's one limiter (``handlers.limits``) does it.
    """

    def add(self, key: str, value: str, ttl: float) -> bool: ...

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, value: str, ttl: float) -> None: ...

    def delete(self, key: str, value: str | None = None) -> None: ...


class MemoryKV:
    """The in-process twin (one worker; tests)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock, self._data, self._mutex = clock, {}, threading.Lock()

    def _live(self, key: str) -> str | None:
        item = self._data.get(key)
        if item and item[1] <= self._clock():
            del self._data[key]
            return None
        return item[0] if item else None

    def add(self, key: str, value: str, ttl: float) -> bool:
        with self._mutex:
            if self._live(key) is not None:
                return False
            self._data[key] = (value, self._clock() + ttl)
            return True

    def get(self, key: str) -> str | None:
        with self._mutex:
            return self._live(key)

    def put(self, key: str, value: str, ttl: float) -> None:
        with self._mutex:
            self._data[key] = (value, self._clock() + ttl)

    def delete(self, key: str, value: str | None = None) -> None:
        with self._mutex:
            if value is None or self._live(key) == value:
                self._data.pop(key, None)


class SqliteKV:
    """One embedded file shared by the workers of one machine (WAL, atomic INSERT OR IGNORE)."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self._path, self._clock, self._local = str(path), clock, threading.local()
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        with self._errors() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL)")

    @contextlib.contextmanager
    def _errors(self) -> Iterator[sqlite3.Connection]:
        conn = getattr(self._local, "conn", None)
        try:
            if conn is None:
                conn = sqlite3.connect(self._path, timeout=10, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                self._local.conn = conn
            yield conn
        except sqlite3.Error as e:
            raise KVError(f"wechat store failed: {e.__class__.__name__}") from e

    def add(self, key: str, value: str, ttl: float) -> bool:
        now = self._clock()
        with self._errors() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM kv WHERE key = ? AND expires <= ?", (key, now))
                cur = conn.execute("INSERT OR IGNORE INTO kv VALUES (?, ?, ?)", (key, value, now + ttl))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if secrets.randbelow(200) == 0:
                conn.execute("DELETE FROM kv WHERE expires <= ?", (now,))
        return cur.rowcount == 1

    def get(self, key: str) -> str | None:
        with self._errors() as conn:
            row = conn.execute("SELECT value FROM kv WHERE key = ? AND expires > ?", (key, self._clock())).fetchone()
        return row[0] if row else None

    def put(self, key: str, value: str, ttl: float) -> None:
        with self._errors() as conn:
            conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (key, value, self._clock() + ttl))

    def delete(self, key: str, value: str | None = None) -> None:
        with self._errors() as conn:
            if value is None:
                conn.execute("DELETE FROM kv WHERE key = ?", (key,))
            else:
                conn.execute("DELETE FROM kv WHERE key = ? AND value = ?", (key, value))


_DELETE_IF = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class RedisKV:
    """Shared by every worker and instance: SET NX PX, compare-and-delete by a script."""

    def __init__(self, url: str, prefix: str = "chsi-bot:wx:") -> None:
        import redis

        self._errors_of = (redis.RedisError,)
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = prefix
        self._delete_if = self._client.register_script(_DELETE_IF)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._errors_of as e:
            raise KVError(f"redis failed: {e.__class__.__name__}") from e

    def add(self, key: str, value: str, ttl: float) -> bool:
        with self._errors():
            return bool(self._client.set(self._prefix + key, value, nx=True, px=max(1, int(ttl * 1000))))

    def get(self, key: str) -> str | None:
        with self._errors():
            raw = self._client.get(self._prefix + key)
        return raw.decode("utf-8") if raw is not None else None

    def put(self, key: str, value: str, ttl: float) -> None:
        with self._errors():
            self._client.set(self._prefix + key, value, px=max(1, int(ttl * 1000)))

    def delete(self, key: str, value: str | None = None) -> None:
        with self._errors():
            if value is None:
                self._client.delete(self._prefix + key)
            else:
                self._delete_if(keys=[self._prefix + key], args=[value])


def build_kv(cfg: Mapping[str, Any], conf: WeChatConfig) -> KeyValue:
    """Redis when sessions live in Redis (several instances), else SQLite (``wechat.sqlite_path``),
    or memory with memory sessions."""
    sessions = settings.SessionsConfig.of(cfg)
    if sessions.backend == "redis":
        return RedisKV(sessions.redis_url, prefix=sessions.redis_prefix + "wx:")
    if sessions.backend == "memory":
        return MemoryKV()
    return SqliteKV(settings.resolve_path(conf.sqlite_path))


# ---- OpenIDs: hashed for keys, sealed for addresses -------------------------------------------------

class Identity:
    """Derives everything that stands for an OpenID from one secret: session ids and store keys
    (HMAC, one way), and channel addresses (Fernet, so ``send`` can recover the OpenID)."""

    def __init__(self, secret: bytes) -> None:
        self._hash_key = hmac.new(secret, b"wechat-openid-hash", hashlib.sha256).digest()
        seal_key = hmac.new(secret, b"wechat-openid-seal", hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(seal_key))

    def user_key(self, openid: str) -> str:
        """A stable pseudonym of the OpenID (hex), for store keys and the engine session."""
        return hmac.new(self._hash_key, openid.encode(), hashlib.sha256).hexdigest()[:40]

    def session_id(self, openid: str) -> str:
        return "wx-" + self.user_key(openid)

    def seal(self, text: str) -> str:
        """``text`` encrypted and authenticated: an OpenID as an address, a cached reply at rest."""
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def open(self, address: str) -> str:
        """What ``seal`` sealed (the OpenID behind an address); ``ValueError`` when not sealed here."""
        try:
            return self._fernet.decrypt(address.encode("ascii")).decode()
        except (InvalidToken, UnicodeError) as e:
            raise ValueError("not a WeChat address issued here") from e


# ---- the WeChat API ------------------------------------------------------------------------------

class WeChatApiError(Exception):
    """A WeChat API call failed: ``errcode`` is WeChat's (None for HTTP/network trouble)."""

    def __init__(self, errcode: int | None, errmsg: str = "") -> None:
        super().__init__(f"wechat api error {errcode}: {errmsg}")
        self.errcode, self.errmsg = errcode, errmsg


class WindowClosed(WeChatApiError, Undeliverable):
    """WeChat refuses customer-service messages to this user: their last message is more than 48
    hours old (or they unsubscribed). Nothing was delivered; the user must write first. Staff see
    ``reason`` in the conversation."""

    def __init__(self, errcode: int | None, errmsg: str = "") -> None:
        WeChatApiError.__init__(self, errcode, errmsg)
        self.reason = "用户超过 48 小时没有给公众号发消息（或已取消关注），微信不允许再向其推送客服消息，需等用户再次发消息后才能回复"


class PushRefused(WeChatApiError, Undeliverable):
    """WeChat refuses this push for a reason that will not pass by retrying (``REFUSED_FOR_GOOD``)."""

    def __init__(self, errcode: int | None, errmsg: str = "") -> None:
        WeChatApiError.__init__(self, errcode, errmsg)
        self.reason = f"微信拒绝向该用户推送这条消息（错误码 {errcode}，如用户已取消关注或消息条数超出限制），需等用户再次发消息"


class NotOurAddress(ValueError, Undeliverable):
    """An address this service did not seal (e.g. the secret changed since): nothing can be sent to it."""

    def __init__(self) -> None:
        ValueError.__init__(self, "not a WeChat address issued here")
        self.reason = "无法识别该微信用户的地址（可能是服务密钥已更换），无法推送"


class WeChatApi:
    """access_token (shared in the store, one fetch at a time, refreshed before expiry and on
    40001/42001, backoff after failures), customer-service send, media download."""

    def __init__(self, conf: WeChatConfig, kv: KeyValue, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.conf, self.kv, self.clock, self.sleep = conf, kv, clock, sleep
        # httpx logs every request URL at INFO: WeChat's carry the access_token (and the token request the secret)
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
        self._http: httpx.AsyncClient | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        self._key = "token:" + hashlib.sha256(conf.app_id.encode()).hexdigest()[:16]

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._http is None or self._http_loop is not loop:
            self._http = httpx.AsyncClient(timeout=self.conf.http_timeout, follow_redirects=False)
            self._http_loop = loop
        return self._http

    async def aclose(self) -> None:
        if self._http is not None and self._http_loop is asyncio.get_running_loop():
            await self._http.aclose()
        self._http = None

    async def _kv(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except KVError as e:
            raise WeChatApiError(None, str(e)) from e

    # -- access_token --

    async def _cached(self) -> tuple[str, str, float] | None:
        raw = await self._kv(self.kv.get, self._key)
        try:
            data = json.loads(raw) if raw else None
            return (raw, str(data["token"]), float(data["expires"])) if data else None
        except (ValueError, KeyError, TypeError):
            return None

    async def access_token(self, stale: str | None = None) -> str:
        """A valid token; ``stale`` is one WeChat just refused (never returned again)."""
        deadline = self.clock() + 10
        while True:
            cached = await self._cached()
            now = self.clock()
            if cached and cached[1] != stale and cached[2] - now > self.conf.token_refresh_margin:
                return cached[1]
            usable = cached and cached[1] != stale and cached[2] > now
            backoff = await self._kv(self.kv.get, self._key + ":backoff")
            if backoff and float(backoff) > now:
                if usable:
                    return cached[1]
                raise WeChatApiError(None, "access_token unavailable; backing off after failures")
            owner = secrets.token_hex(8)
            if await self._kv(self.kv.add, self._key + ":lock", owner, 15):
                try:
                    # another worker may have stored a fresh token between our read and the lock
                    cached = await self._cached()
                    if cached and cached[1] != stale and cached[2] - self.clock() > self.conf.token_refresh_margin:
                        return cached[1]
                    return await self._fetch_token()
                except WeChatApiError:
                    if usable:
                        return cached[1]
                    raise
                finally:
                    await self._kv(self.kv.delete, self._key + ":lock", owner)
            if usable:
                return cached[1]   # another worker is refreshing; this one is still good
            if self.clock() > deadline:
                raise WeChatApiError(None, "timed out waiting for another worker's access_token fetch")
            await self.sleep(0.05)

    async def _fetch_token(self) -> str:
        try:
            r = await self._client().get(self.conf.base_url + "/cgi-bin/token", params={
                "grant_type": "client_credential", "appid": self.conf.app_id, "secret": self.conf.app_secret})
            data = r.json()
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except (httpx.HTTPError, ValueError) as e:
            await self._failed(None, e.__class__.__name__)
            raise WeChatApiError(None, f"token request failed: {e.__class__.__name__}") from e
        if not data.get("access_token"):
            await self._failed(data.get("errcode"), str(data.get("errmsg", "")))
            raise WeChatApiError(data.get("errcode"), str(data.get("errmsg", "")))
        expires = self.clock() + int(data.get("expires_in") or 7200)
        await self._kv(self.kv.put, self._key, json.dumps({"token": data["access_token"], "expires": expires}),
                       max(1.0, expires - self.clock()))
        await self._kv(self.kv.delete, self._key + ":fails")
        log.info("wechat access_token fetched (valid %ss)", int(data.get("expires_in") or 7200))
        return str(data["access_token"])

    async def _failed(self, errcode: Any, errmsg: str) -> None:
        """Count a failed fetch; wait 1, 2, 4 … 60 s before the next (shared by every worker)."""
        fails = int(await self._kv(self.kv.get, self._key + ":fails") or 0) + 1
        await self._kv(self.kv.put, self._key + ":fails", str(fails), 3600)
        wait = min(60.0, 2.0 ** (fails - 1))
        await self._kv(self.kv.put, self._key + ":backoff", str(self.clock() + wait), wait)
        log.warning("wechat access_token fetch failed (errcode %s: %s); next try in %.0fs", errcode, errmsg[:80], wait)

    # -- calls --

    async def _call(self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
                    binary: bool = False) -> Any:
        """One API call with a token; a refused token is refreshed and the call retried once,
        a busy or unreachable WeChat is retried after a short backoff."""
        stale: str | None = None
        for attempt in range(3):
            token = await self.access_token(stale)
            content = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
            try:
                r = await self._client().request(method, self.conf.base_url + path, content=content,
                                                 params={**(params or {}), "access_token": token},
                                                 headers={"Content-Type": "application/json"} if content else None)
            except httpx.HTTPError as e:
                # a send whose answer was lost may have been delivered: only GETs and unsent requests again
                if attempt < 2 and (method == "GET" or isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout))):
                    await self.sleep(0.2 * 2 ** attempt)
                    continue
                raise WeChatApiError(None, f"{path}: {e.__class__.__name__}") from e
            if binary and r.status_code == 200 and "json" not in r.headers.get("content-type", "") \
                    and "text/plain" not in r.headers.get("content-type", ""):
                return r
            try:
                data = r.json()
            except ValueError:
                raise WeChatApiError(None, f"{path}: HTTP {r.status_code}, not JSON") from None
            code = int(data.get("errcode") or 0) if isinstance(data, dict) else 0
            if code in TOKEN_ERRORS and attempt < 2:
                log.info("wechat refused the access_token (%s); refreshing", code)
                stale = token
                cached = await self._cached()
                if cached and cached[1] == token:
                    await self._kv(self.kv.delete, self._key, cached[0])
                continue
            if code == -1 and attempt < 2:
                await self.sleep(0.2 * 2 ** attempt)
                continue
            if code in WINDOW_ERRORS:
                raise WindowClosed(code, str(data.get("errmsg", "")))
            if code:
                raise WeChatApiError(code, str(data.get("errmsg", "")))
            return data
        raise WeChatApiError(None, f"{path}: gave up")

    async def send_custom(self, openid: str, message: Mapping[str, Any]) -> None:
        """One customer-service message (``{"msgtype": "text", "text": {...}}`` etc.) to ``openid``."""
        await self._call("POST", "/cgi-bin/message/custom/send", body={"touser": openid, **message})

    async def get_media(self, media_id: str) -> tuple[bytes, str]:
        """A temporary media file (the user's photo): its bytes and content type, at most ``media_max_bytes``."""
        r = await self._call("GET", "/cgi-bin/media/get", params={"media_id": media_id}, binary=True)
        if len(r.content) > self.conf.media_max_bytes:
            raise WeChatApiError(None, "media too large")
        return r.content, r.headers.get("content-type", "application/octet-stream").split(";")[0]


# ---- replies → WeChat messages ------------------------------------------------------------------------

@dataclass(frozen=True)
class Menu:
    """The choices last offered to one user, numbered from 1; ``gen`` tells menus apart
    (a ``msgmenu`` item's id is ``gen`` + its two-digit number)."""

    gen: str
    buttons: tuple[Button, ...]

    def item_id(self, n: int) -> str:
        return f"{self.gen}{n:02d}"

    def by_id(self, item_id: str) -> str | None:
        n = int(item_id[-2:]) if len(item_id) > 2 and item_id[:-2] == self.gen and item_id[-2:].isdigit() else 0
        return self.buttons[n - 1].payload if 1 <= n <= len(self.buttons) else None

    def to_json(self) -> dict:
        return {"gen": self.gen, "buttons": [[b.label, b.payload] for b in self.buttons]}

    @classmethod
    def from_json(cls, data: Any) -> "Menu":
        try:
            return cls(str(data["gen"]), tuple(Button(str(label), str(payload)) for label, payload in data["buttons"]))
        except (TypeError, KeyError, ValueError):
            return cls("", ())


def outgoing(replies: Sequence[Reply], gen: str, conf: WeChatConfig, menus: bool) -> tuple[list[dict], Menu]:
    """The turn as WeChat messages in order (adjacent texts merged while they fit) and its menu:
    every button of the turn numbered 1..N, as ``msgmenu`` messages or as numbered text."""
    out: list[dict] = []
    offered: list[Button] = []

    def text(content: str) -> None:
        if out and out[-1]["msgtype"] == "text" and \
                len((out[-1]["text"]["content"] + "\n\n" + content).encode()) <= conf.max_text_bytes:
            out[-1]["text"]["content"] += "\n\n" + content
        else:
            out.append({"msgtype": "text", "text": {"content": content}})

    for reply in replies:
        body, start = reply.text, len(offered) + 1
        if reply.author:                       # a person (staff) speaks through the account
            body = f"【{reply.author}】\n{body}"
        offered += reply.buttons
        items = [(start + i, b.label) for i, b in enumerate(reply.buttons)]
        if items and not menus:
            body += "\n\n" + NUMBER_HEAD + buttons_as_text(Reply("", reply.buttons), start)
        for chunk in render.wechat_chunks(body, conf.max_text_bytes):
            text(chunk)
        if items and menus:
            menu = Menu(gen, ())
            out.append({"msgtype": "msgmenu", "msgmenu": {
                "head_content": MENU_HEAD, "tail_content": "",
                "list": [{"id": menu.item_id(n), "content": label[:60]} for n, label in items]}})
    return out, Menu(gen, tuple(offered))


def numbered_fallback(menu_message: Mapping[str, Any]) -> dict:
    """A ``msgmenu`` WeChat refused, as numbered text (the same numbers)."""
    items = menu_message["msgmenu"]["list"]
    buttons = tuple(Button(item["content"], item["id"]) for item in items)
    return {"msgtype": "text", "text": {"content": NUMBER_HEAD + buttons_as_text(Reply("", buttons), int(items[0]["id"][-2:]))}}


# ---- incoming ---------------------------------------------------------------------------------------

class Refused(Exception):
    """A request to turn away: HTTP status and a short plain-text body (WeChat shows nothing of it)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(body)
        self.status, self.body = status, body


@dataclass
class Turn:
    """One WeChat message or event, what the engine should get, and how to answer it."""

    raw: Any                       # the wechatpy message
    openid: str
    dedupe_key: str
    message: Message | None = None  # for the engine
    say: str | None = None          # answer of the channel itself (greeting, unsupported input)
    label: str = ""                # the text of a menu click (used when the menu is no longer current)
    media_id: str = ""             # an image to fetch when the flow waits for one
    forget: bool = False           # unsubscribe


class WeChatChannel(Channel):
    """The WeChat adapter: ``router()`` for the web app, ``send(address, replies)`` to push."""

    name = "wechat"

    def __init__(self, cfg: Mapping[str, Any], engine: ConversationEngine, *, secret: bytes,
                 kv: KeyValue | None = None, limits: Limits | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.conf = WeChatConfig.of(cfg)
        if not self.conf.enabled:
            raise settings.ConfigError("wechat: token, app_id and app_secret (WECHAT_TOKEN, WECHAT_APP_ID, "
                                       "WECHAT_APP_SECRET) must all be set")
        self.engine, self.clock = engine, clock
        self.kv = kv if kv is not None else build_kv(cfg, self.conf)
        self.api = WeChatApi(self.conf, self.kv, clock)
        self.ids = Identity(secret)
        # messages per user: the app's one limiter (Redis / SQLite beside the sessions / memory, as
        # every other limit), a sliding minute — not a counter of its own
        limits = limits or getattr(engine, "limits", None) or build_limits(cfg, secret)
        self.flood = limits.throttle("wechat-messages", self.conf.user_messages_per_minute, 60)
        self.crypto = WeChatCrypto(self.conf.token, self.conf.aes_key, self.conf.app_id) if self.conf.aes_key else None
        self._tasks: set[asyncio.Task] = set()
        self._pending = 0

    # -- public --

    @property
    def in_flight(self) -> int:
        """Deliveries still running after their request was answered (tests wait for 0)."""
        return len(self._tasks) + self._pending

    def address(self, openid: str) -> str:
        return self.ids.seal(openid)

    async def send(self, address: str, replies: Sequence[Reply]) -> None:
        """Push replies to a user outside a request (a staff reply) through the customer-service API.

        Raises ``WindowClosed`` when the user's last message is over 48 hours old (nothing sent),
        ``PushRefused`` when WeChat refuses for good, ``NotOurAddress`` (a ``ValueError``) for an address
        that is not one of ours — all ``Undeliverable``, not worth retrying — and ``WeChatApiError``
        when WeChat is busy or cannot be reached."""
        try:
            openid = self.ids.open(address)
        except ValueError:
            raise NotOurAddress() from None
        user = self.ids.user_key(openid)
        seen = await asyncio.to_thread(self.kv.get, "seen:" + user)
        if not seen or self.clock() - float(seen) > WINDOW_SECONDS:
            raise WindowClosed(45015, "the user has not written in the last 48 hours")
        messages = await self._messages(user, replies)
        try:
            await self._deliver(openid, user, messages)
        except WeChatApiError as e:
            if e.errcode in REFUSED_FOR_GOOD and not isinstance(e, Undeliverable):
                raise PushRefused(e.errcode, e.errmsg) from e
            raise

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route(self.conf.path, self.verify_url, methods=["GET"], include_in_schema=False)
        router.add_api_route(self.conf.path, self.receive, methods=["POST"], include_in_schema=False)
        return router

    async def aclose(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        await self.api.aclose()

    # -- the URL check --

    async def verify_url(self, request: Request) -> Response:
        q = request.query_params
        try:
            self._check_time(q.get("timestamp", ""))
            check_signature(self.conf.token, q.get("signature", ""), q.get("timestamp", ""), q.get("nonce", ""))
        except (InvalidSignatureException, Refused):
            return PlainTextResponse("forbidden", status_code=403)
        return PlainTextResponse(q.get("echostr", ""))

    def _check_time(self, timestamp: str) -> None:
        if not timestamp.isdigit():
            raise Refused(403, "forbidden")
        if self.conf.max_clock_skew and abs(self.clock() - int(timestamp)) > self.conf.max_clock_skew:
            raise Refused(403, "forbidden")

    # -- messages --

    async def receive(self, request: Request) -> Response:
        """WeChat's POST: check, de-duplicate, run the turn, answer (never a traceback)."""
        try:
            xml, nonce, timestamp = await self._open(request)
            turn = self._parse(xml)
        except Refused as e:
            return PlainTextResponse(e.body, status_code=e.status)
        try:
            return await self._answer(turn, nonce, timestamp)
        except Exception:  # noqa: BLE001 - WeChat must get an answer, the log the traceback
            log.exception("wechat: failed on a %s message", getattr(turn.raw, "type", "?"))
            return self._passive(turn, FAILED, nonce, timestamp)

    async def _body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.conf.max_body_bytes):
            raise Refused(413, "body too large")
        body = b""
        async for part in request.stream():
            body += part
            if len(body) > self.conf.max_body_bytes:
                raise Refused(413, "body too large")
        return body

    async def _open(self, request: Request) -> tuple[str, str, str]:
        """The message XML of a request whose signature holds (403 otherwise), its nonce and timestamp."""
        q = request.query_params
        timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
        self._check_time(timestamp)
        encrypted = q.get("encrypt_type", "raw").lower() == "aes"
        if encrypted != bool(self.crypto):
            # safe mode configured: plain posts are refused (and the reverse), both as forged
            log.warning("wechat: %s message while %s mode is configured", "encrypted" if encrypted else "plain",
                        "safe" if self.crypto else "plain")
            raise Refused(403, "forbidden")
        if not self.crypto:
            try:
                check_signature(self.conf.token, q.get("signature", ""), timestamp, nonce)
            except InvalidSignatureException:
                raise Refused(403, "forbidden") from None
        body = await self._body(request)
        if not self.crypto:
            return self._text(body), nonce, timestamp
        envelope = self._xml(body)
        if not isinstance(envelope.get("Encrypt"), str):
            raise Refused(400, "bad request")
        try:
            xml = self.crypto.decrypt_message(envelope, q.get("msg_signature", ""), timestamp, nonce)
        except (InvalidSignatureException, InvalidAppIdException):
            raise Refused(403, "forbidden") from None
        except Exception:  # noqa: BLE001 - signed but undecryptable: base64/padding/length errors of any kind
            log.warning("wechat: signed message could not be decrypted")
            raise Refused(400, "bad request") from None
        return xml, nonce, timestamp

    @staticmethod
    def _text(body: bytes) -> str:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, "bad request") from None

    @classmethod
    def _xml(cls, body: bytes | str) -> dict:
        """The ``<xml>`` element of a body; no DTDs (WeChat never sends one: entity tricks are refused)."""
        text = body if isinstance(body, str) else cls._text(body)
        if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
            raise Refused(400, "bad request")
        try:
            data = xmltodict.parse(text).get("xml")
        except Exception:  # noqa: BLE001 - expat raises several types for malformed input
            raise Refused(400, "bad request") from None
        if not isinstance(data, dict):
            raise Refused(400, "bad request")
        return data

    def _parse(self, xml: str) -> Turn:
        """The turn of a message's XML; malformed → 400; unknown types get a polite answer."""
        data = self._xml(xml)
        openid, kind = data.get("FromUserName"), data.get("MsgType")
        if not isinstance(openid, str) or not openid or not isinstance(kind, str):
            raise Refused(400, "bad request")
        try:
            msg = parse_message(xml)
        except Exception:  # noqa: BLE001 - a field of the wrong shape inside valid XML
            raise Refused(400, "bad request") from None
        user = self.ids.user_key(openid)
        if isinstance(msg, BaseEvent) or kind.lower() == "event":
            key = f"evt:{user}:{data.get('CreateTime', '')}:{str(data.get('Event', '')).lower()}"
        elif str(data.get("MsgId", "")).isdigit():
            key = f"msg:{data['MsgId']}"
        else:
            key = f"msg:{user}:{data.get('CreateTime', '')}"
        turn = Turn(raw=msg, openid=openid, dedupe_key=key)
        if isinstance(msg, TextMessage):
            menu_id = data.get("bizmsgmenuid")
            turn.message = Message.from_text(msg.content or "")
            if isinstance(menu_id, str) and menu_id.isdigit():
                turn.message, turn.label = Message.from_button("wxmenu:" + menu_id), msg.content or ""
        elif isinstance(msg, VoiceMessage):
            if (msg.recognition or "").strip():
                turn.message = Message.from_text(msg.recognition)
            else:
                turn.say = NO_VOICE_TEXT
        elif isinstance(msg, ImageMessage):
            turn.media_id = msg.media_id or ""
            if not turn.media_id:
                raise Refused(400, "bad request")
        elif isinstance(msg, BaseEvent):
            event = msg.event
            if event in ("subscribe", "subscribe_scan"):
                turn.say = WELCOME
            elif event == "unsubscribe":
                turn.forget = True
            elif event == "click" and str(getattr(msg, "key", "") or "").strip():
                turn.message = Message.from_button(str(msg.key).strip())
        else:
            turn.say = UNSUPPORTED
        return turn

    # -- the turn --

    async def _answer(self, turn: Turn, nonce: str, timestamp: str) -> Response:
        user = self.ids.user_key(turn.openid)
        claimed = await asyncio.to_thread(self.kv.add, "dup:" + turn.dedupe_key, "running", self.conf.dedupe_seconds)
        if not claimed:
            earlier = await asyncio.to_thread(self.kv.get, "dup:" + turn.dedupe_key) or ""
            log.info("wechat: retry of a message already %s", earlier)
            sealed = await asyncio.to_thread(self.kv.get, "ans:" + turn.dedupe_key) if earlier == "answered" else None
            with contextlib.suppress(ValueError):
                if sealed:
                    return self._passive(turn, self.ids.open(sealed), nonce, timestamp)
            return PlainTextResponse("success")
        if turn.forget:
            await self._forget(user)
            return PlainTextResponse("success")
        if turn.message is None and turn.say is None and not turn.media_id:
            return PlainTextResponse("success")   # events without an answer (menu links, location reports …)
        await asyncio.to_thread(self.kv.put, "seen:" + user, str(self.clock()), WINDOW_SECONDS)
        if await asyncio.to_thread(self.flood.hit, user):
            log.warning("wechat: a user passed %d messages a minute; not answered by the engine",
                        self.conf.user_messages_per_minute)
            await self._answered(turn, TOO_FAST)
            return self._passive(turn, TOO_FAST, nonce, timestamp)
        task = asyncio.ensure_future(self._run(turn, user))
        done, _ = await asyncio.wait({task}, timeout=self.conf.passive_seconds)
        if not done:
            log.info("wechat: turn slower than %.1fs; answering through the customer-service API",
                     self.conf.passive_seconds)
            await asyncio.to_thread(self.kv.put, "dup:" + turn.dedupe_key, "async", self.conf.dedupe_seconds)
            self._background(self._finish_late(task, turn.openid, user))
            return PlainTextResponse("success")
        messages = task.result()
        first = messages[0] if messages and messages[0]["msgtype"] == "text" else None
        rest = messages[1:] if first else messages
        later = self._after_response(turn.openid, user, rest) if rest else None
        if first is None:
            await asyncio.to_thread(self.kv.put, "dup:" + turn.dedupe_key, "async", self.conf.dedupe_seconds)
            return PlainTextResponse("success", background=later)
        content = first["text"]["content"]
        await self._answered(turn, content)
        response = self._passive(turn, content, nonce, timestamp)
        response.background = later
        return response

    async def _answered(self, turn: Turn, content: str) -> None:
        """Mark the message answered; keep its passive reply, sealed, just long enough for WeChat's
        retries (they come within 15 s) — it may hold a reset link."""
        await asyncio.to_thread(self.kv.put, "ans:" + turn.dedupe_key, self.ids.seal(content), RETRY_SECONDS)
        await asyncio.to_thread(self.kv.put, "dup:" + turn.dedupe_key, "answered", self.conf.dedupe_seconds)

    async def _run(self, turn: Turn, user: str) -> list[dict]:
        """The engine's replies to the turn as WeChat messages (the user's menu and photo wish saved)."""
        if turn.say is not None:
            return await self._messages(user, [Reply(turn.say)])
        message = turn.message
        if turn.media_id:
            message, say = await self._image(turn.media_id, user)
            if message is None:
                return [{"msgtype": "text", "text": {"content": say}}]
        assert message is not None
        try:
            message = await self._resolve(message, user, turn.label)
            if message.kind == "text":
                message = Message.from_text(clean_text(message.text, self.conf.max_text_chars))
            elif message.kind == "button":
                message = Message.from_button(clean_payload(message.payload))
        except InputRejected as e:
            return [{"msgtype": "text", "text": {"content": e.message}}]
        message = dataclasses.replace(message, channel=self.name, address=self.ids.seal(turn.openid))
        replies = await asyncio.to_thread(self.engine.handle, self.ids.session_id(turn.openid), message)
        return await self._messages(user, replies)

    async def _resolve(self, message: Message, user: str, label: str = "") -> Message:
        """A menu click or a typed number → the button payload it stands for; a click on an older
        menu counts as typing its label."""
        menu = Menu.from_json((await self._user(user)).get("menu"))
        if message.kind == "button" and message.payload.startswith("wxmenu:"):
            payload = menu.by_id(message.payload[len("wxmenu:"):])
            return Message.from_button(payload) if payload else Message.from_text(label)
        if message.kind == "text":
            payload = numbered_answer(unicodedata.normalize("NFKC", message.text), menu.buttons)
            if payload:
                return Message.from_button(payload)
        return message

    async def _image(self, media_id: str, user: str) -> tuple[Message | None, str]:
        """The photo as an image message, downloaded only while the flow waits for one (the engine
        tells; an engine that cannot: the last reply asked for it)."""
        expects = getattr(self.engine, "expects_image", None)
        if expects is not None:
            wanted = bool(await asyncio.to_thread(expects, "wx-" + user))
        else:
            wanted = bool((await self._user(user)).get("image"))
        if not wanted:
            return None, NO_IMAGE_NOW
        try:
            data, content_type = await self.api.get_media(media_id)
        except WeChatApiError as e:
            log.warning("wechat: media download failed (errcode %s)", e.errcode)
            return None, IMAGE_FAILED
        return Message.from_image(data, "wechat-photo", content_type), ""

    async def _user(self, user: str) -> dict:
        raw = await asyncio.to_thread(self.kv.get, "user:" + user)
        try:
            state = json.loads(raw) if raw else {}
        except ValueError:
            state = {}
        return state if isinstance(state, dict) else {}

    async def _messages(self, user: str, replies: Sequence[Reply]) -> list[dict]:
        """Render replies; remember their menu and whether the bot now waits for a photo."""
        gen = f"{secrets.randbelow(900000) + 100000}"
        messages, menu = outgoing(replies, gen, self.conf, self.conf.msgmenu)
        state = {"menu": menu.to_json(), "image": bool(replies) and replies[-1].expects_image}
        await asyncio.to_thread(self.kv.put, "user:" + user, json.dumps(state, ensure_ascii=False),
                                WINDOW_SECONDS)
        return messages

    async def _forget(self, user: str) -> None:
        """Unsubscribed: delete the session (any flow and its data) and what the channel kept."""
        forget = getattr(self.engine, "forget", None)
        if callable(forget):
            await asyncio.to_thread(forget, "wx-" + user)
        for key in ("user:", "seen:"):
            await asyncio.to_thread(self.kv.delete, key + user)
        log.info("wechat: a user unsubscribed; their session was deleted")

    # -- delivery --

    def _after_response(self, openid: str, user: str, messages: Sequence[Mapping[str, Any]]) -> BackgroundTask:
        """The rest of a turn (menus, further parts), sent once the passive reply has gone out and
        WeChat has had a moment to show it, so the user sees them in order."""
        self._pending += 1

        async def run() -> None:
            try:
                await asyncio.sleep(self.conf.follow_up_delay)
                await self._deliver(openid, user, messages, raise_errors=False)
            finally:
                self._pending -= 1

        return BackgroundTask(run)

    def _background(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_late(self, task: asyncio.Future, openid: str, user: str) -> None:
        try:
            messages = await task
        except Exception:  # noqa: BLE001
            log.exception("wechat: a slow turn failed")
            messages = [{"msgtype": "text", "text": {"content": FAILED}}]
        await self._deliver(openid, user, messages, raise_errors=False)

    async def _deliver(self, openid: str, user: str, messages: Sequence[Mapping[str, Any]],
                       raise_errors: bool = True) -> None:
        """Customer-service messages in order; a refused ``msgmenu`` goes again as numbered text."""
        try:
            for message in messages:
                try:
                    await self.api.send_custom(openid, message)
                except WeChatApiError as e:
                    if message["msgtype"] != "msgmenu" or e.errcode not in MENU_REFUSED:
                        raise
                    await self.api.send_custom(openid, numbered_fallback(message))
        except WeChatApiError as e:
            log.warning("wechat: customer-service delivery failed (errcode %s)", e.errcode)
            if raise_errors:
                raise

    def _passive(self, turn: Turn, content: str, nonce: str, timestamp: str) -> Response:
        xml = TextReply(message=turn.raw, content=content).render()
        if self.crypto:
            xml = self.crypto.encrypt_message(xml, nonce, timestamp)
        return Response(xml, media_type="application/xml")


