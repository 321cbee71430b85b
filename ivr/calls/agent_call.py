"""A customer's leg connected to an agent, and everything the agent can do to it.

Shared by inbound calls (:class:`ivr.calls.session.CallSession`) and callbacks
(:class:`ivr.calls.callback.CallbackSession`): the agent is rung when an offer is delivered
(pop-before-ring), the legs are joined on the worker's conference bridge, and the talk runs until
the customer hangs up. Meanwhile commands from the API (through the worker's inbox) hold, mute,
transfer, consult, swap, conference or send keys.

One owner per piece of state: the call record, the agents' states and the events change only in
``call_control.lua`` (through :meth:`QueueStore.call_control`), always *before* the media follows;
who hears whom changes only in :class:`ivr.calls.media_plan.CallMedia`. Commands to one call run one
at a time (a lock), and the talk loop looks at the legs again after each.

The third leg of a consult or conference is an *extra* leg of the worker's leg budget
(:mod:`ivr.core.leg_budget`): when none is free the consult is refused with ``call.no_leg`` before
anything changes, so the customer keeps talking to the agent. A supervisor's phone (live
supervision: listen, whisper, barge; the ``_monitor*`` methods) is one more extra leg, refused the
same way; it ends when the supervisor hangs up, the agent leaves or the call ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping
from typing import Any

from ivr.calls.context import WorkerContext
from ivr.calls.media_plan import CallMedia, Mode, MonitorMode, Parties
from ivr.calls.recording import CallRecording, policy_for
from ivr.core import commands
from ivr.core.errors import Conflict, IvrError
from ivr.core.logging import get_logger
from ivr.dialplan.destinations import transfer_allowed
from ivr.dialplan.ports import QueueOutcome
from ivr.prompts.library import PromptSpec
from ivr.queues.routing import resolve_route
from ivr.queues.store import Offer
from ivr.sip.engine import NoExtraLeg, NoLineFree
from ivr.sip.legs import Leg, LegEnded

log = get_logger(__name__)
LINE_WAIT_S = 5.0    # how long an offer waits for the library to free a call slot for the agent leg
LINE_RETRY_S = 0.05
TRANSFERRED = "transferred"  # _talk's outcome when a blind transfer took the customer elsewhere

Reply = commands.Reply
Status = commands.Status


def _refused(command: commands.Command, code: str, message: str) -> Reply:
    return Reply(command.command_id, Status.REFUSED, code, message)


class AgentCall:
    """A customer's leg (``leg``) and the agent's (``agent_leg``), plus a consult or conference
    target's (``consult_leg``) while there is one."""

    #: whether a blind transfer may queue the customer again (a callback's record is routed as a
    #: callback - offered to whichever worker dials - so it is not)
    transferable = True

    def __init__(self, ctx: WorkerContext, leg: Leg, call_id: str) -> None:
        self.ctx = ctx
        self.leg = leg
        self.call_id = call_id
        self.offers: asyncio.Queue[Offer] = asyncio.Queue()
        self.agent_leg: Leg | None = None
        self.agent_id = ""
        self.end_reason = "caller_hangup"
        self.forced_end: str | None = None  # set by a hangup command: wins over how the legs ended
        self.offering: str | None = None  # the offer being made now (pop, then the agent's phone ringing)
        self.rejected: str | None = None  # the offer the agent refused from its desktop (a reject command)
        self.rtp: dict[str, dict[str, int]] = {}
        # call control
        self.media = CallMedia(getattr(ctx, "moh_path", ""))
        self.mode = Mode.TALK
        self.muted = False
        self.consult_leg: Leg | None = None
        self.consult_agent = ""          # the consulted agent ("" for a number)
        self.consult_answered = False
        self._consult_task: asyncio.Task[None] | None = None
        self.next_step: tuple[str, str] | None = None  # after a blind transfer: (target type, target)
        self.queue = ""                  # the queue the call was last offered from
        self.language_hint = ""          # the caller's language when known (a transfer's route)
        # recording (ivr.calls.recording): the policy of the queue the call was answered from
        self.recording: CallRecording | None = None
        self.record_policy: str | None = None  # set when the caller is queued; else the queue's of the offer
        self.record_override: str | None = None  # the plan's queue node's ``recording``
        # live supervision: the supervisor's leg, its mode, who started it (for the audit trail)
        self.monitor_leg: Leg | None = None
        self.monitor_mode: MonitorMode | None = None
        self.monitor_by: tuple[str, str] = ("", "")  # (user id, role)
        self._monitor_task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # the legs of the talk changed: the talk loop looks again
        self._lock = asyncio.Lock()      # one command (or leg change) at a time

    def deliver(self, offer: Offer) -> None:
        self.offers.put_nowait(offer)

    # --- media ---------------------------------------------------------------------------------
    def _parties(self) -> tuple[Parties, dict[str, Leg]]:
        legs = {self.leg.leg_id: self.leg}
        agent = self.agent_leg.leg_id if self.agent_leg is not None else None
        target = self.consult_leg.leg_id if self.consult_leg is not None else None
        if self.agent_leg is not None:
            legs[self.agent_leg.leg_id] = self.agent_leg
        if self.consult_leg is not None:
            legs[self.consult_leg.leg_id] = self.consult_leg
        monitor = self.monitor_leg.leg_id if self.monitor_leg is not None else None
        if self.monitor_leg is not None:
            legs[self.monitor_leg.leg_id] = self.monitor_leg
        return Parties(self.leg.leg_id, agent, target, monitor), legs

    async def _remix(self, mode: Mode | None = None) -> None:
        """Apply ``mode`` (default: the present one) to the bridge; a leg gone meanwhile is skipped."""
        if mode is not None:
            self.mode = mode
        parties, legs = self._parties()
        await self.media.apply(self.mode, legs, parties, muted=self.muted, monitor=self.monitor_mode)
        await self._record_follow()

    # --- commands ------------------------------------------------------------------------------
    async def command(self, command: commands.Command) -> Reply:
        """Carry out a command to this call (from the API, through the worker's inbox)."""
        if self.leg.is_ended:
            return Reply(command.command_id, Status.GONE, "call.gone", "the caller already left")
        async with self._lock:
            try:
                reply = await self._carry_out(command)
            except IvrError as exc:  # the state layer refused (wrong state, agent not available...)
                return _refused(command, exc.code, exc.message)
            except LegEnded:
                return Reply(command.command_id, Status.GONE, "call.gone", "the caller left meanwhile")
        self._changed.set()
        return reply

    async def _carry_out(self, cmd: commands.Command) -> Reply:
        store, by = self.ctx.store, cmd.by
        accepted = Reply(cmd.command_id, Status.ACCEPTED)
        if isinstance(cmd, commands.Hangup):
            self.forced_end = "hangup_by_api"
            log.info("call.hangup_requested", by=by, role=cmd.role)
            for leg in (self.monitor_leg, self.consult_leg, self.agent_leg):
                if leg is not None:
                    await leg.hangup()
            await self.leg.hangup()
            return accepted
        if isinstance(cmd, commands.MonitorStart | commands.MonitorChange | commands.MonitorStop):
            return await self._monitor_command(cmd)
        if isinstance(cmd, commands.Reject):
            return await self._reject(cmd)
        if isinstance(cmd, commands.SendDtmf):
            # the keys go to the far end the agent talks to: a consult target (an outside IVR)
            # while consulting it, else the customer's leg (a number after a transfer, a click-to-dial)
            far = self.consult_leg if self.consult_leg is not None and self.mode is Mode.CONSULT else self.leg
            await far.send_dtmf(cmd.digits)
            log.info("call.dtmf_sent", by=by, keys=len(cmd.digits), to="target" if far is not self.leg else "customer")
            return accepted
        if self.agent_leg is None:
            return _refused(cmd, "call.wrong_state", "the call is not with an agent")
        if isinstance(cmd, commands.RecordStart | commands.RecordPause | commands.RecordResume):
            return await self._record_command(cmd)
        wrapup = self.ctx.settings.routing.wrapup_s
        if isinstance(cmd, commands.Hold | commands.Resume):
            if self.mode not in (Mode.TALK, Mode.HELD):
                return _refused(cmd, "call.wrong_state", f"the call is in a {self.mode} now")
            hold = isinstance(cmd, commands.Hold)
            await store.call_control(self.call_id, "hold" if hold else "resume", by=by)
            await self._remix(Mode.HELD if hold else Mode.TALK)
            return accepted
        if isinstance(cmd, commands.Mute | commands.Unmute):
            mute = isinstance(cmd, commands.Mute)
            await store.call_control(self.call_id, "mute" if mute else "unmute", by=by)
            self.muted = mute
            await self._remix()
            return accepted
        if isinstance(cmd, commands.Transfer):
            return await self._transfer(cmd, wrapup)
        if isinstance(cmd, commands.Consult):
            return await self._consult(cmd)
        if self.consult_leg is None:
            return _refused(cmd, "call.wrong_state", "there is no consult on this call")
        if isinstance(cmd, commands.ConsultCancel):
            await store.call_control(self.call_id, "consult_cancel", by=by, wrapup_s=wrapup)
            await self._drop_target()
            await self._remix(Mode.TALK)
            return accepted
        if not self.consult_answered:
            return _refused(cmd, "call.wrong_state", "the consult target has not answered yet")
        if isinstance(cmd, commands.ConsultSwap):
            if self.mode not in (Mode.CONSULT, Mode.SWAPPED):
                return _refused(cmd, "call.wrong_state", f"the call is in a {self.mode} now")
            to_caller = self.mode is Mode.CONSULT
            await store.call_control(self.call_id, "consult_swap", by=by, a1="caller" if to_caller else "target")
            await self._remix(Mode.SWAPPED if to_caller else Mode.CONSULT)
            return accepted
        if isinstance(cmd, commands.ConsultComplete):
            if self.mode is Mode.CONFERENCE:
                return _refused(cmd, "call.wrong_state", "the call is a conference: leave it instead")
            await store.call_control(self.call_id, "consult_complete", by=by, wrapup_s=wrapup)
            await self._target_takes_over()
            return accepted
        if isinstance(cmd, commands.Conference):
            if self.mode is Mode.CONFERENCE:
                return accepted
            await store.call_control(self.call_id, "conference", by=by)
            await self._remix(Mode.CONFERENCE)
            return accepted
        if isinstance(cmd, commands.ConferenceLeave):
            if self.mode is not Mode.CONFERENCE:
                return _refused(cmd, "call.wrong_state", "the call is not a conference")
            return await self._leave_conference(cmd, by, wrapup) or accepted
        return _refused(cmd, "command.unsupported", f"{cmd.kind} is not supported on this call")

    def _number_uri(self, number: str) -> str | None:
        """The URI of an external number (as click-to-dial and callbacks dial it: ``callbacks.dial_uri``),
        or None when ``calls.outbound_allow`` does not allow it."""
        settings = self.ctx.settings
        if not transfer_allowed(number, settings.calls.outbound_allow):
            return None
        return settings.callbacks.uri_for(number, settings.edge.host, settings.edge.port)

    async def _transfer(self, cmd: commands.Transfer, wrapup: float) -> Reply:
        if not self.transferable:
            return _refused(cmd, "command.unsupported", "a callback cannot be blind-transferred: consult instead")
        if cmd.target_type == "number" and not self.queue:
            return _refused(cmd, "call.wrong_state", "a call that came from no queue cannot go to a number "
                            "(if the number did not answer, the caller would have nowhere to wait)")
        if self.mode not in (Mode.TALK, Mode.HELD):
            return _refused(cmd, "call.wrong_state", f"the call is in a {self.mode} now: complete or cancel it")
        if cmd.target_type == "number" and self._number_uri(cmd.target) is None:
            return _refused(cmd, "number.not_allowed", "the number is not in calls.outbound_allow")
        await self.ctx.store.call_control(self.call_id, "transfer", by=cmd.by, a1=cmd.target_type,
                                          a2=cmd.target, wrapup_s=wrapup)
        self.next_step = (cmd.target_type, cmd.target)
        log.info("call.transferred", target_type=cmd.target_type, by=cmd.by, mode="blind")
        await self._monitor_end("agent_left")
        agent, self.agent_leg, self.agent_id = self.agent_leg, None, ""
        self.muted = False
        await self._remix(Mode.HELD)  # music until the target takes the call
        if agent is not None:
            await agent.hangup()
        return Reply(cmd.command_id, Status.ACCEPTED)

    async def _consult(self, cmd: commands.Consult) -> Reply:
        if self.consult_leg is not None:
            return _refused(cmd, "call.wrong_state", "a consult is already in progress")
        if self.mode not in (Mode.TALK, Mode.HELD):
            return _refused(cmd, "call.wrong_state", f"the call is in a {self.mode} now")
        uri = None
        if cmd.target_type == "number":
            uri = self._number_uri(cmd.target)
            if uri is None:
                return _refused(cmd, "number.not_allowed", "the number is not in calls.outbound_allow")
        if not await self.ctx.sip.grants_extra_leg():
            return _refused(cmd, "call.no_leg", "this worker has no leg free for a consult now; the caller "
                            "stays connected (see docs/call-control.md, the leg budget)")
        store = self.ctx.store
        res = await store.call_control(self.call_id, "consult", by=cmd.by, a1=cmd.target_type, a2=cmd.target)
        self.consult_agent = str(res.get("agent_id") or "")
        uri = uri or str(res.get("sip_uri") or "")
        leg = self.ctx.new_leg()
        try:
            if not uri:
                raise NoLineFree("the consulted agent has no phone address")
            await leg.dial(uri, extra=True, call_id=self.call_id)
        except Exception as exc:
            reason = "no_leg" if isinstance(exc, NoExtraLeg | NoLineFree) else "unreachable"
            log.warning("call.consult_dial_failed", error=str(exc), reason=reason)
            await store.call_control(self.call_id, "consult_failed", by=cmd.by, a1=reason)
            self.consult_agent = ""
            code = "call.no_leg" if reason == "no_leg" else "consult.unreachable"
            return _refused(cmd, code, f"the consult could not be dialled ({reason}); the caller stays connected")
        self.consult_leg, self.consult_answered = leg, False
        await self._remix(Mode.CONSULT)
        self._consult_task = asyncio.ensure_future(self._ring_target(leg, cmd.by))
        log.info("call.consult_started", target_type=cmd.target_type, consult_agent=self.consult_agent)
        return Reply(cmd.command_id, Status.ACCEPTED)

    async def _ring_target(self, leg: Leg, by: str) -> None:
        """Wait for the consult target to answer (``calls.consult_ring_s``); on no answer the agent is
        back with the caller (the record and the consulted agent follow). Runs beside the talk: what
        goes wrong is logged here, and the talk loop sees the legs as they are."""
        try:
            await self._ring_target_once(leg, by)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("call.consult_ring_failed", error=type(exc).__name__, detail=str(exc))
            self._changed.set()

    async def _ring_target_once(self, leg: Leg, by: str) -> None:
        ring_s = self.ctx.settings.calls.consult_ring_s
        outcome = await leg.wait_answered(ring_s, unless=self.leg.ended)
        async with self._lock:
            if leg is not self.consult_leg:
                return  # cancelled meanwhile
            if outcome == "answered":
                with contextlib.suppress(Conflict):
                    await self.ctx.store.call_control(self.call_id, "consult_answered", by=by)
                    self.consult_answered = True
                    await self._remix()
                    log.info("call.consult_answered", consult_agent=self.consult_agent)
                    return
            reason = {"timeout": "no_answer", "ended": "rejected", "hung_up": "hung_up"}.get(outcome, outcome)
            with contextlib.suppress(Conflict):
                await self.ctx.store.call_control(self.call_id, "consult_failed", by=by, a1=reason)
            await self._drop_target()
            await self._remix(Mode.TALK)
            log.info("call.consult_failed", reason=reason)
        self._changed.set()

    async def _drop_target(self) -> None:
        leg, self.consult_leg = self.consult_leg, None
        self.consult_agent, self.consult_answered = "", False
        task, self._consult_task = self._consult_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if leg is not None:
            self.media.forget(leg.leg_id)
            await leg.hangup()

    async def _target_takes_over(self) -> None:
        """The consult target is the call's agent from now on; the first agent's leg ends."""
        await self._monitor_end("agent_left")
        old, self.agent_leg = self.agent_leg, self.consult_leg
        self.agent_id = self.consult_agent
        self.consult_leg, self.consult_agent, self.consult_answered = None, "", False
        self._consult_task = None
        self.muted = False
        if self.agent_leg is not None:
            await self.agent_leg.settle_extra()
        if old is not None:
            self.media.forget(old.leg_id)
        await self._remix(Mode.TALK)
        if old is not None:
            await old.hangup()

    async def _leave_conference(self, cmd: commands.ConferenceLeave, by: str, wrapup: float) -> Reply | None:
        store, agent_id = self.ctx.store, cmd.agent_id
        if agent_id and agent_id == self.consult_agent:
            await store.call_control(self.call_id, "conference_leave", by=by, a1=agent_id, wrapup_s=wrapup)
            await self._drop_target()
            await self._remix(Mode.TALK)
            return None
        if agent_id == self.agent_id:
            await store.call_control(self.call_id, "conference_leave", by=by, a1=agent_id, wrapup_s=wrapup)
            await self._target_takes_over()
            return None
        return _refused(cmd, "agent.not_found", f"agent {agent_id} is not in this conference")

    # --- connecting ----------------------------------------------------------------------------
    async def _answered(self, other: Leg, ring_s: float) -> bool:
        """Wait for ``other`` to answer with media; LegEnded if the caller leaves meanwhile."""
        outcome = await other.wait_answered(ring_s, unless=self.leg.ended)
        if outcome == "aborted":
            await other.hangup()
            raise LegEnded(self.call_id)
        return outcome == "answered"

    async def _reject(self, cmd: commands.Reject) -> Reply:
        """The agent refuses the offer: its phone stops ringing, and :meth:`_offer` fails the offer
        with reason ``rejected`` (before the dial, when the pop is still on its way, it is not dialled)."""
        if self.offering != cmd.offer_id:
            return _refused(cmd, "offer.stale", f"offer {cmd.offer_id} is not ringing on this call")
        agent = self.agent_leg
        if agent is not None and agent.answered.is_set():
            return _refused(cmd, "call.wrong_state", "the agent already answered: hang up instead")
        self.rejected = cmd.offer_id
        log.info("offer.reject_requested", offer_id=cmd.offer_id, by=cmd.by, role=cmd.role)
        if agent is not None:
            await agent.hangup(603)  # 603 Decline: a CANCEL to a phone still ringing
        return Reply(cmd.command_id, Status.ACCEPTED)

    async def _connect(self, offer: Offer, moh_id: int | None) -> bool:
        self.offering = offer.offer_id
        try:
            return await self._offer(offer, moh_id)
        finally:
            self.offering = None

    async def _offer(self, offer: Offer, moh_id: int | None) -> bool:
        store, settings = self.ctx.store, self.ctx.settings
        log.info("offer.received", offer_id=offer.offer_id, agent_id=offer.agent_id)
        if settings.api.pop_wait_ms and await store.desktop_present(offer.agent_id):
            acked = await store.wait_pop_ack(offer.offer_id, settings.api.pop_wait_ms / 1000)
            log.info("offer.pop", acked=acked)
        if self.leg.is_ended:
            raise LegEnded(self.call_id)
        if self.rejected == offer.offer_id:  # refused from the desktop before the phone rang
            log.info("offer.failed", reason="rejected")
            await self._settle(store.offer_failed(self.call_id, offer.offer_id, "rejected"))
            return False
        agent = self.ctx.new_leg()
        self.agent_leg = agent
        try:
            await self._dial(offer.sip_uri, agent, call_id=self.call_id)
        except LegEnded:
            self.agent_leg = None
            raise
        except Exception as exc:
            log.warning("offer.dial_failed", uri=offer.sip_uri, error=str(exc))
            self.agent_leg = None
            await self._settle(store.offer_failed(self.call_id, offer.offer_id, "unreachable"))
            return False
        if await self._answered(agent, settings.workers.agent_ring_timeout_s):
            if moh_id is not None:
                await self.leg.stop_playback(moh_id)
            self.agent_id, self.queue, self.muted = offer.agent_id, offer.queue, False
            await self._remix(Mode.TALK)
            await self._settle(store.offer_answered(self.call_id, offer.offer_id))
            await self._record_answered()
            log.info("call.bridged", agent_id=offer.agent_id, agent_leg=agent.leg_id)
            return True
        reason = ("rejected" if self.rejected == offer.offer_id
                  else "ring_no_answer" if not agent.is_ended else f"agent_rejected_{agent.ended.result().code}")
        await agent.hangup()
        self.agent_leg = None
        log.info("offer.failed", reason=reason)
        await self._settle(store.offer_failed(self.call_id, offer.offer_id, reason))
        return False

    async def _dial(self, uri: str, leg: Leg, call_id: str = "") -> None:
        """Call the agent (``call_id``: sent as X-Ivr-Call-Id, the pop its browser phone waits for).
        The library may still hold a call slot for a leg that just ended or a
        caller being refused (NoLineFree) although this caller's agent line is reserved: wait for it
        (bounded by LINE_WAIT_S) instead of failing the offer and sending the agent on a break."""
        loop = asyncio.get_running_loop()
        started, tries = loop.time(), 0
        while True:
            tries += 1
            try:
                await leg.dial(uri, call_id=call_id)
            except NoLineFree as exc:
                if self.leg.is_ended:
                    raise LegEnded(self.call_id) from None
                if loop.time() - started >= LINE_WAIT_S:
                    raise
                if tries == 1:
                    log.info("offer.no_line_yet", error=str(exc))
                await asyncio.sleep(LINE_RETRY_S)
                continue
            if tries > 1:
                log.info("offer.line_waited", ms=round((loop.time() - started) * 1000), tries=tries)
            return

    async def _settle(self, outcome: Awaitable[Any]) -> None:
        """Record an offer's outcome; a stale offer (the call was ended elsewhere, e.g. reaped as
        lost) means this call is no longer ours to connect: end it here too."""
        try:
            await outcome
        except Conflict as exc:
            if exc.code != "offer.stale":
                raise
            log.warning("offer.stale", error=exc.message)
            raise LegEnded(self.call_id) from None

    async def _end_legs(self) -> None:
        """The call is over here: every leg is hung up, and the caller's RTP figures kept when the
        caller stayed on after the agent (a survey, a transfer) and its leg ends only now."""
        if self.forced_end:
            self.end_reason = self.forced_end
        with contextlib.suppress(Exception):
            for leg in (self.monitor_leg, self.consult_leg, self.agent_leg):
                if leg is not None:
                    await leg.hangup()
            await self.leg.hangup()
        if self._consult_task is not None:
            self._consult_task.cancel()
        if self._monitor_task is not None:
            self._monitor_task.cancel()
        await self._record_stop()
        if self.rtp and "caller" not in self.rtp:
            ended = await self.leg.wait_ended(5.0)
            if ended is not None:
                self.rtp["caller"] = ended.rtp

    async def _agent_left(self) -> None:
        """The agent hung up first and the caller stays (the plan may go on): the agent goes to
        wrap-up now, not when the call ends. If Redis refuses, end_call releases the agent later."""
        try:
            agent_id = await self.ctx.store.agent_left(self.call_id, wrapup_s=self.ctx.settings.routing.wrapup_s)
        except Exception as exc:
            log.warning("call.agent_left_failed", error=type(exc).__name__)
            return
        log.info("call.agent_left", agent_id=agent_id)

    # --- recording (ivr.calls.recording; docs/recording.md) -------------------------------------
    def _new_recording(self, *, ivr: bool) -> CallRecording:
        rec = CallRecording(self.ctx.sip, self.ctx.store, self.ctx.settings, worker=self.ctx.name,
                            call_id=self.call_id, ivr=ivr)
        rec.queue = self.queue
        return rec

    async def _record_follow(self) -> None:
        """The recording hears the caller on channel 0 and the agent side (the agent, a consult or
        conference target, a barging supervisor; not a coach's whisper) on channel 1, whatever the
        call's mode."""
        rec = self.recording
        if rec is None or not rec.running:
            return
        agent_side = [leg.leg_id for leg in (self.agent_leg, self.consult_leg) if leg is not None]
        if self.monitor_leg is not None and self.monitor_mode is MonitorMode.BARGE:
            agent_side.append(self.monitor_leg.leg_id)  # a barging supervisor talks to the customer too
        await rec.follow(self.leg.leg_id, agent_side, agents=[a for a in (self.agent_id, self.consult_agent) if a])

    async def record_queued(self, queue: str) -> None:
        """The caller enters ``queue``: its policy decides what becomes of a recording of the IVR
        part (``never``: it ends here and is kept as it is; ``on_demand``: it pauses until the agent
        starts it) and whether the caller hears the notice now (``always``)."""
        self.record_policy = policy_for(self.ctx.settings, queue, self.record_override)
        rec = self.recording
        if rec is not None and rec.running:
            rec.queue = rec.queue or queue
            if self.record_policy == "never":
                await self._record_stop()  # the IVR part is kept; the agent's part is not recorded
                await self.ctx.store.recording_state(self.call_id, "stopped", by="policy")
            elif self.record_policy == "on_demand":
                await rec.pause("policy", by="policy")
        if self.record_policy == "always" and self.ctx.settings.recording.announce:
            await self._record_notice(wait=True)  # before the music: the caller hears it whole

    def _policy(self) -> str:
        """The call's recording policy: its queue's when it was queued, else (a callback, a
        click-to-dial) that of the queue of the offer the agent took (``recording.policy`` without one)."""
        if self.record_policy is None:
            return policy_for(self.ctx.settings, self.queue, self.record_override)
        return self.record_policy

    async def _record_answered(self) -> None:
        """An agent answered: with ``always`` the recording starts (or goes on after the IVR part)."""
        if self._policy() != "always" or self.ctx.finisher is None:
            return
        try:
            if self.recording is None or not self.recording.running:
                self.recording = self._new_recording(ivr=False)
                await self.recording.start(by="policy")
            else:
                await self.recording.resume("policy", by="policy")
            await self._record_follow()
        except Exception as exc:  # a recording that cannot start never costs the call
            log.error("recording.start_failed", error=type(exc).__name__, detail=str(exc)[:200])
            self.recording = None

    async def _record_command(self, cmd: commands.Command) -> Reply:
        rec = self.recording
        accepted = Reply(cmd.command_id, Status.ACCEPTED)
        if isinstance(cmd, commands.RecordStart):
            if self._policy() == "never" or self.ctx.finisher is None:
                return _refused(cmd, "recording.not_allowed", "calls of this queue are never recorded")
            if rec is not None and rec.running:
                if "policy" in rec.pause_reasons:
                    await rec.resume("policy", by=cmd.by)
                    await self._record_notice()
                return accepted
            self.recording = rec = self._new_recording(ivr=False)
            await rec.start(by=cmd.by)
            await self._record_follow()
            if self.ctx.settings.recording.announce:
                await self._record_notice()
            return accepted
        if rec is None or not rec.running or "policy" in rec.pause_reasons:
            return _refused(cmd, "recording.off", "the call is not being recorded")
        if isinstance(cmd, commands.RecordPause):
            await rec.pause("agent", by=cmd.by)
        else:
            await rec.resume("agent", by=cmd.by)
        return accepted

    async def _record_notice(self, *, wait: bool = False) -> None:
        """Tell the caller the call is recorded (the notice of ``recording.notice``). Waited for when
        ``wait`` (at the queue, before the music); else only started, so nobody waits on it."""
        notice = self.ctx.settings.recording.notice
        language = self._notice_language()
        text = notice.get(language) or next(iter(notice.values()), "")
        if not text:
            return
        try:
            path = await self.ctx.prompts.resolve_async(PromptSpec(text=text), language)
            player, done = await self.leg.start_playback(str(path))
            if wait and not await self.leg.until(done, 30.0):
                await self.leg.stop_playback(player)
        except LegEnded:
            raise
        except Exception as exc:
            log.warning("recording.notice_failed", error=type(exc).__name__)

    def _notice_language(self) -> str:
        return self.language_hint or "en"

    async def record_sensitive(self, on: bool) -> None:
        """A sensitive collect begins (``on``) or ends: nothing of it reaches the recording."""
        rec = self.recording
        if rec is None or not rec.running:
            return
        if on:
            await rec.pause("sensitive", by="sensitive")
        else:
            await rec.resume("sensitive", by="sensitive")

    async def _record_stop(self) -> None:
        """Close the recording's files; the worker's finisher compresses and stores it."""
        rec, self.recording = self.recording, None
        if rec is None or not rec.running:
            return
        try:
            job = await rec.stop()
        except Exception as exc:
            log.error("recording.stop_failed", error=type(exc).__name__, detail=str(exc)[:200])
            return
        if job is not None and self.ctx.finisher is not None:
            self.ctx.finisher.submit(rec.dir)

    # --- after a blind transfer --------------------------------------------------------------------
    async def _talk_through(self) -> QueueOutcome:
        """The talk, and after a blind transfer the rest of the call: the caller waits with music for
        the offer its transfer made (a queue, a named agent) and talks to whoever takes it, as often
        as it is transferred. How the last talk ended; LegEnded when the caller leaves while waiting."""
        while (outcome := await self._talk()) == TRANSFERRED:
            if await self._after_transfer():
                continue  # a number answered: the caller talks to it
            while True:
                getter = asyncio.ensure_future(self.offers.get())
                try:
                    await self.leg.until(getter, None)
                finally:
                    getter.cancel()
                if await self._connect(getter.result(), None):
                    break
        return outcome

    async def _after_transfer(self) -> bool:
        """Carry out the blind transfer of ``next_step``: True when the caller talks to someone now
        (a number answered), False when it waits for an offer (a queue, a named agent, or its queue
        again when the number did not answer: the caller is never dropped)."""
        assert self.next_step is not None
        (kind, target), self.next_step = self.next_step, None
        if kind == "agent":
            return False  # the offer to that agent is already in this worker's inbox
        if kind == "number":
            if await self._to_number(target):
                return True
            log.info("call.transfer_unanswered", back_to=self.queue)
            target = self.queue
        await self._requeue(target)
        return False

    async def _to_number(self, number: str) -> bool:
        uri = self._number_uri(number)
        if uri is None:
            return False
        other = self.ctx.new_leg()
        try:
            await self._dial(uri, other)
        except LegEnded:
            raise
        except Exception as exc:
            log.warning("call.transfer_failed", error=str(exc))
            return False
        if not await self._answered(other, self.ctx.settings.calls.consult_ring_s):
            await other.hangup()
            return False
        self.agent_leg, self.agent_id = other, ""
        await self._remix(Mode.TALK)
        log.info("call.transferred_to_number")
        return True

    async def _requeue(self, queue: str) -> None:
        """Queue the caller again (a transfer): its priority and journey go with it; the pop of the
        next agent shows who transferred it (``transferred_from``)."""
        store = self.ctx.store
        record = await store.get_call(self.call_id) or {}
        route = resolve_route(self.ctx.settings.routing.queues, queue, language=self._queue_language())
        journey = self._queue_journey(record)
        self.queue = queue
        await store.enqueue(self.call_id, queue=queue, skill=route.primary_skill,
                            priority=int(record.get("priority") or 0),
                            journey={**journey, "language": self._queue_language()}, route=route)
        log.info("call.requeued", queue=queue)

    def _queue_language(self) -> str:
        """The caller's language, for the route of a queue it is transferred to ("" = any)."""
        return self.language_hint


    def _queue_journey(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The journey the next agent's pop shows after a transfer: the one on the record."""
        journey = record.get("journey")
        return dict(journey) if isinstance(journey, Mapping) else {}

    # --- the talk ------------------------------------------------------------------------------
    async def _talk(self) -> QueueOutcome:
        """Until the caller hangs up, the agent hangs up (the plan may go on: a survey), or a blind
        transfer takes the caller elsewhere (``TRANSFERRED``: see ``next_step``). Commands change the
        legs meanwhile; after each the loop looks again."""
        while True:
            agent, target = self.agent_leg, self.consult_leg
            self._changed.clear()
            changed = asyncio.ensure_future(self._changed.wait())
            waits: set[asyncio.Future[Any]] = {self.leg.ended, changed}
            waits |= {leg.ended for leg in (agent, target, self.monitor_leg) if leg is not None}
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
            async with self._lock:
                if self.leg.is_ended:
                    return await self._caller_left()
                if self.next_step is not None:
                    return TRANSFERRED
                if self.monitor_leg is not None and self.monitor_leg.is_ended:
                    await self._monitor_end("supervisor_hangup", self.monitor_leg)
                    continue
                if self.consult_leg is not None and self.consult_leg.is_ended:
                    await self._target_left()
                    continue
                if self.agent_leg is not None and self.agent_leg.is_ended:
                    outcome = await self._agent_gone()
                    if outcome is not None:
                        return outcome

    async def _caller_left(self) -> QueueOutcome:
        self.end_reason = "caller_hangup"
        await self._monitor_end("call_ended")
        legs = [("agent", self.agent_leg), ("consult", self.consult_leg)]
        for _, leg in legs:
            if leg is not None:
                await leg.hangup()
        for name, leg in [("caller", self.leg), *legs]:
            if leg is None:
                continue
            ended = await leg.wait_ended(5.0)
            if ended is not None:
                self.rtp[name] = ended.rtp
        self.agent_leg = self.consult_leg = None
        log.info("call.talk_ended", by="caller")
        return "caller_hangup"

    async def _target_left(self) -> None:
        """The consult or conference target hung up: the agent is back with the caller."""
        by = "target_hangup"
        with contextlib.suppress(IvrError):
            if self.mode is Mode.CONFERENCE:
                await self.ctx.store.call_control(self.call_id, "conference_leave", by=by, a1=self.consult_agent,
                                                  wrapup_s=self.ctx.settings.routing.wrapup_s)
            else:
                await self.ctx.store.call_control(self.call_id, "consult_failed", by=by, a1="hung_up")
        await self._drop_target()
        await self._remix(Mode.TALK)
        log.info("call.consult_target_left")

    async def _agent_gone(self) -> QueueOutcome | None:
        """The agent's leg ended. In a conference or an answered consult the target takes over (the
        caller is never dropped); with a consult still ringing the caller goes back to its queue;
        otherwise the agent left and the plan goes on (None: the talk goes on)."""
        agent = self.agent_leg
        assert agent is not None
        await self._monitor_end("agent_left")
        wrapup = self.ctx.settings.routing.wrapup_s
        if self.consult_leg is not None and (self.mode is Mode.CONFERENCE or self.consult_answered):
            op = "conference_leave" if self.mode is Mode.CONFERENCE else "consult_complete"
            await self.ctx.store.call_control(self.call_id, op, by="agent_hangup", a1=self.agent_id, wrapup_s=wrapup)
            log.info("call.agent_left_to_target", mode=str(self.mode))
            await self._target_takes_over()
            return None
        if self.consult_leg is not None:
            with contextlib.suppress(IvrError):
                await self.ctx.store.call_control(self.call_id, "consult_failed", by="agent_hangup", a1="agent_left")
            await self._drop_target()
            if self.queue and self.transferable:
                await self.ctx.store.call_control(self.call_id, "transfer", by="agent_hangup", a1="queue",
                                                  a2=self.queue, wrapup_s=wrapup)
                self.next_step = ("queue", self.queue)
                self.agent_leg, self.agent_id = None, ""
                await self._remix(Mode.HELD)
                log.info("call.requeued", reason="agent_left_during_consult")
                return TRANSFERRED
        self.end_reason = "agent_hangup"
        self.agent_leg = None
        await self._remix(Mode.TALK)  # music off (a held caller), no links
        await self._agent_left()
        ended = await agent.wait_ended(5.0)
        if ended is not None:
            self.rtp["agent"] = ended.rtp
        log.info("call.talk_ended", by="agent")
        return "agent_hangup"

    # --- live supervision (listen / whisper / barge) ------------------------------------------------
    async def _monitor_command(self, cmd: commands.MonitorStart | commands.MonitorChange | commands.MonitorStop
                               ) -> Reply:
        """A supervisor's command. The record changes first (``call_control.lua`` monitor_*), then the
        leg and the bridge; every start, change and stop goes to the audit trail."""
        if cmd.role not in ("supervisor", "admin"):
            return _refused(cmd, "auth.forbidden", "only supervisors and admins supervise calls")
        if isinstance(cmd, commands.MonitorStart):
            return await self._monitor_start(cmd)
        if self.monitor_leg is None:
            return _refused(cmd, "monitor.none", "no supervisor is on this call")
        if isinstance(cmd, commands.MonitorStop):
            await self._monitor_end("requested", self.monitor_leg, by=(cmd.by, cmd.role))
            return Reply(cmd.command_id, Status.ACCEPTED)
        mode = MonitorMode(cmd.mode)
        before = self.monitor_mode
        res = await self.ctx.store.call_control(self.call_id, "monitor_change", by=cmd.by, a1=mode.value)
        self.monitor_mode = mode
        await self._remix()
        if res.get("changed"):
            await self._monitor_audit("monitor.change", (cmd.by, cmd.role), {"mode": mode.value, "from": str(before)})
        log.info("call.monitor_changed", mode=mode.value, by=cmd.by)
        return Reply(cmd.command_id, Status.ACCEPTED)

    async def _monitor_start(self, cmd: commands.MonitorStart) -> Reply:
        if self.agent_leg is None or not self.agent_id:
            return _refused(cmd, "call.wrong_state", "the call is not with an agent")
        if self.monitor_leg is not None:
            return _refused(cmd, "monitor.active", "a supervisor is already on this call")
        uri = await self._monitor_uri(cmd)
        if uri is None:
            if cmd.target_type == "number":
                return _refused(cmd, "number.not_allowed", "the number is not in calls.outbound_allow")
            return _refused(cmd, "agent.no_phone", f"{cmd.target} has no phone address to dial")
        if not await self.ctx.sip.grants_extra_leg():
            return _refused(cmd, "call.no_leg", "this worker has no leg free for a supervisor now; the call "
                            "is unchanged (see docs/call-control.md, the leg budget)")
        store, mode = self.ctx.store, MonitorMode(cmd.mode)
        notify = "1" if self.ctx.settings.supervision.notify_agent_on_listen else ""
        await store.call_control(self.call_id, "monitor_start", by=cmd.by, a1=mode.value, a2=notify)
        leg = self.ctx.new_leg()
        try:
            await leg.dial(uri, extra=True)
        except Exception as exc:
            reason = "no_leg" if isinstance(exc, NoExtraLeg | NoLineFree) else "unreachable"
            log.warning("call.monitor_dial_failed", error=str(exc), reason=reason)
            with contextlib.suppress(IvrError):
                await store.call_control(self.call_id, "monitor_stop", by=cmd.by, a1=reason)
            code = "call.no_leg" if reason == "no_leg" else "monitor.unreachable"
            return _refused(cmd, code, f"the supervisor's phone could not be dialled ({reason}); the call is unchanged")
        self.monitor_leg, self.monitor_mode, self.monitor_by = leg, mode, (cmd.by, cmd.role)
        self._monitor_task = asyncio.ensure_future(self._ring_monitor(leg))
        await self._monitor_audit("monitor.start", self.monitor_by,
                                  {"mode": mode.value, "target_type": cmd.target_type})
        log.info("call.monitor_started", mode=mode.value, target_type=cmd.target_type, by=cmd.by)
        return Reply(cmd.command_id, Status.ACCEPTED)

    async def _monitor_uri(self, cmd: commands.MonitorStart) -> str | None:
        """The supervisor's phone: an allowlisted number (dialled as a consult to a number is), or the
        phone of an agent id (its record's ``sip_uri``) or of a configured user with a ``sip_uri``."""
        if cmd.target_type == "number":
            return self._number_uri(cmd.target)
        agent = await self.ctx.store.get_agent(cmd.target)
        uri = str((agent or {}).get("sip_uri") or "")
        if not uri:
            uri = next((u.sip_uri for u in self.ctx.settings.users if u.id == cmd.target and u.sip_uri), "")
        return uri or None

    async def _ring_monitor(self, leg: Leg) -> None:
        """Wait for the supervisor to answer (``supervision.ring_s``); then the bridge links it. Not
        answered: the supervision ends (the call never noticed). Runs beside the talk."""
        try:
            outcome = await leg.wait_answered(self.ctx.settings.supervision.ring_s, unless=self.leg.ended)
            async with self._lock:
                if leg is not self.monitor_leg:
                    return  # stopped meanwhile
                if outcome == "answered":
                    await self.ctx.store.call_control(self.call_id, "monitor_answered", by=self.monitor_by[0])
                    await self._remix()
                    log.info("call.monitor_answered", mode=str(self.monitor_mode))
                    return
                reason = {"timeout": "no_answer", "ended": "no_answer", "hung_up": "supervisor_hangup",
                          "aborted": "call_ended"}.get(outcome, outcome)
                await self._monitor_end(reason, leg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("call.monitor_ring_failed", error=type(exc).__name__, detail=str(exc))
        self._changed.set()

    async def _monitor_end(self, reason: str, leg: Leg | None = None, *, by: tuple[str, str] | None = None) -> None:
        """End the supervision (``leg``: only if that leg is still the supervisor's): the record and
        the event first, then the leg; its links go with it, caller and agent keep theirs."""
        if self.monitor_leg is None or (leg is not None and leg is not self.monitor_leg):
            return
        leg, self.monitor_leg = self.monitor_leg, None
        self.monitor_mode = None
        task, self._monitor_task = self._monitor_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        who = by or self.monitor_by
        with contextlib.suppress(IvrError):
            await self.ctx.store.call_control(self.call_id, "monitor_stop", by=who[0], a1=reason)
        self.media.forget(leg.leg_id)
        await leg.hangup()
        await self._monitor_audit("monitor.stop", who, {"reason": reason})
        log.info("call.monitor_stopped", reason=reason)

    async def _monitor_audit(self, action: str, who: tuple[str, str], detail: dict[str, str]) -> None:
        """An entry of the audit trail (A3); a failure to write it is logged, never ends the call."""
        try:
            await self.ctx.store.audit(action, by=who[0], role=who[1], target=self.agent_id, call_id=self.call_id,
                                       detail=detail)
        except Exception as exc:
            log.warning("audit.failed", action=action, error=type(exc).__name__)
