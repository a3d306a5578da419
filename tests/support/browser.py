"""Real headless Chromium for the widget and console tests: the ``browser`` fixture (registered by
tests/conftest.py), where screenshots go, and an XSS probe.

The one Chromium guard: without /usr/bin/chromium a test that needs the browser is skipped on a
developer's machine and FAILS under CI (``CI`` set), which must have every system part. Tests of
the same modules that do not use the browser still run.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def require_chromium() -> None:
    """Fail under CI, else skip, when Chromium is missing."""
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing and CI is set: the widget and consoles must be tested in Chromium")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); browser tests skipped")


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()
