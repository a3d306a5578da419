"""Fault tests with real processes: two `bot.py serve` instances sharing Redis and one account API,
a client alternating between them, one instance killed mid-turn; the account API stopped mid-flow.

Every process is real (tests/fault_harness.py): the bot instances, the sandbox account API (its own
process, stopped and started again on the same port and database), Redis at 127.0.0.1:6379 under a
unique key prefix. Nothing under test is mocked. No timing is asserted: waits poll with generous
deadlines, and "recovers" means the next turn is answered.
"""
from __future__ import annotations

import threading

import pytest
import requests

from fault_harness import (RESET_LINK, BotProcess, HoldProxy, Interrupted, WebChat, bots,
                           recover_password_steps, run, unique_prefix, wait_until)
from handlers.flows.recover import PASSWORD_CODE_SENT

pytestmark = pytest.mark.timeout(600)


def test_two_instances_round_robin_hold_one_conversation_and_survive_one_killed_mid_turn(tmp_path, sandbox_proc):
    sandbox = sandbox_proc.api
    proxy = HoldProxy(sandbox_proc.port)   # instance A reaches the account API through it
    prefix = unique_prefix()
    a = BotProcess(tmp_path, "a", accounts_url=proxy.url, prefix=prefix)
    b = BotProcess(tmp_path, "b", accounts_url=sandbox_proc.base_url, prefix=prefix)
    try:
        with bots(a, b):
            # one instance alone: the reference conversation
            acct = sandbox.new_account()
            alone = run(WebChat([b.url]), recover_password_steps(acct, lambda: sandbox.latest_code(acct["phone"])))

            # alternating A, B, A, B …: one conversation, the same replies
            acct2 = sandbox.new_account()
            chat = WebChat([a.url, b.url])
            both = run(chat, recover_password_steps(acct2, lambda: sandbox.latest_code(acct2["phone"])))
            assert both == alone

            # a third conversation: A dies while inside the turn that sends the SMS (holding the lock)
            acct3 = sandbox.new_account()
            chat = WebChat([a.url, b.url])
            steps = recover_password_steps(acct3, lambda: sandbox.latest_code(acct3["phone"]))
            run(chat, steps[:5])
            assert chat.flow == "recover_password"
            kind, value, check = steps[5]
            proxy.hold.set()
            outcome: dict = {}

            def interrupted_turn() -> None:
                try:
                    chat.say(value(), via=a.url)
                    outcome["reply"] = chat.last
                except Interrupted as e:
                    outcome["error"] = e

            turn = threading.Thread(target=interrupted_turn)
            turn.start()
            assert proxy.arrived.wait(120), "instance A never called the account API:\n" + a.tail()
            a.kill9()
            turn.join(60)
            assert not turn.is_alive() and "error" in outcome, outcome   # the user saw the request fail
            proxy.hold.clear()

            # the user retries the same turn on B: the lock A held frees itself (lease), the step is there
            chat.say(value(), via=b.url)
            check(chat)
            assert chat.flow == "recover_password"
            _, code, got_link = steps[6]
            chat.say(code(), via=b.url)   # the code: the reset link, on B
            got_link(chat)
            assert len(sandbox.outbox(acct3["phone"])) == 1   # one SMS: the killed turn never reached the API
    finally:
        proxy.close()


def test_account_api_down_mid_flow_is_told_honestly_and_the_retry_continues(tmp_path, sandbox_proc):
    sandbox = sandbox_proc.api
    bot = BotProcess(tmp_path, "bot", accounts_url=sandbox_proc.base_url, prefix=unique_prefix())
    with bots(bot):
        acct = sandbox.new_account()
        chat = WebChat([bot.url])
        steps = recover_password_steps(acct, lambda: sandbox.latest_code(acct["phone"]))
        run(chat, steps[:5])

        sandbox_proc.stop()
        readyz = requests.get(bot.url + "/readyz", timeout=30)
        assert readyz.status_code == 503 and readyz.json()["checks"]["accounts"]["ok"] is False
        chat.say(acct["id_number"])
        assert "学信网账号服务暂时无法连接" in chat.text and "您已填写的信息都还在" in chat.text
        assert chat.flow == "recover_password" and "重试" in chat.labels
        for _ in range(3):   # still down: the same honest reply, the step kept, the SMS budget (3) not spent
            chat.press("重试")
            assert "学信网账号服务暂时无法连接" in chat.text and chat.flow == "recover_password"

        sandbox_proc.start()
        wait_until(lambda: requests.get(bot.url + "/readyz", timeout=30).status_code == 200, 60, "readiness")
        chat.press("重试")
        assert PASSWORD_CODE_SENT in chat.text, chat.text
        chat.say(sandbox.latest_code(acct["phone"]))
        assert RESET_LINK.search(chat.text) and chat.flow is None
