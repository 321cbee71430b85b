"""The one loop that keeps a role's background work going while Redis is away."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from ivr.queues.connection import keep_running


async def test_redis_errors_are_logged_and_retried_other_errors_stop_the_loop() -> None:
    runs: list[str] = []

    async def step() -> float:
        runs.append("run")
        if len(runs) <= 2:
            raise RedisConnectionError("connection refused")
        if len(runs) == 4:
            raise KeyError("a bug")
        return 0.0

    with capture_logs() as logs, pytest.raises(KeyError):
        await asyncio.wait_for(keep_running("test", step, event="test.redis_unavailable", pause_on_error_s=0.01), 5)
    assert len(runs) == 4
    warned = [e for e in logs if e["event"] == "test.redis_unavailable"]
    assert len(warned) == 2 and all(e["loop"] == "test" for e in warned)


async def test_the_step_sets_the_pause_and_cancel_stops_it() -> None:
    runs = 0

    async def step() -> float:
        nonlocal runs
        runs += 1
        return 0.05

    task = asyncio.create_task(keep_running("t", step, event="e"))
    for _ in range(200):  # bounded: the step runs again after its pause
        if runs >= 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (runs >= 2 and not task.done()) or task.cancelled()
