"""Routing decision latency against a private redis-server (``python bench/routing.py``).

1,000 agents (5 of 50 skills each, proficiency 1-5, ko/en), 5,000 waiting callers with random
requirements (1-2 skills, minimum proficiency 1-4, a language or any), strategies, priorities and
escalation steps. Each figure is the time of one QueueStore call as the client sees it (one Lua
script: the decision and its writes, plus the loopback round trip):

- ``enqueue_busy``: a caller is queued while nearly every agent is busy (5,000 callers);
- ``agent_available``: an agent becomes available with ~5,000 callers waiting and takes the best
  one it qualifies for (answer + hang-up with no wrap-up: the next decision is timed as well);
- ``enqueue_idle``: a caller is queued while ~1,000 agents are available (longest idle, best
  proficiency, round robin);
- ``escalate_20``: one escalation pass over 20 due callers (the batch housekeeping uses), not per caller;
- ``throughput``: 8 concurrent clients run callers' lifecycles (call_start, enqueue offered at once,
  offer_answered, end_call) against ~1,000 available agents for 5 s: operations/s and calls/s.

Each latency figure also gives ``ops_per_s``: one client issuing that operation back to back.

Writes bench/results/routing-<time>.json and prints it.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from bench.harness import private_redis, save  # noqa: E402
from ivr.core.config import EscalationStep, QueueSettings, Strategy  # noqa: E402
from ivr.core.events import AgentState  # noqa: E402
from ivr.queues.routing import Requirement, Route, resolve_route  # noqa: E402
from ivr.queues.scripts import NAMES, lua_script  # noqa: E402
from ivr.queues.store import QueueStore  # noqa: E402

AGENTS, SKILLS, WAITING = 1000, 50, 5000
STRATEGIES: tuple[Strategy, ...] = ("longest_idle", "best_proficiency", "round_robin")
T = TypeVar("T")


def summary(samples: list[float]) -> dict[str, float]:
    """Latency percentiles, and ``ops_per_s``: operations per second of one client issuing them one
    after the other (1 / mean latency)."""
    ms = sorted(s * 1000 for s in samples)
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 3),
            "p95_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.95))], 3),
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3), "max_ms": round(ms[-1], 3),
            "ops_per_s": round(len(ms) / (sum(ms) / 1000), 1)}


async def throughput(store: QueueStore, rnd: random.Random, skills: list[str], *, clients: int = 8,
                     seconds: float = 5.0) -> dict[str, object]:
    """``clients`` concurrent callers' lifecycles against ~1,000 available agents for ``seconds``:
    call_start, enqueue (offered at once), offer_answered, end_call; every QueueStore call counts
    as one operation."""
    enq: list[float] = []
    ops = calls = 0
    deadline = time.perf_counter() + seconds

    async def client(n: int) -> None:
        nonlocal ops, calls
        i = 0
        while time.perf_counter() < deadline:
            cid = f"t{n}-{i}"
            i += 1
            await store.call_start(cid, "w0", ani="1", dnis="2", hotline="h", language="ko", plan_version="v")
            r = Route((Requirement((rnd.choice(skills),), 1),), "", STRATEGIES[i % 3])
            offer = await timed(enq, store.enqueue(cid, queue=f"q{r.primary_skill}", skill=r.primary_skill,
                                                   priority=0, journey={}, route=r))
            ops += 2
            if offer is not None:
                await store.offer_answered(cid, offer.offer_id)
                ops += 1
            await store.end_call(cid, reason="x", wrapup_s=0, ttl_s=60)
            ops += 1
            calls += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    wall = time.perf_counter() - t0
    return {"clients": clients, "seconds": round(wall, 2), "ops_per_s": round(ops / wall, 1),
            "calls_per_s": round(calls / wall, 1),
            "enqueue": {k: v for k, v in summary(enq).items() if k != "ops_per_s"}}


class ServerTimes:
    """Script runs slower than 1 ms measured inside Redis (SLOWLOG): how many, and the slowest;
    free of the round trip and of the client's scheduling on a busy machine."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.names = {lua_script(name).sha: name for name in NAMES}

    async def reset(self) -> None:
        await self.redis.config_set("slowlog-log-slower-than", 1000)
        await self.redis.config_set("slowlog-max-len", 10_000)
        await self.redis.slowlog_reset()

    async def collect(self, *names: str) -> dict[str, dict[str, float]]:
        per: dict[str, list[float]] = {}
        for e in await self.redis.slowlog_get(10_000):
            cmd = e["command"]
            parts = (cmd.decode() if isinstance(cmd, bytes) else cmd).split()
            if len(parts) > 1 and parts[0].upper() == "EVALSHA" and self.names.get(parts[1]) in names:
                per.setdefault(self.names[parts[1]], []).append(e["duration"] / 1000)
        await self.redis.slowlog_reset()
        return {name: {"over_1ms": len(v), "over_5ms": sum(1 for d in v if d > 5), "max_ms": max(v)}
                for name, v in per.items()}


def random_route(rnd: random.Random, skills: list[str]) -> Route:
    need = tuple(rnd.sample(skills, rnd.choice((1, 1, 1, 2))))
    if rnd.random() < 0.2:  # some callers escalate: a configured queue
        queues = {"q": QueueSettings(skills=list(need), min_proficiency=4, strategy=rnd.choice(STRATEGIES),
                                     escalation=[EscalationStep(after_s=0.2, min_proficiency=2),
                                                 EscalationStep(after_s=0.4, add_skills=[rnd.choice(skills)])])}
        return resolve_route(queues, "q", language=rnd.choice(("ko", "en")), language_required=rnd.random() < 0.5)
    return Route((Requirement(need, rnd.randint(1, 4)),), rnd.choice(("", "", "ko", "en")),
                 rnd.choice(STRATEGIES))


async def holding(store: QueueStore, aid: str) -> tuple[str, str] | None:
    """(call id, offer id) of the call agent ``aid`` is reserved for, if any."""
    a = await store.get_agent(aid)
    if not a or a.get("state") != "reserved":
        return None
    c = await store.get_call(a["call_id"])
    return (a["call_id"], c["offer_id"]) if c else None


async def timed(samples: list[float], coro: Awaitable[T]) -> T:
    t = time.perf_counter()
    res = await coro
    samples.append(time.perf_counter() - t)
    return res


async def bench(url: str) -> dict[str, object]:
    redis = Redis.from_url(url)
    store = QueueStore(redis, prefix="b")
    rnd = random.Random(42)
    skills = [f"s{i:02d}" for i in range(SKILLS)]
    for i in range(AGENTS):
        await store.register_agent(f"a{i:04d}", name="a", sip_uri="sip:a@x",
                                   skills={s: rnd.randint(1, 5) for s in rnd.sample(skills, 5)},
                                   languages=rnd.choice((["ko"], ["ko", "en"], ["en"])))
        await store.set_agent_state(f"a{i:04d}", AgentState.BREAK)
    out: dict[str, object] = {"agents": AGENTS, "skills": SKILLS, "waiting": WAITING}
    server = ServerTimes(redis)
    await server.reset()

    # callers arrive while every agent is busy (on break): 5,000 wait
    busy: list[float] = []
    for i in range(WAITING):
        cid = f"c{i}"
        await store.call_start(cid, "w0", ani="1", dnis="2", hotline="h", language="ko", plan_version="v")
        r = random_route(rnd, skills)
        await timed(busy, store.enqueue(cid, queue=f"q{r.primary_skill}", skill=r.primary_skill,
                                        priority=rnd.randint(0, 9), journey={}, route=r))
    out["enqueue_busy"] = summary(busy)
    out["enqueue_busy_server_slow"] = await server.collect("enqueue")

    # agents come back one at a time and take callers; each serves its caller and takes the next
    avail: list[float] = []
    order = list(range(AGENTS))
    rnd.shuffle(order)
    for i in order[:300]:
        aid = f"a{i:04d}"
        await timed(avail, store.set_agent_state(aid, AgentState.AVAILABLE))
        for _ in range(3):
            held = await holding(store, aid)
            if held is None:
                break
            await store.offer_answered(*held)
            await timed(avail, store.end_call(held[0], reason="x", wrapup_s=0, ttl_s=60))
    out["agent_available"] = summary(avail)
    out["agent_available_server_slow"] = await server.collect("agent_set_state", "end_call")
    out["active_calls_after"] = len(await store.active_calls())

    # escalation passes over due callers
    await asyncio.sleep(0.5)
    esc: list[float] = []
    for _ in range(20):
        await timed(esc, store.escalate(20))
    out["escalate_20"] = summary(esc)
    out["escalate_20_server_slow"] = await server.collect("escalate")

    # idle-heavy: flush the callers, every agent available, callers arrive and are served at once
    await redis.flushdb()
    store = QueueStore(redis, prefix="b")
    await server.reset()
    for i in range(AGENTS):
        await store.register_agent(f"a{i:04d}", name="a", sip_uri="sip:a@x",
                                   skills={s: rnd.randint(1, 5) for s in rnd.sample(skills, 5)},
                                   languages=rnd.choice((["ko"], ["ko", "en"], ["en"])))
        await store.set_agent_state(f"a{i:04d}", AgentState.AVAILABLE)
    await server.collect()
    idle: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    for i in range(3000):
        cid = f"i{i}"
        await store.call_start(cid, "w0", ani="1", dnis="2", hotline="h", language="ko", plan_version="v")
        strategy = STRATEGIES[i % 3]
        r = Route((Requirement(tuple(rnd.sample(skills, rnd.choice((1, 2)))), rnd.randint(1, 3)),),
                  rnd.choice(("", "ko", "en")), strategy)
        offer = await timed(idle[strategy], store.enqueue(cid, queue=f"q{r.primary_skill}", skill=r.primary_skill,
                                                          priority=0, journey={}, route=r))
        if offer is not None:
            await store.offer_answered(cid, offer.offer_id)
        await store.end_call(cid, reason="x", wrapup_s=0, ttl_s=60)
    for s in STRATEGIES:
        out[f"enqueue_idle_{s}"] = summary(idle[s])
    out["_samples_ms"] = {f"enqueue, agent idle ({s})": [x * 1000 for x in idle[s]] for s in STRATEGIES}
    out["enqueue_idle_server_slow"] = await server.collect("enqueue")
    out["throughput"] = await throughput(store, rnd, skills)
    await redis.aclose()
    return out


async def routing_bench() -> dict[str, object]:
    """Every figure above against a private redis-server."""
    with private_redis() as url:
        result = await bench(url)
    result["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return result


def main() -> None:
    save("routing", asyncio.run(routing_bench()))


if __name__ == "__main__":
    main()
