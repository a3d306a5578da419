"""What a newcomer meets first: the README's commands work in a plain clone, the one-shot CLI
commands say what they mean, a taken port is one clear line, pytest says why tests were skipped."""
from __future__ import annotations

import configparser
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from channels.launcher import demo_config

ROOT = Path(__file__).resolve().parent.parent


def run_bot(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bot.py"), *args], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)


def test_every_eval_file_in_the_readme_exists_or_is_explained():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in re.findall(r"python bot\.py eval ([^\s`]+)", readme):
        if path.startswith("../"):
            line = next(line for line in readme.splitlines() if f"eval {path}" in line)
            following = readme[readme.index(line):readme.index(line) + 400]
            assert "not in this repository" in following, f"{path}: say where it comes from"
        else:
            assert (ROOT / path).is_file(), f"README runs `bot.py eval {path}`, which a clone does not have"
    first = re.search(r"## Command line.*?python bot\.py eval (\S+)", readme, re.S).group(1)
    assert not first.startswith("../")  # the first example works in any clone


def test_the_demo_keeps_the_ports_of_config_yaml_as_the_docs_say():
    cfg = {"web": {"port": 8123, "host": "0.0.0.0"}, "sandbox": {"port": 8877}, "sessions": {"backend": "redis"}}
    out = demo_config(cfg)
    assert out["web"]["port"] == 8123 and out["web"]["host"] == "127.0.0.1"
    assert out["accounts"]["base_url"] == "http://127.0.0.1:8877" and out["sessions"]["backend"] == "sqlite"
    doc = (ROOT / "channels" / "README.md").read_text(encoding="utf-8")
    assert "whatever config.yaml says" not in doc and "ports come from config.yaml" in doc


def test_ask_prints_no_numbered_options_it_cannot_take():
    r = run_bot("ask", "忘记密码怎么办")
    assert r.returncode == 0
    assert not re.search(r"^\s*\d+\. ", r.stdout, re.M), r.stdout
    assert 'python bot.py ask "忘记用户名怎么办？"' in r.stdout and "python bot.py chat" in r.stdout


def test_match_jsonl_says_what_is_wrong_with_a_line():
    r = run_bot("match", "--jsonl", stdin='{"text": "忘记密码"}\n{"question": "忘记密码"}\nnot json\n')
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert lines[0]["decision"] == "answer" and r.returncode == 1
    assert lines[1] == {"error": 'line 2: no "text" field: each line must be an object like {"text": "忘记密码怎么办"}'}
    assert lines[2]["error"].startswith("line 3: not JSON")


def test_sandbox_on_a_taken_port_says_so_in_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = (ROOT / "config.yaml").read_text(encoding="utf-8").replace("var/", f"{tmp_path}/")
        config = config.replace("  port: 8765\n", f"  port: {port}\n", 1)  # the sandbox's port
        (tmp_path / "config.yaml").write_text(config, encoding="utf-8")
        assert f"port: {port}" in config
        r = run_bot("--config", str(tmp_path / "config.yaml"), "sandbox")
    assert r.returncode == 1
    assert f"端口 127.0.0.1:{port} 已被占用" in r.stderr
    assert "Traceback" not in r.stderr and "address already in use" not in r.stderr.lower()
    assert "sandbox account API on" not in r.stderr  # it never claims to be serving


def test_pytest_reports_why_tests_were_skipped():
    ini = configparser.ConfigParser()
    ini.read(ROOT / "pytest.ini")
    flags = re.findall(r"-r(\w+)", ini["pytest"]["addopts"])
    assert any(set(f) & {"s", "a", "A"} for f in flags), "add -rs to addopts: skip reasons in the summary"


@pytest.mark.parametrize("env, words", [
    ({"METRICS_ENABLED": "true", "METRICS_TOKEN": ""}, "METRICS_TOKEN"),
    ({"HANDOFF_API_TOKEN": "short"}, "HANDOFF_API_TOKEN"),
    ({"HANDOFF_WEBHOOK_URL": "http://127.0.0.1:9/hook", "HANDOFF_WEBHOOK_SECRET": ""}, "HANDOFF_WEBHOOK_SECRET"),
])
def test_a_setting_that_cannot_work_is_one_line_not_a_traceback(tmp_path, env, words):
    config = (ROOT / "config.yaml").read_text(encoding="utf-8").replace("var/", f"{tmp_path}/")
    (tmp_path / "config.yaml").write_text(config, encoding="utf-8")
    r = subprocess.run([sys.executable, str(ROOT / "bot.py"), "--config", str(tmp_path / "config.yaml"), "serve"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120, env={**os.environ, "WEB_PORT": "0", **env})
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr and last.startswith("配置有误：") and words in last
