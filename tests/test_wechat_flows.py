"""Every flow of the password and duplicate-ID routes through the WeChat channel, against the live
account sandbox: choices made by tapping the customer-service menu ("menu"), by typing their number
("number"), and with menus refused by WeChat so choices arrive as numbered text ("numbered-text").
Posts are signed (plain) or encrypted (safe mode) like WeChat's; the WeChat API is the local stand-in.
"""
from __future__ import annotations

import re

import pytest

from handlers.sessions import SqliteStore
from support import JPEG, login, make_engine
from sandbox_fixture import sandbox  # noqa: F401  (the fixture)
from wechat_standin import WxUser

MODES = ["menu", "number", "numbered-text"]


@pytest.fixture(params=MODES)
def user(request, make_bot, sandbox, tmp_path) -> WxUser:  # noqa: F811
    engine = make_engine(sandbox.client(), store=SqliteStore(tmp_path / "sessions.db"), data_dir=tmp_path)
    bot = make_bot(engine=engine, safe=request.param == "menu")
    if request.param == "numbered-text":
        bot.standin.menus_allowed = False
    u = bot.user()
    u.choice_mode = "menu" if request.param == "menu" else "number"
    u.bot = bot
    return u


SENT = "验证码已发送至该账号绑定的手机"


def start_dup(user: WxUser, route: str) -> None:
    user.say("提示证件号码已被注册怎么办")
    user.choose("开始解决证件号码重复")
    user.choose(route)


def test_recover_password_by_choice(user, sandbox):  # noqa: F811
    acct = sandbox.new_account()
    user.say("密码忘了怎么办")
    user.choose("开始找回密码")
    user.say(acct["username"])
    user.say(acct["name"])
    user.choose("居民身份证")
    user.say(acct["id_number"])
    assert SENT in user.text
    user.say(sandbox.latest_code(acct["phone"]))
    link = re.search(r'<a href="(http[^"]+)">重置密码</a>', user.text).group(1)
    assert link.startswith(sandbox.base_url)


def test_recover_password_started_from_the_account_menu(user, sandbox):  # noqa: F811
    acct = sandbox.new_account()
    user.event("CLICK", "flow:recover_password")
    for answer in (acct["username"], acct["name"], "居民身份证", acct["id_number"]):
        user.say(answer)
    assert SENT in user.text


def test_route1_app_verification(user, sandbox):  # noqa: F811
    acct = sandbox.new_account(pending=True)
    start_dup(user, "途径1")
    login(user, sandbox, acct["username"], acct["phone"])
    assert "待核验身份" in user.text
    user.choose("确认继续")
    user.choose("我已完成")
    assert "暂时还没有查到" in user.text
    sandbox.pass_app_verification(acct["username"])
    user.choose("我已完成")
    assert "验证已通过" in user.text
    assert sandbox.account(acct["old"]["username"])["status"] == "cancelled"


def test_route2_photo_through_the_media_api(user, sandbox):  # noqa: F811
    acct = sandbox.new_account(pending=True)
    start_dup(user, "途径2")
    login(user, sandbox, acct["username"], acct["phone"])
    user.choose("确认继续")
    fetched = len(user.bot.standin.media_fetches)
    user.upload(JPEG)
    assert len(user.bot.standin.media_fetches) == fetched + 1
    ticket = re.search(r"审核单号：(\S+?)[。\s]", user.text).group(1)
    user.choose("查询审核进度")
    assert "审核中" in user.text
    sandbox.approve_review(ticket)
    user.say("查询审核进度")
    assert "已通过" in user.text


def test_route3_classmate(user, sandbox):  # noqa: F811
    acct = sandbox.new_account(pending=True)
    mate = sandbox.new_account(name="赵晓梅")
    start_dup(user, "途径3")
    login(user, sandbox, acct["username"], acct["phone"])
    assert "注销使用了您当前证件号码的其他账号" in user.text
    user.choose("确认继续")
    user.say(mate["name"])
    user.say(mate["username"])
    assert "协助请求已发送" in user.text
    other = user.bot.user()
    other.choice_mode = user.choice_mode
    other.say("收件箱")
    login(other, sandbox, mate["username"], mate["phone"])
    assert "请求您协助" in other.text
    other.choose("同意协助")
    assert "已同意协助" in other.text
    user.say("查询审核进度")
    assert "同学已同意" in user.text


def test_route4_records_mismatch_then_match(user, sandbox):  # noqa: F811
    record = {"kind": "graduate", "school": "复旦大学", "level": "硕士研究生",
              "certificate_no": "102461202306000111", "graduation_year": 2023}
    acct = sandbox.new_account(pending=True, records=(record,))
    start_dup(user, "途径4")
    login(user, sandbox, acct["username"], acct["phone"])
    user.choose("毕业生")
    for answer in ("复旦大学", "102461202306000999", "2023"):
        user.say(answer)
    user.choose("硕士研究生")
    assert "还可使用 3 次" in user.text
    user.choose("确认提交")
    assert "还可使用 2 次" in user.text
    user.choose("毕业生")
    for answer in ("复旦大学", "102461202306000111", "2023"):
        user.say(answer)
    user.choose("硕士研究生")
    user.choose("确认提交")
    assert "核对正确" in user.text
    assert sandbox.account(acct["username"])["status"] == "active"
