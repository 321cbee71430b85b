"""Fixtures every service test module may use."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for the test's real servers."""
    async with aiohttp.ClientSession() as s:
        yield s
