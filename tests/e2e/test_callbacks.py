"""Callbacks end to end: the real ``ivr run`` hotline (edge, one worker, Redis, API; speech off), a sipp
caller who books a callback and hangs up, a sipp UAS as the customer's phone (it answers the
callback and presses 1: RFC 2833 from a pcap) and a sipp UAS as agent1's phone.

- ``test_a_booked_callback_dials_the_customer_then_connects_the_agent``: with no agent logged in,
  the caller books a callback in ``billing`` and hangs up (``callback.queued``). agent1 logs in: the
  worker dials the customer (``callback.dialing``), the customer presses 1 (``callback.connected``),
  agent1's phone rings and is bridged (``call.answered``); audio flows both ways through the bridge
  (RTP counters on the call record); agent1 hangs up, the customer's leg is hung up, the callback is
  ``done`` and agent1 goes through wrap-up to available.
- ``test_a_busy_customer_is_tried_again_then_given_up``: the customer's phone answers 486 Busy; the
  agent is available again after each attempt, the callback is tried once more after
  ``retry_after_s`` and then fails (``callback.failed``), with both INVITEs on the wire.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from ivr.core.events import AgentState
from tests import rtp_pcap
from tests.e2e.conftest import Hotline
from tests.e2e.test_dialplan_calls import key, login, new_media_port, place_call, stream
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SIPP_PCAPS = Path("/usr/share/sip-tester")
AUDIO = SIPP_PCAPS / "g711a.pcap"
BOOKER, BUSY = "+15550401", "+15550402"
# The worker's offer carries telephone-event as payload type 120 (pjmedia's default); an answer must
# keep the offer's type, so the customer's phone answers 120 and replays sipp's key pcap (type 101)
# rewritten to 120.
EVENT_PT = 120


def key_as(pt: int, k: str, workdir: Path) -> Path:
    packets = [dataclasses.replace(p, payload_type=pt) for p in rtp_pcap.read_pcap_rtp(key(k))]
    workdir.mkdir(parents=True, exist_ok=True)
    return rtp_pcap.write_pcap(workdir / f"key-{k}-pt{pt}.pcap", packets)


def plan() -> dict[str, Any]:
    return {"name": "Callback desk", "numbers": ["4001"], "language": "en", "start": "offer", "nodes": {
        "offer": {"type": "callback", "queue": "billing", "timeout_s": 8,
                  "prompt": {"text": "To be called back, press one."},
                  "confirmed": {"text": "We will call you back."}, "next": "bye"},
        "bye": {"type": "hangup", "prompt": {"text": "Goodbye."}}}}


class Desk:
    def __init__(self, hotline: Hotline, customer_port: int) -> None:
        self.hotline = hotline
        self.customer_port = customer_port


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def desk(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Desk]:
    root = tmp_path_factory.mktemp("callbacks")
    plans_dir = root / "dialplans"
    plans_dir.mkdir()
    (plans_dir / "callback.yaml").write_text(yaml.safe_dump(plan()))
    customer_port = free_udp_tcp_port()
    h = Hotline(root / "hotline", workers=1, wrapup_s=1.0, overrides={
        "dialplans_dir": str(plans_dir), "speech": {"enabled": False},
        "callbacks": {"dial_uri": f"sip:{{number}}@127.0.0.1:{customer_port}", "retries": 1,
                      "retry_after_s": 2, "ring_timeout_s": 10, "confirm_timeout_s": 5}})
    try:
        await h.start()
        yield Desk(h, customer_port)
    finally:
        h.stop()


async def wait_for(hotline: Hotline, what: str, check: Any, timeout: float = 40) -> list[tuple[str, dict[str, Any]]]:
    """The event stream once ``check(events)`` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        events = await stream(hotline)
        if check(events):
            return events
        assert time.monotonic() < deadline, f"{what}\n{[t for t, _ in events]}\n{hotline.log_tail()}"
        await asyncio.sleep(0.2)


async def book(d: Desk, tmp_path: Path, ani: str) -> str:
    """A caller books a callback (presses 1) and the hotline hangs up; returns the callback id."""
    await place_call(d.hotline, tmp_path, ani=ani, number="4001", steps=[(key("1"), 1000)])
    events = await wait_for(d.hotline, "callback.queued", lambda ev: any(
        t == "callback.queued" and d_.get("queue") == "billing" and d_["callback_id"] in {
            x["callback_id"] for tt, x in ev if tt == "callback.requested"} for t, d_ in ev))
    requested = [d_ for t, d_ in events if t == "callback.requested"]
    started = {d_["call_id"]: d_["ani"] for t, d_ in events if t == "call.started"}
    [cb] = [r["callback_id"] for r in requested if started.get(r["call_id"]) == ani]
    return str(cb)


async def logout(hotline: Hotline) -> None:
    redis = hotline.redis()
    try:
        store = hotline.store(redis)
        deadline = time.monotonic() + 15
        while (agent := await store.get_agent("agent1")) is not None and agent["state"] in ("wrapup", "reserved"):
            assert time.monotonic() < deadline, agent
            await asyncio.sleep(0.1)
        await store.set_agent_state("agent1", AgentState.OFFLINE)
    finally:
        await redis.aclose()


async def test_a_booked_callback_dials_the_customer_then_connects_the_agent(desk: Desk, tmp_path: Path) -> None:
    h = desk.hotline
    cb_id = await book(desk, tmp_path, BOOKER)
    customer_sf = render_scenario(
        "customer_phone.xml", tmp_path / "customer", keep="remote-hangs-up", drop="customer-hangs-up",
        ring_ms=300, talk_ms=30000, event_pt=EVENT_PT,
        actions=(f'  <pause milliseconds="1500"/>\n'
                 f'  <nop><action><exec play_pcap_audio="{key_as(EVENT_PT, "1", tmp_path)}"/></action></nop>\n'
                 f'  <pause milliseconds="1000"/>\n'
                 f'  <nop><action><exec play_pcap_audio="{AUDIO}"/></action></nop>\n'))
    phone_sf = render_scenario("agent_phone.xml", tmp_path / "agent", keep="agent-hangs-up", drop="remote-hangs-up",
                               ring_ms=300, talk_ms=5000)
    customer = SippServer(customer_sf, workdir=tmp_path / "customer", tag="customer", port=desk.customer_port,
                          extra=["-m", "1", "-mp", str(new_media_port())])
    phone = SippServer(phone_sf, workdir=tmp_path / "agent", tag="agent", port=h.agent_sip_port,
                       extra=["-m", "1", "-mp", str(new_media_port())])
    async with customer, phone:
        await login(h, "agent1")
        events = await wait_for(h, "the callback did not end", lambda ev: any(
            t == "call.ended" and d_["call_id"] == cb_id for t, d_ in ev))
        assert customer.received("INVITE") == 1 and phone.received("INVITE") == 1
        assert f"a=rtpmap:{EVENT_PT} telephone-event/8000" in customer.messages()
    mine = [t for t, d_ in events if d_.get("call_id") == cb_id]
    assert mine == ["callback.queued", "call.offered", "callback.dialing", "callback.connected", "call.answered",
                    "call.agent_left", "call.ended"], mine
    [dialing] = [d_ for t, d_ in events if t == "callback.dialing"]
    assert (dialing["attempt"], dialing["agent_id"], dialing["worker"]) == (1, "agent1", "w0"), dialing
    [offered] = [d_ for t, d_ in events if t == "call.offered" and d_["call_id"] == cb_id]
    assert offered["ani"] == BOOKER and offered["hotline"] == "Callback desk"
    redis = h.redis()
    try:
        store = h.store(redis)
        record = await store.get_call(cb_id)
        callback = await store.get_callback(cb_id)
    finally:
        await redis.aclose()
    assert record is not None and callback is not None
    assert (record["kind"], record["outcome"], record["end_reason"], record["agent_id"]) == (
        "callback", "completed", "agent_hangup", "agent1"), record
    assert callback["state"] == "done" and callback["attempts"] == "1", callback
    rtp = json.loads(record["rtp"])
    assert rtp["agent"]["rx_packets"] > 50 and rtp["caller"]["rx_packets"] > 50, rtp
    logs = h.log_path.read_text(errors="replace")
    assert BOOKER.lstrip("+") not in "".join(
        line for line in logs.splitlines() if '"callback.' in line), "no number in callback logs"
    await logout(h)


async def test_a_busy_customer_is_tried_again_then_given_up(desk: Desk, tmp_path: Path) -> None:
    h = desk.hotline
    cb_id = await book(desk, tmp_path, BUSY)
    busy = SippServer(str(Path(__file__).parents[1] / "sipp" / "customer_busy.xml"), workdir=tmp_path / "busy",
                      tag="busy", port=desk.customer_port, extra=["-mp", str(new_media_port())])
    async with busy:
        await login(h, "agent1")
        events = await wait_for(h, "the callback did not fail", lambda ev: any(
            t == "callback.failed" and d_["callback_id"] == cb_id for t, d_ in ev))
        assert busy.received("INVITE") == 2
    mine = [(t, d_.get("reason")) for t, d_ in events if d_.get("call_id") == cb_id and t != "call.offered"]
    assert mine == [("callback.queued", None), ("callback.dialing", None), ("call.offer_failed", "callback_busy"),
                    ("callback.retry", "busy"), ("callback.dialing", None), ("call.offer_failed", "callback_busy"),
                    ("callback.failed", "busy")], mine
    states = [d_["state"] for t, d_ in events if t == "agent.state" and d_["agent_id"] == "agent1"]
    assert states[-4:] == ["reserved", "available", "reserved", "available"], states
    await logout(h)
