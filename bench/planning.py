"""Forecast and staffing cost for a year of interval history (``python bench/planning.py``, about 2 min).

A year is 35,040 statistics intervals of 15 minutes per queue, generated with a weekly and intraday
shape, a slow trend, Poisson-like noise, handle times and abandons (so Erlang A is used: the queue's
patience is known). Measured, with ``planning.history_weeks`` = 52 (the forecast learns from the
whole year) and ``backtest_weeks`` = 4:

- ``one_queue``: fold the year into 30-minute (and 15-minute) planning slots, back-test both methods
  and forecast 1 and 14 days, staff the 14 days (Erlang C and Erlang A, cold caches); seconds each
  step, the peak of Python allocations (tracemalloc) and the process's peak RSS.
- ``redis_one_queue``: the same year written to a private redis-server where the Lua scripts keep
  it; ``ivr.planning.service.queue_forecast`` reading it back (cold, then from its cache) and the
  day's staffing; Redis memory.
- ``queues``: 200 queues (volumes from 50 to 5,000 calls a day), each generated, forecast and staffed
  for its day in turn (a queue's history is dropped before the next, as the API does): total
  seconds (the generation left out), per queue p50 / p95 / max, the growth of the peak RSS.
- ``simulation``: the recommended staffing of a generated day checked by the seeded simulation
  (``ivr.planning.simulate``): the service level it achieves against the target.

Writes bench/results/planning-<time>.json and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from bench.harness import private_redis, save  # noqa: E402
from ivr.core.config import Settings  # noqa: E402
from ivr.planning import erlang  # noqa: E402
from ivr.planning.erlang import required_agents  # noqa: E402
from ivr.planning.forecast import build_history, forecast  # noqa: E402
from ivr.planning.service import clear_cache, local_midnight, plan_intervals, queue_forecast  # noqa: E402
from ivr.planning.simulate import simulate_day  # noqa: E402
from ivr.queues.stats import Interval  # noqa: E402
from ivr.queues.store import QueueStore  # noqa: E402

WEEKDAY = (1.0, 0.95, 0.9, 0.9, 0.85, 0.45, 0.2)
STATS_S = 900


def _intraday() -> list[float]:
    raw = [math.exp(-(((s - 42) / 11) ** 2) / 2) + 0.6 * math.exp(-(((s - 58) / 7) ** 2) / 2) if 28 <= s < 84 else 0.0
           for s in range(96)]
    total = sum(raw)
    return [r / total for r in raw]


INTRADAY = _intraday()


def year(daily: float, cutoff: date, days: int, seed: int) -> Iterator[Interval]:
    """``days`` days of 15-minute intervals before ``cutoff``: ``daily`` calls on a Monday at the
    start, +20 % over the year, AHT about 240 s, one caller in 15 abandoning after about 40 s."""
    rng = random.Random(seed)
    first = cutoff - timedelta(days=days)
    for i in range(days):
        d = first + timedelta(days=i)
        base = local_midnight(d)
        level = daily * (1 + 0.2 * i / days) * WEEKDAY[d.weekday()]
        for s in range(96):
            lam = level * INTRADAY[s]
            n = max(0, round(rng.gauss(lam, math.sqrt(lam)))) if lam > 0 else 0
            ab = n // 15
            yield Interval(base + s * STATS_S, STATS_S, {
                "offered": n, "answered": n - ab, "handled": n - ab, "abandoned": ab,
                "handle_ms": int((n - ab) * rng.gauss(240, 10) * 1000),
                "answer_wait_ms": (n - ab) * 8000, "abandon_wait_ms": ab * 40_000})


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _settings(interval_s: int = 1800) -> Settings:
    return Settings(planning={"history_weeks": 52, "backtest_weeks": 4, "interval_s": interval_s},
                    routing={"stats_keep_days": 400})


def _cold() -> None:
    clear_cache()
    erlang._answered_within.cache_clear()


def one_queue(cutoff: date, days: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ivs, gen_s = timed(lambda: list(year(1200, cutoff, days, 1)))
    out["intervals"], out["generate_s"] = len(ivs), round(gen_s, 3)
    for interval_s in (1800, 900):
        s = _settings(interval_s)
        p = s.planning
        _cold()
        h, fold_s = timed(lambda: build_history(ivs, interval_s))  # noqa: B023
        targets = [cutoff + timedelta(days=i) for i in range(14)]
        kw: dict[str, Any] = {"cutoff": cutoff, "history_weeks": p.history_weeks, "backtest_weeks": p.backtest_weeks,
                              "default_aht_s": p.default_aht_s}
        fc1, f1_s = timed(lambda: forecast(h, targets[:1], **kw))  # noqa: B023
        fc14, f14_s = timed(lambda: forecast(h, targets, **kw))  # noqa: B023
        _cold()
        plans_a, sa_s = timed(lambda: plan_intervals(fc14, s, "q"))  # noqa: B023
        _cold()
        s_c = Settings(planning={**p.model_dump(), "model": "erlang_c"}, routing={"stats_keep_days": 400})
        plans_c, sc_s = timed(lambda: plan_intervals(fc14, s_c, "q"))  # noqa: B023
        # the allocations of the same work, measured apart (tracemalloc slows Python down a lot)
        _cold()
        tracemalloc.start()
        plan_intervals(forecast(build_history(ivs, interval_s), targets, **kw), s, "q")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[f"interval_{interval_s}"] = {
            "fold_s": round(fold_s, 3), "forecast_1_day_s": round(f1_s, 3), "forecast_14_days_s": round(f14_s, 3),
            "staffing_14_days_erlang_a_s": round(sa_s, 3), "staffing_14_days_erlang_c_s": round(sc_s, 3),
            "intervals_staffed": len(plans_a), "method": fc1.method, "backtest": fc1.backtest.to_dict(),
            "patience_s": round(fc1.patience_s or 0, 1),
            "agents_day_erlang_a": sum(x.need.agents for x in plans_a[: 86400 // interval_s]),
            "agents_day_erlang_c": sum(x.need.agents for x in plans_c[: 86400 // interval_s]),
            "tracemalloc_peak_mb": round(peak / 2**20, 1)}
    return out


async def redis_one_queue(url: str, cutoff: date, days: int) -> dict[str, Any]:
    redis = Redis.from_url(url)
    store = QueueStore(redis, "bench")
    try:
        t0 = time.perf_counter()
        batch = 0
        pipe = redis.pipeline(transaction=False)
        for iv in year(1200, cutoff, days, 1):
            mapping: dict[str | bytes, int] = {"start": iv.start_s, "length_s": STATS_S}
            mapping.update(iv.counts)
            pipe.hset(store.keys.queue_interval("q", iv.start_s), mapping=mapping)  # type: ignore[arg-type]
            pipe.zadd(store.keys.queue_intervals("q"), {str(iv.start_s): iv.start_s})
            batch += 1
            if batch % 2000 == 0:
                await pipe.execute()
        await pipe.execute()
        write_s = time.perf_counter() - t0
        s = _settings()
        _cold()
        t0 = time.perf_counter()
        fc = await queue_forecast(store, s.planning, "q", cutoff, 1, today=cutoff)
        cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        await queue_forecast(store, s.planning, "q", cutoff, 1, today=cutoff)
        warm_s = time.perf_counter() - t0
        plans, staff_s = timed(lambda: plan_intervals(fc, s, "q"))
        info = await redis.info("memory")
        return {"intervals_written": batch, "write_s": round(write_s, 2), "read_fold_forecast_cold_s": round(cold_s, 3),
                "forecast_cached_s": round(warm_s, 6), "staffing_day_s": round(staff_s, 3), "method": fc.method,
                "agents_day": sum(x.need.agents for x in plans),
                "redis_used_memory_mb": round(int(info["used_memory"]) / 2**20, 1)}
    finally:
        await redis.aclose()


def queues(cutoff: date, days: int, n: int) -> dict[str, Any]:
    s = _settings()
    p = s.planning
    _cold()
    per: list[float] = []
    methods: dict[str, int] = {}
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t_all = time.perf_counter()
    gen_total = 0.0
    for q in range(n):
        daily = 50 * (100 ** (q / max(1, n - 1)))  # 50 .. 5,000 calls a day
        t0 = time.perf_counter()
        ivs = list(year(daily, cutoff, days, 1000 + q))
        gen_total += time.perf_counter() - t0
        t0 = time.perf_counter()
        h = build_history(ivs, p.interval_s)
        del ivs
        fc = forecast(h, [cutoff], cutoff=cutoff, history_weeks=p.history_weeks, backtest_weeks=p.backtest_weeks,
                      default_aht_s=p.default_aht_s)
        plan_intervals(fc, s, f"q{q}")
        per.append(time.perf_counter() - t0)
        methods[str(fc.method)] = methods.get(str(fc.method), 0) + 1
    total = time.perf_counter() - t_all - gen_total
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    per.sort()
    return {"queues": n, "history_days": days, "total_s": round(total, 2), "generate_s_excluded": round(gen_total, 2),
            "per_queue_p50_s": round(statistics.median(per), 3), "per_queue_p95_s": round(per[int(0.95 * (n - 1))], 3),
            "per_queue_max_s": round(per[-1], 3), "methods": methods,
            "peak_rss_growth_mb": round((rss1 - rss0) / 1024, 1)}


def simulation() -> dict[str, Any]:
    """A generated day (Monday shape, 2,400 calls, AHT 240 s, patience 120 s) staffed as recommended."""
    offered = [2400 * (INTRADAY[2 * k] + INTRADAY[2 * k + 1]) for k in range(48)]
    out: dict[str, Any] = {"target": 0.8, "threshold_s": 20, "days": 10}
    for model, patience in (("erlang_c", None), ("erlang_a", 120.0)):
        agents = [required_agents(o / 1800, 240, target=0.8, threshold_s=20, model=model,  # type: ignore[arg-type]
                                  patience_s=patience).agents for o in offered]
        res = [simulate_day(offered, [240.0] * 48, agents, interval_s=1800, threshold_s=20, patience_s=patience,
                            seed=s) for s in range(10)]
        within = sum(i.answered_within for r in res for i in r.intervals)
        done = sum(i.answered + i.abandoned for r in res for i in r.intervals)
        abandoned = sum(i.abandoned for r in res for i in r.intervals)
        out[model] = {"agent_intervals": sum(agents), "simulated_sl": round(within / done, 4),
                      "simulated_abandon_rate": round(abandoned / sum(r.offered for r in res), 4),
                      "calls": sum(r.offered for r in res)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queues", type=int, default=200)
    ap.add_argument("--days", type=int, default=365, help="days of history (365: 35,040 15-minute intervals)")
    args = ap.parse_args()
    cutoff = date.today()
    result: dict[str, Any] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "history_days": args.days,
                              "history_weeks": 52, "backtest_weeks": 4}
    result["one_queue"] = one_queue(cutoff, args.days)
    with private_redis() as url:
        result["redis_one_queue"] = asyncio.run(redis_one_queue(url, cutoff, args.days))
    result["queues"] = queues(cutoff, args.days, args.queues)
    result["simulation"] = simulation()
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    save("planning", result)


if __name__ == "__main__":
    main()
