"""Editing a copy of the FAQ folder like a maintainer does: the ``faq_copy`` fixture (registered by
tests/conftest.py), an editor's save (write then rename) and a known schema error."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from faq.loader import load_dir

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "faq" / "data"
TOPIC = "02_recover_account.yaml"           # holds the username entry that break_it edits
QUESTION = load_dir(DATA).entry("recover_account.username").question


@pytest.fixture()
def faq_copy(tmp_path: Path) -> Path:
    """A private copy of faq/data to edit."""
    target = tmp_path / "data"
    shutil.copytree(DATA, target)
    return target


def save(path: Path, old: str, new: str) -> None:
    """Edit like an editor does: write a temporary file, then rename it over the old one."""
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text.replace(old, new, 1), encoding="utf-8")
    os.replace(tmp, path)


def break_it(path: Path) -> int:
    """A typo in a field name of the username entry; returns its line."""
    save(path, f"    question: {QUESTION}", f"    questoin: {QUESTION}")
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "questoin" in line)
