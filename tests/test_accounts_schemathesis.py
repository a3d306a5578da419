"""Property-based run of the contract (accounts/openapi.yaml) against a live sandbox: no 5xx, no response
outside the contract (status codes, content types, headers, body schemas)."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from sandbox_fixture import Sandbox, running_sandbox

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_headers_conformance,
                                 response_schema_conformance, status_code_conformance)

ROOT = Path(__file__).resolve().parents[1]
schema = schemathesis.openapi.from_path(ROOT / "accounts" / "openapi.yaml")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[tuple[Sandbox, dict[str, str]]]:
    """Its own sandbox (the fuzzer changes state freely) and headers with every credential."""
    with tempfile.TemporaryDirectory(prefix="sandbox-fuzz-") as tmp, running_sandbox(Path(tmp) / "db.sqlite") as sb:
        acct = sb.new_account(pending=True)
        token = sb.login(acct["username"], acct["phone"])
        yield sb, {"X-API-Key": sb.api_key, "X-Admin-Key": sb.admin_key, "Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_contract_holds_for_generated_requests(case, fuzzed) -> None:
    sb, headers = fuzzed
    case.call_and_validate(base_url=sb.base_url, headers=headers, checks=CHECKS, timeout=30)
