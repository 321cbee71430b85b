"""Headless Chromium for the page tests: Debian's ``/usr/bin/chromium`` driven by Playwright (its own
browser downloads are never used), a tab that records the page's console errors, and the directory
screenshots are kept in (``test-artifacts/`` at the repository root, or ``$IVR_TEST_ARTIFACTS``)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]


def artifacts_dir() -> Path:
    path = Path(os.environ.get("IVR_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def chromium_path() -> str:
    assert Path(CHROMIUM).is_file(), "chromium is installed by deploy/install-system.sh"
    return CHROMIUM


@asynccontextmanager
async def chromium(args: Sequence[str] = ()) -> AsyncIterator[Browser]:
    """Headless Chromium; ``args``: extra command-line switches (e.g. a fake microphone playing a WAV)."""
    executable = chromium_path()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, headless=True, args=list(args))
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Tab:
    """A page in its own browser context (its own sessionStorage) and the errors it logged."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def expect_no_errors(self, *allowed: str) -> None:
        """No console error or uncaught exception, except those matching an ``allowed`` pattern."""
        unexpected = [e for e in self.errors if not any(re.search(a, e) for a in allowed)]
        assert not unexpected, f"errors in the page: {unexpected}"

    async def screenshot(self, name: str) -> Path:
        path = artifacts_dir() / name
        await self.page.screenshot(path=str(path), full_page=True)
        return path


async def open_tab(browser: Browser, url: str) -> Tab:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    tab = Tab(page)

    def console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            tab.errors.append(f"console: {msg.text}")

    page.on("console", console)
    page.on("pageerror", lambda exc: tab.errors.append(f"uncaught: {exc}"))
    await page.goto(url)
    return tab
