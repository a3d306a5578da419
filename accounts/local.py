"""``LocalAccountClient``: the in-process twin of the HTTP client.

Same domain logic (``accounts.sandbox.service``), same error contract, no HTTP: for fast unit
tests of the conversation engine. By default it runs over a private in-memory SQLite database
seeded with the demo accounts (accounts/README.md) and a cheap password KDF; ``outbox``/
``latest_code`` and the admin helpers make whole flows drivable from a test.

It is the account backend's in-memory twin (house rule: every backend has one), so it lives here
next to the HTTP client rather than in tests/. Error contract (``accounts.base``'s, kept exactly):
- a refusal by the service raises the ``AccountError`` subclass for its code, with the Chinese
  message and ``retry_after``/``attempts_left`` where the service gives them (the service raises
  them itself, so both clients share one set of rules);
- the database failing (``sqlite3.Error``) raises ``ServiceUnavailable`` (nothing is known to have
  happened; retry with the same idempotency key);
- nothing else escapes; no personal field is logged.
"""
from __future__ import annotations

import sqlite3
from typing import Any

from .base import Identity, ManualReview, ServiceUnavailable
from .sandbox.service import SandboxService, latest_code
from .wire import WireClient, identity, manual_review


class LocalAccountClient(WireClient):
    """``AccountAPI`` by direct calls into a ``SandboxService`` (``:memory:`` unless given one)."""

    def __init__(self, service: SandboxService | None = None, *, client_id: str | None = None,
                 **service_options: Any) -> None:
        if service is None:
            service_options.setdefault("kdf_n", 2 ** 10)
            service = SandboxService(service_options.pop("db_path", ":memory:"), **service_options)
        self.service = service
        self.client_id = client_id

    def with_client_id(self, client_id: str) -> "LocalAccountClient":
        """The same service acting for one end-user client (per-client rate limits)."""
        return LocalAccountClient(self.service, client_id=client_id)

    def close(self) -> None:
        self.service.close()

    def _call(self, op: str, *, token: str | None = None, key: str | None = None,
              path: dict[str, str] | None = None, body: dict[str, Any] | None = None,
              image: tuple[str, bytes, str] | None = None) -> dict[str, Any]:
        s, p, b = self.service, path or {}, dict(body or {})
        if op in ("register", "recover_username", "recover_password", "start_login"):
            b["client_id"] = self.client_id
        calls = {
            "register": lambda: s.register(**b, idempotency_key=key),
            "recover_username": lambda: s.recover_username(**b, idempotency_key=key),
            "recover_password": lambda: s.start_password_recovery(**b, idempotency_key=key),
            "verify_recovery": lambda: s.verify_password_recovery(p["challenge_id"], b["code"], idempotency_key=key),
            "start_login": lambda: s.start_login(b["username"], client_id=self.client_id, idempotency_key=key),
            "verify_login": lambda: s.verify_login(p["challenge_id"], b["code"], idempotency_key=key),
            "identity": lambda: s.identity(token or ""),
            "app_verification": lambda: s.start_app_verification(token or "", idempotency_key=key),
            "manual_review": lambda: _manual_review(s, token or "", image or ("", b"", ""), key),
            "classmate_request": lambda: s.request_classmate(token or "", b["classmate_name"],
                                                             b["classmate_username"], idempotency_key=key),
            "inbox": lambda: s.inbox(token or ""),
            "accept_request": lambda: s.answer_classmate_request(token or "", p["request_id"], True,
                                                                 idempotency_key=key),
            "reject_request": lambda: s.answer_classmate_request(token or "", p["request_id"], False,
                                                                 idempotency_key=key),
            "student_record": lambda: s.submit_student_record(token or "", b, idempotency_key=key),
            "bindings": lambda: s.bindings(token or ""),
            "bind": lambda: s.bind(token or "", b["provider"], idempotency_key=key),
            "unbind": lambda: s.unbind(token or "", p["provider"], idempotency_key=key),
        }
        try:
            return calls[op]()
        except sqlite3.Error as e:
            raise ServiceUnavailable("账号服务暂时不可用，请稍后再试。") from e

    # ---- sandbox helpers for tests (not part of AccountAPI) ----------------------------

    def outbox(self, phone: str) -> list[dict[str, Any]]:
        """The SMS sent to ``phone``, newest first."""
        return list(self.service.outbox(phone)["messages"])

    def latest_code(self, phone: str) -> str:
        """The newest SMS code sent to ``phone`` (KeyError when none)."""
        return latest_code(self.outbox(phone))

    def decide_review(self, ticket_id: str, approve: bool, reason: str | None = None) -> ManualReview:
        """Admin: approve or reject (reason required) a route-2 ticket."""
        review = manual_review(self.service.decide_review(ticket_id, approve, reason))
        assert review is not None
        return review

    def add_student_record(self, id_type: str, id_number: str, record: dict[str, Any]) -> None:
        """Admin: give an ID number a 学籍/学历 record for route 4."""
        self.service.add_student_record(None, id_type, id_number, record)

    def pass_app_verification(self, username: str) -> Identity:
        return identity(self.service.pass_app_verification(username))


def _manual_review(service: Any, token: str, image: tuple[str, bytes, str], key: str | None) -> dict[str, Any]:
    """The wire's (filename, bytes, content type) to the service's (bytes, filename, content type)."""
    filename, data, content_type = image
    return service.submit_manual_review(token, data, filename, content_type, idempotency_key=key)
