"""Fault tests with real processes: the session store (a private redis-server with the production
persistence of deploy/redis.conf.example) restarted in the middle of a guided flow.

While Redis is down the user gets an honest reply (never a traceback or a silent loss), /readyz
reports the session store down while /healthz stays a liveness check, and 转人工 still reaches the
hand-off queue (SQLite); when Redis is back (same data directory: the append-only file) the
conversation resumes at the step it was at, and asking for a person again joins the same hand-off.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import requests

from handlers.db import connect
from handlers.handoffs import SqlHandoffStore

from fault_harness import (BotProcess, RedisServer, SandboxProcess, WebChat, bots, recover_password_steps,
                           redis_server, run, sandbox_process, unique_prefix, wait_until)

pytestmark = pytest.mark.timeout(600)

STORE_DOWN = "系统暂时无法保存对话进度"


@pytest.fixture
def sandbox_proc(tmp_path: Path) -> Iterator[SandboxProcess]:
    with sandbox_process(tmp_path) as sp:
        yield sp


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


def test_redis_restart_mid_flow_is_told_honestly_and_the_flow_resumes(tmp_path, sandbox_proc, redis):
    sandbox = sandbox_proc.api
    bot = BotProcess(tmp_path, "bot", accounts_url=sandbox_proc.base_url, redis_url=redis.url,
                     prefix=unique_prefix())
    with bots(bot):
        acct = sandbox.new_account()
        chat = WebChat([bot.url])
        steps = recover_password_steps(acct, lambda: sandbox.latest_code(acct["phone"]))
        run(chat, steps[:5])   # at the ID-number step

        redis.stop()
        r = requests.get(bot.url + "/readyz", timeout=30)
        assert r.status_code == 503 and r.json()["checks"]["sessions"] == {**r.json()["checks"]["sessions"], "ok": False}
        assert r.json()["checks"]["accounts"]["ok"] and r.json()["checks"]["handoffs"]["ok"]
        health = requests.get(bot.url + "/healthz", timeout=30)
        assert health.status_code == 200 and health.json()["status"] == "ok"   # alive, only not ready

        chat.say(acct["id_number"])
        assert STORE_DOWN in chat.text and "稍后再试" in chat.text
        assert sandbox.outbox(acct["phone"]) == []   # nothing half-done: the turn did not run

        # another user asks for a person meanwhile: the hand-off store (SQLite) is up, so it works
        other = WebChat([bot.url])
        other.say("怎么修改手机号")
        assert STORE_DOWN in other.text
        other.press("转人工客服")
        assert "已为您转接人工客服" in other.text and "看不到您之前与智能助手的对话" in other.text
        other.say("我换了手机号，收不到验证码")
        assert "已收到" in other.text
        [h] = queued(bot)
        store = hstore(bot)
        try:
            assert [m.text for m in store.messages(h.id)] == ["我换了手机号，收不到验证码"]
        finally:
            store.close()

        redis.start()   # same port, same directory: the append-only file brings the sessions back
        wait_until(lambda: requests.get(bot.url + "/readyz", timeout=30).status_code == 200, 90, "readiness")
        _, id_number, code_sent = steps[5]
        chat.say(id_number())   # the user's retry: the flow is where it was
        code_sent(chat)
        assert chat.flow == "recover_password"
        _, code, got_link = steps[6]
        chat.say(code())
        got_link(chat)

        other.say("转人工")   # the store is back: the same hand-off, not a second one
        assert "您已在人工客服队列中" in other.text and [q.id for q in queued(bot)] == [h.id]


def hstore(bot: BotProcess) -> SqlHandoffStore:
    return SqlHandoffStore(connect(f"sqlite:///{bot.data / 'bot.db'}"))


def queued(bot: BotProcess) -> list:
    store = hstore(bot)
    try:
        return store.list("waiting") + store.list("active")
    finally:
        store.close()
