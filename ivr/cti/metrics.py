"""Prometheus metrics of the CTI API, served at ``GET /metrics`` to a supervisor's or admin's token.

Each application has a registry of its own (:class:`ApiMetrics`), so several apps in one process
(tests, benchmarks) never share or collide. Two kinds of figures:

* read from Redis at each scrape (:class:`Snapshot`): active calls, callers waiting and the longest
  wait per queue, agents per state, and, when the app has a webhook outbox
  (:data:`WEBHOOK_BACKLOG`), the undelivered events per endpoint and the dead letters;
* the figures the alert rules read (:class:`ivr.alerts.engine.Collector`), so that Prometheus can mirror
  every rule (``deploy/prometheus/ivr-alerts.yml``): the service level per queue, answer-time
  threshold and window, the abandon rate per window, the agents the queue needs and has signed in, the
  worker load, whether the speech service is up; and the active alerts per severity;
* counted in this process: the screen-pop latency (offer in Redis -> written on the agent's socket,
  fed by ``PopHub(observe_pop=...)``), the desktop sockets open here, and HTTP requests by route
  template (never the raw path: bounded label values) and status.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ivr.alerts.engine import Collector as AlertFigures
from ivr.alerts.engine import QueueFigures
from ivr.core.config import Settings
from ivr.core.events import AgentState
from ivr.cti.alerts import ALERTS
from ivr.cti.auth import require_role
from ivr.cti.context import HUB, SETTINGS, STORE, user
from ivr.cti.hub import PopHub
from ivr.queues.alerts_store import AlertStore, counts
from ivr.queues.quality import QualityStore
from ivr.queues.store import QueueStore

#: screen-pop latency buckets, 1 ms .. 2 s (the worker waits ``api.pop_wait_ms`` at most, 1.5 s by default)
POP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class WebhookBacklog(Protocol):
    """What the metrics read of the webhook outbox (:mod:`ivr.cti.webhooks` sets it on the app)."""

    async def backlog(self) -> dict[str, int]:
        """Events waiting for delivery, per endpoint."""
        ...

    async def dead_count(self) -> int:
        """Deliveries given up after the last retry."""
        ...


WEBHOOK_BACKLOG = web.AppKey("webhook_backlog", WebhookBacklog)


@dataclass(frozen=True)
class Snapshot:
    """The figures read from Redis for one scrape."""

    active_calls: int = 0
    waiting: dict[str, int] = field(default_factory=dict)
    longest_wait_s: dict[str, float] = field(default_factory=dict)
    agents: dict[str, int] = field(default_factory=dict)
    desktops: int = 0
    webhook_backlog: dict[str, int] | None = None
    dead_letters: int | None = None
    transcribe: dict[str, int] | None = None  # the transcriber's backlog and counters, once it ever ran
    alert_queues: dict[str, QueueFigures] | None = None  # what the queue alert rules read
    worker_load: float | None = None
    speech_up: bool | None = None  # None: speech.enabled is off
    alerts_active: dict[str, int] | None = None  # per severity


async def read_snapshot(store: QueueStore, hub: PopHub | None = None,
                        outbox: WebhookBacklog | None = None, settings: Settings | None = None,
                        alerts: AlertStore | None = None) -> Snapshot:
    """Read the figures: one script call per 50 queues and one pipeline for the agents' states; with
    ``settings``, the alert rules' figures too (as many script calls again, one pass over the agents,
    the workers' heartbeats, the speech probe)."""
    now = int(time.time())
    # callers waiting and the oldest of each queue, 50 queues per script call (queue_snapshot per queue
    # would walk every agent once per queue: seconds per scrape on a big floor)
    reader = alerts or AlertStore(store.redis, store.keys.prefix)  # reads only: no event written
    queues = sorted(await store.queue_names())
    live = await reader.queues_now(queues, now + 1, []) if queues else []
    waiting = {q.queue: q.waiting for q in live}
    longest = {q.queue: q.longest_wait_s for q in live}
    agents = {s.value: 0 for s in AgentState}
    ids = await store.agent_ids()
    for state in await store.agent_states(ids) if ids else []:
        if state is not None:
            agents[state] = agents.get(state, 0) + 1
    desktops = sum(len(s) for s in hub.sockets.values()) if hub is not None else 0
    backlog = await outbox.backlog() if outbox is not None else None
    dead = await outbox.dead_count() if outbox is not None else None
    quality = QualityStore(store)
    figures = {**await quality.stats(), "backlog": await quality.backlog()}
    transcribe = figures if len(figures) > 1 or figures["backlog"] else None  # None: transcription never ran
    fig = await AlertFigures(store, settings, webhooks=outbox).collect() if settings is not None else None
    active = counts(await alerts.active()) if alerts is not None else None
    return Snapshot(len(await store.active_calls()), waiting, longest, agents, desktops, backlog, dead, transcribe,
                    fig.queues if fig is not None else None, fig.worker_load if fig is not None else None,
                    fig.speech_up if fig is not None else None, active)


class SnapshotCollector(Collector):
    """Exposes the last :class:`Snapshot` (set just before each scrape is rendered)."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        yield GaugeMetricFamily("ivr_active_calls", "Calls in progress (IVR, queued, offered or connected)",
                                value=s.active_calls)
        waiting = GaugeMetricFamily("ivr_queue_waiting_calls", "Callers waiting in the queue", labels=["queue"])
        longest = GaugeMetricFamily("ivr_queue_longest_wait_seconds", "Wait of the queue's longest-waiting caller",
                                    labels=["queue"])
        for queue, n in s.waiting.items():
            waiting.add_metric([queue], n)
            longest.add_metric([queue], s.longest_wait_s.get(queue, 0.0))
        yield waiting
        yield longest
        agents = GaugeMetricFamily("ivr_agents", "Agents per state", labels=["state"])
        for state, n in sorted(s.agents.items()):
            agents.add_metric([state], n)
        yield agents
        yield GaugeMetricFamily("ivr_desktop_sockets", "Desktop and wallboard WebSockets open on this API instance",
                                value=s.desktops)
        if s.webhook_backlog is not None:
            backlog = GaugeMetricFamily("ivr_webhook_backlog", "Events waiting for delivery to the endpoint",
                                        labels=["endpoint"])
            for endpoint, n in sorted(s.webhook_backlog.items()):
                backlog.add_metric([endpoint], n)
            yield backlog
        if s.dead_letters is not None:
            yield GaugeMetricFamily("ivr_webhook_dead_letters", "Webhook deliveries given up after the last retry",
                                    value=s.dead_letters)
        yield from self._alert_figures(s)
        if s.transcribe is not None:
            t = s.transcribe
            yield GaugeMetricFamily("ivr_transcribe_backlog", "Recordings waiting for the transcriber",
                                    value=t.get("backlog", 0))
            jobs = CounterMetricFamily("ivr_transcribe_jobs", "Recordings the transcriber finished, by status",
                                       labels=["status"])
            for status in ("done", "failed", "skipped"):
                jobs.add_metric([status], t.get(status, 0))
            yield jobs
            lag = GaugeMetricFamily("ivr_transcribe_lag_seconds", "Call end to transcript stored: the last job's, "
                                    "the largest, and the mean", labels=["which"])
            lag.add_metric(["last"], t.get("lag_ms_last", 0) / 1000)
            lag.add_metric(["max"], t.get("lag_ms_max", 0) / 1000)
            lag.add_metric(["mean"], t.get("lag_ms_sum", 0) / 1000 / t["done"] if t.get("done") else 0.0)
            yield lag
            yield CounterMetricFamily("ivr_transcribe_audio_seconds", "Call audio transcribed",
                                      value=t.get("audio_ms", 0) / 1000)
            yield CounterMetricFamily("ivr_transcribe_decode_seconds", "Wall time spent decoding it",
                                      value=t.get("decode_ms", 0) / 1000)


    @staticmethod
    def _alert_figures(s: Snapshot) -> Iterator[Metric]:
        if s.alert_queues is not None:
            sl = GaugeMetricFamily("ivr_queue_service_level", "Service level with abandons (answered within the "
                                   "threshold / answered + abandoned) over the window; absent with fewer calls than "
                                   "the alert rule's min_calls", labels=["queue", "threshold", "window"])
            abandon = GaugeMetricFamily("ivr_queue_abandon_rate", "Abandoned / offered (short abandons left out) "
                                        "over the window; absent with fewer calls than min_calls",
                                        labels=["queue", "window"])
            required = GaugeMetricFamily("ivr_queue_agents_required", "Agents the queue needs on the phones now "
                                         "(forecast and Erlang; absent without a forecast)", labels=["queue"])
            signed_in = GaugeMetricFamily("ivr_queue_agents_signed_in", "Agents with the queue's skill signed in and "
                                          "not on break", labels=["queue"])
            for queue, q in sorted(s.alert_queues.items()):
                for (threshold, window), v in sorted(q.service_level.items()):
                    if v is not None:
                        sl.add_metric([queue, str(threshold), str(window)], v)
                for window, v in sorted(q.abandon_rate.items()):
                    if v is not None:
                        abandon.add_metric([queue, str(window)], v)
                if q.required is not None:
                    required.add_metric([queue], q.required)
                signed_in.add_metric([queue], q.signed_in)
            yield from (sl, abandon, required, signed_in)
        if s.worker_load is not None:
            yield GaugeMetricFamily("ivr_worker_load", "Calls held / caller slots of the live workers",
                                    value=s.worker_load)
        if s.speech_up is not None:
            yield GaugeMetricFamily("ivr_speech_up", "1 when the speech service's /healthz answers 200",
                                    value=1.0 if s.speech_up else 0.0)
        if s.alerts_active is not None:
            active = GaugeMetricFamily("ivr_alerts_active", "Active floor alerts by severity", labels=["severity"])
            for severity, n in s.alerts_active.items():
                active.add_metric([severity], n)
            yield active


class ApiMetrics:
    """The registry of one application and its metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.snapshot = SnapshotCollector()
        self.registry.register(self.snapshot)
        self.pop_latency = Histogram(
            "ivr_pop_latency_seconds", "Screen-pop latency: from the offer in Redis to its write on the agent's socket",
            buckets=POP_BUCKETS, registry=self.registry)
        self.http_requests = Counter("ivr_http_requests", "HTTP requests by method, route template and status",
                                     ["method", "route", "status"], registry=self.registry)
        self.http_duration = Histogram(
            "ivr_http_request_duration_seconds", "HTTP request handling time (WebSockets excluded)",
            ["method", "route"], buckets=HTTP_BUCKETS, registry=self.registry)
        self._render = make_aiohttp_handler(self.registry, disable_compression=True)

    def observe_pop(self, seconds: float) -> None:
        self.pop_latency.observe(seconds)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.http_requests.labels(method, route, str(status)).inc()
        if status != 101:
            self.http_duration.labels(method, route).observe(seconds)

    async def serve(self, request: web.Request, snapshot: Snapshot) -> web.StreamResponse:
        """The exposition (text or OpenMetrics, as the scraper asks) with ``snapshot``'s figures."""
        self.snapshot.snapshot = snapshot  # no await between this and the rendering
        return await self._render(request)


METRICS = web.AppKey("metrics", ApiMetrics)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_of(request: web.Request) -> str:
    """The route template that matched (``/api/v1/agents/{agent_id}``), ``unmatched`` for 404/405."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def metrics_middleware(metrics: ApiMetrics) -> Middleware:
    """Counts every request by route and final status; put it first so it sees the error middleware's replies."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        start, status = time.perf_counter(), 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.observe_request(request.method, route_of(request), status, time.perf_counter() - start)

    return count


async def metrics_endpoint(request: web.Request) -> web.StreamResponse:
    """``GET /metrics`` (supervisor or admin)."""
    require_role(await user(request), "supervisor", "admin")
    app = request.app
    snapshot = await read_snapshot(app[STORE], app.get(HUB), app.get(WEBHOOK_BACKLOG), app[SETTINGS], app.get(ALERTS))
    return await app[METRICS].serve(request, snapshot)


def routes() -> list[web.RouteDef]:
    return [web.get("/metrics", metrics_endpoint)]
