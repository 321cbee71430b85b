"""The real CTI API app on its own event loop in a thread, for synchronous clients (schemathesis)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from ivr.core.config import Settings
from ivr.cti.app import init_app
from ivr.cti.server import ApiRunner


@contextmanager
def live_api(settings: Settings) -> Iterator[str]:
    """Serve ``init_app(settings)`` on 127.0.0.1:``settings.api.port`` until the block ends; yields its URL."""
    loop = asyncio.new_event_loop()
    runner = ApiRunner(init_app(settings), settings)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.api.port).start()

    thread = threading.Thread(target=loop.run_forever, name="live-api", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        yield f"http://127.0.0.1:{settings.api.port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
