"""Fault test with real processes: `bot.py serve --workers 2`, the worker serving a turn kill -9'd
while it is inside that turn (blocked on the account API, holding the session's lock).

The conversation continues through the other worker with nothing lost: the retry of the killed turn
is answered at the same step, the flow finishes, and uvicorn's supervisor replaces the dead worker.
Both shared session stores: Redis (a 2 s lease the dead worker stops renewing) and the SQLite
default (an OS record lock the kernel drops with the process).
"""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Iterator

import pytest
import requests

from fault_harness import (BotProcess, HoldProxy, Interrupted, SandboxProcess, WebChat, bots, pid_of_local_port,
                           recover_password_steps, run, sandbox_process, unique_prefix, wait_until)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def sandbox_proc(tmp_path: Path) -> Iterator[SandboxProcess]:
    with sandbox_process(tmp_path) as sp:
        yield sp


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_a_worker_killed_inside_a_turn_loses_no_step(tmp_path, sandbox_proc, backend):
    sandbox = sandbox_proc.api
    proxy = HoldProxy(sandbox_proc.port)
    bot = BotProcess(tmp_path, "workers", accounts_url=proxy.url, backend=backend, prefix=unique_prefix(), workers=2)
    try:
        with bots(bot):
            workers = wait_until(lambda: (lambda p: p if len(p) == 2 else None)(bot.workers_pids()), 90,
                                 "two workers")
            wait_until(lambda: requests.get(bot.url + "/readyz", timeout=30).status_code == 200, 90, "readiness")
            acct = sandbox.new_account()
            chat = WebChat([bot.url])
            steps = recover_password_steps(acct, lambda: sandbox.latest_code(acct["phone"]))
            run(chat, steps[:5])

            _, id_number, code_sent = steps[5]
            proxy.hold.set()
            outcome: dict = {}

            def interrupted_turn() -> None:
                try:
                    chat.say(id_number())
                    outcome["reply"] = chat.last
                except Interrupted as e:
                    outcome["error"] = e

            turn = threading.Thread(target=interrupted_turn)
            turn.start()
            assert proxy.arrived.wait(120), "no worker called the account API:\n" + bot.tail()
            busy = wait_until(lambda: next((pid_of_local_port(workers, port) for port in proxy.held_peer_ports()
                                            if pid_of_local_port(workers, port)), None), 30, "the busy worker")
            os.kill(busy, signal.SIGKILL)
            turn.join(60)
            assert not turn.is_alive() and "error" in outcome, outcome
            proxy.hold.clear()

            # the retry: another worker (the survivor or the replacement) answers at the same step
            chat.say(id_number())
            code_sent(chat)
            assert chat.flow == "recover_password"
            _, code, got_link = steps[6]
            chat.say(code())
            got_link(chat)
            assert len(sandbox.outbox(acct["phone"])) == 1

            # uvicorn's supervisor replaced the dead worker: two again, the killed one gone
            now = wait_until(lambda: (lambda p: p if len(p) == 2 and busy not in p else None)(bot.workers_pids()),
                             120, "the replacement worker")
            assert busy not in now
            # and the replacement serves conversations too (every request on a fresh connection)
            for _ in range(4):
                fresh = WebChat([bot.url])
                fresh.say("密码忘了怎么办")
                assert "开始找回密码" in fresh.labels
            assert bot.stop() == 0   # SIGTERM: the supervisor stops both workers and exits cleanly
    finally:
        proxy.close()
