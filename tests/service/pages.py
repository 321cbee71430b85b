"""What the page tests of the service tier share: the real CTI API served on a loopback port, and
signing in to the agent desktop in a Chromium tab (the ``browser`` fixture is in conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from playwright.async_api import Browser, expect

from ivr.core.config import DEMO_USERS, Settings
from ivr.cti.app import init_app
from tests.browser import Tab, open_tab
from tests.conftest import RedisServer, free_port

TIMEOUT_MS = 10_000


def page_settings(tmp_path: Path, redis_server: RedisServer, prefix: str, **more: Any) -> Settings:
    """The demo users on the test's Redis under ``prefix``, the API on a free loopback port."""
    return Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": prefix},
                    api={"host": "127.0.0.1", "port": free_port()}, **more)


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[str]:
    """The API of ``settings`` running; yields its base URL."""
    runner = web.AppRunner(init_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.api.port).start()
    try:
        yield f"http://127.0.0.1:{settings.api.port}"
    finally:
        await runner.cleanup()


async def desktop(browser: Browser, api: str, agent: str = "agent1", token: str | None = None) -> Tab:
    """A tab with the agent desktop, signed in as ``agent`` (its demo token by default) and connected."""
    tab = await open_tab(browser, f"{api}/")
    await tab.page.fill("#agent", agent)
    await tab.page.fill("#token", token or f"{agent}-demo-token")
    await tab.page.click("#login-form button[type=submit]")
    await expect(tab.page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=TIMEOUT_MS)
    return tab
