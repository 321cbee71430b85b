"""A task cancelled during a Redis command ends (real Redis).

redis-py 8.2 on Python 3.11 lets some cancellations through a command unseen: the command returns its
reply and the cancelled task goes on (about one in ten of the cancels below with a plain client). A
background loop that went on after its cancel kept a worker from stopping and hung a test process at
its end (a housekeeping loop, found by make test on a loaded machine). ivr.queues.connection's client
raises the cancellation after the command, and keep_running ends its loop even when a step's own
client swallowed it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from ivr.core.config import RedisSettings, Settings
from ivr.queues.connection import CancellableRedis, close, connect, keep_running
from ivr.queues.store import QueueStore
from ivr.runtime.worker import Worker
from tests.conftest import RedisServer

ROUNDS = 300


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    r = connect(RedisSettings(url=redis_server.url))
    yield r
    await close(r)


async def cancel_at_random(work: Callable[[], Awaitable[object]], rounds: int, seed: int) -> tuple[int, int, int]:
    """Start ``work`` in a task, cancel it at a random moment; (cancels accepted, tasks that still
    finished normally after an accepted cancel, tasks still running 2 s after their cancel)."""
    rng = random.Random(seed)
    accepted = went_on = running = 0
    for _ in range(rounds):
        task = asyncio.create_task(work())
        await asyncio.sleep(rng.random() * 0.002)
        if not task.cancel():
            await task  # done before the cancel: nothing to judge
            continue
        accepted += 1
        done, _ = await asyncio.wait({task}, timeout=2)
        if not done:
            running += 1
            task.cancel()
            await asyncio.wait({task}, timeout=2)
        elif not task.cancelled():
            went_on += 1
    return accepted, went_on, running


async def test_a_cancelled_command_of_the_roles_client_always_ends_its_task(client: Redis) -> None:
    assert isinstance(client, CancellableRedis)

    async def commands() -> str:
        await client.ping()
        await client.eval("return redis.call('INCR', KEYS[1])", 1, "cancel-test")
        await client.get("cancel-test")
        return "finished"

    accepted, went_on, running = await cancel_at_random(commands, ROUNDS, seed=7)
    assert accepted > ROUNDS // 10, accepted
    assert (went_on, running) == (0, 0)
    assert await client.ping()  # the client is still usable after all those cancels


async def test_keep_running_ends_when_a_step_swallowed_the_cancel(redis_server: RedisServer) -> None:
    plain = Redis.from_url(redis_server.url)  # redis-py's own client, which may swallow a cancel
    try:
        async def step() -> float:
            await plain.ping()
            return 0.01

        async def loop() -> None:
            await keep_running("cancel-test", step, event="test.redis_unavailable")

        accepted, went_on, running = await cancel_at_random(loop, ROUNDS // 3, seed=11)
        assert accepted > 0 and (went_on, running) == (0, 0)
    finally:
        await plain.aclose()


async def test_the_workers_housekeeping_stops_when_cancelled(client: Redis) -> None:
    store = QueueStore(client, prefix="hk")
    worker = Worker(Settings(), 0, name="hk-cancel")
    accepted, went_on, running = await cancel_at_random(lambda: worker._housekeeping(store), 60, seed=3)
    assert accepted > 0 and (went_on, running) == (0, 0)
