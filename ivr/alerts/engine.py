"""The alert evaluator: reads the figures every rule needs from Redis (and the webhook outbox, the
workers' heartbeats, the speech service), evaluates the rules (:mod:`ivr.alerts.evaluator`) and makes
the changes in one Lua step (:class:`ivr.queues.alerts_store.AlertStore`).

It runs in every API process (``resources_ctx``), but only the holder of the Redis lease evaluates:
with several API instances one evaluates, and when it dies its lease expires and another takes over
at its next tick. The hysteresis timers live in Redis, so the new evaluator goes on with them (an
alert half-way through ``for_s`` is not restarted, an active one is not raised again).

What each metric measures (per queue unless said):

- ``service_level``: SL2 at the rule's ``threshold_s`` (answered within / (answered + abandoned)) over
  the intervals of the last ``window_s`` (the statistics intervals that start after ``now - window_s``,
  the one holding that moment included: the window is ``window_s`` to ``window_s`` + one interval);
  fewer than ``min_calls`` calls: no verdict.
- ``abandon_rate``: abandoned / (offered - short abandons) over the same window; ``min_calls`` likewise.
- ``longest_wait_s``, ``waiting``: the queue now.
- ``staffing_gap``: :func:`ivr.planning.service.staffing_now`'s ``required`` minus the agents with the
  queue's skill signed in and not on break; no forecast: no verdict.
- system: ``webhook_backlog`` (events waiting, every endpoint), ``dead_letters``, ``worker_load`` (calls
  held / caller slots of the live workers), ``speech_down`` (1 when ``speech.enabled`` and its
  ``/healthz`` does not answer 200 within a second).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import aiohttp
from redis.exceptions import RedisError

from ivr.alerts.config import EffectiveRule, rules_for
from ivr.alerts.evaluator import evaluate
from ivr.core.config import Settings
from ivr.core.events import AgentState
from ivr.core.logging import LogThrottle, get_logger
from ivr.planning.service import StaffingNow, staffing_now
from ivr.queues.alerts_store import AlertStore, NotLeader, QueueNow, alert_key, worker_capacity
from ivr.queues.stats import Interval, merge
from ivr.queues.store import QueueStore

log = get_logger(__name__)

MAX_QUEUES = 1000  # queues evaluated at most (configured first, then Redis's, by name)
MAX_WORKERS = 1000  # worker heartbeats read at most
PROBE_TIMEOUT_S = 1.0
RELEASE_TIMEOUT_S = 1.0
NOT_STAFFING = frozenset({AgentState.OFFLINE.value, AgentState.BREAK.value})


class WebhookFigures(Protocol):
    """What the evaluator reads of the webhook outbox (the API's ``Webhooks``)."""

    async def backlog(self) -> dict[str, int]: ...

    async def dead_count(self) -> int: ...


Staffing = Callable[[QueueStore, Settings, str, float], Awaitable[StaffingNow | None]]
Probe = Callable[[], Awaitable[bool]]


@dataclass
class QueueFigures:
    """One queue's figures, as the rules and the Prometheus gauges read them."""

    queue: str
    waiting: int = 0
    longest_wait_s: float = 0.0
    signed_in: int = 0  # agents with the queue's skill, signed in and not on break
    required: int | None = None
    service_level: dict[tuple[int, int], float | None] = field(default_factory=dict)  # (threshold_s, window_s)
    abandon_rate: dict[int, float | None] = field(default_factory=dict)  # window_s


@dataclass
class Figures:
    """Everything one evaluation measured; ``values`` by alert key (None: no verdict)."""

    at_s: float
    queues: dict[str, QueueFigures] = field(default_factory=dict)
    webhook_backlog: int | None = None
    dead_letters: int | None = None
    worker_load: float | None = None
    speech_up: bool | None = None
    values: dict[str, float | None] = field(default_factory=dict)
    rules: list[EffectiveRule] = field(default_factory=list)


def window_figures(intervals: Sequence[Interval], now_s: float, window_s: int, interval_s: int) -> dict[str, int]:
    """The counters of the intervals starting after ``now_s - window_s`` (the one holding it included)."""
    start = int(now_s - window_s)
    start -= start % interval_s
    return merge(iv for iv in intervals if iv.start_s >= start)


def sl2(counts: dict[str, int], threshold_s: int, min_calls: int) -> float | None:
    den = counts.get("answered", 0) + counts.get("abandoned", 0)
    return counts.get(f"answered_within_{threshold_s}", 0) / den if den >= max(1, min_calls) else None


def abandon_rate(counts: dict[str, int], min_calls: int) -> float | None:
    den = counts.get("offered", 0) - counts.get("short_abandoned", 0)
    return counts.get("abandoned", 0) / den if den >= max(1, min_calls) else None


async def queue_list(store: QueueStore, settings: Settings) -> list[str]:
    """The configured queues and those in Redis, by name, at most :data:`MAX_QUEUES`."""
    configured = sorted(settings.routing.queues)
    seen = set(configured)
    known = sorted(q for q in await store.queue_names() if q not in seen)
    return [*configured, *known][:MAX_QUEUES]


async def worker_load(store: QueueStore) -> float | None:
    """Calls held / caller slots of the live workers (a draining worker has 0 slots); None: none alive."""
    busy, slots = await worker_capacity(store, MAX_WORKERS)
    return busy / slots if slots > 0 else (1.0 if busy else None)


def speech_probe(settings: Settings) -> Probe:
    """Whether the speech service's ``/healthz`` answers 200 within :data:`PROBE_TIMEOUT_S`."""
    url = f"http://{settings.speech.host}:{settings.speech.port}/healthz"

    async def probe() -> bool:
        try:
            timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
            async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    return probe


#: Forecasting a queue's day for its staffing need costs up to a few hundred ms (read 8 weeks of
#: history, back-test, Erlang per interval), once per queue and day: an evaluation spends at most this
#: on queues not forecast yet today, the others have no staffing verdict until a later evaluation. So
#: the first evaluations of a day with many queues stay short (the other rules are not held up).
STAFFING_COLD_BUDGET_S = 0.5


class Collector:
    """Reads the figures of every rule in force (and the Prometheus gauges)."""

    def __init__(self, store: QueueStore, settings: Settings, *, webhooks: WebhookFigures | None = None,
                 staffing: Staffing = staffing_now, probe: Probe | None = None,
                 alerts: AlertStore | None = None) -> None:
        self.store, self.settings, self.webhooks, self.staffing = store, settings, webhooks, staffing
        self.probe = probe if probe is not None else speech_probe(settings)
        self.alerts = alerts or AlertStore(store.redis, store.keys.prefix, settings.routing.events_maxlen)
        self.cold_budget_s = STAFFING_COLD_BUDGET_S
        self._forecast_day: dict[str, int] = {}  # queue -> the day (local ordinal) its staffing was computed
        self._cold_spent = 0.0

    async def collect(self, now_s: float | None = None) -> Figures:
        now_s = time.time() if now_s is None else now_s
        fig = Figures(now_s)
        self._cold_spent = 0.0
        queues = await queue_list(self.store, self.settings)
        rules = {q: rules_for(self.settings, q) for q in queues}
        windows = [r.window_s for rs in rules.values() for r in rs if r.metric in ("service_level", "abandon_rate")]
        since = int(now_s - max([*windows, 1800]))
        since -= since % self.store.stats_config.interval_s
        counters = ["offered", "answered", "abandoned", "short_abandoned",
                    *(f"answered_within_{t}" for t in self.store.stats_config.service_level_s)]
        snapshot = {q.queue: q for q in await self.alerts.queues_now(queues, since, counters)} if queues else {}
        agents = await self.alerts.agents_by_skill() if queues else {}
        for queue in queues:
            fig.rules.extend(rules[queue])
            now = snapshot[queue]
            fig.queues[queue] = await self._queue(now, agents.get(now.skill or queue, {}), rules[queue], now_s,
                                                  fig.values)
        system = rules_for(self.settings, None)
        fig.rules.extend(system)
        if self.webhooks is not None:
            fig.webhook_backlog = sum((await self.webhooks.backlog()).values())
            fig.dead_letters = await self.webhooks.dead_count()
        fig.worker_load = await worker_load(self.store)
        if self.settings.speech.enabled:
            fig.speech_up = await self.probe()
        for r in system:
            v: float | None = {"webhook_backlog": fig.webhook_backlog, "dead_letters": fig.dead_letters,
                               "worker_load": fig.worker_load,
                               "speech_down": None if fig.speech_up is None else float(not fig.speech_up),
                               }.get(r.metric)
            fig.values[alert_key(r.name, None)] = None if v is None else float(v)
        return fig

    async def _required(self, queue: str, now_s: float) -> int | None:
        """The queue's staffing need now; None without a forecast, or while the queue waits its turn
        to be forecast today (:data:`STAFFING_COLD_BUDGET_S`)."""
        day = datetime.fromtimestamp(now_s).toordinal()
        warm = self._forecast_day.get(queue) == day
        if not warm and self._cold_spent >= self.cold_budget_s:
            return None
        t = time.perf_counter()
        need = await self.staffing(self.store, self.settings, queue, now_s)
        if not warm:
            self._cold_spent += time.perf_counter() - t
            if len(self._forecast_day) > 100_000:  # queues come and go: bounded
                self._forecast_day.clear()
            self._forecast_day[queue] = day
        return need.required if need is not None else None

    async def _queue(self, now: QueueNow, agents: dict[str, int], rules: Sequence[EffectiveRule], now_s: float,
                     values: dict[str, float | None]) -> QueueFigures:
        cfg = self.store.stats_config
        queue = now.queue
        q = QueueFigures(queue, now.waiting, now.longest_wait_s,
                         sum(n for s, n in agents.items() if s not in NOT_STAFFING))
        if any(r.metric == "staffing_gap" for r in rules):
            q.required = await self._required(queue, now_s)
        for r in rules:
            v: float | None = None
            if r.metric == "service_level":
                t = r.threshold_s or min(cfg.service_level_s)
                v = sl2(window_figures(now.intervals, now_s, r.window_s, cfg.interval_s), t, r.min_calls)
                q.service_level[(t, r.window_s)] = v
            elif r.metric == "abandon_rate":
                v = abandon_rate(window_figures(now.intervals, now_s, r.window_s, cfg.interval_s), r.min_calls)
                q.abandon_rate[r.window_s] = v
            elif r.metric == "longest_wait_s":
                v = q.longest_wait_s
            elif r.metric == "waiting":
                v = float(q.waiting)
            elif r.metric == "staffing_gap":
                v = None if q.required is None else float(q.required - q.signed_in)
            values[alert_key(r.name, queue)] = v
        return q


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class AlertEvaluator:
    """Evaluates the rules every ``alerts.evaluate_s`` while it holds the lease."""

    def __init__(self, store: QueueStore, settings: Settings, *, webhooks: WebhookFigures | None = None,
                 owner: str | None = None, staffing: Staffing = staffing_now, probe: Probe | None = None,
                 alerts: AlertStore | None = None) -> None:
        self.store, self.settings = store, settings
        self.owner = owner or default_owner()
        self.alerts = alerts or AlertStore(store.redis, store.keys.prefix, settings.routing.events_maxlen)
        self.collector = Collector(store, settings, webhooks=webhooks, staffing=staffing, probe=probe,
                                   alerts=self.alerts)
        self.lease_ms = max(1000, int(settings.alerts.evaluate_s * 3000))
        self.stopped = False

    async def evaluate(self, now_ms: int | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        """One evaluation at ``now_ms`` (default the clock): the alerts raised and cleared, or None when
        another instance holds the lease."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        if self.stopped or not await self.alerts.lease(self.owner, self.lease_ms):
            return None
        fig = await self.collector.collect()
        active = await self.alerts.active_keys()
        pending = await self.alerts.pending()
        changes = evaluate(fig.rules, fig.values, active, pending, now_ms)
        if not changes:
            return [], []
        try:
            raised, cleared = await self.alerts.apply(
                self.owner, changes, now_ms=now_ms, history_ms=self.settings.alerts.history_days * 86_400_000)
        except NotLeader:
            return None
        for a in raised:
            log.warning("alert.raised", id=a["id"], rule=a["rule"], queue=a["queue"], severity=a["severity"],
                        value=a["value"], threshold=a["threshold"], message=a["message"])
        for a in cleared:
            log.info("alert.cleared", id=a["id"], rule=a["rule"], queue=a["queue"], severity=a["severity"],
                     value=a.get("clear_value"), message=a.get("clear_message", ""))
        return raised, cleared

    async def stop(self) -> None:
        """Stop evaluating and give the lease up, so that another instance takes over at its next tick.
        Call it before cancelling :meth:`run` (no Redis command is sent once that is cancelled: a Redis
        client cancelled mid-command may hold the other tasks' shutdown up)."""
        self.stopped = True
        try:
            await asyncio.wait_for(self.alerts.release(self.owner), RELEASE_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:  # Redis away: the lease expires on its own
            log.info("alerts.release_failed", error=repr(exc))

    async def run(self) -> None:
        """Evaluate every ``evaluate_s`` until stopped or cancelled."""
        every = self.settings.alerts.evaluate_s
        throttle = LogThrottle(every_s=60.0)
        me = asyncio.current_task()
        await asyncio.sleep(min(every, 1.0))  # not in the API's first moments: the hub connects first
        while not self.stopped:
            started = time.monotonic()
            try:
                await self.evaluate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away, a bug: log (once a minute) and go on at the next tick
                allowed, held = throttle.allow("evaluate")
                if allowed:
                    log.error("alerts.evaluate_failed", error=repr(exc), held_back=held)
            if me is not None and me.cancelling():
                raise asyncio.CancelledError  # a library under evaluate() may have swallowed it
            await asyncio.sleep(max(0.05, every - (time.monotonic() - started)))
