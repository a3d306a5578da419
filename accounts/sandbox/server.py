"""The sandbox account API over HTTP (FastAPI): thin routes over ``SandboxService``.

``python bot.py sandbox`` calls ``run(cfg)``; tests build the app with ``create_app``.
Every route's shape and status codes are in accounts/openapi.yaml (a test keeps the two in step);
the bodies are in models.py. Routes live on module-level routers and reach the service and the
keys through ``app.state`` (dependencies ``_service``, ``_need_api_key``, ``_need_admin_key``).
"""
from __future__ import annotations

import hmac
import html
import logging
import re
import secrets
import sys
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..base import AccountError, BadImage, NotFound, Unauthorized, Validation
from ..wire import error_body
from .models import (AccountViewOut, BindIn, BindingsOut, ChallengeOut, ClassmateCreatedOut, ClassmateIn,
                     ClassmateRequestOut, CodeIn, ErrorOut, HealthOut, IdentityOut, InboxOut, InstructionsOut,
                     LoginOut, OtpIn, OutboxOut, PendingReviewsOut, QrOut, RecoverPasswordIn, RecoverUsernameIn,
                     RegisteredOut, RegisterIn, ResetLinkOut, ReviewDecisionIn, ReviewOut, SentToOut,
                     StudentRecordAdminIn, StudentRecordIn, UsernameIn)
from ..contract import MAX_IMAGE_BYTES, Provider
from .service import IMAGE_TOO_LARGE, SandboxService
from logsetup import listening_socket, uvicorn_log_config
from settings import LoggingConfig, SandboxConfig, resolve_path

log = logging.getLogger("accounts.sandbox")

MANUAL_REVIEW_PATH = "/v1/me/identity/manual-review"
UPLOAD_SLACK = 65536  # bytes of multipart framing allowed on top of the image limit

_DESCRIPTIONS = {401: "UNAUTHORIZED", 403: "refused (see code)", 404: "NOT_FOUND", 409: "conflict (see code)",
                 410: "CHALLENGE_EXPIRED", 422: "VALIDATION / INVALID_CODE / RECORD_MISMATCH / BAD_IMAGE",
                 429: "TOO_FREQUENT (retry_after)"}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Documented error responses: 401 and 422 everywhere, plus ``statuses``."""
    return {s: {"model": ErrorOut, "description": _DESCRIPTIONS[s]} for s in sorted({401, 422, *statuses})}


# ---- dependencies ------------------------------------------------------------------

def _service(request: Request) -> SandboxService:
    return request.app.state.service


def _key_matches(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def _need_api_key(request: Request, x_api_key: str | None = Header(None)) -> None:
    if not _key_matches(x_api_key, request.app.state.api_key):
        raise Unauthorized("API 密钥无效。")


def _need_admin_key(request: Request, x_admin_key: str | None = Header(None)) -> None:
    if not _key_matches(x_admin_key, request.app.state.admin_key):
        raise Unauthorized("管理密钥无效。")


def _bearer(authorization: str | None = Header(None)) -> str:
    m = re.fullmatch(r"Bearer\s+(\S+)", authorization or "")
    if not m:
        raise Unauthorized("请先登录。")
    return m.group(1)


Service = Annotated[SandboxService, Depends(_service)]
Token = Annotated[str, Depends(_bearer)]
IdemKey = Annotated["str | None", Header(alias="Idempotency-Key")]
ClientId = Annotated["str | None", Header(alias="X-Client-Id")]


# ---- errors ------------------------------------------------------------------------

def _error_response(exc: AccountError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse(error_body(exc), status_code=exc.status, headers=headers)


async def _account_error(_: Request, exc: AccountError) -> JSONResponse:
    return _error_response(exc)


async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(x) for x in first.get("loc", ()) if x not in ("body", "query", "header", "path")]
    field = loc[0] if loc else None
    return _error_response(Validation(f"请求格式不正确：{field or '请求体'}。", field=field))


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        return _error_response(NotFound("接口不存在。"))
    if exc.status_code == 400:  # an unparseable body
        return _error_response(Validation("请求体格式不正确。"))
    err = AccountError(str(exc.detail))
    err.code, err.status = "HTTP_ERROR", exc.status_code
    return _error_response(err)


async def _crash(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error: %s", type(exc).__name__)
    return JSONResponse({"code": "INTERNAL", "message": "服务内部错误，请稍后再试。"}, status_code=500)


async def _upload_limit(request: Request, call_next: Any) -> Response:
    """Refuse an oversized ID photo by its Content-Length, before reading it."""
    if request.url.path == MANUAL_REVIEW_PATH:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_IMAGE_BYTES + UPLOAD_SLACK:
            return _error_response(BadImage(IMAGE_TOO_LARGE))
    return await call_next(request)


# ---- /v1: the account API ------------------------------------------------------------

meta = APIRouter(tags=["meta"])
api = APIRouter(prefix="/v1", dependencies=[Depends(_need_api_key)])
admin = APIRouter(prefix="/v1/sandbox/admin", tags=["sandbox"], dependencies=[Depends(_need_admin_key)])


@meta.get("/v1/health", response_model=HealthOut)
def health(service: Service) -> dict[str, Any]:
    return {"status": "ok", "schema_version": service.schema_version}


@api.post("/accounts", status_code=201, response_model=RegisteredOut, responses=_errors(403, 409))
def register(body: RegisterIn, service: Service, key: IdemKey = None, client: ClientId = None) -> dict[str, Any]:
    return service.register(**body.model_dump(), client_id=client, idempotency_key=key)


@api.post("/recovery/username", status_code=202, response_model=SentToOut, responses=_errors(404, 409, 429))
def recover_username(body: RecoverUsernameIn, service: Service, key: IdemKey = None,
                     client: ClientId = None) -> dict[str, Any]:
    return service.recover_username(**body.model_dump(), client_id=client, idempotency_key=key)


@api.post("/recovery/password", status_code=202, response_model=ChallengeOut, responses=_errors(404, 409, 429))
def recover_password(body: RecoverPasswordIn, service: Service, key: IdemKey = None,
                     client: ClientId = None) -> dict[str, Any]:
    return service.start_password_recovery(**body.model_dump(), client_id=client, idempotency_key=key)


@api.post("/recovery/password/{challenge_id}/verify", response_model=ResetLinkOut,
          responses=_errors(404, 409, 410))
def verify_recovery(challenge_id: str, body: CodeIn, service: Service, key: IdemKey = None) -> dict[str, Any]:
    return service.verify_password_recovery(challenge_id, body.code, idempotency_key=key)


@api.post("/auth/otp", status_code=202, response_model=ChallengeOut, responses=_errors(404, 409, 429))
def start_login(body: OtpIn, service: Service, key: IdemKey = None, client: ClientId = None) -> dict[str, Any]:
    return service.start_login(body.username, client_id=client, idempotency_key=key)


@api.post("/auth/otp/{challenge_id}", response_model=LoginOut, responses=_errors(404, 409, 410))
def verify_login(challenge_id: str, body: CodeIn, service: Service, key: IdemKey = None) -> dict[str, Any]:
    return service.verify_login(challenge_id, body.code, idempotency_key=key)


@api.get("/me/identity", response_model=IdentityOut, responses=_errors())
def identity(service: Service, token: Token) -> dict[str, Any]:
    return service.identity(token)


@api.post("/me/identity/app-verification", response_model=InstructionsOut, responses=_errors(409))
def app_verification(service: Service, token: Token, key: IdemKey = None) -> dict[str, Any]:
    return service.start_app_verification(token, idempotency_key=key)


@api.post("/me/identity/manual-review", status_code=202, response_model=ReviewOut, responses=_errors(409))
def manual_review(service: Service, token: Token,
                  image: UploadFile = File(..., description="ID photo, JPEG or PNG, at most 5 MB"),
                  key: IdemKey = None) -> dict[str, Any]:
    data = image.file.read(MAX_IMAGE_BYTES + 1)
    return service.submit_manual_review(token, data, image.filename or "", image.content_type or "",
                                        idempotency_key=key)


@api.post("/me/identity/classmate-requests", status_code=202, response_model=ClassmateCreatedOut,
          responses=_errors(404, 409))
def classmate(body: ClassmateIn, service: Service, token: Token, key: IdemKey = None) -> dict[str, Any]:
    return service.request_classmate(token, body.classmate_name, body.classmate_username, idempotency_key=key)


@api.get("/me/inbox", response_model=InboxOut, responses=_errors())
def inbox(service: Service, token: Token) -> dict[str, Any]:
    return service.inbox(token)


@api.post("/me/inbox/{request_id}/accept", response_model=ClassmateRequestOut, responses=_errors(404, 409))
def accept(request_id: str, service: Service, token: Token, key: IdemKey = None) -> dict[str, Any]:
    return service.answer_classmate_request(token, request_id, True, idempotency_key=key)


@api.post("/me/inbox/{request_id}/reject", response_model=ClassmateRequestOut, responses=_errors(404, 409))
def reject(request_id: str, service: Service, token: Token, key: IdemKey = None) -> dict[str, Any]:
    return service.answer_classmate_request(token, request_id, False, idempotency_key=key)


@api.post("/me/identity/student-record", response_model=IdentityOut, responses=_errors(403, 409))
def student_record(body: StudentRecordIn, service: Service, token: Token, key: IdemKey = None) -> dict[str, Any]:
    return service.submit_student_record(token, body.model_dump(exclude_none=True), idempotency_key=key)


@api.get("/me/bindings", response_model=BindingsOut, responses=_errors())
def bindings(service: Service, token: Token) -> dict[str, Any]:
    return service.bindings(token)


@api.post("/me/bindings", status_code=201, response_model=QrOut, responses=_errors(409, 429))
def bind(body: BindIn, service: Service, token: Token, key: IdemKey = None) -> dict[str, Any]:
    return service.bind(token, body.provider, idempotency_key=key)


@api.delete("/me/bindings/{provider}", status_code=204, response_class=Response, responses=_errors(404, 409))
def unbind(provider: Provider, service: Service, token: Token, key: IdemKey = None) -> Response:
    service.unbind(token, provider, idempotency_key=key)
    return Response(status_code=204)


@api.get("/sandbox/outbox", response_model=OutboxOut, tags=["sandbox"], responses=_errors())
def outbox(service: Service, phone: str = Query(..., description="mainland mobile number")) -> dict[str, Any]:
    return service.outbox(phone)


# ---- /v1/sandbox/admin: the sandbox's own controls -----------------------------------

@admin.get("/reviews", response_model=PendingReviewsOut, responses=_errors())
def pending_reviews(service: Service) -> dict[str, Any]:
    return service.pending_reviews()


@admin.post("/reviews/{ticket_id}", response_model=ReviewOut, responses=_errors(404, 409))
def decide(ticket_id: str, body: ReviewDecisionIn, service: Service) -> dict[str, Any]:
    return service.decide_review(ticket_id, body.decision == "approve", body.reason)


@admin.post("/app-verifications", response_model=IdentityOut, responses=_errors(404, 409))
def pass_app(body: UsernameIn, service: Service) -> dict[str, Any]:
    return service.pass_app_verification(body.username)


@admin.post("/student-records", status_code=201, response_model=StudentRecordIn, responses=_errors())
def add_record(body: StudentRecordAdminIn, service: Service) -> dict[str, Any]:
    record = body.model_dump(exclude_none=True, exclude={"id_type", "id_number"})
    return service.add_student_record(None, body.id_type, body.id_number, record)


@admin.get("/accounts/{username}", response_model=AccountViewOut, responses=_errors(404))
def account(username: str, service: Service) -> dict[str, Any]:
    return service.account_view(username)


@admin.post("/rate-limits/clear", status_code=204, response_class=Response, responses=_errors())
def clear_limits(service: Service) -> Response:
    service.clear_rate_limits()
    return Response(status_code=204)


# ---- the "site" pages the links point to (not part of the API contract) ------------

def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html lang='zh-CN'><meta charset='utf-8'><title>{html.escape(title)}</title>"
                        f"<body style='font-family:sans-serif;max-width:32em;margin:2em auto'>"
                        f"<h1>{html.escape(title)}</h1>{body}</body></html>", status_code=status)


site = APIRouter(include_in_schema=False)


@site.get("/sandbox/reset/{token}")
def reset_form(token: str) -> HTMLResponse:
    return _page("设置新密码（沙箱）", "<form method='post'><p><input type='password' name='password' "
                 "autocomplete='new-password' required> <button>确定</button></p>"
                 "<p>密码为8–32位，至少包含字母、数字、符号中的两种，不能包含用户名。</p></form>")


@site.post("/sandbox/reset/{token}")
def reset_submit(token: str, service: Service, password: str = Form("")) -> HTMLResponse:
    try:
        service.reset_password(token, password)
    except AccountError as e:
        return _page("设置新密码（沙箱）", f"<p>{html.escape(e.message)}</p>", e.status)
    return _page("密码已重置", "<p>新密码已生效，请使用新密码登录。</p>")


@site.get("/sandbox/qr/{token}")
def qr_page(token: str) -> HTMLResponse:
    return _page("扫码绑定（沙箱）", "<p>沙箱中没有真实的微信/支付宝，点击下方按钮模拟扫码完成绑定。</p>"
                 "<form method='post'><button>模拟扫码</button></form>")


@site.post("/sandbox/qr/{token}")
def qr_scan(token: str, service: Service) -> HTMLResponse:
    try:
        provider = service.scan_qr(token)
    except AccountError as e:
        return _page("扫码绑定（沙箱）", f"<p>{html.escape(e.message)}</p>", e.status)
    return _page("绑定成功", f"<p>已绑定{'微信' if provider == 'wechat' else '支付宝'}，以后可扫码登录。</p>")


# ---- the app ------------------------------------------------------------------------

def create_app(service: SandboxService, *, api_key: str, admin_key: str) -> FastAPI:
    """The HTTP API over ``service``; ``X-API-Key`` guards /v1, ``X-Admin-Key`` the admin calls."""
    if not api_key or not admin_key:
        raise ValueError("sandbox api_key and admin_key must be set")
    app = FastAPI(title="学信网账号 API（沙箱）", version="1.0.0",
                  description="The account API contract: see accounts/openapi.yaml.")
    app.state.service, app.state.api_key, app.state.admin_key = service, api_key, admin_key
    app.add_exception_handler(AccountError, _account_error)
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _crash)
    app.middleware("http")(_upload_limit)
    for router in (meta, api, admin, site):
        app.include_router(router)
    return app


# ---- running it --------------------------------------------------------------------

def build(conf: SandboxConfig, database: str) -> tuple[SandboxService, FastAPI]:
    """The service and app for the ``sandbox`` config section and a resolved database path. Without
    ``sandbox.admin_key`` (``SANDBOX_ADMIN_KEY``) the admin key is random for this start: it is in
    ``app.state.admin_key`` and ``announce_admin_key`` prints it (there is no public default)."""
    service = SandboxService(database, public_base_url=conf.base_url, limits=conf.limits)
    admin_key = conf.admin_key or secrets.token_urlsafe(24)
    app = create_app(service, api_key=conf.api_key, admin_key=admin_key)
    app.state.admin_key_generated = not conf.admin_key
    return service, app


def announce_admin_key(app: FastAPI) -> None:
    """Print the admin key when it was generated for this start (the operator needs it for the admin calls)."""
    if getattr(app.state, "admin_key_generated", False):
        print(f"沙箱管理密钥（X-Admin-Key，本次启动随机生成；要固定一个请设置环境变量 SANDBOX_ADMIN_KEY）："
              f"{app.state.admin_key}", flush=True)


def run(cfg: dict[str, Any]) -> int:
    """Serve the sandbox until interrupted (``python bot.py sandbox``)."""
    import uvicorn

    try:
        conf, level = SandboxConfig.of(cfg), LoggingConfig.of(cfg).level
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        database = str(resolve_path(conf.database))
        _, app = build(conf, database)
    except ValueError as e:
        log.error("sandbox: %s", e)
        return 2
    host, port = conf.host, conf.port
    sock = listening_socket(host, port)
    if sock is None:
        print(f"端口 {host}:{port} 已被占用：账号服务沙箱可能已经在运行；否则请关闭占用它的程序，"
              "或在 config.yaml 的 sandbox.port 换一个端口。", file=sys.stderr)
        return 1
    with sock:
        announce_admin_key(app)
        log.info("sandbox account API on http://%s:%d (database %s); demo accounts: accounts/README.md",
                 host, port, database)
        server = uvicorn.Server(uvicorn.Config(app, log_config=uvicorn_log_config(level)))
        server.run(sockets=[sock])
    return 0
