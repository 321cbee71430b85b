"""A command to a live call through the whole system: a sipp caller through the Kamailio edge,
connected to a sipp agent phone by a real worker, ended by ``POST /api/v1/calls/{id}/hangup`` sent
to a second API instance (not the one the agent's desktop uses)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.e2e.conftest import ROOT, Hotline
from tests.e2e.test_walking_skeleton import login, wait_agent_state
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippServer, run_sipp

pytestmark = [pytest.mark.e2e, pytest.mark.shared_hotline]


async def wait_call_state(hotline: Hotline, state: str, timeout: float = 20) -> dict[str, str]:
    redis = hotline.redis()
    try:
        store = hotline.store(redis)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for cid in await store.active_calls():
                call = await store.get_call(cid)
                if call and call.get("state") == state:
                    return call
            await asyncio.sleep(0.1)
        raise AssertionError(f"no call reached {state}:\n{hotline.log_tail()}")
    finally:
        await redis.aclose()


async def second_api(hotline: Hotline, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Another API instance of the same hotline (same Redis), as a second host would run it."""
    port = free_udp_tcp_port()
    cfg = hotline.config()
    cfg["api"] = {**cfg.get("api", {}), "port": port}
    path = workdir / "api2.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with (workdir / "api2.log").open("wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; readiness is polled below
            [sys.executable, "-m", "ivr.cli", "api", "--config", str(path)], cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(150):
            assert proc.poll() is None, (workdir / "api2.log").read_text()
            try:
                async with http.get(f"{url}/readyz") as r:
                    if r.status == 200:
                        return proc, url
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    proc.kill()
    raise AssertionError("the second API did not start:\n" + (workdir / "api2.log").read_text())


async def test_hangup_through_another_api_instance_ends_both_legs(hotline: Hotline, tmp_path: Path) -> None:
    caller_port, caller_media, agent_media = free_udp_tcp_port(), free_udp_tcp_port(), free_udp_tcp_port()
    # both phones wait for the hotline's BYE: neither hangs up by itself
    caller_sf = render_scenario("caller.xml", tmp_path, keep="remote-hangs-up", drop="caller-hangs-up",
                                digit=2, dtmf_at_ms=1000, talk_ms=30000)
    agent_sf = render_scenario("agent_phone.xml", tmp_path, keep="remote-hangs-up", drop="agent-hangs-up",
                               ring_ms=300, talk_ms=30000)
    api2, api2_url = await second_api(hotline, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            await login(http, hotline, "agent1")
            phone = SippServer(agent_sf, workdir=tmp_path, tag="agent", port=hotline.agent_sip_port,
                               extra=["-m", "1", "-mp", str(agent_media)])
            async with phone:
                caller = asyncio.create_task(run_sipp(
                    caller_sf, ("127.0.0.1", hotline.edge_port), workdir=tmp_path, tag="caller", port=caller_port,
                    limit_s=45, extra=["-s", "1000", "-mp", str(caller_media)]))
                call = await wait_call_state(hotline, "connected")
                cid = call["call_id"]
                auth = {"Authorization": f"Bearer {hotline.tokens['agent1']}"}
                started = time.monotonic()
                async with http.post(f"{api2_url}/api/v1/calls/{cid}/hangup", headers=auth) as r:
                    assert r.status == 202, await r.text()
                    assert (await r.json())["status"] == "accepted"
                result = await caller
                assert result.ok, result.describe() + "\n" + hotline.log_tail()
                assert time.monotonic() - started < 20, "the caller was not hung up by the command"
                await asyncio.sleep(0.5)
            # the call is over: a second hangup is a 409 with a stable code, an unknown call a 404
            sup = {"Authorization": f"Bearer {hotline.tokens['super1']}"}
            async with http.post(f"{hotline.api}/api/v1/calls/{cid}/hangup", headers=sup) as r:
                assert r.status == 409 and (await r.json())["error"]["code"] == "call.ended"
            async with http.post(f"{api2_url}/api/v1/calls/no-such-call/hangup", headers=sup) as r:
                assert r.status == 404 and (await r.json())["error"]["code"] == "call.not_found"
    finally:
        api2.terminate()
        api2.wait(10)
    assert phone.received("BYE") >= 1, phone.messages()[-3000:]  # the agent leg was ended by the hotline
    await wait_agent_state(hotline, "agent1", "available", timeout=hotline.wrapup_s + 10)
    redis = hotline.redis()
    try:
        record = await hotline.store(redis).get_call(cid)
        assert record is not None
        assert record["state"] == "ended" and record["end_reason"] == "hangup_by_api"
        assert record["outcome"] == "completed" and record["agent_id"] == "agent1"
    finally:
        await redis.aclose()
    done = [r for r in hotline.log_records() if r.get("event") == "command.done"]
    assert done and done[0]["status"] == "accepted" and done[0]["by"] == "agent1"
