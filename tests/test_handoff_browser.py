"""Hand-off end to end in real Chromium, two browser contexts: a user in the widget and agents in
the staff console, over a real uvicorn server, the real engine (real FAQ, in-process account twin),
hand-offs and staff accounts in SQLite. Deadlines are generous (the machine is shared); the
delivery latency itself is measured by benchmarks/bench_handoff.py, not here."""
from __future__ import annotations


import pytest

from accounts.local import LocalAccountClient
from channels.app import create_app
from handlers.db import Database
from handlers.events import MemoryBus
from handlers.handoff_service import HandoffService
from handlers.handoffs import SqlHandoffStore
from handlers.staff import StaffStore
from support import make_engine
from support.browser import OUTPUT, XSS
from support.servers import LiveServer

from playwright.sync_api import Page, expect

# the browser fixture (and the one Chromium guard): tests/support/browser.py

PASSWORD = "correct-horse-1"
WAIT = 10_000  # ms


@pytest.fixture
def world(tmp_path, monkeypatch):
    import channels.staff
    import channels.web
    for module in (channels.web, channels.staff):  # streams closed by the test end at the next heartbeat
        monkeypatch.setattr(module, "HEARTBEAT", 0.5)
    db = Database(f"sqlite:///{tmp_path}/bot.db")
    staff = StaffStore(db)
    for name in ("li", "wang"):
        staff.add(name, "agent", PASSWORD)
    service = HandoffService(SqlHandoffStore(db), MemoryBus(), agents_online=lambda: len(staff.online()))
    accounts = LocalAccountClient()
    engine = make_engine(accounts, data_dir=tmp_path, handoffs=service)
    cfg = {"web": {"session_secret": "console-test-secret-0123456789abcdef"}, "telegram": {"token": ""}}
    with LiveServer(create_app(cfg, engine=engine, staff=staff)) as server:
        yield server, service
    accounts.close()


@pytest.fixture
def contexts(world):
    """Browser contexts opened by a test, closed before the server stops (their streams end)."""
    opened: list = []
    yield opened
    for ctx in opened:
        ctx.close()


def user_page(browser, server, contexts) -> Page:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    contexts.append(ctx)
    page = ctx.new_page()
    page.goto(server.url + "/")
    page.get_by_role("button", name="在线咨询").click()
    return page


def agent_page(browser, server, contexts, name: str = "li", width: int = 1280) -> Page:
    ctx = browser.new_context(viewport={"width": width, "height": 800}, locale="zh-CN")
    contexts.append(ctx)
    page = ctx.new_page()
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.goto(server.url + "/staff")
    expect(page).to_have_url(server.url + "/staff/login")
    page.get_by_label("用户名").fill(name)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(server.url + "/staff")
    expect(page.locator("#live")).to_contain_text("已连接", timeout=WAIT)
    return page


def say(page: Page, text: str) -> None:
    """Type and send; wait until the bot's turn is over (the widget takes one message at a time)."""
    box = page.get_by_role("textbox", name="输入您的问题")
    box.fill(text)
    box.press("Enter")
    expect(page.locator("#chsi-assistant .msg.user").last).to_have_text(text, timeout=WAIT)
    expect(page.locator("#chsi-assistant .typing")).to_have_count(0, timeout=WAIT)


def bubbles(page: Page):
    return page.locator("#chsi-assistant .msg.bot:not(.typing)")


def shot(page: Page, name: str) -> None:
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"))


def test_user_agent_round_trip_then_the_bot_answers_again(browser, world, contexts):
    server, service = world
    agent = agent_page(browser, server, contexts)
    user = user_page(browser, server, contexts)
    say(user, "转人工")
    expect(bubbles(user).last).to_contain_text("排在第 1 位", timeout=WAIT)
    # the agent sees it without reloading, with a count in the title
    item = agent.locator("#list-waiting button").first
    expect(item).to_contain_text("用户要求转人工", timeout=WAIT)
    expect(agent).to_have_title("(1) 人工客服工作台", timeout=WAIT)
    item.click()
    expect(agent.locator("#transcript")).to_contain_text("用户：转人工")
    agent.get_by_role("button", name="接入").click()
    expect(agent.locator("#list-mine button")).to_have_count(1, timeout=WAIT)
    expect(agent).to_have_title("人工客服工作台", timeout=WAIT)
    reply = agent.get_by_role("textbox", name="回复内容")
    reply.fill("您好，我是客服小李，请问有什么可以帮您？")
    reply.press("Enter")
    expect(agent.locator("#messages .msg.agent")).to_contain_text("我是客服小李", timeout=WAIT)
    # the user sees it, with the agent's name
    staff_msg = user.locator("#chsi-assistant .msg.agent").last
    expect(staff_msg).to_contain_text("我是客服小李", timeout=WAIT)
    expect(staff_msg.locator(".author")).to_have_text("人工客服 li")
    say(user, "我的用户名忘记了，手机号 13800138001")
    expect(agent.locator("#messages .msg.user").last).to_contain_text("138****8001", timeout=WAIT)
    expect(agent.locator("#messages")).not_to_contain_text("13800138001")
    shot(agent, "console-1280")
    agent.get_by_label("结束原因").select_option("solved")
    agent.get_by_role("button", name="结束会话").click()
    expect(user.locator("#chsi-assistant .msg.bot").last).to_contain_text("人工客服已结束本次对话", timeout=WAIT)
    expect(agent.locator("#conv-title")).to_contain_text("已结束", timeout=WAIT)
    say(user, "忘记用户名怎么办")
    expect(bubbles(user).filter(has_text="请点击登录页面的“找回用户名”")).to_have_count(1, timeout=WAIT)
    assert service.list("closed")[0].resolution == "solved"
    assert agent.dialogs == []


def test_user_text_is_rendered_as_text_in_the_console(browser, world, contexts):
    server, _ = world
    agent = agent_page(browser, server, contexts)
    user = user_page(browser, server, contexts)
    say(user, XSS)
    say(user, "转人工")
    expect(bubbles(user).last).to_contain_text("人工客服", timeout=WAIT)
    say(user, XSS)
    agent.locator("#list-waiting button").first.click(timeout=WAIT)
    expect(agent.locator("#messages .msg.user").last).to_contain_text(XSS, timeout=WAIT)
    expect(agent.locator("#transcript")).to_contain_text(XSS)
    agent.get_by_label("查找 FAQ 答案").fill(XSS)
    agent.get_by_role("button", name="搜索").click()
    expect(agent.locator("#faq-results li").first).to_be_visible(timeout=WAIT)
    assert agent.evaluate("window.__xss") is None
    assert agent.evaluate("document.querySelectorAll('main img, main script, [onerror]').length") == 0
    assert agent.dialogs == []


def test_widget_reload_mid_hand_off_keeps_the_messages_and_misses_none(browser, world, contexts):
    server, service = world
    agent = agent_page(browser, server, contexts)
    user = user_page(browser, server, contexts)
    say(user, "转人工")
    expect(bubbles(user).last).to_contain_text("人工客服", timeout=WAIT)
    agent.locator("#list-waiting button").first.click(timeout=WAIT)
    agent.get_by_role("button", name="接入").click()
    box = agent.get_by_role("textbox", name="回复内容")
    box.fill("第一条回复")
    box.press("Enter")
    expect(user.locator("#chsi-assistant .msg.agent")).to_contain_text("第一条回复", timeout=WAIT)
    # the user goes away; the agent writes meanwhile; the user comes back
    user.goto("about:blank")
    box.fill("您离开时的回复")
    box.press("Enter")
    expect(agent.locator("#messages .msg.agent").last).to_contain_text("您离开时的回复", timeout=WAIT)
    user.goto(server.url + "/")
    agent_msgs = user.locator("#chsi-assistant .msg.agent")
    expect(agent_msgs).to_have_count(2, timeout=WAIT)
    expect(agent_msgs.last).to_contain_text("您离开时的回复")
    user.reload()
    expect(agent_msgs).to_have_count(2, timeout=WAIT)
    box.fill("刷新后的回复")
    box.press("Enter")
    expect(agent_msgs).to_have_count(3, timeout=WAIT)
    user.wait_for_timeout(500)
    expect(agent_msgs).to_have_count(3)   # nothing twice
    expect(user.locator("#chsi-assistant .msg.bot", has_text="人工客服 li 已接入")).to_have_count(1)


def test_two_agents_claiming_at_once(browser, world, contexts):
    server, service = world
    li, wang = agent_page(browser, server, contexts, "li"), agent_page(browser, server, contexts, "wang")
    user = user_page(browser, server, contexts)
    say(user, "转人工")
    for page in (li, wang):
        page.locator("#list-waiting button").first.click(timeout=WAIT)
        expect(page.get_by_role("button", name="接入")).to_be_enabled(timeout=WAIT)
    # both click as close together as two pages allow
    li.evaluate("document.getElementById('btn-claim').click()")
    wang.evaluate("document.getElementById('btn-claim').click()")
    expect(li.locator("#conv-title")).to_contain_text("处理中", timeout=WAIT)
    expect(wang.locator("#conv-title")).to_contain_text("处理中", timeout=WAIT)
    [claimed] = service.list("active")
    winner = claimed.agent
    loser = wang if winner == "li" else li
    # the loser is told (or, when the winner's event arrived before its click, already sees it taken)
    expect(loser.locator("#conv-facts")).to_contain_text(f"客服{winner}", timeout=WAIT)
    expect(loser.get_by_role("button", name="发送")).to_be_disabled(timeout=WAIT)
    expect(loser.get_by_role("button", name="接入")).to_be_disabled(timeout=WAIT)
    if loser.locator("#conv-error").is_visible():
        expect(loser.locator("#conv-error")).to_contain_text("已被其他客服接入")
    assert service.list("waiting") == [] and len(service.get(claimed.id)[1]) == 1  # one 已接入 notice


def test_console_is_usable_at_768_px_and_errors_keep_the_reply(browser, world, contexts):
    server, _ = world
    agent = agent_page(browser, server, contexts, width=768)
    user = user_page(browser, server, contexts)
    say(user, "转人工")
    agent.locator("#list-waiting button").first.click(timeout=WAIT)
    agent.get_by_role("button", name="接入").click()
    box = agent.get_by_role("textbox", name="回复内容")
    expect(box).to_be_visible()
    # Enter that confirms an IME candidate (isComposing / keyCode 229) does not send
    box.fill("huifu")
    box.evaluate("""el => el.dispatchEvent(new KeyboardEvent('keydown',
        {key: 'Enter', keyCode: 229, isComposing: true, bubbles: true, cancelable: true}))""")
    agent.wait_for_timeout(300)
    assert box.input_value() == "huifu" and agent.locator("#messages .msg.agent").count() == 0
    box.fill("字" * 2001)
    box.press("Enter")
    expect(agent.locator("#conv-error")).to_contain_text("2000 字以内", timeout=WAIT)
    assert box.input_value() == "字" * 2001          # nothing lost
    box.fill("   ")
    agent.get_by_role("button", name="发送").click()
    expect(agent.locator("#conv-error")).to_contain_text("不能为空")
    agent.get_by_label("查找 FAQ 答案").fill("忘记密码")
    agent.get_by_label("查找 FAQ 答案").press("Enter")
    agent.locator("#faq-results").get_by_role("button", name="插入").first.click(timeout=WAIT)
    assert "找回密码" in box.input_value()
    box.press("Enter")
    expect(user.locator("#chsi-assistant .msg.agent").last).to_contain_text("找回密码", timeout=WAIT)
    width = agent.evaluate("document.documentElement.scrollWidth")
    assert width <= 768
    shot(agent, "console-768")


def test_console_times_are_in_the_configured_zone_and_flows_have_chinese_names(browser, world, contexts):
    """An agent whose computer is set to New York still sees Beijing time (handoff.timezone), the
    zone the Overview counts days in; the flow and step are named as users saw them."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from handlers.handoffs import NewHandoff

    server, service = world
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN", timezone_id="America/New_York")
    contexts.append(ctx)
    agent = ctx.new_page()
    agent.goto(server.url + "/staff/login")
    agent.get_by_label("用户名").fill("li")
    agent.get_by_label("密码").fill(PASSWORD)
    agent.get_by_role("button", name="登录").click()
    expect(agent.locator("#live")).to_contain_text("已连接", timeout=WAIT)
    assert agent.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") == "America/New_York"
    h = service.open(NewHandoff(session_key="k-tz", channel="web", address="s-tz", reason="invalid_tries",
                                flow="recover_password", step="code", topic="recover_account",
                                transcript=(("用户", "收不到验证码"),)))
    item = agent.locator("#list-waiting button").first
    expect(item).to_contain_text("找回密码", timeout=WAIT)
    item.click()
    facts = agent.locator("#conv-facts")
    expect(facts).to_contain_text("找回密码 / 填写短信验证码", timeout=WAIT)
    expect(facts).to_contain_text("找回用户名和密码")    # the topic by its FAQ title, not its id
    expect(facts).not_to_contain_text("recover_account")
    beijing = datetime.fromtimestamp(h.created_at, ZoneInfo("Asia/Shanghai")).strftime("%H:%M:%S")
    new_york = datetime.fromtimestamp(h.created_at, ZoneInfo("America/New_York")).strftime("%H:%M:%S")
    expect(facts).to_contain_text(beijing)
    expect(facts).not_to_contain_text(new_york)
