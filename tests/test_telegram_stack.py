"""The Telegram channel on python-telegram-bot's real stack (HTTPXRequest, the Updater's long polling,
the rate limiter) against a local Bot API stand-in reached through ``telegram.base_url``; and
``python bot.py telegram`` itself as a process."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from accounts.local import LocalAccountClient
from channels.telegram import NO_PHOTO_WANTED, TOO_LARGE, USED_BUTTON, build_application, session_id
from support import JPEG, RecordingEngine, make_engine
from handlers.types import Button, Reply

from telegram_standin import running_bot_api

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "424242:stand-in-token_for-tests"


@pytest.fixture
def api():
    with running_bot_api(TOKEN) as standin:
        yield standin


def cfg_for(api) -> dict:
    return {"telegram": {"token": TOKEN, "base_url": api.base_url, "base_file_url": api.base_file_url},
            "web": {"max_text_chars": 2000}}


@contextlib.contextmanager
def polling(app):
    """Run the Application's long polling in a thread with its own event loop until the block ends."""
    loop = asyncio.new_event_loop()
    started, failed = threading.Event(), []
    holder: dict = {}

    async def main() -> None:
        holder["stop"] = asyncio.Event()
        try:
            async with app:
                await app.start()
                await app.updater.start_polling(poll_interval=0.0, timeout=1,
                                                allowed_updates=["message", "callback_query"])
                started.set()
                await holder["stop"].wait()
                await app.updater.stop()
                await app.stop()
        except Exception as e:  # noqa: BLE001 - reported to the test
            failed.append(e)
            started.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True, name="ptb-polling")
    thread.start()
    assert started.wait(15) and not failed, failed
    try:
        yield
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(20)
        loop.close()


def slow_answer(message) -> list[Reply]:
    """Echoes text; a message starting with 慢 takes a while (as a slow account API call would)."""
    if message.kind == "button":
        return [Reply(f"按了：{message.payload}")]
    if message.text.startswith("慢"):
        time.sleep(0.5)
    return [Reply(f"回复：{message.text}", buttons=(Button("开始找回密码", "flow:recover_password"),))]


def test_one_chats_messages_keep_their_order_while_chats_are_served_concurrently(api):
    app = build_application(cfg_for(api), RecordingEngine(slow_answer))
    with polling(app):
        api.push_text(1, "慢的第一条")
        api.push_text(1, "第二条")
        api.push_text(2, "别的聊天")
        api.wait_for(lambda: len(api.sent) == 3)
    assert api.texts(1) == ["回复：慢的第一条", "回复：第二条"]
    order = [m["chat"]["id"] for m in api.sent]
    assert order.index(2) < order.index(1)  # chat 2 did not wait for chat 1's slow message


def test_a_double_tap_is_handled_once_and_the_keyboard_goes(api):
    engine = RecordingEngine(slow_answer)
    app = build_application(cfg_for(api), engine)
    with polling(app):
        api.push_text(3, "你好")
        api.wait_for(lambda: len(api.sent) == 1)
        shown = api.sent[0]
        api.push_press(3, shown, "flow:recover_password", "q1")
        api.push_press(3, shown, "flow:recover_password", "q2")
        api.wait_for(lambda: len(api.named("answerCallbackQuery")) == 2 and len(api.sent) == 2)
        time.sleep(0.3)  # nothing more may come
    assert [m.payload for _, m in engine.calls if m.kind == "button"] == ["flow:recover_password"]
    answers = {p["callback_query_id"]: p.get("text") for p in api.named("answerCallbackQuery")}
    assert answers["q2"] == USED_BUTTON and answers["q1"] is None
    assert [int(p["message_id"]) for p in api.named("editMessageReplyMarkup")] == [shown["message_id"]]


def test_a_429_is_waited_out_and_the_reply_is_delivered(api):
    api.throttle_sends(1, retry_after=1)
    app = build_application(cfg_for(api), RecordingEngine(slow_answer))
    with polling(app):
        api.push_text(4, "你好")
        api.wait_for(lambda: len(api.sent) == 1)
    assert api.texts(4) == ["回复：你好"] and len(api.named("sendMessage")) == 2


@pytest.fixture
def real_engine(tmp_path):
    accounts = LocalAccountClient()
    yield make_engine(accounts, data_dir=tmp_path)
    accounts.close()


def test_a_photo_is_downloaded_only_while_a_flow_waits_for_one(api, real_engine):
    app = build_application(cfg_for(api), real_engine)
    with polling(app):
        api.push_photo(5, JPEG)
        api.wait_for(lambda: len(api.sent) == 1)
        assert api.texts(5) == [NO_PHOTO_WANTED] and not api.named("getFile") and not api.downloads
        real_engine.store.save(session_id(5), {"flow": {
            "name": "id_duplicate", "step": "photo", "data": {"route": "manual_review"}, "history": [],
            "invalid": 0, "key": "k", "touched": time.time()}}, 3600)
        api.push_photo(5, JPEG, file_size=6 * 1024 * 1024)  # over the one limit: refused before downloading
        api.wait_for(lambda: len(api.sent) == 2)
        assert api.texts(5)[-1] == TOO_LARGE and not api.downloads
        api.push_photo(5, JPEG)
        api.wait_for(lambda: api.downloads and len(api.sent) >= 3)
    assert api.downloads == ["photo3"]


def test_recover_username_reply_arrives_as_plain_html(api, real_engine):
    app = build_application(cfg_for(api), real_engine)
    with polling(app):
        for text in ("忘记用户名怎么办", "好的", "张三", "居民身份证", "110101199903071239"):
            api.push_text(6, text)
        api.wait_for(lambda: any("用户名已通过短信发送至" in t for t in api.texts(6)))
    sent = next(m for m in api.named("sendMessage") if "用户名已通过短信发送至" in m["text"])
    # enumeration-proof wording names no phone; it still renders without stray Markdown
    assert "该账号绑定的手机" in sent["text"] and sent["parse_mode"] == "HTML" and "<b>" not in sent["text"]


# ---- python bot.py telegram --------------------------------------------------------------------

def _config(tmp_path: Path) -> Path:
    text = (ROOT / "config.yaml").read_text(encoding="utf-8")
    text = text.replace("var/", f"{tmp_path}/").replace("data_dir: var ", f"data_dir: {tmp_path} ")
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _bot(tmp_path: Path, token: str, base_url: str, file_url: str) -> subprocess.Popen:
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": token, "TELEGRAM_API_BASE_URL": base_url,
           "TELEGRAM_FILE_BASE_URL": file_url, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "bot.py"), "--config", str(_config(tmp_path)), "telegram"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_bot_py_telegram_polls_logs_registers_commands_and_stops_cleanly(api, tmp_path):
    proc = _bot(tmp_path, TOKEN, api.base_url, api.base_file_url)
    try:
        api.wait_for(lambda: api.named("setMyCommands") and api.named("getUpdates"), timeout=60)
        api.push_text(7, "你好")
        api.wait_for(lambda: api.texts(7), timeout=30)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    commands = [c["command"] for c in api.named("setMyCommands")[0]["commands"]]
    assert commands == ["start", "help", "cancel"]
    assert "您好" in api.texts(7)[0]
    assert " INFO " in err and "Traceback" not in out + err and TOKEN not in out + err


@pytest.mark.parametrize("case", ["bad token", "unreachable"])
def test_bot_py_telegram_explains_a_refused_token_or_an_unreachable_api(api, tmp_path, case):
    if case == "bad token":
        token, base, files, code, says = "999:wrong-token", api.base_url, api.base_file_url, 2, "令牌"
    else:
        with contextlib.closing(socket.socket()) as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        token, base, files, code, says = TOKEN, f"http://127.0.0.1:{port}/bot", f"http://127.0.0.1:{port}/file/bot", 3, "无法连接"
    proc = _bot(tmp_path, token, base, files)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == code
    assert says in err.strip().splitlines()[-1]
    assert "Traceback" not in out + err and token not in out + err
