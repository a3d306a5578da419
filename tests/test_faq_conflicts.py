"""`bot.py check` finds near duplicates: alternates the matcher sends elsewhere, overlapping entries."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faq.loader import load_dir
from intents.conflicts import alike_words, near_duplicates
from intents.matcher import MatcherConfig

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "faq" / "data"

# an alternate about forgotten passwords, filed under the too-frequent topic by mistake
STRAY = "      - 学信网密码忘记了怎么找回\n"
# a second entry that asks what recover_account.username asks, in other words
TWIN = """
  - id: email_ip_limited.username_again
    question: 用户名忘记了怎么办？
    alternates:
      - 想不起用户名了
      - 用户名忘了怎么才能找回
      - 学信网用户名找不到了怎么办
      - 怎么找回我的学信网用户名
      - 学信网账号忘记了怎么办
      - 不记得自己的学信网账号了
    answer: 请点击登录页面的“找回用户名”链接。
"""


@pytest.fixture(scope="module")
def crafted(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("faq") / "data"
    shutil.copytree(DATA, target)
    frequent = target / "topics" / "07_too_frequent.yaml"
    text = frequent.read_text(encoding="utf-8")
    anchor = "      - 操作过于频繁怎么解决\n"
    assert anchor in text
    frequent.write_text(text.replace(anchor, anchor + STRAY, 1), encoding="utf-8")
    email = target / "topics" / "08_email_ip_limited.yaml"
    email.write_text(email.read_text(encoding="utf-8").rstrip("\n") + "\n" + TWIN, encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def conflicts(crafted: Path) -> list:
    return near_duplicates(load_dir(crafted), MatcherConfig())


def _line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line)


def test_a_stray_alternate_is_reported_at_its_line_with_the_competing_entry(crafted: Path, conflicts: list):
    frequent = crafted / "topics" / "07_too_frequent.yaml"
    line = _line_of(frequent, STRAY.strip(" -\n"))
    hits = [c for c in conflicts if c.entry == "too_frequent.solutions" and c.line == line]
    assert hits, "\n".join(map(str, conflicts))
    hit = hits[0]
    assert hit.file.endswith("07_too_frequent.yaml") and hit.other == "recover_account.password"
    password = _line_of(crafted / "topics" / "02_recover_account.yaml", "- id: recover_account.password")
    assert hit.other_at.endswith(f"02_recover_account.yaml:{password}")
    assert f"07_too_frequent.yaml:{line}: too_frequent.solutions.alternates[1]: " in str(hit)
    assert "sends it to entry 'recover_account.password'" in str(hit)


def test_two_overlapping_entries_are_reported_as_a_pair(conflicts: list):
    pairs = [c for c in conflicts if c.message.startswith("entries overlap")]
    assert any({c.entry, c.other} == {"recover_account.username", "email_ip_limited.username_again"}
               for c in pairs), "\n".join(map(str, conflicts))
    # every alternate of the twin is reported against the entry it copies
    twin = [c for c in conflicts if c.entry == "email_ip_limited.username_again" and "near duplicate" in c.message]
    assert twin and all(c.other.startswith("recover_account.") for c in twin)


def test_distinct_entries_are_not_reported(conflicts: list):
    assert not any(c.message.startswith("entries overlap") and "email_ip_limited.how" in (c.entry, c.other)
                   for c in conflicts)
    assert not any(c.entry in ("greeting.hello", "thanks.thanks") for c in conflicts)


def test_cli_check_lists_them_as_warnings_and_strict_fails(crafted: Path, tmp_path: Path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"faq:\n  dir: {crafted}\n", encoding="utf-8")

    def bot(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "bot.py"), "--config", str(cfg), "check", *args],
                              capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=120)

    out = bot()
    assert out.returncode == 0, out.stderr
    line = _line_of(crafted / "topics" / "07_too_frequent.yaml", STRAY.strip(" -\n"))
    assert f"07_too_frequent.yaml:{line}: too_frequent.solutions.alternates[1]: near duplicate" in out.stdout
    assert "recover_account.password" in out.stdout and "near duplicate(s)" in out.stdout
    assert bot("--strict").returncode == 1


# a maintainer lists a word that normalising already makes one listed before it
ALIKE = [("验证不通过, 核对不成功", "验证不通过, 核验不通过, 核对不成功"),      # a synonym's variant of a listed word
         ("b站, 哔哩哔哩,", "b站, 哔哩哔哩, bilibili,"),                      # a site's latin name
         ("微信丢了, 微信号没了,", "微信丢了, 微信号没了, 微信被封,")]          # a contrast word other_services lists


@pytest.fixture(scope="module")
def alike_folder(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("faq") / "data"
    shutil.copytree(DATA, target)
    lexicon = target / "lexicon.yaml"
    text = lexicon.read_text(encoding="utf-8")
    for old, new in ALIKE:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    lexicon.write_text(text, encoding="utf-8")
    return target


def test_the_real_lexicon_lists_no_word_twice_once_normalised():
    assert alike_words(load_dir(DATA), DATA) == []


def test_a_word_reading_as_an_earlier_one_is_reported_at_its_line(alike_folder: Path):
    found = {a.word: a for a in alike_words(load_dir(alike_folder), alike_folder)}
    assert set(found) == {"核验不通过", "bilibili", "微信被封"}, "\n".join(map(str, found.values()))
    lexicon = alike_folder / "lexicon.yaml"
    assert found["核验不通过"].same_as == "验证不通过" and found["核验不通过"].field.startswith("contrast_words[")
    assert found["核验不通过"].line == _line_of(lexicon, ALIKE[0][1])
    assert found["bilibili"].same_as == "哔哩哔哩" and found["bilibili"].field.startswith("other_services[")
    assert found["bilibili"].line == _line_of(lexicon, ALIKE[1][1])
    assert "reads as '哔哩哔哩' once normalised" in str(found["bilibili"])
    # other sites are contrast words already: the copy in contrast_words is the one reported
    assert found["微信被封"].field.startswith("contrast_words[") and "in other_services" in found["微信被封"].message
    assert str(found["微信被封"]).startswith(f"{lexicon}:{_line_of(lexicon, ALIKE[2][1])}: contrast_words[")


def test_cli_check_lists_alike_words_as_warnings_and_strict_fails(alike_folder: Path, tmp_path: Path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"faq:\n  dir: {alike_folder}\n", encoding="utf-8")
    run = [sys.executable, str(ROOT / "bot.py"), "--config", str(cfg), "check"]
    out = subprocess.run(run, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "'核验不通过' reads as '验证不通过' once normalised" in out.stdout
    assert "3 lexicon word(s) reading as another once normalised" in out.stdout
    strict = subprocess.run([*run, "--strict"], capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=120)
    assert strict.returncode == 1
