"""Queue statistics on a private redis-server: what counting costs the call path, what a real-time
snapshot costs with many callers waiting, and how fast ``ivr report`` exports.

    .venv/bin/python bench/queue_stats.py [--calls 5000] [--out bench/results/queue-stats-<date>.json]

- lifecycle: calls through start -> enqueue (offered at once) -> answered -> ended, sequentially;
  per call: 4 scripts, 3 of them counting. Reported: calls/s and ms per call.
- snapshot: ``QueueStore.queue_stats`` with 200 agents of the skill and W callers waiting
  (W = 0, 100, 1000, 5000) and a day of 96 intervals: p50/p95 ms.
- report: ``ivr report calls`` rows for the calls above (in process, CSV to a buffer): rows/s.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from bench.harness import private_redis  # noqa: E402
from ivr.core.events import AgentState  # noqa: E402
from ivr.queues.report import CALL_COLUMNS, call_row  # noqa: E402
from ivr.queues.stats import StatsConfig  # noqa: E402
from ivr.queues.store import QueueStore  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))], 3)


async def lifecycle(store: QueueStore, n: int) -> dict[str, float]:
    await store.register_agent("solo", name="solo", skills={"billing": 3}, sip_uri="sip:s@x", languages=["en"])
    await store.set_agent_state("solo", AgentState.AVAILABLE)
    t0 = time.perf_counter()
    for i in range(n):
        cid = f"L{i}"
        await store.call_start(cid, "w0", ani="+1555", dnis="1000", hotline="demo", language="en", plan_version="v1")
        offer = await store.enqueue(cid, queue="billing", skill="billing", priority=0, journey={})
        assert offer is not None
        await store.offer_answered(cid, offer.offer_id)
        await store.end_call(cid, reason="caller_hangup", wrapup_s=0, ttl_s=3600)
    dt = time.perf_counter() - t0
    return {"calls": n, "calls_per_s": round(n / dt, 1), "ms_per_call": round(dt / n * 1000, 3)}


async def snapshot(store: QueueStore, redis: Redis) -> dict[str, dict[str, float]]:
    for a in range(200):
        await store.register_agent(f"ag{a}", name="", skills={"support": 3}, sip_uri="sip:a@x", languages=["en"])
        if a % 2:
            await store.set_agent_state(f"ag{a}", AgentState.BREAK)
    now = int(time.time())
    day = now - now % 86400
    for i in range(96):  # a whole day of intervals in the period
        start = day + i * 900
        await redis.hset(store.keys.queue_interval("support", start),
                         mapping={"start": start, "length_s": 900, "offered": 10, "answered": 9})
        await redis.zadd(store.keys.queue_intervals("support"), {str(start): start})
    out: dict[str, dict[str, float]] = {}
    waiting = 0
    for target in (0, 100, 1000, 5000):
        while waiting < target:
            cid = f"S{waiting}"
            await store.call_start(cid, "w1", ani="", dnis="", hotline="", language="en", plan_version="v1")
            await store.enqueue(cid, queue="support", skill="support", priority=waiting % 10, journey={})
            waiting += 1
        if target == 0:  # the queue must exist: one caller comes and goes
            await store.call_start("S-", "w1", ani="", dnis="", hotline="", language="en", plan_version="v1")
            await store.enqueue("S-", queue="support", skill="support", priority=0, journey={})
            await store.end_call("S-", reason="caller_hangup", wrapup_s=0, ttl_s=60)
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            snap = await store.queue_stats("support", since_s=day)
            times.append((time.perf_counter() - t0) * 1000)
        assert snap.waiting == target and len(snap.period) >= 96
        out[str(target)] = {"p50_ms": pct(times, 0.5), "p95_ms": pct(times, 0.95)}
    return out


async def export(store: QueueStore) -> dict[str, float]:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CALL_COLUMNS)
    t0 = time.perf_counter()
    n = 0
    async for ev, call in store.iter_ended_calls(0, int(time.time() * 1000) + 1000):
        w.writerow(call_row(ev, call))
        n += 1
    dt = time.perf_counter() - t0
    return {"rows": n, "rows_per_s": round(n / dt, 1), "bytes": len(buf.getvalue())}


async def run(url: str, calls: int) -> dict[str, object]:
    redis = Redis.from_url(url)
    store = QueueStore(redis, "bench", 1_000_000, StatsConfig())
    try:
        return {"lifecycle": await lifecycle(store, calls), "snapshot": await snapshot(store, redis),
                "report_calls": await export(store)}
    finally:
        await redis.aclose()


def main(calls: int) -> dict[str, object]:
    with private_redis() as url:
        return asyncio.run(run(url, calls))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    res = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **main(args.calls)}
    out = args.out or ROOT / "bench" / "results" / f"queue-stats-{datetime.now(UTC):%Y-%m-%dT%H%M%S}.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
