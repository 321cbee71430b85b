"""Dialling the agent (ivr/calls/agent_call.py AgentCall._dial) when the library has no call slot free
for a moment: pjsua2 keeps a slot about 0.5 s after its leg ended (measured in the fault harness),
so the dial waits for it instead of failing the offer and sending the agent on a break."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from ivr.calls import agent_call as session
from ivr.calls.agent_call import AgentCall
from ivr.sip.engine import NoLineFree
from ivr.sip.events import Disconnected
from ivr.sip.legs import Leg, LegEnded


class SlotsBusySip:
    """make_call raises NoLineFree ``busy_for`` times, then succeeds."""

    def __init__(self, busy_for: int) -> None:
        self.busy_for = busy_for
        self.calls: list[tuple[str, str]] = []

    async def call(self, fn: Any, uri: str, leg_id: str, *_flags: Any) -> str:
        assert fn.__name__ == "make_call"
        self.calls.append((uri, leg_id))
        if len(self.calls) <= self.busy_for:
            raise NoLineFree("no call slot free")
        return leg_id


def agent_leg(sip: SlotsBusySip) -> Leg:
    return Leg(sip, "agent-leg")  # type: ignore[arg-type]


def agent_call(sip: SlotsBusySip) -> AgentCall:
    caller = Leg(sip, "caller-1")  # type: ignore[arg-type]
    return AgentCall(SimpleNamespace(sip=sip), caller, "call-1")  # type: ignore[arg-type]


async def test_the_dial_waits_for_a_slot_and_then_rings_the_agent() -> None:
    sip = SlotsBusySip(busy_for=3)
    await agent_call(sip)._dial("sip:agent@127.0.0.1", agent_leg(sip))
    assert sip.calls == [("sip:agent@127.0.0.1", "agent-leg")] * 4


async def test_a_slot_that_never_frees_fails_the_dial_after_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "LINE_WAIT_S", 0.2)
    sip = SlotsBusySip(busy_for=10_000)
    with pytest.raises(NoLineFree):
        await asyncio.wait_for(agent_call(sip)._dial("sip:agent@127.0.0.1", agent_leg(sip)), 5)
    assert 2 <= len(sip.calls) <= 0.2 / session.LINE_RETRY_S + 2


async def test_a_caller_who_hangs_up_while_waiting_ends_the_wait() -> None:
    sip = SlotsBusySip(busy_for=10_000)
    call = agent_call(sip)
    call.leg.feed(Disconnected("caller-1", 200, "BYE"))
    with pytest.raises(LegEnded):
        await asyncio.wait_for(call._dial("sip:agent@127.0.0.1", agent_leg(sip)), 5)
    assert len(sip.calls) == 1
