"""Call legs as the asyncio side sees them: awaitable answer/play/dial/bridge/hang-up.

A ``Leg`` is fed the SIP events for its id by the worker's router and turns them into futures,
events and a digit queue. It never touches pjsua2: every action is a command to ``SipThread``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from ivr.sip.bridge import FrameSink, SipThread
from ivr.sip.engine import LegGone, SipEngine
from ivr.sip.events import Answered, Disconnected, Dtmf, MediaReady, PlaybackDone, Ringing, SipEvent

T = TypeVar("T")
AnswerOutcome = Literal["answered", "ended", "timeout", "hung_up", "aborted"]
CALL_ID_HEADER = "X-Ivr-Call-Id"  # on the INVITE to an agent: which hotline call rings its phone


class LegEnded(Exception):
    """The leg hung up while something was waiting on it."""


class Leg:
    def __init__(self, sip: SipThread, leg_id: str) -> None:
        self.sip = sip
        self.leg_id = leg_id
        self.media_ready = asyncio.Event()
        self.answered = asyncio.Event()
        self.ringing = asyncio.Event()
        self.ended: asyncio.Future[Disconnected] = asyncio.get_running_loop().create_future()
        self.digits: asyncio.Queue[Dtmf] = asyncio.Queue()
        self._playbacks: dict[int, asyncio.Future[None]] = {}

    def feed(self, event: SipEvent) -> None:
        if isinstance(event, MediaReady):
            self.media_ready.set()
        elif isinstance(event, Answered):
            self.answered.set()
        elif isinstance(event, Ringing):
            self.ringing.set()
        elif isinstance(event, Dtmf):
            self.digits.put_nowait(event)
        elif isinstance(event, PlaybackDone):
            fut = self._playbacks.pop(event.player_id, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif isinstance(event, Disconnected):
            if not self.ended.done():
                self.ended.set_result(event)
            for fut in self._playbacks.values():
                if not fut.done():
                    fut.set_exception(LegEnded(self.leg_id))
                    fut.exception()  # retrieved: nobody may be awaiting it
            self._playbacks.clear()

    @property
    def is_ended(self) -> bool:
        return self.ended.done()

    async def until(self, aw: asyncio.Future[Any], timeout: float | None) -> bool:
        """Wait for ``aw`` unless the leg ends first (LegEnded) or the timeout passes (False)."""
        waits: set[asyncio.Future[Any]] = {aw, self.ended}
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if aw in done:
            return True
        if self.ended in done:
            raise LegEnded(self.leg_id)
        return False

    async def _command(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a command for this leg on the SIP thread; a leg that is already gone is LegEnded."""
        try:
            result: T = await self.sip.call(fn, self.leg_id, *args)
        except LegGone:
            raise LegEnded(self.leg_id) from None
        return result

    async def answer(self, timeout: float = 5.0) -> None:
        await self._command(SipEngine.answer, 200)
        if not await self._media(timeout):
            raise LegEnded(f"{self.leg_id}: no media after answer")

    async def _media(self, timeout: float) -> bool:
        """Wait (bounded) for the leg's media; False on timeout, LegEnded if it ends meanwhile."""
        waiter = asyncio.ensure_future(self.media_ready.wait())
        try:
            return await self.until(waiter, timeout)
        finally:
            waiter.cancel()

    async def wait_answered(self, ring_s: float, *, unless: asyncio.Future[Any] | None = None,
                            media_s: float = 5.0) -> AnswerOutcome:
        """Wait for a dialled leg to answer (``ring_s``) and its media to start (``media_s``, bounded).

        ``answered``; ``ended`` (refused or gone before answering: see ``ended`` for the code);
        ``timeout`` (still ringing: the caller decides whether to hang it up); ``hung_up`` (answered,
        then gone before its media); ``aborted`` when ``unless`` (e.g. the caller's leg ending) came
        first."""
        answered = asyncio.ensure_future(self.answered.wait())
        try:
            waits: set[asyncio.Future[Any]] = {answered, self.ended}
            if unless is not None:
                waits.add(unless)
            done, _ = await asyncio.wait(waits, timeout=ring_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            answered.cancel()
        if unless is not None and unless in done:
            return "aborted"
        if self.is_ended:
            return "ended"
        if not self.answered.is_set():
            return "timeout"
        try:
            await self._media(media_s)
        except LegEnded:
            return "hung_up"
        return "answered"

    async def start_playback(self, path: str, loop: bool = False,
                             solo: bool = False) -> tuple[int, asyncio.Future[None]]:
        """Start playing ``path``; ``solo`` pauses the leg's other players until this one is stopped."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        player_id: int = await self._command(SipEngine.play, path, loop, solo)
        self._playbacks[player_id] = fut
        return player_id, fut

    async def stop_playback(self, player_id: int) -> None:
        fut = self._playbacks.pop(player_id, None)
        if fut is not None and not fut.done():
            fut.cancel()
        await self.sip.call(SipEngine.stop_player, player_id)

    async def play(self, path: str, *, barge_in: bool = False) -> Dtmf | None:
        """Play a file to the end; with ``barge_in`` a key press stops it and is returned."""
        player_id, done = await self.start_playback(path)
        digit_wait = asyncio.ensure_future(self.digits.get()) if barge_in else None
        try:
            waits: set[asyncio.Future[Any]] = {done, self.ended}
            if digit_wait is not None:
                waits.add(digit_wait)
            finished, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if self.ended in finished:
                raise LegEnded(self.leg_id)
            if digit_wait is not None and digit_wait in finished:
                return digit_wait.result()
            return None
        finally:
            if digit_wait is not None and not digit_wait.done():
                digit_wait.cancel()
            if not self.is_ended:
                await self.stop_playback(player_id)

    async def next_digit(self, timeout: float) -> Dtmf | None:
        getter = asyncio.ensure_future(self.digits.get())
        try:
            if await self.until(getter, timeout):
                return getter.result()
            return None
        finally:
            if not getter.done():
                getter.cancel()

    async def hangup(self, code: int = 0) -> None:
        """End the leg (``code``: the final answer of a leg not yet answered, e.g. 404)."""
        if not self.is_ended:
            await self.sip.call(SipEngine.hangup, self.leg_id, code)

    async def dial(self, uri: str, *, customer: bool = False, extra: bool = False, from_uri: str = "",
                   slot_of: Leg | None = None, call_id: str = "") -> None:
        """Call ``uri`` on this leg (an agent, or with ``customer`` a customer the worker calls back,
        who takes a caller slot of the leg budget; with ``extra`` a consult or conference target).
        NoLineFree when the library has no leg free; WorkerFull when the budget admits no customer
        now; NoExtraLeg when it grants no extra leg. ``from_uri``: the From (a caller ID);
        ``slot_of``: this leg takes over the caller slot ``slot_of`` holds (see SipEngine.make_call).
        ``call_id``: the hotline call this leg rings an agent for, sent as ``X-Ivr-Call-Id`` (the
        agent's browser phone rings once the pop of that call is painted, docs/webrtc.md)."""
        headers = ((CALL_ID_HEADER, call_id),) if call_id else ()
        await self.sip.call(SipEngine.make_call, uri, self.leg_id, customer, extra, from_uri,
                            slot_of.leg_id if slot_of is not None else "", headers)

    async def settle_extra(self) -> None:
        """This extra leg is its call's agent leg from now on (see SipEngine.settle_extra)."""
        await self.sip.call(SipEngine.settle_extra, self.leg_id)

    async def send_dtmf(self, digits: str) -> None:
        await self._command(SipEngine.dial_dtmf, digits)

    async def bridge(self, other: Leg) -> None:
        """Connect this leg's audio and ``other``'s both ways (music or prompts on either stop first)."""
        await self.sip.call(SipEngine.bridge, self.leg_id, other.leg_id)

    async def wait_ended(self, timeout: float) -> Disconnected | None:
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(self.ended), timeout)
        return None

    async def rtp_stats(self) -> dict[str, int]:
        stats: dict[str, int] = await self.sip.call(SipEngine.stream_stats, self.leg_id)
        return stats

    # --- listening and recording -------------------------------------------------------------------
    async def start_listen(self) -> tuple[int, FrameSink]:
        """Tap the caller's audio (20 ms PCM frames) until ``stop_listen``."""
        sink = FrameSink(asyncio.get_running_loop())
        tap_id: int = await self._command(SipEngine.start_listen, sink.push)
        return tap_id, sink

    async def stop_listen(self, tap_id: int, sink: FrameSink) -> None:
        sink.close()
        await self.sip.call(SipEngine.stop_listen, tap_id)

    async def start_record(self, path: str) -> int:
        rec_id: int = await self._command(SipEngine.start_record, path)
        return rec_id

    async def stop_record(self, rec_id: int) -> None:
        await self.sip.call(SipEngine.stop_record, rec_id)
