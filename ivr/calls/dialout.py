"""An automated outbound call on a worker: dial the customer, and when they answer run a dial plan
with them (a follow-up survey, a campaign's message), exactly as if they had called in.

Redis placed the call (``lua/lib/dialout.lua``, ``QueueStore.dialout_start``) and chose this worker
for its free caller slot; the offer (``Offer.is_dialout``) names the number, the plan (by id) and the
variables to seed. Then:

1. dial ``callbacks.dial_uri`` for the number, From the caller ID; the leg takes a caller slot, so the
   agent leg a ``queue`` node may need is still free;
2. not answered (busy, no answer within ``ring_s`` or ``callbacks.ring_timeout_s``, refused, no slot
   after all): ``dialout_failed`` ends the record and tells its owner, who decides about a retry;
3. answered: ``dialout_answered`` (state ``ivr``), then the plan runs through :class:`CallSession`
   (prompts, menus, speech, a ``queue`` node to an agent, ``case_update``...), and the call ends like
   any other (``end_call``; the owner hears of it in the same script).

The customer's number never reaches the logs.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from ivr.calls.context import WorkerContext
from ivr.calls.originate import outcome_of_customer
from ivr.calls.session import CallSession
from ivr.core.logging import get_logger
from ivr.dialplan.ports import CallerGone
from ivr.queues.store import Offer
from ivr.sip.engine import WorkerFull
from ivr.sip.events import IncomingCall
from ivr.sip.legs import LegEnded

log = get_logger(__name__)


class DialoutSession(CallSession):
    """One automated call on this worker: the customer's leg, then the plan."""

    def __init__(self, ctx: WorkerContext, offer: Offer) -> None:
        leg = ctx.new_leg()
        super().__init__(ctx, leg, IncomingCall(leg.leg_id, ani=offer.number, dnis=offer.caller_id,
                                                sip_call_id="", source="dialout"))
        self.call_id = offer.call_id
        self.offer = offer

    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(call_id=self.call_id, dialout=True)
        offer = self.offer
        loaded = self.ctx.plans.for_id(offer.plan)
        answered = False
        try:
            if loaded is None:
                log.warning("dialout.unknown_plan", plan=offer.plan)
                await self._not_reached("failed", "plan_not_found")
                return
            self.language = self.default_language = offer.language or loaded.plan.language
            failed = await self._reach_customer()
            if failed is not None:
                await self._not_reached(*failed)
                return
            if not await self.ctx.store.dialout_answered(self.call_id, offer.offer_id):
                log.warning("offer.stale", offer_id=offer.offer_id)
                await self.leg.hangup()
                return
            answered = True
            log.info("dialout.answered", plan=offer.plan)
            await self.run_plan(loaded, offer.variables)
        except (LegEnded, CallerGone):
            self.end_reason = "caller_hangup"
            log.info("call.caller_left")
            if not answered:  # gone between the answer and its record: not reached, the owner decides
                await self._not_reached("failed", "customer_hangup")
        except asyncio.CancelledError:
            self.end_reason = "worker_shutdown"
            if not answered:  # never leave the record dialing: its owner retries it
                await asyncio.shield(self._not_reached("failed", "worker_shutdown"))
            raise
        except Exception:
            self.end_reason = "error"
            if not answered:
                await self._not_reached("failed", "error")
            raise
        finally:
            if answered:
                await self._finish(True)
            else:
                await self._end_legs()
            log.info("dialout.ended", answered=answered, reason=self.end_reason,
                     seconds=round(time.monotonic() - self.started, 2))

    async def _reach_customer(self) -> tuple[str, str] | None:
        """Dial and wait for the answer: None when answered, else (outcome, reason)."""
        s, offer = self.ctx.settings, self.offer
        uri = s.callbacks.uri_for(offer.number, s.edge.host, s.edge.port)
        from_uri = f"sip:{offer.caller_id}@{s.edge.host}" if offer.caller_id else ""
        try:
            await self.leg.dial(uri, customer=True, from_uri=from_uri)
        except WorkerFull as exc:
            log.info("dialout.worker_full", why=str(exc))
            return "failed", "worker_full"
        except Exception as exc:
            log.warning("dialout.dial_failed", error=type(exc).__name__)
            return "failed", "customer_unreachable"
        log.info("dialout.dialing", plan=offer.plan, caller_id=bool(from_uri))
        outcome = await self.leg.wait_answered(offer.ring_s or s.callbacks.ring_timeout_s)
        if outcome == "timeout":
            await self.leg.hangup()
            return "no_answer", "customer_no_answer"
        if outcome == "ended":
            refused = outcome_of_customer(self.leg.ended.result().code)
            return refused.outcome, refused.reason
        if outcome == "hung_up":
            return "failed", "customer_hangup"
        return None

    async def _not_reached(self, outcome: str, reason: str) -> None:
        log.info("dialout.not_reached", outcome=outcome, reason=reason)
        try:
            await self.ctx.store.dialout_failed(self.call_id, self.offer.offer_id, outcome=outcome,  # type: ignore[arg-type]
                                                reason=reason, ttl_s=self.ctx.settings.routing.call_ttl_s)
        except Exception as exc:  # the reaper settles it when this worker goes; the owner hears then
            log.warning("dialout.finish_failed", error=type(exc).__name__)
