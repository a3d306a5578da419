"""Fault test with real processes: `bot.py serve --workers 2`, the worker serving a turn kill -9'd
while it is inside that turn (blocked on the account API, holding the session's lock).

The conversation continues through the other worker with nothing lost: the retry of the killed turn
is answered at the same step, the flow finishes, and uvicorn's supervisor replaces the dead worker.
Both shared session stores: Redis (a 2 s lease the dead worker stops renewing) and the SQLite
default (an OS record lock the kernel drops with the process).

And the abuse limits of `serve --workers 2` on the SQLite default (no Redis) hold whichever worker
answers: each part of the budget is spent on one worker while the other is stopped (SIGSTOP: the one
listening socket's connections all go to the running one), the refusal comes from the other.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

import pytest
import requests

from fault_harness import (BotProcess, HoldProxy, Interrupted, WebChat, bots, pid_of_local_port,
                           recover_password_steps, run, unique_prefix, wait_until)

pytestmark = pytest.mark.timeout(600)


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


@contextlib.contextmanager
def only(running: int, workers: list[int]) -> Iterator[None]:
    """Every new connection is accepted by worker ``running``: the others are stopped meanwhile
    (briefly: uvicorn's supervisor replaces a worker that misses its 5 s health check)."""
    stopped = [pid for pid in workers if pid != running]
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_the_limits_hold_across_two_workers_without_redis(tmp_path, sandbox_proc):
    """Per-process counting would allow twice each limit here (half the budget spent on each worker):
    the SQLite limiter beside the sessions makes the second worker refuse what the first counted."""
    sandbox = sandbox_proc.api
    limits = {"session_per_ip": {"limit": 4, "window": 600}, "chat_per_ip": {"limit": 6, "window": 600},
              "sms_per_target": {"limit": 1, "window": 3600}}
    bot = BotProcess(tmp_path, "workers", accounts_url=sandbox_proc.base_url, backend="sqlite", workers=2,
                     limits=limits)
    with bots(bot):
        a, b = wait_until(lambda: (lambda p: p if len(p) == 2 else None)(bot.workers_pids()), 90, "two workers")
        wait_until(lambda: requests.get(bot.url + "/readyz", timeout=30).status_code == 200, 90, "readiness")

        def new_session(client: str) -> requests.Response:
            return requests.post(bot.url + "/api/session", json={}, timeout=60,
                                 headers={"Connection": "close", "X-Forwarded-For": client})

        # new conversations per address: 2 on each worker, the 5th refused whichever answers
        with only(a, [a, b]):
            assert [new_session("203.0.113.1").status_code for _ in range(2)] == [201, 201]
        with only(b, [a, b]):
            assert [new_session("203.0.113.1").status_code for _ in range(2)] == [201, 201]
            refused = new_session("203.0.113.1")
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 600, refused.text
        assert "太频繁" in refused.json()["message"]
        with only(a, [a, b]):
            assert new_session("203.0.113.1").status_code == 429
            assert new_session("203.0.113.9").status_code == 201   # another address: its own budget

        # chat messages per address: 3 on each worker, the 7th refused by either
        chat = WebChat([bot.url], client="203.0.113.2")
        with only(a, [a, b]):
            for _ in range(3):
                chat.say("你好")
        with only(b, [a, b]):
            for _ in range(3):
                chat.say("你好")
            with pytest.raises(AssertionError, match="429"):
                chat.say("你好")
        with only(a, [a, b]):
            with pytest.raises(AssertionError, match="429"):
                chat.say("你好")

        # SMS to one account: the code sent by one worker, a second conversation (another address)
        # refused by the other worker; one SMS in all
        acct = sandbox.new_account()
        steps = recover_password_steps(acct, lambda: sandbox.latest_code(acct["phone"]))
        first, second = WebChat([bot.url], client="198.51.100.1"), WebChat([bot.url], client="198.51.100.2")
        run(first, steps[:5])
        with only(a, [a, b]):
            run(first, steps[5:6])   # checks the code was sent
        run(second, steps[:5])
        with only(b, [a, b]):
            second.say(acct["id_number"])
        assert "请求太频繁" in second.text and second.flow == "recover_password", second.last   # its answers kept
        assert len(sandbox.outbox(acct["phone"])) == 1
