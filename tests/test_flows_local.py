"""Transcript tests (user says / bot says) of every guided flow and branch, over the
in-process account twin (LocalAccountClient) and the in-memory session store."""
from __future__ import annotations

import re

from accounts.base import TooFrequent
from accounts.local import LocalAccountClient
from handlers.flows.recover import PASSWORD_CODE_SENT, USERNAME_SENT
from support import JPEG, Chat, login, make_engine
from support.flows import LISI_PHONE, ZS1_PHONE, ZS2_PHONE, ZS_ID, on_route, route4_fill, start_dup

# the fixtures acc (the twin with scripted failures), clock, engine and chat: tests/support/flows.py


# ---- recover username ----------------------------------------------------------------

def test_recover_username_happy_path(chat, acc):
    chat.say("忘记用户名了怎么办")
    chat.press("开始找回用户名")
    assert "姓名" in chat.text and chat.flow_step == ("recover_username", "name")
    chat.say("张三")
    assert [b.label for b in chat.buttons][:2] == ["居民身份证", "港澳居民来往内地通行证"]
    chat.press("居民身份证")
    chat.say(ZS_ID)
    assert chat.text == USERNAME_SENT
    assert chat.flow_step is None
    assert "zhangsan01" in acc.outbox(ZS1_PHONE)[0]["text"]


def test_recover_username_checks_id_formats_per_type(chat):
    chat.press  # noqa: B018 - documentation: buttons or typed labels both work
    chat.say("找回用户名")
    chat.press("开始找回用户名")
    chat.say("张三")
    chat.say("居民身份证")  # the label typed instead of pressed
    chat.say("11010119990307123")
    assert "18位" in chat.text and chat.flow_step == ("recover_username", "id_number")
    chat.say("110101199903071238")
    assert "校验位" in chat.text
    chat.say("返回")
    assert chat.flow_step == ("recover_username", "id_type")
    chat.press("港澳居民来往内地通行证")
    assert "H 或 M 开头" in chat.text
    chat.say("X1234")
    assert "格式不正确" in chat.text
    chat.say("h12345678")
    assert chat.text == USERNAME_SENT  # 张三 has no permit: no SMS, and the reply does not say so
    assert chat.button("重新填写").payload == "flow:recover_username"


def _transcript(chat: Chat) -> list:
    return [(r.text, [(b.label, b.payload) for b in r.buttons], r.flow) for r in chat.replies]


def test_recover_username_matching_and_not_matching_replies_are_identical(engine, acc):
    """The bot cannot be used to test which name + ID number pairs hold an account."""
    seen = []
    for name, id_number in (("张三", ZS_ID), ("王小明", "11010519491231002X")):
        chat = Chat(engine)
        chat.say("忘记用户名")
        chat.press("开始找回用户名")
        for answer in (name, "居民身份证", id_number):
            chat.say(answer)
        seen.append(_transcript(chat))
        assert chat.flow_step is None
    assert seen[0] == seen[1]
    assert "zhangsan01" in acc.outbox(ZS1_PHONE)[-1]["text"]   # only the real owner got an SMS


def test_login_unknown_and_known_username_replies_are_identical_to_the_last_try(engine, acc):
    """A decoy challenge for an unknown username: sent, wrong code ×5 with the same counts, then expired."""
    seen = []
    for username in ("zhangsan01", "nobody123"):
        chat = Chat(engine)
        chat.say("绑定微信")
        chat.press("开始绑定")
        chat.say(username)
        steps = [_transcript(chat)]
        for _ in range(6):
            chat.say("000000")
            steps.append(_transcript(chat))
        seen.append(steps)
    assert seen[0] == seen[1]
    assert "还可以再试 4 次" in seen[1][1][0][0]


# ---- recover password -------------------------------------------------------------------

def test_recover_password_happy_path_never_asks_for_password(chat, acc):
    chat.say("忘记密码怎么办")
    chat.press("开始找回密码")
    asked = [chat.text]
    for answer in ("zhangsan01", "张三", "居民身份证", ZS_ID):
        chat.say(answer)
        asked.append(chat.text)
    assert PASSWORD_CODE_SENT in chat.text
    chat.say("12345")
    assert "6位数字" in chat.text
    chat.say(acc.latest_code(ZS1_PHONE))
    assert re.search(r"\[重置密码\]\(http://[^)]+\)", chat.text)
    assert chat.flow_step is None
    assert not any("输入" in t and "密码：" in t for t in asked)


def test_recover_password_wrong_code_shows_attempts_left(chat, acc):
    chat.say("找回密码")
    chat.press("开始找回密码")
    for answer in ("zhangsan01", "张三", "居民身份证", ZS_ID):
        chat.say(answer)
    code = acc.latest_code(ZS1_PHONE)
    chat.say("000000" if code != "000000" else "111111")
    assert "验证码不正确，还可以再试" in chat.text and chat.flow_step == ("recover_password", "code")
    chat.say(code)
    assert "重置密码" in chat.text


def test_recover_password_unknown_account_answers_like_a_known_one(tmp_path, clock):
    """Sent, five wrong codes with the same counts, used up, resent, expired after 5 minutes: identical."""
    acc = LocalAccountClient(clock=clock)   # the service's codes expire on the test's clock too
    engine = make_engine(acc, data_dir=tmp_path, clock=clock)
    seen = []
    for username in ("zhangsan01", "nobody123"):
        chat = Chat(engine)
        chat.say("找回密码")
        chat.press("开始找回密码")
        for answer in (username, "张三", "居民身份证", ZS_ID):
            chat.say(answer)
        steps = [_transcript(chat)]
        for _ in range(6):
            chat.say("000000")
            steps.append(_transcript(chat))
        chat.press("重新发送验证码")
        steps.append(_transcript(chat))
        clock.advance(301)
        chat.say("000000")
        steps.append(_transcript(chat))
        seen.append(steps)
        clock.advance(700)   # past the service's 10-minute window of attempts per ID number
    assert seen[0] == seen[1]
    assert "失效" in seen[1][6][0][0] and "新的验证码已发送至该账号绑定的手机" in seen[1][7][0][0]
    assert "验证码已失效" in seen[1][8][0][0]
    acc.close()


def test_recover_password_too_frequent_in_plain_words_as_the_services_limit(chat, acc):
    acc.fail["start_password_recovery"].append(TooFrequent("操作过于频繁", retry_after=7200))
    chat.say("找回密码")
    chat.press("开始找回密码")
    for answer in ("zhangsan01", "张三", "居民身份证", ZS_ID):
        chat.say(answer)
    assert "约 2 小时后点“重试”" in chat.text and "账号服务" in chat.text and "信息都还在" in chat.text
    assert "学信网" not in chat.text  # the service's own limit is not worded as 学信网 policy
    assert chat.flow_step == ("recover_password", "send_code")
    chat.press("重试")  # the limit has passed: the same data goes again
    assert "验证码已发送至" in chat.text and chat.flow_step == ("recover_password", "code")


# ---- phone registered, bind --------------------------------------------------------------

def test_phone_registered_offers_recover_username(chat):
    chat.say("填写手机号码时提示已被注册是什么原因")
    assert "要先找回用户名吗？" in chat.text
    chat.press("找回用户名")
    assert chat.flow_step == ("recover_username", "name")


def test_bind_wechat_after_chat_login(chat, acc):
    chat.say("怎么绑定微信")
    chat.press("开始绑定")   # (微信, named in the question, is not asked again)
    login(chat, acc, "wangwu88", "13700137004")
    assert "请用微信扫描二维码完成绑定" in chat.text and "](http" in chat.text
    assert chat.flow_step is None


def test_bind_too_frequent_honours_the_two_hour_wait(chat, acc):
    acc.fail["bind"].append(TooFrequent("", retry_after=7000))
    chat.say("学信网账号可以绑定吗")
    chat.press("开始绑定")
    chat.say("支付宝")
    login(chat, acc, "wangwu88", "13700137004")
    assert "约 2 小时后再试" in chat.text


# ---- duplicate ID --------------------------------------------------------------------------

def test_route_picker_guides_and_allows_direct_pick(chat):
    start_dup(chat)
    chat.press("帮我选择途径")
    chat.press("否")
    assert "身份证照片" in chat.text
    chat.press("直接选择途径")
    assert chat.flow_step == ("id_duplicate", "pick")
    assert len([b for b in chat.buttons if b.payload.startswith("route:")]) == 4
    chat.say("途径3")
    assert chat.flow_step == ("id_duplicate", "login_username")


def test_route1_app_requires_confirmation_then_checks_status(chat, acc):
    start_dup(chat)
    chat.press("帮我选择途径")
    chat.press("是")
    assert "建议使用**途径1 APP自助验证**" in chat.text
    login(chat, acc, "zhangsan02", ZS2_PHONE)
    assert "待核验身份" in chat.text and "还可使用 **3** 次" in chat.text
    for effect in ("注销使用了您当前证件号码的其他账号", "研招推免、统考、自主招生、兵役登记/应征报名"):
        assert effect in chat.text
    chat.say("好吧")
    assert "需要您明确确认" in chat.text and chat.flow_step == ("id_duplicate", "app_confirm")
    chat.press("确认继续")
    assert chat.flow_step == ("id_duplicate", "app_wait")
    chat.press("我已完成")
    assert "暂时还没有查到验证通过" in chat.text
    acc.pass_app_verification("zhangsan02")
    chat.press("我已完成")
    assert "验证已通过" in chat.text and chat.flow_step is None


def test_route2_photo_ticket_and_review_progress(chat, acc):
    on_route(chat, acc, "途径2")
    chat.press("确认继续")
    assert chat.replies[-1].expects_image
    chat.say("我没有照片")
    assert "换其他途径" in chat.text and "转人工" in chat.text   # no photo: another route or a person
    chat.say("照片")
    assert "需要上传一张身份证照片" in chat.text
    chat.upload(b"GIF89a not a photo", "x.gif", "image/gif")
    assert "JPG 或 PNG" in chat.text
    chat.upload(JPEG)
    ticket = re.search(r"审核单号：\*\*(\S+?)\*\*", chat.text).group(1)
    assert "证件重复-客服审核" in chat.text and chat.flow_step is None
    acc.decide_review(ticket, False, "照片不清晰")
    chat.say("查询审核进度")
    assert f"单号 {ticket}" in chat.text and "未通过" in chat.text and "照片不清晰" in chat.text
    chat.press("解决证件号码已被注册")   # turned down, nothing else under way: the routes again
    assert chat.flow_step == ("id_duplicate", "explain")


def test_route3_classmate_request_accepted_in_the_classmates_chat(engine, acc):
    me = Chat(engine)
    on_route(me, acc, "途径3")
    assert "注销使用了您当前证件号码的其他账号" in me.text and me.flow_step == ("id_duplicate", "classmate_confirm")
    me.say("李四")  # not a confirmation: nothing is sent before one
    assert me.flow_step == ("id_duplicate", "classmate_confirm") and not acc.keys["request_classmate"]
    me.press("确认继续")
    me.say("李四")
    me.say("lisi2017")
    assert "协助请求已发送" in me.text
    mate = Chat(engine)
    mate.say("协助请求")
    login(mate, acc, "lisi2017", LISI_PHONE)
    assert "张*" in mate.text and "请求您协助" in mate.text
    mate.press("同意协助")
    assert "已同意协助" in mate.text and "目前没有待处理的协助请求" in mate.text
    me.say("查询审核进度")
    assert "同学已同意" in me.text


def test_route3_unknown_classmate_is_re_asked(chat, acc):
    on_route(chat, acc, "途径3")
    chat.press("确认继续")
    chat.say("王二麻")
    chat.say("nobody999")
    assert "没有找到" in chat.text and chat.flow_step == ("id_duplicate", "classmate_name")


def test_route4_mismatch_shows_attempts_then_none_left_offers_routes_1_to_3(chat, acc):
    on_route(chat, acc, "途径4")
    for left in (2, 1):
        route4_fill(chat, "在校生", "北京大学", "9999999999", "2017", "本科")
        assert f"还可使用 **{left + 1}** 次" in chat.text
        chat.press("确认提交")
        assert f"信息核对未通过，途径4 还可使用 {left} 次" in chat.text
    route4_fill(chat, "毕业生", "清华大学", "100011202105009999", "2021", "本科")
    chat.press("确认提交")
    assert "3 次机会已用完" in chat.text and chat.flow_step == ("id_duplicate", "pick")
    assert [b.payload for b in chat.buttons if b.payload.startswith("route:")] == \
        ["route:app", "route:manual_review", "route:classmate"]
    chat.say("途径4")
    assert "次数已用完" in chat.text


def test_route4_year_and_level_are_checked(chat, acc):
    on_route(chat, acc, "途径4")
    chat.press("毕业生")
    chat.say("北京大学")
    chat.say("100011202105001234")
    chat.say("21")
    assert "4 位数字" in chat.text
    chat.say("2999")
    assert "之间" in chat.text
    chat.say("２０２１")  # full-width digits are fine
    chat.say("大学")
    assert "选择学历层次" in chat.text
    chat.press("本科")
    assert "证书编号 10**************34" in chat.text
    chat.press("确认提交")
    assert "核对正确" in chat.text and chat.flow_step is None


def test_already_active_account_needs_nothing(chat, acc):
    start_dup(chat)
    chat.press("途径1")
    login(chat, acc, "zhangsan01", ZS1_PHONE)
    assert "已通过身份核验" in chat.text and chat.flow_step is None
