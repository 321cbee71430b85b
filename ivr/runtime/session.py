"""One inbound call on a worker: answer, run the plan, queue, offer to agents, bridge, close.

Implements the dial-plan engine's ports (``CallPort``, ``QueuePort``) with SIP legs and the queue
store. The pop-before-ring rule lives here: when the agent has a desktop open, the agent's phone is
called only after the API confirmed that ``call.offered`` reached it (bounded by ``api.pop_wait_ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from ivr.core.config import Settings
from ivr.core.logging import get_logger
from ivr.dialplan.engine import PlanRunner
from ivr.dialplan.journey import Journey
from ivr.dialplan.loader import PlanRegistry
from ivr.dialplan.model import Prompt
from ivr.prompts.library import PromptLibrary, PromptSpec
from ivr.queues.store import Offer, QueueStore
from ivr.sip.bridge import SipThread
from ivr.sip.engine import SipEngine
from ivr.sip.events import IncomingCall
from ivr.sip.legs import Leg, LegEnded

log = get_logger(__name__)


@dataclass
class WorkerContext:
    """What every call on a worker shares; built once by ``Worker``."""

    name: str
    settings: Settings
    store: QueueStore
    sip: SipThread
    plans: PlanRegistry
    prompts: PromptLibrary
    moh_path: str
    new_leg: Callable[[], Leg]


class CallSession:
    def __init__(self, ctx: WorkerContext, leg: Leg, incoming: IncomingCall) -> None:
        self.ctx = ctx
        self.leg = leg
        self.incoming = incoming
        self.call_id = leg.leg_id
        self.offers: asyncio.Queue[Offer] = asyncio.Queue()
        self.agent_leg: Leg | None = None
        self.language = "en"
        self.started = time.monotonic()
        self.end_reason = "caller_hangup"
        self.rtp: dict[str, dict[str, int]] = {}

    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(call_id=self.call_id, sip_call_id=self.incoming.sip_call_id)
        inc = self.incoming
        loaded = self.ctx.plans.for_number(inc.dnis)
        if loaded is None:
            log.warning("call.unknown_number", dnis=inc.dnis)
            await self.ctx.sip.call(SipEngine.hangup, self.call_id, 404)
            return
        self.language = loaded.plan.language
        log.info("call.incoming", ani=inc.ani, dnis=inc.dnis, plan=loaded.plan.name, version=loaded.version)
        started = False
        try:
            await self.leg.answer()
            await self.ctx.store.call_start(self.call_id, self.ctx.name, ani=inc.ani, dnis=inc.dnis,
                                            hotline=loaded.plan.name, language=self.language,
                                            plan_version=loaded.version)
            started = True
            outcome = await PlanRunner(loaded, self, self).run()
            log.info("call.plan_done", outcome=outcome)
            if outcome == "hangup" or outcome.startswith("queued:"):
                self.end_reason = self.end_reason if outcome.startswith("queued:") else "ivr_hangup"
        except LegEnded:
            log.info("call.caller_left")
        except asyncio.CancelledError:
            self.end_reason = "worker_shutdown"
            raise
        finally:
            await self._finish(started)

    async def _finish(self, started: bool) -> None:
        with contextlib.suppress(Exception):
            if self.agent_leg is not None:
                await self.agent_leg.hangup()
            await self.leg.hangup()
        if started:
            await self.ctx.store.end_call(self.call_id, reason=self.end_reason,
                                          wrapup_s=self.ctx.settings.routing.wrapup_s,
                                          ttl_s=self.ctx.settings.routing.call_ttl_s)
            if self.rtp:
                await self.ctx.store.set_call_field(self.call_id, "rtp", json.dumps(self.rtp))
        log.info("call.ended", reason=self.end_reason, seconds=round(time.monotonic() - self.started, 2))

    # --- CallPort ---------------------------------------------------------------------------------
    async def _prompt_path(self, prompt: Prompt) -> str:
        spec = PromptSpec(file=prompt.file, text=prompt.text_for(self.language, self.language))
        path = await asyncio.to_thread(self.ctx.prompts.resolve, spec, self.language)
        return str(path)

    async def play(self, prompt: Prompt, *, barge_in: bool) -> str | None:
        dtmf = await self.leg.play(await self._prompt_path(prompt), barge_in=barge_in)
        if dtmf is not None:
            log.info("call.dtmf", digit=dtmf.digit, method=dtmf.method, barge_in=True)
        return dtmf.digit if dtmf else None

    async def get_digit(self, timeout_s: float) -> str | None:
        dtmf = await self.leg.next_digit(timeout_s)
        if dtmf is not None:
            log.info("call.dtmf", digit=dtmf.digit, method=dtmf.method)
        return dtmf.digit if dtmf else None

    async def hangup(self) -> None:
        await self.leg.hangup()

    # --- QueuePort --------------------------------------------------------------------------------
    async def wait_for_agent(self, *, queue: str, skill: str, priority: int, journey: Journey) -> str:
        moh_id, _ = await self.leg.start_playback(self.ctx.moh_path, loop=True)
        # Every offer, including one made at once by enqueue, reaches us through the worker inbox.
        await self.ctx.store.enqueue(self.call_id, queue=queue, skill=skill, priority=priority,
                                     journey=journey.to_dict())
        log.info("call.queued", queue=queue, skill=skill, priority=priority)
        while True:
            getter = asyncio.ensure_future(self.offers.get())
            try:
                await self.leg.until(getter, None)
            finally:
                getter.cancel()
            if await self._connect(getter.result(), moh_id):
                return await self._talk()

    def deliver(self, offer: Offer) -> None:
        self.offers.put_nowait(offer)

    async def _connect(self, offer: Offer, moh_id: int) -> bool:
        store, settings = self.ctx.store, self.ctx.settings
        log.info("offer.received", offer_id=offer.offer_id, agent_id=offer.agent_id)
        if settings.api.pop_wait_ms and await store.desktop_present(offer.agent_id):
            acked = await store.wait_pop_ack(offer.offer_id, settings.api.pop_wait_ms / 1000)
            log.info("offer.pop", acked=acked)
        if self.leg.is_ended:
            raise LegEnded(self.call_id)
        agent = self.ctx.new_leg()
        self.agent_leg = agent
        try:
            await self.ctx.sip.call(SipEngine.make_call, offer.sip_uri, agent.leg_id)
        except Exception as exc:
            log.warning("offer.dial_failed", uri=offer.sip_uri, error=str(exc))
            await store.offer_failed(self.call_id, offer.offer_id, "unreachable")
            self.agent_leg = None
            return False
        answered = asyncio.ensure_future(agent.answered.wait())
        try:
            waits: set[asyncio.Future[Any]] = {answered, agent.ended, self.leg.ended}
            done, _ = await asyncio.wait(waits,
                                         timeout=settings.workers.agent_ring_timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            answered.cancel()
        if self.leg.ended in done:
            raise LegEnded(self.call_id)
        if agent.answered.is_set() and not agent.is_ended:
            media = asyncio.ensure_future(agent.media_ready.wait())
            try:
                await agent.until(media, 5.0)
            finally:
                media.cancel()
            await self.leg.stop_playback(moh_id)
            await self.ctx.sip.call(SipEngine.bridge, self.call_id, agent.leg_id)
            await store.offer_answered(self.call_id, offer.offer_id)
            log.info("call.bridged", agent_id=offer.agent_id, agent_leg=agent.leg_id)
            return True
        reason = "ring_no_answer" if not agent.is_ended else f"agent_rejected_{agent.ended.result().code}"
        await agent.hangup()
        self.agent_leg = None
        log.info("offer.failed", reason=reason)
        await store.offer_failed(self.call_id, offer.offer_id, reason)
        return False

    async def _talk(self) -> str:
        agent = self.agent_leg
        assert agent is not None
        ends: set[asyncio.Future[Any]] = {self.leg.ended, agent.ended}
        done, _ = await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        self.end_reason = "caller_hangup" if self.leg.ended in done else "agent_hangup"
        for name, leg in (("caller", self.leg), ("agent", agent)):
            if leg.is_ended:
                self.rtp[name] = leg.ended.result().rtp
        await (agent.hangup() if self.leg.ended in done else self.leg.hangup())
        for name, leg in (("caller", self.leg), ("agent", agent)):
            ended = await leg.wait_ended(5.0)
            if ended is not None:
                self.rtp[name] = ended.rtp
        return "completed"

