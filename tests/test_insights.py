"""Turn events: what each turn decided, masked before storage, written off the request path,
kept for the retention period — in memory, SQLite and PostgreSQL."""
from __future__ import annotations

import json
import threading
import time

import pytest

from handlers.insights import (EventWriter, InsightsConfig, InsightsStoreError, MemoryEventStore, SqlEventStore,
                               TurnEvent, build_writer)
from handlers.db import connect
from support import Chat, make_engine
from handlers.types import Message

from db_fixture import db_url  # noqa: F401  (fixture)
from support.flows import BAD_TEXT, PERSONAL, ZS1_PHONE, ZS2_PHONE, ZS_ID, run_full_flows, start_username

EMAIL = "zhang.san1999@qq.com"
TOKEN = "Xk9fQ2mZ7pL4vR8sT1wY"
LINK = f"https://account.chsi.com.cn/reset/{TOKEN}?sig=ab12cd34"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


def sql_engine(acc, url: str, clock, **config):  # noqa: F811
    writer = EventWriter(SqlEventStore(connect(url)), InsightsConfig(**config), clock=clock)
    engine = make_engine(acc, clock=clock)
    engine.insights = writer
    return engine, writer


@pytest.fixture
def recorded(acc, clock, tmp_path):  # noqa: F811
    engine, writer = sql_engine(acc, f"sqlite:///{tmp_path}/bot.db", clock)
    yield engine, writer
    writer.close()


def events(writer: EventWriter) -> list[TurnEvent]:
    assert writer.flush()
    return writer.store.query(0)


# ---- what a turn records ------------------------------------------------------------------

def test_each_turn_records_decision_entry_score_and_candidates(recorded):
    engine, writer = recorded
    chat = Chat(engine)
    chat.send(Message.from_text("忘记用户名怎么办", channel="web", address="x"))
    chat.say("忘记账号")                        # probably clarify (the matcher decides)
    chat.say("明天北京会下雨吗")
    chat.press("转人工客服")
    got = events(writer)
    assert [e.decision for e in got][0] == "answer" and len(got) == 4
    first = got[0]
    assert first.entry == "recover_account.username" and first.intent == "recover_account" and first.score
    assert first.candidates[0][0] == "recover_account.username" and first.channel == "web"
    assert first.latency_ms > 0 and len(first.session) == 16 and first.session not in chat.session_id
    assert got[2].decision == "out_of_scope" and got[2].entry is None and got[2].text == "明天北京会下雨吗"
    assert got[3].decision == "handoff" and got[3].text == "转人工客服"  # the label, never the payload
    assert len({e.session for e in got}) == 1


def test_feedback_and_flow_outcomes_are_recorded(recorded):
    engine, writer = recorded
    chat = Chat(engine)
    chat.say("忘记密码怎么办")
    chat.press("没帮助")
    start_username(chat)
    chat.say("张三")
    chat.say("取消")
    got = events(writer)
    feedback = [e for e in got if e.decision == "feedback"]
    assert [(e.entry, e.feedback) for e in feedback] == [("recover_account.password", "down")]
    started = [e for e in got if e.flow_event == "started"]
    assert started and started[0].flow == "recover_username"
    [cancelled] = [e for e in got if e.flow_event == "cancelled"]
    assert (cancelled.flow, cancelled.step) == ("recover_username", "id_type")   # where the user dropped out
    name_turn = next(e for e in got if e.flow == "recover_username" and e.step == "id_type" and e.decision == "flow")
    assert name_turn.text == "（个人信息，已隐藏）"   # a private step's answer is not kept


def test_completed_flows_are_recorded(recorded, acc):  # noqa: F811
    engine, writer = recorded
    run_full_flows(engine, acc)
    got = events(writer)
    outcomes = {(e.flow, e.flow_event) for e in got if e.flow_event}
    assert ("recover_username", "completed") in outcomes and ("recover_username", "started") in outcomes


# ---- no personal data ---------------------------------------------------------------------------

def test_nothing_personal_is_stored_from_flows_free_text_and_bad_input(acc, clock, tmp_path):  # noqa: F811
    engine, writer = sql_engine(acc, f"sqlite:///{tmp_path}/bot.db", clock)
    chats = run_full_flows(engine, acc)
    codes = [m["text"] for phone in (ZS1_PHONE, ZS2_PHONE) for m in acc.outbox(phone)]
    code_values = [c for text in codes for c in __import__("re").findall(r"\d{6}", text)]
    assert code_values, "the flows sent SMS codes"
    free = Chat(engine)
    for text in (f"我的邮箱 {EMAIL} 收不到验证码", f"重置链接 {LINK} 打不开", f"令牌 {TOKEN} 无效",
                 f"openid {OPENID}", f"手机 {ZS2_PHONE} 身份证 {ZS_ID}", f"验证码是 {code_values[0]}",
                 f"+86 {ZS1_PHONE}", f"证件 {ZS_ID.replace('9', '9 ', 0)}", *BAD_TEXT):
        free.say(text)
    free.press("转人工客服") if any("转人工" in b.label for b in free.buttons) else None
    writer.flush()
    dump = "\n".join(row["text"] + row["candidates"] for row in
                     writer.store.db.tx().rows("SELECT text, candidates FROM turn_events"))
    assert "***@qq.com" in dump and "138****8002" in dump   # the masked forms are there: the scan sees texts
    for secret in (*PERSONAL, EMAIL, "zhang.san1999", TOKEN, OPENID, "ab12cd34", "zhangsan02", *code_values):
        assert secret not in dump, secret
    assert all(c.flow_step is None for c in chats)
    writer.close()


# ---- the store contract (memory, SQLite, PostgreSQL) ---------------------------------------------

def _event(ts: float, **kw) -> TurnEvent:
    return TurnEvent(ts=ts, session=kw.pop("session", "s1"), text=kw.pop("text", "问题"),
                     decision=kw.pop("decision", "answer"), **kw)


@pytest.fixture(params=["memory", "sql"])
def store(request, db_url):  # noqa: F811
    if request.param == "memory":
        yield MemoryEventStore()
    else:
        s = SqlEventStore(connect(db_url))
        yield s
        s.db.close()


def test_store_contract_add_query_purge(store):
    e1 = _event(100.0, entry="a.b", score=0.71, candidates=(("a.b", 0.71), ("c.d", 0.4)), flow="f", step="s",
                flow_event="started", feedback="down", latency_ms=3.5, channel="web", intent="a")
    store.add([e1, _event(200.0, decision="out_of_scope"), _event(300.0, text="三")])
    assert store.query(0) [0] == e1
    assert [e.ts for e in store.query(150.0)] == [200.0, 300.0]
    assert [e.ts for e in store.query(0, 300.0)] == [100.0, 200.0]
    assert store.purge(250.0) == 2
    assert [e.text for e in store.query(0)] == ["三"]


def test_sql_store_errors_are_its_own(tmp_path):
    s = SqlEventStore(connect(f"sqlite:///{tmp_path}/bot.db"))
    s.db.tx().execute("DROP TABLE turn_events")
    with pytest.raises(InsightsStoreError):
        s.query(0)


# ---- the writer: bounded queue, drops counted, retention -----------------------------------

class BlockingStore(MemoryEventStore):
    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def add(self, events):
        self.gate.wait(30)
        super().add(events)


def test_a_full_queue_drops_and_counts_and_never_blocks():
    store = BlockingStore()
    writer = EventWriter(store, InsightsConfig(queue_size=5, batch_size=1))
    for i in range(40):
        writer.record(_event(float(i)))   # the writer holds one, the queue five; the rest are dropped
    assert writer.stats.dropped >= 40 - 5 - 1
    store.gate.set()
    assert writer.flush()
    assert writer.stats.written + writer.stats.dropped == 40
    writer.close()


def test_a_failing_store_loses_the_batch_not_the_writer():
    class Failing(MemoryEventStore):
        calls = 0

        def add(self, events):
            Failing.calls += 1
            if Failing.calls == 1:
                raise InsightsStoreError("down")
            super().add(events)

    writer = EventWriter(Failing(), InsightsConfig(batch_size=1))
    writer.record(_event(1.0))
    assert writer.flush()
    writer.record(_event(2.0))
    assert writer.flush()
    assert writer.stats.failed == 1 and [e.ts for e in writer.store.query(0)] == [2.0]
    writer.close()


def test_retention_purge_runs_periodically(db_url):  # noqa: F811
    now = [1_800_000_000.0]
    store = SqlEventStore(connect(db_url))
    day = 86400
    store.add([_event(now[0] - 91 * day), _event(now[0] - 89 * day), _event(now[0] - 1)])
    writer = EventWriter(store, InsightsConfig(retention_days=90, purge_interval_seconds=0.05), clock=lambda: now[0])
    deadline = time.monotonic() + 10
    while len(store.query(0)) != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [round((now[0] - e.ts) / day) for e in store.query(0)] == [89, 0]
    now[0] += 2 * day                      # two days later the 89-day-old event is past 90 days
    deadline = time.monotonic() + 10
    while len(store.query(0)) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(store.query(0)) == 1 and writer.stats.purged == 2
    writer.close()
    store.db.close()


def test_build_writer_follows_config(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    cfg = {"handoff": {"database_url": f"sqlite:///{tmp_path}/bot.db"}, "insights": {"retention_days": 30}}
    writer = build_writer(cfg)
    assert isinstance(writer.store, SqlEventStore) and writer.config.retention_days == 30
    writer.close()
    assert build_writer({"insights": {"enabled": False}}) is None
    with pytest.raises(ValueError, match="retention_dayz"):
        build_writer({"insights": {"retention_dayz": 3}})
    assert json.dumps(_event(1.0).to_dict())


def test_questions_listed_apart_are_recorded_as_answered(recorded):
    engine, writer = recorded
    Chat(engine).say("两个问题：1.忘记用户名 2.怎么绑定微信")   # (no unanswered question for maintainers to look at)
    (got,) = events(writer)
    assert (got.decision, got.entry) == ("answer", "recover_account.username")
