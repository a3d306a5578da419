"""The widget in real headless Chromium (Playwright), on the demo page served by a real uvicorn.

These tests drive the page as a user would: XSS strings stay text, the IME's Enter
does not send, an unreachable server keeps the typed text, a reload keeps the
conversation, the panel fits a 360 px phone and works from the keyboard.
The last test runs a whole flow (recover username) against the real engine and a
live account sandbox. Screenshots go to test-output/.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from channels.app import create_app
from handlers.types import Button, Message, Reply
from sandbox_fixture import sandbox  # noqa: F401  (the live account sandbox fixture)
from support import RecordingEngine
from support.browser import OUTPUT, XSS
from support.servers import LiveServer

# the browser fixture (and the one Chromium guard): tests/support/browser.py


def scripted(message: Message) -> list[Reply]:
    """The engine double's answers, for the widget's own behaviour (not the bot's)."""
    if message.kind == "button":
        return [Reply(f"您选择了 **{message.payload}**。\n\n1. 第一步\n2. 第二步", flow="demo")]
    if message.kind == "image":
        return [Reply(f"已收到照片（{len(message.image.data)} 字节）。")]
    if message.text == "xss":
        return [Reply(f"答案里有 {XSS} 和 [坏链接](javascript:alert(1)) 以及 [好链接](https://www.chsi.com.cn/)",
                      buttons=(Button(XSS, "x:1"),))]
    if message.text == "照片":
        return [Reply("请上传证件照片。", expects_image=True, flow="demo")]
    return [Reply(f"您说：{message.text}\n\n请选择：", buttons=(Button("找回用户名", "pick:username"),),
                  intent="greeting")]


@pytest.fixture(scope="module")
def engine():
    return RecordingEngine(scripted)


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    cfg = {"web": {"session_secret": "widget-test-secret-0123456789abcdef", "max_text_chars": 100}}
    with LiveServer(create_app(cfg, engine=engine)) as s:
        yield s


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    pg = context.new_page()
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.goto(server.url + "/")
    yield pg
    context.close()


def widget(page: Page):
    return page.locator("#chsi-assistant")


def open_panel(page: Page) -> None:
    page.get_by_role("button", name="在线咨询").click()
    expect(page.get_by_role("dialog", name="学信网账号助手")).to_be_visible()


def send(page: Page, text: str) -> None:
    box = page.get_by_role("textbox", name="输入您的问题")
    box.fill(text)
    box.press("Enter")


def bot_bubbles(page: Page):
    return page.locator("#chsi-assistant .msg.bot:not(.typing)")


def shot(page: Page, name: str) -> Path:
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def test_ask_answer_button_and_reload_keeps_the_conversation(page, engine):
    open_panel(page)
    expect(bot_bubbles(page).first).to_contain_text("学信网账号助手")  # the greeting
    send(page, "忘记用户名了")
    expect(bot_bubbles(page).nth(1)).to_contain_text("您说：忘记用户名了")
    page.get_by_role("button", name="找回用户名").click()
    answer = bot_bubbles(page).nth(2)
    expect(answer).to_contain_text("您选择了 pick:username")
    expect(answer.locator("strong")).to_have_text("pick:username")
    expect(answer.locator("ol li")).to_have_count(2)
    assert engine.calls[-1][1].kind == "button" and engine.calls[-1][1].payload == "pick:username"
    session = page.evaluate("Object.keys(localStorage).map(k => JSON.parse(localStorage[k]).session_id)[0]")
    shot(page, "widget-desktop")

    page.reload()
    expect(page.get_by_role("dialog", name="学信网账号助手")).to_be_visible()  # stays open
    expect(bot_bubbles(page)).to_have_count(3)
    expect(page.locator("#chsi-assistant .msg.user")).to_have_text(["忘记用户名了", "找回用户名"])
    send(page, "还在吗")
    expect(bot_bubbles(page).nth(3)).to_contain_text("您说：还在吗")
    assert engine.calls[-1][0] == session.rsplit(".", 1)[0]  # same server session after the reload


def test_xss_in_answers_labels_and_echo_stays_text(page):
    open_panel(page)
    send(page, XSS)
    expect(page.locator("#chsi-assistant .msg.user").last).to_have_text(XSS)
    expect(bot_bubbles(page).last).to_contain_text("您说：" + XSS)
    send(page, "xss")
    answer = bot_bubbles(page).last
    expect(answer).to_contain_text(XSS)
    expect(page.locator("#chsi-assistant .buttons button").last).to_have_text(XSS)
    links = answer.locator("a")
    expect(links).to_have_count(1)
    expect(links).to_have_attribute("href", "https://www.chsi.com.cn/")
    expect(links).to_have_attribute("rel", "noopener noreferrer")
    expect(answer).to_contain_text("[坏链接](javascript:alert(1))")
    injected = page.evaluate("""() => {
        const root = document.querySelector('#chsi-assistant').shadowRoot;
        return root.querySelectorAll('img, script, [onerror]').length + document.querySelectorAll('body img').length;
    }""")
    assert injected == 0
    page.reload()  # the stored history is rendered safely too
    expect(bot_bubbles(page).last).to_contain_text(XSS)
    assert page.evaluate("window.__xss") is None
    assert page.dialogs == []


def test_enter_while_the_ime_composes_does_not_send(page, engine):
    open_panel(page)
    box = page.get_by_role("textbox", name="输入您的问题")
    box.fill("zhaohui")
    before = len(engine.calls)
    # Chromium reports Enter that confirms an IME candidate as isComposing / keyCode 229
    box.evaluate("""el => el.dispatchEvent(new KeyboardEvent('keydown',
        {key: 'Enter', keyCode: 229, isComposing: true, bubbles: true, cancelable: true}))""")
    box.evaluate("el => el.dispatchEvent(new CompositionEvent('compositionstart', {bubbles: true}))")
    box.press("Enter")
    expect(box).to_have_value(re.compile("^zhaohui"))
    box.evaluate("el => { el.value = '找回'; el.dispatchEvent(new CompositionEvent('compositionend', {bubbles: true})); }")
    page.wait_for_timeout(50)
    assert len(engine.calls) == before
    assert page.locator("#chsi-assistant .msg.user").count() == 0
    box.press("Enter")  # composition over: now Enter sends
    expect(page.locator("#chsi-assistant .msg.user")).to_have_text(["找回"])
    expect(box).to_have_value("")
    box.fill("第一行")
    box.press("Shift+Enter")  # a line break, not a send
    expect(page.locator("#chsi-assistant .msg.user")).to_have_count(1)


def test_unreachable_server_keeps_the_typed_text(page, engine):
    open_panel(page)
    send(page, "先建立会话")
    expect(bot_bubbles(page)).to_have_count(2)
    page.route("**/api/chat", lambda route: route.abort("connectionrefused"))
    send(page, "证件号码已被注册怎么办")
    alert = page.locator("#chsi-assistant .msg.notice")
    expect(alert).to_contain_text("无法连接到服务器")
    expect(page.get_by_role("textbox", name="输入您的问题")).to_have_value("证件号码已被注册怎么办")
    expect(page.locator("#chsi-assistant .msg.user")).to_have_text(["先建立会话"])  # the failed one is not shown as sent
    page.unroute("**/api/chat")
    page.get_by_role("button", name="发送").click()
    expect(bot_bubbles(page).last).to_contain_text("您说：证件号码已被注册怎么办")


def test_server_errors_are_shown_in_chinese_and_keep_the_text(page):
    open_panel(page)
    send(page, "长" * 101)
    expect(page.locator("#chsi-assistant .msg.notice")).to_contain_text("消息过长")
    expect(page.get_by_role("textbox", name="输入您的问题")).to_have_value("长" * 101)


def test_a_forged_session_is_replaced_and_the_message_still_answered(page, engine):
    open_panel(page)
    page.evaluate("""() => { for (const k of Object.keys(localStorage)) {
        const s = JSON.parse(localStorage[k]); s.session_id = 'w999.forged'; localStorage[k] = JSON.stringify(s); } }""")
    page.reload()
    send(page, "你好")
    expect(page.locator("#chsi-assistant .msg.notice")).to_contain_text("已为您开始新的对话")
    expect(bot_bubbles(page).last).to_contain_text("您说：你好")
    assert engine.calls[-1][0] != "w999"


def test_photo_upload_when_the_bot_expects_one(page, engine, tmp_path):
    open_panel(page)
    attach = page.get_by_role("button", name="上传照片")
    expect(attach).to_be_hidden()
    send(page, "照片")
    expect(attach).to_be_visible()
    photo = tmp_path / "身份证.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    with page.expect_file_chooser() as chooser:
        attach.click()
    chooser.value.set_files(str(photo))
    expect(bot_bubbles(page).last).to_contain_text("已收到照片（108 字节）")
    expect(page.locator("#chsi-assistant .msg.user").last).to_have_text("已上传照片：身份证.png")
    assert engine.calls[-1][1].image.data == photo.read_bytes()
    expect(attach).to_be_hidden()


def test_phone_width_and_keyboard(browser, server):
    context = browser.new_context(viewport={"width": 360, "height": 740}, locale="zh-CN", has_touch=True)
    page = context.new_page()
    page.goto(server.url + "/")
    page.keyboard.press("Tab")
    for _ in range(40):  # tab through the page until the launcher has focus
        if page.evaluate("document.activeElement && document.activeElement.id === 'chsi-assistant'"):
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="学信网账号助手")
    expect(dialog).to_be_visible()
    box = dialog.bounding_box()
    assert box["x"] >= 0 and box["width"] <= 360
    textbox = page.get_by_role("textbox", name="输入您的问题")
    expect(textbox).to_be_focused()
    page.keyboard.type("怎么找回密码")
    page.keyboard.press("Enter")
    expect(bot_bubbles(page).last).to_contain_text("您说：怎么找回密码")
    # the reply's button is reachable and usable by keyboard
    button = page.get_by_role("button", name="找回用户名")
    button.focus()
    page.keyboard.press("Enter")
    expect(bot_bubbles(page).last).to_contain_text("您选择了")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    shot(page, "widget-phone-360")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    launcher = page.get_by_role("button", name="在线咨询")
    expect(launcher).to_be_focused()
    context.close()


def test_the_log_is_announced_politely(page):
    open_panel(page)
    log = page.get_by_role("log")
    expect(log).to_have_attribute("aria-live", "polite")
    stored = page.evaluate("Object.values(localStorage)")
    assert all("history" in json.loads(v) for v in stored)


def test_personal_data_is_masked_in_the_saved_history(page):
    open_panel(page)
    send(page, "我的身份证 11010519491231002X 手机 13812345678")
    expect(bot_bubbles(page)).to_have_count(2)
    send(page, "123456")
    expect(bot_bubbles(page)).to_have_count(3)
    stored = "".join(page.evaluate("Object.values(localStorage)"))
    assert "11010519491231002X" not in stored and "13812345678" not in stored
    assert "1101**********002X" in stored and "138****5678" in stored and '"******"' in stored
    # what the user sees right now is what they typed
    expect(page.locator("#chsi-assistant .msg.user").first).to_contain_text("11010519491231002X")


def test_recover_username_end_to_end_with_the_real_engine_and_sandbox(browser, sandbox, tmp_path):  # noqa: F811
    from handlers.engine import build_engine
    from handlers.sessions import SqliteStore
    from support import default_matcher

    cfg = {"web": {"secret_file": str(tmp_path / "web.key")}, "sessions": {"data_dir": str(tmp_path)}}
    engine = build_engine(cfg, accounts=sandbox.client(), store=SqliteStore(tmp_path / "sessions.db"),
                          matcher=default_matcher())
    account = sandbox.new_account(name="王小明")
    with LiveServer(create_app(cfg, engine=engine)) as live:
        context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
        page = context.new_page()
        page.goto(live.url + "/")
        open_panel(page)
        send(page, "用户名忘了怎么办")
        expect(bot_bubbles(page).nth(1)).to_contain_text("找回用户名")
        page.get_by_role("button", name="开始找回用户名").click()
        expect(bot_bubbles(page).last).to_contain_text("姓名")
        send(page, account["name"])
        page.get_by_role("button", name="居民身份证").click()
        expect(bot_bubbles(page).last).to_contain_text("身份证号码")
        send(page, account["id_number"])
        done = bot_bubbles(page).last
        expect(done).to_contain_text("用户名已通过短信发送至该账号绑定的手机")
        assert account["username"] in sandbox.outbox(account["phone"])[0]["text"]
        shot(page, "widget-e2e-recover-username")

        page.reload()
        expect(bot_bubbles(page).last).to_contain_text("用户名已通过短信发送至该账号绑定的手机")
        stored = "".join(page.evaluate("Object.values(localStorage)"))
        assert account["id_number"] not in stored  # masked in the browser's saved history
        context.close()


def test_the_upload_prompt_fits_a_360px_phone(browser, server):
    """With 上传照片 shown, the text box keeps its whole placeholder and 发送 stays inside the panel."""
    context = browser.new_context(viewport={"width": 360, "height": 740}, locale="zh-CN", has_touch=True)
    page = context.new_page()
    page.goto(server.url + "/")
    open_panel(page)
    send(page, "照片")
    attach = page.get_by_role("button", name="上传照片")
    expect(attach).to_be_visible()
    panel = page.get_by_role("dialog", name="学信网账号助手").bounding_box()
    send_box = page.locator("#chsi-assistant .composer .send").bounding_box()
    assert send_box["x"] >= panel["x"] and send_box["x"] + send_box["width"] <= panel["x"] + panel["width"] + 0.5
    fits = page.evaluate("""() => {
        const ta = document.querySelector('#chsi-assistant').shadowRoot.querySelector('textarea');
        const style = getComputedStyle(ta);
        const ctx = document.createElement('canvas').getContext('2d');
        ctx.font = style.font;
        const room = ta.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
        return [ctx.measureText(ta.placeholder).width, room];
    }""")
    assert fits[0] <= fits[1], f"placeholder needs {fits[0]:.0f}px, has {fits[1]:.0f}px"
    shot(page, "upload-prompt-360")
    context.close()


def test_the_demo_page_requests_no_missing_favicon(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page = context.new_page()
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
    page.goto(server.url + "/")
    page.wait_for_load_state("networkidle")
    declared = page.evaluate("!!document.querySelector('link[rel~=icon]')")  # else browsers ask /favicon.ico
    context.close()
    assert missing == [] and declared
