"""Redis killed and restarted (AOF, fsync always) while a worker keeps using the queue store.

The client is the production one (:func:`ivr.queues.connection.connect`): commands that meet a dead
or loading server are retried with backoff (5 retries, 0.1 s doubling to 1.6 s: about 3 s in all),
so an outage shorter than that is only a delay for the caller: the operation completes once Redis
is back. A longer outage raises ``redis.exceptions.ConnectionError`` (or ``TimeoutError``) to the
caller, who may retry: the scripts a retry can repeat (``call_start``, ``enqueue``,
``offer_answered``, ``end_call``, ``set_agent_state``, ``release_wrapups``) do not change anything
the second time. The Lua script cache does not survive a restart; redis-py's Script objects load a
script again on ``NOSCRIPT``.

The worker-crash half (a killed worker's callers recorded as lost, its agents released within
10 s) is tests/e2e/test_pool.py::test_killed_worker_is_restarted_and_its_calls_and_reservations_released.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ivr.core.config import RedisSettings
from ivr.core.events import AgentState
from ivr.queues.connection import close, connect
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer, wait_port

PREFIX = "rs"


class AofRedis(RedisServer):
    """A private redis-server writing every change to its AOF before replying (appendfsync always),
    restartable on the same port and directory."""

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, 10, self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[AofRedis]:
    server = AofRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client(aof_redis: AofRedis) -> AsyncIterator[Redis]:
    redis = connect(RedisSettings(url=aof_redis.url))
    yield redis
    await close(redis)


async def dump(redis: Redis, pattern: str) -> dict[str, Any]:
    """Every key matching ``pattern`` with its content, comparable across a restart."""
    out: dict[str, Any] = {}
    async for raw in redis.scan_iter(match=pattern, count=500):
        key = raw.decode()
        kind = (await redis.type(key)).decode()
        if kind == "hash":
            out[key] = await redis.hgetall(key)
        elif kind == "zset":
            out[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            out[key] = await redis.smembers(key)
        elif kind == "list":
            out[key] = await redis.lrange(key, 0, -1)
        elif kind == "stream":
            out[key] = await redis.xrange(key)
        else:
            out[key] = await redis.get(key)
    return out


async def call(store: QueueStore, cid: str, queue: str, priority: int = 0) -> None:
    await store.call_start(cid, "w1", ani="+1555", dnis="1000", hotline="h", language="en", plan_version="v")
    await store.enqueue(cid, queue=queue, skill=queue, priority=priority, journey={})


@dataclass
class Driver:
    """Keeps a worker's traffic going: a caller arrives and queues for ``support`` every few ms.
    A call whose operations raised is started again under the same id (the retry a worker does)."""

    store: QueueStore
    done: list[tuple[str, float, float]] = field(default_factory=list)   # (call id, started, finished)
    failed: list[tuple[str, BaseException]] = field(default_factory=list)
    stop: bool = False

    async def run(self) -> None:
        n = 0
        while not self.stop:
            cid = f"d{n:04d}"
            t0 = time.monotonic()
            for _attempt in range(10):
                try:
                    await call(self.store, cid, "support", priority=n % 3)
                    break
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    self.failed.append((cid, exc))
            else:
                raise AssertionError(f"{cid} never went through")
            self.done.append((cid, t0, time.monotonic()))
            n += 1
            await asyncio.sleep(0.005)


async def test_waiting_callers_and_agents_survive_a_redis_crash_and_the_client_reconnects(
        aof_redis: AofRedis, client: Redis) -> None:
    store = QueueStore(client, prefix=PREFIX)
    for aid, skill in (("a0", "billing"), ("a1", "billing"), ("a2", "billing"), ("a3", "billing"),
                       ("a4", "support")):
        await store.register_agent(aid, name=aid, skills={skill: 3}, sip_uri=f"sip:{aid}@x", languages=["en"])
    for aid in ("a0", "a1", "a2"):
        await store.set_agent_state(aid, AgentState.AVAILABLE)
    await store.set_agent_state("a3", AgentState.BREAK)
    for cid in ("c0", "c1", "c2"):
        await call(store, cid, "billing")
    c0, c2 = await store.get_call("c0"), await store.get_call("c2")
    assert c0 and c2
    await store.offer_answered("c0", c0["offer_id"])        # a0 talks to c0, a1 is offered c1
    await store.offer_answered("c2", c2["offer_id"])
    await store.end_call("c2", reason="x", wrapup_s=600, ttl_s=3600)  # a2 in wrap-up
    for i in range(20):                                      # nobody takes support yet: they wait
        await call(store, f"s{i:02d}", "support", priority=i % 3)
    head = (await store.waiting("support"))[0]
    before = await dump(client, f"{PREFIX}:*")
    states = {a: (await store.get_agent(a) or {}).get("state") for a in ("a0", "a1", "a2", "a3", "a4")}
    assert states == {"a0": "oncall", "a1": "reserved", "a2": "wrapup", "a3": "break", "a4": "offline"}

    driver = Driver(QueueStore(connect(RedisSettings(url=aof_redis.url)), prefix=PREFIX))
    traffic = asyncio.ensure_future(driver.run())
    try:
        await asyncio.sleep(0.5)
        acked_before_kill = [c for c, _, _ in driver.done]
        killed_at = time.monotonic()
        aof_redis.kill()
        await asyncio.sleep(1.0)                      # Redis is down
        await asyncio.to_thread(aof_redis.start)      # same port, same directory: the AOF is replayed
        back_at = time.monotonic()
        for _ in range(200):                          # bounded: the driver must go on by itself
            if sum(1 for _, t0, _ in driver.done if t0 > back_at) >= 20:
                break
            await asyncio.sleep(0.05)
    finally:
        driver.stop = True
        await traffic
        await close(driver.store.redis)

    # the driver's client reconnected by itself: operations after the restart went through, and
    # the ones caught by the outage waited and completed (or raised a connection error and were retried)
    assert sum(1 for _, t0, _ in driver.done if t0 > back_at) >= 20
    spanning = [c for c, t0, t1 in driver.done if t0 < back_at and t1 > killed_at]
    assert spanning, "no operation was in flight during the outage"
    assert all(isinstance(e, (RedisConnectionError, RedisTimeoutError)) for _, e in driver.failed)
    assert acked_before_kill
    print(f"\noutage {back_at - killed_at:.2f} s: {len(spanning)} operation(s) waited through it (longest "
          f"{max(t1 - t0 for _, t0, t1 in driver.done):.2f} s), {len(driver.failed)} raised and were retried, "
          f"{len(driver.done)} callers queued by the driver")

    # everything there before the crash is there after it, unchanged (the driver only added to it)
    after = await dump(client, f"{PREFIX}:*")
    grown = {f"{PREFIX}:queue:support:waiting", f"{PREFIX}:route:1/*/support:waiting", f"{PREFIX}:calls:active",
             f"{PREFIX}:worker:w1:calls", f"{PREFIX}:events", f"{PREFIX}:skill:support:routes",
             f"{PREFIX}:calls:started", f"{PREFIX}:queue:support:calls"}  # the call list's indexes
    for key, value in before.items():
        if key == f"{PREFIX}:events":
            assert after[key][:len(value)] == value
        elif key in grown:
            if isinstance(value, list):
                assert set(value) <= set(after[key]), key
            else:
                assert value <= after[key], key
        elif ":interval:" in key:
            assert after[key].keys() >= value.keys(), key
        else:
            assert after.get(key) == value, key
    assert {a: (await store.get_agent(a) or {}).get("state") for a in states} == states

    # no caller lost: each the driver saw acknowledged waits exactly once, with its call hash
    waiting = await store.waiting("support")
    assert len(waiting) == len(set(waiting)) == 20 + len(driver.done)
    for cid, _, _ in driver.done:
        c = await store.get_call(cid)
        assert c and c["state"] == "queued" and cid in waiting, (cid, c)
    events = [e for e in await store.read_events("0-0", count=100_000) if e.type == "call.started"]
    assert sorted(e.data["call_id"] for e in events) == sorted(
        ["c0", "c1", "c2", *(f"s{i:02d}" for i in range(20)), *(c for c, _, _ in driver.done)])

    # and routing goes on from the restored indexes: the support agent takes the head caller
    offer = await store.set_agent_state("a4", AgentState.AVAILABLE)
    assert offer is not None and offer.call_id == head
    c1 = await store.get_call("c1")
    assert c1 and await store.offer_answered("c1", c1["offer_id"]) == "a1"


async def test_operations_repeated_after_a_lost_reply_change_nothing(aof_redis: AofRedis, client: Redis) -> None:
    """A retry (the connection broke after Redis ran the script, before the reply arrived) runs a
    script a second time: it must not start the call again, queue an offered caller again (a second
    offer), or answer twice."""
    store = QueueStore(client, prefix=PREFIX)
    await store.register_agent("a0", name="a0", skills={"billing": 3}, sip_uri="sip:a0@x", languages=["en"])
    await store.register_agent("a1", name="a1", skills={"billing": 3}, sip_uri="sip:a1@x", languages=["en"])
    await store.set_agent_state("a0", AgentState.AVAILABLE)
    await store.set_agent_state("a1", AgentState.AVAILABLE)
    await call(store, "c0", "billing")
    first = await store.get_call("c0")
    await store.call_start("c0", "w1", ani="+1555", dnis="1000", hotline="h", language="en", plan_version="v")
    assert await store.enqueue("c0", queue="billing", skill="billing", priority=0, journey={}) is None
    again = await store.get_call("c0")
    assert first and again and again == first and again["state"] == "offered"
    assert (await store.get_agent("a1") or {})["state"] == "available"   # not offered c0 a second time
    assert await store.offer_answered("c0", first["offer_id"]) == first["agent_id"]
    assert await store.offer_answered("c0", first["offer_id"]) == first["agent_id"]
    types = [e.type for e in await store.read_events("0-0") if e.data.get("call_id") == "c0"]
    assert types == ["call.started", "call.queued", "call.offered", "call.answered"]
