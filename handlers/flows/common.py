"""Step groups several flows share: the chat login and the identity questions.

Each factory returns part of a flow's table; the flow merges it into its one table.
"""
from __future__ import annotations

from accounts import validation
from accounts.base import (ID_TYPE_LABELS, ChallengeExpired, InvalidCode, NotFound, TooFrequent)
from handlers.types import Button, Reply

from .base import Act, Ask, Ctx, Finish, Goto, Input, Outcome, Step, choose, field_value, plain_wait, text_of

def too_frequent(ctx: Ctx, e: TooFrequent, what: str = "操作") -> Finish:
    """End with the account service's wait in plain words (its own limit, not 学信网 policy)."""
    return Finish((ctx.say(f"{what}的请求太频繁，账号服务暂时不受理，请{plain_wait(e.retry_after)}再试。"),))


# ---- chat login: username → SMS code ---------------------------------------------

def require_login(ctx: Ctx, then: str) -> Goto:
    """Go to ``then`` when logged in, else log in first and continue there."""
    if ctx.token:
        return Goto(then)
    ctx.data["after_login"] = then
    return Goto("login_username")


def ask_login_username(ctx: Ctx) -> Reply:
    """Ask for the username to log in with (never a password)."""
    return ctx.say("请先登录要处理的学信网账号。请输入该账号的**用户名**"
                   "（无需密码，我会向账号绑定的手机发送短信验证码）：")


def got_login_username(ctx: Ctx, inp: Input) -> Outcome:
    """Keep a well-formed username."""
    ctx.data["login_username"] = field_value(validation.username, text_of(inp))
    return Goto("login_send")


def send_login_code(ctx: Ctx) -> Outcome:
    """Ask the service to text a login code."""
    try:
        challenge = ctx.accounts.start_login(ctx.data["login_username"], idempotency_key=ctx.key)
    except NotFound:
        return Goto("login_username", (ctx.say(
            "没有找到这个用户名，请核对后重新输入。如果忘记了用户名，可以先找回。",
            Button("找回用户名", "flow:recover_username")),))
    except TooFrequent as e:
        return too_frequent(ctx, e, "登录")
    ctx.data["login_challenge"] = challenge.challenge_id
    return Goto("login_code", (ctx.say(f"验证码已发送至 {challenge.sent_to}。"),))


def ask_code(ctx: Ctx) -> Reply:
    """Ask for the SMS code."""
    return ctx.say("请输入收到的 **6 位短信验证码**：")


def code_answer(key: str, then: str):  # type: ignore[no-untyped-def]
    """An answer-handler keeping a 6-digit SMS code in data[key], then going to ``then``."""

    def got_code(ctx: Ctx, inp: Input) -> Outcome:
        """Keep a 6-digit code."""
        ctx.data[key] = field_value(validation.code, text_of(inp))
        return Goto(then)

    return got_code


def wrong_code(ctx: Ctx, e: InvalidCode, step: str) -> Goto:
    """Back to the code prompt, saying how many tries are left."""
    left = f"，还可以再试 {e.attempts_left} 次" if e.attempts_left is not None else ""
    return Goto(step, (ctx.say(f"验证码不正确{left}。"),))


def verify_login(ctx: Ctx) -> Outcome:
    """Check the code; on success remember the login and continue."""
    try:
        login = ctx.accounts.verify_login(ctx.data["login_challenge"], ctx.data["login_code"],
                                          idempotency_key=ctx.key)
    except InvalidCode as e:
        return wrong_code(ctx, e, "login_code")
    except ChallengeExpired:
        return Goto("login_send", (ctx.say("验证码已失效，正在为您重新发送。"),))
    finally:
        ctx.data.pop("login_code", None)
    for k in ("login_username", "login_challenge"):
        ctx.data.pop(k, None)
    ctx.login(login.token, login.expires_in)
    return Goto(ctx.data.pop("after_login"), (ctx.say("登录成功。"),))


def login_steps() -> dict[str, Step]:
    """The chat login's part of a flow table (continues at data["after_login"])."""
    return {
        "login_username": Ask(ask_login_username, got_login_username, private=True),
        "login_send": Act(send_login_code),
        "login_code": Ask(ask_code, code_answer("login_code", "login_verify"), private=True),
        "login_verify": Act(verify_login),
    }


# ---- identity questions: name → id type → id number --------------------------------

ID_TYPE_BUTTONS = tuple(Button(label, f"idtype:{kind}") for kind, label in ID_TYPE_LABELS.items())
ID_NUMBER_HINTS = {
    "resident_id": "18 位，最后一位可能是 X",
    "hk_macao_permit": "H 或 M 开头，后接 8 或 10 位数字",
    "taiwan_permit": "8 或 10 位数字",
    "passport": "5–17 位字母或数字",
    "foreign_permanent_id": "新版为 18 位（9 开头），旧版为 3 个字母加 12 位数字",
}


def ask_name(ctx: Ctx) -> Reply:
    """Ask for the name registered on the account."""
    return ctx.say("请输入注册时填写的**姓名**：")


def got_name(ctx: Ctx, inp: Input) -> Outcome:
    """Keep a plausible name."""
    ctx.data["name"] = field_value(validation.name, text_of(inp))
    return Goto("id_type")


def ask_id_type(ctx: Ctx) -> Reply:
    """Offer the ID types as buttons."""
    return ctx.say("请选择注册时使用的**证件类型**：", *ID_TYPE_BUTTONS)


def got_id_type(ctx: Ctx, inp: Input) -> Outcome:
    """Keep one of the offered ID types."""
    picked = choose(inp, {b.payload: b.label for b in ID_TYPE_BUTTONS}, "请从下方按钮中选择证件类型。")
    ctx.data["id_type"] = picked.removeprefix("idtype:")
    return Goto("id_number")


def ask_id_number(ctx: Ctx) -> Reply:
    """Ask for the ID number in the chosen type's format."""
    kind = ctx.data["id_type"]
    return ctx.say(f"请输入您的**{ID_TYPE_LABELS[kind]}号码**（{ID_NUMBER_HINTS[kind]}）：")


def identity_steps(then: str) -> dict[str, Step]:
    """Name, ID type and ID number (validated for its type), then ``then``."""

    def got_id_number(ctx: Ctx, inp: Input) -> Outcome:
        """Keep an ID number valid for its type (居民身份证: GB 11643 check digit)."""
        ctx.data["id_number"] = field_value(validation.id_number, ctx.data["id_type"], text_of(inp))
        return Goto(then)

    return {
        "name": Ask(ask_name, got_name, private=True),
        "id_type": Ask(ask_id_type, got_id_type),
        "id_number": Ask(ask_id_number, got_id_number, private=True),
    }
