"""The terminal channel: numbered buttons, typed numbers, images by path, and `bot.py ask`."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from accounts.local import LocalAccountClient
from channels.console import converse, text_replies, to_message
from support import make_engine
from handlers.types import Button, Message, Reply

ROOT = Path(__file__).resolve().parents[1]


def test_text_replies_number_buttons_across_replies():
    text, buttons = text_replies([Reply("**答案**", (Button("甲", "a"),)),
                                  Reply("要开始吗？", (Button("乙", "b"), Button("丙", "c")), expects_image=True)])
    assert text == "答案\n  1. 甲\n\n要开始吗？\n  2. 乙\n  3. 丙\n（请发送图片：/image 图片路径）"
    assert [b.payload for b in buttons] == ["a", "b", "c"]


def test_to_message_numbers_images_and_text(tmp_path):
    buttons = [Button("甲", "a"), Button("乙", "b")]
    assert to_message("2", buttons, "sid") == Message.from_button("b", channel="console", address="sid")
    assert "1–2" in to_message("3", buttons)
    assert to_message("2", []) == Message.from_text("2", channel="console")  # no buttons: a number is just text
    photo = tmp_path / "id.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\nxx")
    msg = to_message(f"/image {photo}", buttons)
    assert msg.kind == "image" and msg.image.data.startswith(b"\x89PNG") and msg.image.content_type == "image/png"
    assert "读取不到" in to_message("/image /no/such/file.jpg", buttons)


def test_converse_picks_buttons_by_number(tmp_path):
    engine = make_engine(LocalAccountClient(), data_dir=tmp_path)
    lines = iter(["忘记用户名怎么办", "5", "张三", "/quit", "never read"])
    out = io.StringIO()
    converse(engine, "console-test", lambda: next(lines), out)
    printed = out.getvalue()
    assert "1. 忘记密码怎么办？" in printed and "开始找回用户名" in printed
    assert "请输入注册时填写的姓名" in printed and "请选择注册时使用的证件类型" in printed


def test_bot_ask_answers_without_the_account_service(tmp_path):
    env = {**os.environ, "ACCOUNTS_BASE_URL": "http://127.0.0.1:9", "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run([sys.executable, "bot.py", "ask", "忘记密码怎么办"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "找回密码" in done.stdout and "python bot.py ask" in done.stdout  # follow-ups as commands, not numbers
