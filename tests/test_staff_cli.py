"""``python bot.py staff …`` as a real process: the password comes from stdin, never argv."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from handlers.db import Database
from handlers.staff import StaffStore

ROOT = Path(__file__).resolve().parent.parent


def bot(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/bot.db"}
    return subprocess.run([sys.executable, str(ROOT / "bot.py"), "staff", *args], input=stdin, text=True,
                          capture_output=True, env=env, cwd=ROOT, timeout=120)


def test_add_list_disable_passwd(tmp_path):
    r = bot(tmp_path, "add", "小李", "--role", "agent", stdin="a-long-password\n")
    assert r.returncode == 0 and "已创建客服账号 小李（agent）" in r.stdout
    assert bot(tmp_path, "add", "boss", "--role", "admin", stdin="boss-password\n").returncode == 0
    store = StaffStore(Database(f"sqlite:///{tmp_path}/bot.db"))
    assert store.authenticate("小李", "a-long-password").role == "agent"
    r = bot(tmp_path, "list")
    assert r.stdout.splitlines() == ["boss\tadmin\t启用", "小李\tagent\t启用"]
    r = bot(tmp_path, "add", "小李", stdin="another-password\n")
    assert r.returncode == 1 and "已存在" in r.stderr
    r = bot(tmp_path, "add", "short", stdin="1234\n")
    assert r.returncode == 1 and "至少 8 个字符" in r.stderr
    r = bot(tmp_path, "add", "bad name!", stdin="a-long-password\n")
    assert r.returncode == 1 and "用户名只能包含" in r.stderr
    assert bot(tmp_path, "passwd", "小李", stdin="new-password-9\n").returncode == 0
    assert store.authenticate("小李", "new-password-9").name == "小李"
    r = bot(tmp_path, "disable", "小李")
    assert r.returncode == 0 and "已停用" in r.stdout
    assert "小李\tagent\t已停用" in bot(tmp_path, "list").stdout
    assert bot(tmp_path, "disable", "nobody").returncode == 1


def test_password_is_never_an_argument(tmp_path):
    r = bot(tmp_path, "add", "li", "--password", "secret-secret")
    assert r.returncode == 2 and "unrecognized arguments" in r.stderr
    hashed = Database(f"sqlite:///{tmp_path}/bot.db")
    bot(tmp_path, "add", "li", stdin="secret-secret\n")
    row = hashed.tx().row("SELECT password_hash FROM staff WHERE name = ?", ("li",))
    assert row["password_hash"].startswith("scrypt$32768$8$1$") and "secret-secret" not in row["password_hash"]
