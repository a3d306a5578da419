"""Fault tests with real processes: the session store (a private redis-server with the production
persistence of deploy/redis.conf.example) restarted in the middle of a guided flow — politely
(SIGTERM), and killed outright (SIGKILL: no shutdown, no last fsync) with the hand-offs in
PostgreSQL as in production.

While Redis is down the user gets an honest reply (never a traceback or a silent loss), /readyz
reports the session store down while /healthz stays a liveness check, and 转人工 still reaches the
hand-off queue (SQLite); when Redis is back (same data directory: the append-only file) the
conversation resumes at the step it was at, and asking for a person again joins the same hand-off.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
import requests
import yaml

from db_fixture import pg_schema_url
from handlers.db import connect
from handlers.handoffs import SqlHandoffStore
from support.events import EventReader

from fault_harness import (BotProcess, RedisServer, WebChat, bots, recover_password_steps,
                           redis_server, run, unique_prefix, wait_until)

pytestmark = pytest.mark.timeout(600)

STORE_DOWN = "系统暂时无法保存对话进度"


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


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from pg_schema_url()


def test_redis_killed_mid_flow_loses_no_step_and_hand_offs_go_on(tmp_path, sandbox_proc, redis, pg_url):
    """kill -9 of Redis right after a step was answered (its session write the last thing Redis got):
    the user is told honestly, a conversation already with a person still reaches them and a new
    request for a person is queued (PostgreSQL is up); a staff reply (help-desk API) is stored and
    staff are told it did not reach the user (the live push goes through Redis); Redis restarts from
    its append-only file alone and every conversation goes on from its last answered step — none
    lost, none run twice — the kept staff messages reach the user's event stream once, in order
    (the instance runs two worker processes, each with its redeliverer: they claim through
    PostgreSQL), staff see 已补发给用户, and later staff replies reach users at once, after them."""
    sandbox = sandbox_proc.api
    bot = BotProcess(tmp_path, "bot", accounts_url=sandbox_proc.base_url, redis_url=redis.url,
                     prefix=unique_prefix(), handoff_url=pg_url, workers=2)   # two redeliverers compete
    cfg = yaml.safe_load(bot.config.read_text(encoding="utf-8"))
    cfg["handoff"].update(api_token=API_TOKEN, redeliver_interval=1.0, redeliver_max_interval=2.0)
    bot.config.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    with bots(bot):
        waiting = WebChat([bot.url], client="198.51.100.20")   # with a person before the outage
        waiting.say("转人工")
        assert "已为您转接人工客服" in waiting.text
        [h] = queued(bot)

        acct = sandbox.new_account()
        chat = WebChat([bot.url], client="198.51.100.21")
        steps = recover_password_steps(acct, lambda: sandbox.latest_code(acct["phone"]))
        run(chat, steps[:5])   # at the ID-number step: the last write was this answer's session
        redis.kill9()          # at once: no pause for a background fsync to catch up

        chat.say(acct["id_number"])
        assert STORE_DOWN in chat.text and "稍后再试" in chat.text
        assert sandbox.outbox(acct["phone"]) == []   # nothing half-done: the turn did not run
        r = requests.get(bot.url + "/readyz", timeout=30)
        assert r.status_code == 503 and not r.json()["checks"]["sessions"]["ok"] and r.json()["checks"]["handoffs"]["ok"]

        waiting.say("我的手机号换了，收不到验证码")     # the person still gets it
        assert "已收到" in waiting.text
        other = WebChat([bot.url], client="198.51.100.22")
        other.say("转人工")                             # a new request for a person is queued
        assert "已为您转接人工客服" in other.text and "看不到您之前与智能助手的对话" in other.text
        assert len(queued(bot)) == 2
        store = hstore(bot)
        try:
            assert [m.text for m in store.messages(h.id)][-1] == "我的手机号换了，收不到验证码"
        finally:
            store.close()
        assert staff_reply(bot, h.id, "请提供新手机号。") == 201          # stored; the push failed, and staff see so
        assert [m["kind"] for m in handoff_messages(bot, h.id)][-2:] == ["agent", "system"]
        assert "没有送达用户" in handoff_messages(bot, h.id)[-1]["text"]
        assert "没有送达用户" in handoff_messages(bot, h.id)[-3]["text"]   # the claim notice, kept first

        assert not list(redis.dir.glob("*.rdb")), "a snapshot was written: the restart would not prove the AOF"
        redis.start()   # same port and directory: the append-only file is all there is
        wait_until(lambda: requests.get(bot.url + "/readyz", timeout=30).status_code == 200, 90, "readiness")
        _, id_number, code_sent = steps[5]
        chat.say(id_number())   # the retry: the flow is exactly where it was
        code_sent(chat)
        assert chat.flow == "recover_password" and len(sandbox.outbox(acct["phone"])) == 1
        _, code, got_link = steps[6]
        chat.say(code())
        got_link(chat)

        waiting.say("转人工")   # its session (from before the outage) still knows the hand-off
        assert "您已在人工客服队列中" in waiting.text and len(queued(bot)) == 2

        # what staff said during the outage was kept (PostgreSQL) and is sent again now, in order, once
        kept = ["人工客服 李 已接入，正在查看您的问题，请稍候。", "请提供新手机号。"]
        wait_until(lambda: sum(m["text"].startswith("已补发给用户") for m in handoff_messages(bot, h.id)) == 2,
                   90, "the kept messages redelivered")
        stream = EventReader(bot.url + "/api/chat/events", {"session_id": waiting.sid},
                             {"X-Forwarded-For": "198.51.100.20"})
        try:
            stream.wait_for(lambda ev: len(ev) >= 2, "the redelivered messages in the widget's stream")
            assert staff_reply(bot, h.id, "请再发一次新手机号。") == 201     # pushed at once: no failure notice
            assert [(m["kind"], m["text"]) for m in handoff_messages(bot, h.id)][-1] == ("agent", "请再发一次新手机号。")
            stream.wait_for(lambda ev: len(ev) >= 3, "the new reply in the widget's stream")
            time.sleep(3)   # a second copy of anything (another try, another worker) would be here by now
        finally:
            stream.close()
        assert stream.texts() == [*kept, "请再发一次新手机号。"]


API_TOKEN = "fault-tests-handoff-api-token-0123456789"


def staff_reply(bot: BotProcess, handoff_id: str, text: str) -> int:
    """An agent's reply through the help-desk API (the hand-off store is PostgreSQL); its status."""
    r = requests.post(f"{bot.url}/api/handoffs/{handoff_id}/messages", json={"text": text, "author": "李"},
                      headers={"Authorization": f"Bearer {API_TOKEN}", "Connection": "close"}, timeout=60)
    return r.status_code


def handoff_messages(bot: BotProcess, handoff_id: str) -> list[dict]:
    r = requests.get(f"{bot.url}/api/handoffs/{handoff_id}", timeout=60,
                     headers={"Authorization": f"Bearer {API_TOKEN}", "Connection": "close"})
    assert r.status_code == 200, r.text
    return r.json()["messages"]


def hstore(bot: BotProcess) -> SqlHandoffStore:
    """The bot's hand-off store (SQLite or PostgreSQL, as its config says)."""
    return SqlHandoffStore(connect(yaml.safe_load(bot.config.read_text(encoding="utf-8"))["handoff"]["database_url"]))


def queued(bot: BotProcess) -> list:
    store = hstore(bot)
    try:
        return store.list("waiting") + store.list("active")
    finally:
        store.close()
