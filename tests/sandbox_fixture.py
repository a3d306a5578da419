"""A live sandbox account API for tests: real uvicorn, real HTTP, fresh SQLite database.

Use it from any test module or conftest.py by importing the fixtures::

    from sandbox_fixture import sandbox, fresh_sandbox  # noqa: F401  (pytest finds them by name)

    def test_login(sandbox):
        client = sandbox.client()                       # HttpAccountClient pointed at it
        ch = client.start_login(sandbox.demo["pending"]["username"])
        login = client.verify_login(ch.challenge_id, sandbox.latest_code(sandbox.demo["pending"]["phone"]))

Fixtures
- ``sandbox`` (session scope): one server for the whole run, started once (~0.5 s) on a free
  127.0.0.1 port with a temp database seeded with the demo data (accounts/README.md).
- ``fresh_sandbox`` (function scope): a new server and database for one test. Use it when a test
  spends a limited resource of a demo identity (route-4 attempts, rate limits) or checks global state.
- ``running_sandbox(db_path, limits=...)``: the context manager both use, for custom limits.

``Sandbox`` (what the fixtures yield) offers: ``base_url``, ``api_key``, ``admin_key``, ``db_path``;
``client(**config)`` an HttpAccountClient; ``outbox(phone)`` / ``latest_code(phone)`` the SMS "sent";
``login(username)`` → token; ``new_account(pending=False, records=())`` a fresh account with a new
valid ID number (so tests don't share rate limits or route-4 attempts); admin helpers
``approve_review``, ``reject_review``, ``pass_app_verification``, ``add_student_record``, ``account``
(stored record), ``pending_reviews``, ``clear_rate_limits``; ``demo`` the demo data by role:
``old`` (zhangsan01, active), ``pending`` (zhangsan02, same ID number, pending_identity),
``classmate`` (lisi2017), ``plain`` (wangwu88), ``x_id`` (zhaoliu01, ID ending in X),
``permit`` (chenqi01, 港澳通行证); ``demo["password"]``, ``demo["records"]`` (route-4 records of the
shared ID number: ``enrolled`` and ``graduate``).
"""
from __future__ import annotations

import contextlib
import random
import secrets
import socket
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402

from accounts.client import HttpAccountClient  # noqa: E402
from accounts.sandbox.demo import DEMO_ACCOUNTS, DEMO_PASSWORD, STUDENT_RECORDS  # noqa: E402
from accounts.sandbox.server import build  # noqa: E402
from logsetup import uvicorn_log_config  # noqa: E402
from accounts.sandbox.service import SandboxService, latest_code  # noqa: E402
from settings import SandboxLimits  # noqa: E402
from settings import AccountsConfig, SandboxConfig  # noqa: E402
from accounts.validation import gb11643_check_digit  # noqa: E402
from support import login_token  # noqa: E402

API_KEY = "test-api-key"

_ROLES = ("old", "pending", "classmate", "plain", "x_id", "permit")


def _demo() -> dict[str, Any]:
    demo: dict[str, Any] = {role: dict(acct) for role, acct in zip(_ROLES, DEMO_ACCOUNTS)}
    shared = demo["old"]["id_number"]
    demo["records"] = {r["kind"]: {k: v for k, v in r.items() if k not in ("id_type", "id_number")}
                       for r in STUDENT_RECORDS if r["id_number"] == shared}
    demo["password"] = DEMO_PASSWORD
    return demo


def fake_resident_id() -> str:
    """A random synthetic 居民身份证 number with a valid check digit."""
    born = f"{random.randint(1970, 2005)}{random.randint(1, 12):02d}{random.randint(1, 28):02d}"
    first17 = f"110101{born}{random.randint(0, 999):03d}"
    return first17 + gb11643_check_digit(first17)


def fake_phone() -> str:
    """A random mainland mobile number."""
    return f"1{random.choice('3456789')}{random.randint(0, 10 ** 9 - 1):09d}"


@dataclass
class Sandbox:
    """A running sandbox: its address, keys, demo data and helpers (see the module doc)."""

    base_url: str
    api_key: str
    admin_key: str
    db_path: str
    demo: dict[str, Any] = field(default_factory=_demo)
    http: requests.Session = field(default_factory=requests.Session)

    def client(self, **config: Any) -> HttpAccountClient:
        """An HttpAccountClient for this sandbox (``config`` overrides AccountsConfig fields)."""
        values = {"base_url": self.base_url, "api_key": self.api_key, "connect_timeout": 2.0,
                  "read_timeout": 10.0, "retries": 1, "backoff": 0.05, **config}
        return HttpAccountClient(AccountsConfig(**values))

    def _get(self, path: str, admin: bool = False, **params: Any) -> Any:
        r = self.http.get(self.base_url + path, params=params, timeout=10, headers=self._headers(admin))
        r.raise_for_status()
        return r.json()

    def _post(self, path: str, body: dict[str, Any] | None = None, admin: bool = True) -> Any:
        r = self.http.post(self.base_url + path, json=body or {}, timeout=10, headers=self._headers(admin))
        r.raise_for_status()
        return r.json() if r.status_code != 204 else None

    def _headers(self, admin: bool) -> dict[str, str]:
        return {"X-Admin-Key": self.admin_key} if admin else {"X-API-Key": self.api_key}

    def outbox(self, phone: str) -> list[dict[str, Any]]:
        """The SMS the sandbox "sent" to ``phone``, newest first."""
        return list(self._get("/v1/sandbox/outbox", phone=phone)["messages"])

    def latest_code(self, phone: str) -> str:
        """The newest SMS code sent to ``phone`` (KeyError when none)."""
        return latest_code(self.outbox(phone))

    def login(self, username: str, phone: str | None = None) -> str:
        """Log in by SMS code; return the user token (``phone`` defaults to the demo/new account's)."""
        return login_token(self.client(), username, phone or self.account(username)["phone"], codes=self)

    def new_account(self, *, pending: bool = False, name: str = "测试用户",
                    records: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
        """Register a fresh account with a new ID number; ``pending``: plus a re-registered twin, returned.

        The result has username, password, name, id_type, id_number, phone, account_id, status and,
        when pending, ``old`` (the first account). ``records`` are stored for the ID number (route 4).
        """
        client, id_number = self.client(), fake_resident_id()

        def one(re_register: bool) -> dict[str, Any]:
            acct = {"username": "t" + secrets.token_hex(6), "password": "Passw0rd!x", "name": name,
                    "id_type": "resident_id", "id_number": id_number, "phone": fake_phone()}
            reg = client.register(**acct, re_register=re_register, idempotency_key=uuid.uuid4().hex)
            return {**acct, "account_id": reg.account_id, "status": reg.status}

        first = one(False)
        for rec in records:
            self.add_student_record("resident_id", id_number, rec)
        return {**one(True), "old": first} if pending else first

    # ---- admin ----------------------------------------------------------------------

    def approve_review(self, ticket_id: str, reason: str | None = None) -> dict[str, Any]:
        return self._post(f"/v1/sandbox/admin/reviews/{ticket_id}", {"decision": "approve", "reason": reason})

    def reject_review(self, ticket_id: str, reason: str) -> dict[str, Any]:
        return self._post(f"/v1/sandbox/admin/reviews/{ticket_id}", {"decision": "reject", "reason": reason})

    def pass_app_verification(self, username: str) -> dict[str, Any]:
        """Mark route 1 passed (the user must have started it)."""
        return self._post("/v1/sandbox/admin/app-verifications", {"username": username})

    def add_student_record(self, id_type: str, id_number: str, record: dict[str, Any]) -> dict[str, Any]:
        return self._post("/v1/sandbox/admin/student-records", {"id_type": id_type, "id_number": id_number,
                                                                 **record})

    def account(self, username: str) -> dict[str, Any]:
        """The stored account record (status, cancelled_at, personal fields; no password hash)."""
        return self._get(f"/v1/sandbox/admin/accounts/{username}", admin=True)

    def pending_reviews(self) -> list[dict[str, Any]]:
        return list(self._get("/v1/sandbox/admin/reviews", admin=True)["reviews"])

    def clear_rate_limits(self) -> None:
        """Forget rate-limit events and recent recoveries (bindings allowed again)."""
        self._post("/v1/sandbox/admin/rate-limits/clear")


@contextlib.contextmanager
def running_sandbox(db_path: str | Path, *, limits: SandboxLimits | None = None) -> Iterator[Sandbox]:
    """Serve a sandbox over ``db_path`` on a free 127.0.0.1 port until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    # no admin key configured (SANDBOX_ADMIN_KEY unset): the sandbox makes one for this start, as for users
    conf = SandboxConfig(api_key=API_KEY, public_base_url=base_url, **({"limits": limits} if limits else {}))
    service, app = build(conf, str(db_path))
    server = uvicorn.Server(uvicorn.Config(app, log_config=uvicorn_log_config("WARNING"), lifespan="off",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="sandbox")
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("sandbox server did not start")
        time.sleep(0.01)
    handle = Sandbox(base_url=base_url, api_key=API_KEY, admin_key=app.state.admin_key, db_path=str(db_path))
    try:
        yield handle
    finally:
        handle.http.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        service.close()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One live sandbox for the whole test session (demo data seeded)."""
    with running_sandbox(tmp_path_factory.mktemp("sandbox") / "sandbox.db") as handle:
        yield handle


@pytest.fixture
def fresh_sandbox() -> Iterator[Sandbox]:
    """A live sandbox with its own fresh database, for one test."""
    with tempfile.TemporaryDirectory(prefix="sandbox-") as tmp:
        with running_sandbox(Path(tmp) / "sandbox.db") as handle:
            yield handle
