"""A local stand-in for the WeChat API (real HTTP on an ephemeral 127.0.0.1 port) for offline tests.

It speaks the three calls the channel makes, as WeChat documents them:

- ``GET /cgi-bin/token?grant_type=client_credential&appid=&secret=`` → ``{"access_token", "expires_in"}``
  (``40013``/``40125`` for a wrong app id / secret);
- ``POST /cgi-bin/message/custom/send?access_token=`` (JSON) → ``{"errcode": 0}``; ``40001`` for an
  unknown token, ``42001`` for an expired one, ``45015`` outside the 48-hour window, ``48001`` for
  ``msgmenu`` when menus are switched off;
- ``GET /cgi-bin/media/get?access_token=&media_id=`` → the file bytes, or ``{"errcode": 40007}``.

Knobs for tests: ``expire_tokens()``, ``fail_token_fetches(n)``, ``close_window(openid)``,
``refuse(openid, errcode)`` (every send to them answers that errcode), ``menus_allowed``, ``add_media(bytes)``. Records: ``sent`` (openid, message), ``token_fetches``,
``media_fetches``.
"""
from __future__ import annotations

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


@dataclass
class StandIn:
    app_id: str
    app_secret: str
    base_url: str = ""
    expires_in: int = 7200
    menus_allowed: bool = True
    sent: list[tuple[str, dict]] = field(default_factory=list)
    token_fetches: int = 0
    media_fetches: list[str] = field(default_factory=list)
    tokens: dict[str, float] = field(default_factory=dict)   # token → expiry
    media: dict[str, bytes] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    refused: dict[str, int] = field(default_factory=dict)   # openid → the errcode every send to them gets
    failures_left: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    # -- knobs --

    def expire_tokens(self) -> None:
        """Every token issued so far is now expired (WeChat answers 42001)."""
        with self.lock:
            self.tokens = {t: 0.0 for t in self.tokens}

    def fail_token_fetches(self, n: int) -> None:
        """The next ``n`` token requests answer ``-1`` (system busy)."""
        self.failures_left = n

    def close_window(self, openid: str) -> None:
        self.closed.add(openid)

    def refuse(self, openid: str, errcode: int) -> None:
        self.refused[openid] = errcode

    def add_media(self, data: bytes) -> str:
        media_id = f"media-{next(self._ids)}"
        self.media[media_id] = data
        return media_id

    def messages_to(self, openid: str) -> list[dict]:
        with self.lock:
            return [m for to, m in self.sent if to == openid]

    # -- the API --

    def _token_error(self, token: str) -> dict | None:
        with self.lock:
            expiry = self.tokens.get(token)
        if expiry is None:
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
        if expiry <= time.time():
            return {"errcode": 42001, "errmsg": "access_token expired"}
        return None

    def build(self) -> FastAPI:
        app = FastAPI()

        @app.get("/cgi-bin/token")
        async def token(grant_type: str = "", appid: str = "", secret: str = "") -> JSONResponse:
            self.token_fetches += 1
            if self.failures_left > 0:
                self.failures_left -= 1
                return JSONResponse({"errcode": -1, "errmsg": "system error"})
            if grant_type != "client_credential" or appid != self.app_id:
                return JSONResponse({"errcode": 40013, "errmsg": "invalid appid"})
            if secret != self.app_secret:
                return JSONResponse({"errcode": 40125, "errmsg": "invalid appsecret"})
            value = f"ACCESS_TOKEN_{next(self._ids)}"
            with self.lock:
                self.tokens[value] = time.time() + self.expires_in
            return JSONResponse({"access_token": value, "expires_in": self.expires_in})

        @app.post("/cgi-bin/message/custom/send")
        async def custom_send(request: Request, access_token: str = "") -> JSONResponse:
            error = self._token_error(access_token)
            if error:
                return JSONResponse(error)
            body = json.loads(await request.body())
            touser, msgtype = body.get("touser"), body.get("msgtype")
            if not touser or msgtype not in ("text", "msgmenu", "image", "news"):
                return JSONResponse({"errcode": 40008, "errmsg": "invalid message type"})
            if touser in self.refused:
                return JSONResponse({"errcode": self.refused[touser], "errmsg": "refused"})
            if touser in self.closed:
                return JSONResponse({"errcode": 45015, "errmsg": "response out of time limit or subscription is canceled"})
            if msgtype == "msgmenu" and not self.menus_allowed:
                return JSONResponse({"errcode": 48001, "errmsg": "api unauthorized"})
            if msgtype == "text" and len(body["text"]["content"].encode()) > 2048:
                return JSONResponse({"errcode": 45002, "errmsg": "content size out of limit"})
            with self.lock:
                self.sent.append((touser, {k: v for k, v in body.items() if k != "touser"}))
            return JSONResponse({"errcode": 0, "errmsg": "ok"})

        @app.get("/cgi-bin/media/get")
        async def media_get(access_token: str = "", media_id: str = "") -> Response:
            error = self._token_error(access_token)
            if error:
                return JSONResponse(error)
            self.media_fetches.append(media_id)
            data = self.media.get(media_id)
            if data is None:
                return JSONResponse({"errcode": 40007, "errmsg": "invalid media_id"})
            return Response(data, media_type="image/jpeg",
                            headers={"Content-disposition": f'attachment; filename="{media_id}.jpg"'})

        return app


@contextlib.contextmanager
def running_standin(app_id: str, app_secret: str) -> Iterator[StandIn]:
    """Serve a stand-in on a free 127.0.0.1 port until the block ends."""
    standin = StandIn(app_id, app_secret)
    with serving(standin.build(), "wechat-standin") as base:
        standin.base_url = base
        yield standin


# ---- the other side: WeChat's servers posting a user's messages to the bot --------------------------

class WxUser:
    """One WeChat user talking to the bot through its real server URL: builds the XML WeChat posts,
    signs it (plain mode) or encrypts and signs it with wechatpy's own crypto (safe mode), and reads
    what reached the user: the passive reply, then customer-service messages from the stand-in.

    ``client`` is an HTTP client for the bot's app (``fastapi.testclient.TestClient`` or
    ``httpx.Client``); ``wait_idle`` returns once the bot has no delivery in flight."""

    _msg_ids = itertools.count(int(time.time() * 1000) * 1000)

    def __init__(self, client: Any, standin: StandIn, *, token: str, app_id: str, aes_key: str = "",
                 path: str = "/wechat", openid: str | None = None, wait_idle: Any = None) -> None:
        import secrets as _secrets

        self.client, self.standin, self.token, self.path = client, standin, token, path
        self.openid = openid or "o" + _secrets.token_urlsafe(20)
        self.wait_idle = wait_idle or (lambda: None)
        self.crypto = None
        if aes_key:
            from wechatpy.crypto import WeChatCrypto
            self.crypto = WeChatCrypto(token, aes_key, app_id)
        self.choice_mode = "menu"
        self.received: list[dict] = []     # this turn: {"msgtype": "text"|"msgmenu", ...}
        self.last_status = 0
        self.last_body = ""

    # -- building and posting --

    def xml(self, msgtype: str, msg_id: int | None = None, create_time: int | None = None, **fields: str) -> str:
        import xmltodict

        body = {"ToUserName": "gh_0123456789ab", "FromUserName": self.openid,
                "CreateTime": str(create_time or int(time.time())), "MsgType": msgtype, **fields}
        if msgtype != "event":
            body["MsgId"] = str(msg_id or next(self._msg_ids))
        return xmltodict.unparse({"xml": body}, full_document=False)

    def signed_query(self, body: str, timestamp: str | None = None, nonce: str = "n0nce") -> tuple[dict, str]:
        """Query parameters and body as WeChat sends them for ``body`` (encrypted in safe mode)."""
        import hashlib as _hashlib

        import xmltodict

        timestamp = timestamp or str(int(time.time()))
        signature = _hashlib.sha1("".join(sorted([self.token, timestamp, nonce])).encode()).hexdigest()
        query = {"signature": signature, "timestamp": timestamp, "nonce": nonce, "openid": self.openid}
        if self.crypto is None:
            return query, body
        envelope = xmltodict.parse(self.crypto.encrypt_message(body, nonce, timestamp))["xml"]
        post = xmltodict.unparse({"xml": {"ToUserName": "gh_0123456789ab", "Encrypt": envelope["Encrypt"]}},
                                 full_document=False)
        return {**query, "encrypt_type": "aes", "msg_signature": envelope["MsgSignature"]}, post

    def post_raw(self, query: dict, body: str | bytes, headers: dict | None = None) -> Any:
        return self.client.post(self.path, params=query, content=body if isinstance(body, bytes) else body.encode(),
                                headers={"Content-Type": "text/xml", **(headers or {})})

    def post(self, xml: str) -> list[dict]:
        """Post one message as WeChat would; return everything that reached the user for it."""
        before = len(self.standin.messages_to(self.openid))
        query, body = self.signed_query(xml)
        r = self.post_raw(query, body)
        self.last_status, self.last_body = r.status_code, r.text
        self.wait_idle()
        self.received = []
        passive = self.passive_content(r.text, query)
        if passive is not None:
            self.received.append({"msgtype": "text", "text": {"content": passive}, "passive": True})
        self.received += self.standin.messages_to(self.openid)[before:]
        return self.received

    def passive_content(self, body: str, query: dict) -> str | None:
        """The text of a passive reply (decrypted in safe mode); None for ``success``/empty."""
        import xmltodict

        if body in ("", "success"):
            return None
        if self.crypto is not None:
            envelope = xmltodict.parse(body)["xml"]
            body = self.crypto.decrypt_message(body, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"])
        reply = xmltodict.parse(body)["xml"]
        assert reply["ToUserName"] == self.openid and reply["MsgType"] == "text", reply
        return reply["Content"]

    # -- what a user does --

    def say(self, text: str) -> list[dict]:
        return self.post(self.xml("text", Content=text))

    def voice(self, recognition: str | None) -> list[dict]:
        fields = {"MediaId": "voice-1", "Format": "amr"}
        if recognition is not None:
            fields["Recognition"] = recognition
        return self.post(self.xml("voice", **fields))

    def upload(self, data: bytes) -> list[dict]:
        media_id = self.standin.add_media(data)
        return self.post(self.xml("image", PicUrl="http://mmbiz.example/pic", MediaId=media_id))

    def event(self, event: str, key: str | None = None) -> list[dict]:
        fields = {"Event": event}
        if key is not None:
            fields["EventKey"] = key
        return self.post(self.xml("event", **fields))

    def choice(self, label: str) -> tuple[str, str]:
        """(menu item id, its text) of the choice containing ``label`` offered in the last turn."""
        for m in self.received:
            if m["msgtype"] == "msgmenu":
                for item in m["msgmenu"]["list"]:
                    if label in item["content"]:
                        return item["id"], item["content"]
            if m["msgtype"] == "text":
                for line in m["text"]["content"].splitlines():
                    number, _, text = line.strip().partition(". ")
                    if number.isdigit() and label in text and "回复数字选择" in m["text"]["content"]:
                        return number, text
        raise AssertionError(f"no choice {label!r} in {self.received}")

    def press(self, label: str) -> list[dict]:
        """Tap a choice of a customer-service menu (WeChat sends its text with ``bizmsgmenuid``)."""
        item_id, content = self.choice(label)
        return self.post(self.xml("text", Content=content, bizmsgmenuid=item_id))

    def choose(self, label: str) -> list[dict]:
        """Make a choice the way ``choice_mode`` says: "menu" taps it, "number" types its number."""
        return self.press(label) if self.choice_mode == "menu" else self.number(label)

    def number(self, label: str) -> list[dict]:
        """Type the number of a choice."""
        item_id, _ = self.choice(label)
        return self.say(str(int(item_id[-2:])))

    @property
    def text(self) -> str:
        """All text that reached the user in the last turn."""
        return "\n".join(m["text"]["content"] for m in self.received if m["msgtype"] == "text")

    @property
    def menus(self) -> list[list[str]]:
        return [[i["content"] for i in m["msgmenu"]["list"]] for m in self.received if m["msgtype"] == "msgmenu"]
