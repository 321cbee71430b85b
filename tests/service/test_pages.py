"""The agent desktop and the wallboard in headless Chromium, against the real CTI API on a real Redis
(calls are driven through the queue store, as the workers would: no SIP here; tests/e2e/test_pages.py
has the real calls). Also the pages' HTTP side: the security headers and the static files."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, expect
from redis.asyncio import Redis

from ivr.core.config import Settings
from ivr.core.events import AgentState
from ivr.cti.app import init_app
from ivr.queues.stats import StatsConfig
from ivr.queues.store import QueueStore
from tests.browser import Tab, open_tab
from tests.conftest import RedisServer
from tests.service.pages import desktop, page_settings, serving

PREFIX = "pages"
AGENT1 = {"Authorization": "Bearer agent1-demo-token"}
SUPER = {"Authorization": "Bearer super1-demo-token"}
TIMEOUT_MS = 10_000


@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    return page_settings(tmp_path, redis_server, PREFIX)


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[str]:
    async with serving(settings) as url:
        yield url


@pytest.fixture
def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX, stats=StatsConfig(short_abandon_s=0))


def journey() -> dict[str, Any]:
    return {"plan": "Demo hotline", "plan_version": "v1", "language": "en",
            "steps": [{"node": "welcome", "type": "menu", "at": 1.0, "digit": "2", "outcome": "billing"},
                      {"node": "ask", "type": "menu", "at": 2.0, "phrase": "my invoice", "confidence": 0.91,
                       "outcome": "billing"},
                      {"node": "billing", "type": "queue", "at": 3.0, "detail": "billing"}],
            "data": {"account": "****34"}}


async def offer_call(store: QueueStore, cid: str, ani: str = "+15550001") -> str:
    """A call from ``ani`` through the IVR into queue billing, offered to agent1: the offer id."""
    await store.call_start(cid, "w0", ani=ani, dnis="1000", hotline="Demo hotline", language="en",
                           plan_version="v1")
    offer = await store.enqueue(cid, queue="billing", skill="billing", priority=0, journey=journey())
    assert offer is not None, "agent1 should have been available"
    return offer.offer_id


# --- HTTP ------------------------------------------------------------------------------------------

async def test_pages_and_their_files_are_served_with_a_strict_policy(api: str) -> None:
    async with aiohttp.ClientSession() as http:
        for path, kind in (("/", "text/html"), ("/wallboard", "text/html"), ("/static/desktop.js", "text/javascript"),
                           ("/static/pages.css", "text/css")):
            async with http.get(f"{api}{path}") as r:
                assert r.status == 200, path
                assert r.content_type == kind
                csp = r.headers["Content-Security-Policy"]
                assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
                assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
                assert "media-src 'self'" in csp  # the recording player: play links of this host only
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                etag = r.headers["ETag"]
            async with http.get(f"{api}{path}", headers={"If-None-Match": etag}) as r:
                assert r.status == 304
        # no inline script or style in the pages: everything is a file the policy allows
        for path in ("/", "/wallboard"):
            async with http.get(f"{api}{path}") as r:
                html = await r.text()
            assert "<script>" not in html and "<style" not in html and " style=" not in html and "onclick" not in html
        for path in ("/static/nope.js", "/static/..%2Fpages.py", "/static/desktop.html", "/static/.hidden.js"):
            async with http.get(f"{api}{path}") as r:
                assert r.status == 404, path
                assert (await r.json())["error"]["code"] in ("page.not_found", "http.404")


def test_no_script_writes_markup() -> None:
    static = Path(__file__).resolve().parents[2] / "ivr" / "cti" / "static"
    scripts = sorted(static.glob("*.js"))
    assert {p.name for p in scripts} >= {"common.js", "desktop.js", "pop.js", "wallboard.js", "chart.js"}
    for script in scripts:
        text = script.read_text()
        for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert risky not in text, f"{script.name} uses {risky}"


# --- the agent desktop ---------------------------------------------------------------------------

async def test_a_bad_login_is_shown_in_the_page(api: str, browser: Browser) -> None:
    tab = await open_tab(browser, f"{api}/")
    await tab.page.fill("#agent", "agent1")
    await tab.page.fill("#token", "wrong")
    await tab.page.click("#login-form button[type=submit]")
    await expect(tab.page.locator("#error")).to_contain_text("auth.invalid_token", timeout=TIMEOUT_MS)
    assert await tab.page.locator("#desk").is_hidden()
    assert await tab.page.evaluate("sessionStorage.getItem('ivr.desktop.token')") is None
    tab.expect_no_errors(r"status of 401")


async def test_the_desktop_follows_a_call_from_pop_to_disposition(
        api: str, browser: Browser, store: QueueStore) -> None:
    tab = await desktop(browser, api)
    page = tab.page
    await page.select_option("#break-reason", "training")
    await page.click("#go-break")
    await expect(page.locator("#state")).to_have_text("break", timeout=TIMEOUT_MS)
    await expect(page.locator("#reason")).to_have_text("training")
    await page.click("#go-available")
    await expect(page.locator("#state")).to_have_text("available", timeout=TIMEOUT_MS)
    assert await page.evaluate("sessionStorage.getItem('ivr.desktop.token')") == "agent1-demo-token"
    assert await page.evaluate("localStorage.length") == 0

    offer_id = await offer_call(store, "c1", ani="+15550001<img src=x onerror=alert(1)>")
    pop = page.locator("#pop")
    await expect(pop).to_be_visible(timeout=TIMEOUT_MS)
    await expect(page.locator("#call-status")).to_have_text("Ringing")
    await expect(pop.locator("[data-field=ani]")).to_have_text("+15550001<img src=x onerror=alert(1)>")
    assert await pop.locator("img").count() == 0, "a caller number must never become markup"
    await expect(pop.locator("[data-field=dnis]")).to_have_text("1000")
    await expect(pop.locator("[data-field=hotline]")).to_have_text("Demo hotline")
    await expect(pop.locator("[data-field=queue]")).to_have_text("billing")
    steps = pop.locator(".journey .step")
    await expect(steps).to_have_count(3)
    await expect(steps.nth(0)).to_contain_text("welcome")
    await expect(steps.nth(0).locator("kbd")).to_have_text("2")
    await expect(steps.nth(1)).to_contain_text("“my invoice” 91%")
    await expect(steps.nth(2)).to_contain_text("billing")
    await expect(pop.locator("[data-field='data.account']")).to_have_text("****34")
    await expect(pop.locator(".crm")).to_contain_text("No CRM data")
    await expect(page.locator("#state")).to_have_text("reserved")
    assert await page.locator("#disposition-save").is_disabled(), "nothing to dispose of before the answer"
    assert await page.locator("#go-break").is_disabled()

    await store.offer_answered("c1", offer_id)
    await expect(page.locator("#call-status")).to_have_text("Connected", timeout=TIMEOUT_MS)
    await expect(page.locator("#state")).to_have_text("oncall")
    await store.end_call("c1", reason="caller_hangup", wrapup_s=30, ttl_s=3600)
    await expect(page.locator("#call-status")).to_have_text("Ended", timeout=TIMEOUT_MS)
    await expect(page.locator("#state")).to_have_text("wrapup")

    # the API's refusal is shown in the page, not in an alert
    await page.select_option("#disposition", "resolved")
    await page.fill("#notes", "x" * 4000)
    await page.evaluate("document.getElementById('notes').removeAttribute('maxlength')")
    await page.fill("#notes", "x" * 4001)
    await page.click("#disposition-save")
    await expect(page.locator("#error")).to_contain_text("request.invalid", timeout=TIMEOUT_MS)
    await page.fill("#notes", "Paid the invoice <b>today</b>")
    await page.click("#disposition-save")
    await expect(page.locator("#disposition-result")).to_have_text("Saved: resolved", timeout=TIMEOUT_MS)
    await expect(page.locator("#error")).to_be_hidden()
    call = await store.get_call("c1")
    assert call is not None
    assert call["disposition"] == "resolved" and call["notes"] == "Paid the invoice <b>today</b>"
    await expect(page.locator("#activity li[data-type='call.disposition']")).to_have_count(1, timeout=TIMEOUT_MS)

    # a reload keeps the login and the last call (this tab's sessionStorage)
    await page.reload()
    await expect(page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=TIMEOUT_MS)
    await expect(page.locator("#pop")).to_have_attribute("data-call-id", "c1")
    await expect(pop.locator("[data-field=queue]")).to_have_text("billing")
    await expect(pop.locator(".journey .step")).to_have_count(3)
    await expect(page.locator("#disposition-result")).to_have_text("Saved: resolved")
    await page.click("#go-available")
    await expect(page.locator("#state")).to_have_text("available", timeout=TIMEOUT_MS)

    # signing out takes the agent out of the queues and forgets the login
    await page.click("#signout")
    await expect(page.locator("#login")).to_be_visible(timeout=TIMEOUT_MS)
    agent = await store.get_agent("agent1")
    assert agent is not None and agent["state"] == "offline" and agent["reason"] == "signed_out"
    assert await page.evaluate("sessionStorage.length") == 0
    tab.expect_no_errors(r"status of 400")


async def test_the_desktop_comes_back_after_an_api_restart_with_what_it_missed(
        settings: Settings, redis: Redis, browser: Browser, store: QueueStore) -> None:
    async def serve() -> web.AppRunner:
        # shutdown_timeout: the API does not close its WebSockets when it stops; don't wait 60 s for them
        runner = web.AppRunner(init_app(settings), shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.api.port).start()
        return runner

    runner = await serve()
    try:
        tab = await desktop(browser, f"http://127.0.0.1:{settings.api.port}")
        page = tab.page
        await page.click("#go-available")
        await expect(page.locator("#state")).to_have_text("available", timeout=TIMEOUT_MS)
        await runner.cleanup()  # the API goes away: the socket closes, the page keeps trying
        await expect(page.locator("#conn")).to_have_attribute("data-status", re.compile("retrying|connecting"),
                                                               timeout=TIMEOUT_MS)
        offer_id = await offer_call(store, "c9")  # offered and answered while no API runs
        await store.offer_answered("c9", offer_id)
        runner = await serve()
        await expect(page.locator("#pop")).to_have_attribute("data-call-id", "c9", timeout=TIMEOUT_MS * 2)
        await expect(page.locator("#call-status")).to_have_text("Connected")
        await expect(page.locator("#state")).to_have_text("oncall")
        await expect(page.locator("#conn")).to_have_attribute("data-status", "connected")
        ids = await page.locator("#activity li").evaluate_all("els => els.map(e => e.dataset.eventId)")
        types = await page.locator("#activity li").evaluate_all("els => els.map(e => e.dataset.type)")
        assert len(ids) == len(set(ids)) and types.count("call.offered") == 1 and types.count("call.answered") == 1
        tab.expect_no_errors(r"WebSocket connection to .* failed", r"ERR_CONNECTION_REFUSED")
    finally:
        await runner.cleanup()


async def test_the_pop_shows_crm_records_and_never_follows_a_script_link(api: str, browser: Browser) -> None:
    """The CRM part of the card (the CRM connector adds ``crm`` to the pop), rendered by pop.js."""
    tab = await open_tab(browser, f"{api}/")
    cases = {
        "matched": {"status": "matched", "record": {"id": "C-17", "name": "Ada <Lovelace>", "link":
                                                     "https://crm.example.com/c/17", "tier": "gold"}},
        "multiple": {"status": "multiple", "records": [
            {"id": "1", "name": "Kim", "link": "https://crm.example.com/c/1"},
            {"id": "2", "name": "Lee", "link": "javascript:alert(1)"}]},
        "none": {"status": "none"},
        "timeout": {"status": "timeout"},
        "error": {"status": "error"},
    }
    out = await tab.page.evaluate("""async (cases) => {
        const {crmView} = await import('/static/pop.js');
        const out = {};
        for (const [name, crm] of Object.entries(cases)) {
            const box = crmView(crm);
            document.body.append(box);
            out[name] = {text: box.textContent, links: [...box.querySelectorAll('a')].map(a => a.getAttribute('href')),
                         elements: box.querySelectorAll('*').length};
        }
        return out;
    }""", cases)
    assert "Ada <Lovelace>" in out["matched"]["text"] and "#C-17" in out["matched"]["text"]
    assert "gold" in out["matched"]["text"]
    assert out["matched"]["links"] == ["https://crm.example.com/c/17"]
    assert "2 records match" in out["multiple"]["text"]
    assert out["multiple"]["links"] == ["https://crm.example.com/c/1"], "a javascript: link must not be a link"
    assert "Lee" in out["multiple"]["text"]
    assert "No CRM data" in out["none"]["text"]
    assert "CRM unavailable" in out["timeout"]["text"] and "CRM unavailable" in out["error"]["text"]
    tab.expect_no_errors()


async def test_an_agent_token_cannot_open_the_wallboard(api: str, browser: Browser) -> None:
    tab = await open_tab(browser, f"{api}/wallboard")
    await tab.page.fill("#token", "agent1-demo-token")
    await tab.page.click("#login-form button[type=submit]")
    await expect(tab.page.locator("#error")).to_contain_text("auth.forbidden", timeout=TIMEOUT_MS)
    assert await tab.page.locator("#board").is_hidden()
    tab.expect_no_errors(r"status of 403")


async def test_the_wallboard_shows_queues_and_agents_live(api: str, browser: Browser, store: QueueStore) -> None:
    await store.set_agent_state("agent1", AgentState.BREAK, "lunch")
    tab = await open_tab(browser, f"{api}/wallboard")
    page = tab.page
    await page.fill("#token", "super1-demo-token")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=TIMEOUT_MS)
    chart = page.locator("#state-chart")
    await expect(chart.locator("g[data-state=break]")).to_have_attribute("data-count", "1")
    await expect(chart.locator("g[data-state=offline]")).to_have_attribute("data-count", "1")  # agent2
    row = page.locator("#agent-rows tr[data-agent-id=agent1]")
    await expect(row).to_have_attribute("data-state", "break")
    await expect(row).to_contain_text("lunch")
    await page.evaluate("window.notReloaded = true")

    # a caller waits (agent1 is on break): the tile shows it at the next queue event
    await store.call_start("c1", "w0", ani="+15550001", dnis="1000", hotline="Demo hotline", language="en",
                           plan_version="v1")
    assert await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey=journey()) is None
    tile = page.locator(".tile[data-queue=billing]")
    await expect(tile.locator("[data-figure=waiting] .value")).to_have_text("1", timeout=TIMEOUT_MS)

    # agent1 comes back: the offer, then the answer, change the table and the chart without a reload
    offer = await store.set_agent_state("agent1", AgentState.AVAILABLE)
    assert offer is not None
    await expect(row).to_have_attribute("data-state", "reserved", timeout=TIMEOUT_MS)
    await expect(row).to_contain_text("+15550001")
    await expect(chart.locator("g[data-state=break]")).to_have_attribute("data-count", "0")
    await expect(chart.locator("g[data-state=reserved]")).to_have_attribute("data-count", "1")
    await store.offer_answered("c1", offer.offer_id)
    await expect(row).to_have_attribute("data-state", "oncall", timeout=TIMEOUT_MS)
    await expect(tile.locator("[data-figure=waiting] .value")).to_have_text("0", timeout=TIMEOUT_MS)
    await expect(tile.locator("[data-figure=answered] .value")).to_have_text("1 / 1", timeout=TIMEOUT_MS)
    await expect(tile.locator("[data-figure=service-level] .value")).to_have_text("100%")
    assert await tile.get_attribute("data-sl") == "green"
    assert await page.evaluate("window.notReloaded") is True

    # a caller who gives up brings the service level (abandons count) under the target: red, alert line
    await store.call_start("c2", "w0", ani="+15550002", dnis="1000", hotline="Demo hotline", language="en",
                           plan_version="v1")
    assert await store.enqueue("c2", queue="billing", skill="billing", priority=0, journey=journey()) is None
    await store.end_call("c2", reason="caller_hangup", wrapup_s=0, ttl_s=3600)
    await expect(tile.locator("[data-figure=service-level] .value")).to_have_text("50%", timeout=TIMEOUT_MS)
    await expect(tile).to_have_attribute("data-sl", "red")
    await expect(tile).to_have_class("tile alert")
    # the target and the alert thresholds are the server's (routing.service_level_target 0.9 within the
    # smallest threshold; the abandons_high rule's 10 %)
    await expect(page.locator("#alerts")).to_have_text("billing: service level 50% below 90% · billing: 50% abandoned")
    await expect(tile.locator("[data-figure=abandoned]")).to_have_attribute("data-level", "red")
    await expect(tile.locator("[data-figure=service-level] .label")).to_have_text("SL 10 s · target 90%")
    assert await page.locator("#sl-target").count() == 0, "no per-browser target any more"
    await tab.screenshot("wallboard-service.png")
    tab.expect_no_errors()


# --- the desktop as a call-handling client (issue 17) ----------------------------------------------

async def answered_and_ended(store: QueueStore, cid: str, *, wrapup_s: float) -> None:
    offer_id = await offer_call(store, cid)
    await store.offer_answered(cid, offer_id)
    await store.end_call(cid, reason="caller_hangup", wrapup_s=wrapup_s, ttl_s=3600)


async def test_two_tabs_of_one_agent_show_the_same_disposition(
        api: str, browser: Browser, store: QueueStore) -> None:
    """A disposition saved in one tab shows in the other's form (it used to keep the old values there,
    and saving in that tab would silently replace the first one)."""
    one, two = await desktop(browser, api), await desktop(browser, api)
    await one.page.click("#go-available")
    await expect(two.page.locator("#state")).to_have_text("available", timeout=TIMEOUT_MS)
    await answered_and_ended(store, "c1", wrapup_s=30)
    for tab in (one, two):
        await expect(tab.page.locator("#call-status")).to_have_text("Ended", timeout=TIMEOUT_MS)
        await expect(tab.page.locator("#disposition-save")).to_be_enabled()
    await one.page.select_option("#disposition", "resolved")
    await one.page.fill("#notes", "refund sent")
    await one.page.click("#disposition-save")
    for tab in (one, two):
        await expect(tab.page.locator("#disposition-result")).to_have_text("Saved: resolved", timeout=TIMEOUT_MS)
        await expect(tab.page.locator("#disposition")).to_have_value("resolved")
        await expect(tab.page.locator("#notes")).to_have_value("refund sent")
    # typing in one tab while the other saves: the typing stays, and the page says what happened
    await two.page.fill("#notes", "half-typed")
    await one.page.fill("#notes", "refund sent, ticket closed")
    await one.page.click("#disposition-save")
    await expect(two.page.locator("#error")).to_contain_text("Another tab saved", timeout=TIMEOUT_MS)
    await expect(two.page.locator("#notes")).to_have_value("half-typed")
    for tab in (one, two):
        tab.expect_no_errors()


async def test_the_hint_says_ringing_before_the_answer_and_on_a_call_after(
        api: str, browser: Browser, store: QueueStore) -> None:
    tab = await desktop(browser, api)
    page = tab.page
    await page.click("#go-available")
    await expect(page.locator("#state")).to_have_text("available", timeout=TIMEOUT_MS)
    offer_id = await offer_call(store, "c1")
    await expect(page.locator("#call-status")).to_have_text("Ringing", timeout=TIMEOUT_MS)
    await expect(page.locator("#state-hint")).to_contain_text("ringing")
    await expect(page.locator("#state-hint")).not_to_contain_text("On a call")
    await store.offer_answered("c1", offer_id)
    await expect(page.locator("#state-hint")).to_contain_text("On a call", timeout=TIMEOUT_MS)
    tab.expect_no_errors()


async def test_the_wrapup_countdown_is_the_servers_in_every_tab_with_extend_and_ready_now(
        api: str, browser: Browser, store: QueueStore, redis: Redis) -> None:
    one, two = await desktop(browser, api), await desktop(browser, api)
    await one.page.click("#go-available")
    await expect(two.page.locator("#state")).to_have_text("available", timeout=TIMEOUT_MS)
    await answered_and_ended(store, "c1", wrapup_s=30)
    deadline = await redis.zscore(store.keys.wrapup, "agent1")
    assert deadline is not None
    for tab in (one, two):
        clock = tab.page.locator("#wrapup-clock")
        await expect(clock).to_be_visible(timeout=TIMEOUT_MS)
        await expect(clock).to_have_attribute("data-until", str(int(deadline)))
        await expect(tab.page.locator("#wrapup-left")).to_have_text(re.compile(r"^0:[0-3][0-9]$"))
        await expect(tab.page.locator("#state-hint")).not_to_contain_text("choose Available")

    # extend in one tab: the server's new deadline reaches both
    await one.page.click("#wrapup-extend")
    await expect(one.page.locator("#wrapup-clock")).not_to_have_attribute("data-until", str(int(deadline)),
                                                                         timeout=TIMEOUT_MS)
    later = await redis.zscore(store.keys.wrapup, "agent1")
    assert later is not None and later > deadline
    for tab in (one, two):
        await expect(tab.page.locator("#wrapup-clock")).to_have_attribute("data-until", str(int(later)),
                                                                          timeout=TIMEOUT_MS)
        await expect(tab.page.locator("#activity li[data-type='agent.wrapup_extended']")).to_have_count(1)
    await two.page.reload()  # a reloaded tab reads the same deadline from the server (the hello's agent)
    await expect(two.page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=TIMEOUT_MS)
    await expect(two.page.locator("#wrapup-clock")).to_have_attribute("data-until", str(int(later)))

    # ready now in the other: available in both, the clock goes away
    await two.page.click("#wrapup-ready")
    for tab in (one, two):
        await expect(tab.page.locator("#state")).to_have_text("available", timeout=TIMEOUT_MS)
        await expect(tab.page.locator("#wrapup-clock")).to_be_hidden()
    assert await redis.zscore(store.keys.wrapup, "agent1") is None

    # a wrap-up that runs out: housekeeping makes the agent available, the page follows
    await answered_and_ended(store, "c2", wrapup_s=0.5)
    await expect(one.page.locator("#wrapup-clock")).to_be_visible(timeout=TIMEOUT_MS)
    for _ in range(100):
        if await store.release_wrapups() or (await store.get_agent("agent1") or {}).get("state") == "available":
            break
        await one.page.wait_for_timeout(50)
    await expect(one.page.locator("#state")).to_have_text("available", timeout=TIMEOUT_MS)
    await expect(one.page.locator("#reason")).to_have_text("")
    for tab in (one, two):
        tab.expect_no_errors()


async def test_a_late_reply_to_available_does_not_step_the_page_back_over_the_calls_events(
        api: str, browser: Browser, store: QueueStore) -> None:
    # The reply to the Available click is held back until the call that followed it has reached the
    # page as events (under load it arrived late once): the page must stay in wrap-up, not go back.
    tab = await desktop(browser, api)
    held: list[Any] = []
    release = asyncio.Event()

    async def hold_reply(route: Any) -> None:
        reply = await route.fetch()
        held.append(reply)
        await release.wait()
        await route.fulfill(response=reply)

    await tab.page.route("**/api/v1/agents/agent1/state", hold_reply)
    await tab.page.click("#go-available")
    for _ in range(200):  # the server has made the agent available; its reply waits in the route
        if held and (await store.get_agent("agent1") or {}).get("state") == "available":
            break
        await asyncio.sleep(0.02)
    await answered_and_ended(store, "c1", wrapup_s=30)
    await expect(tab.page.locator("#state")).to_have_text("wrapup", timeout=TIMEOUT_MS)
    async with tab.page.expect_event("requestfinished", lambda r: r.url.endswith("/agents/agent1/state")):
        release.set()
    await tab.page.evaluate("() => new Promise(done => setTimeout(done, 300))")  # the page reads the reply
    await tab.page.unroute("**/api/v1/agents/agent1/state")
    await expect(tab.page.locator("#state")).to_have_text("wrapup")
    await expect(tab.page.locator("#wrapup-clock")).to_be_visible()
    tab.expect_no_errors()


async def test_extending_a_wrapup_is_checked(api: str, store: QueueStore, settings: Settings) -> None:
    url = f"{api}/api/v1/agents/agent1/wrapup"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"extend_s": 30}, headers=AGENT1) as r:
            assert r.status == 409 and (await r.json())["error"]["code"] == "agent.not_in_wrapup"
        await store.set_agent_state("agent1", AgentState.AVAILABLE)
        await answered_and_ended(store, "c1", wrapup_s=10)
        for bad in ({"extend_s": 0}, {"extend_s": -5}, {"extend_s": 601}, {"extend_s": "30"}, {}, {"extend": 30},
                    {"extend_s": 1e308}):
            async with http.post(url, json=bad, headers=AGENT1) as r:
                assert r.status == 400, bad
        async with http.post(f"{api}/api/v1/agents/agent2/wrapup", json={"extend_s": 30}, headers=AGENT1) as r:
            assert r.status == 403
        async with http.post(f"{api}/api/v1/agents/nobody/wrapup", json={"extend_s": 30}, headers=SUPER) as r:
            assert r.status == 404
        agent = await store.get_agent("agent1")
        assert agent is not None and agent["state"] == "wrapup"
        before = agent["wrapup_until"]
        async with http.post(url, json={"extend_s": 30}, headers=AGENT1) as r:
            assert r.status == 200
            body = await r.json()
        assert body["state"] == "wrapup" and body["wrapup_until"] == before + 30_000
        async with http.post(url, json={"extend_s": 45}, headers=SUPER) as r:
            assert r.status == 200
        # at most routing.wrapup_max_s (600 s) from the start of the wrap-up
        for _ in range(20):
            async with http.post(url, json={"extend_s": 600}, headers=AGENT1) as r:
                if r.status == 409:
                    assert (await r.json())["error"]["code"] == "agent.wrapup_max"
                    break
                assert r.status == 200
        agent = await store.get_agent("agent1")
        assert agent is not None
        assert agent["wrapup_until"] == int(agent["state_since"]) + int(settings.routing.wrapup_max_s * 1000)
    events = [e for e in await store.events_after("0", count=500) if e.type == "agent.wrapup_extended"]
    assert [e.data["by"] for e in events][:2] == ["agent1", "super1"]
    assert events[0].data["extended_s"] == 30


# records what the page does with notifications and WebAudio (the real ones still run underneath)
ALERT_SPY = """
window.__alerts = {notes: [], closed: [], tones: [], asked: 0};
const RealNotification = window.Notification;
class SpyNotification extends RealNotification {
  constructor(title, options) {
    super(title, options);
    window.__alerts.notes.push({title, body: options.body, tag: options.tag});
  }
  close() { window.__alerts.closed.push(this.tag); super.close(); }
}
SpyNotification.requestPermission = (...args) => {
  window.__alerts.asked += 1;
  return RealNotification.requestPermission(...args);
};
Object.defineProperty(SpyNotification, "permission", {get: () => RealNotification.permission});
window.Notification = SpyNotification;
const realStart = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...args) {
  window.__alerts.tones.push({hz: this.frequency.value, state: this.context.state});
  return realStart.apply(this, args);
};
"""


async def test_a_pop_rings_and_notifies_once_the_agent_turned_alerts_on(
        api: str, browser: Browser, store: QueueStore) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_init_script(ALERT_SPY)
    page = await context.new_page()
    tab = Tab(page)
    page.on("pageerror", lambda exc: tab.errors.append(f"uncaught: {exc}"))
    await page.goto(f"{api}/")
    await page.fill("#agent", "agent1")
    await page.fill("#token", "agent1-demo-token")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=TIMEOUT_MS)
    await page.click("#go-available")
    await expect(page.locator("#state")).to_have_text("available", timeout=TIMEOUT_MS)

    # alerts off: a pop stays silent, and nothing asked the browser for permission behind the agent's back
    await offer_call(store, "c0")
    await expect(page.locator("#pop")).to_have_attribute("data-alerted", "", timeout=TIMEOUT_MS)
    await store.end_call("c0", reason="caller_hangup", wrapup_s=0, ttl_s=3600)
    await expect(page.locator("#state")).to_have_text("available", timeout=TIMEOUT_MS)
    spy = await page.evaluate("window.__alerts")
    assert spy["asked"] == 0 and spy["tones"] == [] and spy["notes"] == []

    # the click asks for notifications (the browser's prompt); the agent allows them
    await page.click("#alerts-toggle")
    await expect(page.locator("#alerts-toggle")).to_have_attribute("aria-pressed", "true")
    assert (await page.evaluate("window.__alerts"))["asked"] == 1
    await context.grant_permissions(["notifications"])
    await expect(page.locator("#alerts-toggle")).to_have_attribute("data-status", re.compile("on|blocked"))

    await offer_call(store, "c1", ani="+15550001<b>x</b>")
    await expect(page.locator("#pop")).to_have_attribute("data-alerted", "sound notification", timeout=TIMEOUT_MS)
    spy = await page.evaluate("window.__alerts")
    assert sorted(t["hz"] for t in spy["tones"]) == [440, 480], "a two-tone ring made in the page"
    assert all(t["state"] == "running" for t in spy["tones"])
    assert spy["notes"] == [{"title": "Incoming call from +15550001<b>x</b>", "body": "Queue billing",
                             "tag": "call-c1"}]

    # answered: the notification goes away
    call = await store.get_call("c1")
    assert call is not None
    await store.offer_answered("c1", call["offer_id"])
    await expect(page.locator("#call-status")).to_have_text("Connected", timeout=TIMEOUT_MS)
    assert (await page.evaluate("window.__alerts"))["closed"] == ["call-c1"]
    # turning alerts off keeps the next pop silent again
    await page.click("#alerts-toggle")
    await expect(page.locator("#alerts-toggle")).to_have_attribute("aria-pressed", "false")
    tab.expect_no_errors()
    await context.close()


async def queue_caller(store: QueueStore, cid: str, queue: str, skill: str) -> None:
    await store.call_start(cid, "w0", ani="+15550009", dnis="1000", hotline="Demo hotline", language="en",
                           plan_version="v1")
    assert await store.enqueue(cid, queue=queue, skill=skill, priority=0, journey=journey()) is None


async def test_an_agent_sees_the_counts_of_its_own_queues_only(api: str, store: QueueStore) -> None:
    # nobody available: the callers wait in billing (agent1 and agent2), sales (agent1), support (agent2)
    await queue_caller(store, "c1", "billing", "billing")
    await queue_caller(store, "c2", "billing", "billing")
    await queue_caller(store, "c3", "support", "support")
    await queue_caller(store, "c4", "sales", "sales")
    await store.set_agent_state("agent2", AgentState.BREAK, "lunch")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api}/api/v1/agents/agent1/queues", headers=AGENT1) as r:
            assert r.status == 200
            body = await r.json()
        assert [q["queue"] for q in body["queues"]] == ["billing", "sales"]
        billing = body["queues"][0]
        assert billing["waiting"] == 2 and billing["longest_wait_s"] >= 0
        assert billing["agents"]["break"] == 1, "counts of the queue's agents, not who they are"
        assert set(billing) == {"queue", "skill", "waiting", "longest_wait_s", "agents"}
        async with http.get(f"{api}/api/v1/agents/agent2/queues", headers=AGENT1) as r:
            assert r.status == 403
        async with http.get(f"{api}/api/v1/agents/agent2/queues", headers=SUPER) as r:
            assert [q["queue"] for q in (await r.json())["queues"]] == ["billing", "support"]
        async with http.get(f"{api}/api/v1/agents/{'x' * 200}/queues", headers=SUPER) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "agent.not_found"


async def test_the_desktop_shows_my_queues(api: str, browser: Browser, store: QueueStore) -> None:
    await queue_caller(store, "c1", "billing", "billing")
    await queue_caller(store, "c3", "support", "support")
    tab = await desktop(browser, api)
    page = tab.page
    row = page.locator("#queue-rows tr[data-queue=billing]")
    await expect(row.locator("[data-figure=waiting]")).to_have_text("1", timeout=TIMEOUT_MS)
    await expect(row.locator("[data-figure=longest-wait]")).to_have_text(re.compile(r"^0:\d\d$"))
    await expect(page.locator("#queue-rows tr[data-queue=support]")).to_have_count(0)
    # agent1 takes the caller: the count follows without a reload
    offer = await store.set_agent_state("agent1", AgentState.AVAILABLE)
    assert offer is not None
    await store.offer_answered("c1", offer.offer_id)
    await expect(row.locator("[data-figure=waiting]")).to_have_text("0", timeout=TIMEOUT_MS)
    await expect(row.locator("[data-figure=longest-wait]")).to_have_text("—")
    tab.expect_no_errors()


async def test_the_desktop_lists_and_searches_my_calls(api: str, browser: Browser, store: QueueStore) -> None:
    """GET /api/v1/calls (issue 17 contract): the agent's own calls, newest first, searched by number
    prefix and outcome, a page at a time."""
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    for i in range(21):
        cid = f"c{i:02d}"
        offer_id = await offer_call(store, cid, ani=f"+1555{'7' if i == 20 else '0'}{i:04d}")
        await store.offer_answered(cid, offer_id)
        await store.end_call(cid, reason="caller_hangup", wrapup_s=0, ttl_s=3600)
    await store.record_disposition("c20", "resolved", "all good", "agent1")
    # agent2's call is not agent1's business
    await store.set_agent_state("agent1", AgentState.BREAK)
    await store.set_agent_state("agent2", AgentState.AVAILABLE)
    await store.call_start("b1", "w0", ani="+15557777", dnis="1000", hotline="Demo hotline", language="en",
                           plan_version="v1")
    offer = await store.enqueue("b1", queue="billing", skill="billing", priority=0, journey=journey())
    assert offer is not None and offer.agent_id == "agent2"
    await store.offer_answered("b1", offer.offer_id)
    await store.end_call("b1", reason="caller_hangup", wrapup_s=0, ttl_s=3600)

    tab = await desktop(browser, api)
    page = tab.page
    await page.click("#history-card summary")
    rows = page.locator("#history-rows tr")
    await expect(rows).to_have_count(20, timeout=TIMEOUT_MS)
    await expect(rows.first).to_have_attribute("data-call-id", "c20")
    await expect(rows.first).to_contain_text("+155570020")
    await expect(rows.first).to_contain_text("resolved")
    await page.click("#history-more")
    await expect(rows).to_have_count(21, timeout=TIMEOUT_MS)
    await expect(page.locator("#history-more")).to_be_hidden()
    assert await page.locator("#history-rows tr[data-call-id=b1]").count() == 0

    await page.fill("#history-number", "+15557")
    await page.click("#history-search")
    await expect(rows).to_have_count(1, timeout=TIMEOUT_MS)
    await expect(rows.first).to_have_attribute("data-call-id", "c20")
    await page.fill("#history-number", "")
    await page.select_option("#history-outcome", "abandoned")
    await page.click("#history-search")
    await expect(page.locator("#history-status")).to_have_text("No calls found.", timeout=TIMEOUT_MS)
    tab.expect_no_errors()


async def test_the_call_buttons_follow_the_call_control_events(api: str, browser: Browser) -> None:
    """callcontrol.js on its own (a unit test in the page: the events of the contract, fed by hand):
    each step shows and enables only the buttons that make sense. tests/e2e/test_pages.py drives the
    same buttons against a real hotline."""
    tab = await open_tab(browser, f"{api}/")
    steps = await tab.page.evaluate("""async () => {
        const {CallControls, applyControl} = await import('/static/callcontrol.js');
        const call = {call_id: "c1", offer_id: "c1.1", status: "ringing", held: false, muted: false};
        const controls = new CallControls({login: () => ({agent: "agent1", token: "t"}), call: () => call,
                                           error: () => {}});
        const $ = (id) => document.getElementById(id);
        const shown = (id) => !$(id).hidden;
        const enabled = (id) => !$(id).disabled;
        const snap = () => ({
            note: $("call-note").hidden ? "" : $("call-note").textContent,
            reject: shown("call-reject"), hangup: shown("call-hangup"), controls: shown("call-controls"),
            state: $("call-controls").dataset.state, hold: $("cc-hold").textContent, holdOn: enabled("cc-hold"),
            mute: $("cc-mute").textContent, transfer: enabled("cc-transfer"), consult: enabled("cc-consult"),
            consultBar: shown("consult-bar"), complete: enabled("cc-complete"), cancel: enabled("cc-cancel"),
            conferenceBar: shown("conference-bar"), keypad: enabled("cc-keypad"), dial: enabled("dial-go"),
            line: $("consult-bar").hidden ? $("conference-line").textContent : $("consult-line").textContent});
        const out = {};
        const step = (name, ev) => {
            if (ev) out[name + ":applied"] = applyControl(call, ev, "agent1");
            controls.render();
            out[name] = snap();
        };
        step("ringing");
        call.status = "connected";
        step("connected");
        step("held", {type: "call.held", call_id: "c1", agent_id: "agent1", by: "agent1"});
        step("resumed", {type: "call.resumed", call_id: "c1", agent_id: "agent1", by: "agent1", held_s: 2.5});
        step("redial", {type: "call.resumed", call_id: "c1", from: "abandon", queue: "billing"});
        step("muted", {type: "call.muted", call_id: "c1", agent_id: "agent1", by: "agent1"});
        step("consulting", {type: "call.consult_started", call_id: "c1", agent_id: "agent1", target_type: "agent",
                            target: "agent2", target_agent_id: "agent2"});
        step("consult_answered", {type: "call.consult_answered", call_id: "c1", agent_id: "agent1",
                                  target_agent_id: "agent2"});
        step("swapped", {type: "call.consult_swapped", call_id: "c1", agent_id: "agent1", talking_to: "caller"});
        step("conference", {type: "call.conferenced", call_id: "c1", agent_id: "agent1",
                            agents: ["agent1", "agent2"]});
        step("left", {type: "call.conference_left", call_id: "c1", agent_id: "agent1", by: "agent1"});
        return out;
    }""")
    ringing = steps["ringing"]
    assert ringing["reject"] and not ringing["hangup"] and not ringing["controls"] and not ringing["dial"]
    assert "Pick up your phone" in ringing["note"]
    connected = steps["connected"]
    assert connected["hangup"] and connected["controls"] and not connected["reject"] and not connected["note"]
    assert connected["hold"] == "Hold" and connected["holdOn"] and connected["transfer"] and connected["consult"]
    assert connected["keypad"] and not connected["consultBar"] and not connected["dial"]
    assert steps["held"]["hold"] == "Resume" and steps["held"]["state"] == "held"
    assert steps["resumed"]["hold"] == "Hold" and steps["resumed"]["state"] == "connected"
    assert steps["redial:applied"] is False and steps["redial"]["hold"] == "Hold"  # version 1's call.resumed
    assert steps["muted"]["mute"] == "Unmute"
    consulting = steps["consulting"]
    assert consulting["consultBar"] and consulting["state"] == "consulting"
    assert not consulting["complete"] and consulting["cancel"], "complete once the target answered"
    assert not consulting["holdOn"] and not consulting["transfer"] and not consulting["consult"]
    assert "Calling agent agent2" in consulting["line"]
    assert steps["consult_answered"]["complete"] and "Talking to agent agent2" in steps["consult_answered"]["line"]
    assert "Talking to the caller" in steps["swapped"]["line"]
    conference = steps["conference"]
    assert conference["conferenceBar"] and not conference["consultBar"] and conference["state"] == "conferenced"
    assert "agent1, agent2" in conference["line"] and not conference["holdOn"]
    left = steps["left"]
    assert not left["controls"] and not left["hangup"] and left["dial"]
    tab.expect_no_errors()


async def test_the_consulted_agents_desktop_ends_its_consult_when_the_first_agent_cancels(
        api: str, browser: Browser) -> None:
    """callcontrol.js for the consulted agent: call.consult_cancelled / _failed name it
    (target_agent_id), so its page leaves the consult instead of showing a call that is gone."""
    tab = await open_tab(browser, f"{api}/")
    out = await tab.page.evaluate("""async () => {
        const {applyControl} = await import('/static/callcontrol.js');
        const seen = {};
        for (const type of ["call.consult_cancelled", "call.consult_failed"]) {
            const call = {call_id: "c1", status: "ringing", consult_from: "agent1"};
            applyControl(call, {type: "call.consult_answered", call_id: "c1", agent_id: "agent1",
                                target_agent_id: "agent2"}, "agent2");
            const talking = call.status;
            applyControl(call, {type, call_id: "c1", agent_id: "agent1", by: "agent1", reason: "x",
                                target_agent_id: "agent2"}, "agent2");
            const other = {call_id: "c1", status: "connected", consult_from: "agent1"};
            applyControl(other, {type, call_id: "c1", agent_id: "agent1", target_agent_id: "agent3"}, "agent2");
            seen[type] = [talking, call.status, call.consult_from, other.status];
        }
        return seen;
    }""")
    for type_, (talking, after, consult_from, other) in out.items():
        assert talking == "connected" and after == "left" and consult_from is None, (type_, out)
        assert other == "connected", "an event naming another agent changes nothing here"
    tab.expect_no_errors()


async def test_rejecting_an_offer_is_checked_before_it_reaches_a_worker(api: str, store: QueueStore) -> None:
    """The refusals the API decides itself (tests/e2e/test_pages.py rejects a ringing offer for real)."""
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    offer_id = await offer_call(store, "c1")
    url = f"{api}/api/v1/calls/c1/reject"
    agent2 = {"Authorization": "Bearer agent2-demo-token"}
    async with aiohttp.ClientSession() as http:
        for bad in ({}, {"offer_id": ""}, {"offer_id": 5}, {"offer_id": "x" * 201}, {"offer_id": offer_id, "x": 1}):
            async with http.post(url, json=bad, headers=AGENT1) as r:
                assert r.status == 400, bad
        async with http.post(url, json={"offer_id": offer_id}, headers=agent2) as r:
            assert r.status == 403, "another agent's offer"
        async with http.post(f"{api}/api/v1/calls/nope/reject", json={"offer_id": "nope.1"}, headers=AGENT1) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "call.not_found"
        async with http.post(url, json={"offer_id": "c1.7"}, headers=AGENT1) as r:
            assert r.status == 409 and (await r.json())["error"]["code"] == "offer.stale"
        await store.offer_answered("c1", offer_id)
        async with http.post(url, json={"offer_id": offer_id}, headers=AGENT1) as r:
            body = await r.json()
            assert r.status == 409 and body["error"]["code"] == "offer.stale"
            assert "connected" in body["error"]["message"]
        await store.end_call("c1", reason="caller_hangup", wrapup_s=0, ttl_s=3600)
        async with http.post(url, json={"offer_id": offer_id}, headers=SUPER) as r:
            assert r.status == 409 and (await r.json())["error"]["code"] == "call.ended"


async def test_the_wallboard_marks_agents_by_the_call_control_events(api: str, browser: Browser) -> None:
    """callcontrol.js's floorControl on its own (the wallboard's rows follow it; tests/e2e/test_pages.py
    watches a real hold on the wallboard)."""
    tab = await open_tab(browser, f"{api}/wallboard")
    marks = await tab.page.evaluate("""async () => {
        const {floorControl} = await import('/static/callcontrol.js');
        const agents = new Map([["a1", {agent_id: "a1"}], ["a2", {agent_id: "a2"}], ["a3", {agent_id: "a3"}]]);
        const out = [];
        const feed = (ev) => {
            const took = floorControl(agents, {call_id: "c1", ...ev});
            out.push([ev.type, took, agents.get("a1").control || "", agents.get("a2").control || "",
                      Boolean(agents.get("a1").muted)]);
        };
        feed({type: "call.held", agent_id: "a1", by: "a1"});
        feed({type: "call.resumed", agent_id: "a1", by: "a1", held_s: 1.5});
        feed({type: "call.resumed", from: "abandon", queue: "q"});
        feed({type: "call.muted", agent_id: "a1", by: "a1"});
        feed({type: "call.consult_started", agent_id: "a1", target_type: "agent", target: "a2", target_agent_id: "a2"});
        feed({type: "call.conferenced", agent_id: "a1", agents: ["a1", "a2"]});
        feed({type: "call.conference_left", agent_id: "a1", by: "a1"});
        feed({type: "call.transferred", agent_id: "a2", from_agent: "a2", by: "a2", target_type: "queue",
              target: "q", mode: "blind"});
        feed({type: "call.ended", agent_id: "a1"});
        return out;
    }""")
    assert marks == [
        ["call.held", True, "held", "", False],
        ["call.resumed", True, "", "", False],
        ["call.resumed", False, "", "", False],
        ["call.muted", True, "", "", True],
        ["call.consult_started", True, "consulting", "consulting", True],
        ["call.conferenced", True, "conference", "conference", True],
        ["call.conference_left", True, "", "conference", False],
        ["call.transferred", True, "", "", False],
        ["call.ended", False, "", "", False],
    ]
    tab.expect_no_errors()


async def test_the_desktop_shows_whether_a_registering_phone_is_registered(
        api: str, browser: Browser, store: QueueStore) -> None:
    """An agent whose phone registers at the edge sees its phone's state, kept live by agent.phone
    (written here as the edge's poller writes it, ivr/runtime/phones.py); a fixed SIP URI shows none."""
    tab2 = await desktop(browser, api, "agent2", "agent2-demo-token")
    await expect(tab2.page.locator("#phone-line")).to_be_hidden()
    await store.register_agent("agent1", name="Ada", skills={"billing": 4}, sip_uri="sip:agent1@127.0.0.1",
                               languages=["en"], phone="registered")
    tab = await desktop(browser, api)
    page = tab.page
    await expect(page.locator("#phone-state")).to_have_text("not registered", timeout=TIMEOUT_MS)
    await expect(page.locator("#phone-hint")).to_contain_text("No calls will be offered")
    await store.record_phones({"agent1": 2}, stale_after_s=60, source="edge-a")
    await expect(page.locator("#phone-state")).to_have_text("registered (2 devices)", timeout=TIMEOUT_MS)
    await expect(page.locator("#phone-state")).to_have_attribute("data-registered", "true")
    await expect(page.locator("#phone-hint")).to_have_text("")
    await store.record_phones({}, stale_after_s=60, source="edge-a")
    await expect(page.locator("#phone-state")).to_have_text("not registered", timeout=TIMEOUT_MS)
    await expect(page.locator("#activity")).to_contain_text("Phone unregistered")
    tab.expect_no_errors()
    tab2.expect_no_errors()


async def test_the_wallboard_marks_agents_whose_registering_phone_is_not_registered(
        api: str, browser: Browser, store: QueueStore) -> None:
    await store.register_agent("agent1", name="Ada", skills={"billing": 4}, sip_uri="sip:agent1@127.0.0.1",
                               languages=["en"], phone="registered")
    tab = await open_tab(browser, f"{api}/wallboard")
    page = tab.page
    await page.fill("#token", "super1-demo-token")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=TIMEOUT_MS)
    row, other = (page.locator(f"#agent-rows tr[data-agent-id={a}]") for a in ("agent1", "agent2"))
    await expect(row).to_contain_text("no phone", timeout=TIMEOUT_MS)
    await expect(other).to_be_visible()
    await expect(other).not_to_contain_text("no phone")  # a fixed SIP URI has no registration
    await store.record_phones({"agent1": 1}, stale_after_s=60, source="edge-a")
    await expect(row).not_to_contain_text("no phone", timeout=TIMEOUT_MS)
    await store.record_phones({}, stale_after_s=60, source="edge-a")
    await expect(row).to_contain_text("no phone", timeout=TIMEOUT_MS)
    tab.expect_no_errors()
