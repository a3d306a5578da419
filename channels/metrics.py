"""``GET /metrics`` for operators, in the Prometheus text format (prometheus-client).

**Off by default.** ``metrics.enabled: true`` mounts the route, and then a token is required:
every scrape sends ``Authorization: Bearer $METRICS_TOKEN`` (compared in constant time); a missing
or wrong token gets 401, and enabling metrics without a token refuses to start.

What is measured (each app has its own registry; nothing global):
- ``chsi_http_requests_total{route,method,status}`` and ``chsi_http_request_duration_seconds{route}``
  per route template (``/api/chat``, not the raw path: unknown paths count as ``other``);
- ``chsi_turn_decisions_total{decision}``, ``chsi_turn_intents_total{intent}``, ``chsi_feedback_total{vote}``
  and ``chsi_flow_events_total{flow,event}`` (started, completed, failed, cancelled, expired, handed_off,
  error), all from the engine's turn events;
- ``chsi_account_api_calls_total{operation,result}`` (``ok`` or the contract's error class);
- ``chsi_handoffs{state}`` read from the hand-off store at scrape time;
- ``chsi_insights_events_total{outcome}`` (written, dropped because the queue was full, failed);
- ``chsi_faq_reloads_total``, ``chsi_faq_reload_failures_total``, ``chsi_faq_entries``.

Several processes: each process serves its own numbers (one uvicorn process per instance, as
``bot.py serve`` runs); scrape every instance — Prometheus sums across them. prometheus-client's
multiprocess mode is not used.
"""
from __future__ import annotations

import hmac
import logging
import time
from typing import Any, Callable, Iterable, Mapping

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

import settings

log = logging.getLogger(__name__)
FLOW_EVENTS = ("started", "completed", "failed", "cancelled", "expired", "handed_off", "error")


class MetricsConfigError(settings.ConfigError):
    """Metrics are enabled without a token."""


class Metrics:
    """The app's metric objects and the collectors that read live state at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("chsi_http_requests", "HTTP requests by route template, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("chsi_http_request_duration_seconds", "HTTP request latency by route template",
                                 ["route"], registry=r,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.decisions = Counter("chsi_turn_decisions", "Conversation turns by decision", ["decision"], registry=r)
        self.intents = Counter("chsi_turn_intents", "Conversation turns by recognised intent", ["intent"], registry=r)
        self.feedback = Counter("chsi_feedback", "有帮助/没帮助 votes", ["vote"], registry=r)
        self.flows = Counter("chsi_flow_events", "Guided flows started and how they ended", ["flow", "event"],
                             registry=r)
        self.account_calls = Counter("chsi_account_api_calls", "Account API calls by operation and result",
                                     ["operation", "result"], registry=r)

    # ---- what the engine reports ------------------------------------------------------------

    def turn(self, event: Any) -> None:
        """Count one turn event (``handlers.insights.TurnEvent``)."""
        self.decisions.labels(event.decision or "none").inc()
        if event.intent:
            self.intents.labels(event.intent).inc()
        if event.feedback:
            self.feedback.labels(event.feedback).inc()
        if event.flow_event in FLOW_EVENTS and event.flow:
            self.flows.labels(event.flow, event.flow_event).inc()

    def collect_from(self, collect: Callable[[], Iterable[Any]]) -> None:
        """Add metrics read at scrape time."""
        self.registry.register(_Collector(collect))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Collector:
    def __init__(self, collect: Callable[[], Iterable[Any]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Any]:
        try:
            yield from self._collect()
        except Exception as e:  # a failing source must not break the whole scrape
            log.warning("metrics: a collector failed: %s", e.__class__.__name__)

    def describe(self) -> Iterable[Any]:
        return []


# ---- wiring around existing parts ---------------------------------------------------------------

class CountingSink:
    """Turn events go to the metrics and on to the insights writer (if any)."""

    def __init__(self, metrics: Metrics, inner: Any = None) -> None:
        self.metrics, self.inner = metrics, inner

    def record(self, event: Any) -> None:
        self.metrics.turn(event)
        if self.inner is not None:
            self.inner.record(event)

    def __getattr__(self, name: str) -> Any:   # stats, flush, store: the writer's
        if self.inner is None:
            raise AttributeError(name)
        return getattr(self.inner, name)


class CountingAccounts:
    """An ``AccountAPI`` that counts each call by operation and result (``ok`` or the error class)."""

    def __init__(self, inner: Any, counter: Counter) -> None:
        self._inner, self._counter = inner, counter

    def with_client_id(self, client_id: str) -> "CountingAccounts":
        return CountingAccounts(self._inner.with_client_id(client_id), self._counter)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or not callable(attr) or name in ("close",):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = attr(*args, **kwargs)
            except Exception as e:
                self._counter.labels(name, e.__class__.__name__).inc()
                raise
            self._counter.labels(name, "ok").inc()
            return result
        return call


def _handoff_states(engine: Any) -> Iterable[Any]:
    store = getattr(getattr(engine, "handoffs", None), "store", None)
    if store is None:
        return
    g = GaugeMetricFamily("chsi_handoffs", "Hand-offs by state", labels=["state"])
    db = getattr(store, "db", None)
    counts: dict[str, int] = {s: 0 for s in ("waiting", "active", "closed", "abandoned")}
    if db is not None:
        for row in db.tx().rows("SELECT status, COUNT(*) AS n FROM handoffs GROUP BY status"):
            counts[str(row["status"])] = int(row["n"])
    else:
        for state in counts:
            counts[state] = len(store.list(state, limit=100000))
    for state, n in counts.items():
        g.add_metric([state], n)
    yield g
    yield GaugeMetricFamily("chsi_handoff_pushes_waiting", "Staff messages that did not reach the user yet, "
                            "kept to be sent again (handlers/redelivery.py)", value=store.pushes_pending())


def _insights(engine: Any) -> Iterable[Any]:
    stats = getattr(getattr(getattr(engine, "insights", None), "inner", None), "stats", None)
    if stats is None:
        return
    c = CounterMetricFamily("chsi_insights_events", "Turn events by what happened to them", labels=["outcome"])
    c.add_metric(["written"], stats.written)
    c.add_metric(["dropped"], stats.dropped)
    c.add_metric(["failed"], stats.failed)
    yield c


def _faq(live: Any) -> Iterable[Any]:
    if live is None:
        return
    yield CounterMetricFamily("chsi_faq_reloads", "FAQ edits swapped in without a restart", value=live.stats.reloads)
    yield CounterMetricFamily("chsi_faq_reload_failures", "FAQ edits refused (the last good FAQ stayed)",
                              value=live.stats.failures)
    yield GaugeMetricFamily("chsi_faq_entries", "FAQ entries being served", value=len(live.current.faq.entries))


def install(app: Any, cfg: Mapping[str, Any], engine: Any, live: Any = None) -> Metrics | None:
    """Mount ``GET /metrics`` and the request middleware when ``metrics.enabled``; None otherwise."""
    conf = settings.MetricsConfig.of(cfg)
    if not conf.enabled:
        return None
    token = conf.token
    if not token:
        raise MetricsConfigError("config.yaml metrics: enabled needs a token (set METRICS_TOKEN)")
    metrics = Metrics()
    if hasattr(engine, "insights"):
        engine.insights = CountingSink(metrics, engine.insights)
    if getattr(engine, "accounts", None) is not None:
        engine.accounts = CountingAccounts(engine.accounts, metrics.account_calls)
    metrics.collect_from(lambda: _handoff_states(engine))
    metrics.collect_from(lambda: _insights(engine))
    metrics.collect_from(lambda: _faq(live))

    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def scrape(request: Request) -> Response:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response('{"error":"unauthorized","message":"需要有效的监控令牌。"}', status_code=401,
                            media_type="application/json", headers={"WWW-Authenticate": "Bearer"})
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(router)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.state.metrics = metrics
    return metrics


class RequestMetrics:
    """ASGI middleware: count and time every HTTP request by its route template."""

    def __init__(self, app: Callable, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "other"
            self.metrics.requests.labels(route, scope.get("method", ""), str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
