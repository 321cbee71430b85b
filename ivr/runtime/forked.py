"""The supervisor's side of the worker pool's parent (:mod:`ivr.runtime.forkserver`).

:class:`WorkerPool` starts that parent (lazily, again after it died), asks it for workers and hears
their exits; :class:`ForkedWorker` is one worker as the supervisor sees any child
(:class:`ivr.core.process.ChildProcess`): start, wait, signal, stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from pathlib import Path

from ivr.core.logging import get_logger
from ivr.core.process import ChildProcess, ManagedProcess

log = get_logger(__name__)
LOST = -9  # the exit code of a worker whose parent died (PR_SET_PDEATHSIG: SIGKILL)


class WorkerPool:
    """The one process the workers are forked from."""

    def __init__(self, settings_file: Path) -> None:
        self.settings_file = settings_file
        self.process: ManagedProcess | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._spawns: asyncio.Queue[asyncio.Future[tuple[int, asyncio.Future[int]]]] = asyncio.Queue()
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running and self._writer is not None

    async def _ensure_running(self) -> asyncio.StreamWriter:
        if self.running and self._writer is not None:
            return self._writer
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.process = ManagedProcess("worker-pool", [
                sys.executable, "-m", "ivr.cli", "worker-pool", "--settings", str(self.settings_file),
                "--fd", str(theirs.fileno())], pass_fds=[theirs.fileno()])
            await self.process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        self._reader_task = asyncio.create_task(self._read(reader, self._writer), name="worker-pool.read")
        return self._writer

    async def spawn(self, index: int) -> tuple[int, asyncio.Future[int]]:
        """Fork worker ``index``: its pid, and a future of its exit code."""
        async with self._lock:  # replies come in the order of the requests
            writer = await self._ensure_running()
            reply: asyncio.Future[tuple[int, asyncio.Future[int]]] = asyncio.get_running_loop().create_future()
            self._spawns.put_nowait(reply)
            writer.write(json.dumps({"spawn": index}).encode() + b"\n")
            await writer.drain()
            return await reply

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                if "spawned" in msg:
                    reply = self._spawns.get_nowait()
                    if "pid" in msg:  # the exit future exists before its exit can be read
                        exited = self._exits[msg["pid"]] = asyncio.get_running_loop().create_future()
                        reply.set_result((msg["pid"], exited))
                    else:
                        reply.set_exception(OSError(f"the worker pool could not fork: {msg.get('error')}"))
                elif "exited" in msg:
                    done = self._exits.pop(msg["exited"], None)
                    if done is not None and not done.done():
                        done.set_result(int(msg["code"]))
                else:
                    log.error("worker_pool.refused", error=msg.get("error"))
        except (ConnectionError, ValueError, asyncio.QueueEmpty) as exc:
            log.error("worker_pool.broken", error=str(exc))
        finally:
            # The parent has gone: so have its children (PR_SET_PDEATHSIG), and no reply will come.
            if self._writer is writer:
                self._writer = None
            writer.close()
            for fut in self._exits.values():
                if not fut.done():
                    fut.set_result(LOST)
            self._exits.clear()
            while not self._spawns.empty():
                pending = self._spawns.get_nowait()
                if not pending.done():
                    pending.set_exception(ConnectionError("the worker pool's parent exited"))

    async def stop(self, timeout: float = 10.0) -> None:
        """After the workers: closing the socket ends the parent (it ignores SIGTERM)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.process is not None and self.process.proc is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), timeout)
            await self.process.stop(timeout=1)
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)


class ForkedWorker(ChildProcess):
    """Worker ``index``, forked by the pool's parent; a restart forks a new one."""

    def __init__(self, name: str, pool: WorkerPool, index: int) -> None:
        self.name = name
        self.pool = pool
        self.index = index
        self.restarts = 0
        self._pid: int | None = None
        self._exit: asyncio.Future[int] | None = None

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def running(self) -> bool:
        return self._exit is not None and not self._exit.done()

    async def start(self) -> None:
        self._pid, self._exit = await self.pool.spawn(self.index)
        log.info("process.started", process=self.name, pid=self._pid, forked=True)

    async def wait(self) -> int:
        assert self._exit is not None
        return await asyncio.shield(self._exit)
