"""Leg commands for a leg the SIP thread has already forgotten end the turn, not the worker task."""

from __future__ import annotations

from typing import Any

import pytest

from ivr.sip.engine import LegGone, SipEngine
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

