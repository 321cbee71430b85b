"""The supervisor's watch of one child (:meth:`Supervisor._watch`): a child that dies is started
again, and a start that fails (the workers' parent gone mid-request) is tried again with back-off
instead of ending the watch, which would leave that worker down for good."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ivr.core.config import Settings
from ivr.core.process import ChildProcess
from ivr.runtime import supervisor
from ivr.runtime.supervisor import Supervisor


class FlakyChild(ChildProcess):
    """Exits at once; its first restart fails; the second stays up."""

    def __init__(self) -> None:
        self.name = "worker-0"
        self.restarts = 0
        self.starts = 0
        self.up = asyncio.Event()
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._exit.set_result(-9)

    @property
    def pid(self) -> int | None:
        return 4242

    @property
    def running(self) -> bool:
        return not self._exit.done()

    async def start(self) -> None:
        self.starts += 1
        if self.starts == 1:
            raise ConnectionError("the worker pool's parent exited")
        self._exit = asyncio.get_running_loop().create_future()  # up, until cancelled
        self.up.set()

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)


async def test_a_failed_restart_is_tried_again_and_the_child_comes_back(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(supervisor, "RESTART_BACKOFF_S", (0.01, 0.01))
    sup = Supervisor(Settings(var_dir=tmp_path / "var"))
    child = FlakyChild()
    watch = asyncio.create_task(sup._watch(child))
    try:
        await asyncio.wait_for(child.up.wait(), 5)
        assert child.starts == 2 and child.restarts == 2 and not watch.done()
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
