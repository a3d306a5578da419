"""The in-process twin and the time-based rules (fake clock): expiry, retry_after, the 2-hour binding wait,
token lifetime; migrations, password hashing, field rules and log redaction."""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from sandbox_fixture import fake_resident_id  # noqa: F401  (puts the project root on sys.path)

from accounts.base import ChallengeExpired, StudentRecord, TooFrequent, Unauthorized, Validation
from accounts.local import LocalAccountClient
from accounts.masking import mask_id_number, mask_name, mask_phone
from accounts.sandbox import db
from accounts.sandbox.demo import DEMO_ACCOUNTS, STUDENT_RECORDS
from logsetup import RedactAccessLog
from accounts.sandbox.service import SandboxService
from settings import SandboxLimits
from accounts import validation as v
from support import Clock, login_token


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def local(clock: Clock) -> LocalAccountClient:
    c = LocalAccountClient(clock=clock)
    yield c
    c.close()


PENDING, OLD = DEMO_ACCOUNTS[1], DEMO_ACCOUNTS[0]


def test_codes_expire_after_five_minutes(local: LocalAccountClient, clock: Clock) -> None:
    ch = local.start_login(PENDING["username"])
    clock.now += 299
    code = local.latest_code(PENDING["phone"])
    ch2 = local.start_login(PENDING["username"])
    assert local.verify_login(ch.challenge_id, code).token
    clock.now += 301
    with pytest.raises(ChallengeExpired):
        local.verify_login(ch2.challenge_id, local.latest_code(PENDING["phone"]))


def test_retry_after_counts_down_and_the_window_frees(local: LocalAccountClient, clock: Clock) -> None:
    for _ in range(5):
        local.start_login(OLD["username"])
        clock.now += 10
    with pytest.raises(TooFrequent) as e:
        local.start_login(OLD["username"])
    assert e.value.retry_after == 600 - 50
    clock.now += e.value.retry_after
    assert local.start_login(OLD["username"]).challenge_id


def test_binding_allowed_two_hours_after_recovery(local: LocalAccountClient, clock: Clock) -> None:
    local.recover_username(name=OLD["name"], id_type=OLD["id_type"], id_number=OLD["id_number"])
    clock.now += 3600
    with pytest.raises(TooFrequent) as e:
        local.bind(login_token(local, OLD["username"], OLD["phone"]), "wechat")
    assert e.value.retry_after == 3600
    clock.now += 3600
    assert "/sandbox/qr/" in local.bind(login_token(local, OLD["username"], OLD["phone"]), "wechat")


def test_user_tokens_expire(local: LocalAccountClient, clock: Clock) -> None:
    token = login_token(local, PENDING["username"], PENDING["phone"])
    clock.now += 1801
    with pytest.raises(Unauthorized):
        local.identity(token)


def test_local_twin_runs_a_whole_route4_flow(local: LocalAccountClient) -> None:
    token = login_token(local, PENDING["username"], PENDING["phone"])
    rec = {k: val for k, val in STUDENT_RECORDS[0].items() if k not in ("id_type", "id_number")}
    assert local.submit_student_record(token, StudentRecord(**rec), idempotency_key="a").status == "active"
    assert local.service.account_view(OLD["username"])["status"] == "cancelled"
    assert local.with_client_id("c1").identity(token).status == "active"


def test_limits_from_config_mapping() -> None:
    limits = SandboxLimits.parse({"login_per_username": [2, 60], "bind_after_recovery": 10})
    assert limits.login_per_username == (2, 60) and limits.bind_after_recovery == 10
    assert limits.code_ttl == 300
    with pytest.raises(ValueError, match="sandbox.limits.code_tll: unknown key"):
        SandboxLimits.parse({"code_tll": 60})


def test_migrations_run_once_and_demo_is_seeded_once(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    first = SandboxService(path, kdf_n=2 ** 10)
    second = SandboxService(path, kdf_n=2 ** 10)
    assert first.schema_version == second.schema_version == len(db.MIGRATIONS)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == len(db.MIGRATIONS)
        assert conn.execute("SELECT COUNT(*) FROM accounts").fetchone()[0] == len(DEMO_ACCOUNTS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_passwords_are_salted_scrypt(local: LocalAccountClient) -> None:
    a, b = local.service.hash_password("Same-pass-1"), local.service.hash_password("Same-pass-1")
    assert a != b and a.startswith("scrypt$")
    assert SandboxService.check_password("Same-pass-1", a) and not SandboxService.check_password("same-pass-1", a)


@pytest.mark.parametrize("number", ["110101199903071239", "33010620000101011X", "11010519491231002X"])
def test_gb11643_accepts_valid_numbers(number: str) -> None:
    assert v.id_number("resident_id", number.lower()) == number


@pytest.mark.parametrize("number", ["110101199903071230", "110101209903071233", "1101011999030712", "abc"])
def test_gb11643_rejects_invalid_numbers(number: str) -> None:
    with pytest.raises(Validation) as e:
        v.id_number("resident_id", number)
    assert e.value.field == "id_number"


def test_phone_normalisation_and_masks() -> None:
    assert v.phone("+86 138-0013-8000") == "13800138000"
    assert mask_phone("13800138000") == "138****8000"
    assert mask_id_number("11010119990307123X") == "1101**********123X"
    assert mask_name("欧阳修") == "欧**" and mask_name("张三") == "张*"


def test_access_log_masks_query_values_and_link_tokens() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/v1/sandbox/outbox?phone=13800138000&x=1", "1.1", 200), None)
    RedactAccessLog().filter(record)
    assert "13800138000" not in record.getMessage() and "phone=***" in record.getMessage()
    record.args = ("127.0.0.1:5", "GET", "/sandbox/reset/SECRETTOKEN", "1.1", 200)
    RedactAccessLog().filter(record)
    assert "SECRETTOKEN" not in record.getMessage()
