"""The parent workers are forked from (``ivr worker-pool``, ivr/runtime/forkserver.py) as a real
process, driven by the supervisor's own side (:class:`ivr.runtime.forked.WorkerPool`), with real
workers (pjsua2, the shipped plans) on a real Redis: a forked worker comes up and registers, is a
child of the pool's parent in a process group of its own, shares the parent's memory, drains on
SIGTERM and exits 0 by itself; the parent ignores SIGTERM, answers a bad request with an error and
keeps serving, ends when the supervisor closes its socket, and its workers die with it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from ivr.core.config import Settings
from ivr.core.process import pid_alive
from ivr.queues.store import QueueStore
from ivr.runtime.forked import LOST, ForkedWorker, WorkerPool
from tests.conftest import RedisServer
from tests.ports import free_port_range

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "wpool"


@pytest.fixture
def settings_file(tmp_path: Path, redis_server: RedisServer) -> Path:
    sip, rtp = free_port_range(3), free_port_range(3 * 40)
    settings = Settings.model_validate({
        "var_dir": str(tmp_path / "var"), "dialplans_dir": str(ROOT / "dialplans"),
        "prompts": {"dir": str(ROOT / "prompts"), "cache_dir": str(tmp_path / "prompt-cache")},
        "redis": {"url": redis_server.url, "prefix": PREFIX}, "speech": {"enabled": False},
        "workers": {"count": 2, "max_count": 3, "sip_port_base": sip, "rtp_port_base": rtp, "drain_s": 2},
        "log_format": "json",
    })
    path = tmp_path / "settings.json"
    path.write_text(settings.dump_for_children())
    return path


@pytest.fixture
async def pool(settings_file: Path) -> AsyncIterator[WorkerPool]:
    p = WorkerPool(settings_file)
    yield p
    await p.stop(timeout=10)


def _rollup(pid: int) -> dict[str, int]:
    """/proc/<pid>/smaps_rollup's fields in kB."""
    lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    return {line.split(":")[0]: int(line.split()[1]) for line in lines}


def _write_unreachable_redis(settings_file: Path, path: Path) -> None:
    broken = json.loads(settings_file.read_text())
    broken["redis"]["url"] = "redis://127.0.0.1:9/0"  # nothing listens: the worker cannot start
    path.write_text(json.dumps(broken))


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


async def _alive(redis: Redis, name: str, within_s: float = 60.0) -> None:
    store = QueueStore(redis, PREFIX)
    for _ in range(int(within_s * 10)):
        if await store.workers_alive([name]) == 1:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} did not come up within {within_s} s")


async def test_a_forked_worker_comes_up_shares_the_parents_memory_and_drains_on_sigterm(
        pool: WorkerPool, redis: Redis) -> None:
    w = ForkedWorker("worker-0", pool, 0)
    await w.start()
    assert w.running and w.pid is not None and pool.process is not None and pool.process.pid is not None
    await _alive(redis, "w0")
    fields = _stat(w.pid)
    assert int(fields[1]) == pool.process.pid  # forked by the pool's parent
    assert int(fields[2]) == w.pid  # a process group of its own: the supervisor signals the group
    # what it inherited stays shared: most of its resident memory is not its own
    rollup = _rollup(w.pid)
    assert rollup["Shared_Clean"] + rollup["Shared_Dirty"] > rollup["Private_Dirty"], rollup
    # SIGTERM to the group: the worker drains (no call up) and exits 0 by itself
    assert await w.stop(timeout=20) == 0
    assert not w.running and not pid_alive(w.pid)
    assert await QueueStore(redis, PREFIX).workers_alive(["w0"]) == 0  # it unregistered


async def test_the_parent_ignores_sigterm_refuses_bad_requests_and_ends_with_its_socket(
        pool: WorkerPool, redis: Redis) -> None:
    w = ForkedWorker("worker-1", pool, 1)
    await w.start()
    await _alive(redis, "w1")
    assert pool.process is not None and pool.process.pid is not None
    parent = pool.process.pid
    os.kill(parent, signal.SIGTERM)  # systemctl stop / a terminal's signal: the workers drain, it stays
    await asyncio.sleep(0.3)
    assert pool.running
    # an index outside the pool, then a line that is no request: errors, and it goes on serving
    with pytest.raises(OSError, match="no worker index"):
        await pool.spawn(99)
    assert pool._writer is not None
    pool._writer.write(b"not json\n")
    w2 = ForkedWorker("worker-2", pool, 2)
    await w2.start()
    await _alive(redis, "w2")
    # the supervisor goes away (its socket closes): the parent ends, and its workers die with it
    await pool.stop(timeout=10)
    assert not pool.process.running
    assert await asyncio.wait_for(w.wait(), 10) == LOST
    assert await asyncio.wait_for(w2.wait(), 10) == LOST
    for _ in range(50):
        if not pid_alive(w.pid or 0) and not pid_alive(w2.pid or 0):
            break
        await asyncio.sleep(0.1)
    assert not pid_alive(w.pid or 0) and not pid_alive(w2.pid or 0)


async def test_a_worker_that_fails_reports_its_exit_code_and_a_restart_forks_anew(
        tmp_path: Path, settings_file: Path) -> None:
    path = tmp_path / "broken.json"
    _write_unreachable_redis(settings_file, path)
    pool = WorkerPool(path)
    try:
        w = ForkedWorker("worker-0", pool, 0)
        await w.start()
        first = w.pid
        assert await asyncio.wait_for(w.wait(), 60) == 1
        await w.start()  # as the supervisor's restart does
        assert w.pid != first and await asyncio.wait_for(w.wait(), 60) == 1
    finally:
        await pool.stop(timeout=10)


def test_the_parent_refuses_to_run_without_its_socket(settings_file: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "ivr.cli", "worker-pool", "--settings", str(settings_file),
                          "--fd", "999"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and "worker_pool.no_socket" in out.stderr, out.stderr
