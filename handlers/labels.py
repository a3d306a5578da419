"""Chinese names of guided flows, their steps and FAQ topics, for staff (console, Overview, help-desk views).

A flow's name is its ``title`` (``handlers/flows``); a step's is below. A step without a label
shows its id (``tests/test_overview.py`` checks that every step of every flow has one). A FAQ
topic's name is its ``title`` in ``faq/data/topics``, recorded by ``remember_topics`` whenever the
engine takes a FAQ (start and live reload).
"""
from __future__ import annotations

STEP_LABELS = {
    # identity (找回用户名 / 找回密码)
    "name": "填写姓名", "id_type": "选择证件类型", "id_number": "填写证件号码", "send": "发送用户名短信",
    "username": "填写用户名", "send_code": "发送验证码", "code": "填写短信验证码", "verify": "核对验证码、发送重置链接",
    # 证件号码已被注册
    "explain": "说明情况", "pick": "选择解决途径", "guide_state": "查询可用途径", "guide_app": "引导：学信网APP",
    "guide_photo": "引导：证件照片", "guide_classmate": "引导：同学协助", "guide_record": "引导：学籍学历信息",
    "status": "查询身份状态",
    "app_confirm": "确认（APP 途径）", "app_start": "获取 APP 操作说明", "app_wait": "等待 APP 中完成",
    "app_check": "检查 APP 核验结果",
    "photo_confirm": "确认（照片途径）", "photo": "上传证件照片", "photo_submit": "提交照片审核",
    "classmate_confirm": "确认（同学协助途径）", "classmate_name": "填写同学姓名", "classmate_username": "填写同学用户名",
    "classmate_send": "发送协助请求",
    "record_kind": "选择在读或毕业", "record_school": "填写学校名称", "record_number": "填写学号或证书编号",
    "record_year": "填写入学或毕业年份", "record_level": "选择学历层次", "record_review": "核对学籍学历信息",
    "record_submit": "提交学籍学历信息",
    # login inside a flow
    "login_username": "登录：填写用户名", "login_send": "登录：发送验证码", "login_code": "登录：填写验证码",
    "login_verify": "登录：核对验证码",
    # 绑定 / 同学协助请求 / 审核进度
    "bind_start": "开始绑定", "provider": "选择微信或支付宝", "bind": "获取绑定二维码",
    "inbox_start": "开始处理协助请求", "inbox_list": "查看协助请求", "inbox_decide": "决定是否协助",
    "inbox_answer": "发送协助决定",
    "review_start": "开始查询审核进度", "review_show": "显示审核进度",
}


_TOPIC_TITLES: dict[str, str] = {}


def remember_topics(titles: dict[str, str]) -> None:
    """Record the FAQ's topic titles (intent → title); the last FAQ served wins."""
    _TOPIC_TITLES.update(titles)


def topic_title(topic: str | None) -> str:
    """A hand-off topic (a flow or a FAQ intent) by its Chinese name, or its id when unknown ('' for none)."""
    if not topic:
        return ""
    from .flows import FLOWS

    if topic in FLOWS:
        return FLOWS[topic].title
    return _TOPIC_TITLES.get(topic, topic)


def flow_title(flow: str | None) -> str:
    """The flow's Chinese title, or its id when unknown ('' for none)."""
    if not flow:
        return ""
    from .flows import FLOWS

    f = FLOWS.get(flow)
    return f.title if f is not None else flow


def step_label(step: str | None) -> str:
    """The step's Chinese name, or its id when it has none ('' for none)."""
    return STEP_LABELS.get(step or "", step or "")
