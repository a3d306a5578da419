"""Seed topic 2: recover the username (sent by SMS) or the password (one-time reset link)."""
from __future__ import annotations

from accounts.base import NotFound
from handlers.types import Button, Reply

from .base import Act, Ask, Ctx, Finish, Flow, Goto, Input, Invalid, Outcome, Switch, text_of
from .common import (SMS_CHECKS, account_username, ask_code, code_answer, forgot_username, identity_steps, name_given,
                     send_sms, sms_limited, username_and_rest, verify_sms)

# ---- recover username ---------------------------------------------------------------

USERNAME_SENT = ("如果您填写的姓名和证件信息与学信网账号相符，用户名已通过短信发送至该账号绑定的手机，请查收。\n\n"
                 "几分钟内没有收到的话，可能是信息填写有误，或这个证件号码没有注册过账号：请核对后重新找回；"
                 "确认从未注册过的，可以直接注册新账号。\n\n"
                 "因学信网账号还可用于本网站的其他系统登录，请牢记用户名和密码。")


USERNAME_UNRECEIVED = ("用户名短信会发送到该账号绑定的手机。没有收到的话：" + SMS_CHECKS + "\n\n"
                       "也可能是姓名或证件信息填写有误，或这个证件号码没有注册过账号：可以点“重新填写”核对后再找回；"
                       "确认从未注册过的，可以直接注册新账号。")


def send_username(ctx: Ctx) -> Outcome:
    """Have the username texted to the account's phone; one reply whether or not name and ID match."""
    # the same reply either way: the bot cannot be used to test which name + ID pairs hold an account
    # (the SMS itself tells the owner)
    sms_limited(ctx, f"id:{ctx.data['id_type']}:{ctx.data['id_number']}")
    try:
        ctx.accounts.recover_username(name=ctx.data["name"], id_type=ctx.data["id_type"],
                                      id_number=ctx.data["id_number"], idempotency_key=ctx.idempotency_key)
    except NotFound:
        pass
    return Finish((ctx.say(USERNAME_SENT, Button("继续找回密码", "flow:recover_password"),
                           Button("重新填写", "flow:recover_username")),))


RECOVER_USERNAME = Flow(
    name="recover_username",
    title="找回用户名",
    first="name",
    steps={
        **identity_steps(then="send"),
        "send": Act(send_username),
    },
    unreceived=USERNAME_UNRECEIVED,
)


# ---- recover password -----------------------------------------------------------------

def ask_username(ctx: Ctx) -> Reply:
    """Ask for the username whose password is lost."""
    return ctx.say("请输入要找回密码的**用户名**（忘记用户名可以先找回）：",
                   Button("先找回用户名", "flow:recover_username"))


def got_username(ctx: Ctx, inp: Input) -> Outcome:
    """Keep a well-formed username, and the name said with it (zhangsan01 张三); 我不记得用户名了 recovers it first."""
    if inp.kind == "text" and forgot_username(inp.text):
        return Switch("recover_username", (ctx.say("好的，我们先找回用户名，找回后再来重置密码。"),))
    split = username_and_rest(text_of(inp))
    if split is not None:
        try:
            username, outcome = account_username(split[0]), name_given(ctx, split[1], then="send_code")
        except Invalid:   # (zhangsan01 急死了: no name with it; the username alone is refused below, as ever)
            pass
        else:
            ctx.data["username"] = username
            return outcome
    ctx.data["username"] = account_username(text_of(inp))
    return Goto("name")


IDENTITY_KEYS = ("username", "name", "id_type", "id_number")


PASSWORD_IF = "用户名、姓名和证件信息都与账号服务中的记录相符"
PASSWORD_CODE_SENT = f"如果{PASSWORD_IF}，验证码已发送至该账号绑定的手机。"


def send_code(ctx: Ctx) -> Outcome:
    """Have a reset code texted (again on "重新发送"); one reply whether or not the details match."""
    d = ctx.data
    return send_sms(ctx, "user:" + d["username"].lower(), lambda: ctx.accounts.start_password_recovery(
        username=d["username"], name=d["name"], id_type=d["id_type"], id_number=d["id_number"],
        idempotency_key=ctx.idempotency_key).challenge_id, "challenge", "code", PASSWORD_IF)


def verify_code(ctx: Ctx) -> Outcome:
    """Exchange the code for the one-time reset link."""
    link = verify_sms(ctx, "code", "challenge", lambda challenge, code: ctx.accounts.verify_password_recovery(
        challenge, code, idempotency_key=ctx.idempotency_key), "code", "send_code")
    if isinstance(link, Goto):
        return link
    for k in IDENTITY_KEYS:
        ctx.data.pop(k, None)
    minutes = max(1, link.expires_in // 60)
    return Finish((ctx.say(f"验证成功。请打开下面的链接设置新密码（{minutes} 分钟内有效，只能使用一次，请勿转发给他人）：\n\n"
                           f"[重置密码]({link.reset_url})"),))


RECOVER_PASSWORD = Flow(
    name="recover_password",
    title="找回密码",
    first="username",
    steps={
        "username": Ask(ask_username, got_username, private=True),
        **identity_steps(then="send_code"),
        "send_code": Act(send_code),
        "code": Ask(ask_code, code_answer("code", "verify", "send_code"), private=True),
        "verify": Act(verify_code),
    },
)
