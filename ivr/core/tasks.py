"""Owned background tasks: every task has a name and an owner, failures are logged, and the
owner cancels them all on shutdown (no bare ``create_task``)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from ivr.core.logging import get_logger

log = get_logger(__name__)


class TaskGroup:
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("task.failed", task=task.get_name(), error=repr(exc), exc_info=exc)

    async def cancel_all(self, timeout: float = 10.0) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def __len__(self) -> int:
        return len(self._tasks)
