"""The worker role: one pjsua2 endpoint (at most 4 legs) running calls through their dial plans."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import time
import uuid
from datetime import UTC, datetime

import structlog
from redis.exceptions import RedisError

from ivr.calls.agent_call import AgentCall
from ivr.calls.callback import CallbackSession
from ivr.calls.context import WorkerContext
from ivr.calls.dialout import DialoutSession
from ivr.calls.originate import OriginateSession
from ivr.calls.recording import RecordingFinisher, delete_expired
from ivr.calls.session import CallSession
from ivr.core import commands
from ivr.core.config import Settings
from ivr.core.errors import Conflict
from ivr.core.logging import get_logger
from ivr.core.process import pid_alive
from ivr.core.recording_store import open_store
from ivr.core.tasks import TaskGroup
from ivr.dialplan.calling_window import open_map
from ivr.dialplan.registry import LiveRegistry, VersionArchive
from ivr.dialplan.reports import plan_reports
from ivr.edge import edge_sources
from ivr.prompts.library import PromptLibrary
from ivr.prompts.moh import music_on_hold
from ivr.queues.connection import BLOCK_S, close, connect, keep_running
from ivr.queues.dialplan_status import DialplanStatus
from ivr.queues.stats import StatsConfig
from ivr.queues.store import QueueStore
from ivr.sip.bridge import SipThread
from ivr.sip.engine import EngineConfig
from ivr.sip.events import Disconnected, IncomingCall, Rejected, SipEvent
from ivr.sip.legs import Leg
from ivr.speech.client import SpeechClient

log = get_logger(__name__)
# Every beat is a round trip from every worker (500 workers: 125 a second at 4 s); the TTL below, not
# the beat, decides how fast a dead worker's calls are reaped.
HEARTBEAT_S = 4.0
# A dead worker's calls are reaped at most this + one housekeeping tick later (a worker restarted on
# its host reaps its predecessor at once). Not shorter: at 150 calls/s on 2 cores (beyond the 100
# sustained) 200 busy workers missed a 6 s TTL, and live calls were reaped as lost.
HEARTBEAT_TTL_S = 15
# The housekeeping leader ticks every HOUSEKEEPING_S and holds a 3 s lease; the others try for it every
# HOUSEKEEPING_TRY_S (a leader that dies is replaced within 3 + 5 s; each try is a script run, from
# every worker: 200 idle workers made 80 a second at 2.5 s)
HOUSEKEEPING_S = 0.5
HOUSEKEEPING_TRY_S = 5.0
ESCALATE_BATCH = 20  # callers escalated per script run (short scripts: Redis runs one at a time)
CASE_DEADLINE_BATCH = 50  # overdue cases marked per script run (at most 20 runs a tick)
CASE_TASK_BATCH = 20  # follow-up tasks offered per script run (at most 5 runs a tick)
# The campaign dialler (lua/lib/campaigns.lua): a tick every CAMPAIGN_TICK_S on the housekeeping
# leader (the token bucket is in Redis: a tick's length only bounds the burst, not the rate), at most
# CAMPAIGN_TICK_BUDGET calls placed per tick; the calling windows are re-read every CAMPAIGN_WINDOWS_S
# (with no campaign running, that read is all the dialler does: a started campaign dials within it).
RECORDING_RETENTION_S = 60.0  # how often the housekeeping leader deletes recordings past their retention
RECORDINGS_DRAIN_S = 20.0  # a stopping worker waits this long for the recordings it is finishing
CAMPAIGN_TICK_S = 0.1
CAMPAIGN_TICK_BUDGET = 50
CAMPAIGN_WINDOWS_S = 1.0
# a directory: each worker runs under cProfile (its event loop's thread) and writes its profile there
# when it stops (bench/setup_profile.py)
PROFILE_ENV = "IVR_PROFILE_DIR"


def new_call_id() -> str:
    return uuid.uuid4().hex[:16]


class Worker:
    def __init__(self, settings: Settings, index: int, name: str | None = None) -> None:
        """``name``: the worker's id in Redis (inbox, alive key, call records); default ``w<index>``.
        Workers on several hosts need distinct names (``ivr worker --name``)."""
        self.settings = settings
        self.index = index
        self.name = name or f"w{index}"
        self.legs: dict[str, Leg] = {}
        self.sessions: dict[str, AgentCall] = {}  # inbound calls, callbacks and click-to-dial calls, by call id
        self.tasks = TaskGroup(f"worker.{self.name}")
        self.ctx: WorkerContext | None = None
        self.idle = asyncio.Event()  # set whenever no call is in progress
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self.draining = False
        # set while this worker holds the housekeeping lease (its last tick said so): it runs the
        # campaign dialler, which waits on it (no idle ticks on the other workers)
        self.leading = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        structlog.contextvars.bind_contextvars(worker=self.name)
        redis = connect(s.redis)
        store = QueueStore(redis, s.redis.prefix, s.routing.events_maxlen, StatsConfig.from_routing(s.routing))
        # The plans follow their files; a call keeps the version it started with.
        plans = await asyncio.to_thread(
            LiveRegistry, s.dialplans_dir, VersionArchive(s.var_dir / "dialplans", s.dialplan.keep_versions),
            by=f"{self.name}@{socket.gethostname()}")
        plan_status = DialplanStatus(redis, store.keys, self.name)
        prompts = PromptLibrary(s.prompts.dir, s.prompt_cache, s.workers.clock_rate, s.prompts.voices)
        moh = await asyncio.to_thread(music_on_hold, s.prompt_cache, s.workers.clock_rate, s.prompts.moh)
        w = s.workers
        sip = SipThread(
            EngineConfig(host=w.host, sip_port=w.sip_port(self.index), rtp_port=w.rtp_port(self.index),
                         rtp_port_range=w.rtp_ports_per_worker, budget=w.leg_budget, clock_rate=w.clock_rate,
                         edge_sources=edge_sources(s)),
            self._on_event, poll_ms=w.poll_ms, new_leg_id=new_call_id, profile_to=profile_path(self.name, "sip"))
        speech = SpeechClient(s.speech.host, s.speech.port) if s.speech.enabled else None
        finisher = RecordingFinisher(s, store, open_store(s), worker=self.name) if s.recording.enabled else None
        self.ctx = WorkerContext(self.name, s, store, sip, plans, prompts, str(moh), self._new_leg, speech,
                                 finisher=finisher)
        await self._claim_name(store)
        # Calls still recorded under this name belong to a previous process that died: lost.
        reaped = await store.reap_worker(self.name, wrapup_s=s.routing.wrapup_s, ttl_s=s.routing.call_ttl_s)
        if reaped:
            log.warning("worker.reaped_predecessor", calls=reaped)
        await sip.start()
        if finisher is not None:
            await finisher.recover()  # what a predecessor of this name left half done
        await store.register_worker(self.name, self.identity, ttl_s=HEARTBEAT_TTL_S, slots=self._slots())
        self.tasks.spawn("inbox", self._inbox(store))
        self.tasks.spawn("heartbeat", self._heartbeat(store))
        self.tasks.spawn("housekeeping", self._housekeeping(store))
        self.tasks.spawn("campaigns", self._campaigns(store))
        self.tasks.spawn("dialplans", plans.watch(s.dialplan.reload_poll_s,
                                                  lambda reg: plan_status.report(plan_reports(reg))))
        log.info("worker.ready", sip_port=w.sip_port(self.index), pid=os.getpid())
        try:
            await stop.wait()
            await self._drain(sip)
        finally:
            log.info("worker.stopping", calls=len(self.sessions))
            if finisher is not None:  # recordings of the calls just ended: stored, or left for the next start
                left = await finisher.drain(RECORDINGS_DRAIN_S)
                if left:
                    log.warning("worker.recordings_left", count=left)
            await self.tasks.cancel_all()
            await sip.stop()
            with contextlib.suppress(RedisError):
                await plan_status.clear()
            if speech is not None:
                await speech.close()
            await store.unregister_worker(self.name)
            await close(redis)
            log.info("worker.stopped")

    async def _claim_name(self, store: QueueStore) -> None:
        """Refuse to run under a name a live process holds (here or on another host): reaping its
        calls would cut them off. A holder on this host whose pid is gone is a dead predecessor."""
        holder = await store.worker_holder(self.name)
        if holder is None or holder == self.identity:
            return
        host, _, pid = holder.rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid)):
            return
        raise Conflict(f"worker name {self.name} is held by {holder}", code="worker.name_in_use")

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
            self._start_session(event.leg_id, CallSession(self.ctx, leg, event))
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

    def _start_session(self, call_id: str, session: CallSession | CallbackSession | OriginateSession) -> None:
        self.sessions[call_id] = session
        task = self.tasks.spawn(f"call.{call_id}", session.run())
        task.add_done_callback(functools.partial(self._session_done, call_id))

    def _slots(self) -> int:
        """Calls this worker can hold (each a caller leg + its agent leg); 0 while draining."""
        return 0 if self.draining else self.settings.workers.leg_budget.caller_slots

    def _session_done(self, call_id: str, _task: object) -> None:
        session = self.sessions.pop(call_id, None)
        if isinstance(session, OriginateSession | DialoutSession):
            # a leg never dialled (the customer's, when the agent did not answer or the plan is gone) gets
            # no SIP event that would drop it; a late event of a leg dropped here is ignored
            for leg in session.made if isinstance(session, OriginateSession) else [session.leg]:
                if not leg.is_ended:
                    self.legs.pop(leg.leg_id, None)
        if not self.sessions:
            self.idle.set()

    async def _inbox(self, store: QueueStore) -> None:
        await keep_running("inbox", functools.partial(self._next_message, store), event="worker.redis_unavailable")

    async def _next_message(self, store: QueueStore) -> float:
        """Take one message of the inbox (an offer or a command) to where it belongs."""
        try:
            offer = await store.next_message(self.name, timeout_s=BLOCK_S)
        except ValueError as exc:  # a malformed message or an unknown command: never stops the inbox
            log.warning("worker.inbox_message_refused", error=str(exc))
            return 0
        if offer is None:
            return 0
        if isinstance(offer, commands.Command):
            self._command(store, offer)
            return 0
        if offer.is_callback and offer.dial and offer.call_id not in self.sessions and self.ctx is not None:
            self._start_session(offer.call_id, CallbackSession(self.ctx, offer))  # dials the customer
            return 0
        if offer.is_dialout and offer.dial and offer.call_id not in self.sessions and self.ctx is not None:
            self._start_session(offer.call_id, DialoutSession(self.ctx, offer))  # dials, then runs the plan
            return 0
        if offer.is_outbound and offer.dial and offer.call_id not in self.sessions and self.ctx is not None:
            self._start_session(offer.call_id, OriginateSession(self.ctx, offer))  # rings the agent, then dials
            return 0
        session = self.sessions.get(offer.call_id)
        if session is None:
            log.warning("offer.orphan", call_id=offer.call_id, offer_id=offer.offer_id)
            with contextlib.suppress(Exception):
                await store.offer_failed(offer.call_id, offer.offer_id, "call_gone")
            return 0
        session.deliver(offer)
        return 0

    def _command(self, store: QueueStore, command: commands.Command) -> None:
        """Hand a command to the session of its call and send the reply; never blocks the inbox."""
        if command.expired():
            log.warning("command.expired", kind=command.kind, call_id=command.call_id, command_id=command.command_id)
            return
        session = self.sessions.get(command.call_id)

        async def carry_out() -> None:
            if session is None:
                reply = commands.Reply(command.command_id, commands.Status.GONE, "call.gone",
                                       "the call is no longer on this worker")
            else:
                reply = await session.command(command)
            log.info("command.done", kind=command.kind, call_id=command.call_id, by=command.by,
                     status=reply.status, code=reply.code)
            try:
                await store.reply_command(reply)
            except RedisError as exc:
                log.warning("command.reply_lost", command_id=command.command_id, error=str(exc))

        self.tasks.spawn(f"command.{command.command_id}", carry_out())

    async def _drain(self, sip: SipThread) -> None:
        """Refuse new calls (503) and let the calls in progress finish, up to ``workers.drain_s``."""
        self.draining = True
        await sip.set_draining(True)
        drain_s = self.settings.workers.drain_s
        log.info("worker.draining", calls=len(self.sessions), drain_s=drain_s)
        if self.sessions:
            self.idle.clear()
            try:
                await asyncio.wait_for(self.idle.wait(), drain_s)
            except TimeoutError:
                log.warning("worker.drain_timeout", calls=len(self.sessions))

    async def _heartbeat(self, store: QueueStore) -> None:
        async def beat() -> float:
            await store.register_worker(self.name, self.identity, ttl_s=HEARTBEAT_TTL_S, slots=self._slots())
            return HEARTBEAT_S

        await keep_running("heartbeat", beat, event="worker.redis_unavailable", pause_on_error_s=HEARTBEAT_S)

    def _caller_id(self) -> str:
        """The caller ID an automated call shows: ``calls.caller_id``, else the first number of the
        first plan (by id) this worker runs (as click-to-dial does)."""
        if self.settings.calls.caller_id or self.ctx is None:
            return self.settings.calls.caller_id
        for loaded in sorted(self.ctx.plans.plans, key=lambda lp: lp.path.stem):
            for number in loaded.plan.numbers:
                if number != "*":
                    return number
        return ""

    async def _housekeeping(self, store: QueueStore) -> None:
        """Whichever worker holds the lease releases finished wrap-ups, applies due escalation steps,
        marks complaint cases past their due time overdue, offers follow-up tasks for cases near it
        (``cases.offer_before_s``), starts the follow-ups (回访) of closed cases that are due and reaps
        dead workers' calls, so the cost does not grow with the
        number of workers."""
        owner = f"{self.name}:{os.getpid()}"
        r, c = self.settings.routing, self.settings.cases
        purge_at = [0.0, 0.0]  # the next retention purges (monotonic s): closed cases, recordings
        media = open_store(self.settings)

        async def tick() -> float:
            reaped = await store.housekeeping(owner, lease_ms=3000, wrapup_s=r.wrapup_s, ttl_s=r.call_ttl_s)
            leader = reaped is not None
            (self.leading.set if leader else self.leading.clear)()
            for _ in range(50 if leader else 0):  # more escalations due: short batches
                if await store.escalate(ESCALATE_BATCH) < ESCALATE_BATCH:
                    break
            for _ in range(20 if leader else 0):  # complaint cases past their due time: case.overdue
                if await store.case_deadlines(limit=CASE_DEADLINE_BATCH) < CASE_DEADLINE_BATCH:
                    break
            for _ in range(5 if leader else 0):  # follow-up tasks: expired ones back, cases near their due time offered
                if await store.case_offer_tasks(before_ms=c.offer_before_s * 1000, skill=c.skill,
                                                timeout_ms=c.task_timeout_s * 1000, limit=CASE_TASK_BATCH,
                                                allow=self.settings.calls.outbound_allow) < CASE_TASK_BATCH:
                    break
            if leader and time.monotonic() >= purge_at[0]:  # closed cases past their retention, hourly
                purge_at[0] = time.monotonic() + 3600
                closed_before = int(time.time() * 1000) - c.retention_days * 86_400_000
                for _ in range(50):  # 5,000 an hour at most: the rest next hour
                    if await store.purge_closed_cases(closed_before_ms=closed_before, limit=100) < 100:
                        break
            if leader and time.monotonic() >= purge_at[1]:  # recordings past their retention: file and index
                purge_at[1] = time.monotonic() + RECORDING_RETENTION_S
                for _ in range(10):
                    if await delete_expired(store, media, limit=100) < 100:
                        break
            for _ in range(5 if leader else 0):  # follow-ups (回访) due: automated calls placed, tasks offered
                if await store.case_followups(caller_id=self._caller_id(), skill=c.skill,
                                              task_timeout_ms=c.task_timeout_s * 1000, limit=CASE_TASK_BATCH,
                                              allow=self.settings.calls.outbound_allow) < CASE_TASK_BATCH:
                    break
            for dead, calls in (reaped or {}).items():
                log.warning("worker.reaped", dead_worker=dead, calls=calls)
            return HOUSEKEEPING_S if leader else HOUSEKEEPING_TRY_S

        await keep_running("housekeeping", tick, event="worker.redis_unavailable", pause_on_error_s=2.5)


    async def _campaigns(self, store: QueueStore) -> None:
        """The campaign dialler: while this worker holds the housekeeping lease, every
        ``CAMPAIGN_TICK_S`` one script places the calls the running campaigns' pacing allows
        (:meth:`QueueStore.campaign_tick`), in the time zones whose calling window is open now
        (computed here: the state layer does not know calendars). A second leader for a moment (the
        lease moving) is harmless: the bucket and the records are moved by one script at a time."""
        windows: dict[str, list[int]] = {}
        windows_at = 0.0

        async def tick() -> float:
            nonlocal windows, windows_at
            if self.draining:
                return CAMPAIGN_TICK_S * 5
            if not self.leading.is_set():
                await self.leading.wait()  # all but one worker: not a wake-up until the lease is theirs
                return 0
            mono = time.monotonic()
            if mono - windows_at >= CAMPAIGN_WINDOWS_S:
                running = await store.campaign_windows()
                windows = open_map(running, datetime.now(UTC).replace(tzinfo=None))
                windows_at = mono
                if not running:  # no campaign to dial: look again when the windows are re-read, not 10x/s
                    return CAMPAIGN_WINDOWS_S
            placed, _full = await store.campaign_tick(open_zones=windows, budget=CAMPAIGN_TICK_BUDGET)
            if placed:
                log.debug("campaign.dialled", calls=placed)
            return CAMPAIGN_TICK_S

        await keep_running("campaigns", tick, event="worker.redis_unavailable", pause_on_error_s=2.5)


def profile_path(worker: str, thread: str) -> str | None:
    """Where a thread of this worker writes its CPU profile, when a benchmark asked for one
    (``IVR_PROFILE_DIR``): ``<dir>/<worker>-<pid>-<thread>.pstats``."""
    profile_dir = os.environ.get(PROFILE_ENV)
    return os.path.join(profile_dir, f"{worker}-{os.getpid()}-{thread}.pstats") if profile_dir else None


def main(settings: Settings, index: int, name: str | None = None) -> None:
    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Worker(settings, index, name).run(stop)

    profile_to = profile_path(name or f"w{index}", "loop")
    if profile_to is None:
        asyncio.run(_main())
        return
    import cProfile  # a benchmark's tool (bench/setup_profile.py), never on in production

    profiler = cProfile.Profile(time.thread_time)  # the event loop's own CPU, not the wall clock
    profiler.enable()
    try:
        asyncio.run(_main())
    finally:
        profiler.disable()
        profiler.dump_stats(profile_to)
