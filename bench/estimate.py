"""How far off the callers' wait estimates are: a simulated queue day through the real store
(``python bench/estimate.py``, about 100 s).

The store decides with Redis ``TIME``, so the day runs in real time with time compressed 1:100
(``SCALE``): a handle time of 2.7 s stands for 4.5 minutes. One queue, ``AGENTS`` agents, Poisson
arrivals whose rate follows a day profile (quiet, a peak above capacity where the queue builds up,
back down), exponential talk times plus a fixed wrap-up, callers who give up after an exponential
patience, and one agent away for a while in the peak (staffing drops without notice).

Every caller asks :meth:`QueueStore.wait_estimate` right after it is queued and every ``SAMPLE_S``
while it waits (as the announcements do); each estimate is compared with the wait the caller then
actually had until it was offered to an agent. Callers who gave up have no actual wait and are left
out (counted). For comparison, ``baseline_true_aht`` scores the same samples with position x the
*true* mean handle time / agents present (an estimator that knows the simulation's parameters).
Estimates on the ``default`` basis (no history yet: ``DEFAULT_AHT_S`` is a real-time
figure, not scaled) are reported apart.

Reported overall, by basis and by position bucket: samples, mean absolute error, bias (mean of
estimate - actual, positive = pessimistic), median and p90 relative error (|estimate - actual| /
actual, over actual waits of at least ``REL_FLOOR_S``), share within 25 % and 50 %; seconds are
simulated (x ``SCALE`` for real time). Writes bench/results/estimate-<time>.json and prints it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from bench.harness import private_redis  # noqa: E402
from ivr.core.errors import Conflict  # noqa: E402
from ivr.core.events import AgentState  # noqa: E402
from ivr.queues.store import Offer, QueueStore  # noqa: E402

SCALE = 100
AGENTS = 6
TALK_S = 2.4            # mean talk time (exponential)
WRAPUP_S = 0.3
PATIENCE_S = 25.0       # mean patience (exponential) before a waiting caller gives up
SAMPLE_S = 1.0          # estimates asked while waiting, this often
REL_FLOOR_S = 1.0       # relative errors only over actual waits at least this long
#: (seconds, offered load): the arrival rate is load x AGENTS / (TALK_S + WRAPUP_S)
PROFILE = ((15.0, 0.7), (35.0, 1.5), (20.0, 0.9), (15.0, 0.5))
AWAY = (40.0, 15.0)     # one agent on break from 40 s for 15 s
BUCKETS = ((1, 1), (2, 3), (4, 6), (7, 10), (11, 10_000))


@dataclass
class Caller:
    cid: str
    offered: asyncio.Event = field(default_factory=asyncio.Event)
    offered_at: float | None = None
    abandoned: bool = False
    samples: list[tuple[float, float, int, str, bool]] = field(default_factory=list)  # t, est, pos, basis, first


class Day:
    def __init__(self, store: QueueStore, rnd: random.Random) -> None:
        self.store, self.rnd = store, rnd
        self.callers: dict[str, Caller] = {}
        self.t0 = time.monotonic()
        self.stop = False
        self.talks: set[asyncio.Task[None]] = set()

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def inbox(self) -> None:
        """The worker: every offer is answered at once; the talk ends after an exponential time."""
        while not self.stop:
            offer = await self.store.next_message("sim", timeout_s=0.2)
            if not isinstance(offer, Offer):  # nothing yet (no commands are sent here)
                continue
            caller = self.callers[offer.call_id]
            try:
                await self.store.offer_answered(offer.call_id, offer.offer_id)
            except Conflict:  # the caller gave up just then
                continue
            caller.offered_at = self.now()
            caller.offered.set()
            task = asyncio.ensure_future(self.talk(offer.call_id))
            self.talks.add(task)
            task.add_done_callback(self.talks.discard)

    async def talk(self, cid: str) -> None:
        await asyncio.sleep(self.rnd.expovariate(1 / TALK_S))
        await self.store.end_call(cid, reason="caller_hangup", wrapup_s=WRAPUP_S, ttl_s=3600)

    async def wrapups(self) -> None:
        while not self.stop:
            await self.store.release_wrapups()
            await asyncio.sleep(0.05)

    async def away(self) -> None:
        """One agent leaves for a while: on break as soon as its current call is over."""
        await asyncio.sleep(AWAY[0])
        for _ in range(1000):
            try:
                await self.store.set_agent_state("a0", AgentState.BREAK, "away")
                break
            except Conflict:
                await asyncio.sleep(0.05)
        await asyncio.sleep(AWAY[1])
        await self.store.set_agent_state("a0", AgentState.AVAILABLE)

    async def caller(self, c: Caller) -> None:
        await self.store.call_start(c.cid, "sim", ani="1", dnis="2", hotline="h", language="en", plan_version="v")
        await self.store.enqueue(c.cid, queue="sales", skill="sales", priority=0, journey={})
        give_up = self.now() + self.rnd.expovariate(1 / PATIENCE_S)
        first = True
        while not c.offered.is_set():
            est = await self.store.wait_estimate(c.cid)
            if est is None:  # offered meanwhile
                await c.offered.wait()
                return
            c.samples.append((self.now(), est.seconds, est.position, est.basis, first))
            first = False
            left = give_up - self.now()
            if left <= 0:
                if await self.store.end_call(c.cid, reason="caller_hangup", wrapup_s=0, ttl_s=3600) == "abandoned":
                    c.abandoned = True
                    return
                await c.offered.wait()  # answered just before
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(c.offered.wait(), min(SAMPLE_S, left))

    async def arrivals(self) -> list[asyncio.Task[None]]:
        tasks = []
        end = 0.0
        for seconds, load in PROFILE:
            end += seconds
            rate = load * AGENTS / (TALK_S + WRAPUP_S)
            while True:
                gap = self.rnd.expovariate(rate)
                if self.now() + gap >= end:
                    await asyncio.sleep(max(0.0, end - self.now()))
                    break
                await asyncio.sleep(gap)
                c = Caller(f"c{len(self.callers):04d}")
                self.callers[c.cid] = c
                tasks.append(asyncio.ensure_future(self.caller(c)))
        return tasks


def figures(pairs: list[tuple[float, float]]) -> dict[str, float | int]:
    """(estimate, actual) pairs -> error figures."""
    if not pairs:
        return {"n": 0}
    err = [e - a for e, a in pairs]
    rel = sorted(abs(e - a) / a for e, a in pairs if a >= REL_FLOOR_S)
    out: dict[str, float | int] = {"n": len(pairs), "mae_s": round(statistics.fmean(abs(x) for x in err), 2),
                                   "bias_s": round(statistics.fmean(err), 2),
                                   "mean_actual_s": round(statistics.fmean(a for _, a in pairs), 2)}
    if rel:
        out.update({"rel_n": len(rel), "rel_median": round(statistics.median(rel), 3),
                    "rel_p90": round(rel[min(len(rel) - 1, int(len(rel) * 0.9))], 3),
                    "within_25pct": round(sum(r <= 0.25 for r in rel) / len(rel), 3),
                    "within_50pct": round(sum(r <= 0.5 for r in rel) / len(rel), 3)})
    return out


async def simulate(url: str, seed: int = 1) -> dict[str, object]:
    redis = Redis.from_url(url)
    store = QueueStore(redis, prefix="e")
    rnd = random.Random(seed)
    for i in range(AGENTS):
        await store.register_agent(f"a{i}", name=f"a{i}", skills={"sales": 3}, sip_uri=f"sip:a{i}@x", languages=["en"])
        await store.set_agent_state(f"a{i}", AgentState.AVAILABLE)
    day = Day(store, rnd)
    loops = [asyncio.ensure_future(x) for x in (day.inbox(), day.wrapups(), day.away())]
    callers = await day.arrivals()
    await asyncio.wait_for(asyncio.gather(*callers), 120)
    day.stop = True
    loops[2].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*loops, *day.talks)
    await redis.aclose()

    samples: dict[str, list[tuple[float, float]]] = {"all": [], "at_enqueue": [], "while_waiting": [],
                                                     "baseline_true_aht": []}
    by_basis: dict[str, list[tuple[float, float]]] = {}
    by_pos: dict[str, list[tuple[float, float]]] = {f"{lo}-{hi}" if hi < 10_000 else f"{lo}+": [] for lo, hi in BUCKETS}
    waits = []
    for c in day.callers.values():
        if c.offered_at is None:
            continue
        if c.samples:
            waits.append(c.offered_at - c.samples[0][0])
        for t, est, pos, basis, first in c.samples:
            pair = (est, c.offered_at - t)
            by_basis.setdefault(basis, []).append(pair)
            if basis == "default":
                continue
            samples["all"].append(pair)
            samples["at_enqueue" if first else "while_waiting"].append(pair)
            staffed = AGENTS - (AWAY[0] <= t < AWAY[0] + AWAY[1])
            samples["baseline_true_aht"].append((pos * (TALK_S + WRAPUP_S) / staffed, c.offered_at - t))
            for (lo, hi), name in zip(BUCKETS, by_pos, strict=True):
                if lo <= pos <= hi:
                    by_pos[name].append(pair)
    everyone = list(day.callers.values())
    return {
        "scale": SCALE, "agents": AGENTS, "talk_s": TALK_S, "wrapup_s": WRAPUP_S, "patience_s": PATIENCE_S,
        "profile": [{"seconds": s, "load": load} for s, load in PROFILE], "away": {"at_s": AWAY[0], "for_s": AWAY[1]},
        "callers": len(everyone), "answered": sum(c.offered_at is not None for c in everyone),
        "abandoned": sum(c.abandoned for c in everyone),
        "waited": len(waits), "mean_wait_s": round(statistics.fmean(waits), 2) if waits else 0,
        "max_wait_s": round(max(waits), 2) if waits else 0,
        **{k: figures(v) for k, v in samples.items()},
        "by_basis": {k: figures(v) for k, v in by_basis.items()},
        "by_position": {k: figures(v) for k, v in by_pos.items()},
    }


async def estimate_bench(seed: int = 1) -> dict[str, object]:
    with private_redis() as url:
        result = await simulate(url, seed)
    result["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return result


def main() -> None:
    result = asyncio.run(estimate_bench())
    out = ROOT / "bench" / "results" / f"estimate-{datetime.now(UTC):%Y-%m-%dT%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
