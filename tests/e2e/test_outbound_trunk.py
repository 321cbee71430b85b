"""Click-to-dial out through the edge's trunk, end to end: the real ``ivr run`` hotline (edge with
``edge.trunks`` and ``edge.outbound_trunk``, one pjsua2 worker, Redis, API; speech off), agent1's
phone a sipp UAS, and a sipp "carrier" on loopback (tests/sipp/carrier_phone.xml) that is the trunk's
registrar and outbound proxy, challenges the INVITE, verifies the digest and lets its customer
answer, with a loopback capture (tests/sniffer.py) of what went over the wire.

``callbacks.dial_uri`` is left at its default (``sip:{number}@<edge>``), so the worker's INVITE for
the allowlisted number goes to the edge, whose ``route[OUTBOUND]`` sends it to the carrier with the
hotline's caller ID and answers the carrier's 401 with the trunk's credentials. Checked: the carrier
gets the INVITE from the edge (never from the worker), first without and then with credentials
(user, realm, the dialled number as Request-URI, the hotline's caller ID in From), and answers it;
sound flows both ways between the carrier's customer and agent1's phone through the worker (not
through the edge); the customer's BYE goes through the edge to the worker, which ends agent1's leg;
the record is a completed outbound call; neither the number nor the trunk's password is in the
hotline's log. (tests/service/test_edge_outbound.py tests the route alone.)
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.desktop import AgentDesktop
from tests.e2e.conftest import Hotline
from tests.e2e.test_callbacks import wait_for
from tests.e2e.test_dialplan_calls import new_media_port
from tests.e2e.test_originate import dial, first, record_of, replies, voiced
from tests.e2e.test_walking_skeleton import wait_agent_state
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import LOOPBACK, SippServer
from tests.sniffer import LoopbackSniffer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CALLER_ID = "+8215880000"
NUMBER = "+821055501234"
USER = "hotline-trunk"
PASSWORD = "trunk-s3cret-pw"
REALM = "carrier"  # what carrier_phone.xml challenges with; the edge keeps only the HA1
EVENT_PT = 120  # the worker's telephone-event type: the customer's answer keeps it


@dataclass
class Rig:
    hotline: Hotline
    carrier: SippServer
    carrier_media: int


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    """The carrier first (the edge registers to it at start), then the hotline pointed at it."""
    root = tmp_path_factory.mktemp("outbound-trunk")
    carrier_media = new_media_port()
    carrier_sf = render_scenario("carrier_phone.xml", root / "carrier", keep="customer-hangs-up",
                                 drop="remote-hangs-up", ring_ms=300, talk_ms=4000, event_pt=EVENT_PT)
    carrier = SippServer(carrier_sf, workdir=root / "carrier", tag="carrier", port=free_udp_tcp_port(),
                         extra=["-key", "user", USER, "-key", "pass", PASSWORD, "-mp", str(carrier_media)])
    h = Hotline(root / "hotline", workers=1, wrapup_s=1.0, overrides={
        "calls": {"outbound_allow": ["+8210*"], "caller_id": CALLER_ID},
        "edge": {"trunks": [{"name": "carrier", "host": LOOPBACK, "port": carrier.port, "username": USER,
                             "password": PASSWORD, "realm": REALM}],
                 "outbound_trunk": "carrier"}})
    async with carrier:
        try:
            await h.start()
            yield Rig(h, carrier, carrier_media)
        finally:
            h.stop()


def head(packet_payload: bytes) -> str:
    return packet_payload.split(b"\r\n\r\n", 1)[0].decode(errors="replace")


def header(text: str, *names: str) -> str:
    lines = [ln for ln in text.split("\r\n") if ln.split(":", 1)[0].strip().lower() in names]
    assert len(lines) == 1, (names, text)
    return lines[0]


async def test_click_to_dial_goes_out_through_the_edge_trunk_with_digest_auth(rig: Rig, tmp_path: Path) -> None:
    h, carrier = rig.hotline, rig.carrier
    agent_media = new_media_port()
    phone_sf = render_scenario("agent_phone.xml", tmp_path / "agent", keep="remote-hangs-up", drop="agent-hangs-up",
                               ring_ms=300, talk_ms=30000)
    phone = SippServer(phone_sf, workdir=tmp_path / "agent", tag="agent", port=h.agent_sip_port,
                       extra=["-m", "1", "-mp", str(agent_media)])
    ports = {carrier.port, h.edge_port, h.sip_base, h.agent_sip_port, rig.carrier_media, agent_media}
    desktop = AgentDesktop(h.api, "agent1", h.tokens["agent1"])
    with LoopbackSniffer(ports, max_seconds=45) as sniffer:
        async with aiohttp.ClientSession() as http, phone:
            await desktop.start(http)
            try:
                cid = await dial(h, NUMBER)
                events = await wait_for(h, "the outbound call did not end", lambda ev: any(
                    t == "call.ended" and d_["call_id"] == cid for t, d_ in ev))
                await desktop.wait_for("call.ended")
            finally:
                await desktop.stop()
            assert phone.received("INVITE") == 1 and phone.received("BYE") == 1, phone.messages()[-2000:]

    # the carrier got the call from the edge only: challenged once, then with the trunk's credentials
    to_carrier = sniffer.sip_requests("INVITE", carrier.port)
    assert len(to_carrier) == 2 and {p.src for p in to_carrier} == {h.edge_port}, [(p.src, p.ts) for p in to_carrier]
    challenged, authorised = sorted(to_carrier, key=lambda p: p.ts)
    first_head, second_head = head(challenged.payload), head(authorised.payload)
    for text in (first_head, second_head):
        assert text.startswith(f"INVITE sip:{NUMBER}@{LOOPBACK}:{carrier.port} SIP/2.0\r\n"), text
        assert f"sip:{CALLER_ID}@" in header(text, "from", "f"), text
        assert f"<sip:{CALLER_ID}@" in header(text, "p-asserted-identity"), text  # carriers read it
    assert not re.search(r"^(Proxy-)?Authorization:", first_head, re.M | re.I)
    auth = header(second_head, "authorization")
    assert f'username="{USER}"' in auth and f'realm="{REALM}"' in auth, auth
    assert f'uri="sip:{NUMBER}@{LOOPBACK}:{carrier.port}"' in auth, auth
    assert PASSWORD not in second_head
    # sipp verified the digest: one 401 only, then ringing and the answer
    assert len(replies(sniffer, carrier.port, b"401")) == 1
    answered = first(replies(sniffer, carrier.port, b"200"), "the carrier's 200 OK")
    assert "INVITE" in header(head(answered.payload), "cseq"), head(answered.payload)

    # sound both ways: the customer's recording reaches agent1's phone, agent1's reaches the customer
    bridged = answered.ts + 0.3
    to_customer = sniffer.rtp(dst=rig.carrier_media, after=bridged)
    from_customer = sniffer.rtp(src=rig.carrier_media, after=bridged)
    to_agent = sniffer.rtp(dst=agent_media, after=bridged)
    from_agent = sniffer.rtp(src=agent_media, after=bridged)
    assert min(len(to_customer), len(from_customer), len(to_agent), len(from_agent)) > 50, (
        len(to_customer), len(from_customer), len(to_agent), len(from_agent))
    assert voiced(to_customer) > 20 and voiced(to_agent) > 20, (voiced(to_customer), voiced(to_agent))
    assert all(p.src != h.edge_port and p.dst != h.edge_port for p in to_customer + from_customer)  # no media relay

    # the customer hung up: its BYE went to the edge, which routed it to the worker (answered 200)
    byes_in = sniffer.sip_requests("BYE", h.edge_port)
    byes_out = sniffer.sip_requests("BYE", h.sip_base)
    assert byes_in and {p.src for p in byes_in} == {carrier.port}, "the carrier's BYE did not go to the edge"
    assert byes_out and {p.src for p in byes_out} == {h.edge_port}, "the edge did not route the BYE to the worker"
    bye_head = head(byes_in[0].payload)
    assert re.search(rf"^Route: <sip:127\.0\.0\.1:{h.edge_port};lr", bye_head, re.M | re.I), bye_head
    assert re.search(r"^SIP/2\.0 200 OK", carrier.messages().split("BYE sip:", 1)[-1], re.M), carrier.messages()[-1500:]
    mine = [(t, d_) for t, d_ in events if d_.get("call_id") == cid]
    assert [t for t, _ in mine] == ["call.started", "call.offered", "call.dialing", "call.answered", "call.ended"], mine
    record = await record_of(h, cid)
    assert (record["direction"], record["agent_id"], record["outcome"], record["end_reason"], record["ani"],
            record["dnis"]) == ("outbound", "agent1", "completed", "customer_hangup", NUMBER, CALLER_ID), record
    rtp = json.loads(record["rtp"]) if isinstance(record["rtp"], str) else record["rtp"]
    assert rtp["agent"]["rx_packets"] > 50 and rtp["caller"]["rx_packets"] > 50, rtp
    logs = h.log_path.read_text(errors="replace")
    assert NUMBER.lstrip("+") not in logs, "the dialled number is never logged"
    assert PASSWORD not in logs, "the trunk's password is never logged"
    await wait_agent_state(h, "agent1", "available", timeout=h.wrapup_s + 10)
