"""The staff console at ``/staff`` and its JSON API: sign-in, the hand-off queue, conversations.

Every route here is a thin layer over ``handlers.handoff_service.HandoffService`` (hand-offs)
and ``handlers.staff.StaffAccounts`` (accounts: SQL or the in-memory twin). Pages:

- ``GET /staff/login`` (public form), ``POST /staff/login`` (form: name, password) → signed cookie;
  ``POST /staff/logout``.
- ``GET /staff`` the console (queue + conversation); its script ``/staff/console.js``.

API (JSON; errors ``{"error", "message"}``; every POST needs header ``X-CSRF-Token``):

- ``GET  /staff/api/me`` → ``{"name", "role", "csrf"}``
- ``GET  /staff/api/handoffs?status=waiting|active|closed|abandoned``
- ``GET  /staff/api/handoffs/{id}?after=N`` → hand-off (masked transcript) + messages
- ``POST /staff/api/handoffs/{id}/claim`` · ``/messages`` ``{"text"}`` · ``/close`` ``{"resolution"}``
  · ``/hand-back``
- ``GET  /staff/api/faq?q=…`` → FAQ answers found by the matcher (to insert into a reply)
- ``GET  /staff/api/events`` → server-sent events of queue changes (``Last-Event-ID`` replays)

Security: the session cookie ``staff_session`` is signed (HMAC), ``HttpOnly``,
``SameSite=Strict``, ``Secure`` over https, expires after ``staff.session_hours``; disabling an
account or changing its password revokes it. CSRF: a per-session token (HMAC of the cookie)
required on every state-changing request; the sign-in form checks ``Origin``. Nothing under
``/staff`` answers without a signed-in agent (pages redirect to the sign-in form, the API
answers 401). Every route is rate-limited per client address; sign-in more strictly.

Extending (admin pages of other issues): ``console = app.state.staff_console``;
``console.add_nav("统计", "/staff/insights", role="admin")``; protect routes with
``Depends(console.require_role("admin"))`` and render with ``console.page(request, staff, title, body)``;
``console.add_banner(render)`` puts a notice (e.g. a refused FAQ edit) above every console page.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from handlers.handoff_service import STAFF_TOPIC, HandoffService, ReplyRejected
from handlers.handoffs import (RESOLUTIONS, STATUSES, HandoffClosed, HandoffConflict, HandoffError, HandoffNotFound,
                               HandoffStoreError)
from handlers.staff import AccountLocked, BadCredentials, Staff, StaffAccounts, StaffError, build_staff_store
from settings import StaffConfig

from .assets import Asset
from .guard import error_response
from .web import event_stream

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "staff_session"
CSRF_HEADER = "X-CSRF-Token"
HEARTBEAT = 15.0
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


class StaffDenied(Exception):
    """A staff request refused: HTTP status, stable code, Chinese message."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(code)
        self.status, self.code, self.message, self.extra = status, code, message, extra


class NotSignedIn(StaffDenied):
    def __init__(self, message: str = "请先登录客服工作台。") -> None:
        super().__init__(401, "not_signed_in", message)


class StaffAuth:
    """Signed session cookies (name, session version, expiry) and the CSRF token derived from them."""

    def __init__(self, store: StaffAccounts, secret: bytes, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.store, self._secret, self.ttl, self._clock = store, secret, ttl, clock

    def _mac(self, purpose: bytes, value: str) -> str:
        mac = hmac.new(self._secret, b"staff\0" + purpose + b"\0" + value.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(self, staff: Staff) -> str:
        name = base64.urlsafe_b64encode(staff.name.encode()).decode().rstrip("=")
        body = f"{name}.{staff.session_version}.{int(self._clock() + self.ttl)}"
        return f"{body}.{self._mac(b'session', body)}"

    def verify(self, value: str | None) -> tuple[Staff, str] | None:
        """The signed-in account (still enabled, same session version, not expired) and why not."""
        if not value or len(value) > 512 or value.count(".") != 3:
            return None
        body, mac = value.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(b"session", body)):
            return None
        name_b64, version, expires = body.split(".")
        if not expires.isdigit() or int(expires) < self._clock():
            raise NotSignedIn("登录已过期，请重新登录。")
        try:
            name = base64.urlsafe_b64decode(name_b64 + "=" * (-len(name_b64) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        staff = self.store.get(name)
        if staff is None or staff.disabled or str(staff.session_version) != version:
            raise NotSignedIn("登录已失效，请重新登录。")
        return staff, value

    def csrf(self, cookie: str) -> str:
        return self._mac(b"csrf", cookie)[:32]


class StaffConsole:
    """The console's routes, sign-in, role checks and page layout (see the module docstring)."""

    def __init__(self, service: HandoffService, store: StaffAccounts, secret: bytes, conf: StaffConfig,
                 matcher: Callable[[], Any] | None = None, public_url: str = "", limiter: Any = None, login_limiter: Any = None,
                 clock: Callable[[], float] = time.time, timezone: str = "Asia/Shanghai") -> None:
        from handlers.limits import Throttle

        self.service, self.store, self.conf, self.matcher = service, store, conf, matcher
        self.auth = StaffAuth(store, secret, conf.session_hours * 3600, clock)
        self.secure_default = public_url.startswith("https://")
        self.timezone = timezone   # every time shown to staff (handoff.timezone), whatever their browser's zone
        self.limiter = limiter or Throttle.memory("staff", conf.rate_limit, 60)
        self.login_limiter = login_limiter or Throttle.memory("staff-login", conf.login_rate_limit, 60)
        self.nav: list[tuple[str, str, str]] = [("工作台", "/staff", "agent")]
        self.banners: list[Callable[[Staff], str]] = []
        self._assets = {name: Asset.load(name) for name in ("console.js", "console.css")}

    # ---- extension points -----------------------------------------------------------------

    def add_nav(self, label: str, href: str, role: str = "agent") -> None:
        """A link in the console's navigation, shown to ``role`` (admins see every link)."""
        self.nav.append((label, href, role))

    def add_banner(self, render: Callable[[Staff], str]) -> None:
        """A notice above every console page: ``render(staff)`` returns trusted HTML ('' for none)."""
        self.banners.append(render)

    def page(self, request: Request, staff: Staff, title: str, body: str,
             scripts: tuple[str, ...] = ()) -> HTMLResponse:
        """A console page: header with navigation and sign-out, ``body`` (trusted HTML) in main."""
        csrf = html.escape(getattr(request.state, "csrf", ""))
        links = "".join(f'<a href="{html.escape(href)}">{html.escape(label)}</a>' for label, href, role in self.nav
                        if role == "agent" or staff.role == "admin")
        tags = "".join(f'<script src="{html.escape(s)}" defer></script>' for s in scripts)
        doc = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{csrf}"><meta name="time-zone" content="{html.escape(self.timezone)}">
<title>{html.escape(title)}</title><link rel="stylesheet" href="/staff/console.css">{tags}</head>
<body><header class="top"><strong class="brand">学信网账号助手 · 客服工作台</strong><nav aria-label="主导航">{links}</nav>
<span class="who">{html.escape(staff.name)}（{'管理员' if staff.role == 'admin' else '客服'}）</span>
<form method="post" action="/staff/logout"><input type="hidden" name="csrf" value="{csrf}">
<button type="submit">退出登录</button></form></header>
<main id="main">{"".join(render(staff) for render in self.banners)}{body}</main></body></html>"""
        return HTMLResponse(doc, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store",
                                          "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"})

    # ---- dependencies -----------------------------------------------------------------------

    def _limit(self, request: Request, limiter: Any) -> None:
        client = request.client.host if request.client else "unknown"
        wait = limiter.hit(client)
        if wait:
            raise StaffDenied(429, "rate_limited", f"请求过于频繁，请 {wait} 秒后再试。", retry_after=wait)

    async def current(self, request: Request) -> Staff:
        """Dependency: the signed-in staff member (``NotSignedIn`` otherwise); POSTs need the CSRF token."""
        await run_in_threadpool(self._limit, request, self.limiter)   # a Redis limiter blocks
        cookie = request.cookies.get(COOKIE)
        found = await run_in_threadpool(self.auth.verify, cookie)
        if found is None:
            raise NotSignedIn()
        staff, cookie_value = found
        request.state.csrf = self.auth.csrf(cookie_value)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            given = request.headers.get(CSRF_HEADER, "")
            if not given and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                given = (parse_qs((await request.body()).decode("utf-8", "replace")).get("csrf") or [""])[0]
            if not hmac.compare_digest(given.encode(), request.state.csrf.encode()):
                raise StaffDenied(403, "csrf_failed", "安全校验失败（CSRF），请刷新页面后重试。")
        return staff

    def require_role(self, role: str) -> Callable[..., Any]:
        """Dependency factory: a signed-in member with ``role`` (admins pass every check)."""
        async def dependency(request: Request) -> Staff:
            staff = await self.current(request)
            if role != "agent" and staff.role != "admin" and staff.role != role:
                raise StaffDenied(403, "forbidden", "您没有权限访问此页面。")
            return staff
        return dependency

    # ---- sign-in ---------------------------------------------------------------------------

    def _cookie(self, response: Response, request: Request, value: str, max_age: int) -> None:
        secure = self.secure_default or request.url.scheme == "https"
        response.set_cookie(COOKIE, value, max_age=max_age, httponly=True, samesite="strict", secure=secure,
                            path="/staff")

    def _login_form(self, message: str = "", status: int = 200) -> HTMLResponse:
        note = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
        doc = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>客服登录 · 学信网账号助手</title><link rel="stylesheet" href="/staff/console.css"></head>
<body class="login"><main><h1>客服工作台登录</h1>{note}
<form method="post" action="/staff/login"><label>用户名<input name="name" autocomplete="username" required maxlength="32"></label>
<label>密码<input name="password" type="password" autocomplete="current-password" required maxlength="256"></label>
<button type="submit">登录</button></form>
<p class="hint">账号由管理员在服务器上创建：<code>python bot.py staff add 用户名 --role agent</code></p></main></body></html>"""
        return HTMLResponse(doc, status_code=status, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store",
                                                               "X-Frame-Options": "DENY"})

    async def login_page(self, request: Request) -> HTMLResponse:
        await run_in_threadpool(self._limit, request, self.limiter)   # a Redis limiter blocks
        return self._login_form()

    async def login(self, request: Request) -> Response:
        await run_in_threadpool(self._limit, request, self.login_limiter)
        origin = request.headers.get("origin")
        if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
            return self._login_form("请从本站的登录页面登录。", 403)
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        name, password = (form.get("name") or [""])[0].strip(), (form.get("password") or [""])[0]
        try:
            staff = await run_in_threadpool(self.store.authenticate, name, password)
        except AccountLocked as e:
            return self._login_form(e.message, 423)
        except BadCredentials as e:
            return self._login_form(e.message, 401)
        except StaffError as e:
            return self._login_form(e.message, 503)
        await run_in_threadpool(self.store.touch, staff.name)
        log.info("staff sign-in: %s", staff.name)
        response = RedirectResponse("/staff", status_code=303)
        self._cookie(response, request, self.auth.issue(staff), int(self.auth.ttl))
        return response

    async def logout(self, request: Request) -> Response:
        try:
            staff = await self.current(request)
            await run_in_threadpool(self.store.sign_out, staff.name)
        except NotSignedIn:
            pass
        response = RedirectResponse("/staff/login", status_code=303)
        response.delete_cookie(COOKIE, path="/staff")
        return response

    # ---- pages ----------------------------------------------------------------------------

    async def console_page(self, request: Request) -> Response:
        staff = await self.current(request)
        body = (STATIC / "console.html").read_text(encoding="utf-8")
        return self.page(request, staff, "人工客服工作台", body, scripts=("/staff/console.js",))

    # ---- API --------------------------------------------------------------------------------

    async def me(self, request: Request, staff: Staff) -> dict:
        await run_in_threadpool(self.store.touch, staff.name)
        return {"name": staff.name, "role": staff.role, "csrf": request.state.csrf,
                "resolutions": {k: v for k, v in RESOLUTIONS.items() if k not in ("back_to_bot", "user_left")}}

    async def list_handoffs(self, status: str = "waiting", limit: int = 100) -> dict:
        if status not in STATUSES:
            raise StaffDenied(422, "invalid_status", "status 只能是 waiting、active、closed 或 abandoned。")
        items = await run_in_threadpool(self.service.list, status, max(1, min(int(limit), 200)))
        now = time.time()
        return {"status": status, "handoffs": [{**_brief(h.to_dict()), "waited": round(now - h.created_at)}
                                              for h in items]}

    async def get_handoff(self, handoff_id: str, after: int = 0) -> dict:
        h, messages = await run_in_threadpool(self.service.get, handoff_id, max(0, int(after)))
        return {"handoff": h.to_dict(), "messages": [m.to_dict() for m in messages]}

    async def claim(self, handoff_id: str, staff: Staff) -> dict:
        h = await run_in_threadpool(self.service.claim, handoff_id, staff.name)
        return {"handoff": h.to_dict()}

    async def reply(self, request: Request, handoff_id: str, staff: Staff) -> dict:
        data = await _json(request)
        m = await run_in_threadpool(self.service.reply, handoff_id, staff.name, data.get("text"))
        return {"message": m.to_dict()}

    async def close(self, request: Request, handoff_id: str, staff: Staff) -> dict:
        data = await _json(request)
        h = await run_in_threadpool(self.service.close, handoff_id, staff.name, str(data.get("resolution") or ""),
                                    staff.role == "admin")
        return {"handoff": h.to_dict()}

    async def hand_back(self, handoff_id: str, staff: Staff) -> dict:
        h = await run_in_threadpool(self.service.hand_back, handoff_id, staff.name, staff.role == "admin")
        return {"handoff": h.to_dict()}

    async def faq(self, q: str = "") -> dict:
        q = q.strip()[:200]
        matcher = self.matcher() if self.matcher is not None else None  # the engine's current one (live FAQ)
        if not q or matcher is None:
            return {"results": []}
        result = await run_in_threadpool(matcher.match, q)
        faq = matcher.faq
        ids = ([result.entry] if result.entry in faq.entries else []) + \
              [c.entry for c in result.candidates if c.entry in faq.entries]
        seen: list[str] = []
        for i in ids:
            if i not in seen:
                seen.append(i)
        return {"results": [{"id": i, "question": faq.entry(i).question, "answer": faq.entry(i).answer}
                            for i in seen[:5]]}

    async def events(self, request: Request, staff: Staff) -> StreamingResponse:
        after = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or ""
        if not after:
            after = await run_in_threadpool(self.service.bus.last_id, STAFF_TOPIC)
        async def still_here() -> None:  # the open console keeps the agent counted as signed in
            try:
                await run_in_threadpool(self.store.touch, staff.name)
            except StaffError:
                pass

        return event_stream(request, self.service.bus, STAFF_TOPIC, after, "handoff", HEARTBEAT, still_here)

    def static(self, request: Request, name: str, cache_control: str = "private, no-cache") -> Response:
        """A console file (read once, gzip precomputed; revalidated with its ETag on every load)."""
        return self._assets[name].response(request, cache_control)

    # ---- mounting ------------------------------------------------------------------------------

    def router(self) -> APIRouter:
        r = APIRouter()
        agent = Depends(self.current)
        r.add_api_route("/staff/login", self.login_page, methods=["GET"])
        r.add_api_route("/staff/login", self.login, methods=["POST"])
        r.add_api_route("/staff/logout", self.logout, methods=["POST"])
        r.add_api_route("/staff", self.console_page, methods=["GET"])
        r.add_api_route("/staff/console.css", self._public_css, methods=["GET"])

        async def console_js(request: Request, staff: Staff = agent) -> Response:
            return self.static(request, "console.js")

        async def me(request: Request, staff: Staff = agent) -> dict:
            return await self.me(request, staff)

        async def list_(status: str = "waiting", limit: int = 100, staff: Staff = agent) -> dict:
            return await self.list_handoffs(status, limit)

        async def get_(handoff_id: str, after: int = 0, staff: Staff = agent) -> dict:
            return await self.get_handoff(handoff_id, after)

        async def claim(handoff_id: str, staff: Staff = agent) -> dict:
            return await self.claim(handoff_id, staff)

        async def reply(request: Request, handoff_id: str, staff: Staff = agent) -> dict:
            return await self.reply(request, handoff_id, staff)

        async def close(request: Request, handoff_id: str, staff: Staff = agent) -> dict:
            return await self.close(request, handoff_id, staff)

        async def hand_back(handoff_id: str, staff: Staff = agent) -> dict:
            return await self.hand_back(handoff_id, staff)

        async def faq(q: str = "", staff: Staff = agent) -> dict:
            return await self.faq(q)

        async def events(request: Request, staff: Staff = agent) -> StreamingResponse:
            return await self.events(request, staff)

        r.add_api_route("/staff/console.js", console_js, methods=["GET"])
        r.add_api_route("/staff/api/me", me, methods=["GET"])
        r.add_api_route("/staff/api/handoffs", list_, methods=["GET"])
        r.add_api_route("/staff/api/handoffs/{handoff_id}", get_, methods=["GET"])
        r.add_api_route("/staff/api/handoffs/{handoff_id}/claim", claim, methods=["POST"])
        r.add_api_route("/staff/api/handoffs/{handoff_id}/messages", reply, methods=["POST"])
        r.add_api_route("/staff/api/handoffs/{handoff_id}/close", close, methods=["POST"])
        r.add_api_route("/staff/api/handoffs/{handoff_id}/hand-back", hand_back, methods=["POST"])
        r.add_api_route("/staff/api/faq", faq, methods=["GET"])
        r.add_api_route("/staff/api/events", events, methods=["GET"])
        return r

    async def _public_css(self, request: Request) -> Response:
        # the stylesheet is the one file the sign-in form needs; it holds nothing about anyone
        return self.static(request, "console.css", "public, no-cache")

    def mount(self, app: FastAPI) -> None:
        """Add the routes and the error handlers to the web app; ``app.state.staff_console`` = self."""
        app.state.staff_console = self
        app.include_router(self.router())
        app.add_exception_handler(StaffDenied, _denied)
        app.add_exception_handler(HandoffError, _handoff_error)


def _brief(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    d.pop("transcript", None)
    return d


async def _json(request: Request) -> dict:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise StaffDenied(415, "unsupported_media_type", "请以 JSON 格式（application/json）发送请求。")
    try:
        data = json.loads((await request.body()).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StaffDenied(400, "invalid_json", "请求内容不是有效的 JSON。") from None
    if not isinstance(data, dict):
        raise StaffDenied(400, "invalid_json", "请求内容必须是一个 JSON 对象。")
    return data


async def _denied(request: Request, exc: StaffDenied) -> Response:
    if isinstance(exc, NotSignedIn) and request.method == "GET" and not request.url.path.startswith("/staff/api/"):
        return RedirectResponse("/staff/login", status_code=303)
    if exc.status == 403 and request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        # a browser opening a page it may not see (an agent following an admin link): a page, not JSON
        doc = ('<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" '
               'content="width=device-width, initial-scale=1"><title>无权访问 · 学信网账号助手</title>'
               '<link rel="stylesheet" href="/staff/console.css"></head><body class="login"><main>'
               f'<h1>无权访问</h1><p>{html.escape(exc.message)}</p><p><a href="/staff">返回工作台</a></p></main></body></html>')
        return HTMLResponse(doc, status_code=403, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})
    headers = {"Retry-After": str(exc.extra["retry_after"])} if "retry_after" in exc.extra else None
    response = error_response(exc.status, exc.code, exc.message, **exc.extra)
    if headers:
        response.headers.update(headers)
    return response


_HANDOFF_STATUS = {HandoffNotFound: (404, "unknown_handoff"), HandoffConflict: (409, "already_claimed"),
                   HandoffClosed: (409, "handoff_closed"), ReplyRejected: (422, "invalid_reply"),
                   HandoffStoreError: (503, "store_unavailable")}


async def _handoff_error(request: Request, exc: HandoffError) -> JSONResponse:
    status, code = _HANDOFF_STATUS.get(type(exc), (400, "handoff_error"))
    return error_response(status, code, exc.message)


def build_console(cfg: Mapping[str, Any], service: HandoffService, secret: bytes, matcher: Any = None,
                  store: StaffAccounts | None = None, limits: Any = None) -> StaffConsole:
    """The console as configured: staff accounts in the hand-off database (the in-memory twin for
    ``memory://``), limits over ``limits`` (``handlers.limits.Limits``; default: as configured, shared
    via Redis when sessions are)."""
    import settings
    from handlers.db import database_url, shared
    from handlers.limits import build_limits

    conf = StaffConfig.of(cfg)
    if store is None:
        store = service.staff   # the accounts whose presence the service counts
    if store is None:
        url = database_url(cfg)
        db = getattr(service.store, "db", None) or (None if url.startswith("memory:") else shared(url))
        store = build_staff_store(db, service.clock)
    limits = limits or build_limits(cfg, secret)
    return StaffConsole(service, store, secret, conf, matcher=matcher,
                        public_url=settings.WebConfig.of(cfg).public_url,
                        limiter=limits.throttle("staff", conf.rate_limit, 60),
                        login_limiter=limits.throttle("staff-login", conf.login_rate_limit, 60),
                        clock=service.clock, timezone=settings.HandoffConfig.of(cfg).timezone)

