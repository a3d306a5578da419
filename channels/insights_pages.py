"""Admin pages of the staff console: Overview, Unanswered questions, Try a question.

Mounted under ``/staff/insights`` on the console built by ``channels.staff`` (its sign-in, its
``require_role("admin")`` and its page frame); agents and anonymous visitors never see them.
Everything is rendered on the server: charts are inline SVG (no script, no CDN), with the
numbers in tables beside them. The Try-a-question pane and the period are plain GET forms.

- ``GET /staff/insights?days=7`` (or ``from=YYYY-MM-DD&to=YYYY-MM-DD``): the overview by day.
- ``GET /staff/insights/unanswered?days=7``: clusters of unanswered questions with YAML snippets.
- ``GET /staff/insights/try?q=…``: the matcher's decision, entry, score and top candidates.

A refused FAQ edit (``intents.live``) shows as a banner on every console page until a valid save.
"""
from __future__ import annotations

import html
import time
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping, Sequence
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from handlers.labels import flow_title, step_label
from handlers.overview import SHARES, Overview, overview, percentile

TZ = "Asia/Shanghai"
MAX_DAYS = 92
LABELS = {"answer": "直接回答", "clarify": "追问澄清", "out_of_scope": "无法回答", "handoff": "转人工"}
COLOURS = {"answer": "#2e7d32", "clarify": "#f9a825", "out_of_scope": "#c62828", "handoff": "#1565c0"}
KIND_LABELS = {"out_of_scope": "无法回答", "clarify": "追问澄清", "not_helpful": "没帮助", "before_handoff": "转人工前"}
ENDING_LABELS = {"completed": "完成", "failed": "失败", "cancelled": "取消", "expired": "超时", "handed_off": "转人工",
                 "error": "出错"}
STYLE = """<style>
.ins section{margin:1.2em 0}.ins table{border-collapse:collapse;font-size:.9em}
.ins td,.ins th{border:1px solid #ddd;padding:.25em .5em;text-align:right}.ins th:first-child,.ins td:first-child{text-align:left}
.ins .pair{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}.ins svg{max-width:100%;height:auto}
.ins pre{background:#f6f8fa;padding:.6em;overflow:auto}.ins .muted{color:#666}
</style>"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.0f}"


def _secs(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.0f} 秒" if x < 120 else f"{x / 60:.1f} 分钟"


# ---- SVG charts (server-rendered) ----------------------------------------------------------------

def svg_shares(ov: Overview) -> str:
    """100% stacked bars per day: answered / clarified / out of scope / handed off."""
    days = ov.days
    w, h, left, bottom = max(320, 40 + 34 * len(days)), 220, 36, 40
    bar = max(8, min(26, (w - left - 10) // max(1, len(days)) - 6))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="每日问题处理占比" width="{w}" height="{h}" '
             f'viewBox="0 0 {w} {h}" class="chart-shares">']
    plot = h - bottom - 10
    for frac in (0, .5, 1):
        y = 10 + plot * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{w - 5}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{frac * 100:.0f}%</text>')
    for i, d in enumerate(days):
        x = left + 6 + i * (bar + 6)
        y = 10 + plot
        for dec in SHARES:
            share = d.share(dec)
            if share <= 0:
                continue
            height = plot * share
            y -= height
            parts.append(f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{height:.1f}" fill="{COLOURS[dec]}">'
                         f'<title>{esc(d.day)} {LABELS[dec]} {d.decided[dec]}/{d.questions}</title></rect>')
        parts.append(f'<text x="{x + bar / 2}" y="{h - bottom + 14}" font-size="9" text-anchor="middle">{esc(d.day[5:])}</text>')
    for j, dec in enumerate(SHARES):
        parts.append(f'<rect x="{left + j * 78}" y="{h - 14}" width="10" height="10" fill="{COLOURS[dec]}"/>'
                     f'<text x="{left + 14 + j * 78}" y="{h - 5}" font-size="10">{LABELS[dec]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_bars(points: Sequence[tuple[str, float]], label: str, colour: str = "#546e7a") -> str:
    """Vertical bars, one per day."""
    w, h, left, bottom = max(320, 40 + 34 * len(points)), 180, 36, 24
    top = max([v for _, v in points] + [1])
    bar = max(8, min(26, (w - left - 10) // max(1, len(points)) - 6))
    plot = h - bottom - 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{esc(label)}" width="{w}" height="{h}" '
             f'viewBox="0 0 {w} {h}"><text x="{left - 4}" y="14" font-size="10" text-anchor="end">{top:g}</text>'
             f'<line x1="{left}" x2="{w - 5}" y1="{10 + plot}" y2="{10 + plot}" stroke="#999"/>']
    for i, (name, v) in enumerate(points):
        x = left + 6 + i * (bar + 6)
        height = plot * v / top
        parts.append(f'<rect x="{x}" y="{10 + plot - height:.1f}" width="{bar}" height="{height:.1f}" fill="{colour}">'
                     f'<title>{esc(name)}: {v:g}</title></rect>'
                     f'<text x="{x + bar / 2}" y="{h - 8}" font-size="9" text-anchor="middle">{esc(name[5:])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_latency(ov: Overview) -> str:
    """p50 and p99 reply latency per day as two lines."""
    days = ov.days
    w, h, left, bottom = max(320, 40 + 34 * len(days)), 200, 44, 40
    values = [v for d in days for v in (d.latency_p50, d.latency_p99) if v is not None]
    top = max(values + [1.0])
    plot = h - bottom - 10
    step = (w - left - 20) / max(1, len(days) - 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="回复耗时 p50/p99（毫秒）" width="{w}" '
             f'height="{h}" viewBox="0 0 {w} {h}"><text x="{left - 4}" y="14" font-size="10" text-anchor="end">'
             f'{top:.0f} ms</text><line x1="{left}" x2="{w - 5}" y1="{10 + plot}" y2="{10 + plot}" stroke="#999"/>']
    for name, attr, colour in (("p50", "latency_p50", "#2e7d32"), ("p99", "latency_p99", "#c62828")):
        pts = [(left + 10 + i * step, 10 + plot * (1 - getattr(d, attr) / top))
               for i, d in enumerate(days) if getattr(d, attr) is not None]
        if pts:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                         f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}"><title>{name}</title></polyline>')
            parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{name}</title></circle>'
                         for x, y in pts)
        legend_x = left + (0 if name == "p50" else 60)
        parts.append(f'<rect x="{legend_x}" y="{h - 8}" width="10" height="3" fill="{colour}"/>'
                     f'<text x="{legend_x + 14}" y="{h - 3}" font-size="10">{name}</text>')
    for i, d in enumerate(days):
        parts.append(f'<text x="{left + 10 + i * step:.1f}" y="{h - 18}" font-size="9" text-anchor="middle">{esc(d.day[5:])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_feedback(feedback: Mapping[str, tuple[int, int]], limit: int = 15) -> str:
    """Horizontal bars per entry: 有帮助 (green) and 没帮助 (red)."""
    rows = list(feedback.items())[:limit]
    top = max([up + down for _, (up, down) in rows] + [1])
    w, row_h, left = 520, 18, 230
    h = 10 + row_h * len(rows) + 6
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="有帮助与没帮助（按条目）" width="{w}" '
             f'height="{h}" viewBox="0 0 {w} {h}">']
    for i, (entry, (up, down)) in enumerate(rows):
        y = 8 + i * row_h
        wu, wd = (w - left - 40) * up / top, (w - left - 40) * down / top
        parts.append(f'<text x="{left - 6}" y="{y + 11}" font-size="10" text-anchor="end">{esc(entry)}</text>'
                     f'<rect x="{left}" y="{y}" width="{wu:.1f}" height="12" fill="#2e7d32"><title>有帮助 {up}</title></rect>'
                     f'<rect x="{left + wu:.1f}" y="{y}" width="{wd:.1f}" height="12" fill="#c62828"><title>没帮助 {down}</title></rect>'
                     f'<text x="{left + wu + wd + 4:.1f}" y="{y + 11}" font-size="10">{up}/{down}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ---- pages ------------------------------------------------------------------------------------------

def period(query: Mapping[str, str], now: float, tz: str = TZ) -> tuple[float, float, str]:
    """``days=N`` (default 7) or ``from``/``to`` dates (inclusive) → [since, until) and a label; bad input → 7 days."""
    zone = ZoneInfo(tz)
    today = datetime.fromtimestamp(now, zone).date()
    try:
        if query.get("from"):
            start = datetime.strptime(query["from"], "%Y-%m-%d").date()
            end = datetime.strptime(query.get("to") or today.isoformat(), "%Y-%m-%d").date()
        else:
            n = max(1, min(MAX_DAYS, int(query.get("days") or 7)))
            start, end = today - timedelta(days=n - 1), today
    except ValueError:
        start, end = today - timedelta(days=6), today
    if end < start:
        start, end = end, start
    start = max(start, end - timedelta(days=MAX_DAYS - 1))
    since = datetime(start.year, start.month, start.day, tzinfo=zone).timestamp()
    until = datetime(end.year, end.month, end.day, tzinfo=zone).timestamp() + 86400
    return since, until, f"{start.isoformat()} 至 {end.isoformat()}"


def _period_form(action: str, label: str, query: Mapping[str, str]) -> str:
    days = esc(query.get("days") or ("" if query.get("from") else "7"))
    return (f'<form method="get" action="{action}" class="period">时段：<strong>{esc(label)}</strong> · '
            f'最近 <input name="days" type="number" min="1" max="{MAX_DAYS}" value="{days}" style="width:4em"> 天 '
            f'或 从 <input name="from" type="date" value="{esc(query.get("from", ""))}"> 到 '
            f'<input name="to" type="date" value="{esc(query.get("to", ""))}"> <button type="submit">查看</button></form>')


def banner(live: Any) -> str:
    """The refused FAQ edit, if one is pending."""
    if live is None:
        return ""
    status = live.status()
    if status.get("ok", True):
        return ""
    items = "".join(f"<li><code>{esc(e)}</code></li>" for e in status["errors"][:20])
    return ('<div class="faq-banner" role="alert" style="background:#fdecea;border:1px solid #c62828;padding:.6em;'
            'margin:.5em 0"><strong>FAQ 修改未生效：</strong>最近一次保存的 FAQ 有错误，'
            f'仍在使用上一版有效的 FAQ。请修正：<ul>{items}</ul></div>')


def overview_html(ov: Overview) -> str:
    t = ov.totals
    rows = "".join(
        f"<tr><td>{esc(d.day)}</td><td>{d.conversations}</td><td>{d.questions}</td>"
        + "".join(f"<td>{_pct(d.share(s))}</td>" for s in SHARES)
        + f"<td>{d.handoffs}</td><td>{_ms(d.latency_p50)}</td><td>{_ms(d.latency_p99)}</td></tr>" for d in ov.days)
    total = (f"<tr><th>合计</th><th>{t.conversations}</th><th>{t.questions}</th>"
             + "".join(f"<th>{_pct(t.share(s))}</th>" for s in SHARES) + f"<th>{t.handoffs}</th><th></th><th></th></tr>")
    head = ("<tr><th>日期</th><th>对话</th><th>问题</th>" + "".join(f"<th>{LABELS[s]}</th>" for s in SHARES)
            + "<th>转人工会话</th><th>耗时 p50 (ms)</th><th>耗时 p99 (ms)</th></tr>")
    fb_rows = "".join(f"<tr><td>{esc(e)}</td><td>{up}</td><td>{down}</td></tr>" for e, (up, down) in ov.feedback.items())
    flow_rows = "".join(
        f"<tr><td>{esc(flow_title(f.flow))}</td><td>{f.started}</td><td>{f.ended['completed']}</td>"
        f"<td>{_pct(f.ended['completed'] / f.started) if f.started else '—'}</td>"
        f"<td>{esc('、'.join(f'{ENDING_LABELS[k]} {n}' for k, n in f.ended.items() if k != 'completed') or '—')}</td>"
        f"<td>{f.unfinished}</td>"
        f"<td>{esc('、'.join(f'{step_label(s)} ({n})' for s, n in f.dropped_at.most_common(3)) or '—')}</td></tr>" for f in ov.flows)
    wait, handling = ov.handoff_wait, ov.handoff_handling
    return f"""
<section><h2>每日对话与问题处理</h2><div class="pair">{svg_shares(ov)}{svg_bars([(d.day, d.conversations) for d in ov.days], "每日对话数")}</div>
<table class="days"><thead>{head}</thead><tbody>{rows}</tbody><tfoot>{total}</tfoot></table></section>
<section><h2>回复耗时（毫秒）</h2><div class="pair">{svg_latency(ov)}</div></section>
<section><h2>有帮助 / 没帮助（按条目）</h2><div class="pair">{svg_feedback(ov.feedback) if ov.feedback else '<p class="muted">此时段没有反馈。</p>'}
<table class="feedback"><thead><tr><th>条目</th><th>有帮助</th><th>没帮助</th></tr></thead><tbody>{fb_rows}</tbody></table></div></section>
<section><h2>办理流程</h2><table class="flows"><thead><tr><th>流程</th><th>开始</th><th>完成</th><th>完成率</th><th>其他结束</th>
<th>未结束</th><th>中途离开的步骤（前 3）</th></tr></thead><tbody>{flow_rows or '<tr><td colspan="7">此时段没有办理流程。</td></tr>'}</tbody></table></section>
<section><h2>转人工</h2><table class="handoffs"><thead><tr><th></th><th>会话数</th><th>p50</th><th>p90</th></tr></thead><tbody>
<tr><td>排队等待（转人工 → 客服接入）</td><td>{len(wait)}</td><td>{_secs(percentile(wait, .5))}</td><td>{_secs(percentile(wait, .9))}</td></tr>
<tr><td>处理时长（接入 → 结束）</td><td>{len(handling)}</td><td>{_secs(percentile(handling, .5))}</td><td>{_secs(percentile(handling, .9))}</td></tr>
</tbody></table></section>"""


def unanswered_html(clusters: Sequence[dict[str, Any]]) -> str:
    if not clusters:
        return '<p class="muted">此时段没有未能回答的问题。</p>'
    out = []
    for c in clusters:
        kinds = "、".join(f"{esc(KIND_LABELS.get(k, k))} {n}" for k, n in c["kinds"].items())
        near = (f'{esc(c["nearest_entry"])}（{c["nearest_score"]:.2f}，{esc(c["nearest_source"])}）'
                if c["nearest_entry"] else "—")
        examples = "".join(f"<li>{ex['count']}× {esc(ex['text'])}</li>" for ex in c["examples"])
        after = ('<p class="after">紧接在这些回答之后问的：' + "，".join(f"{esc(a['entry'])} {a['count']}×" for a in c["after"])
                 + "</p>") if c["after"] else ""
        snippets = ""
        if c["add_alternates_yaml"]:
            snippets += (f'<details><summary>添加为 {esc(c["nearest_entry"])} 的其他问法（YAML）</summary>'
                         f'<pre>{esc(c["add_alternates_yaml"])}</pre></details>')
        if c["not_covered_yaml"]:
            snippets += (f'<details><summary>标记为不在解答范围（not_covered.yaml）</summary>'
                         f'<pre>{esc(c["not_covered_yaml"])}</pre></details>')
        out.append(f'<section class="cluster"><h3>#{c["rank"]} · {c["size"]} 个问题 <span class="muted">（{kinds}）</span></h3>'
                   f'<p>最接近的条目：{near}</p><ul>{examples}</ul>{after}{snippets}</section>')
    return "".join(out)


def try_html(question: str, result: Any, faq: Any) -> str:
    form = (f'<form method="get" action="/staff/insights/try"><label>输入一个问题：<input name="q" maxlength="500" '
            f'size="50" value="{esc(question)}"></label> <button type="submit">试一试</button></form>')
    if result is None:
        return form
    entry = faq.entries.get(result.entry) if result.entry else None
    rows = "".join(f"<tr><td>{esc(c.entry)}</td><td>{esc(c.intent)}</td><td>{c.score:.3f}</td>"
                   f"<td>{esc(faq.entries[c.entry].question) if c.entry in faq.entries else ''}</td></tr>"
                   for c in result.candidates)
    answer = f"<h3>回答</h3><pre>{esc(entry.answer)}</pre>" if entry is not None and result.decision == "answer" else ""
    group = faq.not_covered_groups.get(getattr(result, "not_covered", None) or "")
    if group is not None:  # the score is this group's: say so, with the reply users get
        answer += (f'<h3>不在解答范围：{esc(group.id)}（{esc(group.service)}）</h3>'
                   f'<p class="muted">得分是与 faq/data/not_covered.yaml 这一组问题的相似度；用户收到的回复：</p>'
                   f'<pre>{esc(group.reply)}</pre>')
    outrun = faq.entries.get(getattr(result, "outrun", None) or "")
    if outrun is not None:  # the message says this entry's advice was followed and did not help
        answer += (f'<h3>用户已按 {esc(outrun.id)} 的办法操作过，仍未解决：转人工</h3>'
                   f'<p class="muted">该条目 tried 列出的每一步都在问题里，其后还有 lexicon still_failing 的说法。</p>')
    return (form + f'<dl class="result"><dt>决定</dt><dd class="decision">{esc(result.decision)}</dd>'
            f'<dt>条目</dt><dd class="entry">{esc(result.entry or "—")}</dd><dt>意图</dt><dd>{esc(result.intent)}</dd>'
            f'<dt>得分</dt><dd class="score">{result.score:.3f}</dd></dl>'
            f'<h3>候选条目</h3><table class="candidates"><thead><tr><th>条目</th><th>意图</th><th>得分</th><th>标准问题</th>'
            f'</tr></thead><tbody>{rows}</tbody></table>{answer}')


def install(app: Any, cfg: Mapping[str, Any], engine: Any, live: Any = None,
            store: Callable[[], Any] | None = None, clock: Callable[[], float] = time.time) -> bool:
    """Add the admin pages to the staff console (``app.state.staff_console``); False when there is none."""
    console = getattr(app.state, "staff_console", None)
    if console is None:
        return False
    tz = getattr(console, "timezone", TZ)   # handoff.timezone: the console's times and these days agree
    from handlers.insights import open_store
    from intents.unanswered import cluster, report, unanswered_questions

    def events_store() -> Any:
        if store is not None:
            return store()
        writer = getattr(getattr(engine, "insights", None), "inner", None) or getattr(engine, "insights", None)
        return getattr(writer, "store", None) or open_store(cfg)

    def handoffs(since: float) -> list[Any]:
        service = getattr(engine, "handoffs", None)
        if service is None:
            return []
        found = []
        for status in ("waiting", "active", "closed", "abandoned"):
            found += [h for h in service.store.list(status, limit=10000) if h.created_at >= since]
        return found

    admin = Depends(console.require_role("admin"))
    router = APIRouter()

    def frame(request: Request, staff: Any, title: str, body: str) -> HTMLResponse:
        return console.page(request, staff, title, f'<div class="ins">{STYLE}<h1>{esc(title)}</h1>{body}</div>')

    @router.get("/staff/insights", include_in_schema=False)
    async def overview_page(request: Request, staff: Any = admin) -> HTMLResponse:
        q = dict(request.query_params)
        since, until, label = period(q, clock(), tz)

        def build() -> Overview:
            return overview(events_store().query(since, until), handoffs(since), since, until, tz=tz)

        ov = await run_in_threadpool(build)
        return frame(request, staff, "统计概览", _period_form("/staff/insights", label, q) + overview_html(ov))

    @router.get("/staff/insights/unanswered", include_in_schema=False)
    async def unanswered_page(request: Request, staff: Any = admin) -> HTMLResponse:
        q = dict(request.query_params)
        since, until, label = period(q, clock(), tz)

        def build() -> list[dict[str, Any]]:
            matcher = engine.matcher
            questions = unanswered_questions(events_store().query(since, until))
            return report(cluster(questions, matcher), matcher.faq, limit=50)

        clusters = await run_in_threadpool(build)
        return frame(request, staff, "未能回答的问题",
                     _period_form("/staff/insights/unanswered", label, q)
                     + '<p class="muted">无法回答、追问澄清、“没帮助”的问题和转人工前的最后一个问题，按相似程度分组，数量多的在前。'
                       'YAML 片段供维护人员复制到 FAQ 文件（工作台不会修改 FAQ）。</p>' + unanswered_html(clusters))

    @router.get("/staff/insights/try", include_in_schema=False)
    async def try_page(request: Request, q: str = "", staff: Any = admin) -> HTMLResponse:
        question = q.strip()[:500]
        matcher = engine.matcher
        result = await run_in_threadpool(matcher.match, question) if question else None
        return frame(request, staff, "试一试：匹配结果", try_html(question, result, matcher.faq))

    app.include_router(router)
    console.add_banner(lambda staff: banner(live))   # on every console page, agents' too: answers may be stale
    console.add_nav("统计概览", "/staff/insights", role="admin")
    console.add_nav("未能回答", "/staff/insights/unanswered", role="admin")
    console.add_nav("试一试", "/staff/insights/try", role="admin")
    return True
