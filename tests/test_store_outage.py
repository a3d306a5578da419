"""The session store is down (a real Redis client pointed at a port nothing listens on): the engine
says so honestly, and 转人工 still reaches a person through the hand-off store (real SQLite), or
says honestly that it cannot. When the store is back, asking for a person joins the same hand-off.
(The same with real processes and a restarted redis-server: tests/test_faults_redis.py.)"""
from __future__ import annotations

import re
import socket

import pytest

from accounts.local import LocalAccountClient
from handlers.db import connect
from handlers.engine import STORE_DOWN
from handlers.events import MemoryBus
from handlers.handoff_service import HandoffService
from handlers.handoffs import SqlHandoffStore
from handlers.sessions import MemoryStore, RedisStore, storage_key
from support import Chat, make_engine


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def world(tmp_path):
    down = RedisStore(f"redis://127.0.0.1:{closed_port()}/0", prefix="outage:", socket_timeout=1.0)
    hstore = SqlHandoffStore(connect(f"sqlite:///{tmp_path / 'bot.db'}"))
    service = HandoffService(hstore, MemoryBus())
    engine = make_engine(LocalAccountClient(), store=down, data_dir=tmp_path, handoffs=service)
    yield engine, service, hstore
    down.close()


def open_handoffs(service: HandoffService) -> list:
    return service.list("waiting") + service.list("active")


def test_with_the_session_store_down_a_person_is_still_reached(world):
    engine, service, hstore = world
    chat = Chat(engine)
    chat.say("怎么修改手机号")
    assert chat.text == STORE_DOWN and "转人工客服" in [b.label for r in chat.replies for b in r.buttons]
    assert open_handoffs(service) == []   # a plain message queues nothing

    chat.press("转人工客服")
    assert "已为您转接人工客服" in chat.text and "看不到您之前与智能助手的对话" in chat.text
    [h] = open_handoffs(service)
    assert h.session_key == storage_key(chat.session_id) and h.channel == "web" and h.reason == "user_request"
    assert "此前的对话记录无法读取" in h.transcript[0][1]   # staff are told why there is no history

    chat.say("我的手机号 13812345678 停用了，登录不了")   # reaches the person, masked
    assert "已收到" in chat.text
    [m] = hstore.messages(h.id)
    assert "登录不了" in m.text and "13812345678" not in m.text
    chat.say("转人工")   # no second hand-off
    assert "您已在人工客服队列中" in chat.text and len(open_handoffs(service)) == 1

    chat.say("取消转人工")
    assert "已取消转人工" in chat.text and open_handoffs(service) == []
    chat.say("你好")
    assert chat.text == STORE_DOWN


def test_when_the_store_is_back_asking_for_a_person_joins_the_hand_off_queued_meanwhile(world):
    engine, service, _ = world
    chat = Chat(engine)
    chat.say("转人工")
    [h] = open_handoffs(service)
    engine.store = MemoryStore()   # the session store is back (empty for this conversation)
    chat.say("转人工")
    assert "您已在人工客服队列中" in chat.text and open_handoffs(service) == [h]
    chat.say("我还在等")   # the session now knows its hand-off: the message goes to the person
    assert "已收到" in chat.text and [m.text for m in service.store.messages(h.id)] == ["我还在等"]


def test_with_both_stores_down_the_user_is_told_honestly_and_nothing_is_invented(world, tmp_path):
    engine, service, hstore = world
    hstore.db = connect(f"sqlite:///{tmp_path}")   # a directory: every hand-off query fails
    chat = Chat(engine)
    chat.say("转人工")
    assert chat.text.startswith(STORE_DOWN) and "人工客服系统也暂时无法接入" in chat.text
    assert not re.search(r"\d{3,}|@|电话|邮箱|热线", chat.text)   # no contact the seed does not give
    chat.say("你好")
    assert chat.text == STORE_DOWN
