"""Every pjsua2 object lives here and is touched only from the SIP thread (see ``bridge.py``).

The library is built with 4 call legs per process. A caller is admitted only if a slot stays free
for the agent leg it will need later; otherwise the INVITE is answered ``503`` with ``Retry-After``
so the edge fails over to another worker (the library itself would say ``486``).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import itertools
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pjsua2 as pj

from ivr.core.leg_budget import LegBudget
from ivr.core.logging import LogThrottle, get_logger
from ivr.sip.events import (
    Answered,
    Disconnected,
    Dtmf,
    IncomingCall,
    MediaReady,
    PlaybackDone,
    Rejected,
    Ringing,
    SipEvent,
)

log = get_logger(__name__)
CLOCK_IDLE_S = 2.0
MOH_LOOP_COPIES = 10
ENDING_WARN_S = 10.0  # a hung-up leg whose library call is still there after this long is logged (once)
TAP_REUSE_TICKS = 2  # bridge ticks a stopped tap must see before it listens again (see _Tap)
FRAME_US = 20_000
_USER = re.compile(r"sips?:([^@;>]+)@")
_REQ_LINE = re.compile(r"^INVITE\s+(\S+)\s+SIP/2\.0", re.M)
_HEADER_NAME = re.compile(r"X-[A-Za-z0-9-]{1,60}")  # extra INVITE headers: extension headers only
_HEADER_VALUE = re.compile(r"[\x21-\x7e]{1,200}")  # one printable token-ish line, no CR/LF or spaces


# pjsua's own list of the call slots in use (pjsua_enum_calls: every call whose INVITE session is
# still there, also one pjsua already reported DISCONNECTED). pjsua2 has no wrapper for it, and
# Call.getInfo() on an empty slot logs an error line at level 1 before it raises.
_PJSUA = ctypes.CDLL(importlib.import_module("pjsua2._pjsua2").__file__)
_PJSUA.pjsua_enum_calls.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_uint)]
_PJSUA.pjsua_enum_calls.restype = ctypes.c_int


def _library_calls(max_calls: int) -> set[int]:
    """The pjsua call ids (slots) that hold a call now. Call on the SIP thread."""
    ids = (ctypes.c_int * max_calls)()
    count = ctypes.c_uint(max_calls)
    if _PJSUA.pjsua_enum_calls(ids, ctypes.byref(count)) != 0:
        return set(range(max_calls))  # cannot tell: every slot counts as held
    return set(ids[:count.value])


class LegGone(KeyError):
    """The leg is no longer there (hung up and forgotten) when a command for it runs."""


class WorkerFull(RuntimeError):
    """A call to a customer (a callback) was refused: no caller slot is free, or the worker drains."""


class NoLineFree(RuntimeError):
    """pjsua2 has no call slot left for a new leg (PJ_ETOOMANY): a leg that ended or a call being
    refused still holds one for a moment. Says what held the slots."""


class NoExtraLeg(RuntimeError):
    """The leg budget grants no extra leg (a consult or conference target) now: every leg is spent
    on the admitted callers' pairs and other extra legs. Nothing was dialled."""


PJ_ETOOMANY = 70010  # pj/errno.h: PJ_ERRNO_START_STATUS (70000) + 10


class SipFailed(RuntimeError):
    """pjsua2 refused a command (``pj.Error``), carried to the asyncio side as plain text: its message
    is pjsip's own (``Error.info()``: the call, the status and its title), and no pjsua2 object
    crosses the thread boundary."""


@dataclass(frozen=True)
class EngineConfig:
    host: str
    sip_port: int
    rtp_port: int
    rtp_port_range: int
    budget: LegBudget = field(default_factory=LegBudget)
    clock_rate: int = 8000
    user_agent: str = "ivr-hotline"
    retry_after_s: int = 5
    edge_sources: frozenset[str] = frozenset()
    """``ip:port`` (IPv6 ``[ip]:port``) a new call may come from: the edge's SIP sockets. Empty:
    from anywhere (a worker tested on its own). Any other source gets 403."""


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _user_of(uri: str) -> str:
    m = _USER.search(uri)
    return m.group(1) if m else uri


class _Call(pj.Call):
    def __init__(self, engine: SipEngine, acc: pj.Account, leg_id: str, call_id: int = pj.PJSUA_INVALID_ID,
                 inbound: bool = True) -> None:
        super().__init__(acc, call_id)
        self.engine = engine
        self.leg_id = leg_id
        self.inbound = inbound
        self.rtp: dict[str, int] = {}
        self.ended_at = 0.0    # when DISCONNECTED was reported (see SipEngine._ending)
        self.warned = False

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        ci = self.getInfo()
        if ci.state == pj.PJSIP_INV_STATE_EARLY and not self.inbound:
            self.engine.emit(Ringing(self.leg_id, ci.lastStatusCode))
        elif ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.engine.emit(Answered(self.leg_id))
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.engine.on_disconnected(self, ci.lastStatusCode, ci.lastReason)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        if self.hasMedia():
            self.engine.emit(MediaReady(self.leg_id))

    def onStreamDestroyed(self, prm: pj.OnStreamDestroyedParam) -> None:
        try:
            st = self.getStreamStat(prm.streamIdx)
            self.rtp = {"rx_packets": st.rtcp.rxStat.pkt, "tx_packets": st.rtcp.txStat.pkt}
        except pj.Error:
            pass

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        method = {pj.PJSUA_DTMF_METHOD_RFC2833: "rfc2833", pj.PJSUA_DTMF_METHOD_SIP_INFO: "info"}.get(
            prm.method, str(prm.method))
        self.engine.emit(Dtmf(self.leg_id, prm.digit, method))


class _Player(pj.AudioMediaPlayer):
    def __init__(self, engine: SipEngine, leg_id: str, player_id: int) -> None:
        super().__init__()
        self.engine = engine
        self.leg_id = leg_id
        self.player_id = player_id

    def onEof2(self) -> None:  # media clock thread: only post, never touch pjsua2 here
        self.engine.emit(PlaybackDone(self.leg_id, self.player_id))


class _Tap(pj.AudioMediaPort):
    """Receives the caller's audio from the conference bridge while a dial-plan node listens.

    ``onFrameReceived`` runs on the media clock thread: copy the bytes, hand them to ``sink`` (a
    thread-safe, non-blocking hand-off; see ``bridge.FrameSink``) and return. Nothing else here.
    A tick without audio (no RTP came in) is handed on as silence, so the recogniser's clock keeps
    running with the call's (its end-of-speech detection needs the silence after the words).

    Lifetime: a tap is never deleted while the bridge clock runs. pjsua2 gives no way to take an
    ``AudioMediaPort`` out of the bridge but its destructor, and the clock thread calls every port
    of the bridge on every tick, connected or not. The SWIG wrapper runs that destructor with the
    GIL released once the Python object's count is already zero: the clock thread then ran
    ``onFrameReceived`` on the half-freed object (its ``__dict__`` gone: AttributeError; its count
    taken 0 -> 1 -> 0 again: a second deallocation, SIGSEGV - issue 18, two workers lost). So a
    stopped tap goes back to the engine's spare list, still in the bridge and fed nothing, and the
    next listen on the worker reuses it; spares are deleted only with the clock stopped (an idle
    worker, or shutdown), when no thread can call them.
    """

    def __init__(self, tap_id: int, sink: Callable[[bytes], None] | None, silence: bytes) -> None:
        super().__init__()
        self.tap_id = tap_id
        self.sink: Callable[[bytes], None] | None = sink
        self.silence = silence
        self.after_stop = 0        # ticks the bridge still called us after stop_listen (no transmitter)
        self.audio_after_stop = 0  # ... of which carried audio (must stay ~0: the caller is disconnected)

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        sink = self.sink
        if sink is None:
            self.after_stop += 1
            if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO:
                self.audio_after_stop += 1
        elif frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO:
            sink(bytes(frame.buf))
        else:
            sink(self.silence)


class _Account(pj.Account):
    def __init__(self, engine: SipEngine) -> None:
        super().__init__()
        self.engine = engine

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self.engine.on_incoming(self, prm)


class SipEngine:
    """pjsua2 endpoint, transports, account, calls and players. Not thread-safe by design."""

    def __init__(self, cfg: EngineConfig, emit: Callable[[SipEvent], None], new_leg_id: Callable[[], str]):
        self.cfg = cfg
        self.emit = emit
        self.new_leg_id = new_leg_id
        self.ep: pj.Endpoint | None = None
        self.acc: _Account | None = None
        self.legs: dict[str, _Call] = {}
        self.callers: set[str] = set()
        self.extras: set[str] = set()  # consult / conference legs beyond the callers' pairs
        self.players: dict[int, tuple[_Player, str]] = {}
        self._paused: dict[int, list[int]] = {}  # solo player -> the players of its leg it paused
        self._player_ids = itertools.count(1)
        self.taps: dict[int, tuple[_Tap, str]] = {}
        self._spare_taps: list[_Tap] = []  # stopped taps, still in the bridge: see _Tap
        self.taps_created = 0
        self.recorders: dict[int, tuple[pj.AudioMediaRecorder, str]] = {}
        self.call_recordings: dict[int, list[pj.AudioMediaRecorder]] = {}  # two-channel call recordings
        self._keeper: pj.AudioMediaPlayer | None = None  # silence for every call recording (see start_call_recording)
        self._dead: list[_Call] = []
        # Legs reported DISCONNECTED whose library call may still hold its slot: pjsua reports
        # DISCONNECTED as soon as hangup() is asked, but frees the slot only when the INVITE session
        # really ends (a ringing phone that never answers the CANCEL keeps it). They count as used
        # legs until then (see extra_legs); the Call object is kept until its slot is free, since
        # its destructor would clear and hang up whatever call had the slot by then.
        self._ending: list[_Call] = []
        self._parked: list[_Call] = []  # an ended leg whose slot another call already has: not counted
        self._rejecting: list[_Call] = []
        self._to_refuse: list[tuple[_Call, pj.CallOpParam]] = []  # refused in onIncomingCall, answered by poll()
        self.draining = False
        self._not_from_edge_log = LogThrottle(every_s=10.0)
        self._clock_on = False
        self._idle_since = time.monotonic()

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        self.ep = ep = pj.Endpoint()
        with _quiet_stdout():  # pjlib prints banner lines before libInit applies our log level
            ep.libCreate()
        ep_cfg = pj.EpConfig()
        ep_cfg.uaConfig.threadCnt = 0
        ep_cfg.uaConfig.mainThreadOnly = False
        ep_cfg.uaConfig.maxCalls = self.cfg.budget.max_legs
        ep_cfg.uaConfig.userAgent = self.cfg.user_agent
        ep_cfg.logConfig.level = 1
        ep_cfg.logConfig.consoleLevel = 1
        med = ep_cfg.medConfig
        med.clockRate = self.cfg.clock_rate
        med.sndClockRate = self.cfg.clock_rate
        med.noVad = True
        med.ecTailLen = 0
        # RTP is read by the SIP thread's ioqueue poll (no media thread polling 100x/s while idle)
        med.threadCnt = 0
        med.hasIoqueue = False
        ep.libInit(ep_cfg)
        # Codecs: exactly the tested set. The wheel enables speex (8/16/32 kHz, ranked first), iLBC
        # and GSM too; an agent phone could then pick speex from our offer (costly transcoding on a
        # narrowband bridge). Our offers list G.711 first, then G.722; an inbound call gets the
        # caller's first choice among these three (pjmedia prefers the offerer's order); a caller
        # offering none of them gets 488.
        priorities = {"PCMU/8000/1": 250, "PCMA/8000/1": 249, "G722/16000/1": 248}
        for codec in ep.codecEnum2():
            ep.codecSetPriority(codec.codecId, priorities.get(codec.codecId, 0))
        tcfg = pj.TransportConfig()
        tcfg.port = self.cfg.sip_port
        tcfg.boundAddress = self.cfg.host
        ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, tcfg)
        ep.libStart()
        ep.audDevManager().setNoDev()  # no conference clock while idle: see _clock()
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:ivr@{self.cfg.host}:{self.cfg.sip_port}"
        mtc = acfg.mediaConfig.transportConfig
        mtc.port = self.cfg.rtp_port
        mtc.portRange = self.cfg.rtp_port_range
        mtc.boundAddress = self.cfg.host
        acc = _Account(self)
        acc.create(acfg, True)
        self.acc = acc
        log.info("sip.started", host=self.cfg.host, port=self.cfg.sip_port, max_legs=self.cfg.budget.max_legs)

    def poll(self, timeout_ms: int) -> None:
        assert self.ep is not None
        self.ep.libHandleEvents(timeout_ms)
        if self._to_refuse:
            self._answer_refused()
        if self._rejecting:
            self._forget_refused()
        if self._ending or self._parked:
            self._reap_ended()
        if self._dead:
            self._dead.clear()  # deleted here, outside any pjsua2 callback
        if self._clock_on and not self.legs and not self.players and not self.call_recordings:
            if time.monotonic() - self._idle_since > CLOCK_IDLE_S:
                self._clock(False)
        elif self.legs:
            self._idle_since = time.monotonic()

    def _clock(self, on: bool) -> None:
        """The conference bridge is clocked by the null sound device. An idle worker stops it (its
        50 Hz tick was most of an idle worker's CPU) and starts it again for the next call."""
        if on == self._clock_on or self.ep is None:
            return
        adm = self.ep.audDevManager()
        if on:
            adm.setNullDev()
            self._clock_on = True
        else:
            adm.setNoDev()  # returns once the clock thread has stopped
            self._clock_on = False
            self._free_spare_taps()
        log.debug("sip.clock", on=on)

    def shutdown(self, max_polls: int = 200) -> None:
        """Hang up every leg, wait for them to end, free all objects, then destroy the library."""
        if self.ep is None:
            return
        for leg_id in list(self.legs):
            self.hangup(leg_id)
        for _ in range(max_polls):
            if not self.legs:
                break
            self.poll(10)
        for pid in list(self.players):
            self.stop_player(pid)
        for tid in list(self.taps):
            self.stop_listen(tid)
        for rid in list(self.recorders):
            self.stop_record(rid)
        for rid in list(self.call_recordings):
            self.stop_call_recording(rid)
        self._keeper = None
        self._clock(False)  # frees the taps, with no clock thread left to call them
        self._free_spare_taps()
        self.legs.clear()
        self._dead.clear()
        self._ending.clear()
        self._parked.clear()
        self._rejecting.clear()
        self._to_refuse.clear()
        self.acc = None
        gc.collect()
        # Every leg was hung up and waited for above, and a worker registers nowhere: nothing is left
        # to wait replies for. Without NO_RX_MSG pjsua_destroy2 sleeps a fixed second "for
        # unregistrations" (pjsua_core.c): every worker stop and restart took 1 s longer.
        self.ep.libDestroy(pj.PJSUA_DESTROY_NO_RX_MSG)
        self.ep = None
        log.info("sip.stopped")

    # --- inbound -----------------------------------------------------------------------------------
    @property
    def free_caller_slots(self) -> int:
        return self.cfg.budget.free_caller_slots(len(self.callers))

    def on_incoming(self, acc: pj.Account, prm: pj.OnIncomingCallParam) -> None:
        leg_id = self.new_leg_id()
        call = _Call(self, acc, leg_id, prm.callId, inbound=True)
        msg = prm.rdata.wholeMsg
        source = prm.rdata.srcAddress
        if self.cfg.edge_sources and source not in self.cfg.edge_sources:
            # Only the edge hands out calls: its checks (trusted sources, numbers, malformed SIP,
            # flood limits) are bypassed by anyone else who can reach the worker's port.
            log_now, held_back = self._not_from_edge_log.allow(source.rpartition(":")[0])
            if log_now:  # anyone who reaches the port can trigger this line: throttled per host
                log.warning("sip.not_from_edge", source=source, held_back=held_back)
            op = pj.CallOpParam()
            op.statusCode = 403
            op.reason = "Not From Edge"
            self._rejecting.append(call)
            self._to_refuse.append((call, op))
            self.emit(Rejected(leg_id, 403, "not from the edge"))
            return
        if not self.cfg.budget.admits(len(self.callers), draining=self.draining, extra_legs=self.extra_legs()):
            op = pj.CallOpParam()
            op.statusCode = 503
            op.reason = "Draining" if self.draining else "Worker Full"
            hdr = pj.SipHeader()
            hdr.hName = "Retry-After"
            hdr.hValue = str(self.cfg.retry_after_s)
            op.txOption.headers.append(hdr)
            # A final answer, not hangup(): from inside onIncomingCall hangup() drops the headers (no
            # Retry-After went out) and its DISCONNECTED was not always seen (18 refused calls piled
            # up in one worker). Listed first, in case the library reports DISCONNECTED at once.
            # Answered from poll(), after this callback has returned, never from inside it: for an
            # INVITE with a body and no Content-Type the wheel could not clone the request, and an
            # answer from inside the callback aborted the whole process (pjsip_rx_data_free_cloned:
            # Assertion 'rdata' failed) with every live call of the worker.
            self._rejecting.append(call)
            self._to_refuse.append((call, op))
            self.emit(Rejected(leg_id, 503, "draining" if self.draining else "worker full"))
            return
        self._clock(True)
        ci = call.getInfo()
        req = _REQ_LINE.search(msg)
        dnis = _user_of(req.group(1)) if req else _user_of(ci.localUri)
        self.legs[leg_id] = call
        self.callers.add(leg_id)
        self.emit(IncomingCall(leg_id, ani=_user_of(ci.remoteUri), dnis=dnis, sip_call_id=ci.callIdString,
                               source=source))

    def on_disconnected(self, call: _Call, code: int, reason: str) -> None:
        if call in self._rejecting:
            self._rejecting.remove(call)
            self._dead.append(call)
            return
        # ids only: a loop variable holding a player/recorder would keep it alive past this point
        for pid in [pid for pid, entry in self.players.items() if entry[1] == call.leg_id]:
            self.stop_player(pid)
        for tid in [tid for tid, entry in self.taps.items() if entry[1] == call.leg_id]:
            self.stop_listen(tid)
        for rid in [rid for rid, entry in self.recorders.items() if entry[1] == call.leg_id]:
            self.stop_record(rid)  # destroyed here: the WAV is complete before Disconnected is reported
        self.legs.pop(call.leg_id, None)
        self.callers.discard(call.leg_id)
        self.extras.discard(call.leg_id)
        call.ended_at = time.monotonic()
        self._ending.append(call)
        self.emit(Disconnected(call.leg_id, code, reason, dict(call.rtp)))

    # --- commands (called on the SIP thread by bridge.SipThread) -----------------------------------
    def set_draining(self, on: bool) -> None:
        """While draining, every new INVITE is answered 503 + Retry-After; calls in progress go on."""
        self.draining = on

    def answer(self, leg_id: str, code: int = 200) -> None:
        op = pj.CallOpParam()
        op.statusCode = code
        self._leg(leg_id).answer(op)

    def hangup(self, leg_id: str, code: int = 0) -> None:
        call = self.legs.get(leg_id)
        if call is None:
            return
        op = pj.CallOpParam()
        if code:
            op.statusCode = code
        try:
            call.hangup(op)
        except pj.Error as exc:
            log.warning("sip.hangup_failed", leg=leg_id, error=exc.info())

    def make_call(self, uri: str, leg_id: str, caller: bool = False, extra: bool = False,
                  from_uri: str = "", slot_of: str = "", headers: tuple[tuple[str, str], ...] = ()) -> str:
        """Call ``uri``; the asyncio side chose ``leg_id`` so it can route the events that follow.
        ``caller``: the leg is a customer's (a callback) and takes a caller slot like an inbound call,
        keeping one for its agent leg; :class:`WorkerFull` when none is free or the worker drains.
        ``extra``: a consult or conference target, beyond its call's pair of legs; :class:`NoExtraLeg`
        when the budget grants none. ``from_uri``: the From of the INVITE (a caller ID) instead of the
        account's. ``slot_of``: the leg takes over the caller slot of that leg of the same call
        (click-to-dial: the agent's leg took it before anything rang, the customer's holds it once
        dialled). ``headers``: extra header fields of the INVITE (e.g. ``X-Ivr-Call-Id`` on an agent's
        leg, which the browser phone matches to its pop); names are tokens and values single lines
        (ValueError otherwise: nothing is sent)."""
        assert self.acc is not None
        for name, value in headers:
            if not _HEADER_NAME.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
                raise ValueError(f"bad extra header {name[:40]!r}")
        budget = self.cfg.budget
        if caller and not budget.admits(len(self.callers), draining=self.draining, extra_legs=self.extra_legs()):
            raise WorkerFull("draining" if self.draining else "worker full")
        if extra and not self.grants_extra():
            raise NoExtraLeg(f"no leg free for a consult: {len(self.callers)} callers, "
                             f"{len(self.extras)} extra legs, {self.extra_legs() - len(self.extras)} legs "
                             f"still ending, {budget.max_legs} legs")
        self._clock(True)
        call = _Call(self, self.acc, leg_id, inbound=False)
        self.legs[leg_id] = call
        moved = slot_of in self.callers
        if caller or moved:
            self.callers.discard(slot_of)
            self.callers.add(leg_id)
        if extra:
            self.extras.add(leg_id)
        prm = pj.CallOpParam(True)
        if from_uri:
            prm.txOption.localUri = from_uri
            # many carriers take the caller ID from P-Asserted-Identity (RFC 3325), not From; the edge
            # passes it on to the trunk (route OUTBOUND, which only the workers reach)
            pai = pj.SipHeader()
            pai.hName = "P-Asserted-Identity"
            pai.hValue = f"<{from_uri}>"
            prm.txOption.headers.append(pai)
        for name, value in headers:
            hdr = pj.SipHeader()
            hdr.hName = name
            hdr.hValue = value
            prm.txOption.headers.append(hdr)
        full = False
        try:
            call.makeCall(uri, prm)
        except pj.Error as exc:
            self.legs.pop(leg_id, None)
            self.callers.discard(leg_id)
            self.extras.discard(leg_id)
            if moved and slot_of in self.legs:
                self.callers.add(slot_of)
            if exc.status != PJ_ETOOMANY:
                raise
            full = True
        if full:  # raised outside the except block: the pj.Error must not ride along as __context__
            self._dead.append(call)
            raise NoLineFree(f"no call slot free for {uri}: {len(self.legs)} legs up, "
                             f"{len(self._ending)} ended legs still in the library, "
                             f"{len(self._rejecting)} calls being refused; slots: {self._slots()}")
        return leg_id

    def settle_extra(self, leg_id: str) -> None:
        """An extra leg became its call's agent leg (a consult completed, a conference left): it is
        part of the call's pair from now on, no longer beyond it."""
        self.extras.discard(leg_id)

    def extra_legs(self) -> int:
        """Legs up beyond the admitted callers' pairs, as the leg budget counts them: the consult and
        conference legs, and every ended leg whose library call still holds its slot (a CANCEL
        nobody answered): the library has no room for them until they are really gone."""
        held = _library_calls(self.cfg.budget.max_legs)
        return len(self.extras) + sum(1 for call in self._ending if self._slot_state(call, held) == "ours")

    def grants_extra(self) -> bool:
        """Whether the leg budget grants an extra leg (a consult or conference target) now."""
        return self.cfg.budget.grants_extra(len(self.callers), self.extra_legs())

    @staticmethod
    def _slot_state(call: _Call, held: set[int]) -> str:
        """Of an ended leg: ``ours`` while the library still holds its call (the slot is in use and
        no later call of ours took it), ``other`` when a later call has the slot, ``free`` else."""
        slot = call.getId()
        owner = pj.Call.lookup(slot)  # pjsua2 cleared this leg's own entry when it reported DISCONNECTED
        if owner is not None and owner is not call:
            return "other"
        return "ours" if slot in held else "free"

    def _reap_ended(self) -> None:
        """Delete the ended legs whose library slot is empty; stop counting those whose slot a later
        call took (kept, not deleted, until the slot is empty again)."""
        now = time.monotonic()
        held = _library_calls(self.cfg.budget.max_legs)
        ending: list[_Call] = []
        for call in self._ending:
            state = self._slot_state(call, held)
            if state == "ours":
                ending.append(call)
                if not call.warned and now - call.ended_at > ENDING_WARN_S:
                    call.warned = True
                    log.warning("sip.leg_still_ending", leg=call.leg_id, after_s=round(now - call.ended_at, 1),
                                legs_ending=len(self._ending))
                continue
            if call.warned:
                log.info("sip.leg_ended_late", leg=call.leg_id, after_s=round(now - call.ended_at, 1))
            (self._parked if state == "other" else self._dead).append(call)
        self._ending = ending
        parked: list[_Call] = []
        for call in self._parked:
            (parked if self._slot_state(call, held) == "other" else self._dead).append(call)
        self._parked = parked

    def _answer_refused(self) -> None:
        """Send the final answer (503 + Retry-After) of the calls refused in onIncomingCall."""
        refused, self._to_refuse = self._to_refuse, []
        for call, op in refused:
            try:
                call.answer(op)
            except pj.Error as exc:  # the caller cancelled meanwhile: the call is already over
                log.info("sip.refuse_failed", error=exc.info())

    def _forget_refused(self) -> None:
        """Safety net for a refused call (503) that is never reported DISCONNECTED: it is dropped once
        its library slot is free. Not while another call holds the slot: pjsua2's Call destructor
        clears the user data of, and hangs up, whatever call has the id it remembers."""
        keep: list[_Call] = []
        for call in self._rejecting:
            (self._dead if pj.Call.lookup(call.getId()) is None else keep).append(call)
        self._rejecting = keep

    def _slots(self) -> str:
        """What holds each pjsua call slot (diagnostics): leg id and state, or "free"."""
        out = []
        held = _library_calls(self.cfg.budget.max_legs)
        ending = {c.getId(): c.leg_id for c in self._ending if self._slot_state(c, held) == "ours"}
        for i in range(self.cfg.budget.max_legs):
            c = pj.Call.lookup(i)
            if c is None:
                out.append(f"{ending[i]}:ending" if i in ending else "free")
                continue
            try:
                state = c.getInfo().stateText
            except pj.Error:
                state = "?"
            out.append(f"{getattr(c, 'leg_id', '?')}:{state}:{'ours' if c in self.legs.values() else 'gone'}")
        return ", ".join(out)

    def _leg(self, leg_id: str) -> _Call:
        call = self.legs.get(leg_id)
        if call is None:
            raise LegGone(leg_id)
        return call

    def _media(self, leg_id: str) -> pj.AudioMedia:
        return self._leg(leg_id).getAudioMedia(-1)

    def play(self, leg_id: str, path: str, loop: bool = False, solo: bool = False) -> int:
        """Play ``path`` to the leg. ``solo``: the leg's other players (the hold music) are paused -
        disconnected, so they keep their place - until this one is stopped."""
        self._clock(True)
        player_id = next(self._player_ids)
        player = _Player(self, leg_id, player_id)
        if loop:
            # pjmedia's looping wav player inserts a silent frame at each wrap (it posts EOF); a
            # playlist of copies switches sample-exactly, so that frame comes once per MOH_LOOP_COPIES.
            player.createPlaylist(pj.StringVector([path] * MOH_LOOP_COPIES), "loop", 0)
        else:
            player.createPlayer(path, pj.PJMEDIA_FILE_NO_LOOP)
        media = self._media(leg_id)
        if solo:
            paused = [pid for pid, entry in self.players.items() if entry[1] == leg_id]
            for pid in paused:
                with contextlib.suppress(pj.Error):
                    self.players[pid][0].stopTransmit(media)
            self._paused[player_id] = paused
        player.startTransmit(media)
        self.players[player_id] = (player, leg_id)
        return player_id

    def stop_player(self, player_id: int) -> None:
        paused = self._paused.pop(player_id, [])
        entry = self.players.pop(player_id, None)
        if entry is None:
            return
        player, leg_id = entry
        call = self.legs.get(leg_id)
        if call is not None and call.hasMedia():
            try:
                player.stopTransmit(call.getAudioMedia(-1))
            except pj.Error:
                pass
            for pid in paused:  # resume what a solo player paused, if it is still there
                if pid in self.players:
                    with contextlib.suppress(pj.Error):
                        self.players[pid][0].startTransmit(call.getAudioMedia(-1))
        del player

    def bridge(self, a: str, b: str) -> None:
        ma, mb = self._media(a), self._media(b)
        ma.startTransmit(mb)
        mb.startTransmit(ma)

    def relink(self, on: list[tuple[str, str]], off: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Change who hears whom in one go: ``off`` (source leg, listener leg) pairs stop, then the
        ``on`` pairs start. A pair with a leg gone or without media yet (still ringing) is skipped.
        Returns the ``on`` pairs that were made."""
        made = []
        for pairs, start in ((off, False), (on, True)):
            for src, dst in pairs:
                a, b = self.legs.get(src), self.legs.get(dst)
                if a is None or b is None or not a.hasMedia() or not b.hasMedia():
                    continue
                try:
                    ma, mb = a.getAudioMedia(-1), b.getAudioMedia(-1)
                    if start:
                        ma.startTransmit(mb)
                        made.append((src, dst))
                    else:
                        ma.stopTransmit(mb)
                except pj.Error as exc:
                    log.info("sip.relink_failed", src=src, dst=dst, start=start, error=exc.info())
        return made

    def dial_dtmf(self, leg_id: str, digits: str) -> None:
        """Send ``digits`` on the leg as RFC 2833 telephone events (the method every trunk takes)."""
        self._leg(leg_id).dialDtmf(digits)

    def stream_stats(self, leg_id: str) -> dict[str, int]:
        call = self.legs.get(leg_id)
        if call is None or not call.hasMedia():
            return {}
        st = call.getStreamStat(0)
        return {"rx_packets": st.rtcp.rxStat.pkt, "tx_packets": st.rtcp.txStat.pkt}

    # --- listening (speech recognition) and recording ---------------------------------------------
    def start_listen(self, leg_id: str, sink: Callable[[bytes], None]) -> int:
        """Connect the leg's incoming audio to a tap that feeds ``sink`` 20 ms PCM frames (mono,
        16-bit little-endian, ``clock_rate``). Returns the tap id for ``stop_listen``. The tap is a
        spare one (stopped earlier on this worker, see :class:`_Tap`) when one is ready, else new."""
        media = self._media(leg_id)
        tap_id = next(self._player_ids)
        tap = self._ready_spare_tap()
        if tap is None:
            fmt = pj.MediaFormatAudio()
            fmt.init(pj.PJMEDIA_FORMAT_PCM, self.cfg.clock_rate, 1, FRAME_US, 16)
            tap = _Tap(tap_id, None, bytes(2 * self.cfg.clock_rate * FRAME_US // 1_000_000))
            tap.createPort(f"tap{self.taps_created}", fmt)
            self.taps_created += 1
        tap.tap_id = tap_id
        tap.after_stop = tap.audio_after_stop = 0
        try:
            media.startTransmit(tap)
        except pj.Error:
            self._spare_taps.append(tap)  # the bridge never connected it: spare at once
            raise
        tap.sink = sink
        self.taps[tap_id] = (tap, leg_id)
        return tap_id

    def stop_listen(self, tap_id: int) -> None:
        """Disconnect the tap; it becomes a spare (see :class:`_Tap`), never deleted here."""
        entry = self.taps.pop(tap_id, None)
        if entry is None:
            return
        tap, leg_id = entry
        tap.sink = None  # no frame is handed on from now, whatever the clock thread does
        tap.after_stop = tap.audio_after_stop = 0
        call = self.legs.get(leg_id)
        if call is not None and call.hasMedia():
            with contextlib.suppress(pj.Error):
                call.getAudioMedia(-1).stopTransmit(tap)
        # (a leg without media any more: its stream port left the bridge, and every connection with it)
        self._spare_taps.append(tap)

    def _ready_spare_tap(self) -> _Tap | None:
        """A spare tap the bridge has called ``TAP_REUSE_TICKS`` times since its stop: the queued
        disconnect from its last caller was applied on a tick before the last of these calls, so
        nothing of that call can reach the next listener. Logged as released then (what the bridge
        still delivered after the stop)."""
        for i, tap in enumerate(self._spare_taps):
            if tap.after_stop >= TAP_REUSE_TICKS:
                del self._spare_taps[i]
                log.info("sip.tap_released", tap=tap.tap_id, ticks_after_stop=tap.after_stop,
                         audio_after_stop=tap.audio_after_stop, taps_open=len(self.taps),
                         spare=len(self._spare_taps))
                return tap
        return None

    def _free_spare_taps(self) -> None:
        """Delete the spare taps: only with the clock stopped (``_clock(False)``), see :class:`_Tap`."""
        if self._clock_on and self.ep is not None and self._spare_taps:
            raise RuntimeError("spare taps are deleted only with the bridge clock stopped")
        for tap in self._spare_taps:
            log.info("sip.tap_freed", tap=tap.tap_id, ticks_after_stop=tap.after_stop,
                     audio_after_stop=tap.audio_after_stop)
        self._spare_taps.clear()

    def start_record(self, leg_id: str, path: str) -> int:
        """Record what the leg sends into a WAV file (8/16 kHz as the bridge clock, 16-bit mono)."""
        rec_id = next(self._player_ids)
        rec = pj.AudioMediaRecorder()
        rec.createRecorder(path)
        self._media(leg_id).startTransmit(rec)
        self.recorders[rec_id] = (rec, leg_id)
        return rec_id

    def stop_record(self, rec_id: int) -> None:
        """Stop and close the file (the WAV header is written when the recorder is destroyed)."""
        entry = self.recorders.pop(rec_id, None)
        if entry is None:
            return
        rec, leg_id = entry
        call = self.legs.get(leg_id)
        if call is not None and call.hasMedia():
            with contextlib.suppress(pj.Error):
                call.getAudioMedia(-1).stopTransmit(rec)
        del rec, entry

    # --- call recording: two channels on the bridge (ivr.calls.recording) -----------------------------
    def start_call_recording(self, paths: list[str], silence_wav: str) -> int:
        """One WAV recorder per channel (16-bit mono at the bridge clock), created in the same command
        so their samples line up, each fed by a silent looping player (the *keeper*). pjmedia's
        recorder writes only on ticks when something transmits to it: the keeper makes every tick
        count, so a pause (every source disconnected) is silence in the file, not a gap, and the
        channels stay the same length. Returns the id for :meth:`record_sources` / :meth:`stop_call_recording`."""
        self._clock(True)
        if self._keeper is None:
            keeper = pj.AudioMediaPlayer()
            keeper.createPlayer(silence_wav, 0)  # 0: loop
            self._keeper = keeper
        recs: list[pj.AudioMediaRecorder] = []
        try:
            for path in paths:
                rec = pj.AudioMediaRecorder()
                rec.createRecorder(path)
                recs.append(rec)
            for rec in recs:
                self._keeper.startTransmit(rec)
        except pj.Error:
            for rec in recs:
                with contextlib.suppress(pj.Error):
                    self._keeper.stopTransmit(rec)
            del recs
            raise
        rec_id = next(self._player_ids)
        self.call_recordings[rec_id] = recs
        return rec_id

    def record_sources(self, rec_id: int, on: list[tuple[str, int]],
                       off: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Connect (``on``) or disconnect (``off``) legs to channels of a recording: ``(leg id,
        channel)`` pairs. A leg gone or without media is skipped. Returns the ``on`` pairs made."""
        recs = self.call_recordings.get(rec_id)
        if recs is None:
            return []
        made = []
        for pairs, start in ((off, False), (on, True)):
            for leg_id, channel in pairs:
                call = self.legs.get(leg_id)
                if call is None or not call.hasMedia() or not 0 <= channel < len(recs):
                    continue
                try:
                    media = call.getAudioMedia(-1)
                    if start:
                        media.startTransmit(recs[channel])
                        made.append((leg_id, channel))
                    else:
                        media.stopTransmit(recs[channel])
                except pj.Error as exc:
                    log.info("sip.record_source_failed", leg=leg_id, channel=channel, start=start, error=exc.info())
        return made

    def stop_call_recording(self, rec_id: int) -> None:
        """Disconnect everything and close the files (the WAV header is written when a recorder is
        destroyed, here)."""
        recs = self.call_recordings.pop(rec_id, None)
        if recs is None:
            return
        for rec in recs:
            for call in self.legs.values():
                if call.hasMedia():
                    with contextlib.suppress(pj.Error):
                        call.getAudioMedia(-1).stopTransmit(rec)
            if self._keeper is not None:
                with contextlib.suppress(pj.Error):
                    self._keeper.stopTransmit(rec)
        del recs

    def unbridge(self, a: str, b: str) -> None:
        """Undo ``bridge`` for whichever of the two legs still has media."""
        ma = self.legs.get(a)
        mb = self.legs.get(b)
        if ma is None or mb is None or not ma.hasMedia() or not mb.hasMedia():
            return
        with contextlib.suppress(pj.Error):
            ma.getAudioMedia(-1).stopTransmit(mb.getAudioMedia(-1))
            mb.getAudioMedia(-1).stopTransmit(ma.getAudioMedia(-1))
