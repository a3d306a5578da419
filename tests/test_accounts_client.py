"""HttpAccountClient: retries, timeouts and error mapping against tiny raw-socket servers on 127.0.0.1."""
from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
from typing import Callable

import pytest
from sandbox_fixture import Sandbox, sandbox  # noqa: F401

import settings
from accounts.base import (AccountError, AccountAPI, RecordMismatch, ServiceUnavailable, StudentRecord, TooFrequent,
                           error_for)
from accounts.client import HttpAccountClient
from settings import AccountsConfig
from accounts.local import LocalAccountClient
from accounts.wire import error_from_body

Handler = Callable[[socket.socket, int], None]


class RawServer:
    """Accepts connections on a free 127.0.0.1 port; ``handler(conn, n)`` serves the n-th (0-based)."""

    def __init__(self, handler: Handler) -> None:
        self.handler, self.connections = handler, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            n, self.connections = self.connections, self.connections + 1
            threading.Thread(target=self._run, args=(conn, n), daemon=True).start()

    def _run(self, conn: socket.socket, n: int) -> None:
        try:
            self.handler(conn, n)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def read_request(conn: socket.socket) -> bytes:
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def reply(conn: socket.socket, status: int, body: bytes | dict, headers: dict[str, str] | None = None) -> None:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(raw)}", "Content-Type: application/json",
             "Connection: close", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + raw)


@pytest.fixture
def serve():
    servers: list[RawServer] = []

    def start(handler: Handler) -> RawServer:
        servers.append(RawServer(handler))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def client_for(url: str, **over) -> HttpAccountClient:
    cfg = {"base_url": url, "api_key": "k", "connect_timeout": 1.0, "read_timeout": 0.3, "retries": 2,
           "backoff": 0.01, **over}
    return HttpAccountClient(AccountsConfig(**cfg))


IDENTITY = {"status": "active", "routes": [], "route4_attempts_used": 0, "route4_attempts_left": 3,
            "manual_review": None, "classmate_requests": []}


def stall(conn: socket.socket, n: int) -> None:
    read_request(conn)
    threading.Event().wait(1.0)  # longer than the read timeout


def drop(conn: socket.socket, n: int) -> None:
    read_request(conn)  # then close without a reply


@pytest.mark.parametrize("handler", [stall, drop], ids=["stall", "drop"])
def test_get_is_retried_then_service_unavailable(serve, handler: Handler) -> None:
    server = serve(handler)
    with pytest.raises(ServiceUnavailable) as e:
        client_for(server.url).identity("t")
    assert server.connections == 3 and e.value.message


@pytest.mark.parametrize("handler", [stall, drop], ids=["stall", "drop"])
def test_post_without_idempotency_key_is_tried_once(serve, handler: Handler) -> None:
    server = serve(handler)
    with pytest.raises(ServiceUnavailable):
        client_for(server.url).start_login("wangwu88")
    assert server.connections == 1


def test_post_with_idempotency_key_is_retried(serve) -> None:
    server = serve(drop)
    with pytest.raises(ServiceUnavailable):
        client_for(server.url).start_login("wangwu88", idempotency_key="k1")
    assert server.connections == 3


def test_502_503_504_are_retried_until_success(serve) -> None:
    def flaky(conn: socket.socket, n: int) -> None:
        read_request(conn)
        reply(conn, (502, 503)[n] if n < 2 else 200, {"code": "X", "message": "x"} if n < 2 else IDENTITY)

    server = serve(flaky)
    assert client_for(server.url).identity("t").status == "active"
    assert server.connections == 3


def test_500_is_not_retried(serve) -> None:
    server = serve(lambda conn, n: (read_request(conn), reply(conn, 500, {"code": "INTERNAL", "message": "x"})))
    with pytest.raises(ServiceUnavailable):
        client_for(server.url).identity("t")
    assert server.connections == 1


@pytest.mark.parametrize("status,body", [(200, b"<html>not json</html>"), (200, b"[1, 2]"), (404, b"Not Found"),
                                         (418, {"no": "code"})])
def test_replies_outside_the_contract_are_service_unavailable(serve, status: int, body) -> None:
    server = serve(lambda conn, n: (read_request(conn), reply(conn, status, body)))
    with pytest.raises(ServiceUnavailable):
        client_for(server.url).identity("t")


def test_connection_refused_is_service_unavailable() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ServiceUnavailable):
        client_for(f"http://127.0.0.1:{port}", retries=1).identity("t")


def test_error_bodies_map_to_typed_errors_with_details(serve) -> None:
    def limited(conn: socket.socket, n: int) -> None:
        read_request(conn)
        if n == 0:
            reply(conn, 429, {"code": "TOO_FREQUENT", "message": "操作过于频繁"}, {"Retry-After": "120"})
        else:
            reply(conn, 422, {"code": "RECORD_MISMATCH", "message": "不一致", "attempts_left": 1, "extra": "x"})

    server = serve(limited)
    c = client_for(server.url)
    with pytest.raises(TooFrequent) as e:
        c.start_login("wangwu88")
    assert e.value.retry_after == 120 and e.value.message == "操作过于频繁"
    with pytest.raises(RecordMismatch) as e2:
        c.submit_student_record("t", StudentRecord(kind="enrolled", school="x", level="本科", student_no="1",
                                                   enrolment_year=2017))
    assert e2.value.attempts_left == 1 and e2.value.details == {"extra": "x"}


def test_every_contract_code_has_its_class() -> None:
    codes = ["SERVICE_UNAVAILABLE", "VALIDATION", "UNAUTHORIZED", "NOT_FOUND", "PHONE_TAKEN", "ID_TAKEN", "EMAIL_USED",
             "EMAIL_IP_LIMITED", "TOO_FREQUENT", "INVALID_CODE", "CHALLENGE_EXPIRED", "RECORD_MISMATCH",
             "ATTEMPTS_EXHAUSTED", "CONFLICT", "BAD_IMAGE"]
    for code in codes:
        exc = error_from_body({"code": code, "message": "m", "field": "f"})
        assert type(exc) is error_for(code) and exc.code == code and exc.field == "f"
    unknown = error_from_body({"code": "NEW_CODE", "message": "m"})
    assert type(unknown) is AccountError and unknown.code == "NEW_CODE"


def test_timed_out_route4_attempt_retried_with_same_key_burns_one_attempt(sandbox: Sandbox, serve) -> None:
    """A proxy passes the first request to the sandbox but loses the reply; the client's retry is replayed."""
    rec = {"kind": "enrolled", "school": "南京大学", "level": "专科", "student_no": uuid.uuid4().hex[:8],
           "enrolment_year": 2020}
    acct = sandbox.new_account(pending=True, records=(rec,))
    token = sandbox.login(acct["username"], acct["phone"])
    port = int(sandbox.base_url.rsplit(":", 1)[1])

    def lossy(conn: socket.socket, n: int) -> None:
        request = read_request(conn).replace(b"Connection: keep-alive", b"Connection: close")
        upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        upstream.sendall(request)
        response = b""
        while chunk := upstream.recv(65536):
            response += chunk
        upstream.close()
        if n > 0:
            conn.sendall(response)  # the first reply is lost: the client times out

    proxy = serve(lossy)
    c = client_for(proxy.url, api_key=sandbox.api_key, read_timeout=2.0, retries=2)
    with pytest.raises(RecordMismatch) as e:
        c.submit_student_record(token, StudentRecord(**{**rec, "student_no": "nope"}), idempotency_key=uuid.uuid4().hex)
    assert proxy.connections == 2 and e.value.attempts_left == 2
    assert sandbox.account(acct["username"])["route4_attempts_used"] == 1


def test_client_logs_no_personal_fields(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="accounts")
    acct = sandbox.new_account(pending=True)
    c = sandbox.client()
    token = sandbox.login(acct["username"], acct["phone"])
    c.recover_username(name=acct["name"], id_type="resident_id", id_number=acct["id_number"])
    c.identity(token)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("accounts"))
    assert "/v1/me/identity" in text
    for secret in (acct["phone"], acct["id_number"], acct["name"], acct["password"], token, acct["username"]):
        assert secret not in text


def test_client_config_from_the_accounts_section() -> None:
    cfg = settings.load()
    conf = AccountsConfig.of(cfg)
    section = settings.section(cfg, "accounts")
    assert conf.base_url == section["base_url"].rstrip("/")
    assert conf.retries == int(section["retries"])
    with pytest.raises(ValueError, match=r"accounts\.base_url: .*http\(s\) URL"):
        AccountsConfig.parse({"base_url": "ftp://x", "api_key": "k"})
    with pytest.raises(ValueError, match=r"accounts\.read_timeout: .*greater than 0"):
        AccountsConfig.parse({"base_url": "http://x", "read_timeout": 0})
    with pytest.raises(ValueError, match=r"accounts\.retry: unknown key"):
        AccountsConfig.parse({"base_url": "http://x", "retry": 3})
    assert AccountsConfig.parse({"base_url": "http://x/", "retries": 0}).retries == 0  # 0 stays 0


@pytest.mark.parametrize("cls", [HttpAccountClient, LocalAccountClient])
def test_clients_implement_account_api_with_its_signatures(cls) -> None:
    import inspect
    checked = set()
    for name, member in vars(AccountAPI).items():
        if callable(member) and not name.startswith("_"):
            assert inspect.signature(getattr(cls, name)).parameters.keys() == \
                inspect.signature(member).parameters.keys(), name
            checked.add(name)
    assert {"register", "start_login", "verify_login", "identity", "submit_manual_review", "bind"} <= checked
