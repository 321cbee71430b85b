"""`ivr run` on its embedded defaults (only ports and directories moved with IVR_ variables so tests
can run beside anything else): every role comes up, the banner says where to point a phone and a
browser, and SIGTERM stops everything with exit code 0 and no process left behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError

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
        users = {u["id"]: u["token"] for u in json.loads((var / "secrets" / "users.json").read_text())}
        assert set(users) == {"agent1", "agent2", "super1", "admin"}
        assert all(f" {token} " in banner for token in users.values()), "first start shows the tokens"
        assert "demo-token" not in banner

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{ports['API']}/readyz") as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["workers_alive"] == 2
            async with http.get(f"http://127.0.0.1:{ports['SPEECH']}/healthz") as r:
                assert r.status == 200 and (await r.json())["loaded"] is True
            async with http.get(f"http://127.0.0.1:{ports['API']}/") as r:
                assert r.status == 200 and "Agent desktop" in await r.text()
            async with http.get(f"http://127.0.0.1:{ports['API']}/api/v1/agents",
                                headers={"Authorization": f"Bearer {users['super1']}"}) as r:
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


def wait_banner(proc: subprocess.Popen[bytes], log_path: Path, within_s: float = 90) -> str:
    deadline = time.monotonic() + within_s
    while "Hotline is up." not in log_path.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    return log_path.read_text(errors="replace")


def stop(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


@pytest.mark.timeout(240)
async def test_first_start_generates_secrets_shown_once_and_no_known_credential_works(tmp_path: Path) -> None:
    """No install ships a known credential: the demo tokens are refused, the generated tokens are shown
    on the first start only (later starts say where they are), and the private Redis wants a password
    that is in no command line."""
    var = tmp_path / "var"
    ports = {name: free_udp_tcp_port() for name in ("REDIS", "EDGE", "API")}
    proc, log_path = start_ivr_run(tmp_path, ports, IVR_SPEECH__ENABLED="false")
    try:
        banner = await asyncio.to_thread(wait_banner, proc, log_path)
        secrets_dir = var / "secrets"
        assert secrets_dir.stat().st_mode & 0o777 == 0o700
        for name in ("users.json", "redis.password"):
            assert (secrets_dir / name).stat().st_mode & 0o777 == 0o600, name
        assert (var / "run" / "settings.json").stat().st_mode & 0o777 == 0o600
        users = {u["id"]: u["token"] for u in json.loads((secrets_dir / "users.json").read_text())}
        assert all(token in banner for token in users.values())
        password = (secrets_dir / "redis.password").read_text().strip()
        assert len(password) >= 32 and password not in banner

        api = f"http://127.0.0.1:{ports['API']}"
        async with aiohttp.ClientSession() as http:
            for demo in ("admin-demo-token", "super1-demo-token", "agent1-demo-token"):
                async with http.get(f"{api}/api/v1/agents", headers={"Authorization": f"Bearer {demo}"}) as r:
                    assert r.status == 401, demo
            async with http.get(f"{api}/api/v1/agents", headers={"Authorization": f"Bearer {users['admin']}"}) as r:
                assert r.status == 200

        anonymous = Redis(host="127.0.0.1", port=ports["REDIS"])
        try:
            with pytest.raises(AuthenticationError):
                await anonymous.ping()
        finally:
            await anonymous.aclose()
        client = Redis(host="127.0.0.1", port=ports["REDIS"], password=password)
        try:
            assert await client.ping()
        finally:
            await client.aclose()
        assert not [line for line in leftovers(str(var)) if password in line], "password on a command line"
    finally:
        code = stop(proc)
    assert code == 0, log_path.read_text(errors="replace")[-3000:]

    proc, log_path = start_ivr_run(tmp_path, {name: free_udp_tcp_port() for name in ports}, IVR_SPEECH__ENABLED="false")
    try:
        again = await asyncio.to_thread(wait_banner, proc, log_path)
        assert str(secrets_dir / "users.json") in again
        assert not [token for token in users.values() if token in again], "tokens are shown once"
    finally:
        assert stop(proc) == 0
