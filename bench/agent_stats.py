"""Per-agent statistics on a private redis-server: what the wallboard's reads cost with many agents, and
what counting costs an agent's state change.

    .venv/bin/python bench/agent_stats.py [--agents 2000] [--out bench/results/agent-stats-<date>.json]

- read: ``AgentStatsStore.read`` of every agent over today (each agent with figures in every quarter
  hour since midnight), by interval and summed per local day (what ``GET /api/v1/agents/stats`` and the
  wallboard's "Agent figures today" do): seconds per read (median of 5), and the longest single script
  run (50 agents: how long Redis is busy at most at a time).
- state change: ``set_agent_state`` back and forth (each change splits a few seconds into the current
  interval): p50/p95 ms; and the worst case, a state held for 60 days (48 hours split: 192 intervals).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from bench.harness import private_redis  # noqa: E402
from ivr.core.events import AgentState  # noqa: E402
from ivr.queues.agent_stats import AgentStatsStore, local_days, local_midnight  # noqa: E402
from ivr.queues.stats import StatsConfig  # noqa: E402
from ivr.queues.store import QueueStore  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))], 3)


async def fill(store: QueueStore, redis: Redis, n: int) -> tuple[int, int, int]:
    """``n`` agents, each with figures in every quarter hour of today so far: (midnight, now, intervals)."""
    for j in range(n):
        await store.register_agent(f"a{j}", name=f"a{j}", skills={"billing": 3}, sip_uri=None, languages=["en"])
    now = int(time.time())
    day = local_midnight(now)
    starts = list(range(day - day % 900, now - now % 900 + 1, 900))
    for j in range(n):
        async with redis.pipeline(transaction=False) as p:
            for s in starts:
                p.hset(store.keys.agent_interval(f"a{j}", s), mapping={
                    "start": s, "length_s": 900, "ms_available": 300_000, "ms_oncall": 480_000, "ms_wrapup": 60_000,
                    "ms_break": 60_000, "handled": 3, "handle_ms": 600_000, "talk_ms": 500_000, "hold_ms": 40_000})
                p.zadd(store.keys.agent_intervals(f"a{j}"), {str(s): s})
            await p.execute()
    return day, now, len(starts)


async def run(url: str, n: int) -> dict[str, object]:
    redis = Redis.from_url(url)
    try:
        store = QueueStore(redis, prefix="bench", stats=StatsConfig())
        day, now, intervals = await fill(store, redis, n)
        ids = await store.agent_ids()
        reader = AgentStatsStore(store)
        out: dict[str, object] = {"agents": n, "intervals_per_agent": intervals}
        for label, buckets in (("by_interval", None), ("by_day", local_days(day, now + 1))):
            times = []
            for _ in range(5):
                t = time.perf_counter()
                got = [g async for g in reader.read(ids, day, now + 1, buckets=buckets)]
                times.append(time.perf_counter() - t)
                assert len(got) == n
            out[f"read_{label}_s"] = {"median": round(statistics.median(times), 3), "min": round(min(times), 3),
                                      "max": round(max(times), 3)}
        spec = json.dumps(local_days(day, now + 1))
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            await store._run("agent_stats", day, now + 1, "", *ids[:50])
            runs.append((time.perf_counter() - t) * 1000)
        out["one_script_run_50_agents_by_interval_ms"] = round(statistics.median(runs), 1)
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            await store._run("agent_stats", day, now + 1, spec, *ids[:50])
            runs.append((time.perf_counter() - t) * 1000)
        out["one_script_run_50_agents_by_day_ms"] = round(statistics.median(runs), 1)
        await store.set_agent_state("a0", AgentState.AVAILABLE)
        lat = []
        for i in range(400):
            t = time.perf_counter()
            await store.set_agent_state("a0", AgentState.BREAK if i % 2 else AgentState.AVAILABLE)
            lat.append((time.perf_counter() - t) * 1000)
        out["set_agent_state_ms"] = {"p50": pct(lat, 0.5), "p95": pct(lat, 0.95)}
        await redis.hset(store.keys.agent("a1"), mapping={
            "state": "break", "state_since": str(int(time.time() * 1000) - 60 * 86400 * 1000)})
        t = time.perf_counter()
        await store.set_agent_state("a1", AgentState.AVAILABLE)
        out["set_agent_state_after_60_days_ms"] = round((time.perf_counter() - t) * 1000, 1)
        return out
    finally:
        await redis.aclose()


def main(agents: int) -> dict[str, object]:
    with private_redis() as url:
        res = asyncio.run(run(url, agents))
    return {"bench": "agent_stats", "at": datetime.now(UTC).isoformat(timespec="seconds"), **res}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=2000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    res = main(args.agents)
    out = args.out or ROOT / "bench" / "results" / f"agent-stats-{datetime.now(UTC):%Y-%m-%dT%H%M%S}.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
