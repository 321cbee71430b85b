"""Dial-plan nodes in real SIP calls: sipp callers pressing RFC 2833 keys, the real ``ivr run`` hotline
(Kamailio edge, one pjsua2 worker, Redis, API; speech off), a real aiohttp CRM, sipp UAS phones.

One hotline serves five small plans (one number each); what each call did is read back from Redis
(the call record and its journey, queues, callbacks, the event stream) and from the wire.

- ``test_crm_lookup_routes_vip_first_and_crm_down_still_queues``: a lookup (prefix ``crm``) finds a
  VIP: the branch sends the call to queue ``vip`` with the CRM's priority 7 (the waiting score says
  so), ``crm.tier``/``crm.name`` are in the journey; at the same time a caller the CRM answers with a
  500 takes ``on_error`` and is queued in ``fallback`` (nothing lost).
- ``test_survey_after_the_agent_hangs_up_first``: agent1 answers and hangs up first; the agent goes
  to wrap-up at once (before the survey is answered), the caller hears the survey and presses 4 (a
  key pressed during the talk does not answer it): csat 4 on the record, ``call.csat`` on the stream.
- ``test_callback_offer_books_a_callback_and_ends_the_call``: 1 books a callback with the caller's
  number in queue ``callbacks``; the confirmation and the goodbye reach the caller (found in the
  RTP sent to it) and the hotline hangs up.
- ``test_transfer_denied_then_bridged_to_an_allowed_desk``: a destination outside
  ``dialplan.transfer_allow`` is refused (``denied``, ``on_failure``), the allowed desk (a sipp UAS) is
  called and bridged: its audio reaches the caller and the caller's reaches it; the desk hangs up
  and the call ends.
- ``test_collected_account_picks_the_branch``: ``1234#`` is collected, masked in the journey, and
  the branch on it routes to queue ``gold``.
- ``test_a_complaint_opens_a_case_linked_to_the_call_and_queues_it_first``: the case node opens an
  urgent case linked to the call; ``test_a_repeat_caller_joins_the_open_case``: a caller whose case is
  still open is recognised at the call's start (``case.*``) and gets no second case.
"""

from __future__ import annotations

import array
import asyncio
import json
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web

from ivr.core.events import AgentState
from ivr.prompts.library import PromptLibrary, PromptSpec
from tests import rtp_pcap
from tests.e2e.conftest import ROOT, Hotline
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippResult, SippServer, run_sipp
from tests.sniffer import LoopbackSniffer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SIPP_PCAPS = Path("/usr/share/sip-tester")
AUDIO = SIPP_PCAPS / "g711a.pcap"  # 7 s of speech, A-law
ALAW_SILENCE = {0xD5, 0x55, 0xD4, 0x54}
CONFIRMED = "We will call you back soon."
VIP, DOWN, SURVEY, CALLBACK, TRANSFER, COLLECT = (
    "+15550301", "+15550302", "+15550303", "+15550304", "+15550306", "+15550307")
ON_HOLD = "+15550308"
COMPLAINT = "+15550309"
REPEAT = "+15550310"


def key(k: str) -> Path:
    return SIPP_PCAPS / f"dtmf_2833_{ {'#': 'pound', '*': 'star'}.get(k, k)}.pcap"


@dataclass
class Crm:
    """The CRM the lookups call: ``GET /customers?phone=...``; one caller gets a 500 (the CRM is down)."""

    customers: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        VIP: {"tier": "vip", "name": "Vera", "priority": 7}})
    asked: list[str] = field(default_factory=list)

    async def customer(self, request: web.Request) -> web.Response:
        phone = request.query.get("phone", "")
        self.asked.append(phone)
        if phone == DOWN:
            return web.json_response({"error": "database unavailable"}, status=500)
        return web.json_response(self.customers.get(phone, {"tier": "standard", "name": "Someone"}))


def plans(crm_port: int, desk: str) -> dict[str, dict[str, Any]]:
    def plan(name: str, number: str, start: str, nodes: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "numbers": [number], "language": "en", "start": start, "nodes": nodes}

    bye = {"type": "hangup", "prompt": {"text": "Goodbye."}}
    return {
        "crm": plan("CRM routing", "3001", "crm", {
            "crm": {"type": "lookup", "url": f"http://127.0.0.1:{crm_port}/customers?phone={{caller}}",
                    "prefix": "crm", "timeout_s": 3, "next": "tier", "on_error": "fallback"},
            "tier": {"type": "branch", "rules": [{"if": {"var": "crm.tier", "equals": "vip"}, "goto": "vip"}],
                     "default": "standard"},
            "vip": {"type": "queue", "queue": "vip", "priority": "{crm.priority}"},
            "standard": {"type": "queue", "queue": "standard"},
            "fallback": {"type": "queue", "queue": "fallback", "priority": 1}}),
        "survey": plan("Survey", "3002", "talk", {
            "talk": {"type": "queue", "queue": "billing", "after": "rate"},
            "rate": {"type": "survey", "prompt": {"text": "Please rate this call from one to five."},
                     "thanks": {"text": "Thank you."}, "timeout_s": 8, "next": "bye"},
            "bye": bye}),
        "callback": plan("Callback", "3003", "offer", {
            "offer": {"type": "callback", "queue": "callbacks", "timeout_s": 8,
                      "prompt": {"text": "To be called back, press one."},
                      "confirmed": {"text": CONFIRMED}, "next": "bye"},
            "bye": bye}),
        "transfer": {**plan("Transfer", "3004", "elsewhere", {
            "elsewhere": {"type": "transfer", "to": "{outside}", "on_failure": "desk"},
            "desk": {"type": "transfer", "to": desk, "prompt": {"text": "Connecting you."}, "ring_s": 10,
                     "on_failure": "bye"},
            "bye": bye}), "variables": {"outside": "sip:someone@192.0.2.1"}},
        "hold": plan("Keys on hold", "3006", "hold", {
            "hold": {"type": "queue", "queue": "nobody", "prompt": {"text": "Press one to be called back."},
                     "keys": [{"digit": "1", "goto": "offer"}]},
            # sipp replays one RFC 2833 event per pcap: the same key twice looks like a retransmission
            "offer": {"type": "callback", "queue": "nobody", "timeout_s": 8, "accept_digit": "2",
                      "prompt": {"text": "To confirm, press two."},
                      "confirmed": {"text": CONFIRMED}, "next": "bye"},
            "bye": bye}),
        "collect": plan("Account", "3005", "account", {
            "account": {"type": "collect", "variable": "account", "min_digits": 4, "max_digits": 8,
                        "terminator": "#", "timeout_s": 8, "listen": {"enabled": False},
                        "prompt": {"text": "Please enter your account number, then the hash key."},
                        "next": "route"},
            "route": {"type": "branch", "rules": [{"if": {"var": "account", "equals": "1234"}, "goto": "gold"}],
                      "default": "general"},
            "gold": {"type": "queue", "queue": "gold"},
            "general": {"type": "queue", "queue": "general"}}),
        "complaint": plan("Complaints", "3007", "kind", {
            "kind": {"type": "menu", "prompt": {"text": "For a service outage press one."}, "timeout_s": 8,
                     "listen": {"enabled": False},
                     "options": [{"digit": "1", "goto": "outage"}], "on_failure": "outage"},
            "outage": {"type": "set", "variables": {"complaint.tier": "urgent", "complaint.reason": "line down"},
                       "next": "open"},
            "open": {"type": "case", "tier": "{complaint.tier}", "reason": "{complaint.reason}", "next": "wait"},
            "wait": {"type": "queue", "queue": "complaints", "tier": "{complaint.tier}",
                     "prompt": {"text": "Your case number is {case_id}."}}}),
    }


@dataclass
class Flow:
    hotline: Hotline
    crm: Crm
    desk_port: int


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def flow(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Flow]:
    root = tmp_path_factory.mktemp("flow")
    crm = Crm()
    app = web.Application()
    app.router.add_get("/customers", crm.customer)
    runner = web.AppRunner(app)
    await runner.setup()
    crm_port, desk_port = free_udp_tcp_port(), free_udp_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", crm_port).start()
    plans_dir = root / "dialplans"
    plans_dir.mkdir()
    for name, plan in plans(crm_port, f"sip:desk@127.0.0.1:{desk_port}").items():
        (plans_dir / f"{name}.yaml").write_text(yaml.safe_dump(plan))
    h = Hotline(root / "hotline", workers=1, wrapup_s=1.0, overrides={
        "dialplans_dir": str(plans_dir), "speech": {"enabled": False},
        "dialplan": {"lookup_hosts": [f"127.0.0.1:{crm_port}"], "transfer_allow": ["sip:desk@127.0.0.1:*"]}})
    try:
        await h.start()
        yield Flow(h, crm, desk_port)
    finally:
        h.stop()
        await runner.cleanup()


def new_media_port() -> int:
    """A port for sipp's ``-mp``: sipp binds it and the three after it (RTP and RTCP, audio and video),
    so two sipps started together must not get neighbouring ports: tests/ports.py hands out blocks of 4."""
    return free_udp_tcp_port()


def actions(*steps: tuple[Path, int]) -> str:
    """sipp actions: play each pcap at its time (ms after the answer)."""
    xml, clock = "", 0
    for path, at_ms in steps:
        assert at_ms >= clock, "actions must be in time order"
        xml += (f'  <pause milliseconds="{at_ms - clock}"/>\n'
                f'  <nop><action><exec play_pcap_audio="{path}"/></action></nop>\n')
        clock = at_ms
    return xml


async def place_call(hotline: Hotline, workdir: Path, *, ani: str, number: str, steps: list[tuple[Path, int]],
                     hangup_ms: int | None = None, wait_ms: int = 30000, port: int | None = None,
                     media_port: int | None = None) -> SippResult:
    """One sipp call: play ``steps``, then hang up at ``hangup_ms`` or (None) wait for the hotline's BYE."""
    xml = actions(*steps)
    if hangup_ms is not None:
        xml += f'  <pause milliseconds="{hangup_ms - (steps[-1][1] if steps else 0)}"/>\n'
    keep, drop = ("caller-hangs-up", "remote-hangs-up") if hangup_ms is not None else (
        "remote-hangs-up", "caller-hangs-up")
    sf = render_scenario("plan_caller.xml", workdir / ani.lstrip("+"), keep=keep, drop=drop, ani=ani,
                         actions=xml, wait_ms=wait_ms)
    result = await run_sipp(sf, ("127.0.0.1", hotline.edge_port), workdir=workdir / ani.lstrip("+"),
                            tag=f"caller{number}", port=port or free_udp_tcp_port(), limit_s=45,
                            extra=["-s", number, "-mp", str(media_port or new_media_port())])
    assert result.ok, result.describe() + "\n" + hotline.log_tail()
    return result


async def call_id_of(hotline: Hotline, ani: str, timeout: float = 15) -> str:
    """The id of the last call from ``ani`` (waits for its ``call.started``)."""
    redis = hotline.redis()
    try:
        store = hotline.store(redis)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = [str(e.data["call_id"]) for e in await store.read_events("0-0")
                       if e.type == "call.started" and e.data.get("ani") == ani]
            if started:
                return started[-1]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no call from {ani}\n{hotline.log_tail()}")
    finally:
        await redis.aclose()


async def ended_record(hotline: Hotline, ani: str, timeout: float = 15) -> dict[str, Any]:
    """The record of the last call from ``ani`` once ``call.ended`` is on the stream."""
    call_id = await call_id_of(hotline, ani)
    redis = hotline.redis()
    try:
        store = hotline.store(redis)
        deadline = time.monotonic() + timeout
        while not any(e.type == "call.ended" and e.data["call_id"] == call_id for e in await store.read_events("0-0")):
            assert time.monotonic() < deadline, f"call {call_id} did not end\n{hotline.log_tail()}"
            await asyncio.sleep(0.1)
        record = await store.get_call(call_id)
        assert record is not None
        return record
    finally:
        await redis.aclose()


async def stream(hotline: Hotline) -> list[tuple[str, dict[str, Any]]]:
    redis = hotline.redis()
    try:
        return [(e.type, e.data) for e in await hotline.store(redis).read_events("0-0")]
    finally:
        await redis.aclose()


def steps_of(record: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(s["node"], s.get("outcome")) for s in record["journey"]["steps"]]


async def test_crm_lookup_routes_vip_first_and_crm_down_still_queues(flow: Flow, tmp_path: Path) -> None:
    h = flow.hotline
    calls = [asyncio.create_task(place_call(h, tmp_path, ani=ani, number="3001", steps=[], hangup_ms=5000))
             for ani in (VIP, DOWN)]
    try:
        # while both wait: the VIP in queue vip at the CRM's priority, the other in the on_error queue
        redis = h.redis()
        try:
            store = h.store(redis)
            vip_id, down_id = await call_id_of(h, VIP), await call_id_of(h, DOWN)
            deadline = time.monotonic() + 15
            while await store.waiting("vip") != [vip_id] or await store.waiting("fallback") != [down_id]:
                assert time.monotonic() < deadline, h.log_tail()
                await asyncio.sleep(0.1)
            vip = await store.get_call(vip_id)
            assert vip is not None and (vip["queue"], vip["priority"], vip["state"]) == ("vip", "7", "queued")
            score = await redis.zscore(store.keys.waiting("vip"), vip_id)
            assert score == (9 - 7) * 10**13 + int(vip["queued_at"]), "priority 7 orders the waiting list"
            assert vip["journey"]["data"]["crm.tier"] == "vip" and vip["journey"]["data"]["crm.name"] == "Vera"
            down = await store.get_call(down_id)
            assert down is not None and (down["queue"], down["priority"]) == ("fallback", "1")
        finally:
            await redis.aclose()
    finally:
        await asyncio.gather(*calls)

    vip = await ended_record(h, VIP)
    assert steps_of(vip) == [("crm", "ok"), ("tier", "vip"), ("vip", "caller_hangup")], vip["journey"]
    assert vip["journey"]["steps"][0]["detail"] == "127.0.0.1"
    assert vip["journey"]["data"]["crm.priority"] == "7"
    down = await ended_record(h, DOWN)
    assert steps_of(down) == [("crm", "error:http_500"), ("fallback", "caller_hangup")], down["journey"]
    assert "crm.tier" not in down["journey"]["data"]
    for record in (vip, down):
        assert (record["outcome"], record["end_reason"]) == ("abandoned", "caller_hangup"), record
    assert sorted(flow.crm.asked) == sorted([VIP, DOWN]), "the caller number reaches the CRM intact"
    queued = {d["call_id"]: d for t, d in await stream(h) if t == "call.queued"}
    assert (queued[vip["call_id"]]["queue"], queued[vip["call_id"]]["priority"]) == ("vip", 7)
    assert (queued[down["call_id"]]["queue"], queued[down["call_id"]]["priority"]) == ("fallback", 1)
    lookups = [r for r in h.log_records() if r.get("event") == "dialplan.lookup"]
    assert {r["outcome"] for r in lookups} == {"ok", "error"}
    assert all(VIP not in json.dumps(r) and DOWN not in json.dumps(r) for r in lookups), "no number in lookup logs"


async def login(hotline: Hotline, agent: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(
            f"{hotline.api}/api/v1/agents/{agent}/state", json={"state": "available"},
            headers={"Authorization": f"Bearer {hotline.tokens[agent]}"}) as r:
        assert r.status == 200, await r.text()


async def test_survey_after_the_agent_hangs_up_first(flow: Flow, tmp_path: Path) -> None:
    h = flow.hotline
    await login(h, "agent1")
    phone_sf = render_scenario("agent_phone.xml", tmp_path, keep="agent-hangs-up", drop="remote-hangs-up",
                               ring_ms=300, talk_ms=4000)
    phone = SippServer(phone_sf, workdir=tmp_path, tag="agent", port=h.agent_sip_port,
                       extra=["-m", "1", "-mp", str(new_media_port())])
    async with phone:
        # the agent answers at ~1 s and hangs up ~4 s later; 2 is pressed while talking (it must not
        # answer the survey), 4 while the survey prompt plays or just after it
        await place_call(h, tmp_path, ani=SURVEY, number="3002",
                         steps=[(key("2"), 2500), (key("4"), 9000)])
    record = await ended_record(h, SURVEY)
    call_id = record["call_id"]
    assert record["csat"] == 4, record
    assert steps_of(record) == [("talk", "agent_hangup"), ("rate", "scored"), ("bye", None)], record["journey"]
    survey = record["journey"]["steps"][1]
    assert (survey["digit"], survey["detail"], survey["attempt"]) == ("4", "4", 1), survey
    assert record["journey"]["data"]["csat"] == "4"
    assert (record["outcome"], record["end_reason"], record["agent_id"]) == ("completed", "ivr_hangup", "agent1")
    assert record["agent_left_at"] and int(record["agent_left_at"]) >= int(record["answered_at"])

    events = await stream(h)
    mine = [(t, d) for t, d in events if d.get("call_id") == call_id or (
        t == "agent.state" and d.get("agent_id") == "agent1")]
    kinds = [t if t != "agent.state" else f"agent:{d['state']}" for t, d in mine]
    # the agent went to wrap-up when its leg ended, before the caller answered the survey
    assert kinds.index("call.agent_left") < kinds.index("call.csat") < kinds.index("call.ended"), kinds
    assert kinds.index("agent:oncall") < kinds.index("agent:wrapup") < kinds.index("call.csat"), kinds
    [csat] = [d for t, d in mine if t == "call.csat"]
    assert (csat["csat"], csat["agent_id"], csat["queue"]) == (4, "agent1", "billing"), csat
    [ended] = [d for t, d in mine if t == "call.ended"]
    assert ended["outcome"] == "completed"
    # wrap-up (1 s) ends on its own; the call's end did not touch the agent again
    redis = h.redis()
    try:
        store = h.store(redis)
        deadline = time.monotonic() + 15
        while (agent := await store.get_agent("agent1")) is None or agent["state"] != "available":
            assert time.monotonic() < deadline, agent
            await asyncio.sleep(0.1)
        assert "call_id" not in agent
        states = [d["state"] for t, d in await stream(h) if t == "agent.state" and d["agent_id"] == "agent1"]
        assert states[-3:] == ["oncall", "wrapup", "available"], states
        await store.set_agent_state("agent1", AgentState.OFFLINE)
    finally:
        await redis.aclose()


def heard_at(stream: bytes, text: str, hotline: Hotline) -> int | None:
    """Where in ``stream`` (A-law sent to a caller) the prompt synthesised from ``text`` starts: the
    first 20 ms boundary from which its first second (or all of it) follows within one quantisation
    step (``rtp_pcap.g711_agreement``; the worker plays the same cached WAV)."""
    library = PromptLibrary(ROOT / "prompts", hotline.workdir.parent / "prompt-cache", 8000, {"en": "en-us"})
    with wave.open(str(library.resolve(PromptSpec(text=text), "en"))) as w:
        reference = rtp_pcap.alaw_encode(array.array("h", w.readframes(w.getnframes())))
    want = min(len(reference), 8000)
    for pos in range(0, len(stream) - want, 160):
        if rtp_pcap.g711_agreement("pcma", stream[pos:pos + want], reference[:want]) == want:
            return pos
    return None


async def test_callback_offer_books_a_callback_and_ends_the_call(flow: Flow, tmp_path: Path) -> None:
    h = flow.hotline
    caller_media = new_media_port()
    with LoopbackSniffer({caller_media}) as sniff:
        await place_call(h, tmp_path, ani=CALLBACK, number="3003", steps=[(key("1"), 1000)],
                         media_port=caller_media)
    record = await ended_record(h, CALLBACK)
    # the caller heard the confirmation, then the goodbye, then the hotline hung up
    heard = b"".join(p.rtp_payload for p in sniff.rtp(dst=caller_media) if p.rtp_payload_type == 8)
    confirmed, goodbye = heard_at(heard, CONFIRMED, h), heard_at(heard, "Goodbye.", h)
    assert confirmed is not None and goodbye is not None and confirmed < goodbye, (confirmed, goodbye)
    redis = h.redis()
    try:
        callbacks = await h.store(redis).list_callbacks("callbacks")
    finally:
        await redis.aclose()
    assert [(c["number"], c["call_id"], c["state"]) for c in callbacks] == [(CALLBACK, record["call_id"], "pending")]
    assert record["callback_id"] == callbacks[0]["id"]
    assert steps_of(record) == [("offer", "accepted"), ("bye", None)], record["journey"]
    assert record["journey"]["steps"][0]["detail"] == callbacks[0]["id"]
    assert (record["outcome"], record["end_reason"]) == ("ivr", "ivr_hangup"), record
    requested = [d for t, d in await stream(h) if t == "callback.requested" and d["call_id"] == record["call_id"]]
    assert [d["queue"] for d in requested] == ["callbacks"]


async def test_a_key_on_hold_leaves_the_queue_and_books_a_callback_in_place(flow: Flow, tmp_path: Path) -> None:
    """Waiting with nobody to take the call, the caller presses 1 (a key of the queue node): the call
    leaves the queue at once, the callback offer plays, 2 books it, keeping the caller's place."""
    h = flow.hotline
    await place_call(h, tmp_path, ani=ON_HOLD, number="3006", steps=[(key("1"), 4000), (key("2"), 6500)])
    record = await ended_record(h, ON_HOLD)
    hold = [s for s in record["journey"]["steps"] if s["node"] == "hold"]
    assert [(s.get("digit"), s.get("outcome")) for s in hold] == [("1", "key:1")], record["journey"]
    assert steps_of(record)[1:] == [("offer", "accepted"), ("bye", None)], record["journey"]
    events = [(t, d) for t, d in await stream(h) if d.get("call_id") == record["call_id"]]
    left = [d for t, d in events if t == "call.left_queue"]
    assert [d["reason"] for d in left] == ["key"], events
    redis = h.redis()
    try:
        store = h.store(redis)
        callbacks = await store.list_callbacks("nobody")
        # the caller hung up: their callback now waits in the queue in their stead, at their place
        assert await store.waiting("nobody") == [c["id"] for c in callbacks]
    finally:
        await redis.aclose()
    assert [(c["number"], c["call_id"]) for c in callbacks] == [(ON_HOLD, record["call_id"])]
    # the place kept is the one the caller had in the queue: priority 0, the time they joined it
    assert int(float(callbacks[0]["place"])) == 9 * 10**13 + int(record["queued_at"]), (callbacks[0], record)


def voiced(payload: bytes) -> bool:
    return sum(b not in ALAW_SILENCE for b in payload) > len(payload) // 2


async def test_transfer_denied_then_bridged_to_an_allowed_desk(flow: Flow, tmp_path: Path) -> None:
    h = flow.hotline
    caller_port, caller_media, desk_media = free_udp_tcp_port(), new_media_port(), new_media_port()
    desk_sf = render_scenario("agent_phone.xml", tmp_path, keep="agent-hangs-up", drop="remote-hangs-up",
                              ring_ms=300, talk_ms=7000)
    desk = SippServer(desk_sf, workdir=tmp_path, tag="desk", port=flow.desk_port,
                      extra=["-m", "1", "-mp", str(desk_media)])
    ports = {flow.desk_port, desk_media, caller_port, caller_media}
    ports |= set(range(h.rtp_base, h.rtp_base + h.workers * 40))
    with LoopbackSniffer(ports) as sniff:
        async with desk:
            # "Connecting you." then the desk answers (~2 s): the caller talks from 2.5 s on
            await place_call(h, tmp_path, ani=TRANSFER, number="3004", steps=[(AUDIO, 2500)],
                             port=caller_port, media_port=caller_media)
        assert desk.received("INVITE") == 1
    record = await ended_record(h, TRANSFER)
    assert steps_of(record) == [("elsewhere", "denied"), ("desk", "completed")], record["journey"]
    assert (record["end_reason"], record["outcome"]) == ("transfer_ended", "ivr"), record
    rtp = json.loads(record["rtp"])
    assert rtp["transfer"]["rx_packets"] > 50 and rtp["caller"]["rx_packets"] > 50, rtp
    # both ways through the bridge: what each side received is what the other side sent
    from_caller = b"".join(p.rtp_payload for p in sniff.rtp(src=caller_media) if p.rtp_payload_type == 8)
    from_desk = b"".join(p.rtp_payload for p in sniff.rtp(src=desk_media) if p.rtp_payload_type == 8)
    to_desk = [p for p in sniff.rtp(dst=desk_media) if p.rtp_payload_type == 8 and voiced(p.rtp_payload)]
    to_caller = [p for p in sniff.rtp(dst=caller_media) if p.rtp_payload_type == 8 and voiced(p.rtp_payload)]
    relayed_to_desk = sum(p.rtp_payload in from_caller for p in to_desk)
    relayed_to_caller = sum(p.rtp_payload in from_desk for p in to_caller)
    assert relayed_to_desk > 50, (relayed_to_desk, len(to_desk))
    assert relayed_to_caller > 50, (relayed_to_caller, len(to_caller))
    # the refused destination is logged by node and template, never dialled, never logged
    denied = [r for r in h.log_records() if r.get("event") == "dialplan.transfer_denied"]
    assert [(r["node"], r["template"]) for r in denied] == [("elsewhere", "{outside}")]
    assert "192.0.2.1" not in h.log_path.read_text(errors="replace")


async def test_collected_account_picks_the_branch(flow: Flow, tmp_path: Path) -> None:
    h = flow.hotline
    keys = [(key(k), 800 + 300 * i) for i, k in enumerate("1234#")]
    await place_call(h, tmp_path, ani=COLLECT, number="3005", steps=keys, hangup_ms=4500)
    record = await ended_record(h, COLLECT)
    assert record["queue"] == "gold", record
    assert steps_of(record) == [("account", "ok"), ("route", "gold"), ("gold", "caller_hangup")], record["journey"]
    assert record["journey"]["steps"][0]["digit"] == "****"  # short entries are masked whole
    assert record["journey"]["steps"][1]["detail"] == "rule 0"
    assert record["journey"]["data"]["account"] == "1234"


async def test_a_complaint_opens_a_case_linked_to_the_call_and_queues_it_first(flow: Flow, tmp_path: Path) -> None:
    """Key 1: the case node opens an urgent case for the caller (due in ``cases.due_s.urgent`` of wall
    time: the plan has no business hours), linked to the call both ways, announced on the stream;
    the caller waits in ``complaints`` at the urgent tier's priority."""
    h = flow.hotline
    await place_call(h, tmp_path, ani=COMPLAINT, number="3007", steps=[(key("1"), 800)], hangup_ms=5000)
    record = await ended_record(h, COMPLAINT)
    case_id = record["case_id"]
    assert steps_of(record)[:3] == [("kind", "outage"), ("outage", None), ("open", "urgent")], record["journey"]
    assert record["journey"]["steps"][2]["detail"] == case_id and record["journey"]["data"]["case_id"] == case_id
    assert record["queue"] == "complaints" and int(record["priority"]) == 9, record
    redis = h.redis()
    try:
        case = await h.store(redis).get_case(case_id)
    finally:
        await redis.aclose()
    assert case is not None
    assert (case["tier"], case["status"], case["customer"], case["reason"], case["hotline"], case["calls"]) == (
        "urgent", "open", COMPLAINT, "line down", "Complaints", [record["call_id"]]), case
    assert case["due_at"] - case["opened_at"] == 3600 * 1000 and case["opened_by"] == "ivr:complaint"
    opened = [d for t, d in await stream(h) if t == "case.opened" and d["case_id"] == case_id]
    assert len(opened) == 1 and opened[0]["call_id"] == record["call_id"] and opened[0]["tier"] == "urgent"


async def test_a_repeat_caller_joins_the_open_case(flow: Flow, tmp_path: Path) -> None:
    """The caller's earlier complaint (opened by the IVR, still open) is found when the call starts:
    ``case.id``/``case.tier`` in the journey data, the call linked to it, and the case node takes it
    (outcome ``existing``) instead of opening a second case."""
    h = flow.hotline
    redis = h.redis()
    try:
        store = h.store(redis)
        earlier = await store.open_case(tier="important", reason="line down", customer=REPEAT,
                                        opened_by="ivr:complaint", due_at_ms=int(time.time() * 1000) + 3_600_000)
        await place_call(h, tmp_path, ani=REPEAT, number="3007", steps=[(key("1"), 800)], hangup_ms=5000)
        record = await ended_record(h, REPEAT)
        case = await store.get_case(earlier["id"])
    finally:
        await redis.aclose()
    assert record["case_id"] == earlier["id"] and steps_of(record)[2] == ("open", "existing"), record["journey"]
    data = record["journey"]["data"]
    assert (data["case.id"], data["case.tier"], data["case.overdue"], data["case_id"]) == (
        earlier["id"], "important", "false", earlier["id"]), data
    assert case is not None and case["calls"] == [record["call_id"]] and case["status"] == "open"
    opened = [d["case_id"] for t, d in await stream(h) if t == "case.opened" and d["customer"] == REPEAT]
    assert opened == [earlier["id"]]  # no second case
