"""The desktop's call-control buttons in headless Chromium against the whole hotline: a sipp caller
through the edge, sipp phones for agent1 and agent2, real workers (the rig of
tests/e2e/test_call_control.py, which checks the audio of each step). Here: what each page shows at
each step comes back from the call's events, on both agents' desktops and on the wallboard."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser import Tab, chromium, open_tab
from tests.e2e.conftest import Hotline
from tests.e2e.test_call_control import call_in, consult_state, rig
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippServer

pytestmark = pytest.mark.e2e
UI_MS = 10_000
CALL_MS = 30_000


async def desktop(browser: Browser, h: Hotline, agent: str) -> Tab:
    tab = await open_tab(browser, f"{h.api}/")
    await tab.page.fill("#agent", agent)
    await tab.page.fill("#token", h.tokens[agent])
    await tab.page.click("#login-form button[type=submit]")
    await expect(tab.page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=UI_MS)
    await tab.page.click("#go-available")
    await expect(tab.page.locator("#state")).to_have_text("available", timeout=UI_MS)
    return tab


async def wallboard(browser: Browser, h: Hotline) -> Tab:
    tab = await open_tab(browser, f"{h.api}/wallboard")
    await tab.page.fill("#token", h.tokens["super1"])
    await tab.page.click("#login-form button[type=submit]")
    await expect(tab.page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=UI_MS)
    return tab


def row(board: Page, agent: str):  # type: ignore[no-untyped-def]
    return board.locator(f"#agent-rows tr[data-agent-id={agent}]")


async def test_consult_swap_conference_and_leave_from_the_pages(tmp_path: Path) -> None:
    async with rig(tmp_path) as r, chromium() as browser:
        h = r.hotline
        one, two = await desktop(browser, h, "agent1"), await desktop(browser, h, "agent2")
        board = await wallboard(browser, h)
        caller, cid = await call_in(r)
        p1, p2 = one.page, two.page
        await expect(p1.locator("#call-status")).to_have_text("Connected", timeout=CALL_MS)

        # consult agent2, picked from the call targets
        await p1.click("#cc-consult")
        await expect(p1.locator("#target option[value='agent:agent2']")).to_have_count(1, timeout=UI_MS)
        await expect(p1.locator("#target option[value='agent:agent1']")).to_have_count(0)  # not myself
        await p1.select_option("#target", "agent:agent2")
        await p1.click("#target-go")
        await expect(p2.locator("#pop")).to_have_attribute("data-consult-from", "agent1", timeout=CALL_MS)
        await expect(p2.locator("[data-field=consult-from]")).to_have_text("agent1")
        await expect(p1.locator("#consult-bar")).to_have_attribute("data-state", "talking", timeout=CALL_MS)
        await expect(p1.locator("#call-status")).to_have_text("Consulting")
        await expect(p1.locator("#consult-line")).to_contain_text("Talking to agent agent2")
        await expect(p1.locator("#cc-hold")).to_be_disabled()
        await expect(p1.locator("#cc-transfer")).to_be_disabled()
        await expect(p2.locator("#call-status")).to_have_text("Connected", timeout=UI_MS)
        await expect(p2.locator("#call-note")).to_contain_text("agent1 is consulting you")
        await expect(p2.locator("#call-hangup")).to_be_hidden()  # hanging up here would end the caller's call
        await expect(row(board.page, "agent1")).to_have_attribute("data-control", "consulting", timeout=UI_MS)
        await expect(row(board.page, "agent2")).to_have_attribute("data-control", "consulting", timeout=UI_MS)
        assert consult_state(await r.record(cid)) == "talking"
        await one.screenshot("desktop-consulting.png")
        await two.screenshot("desktop-consulted.png")

        # swap to the caller and back
        await p1.click("#cc-swap")
        await expect(p1.locator("#consult-line")).to_contain_text("Talking to the caller", timeout=UI_MS)
        await p1.click("#cc-swap")
        await expect(p1.locator("#consult-line")).to_contain_text("Talking to agent agent2", timeout=UI_MS)

        # conference: all three; both desktops and the wallboard show it
        await p1.click("#cc-conference")
        for page in (p1, p2):
            await expect(page.locator("#conference-bar")).to_be_visible(timeout=UI_MS)
            await expect(page.locator("#conference-line")).to_contain_text("agent1, agent2")
        await expect(p1.locator("#call-status")).to_have_text("Conference")
        await expect(p1.locator("#consult-bar")).to_be_hidden()
        await expect(row(board.page, "agent1")).to_have_attribute("data-control", "conference", timeout=UI_MS)
        await expect(row(board.page, "agent2")).to_have_attribute("data-control", "conference", timeout=UI_MS)
        await board.screenshot("wallboard-conference.png")
        assert (await r.record(cid))["state"] == "conferenced"

        # agent1 leaves: its part is over (wrap-up with its countdown); agent2 has the caller
        await p1.click("#cc-leave")
        await expect(p1.locator("#call-status")).to_have_text("Left the conference", timeout=UI_MS)
        await expect(p1.locator("#call-controls")).to_be_hidden()
        await expect(p1.locator("#state")).to_have_text("wrapup", timeout=UI_MS)
        await expect(p2.locator("#call-note")).to_contain_text("the caller is yours", timeout=UI_MS)
        await expect(p2.locator("#conference-bar")).to_be_hidden()
        await expect(p2.locator("#call-hangup")).to_be_visible()
        await expect(row(board.page, "agent1")).to_have_attribute("data-control", "", timeout=UI_MS)
        rec = await r.record(cid)
        assert rec["state"] == "connected" and rec["agent_id"] == "agent2", rec

        # agent2 holds and then ends the call from its page
        await p2.click("#cc-hold")
        await expect(p2.locator("#call-status")).to_have_text("On hold", timeout=UI_MS)
        await expect(row(board.page, "agent2")).to_have_attribute("data-control", "held", timeout=UI_MS)
        await p2.click("#cc-hold")
        await expect(p2.locator("#call-status")).to_have_text("Connected", timeout=UI_MS)
        await p2.click("#call-hangup")
        await expect(p2.locator("#call-status")).to_have_text("Ended", timeout=CALL_MS)
        result = await caller
        assert result.ok, result.describe()
        ended = await r.record(cid)
        assert ended["outcome"] == "completed" and ended["end_reason"] == "hangup_by_api", ended
        for tab in (one, two, board):
            tab.expect_no_errors()


async def test_a_blind_transfer_from_the_picker_pops_on_the_next_agents_desktop(tmp_path: Path) -> None:
    async with rig(tmp_path) as r, chromium() as browser:
        h = r.hotline
        one, two = await desktop(browser, h, "agent1"), await desktop(browser, h, "agent2")
        caller, cid = await call_in(r)
        p1, p2 = one.page, two.page
        await expect(p1.locator("#call-status")).to_have_text("Connected", timeout=CALL_MS)
        await p1.click("#cc-transfer")
        await expect(p1.locator("#target-go")).to_have_text("Transfer")
        await expect(p1.locator("#target option[value='queue:support']")).to_have_count(1, timeout=UI_MS)
        await p1.select_option("#target", "queue:support")
        await p1.click("#target-go")
        await expect(p1.locator("#call-status")).to_have_text("Transferred", timeout=CALL_MS)
        await expect(p1.locator("#call-controls")).to_be_hidden()
        await expect(p1.locator("#target-picker")).to_be_hidden()
        await expect(p1.locator("#disposition-save")).to_be_enabled()  # agent1 still disposes of its part
        # agent2 gets the caller with its journey, and the pop says who sent it
        await expect(p2.locator("#pop")).to_have_attribute("data-call-id", cid, timeout=CALL_MS)
        await expect(p2.locator("[data-field=transferred-from]")).to_have_text("agent1")
        await expect(p2.locator("#call-status")).to_have_text("Connected", timeout=CALL_MS)
        await two.screenshot("desktop-transferred-in.png")
        await p2.click("#call-hangup")
        await expect(p2.locator("#call-status")).to_have_text("Ended", timeout=CALL_MS)
        result = await caller
        assert result.ok, result.describe()
        rec = await r.record(cid)
        assert rec["agent_id"] == "agent2" and rec["outcome"] == "completed", rec
        for tab in (one, two):
            tab.expect_no_errors()


async def test_dial_a_number_from_the_page_rings_my_phone_then_the_customer(tmp_path: Path) -> None:
    """Click-to-dial from the page (tests/e2e/test_originate.py checks the wire and the audio): the pop
    says whom I call, my phone rings first, then the customer's; the call ends when the customer hangs up."""
    customer_port = free_udp_tcp_port()
    h = Hotline(tmp_path / "hotline", workers=1, overrides={
        "calls": {"outbound_allow": ["+8210*"], "caller_id": "+8215880000"},
        "callbacks": {"dial_uri": f"sip:{{number}}@127.0.0.1:{customer_port}", "ring_timeout_s": 10}})
    customer_sf = render_scenario("customer_phone.xml", tmp_path / "customer", keep="customer-hangs-up",
                                  drop="remote-hangs-up", ring_ms=300, talk_ms=3000, event_pt=120, actions="")
    phone_sf = render_scenario("agent_phone.xml", tmp_path / "agent", keep="remote-hangs-up", drop="agent-hangs-up",
                               ring_ms=800, talk_ms=30000)
    customer = SippServer(customer_sf, workdir=tmp_path / "customer", tag="customer", port=customer_port,
                          extra=["-m", "1", "-mp", str(free_udp_tcp_port())])
    phone = SippServer(phone_sf, workdir=tmp_path / "agent", tag="agent", port=h.agent_sip_port,
                       extra=["-m", "1", "-mp", str(free_udp_tcp_port())])
    try:
        await h.start()
        async with chromium() as browser, customer, phone:
            tab = await desktop(browser, h, "agent1")
            page = tab.page
            await page.fill("#dial-number", "+8299")  # not in calls.outbound_allow: refused, nothing rings
            await page.click("#dial-go")
            await expect(page.locator("#error")).to_contain_text("number.not_allowed", timeout=UI_MS)
            await page.fill("#dial-number", "+821055501234")
            await page.click("#dial-go")
            await expect(page.locator("#pop-title")).to_have_text("Calling +821055501234", timeout=CALL_MS)
            await expect(page.locator("#call-note")).to_contain_text("Pick up your phone")
            await expect(page.locator("#call-reject")).to_be_hidden()
            await expect(page.locator("#dial-go")).to_be_disabled()
            await expect(page.locator("[data-field=direction]")).to_contain_text("outbound")
            await expect(page.locator("#call-status")).to_have_text("Connected", timeout=CALL_MS)
            await expect(page.locator("#call-controls")).to_be_visible()
            await expect(page.locator("#call-status")).to_have_text("Ended", timeout=CALL_MS)
            await expect(page.locator("#activity li[data-type='call.dialing']")).to_have_count(1)
            assert customer.received("INVITE") == 1 and phone.received("INVITE") == 1
            call_id = await page.locator("#pop").get_attribute("data-call-id")
            assert call_id
            redis = h.redis()
            try:
                record = await h.store(redis).get_call(call_id) or {}
            finally:
                await redis.aclose()
            assert record["direction"] == "outbound" and record["agent_id"] == "agent1", record
            tab.expect_no_errors(r"status of 403")  # the refused number (originate answers 403)
    finally:
        h.stop()
