"""The web app: one ASGI app (FastAPI) that mounts every configured channel's routes.

``create_app(cfg)`` builds the engine and the channels (``build_channels``: web always,
Telegram when a token is configured), mounts each channel's ``router()`` in turn,
and adds what every route shares: JSON errors, CORS, the body-size guard, ``/healthz``.
Adding a channel is one class implementing ``channels.base.Channel`` plus one line in
``build_channels``.

Every error is JSON ``{"error": code, "message": 中文说明}`` with a 4xx status
(5xx only for a failure of ours).
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Mapping

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from handlers.limits import Limits, build_limits
from settings import HandoffApiConfig, TelegramConfig, WebConfig, WeChatConfig

from .base import Channel, ConversationEngine, InputRejected
from .delivery import Delivery
from .staff import build_console
from .guard import Guard, error_response
from .signing import Signer, load_secret
from .web import ApiError, WebChannel

log = logging.getLogger(__name__)

_HTTP_MESSAGES = {
    404: ("not_found", "请求的地址不存在。"),
    405: ("method_not_allowed", "不支持该请求方法。"),
}


def build_channels(cfg: Mapping[str, Any], engine: ConversationEngine, web: WebChannel,
                   telegram_request: Any = None) -> list[Channel]:
    """Every channel the config turns on, the web channel first (Telegram with a token, WeChat with
    its token, app id and secret). ``telegram_request``
    (a ``telegram.request.BaseRequest``) replaces Telegram's HTTP client in tests."""
    channels: list[Channel] = [web]
    if TelegramConfig.of(cfg).token:
        from .telegram import TelegramChannel
        channels.append(TelegramChannel(cfg, engine, telegram_request))
    if WeChatConfig.of(cfg).enabled:
        from .wechat import WeChatChannel
        channels.append(WeChatChannel(cfg, engine, secret=load_secret(web.conf), limits=web.limits))
    return channels


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, **exc.extra)


async def _input_rejected(request: Request, exc: InputRejected) -> JSONResponse:
    return error_response(422, exc.code, exc.message, **exc.extra)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code, message = _HTTP_MESSAGES.get(exc.status_code, ("bad_request", "请求无效。"))
    return error_response(exc.status_code, code, message)


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "服务暂时出现问题，请稍后再试。")


class FastLane:
    """ASGI middleware, innermost: the chat API's two hot routes (``POST /api/chat``,
    ``POST /api/session``) go straight to their endpoints, past FastAPI's router, telemetry and
    exception layers — about a tenth of a request's CPU (benchmarks/profile_web.py). Their
    refusals get the app's own JSON error handlers; anything else goes on as usual."""

    def __init__(self, app: Any, routes: Mapping[tuple[str, str], Any], handlers: Mapping[type, Any]) -> None:
        self.app, self.routes, self.handlers = app, routes, handlers

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        route = self.routes.get((scope.get("method"), scope["path"])) if scope["type"] == "http" else None
        if route is None or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        scope["route"], scope["endpoint"] = route, route.endpoint   # as the router sets them (metrics labels)
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except tuple(self.handlers) as exc:
            handler = next(h for kind, h in self.handlers.items() if isinstance(exc, kind))
            response = await handler(request, exc)
        await response(scope, receive, send)


def _handoff_api(cfg: Mapping[str, Any], service: Any, limits: Limits) -> Any:
    """The help-desk API over the app's hand-off service, when ``handoff.api_token`` is set."""
    from .handoff_api import HandoffApi

    conf = HandoffApiConfig.of(cfg)
    if not conf.enabled:
        return None
    return HandoffApi(service, conf, limits.throttle("handoff-api", conf.requests_per_minute, 60),
                      limits.throttle("handoff-api-auth", conf.failed_auth_per_minute, 60))


def create_app(cfg: Mapping[str, Any], engine: ConversationEngine | None = None,
               telegram_request: Any = None, live: Any = None, staff: Any = None) -> FastAPI:
    """The ASGI app. ``engine`` defaults to ``handlers.engine.build_engine(cfg)`` over a live FAQ
    (``intents.live.LiveFAQ``: a saved edit is swapped in unless ``faq.watch`` is false); ``live``
    is the watcher for a given engine; ``telegram_request`` replaces Telegram's HTTP client (tests);
    ``staff`` (a ``handlers.staff.StaffStore``) defaults to the accounts in the hand-off database."""
    conf = WebConfig.of(cfg)
    if engine is None:
        from handlers.engine import build_engine
        from intents.live import watched_engine

        engine, live = watched_engine(cfg, build_engine)
    elif live is not None and hasattr(engine, "use"):
        live.subscribe(lambda snapshot: engine.use(snapshot.faq, snapshot.matcher))  # type: ignore[union-attr]
    service = getattr(engine, "handoffs", None)
    if service is None:  # an engine without hand-offs (test doubles): the configured service
        from handlers.handoff_service import build_service
        service = build_service(cfg)
    secret = load_secret(conf)
    # one limiter for every limit of the app: the engine's (memory, or Redis shared by every worker)
    limits: Limits = getattr(engine, "limits", None) or build_limits(cfg, secret)
    web = WebChannel(engine, Signer(secret), conf, service.bus, limits=limits,
                     limiter=limits.throttle("events", conf.events_per_minute, 60))
    channels = build_channels(cfg, engine, web, telegram_request)
    delivery = Delivery({c.name: c for c in channels})
    if service.deliver is None:  # a service given with its own delivery hook (tests) keeps it
        service.deliver = delivery
    redelivery = service.redelivery
    if redelivery is None:   # failed pushes kept in the hand-off store, sent again from this process
        from handlers.redelivery import attach
        redelivery = attach(service, cfg)
    console = build_console(cfg, service, secret, matcher=lambda: getattr(engine, "matcher", None), store=staff,
                            limits=limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        delivery.bind(asyncio.get_running_loop())
        if live is not None:
            live.start()
        redelivery.start()
        yield
        await asyncio.to_thread(redelivery.close)   # a send in flight needs the loop to finish
        if live is not None:
            live.stop()
        delivery.unbind()
        for channel in channels:
            await channel.aclose()

    async def healthz() -> dict:
        """``GET /healthz``; with a live FAQ, what it serves and the last rejected edit
        (``faq.errors``: ``file:line: field: message``) until a valid save replaces it."""
        return {"status": "ok", "faq": live.status()} if live is not None else {"status": "ok"}

    async def readyz() -> JSONResponse:
        """``GET /readyz``: 200 when the session store, hand-off store and account API answer, else 503;
        each check with its time and, when it failed, the error's class."""
        from .health import readiness

        checks = await run_in_threadpool(readiness, engine, service)
        ready = all(c["ok"] for c in checks.values())
        return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                            status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})

    app = FastAPI(title="学信网账号助手", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.engine, app.state.config, app.state.handoffs, app.state.bus = engine, conf, service, service.bus
    app.state.channels, app.state.live = {c.name: c for c in channels}, live
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(InputRejected, _input_rejected)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _crash)
    app.add_api_route("/healthz", healthz, methods=["GET"])
    app.add_api_route("/readyz", readyz, methods=["GET"])
    for channel in channels:
        router = channel.router()
        if router is not None:
            app.include_router(router)
    handoff_api = _handoff_api(cfg, service, limits)
    if handoff_api is not None:
        app.include_router(handoff_api.router())
    console.mount(app)
    hot = {("POST", path): Route(path, endpoint, methods=["POST"])
           for path, endpoint in (("/api/chat", web.chat), ("/api/session", web.new_session))}
    app.add_middleware(FastLane, routes=hot, handlers={ApiError: _api_error, InputRejected: _input_rejected,
                                                       StarletteHTTPException: _http_error})
    from . import insights_pages, metrics
    metrics.install(app, cfg, engine, live)   # GET /metrics when metrics.enabled (token required)
    insights_pages.install(app, cfg, engine, live)   # admin pages, on the staff console when there is one
    if conf.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(conf.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"], allow_credentials=False, max_age=600)
    app.add_middleware(Guard, limit_for=web.body_limit)
    return app
