"""One inbound call on a worker: answer, run the plan, queue, offer to agents, bridge, close.

Implements the dial-plan engine's ports (``CallPort``, ``QueuePort``) with SIP legs, the speech
service and the queue store. ``LegEnded`` of the caller's leg becomes ``CallerGone`` where it
crosses into the engine. The pop-before-ring rule lives here: when the agent has a desktop open, the
agent's phone is called only after the API confirmed that ``call.offered`` reached it (bounded by
``api.pop_wait_ms``).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import structlog

from ivr.calls.agent_call import AgentCall
from ivr.calls.announce import QueueAnnouncer
from ivr.calls.ask import run_ask
from ivr.calls.call_record import CallRecord
from ivr.calls.context import WorkerContext
from ivr.calls.media_plan import Mode
from ivr.core.case_states import CUSTOMER_CASES_KEEP
from ivr.core.errors import Conflict
from ivr.core.logging import get_logger
from ivr.dialplan.engine import PlanRunner
from ivr.dialplan.journey import Journey
from ivr.dialplan.loader import LoadedPlan
from ivr.dialplan.lookup import HttpDataPort
from ivr.dialplan.model import Prompt
from ivr.dialplan.ports import (
    Answer,
    Ask,
    CallerGone,
    QueueOutcome,
    QueueTarget,
    Recording,
)
from ivr.dialplan.templates import names, render
from ivr.prompts.library import PromptSpec
from ivr.prompts.moh import voicemail_beep
from ivr.queues.routing import resolve_route
from ivr.queues.store import Offer
from ivr.sip.events import IncomingCall
from ivr.sip.legs import Leg, LegEnded

log = get_logger(__name__)
#: AgentCall and WorkerContext live in their own modules now; importing them from here still works
__all__ = ["AgentCall", "CallSession", "WorkerContext", "wav_finished"]


async def wav_finished(path: Path, within_s: float = 3.0) -> bool:
    """Wait (bounded) until the recorder has closed ``path``: its RIFF size is the file's.

    pjmedia removes a conference port asynchronously (in the clock thread), and the WAV writer
    writes the final sizes into the header only when the port is destroyed; on a loaded machine
    that can come after the recorder was dropped, so a reader could see a header with size 0.
    """
    for _ in range(int(within_s / 0.02)):
        try:
            head, size = await asyncio.to_thread(_riff_head, path)
        except OSError:
            return False
        if len(head) >= 8 and head[:4] == b"RIFF" and int.from_bytes(head[4:8], "little") == size - 8:
            return True
        await asyncio.sleep(0.02)
    return False


def _riff_head(path: Path) -> tuple[bytes, int]:
    with path.open("rb") as f:
        return f.read(8), path.stat().st_size


class CallSession(AgentCall):
    def __init__(self, ctx: WorkerContext, leg: Leg, incoming: IncomingCall) -> None:
        super().__init__(ctx, leg, leg.leg_id)
        self.incoming = incoming
        self.language = "en"
        self.default_language = "en"
        self.started = time.monotonic()
        self.journey: Journey | None = None  # the plan's, saved on the call record when the call ends
        self.announcer: QueueAnnouncer | None = None  # while waiting in a queue

    @property
    def caller(self) -> str:
        return self.incoming.ani

    @property
    def dnis(self) -> str:
        return self.incoming.dnis

    async def run(self) -> None:
        structlog.contextvars.bind_contextvars(call_id=self.call_id, sip_call_id=self.incoming.sip_call_id)
        inc = self.incoming
        loaded = self.ctx.plans.for_number(inc.dnis)
        if loaded is None:
            log.warning("call.unknown_number", dnis=inc.dnis)
            await self.leg.hangup(404)
            return
        self.language = self.default_language = loaded.plan.language
        log.info("call.incoming", ani=inc.ani, dnis=inc.dnis, plan=loaded.plan.name, version=loaded.version)
        started = False
        try:
            await self.leg.answer()
            # a repeat caller: the unfinished complaint case seeds case.* (looked up with the start)
            cases = await self.ctx.store.call_start(self.call_id, self.ctx.name, ani=inc.ani, dnis=inc.dnis,
                                                    hotline=loaded.plan.name, language=self.language,
                                                    plan_version=loaded.version, cases_for=CUSTOMER_CASES_KEEP)
            started = True
            await self._record_ivr()
            record = CallRecord(self.ctx.store, self.call_id, settings=self.ctx.settings, plan=loaded)
            await self.run_plan(loaded, await record.repeat_caller(inc.ani, cases=cases), record=record)
        except (LegEnded, CallerGone):
            self.end_reason = "caller_hangup"  # also when it was in the plan after the agent left
            log.info("call.caller_left")
        except asyncio.CancelledError:
            self.end_reason = "worker_shutdown"
            raise
        finally:
            await self._finish(started)

    async def run_plan(self, loaded: LoadedPlan, variables: Mapping[str, str] | None = None, *,
                       record: CallRecord | None = None) -> None:
        """Run ``loaded`` with the caller (answered, its record started), ``variables`` seeded."""
        if record is None:
            record = CallRecord(self.ctx.store, self.call_id, settings=self.ctx.settings, plan=loaded)
        async with HttpDataPort(self.ctx.settings.dialplan) as data:
            runner = PlanRunner(loaded, call=self, queue=self, data=data, record=record,
                                settings=self.ctx.settings.dialplan, variables=variables)
            self.journey = runner.journey
            result = await runner.run()
        outcome = result.result
        log.info("call.plan_done", outcome=outcome, node=result.node)
        if outcome != "queued" and self.end_reason == "caller_hangup" and not self.leg.is_ended:
            self.end_reason = "ivr_hangup"

    async def _record_ivr(self) -> None:
        """``recording.include_ivr``: the caller's channel is recorded from the answer on; the queue's
        policy decides later what becomes of it (:meth:`record_queued`)."""
        rec_cfg = self.ctx.settings.recording
        if not (rec_cfg.enabled and rec_cfg.include_ivr) or self.ctx.finisher is None:
            return
        try:
            self.recording = self._new_recording(ivr=True)
            await self.recording.start(by="policy")
            await self.recording.follow(self.leg.leg_id, [])
        except Exception as exc:
            log.error("recording.start_failed", error=type(exc).__name__, detail=str(exc)[:200])
            self.recording = None

    async def _finish(self, started: bool) -> None:
        await self._end_legs()
        if started:
            # the whole journey (after the queue too: a survey; also for calls never queued) and the
            # RTP figures go on the record in the same script that ends the call: one round trip
            fields: dict[str, str] = {}
            if self.journey is not None:
                fields["journey"] = json.dumps(self.journey.to_dict())
            if self.rtp:
                fields["rtp"] = json.dumps(self.rtp)
            await self.ctx.store.end_call(self.call_id, reason=self.end_reason,
                                          wrapup_s=self.ctx.settings.routing.wrapup_s,
                                          ttl_s=self.ctx.settings.routing.call_ttl_s,
                                          resume_s=self.ctx.settings.callbacks.resume_window_s, fields=fields)
        log.info("call.ended", reason=self.end_reason, seconds=round(time.monotonic() - self.started, 2))

    # --- CallPort ---------------------------------------------------------------------------------
    def _gone(self) -> CallerGone:
        return CallerGone(self.call_id)

    async def _prompt_path(self, prompt: Prompt, language: str, variables: Mapping[str, str]) -> str | None:
        """The WAV to play; None when a templated text renders to nothing to say (its variables are
        unset: ``check`` warns about those), which is skipped instead of failing the call."""
        text = prompt.text_for(language, self.default_language)
        rendered = None if text is None else render(text, variables)
        if prompt.file is None and not any(ch.isalnum() for ch in rendered or ""):
            log.warning("call.prompt_empty", template_names=len(names(text or "")))
            return None
        spec = PromptSpec(file=prompt.file, text=rendered)
        path = await self.ctx.prompts.resolve_async(spec, language)
        return str(path)

    async def play(self, prompt: Prompt, *, language: str, variables: Mapping[str, str]) -> None:
        self.language = language
        await self.record_sensitive(False)
        path = await self._prompt_path(prompt, language, variables)
        if path is None:
            return
        try:
            _, done = await self.leg.start_playback(path)
            if not await self.leg.until(done, None):
                raise self._gone()
        except LegEnded:
            raise self._gone() from None

    async def ask(self, ask: Ask) -> Answer:
        self.language = ask.language
        # a sensitive collect pauses the recording from its first question to the next thing the
        # plan does that is not one (a prompt, a question, the queue)
        await self.record_sensitive(ask.sensitive)
        try:
            found = [await self._prompt_path(p, ask.language, ask.variables) for p in ask.prompts]
            paths = [p for p in found if p is not None]
            return await run_ask(self.leg, ask, paths, self.ctx.speech,
                                 sample_rate=self.ctx.settings.workers.clock_rate)
        except LegEnded:
            raise self._gone() from None

    async def hangup(self) -> None:
        if not self.leg.is_ended:
            self.end_reason = "ivr_hangup"  # the plan hung up (also after the agent left: a survey)
        await self.leg.hangup()

    async def record(self, *, max_s: float, beep: bool, terminator: str, name: str) -> Recording:
        """Voicemail into ``<var_dir>/voicemail/<call_id>-<name>.wav``. The file is closed (complete)
        when this returns, whether the caller pressed the terminator, reached ``max_s`` or hung up."""
        s = self.ctx.settings
        folder = s.var_dir / "voicemail"
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        path = folder / f"{self.call_id}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.wav"
        try:
            if beep:
                tone = await asyncio.to_thread(voicemail_beep, s.prompt_cache, s.workers.clock_rate)
                _, done = await self.leg.start_playback(str(tone))
                await self.leg.until(done, None)
            while not self.leg.digits.empty():  # keys pressed before the beep do not end the message
                self.leg.digits.get_nowait()
        except LegEnded:
            raise self._gone() from None
        if self.leg.is_ended:
            raise self._gone()
        try:
            rec_id = await self.leg.start_record(str(path))
        except LegEnded:
            raise self._gone() from None
        started = time.monotonic()
        ended_by: Literal["terminator", "max_length", "hangup"] = "max_length"
        deadline = started + max_s
        try:
            while True:
                dtmf = await self.leg.next_digit(max(0.0, deadline - time.monotonic()))
                if dtmf is None:
                    break
                if dtmf.digit == terminator:
                    ended_by = "terminator"
                    break
        except LegEnded:
            ended_by = "hangup"  # the engine closed the file before it reported the hang-up
        finally:
            seconds = round(time.monotonic() - started, 2)
            await self.leg.stop_record(rec_id)
        if not await wav_finished(path):
            log.warning("call.recording_unfinished", name=name)
        log.info("call.recorded", seconds=seconds, ended_by=ended_by, name=name)
        return Recording(str(path), seconds, ended_by)

    async def transfer(self, destination: str, *, ring_s: float) -> Literal["completed", "failed"]:
        uri = destination if destination.startswith(("sip:", "sips:")) else (
            f"sip:{destination}@{self.ctx.settings.edge.host}:{self.ctx.settings.edge.port}")
        other = self.ctx.new_leg()
        self.agent_leg = other
        log.info("call.transfer", leg=other.leg_id)
        try:
            await other.dial(uri)
        except Exception as exc:
            log.warning("call.transfer_failed", error=str(exc))
            self.agent_leg = None
            return "failed"
        if not await self._answered(other, ring_s):
            await other.hangup()
            self.agent_leg = None
            log.info("call.transfer_failed", reason="no_answer")
            return "failed"
        await self.leg.bridge(other)
        done, _ = await asyncio.wait({self.leg.ended, other.ended}, return_when=asyncio.FIRST_COMPLETED)
        self.end_reason = "caller_hangup" if self.leg.ended in done else "transfer_ended"
        await other.hangup()
        for name, leg in (("transfer", other), ("caller", self.leg)):
            ended = await leg.wait_ended(5.0) if name == "transfer" or self.leg.ended in done else None
            if ended is not None:
                self.rtp[name] = ended.rtp
        self.agent_leg = None
        log.info("call.transfer_ended", by="caller" if self.leg.ended in done else "destination")
        return "completed"

    # --- QueuePort --------------------------------------------------------------------------------
    async def wait_for_agent(self, target: QueueTarget, journey: Journey) -> QueueOutcome:
        self.announcer = QueueAnnouncer(leg=self.leg, store=self.ctx.store, prompts=self.ctx.prompts,
                                        call_id=self.call_id, target=target, language=self.language,
                                        default_language=self.default_language).start()
        try:
            outcome = await self._wait_for_agent(target, journey)
        except LegEnded:
            self.end_reason = "caller_hangup"
            return "caller_hangup"
        finally:
            await self.announcer.close()
        # back in the plan (after the agent, or on timeout): keys pressed on hold or while talking
        # to the agent must not answer the next question (a survey, a callback offer)
        dropped = 0
        while not self.leg.digits.empty():
            self.leg.digits.get_nowait()
            dropped += 1
        if dropped:
            log.info("call.keys_dropped", count=dropped, outcome=outcome)
        return outcome

    async def _wait_for_agent(self, target: QueueTarget, journey: Journey) -> QueueOutcome:
        store = self.ctx.store
        await self.record_sensitive(False)
        self.record_override = target.recording
        await self.record_queued(target.queue)
        moh_id, _ = await self.leg.start_playback(self.ctx.moh_path, loop=True)
        route = resolve_route(
            self.ctx.settings.routing.queues, target.queue,
            skills=target.skills if target.skills_from_plan else (), language=target.language,
            language_required=True if target.language_from_plan else None,
            min_proficiency=target.min_proficiency, can_fall_back=target.max_wait_s is not None)
        skill = route.primary_skill
        # Every offer, including one made at once by enqueue, reaches us through the worker inbox.
        try:
            await store.enqueue(self.call_id, queue=target.queue, skill=skill, priority=target.priority,
                                journey={**journey.to_dict(), "language": target.language}, route=route)
        except Conflict as exc:
            if exc.code != "queue.no_agents":
                raise
            await self.leg.stop_playback(moh_id)
            log.info("call.queue_no_agents", queue=target.queue)
            return "timeout"
        estimate = await store.wait_estimate(self.call_id)  # None: already offered
        if estimate is not None:
            await store.remember_estimate(self.call_id, estimate)
        log.info("call.queued", queue=target.queue, skill=skill, priority=target.priority,
                 max_wait_s=target.max_wait_s, ewt_s=round(estimate.seconds) if estimate else None)
        loop = asyncio.get_running_loop()
        deadline = None if target.max_wait_s is None else loop.time() + target.max_wait_s
        keys: tuple[str, ...] = target.keys
        self.queue = target.queue
        music: int | None = moh_id  # None once call control's music plays (after a transfer)
        while True:
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            getter = asyncio.ensure_future(self.offers.get())
            try:
                got = await self._offer_or_key(getter, remaining, keys)
            finally:
                getter.cancel()
            if isinstance(got, str):
                # a key of the queue node (e.g. 1 = call me back): leave, unless an offer is in flight
                if await store.leave_queue(self.call_id, "key"):
                    await self._music_off(music)
                    log.info("call.queue_key", queue=target.queue, digit=got)
                    return f"key:{got}"
                continue
            if not got:
                # max_wait_s passed: leave the queue atomically, unless an offer is already in
                # flight: then that offer plays out (answered: talk; failed: back here, leave then).
                if await store.leave_queue(self.call_id, "timeout"):
                    await self._music_off(music)
                    log.info("call.queue_timeout", queue=target.queue)
                    return "timeout"
                deadline = loop.time() + 1.0
                continue
            if not await self._connect(getter.result(), music):
                continue
            return await self._talk_through()  # and wherever a blind transfer takes the caller

    async def _music_off(self, moh_id: int | None) -> None:
        if moh_id is not None:
            await self.leg.stop_playback(moh_id)
        else:
            await self._remix(Mode.TALK)  # call control's music (no agent: no links either)

    def _notice_language(self) -> str:
        return self.language

    def _queue_language(self) -> str:
        return self.language

    def _queue_journey(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return self.journey.to_dict() if self.journey is not None else super()._queue_journey(record)

    async def _offer_or_key(self, getter: asyncio.Future[Offer], timeout: float | None,
                            keys: tuple[str, ...]) -> bool | str:
        """Wait for an offer (True), the timeout (False) or, while waiting, a key of ``keys`` (the
        key). Other keys are dropped: nothing else listens while the caller is on hold."""
        if not keys:
            return await self.leg.until(getter, timeout)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            key = asyncio.ensure_future(self.leg.digits.get())
            try:
                waits: set[asyncio.Future[Any]] = {getter, key, self.leg.ended}
                left = None if deadline is None else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not key.done():
                    key.cancel()
            if getter in done:
                if key in done:  # both at once: the offer wins; the key is not lost for later
                    self.leg.digits.put_nowait(key.result())
                return True
            if self.leg.ended in done:
                raise LegEnded(self.call_id)
            if key in done:
                digit = key.result().digit
                if digit in keys:
                    return digit
                continue
            return False

    def deliver(self, offer: Offer) -> None:
        if self.announcer is not None:
            self.announcer.interrupt()  # connecting to the agent starts now, not after an announcement
        super().deliver(offer)
