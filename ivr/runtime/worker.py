"""The worker role: one pjsua2 endpoint (at most 4 legs) running calls through their dial plans."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import uuid

import structlog
from redis.asyncio import Redis

from ivr.core.config import Settings
from ivr.core.logging import get_logger
from ivr.dialplan.loader import PlanRegistry
from ivr.prompts.library import PromptLibrary
from ivr.prompts.moh import music_on_hold
from ivr.queues.store import QueueStore
from ivr.runtime.session import CallSession, WorkerContext
from ivr.runtime.tasks import TaskGroup
from ivr.sip.bridge import SipThread
from ivr.sip.engine import EngineConfig
from ivr.sip.events import Disconnected, IncomingCall, Rejected, SipEvent
from ivr.sip.legs import Leg

log = get_logger(__name__)


def new_call_id() -> str:
    return uuid.uuid4().hex[:16]


class Worker:
    def __init__(self, settings: Settings, index: int) -> None:
        self.settings = settings
        self.index = index
        self.name = f"w{index}"
        self.legs: dict[str, Leg] = {}
        self.sessions: dict[str, CallSession] = {}
        self.tasks = TaskGroup(f"worker.{self.name}")
        self.ctx: WorkerContext | None = None

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        structlog.contextvars.bind_contextvars(worker=self.name)
        redis = Redis.from_url(s.redis.dsn)
        store = QueueStore(redis, s.redis.prefix, s.routing.events_maxlen)
        plans = PlanRegistry.from_dir(s.dialplans_dir)
        prompts = PromptLibrary(s.prompts.dir, s.prompt_cache, s.workers.clock_rate, s.prompts.voices)
        moh = await asyncio.to_thread(music_on_hold, s.prompt_cache, s.workers.clock_rate, s.prompts.moh)
        w = s.workers
        sip = SipThread(
            EngineConfig(host=w.host, sip_port=w.sip_port(self.index), rtp_port=w.rtp_port(self.index),
                         rtp_port_range=w.rtp_ports_per_worker, max_legs=w.max_legs, clock_rate=w.clock_rate),
            self._on_event, poll_ms=w.poll_ms, new_leg_id=new_call_id)
        self.ctx = WorkerContext(self.name, s, store, sip, plans, prompts, str(moh), self._new_leg)
        await sip.start()
        self.tasks.spawn("inbox", self._inbox(store))
        self.tasks.spawn("heartbeat", self._heartbeat(store))
        self.tasks.spawn("wrapups", self._wrapups(store))
        log.info("worker.ready", sip_port=w.sip_port(self.index), pid=os.getpid())
        try:
            await stop.wait()
        finally:
            log.info("worker.stopping", calls=len(self.sessions))
            await self.tasks.cancel_all()
            await sip.stop()
            await redis.delete(store.keys.worker_alive(self.name))
            await redis.aclose()
            log.info("worker.stopped")

    def _new_leg(self) -> Leg:
        assert self.ctx is not None
        leg = Leg(self.ctx.sip, new_call_id())
        self.legs[leg.leg_id] = leg
        return leg

    def _on_event(self, event: SipEvent) -> None:
        assert self.ctx is not None
        if isinstance(event, IncomingCall):
            leg = Leg(self.ctx.sip, event.leg_id)
            self.legs[event.leg_id] = leg
            session = CallSession(self.ctx, leg, event)
            self.sessions[event.leg_id] = session
            task = self.tasks.spawn(f"call.{event.leg_id}", session.run())
            task.add_done_callback(functools.partial(self._session_done, event.leg_id))
            return
        if isinstance(event, Rejected):
            log.info("call.rejected", code=event.code, reason=event.reason)
            return
        known = self.legs.get(event.leg_id)
        if known is None:
            return
        known.feed(event)
        if isinstance(event, Disconnected):
            self.legs.pop(event.leg_id, None)

    def _session_done(self, call_id: str, _task: object) -> None:
        self.sessions.pop(call_id, None)

    async def _inbox(self, store: QueueStore) -> None:
        while True:
            offer = await store.next_offer(self.name, timeout_s=1.0)
            if offer is None:
                continue
            session = self.sessions.get(offer.call_id)
            if session is None:
                log.warning("offer.orphan", call_id=offer.call_id, offer_id=offer.offer_id)
                with contextlib.suppress(Exception):
                    await store.offer_failed(offer.call_id, offer.offer_id, "call_gone")
                continue
            session.deliver(offer)

    async def _heartbeat(self, store: QueueStore) -> None:
        while True:
            await store.redis.set(store.keys.worker_alive(self.name), str(os.getpid()), ex=5)
            await asyncio.sleep(1.0)

    async def _wrapups(self, store: QueueStore) -> None:
        while True:
            await store.release_wrapups()
            await asyncio.sleep(0.5)


def main(settings: Settings, index: int) -> None:
    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Worker(settings, index).run(stop)

    asyncio.run(_main())
