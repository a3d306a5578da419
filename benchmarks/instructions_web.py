"""CPU instructions per POST /api/chat of one whole server worker (uvicorn, the HTTP parser, asyncio,
the app, the engine, Redis or SQLite clients; user space, every thread), counted by valgrind's
callgrind: a figure that other work on the machine does not move, unlike req/s or CPU time.

One worker of a setup of benchmarks/bench_web.py (``production``: Redis sessions and limits as each
of ``serve --workers 2``'s workers runs them; ``default``: SQLite; ``bare``) runs under callgrind with
instrumentation off; after a warm-up, instrumentation is switched on for N FAQ requests sent one at a
time over kept-alive connections (``--concurrency`` connections in turn), then off and dumped.

    python benchmarks/instructions_web.py [--setups production,default] [-n 200] [--concurrency 1]

Needs valgrind (``apt-get install valgrind``); about a minute per setup. Kernel time (system calls,
context switches) is not counted: bench_web.py's CPU table shows it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_web import BARE, QUESTIONS, config, free_port, request  # noqa: E402

WORKER = """
import logging, os, sys
sys.path.insert(0, {root!r})
import uvicorn, settings
from channels.app import create_app
from channels.launcher import proxy_settings, served_config
from logsetup import uvicorn_log_config
cfg = served_config(settings.load(sys.argv[1]))
logging.basicConfig(level="WARNING")
uvicorn.run(create_app(cfg), host="127.0.0.1", port=int(sys.argv[2]), log_config=uvicorn_log_config("WARNING"),
            server_header=False, **proxy_settings(settings.WebConfig.of(cfg)))
"""


def worker_command(setup: str, tmp: Path, port: int) -> list[str]:
    """The worker's command line: the bare app, or one bot worker as ``serve`` builds it."""
    if setup == "bare":
        return ["-c", BARE, str(port)]
    return ["-c", WORKER.format(root=str(ROOT)), str(config(tmp, port, setup == "production")), str(port)]


async def converse(port: int, requests: int, concurrency: int) -> None:
    """``requests`` chat requests, one at a time, over ``concurrency`` kept-alive conversations."""
    conns = []
    for _ in range(concurrency):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        _, body = await request(reader, writer, "/api/session", b"")
        conns.append((reader, writer, json.loads(body)["session_id"]))
    for i in range(requests):
        reader, writer, sid = conns[i % concurrency]
        payload = json.dumps({"session_id": sid, "text": QUESTIONS[i % len(QUESTIONS)]}, ensure_ascii=False).encode()
        status, _ = await request(reader, writer, "/api/chat", payload)
        if status != 200:
            raise RuntimeError(f"status {status}")
    for _, writer, _ in conns:
        writer.close()


def instructions(setup: str, requests: int, concurrency: int) -> int:
    """Instructions per request of one worker of ``setup``."""
    with tempfile.TemporaryDirectory() as tmp:
        port, out = free_port(), Path(tmp) / "callgrind.out"
        env = {**os.environ, "WEB_SESSION_SECRET": "bench-secret-" + "0" * 32, "PYTHONUNBUFFERED": "1"}
        # the interpreter itself (sys.executable may be a shim that execs it: valgrind would measure the shim)
        python = os.path.realpath(sys.executable)
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                                 python, *worker_command(setup, Path(tmp), port)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 600
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"{setup} worker did not start under valgrind")
                    time.sleep(1)
            asyncio.run(converse(port, max(20, requests // 10), concurrency))   # warm-up
            subprocess.run(["callgrind_control", "--instr=on", str(proc.pid)], check=True, capture_output=True)
            asyncio.run(converse(port, requests, concurrency))
            subprocess.run(["callgrind_control", "--instr=off", str(proc.pid)], check=True, capture_output=True)
            subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True)
        finally:
            proc.terminate()
            proc.wait(timeout=120)
        total = 0
        for dump in Path(tmp).glob("callgrind.out*"):
            found = re.search(r"^totals: (\d+)", dump.read_text(errors="replace"), re.M)
            total += int(found.group(1)) if found else 0
        return total // requests


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--setups", default="production,default")
    ap.add_argument("-n", type=int, default=200, help="requests measured per setup")
    ap.add_argument("--concurrency", type=int, default=1, help="conversations the requests take turns on")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        print("valgrind is not installed (apt-get install valgrind)")
        return 2
    for setup in args.setups.split(","):
        print(f"{setup:<11} {instructions(setup, args.n, args.concurrency) / 1e6:6.2f}M instructions per request "
              f"(one worker, {args.n} requests, callgrind)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
