"""Walking skeleton: one real call end to end.

sipp caller -> Kamailio edge -> pjsua2 worker: greeting synthesised from the plan's text, the caller
presses 2 (RFC 2833), the call waits in skill queue `billing` in Redis, agent1 (skill billing) is
chosen, its desktop WebSocket gets the `call.offered` screen-pop before its phone (a sipp UAS) gets
the INVITE, audio is bridged both ways, one side hangs up, both legs end, the record is closed and
the agent goes through wrap-up back to available with the queue empty.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.desktop import AgentDesktop
from tests.e2e.conftest import Hotline
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippServer, run_sipp
from tests.sniffer import LoopbackSniffer

pytestmark = [pytest.mark.e2e, pytest.mark.shared_hotline]
ALAW_SILENCE = {0xD5, 0x55, 0xD4, 0x54}


def voiced(payload: bytes) -> bool:
    """An A-law frame with speech in it, not silence or comfort noise."""
    return sum(b not in ALAW_SILENCE for b in payload) > len(payload) // 2


async def login(http: aiohttp.ClientSession, hotline: Hotline, agent: str, state: str = "available") -> None:
    async with http.post(f"{hotline.api}/api/v1/agents/{agent}/state", json={"state": state},
                         headers={"Authorization": f"Bearer {hotline.tokens[agent]}"}) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["state"] == state


async def wait_agent_state(hotline: Hotline, agent: str, state: str, timeout: float = 15) -> dict[str, Any]:
    redis = hotline.redis()
    try:
        store = hotline.store(redis)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            a = await store.get_agent(agent)
            if a and a["state"] == state:
                return a
            await asyncio.sleep(0.1)
        raise AssertionError(f"{agent} is {a and a['state']}, expected {state}")
    finally:
        await redis.aclose()


@pytest.mark.parametrize("who_hangs_up", ["caller", "agent"])
async def test_call_is_answered_queued_popped_bridged_and_closed(
        hotline: Hotline, tmp_path: Path, who_hangs_up: str) -> None:
    caller_port, caller_media = free_udp_tcp_port(), free_udp_tcp_port()
    agent_media = free_udp_tcp_port()
    caller_sf = render_scenario(
        "caller.xml", tmp_path, keep="caller-hangs-up" if who_hangs_up == "caller" else "remote-hangs-up",
        drop="remote-hangs-up" if who_hangs_up == "caller" else "caller-hangs-up",
        digit=2, dtmf_at_ms=1000, talk_ms=7000 if who_hangs_up == "caller" else 30000)
    agent_sf = render_scenario(
        "agent_phone.xml", tmp_path, keep="agent-hangs-up" if who_hangs_up == "agent" else "remote-hangs-up",
        drop="remote-hangs-up" if who_hangs_up == "agent" else "agent-hangs-up",
        ring_ms=300, talk_ms=4000 if who_hangs_up == "agent" else 30000)
    ports = {hotline.edge_port, hotline.agent_sip_port, caller_port, caller_media, agent_media}
    ports |= set(range(hotline.rtp_base, hotline.rtp_base + hotline.workers * 40))
    ports |= set(range(hotline.sip_base, hotline.sip_base + hotline.workers))
    ports.add(hotline.api_port)  # the pop's WebSocket frame, ordered against the agent's INVITE

    async with aiohttp.ClientSession() as http:
        desktop = AgentDesktop(hotline.api, "agent1", hotline.tokens["agent1"])
        await desktop.start(http)
        await login(http, hotline, "agent1")
        phone = SippServer(agent_sf, workdir=tmp_path, tag="agent", port=hotline.agent_sip_port,
                           extra=["-m", "1", "-mp", str(agent_media)])
        with LoopbackSniffer(ports) as sniff:
            async with phone:
                result = await run_sipp(caller_sf, ("127.0.0.1", hotline.edge_port), workdir=tmp_path,
                                        tag="caller", port=caller_port, limit_s=45,
                                        extra=["-s", "1000", "-mp", str(caller_media)])
                assert result.ok, result.describe() + "\n" + hotline.log_tail()
                await desktop.wait_for("call.ended")
                await asyncio.sleep(0.5)
        await desktop.stop()

    # --- the screen-pop: contents, and before the agent's phone rang -----------------------------
    _, pop = await desktop.wait_for("call.offered")
    assert pop["ani"] == "+15550001"
    assert pop["dnis"] == "1000"
    assert pop["hotline"] == "Demo hotline"
    assert pop["queue"] == "billing"
    assert pop["agent_id"] == "agent1"
    assert isinstance(pop["waited_s"], float | int) and 0 <= pop["waited_s"] < 10
    steps = pop["journey"]["steps"]
    assert steps[0] == {**steps[0], "node": "welcome", "type": "menu", "digit": "2", "outcome": "billing"}
    assert steps[-1]["node"] == "billing" and steps[-1]["type"] == "queue"
    assert pop["id"], "every event carries its stream id"
    invites = sniff.sip_requests("INVITE", dst=hotline.agent_sip_port)
    assert invites, "the agent's phone never got an INVITE"
    # On the wire, in the kernel's order: the frame carrying the pop left the API before the worker's
    # INVITE reached the agent's phone (the desktop's own receive time depends on its event loop).
    frames = sniff.tcp_containing(b'"call.offered"', src=hotline.api_port)
    assert frames, "no call.offered frame on the wire (an uncompressed WebSocket is expected)"
    invite_at = next(i for i, p in enumerate(sniff.packets) if p is invites[0])
    assert frames[0][0] < invite_at, (f"pop frame at {frames[0][1].ts:.6f} came after the INVITE at "
                                      f"{invites[0].ts:.6f}")
    order = [e["type"] for _, e in desktop.events if e["type"].startswith("call.")]
    assert order == ["call.offered", "call.answered", "call.ended"]

    # --- RTP flowed both ways through the bridge --------------------------------------------------
    answered_at = next(t for t, e in desktop.events if e["type"] == "call.answered")
    to_agent = [p for p in sniff.rtp(dst=agent_media, after=answered_at) if p.rtp_payload_type == 8]
    to_caller = [p for p in sniff.rtp(dst=caller_media, after=answered_at + 0.3) if p.rtp_payload_type == 8]
    # what each phone sent, as one byte stream (sipp sends 30 ms frames, the bridge re-frames to 20 ms)
    from_caller = b"".join(p.rtp_payload for p in sniff.rtp(src=caller_media) if p.rtp_payload_type == 8)
    from_agent = b"".join(p.rtp_payload for p in sniff.rtp(src=agent_media) if p.rtp_payload_type == 8)
    voiced_to_agent = [p for p in to_agent if voiced(p.rtp_payload)]
    voiced_to_caller = [p for p in to_caller if voiced(p.rtp_payload)]
    assert len(voiced_to_agent) > 50, f"caller->agent: {len(voiced_to_agent)} voiced of {len(to_agent)}"
    assert len(voiced_to_caller) > 50, f"agent->caller: {len(voiced_to_caller)} voiced of {len(to_caller)}"
    # the audio each phone received is the audio the other phone sent (G.711 passes the bridge intact)
    relayed_to_agent = sum(p.rtp_payload in from_caller for p in voiced_to_agent)
    relayed_to_caller = sum(p.rtp_payload in from_agent for p in voiced_to_caller)
    assert relayed_to_agent > 0.5 * len(voiced_to_agent), (relayed_to_agent, len(voiced_to_agent))
    assert relayed_to_caller > 0.5 * len(voiced_to_caller), (relayed_to_caller, len(voiced_to_caller))
    # both legs ended: a BYE went to the side that did not hang up
    other = caller_port if who_hangs_up == "agent" else hotline.agent_sip_port
    assert sniff.sip_requests("BYE", dst=other), f"no BYE reached port {other}"

    # --- final state in Redis ---------------------------------------------------------------------
    agent = await wait_agent_state(hotline, "agent1", "available", timeout=hotline.wrapup_s + 10)
    assert "call_id" not in agent
    redis = hotline.redis()
    try:
        store = hotline.store(redis)
        call = await store.get_call(pop["call_id"])
        assert call is not None
        assert call["state"] == "ended" and call["outcome"] == "completed"
        assert call["agent_id"] == "agent1"
        assert call["end_reason"] == f"{who_hangs_up}_hangup"
        assert int(call["answered_at"]) >= int(call["offered_at"]) >= int(call["queued_at"])
        rtp = json.loads(call["rtp"])
        assert rtp["caller"]["rx_packets"] > 50 and rtp["agent"]["rx_packets"] > 50
        assert await store.active_calls() == set()
        assert await store.waiting("billing") == []
        assert await redis.llen(store.keys.worker_inbox("w0")) == 0
        assert await redis.llen(store.keys.worker_inbox("w1")) == 0
        states = [e.data["state"] for e in await store.read_events("0-0") if e.type == "agent.state"]
        assert states[-3:] == ["oncall", "wrapup", "available"]
    finally:
        await redis.aclose()

    # --- logs: JSON lines, the call id on every line about the call, no secrets ------------------
    records = hotline.log_records()
    # dialplan.* is the engine walking a call; the plan registry logs dialplans.* (about no call)
    call_lines = [r for r in records if str(r.get("event", "")).startswith(("call.", "offer.", "dialplan."))]
    assert call_lines, "no call log lines"
    assert all(r.get("call_id") for r in call_lines), [r for r in call_lines if not r.get("call_id")][:3]
    assert any(r.get("call_id") == pop["call_id"] for r in call_lines)
    text = hotline.log_path.read_text(errors="replace")
    assert all(tok not in text for tok in hotline.tokens.values()), "a token was logged"
