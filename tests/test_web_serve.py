"""`python bot.py` (sandbox + web chat on embedded defaults) and `python bot.py serve`, as real processes."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from support.servers import ROOT, bot_output, free_port, start, stop, wait_for_url


def write_config(tmp_path: Path, web_port: int, sandbox_port: int) -> Path:
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    cfg["web"].update(port=web_port, secret_file=str(tmp_path / "web.key"))
    cfg["sandbox"].update(port=sandbox_port, database=str(tmp_path / "sandbox.db"),
                          public_base_url=f"http://127.0.0.1:{sandbox_port}")
    cfg["sessions"].update(backend="redis", sqlite_path=str(tmp_path / "sessions.db"), data_dir=str(tmp_path))
    cfg["telegram"]["token"] = ""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def test_demo_starts_sandbox_and_web_and_chats_end_to_end(tmp_path):
    web_port, sandbox_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "SANDBOX_ADMIN_KEY"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "bot.py"), "--config",
                             str(write_config(tmp_path, web_port, sandbox_port))], cwd=ROOT,
                            env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        url, printed = wait_for_url(proc, with_output=True)
        # no SANDBOX_ADMIN_KEY: a random admin key for this start, printed; no built-in one works
        m = re.search(r"沙箱管理密钥（X-Admin-Key[^）]*）：(\S+)", printed)
        assert m, printed
        admin = f"http://127.0.0.1:{sandbox_port}/v1/sandbox/admin/reviews"
        assert len(m.group(1)) >= 32
        assert requests.get(admin, headers={"X-Admin-Key": m.group(1)}, timeout=5).status_code == 200
        for guess in ("sandbox-admin-key", "", "sandbox-dev-key"):
            assert requests.get(admin, headers={"X-Admin-Key": guess}, timeout=5).status_code == 401
        assert url == f"http://127.0.0.1:{web_port}/"
        health = requests.get(url + "healthz", timeout=5).json()
        assert health["status"] == "ok" and health["faq"]["ok"] and health["faq"]["entries"] > 30
        assert "widget.js" in requests.get(url, timeout=5).text
        sid = requests.post(url + "api/session", timeout=5).json()["session_id"]
        body = requests.post(url + "api/chat", json={"session_id": sid, "text": "用户名忘了怎么办"}, timeout=30).json()
        assert body["intent"] == "recover_account" and body["replies"]
        start_button = next(b for r in body["replies"] for b in r["buttons"] if b["label"] == "开始找回用户名")
        body = requests.post(url + "api/chat", json={"session_id": sid, "payload": start_button["payload"]},
                             timeout=30).json()
        assert body["flow"] == "recover_username"
        # the demo forced embedded defaults: SQLite sessions even though the config says redis
        assert (tmp_path / "sessions.db").exists() and (tmp_path / "sandbox.db").exists()
        assert requests.get(f"http://127.0.0.1:{sandbox_port}/openapi.json", timeout=5).status_code == 200
        phone = "13800138002"
        assert requests.get(f"http://127.0.0.1:{sandbox_port}/v1/sandbox/outbox", params={"phone": phone},
                            headers={"X-API-Key": "sandbox-dev-key"}, timeout=5).status_code == 200
    finally:
        stop(proc)
    log = bot_output(proc)
    # both servers share one redacting access log: personal data in query strings never shows
    assert "/v1/sandbox/outbox?phone=***" in log and phone not in log


def test_serve_refuses_a_busy_port_with_a_clear_message(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = write_config(tmp_path, port, free_port())
        proc = start(["--config", str(cfg), "serve"], {"WEB_SESSION_SECRET": "busy-port-secret-0123456789abcdef"})
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"端口 127.0.0.1:{port} 已被占用" in out


def test_serve_with_workers_needs_a_shared_secret_then_serves_one_conversation_across_them(tmp_path):
    port = free_port()
    cfg = write_config(tmp_path, port, free_port())
    env = {k: v for k, v in os.environ.items() if k != "WEB_SESSION_SECRET"}
    refused = subprocess.run([sys.executable, str(ROOT / "bot.py"), "--config", str(cfg), "serve", "--workers", "2"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "WEB_SESSION_SECRET" in refused.stdout
    proc = start(["--config", str(cfg), "serve", "--workers", "2"],
                 {"WEB_SESSION_SECRET": "workers-secret-0123456789abcdef0123"})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, proc)
        sid = requests.post(base + "/api/session", timeout=10).json()["session_id"]
        for _ in range(6):   # fresh connections: spread over both workers, one conversation
            r = requests.post(base + "/api/chat", json={"session_id": sid, "text": "忘记密码怎么办"}, timeout=30)
            assert r.status_code == 200 and r.json()["replies"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_serve_starts_one_worker_per_core_and_the_demo_one_process(monkeypatch, tmp_path):
    import bot
    from channels import launcher

    calls = []
    monkeypatch.setattr(launcher.os, "cpu_count", lambda: 3)
    monkeypatch.setattr(launcher, "serve_workers", lambda cfg, workers, path=None: calls.append(("workers", workers)) or 0)
    monkeypatch.setattr(launcher, "serve", lambda cfg, with_sandbox=False: calls.append(("one", with_sandbox)) or 0)
    cfg = write_config(tmp_path, free_port(), free_port())
    assert bot.main(["--config", str(cfg), "serve"]) == 0
    assert bot.main(["--config", str(cfg), "serve", "--workers", "1"]) == 0
    assert bot.main(["--config", str(cfg)]) == 0
    assert calls == [("workers", 3), ("one", False), ("one", True)]
    monkeypatch.setattr(launcher.os, "cpu_count", lambda: None)   # unknown: one
    assert launcher.default_workers() == 1


def test_workers_of_one_serve_share_the_secret_file_and_redis_needs_the_secret():
    from channels.launcher import shared_secret_problem

    sqlite = {"sessions": {"backend": "sqlite"}, "web": {"session_secret": ""}}
    redis = {"sessions": {"backend": "redis"}, "web": {"session_secret": ""}}
    assert shared_secret_problem(sqlite, 4) is None
    assert "WEB_SESSION_SECRET" in shared_secret_problem(redis, 1)
    assert shared_secret_problem({**redis, "web": {"session_secret": "s" * 32}}, 4) is None
def wait_ready(base: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(base + "/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError("server did not start:\n" + proc.communicate()[0])
        time.sleep(0.2)


@pytest.mark.parametrize("workers", [1, 2], ids=["serve", "serve-workers"])
def test_forwarded_addresses_count_only_from_the_trusted_proxy(tmp_path, workers):
    """web.trusted_proxies decides for both modes: behind the trusted proxy (we connect from 127.0.0.1)
    each forwarded client has its own per-address limit; with nobody trusted the header is ignored,
    so a client cannot escape its limit by writing X-Forwarded-For."""
    for trusted in ("127.0.0.1", ""):
        port = free_port()
        path = write_config(tmp_path, port, free_port())
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        cfg["web"]["trusted_proxies"] = trusted
        cfg["sessions"]["redis_prefix"] = f"test-proxy-{os.getpid()}-{port}:"   # fresh limits per run
        cfg["limits"]["session_per_ip"] = {"limit": 2, "window": 60}
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        args = ["--config", str(path), "serve", "--workers", str(workers)]
        proc = start(args, {"WEB_SESSION_SECRET": "proxy-test-secret-0123456789abcdef01"})
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base, proc)

            def new_session(client: str) -> int:
                return requests.post(base + "/api/session", headers={"X-Forwarded-For": client,
                                                                     "X-Forwarded-Proto": "https"},
                                     timeout=10).status_code

            assert [new_session("203.0.113.7") for _ in range(3)] == [201, 201, 429]
            # another user behind the proxy: its own limit when trusted; the same (ours) when not
            assert new_session("203.0.113.8") == (201 if trusted else 429), trusted
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def test_a_worker_accepts_one_queued_connection_per_event_loop_pass():
    """serve --workers N: each worker takes one connection per pass of its loop (not a whole burst),
    so the workers sharing the socket share a burst of kept-alive clients."""
    from channels.launcher import OneAcceptSocket

    with OneAcceptSocket(socket.AF_INET, socket.SOCK_STREAM) as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)
        listening.setblocking(False)
        clients = [socket.create_connection(listening.getsockname()) for _ in range(2)]
        try:
            taken = []
            for _ in range(2):   # a pass: asyncio accepts until BlockingIOError
                taken.append(listening.accept()[0])
                with pytest.raises(BlockingIOError):
                    listening.accept()
            with pytest.raises(BlockingIOError):   # the queue is empty: the kernel says so
                listening.accept()
            assert len(taken) == 2
        finally:
            for s in clients + taken:
                s.close()


def test_the_workers_loop_serves_its_socket_one_connection_per_pass():
    import asyncio

    from channels.launcher import BalancedLoop, OneAcceptSocket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    address = sock.getsockname()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    async def served() -> list[bytes]:
        server = await asyncio.start_server(echo, sock=sock)   # as uvicorn gives the shared socket
        assert isinstance(server.sockets[0]._sock, OneAcceptSocket)   # noqa: SLF001 - what it serves
        answers = []
        for text in (b"one\n", b"two\n"):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(text)
            answers.append(await reader.readline())
            writer.close()
        server.close()
        return answers

    loop = BalancedLoop()
    try:
        assert loop.run_until_complete(served()) == [b"one\n", b"two\n"]
    finally:
        loop.close()
