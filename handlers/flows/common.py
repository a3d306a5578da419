"""Step groups several flows share: the chat login and the identity questions.

Each factory returns part of a flow's table; the flow merges it into its one table.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Callable, TypeVar

from accounts import validation
from accounts.base import ChallengeExpired, InvalidCode, NotFound, ServiceUnavailable, TooFrequent
from accounts.contract import ID_TYPE_LABELS
from handlers.types import Button, Reply

from .base import (Act, Ask, Ctx, Goto, Handler, Input, Invalid, Outcome, Step, Switch, asks, choose, command_word, field_value,
                   ordinal, plain_wait, said_value, text_of, typed_yes_no)

T = TypeVar("T")

CODE_ATTEMPTS = 5   # accounts/openapi.yaml: the 5th wrong code kills a challenge (decoys mimic it)
CODE_TTL = 300      # accounts/openapi.yaml: SMS codes expire after 5 minutes


def sms_limited(ctx: Ctx, target: str) -> None:
    """Raise TooFrequent when this client, or anyone for this account (``target``), had its share of SMS
    for now. Counted whether or not the account exists, so the limit tells nothing about it; counted
    once per step attempt: "重试" after the account service was unreachable reuses the attempt's
    idempotency key (the service sends at most one SMS for it), so an outage does not spend the budget."""
    if ctx.limits is None or ctx.data.get("sms_counted") == ctx.idempotency_key:
        return
    for rule, value in (("sms_per_client", ctx.client), ("sms_per_target", target)):
        wait = ctx.limits.hit(rule, value)
        if wait is not None:
            raise TooFrequent(retry_after=wait)
    ctx.data["sms_counted"] = ctx.idempotency_key


def check_code(ctx: Ctx, challenge: str | None, verify: Callable[[str], T]) -> T:
    """``verify(challenge)``; for a decoy (``None``: the account does not exist) the errors a real
    challenge gives — wrong code with tries left, none left, expired after the code's lifetime — so
    replies cannot tell them apart."""
    if challenge:
        return verify(challenge)
    left = int(ctx.data.get("decoy_left", CODE_ATTEMPTS))
    if left <= 0 or ctx.now - float(ctx.data.get("decoy_at", ctx.now)) >= CODE_TTL:
        raise ChallengeExpired()
    ctx.data["decoy_left"] = left - 1
    raise InvalidCode(attempts_left=left - 1)

# ---- SMS codes: one prompt for every flow, with resend, a pasted SMS, and used-up attempts ----------

RESEND = Button("重新发送验证码", "resend")
RESTART = Button("重新开始", "cmd:restart")
NOT_ARRIVED = ("没收到", "收不到", "没有收到", "未收到", "没来", "没到", "没有验证码", "没验证码", "没有短信", "没短信")
ASKS_NEW = ("重新发送", "重发", "再发", "重新获取", "再获取", "再来一个", "换一个验证码", "resend",
            "过期", "失效", "超时")   # a code past its time needs a new one as much
RESEND_PHRASES = NOT_ARRIVED + ASKS_NEW
SMS_CHECKS = ("请确认手机信号正常、没有欠费停机，并看看短信是否被手机的拦截功能或安全软件拦截"
              "（查看“骚扰拦截”或“垃圾短信”）。")
# "not here yet" this soon after the send (等一下，短信还没到) is answered with patience once, not with a new code:
# an SMS can take a while, and every send spends the account's few an hour (limits.sms_per_target)
SMS_PATIENCE = 60.0
SMS_WAIT = ("验证码刚刚发出，短信有时会晚到一会儿，请稍等一分钟左右。每个账号每小时能发送的验证码有限，不必急着重发；"
            "一分钟后仍没收到，再点“重新发送验证码”。")
# six digits, maybe typed in halves (123 456, 123-456), with no digit around them
_SIX_DIGITS = re.compile(r"(?<!\d)(?<!\d[ -])\d{3}[ -]?\d{3}(?![ -]?\d)")


def wants_resend(text: str) -> bool:
    """True when the user says the code did not arrive or asks for a new one."""
    word = command_word(text)
    return any(p in word for p in RESEND_PHRASES)


def code_from(text: str) -> str:
    """A typed 6-digit code, or the one 6-digit code in a pasted SMS; else Invalid."""
    try:
        return field_value(validation.code, text)
    except Invalid:
        found = _SIX_DIGITS.findall(unicodedata.normalize("NFKC", text))
        if len(found) == 1:
            return re.sub(r"\D", "", found[0])
        raise Invalid("验证码为6位数字，请输入短信中的验证码。没收到的话，可以点“重新发送验证码”。") from None


def ask_code(ctx: Ctx) -> Reply:
    """Ask for the SMS code (or, once its attempts are used up, offer a new one)."""
    if ctx.data.get("code_dead"):
        return ctx.say("这个验证码的错误次数已用完，已经失效。您填写的信息都还在：可以重新发送验证码，或重新开始。",
                       RESEND, RESTART)
    return ctx.say("请输入收到的 **6 位短信验证码**：", RESEND)


# the phone the code goes to is no longer the user's (原来的手机号停用了, 换号了): a new code cannot reach them
_PHONE_GONE = re.compile(r"(手机|号码|电话|号).{0,6}(停用|停机|停了|注销|销号|不用了|没用了|用不了|换了|不在了|没了|不是我的)"
                         r"|换了?(手机号|号码|新号|号)")
PHONE_GONE = ("验证码只能发送到该账号绑定的手机。原来的手机号已经不能用的话，在这里无法完成验证；更换账号绑定的手机号，"
              "官方常见问题没有说明，可以输入“转人工”由工作人员为您核实。")


def phone_gone(typed: str) -> bool:
    """The user says the account's phone is no longer theirs or in use (手机号停用了, 我换号了): every flow's codes go
    there, so it is worth saying at any step (``typed``: ``command_word``'s form)."""
    return bool(_PHONE_GONE.search(typed))


# which phone the code went to (验证码发到哪个手机了？): the account's, never named in the chat
_WHICH_PHONE = re.compile(r"(哪个|哪一个|哪|什么|谁的|边个)(手机|号码|电话|号)|发到哪|发去哪|发给谁|发到了哪")
WHICH_PHONE = "验证码发送到该账号绑定的手机；为保护您的隐私，这里不显示号码。收到后请输入 6 位验证码。"


def code_answer(key: str, then: str, send: str) -> Handler:
    """An answer-handler keeping a 6-digit SMS code in data[key], then going to ``then``;
    "没收到" / "重新发送" goes to the ``send`` step again."""

    def got_code(ctx: Ctx, inp: Input) -> Outcome:
        """Keep a 6-digit code (typed or pasted with its SMS), or send a new one."""
        typed = command_word(inp.text) if inp.kind == "text" else ""
        if phone_gone(typed):
            raise Invalid(PHONE_GONE, answers=True)
        if _WHICH_PHONE.search(typed):
            raise Invalid(WHICH_PHONE, answers=True)
        if inp.payload == "resend" or (inp.kind == "text" and wants_resend(inp.text)):
            if typed and not any(p in typed for p in ASKS_NEW) and not ctx.data.get("waited") \
                    and ctx.now - float(ctx.data.get("decoy_at", 0.0)) < SMS_PATIENCE:   # (decoy_at: when it was sent)
                ctx.data["waited"] = True   # (once: 还是没收到 next sends a new one)
                raise Invalid(SMS_WAIT, answers=True)
            ctx.data["resend"] = True
            return Goto(send)
        if ctx.data.get("code_dead"):
            raise Invalid("这个验证码已经失效了，请点“重新发送验证码”获取新的验证码。")
        ctx.data[key] = code_from(text_of(inp))
        return Goto(then)

    return got_code


def sent(ctx: Ctx, challenge_id: str | None, key: str, code_step: str, condition: str) -> Goto:
    """Remember a new challenge (``None``: a decoy, the account does not exist) and go to the code prompt.
    The words are the same either way and name no phone: "if <condition>, the code went to the account's phone"."""
    resent = ctx.data.pop("resend", False)
    for k in ("code_dead", "decoy_left", "waited"):
        ctx.data.pop(k, None)
    ctx.data[key] = challenge_id
    ctx.data["decoy_at"] = ctx.now
    lead = "新的验证码已发送至" if resent else "验证码已发送至"
    return Goto(code_step, (ctx.say(f"如果{condition}，{lead}该账号绑定的手机。"
                                    + (f"\n\n如果仍然收不到：{SMS_CHECKS}" if resent else "")),))


def resend_refused(ctx: Ctx, e: TooFrequent, code_step: str) -> Goto:
    """A resend the service refuses for now: back to the code prompt with the wait (the last code may still work)."""
    ctx.data.pop("resend", None)
    return Goto(code_step, (ctx.say(
        f"验证码发送太频繁，账号服务暂时不能再发送，请{plain_wait(e.retry_after)}再点“重新发送验证码”。"
        f"已收到的验证码仍可使用。\n\n{SMS_CHECKS}"),))


def spend_code(ctx: Ctx, key: str, call: Callable[[str], T]) -> T:
    """``call(code)``; the code is dropped once the service has answered, and kept when it was
    unreachable, so "重试" sends the same code again."""
    try:
        result = call(ctx.data[key])
    except ServiceUnavailable:
        raise
    except BaseException:
        ctx.data.pop(key, None)
        raise
    ctx.data.pop(key, None)
    return result


def send_sms(ctx: Ctx, target: str, start: Callable[[], str | None], challenge_key: str, code_step: str,
             condition: str) -> Outcome:
    """Within the SMS limits for ``target``, ``start()`` a challenge (NotFound: a decoy, the same reply) and go to
    ``code_step``; a resend refused for now goes back there with the wait, a first send refused stays for "重试"."""
    try:
        sms_limited(ctx, target)
        challenge_id = start()
    except NotFound:
        challenge_id = None   # a decoy: the code step answers as for a real one
    except TooFrequent as e:
        if ctx.data.get("resend") and challenge_key in ctx.data:
            return resend_refused(ctx, e, code_step)
        raise  # the engine says the wait; the step stays for "重试"
    return sent(ctx, challenge_id, challenge_key, code_step, condition)


def verify_sms(ctx: Ctx, code_key: str, challenge_key: str, verify: Callable[[str, str], T], code_step: str,
               send_step: str) -> T | Goto:
    """``verify(challenge, code)`` with the code in data[code_key]; instead of its result, a wrong code goes back to
    ``code_step`` (the tries left said) and an expired challenge to ``send_step`` for a new code."""
    try:
        result = spend_code(ctx, code_key, lambda code: check_code(
            ctx, ctx.data[challenge_key], lambda challenge: verify(challenge, code)))
    except InvalidCode as e:
        return wrong_code(ctx, e, code_step)
    except ChallengeExpired:
        ctx.data["resend"] = True
        return Goto(send_step, (ctx.say("验证码已失效（已过期、已使用或错误次数过多），正在为您重新发送。"),))
    for k in (challenge_key, "code_dead", "decoy_at", "waited"):
        ctx.data.pop(k, None)
    return result


def wrong_code(ctx: Ctx, e: InvalidCode, step: str) -> Goto:
    """Back to the code prompt, saying how many tries are left, or at once that none are."""
    if e.attempts_left == 0:
        ctx.data["code_dead"] = True
        return Goto(step, (ctx.say("验证码不正确。"),))
    left = f"，还可以再试 {e.attempts_left} 次" if e.attempts_left is not None else ""
    return Goto(step, (ctx.say(f"验证码不正确{left}。"),))


# ---- chat login: username → SMS code ---------------------------------------------

def require_login(ctx: Ctx, then: str) -> Goto:
    """Go to ``then`` when logged in, else log in first and continue there."""
    if ctx.token:
        return Goto(then)
    ctx.data["after_login"] = then
    return Goto("login_username")


def relogin(ctx: Ctx, resume: str) -> Goto:
    """The service refused the login at step ``resume``: log in again, then go on there (a flow's ``relogin``)."""
    ctx.data["after_login"] = resume
    return Goto("login_username", (ctx.say("登录已失效，请重新登录。"),))


def ask_login_username(ctx: Ctx) -> Reply:
    """Ask for the username to log in with (never a password)."""
    return ctx.say("请先登录要处理的学信网账号。请输入该账号的**用户名**"
                   "（无需密码，我会向账号绑定的手机发送短信验证码）：")


def got_login_username(ctx: Ctx, inp: Input) -> Outcome:
    """Keep a well-formed username; not knowing it (我忘了用户名, 不知道) recovers it first."""
    if inp.kind == "text" and forgot_username(inp.text):
        return Switch("recover_username", (ctx.say("好的，我们先找回用户名；找回后，再回来继续刚才的办理。"),))
    ctx.data["login_username"] = account_username(text_of(inp))
    return Goto("login_send")


_DONT_KNOW = "忘|不记得|不知道|想不起|记不清|记不住|不清楚"   # not knowing something asked for
_FORGOT_USERNAME = re.compile(rf"({_DONT_KNOW}).{{0,4}}(用户名|账号|帐号|登录名)|(用户名|账号|帐号|登录名).{{0,4}}({_DONT_KNOW})")
# not knowing, said alone where the username is asked (不知道, 忘了, 我也不记得了, I forgot: after command_word)
_NOT_KNOWING = re.compile(rf"(我)?(也|都|真的|实在)?({_DONT_KNOW})(记|来)?(了)?(啊|呀|诶|欸)?"
                          r"|i?(forgot|forget|dontknow|donotknow|idk)(it|myusername|username)?")


def forgot_username(text: str) -> bool:
    """The user says they do not know the username asked for (我不记得用户名了, 用户名忘了; at its prompt, 不知道)."""
    word = command_word(text)
    return bool(_FORGOT_USERNAME.search(word) or _NOT_KNOWING.fullmatch(word))


def _is_phone(text: str) -> bool:
    """``text`` is a mainland mobile number as accounts.validation.phone reads one (+86, spaces, dashes)."""
    try:
        validation.phone(text)
    except validation.Validation:
        return False
    return True


# how people name the username when they say it in a sentence (我的用户名是…, 账号：…)
USERNAME_NAMES = r"(?:学信网)?(?:用户名|用户名字|账号|帐号|账户|帐户|登录名|username)"


def account_username(text: str) -> str:
    """A well-formed username, alone or said in a sentence (我的用户名是…); a phone number, e-mail or ID number
    typed instead is told apart; else Invalid."""
    if typed_yes_no(text) is not None:   # (好的 after "请先登录": no username yet)
        raise Invalid("请直接输入学信网**用户名**（6–20 位字母、数字或下划线，以字母开头）。")
    text = said_value(unicodedata.normalize("NFKC", text), USERNAME_NAMES)
    typed = text.strip().replace(" ", "")
    other = ("手机号码" if _is_phone(typed) else "邮箱" if "@" in typed
             else "证件号码" if re.fullmatch(r"\d{15}|\d{17}[\dXx]", typed) else None)
    if other:
        raise Invalid(f"您输入的像是{other}。这里需要的是学信网**用户名**（6–20 位字母、数字或下划线，以字母开头）；"
                      "忘记用户名的话，可以先找回用户名。")
    if re.search(r"[\u3400-\u9fff]", typed):   # 王五, 身份证: the name or the ID asked of the user elsewhere
        raise Invalid("学信网**用户名**由 6–20 位字母、数字或下划线组成（以字母开头），不含汉字；"
                      "忘记用户名的话，可以先找回用户名。")
    return field_value(validation.username, text)


_USERNAME_WORD = re.compile(r"(?<![A-Za-z0-9_])[A-Za-z][A-Za-z0-9_]{5,19}(?![A-Za-z0-9_])")
_USERNAME_SAID = re.compile(rf"(?:我的)?{USERNAME_NAMES}\s*(?:是|为|叫)?\s*[:：]?", re.IGNORECASE)


def username_and_rest(text: str) -> tuple[str, str] | None:
    """The one username-like word of a text that says more in Chinese (zhangsan01 张三, 用户名zhangsan01 姓名张三) and
    that more, the words naming the username and the punctuation around taken out; None for any other text."""
    typed = unicodedata.normalize("NFKC", text)
    words = _USERNAME_WORD.findall(typed)
    if len(words) != 1:
        return None
    rest = _USERNAME_SAID.sub(" ", typed.replace(words[0], " ")).strip(" ,，、;；。.")
    return (words[0], rest) if re.search(r"[\u3400-\u9fff]", rest) else None


LOGIN_IF = "用户名正确"
LOGIN_CODE_SENT = f"如果{LOGIN_IF}，验证码已发送至该账号绑定的手机。"


def send_login_code(ctx: Ctx) -> Outcome:
    """Ask the service to text a login code; the same reply whether or not the username exists."""
    username = ctx.data["login_username"]
    return send_sms(ctx, "user:" + username.lower(), lambda: ctx.accounts.start_login(
        username, idempotency_key=ctx.idempotency_key).challenge_id, "login_challenge", "login_code", LOGIN_IF)


def verify_login(ctx: Ctx) -> Outcome:
    """Check the code; on success remember the login and continue."""
    login = verify_sms(ctx, "login_code", "login_challenge", lambda challenge, code: ctx.accounts.verify_login(
        challenge, code, idempotency_key=ctx.idempotency_key), "login_code", "login_send")
    if isinstance(login, Goto):
        return login
    ctx.data.pop("login_username", None)
    ctx.login(login.token, login.expires_in)
    return Goto(ctx.data.pop("after_login"), (ctx.say("登录成功。"),))


def login_steps() -> dict[str, Step]:
    """The chat login's part of a flow table (continues at data["after_login"]); the flow declares relogin=relogin."""
    return {
        "login_username": Ask(ask_login_username, got_login_username, private=True),
        "login_send": Act(send_login_code),
        "login_code": Ask(ask_code, code_answer("login_code", "login_verify", "login_send"), private=True),
        "login_verify": Act(verify_login),
    }


# ---- identity questions: name → id type → id number --------------------------------

ID_TYPE_BUTTONS = tuple(Button(label, f"idtype:{kind}") for kind, label in ID_TYPE_LABELS.items())
# what people type for an ID type instead of its full name (身份证 is also inside 外国人永久居留身份证)
ID_TYPE_ALIASES = {
    "身份证": "idtype:resident_id", "二代身份证": "idtype:resident_id", "大陆身份证": "idtype:resident_id",
    "居民身份证号": "idtype:resident_id", "回乡证": "idtype:hk_macao_permit", "港澳通行证": "idtype:hk_macao_permit",
    "台胞证": "idtype:taiwan_permit", "永居证": "idtype:foreign_permanent_id", "外国人永居证": "idtype:foreign_permanent_id",
    # in English
    "ID card": "idtype:resident_id", "identity card": "idtype:resident_id", "resident ID": "idtype:resident_id",
    "Chinese ID": "idtype:resident_id", "passport": "idtype:passport", "home return permit": "idtype:hk_macao_permit",
    "Taiwan compatriot permit": "idtype:taiwan_permit", "permanent residence card": "idtype:foreign_permanent_id",
    "permanent resident ID": "idtype:foreign_permanent_id",
}
_ID_TYPE_WORDS = frozenset(command_word(w) for w in (*ID_TYPE_LABELS.values(), *ID_TYPE_ALIASES, "护照号", "身份证号码"))
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


_NAME = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fffA-Za-z·• ]{2,30}")


# typed at a name prompt, yet no name: an answer to a question before it, or not knowing it
NOT_A_NAME = frozenset(("谢谢", "你好", "在吗", "没了", "同上", "见上", "如上", "测试", "test"))   # (and not knowing it: _NOT_KNOWING)


# politeness said with a name (张三，谢谢)
_COURTESY = frozenset(("谢谢", "谢谢你", "谢谢您", "多谢", "麻烦了", "麻烦你了", "麻烦您了", "你好", "您好", "拜托了", "辛苦了"))
# a phone or ID number (with or without the words saying so: 手机号是138…) typed where a name is asked
_NUMBER = re.compile(r"\d{11,}|\d{17}[Xx]")
_NO_NAME_CHARS = re.compile(r"[我你的了吗呢吧啊]")   # words of a sentence (我是帮女儿问的), never of a name
# … nor does a name start with 不 or 没 (没收到, 不行), or an English word people type to the bot (help, I forgot)
_NO_NAME_START = re.compile(r"^(不|没|(i|im|my|what|why|how|help|hello|hi|sorry|please|thanks|thank|ok|okay)\b)", re.I)
# a name said in a sentence (我叫张三, 姓名：张三, 他叫李四, my name is 张三): the name itself, 2–4 汉字
_SAID_NAME = re.compile(r"(?:我叫|我的名字是|我的名字叫|名字是|名字叫|姓名是|姓名|他叫|她叫|同学叫|叫做"
                        r"|my name is|my name's|name is|name|i am|i'm|im)[:：是]?\s*([\u4e00-\u9fff]{2,4})", re.I)


def person_name(text: str, what: str = "姓名") -> str:
    """What looks like a person's name (2–30 CJK characters, letters, · or spaces; not a yes, a no, "不知道" or
    a sentence; from 我叫张三 the name); else Invalid."""
    typed = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).strip()).replace("•", "·").rstrip("。.!！~～")
    # the clauses that say something (张三。谢谢: not the thanks); the name said in one of them (我是帮我妈问的，她叫王芳;
    # 我叫张三，是2019年毕业的), else the one clause
    clauses = [c.strip() for c in re.split(r"[,，;；。!！~～]+", typed) if c.strip() and command_word(c) not in _COURTESY]
    said = [m.group(1) for c in clauses if (m := _SAID_NAME.fullmatch(c))]
    typed = said[0] if len(said) == 1 else clauses[0] if len(clauses) == 1 else typed
    if _NUMBER.search(typed):
        raise Invalid(f"这里需要的是{what}，不是手机号码或证件号码。请输入{what}，例如“张三”。")
    if not _NAME.fullmatch(typed) or not re.search(r"[\u3400-\u9fffA-Za-z]", typed):
        raise Invalid(f"请输入{what}（2–30 个汉字或字母，可含“·”和空格）。")
    word = command_word(typed)
    if word in _ID_TYPE_WORDS:   # 居民身份证 at the name prompt: the type, asked for next
        raise Invalid(f"“{typed}”是证件类型，下一步再选。请先输入{what}，例如“张三”。")
    if typed_yes_no(typed) is not None or word in NOT_A_NAME or _NOT_KNOWING.fullmatch(word) \
            or _NO_NAME_CHARS.search(typed) or ordinal(word) is not None or asks(typed) \
            or _NO_NAME_START.search(typed):   # (第一个: an option; 能不能跳过: a question)
        raise Invalid(f"“{typed}”不像是姓名。请输入{what}，例如“张三”；不清楚的话，可以输入“转人工”。")
    return field_value(validation.name, typed)


def ask_id_type(ctx: Ctx) -> Reply:
    """Offer the ID types as buttons."""
    return ctx.say("请选择注册时使用的**证件类型**：", *ID_TYPE_BUTTONS)


def picked_id_type(inp: Input) -> str:
    """One of the offered ID types, by button, label or everyday name; else Invalid."""
    picked = choose(inp, {b.payload: b.label for b in ID_TYPE_BUTTONS}, "请从下方按钮中选择证件类型（也可以输入“身份证”“护照”等）。",
                    aliases=ID_TYPE_ALIASES, ordered=True)
    return picked.removeprefix("idtype:")


def typed_resident_id(inp: Input) -> str | None:
    """A valid 居民身份证 number typed where its type was asked (check digit right; not the 9 of a
    foreigner's permanent residence card, which shares the format): the type needs no asking."""
    if inp.kind != "text" or inp.text.strip()[:1] not in "12345678":
        return None
    try:
        return validation.id_number("resident_id", inp.text)
    except validation.Validation:
        return None


def ask_id_number(ctx: Ctx) -> Reply:
    """Ask for the ID number in the chosen type's format."""
    kind = ctx.data["id_type"]
    return ctx.say(f"请输入您的**{ID_TYPE_LABELS[kind]}号码**（{ID_NUMBER_HINTS[kind]}）：")


_ID_IN_SENTENCE = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")   # 我的身份证号是1101…
# how an ID card number is introduced when it comes with the name (张三，身份证号110101…)
_ID_WORDS = re.compile(r"(?:我的)?(?:居民)?身份证(?:号码|号)?(?:是|为)?|证件号(?:码)?(?:是|为)?|[\s,，、;；:：]+")


def id_card_said(typed: str) -> tuple[str, str] | None:
    """The one valid ID card number in a (NFKC) text and what is left around it once the words introducing it are
    taken out (张三，身份证号110101… → the number, " 张三 "); None without exactly one."""
    said = _ID_IN_SENTENCE.findall(typed)
    number = typed_resident_id(Input("text", text=said[0])) if len(said) == 1 else None
    return None if number is None else (number, _ID_WORDS.sub(" ", typed.replace(said[0], " ")))


# the ID number not known or not at hand (身份证号我记不清了, 证件不在身边)
_NOT_AT_HAND = re.compile(rf"{_DONT_KNOW}|找不到|丢了|没带|不在身边|不在手边|不在手上")
NUMBER_NOT_AT_HAND = ("证件号码需要与注册时填写的完全一致，请对照证件输入。证件一时不在手边的话，可以找到后再来办理；"
                      "也可以输入“转人工”请客服协助。")


def name_given(ctx: Ctx, typed: str, then: str) -> Outcome:
    """The identity steps' name (in NFKC ``typed``) kept: to the ID type next; with one valid ID card number
    (张三，身份证110101…), all three kept and on to ``then``; else Invalid."""
    said = id_card_said(typed)
    if said is not None and re.search(r"[^\W\d_]", said[1]):
        ctx.data["name"] = person_name(said[1], "注册时填写的姓名")
        ctx.data["id_type"], ctx.data["id_number"] = "resident_id", said[0]
        return Goto(then)
    ctx.data["name"] = person_name(typed, "注册时填写的姓名")
    return Goto("id_type")


def identity_steps(then: str) -> dict[str, Step]:
    """Name, ID type and ID number (validated for its type), then ``then``."""

    def got_name(ctx: Ctx, inp: Input) -> Outcome:
        """Keep what looks like a name; a name with one valid ID card number (张三，身份证110101…) gives all three."""
        return name_given(ctx, unicodedata.normalize("NFKC", text_of(inp)), then)

    def got_id_type(ctx: Ctx, inp: Input) -> Outcome:
        """Keep one of the offered ID types; an ID card number typed instead (身份证 110101…) is the type and number."""
        said = id_card_said(unicodedata.normalize("NFKC", text_of(inp))) if inp.kind == "text" else None
        number = typed_resident_id(inp) or (said[0] if said is not None and not re.search(r"\w", said[1]) else None)
        if number is not None:
            ctx.data["id_type"], ctx.data["id_number"] = "resident_id", number
            return Goto(then)
        ctx.data["id_type"] = picked_id_type(inp)
        return Goto("id_number")

    def got_id_number(ctx: Ctx, inp: Input) -> Outcome:
        """Keep an ID number valid for its type (居民身份证: GB 11643 check digit; the one number of a sentence)."""
        typed, kind = text_of(inp), ctx.data["id_type"]
        said = _ID_IN_SENTENCE.findall(unicodedata.normalize("NFKC", typed)) if kind == "resident_id" else []
        try:
            ctx.data["id_number"] = field_value(validation.id_number, kind, said[0] if len(said) == 1 else typed)
        except Invalid:
            if inp.kind == "text" and _NOT_AT_HAND.search(command_word(typed)):   # (我护照号忘了: no format to fix)
                raise Invalid(NUMBER_NOT_AT_HAND, answers=True) from None
            raise
        return Goto(then)

    return {
        "name": Ask(ask_name, got_name, private=True, loose=True),
        "id_type": Ask(ask_id_type, got_id_type, private=True),   # (an ID number may be typed here)
        "id_number": Ask(ask_id_number, got_id_number, private=True),
    }
