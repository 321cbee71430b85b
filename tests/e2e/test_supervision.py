"""Live supervision through the whole system: a sipp caller through the Kamailio edge, sipp phones for
two agents and for the supervisor, one real worker, the API. Every party sends its own tone (the
supervisor's phone 2500 Hz); at each step the test takes apart what reached each phone's RTP port
(tests/call_audio.py): listen - the supervisor hears caller and agent, nobody hears the supervisor;
whisper - the agent hears the supervisor, the caller does not; barge - both do; stop - the supervisor's
leg ends and caller and agent still talk. A worker with every leg spent refuses with 409
``call.no_leg`` and the call stays as it was; an agent's request is 403 and audited. In headless
Chromium: the wallboard's Listen / Whisper / Barge / Stop buttons, and the agent's desktop showing
that it is coached or barged into (a listen is not shown: supervision.notify_agent_on_listen is off).

One hotline (one worker, so that two calls fill its 4 legs) and one set of phones for the module.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import expect

from tests.browser import chromium
from tests.call_audio import AGENT_HZ, CALLER_HZ, SUPERVISOR_HZ, TARGET_HZ, tone_pcap
from tests.e2e.conftest import Hotline
from tests.e2e.test_call_control import Rig, call_in, phone, running
from tests.e2e.test_pages_call_control import UI_MS, desktop, row, wallboard
from tests.e2e.test_walking_skeleton import login, wait_agent_state
from tests.ports import free_udp_tcp_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SUP_NUMBER = "+15550777"       # dialled through callbacks.dial_uri to the supervisor's desk phone
OWN_PHONE_HANGS_UP_MS = 1500   # super1's own phone (its sip_uri) hangs up by itself this long after answering


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    root = tmp_path_factory.mktemp("supervision")
    agent2_port, desk_port, own_port = free_udp_tcp_port(), free_udp_tcp_port(), free_udp_tcp_port()
    h = Hotline(root / "hotline", workers=1, overrides={
        "calls": {"outbound_allow": ["+1555077?"]},
        "callbacks": {"dial_uri": f"sip:{{number}}@127.0.0.1:{desk_port}"},
        "supervision": {"ring_s": 10}})
    h.tokens["agent2"] = "agent2-test-token"
    base = {u["id"]: u for u in h.base_config()["users"]}
    h.overrides["users"] = [
        base["agent1"],
        {**base["super1"], "sip_uri": f"sip:super1@127.0.0.1:{own_port}"},  # the supervisor's own phone
        {"id": "agent2", "name": "Bo", "skills": {"support": 3}, "sip_uri": f"sip:agent2@127.0.0.1:{agent2_port}",
         "token": h.tokens["agent2"]}]
    media = {p: free_udp_tcp_port() for p in ("caller", "agent", "target", "supervisor", "own")}
    pcaps = {p: tone_pcap(hz, 60, root / f"{p}.pcap") for p, hz in (
        ("caller", CALLER_HZ), ("agent", AGENT_HZ), ("target", TARGET_HZ), ("supervisor", SUPERVISOR_HZ))}
    phones = {party: phone(root, party, port=port, media_port=media[party], pcap=pcaps[tone], hang_ms=hang_ms,
                           calls=calls)
              for party, port, calls, hang_ms, tone in (
                  ("agent", h.agent_sip_port, 3, None, "agent"), ("target", agent2_port, 1, None, "target"),
                  ("supervisor", desk_port, 4, None, "supervisor"),
                  ("own", own_port, 1, OWN_PHONE_HANGS_UP_MS, "supervisor"))}
    async with running(h, root, phones, media, pcaps, max_seconds=150) as r:
        yield r


async def send(r: Rig, method: str, who: str, path: str, body: dict[str, Any] | None = None,
               expect: int = 202) -> dict[str, Any]:
    async with r.http.request(method, f"{r.hotline.api}{path}", json=body, headers=r.auth(who)) as resp:
        text = await resp.text()
        assert resp.status == expect, f"{method} {path}: {resp.status} {text}\n{r.hotline.log_tail(30)}"
        return json.loads(text) if text else {}


def monitor_state(rec: dict[str, Any]) -> str:
    raw = rec.get("monitor")
    return str((json.loads(raw) if isinstance(raw, str) else (raw or {})).get("state", ""))


async def audit(r: Rig, call_id: str) -> list[dict[str, str]]:
    redis = r.hotline.redis()
    try:
        entries: Any = await redis.xrange("ivr:audit")
        rows = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]
        return [row for row in rows if row.get("call_id") == call_id]
    finally:
        await redis.aclose()


async def test_listen_whisper_barge_and_stop_reach_exactly_who_they_should(rig: Rig, tmp_path: Path) -> None:
    r = dataclasses.replace(rig, workdir=tmp_path)
    await login(r.http, r.hotline, "agent1")
    caller, cid = await call_in(r)
    path = f"/api/v1/calls/{cid}/monitor"

    # an agent may not supervise: 403, nothing dialled, and the attempt is in the audit trail
    err = await send(r, "POST", "agent1", path, {"mode": "listen", "target_type": "number", "target": SUP_NUMBER},
                     expect=403)
    assert err["error"]["code"] == "auth.forbidden"
    denied = [a for a in await audit(r, cid) if a["action"] == "monitor.denied"]
    assert denied and denied[0]["by"] == "agent1" and denied[0]["role"] == "agent", denied
    assert r.phones["supervisor"].received("INVITE") == 0

    # listen: the supervisor's desk phone is dialled; it hears caller and agent, nobody hears it
    await send(r, "POST", "super1", path, {"mode": "listen", "target_type": "number", "target": SUP_NUMBER})
    rec = await r.wait_record(cid, "the supervisor answered", lambda rec: monitor_state(rec) == "talking")
    assert rec["monitored"] == "listen" and rec["state"] == "connected", rec
    heard = await r.listen("caller", "agent", "supervisor")
    assert heard["supervisor"].only("caller", "agent", at_least=0.1), f"supervisor hears {heard['supervisor']}"
    assert heard["caller"].only("agent"), f"caller hears {heard['caller']} while the supervisor listens"
    assert heard["agent"].only("caller"), f"agent hears {heard['agent']} while the supervisor listens"

    # whisper: the agent hears the supervisor too, the caller does not
    await send(r, "PATCH", "super1", path, {"mode": "whisper"})
    heard = await r.listen("caller", "agent", "supervisor")
    assert heard["agent"].only("caller", "supervisor", at_least=0.1), f"coached agent hears {heard['agent']}"
    assert heard["caller"].only("agent"), f"caller hears {heard['caller']} during a whisper"
    assert heard["supervisor"].only("caller", "agent", at_least=0.1), heard["supervisor"]

    # barge: all three talk
    await send(r, "PATCH", "super1", path, {"mode": "barge"})
    heard = await r.listen("caller", "agent", "supervisor")
    assert heard["caller"].only("agent", "supervisor", at_least=0.1), f"caller hears {heard['caller']} in a barge"
    assert heard["agent"].only("caller", "supervisor", at_least=0.1), f"agent hears {heard['agent']} in a barge"
    assert heard["supervisor"].only("caller", "agent", at_least=0.1), heard["supervisor"]
    assert (await r.record(cid))["monitored"] == "barge"

    # stop: the supervisor's leg ends (its phone gets the BYE); caller and agent talk on
    await send(r, "DELETE", "super1", path)
    rec = await r.record(cid)
    assert "monitored" not in rec and "monitor" not in rec and rec["state"] == "connected", rec
    heard = await r.listen("caller", "agent")
    assert heard["caller"].only("agent") and heard["agent"].only("caller"), heard
    assert r.phones["supervisor"].received("BYE") >= 1, r.phones["supervisor"].messages()[-2000:]
    err = await send(r, "PATCH", "super1", path, {"mode": "listen"}, expect=409)
    assert err["error"]["code"] == "monitor.none"

    # the supervisor's own phone (target_type agent: super1's sip_uri) hangs up by itself: the
    # supervision ends cleanly, the call goes on
    await send(r, "POST", "super1", path, {"mode": "whisper", "target_type": "agent", "target": "super1"})
    await r.wait_record(cid, "super1's phone answered", lambda rec: monitor_state(rec) == "talking")
    rec = await r.wait_record(cid, "the supervision ended with the supervisor's hang-up",
                              lambda rec: "monitored" not in rec, timeout=OWN_PHONE_HANGS_UP_MS / 1000 + 10)
    assert rec["state"] == "connected", rec
    heard = await r.listen("caller", "agent")
    assert heard["caller"].only("agent") and heard["agent"].only("caller"), heard

    monitor = [d for t, d in await r.events(cid) if t == "call.monitor"]
    assert [(d["mode"], d["notice"], d["reason"]) for d in monitor] == [
        ("listen", "", ""), ("whisper", "coached", ""), ("barge", "barged", ""), ("stopped", "", "requested"),
        ("whisper", "coached", ""), ("stopped", "", "supervisor_hangup")], monitor
    assert {(d["agent_id"], d["supervisor"]) for d in monitor} == {("agent1", "super1")}
    trail = [(a["action"], a["by"], json.loads(a["detail"] or "{}")) for a in await audit(r, cid)]
    assert trail == [
        ("monitor.denied", "agent1", {"method": "POST"}),
        ("monitor.start", "super1", {"mode": "listen", "target_type": "number"}),
        ("monitor.change", "super1", {"mode": "whisper", "from": "listen"}),
        ("monitor.change", "super1", {"mode": "barge", "from": "whisper"}),
        ("monitor.stop", "super1", {"reason": "requested"}),
        ("monitor.start", "super1", {"mode": "whisper", "target_type": "agent"}),
        ("monitor.stop", "super1", {"reason": "supervisor_hangup"})], trail
    assert all(a["target"] == "agent1" for a in await audit(r, cid) if a["action"] != "monitor.denied")

    # the agent leaves (a blind transfer to a queue with nobody in it): the supervisor's leg ends too
    byes = r.phones["supervisor"].received("BYE")
    await send(r, "POST", "super1", path, {"mode": "listen", "target_type": "number", "target": SUP_NUMBER})
    await r.wait_record(cid, "the supervisor answered again", lambda rec: monitor_state(rec) == "talking")
    await send(r, "POST", "agent1", f"/api/v1/calls/{cid}/transfer", {"target": {"type": "queue", "queue": "support"}})
    rec = await r.wait_record(cid, "the supervision ended with the agent", lambda rec: "monitored" not in rec)
    assert rec["state"] in ("transferring", "queued"), rec
    stopped = [d for t, d in await r.events(cid) if t == "call.monitor"][-1]
    assert (stopped["mode"], stopped["reason"]) == ("stopped", "agent_left"), stopped
    await r.wait_record(cid, "the supervisor's phone hung up", lambda _: r.phones["supervisor"].received("BYE") > byes)

    await send(r, "POST", "super1", f"/api/v1/calls/{cid}/hangup")
    assert (await caller).ok


async def test_the_wallboard_supervises_and_the_desktop_shows_coaching_and_barging(rig: Rig, tmp_path: Path) -> None:
    r = dataclasses.replace(rig, workdir=tmp_path)
    await wait_agent_state(r.hotline, "agent1", "available", timeout=r.hotline.wrapup_s + 10)  # wrap-up over
    async with chromium() as browser:
        desk, board = await desktop(browser, r.hotline, "agent1"), await wallboard(browser, r.hotline)
        await board.page.fill("#sup-phone", SUP_NUMBER)
        await board.page.locator("#sup-phone").blur()  # saved on change
        caller, cid = await call_in(r)
        notice, cell = desk.page.locator("#monitor-notice"), row(board.page, "agent1").locator("td.supervise")
        await expect(cell.locator("button[data-monitor=stop]")).to_be_disabled(timeout=UI_MS)

        await cell.locator("button[data-monitor=whisper]").click()
        await r.wait_record(cid, "the supervisor answered", lambda rec: monitor_state(rec) == "talking")
        await expect(notice).to_have_attribute("data-notice", "coached", timeout=UI_MS)
        await expect(notice).to_contain_text("coaching you")
        await expect(cell).to_have_attribute("data-monitor", "whisper", timeout=UI_MS)
        await expect(cell.locator("button[data-monitor=whisper]")).to_have_attribute("aria-pressed", "true")
        await desk.screenshot("desktop-coached.png")
        await board.screenshot("wallboard-supervising.png")

        await cell.locator("button[data-monitor=listen]").click()  # not told to the agent: the notice goes
        await expect(cell).to_have_attribute("data-monitor", "listen", timeout=UI_MS)
        await expect(notice).to_be_hidden(timeout=UI_MS)
        assert (await r.record(cid))["monitored"] == "listen"

        await cell.locator("button[data-monitor=barge]").click()
        await expect(notice).to_have_attribute("data-notice", "barged", timeout=UI_MS)
        await expect(notice).to_contain_text("joined the call")
        heard = await r.listen("caller")
        assert heard["caller"].only("agent", "supervisor", at_least=0.1), f"caller hears {heard['caller']}"

        await cell.locator("button[data-monitor=stop]").click()
        await expect(notice).to_be_hidden(timeout=UI_MS)
        await expect(cell).to_have_attribute("data-monitor", "", timeout=UI_MS)
        assert "monitored" not in await r.record(cid)
        await expect(board.page.locator("#error")).to_be_hidden()

        # the call ends while supervised: the supervisor's leg ends with it, the buttons go
        await cell.locator("button[data-monitor=listen]").click()
        await r.wait_record(cid, "the supervisor answered again", lambda rec: monitor_state(rec) == "talking")
        await expect(cell).to_have_attribute("data-monitor", "listen", timeout=UI_MS)
        await send(r, "POST", "agent1", f"/api/v1/calls/{cid}/hangup")
        assert (await caller).ok
        ended = await r.wait_record(cid, "ended", lambda rec: rec.get("state") == "ended")
        assert "monitored" not in ended, ended
        stopped = [d for t, d in await r.events(cid) if t == "call.monitor"][-1]
        assert (stopped["mode"], stopped["reason"]) == ("stopped", "call_ended"), stopped
        await expect(cell.locator("button")).to_have_count(0, timeout=UI_MS)
        desk.expect_no_errors()
        board.expect_no_errors()


async def test_a_worker_with_every_leg_spent_refuses_with_409_and_the_call_stays(rig: Rig, tmp_path: Path) -> None:
    """One worker, two callers each talking to an agent: its 4 legs are spent, so the supervisor's
    phone cannot be dialled: 503 call.no_leg (as a consult) before anything changes."""
    r = dataclasses.replace(rig, workdir=tmp_path)
    await wait_agent_state(r.hotline, "agent1", "available", timeout=r.hotline.wrapup_s + 10)  # wrap-up over
    await login(r.http, r.hotline, "agent1")
    await login(r.http, r.hotline, "agent2")
    caller, cid = await call_in(r)
    other, cid2 = await call_in(r, digit=3, media_port=free_udp_tcp_port(), tag="caller2", known=frozenset({cid}))
    rec2 = await r.record(cid2)
    assert rec2["agent_id"] == "agent2" and rec2["worker"] == (await r.record(cid))["worker"], rec2
    invites = r.phones["supervisor"].received("INVITE")
    before = await r.record(cid)
    err = await send(r, "POST", "super1", f"/api/v1/calls/{cid}/monitor",
                     {"mode": "barge", "target_type": "number", "target": SUP_NUMBER}, expect=503)
    assert err["error"]["code"] == "call.no_leg", err
    assert await r.record(cid) == before
    assert "monitored" not in before
    talk = await r.listen("caller", "agent")
    assert talk["caller"].only("agent") and talk["agent"].only("caller"), talk
    assert r.phones["supervisor"].received("INVITE") == invites  # nothing was dialled
    assert not [t for t, _ in await r.events(cid) if t == "call.monitor"]
    for call_id, who in ((cid, "agent1"), (cid2, "agent2")):
        await send(r, "POST", who, f"/api/v1/calls/{call_id}/hangup")
    assert (await caller).ok and (await other).ok
