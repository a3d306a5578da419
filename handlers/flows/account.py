"""Logged-in helpers: bind WeChat/Alipay (topics 7, 9), the classmate's inbox, review progress."""
from __future__ import annotations

from accounts.base import Conflict, TooFrequent
from accounts.contract import PROVIDERS
from handlers.types import Button, Reply, md

from .base import Act, Ask, Ctx, Finish, Flow, Goto, Input, Outcome, choose, command_word, plain_wait
from .common import login_steps, relogin, require_login
from .id_duplicate import START as START_DUPLICATE, status_text


# ---- bind WeChat / Alipay ----------------------------------------------------------------

def bind_start(ctx: Ctx) -> Outcome:
    """Ask which provider, unless the question that led here named one (我想绑定微信)."""
    provider = ctx.data.get("provider")
    if provider not in PROVIDERS:
        return Goto("provider")
    then = require_login(ctx, "bind")
    return Goto(then.step, (ctx.say(f"将为您绑定**{PROVIDERS[provider]}**（要绑定另一个的话，请输入“重新开始”）。"),))


def provider_named(question: str) -> dict[str, str]:
    """The one provider a question names (我想绑定微信: wechat); none for both or neither."""
    said = command_word(question)
    named = [k for k, label in PROVIDERS.items() if command_word(label) in said]
    return {"provider": named[0]} if len(named) == 1 else {}


def ask_provider(ctx: Ctx) -> Reply:
    """WeChat or Alipay."""
    return ctx.say("要绑定哪一个？绑定后即可用它扫码登录学信网。",
                   *(Button(v, f"provider:{k}") for k, v in PROVIDERS.items()))


def got_provider(ctx: Ctx, inp: Input) -> Outcome:
    """Keep the provider and log in."""
    picked = choose(inp, {f"provider:{k}": v for k, v in PROVIDERS.items()}, "请选择“微信”或“支付宝”。", ordered=True)
    ctx.data["provider"] = picked.removeprefix("provider:")
    return require_login(ctx, "bind")


def bind(ctx: Ctx) -> Outcome:
    """Get the QR link, honouring the 2-hour wait."""
    provider = ctx.data["provider"]
    label = PROVIDERS[provider]
    try:
        url = ctx.accounts.bind(ctx.token or "", provider, idempotency_key=ctx.idempotency_key)  # type: ignore[arg-type]
    except TooFrequent as e:
        return Finish((ctx.say(
            f"账号服务暂时不能为这个账号绑定{label}，请{plain_wait(e.retry_after)}再试。\n\n"
            "学信网常见问题中的说明：清除浏览器缓存，先找回用户名和密码，2 小时后再进行微信或支付宝的绑定操作，"
            "绑定成功后方可通过微信或支付宝扫码登录。"),))
    except Conflict as e:
        return Finish((ctx.say(md(e.message) if e.message else f"这个账号暂时无法绑定{label}。"),))
    return Finish((ctx.say(f"请用{label}扫描二维码完成绑定：[打开绑定二维码]({url})\n\n"
                           f"绑定成功后，以后只需用{label}扫码即可登录。"),))


BIND_ACCOUNT = Flow(
    name="bind_account",
    title="绑定微信或支付宝",
    first="bind_start",
    steps={
        "bind_start": Act(bind_start),
        "provider": Ask(ask_provider, got_provider),
        **login_steps(),
        "bind": Act(bind),
    },
    relogin=relogin,
    reads=provider_named,
)


# ---- the classmate's inbox (route 3, the helper's side) --------------------------------------

def inbox_start(ctx: Ctx) -> Outcome:
    """Log in, then list the requests."""
    return require_login(ctx, "inbox_list")


def inbox_list(ctx: Ctx) -> Outcome:
    """Show the next pending request, or say there is none."""
    pending = [r for r in ctx.accounts.inbox(ctx.token or "") if r.status == "pending"]
    if not pending:
        return Finish((ctx.say("目前没有待处理的协助请求。"),))
    ctx.data["request_id"] = pending[0].request_id
    ctx.data["requester"] = pending[0].requester_name
    return Goto("inbox_decide")


def ask_inbox_decide(ctx: Ctx) -> Reply:
    """Ask whether to help the requester."""
    return ctx.say(f"**{md(ctx.data['requester'])}** 请求您协助解决证件号码重复问题。"
                   "请只在确认对方是您的大学同班同学时同意。",
                   Button("同意协助", "accept"), Button("拒绝", "reject"))


def got_inbox_decide(ctx: Ctx, inp: Input) -> Outcome:
    """Keep the decision."""
    ctx.data["accept"] = choose(inp, {"accept": "同意协助", "reject": "拒绝"}, "请选择“同意协助”或“拒绝”。",
                                yes="accept", no="reject") == "accept"
    return Goto("inbox_answer")


def inbox_answer(ctx: Ctx) -> Outcome:
    """Send the decision, then show the next request."""
    ctx.accounts.answer_classmate_request(ctx.token or "", ctx.data["request_id"], ctx.data["accept"],
                                          idempotency_key=ctx.idempotency_key)
    done = "已同意协助，谢谢您！" if ctx.data.pop("accept") else "已拒绝该请求。"
    return Goto("inbox_list", (ctx.say(done),))


CLASSMATE_INBOX = Flow(
    name="classmate_inbox",
    title="处理同学的协助请求",
    first="inbox_start",
    steps={
        "inbox_start": Act(inbox_start),
        **login_steps(),
        "inbox_list": Act(inbox_list),
        "inbox_decide": Ask(ask_inbox_decide, got_inbox_decide, yes_no=True),
        "inbox_answer": Act(inbox_answer),
    },
    relogin=relogin,
)


# ---- review progress (routes 2 and 3) ---------------------------------------------------

REVIEW_WORDS = {"pending": "审核中", "approved": "已通过", "rejected": "未通过"}
REQUEST_WORDS = {"pending": "等待同学处理", "accepted": "同学已同意", "rejected": "同学已拒绝"}


def review_start(ctx: Ctx) -> Outcome:
    """Log in, then show the progress."""
    return require_login(ctx, "review_show")


def review_show(ctx: Ctx) -> Outcome:
    """Show the identity status, the staff review's decision and reason, and classmate requests."""
    identity = ctx.accounts.identity(ctx.token or "")
    lines = [status_text(identity)]
    review = identity.manual_review
    if review:
        reason = f"，原因：{md(review.reason)}" if review.reason else ""
        lines.append(f"客服审核（单号 {md(review.ticket_id)}）：**{REVIEW_WORDS.get(review.status, review.status)}**{reason}。")
    for r in identity.classmate_requests:
        lines.append(f"同学协助请求（{md(r.classmate_username)}）：**{REQUEST_WORDS.get(r.status, r.status)}**。")
    if not review and not identity.classmate_requests:
        lines.append("没有查到客服审核或同学协助的记录。")
    waiting = (review and review.status == "pending") or any(r.status == "pending" for r in identity.classmate_requests)
    if identity.status == "pending_identity" and not waiting:   # nothing under way: the routes are the way on
        lines.append("账号还需要完成身份核验，可以选择一种途径办理。")
        return Finish((ctx.say("\n\n".join(lines), START_DUPLICATE),))
    return Finish((ctx.say("\n\n".join(lines)),))


REVIEW_STATUS = Flow(
    name="review_status",
    title="查询审核进度",
    first="review_start",
    steps={
        "review_start": Act(review_start),
        **login_steps(),
        "review_show": Act(review_show),
    },
    relogin=relogin,
)
