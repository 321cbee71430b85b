"""An agent's desktop as a test sees it: a real WebSocket client on the CTI API that records every
event with the time it arrived."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp


class AgentDesktop:
    def __init__(self, api: str, agent: str, token: str) -> None:
        self.url = f"{api}/api/v1/agents/{agent}/events"
        self.token = token
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.hello = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self, http: aiohttp.ClientSession) -> None:
        # compress=0: frames stay readable on the wire, for tests that check their order there
        async with http.ws_connect(self.url, headers={"Authorization": f"Bearer {self.token}"},
                                   compress=0) as ws:
            async for msg in ws:
                ev = json.loads(msg.data)
                self.events.append((time.time(), ev))
                if ev["type"] == "hello":
                    self.hello.set()

    async def start(self, http: aiohttp.ClientSession) -> None:
        self._task = asyncio.create_task(self._run(http), name="desktop")
        await asyncio.wait_for(self.hello.wait(), 10)

    async def wait_for(self, type_: str, timeout: float = 30) -> tuple[float, dict[str, Any]]:
        """The first event of ``type_`` (bounded wait)."""
        for _ in range(int(timeout / 0.05)):
            for item in self.events:
                if item[1]["type"] == type_:
                    return item
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {type_} event; got {[e['type'] for _, e in self.events]}")

    def of(self, call_id: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, e) for t, e in self.events if e.get("call_id") == call_id]

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
