"""The account API as the bot sees it: one small typed interface and its errors.

Error contract (every implementation keeps it):
- A refusal by the service raises the ``AccountError`` subclass for its ``code``
  (``error_for(code)``), carrying the Chinese ``message`` and, where the service
  gives them, ``retry_after`` (seconds) and ``attempts_left``.
- The service being unreachable, timing out, or failing (5xx) after the client's
  retries raises ``ServiceUnavailable``: nothing is known to have happened, and the
  same call with the same ``idempotency_key`` may be retried safely.
- Nothing else escapes. Implementations never log personal fields (names, ID
  numbers, phones, codes, tokens).

Every state-changing call takes an ``idempotency_key``: a retry with the same key
returns the first result and changes nothing again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .contract import Provider, RecordKind



# ---- errors ---------------------------------------------------------------

class AccountError(Exception):
    """The service refused the request. ``code`` is the contract's error code."""

    code = "ERROR"
    status = 400

    def __init__(self, message: str = "", *, retry_after: int | None = None,
                 attempts_left: int | None = None, field: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message
        self.retry_after = retry_after
        self.attempts_left = attempts_left
        self.field = field
        self.details = details or {}


class ServiceUnavailable(AccountError):
    """Unreachable, timed out or 5xx after retries; safe to retry with the same key."""
    code, status = "SERVICE_UNAVAILABLE", 503


class Validation(AccountError):
    """A field is malformed; ``field`` names it."""
    code, status = "VALIDATION", 422


class Unauthorized(AccountError):
    """Missing/invalid API key or user token (expired login)."""
    code, status = "UNAUTHORIZED", 401


class NotFound(AccountError):
    """No account/challenge/request matches (recovery: the details do not match an account)."""
    code, status = "NOT_FOUND", 404


class PhoneTaken(AccountError):
    code, status = "PHONE_TAKEN", 409


class IdTaken(AccountError):
    code, status = "ID_TAKEN", 409


class EmailUsed(AccountError):
    code, status = "EMAIL_USED", 409


class EmailIpLimited(AccountError):
    code, status = "EMAIL_IP_LIMITED", 403


class TooFrequent(AccountError):
    """Rate limited; ``retry_after`` seconds until allowed."""
    code, status = "TOO_FREQUENT", 429


class InvalidCode(AccountError):
    """Wrong SMS code; ``attempts_left`` before the challenge dies."""
    code, status = "INVALID_CODE", 422


class ChallengeExpired(AccountError):
    """Code expired, already used, or too many wrong codes: start again."""
    code, status = "CHALLENGE_EXPIRED", 410


class RecordMismatch(AccountError):
    """Route 4 record did not match; ``attempts_left`` of the 3."""
    code, status = "RECORD_MISMATCH", 422


class AttemptsExhausted(AccountError):
    """Route 4 used 3 times for this ID number."""
    code, status = "ATTEMPTS_EXHAUSTED", 403


class Conflict(AccountError):
    """The action does not fit the account's state (e.g. already active, already bound)."""
    code, status = "CONFLICT", 409


class BadImage(AccountError):
    """Upload is not a JPEG/PNG by content, or larger than ``contract.MAX_IMAGE_BYTES``."""
    code, status = "BAD_IMAGE", 422


_BY_CODE: dict[str, type[AccountError]] = {
    c.code: c for c in (ServiceUnavailable, Validation, Unauthorized, NotFound, PhoneTaken, IdTaken,
                        EmailUsed, EmailIpLimited, TooFrequent, InvalidCode, ChallengeExpired,
                        RecordMismatch, AttemptsExhausted, Conflict, BadImage)
}


def error_for(code: str) -> type[AccountError]:
    """The exception class for a contract error code (AccountError when unknown)."""
    return _BY_CODE.get(code, AccountError)


# ---- results --------------------------------------------------------------

@dataclass(frozen=True)
class Registered:
    account_id: str
    status: str  # active | pending_identity


@dataclass(frozen=True)
class Challenge:
    challenge_id: str
    sent_to: str  # masked phone, e.g. 138****1234


@dataclass(frozen=True)
class ResetLink:
    reset_url: str
    expires_in: int


@dataclass(frozen=True)
class Login:
    token: str
    account_id: str
    expires_in: int


@dataclass(frozen=True)
class ManualReview:
    ticket_id: str
    status: str  # pending | approved | rejected
    reason: str | None = None


@dataclass(frozen=True)
class ClassmateRequest:
    request_id: str
    status: str  # pending | accepted | rejected
    requester_name: str = ""      # masked for the classmate's inbox, e.g. 张*
    classmate_username: str = ""


@dataclass(frozen=True)
class Identity:
    status: str  # active | pending_identity | cancelled
    routes: tuple[str, ...]
    route4_attempts_used: int
    route4_attempts_left: int
    manual_review: ManualReview | None = None
    classmate_requests: tuple[ClassmateRequest, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class StudentRecord:
    kind: RecordKind
    school: str
    level: str  # one of contract.LEVELS
    student_no: str | None = None
    enrolment_year: int | None = None
    certificate_no: str | None = None
    graduation_year: int | None = None


# ---- the interface --------------------------------------------------------

class AccountAPI(Protocol):
    """What the bot needs from the account service. See the module doc for errors."""

    def with_client_id(self, client_id: str) -> "AccountAPI":
        """The same client acting for one end user (an opaque id, never personal data), so the
        service's per-client rate limits apply per chat user rather than to the whole bot."""
        ...

    def register(self, *, username: str, password: str, name: str, id_type: str, id_number: str,
                 phone: str, email: str | None = None, re_register: bool = False,
                 idempotency_key: str | None = None) -> Registered: ...

    def recover_username(self, *, name: str, id_type: str, id_number: str,
                         idempotency_key: str | None = None) -> str:
        """Send the username by SMS; return the masked phone it went to."""
        ...

    def start_password_recovery(self, *, username: str, name: str, id_type: str, id_number: str,
                                idempotency_key: str | None = None) -> Challenge: ...

    def verify_password_recovery(self, challenge_id: str, code: str, *,
                                 idempotency_key: str | None = None) -> ResetLink: ...

    def start_login(self, username: str, *, idempotency_key: str | None = None) -> Challenge: ...

    def verify_login(self, challenge_id: str, code: str, *, idempotency_key: str | None = None) -> Login: ...

    def identity(self, token: str) -> Identity: ...

    def start_app_verification(self, token: str, *, idempotency_key: str | None = None) -> str:
        """Route 1: return the APP instructions (Chinese text)."""
        ...

    def submit_manual_review(self, token: str, image: bytes, filename: str, content_type: str, *,
                             idempotency_key: str | None = None) -> ManualReview: ...

    def request_classmate(self, token: str, classmate_name: str, classmate_username: str, *,
                          idempotency_key: str | None = None) -> str:
        """Route 3: return the request id."""
        ...

    def inbox(self, token: str) -> list[ClassmateRequest]: ...

    def answer_classmate_request(self, token: str, request_id: str, accept: bool, *,
                                 idempotency_key: str | None = None) -> ClassmateRequest: ...

    def submit_student_record(self, token: str, record: StudentRecord, *,
                              idempotency_key: str | None = None) -> Identity:
        """Route 4: verified → the new Identity (active); mismatch → RecordMismatch."""
        ...

    def bind(self, token: str, provider: Provider, *,
             idempotency_key: str | None = None) -> str:
        """Return the QR link to scan."""
        ...

    def unbind(self, token: str, provider: Provider, *,
               idempotency_key: str | None = None) -> None: ...
