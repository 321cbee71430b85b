"""An agent whose phone registers: the whole hotline (``ivr run``), real Kamailio, real workers, sipp.

desk1 has ``phone: registered`` and a SIP password in the configuration file. Its sipp phone
registers with digest auth through the edge; the supervisor mirrors the registration into Redis;
a sipp caller presses 2 (billing), the worker's offer goes to sip:desk1@<edge>, the edge forks it to
the registered contact, which answers and talks. Then the phone unregisters (Expires: 0): a second
caller waits although desk1 is available, and is offered to agent1 (a static SIP URI) once agent1
logs in.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr.core.sip_auth import sip_ha1
from tests.e2e.conftest import Hotline
from tests.e2e.test_walking_skeleton import login, wait_agent_state
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippServer, run_sipp, scenario

pytestmark = pytest.mark.e2e

DESK_PASSWORD = "desk1-sip-password-e2e"
DESK_TOKEN = "desk1-test-token"
USERS: list[dict[str, Any]] = [
    {"id": "desk1", "name": "Dee (desk phone)", "skills": {"billing": 5}, "phone": "registered",
     "sip_password": DESK_PASSWORD, "token": DESK_TOKEN},
    {"id": "super1", "name": "Sam", "role": "supervisor", "token": "super1-test-token"},
]


async def phone_view(http: aiohttp.ClientSession, hotline: Hotline) -> dict[str, Any]:
    async with http.get(f"{hotline.api}/api/v1/agents/desk1", headers={"Authorization": f"Bearer {DESK_TOKEN}"}) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["phone"]  # type: ignore[no-any-return]


async def wait_phone(http: aiohttp.ClientSession, hotline: Hotline, registered: bool, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = await phone_view(http, hotline)
        if view["registered"] is registered:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"desk1's phone is {view}, expected registered={registered}\n{hotline.log_tail()}")


async def register(hotline: Hotline, tmp_path: Path, port: int, expires: int, tag: str) -> None:
    result = await run_sipp(scenario("phone_register.xml"), ("127.0.0.1", hotline.edge_port), workdir=tmp_path,
                            tag=tag, port=port, calls=1, limit_s=10,
                            extra=["-s", "desk1", "-au", "desk1", "-ap", DESK_PASSWORD,
                                   "-key", "expires", str(expires)])
    assert result.ok, result.describe()


async def calls_of(hotline: Hotline) -> list[dict[str, str]]:
    redis = hotline.redis()
    try:
        store = hotline.store(redis)
        return [c for c in [await store.get_call(cid) for cid in await store.active_calls()] if c]
    finally:
        await redis.aclose()


async def wait_call(hotline: Hotline, state: str, timeout: float = 20) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in await calls_of(hotline):
            if c.get("state") == state:
                return c
        await asyncio.sleep(0.1)
    raise AssertionError(f"no call reached {state}:\n{hotline.log_tail()}")


@pytest.fixture
async def rig(tmp_path: Path) -> Any:
    """The hotline with desk1 (registering phone) and agent1 (static SIP URI on the rig's agent port)."""
    h = Hotline(tmp_path / "hotline")
    h.overrides = {
        "users": [*USERS, {"id": "agent1", "name": "Ada", "skills": {"billing": 4},
                           "sip_uri": f"sip:agent1@127.0.0.1:{h.agent_sip_port}", "token": h.tokens["agent1"]}],
        "edge": {"registrar": {"min_expires_s": 10}},
    }
    h.tokens["desk1"] = DESK_TOKEN
    try:
        await h.start()
        yield h
    finally:
        h.stop()


async def test_a_registered_phone_is_offered_calls_and_an_unregistered_one_is_not(rig: Hotline,
                                                                                   tmp_path: Path) -> None:
    hotline = rig
    desk_port, desk_media, agent_media = free_udp_tcp_port(), free_udp_tcp_port(), free_udp_tcp_port()
    caller_media = free_udp_tcp_port()
    desk_sf = render_scenario("registered_phone.xml", tmp_path / "desk", keep="agent-hangs-up", drop="remote-hangs-up",
                              ring_ms=300, talk_ms=2000)
    agent_sf = render_scenario("agent_phone.xml", tmp_path / "agent1", keep="remote-hangs-up",
                               drop="agent-hangs-up", ring_ms=300, talk_ms=30000)
    caller_waits_sf = render_scenario("caller.xml", tmp_path / "c1", keep="remote-hangs-up",
                                      drop="caller-hangs-up", digit=2, dtmf_at_ms=1000, talk_ms=30000)
    caller_hangs_up_sf = render_scenario("caller.xml", tmp_path / "c2", keep="caller-hangs-up",
                                         drop="remote-hangs-up", digit=2, dtmf_at_ms=1000, talk_ms=14000)
    async with aiohttp.ClientSession() as http:
        assert (await phone_view(http, hotline))["registered"] is False
        # --- 1. the phone registers (digest through the edge) and desk1 logs in ----------------------
        await register(hotline, tmp_path, desk_port, expires=60, tag="register")
        await wait_phone(http, hotline, registered=True)
        assert await phone_view(http, hotline) == {"mode": "registered", "registered": True, "contacts": 1}
        await login(http, hotline, "desk1")

        # --- 2. a caller for billing is offered to desk1: its registered contact rings and answers ----
        desk = SippServer(desk_sf, workdir=tmp_path, tag="desk", port=desk_port,
                          extra=["-m", "1", "-mp", str(desk_media)])
        async with desk:
            first = await run_sipp(caller_waits_sf, ("127.0.0.1", hotline.edge_port), workdir=tmp_path,
                                   tag="caller1", port=free_udp_tcp_port(), limit_s=45,
                                   extra=["-s", "1000", "-mp", str(caller_media)])
            assert first.ok, first.describe() + "\n" + hotline.log_tail()
        assert desk.received("INVITE") == 1
        assert f"INVITE sip:desk1@127.0.0.1:{desk_port}" in desk.messages(), "the edge sent it to the contact"
        await wait_agent_state(hotline, "desk1", "available", timeout=hotline.wrapup_s + 10)

        # --- 3. the phone unregisters: desk1 stays available but is not offered the next caller -------
        await register(hotline, tmp_path, desk_port, expires=0, tag="unregister")
        await wait_phone(http, hotline, registered=False)
        caller = asyncio.create_task(run_sipp(
            caller_hangs_up_sf, ("127.0.0.1", hotline.edge_port), workdir=tmp_path, tag="caller2",
            port=free_udp_tcp_port(), limit_s=45, extra=["-s", "1000", "-mp", str(free_udp_tcp_port())]))
        try:
            waiting = await wait_call(hotline, "queued")
            await asyncio.sleep(2)  # routing had every chance to pick desk1 (longest idle, best skill)
            still = [c for c in await calls_of(hotline) if c["call_id"] == waiting["call_id"]]
            assert still and still[0]["state"] == "queued", still
            assert (await wait_agent_state(hotline, "desk1", "available")).get("call_id") is None

            # --- 4. agent1 (static SIP URI) logs in and gets the call -------------------------------
            phone = SippServer(agent_sf, workdir=tmp_path, tag="agent1", port=hotline.agent_sip_port,
                               extra=["-m", "1", "-mp", str(agent_media)])
            async with phone:
                async with http.post(f"{hotline.api}/api/v1/agents/agent1/state", json={"state": "available"},
                                     headers={"Authorization": f"Bearer {hotline.tokens['agent1']}"}) as r:
                    assert r.status == 200, await r.text()
                    assert (await r.json())["state"] == "reserved", "offered the waiting caller at once"
                connected = await wait_call(hotline, "connected")
                second = await caller
        finally:
            if not caller.done():
                caller.cancel()
        assert second.ok, second.describe() + "\n" + hotline.log_tail()
        assert connected["call_id"] == waiting["call_id"] and connected["agent_id"] == "agent1"
        assert phone.received("INVITE") == 1
        assert desk.received("INVITE") == 1, "desk1's phone was not rung again"

    redis = hotline.redis()
    try:
        store = hotline.store(redis)
        ended = [e.data["call_id"] for e in await store.read_events("0-0") if e.type == "call.ended"]
        records = [r for r in [await store.get_call(c) for c in ended] if r]
        done = {r["agent_id"]: r for r in records}
        assert set(done) == {"desk1", "agent1"}, ended
        assert all(r["outcome"] == "completed" for r in done.values())
    finally:
        await redis.aclose()
    text = hotline.log_path.read_text(errors="replace")
    assert DESK_PASSWORD not in text, "a SIP password was logged"
    assert sip_ha1("desk1", "127.0.0.1", DESK_PASSWORD) not in text, "an HA1 was logged"
