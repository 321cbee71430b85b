"""Screen-pop latency with many connected agents (``python bench/pops.py``; part of ``make bench``).

A private redis-server and a real ``ivr api`` process (its own process, as in production) with
``AGENTS`` agents; ``AGENTS`` real WebSocket desktops connect to it from this process. Callers are
queued at ``RATE`` per second; each is offered at once to an available agent by the routing script,
which writes ``call.offered`` (with the time Redis took the decision); the latency measured is from
that time to the moment the agent's desktop has read the pop from its socket. After its pop, each
call is answered and ended so the agent takes the next one. Reported: p50/p95/p99/max over every
pop, pops lost (offers whose pop never arrived), and the API process's CPU and RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from bench.harness import private_redis, save  # noqa: E402
from bench.procfs import cpu_seconds, rss_mb  # noqa: E402
from ivr.core.events import AgentState  # noqa: E402
from ivr.queues.store import QueueStore  # noqa: E402
from tests.conftest import wait_port  # noqa: E402
from tests.ports import free_udp_tcp_port  # noqa: E402

AGENTS = 500
CALLS = 2000
RATE = 100  # callers queued per second
PREFIX = "pb"


def percentiles(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    if not s:
        return {"n": 0}

    def pct(p: float) -> float:
        return round(s[min(len(s) - 1, int(p * len(s)))], 2)

    return {"n": len(s), "p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99), "max": round(s[-1], 2),
            "mean": round(statistics.fmean(s), 2)}


class Desk:
    def __init__(self, agent: str) -> None:
        self.agent = agent
        self.ready = asyncio.Event()

    async def run(self, http: aiohttp.ClientSession, url: str, got: dict[str, float],
                  pops: asyncio.Queue[tuple[str, str]]) -> None:
        async with http.ws_connect(f"{url}/api/v1/agents/{self.agent}/events",
                                   protocols=[f"bearer.tok-{self.agent}"], compress=0, heartbeat=None) as ws:
            async for msg in ws:
                now = time.time()
                ev = json.loads(msg.data)
                if ev["type"] == "hello":
                    self.ready.set()
                elif ev["type"] == "call.offered":
                    got[ev["offer_id"]] = now * 1000 - float(ev["ts"])
                    pops.put_nowait((ev["call_id"], ev["offer_id"]))


async def drive(url: str, redis_url: str, api_pid: int, agents: int, calls: int, rate: float) -> dict[str, Any]:
    redis = Redis.from_url(redis_url)
    store = QueueStore(redis, prefix=PREFIX)
    got: dict[str, float] = {}
    pops: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:
        desks = [Desk(f"a{i:04d}") for i in range(agents)]
        tasks = [asyncio.create_task(d.run(http, url, got, pops)) for d in desks]
        await asyncio.wait_for(asyncio.gather(*(d.ready.wait() for d in desks)), 120)
        for d in desks:
            await store.set_agent_state(d.agent, AgentState.AVAILABLE)

        async def finisher() -> None:  # answer and end each call after its pop: the agent is free again
            while True:
                cid, oid = await pops.get()
                await store.offer_answered(cid, oid)
                await store.end_call(cid, reason="bench", wrapup_s=0, ttl_s=60)

        fin = asyncio.create_task(finisher())
        cpu0 = cpu_seconds(api_pid)
        t0 = time.monotonic()
        offered: list[str] = []
        for i in range(calls):
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            cid = f"c{i}"
            await store.call_start(cid, "w0", ani="+15550100", dnis="1000", hotline="bench", language="en",
                                   plan_version="v")
            offer = await store.enqueue(cid, queue="billing", skill="billing", priority=0,
                                        journey={"steps": [{"node": "main", "type": "menu", "digit": "2"}]})
            if offer is not None:
                offered.append(offer.offer_id)
        for _ in range(200):  # the last pops (bounded: 10 s)
            if all(o in got for o in offered) and pops.empty():
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - t0
        cpu1, rss = cpu_seconds(api_pid), rss_mb([api_pid])
        fin.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(fin, *tasks, return_exceptions=True)
    await redis.aclose()
    lost = [o for o in offered if o not in got]
    return {"agents": agents, "calls": calls, "rate_per_s": rate, "offered": len(offered),
            "pops_received": len(offered) - len(lost), "pops_lost": len(lost),
            "offer_to_ws_ms": percentiles([got[o] for o in offered if o in got]),
            "_samples_ms": {"offer -> desktop": [got[o] for o in offered if o in got]},
            "api_cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / elapsed, 1), "api_rss_mb": round(rss, 1)}


def settings_file(tmp: Path, redis_url: str, port: int, agents: int) -> Path:
    users: list[dict[str, Any]] = [
        {"id": f"a{i:04d}", "name": f"Agent {i}", "skills": {"billing": 3}, "sip_uri": f"sip:a{i}@127.0.0.1:5999",
         "token": f"tok-a{i:04d}"} for i in range(agents)]
    cfg = {"var_dir": str(tmp / "var"), "log_level": "warning",
           "redis": {"url": redis_url, "prefix": PREFIX}, "api": {"host": "127.0.0.1", "port": port},
           "users": users}
    path = tmp / "settings.json"
    path.write_text(json.dumps(cfg))
    return path


@contextlib.contextmanager
def api_process(cfg: Path, port: int) -> Iterator[int]:
    """A real ``ivr api`` process on ``port``; yields its pid."""
    api = subprocess.Popen([sys.executable, "-m", "ivr.cli", "api", "--config", str(cfg)],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 30, api)
        yield api.pid
    finally:
        api.terminate()
        api.wait(10)


async def pops_bench(agents: int = AGENTS, calls: int = CALLS, rate: float = RATE) -> dict[str, Any]:
    with private_redis() as redis_url, tempfile.TemporaryDirectory() as tmp:
        port = free_udp_tcp_port()
        with api_process(settings_file(Path(tmp), redis_url, port, agents), port) as pid:
            return await drive(f"http://127.0.0.1:{port}", redis_url, pid, agents, calls, rate)


def main() -> None:
    save("pops", asyncio.run(pops_bench()))


if __name__ == "__main__":
    main()
