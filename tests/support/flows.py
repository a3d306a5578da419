"""The guided flows over the in-process account twin: the demo people, a twin with scripted
failures, the steps several test modules type, and the fixtures (``acc``, ``clock``, ``engine``,
``chat``, registered for every test module by tests/conftest.py)."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from accounts.local import LocalAccountClient
from support import Chat, Clock, login, make_engine

# 张三 (zhangsan01 active, zhangsan02 re-registered) and 李四 from the demo data (accounts/README.md)
ZS_ID, ZS2_PHONE, ZS1_PHONE, LISI_PHONE = "110101199903071239", "13800138002", "13800138001", "13900139003"
PERSONAL = (ZS_ID, "1101011999", ZS1_PHONE, ZS2_PHONE, "1700012345", "张三")
BAD_TEXT = ["", "   ", "😀😀", "<script>alert(1)</script>", "' OR 1=1; DROP TABLE sessions;--",
            "{{7*7}}", "\udcff\ud800", "\x00\x01\x02\x03\x04\x05\x06\x07", "a" * 102400]


class Faulty:
    """The twin with scripted failures per method, recording the idempotency keys it was given."""

    def __init__(self, inner: LocalAccountClient) -> None:
        self.inner = inner
        self.fail: dict[str, list[Exception]] = defaultdict(list)
        self.keys: dict[str, list[str | None]] = defaultdict(list)
        self.client_ids: list[str] = []

    def with_client_id(self, client_id: str) -> "Faulty":
        """Acting for one chat user keeps the scripted failures; the id is recorded."""
        self.client_ids.append(client_id)
        return self

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr) or name in ("latest_code", "outbox", "decide_review", "pass_app_verification"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.keys[name].append(kwargs.get("idempotency_key"))
            if self.fail[name]:
                raise self.fail[name].pop(0)
            return attr(*args, **kwargs)
        return call


@pytest.fixture
def acc():
    client = Faulty(LocalAccountClient())
    yield client
    client.inner.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def engine(acc, tmp_path, clock):
    return make_engine(acc, data_dir=tmp_path, clock=clock)


@pytest.fixture
def chat(engine):
    return Chat(engine)


def start_username(chat: Chat) -> None:
    """Open the recover-username flow."""
    chat.say("忘记用户名")
    chat.press("开始找回用户名")


def start_dup(chat: Chat) -> None:
    """Open the duplicate-ID flow at its explanation."""
    chat.say("证件号码已被注册怎么办")
    chat.press("开始解决证件号码重复")
    assert chat.flow_step == ("id_duplicate", "explain")
    assert "我要重新注册" in chat.text


def on_route(chat: Chat, acc: Any, route: str) -> None:
    """Open the duplicate-ID flow, press ``route`` (途径1–4) and log in as zhangsan02, who re-registered."""
    start_dup(chat)
    chat.press(route)
    login(chat, acc, "zhangsan02", ZS2_PHONE)


def route4_fill(chat: Chat, kind: str, school: str, number: str, year: str, level: str) -> None:
    """Route 4's record form, one answer per step."""
    chat.press(kind)
    chat.say(school)
    chat.say(number)
    chat.say(year)
    chat.press(level)


def run_full_flows(engine, acc) -> list[Chat]:
    """Two chats that typed every kind of personal data: recover username, then route 4 to the end."""
    a = Chat(engine)
    start_username(a)
    for answer in ("张三", "居民身份证", ZS_ID):
        a.say(answer)
    a.say(f"我的手机是 {ZS1_PHONE}，身份证 {ZS_ID}")
    b = Chat(engine)
    start_dup(b)
    b.press("途径4")
    login(b, acc, "zhangsan02", ZS2_PHONE)
    for answer in ("在校生", "北京大学", "1700012345", "2017", "本科", "确认提交"):
        b.say(answer)
    assert "核对正确" in b.text
    return [a, b]
