"""Screen-pop delivery: reads the event stream and pushes each agent's events to its WebSockets.

After ``call.offered`` has been written to at least one of the agent's sockets, the hub
acknowledges the offer so the worker may ring the agent's phone: the pop always comes first.
Any number of API instances can run: each reads the whole stream and serves its own sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import defaultdict
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from ivr.core.logging import get_logger
from ivr.queues.connection import BLOCK_S
from ivr.queues.store import QueueStore, StreamEvent

log = get_logger(__name__)
AGENT_EVENTS = {"call.offered", "call.offer_failed", "call.answered", "call.ended", "agent.state"}


class PopHub:
    def __init__(self, store: QueueStore) -> None:
        self.store = store
        self.instance = uuid.uuid4().hex[:8]
        self.sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)

    def add(self, agent_id: str, ws: web.WebSocketResponse) -> None:
        self.sockets[agent_id].add(ws)

    def remove(self, agent_id: str, ws: web.WebSocketResponse) -> None:
        self.sockets[agent_id].discard(ws)
        if not self.sockets[agent_id]:
            del self.sockets[agent_id]

    async def presence(self) -> None:
        """Keep the 'desktop open' marks of connected agents fresh."""
        while True:
            try:
                for agent_id in list(self.sockets):
                    await self.store.mark_desktop(agent_id, self.instance)
            except RedisError as exc:
                log.warning("api.redis_unavailable", loop="presence", error=str(exc))
            await asyncio.sleep(5)

    async def pump(self) -> None:
        last = await self.store.last_event_id()
        while True:
            try:
                events = await self.store.read_events(last, block_ms=int(BLOCK_S * 1000))
            except RedisError as exc:
                log.warning("api.redis_unavailable", loop="pump", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            for ev in events:
                last = ev.id
                if ev.type in AGENT_EVENTS:
                    await self._dispatch(ev)

    async def _dispatch(self, ev: StreamEvent) -> None:
        agent_id = ev.data.get("agent_id") or ""
        if not agent_id:
            return
        sockets = list(self.sockets.get(agent_id, ()))
        message: dict[str, Any] = {"id": ev.id, "type": ev.type, **ev.data}
        sent = 0
        for ws in sockets:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await ws.send_str(json.dumps(message))
                sent += 1
        if ev.type == "call.offered":
            log.info("pop.sent", call_id=ev.data.get("call_id"), agent_id=agent_id, sockets=sent)
            if sent:
                await self.store.ack_pop(ev.data["offer_id"])
