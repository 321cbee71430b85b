"""Screen-pop delivery: reads the event stream and pushes each agent's events to its WebSockets.

* After ``call.offered`` has been written to at least one of the agent's sockets, the hub
  acknowledges the offer so the worker may ring the agent's phone: the pop always comes first.
* Every event carries its stream id. A desktop that reconnects with the last id it saw gets the
  events it missed, then the live ones, each once and in order (:meth:`PopHub.serve`). When the
  id is older than the capped stream keeps, it gets ``replay.gap`` first (refresh the state).
* Any number of API instances can run: each reads the whole stream and serves its own sockets.
* A page that asks for it (``?ack=client``) acks each pop itself once it is on screen; the worker
  rings only then (or after ``api.pop_wait_ms``). Other clients are acked when the pop is written.
* An idle socket gets ``{"type": "ping"}`` every 15 s: a page that hears nothing for longer knows
  its socket is half-open and reconnects.
* Supervisors may subscribe to every agent's events (``"*"``), for the wallboard.
* Each socket has its own queue and writer, so a slow socket or a slow CRM never holds the others.
* ``enrich`` (the CRM connector) adds to a pop (and to a follow-up task offered) before it is sent;
  ``observe_pop`` gets the latency from the offer (its time in Redis) to the write on the socket (the
  ``/metrics`` histogram).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from aiohttp import web
from redis.exceptions import RedisError

from ivr.core.event_catalogue import AGENT, FLOOR, with_audience
from ivr.core.logging import get_logger
from ivr.queues.connection import BLOCK_S, keep_running
from ivr.queues.store import QueueStore, StreamEvent

log = get_logger(__name__)
#: an agent's desktop and the supervisors' feed ("*"): their audiences in the event catalogue
AGENT_EVENTS = with_audience(AGENT)
FLOOR_EVENTS = with_audience(FLOOR)
#: CRM matches that are settled (stored on the call, never looked up again); timeout/error may be retried
SETTLED_CRM = frozenset({"matched", "multiple", "none"})
ALL = "*"
REPLAY_MAX = 10_000  # events scanned for one reconnect at most
QUEUE_MAX = 1000  # events waiting for one socket at most
PING_S = 15.0  # an idle socket gets {"type": "ping"} this often


def id_key(event_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair (``"1700000000000-3"`` -> (1700000000000, 3))."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def agents_named(ev: StreamEvent) -> set[str]:
    """The agents whose desktops see ``ev``: its ``agent_id``, and for call control the consulted
    agent (``target_agent_id``) and a conference's agents (``agents``). A supervisor's listen that the
    agent is not told of (``call.monitor`` without ``agent_sees``) names nobody."""
    if ev.type == "call.monitor" and ev.data.get("agent_sees") is not True:
        return set()
    named = {str(ev.data.get("agent_id") or ""), str(ev.data.get("target_agent_id") or "")}
    agents = ev.data.get("agents")
    if isinstance(agents, list):
        named.update(a for a in agents if isinstance(a, str))
    named.discard("")
    return named


def valid_id(event_id: str) -> bool:
    """A stream id as ``1700000000000-3`` or ``1700000000000`` (ASCII digits only: ``"²".isdigit()``)."""
    return re.fullmatch(r"[0-9]{1,15}(-[0-9]{1,15})?", event_id) is not None


class Enricher(Protocol):
    """Adds to a pop before it is sent (the CRM connector, :mod:`ivr.cti.crm`)."""

    async def for_pop(self, ev: StreamEvent) -> dict[str, Any]: ...

    async def for_task(self, ev: StreamEvent) -> dict[str, Any]:
        """The same for a follow-up task offered to an agent (``case.task_offered``: its customer)."""

    async def warm(self, ev: StreamEvent) -> None:
        """A call was queued: look its CRM record up now, so the pop finds it ready."""


class Desktop:
    """One WebSocket of one agent (or of a supervisor, ``agent_id == "*"``). Events wait in a bounded
    queue written by :meth:`PopHub.serve`; a desktop too slow to keep up is closed (it reconnects
    with its last id and misses nothing)."""

    def __init__(self, agent_id: str, ws: web.WebSocketResponse, *, client_ack: bool = False) -> None:
        self.agent_id = agent_id
        self.ws = ws
        self.client_ack = client_ack  # the page acks each pop once it is on screen
        self.offers: set[str] = set()  # pops sent and not yet acked by the page
        self.last: tuple[int, int] = (0, 0)
        self.queue: asyncio.Queue[StreamEvent] = asyncio.Queue(QUEUE_MAX)

    def wants(self, ev: StreamEvent) -> bool:
        if self.agent_id == ALL:
            return ev.type in FLOOR_EVENTS
        return ev.type in AGENT_EVENTS and self.agent_id in agents_named(ev)


class PopHub:
    def __init__(self, store: QueueStore, *, enrich: Enricher | None = None,
                 observe_pop: Callable[[float], None] | None = None) -> None:
        self.store = store
        self.instance = uuid.uuid4().hex[:8]
        self.sockets: dict[str, set[Desktop]] = defaultdict(set)
        self.enrich = enrich
        self.observe_pop = observe_pop
        self._background: set[asyncio.Task[Any]] = set()

    def add(self, agent_id: str, ws: web.WebSocketResponse, *, client_ack: bool = False) -> Desktop:
        """Register a socket: live events queue up for it from now on (see :meth:`serve`)."""
        desk = Desktop(agent_id, ws, client_ack=client_ack)
        self.sockets[agent_id].add(desk)
        return desk

    def remove(self, desk: Desktop) -> None:
        self.sockets[desk.agent_id].discard(desk)
        if not self.sockets[desk.agent_id]:
            del self.sockets[desk.agent_id]

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` in the background (CRM warm-ups, closing a slow socket); :meth:`close` ends it."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Cancel the background work still running (at shutdown)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def connected(self, agent_id: str) -> bool:
        return bool(self.sockets.get(agent_id))

    async def serve(self, desk: Desktop, last_id: str | None) -> None:
        """Send ``desk`` what it missed after ``last_id`` (None: nothing to replay), then the live
        events, until the socket closes or falls too far behind."""
        if last_id is not None:
            await self._replay(desk, last_id)
        while not desk.ws.closed:
            try:
                ev = await asyncio.wait_for(desk.queue.get(), PING_S)
            except TimeoutError:  # idle: a ping lets the page see a half-open socket
                await self._write(desk, {"type": "ping", "ts": int(time.time() * 1000)})
                continue
            await self._send(desk, ev)

    async def client_acked(self, desk: Desktop, offer_id: str) -> bool:
        """The page says the pop of ``offer_id`` is on screen: now the agent's phone may ring."""
        if offer_id not in desk.offers:
            return False
        desk.offers.discard(offer_id)
        await self.store.ack_pop(offer_id)
        log.info("pop.acked", agent_id=desk.agent_id, offer_id=offer_id)
        return True

    async def close_sockets(self) -> None:
        """At shutdown: close every socket (1001), so desktops reconnect to another instance at once."""
        for desk in [d for desks in self.sockets.values() for d in desks]:
            with contextlib.suppress(Exception):
                await desk.ws.close(code=1001, message=b"server shutting down")

    async def _replay(self, desk: Desktop, last_id: str) -> None:
        desk.last = id_key(last_id)
        first = await self.store.first_event_id()
        if first is not None and id_key(first) > desk.last and desk.last != (0, 0):
            await self._write(desk, {"type": "replay.gap", "oldest": first})
        cursor, scanned, sent = last_id, 0, 0
        while scanned < REPLAY_MAX:
            batch = await self.store.events_after(cursor, count=500)
            if not batch:
                break
            for ev in batch:
                if desk.wants(ev) and await self._send(desk, ev):
                    sent += 1
            cursor, scanned = batch[-1].id, scanned + len(batch)
        log.info("desktop.replayed", agent_id=desk.agent_id, events=sent)

    async def presence(self) -> None:
        """Keep the 'desktop open' marks of connected agents fresh."""
        async def mark() -> float:
            for agent_id in list(self.sockets):
                if agent_id != ALL:
                    await self.store.mark_desktop(agent_id, self.instance)
            return 5.0

        await keep_running("presence", mark, event="api.redis_unavailable", pause_on_error_s=5.0)

    async def pump(self) -> None:
        last = await self.store.last_event_id()

        async def read() -> float:
            nonlocal last
            for ev in await self.store.read_events(last, block_ms=int(BLOCK_S * 1000)):
                last = ev.id
                await self.dispatch(ev)
            return 0

        await keep_running("pump", read, event="api.redis_unavailable")

    async def dispatch(self, ev: StreamEvent) -> None:
        """Queue ``ev`` for the sockets that want it (never waits on a socket)."""
        if ev.type == "call.queued" and self.enrich is not None:
            self._spawn(self.enrich.warm(ev))
        if ev.type not in FLOOR_EVENTS and ev.type not in AGENT_EVENTS:
            return
        desks = [d for agent in sorted(agents_named(ev)) for d in self.sockets.get(agent, ())]
        desks += self.sockets.get(ALL, ())
        for desk in desks:
            if not desk.wants(ev):
                continue
            try:
                desk.queue.put_nowait(ev)
            except asyncio.QueueFull:
                log.warning("desktop.too_slow", agent_id=desk.agent_id)
                self.remove(desk)  # closed in the background: the pump never waits on a slow peer
                self._spawn(desk.ws.close(code=1013, message=b"too slow: reconnect with your last event id"))

    async def _crm(self, ev: StreamEvent) -> dict[str, Any]:
        """The pop's CRM match: the one stored on the call (a replay, another desktop or instance)
        or a lookup now, stored once it is settled so it is never looked up again."""
        assert self.enrich is not None
        call_id = str(ev.data.get("call_id") or "")
        with contextlib.suppress(RedisError):
            stored = await self.store.stored_crm(call_id)
            if stored is not None:
                return stored
        crm: dict[str, Any] = (await self.enrich.for_pop(ev)).get("crm") or {}
        if crm.get("status") in SETTLED_CRM:
            with contextlib.suppress(RedisError):
                await self.store.record_crm(call_id, crm, agent_id=str(ev.data.get("agent_id") or ""))
        return crm

    async def _write(self, desk: Desktop, message: dict[str, Any]) -> bool:
        try:
            await desk.ws.send_str(json.dumps(message))
            return True
        except (ConnectionResetError, RuntimeError):
            return False

    async def _send(self, desk: Desktop, ev: StreamEvent) -> bool:
        """Write ``ev`` once (never an id at or before the last one written); a pop acks its offer."""
        key = id_key(ev.id)
        if key <= desk.last:
            return False
        desk.last = key
        message: dict[str, Any] = {"id": ev.id, "type": ev.type, **ev.data}
        if desk.agent_id != ALL and self.enrich is not None:  # the floor feed carries no customer data
            if ev.type == "call.offered":
                message["crm"] = await self._crm(ev)
            elif ev.type == "case.task_offered":  # the task card shows the customer's record
                message["crm"] = (await self.enrich.for_task(ev)).get("crm") or {}
        if not await self._write(desk, message):
            return False
        if ev.type == "call.offered" and desk.agent_id != ALL:
            latency = time.time() - float(ev.data.get("ts") or id_key(ev.id)[0]) / 1000.0
            if self.observe_pop is not None:
                self.observe_pop(max(latency, 0.0))
            log.info("pop.sent", call_id=ev.data.get("call_id"), agent_id=desk.agent_id,
                     ms=round(latency * 1000, 1))
            if desk.client_ack:
                desk.offers.add(ev.data["offer_id"])  # acked by the page (or pop_wait_ms passes)
                if len(desk.offers) > 100:
                    desk.offers.pop()
            else:
                with contextlib.suppress(RedisError):
                    await self.store.ack_pop(ev.data["offer_id"])
        return True
