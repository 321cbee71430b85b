"""Click-to-dial end to end: the real ``ivr run`` hotline (edge, one worker, Redis, API; speech off),
``POST /api/v1/calls`` from agent1's desktop, a sipp UAS as agent1's phone and a sipp UAS as the
customer's phone, with a loopback capture (tests/sniffer.py) of what really went over the wire.

- ``test_click_to_dial_rings_the_agent_then_the_customer_with_the_caller_id``: agent1's desktop pops
  the customer (``call.offered``, direction outbound) before its phone rings; the phone gets the
  INVITE and answers before the customer's phone gets one; the customer's INVITE carries the
  hotline's caller ID in From; once the customer answers, audio flows both ways through the bridge
  (the customer hears the agent's recording, the agent the customer's); the customer hangs up, agent1's
  phone gets BYE; the record is a normal outbound call of agent1 (direction, caller ID, RTP counters)
  and the desktop-facing events come in order (pop, dialing, answered, ended).
- ``test_a_busy_customer_ends_the_call_busy_and_frees_the_agent``: the customer's phone answers 486;
  the record ends with outcome busy, agent1's phone is hung up (after a short busy tone) and agent1 is
  available again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.desktop import AgentDesktop
from tests.e2e.conftest import Hotline
from tests.e2e.test_callbacks import wait_for
from tests.e2e.test_dialplan_calls import new_media_port
from tests.e2e.test_walking_skeleton import login, wait_agent_state
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippServer
from tests.sniffer import Datagram, LoopbackSniffer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

AUDIO = Path("/usr/share/sip-tester/g711a.pcap")
CALLER_ID = "+8215880000"
NUMBER, BUSY = "+821055501234", "+821055509999"
EVENT_PT = 120  # the worker's telephone-event type: the customer's answer keeps it


class Desk:
    def __init__(self, hotline: Hotline, customer_port: int) -> None:
        self.hotline = hotline
        self.customer_port = customer_port


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def desk(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Desk]:
    root = tmp_path_factory.mktemp("originate")
    customer_port = free_udp_tcp_port()
    h = Hotline(root / "hotline", workers=1, wrapup_s=1.0, overrides={
        "calls": {"outbound_allow": ["+8210*"], "caller_id": CALLER_ID},
        "callbacks": {"dial_uri": f"sip:{{number}}@127.0.0.1:{customer_port}", "ring_timeout_s": 10}})
    try:
        await h.start()
        yield Desk(h, customer_port)
    finally:
        h.stop()


async def dial(h: Hotline, number: str) -> str:
    async with aiohttp.ClientSession() as http:
        await login(http, h, "agent1")
        auth = {"Authorization": f"Bearer {h.tokens['agent1']}", "Idempotency-Key": f"desk-{number}"}
        async with http.post(f"{h.api}/api/v1/calls", json={"number": number, "queue": "billing"},
                             headers=auth) as r:
            assert r.status == 202, await r.text()
            reply = await r.json()
    assert reply["status"] == "dialing" and reply["agent_id"] == "agent1"
    return str(reply["call_id"])


async def record_of(h: Hotline, cid: str) -> dict[str, Any]:
    redis = h.redis()
    try:
        record = await h.store(redis).get_call(cid)
    finally:
        await redis.aclose()
    assert record is not None
    return record


def first(packets: list[Datagram], what: str) -> Datagram:
    assert packets, f"no {what} on the wire"
    return min(packets, key=lambda p: p.ts)


def replies(sniffer: LoopbackSniffer, src: int, status: bytes) -> list[Datagram]:
    return [p for p in sniffer.packets if p.proto == 17 and p.src == src and p.payload.startswith(b"SIP/2.0 " + status)]


def voiced(packets: list[Datagram]) -> int:
    """RTP packets carrying sound (not one repeated byte: pjmedia's PCMA silence)."""
    return sum(1 for p in packets if len(set(p.rtp_payload)) > 3)


async def test_click_to_dial_rings_the_agent_then_the_customer_with_the_caller_id(desk: Desk, tmp_path: Path) -> None:
    h = desk.hotline
    agent_media, customer_media = new_media_port(), new_media_port()
    customer_sf = render_scenario(
        "customer_phone.xml", tmp_path / "customer", keep="customer-hangs-up", drop="remote-hangs-up",
        ring_ms=300, talk_ms=4000, event_pt=EVENT_PT,
        actions=f'  <nop><action><exec play_pcap_audio="{AUDIO}"/></action></nop>\n')
    phone_sf = render_scenario("agent_phone.xml", tmp_path / "agent", keep="remote-hangs-up", drop="agent-hangs-up",
                               ring_ms=300, talk_ms=30000)
    customer = SippServer(customer_sf, workdir=tmp_path / "customer", tag="customer", port=desk.customer_port,
                          extra=["-m", "1", "-mp", str(customer_media)])
    phone = SippServer(phone_sf, workdir=tmp_path / "agent", tag="agent", port=h.agent_sip_port,
                       extra=["-m", "1", "-mp", str(agent_media)])
    ports = {desk.customer_port, h.agent_sip_port, customer_media, agent_media, h.api_port}
    desktop = AgentDesktop(h.api, "agent1", h.tokens["agent1"])
    with LoopbackSniffer(ports, max_seconds=60) as sniffer:
        async with aiohttp.ClientSession() as http, customer, phone:
            await desktop.start(http)
            try:
                cid = await dial(h, NUMBER)
                events = await wait_for(h, "the outbound call did not end", lambda ev: any(
                    t == "call.ended" and d_["call_id"] == cid for t, d_ in ev))
                await desktop.wait_for("call.ended")
            finally:
                await desktop.stop()
            assert customer.received("INVITE") == 1 and phone.received("INVITE") == 1
    # the agent's phone rang and answered before the customer's phone got anything
    agent_invite = first(sniffer.sip_requests("INVITE", h.agent_sip_port), "INVITE to the agent")
    agent_ok = first(replies(sniffer, h.agent_sip_port, b"200"), "200 OK from the agent")
    customer_invite = first(sniffer.sip_requests("INVITE", desk.customer_port), "INVITE to the customer")
    customer_ok = first(replies(sniffer, desk.customer_port, b"200"), "200 OK from the customer")
    assert agent_invite.ts < agent_ok.ts < customer_invite.ts < customer_ok.ts
    # the desktop popped the customer before the agent's phone rang (pop-before-ring, as for offers)
    seen = desktop.of(cid)
    assert [e["type"] for _, e in seen] == ["call.offered", "call.dialing", "call.answered", "call.ended"], seen
    _, pop = seen[0]
    assert (pop["direction"], pop["ani"], pop["dnis"]) == ("outbound", NUMBER, CALLER_ID), pop
    # on the wire, in the kernel's order (the desktop's own receive time depends on its event loop)
    frames = sniffer.tcp_containing(b'"call.offered"', src=h.api_port)
    assert frames, "no call.offered frame on the wire"
    invite_at = next(i for i, p in enumerate(sniffer.packets) if p is agent_invite)
    assert frames[0][0] < invite_at, f"pop frame at {frames[0][1].ts:.6f}, INVITE at {agent_invite.ts:.6f}"
    head = customer_invite.payload.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    [from_line] = [line for line in head.split("\r\n") if line.lower().startswith(("from:", "f:"))]
    assert f"sip:{CALLER_ID}@" in from_line, head
    assert f"sip:{NUMBER}@" in head.split("\r\n", 1)[0], head
    # after the customer's answer, sound both ways: the agent's recording reaches the customer and the
    # customer's reaches the agent (the ringback stopped at the answer)
    bridged = customer_ok.ts + 0.3
    to_customer = sniffer.rtp(dst=customer_media, after=bridged)
    from_customer = sniffer.rtp(src=customer_media, after=bridged)
    to_agent = sniffer.rtp(dst=agent_media, after=bridged)
    from_agent = sniffer.rtp(src=agent_media, after=bridged)
    assert min(len(to_customer), len(from_customer), len(to_agent), len(from_agent)) > 50, (
        len(to_customer), len(from_customer), len(to_agent), len(from_agent))
    assert voiced(to_customer) > 20 and voiced(to_agent) > 20, (voiced(to_customer), voiced(to_agent))
    # the events the desktop and the floor see, in order, all of agent1
    mine = [(t, d_) for t, d_ in events if d_.get("call_id") == cid]
    assert [t for t, _ in mine] == ["call.started", "call.offered", "call.dialing", "call.answered", "call.ended"], mine
    offered = dict(mine)["call.offered"]
    assert (offered["agent_id"], offered["ani"], offered["dnis"], offered["direction"]) == (
        "agent1", NUMBER, CALLER_ID, "outbound"), offered
    assert dict(mine)["call.ended"]["outcome"] == "completed"
    record = await record_of(h, cid)
    assert (record["direction"], record["agent_id"], record["outcome"], record["end_reason"], record["ani"],
            record["dnis"], record["queue"]) == (
        "outbound", "agent1", "completed", "customer_hangup", NUMBER, CALLER_ID, "billing"), record
    rtp = json.loads(record["rtp"])
    assert rtp["agent"]["rx_packets"] > 50 and rtp["caller"]["rx_packets"] > 50, rtp
    assert phone.received("BYE") == 1  # the customer hung up: the agent's leg was ended
    logs = h.log_path.read_text(errors="replace")
    assert NUMBER.lstrip("+") not in logs, "the customer's number is never logged"
    await wait_agent_state(h, "agent1", "available", timeout=h.wrapup_s + 10)


async def test_a_busy_customer_ends_the_call_busy_and_frees_the_agent(desk: Desk, tmp_path: Path) -> None:
    h = desk.hotline
    agent_media = new_media_port()
    phone_sf = render_scenario("agent_phone.xml", tmp_path / "agent", keep="remote-hangs-up", drop="agent-hangs-up",
                               ring_ms=300, talk_ms=30000)
    phone = SippServer(phone_sf, workdir=tmp_path / "agent", tag="agent", port=h.agent_sip_port,
                       extra=["-m", "1", "-mp", str(agent_media)])
    busy = SippServer(str(Path(__file__).parents[1] / "sipp" / "customer_busy.xml"), workdir=tmp_path / "busy",
                      tag="busy", port=desk.customer_port, extra=["-mp", str(new_media_port())])
    async with busy, phone:
        cid = await dial(h, BUSY)
        events = await wait_for(h, "the outbound call did not end", lambda ev: any(
            t == "call.ended" and d_["call_id"] == cid for t, d_ in ev))
        for _ in range(100):  # the agent's leg is hung up right after the tone
            if phone.received("BYE"):
                break
            await asyncio.sleep(0.1)
        assert busy.received("INVITE") == 1 and phone.received("BYE") == 1, phone.messages()[-2000:]
    mine = [t for t, d_ in events if d_.get("call_id") == cid]
    assert mine == ["call.started", "call.offered", "call.dialing", "call.ended"], mine
    record = await record_of(h, cid)
    assert (record["state"], record["outcome"], record["end_reason"], record["direction"]) == (
        "ended", "busy", "customer_busy", "outbound"), record
    await wait_agent_state(h, "agent1", "available", timeout=10)
