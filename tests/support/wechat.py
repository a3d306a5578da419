"""The WeChat channel's test bench: the WeChat API stand-in (``standin`` fixture), the web app with
the WeChat channel and its users (``Bot``, ``make_bot`` fixture), both registered by tests/conftest.py."""
from __future__ import annotations

import base64
import secrets
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

import settings
from accounts.local import LocalAccountClient
from channels.app import create_app
from support import make_engine
from wechat_standin import StandIn, WxUser, running_standin

TOKEN = "wechat-test-token"
AES_KEY = base64.b64encode(b"k" * 32).decode().rstrip("=")
SECRET = "s" * 48


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with running_standin("wx" + secrets.token_hex(8), "secret-" + secrets.token_hex(8)) as s:
        yield s


def wechat_cfg(standin: StandIn, tmp_path: Path, *, safe: bool = False, backend: str = "memory",
               **wechat: Any) -> dict:
    cfg = settings.load()
    cfg["web"] = {**cfg["web"], "session_secret": SECRET}
    cfg["sessions"] = {**cfg["sessions"], "backend": backend, "sqlite_path": str(tmp_path / "sessions.db"),
                       "data_dir": str(tmp_path)}
    cfg["wechat"] = {**cfg["wechat"], "token": TOKEN, "app_id": standin.app_id, "app_secret": standin.app_secret,
                     "aes_key": AES_KEY if safe else "", "base_url": standin.base_url,
                     "sqlite_path": str(tmp_path / "wechat.db"), "follow_up_delay": 0, **wechat}
    return cfg


class Bot:
    """The web app with the WeChat channel, its engine, and users talking to it."""

    def __init__(self, cfg: dict, engine: Any, standin: StandIn) -> None:
        self.cfg, self.engine, self.standin = cfg, engine, standin
        self.app = create_app(cfg, engine=engine)
        self.channel = self.app.state.channels["wechat"]
        self.client = TestClient(self.app)
        self.client.__enter__()

    def wait_idle(self) -> None:
        deadline = time.monotonic() + 10
        while self.channel.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not self.channel.in_flight, "deliveries still running after 10 s"

    def user(self, openid: str | None = None) -> WxUser:
        conf = self.channel.conf
        return WxUser(self.client, self.standin, token=TOKEN, app_id=conf.app_id, aes_key=conf.aes_key,
                      path=conf.path, openid=openid, wait_idle=self.wait_idle)

    def session(self, user: WxUser) -> dict | None:
        return self.engine.store.get(self.channel.ids.session_id(user.openid))

    def close(self) -> None:
        self.client.__exit__(None, None, None)


@pytest.fixture
def make_bot(standin, tmp_path) -> Iterator[Any]:
    bots: list[Bot] = []

    def make(*, safe: bool = False, engine: Any = None, accounts: Any = None, **wechat: Any) -> Bot:
        cfg = wechat_cfg(standin, tmp_path, safe=safe, **wechat)
        engine = engine or make_engine(accounts or LocalAccountClient(), data_dir=tmp_path)
        bot = Bot(cfg, engine, standin)
        bots.append(bot)
        return bot

    yield make
    for bot in bots:
        bot.close()
