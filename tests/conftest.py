"""Shared fixtures: free loopback ports and a real, private redis-server per test session."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from redis.asyncio import Redis

from tests.ports import free_udp_tcp_port

# Generated inputs (hypothesis): no per-example deadline (on 2 shared cores a slow example is not a
# bug), the same examples on every run (a CI failure reproduces), and their number set per test.
settings.register_profile("suite", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "shared_hotline: the test's `hotline` is the shared one (tests/e2e/conftest.py)")


def free_port() -> int:
    """A session-unique loopback TCP (and UDP) port for a test server."""
    return free_udp_tcp_port()


def wait_port(port: int, within_s: float = 10.0, proc: subprocess.Popen[bytes] | None = None,
              log: Path | None = None) -> None:
    """Wait until something accepts TCP on 127.0.0.1:port; fail at once if ``proc`` exits."""
    def why() -> str:
        return log.read_text(errors="replace") if log is not None and log.exists() else ""

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        assert proc is None or proc.poll() is None, f"the server exited before listening on {port}\n{why()}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port} after {within_s} s\n{why()}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 5 s: a test server that will not stop is not left behind."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--appendonly", "yes", "--save", "", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, 10, self.proc)

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Whatever a test started under the session's temp dir is gone when the session ends,
    even if the test failed before its own clean-up."""
    base = str(tmp_path_factory.getbasetemp())
    yield
    kill_matching(base)


def kill_matching(marker: str) -> list[int]:
    """SIGKILL every process whose command line contains ``marker``, except this test process."""
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False).stdout
    pids = [int(p) for p in out.split() if int(p) not in (os.getpid(), os.getppid())]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    assert shutil.which("redis-server"), "redis-server is installed by `make test` (deploy/install-system.sh)"
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()
