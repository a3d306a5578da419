"""Seed topic 5: 证件号码已被注册 — explain, pick one of the four routes, and walk it.

Routes 1, 2 and 4 end by cancelling the other accounts that use the same ID number;
the flow says so plainly and asks for an explicit confirmation before each of them.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata

from accounts import validation
from accounts.base import AttemptsExhausted, BadImage, Identity, NotFound, RecordMismatch, StudentRecord
from accounts.contract import LEVELS, MAX_IMAGE_BYTES
from handlers.types import Button, Reply, md
from intents.normalize import to_simplified

from .base import (NEGATION, YES_NO, Act, Ask, Ctx, Finish, Flow, Goto, Handler, Invalid, Input, Outcome, asks, choose,
                   clauses_of, command_word, field_value, pack_image, said_value, text_of, typed_yes_no, unpack_image,
                   yes_no)
from .common import USERNAME_NAMES, login_steps, person_name, relogin, require_login

ROUTES = {
    "app": "途径1 APP自助验证",
    "manual_review": "途径2 客服协助验证",
    "classmate": "途径3 大学同班同学协助",
    "student_record": "途径4 提供学籍或学历信息",
}
ROUTE_START = {"app": "app_confirm", "manual_review": "photo_confirm",
               "classmate": "classmate_confirm", "student_record": "record_kind"}
PICK = Button("直接选择途径", "pick")
OTHER_ROUTE = Button("换其他途径", "pick")
CANCEL_WARNING = ("**请注意：**验证通过后，将会**注销使用了您当前证件号码的其他账号**，"
                  "旧账号将不能用于征兵、研招报名。"
                  "注销账号会暂时影响您原填报**研招推免、统考、自主招生、兵役登记/应征报名**的信息操作。"
                  "如果您另有其他账号，请慎重此操作。")
KINDS = {"enrolled": "在校生", "graduate": "毕业生"}
# what people type instead of tapping (after command folding): 我还在读大三, 已经毕业三年了
_SAYS_ENROLLED = re.compile(r"[没未]毕业|在读|在校|上学|读书|学生|读大|大[一二三四五]|研[一二三]|博[一二三四五]|读研|读博")
_SAYS_GRADUATE = re.compile(r"毕业|往届|工作了|上班了")
LEVEL_ALIASES = {
    **dict.fromkeys(("大专", "专科生", "大专生", "高职", "高职高专", "专科学历", "大专学历"), "level:专科"),
    **dict.fromkeys(("本科生", "大学本科", "本科学历", "学士"), "level:本科"),
    **dict.fromkeys(("硕士", "硕士生", "研究生", "硕士学历", "研究生学历", "读研"), "level:硕士研究生"),
    **dict.fromkeys(("博士", "博士生", "博士学历", "读博"), "level:博士研究生"),
}
STUDENT_RECORD_KEYS = ("record_kind", "record_school", "record_number", "record_year", "record_level")
FIRST_YEAR = 1949


# ---- explain and pick a route ----------------------------------------------------------

def route_buttons(ctx: Ctx) -> tuple[Button, ...]:
    """The routes still open (route 4 hides once its attempts are used up)."""
    closed = {"student_record"} if ctx.data.get("attempts_left") == 0 else set()
    return tuple(Button(label, f"route:{r}") for r, label in ROUTES.items() if r not in closed)


def ask_explain(ctx: Ctx) -> Reply:
    """Explain what 证件号码已被注册 means and how to go on."""
    return ctx.say(
        "提示“证件号码已被注册”，说明该证件号码之前在网站有注册记录。可使用找回用户名功能核实是否注册过账号。\n\n"
        "重新注册之前，请先看看能否继续使用原账号：\n\n"
        "- 如果您用过图像校对、学籍档案、兵役登记/应征报名，可使用原账号登录；\n"
        "- 如果您忘记了注册信息，可以尝试找回密码、找回用户名。\n\n"
        "如果您未曾使用此身份证号码注册账号或已无法成功重置密码，可以考虑在注册页勾选“我要重新注册”，"
        "正确填写信息后点击【立即注册】，再用新注册的账号通过以下任意一种途径完成身份核验。"
        "如果选择“我要重新注册”，管理员审核后证件号码关联的旧账号将被注销掉，旧账号将不能用于征兵、研招报名。\n\n"
        "不确定选哪种途径？我可以问您几个问题帮您选，您也可以直接选择：", *_explain_buttons(ctx))


def ask_explain_again(ctx: Ctx) -> Reply:
    """The explanation's choices again, without the explanation (said once is enough)."""
    return ctx.say("请选择完成身份核验的途径（也可以直接输入，例如“用APP验证”），或先找回原账号：", *_explain_buttons(ctx))


def _explain_buttons(ctx: Ctx) -> tuple[Button, ...]:
    """The guide, the routes still open, and the way back to the old account."""
    return (Button("帮我选择途径", "guide"), *route_buttons(ctx), Button("先找回用户名核实", "flow:recover_username"),
            Button("找回原账号的密码", "flow:recover_password"))


def ask_pick(ctx: Ctx) -> Reply:
    """Offer the routes directly."""
    return ctx.say("请选择完成身份核验的途径：", *route_buttons(ctx), Button("帮我选择途径", "guide"))


def got_route(ctx: Ctx, inp: Input) -> Outcome:
    """Start the guide or the picked route."""
    options = {"guide": "帮我选择途径", **{b.payload: b.label for b in route_buttons(ctx)}}
    for n, (r, label) in enumerate(ROUTES.items(), start=1):
        options.setdefault(f"route:{r}", label)
        if _route_typed(inp, n) and f"route:{r}" in options:
            return _take_route(ctx, r)
    named = _route_named(inp)
    if named is not None and f"route:{named}" in options:
        return _take_route(ctx, named)
    if inp.kind == "text" and _WANTS_GUIDE.search(command_word(inp.text)):
        return Goto("guide_state")
    picked = choose(inp, options, "请点选一种途径，或点“帮我选择途径”。")
    if picked == "guide":
        return Goto("guide_state")
    return _take_route(ctx, picked.removeprefix("route:"))


# what people call each route when they type a choice (我想用APP验证, 找同学帮我吧)
ROUTE_WORDS = {
    "app": ("app", "自助验证", "实人验证", "刷脸", "人脸识别"),
    "manual_review": ("客服", "人工审核", "上传身份证", "身份证照片", "拍身份证"),
    "classmate": ("同学",),
    "student_record": ("学籍", "学历", "学号", "证书编号"),
}
# asking to be helped to choose: 你帮我选吧, 不知道选哪个, 哪种合适？, 推荐一个
_WANTS_GUIDE = re.compile(r"[帮替给]我[选挑]|推荐|不知道[选用该]|选不[好出来了]|[不没]确定|拿不定|哪[个种条样](?:途径|方式|办法|方法)?最?[好合适方便快简容]|怎么选|选哪")


def _route_named(inp: Input) -> str | None:
    """The one route a typed choice names (我想用APP验证); None for a question about one (APP验证要多久？),
    a refusal (不想找同学) or a text naming several."""
    if inp.kind != "text" or asks(inp.text):
        return None
    typed = command_word(inp.text)
    if NEGATION.search(typed):
        return None
    named = [r for r, words in ROUTE_WORDS.items() if any(w in typed for w in words)]
    return named[0] if len(named) == 1 else None


# a route chosen by its number: 途径4, 第四种, 我选第四个, 选途径四吧, 用4号途径, 那我走途径1吧
_ROUTE_NUMBER = re.compile(r"(?:那)?(?:我)?(?:就)?(?:要|想)?(?:选|用|选择|走)?(?:(?:第|途径|方式|方法)([1-4一二三四])(?:个|种|条|号)?"
                           r"|([1-4一二三四])(?:个|种|条|号))(?:途径|方式|方法|办法)?(?:吧|了|啊|呀)?")


def _route_typed(inp: Input, n: int) -> bool:
    """True when the user typed route N by its number (途径N, 第N种, 我选第N个; N in digits or 一–四), with 选/选N
    for short."""
    typed = command_word(inp.text)
    said = _ROUTE_NUMBER.fullmatch(typed)
    number = (said.group(1) or said.group(2)) if said else typed.removeprefix("选") if typed.startswith("选") else ""
    return number in (str(n), "一二三四"[n - 1])


def _take_route(ctx: Ctx, route: str) -> Goto:
    """Remember the route and make sure the user is logged in for it."""
    if route == "student_record" and ctx.data.get("attempts_left") == 0:
        return Goto("pick", (ctx.say("途径4 的次数已用完，请选择途径1–3。"),))
    ctx.data["route"] = route
    return Goto("status") if ctx.token else require_login(ctx, "status")


def _recommend(ctx: Ctx, route: str) -> Outcome:
    """Say which route fits the answers, then take it."""
    outcome = _take_route(ctx, route)
    return Goto(outcome.step, (ctx.say(f"根据您的回答，建议使用**{ROUTES[route]}**。"),) + outcome.say)


def guide_state(ctx: Ctx) -> Outcome:
    """Before guiding, learn what the service knows (route 4's attempts) when logged in."""
    if ctx.token:
        identity = ctx.accounts.identity(ctx.token)
        ctx.data["attempts_left"] = identity.route4_attempts_left
        if identity.status != "pending_identity":
            return status_finish(ctx, identity)
    return Goto("guide_app")


def ask_guide_app(ctx: Ctx) -> Reply:
    """Guide question 1: the 学信网 APP."""
    return ctx.say("您能在手机上下载并使用**学信网 APP** 吗？", *YES_NO, PICK)


def got_guide_app(ctx: Ctx, inp: Input) -> Outcome:
    """Yes → route 1; no → next question."""
    return _recommend(ctx, "app") if yes_no(inp) else Goto("guide_photo")


def ask_guide_photo(ctx: Ctx) -> Reply:
    """Guide question 2: an ID photo."""
    return ctx.say("您现在能拍摄并上传**身份证照片**吗？", *YES_NO, PICK)


def got_guide_photo(ctx: Ctx, inp: Input) -> Outcome:
    """Yes → route 2; no → next question."""
    return _recommend(ctx, "manual_review") if yes_no(inp) else Goto("guide_classmate")


def ask_guide_classmate(ctx: Ctx) -> Reply:
    """Guide question 3: a classmate with an account."""
    return ctx.say("您有**大学同班同学**拥有学信网账号，并愿意登录后协助您吗？", *YES_NO, PICK)


def got_guide_classmate(ctx: Ctx, inp: Input) -> Outcome:
    """Yes → route 3; no → route 4's question while it has attempts left."""
    if yes_no(inp):
        return _recommend(ctx, "classmate")
    return Goto("guide_record") if ctx.data.get("attempts_left") != 0 else _none_fits(ctx)


def ask_guide_record(ctx: Ctx) -> Reply:
    """Guide question 4: a student or graduate who knows the numbers."""
    return ctx.say("您是在校生并知道自己的**学号**，或是毕业生并知道**毕业证书编号**吗？", *YES_NO, PICK)


def got_guide_record(ctx: Ctx, inp: Input) -> Outcome:
    """Yes → route 4; no → a person can help."""
    return _recommend(ctx, "student_record") if yes_no(inp) else _none_fits(ctx)


def _none_fits(ctx: Ctx) -> Goto:
    """No route fits the answers: the picker, and a person."""
    return Goto("pick", (ctx.say("这几种途径目前看都不太方便。您仍可以选择其中一种，或联系人工客服协助。",
                                 Button("转人工客服", "handoff")),))


# a route's step the user says they cannot get through (刷脸一直失败, 手边没有身份证, 我没有学号, 证书编号我忘了),
# or asks what to do at (那怎么办)
_UNABLE = re.compile(r"没有|没法|没办法|无法|不能|不会|失败|不通过|没通过|过不了|打不开|装不了|用不了|找不到|闪退|不行|"
                     r"不知道|不记得|忘了|忘记|记不清|想不起|丢了|问不到|联系不上|怎么办|咋办|咋整|点算")


def with_route_picker(handle: Handler) -> Handler:
    """The answer-handler ``handle``, except that "直接选择途径" / "换其他途径" (pressed or typed) go to the route picker,
    and an answer it refuses that says the step cannot be done points to another route or a person."""

    @functools.wraps(handle)
    def or_pick(ctx: Ctx, inp: Input) -> Outcome:
        if inp.payload == "pick" or (inp.kind == "text" and inp.text.strip() in (PICK.label, OTHER_ROUTE.label)):
            return Goto("pick")
        try:
            return handle(ctx, inp)
        except Invalid:
            if inp.kind == "text" and _UNABLE.search(command_word(inp.text)):
                raise Invalid("这一步暂时做不了的话，可以点“换其他途径”选择别的核验方式，或输入“转人工”请客服协助。", answers=True) from None
            raise

    return or_pick


# ---- logged in: status ------------------------------------------------------------------

def status_text(identity: Identity) -> str:
    """The identity status in words; route 4's attempts only while the account still needs verifying."""
    state = {"active": "已通过身份核验，可正常使用", "pending_identity": "待核验身份",
             "cancelled": "已注销"}.get(identity.status, identity.status)
    if identity.status != "pending_identity":
        return f"账号状态：**{state}**。"
    return (f"账号状态：**{state}**。途径4（提供学籍或学历信息）还可使用 **{identity.route4_attempts_left}** 次"
            f"（一个证件号码最多 3 次，已用 {identity.route4_attempts_used} 次）。")


def status_finish(ctx: Ctx, identity: Identity) -> Finish:
    """The end of the flow for an account that needs no verification (active or cancelled)."""
    if identity.status == "active":
        return Finish((ctx.say("您的账号已通过身份核验，可以正常使用，无需再处理证件号码重复。"),))
    return Finish((ctx.say("这个账号已被注销，无法再进行身份核验。如需帮助，可以联系人工客服。",
                           Button("转人工客服", "handoff")),))


def show_status(ctx: Ctx) -> Outcome:
    """Fetch the identity status and go to the chosen route."""
    identity = ctx.accounts.identity(ctx.token or "")
    ctx.data["attempts_left"] = identity.route4_attempts_left
    if identity.status != "pending_identity":
        return status_finish(ctx, identity)
    say = (ctx.say(status_text(identity)),)
    route = ctx.data["route"]
    if route == "student_record" and identity.route4_attempts_left <= 0:
        return Goto("pick", say + (ctx.say("途径4 的 3 次机会已用完，请选择途径1–3 完成核验。"),))
    return Goto(ROUTE_START[route], say)


# ---- confirmation before cancelling other accounts (routes 1, 2 and 3) -----------------

def ask_confirm(ctx: Ctx) -> Reply:
    """State what will be cancelled and ask for an explicit confirmation."""
    return ctx.say(f"{CANCEL_WARNING}\n\n确认继续{ROUTES[ctx.data['route']]}吗？",
                   Button("我已了解，确认继续", "confirm"), OTHER_ROUTE)


# the clauses of a typed confirmation besides a yes: 明白，确认; 我了解了，继续吧 (the button's 我已了解，确认继续)
_UNDERSTOOD = re.compile(r"(我)?(已经?)?(了解|明白|清楚|知道)(了)?")
_GOES_ON = re.compile(r"(确认|同意|继续)(继续)?(吧|了)?")


def _consents(text: str) -> bool:
    """Every clause is a yes, 确认/继续, or says the warning is understood, and one of them says go on."""
    clauses = [command_word(c) for c in clauses_of(text)]
    go_on = [c for c in clauses if typed_yes_no(c) or _GOES_ON.fullmatch(c)]
    return bool(go_on) and all(c in go_on or _UNDERSTOOD.fullmatch(c) for c in clauses)


def confirmed(then: str) -> Handler:
    """An answer-handler that continues to ``then`` only on an explicit confirmation."""

    def got_confirm(ctx: Ctx, inp: Input) -> Outcome:
        """Continue on a confirmation (button, a typed yes, or 明白，确认); a typed no goes back to the routes."""
        if inp.kind == "text" and _consents(inp.text):
            return Goto(then)
        picked = choose(inp, {"confirm": "我已了解，确认继续", "确认": "确认继续"},
                        "需要您明确确认后才能继续：请点“我已了解，确认继续”（或回复“确认”），或点“换其他途径”。",
                        yes="confirm", no="pick")
        if picked == "pick":
            return Goto("pick", (ctx.say(f"好的，不使用{ROUTES[ctx.data['route']]}。"),))
        return Goto(then)

    return with_route_picker(got_confirm)


# ---- route 1: APP ----------------------------------------------------------------------

def start_app(ctx: Ctx) -> Outcome:
    """Fetch the APP instructions for this account."""
    steps = ctx.accounts.start_app_verification(ctx.token or "", idempotency_key=ctx.idempotency_key)
    return Goto("app_wait", (ctx.say(steps),))


def ask_app_done(ctx: Ctx) -> Reply:
    """Wait for the user to finish in the APP."""
    return ctx.say("按上面的步骤在学信网 APP 中完成验证后，请点击“我已完成”。",
                   Button("我已完成", "done"), OTHER_ROUTE)


def got_app_done(ctx: Ctx, inp: Input) -> Outcome:
    """Check the status once the user says it is done."""
    if inp.kind == "text" and says_done(inp.text):
        return Goto("app_check")
    choose(inp, {"done": "我已完成", "完成": "已完成"}, "完成 APP 验证后请点击“我已完成”（或回复“完成了”）。",
           yes="done")
    return Goto("app_check")


# the user saying the verification in the APP is done (完成了, 我已经验证完了, APP里弄好了), not that it is not (还没弄好)
_APP_DONE = re.compile(r"完成|完了|好了|搞定|弄好|做完|通过了|成功|验证了|已验证|验过|ok了|done")
_NOT_DONE = re.compile(r"[没不未]|失败")


def says_done(text: str) -> bool:
    """The typed text says the step is done (我已经验证完了); not a question or a no."""
    typed = command_word(text)
    return bool(_APP_DONE.search(typed)) and not _NOT_DONE.search(typed) and not asks(text)


def check_app(ctx: Ctx) -> Outcome:
    """Finish when the account is active, else keep waiting."""
    identity = ctx.accounts.identity(ctx.token or "")
    if identity.status == "active":
        return Finish((ctx.say("验证已通过，您的账号现在可以正常使用了。"),))
    return Goto("app_wait", (ctx.say("暂时还没有查到验证通过的结果。请确认已在 APP 中点击“我的”完成登录验证，稍后再点“我已完成”。"),))


# ---- route 2: manual review by staff ------------------------------------------------

def ask_photo(ctx: Ctx) -> Reply:
    """Ask for the ID photo as an image."""
    return ctx.say("请按要求上传有效的**身份证照片**。客服审核由学信网进行人工处理。\n\n"
                   f"（本助手接收 JPG 或 PNG 格式的图片，不超过 {MAX_IMAGE_BYTES // (1024 * 1024)} MB。）",
                   OTHER_ROUTE)


def got_photo(ctx: Ctx, inp: Input) -> Outcome:
    """Keep a JPEG/PNG photo within the contract's size limit until it is submitted."""
    if inp.kind != "image" or inp.image is None:
        raise Invalid("这一步需要上传一张身份证照片（图片），请发送图片。")
    data = inp.image.data
    if not (data.startswith(b"\xff\xd8\xff") or data.startswith(b"\x89PNG\r\n\x1a\n")):
        raise Invalid("无法识别这张图片，请上传 JPG 或 PNG 格式的身份证照片。")
    if len(data) > MAX_IMAGE_BYTES:
        raise Invalid(f"照片超过本助手接收的 {MAX_IMAGE_BYTES // (1024 * 1024)} MB，请压缩或重新拍摄后上传。")
    ctx.data["photo"] = pack_image(inp.image)
    return Goto("photo_submit")


def submit_photo(ctx: Ctx) -> Outcome:
    """Send the photo to the staff review and give the ticket."""
    image = unpack_image(ctx.data["photo"])
    try:
        review = ctx.accounts.submit_manual_review(ctx.token or "", image.data, image.filename,
                                                   image.content_type, idempotency_key=ctx.idempotency_key)
    except BadImage as e:
        ctx.data.pop("photo", None)
        return Goto("photo", (ctx.say(md(e.message) if e.message else "照片不符合要求，请重新上传。"),))
    ctx.data.pop("photo", None)
    return Finish((ctx.say(
        f"照片已提交，审核单号：**{md(review.ticket_id)}**。\n\n"
        "请等待客服审核，审核通过后您才可以进入实名信息绑定步骤。您可以在学信网左侧菜单"
        "“证件重复-客服审核”关注审核进度，也可以随时在这里发送“查询审核进度”。",
        Button("查询审核进度", "flow:review_status")),))


# ---- route 3: a classmate helps --------------------------------------------------------

def ask_classmate_name(ctx: Ctx) -> Reply:
    """Ask for the classmate's name."""
    return ctx.say("请输入协助您的**大学同班同学的姓名**：", OTHER_ROUTE)


def got_classmate_name(ctx: Ctx, inp: Input) -> Outcome:
    """Keep what looks like a name."""
    ctx.data["classmate_name"] = person_name(text_of(inp), "同学的姓名")
    return Goto("classmate_username")


def ask_classmate_username(ctx: Ctx) -> Reply:
    """Ask for the classmate's username."""
    return ctx.say("请输入这位同学的学信网**用户名**：")


def got_classmate_username(ctx: Ctx, inp: Input) -> Outcome:
    """Keep a well-formed username."""
    ctx.data["classmate_username"] = field_value(validation.username, said_value(text_of(inp), USERNAME_NAMES))
    return Goto("classmate_send")


def send_classmate_request(ctx: Ctx) -> Outcome:
    """Send the assistance request."""
    try:
        ctx.accounts.request_classmate(ctx.token or "", ctx.data["classmate_name"],
                                       ctx.data["classmate_username"], idempotency_key=ctx.idempotency_key)
    except NotFound:
        return Goto("classmate_name", (ctx.say("没有找到姓名和用户名都相符的同学账号，请核对后重新输入。"),))
    return Finish((ctx.say(
        "协助请求已发送。请这位同学登录自己的账号，在学信网【账号管理】页面右上角的收件箱处理；"
        "也可以让同学在这里发送“协助请求”，登录后查看并同意。"
        "您可以随时发送“查询审核进度”查看结果。",
        Button("查询审核进度", "flow:review_status")),))


# ---- route 4: student or graduate record ------------------------------------------------

def ask_record_kind(ctx: Ctx) -> Reply:
    """Enrolled student or graduate."""
    return ctx.say("您是在校生还是毕业生？", *(Button(v, f"kind:{k}") for k, v in KINDS.items()), OTHER_ROUTE)


def got_record_kind(ctx: Ctx, inp: Input) -> Outcome:
    """Keep the kind of record."""
    said = _kind_said(inp.text) if inp.kind == "text" else None
    picked = said or choose(inp, {f"kind:{k}": v for k, v in KINDS.items()}, "请选择“在校生”或“毕业生”。", ordered=True)
    ctx.data["record_kind"] = picked.removeprefix("kind:")
    return Goto("record_school")


def _kind_said(text: str) -> str | None:
    """The kind of record the user's words say (我还在读大三: enrolled; 已经毕业了: graduate); None for a question
    or words saying neither or both."""
    typed = command_word(text)
    if asks(text):
        return None
    if _SAYS_ENROLLED.search(typed):
        return None if _SAYS_GRADUATE.search(_SAYS_ENROLLED.sub("", typed)) else "kind:enrolled"
    return "kind:graduate" if _SAYS_GRADUATE.search(typed) else None


def ask_record_school(ctx: Ctx) -> Reply:
    """Ask for the school's full name."""
    return ctx.say("请输入**院校名称**（全称，例如“北京大学”）：")


# what the full name of a school in 学信网's records holds (大学, 学院, 职业技术学校, 研究生院, 党校, …分校)
_SCHOOL = re.compile(r"大学|学院|学校|研究院|研究所|研究生院|党校|分校|校区")


def got_record_school(ctx: Ctx, inp: Input) -> Outcome:
    """Keep a plausible school name (in simplified characters, as 学信网's records of mainland schools are)."""
    typed = said_value(unicodedata.normalize("NFKC", text_of(inp)), r"学校名称|院校名称|学校全称|院校全称|学校|院校")
    school = to_simplified(re.sub(r"\s+", "", typed))
    if not re.fullmatch(r"[\u3400-\u9fffA-Za-z()（）·\-]{2,50}", school):
        raise Invalid("院校名称应为 2–50 个汉字或字母（可含括号），请输入学校全称。")
    if re.fullmatch(r"[\u3400-\u9fff]{2,3}", school):   # 北大, 复旦: a short name, which the records do not use
        raise Invalid(f"“{school}”像是简称，请输入学校的**全称**（例如“北京大学”），要与学籍学历信息中的院校名称一致。")
    if not _SCHOOL.search(school):   # (学校全称记不清了, 我也不确定: no name)
        raise Invalid("请输入学籍学历信息中的院校全称，例如“北京大学”“北京师范大学珠海分校”“上海工程技术学院”。")
    ctx.data["record_school"] = school
    return _next_field(ctx, "record_number")


def _number_label(ctx: Ctx) -> str:
    """学号 for a student, 证书编号 for a graduate."""
    return "学号" if ctx.data["record_kind"] == "enrolled" else "证书编号"


def ask_record_number(ctx: Ctx) -> Reply:
    """Ask for the student number or the certificate number."""
    return ctx.say(f"请输入您的**{_number_label(ctx)}**：")


def got_record_number(ctx: Ctx, inp: Input) -> Outcome:
    """Keep 4–30 letters or digits."""
    typed = said_value(unicodedata.normalize("NFKC", text_of(inp)), r"学号|毕业证书编号|毕业证编号|证书编号|证书号|编号")
    number = re.sub(r"[\s-]+", "", typed).upper()
    if not re.fullmatch(r"[A-Z0-9]{4,30}", number):
        raise Invalid(f"{_number_label(ctx)}应为 4–30 位字母或数字，请核对后重新输入。")
    ctx.data["record_number"] = number
    return _next_field(ctx, "record_year")


def _year_label(ctx: Ctx) -> str:
    """入学年份 for a student, 毕业年份 for a graduate."""
    return "入学年份" if ctx.data["record_kind"] == "enrolled" else "毕业年份"


def ask_record_year(ctx: Ctx) -> Reply:
    """Ask for the 4-digit enrolment or graduation year."""
    return ctx.say(f"请输入**{_year_label(ctx)}**（4 位数字，例如 2020）：")


def got_record_year(ctx: Ctx, inp: Input) -> Outcome:
    """Keep a year (2017, or a date: 2017年9月入学) between 1949 and this year."""
    typed = unicodedata.normalize("NFKC", text_of(inp)).strip()
    dated = re.fullmatch(r"(\d{4})(?:\s*年(?:\s*\d{1,2}\s*月份?)?|\s*[./-]\s*\d{1,2})?\s*(?:入学|毕业)?", typed)   # 2017年9月入学
    typed = dated.group(1) if dated else typed
    this_year = dt.datetime.fromtimestamp(ctx.now).year
    if not re.fullmatch(r"\d{4}", typed):
        raise Invalid(f"{_year_label(ctx)}请填写 4 位数字，例如 2020。")
    if not FIRST_YEAR <= int(typed) <= this_year:
        raise Invalid(f"{_year_label(ctx)}应在 {FIRST_YEAR}–{this_year} 年之间，请核对。")
    ctx.data["record_year"] = int(typed)
    return _next_field(ctx, "record_level")


def ask_record_level(ctx: Ctx) -> Reply:
    """Offer the education levels as buttons."""
    return ctx.say("请选择**学历层次**：", *(Button(level, f"level:{level}") for level in LEVELS))


def got_record_level(ctx: Ctx, inp: Input) -> Outcome:
    """Keep one of the four levels."""
    picked = choose(inp, {f"level:{level}": level for level in LEVELS}, "请从下方按钮中选择学历层次。", aliases=LEVEL_ALIASES,
                    ordered=True)
    ctx.data["record_level"] = picked.removeprefix("level:")
    return _next_field(ctx, "record_review")


def ask_record_review(ctx: Ctx) -> Reply:
    """Show the record (masked), the attempts left and the cancellation warning."""
    d = ctx.data
    number = d["record_number"]
    keep = 2 if len(number) >= 8 else 1  # never more than half of the number shown
    masked = number[:keep] + "*" * (len(number) - 2 * keep) + number[-keep:]
    return ctx.say(
        f"请核对：{KINDS[d['record_kind']]}，{md(d['record_school'])}，{_number_label(ctx)} {md(masked)}，"
        f"{_year_label(ctx)} {d['record_year']}，{d['record_level']}。\n\n"
        f"途径4 还可使用 **{d.get('attempts_left', 0)}** 次（一个证件号码最多 3 次）。\n\n{CANCEL_WARNING}",
        Button("确认提交", "confirm"), Button("重新填写", "edit"), OTHER_ROUTE)


def _next_field(ctx: Ctx, step: str) -> Goto:
    """The form's next field; after correcting one field from the review (学号输错了), the review again."""
    if ctx.data.pop("record_editing", False) and all(k in ctx.data for k in STUDENT_RECORD_KEYS):
        return Goto("record_review")
    return Goto(step)


# a field of the form the user says is wrong at the review (学号我好像输错了, 入学年份要改一下)
_FIELDS_NAMED = (("record_school", re.compile(r"学校|院校|校名")), ("record_number", re.compile(r"学号|证书|编号")),
                 ("record_year", re.compile(r"年份|入学|哪年|年")), ("record_level", re.compile(r"层次|专科|本科|硕士|博士|研究生")))
_SAYS_WRONG = re.compile(r"错|改|不对|修改|更正|重新")


def got_record_review(ctx: Ctx, inp: Input) -> Outcome:
    """Submit on explicit confirmation; "重新填写" starts the record again, a field said to be wrong is asked again."""
    typed = command_word(inp.text) if inp.kind == "text" else ""
    if _SAYS_WRONG.search(typed) and not asks(inp.text):
        named = [step for step, said in _FIELDS_NAMED if said.search(typed)]
        if len(named) == 1:
            ctx.data["record_editing"] = True
            return Goto(named[0], (ctx.say("好的，请重新填写这一项，其他信息保持不变。"),))
        return Goto("record_kind", (ctx.say("好的，我们重新填写。"),))
    picked = choose(inp, {"confirm": "确认提交", "edit": "重新填写"},
                    "请点“确认提交”提交核对，或点“重新填写”修改。", yes="confirm", no="edit")
    return Goto("record_submit" if picked == "confirm" else "record_kind")


def submit_record(ctx: Ctx) -> Outcome:
    """Submit the record; a mismatch shows the attempts left."""
    d = ctx.data
    enrolled = d["record_kind"] == "enrolled"
    record = StudentRecord(
        kind="enrolled" if enrolled else "graduate", school=d["record_school"], level=d["record_level"],
        student_no=d["record_number"] if enrolled else None,
        enrolment_year=d["record_year"] if enrolled else None,
        certificate_no=None if enrolled else d["record_number"],
        graduation_year=None if enrolled else d["record_year"])
    try:
        ctx.accounts.submit_student_record(ctx.token or "", record, idempotency_key=ctx.idempotency_key)
    except (RecordMismatch, AttemptsExhausted) as e:
        for k in STUDENT_RECORD_KEYS:
            d.pop(k, None)
        left = e.attempts_left if isinstance(e, RecordMismatch) and e.attempts_left is not None else 0
        d["attempts_left"] = left
        if left <= 0:
            return Goto("pick", (ctx.say("信息核对未通过，途径4 的 3 次机会已用完。请选择途径1–3 完成核验。"),))
        return Goto("record_kind", (ctx.say(f"信息核对未通过，途径4 还可使用 {left} 次。请核对后重新填写。"),))
    for k in STUDENT_RECORD_KEYS:
        d.pop(k, None)
    return Finish((ctx.say("学籍/学历信息核对正确，身份核验已通过，您的账号现在可以正常使用了。"),))


ID_DUPLICATE = Flow(
    name="id_duplicate",
    title="解决证件号码已被注册",
    first="explain",
    steps={
        "explain": Ask(ask_explain, got_route, again=ask_explain_again),
        "pick": Ask(ask_pick, got_route),
        "guide_state": Act(guide_state),
        "guide_app": Ask(ask_guide_app, with_route_picker(got_guide_app), yes_no=True),
        "guide_photo": Ask(ask_guide_photo, with_route_picker(got_guide_photo), yes_no=True),
        "guide_classmate": Ask(ask_guide_classmate, with_route_picker(got_guide_classmate), yes_no=True),
        "guide_record": Ask(ask_guide_record, with_route_picker(got_guide_record), yes_no=True),
        **login_steps(),
        "status": Act(show_status),
        "app_confirm": Ask(ask_confirm, confirmed("app_start"), yes_no=True),
        "app_start": Act(start_app),
        "app_wait": Ask(ask_app_done, with_route_picker(got_app_done)),
        "app_check": Act(check_app),
        "photo_confirm": Ask(ask_confirm, confirmed("photo"), yes_no=True),
        "photo": Ask(ask_photo, with_route_picker(got_photo), expects="image", private=True),
        "photo_submit": Act(submit_photo),
        "classmate_confirm": Ask(ask_confirm, confirmed("classmate_name"), yes_no=True),
        "classmate_name": Ask(ask_classmate_name, with_route_picker(got_classmate_name), private=True, loose=True),
        "classmate_username": Ask(ask_classmate_username, with_route_picker(got_classmate_username), private=True),
        "classmate_send": Act(send_classmate_request),
        "record_kind": Ask(ask_record_kind, with_route_picker(got_record_kind)),
        "record_school": Ask(ask_record_school, with_route_picker(got_record_school), loose=True),
        "record_number": Ask(ask_record_number, with_route_picker(got_record_number), private=True),
        "record_year": Ask(ask_record_year, with_route_picker(got_record_year)),
        "record_level": Ask(ask_record_level, with_route_picker(got_record_level)),
        "record_review": Ask(ask_record_review, with_route_picker(got_record_review), yes_no=True),
        "record_submit": Act(submit_record),
    },
    relogin=relogin,
)

# the button that starts this flow, where a reply outside it points here (an image sent, no verification under way)
START = Button(ID_DUPLICATE.title, f"flow:{ID_DUPLICATE.name}")
