"""The agent desktop and the wallboard in headless Chromium against the whole running hotline, with
real calls: a sipp caller through the edge and the IVR (presses 2 for billing), agent1's phone a sipp
UAS. Screenshots of the pages are kept in test-artifacts/ (or $IVR_TEST_ARTIFACTS).

One hotline and one browser serve the module's tests (each test gets its own browser context)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, expect

from tests.browser import Tab, artifacts_dir, chromium, open_tab
from tests.e2e.conftest import Hotline
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippServer, run_sipp

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]
CALLER = "+15550001"
UI_MS = 10_000
CALL_MS = 30_000


@dataclass
class Floor:
    hotline: Hotline
    browser: Browser


CRM_CONTACT = {"contact": {"id": "C-77", "full_name": "Kim Minji", "tier": "gold"}}


async def crm_contacts(request: web.Request) -> web.Response:
    """A real HTTP server standing in for the CRM: one contact for the test caller's number."""
    items = [CRM_CONTACT] if request.query.get("phone") == CALLER else []
    return web.json_response({"data": {"items": items}})


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def floor(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Floor]:
    crm_app = web.Application()
    crm_app.router.add_get("/api/contacts", crm_contacts)
    crm = web.AppRunner(crm_app)
    await crm.setup()
    crm_port = free_udp_tcp_port()
    await web.TCPSite(crm, "127.0.0.1", crm_port).start()
    crm_url = f"http://127.0.0.1:{crm_port}"
    h = Hotline(tmp_path_factory.mktemp("pages") / "hotline", workers=1, overrides={"crm": {"lookups": [{
        "name": "by_phone", "needs": "ani", "url": crm_url + "/api/contacts?phone={ani}",
        "records": "data.items", "id_field": "contact.id", "name_field": "contact.full_name",
        "fields": {"tier": "contact.tier"}, "link": crm_url + "/contacts/{id}"}]},
        # the wallboard's long-wait threshold is the server's: 2 s for billing, so a real caller trips it,
        # and the hotline's alert evaluator (every second here) raises the long_wait alert for it
        "routing": {"queues": {"billing": {"alerts": {"long_wait": {"threshold": 2, "clear_at": 1}}}}},
        "alerts": {"evaluate_s": 1}})
    try:
        await h.start()
        async with chromium() as browser:
            yield Floor(h, browser)
    finally:
        h.stop()
        await crm.cleanup()


# --- helpers ---------------------------------------------------------------------------------------

async def rest(h: Hotline, method: str, path: str, who: str, body: dict[str, Any] | None = None) -> Any:
    async with aiohttp.ClientSession() as http, http.request(
            method, f"{h.api}{path}", json=body, headers={"Authorization": f"Bearer {h.tokens[who]}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def settle(h: Hotline, state: str = "available", timeout: float = 15) -> None:
    """Wait for the last call's wrap-up to pass, then put agent1 in ``state``."""
    deadline = time.monotonic() + timeout
    while (await rest(h, "GET", "/api/v1/agents/agent1", "agent1"))["state"] not in ("available", "break", "offline"):
        assert time.monotonic() < deadline, "agent1 is still busy with an earlier call"
        await asyncio.sleep(0.2)
    await rest(h, "POST", "/api/v1/agents/agent1/state", "agent1", {"state": state})


async def answered_calls(h: Hotline) -> int:
    """Calls answered in queue billing today (earlier tests of the module count too)."""
    queues = (await rest(h, "GET", "/api/v1/queues", "super1"))["queues"]
    return sum(q["stats"]["period"]["answered"] for q in queues if q["queue"] == "billing")


def js_seconds(value: float) -> str:
    """A duration as pop.js writes it (``toFixed``: 1 decimal under 10 s, halves rounded up)."""
    places = Decimal("0.1") if value < 10 else Decimal("1")
    return f"{Decimal(value).quantize(places, ROUND_HALF_UP)} s"


async def desktop(f: Floor) -> Tab:
    tab = await open_tab(f.browser, f"{f.hotline.api}/")
    await tab.page.fill("#agent", "agent1")
    await tab.page.fill("#token", f.hotline.tokens["agent1"])
    await tab.page.click("#login-form button[type=submit]")
    await expect(tab.page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=UI_MS)
    return tab


def scenarios(tmp_path: Path, *, ring_ms: int = 1200, talk_ms: int = 1500) -> tuple[str, str]:
    """A caller who presses 2 and stays until the hotline hangs up; agent1's phone rings ``ring_ms``,
    answers and hangs up ``talk_ms`` later."""
    caller = render_scenario("caller.xml", tmp_path, keep="remote-hangs-up", drop="caller-hangs-up",
                             digit=2, dtmf_at_ms=800, talk_ms=60000)
    phone = render_scenario("agent_phone.xml", tmp_path, keep="agent-hangs-up", drop="remote-hangs-up",
                            ring_ms=ring_ms, talk_ms=talk_ms)
    return caller, phone


def phone(h: Hotline, sf: str, tmp_path: Path) -> SippServer:
    return SippServer(sf, workdir=tmp_path, tag="agent", port=h.agent_sip_port,
                      extra=["-m", "1", "-mp", str(free_udp_tcp_port())])


def call(h: Hotline, sf: str, tmp_path: Path) -> asyncio.Task[Any]:
    return asyncio.create_task(run_sipp(sf, ("127.0.0.1", h.edge_port), workdir=tmp_path, tag="caller",
                                        limit_s=45, extra=["-s", "1000", "-mp", str(free_udp_tcp_port())]))


def sip_log(messages: str) -> list[tuple[float, str, str]]:
    """sipp's message log as (time, "sent" or "received", first line): each message follows a dashed
    line with the local date and time at which sipp handled it."""
    out = []
    for m in re.finditer(r"-{10,} (\d{4}-\d\d-\d\d)\s+(\d\d:\d\d:\d\d\.\d+)\s*\n[^\n]*(sent|received)[^\n]*\n"
                         r"\s*\n([^\n]+)", messages):
        out.append((datetime.fromisoformat(f"{m.group(1)} {m.group(2)}").timestamp(), m.group(3), m.group(4).strip()))
    return out


# --- the tests -------------------------------------------------------------------------------------

async def test_the_pop_is_on_screen_while_the_phone_rings_and_the_disposition_reaches_the_record(
        floor: Floor, tmp_path: Path) -> None:
    h = floor.hotline
    await settle(h, "offline")
    tab = await desktop(floor)
    page = tab.page
    await page.click("#go-available")
    await expect(page.locator("#state")).to_have_text("available", timeout=UI_MS)

    caller_sf, phone_sf = scenarios(tmp_path)
    async with phone(h, phone_sf, tmp_path) as agent_phone:
        caller = call(h, caller_sf, tmp_path)
        pop = page.locator("#pop")
        await expect(pop).to_be_visible(timeout=CALL_MS)
        shown_at = float(await pop.get_attribute("data-shown-at") or 0) / 1000
        await expect(pop.locator("[data-field=ani]")).to_have_text(CALLER)
        await expect(pop.locator("[data-field=dnis]")).to_have_text("1000")
        await expect(pop.locator("[data-field=hotline]")).to_have_text("Demo hotline")
        await expect(pop.locator("[data-field=queue]")).to_have_text("billing")
        steps = pop.locator(".journey .step")
        await expect(steps.first).to_contain_text("welcome")
        await expect(steps.first.locator("kbd")).to_have_text("2")
        await expect(steps.first.locator(".outcome")).to_have_text("→ billing")
        await expect(steps.last).to_contain_text("billing")
        crm_link = pop.locator(".crm a.crm-link")  # the caller's record from the (real) CRM server
        await expect(crm_link).to_have_text("Kim Minji")
        assert (await crm_link.get_attribute("href") or "").endswith("/contacts/C-77")
        await expect(pop.locator("[data-field='crm.tier']")).to_have_text("gold")
        await tab.screenshot("desktop-pop.png")
        await expect(page.locator("#call-status")).to_have_text("Ended", timeout=CALL_MS)
        await expect(page.locator("#activity li[data-type='call.answered']")).to_have_count(1)
        result = await caller
        assert result.ok, result.describe() + "\n" + h.log_tail()
        log = sip_log(agent_phone.messages())
    rang = [t for t, way, line in log if way == "received" and line.startswith("INVITE ")]
    answered = [t for t, way, line in log if way == "sent" and line.startswith("SIP/2.0 200 OK")]
    assert rang and answered, f"the phone was not called:\n{agent_phone.messages()[-2000:]}"
    # The page acks the pop once the card is painted, and only then does the worker ring the phone:
    # the agent sees who is calling before the phone rings.
    assert shown_at < rang[0] < answered[0], (
        f"pop on screen at {shown_at:.3f}, INVITE at {rang[0]:.3f}, answered at {answered[0]:.3f}")
    acked = [r for r in h.log_records() if r.get("event") == "pop.acked" and r.get("agent_id") == "agent1"]
    assert acked, "the page did not ack the pop"
    (artifacts_dir() / "pop-timing.json").write_text(json.dumps({
        "pop_on_screen_before_invite_ms": round((rang[0] - shown_at) * 1000, 1),
        "pop_on_screen_before_answer_ms": round((answered[0] - shown_at) * 1000, 1)}))

    call_id = await pop.get_attribute("data-call-id")
    assert call_id
    await page.select_option("#disposition", "follow_up")
    await page.fill("#notes", "Wants the invoice again by mail")
    await page.click("#disposition-save")
    await expect(page.locator("#disposition-result")).to_have_text("Saved: follow_up", timeout=UI_MS)
    record = await rest(h, "GET", f"/api/v1/calls/{call_id}", "agent1")
    # the pop's wait, once answered, is the one the record keeps (and the statistics and the report show:
    # tests/service/test_call_list.py), ringing included, not the 0.0 s known at the offer
    await expect(pop.locator("[data-field=waited]")).to_have_text(js_seconds(record["waited_s"]))
    assert record["disposition"] == "follow_up" and record["notes"] == "Wants the invoice again by mail"
    assert record["disposition_by"] == "agent1" and record["ani"] == CALLER
    await expect(page.locator("#activity li[data-type='call.disposition']")).to_have_count(1, timeout=UI_MS)
    await tab.screenshot("desktop-disposition.png")
    tab.expect_no_errors()
    await page.context.close()


async def test_the_wallboard_shows_a_waiting_caller_and_agent_states_live(floor: Floor, tmp_path: Path) -> None:
    h = floor.hotline
    await settle(h, "break")
    answered = await answered_calls(h)
    tab = await open_tab(floor.browser, f"{h.api}/wallboard")
    page = tab.page
    await page.fill("#token", h.tokens["super1"])
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=UI_MS)
    chart = page.locator("#state-chart")
    row = page.locator("#agent-rows tr[data-agent-id=agent1]")
    await expect(row).to_have_attribute("data-state", "break", timeout=UI_MS)
    await expect(chart.locator("g[data-state=break]")).to_have_attribute("data-count", "1")
    await page.evaluate("window.notReloaded = true")

    caller_sf, phone_sf = scenarios(tmp_path, ring_ms=500, talk_ms=4000)
    async with phone(h, phone_sf, tmp_path):
        caller = call(h, caller_sf, tmp_path)
        tile = page.locator(".tile[data-queue=billing]")
        await expect(tile.locator("[data-figure=waiting] .value")).to_have_text("1", timeout=CALL_MS)
        await expect(tile).to_have_class("tile alert", timeout=UI_MS)  # the caller has waited over 2 s
        await expect(page.locator("#alerts")).to_contain_text("billing: a caller has waited")
        # the server's alert: raised by the running hotline's evaluator, on the banner through the floor feed
        raised = page.locator("#alert-banner .alert-item[data-rule=long_wait]")
        await expect(raised).to_be_visible(timeout=CALL_MS)
        await expect(raised.locator(".alert-queue")).to_have_text("billing")
        active = (await rest(h, "GET", "/api/v1/alerts", "super1"))["alerts"]
        assert any(a["rule"] == "long_wait" and a["queue"] == "billing" for a in active), active
        await tab.screenshot("wallboard.png")

        await rest(h, "POST", "/api/v1/agents/agent1/state", "super1", {"state": "available"})
        await expect(chart.locator("g[data-state=break]")).to_have_attribute("data-count", "0", timeout=UI_MS)
        await expect(row).not_to_have_attribute("data-state", "break")
        await expect(row).to_have_attribute("data-state", "oncall", timeout=CALL_MS)
        await expect(chart.locator("g[data-state=oncall]")).to_have_attribute("data-count", "1")
        await expect(row).to_contain_text(CALLER)
        await expect(tile.locator("[data-figure=waiting] .value")).to_have_text("0", timeout=UI_MS)
        await tab.screenshot("wallboard-oncall.png")
        result = await caller
        assert result.ok, result.describe() + "\n" + h.log_tail()
    await expect(row).to_have_attribute("data-state", re.compile("wrapup|available"), timeout=UI_MS)
    await expect(tile.locator("[data-figure=answered] .value")).to_contain_text(f"{answered + 1} /", timeout=UI_MS)
    assert await page.evaluate("window.notReloaded") is True, "the page was reloaded"
    tab.expect_no_errors()
    await page.context.close()


async def test_a_desktop_that_lost_the_network_gets_every_missed_event_once(floor: Floor, tmp_path: Path) -> None:
    h = floor.hotline
    await settle(h, "available")
    tab = await desktop(floor)
    page = tab.page
    await expect(page.locator("#state")).to_have_text("available", timeout=UI_MS)
    redis = h.redis()
    try:
        store = h.store(redis)
        mark = await store.last_event_id()
        await page.context.set_offline(True)
        await expect(page.locator("#conn")).to_have_attribute("data-status", "offline", timeout=UI_MS)

        # the whole call happens while the desktop is away
        caller_sf, phone_sf = scenarios(tmp_path, ring_ms=300, talk_ms=1000)
        async with phone(h, phone_sf, tmp_path):
            result = await call(h, caller_sf, tmp_path)
        assert result.ok, result.describe() + "\n" + h.log_tail()
        deadline = time.monotonic() + 15
        while (await store.get_agent("agent1") or {}).get("state") != "available":
            assert time.monotonic() < deadline, "agent1 did not come back from wrap-up"
            await asyncio.sleep(0.2)
        missed = [e for e in await store.events_after(mark or "0-0", count=1000)
                  if e.data.get("agent_id") == "agent1" and e.type in ("call.offered", "call.answered", "call.ended",
                                                                      "agent.state")]
        [offered] = [e for e in missed if e.type == "call.offered"]
        assert not await page.locator("#pop").is_visible(), "the page got the pop while offline?"

        await page.context.set_offline(False)
        await expect(page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=UI_MS)
        pop = page.locator("#pop")
        await expect(pop).to_have_attribute("data-call-id", offered.data["call_id"], timeout=UI_MS)
        await expect(pop).to_have_attribute("data-status", "ended")
        await expect(pop.locator("[data-field=ani]")).to_have_text(CALLER)
        await expect(page.locator("#state")).to_have_text("available")
        await expect(page.locator("#disposition-save")).to_be_enabled()
        ids = [e.id for e in missed]
        activity = page.locator("#activity li")
        await expect(page.locator(f"#activity li[data-event-id='{ids[-1]}']")).to_have_count(1, timeout=UI_MS)
        shown = [i for i in await activity.evaluate_all("els => els.map(e => e.dataset.eventId)") if i]
        assert len(shown) == len(set(shown)), f"an event was shown twice: {shown}"
        assert sorted(set(shown) & set(ids)) == sorted(ids), f"missed events not shown: {set(ids) - set(shown)}"
        assert [t for t in await activity.evaluate_all("els => els.map(e => e.dataset.type)")
                ].count("call.offered") == 1
        # ... through the replay: the page came back with the last id it had seen
        assert any(r.get("event") == "desktop.connected" and r.get("agent_id") == "agent1" and r.get("replay")
                   for r in h.log_records())
    finally:
        await redis.aclose()
    tab.expect_no_errors()
    await page.context.close()


async def call_record(h: Hotline, call_id: str) -> dict[str, Any]:
    redis = h.redis()
    try:
        return await h.store(redis).get_call(call_id) or {}
    finally:
        await redis.aclose()


async def test_the_agent_rejects_an_offer_and_hangs_up_a_call_from_the_page(floor: Floor, tmp_path: Path) -> None:
    """Reject: the ringing phone gets a CANCEL and the caller keeps its place (it is offered again when
    the agent is back); hang up: the hotline ends both legs. Answering stays the desk phone's."""
    h = floor.hotline
    await settle(h, "available")
    tab = await desktop(floor)
    page = tab.page
    await expect(page.locator("#state")).to_have_text("available", timeout=UI_MS)
    caller_sf = render_scenario("caller.xml", tmp_path, keep="remote-hangs-up", drop="caller-hangs-up",
                                digit=2, dtmf_at_ms=800, talk_ms=60000)
    # the phone rings for a long time: the agent rejects from the page before it would answer
    ringing_sf = render_scenario("agent_phone.xml", tmp_path, keep="remote-hangs-up", drop="agent-hangs-up",
                                 ring_ms=25000, talk_ms=30000)
    async with phone(h, ringing_sf, tmp_path) as first_phone:
        caller = call(h, caller_sf, tmp_path)
        pop = page.locator("#pop")
        await expect(pop).to_have_attribute("data-status", "ringing", timeout=CALL_MS)
        await expect(page.locator("#call-note")).to_contain_text("Pick up your phone")
        await expect(page.locator("#call-hangup")).to_be_hidden()
        await expect(page.locator("#call-controls")).to_be_hidden()
        call_id = await pop.get_attribute("data-call-id")
        assert call_id
        for _ in range(100):  # the phone rings (the pop came first)
            if first_phone.received("INVITE"):
                break
            await asyncio.sleep(0.1)
        await page.click("#call-reject")
        await expect(page.locator("#call-status")).to_have_text("Missed (rejected)", timeout=UI_MS)
        await expect(page.locator("#state")).to_have_text("break")
        await expect(page.locator("#reason")).to_have_text("rejected")
        await expect(page.locator("#state-hint")).to_contain_text("went back to its queue")
        for _ in range(100):
            if first_phone.received("CANCEL"):
                break
            await asyncio.sleep(0.1)
        assert first_phone.received("CANCEL"), first_phone.messages()[-2000:]
        record = await call_record(h, call_id)
        assert record["state"] == "queued", record  # the caller is still there, at the head of its queue

    answering_sf = render_scenario("agent_phone.xml", tmp_path, keep="remote-hangs-up", drop="agent-hangs-up",
                                   ring_ms=300, talk_ms=30000)
    async with phone(h, answering_sf, tmp_path) as second_phone:
        await page.click("#go-available")  # the same caller is offered again
        await expect(pop).to_have_attribute("data-call-id", call_id, timeout=CALL_MS)
        await expect(page.locator("#call-status")).to_have_text("Connected", timeout=CALL_MS)
        await expect(page.locator("#call-note")).to_be_hidden()
        await expect(page.locator("#call-reject")).to_be_hidden()
        await tab.screenshot("desktop-connected-controls.png")
        await page.click("#call-hangup")
        await expect(page.locator("#call-status")).to_have_text("Ended", timeout=CALL_MS)
        result = await caller
        assert result.ok, result.describe() + "\n" + h.log_tail()
        assert second_phone.received("BYE") >= 1
    record = await call_record(h, call_id)
    assert record["end_reason"] == "hangup_by_api" and record["outcome"] == "completed"
    failed = [r for r in h.log_records() if r.get("event") == "offer.failed" and r.get("reason") == "rejected"]
    assert failed, "the worker did not fail the offer as rejected"
    tab.expect_no_errors()
    await page.context.close()


async def test_hold_mute_and_keys_from_the_page_reach_the_call_and_the_wallboard(
        floor: Floor, tmp_path: Path) -> None:
    """The call-control buttons against a real call (sipp caller and agent phone through the edge and
    a worker): each button's state comes back from the call's events, on the desktop and the wallboard."""
    h = floor.hotline
    await settle(h, "available")
    tab = await desktop(floor)
    page = tab.page
    board = await open_tab(floor.browser, f"{h.api}/wallboard")
    await board.page.fill("#token", h.tokens["super1"])
    await board.page.click("#login-form button[type=submit]")
    await expect(board.page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=UI_MS)
    row = board.page.locator("#agent-rows tr[data-agent-id=agent1]")

    caller_sf = render_scenario("caller.xml", tmp_path, keep="remote-hangs-up", drop="caller-hangs-up",
                                digit=2, dtmf_at_ms=800, talk_ms=60000)
    phone_sf = render_scenario("agent_phone.xml", tmp_path, keep="remote-hangs-up", drop="agent-hangs-up",
                               ring_ms=300, talk_ms=60000)
    async with phone(h, phone_sf, tmp_path):
        caller = call(h, caller_sf, tmp_path)
        await expect(page.locator("#call-status")).to_have_text("Connected", timeout=CALL_MS)
        call_id = await page.locator("#pop").get_attribute("data-call-id")
        assert call_id
        hold, mute = page.locator("#cc-hold"), page.locator("#cc-mute")
        await expect(hold).to_be_enabled()
        await expect(page.locator("#cc-complete")).to_be_hidden()

        await hold.click()
        await expect(page.locator("#call-status")).to_have_text("On hold", timeout=UI_MS)
        await expect(hold).to_have_text("Resume")
        await expect(hold).to_have_attribute("aria-pressed", "true")
        await expect(page.locator("#cc-transfer")).to_be_enabled()
        await expect(row).to_have_attribute("data-control", "held", timeout=UI_MS)
        assert (await call_record(h, call_id))["state"] == "held"
        await tab.screenshot("desktop-held.png")
        await board.screenshot("wallboard-held.png")
        await hold.click()
        await expect(page.locator("#call-status")).to_have_text("Connected", timeout=UI_MS)
        await expect(hold).to_have_text("Hold")
        await expect(row).to_have_attribute("data-control", "", timeout=UI_MS)

        await mute.click()
        await expect(mute).to_have_text("Unmute", timeout=UI_MS)
        await expect(row).to_have_attribute("data-muted", "1", timeout=UI_MS)
        await mute.click()
        await expect(mute).to_have_text("Mute", timeout=UI_MS)

        await page.click("#cc-keypad")
        for key in "12#":
            await page.click(f"#keys button[data-key='{key}']")
        await expect(page.locator("#keypad-sent")).to_have_text("Sent: 12#", timeout=UI_MS)

        # the target picker lists the call targets of the API
        await page.click("#cc-transfer")
        await expect(page.locator("#target-picker")).to_be_visible()
        await expect(page.locator("#target option[value='queue:billing']")).to_have_count(1, timeout=UI_MS)
        await page.click("#target-close")

        await page.click("#call-hangup")
        await expect(page.locator("#call-status")).to_have_text("Ended", timeout=CALL_MS)
        await expect(page.locator("#call-controls")).to_be_hidden()
        result = await caller
        assert result.ok, result.describe() + "\n" + h.log_tail()
    types = await page.locator("#activity li").evaluate_all("els => els.map(e => e.dataset.type)")
    for t in ("call.held", "call.resumed", "call.muted", "call.unmuted"):
        assert types.count(t) == 1, (t, types)
    tab.expect_no_errors()
    board.expect_no_errors()
    await page.context.close()
    await board.page.context.close()


async def test_a_real_call_ends_in_a_complaint_case_on_the_desktop_and_the_wallboard(
        floor: Floor, tmp_path: Path) -> None:
    """The disposition form opens a complaint case for a real call (sipp caller through the edge and the
    IVR, agent1's sipp phone): the case is linked to the call, the customer is the caller, the desktop's
    "My cases" panel shows it and changes its status, and the wallboard's Complaints tile counts it."""
    h = floor.hotline
    await settle(h, "available")
    board = await open_tab(floor.browser, f"{h.api}/wallboard")
    await board.page.fill("#token", h.tokens["super1"])
    await board.page.click("#login-form button[type=submit]")
    await expect(board.page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=UI_MS)
    tile = board.page.locator("#complaints")
    await expect(tile).to_be_visible(timeout=UI_MS)
    urgent_before = int(await tile.locator("[data-figure=open-urgent] .value").inner_text())
    tab = await desktop(floor)
    page = tab.page

    caller_sf, phone_sf = scenarios(tmp_path, ring_ms=300, talk_ms=1000)
    async with phone(h, phone_sf, tmp_path):
        caller = call(h, caller_sf, tmp_path)
        await expect(page.locator("#call-status")).to_have_text("Ended", timeout=CALL_MS)
        result = await caller
        assert result.ok, result.describe() + "\n" + h.log_tail()
    call_id = await page.locator("#pop").get_attribute("data-call-id")
    assert call_id
    await page.select_option("#disposition", "follow_up")
    await page.select_option("#case-tier", "urgent")
    await page.fill("#case-reason-input", "charged twice <script>x</script>")
    await page.click("#disposition-save")
    await expect(page.locator("#disposition-result")).to_contain_text("case CS", timeout=UI_MS)
    record = await rest(h, "GET", f"/api/v1/calls/{call_id}", "agent1")
    case_id = record["case_id"]
    case = await rest(h, "GET", f"/api/v1/cases/{case_id}", "agent1")
    assert case["owner"] == "agent1" and case["customer"] == CALLER and case["calls"] == [call_id]
    assert case["status"] == "open" and case["tier"] == "urgent" and case["hotline"] == "Demo hotline"
    assert case["due_at"] > case["opened_at"]

    row = page.locator(f"#case-rows tr[data-case-id={case_id}]")
    await expect(row).to_contain_text("charged twice <script>x</script>", timeout=UI_MS)
    await expect(row).to_contain_text(CALLER)
    await expect(tile.locator("[data-figure=open-urgent] .value")).to_have_text(str(urgent_before + 1),
                                                                                timeout=UI_MS)
    await page.click(f"#case-rows button[data-open={case_id}]")
    await page.click("#case-actions button[data-status=contacted]")
    await expect(page.locator("#case-status")).to_have_text("contacted", timeout=UI_MS)
    await expect(tile.locator("[data-figure=open-urgent] .value")).to_have_text(str(urgent_before), timeout=UI_MS)
    assert (await rest(h, "GET", f"/api/v1/cases/{case_id}", "super1"))["status"] == "contacted"
    await tab.screenshot("desktop-case.png")
    await board.screenshot("wallboard-complaints.png")
    tab.expect_no_errors()
    board.expect_no_errors()
    await page.context.close()
    await board.page.context.close()
