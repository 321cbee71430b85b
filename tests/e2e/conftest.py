"""The whole hotline started by the real `ivr run` supervisor, on free loopback ports.

Two fixtures give a test a running hotline; both take settings from
``@pytest.mark.hotline(workers=..., wrapup_s=..., overrides=...)``:

- ``hotline``: a hotline of the test's own, started before it and stopped after it (about 5 s of
  start-up and 2 s of stop). Use it for a test that kills or restarts processes, edits dial plans,
  stops the hotline itself, checks start/stop behaviour, counts every call record or log line of
  the run, or sends hostile traffic.
- ``shared_hotline`` (or ``hotline`` with ``@pytest.mark.shared_hotline`` on the test or the module:
  the same, without renaming the argument): one hotline per test process and settings, started by
  the first test that asks for it and reused by the next ones with the same settings. Between tests
  it is brought back to a known state and checked (``HotlinePool.settle``): no call up (a call still
  up 10 s after the test is an error of that test, reported in its teardown, and the hotline is
  replaced), no caller waiting, no worker busy, no process restarted during the test, every agent
  offline. What stays from earlier tests: ended call records, the event stream and the log file;
  ``log_records()`` and ``log_tail()`` show only the lines written since the test began. So a shared
  test finds its own calls by id or ANI, never by counting everything in Redis.
  Only one shared hotline runs per process at a time: other settings replace it, and a test with a
  hotline of its own (any fixture with "hotline" in its name) or in a module with no sharing test
  stops it first. Modules with a sharing test are collected first, so it is started about once per
  process (``make test`` runs the e2e tier in two processes, a whole module at a time each).

To move a test over (it must leave no call up, not kill/restart/stop anything, not edit dial plans,
and not count what earlier tests left): add ``pytest.mark.shared_hotline`` (to ``pytestmark`` for
a whole module); tests with the same ``@pytest.mark.hotline(...)`` settings share one. The test
starts with every agent offline and no call up, as on a fresh hotline.

The prompt cache (espeak-ng prompts, the generated hold music) is one directory per test process
(``<basetemp>/prompt-cache``); every hotline's ``workdir.parent / "prompt-cache"`` points at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import aiohttp
import pytest
import yaml
from redis.asyncio import Redis

from ivr.core.events import AgentState
from ivr.core.process import pid_alive
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
    log_from: int = 0  # log_records()/log_tail() read from this byte of the log (a shared hotline's test)
    shared_prompt_cache: ClassVar[Path | None] = None  # set per test process by the session fixture

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
            # the browser phone's rtpengine and WSS listener only where a test asks for them
            # (overrides={"edge": {"webrtc": {"enabled": True}}}): a start and a stop less per hotline
            "edge": {"port": self.edge_port, "webrtc": {"enabled": False}},
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
        cache = self.workdir.parent / "prompt-cache"
        if self.shared_prompt_cache is not None and not cache.exists() and not cache.is_symlink():
            self.shared_prompt_cache.mkdir(parents=True, exist_ok=True)
            cache.symlink_to(self.shared_prompt_cache, target_is_directory=True)
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
                # the banner says every role is up (the API answers /readyz before the edge does)
                if b"Hotline is up." in self.log_path.read_bytes():
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"{self.api}/readyz") as r:
                            if r.status == 200:
                                return
                await asyncio.sleep(0.05)
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

    def log_text(self) -> str:
        """The log from ``log_from`` on (all of it for a hotline of the test's own)."""
        with self.log_path.open("rb") as f:
            f.seek(self.log_from)
            return f.read().decode(errors="replace")

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def store(self, redis: Redis) -> QueueStore:
        return QueueStore(redis, "ivr")

    async def worker_pids(self) -> dict[str, int]:
        """``{"w0": pid, ...}`` of the workers alive now, from their heartbeats in Redis (forked
        workers share their parent's command line: /proc cannot tell them apart)."""
        redis = self.redis()
        try:
            store = self.store(redis)
            out = {}
            for i in range(int(self.config()["workers"].get("max_count") or self.workers)):
                holder = await store.worker_holder(f"w{i}")
                pid = int(holder.rpartition(":")[2]) if holder else 0
                if pid and pid_alive(pid):
                    out[f"w{i}"] = pid
            return out
        finally:
            await redis.aclose()

    def redis(self) -> Redis:
        """A client of the hotline's private Redis, with the password ``ivr run`` generated for it."""
        password = (self.var / "secrets" / "redis.password").read_text().strip()
        return Redis.from_url(f"redis://127.0.0.1:{self.redis_port}/0", password=password)


def hotline_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("hotline")
    return dict(marker.kwargs) if marker else {}


@pytest.fixture(scope="session", autouse=True)
def shared_prompt_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One prompt cache per test process: rendering the prompts and the hold music for every new
    hotline took about 1.8 s of its start (content-addressed entries, written by rename)."""
    Hotline.shared_prompt_cache = tmp_path_factory.getbasetemp() / "prompt-cache"
    yield Hotline.shared_prompt_cache
    Hotline.shared_prompt_cache = None


@pytest.fixture
async def hotline(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Hotline]:
    """The running hotline; a test may pass settings with @pytest.mark.hotline(workers=..., overrides=...).
    With @pytest.mark.shared_hotline it is the shared one (see ``shared_hotline``)."""
    if request.node.get_closest_marker("shared_hotline"):
        async with POOL.lease(request) as shared:
            yield shared
        return
    h = Hotline(tmp_path / "hotline", **hotline_settings(request))
    try:
        await h.start()
        yield h
    finally:
        code = h.stop()
        h.exit_code = code  # type: ignore[attr-defined]


@pytest.fixture
async def shared_hotline(request: pytest.FixtureRequest) -> AsyncIterator[Hotline]:
    """A running hotline shared with the other tests of this process that have the same settings
    (@pytest.mark.hotline), brought back to a known state after each; see the module docstring."""
    async with POOL.lease(request) as h:
        yield h


class HotlinePool:
    """The shared hotlines of this test process, by settings key; at most one runs at a time."""

    SETTLE_S = 10.0  # beyond wrap-up: a call's legs and record end within this after the test

    def __init__(self) -> None:
        self.live: dict[str, Hotline] = {}
        self.started = 0

    @staticmethod
    def key(settings: dict[str, Any]) -> str:
        full = {"workers": 2, "wrapup_s": 1.0, "overrides": {}, **settings}
        return json.dumps(full, sort_keys=True, default=str)

    async def get(self, settings: dict[str, Any], root: Path) -> Hotline:
        key = self.key(settings)
        h = self.live.get(key)
        if h is not None and (h.proc is None or h.proc.poll() is not None):
            self.discard(key)  # its supervisor is gone: the last test's teardown has said so
            h = None
        if h is None:
            self.close()
            self.started += 1
            h = Hotline(root / f"shared-{self.started}" / "hotline", **settings)
            self.live[key] = h
            try:
                await h.start()
            except BaseException:
                self.discard(key)
                raise
        return h

    def discard(self, key: str) -> None:
        h = self.live.pop(key, None)
        if h is not None:
            h.stop()

    def close(self) -> None:
        for key in list(self.live):
            self.discard(key)

    @contextlib.asynccontextmanager
    async def lease(self, request: pytest.FixtureRequest) -> AsyncIterator[Hotline]:
        settings = hotline_settings(request)
        root = request.getfixturevalue("tmp_path_factory").getbasetemp()
        h = await self.get(settings, root)
        problems = await self.settle(h, within_s=0)
        if problems:  # cannot happen after a clean teardown: a fresh one, rather than a dirty one
            self.discard(self.key(settings))
            h = await self.get(settings, root)
            problems = await self.settle(h, within_s=0)
            assert not problems, f"a freshly started shared hotline is not clean: {problems}"
        h.log_from = h.log_path.stat().st_size
        yield h
        problems = await self.settle(h, within_s=h.wrapup_s + self.SETTLE_S)
        if problems:
            tail = h.log_tail()
            self.discard(self.key(settings))
            raise AssertionError(
                f"this test left the shared hotline dirty (it is replaced for the next test): {problems}\n{tail}")

    async def settle(self, h: Hotline, within_s: float) -> list[str]:
        """Wait (bounded) until no call is up, no caller waits and no agent is on a call or in wrap-up;
        then log every agent off. What is still wrong after ``within_s`` is returned."""
        if h.proc is None or h.proc.poll() is not None:
            return [f"ivr run exited with {h.proc and h.proc.returncode}"]
        died = [r for r in h.log_records() if r.get("event") == "process.died"]
        if died:
            return [f"{r.get('process')} died (code {r.get('code')}) during the test" for r in died]
        redis = h.redis()
        try:
            store = h.store(redis)
            deadline = time.monotonic() + within_s
            while True:
                problems = []
                calls = await store.active_calls()
                if calls:
                    problems.append(f"calls still up: {sorted(calls)}")
                for queue in await store.queue_names():
                    if waiting := await store.waiting(queue):
                        problems.append(f"callers waiting in {queue}: {waiting}")
                for worker in await store.worker_names():
                    if load := await store.worker_load(worker):
                        problems.append(f"worker {worker} has {load} call(s)")
                agents = {a: await store.get_agent(a) for a in await store.agent_ids()}
                busy = {a: v["state"] for a, v in agents.items()
                        if v and v["state"] in ("reserved", "oncall", "wrapup")}
                if busy:
                    problems.append(f"agents busy: {busy}")
                if not problems or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.1)
            if problems:
                return problems
            for agent, value in agents.items():
                if value and value["state"] != AgentState.OFFLINE:
                    await store.set_agent_state(agent, AgentState.OFFLINE, "test-reset")
            return []
        finally:
            await redis.aclose()


POOL = HotlinePool()


@pytest.fixture(scope="session", autouse=True)
def _stop_shared_pool() -> Iterator[None]:
    yield
    POOL.close()


SHARING_MODULES: set[str] = set()  # the test files with a test on a shared hotline (collection)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test with a hotline of its own (or in a module that does not share) stops the idle shared
    hotline first: it gets the CPU to itself. A test with no hotline in a sharing module leaves it."""
    if shares_hotline(item):
        return
    own = any("hotline" in name for name in getattr(item, "fixturenames", ()))  # hotline, short_moh_hotline...
    if own or str(item.fspath) not in SHARING_MODULES:
        POOL.close()


def shares_hotline(item: pytest.Item) -> bool:
    fixtures = getattr(item, "fixturenames", ())
    return "shared_hotline" in fixtures or ("hotline" in fixtures and bool(item.get_closest_marker("shared_hotline")))


# Seconds a module took in `make test`'s e2e step (2 xdist processes, 2026-12-06): only the order in
# which modules are handed out comes from it, longest first, so that neither process ends with a
# long module left while the other is idle (a module not listed counts as 60 s).
MODULE_SECONDS = {"test_pool": 140, "test_sip_torture": 45, "test_faults": 80, "test_multihost": 60,
                  "test_speech_calls": 60, "test_pages": 55, "test_dialplan_calls": 50, "test_run_defaults": 45,
                  "test_queue_announcements": 40, "test_dialplan_reload": 35, "test_callbacks": 25,
                  "test_log_hygiene": 20, "test_call_control": 190, "test_registered_phone": 40,
                  "test_originate": 20, "test_pages_call_control": 120, "test_outbound_trunk": 40,
                  "test_campaigns": 80, "test_followup": 30, "test_dialout": 20, "test_case_tasks": 15,
                  "test_recording": 55, "test_supervision": 55, "test_pages_recording": 50,
                  "test_webrtc_browser": 120, "test_edge_webrtc_run": 20}

# Last of all: ten Chromiums, rtpengine and their exit load the machine for a while after the
# module's last test; the serial tier's media test that came next heard its greeting with gaps once.
RUN_LAST = {"test_webrtc_browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e is an end-to-end test (make test runs them in its e2e phase).
    Modules are reordered (each module's tests stay together and in order): those with tests on a
    shared hotline first, one after the other, so the shared hotline is started about once per
    process; then the others, longest first (``MODULE_SECONDS``); ``RUN_LAST`` at the very end."""
    here = Path(__file__).parent
    sharing = SHARING_MODULES
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            if shares_hotline(item):
                sharing.add(str(item.fspath))

    def order(item: pytest.Item) -> tuple[bool, bool, bool, float]:
        path = Path(str(item.fspath))
        in_e2e = here in path.parents
        return (in_e2e, path.stem in RUN_LAST, str(path) not in sharing,
                -MODULE_SECONDS.get(path.stem, 60) if in_e2e else 0)

    items.sort(key=order)
