"""`ivr run` on its embedded defaults (only ports and directories moved with IVR_ variables so tests
can run beside anything else): every role comes up, the banner says where to point a phone and a
browser, and SIGTERM stops everything with exit code 0 and no process left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import ROOT
from tests.ports import free_port_range, free_udp_tcp_port

pytestmark = pytest.mark.e2e


def leftovers(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True, check=False).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def start_ivr_run(tmp_path: Path, ports: dict[str, int], **extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    """`ivr run` on its defaults, with only ports and directories moved by IVR_ variables; its
    output goes to tmp_path/run.log."""
    env = {
        **os.environ,
        "IVR_VAR_DIR": str(tmp_path / "var"),
        **{f"IVR_{name}__PORT": str(port) for name, port in ports.items()},
        "IVR_WORKERS__SIP_PORT_BASE": str(free_port_range(2)),
        "IVR_WORKERS__RTP_PORT_BASE": str(free_port_range(80)),
        "IVR_PROMPTS__CACHE_DIR": str(tmp_path.parent / "prompt-cache"),
        **extra,
    }
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ivr.cli", "run"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return proc, log_path


@pytest.mark.timeout(300)
async def test_ivr_run_starts_every_role_and_stops_cleanly(tmp_path: Path) -> None:
    var = tmp_path / "var"
    ports = {name: free_udp_tcp_port() for name in ("REDIS", "EDGE", "API", "SPEECH")}
    proc, log_path = start_ivr_run(tmp_path, ports)
    try:
        deadline = time.monotonic() + 240
        while "Hotline is up." not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, log_path.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "no banner after 240 s"
            await asyncio.sleep(0.2)
        banner = log_path.read_text(errors="replace")
        assert f"sip:1000@127.0.0.1:{ports['EDGE']}" in banner
        assert f"http://127.0.0.1:{ports['API']}/" in banner
        assert "agent1-demo-token" in banner  # the embedded demo credentials are shown

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{ports['API']}/readyz") as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["workers_alive"] == 2
            async with http.get(f"http://127.0.0.1:{ports['SPEECH']}/healthz") as r:
                assert r.status == 200 and (await r.json())["loaded"] is True
            async with http.get(f"http://127.0.0.1:{ports['API']}/") as r:
                assert r.status == 200 and "Agent desktop" in await r.text()
            async with http.get(f"http://127.0.0.1:{ports['API']}/api/v1/agents",
                                headers={"Authorization": "Bearer super1-demo-token"}) as r:
                assert r.status == 200
                assert {a["agent_id"] for a in (await r.json())["agents"]} == {"agent1", "agent2"}
        assert list((var / "redis").glob("appendonly*")), "private Redis must run with AOF on"
        assert leftovers(str(var)), "the roles run with this var dir"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            code = None
        os.killpg(proc.pid, signal.SIGKILL) if code is None else None
    assert code == 0, log_path.read_text(errors="replace")[-4000:]
    await asyncio.sleep(0.5)
    assert leftovers(str(var)) == []
    assert "Traceback" not in log_path.read_text(errors="replace")


@pytest.mark.timeout(120)
async def test_killing_the_supervisor_takes_every_role_with_it(tmp_path: Path) -> None:
    """Even a SIGKILLed supervisor leaves nothing behind: Kamailio's forked children included."""
    var = tmp_path / "var"
    ports = {name: free_udp_tcp_port() for name in ("REDIS", "EDGE", "API")}
    proc, log_path = start_ivr_run(tmp_path, ports, IVR_SPEECH__ENABLED="false")
    deadline = time.monotonic() + 90
    while "Hotline is up." not in log_path.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
        await asyncio.sleep(0.2)
    running = leftovers(str(var))
    assert sum("kamailio" in line for line in running) > 2, "Kamailio forks its children"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(50):  # up to 10 s
        if not leftovers(str(var)):
            break
        await asyncio.sleep(0.2)
    assert leftovers(str(var)) == []
