"""Call control through the whole system: a sipp caller through the Kamailio edge, sipp phones for
two agents, real workers, the API. Every party sends its own tone; at each step the test takes apart
what reached each party's RTP port (tests/call_audio.py): music on hold reaches the caller while held
and the agent hears nothing, the consulted agent and the first agent hear each other while the caller
hears music, everyone hears everyone in a conference, and after a transfer caller and target talk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.call_audio import AGENT_HZ, CALLER_HZ, TARGET_HZ, Heard, heard, tone_pcap
from tests.e2e.conftest import Hotline
from tests.e2e.test_call_commands import second_api
from tests.e2e.test_walking_skeleton import login, wait_agent_state
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippResult, SippServer, run_sipp
from tests.sniffer import LoopbackSniffer

pytestmark = pytest.mark.e2e

SETTLE_S = 0.4   # after a command's 202: the bridge changes on the next 20 ms frame; RTP in flight
WINDOW_S = 1.2   # audio taken apart per step


@dataclass
class Rig:
    hotline: Hotline
    http: aiohttp.ClientSession
    workdir: Path
    sniffer: LoopbackSniffer
    ports: dict[str, int]  # party -> its RTP port
    phones: dict[str, SippServer]
    pcaps: dict[str, Path]  # party -> the tone it sends

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.hotline.tokens[who]}"}

    async def post(self, who: str, path: str, body: dict[str, Any] | None = None,
                   expect: int = 202) -> dict[str, Any]:
        async with self.http.post(f"{self.hotline.api}{path}", json=body, headers=self.auth(who)) as r:
            text = await r.text()
            assert r.status == expect, f"{path}: {r.status} {text}\n{self.hotline.log_tail(30)}"
            return json.loads(text) if text else {}

    async def get(self, who: str, path: str, expect: int = 200) -> dict[str, Any]:
        async with self.http.get(f"{self.hotline.api}{path}", headers=self.auth(who)) as r:
            text = await r.text()
            assert r.status == expect, f"GET {path}: {r.status} {text[:300]}\n{self.hotline.log_tail(30)}"
            return json.loads(text) if text and r.content_type == "application/json" else {}

    async def delete(self, who: str, path: str, expect: int = 200) -> dict[str, Any]:
        async with self.http.delete(f"{self.hotline.api}{path}", headers=self.auth(who)) as r:
            text = await r.text()
            assert r.status == expect, f"DELETE {path}: {r.status} {text[:300]}\n{self.hotline.log_tail(30)}"
            return json.loads(text) if text else {}

    async def listen(self, *parties: str) -> dict[str, Heard]:
        """What each party hears over the next WINDOW_S, after SETTLE_S."""
        await asyncio.sleep(SETTLE_S)
        t0 = time.time()
        await asyncio.sleep(WINDOW_S)
        t1 = time.time()
        return {p: heard(self.sniffer, self.ports[p], t0, t1) for p in parties}

    async def record(self, call_id: str) -> dict[str, Any]:
        redis = self.hotline.redis()
        try:
            return await self.hotline.store(redis).get_call(call_id) or {}
        finally:
            await redis.aclose()

    async def wait_record(self, call_id: str, what: str, check: Any, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        rec: dict[str, Any] = {}
        while time.monotonic() < deadline:
            rec = await self.record(call_id)
            if check(rec):
                return rec
            await asyncio.sleep(0.1)
        raise AssertionError(f"{what}: the record is {rec}\n{self.hotline.log_tail(40)}")

    async def events(self, call_id: str) -> list[tuple[str, dict[str, Any]]]:
        redis = self.hotline.redis()
        try:
            out = []
            entries: Any = await redis.xrange("ivr:events")
            for _, fields in entries:
                data = json.loads(fields[b"data"])
                if data.get("call_id") == call_id:
                    out.append((fields[b"type"].decode(), data))
            return out
        finally:
            await redis.aclose()


def consult_state(rec: dict[str, Any]) -> str:
    raw = rec.get("consult")
    consult = json.loads(raw) if isinstance(raw, str) else (raw or {})
    return str(consult.get("state", ""))


@contextlib.asynccontextmanager
async def rig(tmp_path: Path, *, agent2_hangs_up_after_ms: int | None = None,
              agent1_hangs_up_after_ms: int | None = None, overrides: dict[str, Any] | None = None,
              phones: tuple[str, ...] = ("agent", "target"), outside: bool = False,
              agent_calls: int = 1) -> AsyncIterator[Rig]:
    """A hotline with agent1 (billing) and agent2 (support), their sipp phones, and a sniffer. With
    ``outside`` the "target" phone is also where numbers +1555077x are dialled (callbacks.dial_uri);
    with a "customer" phone in ``phones`` numbers are dialled there instead (it sends the caller's tone)."""
    port2, port3 = free_udp_tcp_port(), free_udp_tcp_port()
    overrides = dict(overrides or {})
    if outside or "customer" in phones:
        overrides["calls"] = {**overrides.get("calls", {}), "outbound_allow": ["+1555077?"]}
        overrides["callbacks"] = {"dial_uri": f"sip:{{number}}@127.0.0.1:{port3 if 'customer' in phones else port2}"}
    h = Hotline(tmp_path / "hotline", overrides=overrides)
    h.tokens["agent2"] = "agent2-test-token"
    h.tokens["admin1"] = "admin1-test-token"
    users = h.base_config()["users"] + [
        {"id": "agent2", "name": "Bo", "skills": {"support": 3}, "sip_uri": f"sip:agent2@127.0.0.1:{port2}",
         "token": h.tokens["agent2"]},
        {"id": "admin1", "name": "Ari", "role": "admin", "token": h.tokens["admin1"]}]
    h.overrides = {**h.overrides, "users": users}
    media = {p: free_udp_tcp_port() for p in ("caller", "agent", "target", "customer")}
    pcaps = {p: tone_pcap(hz, 60, tmp_path / f"{p}.pcap")
             for p, hz in (("caller", CALLER_HZ), ("agent", AGENT_HZ), ("target", TARGET_HZ),
                           ("customer", CALLER_HZ))}
    servers: dict[str, SippServer] = {}
    for party, port, hang in (("agent", h.agent_sip_port, agent1_hangs_up_after_ms),
                              ("target", port2, agent2_hangs_up_after_ms), ("customer", port3, None)):
        if party in phones:
            servers[party] = phone(tmp_path, party, port=port, media_port=media[party], pcap=pcaps[party],
                                   hang_ms=hang, calls=agent_calls if party == "agent" else 1)
    async with running(h, tmp_path, servers, media, pcaps, max_seconds=170) as r:
        yield r


def phone(root: Path, party: str, *, port: int, media_port: int, pcap: Path, hang_ms: int | None = None,
          calls: int = 1) -> SippServer:
    """A sipp phone that answers ``calls`` calls (after 200 ms of ringing) and sends ``pcap``; with
    ``hang_ms`` it hangs up by itself that long after answering."""
    sf = render_scenario("cc_phone.xml", root / party, keep="agent-hangs-up" if hang_ms else "remote-hangs-up",
                         drop="remote-hangs-up" if hang_ms else "agent-hangs-up", ring_ms=200,
                         talk_ms=hang_ms or 60000, audio_pcap=pcap)
    return SippServer(sf, workdir=root, tag=party, port=port, extra=["-m", str(calls), "-mp", str(media_port)])


@contextlib.asynccontextmanager
async def running(h: Hotline, root: Path, phones: dict[str, SippServer], media: dict[str, int],
                  pcaps: dict[str, Path], *, max_seconds: float) -> AsyncIterator[Rig]:
    """Start the hotline, a sniffer on the parties' media ports and the phones; the rig; stop it all."""
    try:
        await h.start()
        with LoopbackSniffer(ports=set(media.values()), max_seconds=max_seconds) as sniffer:
            async with contextlib.AsyncExitStack() as stack:
                for server in phones.values():
                    await stack.enter_async_context(server)
                async with aiohttp.ClientSession() as http:
                    yield Rig(h, http, root, sniffer, media, phones, pcaps)
    finally:
        h.stop()


async def call_in(r: Rig, *, talk_ms: int = 60000, digit: int = 2, media_port: int | None = None,
                  tag: str = "caller", known: frozenset[str] = frozenset(),
                  dtmf_at_ms: int = 800) -> tuple[asyncio.Task[SippResult], str]:
    """A caller (tone 2300 Hz) dials the hotline, picks billing (or ``digit``), and is connected to
    an agent (a call not in ``known``)."""
    sf = render_scenario("cc_caller.xml", r.workdir / tag, keep="remote-hangs-up", drop="caller-hangs-up",
                         digit=digit, dtmf_at_ms=dtmf_at_ms, talk_ms=talk_ms, audio_pcap=r.pcaps["caller"])
    caller = asyncio.create_task(run_sipp(
        sf, ("127.0.0.1", r.hotline.edge_port), workdir=r.workdir, tag=tag, limit_s=talk_ms / 1000 + 30,
        extra=["-s", "1000", "-mp", str(media_port or r.ports["caller"])]))
    redis = r.hotline.redis()
    try:
        store = r.hotline.store(redis)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert not caller.done(), (await caller).describe()
            for cid in set(await store.active_calls()) - known:
                call = await store.get_call(cid)
                if call and call.get("state") == "connected":
                    return caller, cid
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    raise AssertionError(f"the caller was not connected:\n{r.hotline.log_tail()}")


async def test_hold_mute_consult_swap_conference_and_leave(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await login(r.http, r.hotline, "agent1")
        await login(r.http, r.hotline, "agent2")
        caller, cid = await call_in(r)
        base = f"/api/v1/calls/{cid}"

        talk = await r.listen("caller", "agent")
        assert talk["caller"].only("agent"), f"caller hears {talk['caller']}"
        assert talk["agent"].only("caller"), f"agent hears {talk['agent']}"

        # hold: music for the caller, nothing for the agent; holding again changes nothing
        await r.post("agent1", f"{base}/hold")
        await r.post("agent1", f"{base}/hold")
        held = await r.listen("caller", "agent")
        assert held["caller"].only("moh", at_least=0.5), f"held caller hears {held['caller']}"
        assert held["agent"].silent, f"agent hears {held['agent']} while the caller is held"
        assert (await r.record(cid))["state"] == "held"
        await r.post("agent1", f"{base}/resume")
        back = await r.listen("caller", "agent")
        assert back["caller"].only("agent") and back["agent"].only("caller"), back

        # mute: the caller no longer hears the agent; the agent still hears the caller
        await r.post("agent1", f"{base}/mute")
        muted = await r.listen("caller", "agent")
        assert muted["caller"].silent, f"caller hears {muted['caller']} while the agent is muted"
        assert muted["agent"].only("caller"), muted["agent"]
        await r.post("agent1", f"{base}/unmute")

        # consult agent2: the caller hears music, the two agents hear each other
        await r.post("agent1", f"{base}/consult", {"target": {"type": "agent", "agent_id": "agent2"}})
        await r.wait_record(cid, "consult answered", lambda rec: consult_state(rec) == "talking")
        await wait_agent_state(r.hotline, "agent2", "oncall")
        consult = await r.listen("caller", "agent", "target")
        assert consult["caller"].only("moh", at_least=0.5), f"caller hears {consult['caller']} during the consult"
        assert consult["agent"].only("target"), f"agent hears {consult['agent']} during the consult"
        assert consult["target"].only("agent"), f"target hears {consult['target']} during the consult"

        # swap: the agent is back with the caller, the target hears music; and back again
        await r.post("agent1", f"{base}/consult/swap")
        swapped = await r.listen("caller", "agent", "target")
        assert swapped["caller"].only("agent") and swapped["agent"].only("caller"), swapped
        assert swapped["target"].only("moh", at_least=0.5), f"held target hears {swapped['target']}"
        await r.post("agent1", f"{base}/consult/swap")

        # conference: everyone hears both others
        await r.post("agent1", f"{base}/conference")
        conf = await r.listen("caller", "agent", "target")
        assert conf["caller"].only("agent", "target", at_least=0.1), f"caller hears {conf['caller']}"
        assert conf["agent"].only("caller", "target", at_least=0.1), f"agent hears {conf['agent']}"
        assert conf["target"].only("caller", "agent", at_least=0.1), f"target hears {conf['target']}"
        assert (await r.record(cid))["state"] == "conferenced"

        # agent1 leaves: caller and agent2 go on; agent1's phone gets a BYE and goes to wrap-up
        await r.post("agent1", f"{base}/conference/leave")
        after = await r.listen("caller", "target")
        assert after["caller"].only("target") and after["target"].only("caller"), after
        rec = await r.record(cid)
        assert rec["state"] == "connected" and rec["agent_id"] == "agent2", rec
        # three holds: the hold, the consult, the consult again after the swap back
        assert float(rec["hold_s"]) > 2 * WINDOW_S and int(rec["hold_count"]) == 3, rec
        assert r.phones["agent"].received("BYE") >= 1
        # the first agent may no longer act on the call; agent2 now may; the supervisor ends it
        await r.post("agent1", f"{base}/hold", expect=403)
        await r.post("agent2", f"{base}/hold")
        await r.post("agent2", f"{base}/resume")
        await r.post("super1", f"{base}/dtmf", {"digits": "12#"})
        await r.post("super1", f"/api/v1/calls/{cid}/hangup")
        result = await caller
        assert result.ok, result.describe()
        await wait_agent_state(r.hotline, "agent2", "available", timeout=r.hotline.wrapup_s + 10)
        events = await r.events(cid)
        types = [t for t, _ in events]
        for expected in ("call.held", "call.resumed", "call.muted", "call.unmuted", "call.consult_started",
                         "call.consult_offered", "call.consult_answered", "call.consult_swapped",
                         "call.conferenced", "call.conference_left", "call.ended"):
            assert expected in types, f"{expected} missing from {types}"
        # agent1's second hold changed nothing: one call.held by agent1, one by agent2
        assert [d["by"] for t, d in events if t == "call.held"] == ["agent1", "agent2"], events
        ended = await r.record(cid)
        assert ended["outcome"] == "completed" and ended["end_reason"] == "hangup_by_api", ended
        assert "call.abandoned" not in types


async def test_warm_transfer_completes_to_the_consulted_agent(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await login(r.http, r.hotline, "agent1")
        await login(r.http, r.hotline, "agent2")
        caller, cid = await call_in(r)
        base = f"/api/v1/calls/{cid}"
        await r.post("agent1", f"{base}/consult", {"target": {"type": "queue", "queue": "support"}})
        await r.wait_record(cid, "consult answered", lambda rec: consult_state(rec) == "talking")
        # the complete goes through another API instance (a second host): it reaches the same worker
        api2, api2_url = await second_api(r.hotline, tmp_path)
        try:
            async with r.http.post(f"{api2_url}{base}/consult/complete", headers=r.auth("agent1")) as resp:
                assert resp.status == 202, await resp.text()
        finally:
            api2.terminate()
            api2.wait(10)
        joined = await r.listen("caller", "target")
        assert joined["caller"].only("target") and joined["target"].only("caller"), joined
        rec = await r.record(cid)
        assert rec["agent_id"] == "agent2" and rec["state"] == "connected", rec
        transfers = json.loads(rec["transfers"])
        assert transfers[-1]["mode"] == "consult" and transfers[-1]["from_agent"] == "agent1", transfers
        # the first agent disposes of its part of the call it handed on; agent2 too
        for who in ("agent1", "agent2"):
            async with r.http.post(f"{r.hotline.api}{base}/disposition", headers=r.auth(who),
                                   json={"disposition": "resolved", "notes": f"by {who}"}) as resp:
                assert resp.status == 200, await resp.text()
        await wait_agent_state(r.hotline, "agent1", "available", timeout=r.hotline.wrapup_s + 10)
        await r.post("super1", f"{base}/hangup")
        assert (await caller).ok
        events = await r.events(cid)
        types = [t for t, _ in events]
        assert "call.consult_completed" in types and "call.transferred" in types, types
        # each agent's part is kept, and each disposition event goes to its own agent's desktop
        assert [(d["by"], d["agent_id"]) for t, d in events if t == "call.disposition"] == [
            ("agent1", "agent1"), ("agent2", "agent2")]
        parts = json.loads((await r.record(cid))["dispositions"])
        assert {a: p["notes"] for a, p in parts.items()} == {"agent1": "by agent1", "agent2": "by agent2"}


async def test_a_consult_target_that_does_not_answer_leaves_the_caller_with_the_agent(tmp_path: Path) -> None:
    overrides = {"calls": {"consult_ring_s": 2}}
    async with rig(tmp_path, overrides=overrides, phones=("agent",)) as r:  # agent2's phone never answers
        await login(r.http, r.hotline, "agent1")
        await login(r.http, r.hotline, "agent2")
        caller, cid = await call_in(r)
        base = f"/api/v1/calls/{cid}"
        await r.post("agent1", f"{base}/consult", {"target": {"type": "agent", "agent_id": "agent2"}})
        rec = await r.wait_record(cid, "consult failed", lambda rec: rec.get("state") == "connected", timeout=15)
        assert "consult" not in rec
        back = await r.listen("caller", "agent")
        assert back["caller"].only("agent") and back["agent"].only("caller"), back
        try:
            await wait_agent_state(r.hotline, "agent2", "available")
        except AssertionError as exc:
            lines = [x for x in r.hotline.log_tail(400).splitlines() if "consult" in x or "agent.state" in x
                     or "command" in x]
            raise AssertionError("\n".join(lines)) from exc
        failed = [d for t, d in await r.events(cid) if t == "call.consult_failed"]
        assert failed and failed[0]["reason"] in ("no_answer", "rejected"), failed
        await r.post("agent1", f"{base}/hangup")
        assert (await caller).ok


async def test_the_agent_hanging_up_mid_consult_hands_the_caller_to_the_target(tmp_path: Path) -> None:
    # agent1's phone hangs up by itself 9 s after answering: by then the consult to agent2 is up
    async with rig(tmp_path, agent1_hangs_up_after_ms=9000) as r:
        await login(r.http, r.hotline, "agent1")
        await login(r.http, r.hotline, "agent2")
        caller, cid = await call_in(r)
        await r.post("agent1", f"/api/v1/calls/{cid}/consult", {"target": {"type": "agent", "agent_id": "agent2"}})
        await r.wait_record(cid, "consult answered", lambda rec: consult_state(rec) == "talking")
        rec = await r.wait_record(cid, "agent2 took over", lambda rec: rec.get("agent_id") == "agent2", timeout=20)
        assert rec["state"] == "connected", rec
        joined = await r.listen("caller", "target")
        assert joined["caller"].only("target") and joined["target"].only("caller"), joined
        await r.post("agent2", f"/api/v1/calls/{cid}/hangup")
        assert (await caller).ok


async def test_blind_transfer_to_a_queue_keeps_the_journey_and_names_the_sender(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await login(r.http, r.hotline, "agent1")
        caller, cid = await call_in(r)
        before = await r.record(cid)
        await r.post("agent1", f"/api/v1/calls/{cid}/transfer", {"target": {"type": "queue", "queue": "support"}})
        await r.wait_record(cid, "queued in support", lambda rec: rec.get("state") == "queued"
                            and rec.get("queue") == "support")
        held = await r.listen("caller")
        assert held["caller"].only("moh", at_least=0.5), f"a transferred caller hears {held['caller']}"
        await wait_agent_state(r.hotline, "agent1", "available", timeout=r.hotline.wrapup_s + 10)
        # agent2 (support) logs in: the transferred caller waiting there is offered to it at once
        async with r.http.post(f"{r.hotline.api}/api/v1/agents/agent2/state", json={"state": "available"},
                               headers=r.auth("agent2")) as resp:
            assert resp.status == 200 and (await resp.json())["state"] in ("available", "reserved")
        rec = await r.wait_record(cid, "connected to agent2", lambda rec: rec.get("agent_id") == "agent2"
                                  and rec.get("state") == "connected")
        assert rec["journey"] == before["journey"] or rec["journey"].get("steps") == before["journey"].get("steps")
        offered = [d for t, d in await r.events(cid) if t == "call.offered"]
        assert offered[-1]["agent_id"] == "agent2" and offered[-1]["transferred_from"] == "agent1", offered
        joined = await r.listen("caller", "target")
        assert joined["caller"].only("target") and joined["target"].only("caller"), joined
        await r.post("super1", f"/api/v1/calls/{cid}/hangup")
        assert (await caller).ok
        types = [t for t, _ in await r.events(cid)]
        assert "call.transferred" in types and "call.abandoned" not in types, types


async def test_refusals_keep_the_call_as_it_was(tmp_path: Path) -> None:
    """Bad requests get stable codes and change nothing: a number not allowed, an unknown queue, an
    agent who is not available, a consult with no leg free (a worker full of callers), commands in
    the wrong state."""
    overrides = {"workers": {"count": 1}}
    async with rig(tmp_path, overrides=overrides, phones=("agent",)) as r:
        await login(r.http, r.hotline, "agent1")
        caller, cid = await call_in(r)
        base = f"/api/v1/calls/{cid}"
        err = await r.post("agent1", f"{base}/transfer", {"target": {"type": "number", "number": "+15550999"}},
                           expect=403)
        assert err["error"]["code"] == "number.not_allowed"
        err = await r.post("agent1", f"{base}/consult", {"target": {"type": "queue", "queue": "nosuch"}}, expect=404)
        assert err["error"]["code"] == "queue.not_found"
        err = await r.post("agent1", f"{base}/consult", {"target": {"type": "agent", "agent_id": "agent2"}},
                           expect=409)
        assert err["error"]["code"] == "agent.not_available"  # agent2 is not logged in
        err = await r.post("agent1", f"{base}/consult/complete", expect=409)
        assert err["error"]["code"] == "call.wrong_state"
        err = await r.post("agent1", f"{base}/dtmf", {"digits": "12x"}, expect=400)
        err = await r.post("agent2", f"{base}/hold", expect=403)
        talk = await r.listen("caller", "agent")
        assert talk["caller"].only("agent") and talk["agent"].only("caller"), talk
        assert (await r.record(cid))["state"] == "connected"
        await r.post("agent1", f"{base}/hangup")
        assert (await caller).ok


async def test_consult_an_outside_number_send_it_keys_and_hand_the_caller_over(tmp_path: Path) -> None:
    """A consult to an allowlisted number (an outside IVR): the agent's keys go to it, not to the
    caller; completing the consult leaves caller and number talking; the call ends as transferred."""
    async with rig(tmp_path, outside=True) as r:
        await login(r.http, r.hotline, "agent1")
        caller, cid = await call_in(r)
        base = f"/api/v1/calls/{cid}"
        err = await r.post("agent1", f"{base}/consult", {"target": {"type": "number", "number": "+15550999"}},
                           expect=403)
        assert err["error"]["code"] == "number.not_allowed"
        await r.post("agent1", f"{base}/consult", {"target": {"type": "number", "number": "+15550777"}})
        await r.wait_record(cid, "the number answered", lambda rec: consult_state(rec) == "talking")
        t0 = time.time()
        await r.post("agent1", f"{base}/dtmf", {"digits": "1#"})
        await asyncio.sleep(1.0)
        keys = [p for p in r.sniffer.rtp(dst=r.ports["target"], after=t0) if p.rtp_payload_type not in (0, 8)]
        assert keys, "no RFC 2833 event reached the consulted number"
        assert not [p for p in r.sniffer.rtp(dst=r.ports["caller"], after=t0) if p.rtp_payload_type not in (0, 8)]
        await r.post("agent1", f"{base}/consult/complete")
        joined = await r.listen("caller", "target")
        assert joined["caller"].only("target") and joined["target"].only("caller"), joined
        rec = await r.record(cid)
        assert rec["state"] == "transferring" and not rec.get("agent_id"), rec
        await wait_agent_state(r.hotline, "agent1", "available", timeout=r.hotline.wrapup_s + 10)
        assert "INVITE sip:+15550777@" in r.phones["target"].messages()
        await r.post("super1", f"{base}/hangup")
        assert (await caller).ok
        ended = await r.wait_record(cid, "the call's end recorded", lambda rec: "outcome" in rec)
        assert ended["outcome"] == "transferred", ended


async def test_blind_transfer_to_a_number_that_does_not_answer_returns_the_caller_to_its_queue(
        tmp_path: Path) -> None:
    overrides = {"calls": {"consult_ring_s": 2}}
    # the number never answers; agent1's phone takes the caller a second time
    async with rig(tmp_path, outside=True, overrides=overrides, phones=("agent",), agent_calls=2) as r:
        await login(r.http, r.hotline, "agent1")
        caller, cid = await call_in(r)
        await r.post("agent1", f"/api/v1/calls/{cid}/transfer", {"target": {"type": "number", "number": "+15550777"}})
        await wait_agent_state(r.hotline, "agent1", "available", timeout=r.hotline.wrapup_s + 10)
        # back in billing, where agent1 (available again) takes it: the caller was never dropped
        rec = await r.wait_record(cid, "back with agent1", lambda rec: rec.get("state") == "connected", timeout=30)
        assert rec["agent_id"] == "agent1" and rec["queue"] == "billing", rec
        back = await r.listen("caller", "agent")
        assert back["caller"].only("agent") and back["agent"].only("caller"), back
        await r.post("agent1", f"/api/v1/calls/{cid}/hangup")
        assert (await caller).ok


async def test_a_consult_on_a_worker_with_every_leg_spent_is_refused_and_the_caller_stays(tmp_path: Path) -> None:
    """One worker, two callers each talking to an agent: its 4 legs are spent, so a consult gets
    503 call.no_leg (with Retry-After) before anything changes, and the caller still hears its agent."""
    async with rig(tmp_path, outside=True, overrides={"workers": {"count": 1}}) as r:
        await login(r.http, r.hotline, "agent1")
        await login(r.http, r.hotline, "agent2")
        caller, cid = await call_in(r)
        other, cid2 = await call_in(r, digit=3, media_port=free_udp_tcp_port(), tag="caller2", known=frozenset({cid}))
        rec2 = await r.record(cid2)
        assert rec2["agent_id"] == "agent2" and rec2["worker"] == (await r.record(cid))["worker"], rec2
        async with r.http.post(f"{r.hotline.api}/api/v1/calls/{cid}/consult", headers=r.auth("agent1"),
                               json={"target": {"type": "number", "number": "+15550777"}}) as resp:
            body = await resp.json()
            assert resp.status == 503 and body["error"]["code"] == "call.no_leg", body
            assert resp.headers.get("Retry-After")
        rec = await r.record(cid)
        assert rec["state"] == "connected" and "consult" not in rec and "held_at" not in rec, rec
        talk = await r.listen("caller", "agent")
        assert talk["caller"].only("agent") and talk["agent"].only("caller"), talk
        assert r.phones["target"].received("INVITE") == 1  # its call from caller2 only: nothing was dialled
        for call_id, who in ((cid, "agent1"), (cid2, "agent2")):
            await r.post(who, f"/api/v1/calls/{call_id}/hangup")
        assert (await caller).ok and (await other).ok


async def test_a_click_to_dial_call_is_transferred_to_a_queue_like_an_inbound_one(tmp_path: Path) -> None:
    """agent1 dials a customer (its phone first), then hands the customer to the support queue:
    agent2 takes it, its pop names agent1, customer and agent2 hear each other; the record stays an
    outbound call."""
    async with rig(tmp_path, phones=("agent", "target", "customer")) as r:
        await login(r.http, r.hotline, "agent1")
        await login(r.http, r.hotline, "agent2")
        placed = await r.post("agent1", "/api/v1/calls", {"number": "+15550777", "queue": "billing"})
        cid = str(placed["call_id"])
        await r.wait_record(cid, "the customer answered", lambda rec: rec.get("state") == "connected")
        talk = await r.listen("customer", "agent")
        # the customer's phone sends the caller's tone
        assert talk["customer"].only("agent") and talk["agent"].only("caller"), talk
        await r.post("agent1", f"/api/v1/calls/{cid}/transfer", {"target": {"type": "queue", "queue": "support"}})
        rec = await r.wait_record(cid, "agent2 took it", lambda rec: rec.get("agent_id") == "agent2"
                                  and rec.get("state") == "connected")
        assert rec["direction"] == "outbound" and rec["transferred_from"] == "agent1", rec
        joined = await r.listen("customer", "target")
        assert joined["customer"].only("target") and joined["target"].only("caller"), joined
        offered = [d for t, d in await r.events(cid) if t == "call.offered" and d["agent_id"] == "agent2"]
        assert offered and offered[-1]["transferred_from"] == "agent1", offered
        await r.post("agent2", f"/api/v1/calls/{cid}/hangup")
        ended = await r.wait_record(cid, "ended", lambda rec: rec.get("state") == "ended")
        assert ended["outcome"] == "completed", ended
