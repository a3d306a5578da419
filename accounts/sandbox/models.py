"""The sandbox API's request and response bodies: the shapes of accounts/openapi.yaml."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..contract import IdentityRoute, Provider, RecordKind


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RegisterIn(_In):
    username: str
    password: str
    name: str
    id_type: str
    id_number: str
    phone: str
    email: str | None = None
    re_register: bool = False


class RecoverUsernameIn(_In):
    name: str
    id_type: str
    id_number: str


class RecoverPasswordIn(RecoverUsernameIn):
    username: str


class CodeIn(_In):
    code: str


class OtpIn(_In):
    username: str


class ClassmateIn(_In):
    classmate_name: str
    classmate_username: str


class StudentRecordIn(_In):
    kind: RecordKind
    school: str
    level: str
    student_no: str | None = None
    enrolment_year: int | None = None
    certificate_no: str | None = None
    graduation_year: int | None = None


class BindIn(_In):
    provider: Provider


class ReviewDecisionIn(_In):
    decision: Literal["approve", "reject"]
    reason: str | None = None


class UsernameIn(_In):
    username: str


class StudentRecordAdminIn(StudentRecordIn):
    id_type: str
    id_number: str


class ErrorOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str
    message: str
    retry_after: int | None = None
    attempts_left: int | None = None
    field: str | None = None


class RegisteredOut(BaseModel):
    account_id: str
    status: Literal["active", "pending_identity"]


class SentToOut(BaseModel):
    sent_to: str


class ChallengeOut(BaseModel):
    challenge_id: str
    sent_to: str


class ResetLinkOut(BaseModel):
    reset_url: str
    expires_in: int


class LoginOut(BaseModel):
    token: str
    account_id: str
    expires_in: int


class ReviewOut(BaseModel):
    ticket_id: str
    status: Literal["pending", "approved", "rejected"]
    reason: str | None = None


class ClassmateRequestOut(BaseModel):
    request_id: str
    status: Literal["pending", "accepted", "rejected"]
    requester_name: str
    classmate_username: str


class ClassmateCreatedOut(BaseModel):
    request_id: str
    status: Literal["pending"]


class IdentityOut(BaseModel):
    status: Literal["active", "pending_identity", "cancelled"]
    routes: list[IdentityRoute]
    route4_attempts_used: int
    route4_attempts_left: int
    manual_review: ReviewOut | None
    classmate_requests: list[ClassmateRequestOut]


class InstructionsOut(BaseModel):
    instructions: str


class InboxOut(BaseModel):
    requests: list[ClassmateRequestOut]


class QrOut(BaseModel):
    qr_url: str


class BindingsOut(BaseModel):
    bindings: dict[str, Literal["pending", "bound"]]


class SmsOut(BaseModel):
    id: int
    kind: Literal["login_code", "password_recovery_code", "username"]
    text: str
    code: str | None
    username: str | None
    sent_at: float


class OutboxOut(BaseModel):
    messages: list[SmsOut]


class PendingReviewOut(BaseModel):
    ticket_id: str
    username: str
    image_type: str
    image_size: int
    created_at: float


class PendingReviewsOut(BaseModel):
    reviews: list[PendingReviewOut]


class AccountViewOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    username: str
    name: str
    id_type: str
    id_number: str
    phone: str
    email: str | None
    status: Literal["active", "pending_identity", "cancelled"]
    route4_attempts_used: int


class HealthOut(BaseModel):
    status: Literal["ok"]
    schema_version: int
