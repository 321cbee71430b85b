"""Leg commands for a leg the SIP thread has already forgotten end the turn, not the worker task."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ivr.sip.engine import LegGone, SipEngine
from ivr.sip.events import Answered, Disconnected, MediaReady
from ivr.sip.legs import Leg, LegEnded


class GoneSip:
    """A SIP thread on which the leg hung up and was dropped before the command ran."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    async def call(self, fn: Any, leg_id: str, *args: Any) -> Any:
        self.commands.append(fn.__name__)
        raise LegGone(leg_id)


@pytest.mark.parametrize("action", ["answer", "start_playback", "record"])
async def test_a_command_for_a_gone_leg_is_leg_ended(action: str) -> None:
    sip = GoneSip()
    leg = Leg(sip, "leg-1")  # type: ignore[arg-type]
    with pytest.raises(LegEnded):
        if action == "answer":
            await leg.answer()
        elif action == "start_playback":
            await leg.start_playback("/nowhere.wav", loop=True)
        else:
            await leg._command(SipEngine.start_record, "/tmp/x.wav")
    assert sip.commands and all(c in ("answer", "play", "start_record") for c in sip.commands)



# --- waiting for a dialled leg to answer (one rule for agents, transfers and callbacks) ---------

async def _outcome(*events: Any, ring_s: float = 0.5, abort: bool = False) -> str:
    leg = Leg(GoneSip(), "out-1")  # type: ignore[arg-type]
    unless: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def feed() -> None:
        for ev in events:
            await asyncio.sleep(0.01)
            leg.feed(ev)
        if abort:
            unless.set_result(None)

    feeder = asyncio.create_task(feed())
    try:
        return await leg.wait_answered(ring_s, unless=unless, media_s=0.3)
    finally:
        await feeder


async def test_wait_answered_tells_each_way_a_dial_ends() -> None:
    assert await _outcome(Answered("out-1"), MediaReady("out-1")) == "answered"
    assert await _outcome(Disconnected("out-1", 486, "Busy", {})) == "ended"
    assert await _outcome(ring_s=0.1) == "timeout"
    assert await _outcome(Answered("out-1"), Disconnected("out-1", 200, "BYE", {})) == "hung_up"
    assert await _outcome(abort=True) == "aborted"
