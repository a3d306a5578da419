"""Contract tests: the live sandbox over HTTP, through the real client, rule by rule."""
from __future__ import annotations

import sqlite3
import threading
import uuid
from pathlib import Path
from typing import get_args

import pytest
import requests
import yaml
from sandbox_fixture import Sandbox, fake_phone, fake_resident_id, fresh_sandbox, sandbox  # noqa: F401

from accounts import contract
from accounts.base import (AttemptsExhausted, BadImage, ChallengeExpired, Conflict, EmailIpLimited, EmailUsed, IdTaken,
                           InvalidCode, NotFound, PhoneTaken, RecordMismatch, StudentRecord, TooFrequent, Unauthorized,
                           Validation)
from accounts.sandbox.service import SandboxService
from accounts.validation import id_number as valid_id_number
from handlers import images
from support import JPEG, PNG

ROOT = Path(__file__).resolve().parents[1]


def key() -> str:
    return uuid.uuid4().hex


def enrolled(rec: dict) -> StudentRecord:
    return StudentRecord(**rec)


def new_record() -> dict:
    return {"kind": "enrolled", "school": "清华大学", "level": "本科", "student_no": uuid.uuid4().hex[:10],
            "enrolment_year": 2019}


def wrong(rec: dict) -> StudentRecord:
    return StudentRecord(**{**rec, "student_no": "0000000000"})


def registration(**over) -> dict:
    body = {"username": "u" + uuid.uuid4().hex[:10], "password": "Good#pass1", "name": "王小明",
            "id_type": "resident_id", "id_number": fake_resident_id(), "phone": fake_phone()}
    body.update(over)
    return body


# ---- the contract document ----------------------------------------------------------

def test_openapi_yaml_agrees_with_the_served_openapi_json(sandbox: Sandbox) -> None:
    served = requests.get(sandbox.base_url + "/openapi.json", timeout=10).json()
    contract = yaml.safe_load((ROOT / "accounts" / "openapi.yaml").read_text(encoding="utf-8"))

    def operations(spec: dict) -> dict:
        return {(path, method): sorted(str(s) for s in op["responses"])
                for path, item in spec["paths"].items() for method, op in item.items()
                if method in ("get", "post", "put", "patch", "delete")}

    assert contract["openapi"].startswith("3.1")
    assert operations(contract) == operations(served)
    assert all(path.startswith("/v1/") for path in contract["paths"])


def test_the_contract_constants_are_openapi_yamls_enums_and_limits() -> None:
    """accounts/contract.py is the code's one copy of the contract's values: it must say what openapi.yaml says."""
    spec = yaml.safe_load((ROOT / "accounts" / "openapi.yaml").read_text(encoding="utf-8"))
    schemas = spec["components"]["schemas"]
    assert list(contract.ID_TYPE_LABELS) == list(get_args(contract.IdType)) == schemas["IdType"]["enum"]
    assert list(contract.PROVIDERS) == list(get_args(contract.Provider)) == schemas["Provider"]["enum"]
    record = schemas["StudentRecord"]["properties"]
    assert list(contract.LEVELS) == record["level"]["enum"]
    assert list(get_args(contract.RecordKind)) == record["kind"]["enum"]
    identity = schemas["Identity"]["properties"]
    assert list(contract.IDENTITY_ROUTES) == identity["routes"]["items"]["enum"]
    assert identity["route4_attempts_used"]["maximum"] == identity["route4_attempts_left"]["maximum"] \
        == contract.ROUTE4_ATTEMPTS
    upload = spec["paths"]["/v1/me/identity/manual-review"]["post"]["requestBody"]["content"]["multipart/form-data"]
    image = upload["schema"]["properties"]["image"]
    assert image["x-max-bytes"] == contract.MAX_IMAGE_BYTES
    assert image["x-content-types"] == list(contract.IMAGE_TYPES)
    reviews = spec["paths"]["/v1/sandbox/admin/reviews"]["get"]["responses"]["200"]["content"]["application/json"]
    assert reviews["schema"]["properties"]["reviews"]["items"]["properties"]["image_type"]["enum"] \
        == list(contract.IMAGE_TYPES)
    # the bot decodes exactly the contract's image types, up to the contract's size
    assert sorted(t for t, _ in images.FORMATS.values()) == sorted(contract.IMAGE_TYPES)
    assert images.MAX_BYTES == contract.MAX_IMAGE_BYTES


def test_demo_data_is_seeded_as_documented(sandbox: Sandbox) -> None:
    old, pending = sandbox.account(sandbox.demo["old"]["username"]), sandbox.account(sandbox.demo["pending"]["username"])
    assert old["id_number"] == pending["id_number"]
    assert (old["status"], pending["status"]) == ("active", "pending_identity")
    for role in ("old", "pending", "classmate", "plain", "x_id", "permit"):
        acct = sandbox.demo[role]
        assert valid_id_number(acct["id_type"], acct["id_number"]) == acct["id_number"]
        assert sandbox.account(acct["username"])["phone"] == acct["phone"]
    readme = (ROOT / "accounts" / "README.md").read_text(encoding="utf-8")
    assert all(sandbox.demo[r]["username"] in readme and sandbox.demo[r]["id_number"] in readme
               for r in ("old", "pending", "classmate", "plain", "x_id", "permit"))


# ---- auth and malformed requests -------------------------------------------------------

def test_api_key_and_user_token_are_required(sandbox: Sandbox) -> None:
    r = requests.post(sandbox.base_url + "/v1/auth/otp", json={"username": "wangwu88"}, timeout=10)
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    r = requests.post(sandbox.base_url + "/v1/auth/otp", json={"username": "wangwu88"},
                      headers={"X-API-Key": "wrong"}, timeout=10)
    assert r.status_code == 401
    r = requests.get(sandbox.base_url + "/v1/me/identity", headers={"X-API-Key": sandbox.api_key}, timeout=10)
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    with pytest.raises(Unauthorized):
        sandbox.client().identity("not-a-token")
    r = requests.get(sandbox.base_url + "/v1/sandbox/admin/reviews", headers={"X-Admin-Key": "wrong"}, timeout=10)
    assert r.status_code == 401


def test_admin_key_is_the_configured_one_or_random_per_start(tmp_path, monkeypatch) -> None:
    from accounts.sandbox.server import build
    from settings import SandboxConfig, load

    monkeypatch.delenv("SANDBOX_ADMIN_KEY", raising=False)
    assert load()["sandbox"]["admin_key"] == ""                    # config.yaml has no built-in admin key
    monkeypatch.setenv("SANDBOX_ADMIN_KEY", "chosen-admin-key-0123456789")
    assert load()["sandbox"]["admin_key"] == "chosen-admin-key-0123456789"
    made = []
    for n, key in enumerate(("", "", "chosen-admin-key-0123456789")):
        service, app = build(SandboxConfig(api_key="k", admin_key=key), str(tmp_path / f"s{n}.db"))
        made.append(app.state.admin_key)
        service.close()
    first, second, chosen = made
    assert chosen == "chosen-admin-key-0123456789"
    assert first != second and len(first) >= 32 and "sandbox-admin-key" not in made


def test_malformed_bodies_and_unknown_paths_get_contract_errors(sandbox: Sandbox) -> None:
    h = {"X-API-Key": sandbox.api_key, "Content-Type": "application/json"}
    r = requests.post(sandbox.base_url + "/v1/accounts", data=b"\xff\x00not json", headers=h, timeout=10)
    assert r.status_code == 422 and r.json()["code"] == "VALIDATION"
    r = requests.post(sandbox.base_url + "/v1/auth/otp", json={"username": 12}, headers=h, timeout=10)
    assert r.status_code == 422 and r.json()["field"] == "username"
    r = requests.get(sandbox.base_url + "/v1/nothing-here", headers=h, timeout=10)
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    r = requests.post(sandbox.base_url + "/v1/auth/otp", json={"username": "wangwu88"},
                      headers={**h, "Idempotency-Key": "k" * 256}, timeout=10)
    assert r.status_code == 422 and r.json()["field"] == "Idempotency-Key"


# ---- registration ----------------------------------------------------------------

def test_register_active_then_phone_and_id_taken_then_re_register_pending(sandbox: Sandbox) -> None:
    c = sandbox.client()
    first = registration()
    reg = c.register(**first)
    assert reg.status == "active" and reg.account_id
    with pytest.raises(PhoneTaken) as e:
        c.register(**registration(phone=first["phone"]))
    assert e.value.field == "phone" and e.value.message
    with pytest.raises(IdTaken) as e:
        c.register(**registration(id_number=first["id_number"]))
    assert e.value.field == "id_number" and "证件号码已被注册" in e.value.message
    again = c.register(**registration(id_number=first["id_number"]), re_register=True)
    assert again.status == "pending_identity"
    with pytest.raises(Conflict) as e:
        c.register(**registration(username=first["username"].upper()))
    assert e.value.field == "username"


def test_re_register_of_a_free_id_number_is_simply_active(sandbox: Sandbox) -> None:
    assert sandbox.client().register(**registration(), re_register=True).status == "active"


def test_a_safe_email_serves_one_registration_only(sandbox: Sandbox) -> None:
    c = sandbox.client()
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    c.register(**registration(email=email))
    with pytest.raises(EmailUsed) as e:
        c.register(**registration(email=email.upper()))
    assert e.value.field == "email"


def test_email_ip_limit_per_client(sandbox: Sandbox) -> None:
    c = sandbox.client().with_client_id("client-" + key())
    for _ in range(5):
        c.register(**registration(email=f"{uuid.uuid4().hex[:8]}@example.com"))
    with pytest.raises(EmailIpLimited) as e:
        c.register(**registration(email=f"{uuid.uuid4().hex[:8]}@example.com"))
    assert e.value.status == 403 and e.value.retry_after and "不填写邮箱" in e.value.message
    assert c.register(**registration()).status == "active"  # without an email it goes through


@pytest.mark.parametrize("field,value", [
    ("id_number", "110101199903071238"),        # wrong check digit
    ("id_number", "110101199913071237"),        # month 13
    ("id_number", "11010119990307123"),         # 17 characters
    ("phone", "12800138000"),
    ("phone", "1380013800"),
    ("phone", "+85213800138000"),
    ("username", "1abcdef"),
    ("username", "ab"),
    ("username", "abc def"),
    ("password", "short1!"),
    ("password", "onlyletters"),
    ("password", "密码密码密码密码1a"),
    ("name", "张三123"),
    ("name", "'; DROP TABLE accounts;--"),
    ("email", "not-an-email"),
    ("id_type", "driver_licence"),
])
def test_registration_field_rules(sandbox: Sandbox, field: str, value: str) -> None:
    with pytest.raises(Validation) as e:
        sandbox.client().register(**registration(**{field: value}))
    assert e.value.field == field and e.value.message


def test_password_must_not_contain_the_username(sandbox: Sandbox) -> None:
    body = registration()
    with pytest.raises(Validation) as e:
        sandbox.client().register(**{**body, "password": body["username"] + "#1"})
    assert e.value.field == "password"


@pytest.mark.parametrize("id_type,good,bad", [
    ("hk_macao_permit", "M87654321", "X87654321"),
    ("taiwan_permit", "12345678", "1234567"),
    ("passport", "E12345678", "E1"),
    ("foreign_permanent_id", "USA123456789012", "US1234"),
])
def test_other_id_types_by_their_format(sandbox: Sandbox, id_type: str, good: str, bad: str) -> None:
    c = sandbox.client()
    assert c.register(**registration(id_type=id_type, id_number=good + ("" if id_type != "passport" else
                                                                        uuid.uuid4().hex[:6].upper()))).status
    with pytest.raises(Validation) as e:
        c.register(**registration(id_type=id_type, id_number=bad))
    assert e.value.field == "id_number"


def test_x_check_digit_is_case_insensitive(sandbox: Sandbox) -> None:
    acct = sandbox.demo["x_id"]
    sent = sandbox.client().recover_username(name=acct["name"], id_type="resident_id",
                                             id_number=acct["id_number"].lower())
    assert sent == "136****6005"


# ---- recovery -------------------------------------------------------------------

def test_recover_username_sends_sms_and_never_returns_it(sandbox: Sandbox) -> None:
    acct = sandbox.new_account(pending=True)
    r = requests.post(sandbox.base_url + "/v1/recovery/username", headers={"X-API-Key": sandbox.api_key},
                      json={"name": acct["name"], "id_type": "resident_id", "id_number": acct["id_number"]}, timeout=10)
    assert r.status_code == 202
    assert acct["username"] not in r.text and acct["old"]["username"] not in r.text
    assert r.json()["sent_to"].split("、") == [f"{p[:3]}****{p[-4:]}" for p in (acct["old"]["phone"], acct["phone"])]
    assert sandbox.outbox(acct["phone"])[0]["username"] == acct["username"]
    assert acct["old"]["username"] in sandbox.outbox(acct["old"]["phone"])[0]["text"]
    with pytest.raises(NotFound):
        sandbox.client().recover_username(name="李雷", id_type="resident_id", id_number=acct["id_number"])


def test_password_recovery_codes_single_use_and_reset_link_works(sandbox: Sandbox) -> None:
    acct, c = sandbox.new_account(), sandbox.client()
    claim = {"name": acct["name"], "id_type": "resident_id", "id_number": acct["id_number"]}
    with pytest.raises(NotFound):
        c.start_password_recovery(username=acct["username"], **{**claim, "name": "别人"})
    ch = c.start_password_recovery(username=acct["username"], **claim)
    assert ch.sent_to == f"{acct['phone'][:3]}****{acct['phone'][-4:]}"
    code = sandbox.latest_code(acct["phone"])
    assert len(code) == 6 and code.isdigit()
    link = c.verify_password_recovery(ch.challenge_id, code)
    assert link.expires_in > 0 and link.reset_url.startswith(sandbox.base_url)
    with pytest.raises(ChallengeExpired):
        c.verify_password_recovery(ch.challenge_id, code)
    assert requests.get(link.reset_url, timeout=10).status_code == 200
    assert requests.post(link.reset_url, data={"password": "abc"}, timeout=10).status_code == 422
    assert requests.post(link.reset_url, data={"password": "New-pass-2024"}, timeout=10).status_code == 200
    assert requests.post(link.reset_url, data={"password": "Other-pass-2024"}, timeout=10).status_code == 410
    with sqlite3.connect(sandbox.db_path) as db:
        stored = db.execute("SELECT password_hash FROM accounts WHERE id = ?", (acct["account_id"],)).fetchone()[0]
    assert stored.startswith("scrypt$") and "New-pass-2024" not in stored
    assert SandboxService.check_password("New-pass-2024", stored)
    assert not SandboxService.check_password(acct["password"], stored)


def test_five_wrong_codes_kill_the_challenge(sandbox: Sandbox) -> None:
    acct, c = sandbox.new_account(), sandbox.client()
    ch = c.start_login(acct["username"])
    right = sandbox.latest_code(acct["phone"])
    bad = "000000" if right != "000000" else "111111"
    left = []
    for _ in range(5):
        with pytest.raises(InvalidCode) as e:
            c.verify_login(ch.challenge_id, bad)
        left.append(e.value.attempts_left)
    assert left == [4, 3, 2, 1, 0]
    with pytest.raises(ChallengeExpired):
        c.verify_login(ch.challenge_id, right)
    with pytest.raises(Validation):
        c.verify_login(ch.challenge_id, "12ab")
    with pytest.raises(NotFound):
        c.verify_login("ch_nope", right)


def test_codes_are_random_per_challenge(sandbox: Sandbox) -> None:
    acct, c = sandbox.new_account(), sandbox.client()
    codes = set()
    for _ in range(4):
        c.start_login(acct["username"])
        codes.add(sandbox.latest_code(acct["phone"]))
    assert len(codes) >= 3


# ---- too frequent (seed topic 7) -------------------------------------------------------

def test_login_attempts_per_username_are_rate_limited(sandbox: Sandbox) -> None:
    acct, c = sandbox.new_account(), sandbox.client()
    for _ in range(5):
        c.start_login(acct["username"])
    with pytest.raises(TooFrequent) as e:
        c.start_login(acct["username"])
    assert 0 < e.value.retry_after <= 600
    r = requests.post(sandbox.base_url + "/v1/auth/otp", json={"username": acct["username"]},
                      headers={"X-API-Key": sandbox.api_key}, timeout=10)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) == r.json()["retry_after"]


def test_recovery_attempts_per_identity_are_rate_limited(sandbox: Sandbox) -> None:
    acct, c = sandbox.new_account(), sandbox.client()
    claim = {"name": acct["name"], "id_type": "resident_id", "id_number": acct["id_number"]}
    for _ in range(3):
        c.recover_username(**claim)
    for _ in range(2):
        with pytest.raises(NotFound):
            c.start_password_recovery(username=acct["username"], **{**claim, "name": "别人"})
    with pytest.raises(TooFrequent) as e:
        c.start_password_recovery(username=acct["username"], **claim)
    assert e.value.retry_after > 0


def test_attempts_per_client_are_rate_limited(sandbox: Sandbox) -> None:
    c = sandbox.client().with_client_id("client-" + key())
    for _ in range(20):
        with pytest.raises(NotFound):
            c.start_login("nobody" + uuid.uuid4().hex[:8])
    with pytest.raises(TooFrequent):
        c.start_login("nobody" + uuid.uuid4().hex[:8])
    acct = sandbox.new_account()
    assert sandbox.client().with_client_id("client-" + key()).start_login(acct["username"]).challenge_id


def test_binding_within_two_hours_of_a_recovery_is_too_frequent(sandbox: Sandbox) -> None:
    acct, c = sandbox.new_account(), sandbox.client()
    token = sandbox.login(acct["username"], acct["phone"])
    c.recover_username(name=acct["name"], id_type="resident_id", id_number=acct["id_number"])
    with pytest.raises(TooFrequent) as e:
        c.bind(token, "wechat")
    assert 7000 < e.value.retry_after <= 7200 and "2小时" in e.value.message


def test_bind_scan_conflict_unbind(sandbox: Sandbox) -> None:
    acct, c = sandbox.new_account(), sandbox.client()
    token = sandbox.login(acct["username"], acct["phone"])
    qr = c.bind(token, "alipay", idempotency_key=key())
    assert qr.startswith(sandbox.base_url + "/sandbox/qr/")
    assert c.bindings(token) == {"alipay": "pending"}
    assert requests.post(qr, timeout=10).status_code == 200
    assert c.bindings(token) == {"alipay": "bound"}
    with pytest.raises(Conflict):
        c.bind(token, "alipay")
    with pytest.raises(Validation):
        c.bind(token, "qq")
    c.unbind(token, "alipay")
    with pytest.raises(NotFound):
        c.unbind(token, "alipay")
    assert c.bindings(token) == {}


# ---- identity routes (seed topic 5) -------------------------------------------------------

def assert_verified_and_old_cancelled(sandbox: Sandbox, acct: dict, route: str) -> None:
    new, old = sandbox.account(acct["username"]), sandbox.account(acct["old"]["username"])
    assert new["status"] == "active" and new["verified_route"] == route
    assert old["status"] == "cancelled" and old["cancelled_at"]
    # kept, never deleted, records intact
    for f in ("username", "name", "id_type", "id_number", "phone"):
        assert old[f] == acct["old"][f]


def test_identity_of_a_pending_account_offers_all_four_routes(sandbox: Sandbox) -> None:
    acct = sandbox.new_account(pending=True)
    ident = sandbox.client().identity(sandbox.login(acct["username"], acct["phone"]))
    assert ident.status == "pending_identity"
    assert ident.routes == ("app", "manual_review", "classmate", "student_record")
    assert (ident.route4_attempts_used, ident.route4_attempts_left) == (0, 3)
    assert ident.manual_review is None and ident.classmate_requests == ()
    active = sandbox.client().identity(sandbox.login(acct["old"]["username"], acct["old"]["phone"]))
    assert active.status == "active" and active.routes == ()


def test_route1_app_verification(sandbox: Sandbox) -> None:
    acct, c = sandbox.new_account(pending=True), sandbox.client()
    token = sandbox.login(acct["username"], acct["phone"])
    r = requests.post(sandbox.base_url + "/v1/sandbox/admin/app-verifications", json={"username": acct["username"]},
                      headers={"X-Admin-Key": sandbox.admin_key}, timeout=10)
    assert r.status_code == 409  # not started yet
    assert "APP" in c.start_app_verification(token, idempotency_key=key())
    assert sandbox.pass_app_verification(acct["username"])["status"] == "active"
    assert_verified_and_old_cancelled(sandbox, acct, "app")
    with pytest.raises(Conflict):
        c.start_app_verification(token)


def test_route2_manual_review_upload_reject_then_approve(sandbox: Sandbox) -> None:
    acct, c = sandbox.new_account(pending=True), sandbox.client()
    token = sandbox.login(acct["username"], acct["phone"])
    review = c.submit_manual_review(token, PNG, "身份证.txt", "text/plain")  # content decides, not the name
    assert review.status == "pending"
    with pytest.raises(Conflict):
        c.submit_manual_review(token, JPEG, "id.jpg", "image/jpeg")
    r = requests.post(f"{sandbox.base_url}/v1/sandbox/admin/reviews/{review.ticket_id}", json={"decision": "reject"},
                      headers={"X-Admin-Key": sandbox.admin_key}, timeout=10)
    assert r.status_code == 422 and r.json()["field"] == "reason"
    sandbox.reject_review(review.ticket_id, "照片模糊，请重新上传")
    ident = c.identity(token)
    assert ident.status == "pending_identity"
    assert ident.manual_review.status == "rejected" and ident.manual_review.reason == "照片模糊，请重新上传"
    second = c.submit_manual_review(token, JPEG, "id.jpg", "image/jpeg", idempotency_key=key())
    assert second.ticket_id in {r["ticket_id"] for r in sandbox.pending_reviews()}
    assert sandbox.approve_review(second.ticket_id)["status"] == "approved"
    assert c.identity(token).manual_review.status == "approved"
    assert_verified_and_old_cancelled(sandbox, acct, "manual_review")
    with sqlite3.connect(sandbox.db_path) as db:  # the photos are purged once decided
        assert db.execute("SELECT COUNT(*) FROM manual_reviews WHERE image IS NOT NULL AND account_id = ?",
                          (acct["account_id"],)).fetchone()[0] == 0


@pytest.mark.parametrize("data", [b"", b"GIF89a" + b"\x00" * 20, b"%PDF-1.7 not an image", b"\xff\xd8",
                                  b"\xff\xd8\xff" + b"\x00" * (5 * 1024 * 1024)])
def test_route2_bad_images(sandbox: Sandbox, data: bytes) -> None:
    acct = sandbox.new_account(pending=True)
    token = sandbox.login(acct["username"], acct["phone"])
    with pytest.raises(BadImage) as e:
        sandbox.client().submit_manual_review(token, data, "id.jpg", "image/jpeg")
    assert e.value.status == 422 and e.value.message


def test_route3_classmate_request_accept(sandbox: Sandbox) -> None:
    acct, mate, c = sandbox.new_account(pending=True, name="周同学"), sandbox.new_account(name="吴同学"), sandbox.client()
    token = sandbox.login(acct["username"], acct["phone"])
    with pytest.raises(NotFound):
        c.request_classmate(token, "别人", mate["username"])
    with pytest.raises(Validation):
        c.request_classmate(token, acct["old"]["name"], acct["old"]["username"])
    rid = c.request_classmate(token, mate["name"], mate["username"], idempotency_key=key())
    with pytest.raises(Conflict):
        c.request_classmate(token, mate["name"], mate["username"])
    assert c.identity(token).classmate_requests[0].status == "pending"
    mate_token = sandbox.login(mate["username"], mate["phone"])
    inbox = c.inbox(mate_token)
    assert [(r.request_id, r.requester_name, r.status) for r in inbox] == [(rid, "周**", "pending")]
    with pytest.raises(NotFound):  # not addressed to the requester
        c.answer_classmate_request(token, rid, True)
    answered = c.answer_classmate_request(mate_token, rid, True, idempotency_key=key())
    assert answered.status == "accepted"
    with pytest.raises(Conflict):
        c.answer_classmate_request(mate_token, rid, False)
    assert c.identity(token).classmate_requests[0].status == "accepted"
    assert_verified_and_old_cancelled(sandbox, acct, "classmate")


def test_route3_classmate_rejects(sandbox: Sandbox) -> None:
    acct, mate, c = sandbox.new_account(pending=True), sandbox.new_account(name="郑同学"), sandbox.client()
    token = sandbox.login(acct["username"], acct["phone"])
    rid = c.request_classmate(token, mate["name"], mate["username"])
    assert c.answer_classmate_request(sandbox.login(mate["username"], mate["phone"]), rid, False).status == "rejected"
    assert c.identity(token).status == "pending_identity"


def test_route4_mismatch_then_match_and_validation_does_not_burn(sandbox: Sandbox) -> None:
    rec = new_record()
    acct, c = sandbox.new_account(pending=True, records=(rec,)), sandbox.client()
    token = sandbox.login(acct["username"], acct["phone"])
    with pytest.raises(Validation) as e:
        c.submit_student_record(token, StudentRecord(kind="enrolled", school="清华大学", level="本科",
                                                     enrolment_year=2019))
    assert e.value.field == "student_no"
    with pytest.raises(Validation):
        c.submit_student_record(token, StudentRecord(kind="enrolled", school="清华大学", level="大专",
                                                     student_no="1", enrolment_year=2019))
    with pytest.raises(RecordMismatch) as e:
        c.submit_student_record(token, wrong(rec))
    assert e.value.attempts_left == 2 and e.value.status == 422
    ident = c.submit_student_record(token, StudentRecord(**{**rec, "school": " 清华 大学 "}))
    assert ident.status == "active" and ident.route4_attempts_used == 2
    assert_verified_and_old_cancelled(sandbox, acct, "student_record")


def test_route4_graduate_record(sandbox: Sandbox) -> None:
    rec = {"kind": "graduate", "school": "浙江大学", "level": "硕士研究生", "certificate_no": "103351202206001234",
           "graduation_year": 2022}
    acct = sandbox.new_account(pending=True, records=(rec,))
    token = sandbox.login(acct["username"], acct["phone"])
    assert sandbox.client().submit_student_record(token, StudentRecord(**rec)).status == "active"


def test_route4_three_attempts_per_id_number_across_its_accounts(sandbox: Sandbox) -> None:
    rec = new_record()
    acct, c = sandbox.new_account(pending=True, records=(rec,)), sandbox.client()
    twin = c.register(**registration(id_number=acct["id_number"], name=acct["name"]), re_register=True)
    token = sandbox.login(acct["username"], acct["phone"])
    with pytest.raises(RecordMismatch):
        c.submit_student_record(token, wrong(rec))
    with pytest.raises(RecordMismatch):
        c.submit_student_record(token, wrong(rec))
    with sqlite3.connect(sandbox.db_path) as db:
        twin_user, twin_phone = db.execute("SELECT username, phone FROM accounts WHERE id = ?",
                                           (twin.account_id,)).fetchone()
    twin_token = sandbox.login(twin_user, twin_phone)
    assert c.identity(twin_token).route4_attempts_left == 1
    with pytest.raises(RecordMismatch) as e:
        c.submit_student_record(twin_token, wrong(rec))
    assert e.value.attempts_left == 0
    with pytest.raises(AttemptsExhausted) as e:
        c.submit_student_record(token, StudentRecord(**rec))  # even the right record: the 3 are used
    assert e.value.status == 403
    ident = c.identity(token)
    assert ident.route4_attempts_left == 0 and "student_record" not in ident.routes


def test_ten_simultaneous_route4_attempts_make_at_most_three(sandbox: Sandbox) -> None:
    rec = new_record()
    acct = sandbox.new_account(pending=True, records=(rec,))
    twin = registration(id_number=acct["id_number"], name=acct["name"])
    sandbox.client().register(**twin, re_register=True)
    tokens = [sandbox.login(acct["username"], acct["phone"]), sandbox.login(twin["username"], twin["phone"])]
    barrier, results, lock = threading.Barrier(10), [], threading.Lock()

    def attempt(i: int) -> None:
        c = sandbox.client(retries=0)
        barrier.wait()
        try:
            c.submit_student_record(tokens[i % 2], wrong(rec), idempotency_key=key())
            outcome = "ok"
        except (RecordMismatch, AttemptsExhausted) as e:
            outcome = e.code
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["ATTEMPTS_EXHAUSTED"] * 7 + ["RECORD_MISMATCH"] * 3
    assert sandbox.account(acct["username"])["route4_attempts_used"] == 3


# ---- idempotency ------------------------------------------------------------------------

def test_register_retry_with_same_key_returns_the_first_result(sandbox: Sandbox) -> None:
    c, body, k = sandbox.client(), registration(), key()
    first = c.register(**body, idempotency_key=k)
    assert c.register(**body, idempotency_key=k) == first
    with pytest.raises(Conflict) as e:
        c.register(**registration(), idempotency_key=k)
    assert e.value.field == "Idempotency-Key"
    with sqlite3.connect(sandbox.db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM accounts WHERE phone = ?", (body["phone"],)).fetchone()[0] == 1


def test_refusals_are_replayed_too(sandbox: Sandbox) -> None:
    acct, c = sandbox.new_account(), sandbox.client()
    ch = c.start_login(acct["username"])
    bad = "000000" if sandbox.latest_code(acct["phone"]) != "000000" else "111111"
    k = key()
    for _ in range(3):  # one wrong code counted, however often it is retried
        with pytest.raises(InvalidCode) as e:
            c.verify_login(ch.challenge_id, bad, idempotency_key=k)
        assert e.value.attempts_left == 4
    with pytest.raises(InvalidCode) as e:
        c.verify_login(ch.challenge_id, bad, idempotency_key=key())
    assert e.value.attempts_left == 3


def test_route4_retry_with_same_key_does_not_burn_an_attempt(sandbox: Sandbox) -> None:
    rec = new_record()
    acct, c = sandbox.new_account(pending=True, records=(rec,)), sandbox.client()
    token, k = sandbox.login(acct["username"], acct["phone"]), key()
    for _ in range(3):
        with pytest.raises(RecordMismatch) as e:
            c.submit_student_record(token, wrong(rec), idempotency_key=k)
        assert e.value.attempts_left == 2
    assert c.identity(token).route4_attempts_used == 1


def test_login_and_recovery_retries_replay(sandbox: Sandbox) -> None:
    acct, c = sandbox.new_account(), sandbox.client()
    k1 = key()
    ch = c.start_login(acct["username"], idempotency_key=k1)
    assert c.start_login(acct["username"], idempotency_key=k1) == ch
    assert len(sandbox.outbox(acct["phone"])) == 1
    code, k2 = sandbox.latest_code(acct["phone"]), key()
    login = c.verify_login(ch.challenge_id, code, idempotency_key=k2)
    assert c.verify_login(ch.challenge_id, code, idempotency_key=k2) == login
    k3 = key()
    claim = {"name": acct["name"], "id_type": "resident_id", "id_number": acct["id_number"]}
    assert c.recover_username(**claim, idempotency_key=k3) == c.recover_username(**claim, idempotency_key=k3)
    assert len([m for m in sandbox.outbox(acct["phone"]) if m["kind"] == "username"]) == 1


def test_keys_are_scoped_per_user(sandbox: Sandbox) -> None:
    a, b, c, k = sandbox.new_account(), sandbox.new_account(), sandbox.client(), key()
    qa = c.bind(sandbox.login(a["username"], a["phone"]), "wechat", idempotency_key=k)
    qb = c.bind(sandbox.login(b["username"], b["phone"]), "wechat", idempotency_key=k)
    assert qa != qb


# ---- cancellation keeps the old accounts --------------------------------------------------

def test_cancelled_account_keeps_its_data_and_can_still_see_its_status(sandbox: Sandbox) -> None:
    rec = new_record()
    acct, c = sandbox.new_account(pending=True, records=(rec,)), sandbox.client()
    old_token = sandbox.login(acct["old"]["username"], acct["old"]["phone"])
    c.bind(old_token, "wechat")
    c.submit_student_record(sandbox.login(acct["username"], acct["phone"]), StudentRecord(**rec))
    old = sandbox.account(acct["old"]["username"])
    assert old["status"] == "cancelled" and old["cancelled_reason"]
    assert (old["phone"], old["id_number"], old["name"]) == (acct["old"]["phone"], acct["old"]["id_number"],
                                                             acct["old"]["name"])
    ident = c.identity(old_token)
    assert ident.status == "cancelled" and ident.routes == ()
    assert c.bindings(old_token) == {"wechat": "pending"}  # its records stay
    with pytest.raises(Conflict):
        c.bind(old_token, "alipay")
    with pytest.raises(Conflict):
        c.start_password_recovery(username=acct["old"]["username"], name=acct["name"], id_type="resident_id",
                                  id_number=acct["id_number"])
    # the phone of a cancelled account may be registered again; the ID number now belongs to the active one
    with pytest.raises(IdTaken):
        c.register(**registration(id_number=acct["id_number"]))
    assert c.register(**registration(phone=acct["old"]["phone"])).status == "active"


def test_fresh_sandbox_has_its_own_database(fresh_sandbox: Sandbox, sandbox: Sandbox) -> None:
    assert fresh_sandbox.db_path != sandbox.db_path
    assert fresh_sandbox.account(fresh_sandbox.demo["pending"]["username"])["status"] == "pending_identity"
