"""Calling a booked callback back (virtual hold), on the worker Redis chose for it.

A callback competes for agents at the caller's place like a waiting caller (``lua/lib/callbacks.lua``);
when an agent is reserved for it the offer (``Offer.is_callback``) reaches a live worker with a free
caller slot, which runs a :class:`CallbackSession`:

1. dial the customer (``callbacks.dial_uri``; the leg takes a caller slot, keeping one for the agent);
2. when they answer, play "This is your call back from <hotline>. Press 1 to be connected." in the
   call's language (TTS through the prompt library), up to ``confirm_tries`` times;
3. on the key: ``callback.connected``, hold music, and the agent is rung and bridged exactly as for an
   inbound call (:class:`ivr.calls.session.AgentCall`: pop-before-ring, bridge, talk, wrap-up). An
   agent who does not answer puts the customer back at their place (on hold, here) like any caller;
4. not reached (no answer, busy, no key, hung up before the key): ``callback_retry`` releases the agent
   and the callback competes again after ``retry_after_s``, until ``retries`` more attempts failed
   (``callback.failed``). A worker that had no free slot after all sends it back without an attempt.

The customer's number never reaches the logs.
"""

from __future__ import annotations

import asyncio
import json
import time

import structlog

from ivr.calls.agent_call import AgentCall
from ivr.calls.context import WorkerContext
from ivr.core.logging import get_logger
from ivr.prompts.library import PromptSpec
from ivr.queues.store import Offer
from ivr.sip.engine import WorkerFull
from ivr.sip.legs import LegEnded

log = get_logger(__name__)
BUSY_CODES = frozenset({486, 600})


class CallbackSession(AgentCall):
    """One callback offer on this worker: the customer's leg, then the agent's."""

    transferable = False

    def __init__(self, ctx: WorkerContext, offer: Offer) -> None:
        super().__init__(ctx, ctx.new_leg(), offer.call_id)
        self.offer = offer
        self.started = time.monotonic()
        self.confirmed = False  # from here on the callback is this worker's call until it ends

    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(call_id=self.call_id, callback=True)
        cfg = self.ctx.settings.callbacks
        retry: tuple[str, float] | None = None
        try:
            reason = await self._reach_customer()
            if reason is not None:
                retry = (reason, cfg.busy_retry_s if reason == "worker_full" else cfg.retry_after_s)
                return
            self.confirmed = True
            await self.ctx.store.callback_confirmed(self.call_id, self.offer.offer_id)
            moh_id, _ = await self.leg.start_playback(self.ctx.moh_path, loop=True)
            offer = self.offer
            while not await self._connect(offer, moh_id):
                # the agent did not answer: the customer waits at their place for the next offer
                getter = asyncio.ensure_future(self.offers.get())
                try:
                    await self.leg.until(getter, None)
                finally:
                    getter.cancel()
                offer = getter.result()
            await self._talk_through()
        except LegEnded:
            self.end_reason = "caller_hangup"
            log.info("callback.customer_left")
        except asyncio.CancelledError:
            self.end_reason = "worker_shutdown"
            if not self.confirmed:
                retry = ("worker_shutdown", cfg.busy_retry_s)
            raise
        except Exception:
            self.end_reason = "error"
            if not self.confirmed:  # never leave the agent reserved for a call nobody makes
                retry = ("error", cfg.retry_after_s)
            raise
        finally:
            await self._finish(retry)

    async def _reach_customer(self) -> str | None:
        """Dial, wait for the answer, ask for the key. None when confirmed, else why not."""
        cfg, s = self.ctx.settings.callbacks, self.ctx.settings
        store, offer = self.ctx.store, self.offer
        uri = cfg.uri_for(offer.number, s.edge.host, s.edge.port)
        try:
            await self.leg.dial(uri, customer=True)
        except WorkerFull as exc:
            log.info("callback.worker_full", why=str(exc))
            return "worker_full"
        except Exception as exc:
            await store.callback_dialing(self.call_id, offer.offer_id)
            log.warning("callback.dial_failed", error=type(exc).__name__)
            return "unreachable"
        attempt = await store.callback_dialing(self.call_id, offer.offer_id)
        log.info("callback.dialing", attempt=attempt, agent_id=offer.agent_id)
        outcome = await self.leg.wait_answered(cfg.ring_timeout_s)
        if outcome == "ended":
            code = self.leg.ended.result().code
            return "busy" if code in BUSY_CODES else f"rejected_{code}"
        if outcome == "timeout":
            await self.leg.hangup()
            return "no_answer"
        if outcome == "hung_up":
            return "customer_hangup"
        try:
            path = str(await self.ctx.prompts.resolve_async(self._prompt(), self._language()))
            for _ in range(cfg.confirm_tries):
                dtmf = await self.leg.play(path, barge_in=True)
                if dtmf is None:
                    dtmf = await self.leg.next_digit(cfg.confirm_timeout_s)
                if dtmf is not None and dtmf.digit == cfg.confirm_digit:
                    log.info("callback.confirmed", attempt=attempt)
                    return None
        except LegEnded:
            return "customer_hangup"
        await self.leg.hangup()
        return "not_confirmed"

    def _language(self) -> str:
        lang = self.offer.language or "en"
        return lang if lang in self.ctx.settings.callbacks.prompt else "en"

    def _prompt(self) -> PromptSpec:
        prompts = self.ctx.settings.callbacks.prompt
        text = prompts.get(self._language()) or prompts.get("en") or "Press 1 to be connected."
        return PromptSpec(text=text.replace("{hotline}", self.offer.hotline or "the hotline"))

    async def _finish(self, retry: tuple[str, float] | None) -> None:
        store, s = self.ctx.store, self.ctx.settings
        await self._end_legs()
        try:
            if retry is not None:
                reason, after = retry
                result = await store.callback_retry(self.call_id, self.offer.offer_id, reason, retry_after_s=after,
                                                    max_attempts=1 + s.callbacks.retries)
                log.info("callback.not_reached", reason=reason, result=result)
            elif self.confirmed:
                await store.end_call(self.call_id, reason=self.end_reason, wrapup_s=s.routing.wrapup_s,
                                     ttl_s=s.routing.call_ttl_s)
                if self.rtp:
                    await store.set_call_field(self.call_id, "rtp", json.dumps(self.rtp))
        except Exception as exc:  # the reaper or the next housekeeping run settles what is left
            log.warning("callback.finish_failed", error=type(exc).__name__)
        log.info("callback.ended", reason=self.end_reason if retry is None else retry[0],
                 seconds=round(time.monotonic() - self.started, 2))
