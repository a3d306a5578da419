"""Real servers for end-to-end tests: ``bot.py`` as a subprocess (start, wait for its URL, stop), an
ASGI app served by uvicorn from a thread (``LiveServer``, with the app's lifespan), and the machine's
Redis (``REDIS_URL``, ``require_redis``)."""
from __future__ import annotations

import contextlib

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from typing import Any, Iterator

import pytest
import uvicorn

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def require_redis(url: str = REDIS_URL) -> None:
    """Skip when Redis does not answer at ``url`` (under CI a skip fails: see tests/conftest.py)."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as e:  # noqa: BLE001 - any failure means "not available here"
        pytest.skip(f"Redis at {url} not reachable ({e.__class__.__name__}); start it (see .ci/run)")


@contextlib.contextmanager
def hung_redis() -> Iterator[str]:
    """The URL of a server that accepts connections and never answers (hung, not refusing): they complete
    in the kernel's backlog, and nothing is ever read or written."""
    hung = socket.socket()
    try:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        yield f"redis://127.0.0.1:{hung.getsockname()[1]}/0"
    finally:
        hung.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env_extra: dict | None = None) -> subprocess.Popen:
    """``python bot.py *args`` from the project root, output piped (read it with wait_for_url)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, str(ROOT / "bot.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_url(proc: subprocess.Popen, timeout: float = 120, with_output: bool = False) -> Any:
    """The URL the bot prints when it serves, with what it printed so far when asked (AssertionError when none comes)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        m = re.search(r"请在浏览器打开：(http://\S+?/)", line)
        if m:
            _drain(proc, seen)
            return (m.group(1), "".join(seen)) if with_output else m.group(1)
    raise AssertionError("no URL printed:\n" + "".join(seen))


def _drain(proc: subprocess.Popen, seen: list[str]) -> None:
    """Keep reading the bot's output after its URL, into ``seen``: it writes an access-log line per
    request, and a pipe nobody reads fills at 64 KB and blocks the server's next write (the whole
    server hangs — a load test then fails on a healthy bot)."""
    def read() -> None:
        for line in proc.stdout:
            seen.append(line)

    proc.printed = seen   # type: ignore[attr-defined]
    proc.drainer = threading.Thread(target=read, name="bot-output", daemon=True)   # type: ignore[attr-defined]
    proc.drainer.start()


def bot_output(proc: subprocess.Popen) -> str:
    """All the bot printed (call after ``stop``: the output is then read to its end)."""
    drainer = getattr(proc, "drainer", None)
    if drainer is not None:
        drainer.join(10)
    return "".join(getattr(proc, "printed", []))


def stop(proc: subprocess.Popen) -> None:
    """Ctrl-C, then kill if it does not exit within 15 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class LiveServer:
    """A uvicorn server on a free 127.0.0.1 port in a thread."""

    def __init__(self, app) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
