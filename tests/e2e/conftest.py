"""The whole hotline started by the real `ivr run` supervisor, on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import pytest
import yaml
from redis.asyncio import Redis

from ivr.queues.store import QueueStore
from tests.conftest import kill_matching
from tests.ports import free_port_range, free_udp_tcp_port

ROOT = Path(__file__).resolve().parents[2]


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass
class Hotline:
    workdir: Path
    workers: int = 2
    wrapup_s: float = 1.0
    agent_sip_port: int = field(default_factory=free_udp_tcp_port)
    edge_port: int = field(default_factory=free_udp_tcp_port)
    api_port: int = field(default_factory=free_udp_tcp_port)
    redis_port: int = field(default_factory=free_udp_tcp_port)
    overrides: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        pool = max(self.workers, int(self.overrides.get("workers", {}).get("max_count") or 0))
        self.sip_base = free_port_range(pool)
        self.rtp_base = free_port_range(pool * 40)
        self.var = self.workdir / "var"
        self.log_path = self.workdir / "hotline.log"
        self.tokens = {"agent1": "agent1-test-token", "super1": "super1-test-token"}
        self._log: BinaryIO | None = None  # opened by start(): a stop() before it (a rig whose start failed) is fine

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def config(self) -> dict[str, Any]:
        return merge(self.base_config(), self.overrides)

    def base_config(self) -> dict[str, Any]:
        return {
            "var_dir": str(self.var),
            "dialplans_dir": str(ROOT / "dialplans"),
            "prompts": {"dir": str(ROOT / "prompts"), "cache_dir": str(self.workdir.parent / "prompt-cache")},
            "redis": {"port": self.redis_port},
            "edge": {"port": self.edge_port},
            # drain_s: a stop with a call still up (a test that failed half way) must not take 30 s
            "workers": {"count": self.workers, "sip_port_base": self.sip_base, "rtp_port_base": self.rtp_base,
                        "drain_s": 3},
            "api": {"port": self.api_port},
            "speech": {"enabled": False},
            "routing": {"wrapup_s": self.wrapup_s},
            "users": [
                {"id": "agent1", "name": "Ada", "skills": {"billing": 4},
                 "sip_uri": f"sip:agent1@127.0.0.1:{self.agent_sip_port}", "token": self.tokens["agent1"]},
                {"id": "super1", "name": "Sam", "role": "supervisor", "token": self.tokens["super1"]},
            ],
        }

    async def start(self, timeout: float = 90.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "hotline.yaml"
        cfg.write_text(yaml.safe_dump(self.config()))
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; we poll readiness below
            [sys.executable, "-m", "ivr.cli", "run", "--config", str(cfg)], cwd=ROOT,
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, f"ivr run exited:\n{self.log_tail()}"
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.api}/readyz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise AssertionError(f"hotline not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the supervisor; SIGKILL everything still there after ``timeout``."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                code = None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # Safety net: nothing started for this hotline may outlive the test.
        kill_matching(str(self.workdir))
        if self._log is not None:
            self._log.close()
        return code

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def store(self, redis: Redis) -> QueueStore:
        return QueueStore(redis, "ivr")

    def redis(self) -> Redis:
        """A client of the hotline's private Redis, with the password ``ivr run`` generated for it."""
        password = (self.var / "secrets" / "redis.password").read_text().strip()
        return Redis.from_url(f"redis://127.0.0.1:{self.redis_port}/0", password=password)


@pytest.fixture
async def hotline(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Hotline]:
    """The running hotline; a test may pass settings with @pytest.mark.hotline(workers=..., overrides=...)."""
    marker = request.node.get_closest_marker("hotline")
    h = Hotline(tmp_path / "hotline", **(marker.kwargs if marker else {}))
    try:
        await h.start()
        yield h
    finally:
        code = h.stop()
        h.exit_code = code  # type: ignore[attr-defined]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e is an end-to-end test (make test runs them in its serial phase)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
