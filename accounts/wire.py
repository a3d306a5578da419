"""The contract's JSON shapes <-> accounts.base dataclasses and errors (shared by every client)."""
from __future__ import annotations

from typing import Any, Mapping

from .base import (AccountError, Challenge, ClassmateRequest, Identity, Login, ManualReview, Registered,
                   ResetLink, StudentRecord, error_for)

_DETAIL_FIELDS = ("retry_after", "attempts_left", "field")


def error_body(exc: AccountError) -> dict[str, Any]:
    """``{code, message, ...details}`` for an error."""
    body: dict[str, Any] = {"code": exc.code, "message": exc.message or exc.code}
    for name in _DETAIL_FIELDS:
        if getattr(exc, name) is not None:
            body[name] = getattr(exc, name)
    body.update({k: v for k, v in exc.details.items() if k not in body})
    return body


def error_from_body(body: Mapping[str, Any]) -> AccountError:
    """The typed exception for an error body (AccountError for an unknown code)."""
    code = str(body.get("code") or "ERROR")
    cls = error_for(code)
    details = {k: v for k, v in body.items() if k not in ("code", "message", *_DETAIL_FIELDS)}
    exc = cls(str(body.get("message") or code), retry_after=_int(body.get("retry_after")),
              attempts_left=_int(body.get("attempts_left")),
              field=body.get("field") if isinstance(body.get("field"), str) else None, details=details)
    if cls is AccountError:
        exc.code = code
    return exc


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def registered(d: Mapping[str, Any]) -> Registered:
    return Registered(account_id=d["account_id"], status=d["status"])


def challenge(d: Mapping[str, Any]) -> Challenge:
    return Challenge(challenge_id=d["challenge_id"], sent_to=d["sent_to"])


def reset_link(d: Mapping[str, Any]) -> ResetLink:
    return ResetLink(reset_url=d["reset_url"], expires_in=int(d["expires_in"]))


def login(d: Mapping[str, Any]) -> Login:
    return Login(token=d["token"], account_id=d["account_id"], expires_in=int(d["expires_in"]))


def manual_review(d: Mapping[str, Any] | None) -> ManualReview | None:
    if not d:
        return None
    return ManualReview(ticket_id=d["ticket_id"], status=d["status"], reason=d.get("reason"))


def classmate_request(d: Mapping[str, Any]) -> ClassmateRequest:
    return ClassmateRequest(request_id=d["request_id"], status=d["status"],
                            requester_name=d.get("requester_name", ""),
                            classmate_username=d.get("classmate_username", ""))


def identity(d: Mapping[str, Any]) -> Identity:
    return Identity(status=d["status"], routes=tuple(d.get("routes", ())),
                    route4_attempts_used=int(d["route4_attempts_used"]),
                    route4_attempts_left=int(d["route4_attempts_left"]),
                    manual_review=manual_review(d.get("manual_review")),
                    classmate_requests=tuple(classmate_request(r) for r in d.get("classmate_requests", ())))


def student_record_body(record: StudentRecord) -> dict[str, Any]:
    """The request body for route 4 (absent fields left out)."""
    body = {"kind": record.kind, "school": record.school, "level": record.level,
            "student_no": record.student_no, "enrolment_year": record.enrolment_year,
            "certificate_no": record.certificate_no, "graduation_year": record.graduation_year}
    return {k: v for k, v in body.items() if v is not None}


class WireClient:
    """``AccountAPI`` in terms of one ``_call`` per contract operation returning the JSON body.

    The HTTP client and the in-process twin differ only in ``_call``; the shapes and the
    conversion to dataclasses live here once. ``op`` names are the keys of ``OPERATIONS``.
    """

    def _call(self, op: str, *, token: str | None = None, key: str | None = None,
              path: dict[str, str] | None = None, body: dict[str, Any] | None = None,
              image: tuple[str, bytes, str] | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def register(self, *, username: str, password: str, name: str, id_type: str, id_number: str,
                 phone: str, email: str | None = None, re_register: bool = False,
                 idempotency_key: str | None = None) -> Registered:
        body = dict(username=username, password=password, name=name, id_type=id_type, id_number=id_number,
                    phone=phone, email=email, re_register=re_register)
        return registered(self._call("register", key=idempotency_key, body=body))

    def recover_username(self, *, name: str, id_type: str, id_number: str,
                         idempotency_key: str | None = None) -> str:
        body = dict(name=name, id_type=id_type, id_number=id_number)
        return str(self._call("recover_username", key=idempotency_key, body=body)["sent_to"])

    def start_password_recovery(self, *, username: str, name: str, id_type: str, id_number: str,
                                idempotency_key: str | None = None) -> Challenge:
        body = dict(username=username, name=name, id_type=id_type, id_number=id_number)
        return challenge(self._call("recover_password", key=idempotency_key, body=body))

    def verify_password_recovery(self, challenge_id: str, code: str, *,
                                 idempotency_key: str | None = None) -> ResetLink:
        return reset_link(self._call("verify_recovery", key=idempotency_key, path={"challenge_id": challenge_id},
                                     body={"code": code}))

    def start_login(self, username: str, *, idempotency_key: str | None = None) -> Challenge:
        return challenge(self._call("start_login", key=idempotency_key, body={"username": username}))

    def verify_login(self, challenge_id: str, code: str, *, idempotency_key: str | None = None) -> Login:
        return login(self._call("verify_login", key=idempotency_key, path={"challenge_id": challenge_id},
                                body={"code": code}))

    def identity(self, token: str) -> Identity:
        return identity(self._call("identity", token=token))

    def start_app_verification(self, token: str, *, idempotency_key: str | None = None) -> str:
        return str(self._call("app_verification", token=token, key=idempotency_key)["instructions"])

    def submit_manual_review(self, token: str, image: bytes, filename: str, content_type: str, *,
                             idempotency_key: str | None = None) -> ManualReview:
        body = self._call("manual_review", token=token, key=idempotency_key,
                          image=(filename or "upload", bytes(image or b""), content_type or "application/octet-stream"))
        review = manual_review(body)
        assert review is not None
        return review

    def request_classmate(self, token: str, classmate_name: str, classmate_username: str, *,
                          idempotency_key: str | None = None) -> str:
        body = {"classmate_name": classmate_name, "classmate_username": classmate_username}
        return str(self._call("classmate_request", token=token, key=idempotency_key, body=body)["request_id"])

    def inbox(self, token: str) -> list[ClassmateRequest]:
        return [classmate_request(r) for r in self._call("inbox", token=token)["requests"]]

    def answer_classmate_request(self, token: str, request_id: str, accept: bool, *,
                                 idempotency_key: str | None = None) -> ClassmateRequest:
        return classmate_request(self._call("accept_request" if accept else "reject_request", token=token,
                                            key=idempotency_key, path={"request_id": request_id}))

    def submit_student_record(self, token: str, record: StudentRecord, *,
                              idempotency_key: str | None = None) -> Identity:
        return identity(self._call("student_record", token=token, key=idempotency_key,
                                   body=student_record_body(record)))

    def bind(self, token: str, provider: str, *, idempotency_key: str | None = None) -> str:
        return str(self._call("bind", token=token, key=idempotency_key, body={"provider": provider})["qr_url"])

    def unbind(self, token: str, provider: str, *, idempotency_key: str | None = None) -> None:
        self._call("unbind", token=token, key=idempotency_key, path={"provider": provider})

    def bindings(self, token: str) -> dict[str, str]:
        """Extra (not in AccountAPI): provider → pending | bound."""
        return dict(self._call("bindings", token=token)["bindings"])


# op -> (HTTP method, path template): the contract's operations as the clients call them.
OPERATIONS: dict[str, tuple[str, str]] = {
    "register": ("POST", "/v1/accounts"),
    "recover_username": ("POST", "/v1/recovery/username"),
    "recover_password": ("POST", "/v1/recovery/password"),
    "verify_recovery": ("POST", "/v1/recovery/password/{challenge_id}/verify"),
    "start_login": ("POST", "/v1/auth/otp"),
    "verify_login": ("POST", "/v1/auth/otp/{challenge_id}"),
    "identity": ("GET", "/v1/me/identity"),
    "app_verification": ("POST", "/v1/me/identity/app-verification"),
    "manual_review": ("POST", "/v1/me/identity/manual-review"),
    "classmate_request": ("POST", "/v1/me/identity/classmate-requests"),
    "inbox": ("GET", "/v1/me/inbox"),
    "accept_request": ("POST", "/v1/me/inbox/{request_id}/accept"),
    "reject_request": ("POST", "/v1/me/inbox/{request_id}/reject"),
    "student_record": ("POST", "/v1/me/identity/student-record"),
    "bindings": ("GET", "/v1/me/bindings"),
    "bind": ("POST", "/v1/me/bindings"),
    "unbind": ("DELETE", "/v1/me/bindings/{provider}"),
}
