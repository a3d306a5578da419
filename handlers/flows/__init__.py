"""The guided flows by name, and how an FAQ answer offers one."""
from __future__ import annotations

from dataclasses import dataclass

from handlers.types import Button

from .account import BIND_ACCOUNT, CLASSMATE_INBOX, REVIEW_STATUS
from .base import Ask, Flow, step_targets
from .id_duplicate import ID_DUPLICATE
from .recover import RECOVER_PASSWORD, RECOVER_USERNAME

FLOWS: dict[str, Flow] = {f.name: f for f in (
    RECOVER_USERNAME, RECOVER_PASSWORD, ID_DUPLICATE, BIND_ACCOUNT, CLASSMATE_INBOX, REVIEW_STATUS)}


@dataclass(frozen=True)
class Offer:
    """What an FAQ answer whose entry names ``offer:`` adds: a question and a button starting ``flow`` (which a
    typed yes starts too), and ``also`` buttons for who asks from the other side (the classmate asked to help)."""

    question: str
    label: str
    flow: str
    also: tuple[Button, ...] = ()


OFFERS: dict[str, Offer] = {
    "recover_username": Offer("需要我一步步帮您找回用户名吗？", "开始找回用户名", "recover_username"),
    "recover_password": Offer("需要我一步步帮您找回密码吗？", "开始找回密码", "recover_password"),
    "id_duplicate": Offer("需要我一步步帮您解决证件号码重复吗？", "开始解决证件号码重复", "id_duplicate"),
    "phone_registered": Offer("要先找回用户名吗？", "找回用户名", "recover_username"),
    "bind_account": Offer("需要我帮您绑定微信或支付宝吗？", "开始绑定", "bind_account"),
    "review_status": Offer("需要我帮您查询审核进度吗？", "查询审核进度", "review_status"),
    "classmate": Offer("需要我一步步帮您发送同学协助请求吗？如果是同学请您协助，可以点“处理同学的协助请求”。",
                       "开始解决证件号码重复", "id_duplicate", also=(Button("处理同学的协助请求", "flow:classmate_inbox"),)),
}

# Typed commands that start a flow (the seed's menu names and what users say).
COMMANDS: dict[str, str] = {
    "查询审核进度": "review_status",
    "审核进度": "review_status",
    "协助请求": "classmate_inbox",
    "收件箱": "classmate_inbox",
    "查看协助请求": "classmate_inbox",
}


def _check_flow_names() -> None:
    """Every flow named by a ``Switch`` in a step, an offer or a command exists (checked at import)."""
    named = [(f"offer {k}", o.flow) for k, o in OFFERS.items()] + [(f"command {k}", v) for k, v in COMMANDS.items()]
    named += [(f"offer {k}", b.payload.removeprefix("flow:")) for k, o in OFFERS.items() for b in o.also
              if b.payload.startswith("flow:")]
    for flow in FLOWS.values():
        for step_name, step in flow.steps.items():
            for fn in ((step.prompt, step.handle) if isinstance(step, Ask) else (step.run,)):
                named += [(f"flow {flow.name} step {step_name}", t) for t in step_targets(fn, "Switch")]
    unknown = sorted(f"{where} → {name!r}" for where, name in named if name not in FLOWS)
    if unknown:
        raise ValueError("unknown flow(s): " + "; ".join(unknown))


_check_flow_names()
