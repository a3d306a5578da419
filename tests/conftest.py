"""Shared pytest set-up.

Under CI (the ``CI`` variable set) a skipped test is a failure: a test that needs a
system part (Chromium, Redis) may skip on a developer's machine that lacks it, but
CI must have every part, so a skip there means something is missing.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IN_CI = bool(os.environ.get("CI"))

# Shared fixtures, one definition each in tests/support/ (a test module never imports another one):
# acc/clock/engine/chat: the guided flows over the in-process account twin; faq_copy: a FAQ folder to
# edit; browser: headless Chromium (fails under CI when missing); standin/make_bot: the WeChat bench;
# sandbox_proc: the account sandbox in a process of its own (the fault tests, tests/fault_harness.py).
from fault_harness import sandbox_proc  # noqa: E402,F401
from support.browser import browser  # noqa: E402,F401
from support.faq_edit import faq_copy  # noqa: E402,F401
from support.flows import acc, chat, clock, engine  # noqa: E402,F401
from support.wechat import make_bot, standin  # noqa: E402,F401


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped under CI, which must have every system part: {reason}"
