"""The console's overview numbers and charts, from a known event log (pure functions)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from zoneinfo import ZoneInfo

from channels.insights_pages import overview_html, period, svg_feedback, svg_latency, svg_shares, unanswered_html
from handlers.handoffs import Handoff
from handlers.insights import TurnEvent
from handlers.overview import overview

TZ = ZoneInfo("Asia/Shanghai")


def at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 11, day, hour, minute, tzinfo=TZ).timestamp()


def ev(ts: float, session: str, decision: str, **kw) -> TurnEvent:
    return TurnEvent(ts=ts, session=session, text=kw.pop("text", "问"), decision=decision, **kw)


def log() -> list[TurnEvent]:
    return [
        # day 1 (Nov 20): two conversations; 4 questions: answer, answer, clarify, out of scope
        ev(at(20, 9), "a", "answer", entry="x.one", score=0.9, latency_ms=10),
        ev(at(20, 9, 1), "a", "feedback", entry="x.one", feedback="down", latency_ms=2),
        ev(at(20, 9, 2), "a", "answer", entry="x.two", score=0.8, latency_ms=30),
        ev(at(20, 10), "b", "clarify", entry="x.one", score=0.5, latency_ms=20),
        ev(at(20, 10, 1), "b", "out_of_scope", score=0.2, latency_ms=40),
        ev(at(20, 10, 2), "b", "feedback", entry="x.two", feedback="up", latency_ms=1),
        # day 2 (Nov 21): flows — completed, cancelled at id_type, one left unfinished at name; a hand-off
        ev(at(21, 8), "c", "flow", flow="recover_username", step="name", flow_event="started", latency_ms=5),
        ev(at(21, 8, 1), "c", "flow", flow="recover_username", step="id_type", latency_ms=5),
        ev(at(21, 8, 2), "c", "flow", flow="recover_username", step="id_number", flow_event="completed", latency_ms=500),
        ev(at(21, 9), "d", "flow", flow="recover_username", step="name", flow_event="started", latency_ms=5),
        ev(at(21, 9, 1), "d", "flow", flow="recover_username", step="id_type", latency_ms=5),
        ev(at(21, 9, 2), "d", "command", flow="recover_username", step="id_type", flow_event="cancelled", latency_ms=5),
        ev(at(21, 10), "e", "flow", flow="recover_username", step="name", flow_event="started", latency_ms=5),
        ev(at(21, 11), "f", "handoff", intent="human_agent", score=0.95, latency_ms=8),
        # outside the period
        ev(at(25, 9), "z", "answer", entry="x.one", score=0.9, latency_ms=10),
    ]


def handoffs() -> list[Handoff]:
    base = dict(session_key="k", channel="web", address="", reason="user_request", flow=None, step=None, topic=None,
                transcript=(), updated_at=0.0)
    return [Handoff(id="h1", status="closed", created_at=at(21, 11), claimed_at=at(21, 11) + 60,
                    closed_at=at(21, 11) + 660, **base),
            Handoff(id="h2", status="waiting", created_at=at(22, 9), **base)]


def test_overview_by_day():
    ov = overview(log(), handoffs(), at(20, 0), at(23, 0))
    assert [d.day for d in ov.days] == ["2026-11-20", "2026-11-21", "2026-11-22"]
    d1, d2, d3 = ov.days
    assert (d1.conversations, d1.questions) == (2, 4)
    assert (d1.share("answer"), d1.share("clarify"), d1.share("out_of_scope")) == (0.5, 0.25, 0.25)
    assert d1.latency_p50 == 20 and d1.latency_p99 == 40
    assert (d2.conversations, d2.questions, d2.share("handoff"), d2.handoffs) == (4, 1, 1.0, 1)
    assert d3.conversations == 0 and d3.handoffs == 1 and d3.latency_p50 is None
    assert ov.feedback == {"x.one": (0, 1), "x.two": (1, 0)}
    [flow] = ov.flows
    assert (flow.flow, flow.started, flow.ended["completed"], flow.ended["cancelled"], flow.unfinished) == \
        ("recover_username", 3, 1, 1, 1)
    assert flow.dropped_at == {"id_type": 1, "name": 1}
    assert ov.handoff_wait == [60] and ov.handoff_handling == [600]
    assert ov.turns == 14 and ov.totals.questions == 5


def test_charts_are_valid_svg_and_the_page_shows_the_numbers():
    ov = overview(log(), handoffs(), at(20, 0), at(23, 0))
    for svg in (svg_shares(ov), svg_latency(ov), svg_feedback(ov.feedback)):
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg") and root.get("role") == "img"
    shares = ET.fromstring(svg_shares(ov))
    rects = [r for r in shares.iter("{http://www.w3.org/2000/svg}rect") if r.find("{http://www.w3.org/2000/svg}title") is not None]
    assert any("直接回答 2/4" in r.find("{http://www.w3.org/2000/svg}title").text for r in rects)
    page = overview_html(ov)
    assert "<td>2026-11-20</td><td>2</td><td>4</td><td>50%</td><td>25%</td><td>25%</td><td>0%</td>" in page
    assert "选择证件类型 (1)" in page and "60 秒" in page and "10.0 分钟" in page


def test_the_flows_table_names_flows_and_steps_in_chinese():
    page = overview_html(overview(log(), handoffs(), at(20, 0), at(23, 0)))
    assert "<td>找回用户名</td>" in page and "选择证件类型 (1)" in page and "填写姓名 (1)" in page
    assert "recover_username" not in page and "id_type" not in page


def test_every_step_of_every_flow_has_a_chinese_name():
    from handlers.flows import FLOWS
    from handlers.labels import STEP_LABELS, flow_title, step_label

    missing = sorted({s for f in FLOWS.values() for s in f.steps} - set(STEP_LABELS))
    assert missing == [], f"add these steps to handlers/labels.py STEP_LABELS: {missing}"
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in flow_title(n)) for n in FLOWS)
    assert (flow_title("gone_flow"), step_label("gone_step"), flow_title(None), step_label(None)) == \
        ("gone_flow", "gone_step", "", "")


def test_the_overview_counts_days_in_the_configured_zone():
    late = [ev(at(20, 23, 30), "a", "answer", entry="x.one", score=0.9, latency_ms=10)]  # 23:30 in Shanghai
    assert [d.conversations for d in overview(late, [], at(20, 0), at(22, 0)).days] == [1, 0]
    utc = overview(late, [], at(20, 8), at(22, 8), tz="UTC")                          # 15:30 UTC, the same day
    assert [(d.day, d.conversations) for d in utc.days][:1] == [("2026-11-20", 1)]


def test_cluster_html_escapes_user_text():
    html = unanswered_html([{"rank": 1, "size": 2, "kinds": {"out_of_scope": 2},
                             "examples": [{"text": "<script>alert(1)</script>", "count": 2}],
                             "after": [], "nearest_entry": "x.one", "nearest_score": 0.4, "nearest_source": "f.yaml:3",
                             "add_alternates_yaml": "# f.yaml\n      - <b>", "not_covered_yaml": None}])
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;" in html
    assert "（无法回答 2）" in html   # the kinds in the console's language, not "out_of_scope"


def test_the_console_shows_which_answers_a_clusters_questions_followed():
    c = {"rank": 1, "size": 2, "kinds": {"out_of_scope": 2}, "examples": [{"text": "那要多少钱", "count": 2}],
         "after": [{"entry": "too_frequent.solutions", "count": 1}, {"entry": "<b>x</b>", "count": 1}],
         "nearest_entry": None, "nearest_score": 0.0, "nearest_source": "", "add_alternates_yaml": None,
         "not_covered_yaml": None}
    html = unanswered_html([c])
    assert "紧接在这些回答之后问的：too_frequent.solutions 1×，&lt;b&gt;x&lt;/b&gt; 1×" in html
    assert "紧接" not in unanswered_html([{**c, "after": []}])


def test_period_parsing():
    now = at(22, 15)
    since, until, label = period({"days": "3"}, now)
    assert (since, until, label) == (at(20, 0), at(23, 0), "2026-11-20 至 2026-11-22")
    assert period({"from": "2026-11-01", "to": "2026-11-02"}, now)[:2] == (at(1, 0), at(3, 0))
    assert period({"days": "abc"}, now)[2] == "2026-11-16 至 2026-11-22"
    assert period({"days": "100000"}, now)[0] >= now - 93 * 86400


def test_try_a_question_names_the_not_covered_group_behind_the_score():
    """An out-of-scope decision with a high score is a not-covered group's: the page says which."""
    from channels.insights_pages import try_html
    from faq_factory import real_matcher

    matcher = real_matcher()
    result = matcher.match("邮箱收不到验证码")
    assert result.decision == "out_of_scope" and result.not_covered
    page = try_html("邮箱收不到验证码", result, matcher.faq)
    group = matcher.faq.not_covered_groups[result.not_covered]
    assert f"不在解答范围：{result.not_covered}" in page and group.reply.splitlines()[0][:10] in page
    assert "不在解答范围" not in try_html("忘记密码怎么办", matcher.match("忘记密码怎么办"), matcher.faq)
