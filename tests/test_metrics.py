"""GET /metrics: off by default, token-protected when on, parsed with prometheus-client's own parser."""
from __future__ import annotations

import shutil
import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from accounts.local import LocalAccountClient
from channels.app import create_app
from channels.metrics import MetricsConfigError
from handlers.insights import EventWriter, MemoryEventStore
from support import make_engine
from intents.live import LiveFAQ
from intents.matcher import MatcherConfig
from support.faq_edit import DATA, TOPIC, break_it

TOKEN = "metrics-test-token-0123456789"


def config(**metrics) -> dict:
    return {"web": {"session_secret": "test-secret-0123456789abcdef0123456789"}, "telegram": {"token": ""},
            "metrics": metrics}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_off_by_default(tmp_path):
    engine = make_engine(LocalAccountClient(), data_dir=tmp_path)
    with TestClient(create_app(config(), engine=engine)) as client:
        assert client.get("/metrics").status_code == 404
    with TestClient(create_app(config(enabled="false", token=TOKEN), engine=engine)) as client:
        assert client.get("/metrics").status_code == 404


def test_enabling_metrics_without_a_token_refuses_to_start(tmp_path):
    engine = make_engine(LocalAccountClient(), data_dir=tmp_path)
    with pytest.raises(MetricsConfigError, match="METRICS_TOKEN"):
        create_app(config(enabled=True, token=""), engine=engine)


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(DATA, folder)
    live = LiveFAQ(folder, MatcherConfig())
    accounts = LocalAccountClient()
    engine = make_engine(accounts, data_dir=tmp_path, matcher=live.current.matcher)
    engine.insights = EventWriter(MemoryEventStore())
    app = create_app(config(enabled="true", token=TOKEN), engine=engine, live=live)
    with TestClient(app) as client:
        yield client, live, folder, engine
    accounts.close()


def chat(client, sid: str, **body) -> dict:
    r = client.post("/api/chat", json={"session_id": sid, **body})
    assert r.status_code == 200, r.text
    return r.json()


def press(client, sid: str, reply: dict, label: str) -> dict:
    payload = next(b["payload"] for r in reply["replies"] for b in r["buttons"] if label in b["label"])
    return chat(client, sid, payload=payload)


def test_metrics_count_requests_decisions_flows_accounts_handoffs_and_reloads(served):
    client, live, folder, engine = served
    sid = client.post("/api/session").json()["session_id"]
    answered = chat(client, sid, text="忘记用户名怎么办")
    press(client, sid, answered, "没帮助")
    started = press(client, sid, answered, "开始找回用户名")
    assert started["flow"] == "recover_username"
    for text in ("张三", "居民身份证", "110101199903071239"):     # the account API is called at the end
        reply = chat(client, sid, text=text)
    assert "用户名已通过短信发送" in reply["replies"][0]["text"], reply["replies"]
    chat(client, sid, text="明天北京会下雨吗")
    chat(client, sid, text="转人工")
    client.get("/nowhere")
    break_it(folder / "topics" / TOPIC)
    live.poll()

    [h] = engine.handoffs.list("waiting")   # a staff message kept for redelivery (due long after this test)
    engine.handoffs.store.queue_push(h.id, "web", sid, "[]", None, time.time() + 86400)

    assert engine.insights.flush()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    found = samples(r.text)
    assert value(found, "chsi_http_requests_total", route="/api/chat", method="POST", status="200") == 8
    assert value(found, "chsi_http_requests_total", route="other", method="GET", status="404") == 1
    assert value(found, "chsi_http_request_duration_seconds_count", route="/api/chat") == 8
    assert value(found, "chsi_turn_decisions_total", decision="answer") >= 1
    assert value(found, "chsi_turn_decisions_total", decision="out_of_scope") == 1
    assert value(found, "chsi_turn_decisions_total", decision="handoff") == 1
    assert value(found, "chsi_turn_intents_total", intent="recover_account") >= 1
    assert value(found, "chsi_feedback_total", vote="down") == 1
    assert value(found, "chsi_flow_events_total", flow="recover_username", event="started") == 1
    assert value(found, "chsi_flow_events_total", flow="recover_username", event="completed") == 1
    assert value(found, "chsi_account_api_calls_total", operation="recover_username", result="ok") == 1
    assert value(found, "chsi_handoffs", state="waiting") == 1
    assert value(found, "chsi_handoff_pushes_waiting") == 1
    assert value(found, "chsi_faq_reload_failures_total") == 1 and value(found, "chsi_faq_reloads_total") == 0
    assert value(found, "chsi_faq_entries") == len(live.current.faq.entries)
    assert value(found, "chsi_insights_events_total", outcome="written") == 8
    assert ("chsi_insights_events_total", (("outcome", "dropped"),)) in found
