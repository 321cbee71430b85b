"""Webhook throughput and latency against a private redis-server (``python bench/webhooks.py``).

Events are appended to the event stream as the Lua scripts append them (``type``, ``data`` JSON with
``ts``); the API's webhook tasks (:class:`ivr.cti.webhooks.Webhooks`: the outbox filler and the
delivery loop) carry them to a receiver on loopback that checks every signature. The receiver runs
in its own process (it would otherwise share the event loop it is measuring). Redis keeps an
append-only file (``appendfsync everysec``), as a production outbox would.

- ``burst_*``: N events appended at once; ``deliveries_per_s`` is N over the time from the first
  append to the last receipt, and the latencies (append -> receipt) are mostly time spent waiting
  in the outbox. Configurations: one instance in strict order (``max_in_flight`` 1), one instance
  with 8 deliveries in flight, two instances with 8 each.
- ``paced``: events at a steady rate well below capacity, strict order: the end-to-end latency one
  event sees (p50/p95/p99).

Writes bench/results/webhooks-<time>.json and prints it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from bench.harness import private_redis, save  # noqa: E402
from ivr.core.config import WebhookSettings  # noqa: E402
from ivr.core.logging import configure  # noqa: E402
from ivr.core.tasks import TaskGroup  # noqa: E402
from ivr.cti.webhooks import Webhooks, verify  # noqa: E402
from ivr.queues.keys import Keys  # noqa: E402
from tests.conftest import wait_port  # noqa: E402
from tests.ports import free_udp_tcp_port  # noqa: E402

SECRET = "bench-secret-0123456789"
PREFIX = "bench"


# --- the receiver, in its own process ------------------------------------------------------------
def _receiver(port: int) -> None:
    received: list[tuple[str, float, float]] = []  # event id, occurred (s), received (s)
    bad = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal bad
        raw = await request.read()
        now = time.time()
        if not verify(SECRET, request.headers["X-Ivr-Signature"], request.headers["X-Ivr-Timestamp"], raw):
            bad += 1
            return web.json_response({}, status=401)
        event = json.loads(raw)
        received.append((event["id"], event["data"]["ts"] / 1000.0, now))
        return web.json_response({})

    async def results(request: web.Request) -> web.Response:
        return web.json_response({"received": received, "bad_signatures": bad})

    async def reset(request: web.Request) -> web.Response:
        nonlocal bad
        received.clear()
        bad = 0
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/results", results)
    app.router.add_post("/reset", reset)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


@contextlib.contextmanager
def receiver_process() -> Iterator[int]:
    port = free_udp_tcp_port()
    proc = multiprocessing.get_context("spawn").Process(target=_receiver, args=(port,), daemon=True)
    proc.start()
    try:
        wait_port(port, 20)
        yield port
    finally:
        proc.terminate()
        proc.join(5)


# --- driving it ------------------------------------------------------------------------------------
def percentiles(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    if not ms:
        return {}
    def at(q: float) -> float:
        return round(ms[min(len(ms) - 1, int(len(ms) * q))], 2)
    return {"p50_ms": round(statistics.median(ms), 2), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": at(1.0)}


async def append(redis: Redis, keys: Keys, n: int, start: int, batch: int = 200) -> None:
    for lo in range(start, start + n, batch):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(lo, min(lo + batch, start + n)):
                data = {"call_id": f"c{i}", "ani": "+15550001", "reason": "hangup", "outcome": "answered",
                        "ts": int(time.time() * 1000)}
                pipe.xadd(keys.events, {"type": "call.ended", "data": json.dumps(data)}, maxlen=100_000,
                          approximate=True)
            await pipe.execute()


async def results(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/results") as r:
        data: dict[str, Any] = await r.json()
        return data


async def wait_for(http: aiohttp.ClientSession, base: str, n: int, within_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        res = await results(http, base)
        if len(res["received"]) >= n or time.monotonic() > deadline:
            return res
        await asyncio.sleep(0.05)


async def run(url: str, port: int, *, events: int, instances: int, in_flight: int,
              rate: float | None = None) -> dict[str, Any]:
    """``events`` through ``instances`` API instances (all at once, or ``rate`` per second)."""
    redis = Redis.from_url(url)
    await redis.flushdb()
    keys = Keys(PREFIX)
    settings = WebhookSettings.model_validate({
        "endpoints": [{"name": "crm", "url": f"http://127.0.0.1:{port}/hook", "secret": SECRET,
                       "max_in_flight": in_flight}], "timeout_s": 5})
    base = f"http://127.0.0.1:{port}"
    tasks = TaskGroup("bench")
    services = []
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/reset"):
            pass
        for i in range(instances):
            hooks = Webhooks(settings, Redis.from_url(url), PREFIX, instance=f"bench-{i}")
            await hooks.outbox.ensure_group()
            services.append(hooks)
            tasks.spawn(f"fill-{i}", hooks.fill())
            tasks.spawn(f"deliver-{i}", hooks.deliver())
        t0 = time.time()
        if rate is None:
            await append(redis, keys, events, 0)
        else:
            for i in range(events):
                await append(redis, keys, 1, i)
                await asyncio.sleep(max(0.0, t0 + (i + 1) / rate - time.time()))
        res = await wait_for(http, base, events, within_s=120)
    await tasks.cancel_all()
    for hooks in services:
        await hooks.close()
        await hooks.outbox.redis.aclose()
    await redis.aclose()
    received = res["received"]
    ids = [r[0] for r in received]
    last = max((r[2] for r in received), default=t0)
    out: dict[str, Any] = {
        "events": events, "instances": instances, "max_in_flight": in_flight,
        "delivered": len(ids), "duplicates": len(ids) - len(set(ids)), "bad_signatures": res["bad_signatures"],
        "in_order": ids == sorted(ids, key=lambda e: tuple(int(x) for x in e.split("-"))),
        "latency": percentiles([r[2] - r[1] for r in received]),
    }
    if rate is None:
        out["deliveries_per_s"] = round(len(ids) / max(1e-6, last - t0), 1)
    else:
        out["rate_per_s"] = rate
    return out


async def webhooks_bench(events: int = 3000) -> dict[str, Any]:
    """Every figure above; about 20-40 s."""
    configure("warning", "console")  # one line per delivery would be measured too
    with private_redis(appendonly=True) as url, receiver_process() as port:
        result: dict[str, Any] = {
            "burst_ordered": await run(url, port, events=events, instances=1, in_flight=1),
            "burst_8_in_flight": await run(url, port, events=events, instances=1, in_flight=8),
            "burst_2_instances_8_in_flight": await run(url, port, events=events, instances=2, in_flight=8),
            "paced": await run(url, port, events=500, instances=1, in_flight=1, rate=100.0),
        }
    result["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return result


def main() -> None:
    save("webhooks", asyncio.run(webhooks_bench()))


if __name__ == "__main__":
    main()
