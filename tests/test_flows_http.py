"""Transcript tests of every flow against the live sandbox over HTTP (the real client, real server)."""
from __future__ import annotations

import json
import logging
import re
import socket

import pytest

from handlers.sessions import SqliteStore
from handlers.flows.recover import PASSWORD_CODE_SENT, USERNAME_SENT
from support import JPEG, Chat, login, make_engine
from sandbox_fixture import sandbox  # noqa: F401  (the fixture)


@pytest.fixture
def engine(sandbox, tmp_path):  # noqa: F811
    return make_engine(sandbox.client(), store=SqliteStore(tmp_path / "sessions.db"), data_dir=tmp_path)


def start_dup(chat: Chat, route: str) -> None:
    chat.say("提示证件号码已被注册怎么办")
    chat.press("开始解决证件号码重复")
    chat.press(route)


def test_recover_username(engine, sandbox):  # noqa: F811
    acct = sandbox.new_account()
    chat = Chat(engine)
    chat.say("用户名忘了")
    chat.press("开始找回用户名")
    for answer in (acct["name"], "居民身份证", acct["id_number"]):
        chat.say(answer)
    assert chat.text == USERNAME_SENT
    assert acct["username"] in sandbox.outbox(acct["phone"])[0]["text"]


def test_recover_password_then_bind_honours_the_two_hour_wait(engine, sandbox):  # noqa: F811
    acct = sandbox.new_account()
    chat = Chat(engine)
    chat.say("密码忘了怎么办")
    chat.press("开始找回密码")
    for answer in (acct["username"], acct["name"], "居民身份证", acct["id_number"]):
        chat.say(answer)
    assert PASSWORD_CODE_SENT in chat.text
    chat.say(sandbox.latest_code(acct["phone"]))
    link = re.search(r"\[重置密码\]\((http[^)]+)\)", chat.text).group(1)
    assert link.startswith(sandbox.base_url)
    chat.say("怎么绑定微信")
    chat.press("开始绑定")
    login(chat, sandbox, acct["username"], acct["phone"])
    assert "小时后再试" in chat.text and "2 小时后再进行微信或支付宝的绑定操作" in chat.text


def test_bind_alipay_qr_link(engine, sandbox):  # noqa: F811
    acct = sandbox.new_account()
    chat = Chat(engine)
    chat.say("学信网账号可以绑定吗")
    chat.press("开始绑定")
    chat.press("支付宝")
    login(chat, sandbox, acct["username"], acct["phone"])
    assert "请用支付宝扫描二维码完成绑定" in chat.text and sandbox.base_url in chat.text


def test_route1_app(engine, sandbox):  # noqa: F811
    acct = sandbox.new_account(pending=True)
    chat = Chat(engine)
    start_dup(chat, "途径1")
    login(chat, sandbox, acct["username"], acct["phone"])
    assert "待核验身份" in chat.text and "兵役登记/应征报名" in chat.text
    chat.press("确认继续")
    chat.press("我已完成")
    assert "暂时还没有查到" in chat.text
    sandbox.pass_app_verification(acct["username"])
    chat.press("我已完成")
    assert "验证已通过" in chat.text
    assert sandbox.account(acct["old"]["username"])["status"] == "cancelled"


def test_route2_photo_and_review_progress(engine, sandbox):  # noqa: F811
    acct = sandbox.new_account(pending=True)
    chat = Chat(engine)
    start_dup(chat, "途径2")
    login(chat, sandbox, acct["username"], acct["phone"])
    chat.press("确认继续")
    chat.upload(JPEG)
    ticket = re.search(r"审核单号：\*\*(\S+?)\*\*", chat.text).group(1)
    chat.press("查询审核进度")
    assert "审核中" in chat.text
    sandbox.approve_review(ticket)
    chat.say("查询审核进度")
    assert "已通过" in chat.text


def test_route3_classmate_accepts_in_their_own_chat(engine, sandbox):  # noqa: F811
    acct = sandbox.new_account(pending=True)
    mate = sandbox.new_account(name="赵晓梅")
    me = Chat(engine)
    start_dup(me, "途径3")
    login(me, sandbox, acct["username"], acct["phone"])
    me.say("确认")
    me.say(mate["name"])
    me.say(mate["username"])
    assert "协助请求已发送" in me.text
    other = Chat(engine)
    other.say("收件箱")
    login(other, sandbox, mate["username"], mate["phone"])
    assert "请求您协助" in other.text
    other.press("同意协助")
    assert "已同意协助" in other.text
    me.say("查询审核进度")
    assert "同学已同意" in me.text


def test_route4_mismatch_then_match(engine, sandbox):  # noqa: F811
    record = {"kind": "graduate", "school": "复旦大学", "level": "硕士研究生",
              "certificate_no": "102461202306000111", "graduation_year": 2023}
    acct = sandbox.new_account(pending=True, records=(record,))
    chat = Chat(engine)
    start_dup(chat, "途径4")
    login(chat, sandbox, acct["username"], acct["phone"])
    for answer in ("毕业生", "复旦大学", "102461202306000999", "2023"):
        chat.say(answer)
    chat.press("硕士研究生")
    assert "还可使用 **3** 次" in chat.text
    chat.press("确认提交")
    assert "还可使用 2 次" in chat.text
    for answer in ("毕业生", "复旦大学", "102461202306000111", "2023"):
        chat.say(answer)
    chat.press("硕士研究生")
    chat.press("确认提交")
    assert "核对正确" in chat.text
    assert sandbox.account(acct["username"])["status"] == "active"


def test_api_down_mid_flow_and_back(engine, sandbox):  # noqa: F811
    acct = sandbox.new_account()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    up = engine.accounts
    chat = Chat(engine)
    chat.say("忘记用户名")
    chat.press("开始找回用户名")
    chat.say(acct["name"])
    chat.press("居民身份证")
    engine.accounts = sandbox.client(base_url=f"http://127.0.0.1:{closed}", connect_timeout=0.2, retries=0)
    chat.say(acct["id_number"])
    assert "暂时无法连接" in chat.text
    chat.press("重试")
    assert "暂时无法连接" in chat.text
    engine.accounts = up
    chat.press("重试")
    assert "用户名已通过短信发送至" in chat.text
    assert len(sandbox.outbox(acct["phone"])) == 1


def test_restart_mid_flow_over_http(sandbox, tmp_path):  # noqa: F811
    acct = sandbox.new_account()
    path = tmp_path / "s.db"
    first = Chat(make_engine(sandbox.client(), store=SqliteStore(path), data_dir=tmp_path))
    first.say("忘记密码")
    first.press("开始找回密码")
    first.say(acct["username"])
    second = Chat(make_engine(sandbox.client(), store=SqliteStore(path), data_dir=tmp_path), first.session_id)
    second.say(acct["name"])
    assert "证件类型" in second.text


def test_no_personal_data_in_logs_or_store_after_full_flows(engine, sandbox, tmp_path, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    acct = sandbox.new_account(pending=True, records=(
        {"kind": "enrolled", "school": "北京大学", "level": "本科", "student_no": "2001234567", "enrolment_year": 2020},))
    chat = Chat(engine)
    chat.say("忘记用户名")
    chat.press("开始找回用户名")
    for answer in (acct["name"], "居民身份证", acct["id_number"]):
        chat.say(answer)
    start_dup(chat, "途径4")
    login(chat, sandbox, acct["username"], acct["phone"])
    for answer in ("在校生", "北京大学", "2001234567", "2020", "本科", "确认提交"):
        chat.say(answer)
    assert "核对正确" in chat.text
    # the test's own sandbox helpers (outbox by phone) are not the bot: leave their requests out
    logged = "\n".join(r.getMessage() for r in caplog.records if "/v1/sandbox/" not in r.getMessage())
    assert "POST /v1/recovery/username" in logged
    stored = json.dumps(engine.store.get(chat.session_id), ensure_ascii=False)
    for secret in (acct["id_number"], acct["phone"], "2001234567", acct["id_number"][6:14]):
        assert secret not in logged
        assert secret not in stored
