"""How long one evaluation of every alert rule takes on a big floor (``python bench/alerts.py``, about
two minutes): 200 queues, 2,000 agents (10 per queue, in every state), 8 weeks of interval history
per queue (business hours: what the staffing rule's forecast learns from), today's counters and
callers waiting, on a private redis-server.

One *evaluation* is what the evaluator does every ``alerts.evaluate_s``: take the lease, read every
queue's figures (one ``queue_snapshot`` script call each: waiting, longest wait, agents by state,
the window's intervals), ask the staffing need (:func:`ivr.planning.service.staffing_now`), read the
webhook outbox, the workers' heartbeats and the speech service's ``/healthz`` (a local aiohttp server
here), evaluate the default rules (9: 5 per queue, 4 system ones = 1,004 rule instances) and apply
the changes in one Lua step. The evaluator's clock advances 5 s per evaluation, so the hysteresis
timers run and alerts are raised along the way (the queues with more than 10 callers waiting).

Reported: p50 / p95 / max of a whole evaluation, of the reading part alone (``collect``), and of the
Lua step; the alerts raised; the Redis memory the alert keys use; how many queues had a staffing
verdict, and the first evaluations of the day apart (``cold``: each queue's first staffing need of the
day is a forecast, spread over evaluations by ``STAFFING_COLD_BUDGET_S``; ``evaluations_until_all_staffed``);
the load average at the end (the machine may be shared). Writes
bench/results/alerts-<time>.json and prints it.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from bench.harness import private_redis  # noqa: E402
from ivr.alerts.engine import AlertEvaluator  # noqa: E402
from ivr.core.config import Settings  # noqa: E402
from ivr.core.events import AgentState  # noqa: E402
from ivr.cti.webhooks import Webhooks  # noqa: E402
from ivr.queues.alerts_store import AlertStore, Changes  # noqa: E402
from ivr.queues.stats import StatsConfig  # noqa: E402
from ivr.queues.store import QueueStore  # noqa: E402
from tests.ports import free_udp_tcp_port  # noqa: E402

QUEUES = 200
AGENTS_PER_QUEUE = 10
CALLS_PER_QUEUE = 12      # answered or abandoned, in today's intervals
BUSY_QUEUES = 20          # these get 12 callers waiting (over many_waiting's 10)
EVALUATIONS = 40
STEP_MS = 5000
HISTORY_WEEKS = 8         # planning.history_weeks' default
OPEN_HOURS = (8, 20)      # the history's intervals: business hours
PREFIX = "bench"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] * 1000, 2)


def summary(xs: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(xs, 50), "p95_ms": pct(xs, 95), "max_ms": round(max(xs) * 1000, 2),
            "mean_ms": round(statistics.fmean(xs) * 1000, 2)}


async def populate(store: QueueStore, rnd: random.Random) -> dict[str, int]:
    """The floor: per queue 10 agents and a dozen calls through the real scripts, then the agents'
    states spread (available, on call, wrap-up, break, offline) and callers left waiting."""
    n_calls = 0
    for q in range(QUEUES):
        queue = f"q{q:03d}"
        agents = [f"a{q:03d}-{i}" for i in range(AGENTS_PER_QUEUE)]
        for aid in agents:
            await store.register_agent(aid, name=aid, skills={queue: 3}, sip_uri=None, languages=["en"])
        await store.set_agent_state(agents[0], AgentState.AVAILABLE)
        for c in range(CALLS_PER_QUEUE):
            cid = f"{queue}-c{c}"
            await store.call_start(cid, f"w{q % 4}", ani="+15550001", dnis="1000", hotline="bench", language="en",
                                   plan_version="v1")
            offer = await store.enqueue(cid, queue=queue, skill=queue, priority=0, journey={"steps": []})
            n_calls += 1
            if offer is not None and rnd.random() < 0.85:
                await store.offer_answered(cid, offer.offer_id)
                await store.end_call(cid, reason="caller_hangup", wrapup_s=0, ttl_s=3600)
                await store.set_agent_state(agents[0], AgentState.AVAILABLE)
            else:
                if offer is not None:
                    await store.offer_failed(cid, offer.offer_id, "no_answer")
                await store.end_call(cid, reason="caller_hangup", wrapup_s=0, ttl_s=3600)
                with_offer = await store.set_agent_state(agents[0], AgentState.AVAILABLE)
                if with_offer is not None:
                    await store.offer_failed(with_offer.call_id, with_offer.offer_id, "no_answer")
        states = [AgentState.AVAILABLE, AgentState.BREAK, AgentState.BREAK, AgentState.OFFLINE]
        for i, aid in enumerate(agents[1:]):
            await store.set_agent_state(aid, states[i % len(states)])
        if q < BUSY_QUEUES:  # nobody free: callers pile up
            for aid in agents:
                await store.set_agent_state(aid, AgentState.BREAK)
            for c in range(12):
                cid = f"{queue}-w{c}"
                await store.call_start(cid, f"w{q % 4}", ani="+15550002", dnis="1000", hotline="bench",
                                       language="en", plan_version="v1")
                await store.enqueue(cid, queue=queue, skill=queue, priority=0, journey={"steps": []})
                n_calls += 1
    for w in range(4):
        await store.register_worker(f"w{w}", f"bench:{w}", ttl_s=3600, slots=200)
    return {"calls": n_calls}


async def history(store: QueueStore, rnd: random.Random) -> int:
    """``HISTORY_WEEKS`` weeks of quarter-hour counters per queue before today (as the scripts leave
    them), with a weekly and an intraday shape: what the forecast of the staffing rule reads."""
    cfg = store.stats_config
    today = datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
    written = 0
    for q in range(QUEUES):
        queue = f"q{q:03d}"
        async with store.redis.pipeline(transaction=False) as pipe:
            for d in range(1, HISTORY_WEEKS * 7 + 1):
                day = today - timedelta(days=d)
                weekday = 0.6 if day.weekday() >= 5 else 1.0
                for h in range(OPEN_HOURS[0] * 4, OPEN_HOURS[1] * 4):
                    start = int((day + timedelta(minutes=15 * h)).timestamp())
                    shape = weekday * (1.5 if 40 <= h < 48 or 56 <= h < 64 else 1.0)
                    offered = max(0, round(rnd.gauss(8 * shape, 2)))
                    abandoned = min(offered, round(offered * 0.05))
                    handled = offered - abandoned
                    pipe.hset(store.keys.queue_interval(queue, start), mapping={
                        "start": start, "length_s": cfg.interval_s, "offered": offered, "answered": handled,
                        "handled": handled, "handle_ms": handled * 180_000, "abandoned": abandoned,
                        "answer_wait_ms": handled * 8_000, "abandon_wait_ms": abandoned * 40_000})
                    pipe.zadd(store.keys.queue_intervals(queue), {str(start): start})
                    written += 1
            await pipe.execute()
    return written


async def speech_server(port: int) -> web.AppRunner:
    async def healthz(_r: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def run(url: str, seed: int) -> dict[str, Any]:
    redis = Redis.from_url(url)
    port = free_udp_tcp_port()
    settings = Settings(redis={"url": url, "prefix": PREFIX}, speech={"host": "127.0.0.1", "port": port})
    store = QueueStore(redis, PREFIX, settings.routing.events_maxlen, StatsConfig.from_routing(settings.routing))
    rnd = random.Random(seed)
    t = time.perf_counter()
    floor = await populate(store, rnd)
    floor["history_intervals"] = await history(store, rnd)
    setup_s = time.perf_counter() - t
    speech = await speech_server(port)
    hooks = Webhooks(settings.webhooks, redis, PREFIX)
    alerts = AlertStore(redis, PREFIX, settings.routing.events_maxlen)
    ev = AlertEvaluator(store, settings, webhooks=hooks, owner="bench", alerts=alerts)
    whole: list[float] = []
    collect: list[float] = []
    apply: list[float] = []
    raised = cleared = 0
    now_ms = int(time.time() * 1000)
    cold: list[float] = []
    try:
        # the first evaluations of the day: the queues' staffing forecasts, a budget's worth each time
        staffed_after = None
        for i in range(200):
            t = time.perf_counter()
            fig = await ev.collector.collect()
            cold.append(time.perf_counter() - t)
            if all(q.required is not None for q in fig.queues.values()):
                staffed_after = i + 1
                break
        for i in range(EVALUATIONS):
            t = time.perf_counter()
            await ev.collector.collect()
            collect.append(time.perf_counter() - t)
            t = time.perf_counter()
            res = await ev.evaluate(now_ms + i * STEP_MS)
            whole.append(time.perf_counter() - t)
            assert res is not None
            raised += len(res[0])
            cleared += len(res[1])
        # the Lua step alone, with every alert active again (raise skipped: deduplicated)
        active = await alerts.active_keys()
        again = Changes(raise_=[{k: v for k, v in a.items() if k not in ("id",)} for a in active.values()])
        for _ in range(20):
            t = time.perf_counter()
            await alerts.apply("bench", again, now_ms=now_ms + EVALUATIONS * STEP_MS, history_ms=30 * 86_400_000)
            apply.append(time.perf_counter() - t)
        fig = await ev.collector.collect()
        memory = 0
        for key in [store.keys.alerts_active, store.keys.alerts_pending, store.keys.alerts_history]:
            memory += int(await redis.memory_usage(key) or 0)
        rules = len(fig.rules)
    finally:
        await speech.cleanup()
        await hooks.close()
        await redis.aclose()
    return {
        "queues": QUEUES, "agents": QUEUES * AGENTS_PER_QUEUE, **floor, "busy_queues": BUSY_QUEUES,
        "rule_instances": rules, "evaluations": EVALUATIONS, "evaluate_step_ms": STEP_MS,
        "setup_s": round(setup_s, 1),
        "cold": {**summary(cold), "evaluations_until_all_staffed": staffed_after,
                 "cold_budget_s": ev.collector.cold_budget_s},
        "evaluation": summary(whole), "collect": summary(collect), "apply_lua_1_step": summary(apply),
        "alerts_raised": raised, "alerts_cleared": cleared, "active_at_end": len(active),
        "alert_keys_bytes": memory,
        "staffing_verdicts": sum(q.required is not None for q in fig.queues.values()),
        "machine": {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
                    "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},  # the machine is shared: how busy it was
    }


async def alerts_bench(seed: int = 1) -> dict[str, Any]:
    with private_redis() as url:
        result = await run(url, seed)
    result["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return result


def main() -> None:
    result = asyncio.run(alerts_bench())
    out = ROOT / "bench" / "results" / f"alerts-{datetime.now(UTC):%Y-%m-%dT%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
