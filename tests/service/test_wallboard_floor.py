"""The wallboard as a supervisor's workplace in headless Chromium, against the real CTI API on a real
Redis (calls driven through the queue store as the workers would): a configured queue shows before its
first call with the server's target; the tiles' agent counts add up to those signed in; readable state
names; Break / Sign out from an agent's row (audited; on a call: after the call, and the agent's desktop
is told); the agents' figures today and by interval, today's intervals chart, and the CSV exports."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Locator, Page, expect
from redis.asyncio import Redis

from ivr.core.config import Settings
from ivr.core.events import AgentState
from ivr.queues.stats import StatsConfig
from ivr.queues.store import QueueStore
from tests.browser import Tab, open_tab
from tests.conftest import RedisServer
from tests.service.pages import TIMEOUT_MS, desktop, page_settings, serving

PREFIX = "wbf"
STAFF = ("available", "reserved", "oncall", "wrapup", "break")


@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    # support: configured, no call yet, its own target (80 % within 20 s)
    return page_settings(tmp_path, redis_server, PREFIX,
                         routing={"queues": {"support": {"service_level_target": 0.8,
                                                         "service_level_threshold_s": 20}}})


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[str]:
    async with serving(settings) as url:
        yield url


@pytest.fixture
def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX, stats=StatsConfig(short_abandon_s=0))


async def wallboard(browser: Browser, api: str) -> Tab:
    tab = await open_tab(browser, f"{api}/wallboard")
    await tab.page.fill("#token", "super1-demo-token")
    await tab.page.click("#login-form button[type=submit]")
    await expect(tab.page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=TIMEOUT_MS)
    return tab


async def queue_call(store: QueueStore, cid: str, queue: str = "billing") -> str | None:
    """A caller in ``queue``; the offer id when an agent was free."""
    await store.call_start(cid, "w0", ani="+15550001", dnis="1000", hotline="demo", language="en", plan_version="v1")
    offer = await store.enqueue(cid, queue=queue, skill=queue, priority=0, journey={})
    return offer.offer_id if offer else None


async def staff_counts(tile: Locator) -> dict[str, int]:
    out = {}
    for state in (*STAFF, "signed-in"):
        out[state] = int(await tile.locator(f".staffing [data-staff={state}]").get_attribute("data-count") or "-1")
    return out


async def expect_staff(tile: Locator, **want: int) -> None:
    for state, n in want.items():
        await expect(tile.locator(f".staffing [data-staff={state.rstrip('_').replace('_', '-')}]")).to_have_attribute(
            "data-count", str(n), timeout=TIMEOUT_MS)
    counts = await staff_counts(tile)
    assert counts["signed-in"] == sum(counts[s] for s in STAFF), counts


async def test_a_configured_queue_shows_before_its_first_call_and_the_tiles_add_up(
        api: str, browser: Browser, store: QueueStore) -> None:
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    await store.set_agent_state("agent2", AgentState.BREAK, "lunch")
    tab = await wallboard(browser, api)
    page = tab.page
    support = page.locator(".tile[data-queue=support]")
    await expect(support).to_be_visible(timeout=TIMEOUT_MS)
    await expect(support.locator("[data-figure=waiting] .value")).to_have_text("0")
    await expect(support.locator("[data-figure=service-level] .label")).to_have_text("SL 20 s · target 80%")
    await expect_staff(support, break_=1, available=0, signed_in=1)  # agent2 (support) is on break
    await expect(page.locator("#tiles")).not_to_contain_text("No queues")

    # a billing caller rings agent1: counted as ringing, agent2 (billing too) still on break, 2 signed in
    assert await queue_call(store, "c1") is not None
    billing = page.locator(".tile[data-queue=billing]")
    await expect_staff(billing, reserved=1, break_=1, available=0, oncall=0, signed_in=2)
    row1, row2 = (page.locator(f"#agent-rows tr[data-agent-id={a}]") for a in ("agent1", "agent2"))
    await expect(row1.locator(".pill[data-state=reserved]")).to_have_text("Ringing")
    await expect(row2.locator(".pill[data-state=break]")).to_have_text("On break")
    await expect(page.locator("#state-chart g[data-state=oncall] text").first).to_have_text("On a call")
    await expect(page.locator("#state-chart g[data-state=offline] text").first).to_have_text("Signed out")
    # no threshold of this browser's own: only the supervisor's phone is kept
    assert await page.locator("#sl-target, #wait-alert, #sl-threshold").count() == 0
    await page.fill("#sup-phone", "+15550999")
    await page.dispatch_event("#settings", "change")
    assert await page.evaluate("localStorage.getItem('ivr.wallboard.settings')") == '{"phone":"+15550999"}'
    await tab.screenshot("wallboard-floor-tiles.png")
    tab.expect_no_errors()


async def test_break_and_sign_out_from_the_wallboard_are_audited_and_wait_for_the_call(
        api: str, browser: Browser, store: QueueStore) -> None:
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    tab = await wallboard(browser, api)
    page = tab.page
    row1, row2 = (page.locator(f"#agent-rows tr[data-agent-id={a}]") for a in ("agent1", "agent2"))
    await row1.locator("button[data-force=break]").click()
    await expect(row1).to_have_attribute("data-state", "break", timeout=TIMEOUT_MS)
    await expect(row1).to_contain_text("supervisor by super1")
    await expect(row1.locator("button[data-force=available]")).to_be_visible()

    # agent2 on a call, its desktop open: Sign out waits for the end of the call
    agent_tab = await desktop(browser, api, "agent2")
    await store.set_agent_state("agent2", AgentState.AVAILABLE)
    offer = await queue_call(store, "c2")
    assert offer is not None
    await store.offer_answered("c2", offer)
    await expect(row2).to_have_attribute("data-state", "oncall", timeout=TIMEOUT_MS)
    await row2.locator("button[data-force=offline]").click()
    await expect(row2.locator(".pill[data-state=pending]")).to_have_text("signs out after the call", timeout=TIMEOUT_MS)
    await expect(row2).to_have_attribute("data-state", "oncall")
    await expect(agent_tab.page.locator("#state")).to_have_text("oncall")
    await store.end_call("c2", reason="caller_hangup", wrapup_s=0, ttl_s=3600)
    await expect(row2).to_have_attribute("data-state", "offline", timeout=TIMEOUT_MS)
    await expect(row2.locator(".pill[data-state=offline]")).to_have_text("Signed out")
    await expect(row2.locator(".pill[data-state=pending]")).to_have_count(0)
    await expect(row2).to_contain_text("by super1")
    # the agent's desktop was told: its own state is offline, not available for a next call
    await expect(agent_tab.page.locator("#state")).to_have_text("offline", timeout=TIMEOUT_MS)
    entries, _ = await store.audit_entries(action="agent.forced")
    assert [(e["target"], e["detail"]["state"], e["detail"]["applied"], e["by"]) for e in entries] == [
        ("agent:agent2", "offline", "after_call", "super1"), ("agent:agent1", "break", "now", "super1")]
    await tab.screenshot("wallboard-floor-forced.png")
    tab.expect_no_errors()
    agent_tab.expect_no_errors()


async def downloaded(page: Page, button: str) -> list[dict[str, str]]:
    async with page.expect_download(timeout=TIMEOUT_MS) as info:
        await page.click(button)
    download = await info.value
    path = await download.path()
    assert path is not None and download.suggested_filename.endswith(".csv")
    text = await asyncio.to_thread(Path(path).read_text)
    return list(csv.DictReader(io.StringIO(text)))


async def test_agent_figures_the_intervals_chart_and_the_csv_exports(
        api: str, browser: Browser, store: QueueStore) -> None:
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    offer = await queue_call(store, "c1")
    assert offer is not None
    await store.offer_answered("c1", offer)
    await store.set_call_field("c1", "hold_s", "3")
    await store.end_call("c1", reason="caller_hangup", wrapup_s=0, ttl_s=3600)
    assert await queue_call(store, "c2") is not None  # offered to agent1 (ringing)
    await store.end_call("c2", reason="caller_hangup", wrapup_s=0, ttl_s=3600)  # abandoned while ringing
    tab = await wallboard(browser, api)
    page = tab.page
    stats = page.locator("#agent-stats-rows tr[data-agent-id=agent1]")
    await expect(stats.locator("[data-stat=handled]")).to_have_text("1", timeout=TIMEOUT_MS)
    await expect(stats.locator("[data-stat=hold]")).to_have_text("0:03")
    await expect(page.locator("#agent-stats-rows tr[data-agent-id=agent2] [data-stat=handled]")).to_have_text("0")

    # today by interval: billing's current interval has the two calls, one answered, one abandoned
    await page.select_option("#history-queue", "billing")
    last = page.locator("#history-chart g.interval").last
    await expect(last).to_have_attribute("data-offered", "2", timeout=TIMEOUT_MS)
    await expect(last).to_have_attribute("data-answered", "1")
    await expect(last).to_have_attribute("data-abandoned", "1")
    await expect(last).to_have_attribute("data-sl", "0.5")  # SL2: the abandon counts as missed
    assert await page.locator("#history-chart polyline.sl-line").count() == 1

    # the agent by interval, and the three CSV exports
    await stats.locator("button[data-intervals]").click()
    await expect(page.locator("#agent-intervals")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(page.locator("#agent-interval-rows tr").last.locator("[data-stat=handled]")).to_have_text("1")
    rows = await downloaded(page, "#agent-stats-csv")
    assert {r["agent_id"]: r["handled"] for r in rows}["agent1"] == "1"
    rows = await downloaded(page, "#agent-intervals-csv")
    assert {r["agent_id"] for r in rows} == {"agent1"} and rows[-1]["hold_ms"] == "3000"
    rows = await downloaded(page, "#intervals-csv")
    assert rows[-1]["offered"] == "2" and rows[-1]["abandoned"] == "1"
    await tab.screenshot("wallboard-floor-figures.png")
    tab.expect_no_errors()
