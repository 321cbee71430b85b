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
