"""The complaint-case views of the pages in headless Chromium, against the real CTI API on a real Redis
(cases and calls are driven through the API and the queue store; no SIP here): the desktop's "My
cases" panel (my cases, due soon, overdue, a status change, a note, live from the case events), a case
opened with the disposition form, and the wallboard's Complaints tile."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, expect
from redis.asyncio import Redis

from ivr.core.events import AgentState
from ivr.queues.store import QueueStore
from tests.browser import open_tab
from tests.conftest import RedisServer
from tests.service.pages import desktop, page_settings, serving

PREFIX = "casepages"
SUPER = {"Authorization": "Bearer super1-demo-token"}
AGENT1 = {"Authorization": "Bearer agent1-demo-token"}
TIMEOUT_MS = 10_000


@pytest.fixture
async def api(tmp_path: Path, redis_server: RedisServer, redis: Redis) -> AsyncIterator[str]:
    (tmp_path / "dialplans").mkdir()  # no plan: due times on the wall clock (cases.due_s)
    async with serving(page_settings(tmp_path, redis_server, PREFIX, dialplans_dir=tmp_path / "dialplans")) as url:
        yield url


@pytest.fixture
def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX)


async def open_case(api: str, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.post(f"{api}/api/v1/cases", headers=headers,
                                                          json={"tier": "normal", "reason": "late", **body}) as r:
        assert r.status == 201, await r.text()
        case: dict[str, Any] = await r.json()
        return case


async def test_the_desktop_shows_my_cases_due_soon_and_overdue_and_changes_a_status(
        api: str, browser: Browser, store: QueueStore) -> None:
    mine = await open_case(api, SUPER, owner="agent1", tier="urgent", reason="billed twice <img src=x>",
                           customer="+15550001")
    await open_case(api, SUPER, owner="agent2", reason="not mine")
    now = int(time.time() * 1000)
    late = await store.open_case(tier="important", reason="late one", customer="", opened_by="super1",
                                 owner="agent1", due_at_ms=now - 120_000)
    soon = await store.open_case(tier="normal", reason="soon one", customer="", opened_by="super1",
                                 owner="agent1", due_at_ms=now + 300_000)
    tab = await desktop(browser, api)
    page = tab.page
    rows = page.locator("#case-rows tr")
    await expect(rows).to_have_count(3, timeout=TIMEOUT_MS)
    await expect(page.locator("#case-rows tr[data-case-id]")).to_have_count(3)
    assert await page.locator("#case-rows img").count() == 0, "a case's reason must never become markup"
    row = page.locator(f"#case-rows tr[data-case-id={mine['id']}]")
    await expect(row).to_contain_text("billed twice <img src=x>")
    await expect(row.locator("td.due")).to_contain_text("due in")
    await expect(page.locator(f"#case-rows tr[data-case-id={late['id']}]")).to_have_attribute("data-due", "overdue")
    await expect(page.locator(f"#case-rows tr[data-case-id={late['id']}] td.due")).to_contain_text("overdue")
    await expect(page.locator(f"#case-rows tr[data-case-id={soon['id']}]")).to_have_attribute("data-due", "soon")
    await expect(page.locator("#cases-status")).to_have_text("3 cases · 1 due soon · 1 overdue")

    await page.click("#case-views button[data-view=overdue]")
    await expect(rows).to_have_count(1, timeout=TIMEOUT_MS)
    await expect(rows.first).to_have_attribute("data-case-id", late["id"])
    await page.click("#case-views button[data-view=soon]")
    await expect(rows.first).to_have_attribute("data-case-id", soon["id"], timeout=TIMEOUT_MS)
    await expect(rows).to_have_count(1)
    await page.click("#case-views button[data-view=mine]")
    await expect(rows).to_have_count(3, timeout=TIMEOUT_MS)

    # the case in detail: a status change and a note, through the API, shown without a reload
    await page.click(f"#case-rows button[data-open={mine['id']}]")
    detail = page.locator("#case-detail")
    await expect(detail).to_be_visible(timeout=TIMEOUT_MS)
    await expect(page.locator("#case-status")).to_have_text("open")
    await expect(page.locator("#case-actions button")).to_have_count(3)
    await page.click("#case-actions button[data-status=contacted]")
    await expect(page.locator("#case-status")).to_have_text("contacted", timeout=TIMEOUT_MS)
    await expect(row).to_have_attribute("data-status", "contacted", timeout=TIMEOUT_MS)
    await expect(row.locator("td.due")).to_have_text("—")
    got = await store.get_case(mine["id"])
    assert got is not None and got["status"] == "contacted" and got["contacted_at"] is not None
    await page.fill("#case-note", "called back\n<b>refund</b> on its way")
    await page.click("#case-note-add")
    await expect(page.locator("#case-notes li")).to_have_count(1, timeout=TIMEOUT_MS)
    await expect(page.locator("#case-notes .note-text")).to_have_text("called back\n<b>refund</b> on its way")
    assert [n["text"] for n in await store.case_notes(mine["id"])] == ["called back\n<b>refund</b> on its way"]

    # a supervisor's changes reach the panel over the feed: a new case, a status of the case shown
    new = await open_case(api, SUPER, owner="agent1", tier="important", reason="from the supervisor")
    await expect(page.locator(f"#case-rows tr[data-case-id={new['id']}]")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(rows).to_have_count(4)
    await store.set_case_status(mine["id"], "resolved", by="super1")
    await expect(page.locator("#case-status")).to_have_text("resolved", timeout=TIMEOUT_MS)
    await expect(page.locator("#case-actions button[data-status=reopened]")).to_be_visible()
    await expect(page.locator("#activity li[data-type='case.opened']")).to_have_count(1)
    await tab.screenshot("desktop-cases.png")
    tab.expect_no_errors()


async def test_the_disposition_form_opens_a_case_for_the_call(api: str, browser: Browser,
                                                             store: QueueStore) -> None:
    tab = await desktop(browser, api)
    page = tab.page
    await store.call_start("c1", "w0", ani="+15550007", dnis="1000", hotline="Demo hotline", language="en",
                           plan_version="v1")
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    offer = await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={"steps": []})
    assert offer is not None and offer.agent_id == "agent1"
    await store.offer_answered("c1", offer.offer_id)
    await expect(page.locator("#call-status")).to_have_text("Connected", timeout=TIMEOUT_MS)
    await page.select_option("#disposition", "follow_up")
    await page.select_option("#case-tier", "urgent")
    await page.fill("#case-reason-input", "refund missing")
    await page.click("#disposition-save")
    await expect(page.locator("#disposition-result")).to_contain_text("case CS", timeout=TIMEOUT_MS)
    call = await store.get_call("c1")
    assert call is not None and call["disposition"] == "follow_up" and call["case_id"]
    case = await store.get_case(call["case_id"])
    assert case is not None
    assert case["owner"] == "agent1" and case["customer"] == "+15550007" and case["reason"] == "refund missing"
    assert case["calls"] == ["c1"] and case["tier"] == "urgent"
    await expect(page.locator(f"#case-rows tr[data-case-id={case['id']}]")).to_contain_text(
        "refund missing", timeout=TIMEOUT_MS)
    tab.expect_no_errors()


async def test_the_wallboard_complaints_tile_shows_the_counts(api: str, browser: Browser, store: QueueStore) -> None:
    first = await open_case(api, SUPER, owner="agent1", tier="urgent")
    await open_case(api, SUPER, owner="agent2", tier="urgent")
    await open_case(api, AGENT1, tier="normal")
    tab = await open_tab(browser, f"{api}/wallboard")
    page = tab.page
    await page.fill("#token", "super1-demo-token")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=TIMEOUT_MS)
    tile = page.locator("#complaints")
    await expect(tile).to_be_visible(timeout=TIMEOUT_MS)
    await expect(tile.locator("[data-figure=open-urgent] .value")).to_have_text("2")
    await expect(tile.locator("[data-figure=open-important] .value")).to_have_text("0")
    await expect(tile.locator("[data-figure=open-normal] .value")).to_have_text("1")
    await expect(tile.locator("[data-figure=overdue] .value")).to_have_text("0")
    await expect(tile.locator("[data-figure=first-contact] .value")).to_have_text("—")
    await expect(tile).to_have_attribute("data-sl", "green")

    # case events refresh the tile: an overdue case, one due soon, a first contact within its time
    now = int(time.time() * 1000)
    await store.open_case(tier="important", reason="late", customer="", opened_by="super1", due_at_ms=now - 1000)
    await store.open_case(tier="important", reason="soon", customer="", opened_by="super1", due_at_ms=now + 60_000)
    await expect(tile.locator("[data-figure=open-important] .value")).to_have_text("2", timeout=TIMEOUT_MS)
    await expect(tile.locator("[data-figure=overdue] .value")).to_have_text("1")
    await expect(tile.locator("[data-figure=due-soon] .value")).to_have_text("1")
    await expect(tile).to_have_attribute("data-sl", "red")
    await store.set_case_status(first["id"], "contacted", by="agent1")
    await expect(tile.locator("[data-figure=open-urgent] .value")).to_have_text("1", timeout=TIMEOUT_MS)
    await expect(tile.locator("[data-figure=first-contact] .value")).to_have_text("100%")
    await expect(page.locator("#complaint-first")).to_contain_text("urgent 100%")
    await tab.screenshot("wallboard-complaints.png")
    tab.expect_no_errors()


async def test_the_wallboard_lists_overdue_cases_raises_an_alert_and_assigns_one(
        api: str, browser: Browser, store: QueueStore) -> None:
    now = int(time.time() * 1000)
    await store.register_agent("agent2", name="Bo", skills={"complaints": 1}, sip_uri=None, languages=["en"])
    older = await store.open_case(tier="normal", reason="<b>no refund</b>", customer="", opened_by="super1",
                                  due_at_ms=now - 3_600_000)
    newer = await store.open_case(tier="urgent", reason="line dead", customer="", opened_by="super1",
                                  due_at_ms=now - 60_000)
    await open_case(api, SUPER, tier="normal")  # in time: not in the supervisors' queue
    tab = await open_tab(browser, f"{api}/wallboard")
    page = tab.page
    await page.fill("#token", "super1-demo-token")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=TIMEOUT_MS)
    rows = page.locator("#overdue-rows tr")
    await expect(page.locator("#overdue")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(rows).to_have_count(2)
    # oldest due first; the reason is text, never markup
    await expect(rows.nth(0)).to_have_attribute("data-case-id", older["id"])
    await expect(rows.nth(1)).to_have_attribute("data-case-id", newer["id"])
    await expect(rows.nth(0).locator("td").nth(3)).to_have_text("<b>no refund</b>")
    await expect(rows.nth(0).locator(".owner")).to_have_text("unassigned")
    await expect(rows.nth(0).locator(".overdue-for")).to_contain_text("1:0")  # an hour and counting
    await expect(page.locator("#alerts")).to_contain_text("2 complaint cases are overdue")

    # the supervisor assigns the oldest to agent2: the case's owner changes, the list follows
    await rows.nth(0).locator("select").select_option("agent2")
    await rows.nth(0).locator("button[data-assign]").click()
    await expect(page.locator(f"#overdue-rows tr[data-case-id={older['id']}] .owner")).to_have_text(
        "agent2", timeout=TIMEOUT_MS)
    assert (await store.get_case(older["id"]))["owner"] == "agent2"

    # contacted, a case leaves the queue; with none left the list and the alert go
    await store.set_case_status(older["id"], "contacted", by="agent2")
    await store.set_case_status(newer["id"], "resolved", by="super1")
    await expect(page.locator("#overdue")).to_be_hidden(timeout=TIMEOUT_MS)
    await expect(page.locator("#alerts")).to_be_hidden()
    tab.expect_no_errors()
