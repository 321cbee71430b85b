"""The wallboard's alert banner in headless Chromium, against the real API with its evaluator running on
a real Redis: an alert active at sign-in shows (and clears); a real condition (a caller waiting over a
threshold of 0) raises an alert that shows with its severity, queue and message, is acknowledged from
the page (dimmed, its sound stopped), is listed in the alert history, and leaves the banner when the
caller leaves the queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, expect
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, AlertRule, Settings
from ivr.cti.app import init_app
from ivr.queues.alerts_store import AlertStore
from ivr.queues.store import QueueStore
from tests.browser import chromium, open_tab
from tests.conftest import RedisServer, free_port

PREFIX = "alertswb"
TIMEOUT_MS = 10_000


@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    rule = AlertRule(name="callers_waiting", metric="waiting", threshold=0, for_s=0, clear_for_s=0,
                     severity="critical", sound=True)
    return Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                    api={"host": "127.0.0.1", "port": free_port()}, speech={"enabled": False},
                    alerts={"evaluate_s": 0.2, "rules": [rule]})


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[str]:
    runner = web.AppRunner(init_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.api.port).start()
    yield f"http://127.0.0.1:{settings.api.port}"
    await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


async def test_the_wallboard_shows_acknowledges_and_clears_an_alert(api: str, browser: Browser, redis: Redis) -> None:
    store = QueueStore(redis, prefix=PREFIX)
    # an alert already active when the supervisor signs in comes from GET /api/v1/alerts
    await store.call_start("c0", "w0", ani="+15550000", dnis="1000", hotline="demo", language="en",
                           plan_version="v1")
    assert await store.enqueue("c0", queue="sales", skill="sales", priority=0, journey={"steps": []}) is None
    alerts = AlertStore(redis, PREFIX)
    for _ in range(200):
        if await alerts.active():
            break
        await asyncio.sleep(0.05)
    tab = await open_tab(browser, f"{api}/wallboard")
    page = tab.page
    await page.fill("#token", "super1-demo-token")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=TIMEOUT_MS)
    banner = page.locator("#alert-banner")
    sales = banner.locator(".alert-item[data-queue=sales]")
    await expect(sales).to_have_count(1, timeout=TIMEOUT_MS)
    await expect(banner).to_contain_text("1 active alert")
    await store.leave_queue("c0", "timeout")
    await expect(sales).to_have_count(0, timeout=TIMEOUT_MS)
    await expect(banner).to_contain_text("No active alerts", timeout=TIMEOUT_MS)
    await page.click("#alert-banner .alert-sound")  # the sound needs a click (WebAudio)
    await expect(page.locator("#alert-banner .alert-sound")).to_have_attribute("aria-pressed", "true")

    # a caller waits with nobody to answer: the evaluator raises the alert, the feed brings it
    await store.call_start("c1", "w0", ani="+15550001", dnis="1000", hotline="demo", language="en",
                           plan_version="v1")
    assert await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={"steps": []}) is None
    item = banner.locator(".alert-item[data-rule=callers_waiting][data-queue=billing]")
    await expect(item).to_have_attribute("data-severity", "critical", timeout=TIMEOUT_MS)
    await expect(item.locator(".alert-queue")).to_have_text("billing")
    await expect(item.locator(".alert-message")).to_have_text("callers waiting 1 above 0")
    await expect(banner).to_have_attribute("data-severity", "critical")
    await expect(banner).to_have_attribute("data-sounding", "true")
    await tab.screenshot("wallboard-alert.png")

    # acknowledged from the page: dimmed, silent, still there
    await item.locator("button.alert-ack").click()
    await expect(item).to_have_attribute("data-acked", "true", timeout=TIMEOUT_MS)
    await expect(item).to_contain_text("acknowledged by super1")
    await expect(banner).to_have_attribute("data-sounding", "false")
    await page.click("#alert-banner .alert-history-toggle")
    past = page.locator("#alert-history .alert-past")
    past = past.filter(has_text="billing")
    await expect(past).to_have_count(1, timeout=TIMEOUT_MS)
    await expect(past).to_contain_text("billing: callers waiting 1 above 0")
    await expect(past).to_contain_text("active · acknowledged by super1")

    # the caller leaves: the alert clears on the banner and the history says so
    await store.leave_queue("c1", "timeout")
    await expect(item).to_have_count(0, timeout=TIMEOUT_MS)
    await expect(banner).to_contain_text("No active alerts")
    await expect(past).to_have_attribute("data-cleared", "true", timeout=TIMEOUT_MS)
    await expect(past).to_contain_text("cleared")
    tab.expect_no_errors()
