"""Child processes owned by the supervisor.

Each child runs in its own process group (a Ctrl-C on the terminal reaches only the supervisor, which
then stops children in order) and gets ``PR_SET_PDEATHSIG`` so it dies with the supervisor even if
the supervisor is killed with SIGKILL: nothing is ever left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ivr.core.logging import get_logger

_PR_SET_PDEATHSIG = 1
log = get_logger(__name__)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (also run in a child
    between fork and exec)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig)


class ChildProcess:
    """What the supervisor does with any child: start, wait, signal its process group, stop (TERM,
    then KILL of the group after a timeout). Subclasses say how it starts and how its exit is seen."""

    name: str
    restarts: int

    @property
    def pid(self) -> int | None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        raise NotImplementedError

    async def start(self) -> None:
        raise NotImplementedError

    async def wait(self) -> int:
        """The exit code (negative: the signal that ended it)."""
        raise NotImplementedError

    def send_signal(self, sig: int) -> None:
        """To the child's process group; to the child alone if it has not made its group yet."""
        pid = self.pid
        if pid is None or not self.running:
            return
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    async def stop(self, timeout: float = 5.0, sig: int = signal.SIGTERM) -> int | None:
        """Ask the child to stop; SIGKILL its process group if it has not exited within ``timeout``."""
        pid = self.pid
        if pid is None:
            return None
        code: int | None = None
        if self.running:
            self.send_signal(sig)
            try:
                code = await asyncio.wait_for(self.wait(), timeout)
            except TimeoutError:
                log.warning("process.kill", process=self.name, pid=pid, after_s=timeout)
                self.send_signal(signal.SIGKILL)
                code = await self.wait()
        else:
            code = await self.wait()
        # Reap stragglers (e.g. forked helpers) left in the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        log.info("process.stopped", process=self.name, pid=pid, code=code)
        return code


class ManagedProcess(ChildProcess):
    """One child process the supervisor executes (a program of its own, in its own process group)."""

    def __init__(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 cwd: str | None = None, stdout: Any = None, guard: bool = False,
                 pass_fds: Sequence[int] = ()) -> None:
        """``guard``: the program forks children of its own (Kamailio); run it under
        :mod:`ivr.runtime.guard` so they die with the supervisor too. ``pass_fds``: descriptors the
        child inherits (besides its standard ones)."""
        self.name = name
        self.argv = [sys.executable, "-m", "ivr.runtime.guard", "--", *argv] if guard else list(argv)
        self.env = env
        self.cwd = cwd
        self.stdout = stdout
        self.pass_fds = tuple(pass_fds)
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        env = {**os.environ, **(self.env or {})}
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, env=env, cwd=self.cwd, stdin=asyncio.subprocess.DEVNULL, stdout=self.stdout,
            preexec_fn=die_with_parent, process_group=0, pass_fds=self.pass_fds,
        )
        log.info("process.started", process=self.name, pid=self.proc.pid)

    async def wait(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def wait_tcp(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on host:port (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        except OSError:
            if loop.time() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            await asyncio.sleep(0.05)
