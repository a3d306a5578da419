"""Reliability by score band and the operating point (intents.calibration), and the
threshold-choosing script that uses them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from intents.calibration import guess, operating_point, reliability

ROOT = Path(__file__).resolve().parent.parent


def res(decision: str, intent: str, score: float, candidates=(), not_covered=None) -> dict:
    return {"decision": decision, "intent": intent, "score": score, "not_covered": not_covered,
            "candidates": [{"entry": f"{i}.x", "intent": i, "score": s} for i, s in candidates]}


def test_guess_is_what_the_bot_would_say_if_it_always_answered():
    assert guess(res("answer", "a", 0.9)) == "a"
    assert guess(res("clarify", "a", 0.5, [("a", 0.5), ("b", 0.48)])) == "a"
    assert guess(res("out_of_scope", "out_of_scope", 0.3, [("b", 0.3)])) == "b"            # below the line
    assert guess(res("out_of_scope", "out_of_scope", 0.7, [("b", 0.2)], "degree")) == "out_of_scope"  # catalogue
    outrun = {**res("out_of_scope", "out_of_scope", 0.7, [("b", 0.7)]), "outrun": "b.x"}   # advice already followed
    assert guess(outrun) == "out_of_scope"
    assert guess(res("out_of_scope", "out_of_scope", 0.0)) == "out_of_scope"


def test_reliability_bands_count_share_and_precision():
    rows = [("a", res("answer", "a", 0.95)), ("a", res("answer", "b", 0.92)),
            ("b", res("answer", "b", 0.65)), ("out_of_scope", res("out_of_scope", "out_of_scope", 0.1, [("a", 0.1)]))]
    bands = {b.label: b for b in reliability(rows, bands=(0.0, 0.5, 0.9, 1.0001))}
    assert (bands["0.90–1.00"].count, bands["0.90–1.00"].precision) == (2, 0.5)
    assert (bands["0.50–0.90"].count, bands["0.50–0.90"].precision, bands["0.50–0.90"].share) == (1, 1.0, 0.25)
    assert bands["0.00–0.50"].precision == 0.0   # the out-of-scope question's top guess was an entry


def test_operating_point_precision_coverage_and_useful_clarifications():
    rows = [("a", res("answer", "a", 0.9)), ("b", res("answer", "a", 0.8)),
            ("b", res("clarify", "a", 0.5, [("a", 0.5), ("b", 0.49)])),
            ("out_of_scope", res("clarify", "a", 0.5, [("a", 0.5)])),
            ("out_of_scope", res("out_of_scope", "out_of_scope", 0.2))]
    p = operating_point(rows)
    assert (p.precision, p.coverage, p.clarify_share, p.clarify_useful) == (0.5, 0.4, 0.4, 0.5)


@pytest.mark.parametrize("name", ["heldout3.yaml", "heldout5.yaml", "heldout6.yaml", "followups2.yaml"])
def test_calibrate_refuses_the_before_and_after_sets(tmp_path: Path, name):
    f = tmp_path / name
    f.write_text(yaml.safe_dump([{"text": "忘记密码", "intent": "recover_account"}], allow_unicode=True), encoding="utf-8")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "calibrate.py"), str(f)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "never tune on it" in out.stderr


@pytest.mark.parametrize("precision", ["0.9"])
def test_calibrate_chooses_thresholds_from_the_curve(tmp_path: Path, precision):
    items = [{"text": t, "intent": i} for t, i in [
        ("忘记密码怎么办", "recover_account"), ("用户名忘了", "recover_account"), ("邮箱ip受限", "email_ip_limited"),
        ("明天天气怎么样", "out_of_scope"), ("帮我订外卖", "out_of_scope"), ("微信支付失败", "out_of_scope")]]
    f = tmp_path / "cal.yaml"
    f.write_text(yaml.safe_dump(items, allow_unicode=True), encoding="utf-8")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "calibrate.py"), str(f), "--precision", precision],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # all three are answered at the top of the curve and a lower line adds no answer: the line stays
    # at the top (a flat stretch is no evidence for lowering it)
    assert "  chosen: 0.75" in out.stdout and "answer_threshold: 0.75" in out.stdout


def test_calibrate_lowers_the_line_to_the_last_step_that_added_right_answers(tmp_path: Path):
    items = [{"text": t, "intent": i} for t, i in [
        ("忘记密码怎么办", "recover_account"), ("好久没上学信网了不记得账号叫啥", "recover_account"),
        ("明天天气怎么样", "out_of_scope"), ("帮我订外卖", "out_of_scope")]]
    f = tmp_path / "cal.yaml"
    f.write_text(yaml.safe_dump(items, allow_unicode=True), encoding="utf-8")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "calibrate.py"), str(f)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    chosen = float(out.stdout.split("  chosen: ")[1].split()[0])
    assert 0.40 < chosen < 0.75   # the paraphrase (scored in between) is answered from there down


def test_calibrate_long_only_walks_the_long_messages_line_from_the_answer_line(tmp_path: Path):
    items = [{"text": t, "intent": i} for t, i in [
        ("我是好几年前在学校机房注册的学信网，后来一直没用，现在要查学籍才发现用户名完全想不起来了，该怎么找回呢",
         "recover_account"),
        ("忘记密码怎么办", "recover_account"), ("明天天气怎么样", "out_of_scope")]]
    f = tmp_path / "cal.yaml"
    f.write_text(yaml.safe_dump(items, allow_unicode=True), encoding="utf-8")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "calibrate.py"), str(f), "--long-only"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "long-message answer curve" in out.stdout and "answer curve (no clarify band)" not in out.stdout
    assert "long_answer_threshold: " in out.stdout.split("config.yaml matcher:")[1]


def test_calibrate_follow_up_walks_the_coverage_a_follow_ups_entry_needs(tmp_path: Path):
    items = [{"first": f, "then": t, "intent": i} for f, t, i in [
        ("重新注册怎么弄", "以前的学籍呢", "re_register_records"),   # answered only after the first question
        ("登录提示操作过于频繁", "那咋整", "too_frequent"),
        ("登录提示操作过于频繁", "要多少钱", "out_of_scope"),
        ("明天天气怎么样", "那咋整", "out_of_scope")]]   # (its first question is no answer: not counted)
    f = tmp_path / "follow.yaml"
    f.write_text(yaml.safe_dump(items, allow_unicode=True), encoding="utf-8")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "calibrate.py"), "--follow-up", str(f)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "3 after an answered first question" in out.stdout
    assert "  alone   0.0% /   0.0% / 100.0%" in out.stdout   # (none answered alone)
    assert "  1.00  100.0% / 100.0% / 100.0%   +2 / 2" in out.stdout
    assert "follow_coverage: 1.00" in out.stdout.split("config.yaml matcher:")[1]


def test_robustness_counts_the_variants_that_change_a_decision(tmp_path: Path):
    items = [{"text": t, "intent": i} for t, i in [
        ("忘记密码怎么办？", "recover_account"), ("邮箱ip受限怎么办", "email_ip_limited"),
        ("明天会下雨吗？", "out_of_scope"), ("谢谢", "thanks")]]     # (small talk has nothing to wrap: left out)
    f = tmp_path / "robust.yaml"
    f.write_text(yaml.safe_dump(items, allow_unicode=True), encoding="utf-8")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "robustness.py"), str(f),
                          "--only", "are_you_there", "--only", "thanks_after"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "3 questions from 1 files, 3 matched right as written" in out.stdout
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[2:]}
    assert set(rows) == {"are_you_there", "thanks_after"}
    assert "0 / 2 (0.0%)" in rows["are_you_there"] and "0 / 1 (0.0%)" in rows["are_you_there"]


def test_robustness_refuses_a_reserved_set():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "robustness.py"),
                          str(ROOT / "benchmarks" / "heldout3.yaml")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "never tune on it" in out.stderr


def test_robustness_slips_change_one_character_of_a_known_word():
    from pypinyin import lazy_pinyin
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import robustness

    slips = robustness._slips()
    text = "忘记密码怎么办"
    words = [m.span() for m in slips._words.finditer(text)]   # 忘记, 密码, 怎么办
    assert len(words) == 3
    got = slips.homophone(text)
    assert got == slips.homophone(text) and len(got) == len(text)                # the same slip every run
    changed = [k for k in range(len(text)) if got[k] != text[k]]
    assert len(changed) == 1 and any(a <= changed[0] < b for a, b in words)      # inside a known word
    assert lazy_pinyin(got[changed[0]]) == lazy_pinyin(text[changed[0]])        # of the same sound
    twice = slips.doubled(text)
    at = next(k for k in range(len(text)) if twice[k] != text[k])
    assert len(twice) == len(text) + 1 and twice[at] == twice[at - 1] and twice[:at] + twice[at + 1:] == text
    assert any(a <= at - 1 < b for a, b in words)
    for name in ("homophone", "doubled"):
        assert not robustness.applies(name, "明天会下雨吗")                      # no known word: nothing to slip
