"""Data inserted into replies (masked phones and numbers, names, service messages) stays literal in
every renderer: Telegram HTML, the widget's block tree, plain text."""
from __future__ import annotations

import pytest

from channels import render
from handlers.types import md

from support import login
from support.flows import ZS2_PHONE, ZS_ID, route4_fill, start_dup


@pytest.mark.parametrize("value", ["138****8001、138****8002", "17**45", "张*", "a\\b [x](https://e.com) **y**"])
def test_escaped_data_renders_literally_everywhere(value):
    text = f"数据：{md(value)}，**粗体**"
    assert render.telegram_chunks(text) == [f"数据：{value.replace('&', '&amp;').replace('<', '&lt;')}，<b>粗体</b>"]
    assert render.to_json(text) == [{"type": "p", "lines": [[{"text": f"数据：{value}，"},
                                                              {"text": "粗体", "bold": True}]]}]
    assert render.plain_text(text) == f"数据：{value}，粗体"


def test_maintainers_can_escape_markup_in_answers():
    assert render.to_json("\\- 不是列表，\\*号") == [{"type": "p", "lines": [[{"text": "- 不是列表，*号"}]]}]


def test_recover_username_reply_names_no_phone_and_renders_plainly(chat):
    chat.say("忘记用户名")
    chat.press("开始找回用户名")
    for answer in ("张三", "居民身份证", ZS_ID):
        chat.say(answer)
    html = "".join(render.telegram_chunks(chat.replies[-1].text))
    assert "该账号绑定的手机" in html and "****" not in html and "<b>" not in html  # enumeration-proof wording


def test_a_masked_student_number_reaches_telegram_intact(chat, acc):
    start_dup(chat)
    chat.press("途径4")
    login(chat, acc, "zhangsan02", ZS2_PHONE)
    route4_fill(chat, "在校生", "北京大学", "17000045", "2017", "本科")
    html = "".join(render.telegram_chunks(chat.replies[-1].text))
    assert "学号 17****45" in html
    chat.press("重新填写")
    route4_fill(chat, "在校生", "北京大学", "1745", "2017", "本科")
    assert "学号 1**5" in "".join(render.telegram_chunks(chat.replies[-1].text))  # at most half shown
