"""The guided flows by name, and how an FAQ answer offers one."""
from __future__ import annotations

import re
from dataclasses import dataclass

from handlers.types import Button
from intents.normalize import to_simplified

from .account import BIND_ACCOUNT, CLASSMATE_INBOX, REVIEW_STATUS
from .base import Ask, Flow, step_targets
from .id_duplicate import ID_DUPLICATE
from .recover import RECOVER_PASSWORD, RECOVER_USERNAME

FLOWS: dict[str, Flow] = {f.name: f for f in (
    RECOVER_USERNAME, RECOVER_PASSWORD, ID_DUPLICATE, BIND_ACCOUNT, CLASSMATE_INBOX, REVIEW_STATUS)}


@dataclass(frozen=True)
class Offer:
    """What an FAQ answer whose entry names ``offer:`` adds: a question and a button starting ``flow`` (which a
    typed yes starts too), ``also`` buttons for who asks from the other side (the classmate asked to help), and
    ``helper``, the offer made instead when the question is asked from that side (同学让我帮他验证)."""

    question: str
    label: str
    flow: str
    also: tuple[Button, ...] = ()
    helper: "Offer | None" = None


OFFERS: dict[str, Offer] = {
    "recover_username": Offer("需要我一步步帮您找回用户名吗？", "开始找回用户名", "recover_username"),
    "recover_password": Offer("需要我一步步帮您找回密码吗？", "开始找回密码", "recover_password"),
    "id_duplicate": Offer("需要我一步步帮您解决证件号码重复吗？", "开始解决证件号码重复", "id_duplicate"),
    "phone_registered": Offer("要先找回用户名吗？", "找回用户名", "recover_username"),
    "bind_account": Offer("需要我帮您绑定微信或支付宝吗？", "开始绑定", "bind_account"),
    "review_status": Offer("需要我帮您查询审核进度吗？", "查询审核进度", "review_status"),
    "classmate": Offer("需要我一步步帮您发送同学协助请求吗？如果是同学请您协助，可以点“处理同学的协助请求”。",
                       "开始解决证件号码重复", "id_duplicate", also=(Button("处理同学的协助请求", "flow:classmate_inbox"),),
                       helper=Offer("需要我帮您处理同学发来的协助请求吗？如果是您自己需要同学协助，可以点“开始解决证件号码重复”。",
                                    "处理同学的协助请求", "classmate_inbox",
                                    also=(Button("开始解决证件号码重复", "flow:id_duplicate"),))),
}

# the question comes from the one asked to help (同学让我帮他验证, 帮同学点协助, 我收到了协助请求), not the one asking
_HELPER = re.compile(r"(同学|朋友|舍友|室友|同事|他|她|人)(让|请|叫|找|要|求)我(帮|协助|去|给)|"
                     r"帮(我的?)?(同学|舍友|室友|朋友|他|她|别人)(协助|验证|核验|点|处理|确认|弄)|"
                     r"收到(了)?(同学的?|一个|一条|个)?协助请求|(发|给)(了)?(我|给我).{0,4}协助请求")


def offer_for(key: str | None, text: str, flow: str | None = None) -> Offer | None:
    """The offer an entry's ``offer:`` key makes to the question ``text``: its helper's side when the text is asked
    from there, or when ``flow`` (the offer made before) is that side's."""
    offer = OFFERS.get(key or "")
    if offer is None or offer.helper is None:
        return offer
    return offer.helper if flow == offer.helper.flow or _HELPER.search(to_simplified(text)) else offer

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
