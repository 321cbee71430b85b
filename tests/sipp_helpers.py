"""Helpers for tests that drive real sipp processes (sip-tester package), loopback only.

- :func:`free_udp_tcp_port` (from :mod:`tests.ports`): a session-unique 127.0.0.1 port free for UDP and TCP.
- :func:`run_sipp`: run a sipp client to completion, bounded by a timeout (killed otherwise).
- :class:`SippServer`: a sipp UAS in the background (its own process group, dies with the test
  process), stopped by the test; its message log tells which requests reached it.

Every sipp started here binds SIP, media and its control socket to 127.0.0.1 and has stdin closed.
Scenario files live in ``tests/sipp/``.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.core.process import ManagedProcess
from tests.ports import free_udp_tcp_port

SIPP = "sipp"
SIPP_DIR = Path(__file__).parent / "sipp"
LOOPBACK = "127.0.0.1"


def _holds_udp_port(pid: int, port: int) -> bool:
    """Whether process ``pid`` has a UDP socket bound to ``port`` (from /proc: its socket inodes
    against the kernel's UDP table)."""
    try:
        inodes = {link[8:-1] for fd in Path(f"/proc/{pid}/fd").iterdir()
                  if (link := _readlink(fd)).startswith("socket:[")}
        table = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    for row in table:
        cols = row.split()
        if len(cols) > 9 and int(cols[1].rsplit(":", 1)[1], 16) == port and cols[9] in inodes:
            return True
    return False


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _holders(port: int) -> str:
    """Which sockets (and processes, where visible) use ``port`` on loopback: for a diagnosis."""
    import subprocess

    try:
        out = subprocess.run(["ss", "-Htuanp", f"sport = :{port}"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"(ss failed: {exc})"
    return out.stdout or "(nothing now)"


def scenario(name: str) -> str:
    path = SIPP_DIR / name
    assert path.is_file(), f"missing sipp scenario {path}"
    return str(path)


def _common(port: int, workdir: Path, tag: str, trace_messages: bool = True) -> list[str]:
    """Loopback sockets, no stdin, errors logged; every message logged too unless ``trace_messages``
    is False (a long benchmark's message log would grow by gigabytes)."""
    messages = ["-trace_msg", "-message_file", str(workdir / f"{tag}.messages.log")] if trace_messages else []
    return [
        "-i", LOOPBACK, "-p", str(port),
        "-mi", LOOPBACK, "-ci", LOOPBACK,      # media and remote-control sockets on loopback too
        "-nostdin",
        *messages,
        "-trace_err", "-error_file", str(workdir / f"{tag}.errors.log"),
    ]


@dataclass
class SippResult:
    returncode: int | None
    output: str
    messages: str
    errors: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        return (f"sipp exit code {self.returncode}\n--- errors ---\n{self.errors[-3000:]}\n"
                f"--- screen ---\n{self.output[-2000:]}")


async def run_sipp(scenario_file: str, target: tuple[str, int], *, workdir: Path, tag: str = "uac",
                   port: int | None = None, calls: int = 1, limit_s: float = 30.0,
                   extra: list[str] | None = None, trace_messages: bool = True) -> SippResult:
    """Run a sipp client scenario against ``target`` until ``calls`` calls are done (or it fails).

    sipp itself gives up after ``limit_s`` seconds (``-timeout ... -timeout_error``); the process
    is killed if it is still there a few seconds later. With ``trace_messages=False`` no message
    log is written (``SippResult.messages`` is then empty).
    """
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    port = port or free_udp_tcp_port()
    argv = [
        SIPP, f"{target[0]}:{target[1]}", "-sf", scenario_file, *_common(port, workdir, tag, trace_messages),
        "-m", str(calls), "-r", "10", "-l", str(calls),
        "-timeout", f"{int(limit_s)}s", "-timeout_error",
        *(extra or []),
    ]
    out_path = workdir / f"{tag}.screen.txt"
    with out_path.open("wb") as out:
        proc = ManagedProcess(f"sipp-{tag}", argv, stdout=out, cwd=str(workdir))
        await proc.start()
        try:
            code: int | None = await asyncio.wait_for(proc.wait(), limit_s + 10)
        except TimeoutError:
            code = None
        finally:
            await proc.stop(timeout=2)
    return SippResult(code, out_path.read_text(errors="replace"), _read(workdir / f"{tag}.messages.log"),
                      _read(workdir / f"{tag}.errors.log"))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


class SippServer:
    """A sipp UAS on 127.0.0.1:``port`` running ``scenario_file`` until :meth:`stop`.

    Run without ``-m``: every request that opens a new "call" (an INVITE, or the edge's OPTIONS
    probes when the scenario handles them) is handled by a fresh scenario instance.
    """

    def __init__(self, scenario_file: str, *, workdir: Path, tag: str, port: int | None = None,
                 max_runtime: float = 120.0, extra: list[str] | None = None,
                 trace_messages: bool = True) -> None:
        self.port = port or free_udp_tcp_port()
        self._port_chosen = port is None
        self.workdir = workdir
        self.tag = tag
        self._scenario, self._max_runtime, self._extra = scenario_file, max_runtime, extra or []
        self._trace = trace_messages
        self._out: Any = None
        self.process: ManagedProcess | None = None

    @property
    def argv(self) -> list[str]:
        return [SIPP, "-sf", self._scenario, *_common(self.port, self.workdir, self.tag, self._trace),
                "-timeout", f"{int(self._max_runtime)}s",  # safety net: never outlives a hung test by much
                *self._extra]

    @property
    def address(self) -> tuple[str, int]:
        return LOOPBACK, self.port

    async def start(self) -> SippServer:
        """Start sipp and wait until it holds its port. A port this helper chose that another process
        took between the free check and sipp's bind (seen twice in hundreds of runs, the holder
        unknown) is replaced by a fresh one, at most twice; what held it is in the error file."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self._out = (self.workdir / f"{self.tag}.screen.txt").open("wb")
            self.process = ManagedProcess(f"sipp-{self.tag}", self.argv, stdout=self._out, cwd=str(self.workdir))
            await self.process.start()
            try:
                await self._wait_bound()
                return self
            except RuntimeError:
                lost = "Unable to bind main socket" in self.errors()
                await self.stop()
                if not (lost and self._port_chosen and attempt < 2):
                    raise
                with (self.workdir / f"{self.tag}.port-taken.txt").open("a") as note:
                    note.write(f"port {self.port} taken before sipp bound it; held by:\n{_holders(self.port)}\n")
                self.port = free_udp_tcp_port()
        raise AssertionError("unreachable")

    async def _wait_bound(self, within_s: float = 5.0) -> None:
        """Wait until sipp itself holds its UDP port (bounded; a port bound by another process does not count)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while loop.time() < deadline:
            assert self.process is not None
            if not self.process.running:
                raise RuntimeError(f"sipp {self.tag} exited at start:\n{self.errors()}\n{self.screen()}")
            if self.process.pid is not None and _holds_udp_port(self.process.pid, self.port):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"sipp {self.tag} did not bind {self.port}")

    async def stop(self) -> None:
        if self.process is not None:
            await self.process.stop(timeout=3)
        if self._out is not None:
            self._out.close()
            self._out = None

    async def __aenter__(self) -> SippServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def messages(self) -> str:
        return _read(self.workdir / f"{self.tag}.messages.log")

    def errors(self) -> str:
        return _read(self.workdir / f"{self.tag}.errors.log")

    def screen(self) -> str:
        return _read(self.workdir / f"{self.tag}.screen.txt")

    def received(self, method: str) -> int:
        """How many ``method`` requests (retransmissions included) reached this sipp."""
        return len(re.findall(rf"^{re.escape(method)} sip:", self.messages(), flags=re.M))
