"""The supervisor's wait for the worker pool at start, against a real Redis: a big pool may take
minutes to come up on a busy host; only a pool that stops making progress fails the start."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis

from ivr.core.config import Settings
from ivr.queues.keys import Keys
from ivr.runtime.supervisor import Supervisor
from tests.conftest import RedisServer


def supervisor(tmp_path: Path, redis_server: RedisServer, count: int, stall_s: float) -> Supervisor:
    return Supervisor(Settings(var_dir=tmp_path / "var", redis={"url": redis_server.url},
                               workers={"count": count, "start_stall_s": stall_s}))


async def test_a_pool_that_keeps_coming_up_is_waited_for_beyond_the_stall_time(
        tmp_path: Path, redis: Redis, redis_server: RedisServer) -> None:
    sup = supervisor(tmp_path, redis_server, count=4, stall_s=0.8)
    keys = Keys(sup.settings.redis.prefix)

    async def come_up_one_by_one() -> None:
        for i in range(4):
            await asyncio.sleep(0.4)  # each step is under the stall time, all together well over it
            await redis.set(keys.worker_alive(f"w{i}"), "1")

    starter = asyncio.create_task(come_up_one_by_one())
    await asyncio.wait_for(sup._wait_workers_alive(), 10)
    assert starter.done()
    assert sum([await redis.exists(keys.worker_alive(f"w{i}")) for i in range(4)]) == 4


async def test_a_pool_that_stops_coming_up_fails_the_start_with_the_count(
        tmp_path: Path, redis: Redis, redis_server: RedisServer) -> None:
    sup = supervisor(tmp_path, redis_server, count=3, stall_s=1.0)
    keys = Keys(sup.settings.redis.prefix)
    await redis.set(keys.worker_alive("w0"), "1")
    with pytest.raises(TimeoutError, match=r"only 1/3 workers came up \(none more in the last 1 s\)"):
        await asyncio.wait_for(sup._wait_workers_alive(), 10)
