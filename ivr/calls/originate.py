"""Click-to-dial (originate) on the worker Redis chose for it: the agent's phone first, then the customer.

``POST /api/v1/calls`` (:mod:`ivr.cti.originate`) creates the call record (state ``dialing``,
``direction`` outbound), reserves the agent and puts an offer (``Offer.is_outbound``) in the inbox of a
live worker with a free call slot; the worker runs an :class:`OriginateSession`:

1. pop-before-ring as for any offer: when the agent has a desktop open, its phone is rung once the
   pop (``call.offered``, direction outbound) reached it (bounded by ``api.pop_wait_ms``);
2. the agent's leg is dialled first and takes the call's caller slot of the leg budget
   (``Leg.dial(customer=True)``; :class:`WorkerFull` when there is none after all), so nothing rings
   unless the whole call fits on this worker;
3. when the agent answers (``call.dialing``) it hears a ringback tone and the customer is dialled
   through the edge (``callbacks.uri_for``: the edge routes numbers to trunks) with the hotline's caller
   ID in From; the customer's leg takes over the caller slot, so the call has the usual shape for
   :class:`AgentCall` (``self.leg`` = the customer, ``self.agent_leg`` = the agent) and the
   call-control commands work on it as on an inbound call;
4. the customer answers: both are bridged, the call is ``connected`` (``call.answered``), and it ends
   like any call (``end_call``: wrap-up, handle time in the queue's stats if it names one).

Not connected, the record ends at once with an outcome (``originate_failed``): ``agent_no_answer``
(the agent goes on a break, as after any ring-no-answer; the customer was never dialled),
``agent_rejected`` (the agent declined: available again), ``no_answer``, ``busy``, ``failed`` (the
agent hears a short busy tone, then is hung up) or ``cancelled`` (the agent hung up while the customer
rang: the customer's INVITE is cancelled). The customer's number never reaches the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydub import AudioSegment
from pydub.generators import Sine

from ivr.calls.agent_call import LINE_RETRY_S, LINE_WAIT_S, AgentCall
from ivr.calls.context import WorkerContext
from ivr.calls.media_plan import Mode
from ivr.core.errors import Conflict
from ivr.core.logging import get_logger
from ivr.prompts.library import SAMPLE_WIDTH, write_wav_atomic
from ivr.queues.store import Offer
from ivr.sip.engine import NoLineFree, WorkerFull
from ivr.sip.legs import Leg, LegEnded

log = get_logger(__name__)
BUSY_CODES = frozenset({486, 600})
TONE_DBFS = -12.0


@dataclass(frozen=True)
class NotConnected:
    """Why a click-to-dial call never connected: the record's outcome, the reason, the agent's next state."""

    outcome: str
    reason: str
    agent_state: str = "available"


def _tone(sample_rate: int, freqs: tuple[int, ...], on_ms: int, off_ms: int, cycles: int) -> AudioSegment:
    burst = Sine(freqs[0], sample_rate=sample_rate).to_audio_segment(duration=on_ms, volume=TONE_DBFS - 6)
    for f in freqs[1:]:
        burst = burst.overlay(Sine(f, sample_rate=sample_rate).to_audio_segment(duration=on_ms, volume=TONE_DBFS - 6))
    burst = burst.fade_in(10).fade_out(10)
    pause = AudioSegment.silent(duration=off_ms, frame_rate=sample_rate)
    out = AudioSegment.empty()
    for _ in range(cycles):
        out += burst + pause
    return out.set_channels(1).set_sample_width(SAMPLE_WIDTH).set_frame_rate(sample_rate)


def ringback_tone(cache_dir: Path, sample_rate: int) -> Path:
    """What the agent hears while the customer's phone rings: 440+480 Hz, 1 s on, 2 s off (loop)."""
    path = Path(cache_dir) / f"ringback-440-480-{sample_rate}.wav"
    if not path.is_file():
        write_wav_atomic(_tone(sample_rate, (440, 480), 1000, 2000, 1), path)
    return path


def failure_tone(cache_dir: Path, sample_rate: int) -> Path:
    """What the agent hears when the customer was not reached: 480+620 Hz busy tone, three times."""
    path = Path(cache_dir) / f"busytone-480-620-{sample_rate}.wav"
    if not path.is_file():
        write_wav_atomic(_tone(sample_rate, (480, 620), 500, 500, 3), path)
    return path


def outcome_of_customer(code: int) -> NotConnected:
    """The customer's phone refused the call with SIP ``code``."""
    if code in BUSY_CODES:
        return NotConnected("busy", "customer_busy")
    return NotConnected("failed", f"customer_rejected_{code}")


class OriginateSession(AgentCall):
    """One click-to-dial call on this worker: ``agent_leg`` rung first, then ``leg`` (the customer)."""

    def __init__(self, ctx: WorkerContext, offer: Offer) -> None:
        super().__init__(ctx, ctx.new_leg(), offer.call_id)  # the customer's leg, dialled once the agent answered
        self.offer = offer
        self.made = [self.leg]  # every leg made for this call (the worker forgets those never dialled)
        self.started = time.monotonic()
        self.connected = False
        self.end_reason = "customer_hangup"

    @property
    def caller_id(self) -> str:
        return self.offer.caller_id or self.ctx.settings.calls.caller_id

    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(call_id=self.call_id, outbound=True)
        failed: NotConnected | None = None
        try:
            failed = await self._ring_agent()
            if failed is None:
                failed = await self._dial_customer()
            if failed is None:
                self.connected = True
                await self._talk_through()
                self.end_reason = "customer_hangup" if self.end_reason == "caller_hangup" else self.end_reason
        except LegEnded:
            if not self.connected and failed is None:
                failed = NotConnected("cancelled", "agent_hangup")
        except asyncio.CancelledError:
            self.end_reason = "worker_shutdown"
            if not self.connected and failed is None:
                failed = NotConnected("failed", "worker_shutdown")
            raise
        except Exception:
            self.end_reason = "error"
            if not self.connected and failed is None:  # never leave the agent reserved for a call nobody makes
                failed = NotConnected("failed", "error")
            raise
        finally:
            await self._finish(failed)

    async def _ring_agent(self) -> NotConnected | None:
        """Pop, then ring the agent (taking the call's caller slot). None when the agent answered."""
        store, s, offer = self.ctx.store, self.ctx.settings, self.offer
        log.info("originate.received", offer_id=offer.offer_id, agent_id=offer.agent_id)
        if s.api.pop_wait_ms and await store.desktop_present(offer.agent_id):
            acked = await store.wait_pop_ack(offer.offer_id, s.api.pop_wait_ms / 1000)
            log.info("offer.pop", acked=acked)
        agent = self.ctx.new_leg()
        self.agent_leg = agent
        self.made.append(agent)
        try:
            await self._dial_leg(agent, offer.sip_uri, customer=True, call_id=self.call_id)
        except (WorkerFull, NoLineFree) as exc:  # not the agent's fault: it stays available
            log.info("originate.worker_full", why=str(exc))
            self.agent_leg = None
            return NotConnected("failed", "worker_full")
        except Exception as exc:
            log.warning("originate.agent_dial_failed", uri=offer.sip_uri, error=str(exc))
            self.agent_leg = None
            return NotConnected("failed", "agent_unreachable", "break")
        outcome = await agent.wait_answered(s.workers.agent_ring_timeout_s)
        if outcome == "timeout":
            await agent.hangup()
            log.info("originate.agent_no_answer")
            return NotConnected("agent_no_answer", "ring_no_answer", "break")
        if outcome == "ended":
            code = agent.ended.result().code
            log.info("originate.agent_rejected", code=code)
            return NotConnected("agent_rejected", f"agent_rejected_{code}")
        if outcome != "answered":
            return NotConnected("agent_rejected", "agent_hangup")
        try:
            await store.originate_agent_answered(self.call_id, offer.offer_id, self.caller_id)
        except Conflict as exc:  # ended meanwhile (a hangup command, the reaper): nothing to dial
            log.warning("offer.stale", error=exc.message)
            raise LegEnded(self.call_id) from None
        log.info("originate.agent_answered", agent_leg=agent.leg_id)
        return None

    async def _dial_leg(self, leg: Leg, uri: str, *, customer: bool = False, from_uri: str = "",
                        slot_of: Leg | None = None, call_id: str = "") -> None:
        """Dial; the library may still hold a call slot of a leg that just ended (NoLineFree) for a
        moment: wait for it, bounded by LINE_WAIT_S (as AgentCall._dial does for offers)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            try:
                await leg.dial(uri, customer=customer, from_uri=from_uri, slot_of=slot_of, call_id=call_id)
                return
            except NoLineFree:
                if loop.time() - started >= LINE_WAIT_S or (slot_of is not None and slot_of.is_ended):
                    raise
                await asyncio.sleep(LINE_RETRY_S)

    async def _dial_customer(self) -> NotConnected | None:
        """Dial the customer while the agent hears ringback. None when both are bridged."""
        store, s, offer = self.ctx.store, self.ctx.settings, self.offer
        agent = self.agent_leg
        assert agent is not None
        ringback = await asyncio.to_thread(ringback_tone, s.prompt_cache, s.workers.clock_rate)
        ring_id, _ = await agent.start_playback(str(ringback), loop=True)
        uri = s.callbacks.uri_for(offer.number, s.edge.host, s.edge.port)
        from_uri = f"sip:{self.caller_id}@{s.edge.host}" if self.caller_id else ""
        try:
            await self._dial_leg(self.leg, uri, from_uri=from_uri, slot_of=agent)
        except Exception as exc:
            log.warning("originate.customer_dial_failed", error=type(exc).__name__)
            return await self._tell_agent(NotConnected("failed", "customer_unreachable"))
        log.info("originate.dialing", agent_id=offer.agent_id, caller_id=bool(from_uri))
        outcome = await self.leg.wait_answered(s.callbacks.ring_timeout_s, unless=agent.ended)
        if outcome == "aborted":  # the agent hung up while the customer rang: cancel the customer's INVITE
            await self.leg.hangup()
            log.info("originate.cancelled_by_agent")
            return NotConnected("cancelled", "agent_hangup")
        if outcome == "timeout":
            await self.leg.hangup()
            return await self._tell_agent(NotConnected("no_answer", "customer_no_answer"))
        if outcome == "ended":
            return await self._tell_agent(outcome_of_customer(self.leg.ended.result().code))
        if outcome == "hung_up":
            return await self._tell_agent(NotConnected("failed", "customer_hangup"))
        if agent.is_ended:
            return NotConnected("cancelled", "agent_hangup")
        with contextlib.suppress(LegEnded):
            await agent.stop_playback(ring_id)
        self.agent_id, self.queue, self.muted = offer.agent_id, offer.queue, False
        await self._remix(Mode.TALK)  # through CallMedia: hold, mute, consult work on this call too
        try:
            await store.originate_connected(self.call_id, offer.offer_id)
        except Conflict as exc:
            log.warning("offer.stale", error=exc.message)
            raise LegEnded(self.call_id) from None
        log.info("call.bridged", agent_id=offer.agent_id, agent_leg=agent.leg_id, direction="outbound")
        return None

    async def _tell_agent(self, failed: NotConnected) -> NotConnected:
        """The customer was not reached: the agent hears a short busy tone (it may hang up first)."""
        agent = self.agent_leg
        log.info("originate.not_connected", outcome=failed.outcome, reason=failed.reason)
        if agent is None or agent.is_ended:
            return failed
        s = self.ctx.settings
        try:
            tone = await asyncio.to_thread(failure_tone, s.prompt_cache, s.workers.clock_rate)
            await agent.play(str(tone))
        except LegEnded:
            pass
        return failed

    async def _finish(self, failed: NotConnected | None) -> None:
        store, s = self.ctx.store, self.ctx.settings
        if failed is not None and self.forced_end:  # a hangup command before the customer answered
            failed = NotConnected("cancelled", self.forced_end)
        await self._end_legs()
        try:
            if failed is not None:
                outcome = await store.originate_failed(
                    self.call_id, self.offer.offer_id, outcome=failed.outcome, reason=failed.reason,
                    agent_state=failed.agent_state, ttl_s=s.routing.call_ttl_s)
                if outcome is None:  # ended elsewhere meanwhile (a hangup command, the reaper)
                    await store.end_call(self.call_id, reason=self.end_reason, wrapup_s=s.routing.wrapup_s,
                                         ttl_s=s.routing.call_ttl_s)
            else:
                await store.end_call(self.call_id, reason=self.end_reason, wrapup_s=s.routing.wrapup_s,
                                     ttl_s=s.routing.call_ttl_s)
            if self.rtp:
                await store.set_call_field(self.call_id, "rtp", json.dumps(self.rtp))
        except Exception as exc:  # the reaper or the next housekeeping run settles what is left
            log.warning("originate.finish_failed", error=type(exc).__name__)
        log.info("originate.ended", outcome=failed.outcome if failed else "completed",
                 reason=failed.reason if failed else self.end_reason,
                 seconds=round(time.monotonic() - self.started, 2))
