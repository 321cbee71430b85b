"""Fixtures every service test module may use."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from playwright.async_api import Browser

from tests.browser import chromium


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for the test's real servers."""
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium (the page tests)."""
    async with chromium() as b:
        yield b
