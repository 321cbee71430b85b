"""The click-to-dial session (ivr/calls/originate.py) alone, with a scripted SIP thread and a recording
store: the agent's leg first (taking the call's caller slot), the customer only after the agent
answered (with the caller ID, taking the slot over), and each way of not connecting ends with the
right outcome, the right agent state and no leg left up. Through real SIP: tests/e2e/test_originate.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ivr.calls.originate import OriginateSession
from ivr.core.config import Settings
from ivr.queues.store import Offer
from ivr.sip.engine import NoLineFree, WorkerFull
from ivr.sip.events import Answered, Disconnected, MediaReady, PlaybackDone
from ivr.sip.legs import Leg

AGENT_URI = "sip:agent1@127.0.0.1:5090"
NUMBER = "+821055501234"


class ScriptedSip:
    """What each dialled URI does: "answer", "ring" (never answers), "busy", "full" (WorkerFull), or
    "answer-then-hangup:<s>" (answers, hangs up ``s`` seconds later)."""

    def __init__(self, script: dict[str, str], no_line_for: int = 0) -> None:
        self.script = script
        self.no_line_for = no_line_for  # the first make_calls find no library slot free (NoLineFree)
        self.legs: dict[str, Leg] = {}
        self.dials: list[tuple[str, str, bool, str, str]] = []
        self.hangups: list[str] = []
        self.plays: list[tuple[str, str, bool]] = []
        self.bridges: list[tuple[str, str]] = []
        self._players = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def _later(self, delay: float, leg_id: str, *events: Any) -> None:
        async def feed() -> None:
            await asyncio.sleep(delay)
            for ev in events:
                self.legs[leg_id].feed(ev)
        task = asyncio.ensure_future(feed())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def relink(self, on: list[tuple[str, str]], off: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """CallMedia joining the legs: record each two-way pair once."""
        self.bridges.extend((a, b) for a, b in on if (b, a) in on and a < b)
        return list(on)

    async def call(self, fn: Any, *args: Any) -> Any:
        name = fn.__name__
        if name == "make_call":
            uri, leg_id, customer, _extra, from_uri, slot_of = (*args, False, "", "")[:6]
            if self.no_line_for > 0:
                self.no_line_for -= 1
                raise NoLineFree("no call slot free")
            self.dials.append((uri, leg_id, customer, from_uri, slot_of))
            what = self.script[uri.split("@")[0]]
            if what == "full":
                raise WorkerFull("worker full")
            if what.startswith("answer"):
                self._later(0.02, leg_id, Answered(leg_id), MediaReady(leg_id))
                if ":" in what:
                    self._later(float(what.split(":")[1]), leg_id, Disconnected(leg_id, 200, "BYE"))
            elif what == "busy":
                self._later(0.02, leg_id, Disconnected(leg_id, 486, "Busy Here"))
            return leg_id
        if name == "hangup":
            leg_id = args[0]
            self.hangups.append(leg_id)
            leg = self.legs[leg_id]
            if not leg.is_ended and any(d[1] == leg_id for d in self.dials):
                self._later(0.01, leg_id, Disconnected(leg_id, 487, "Request Terminated"))
            return None
        if name == "play":
            leg_id, path, loop, _solo = args
            self._players += 1
            self.plays.append((leg_id, Path(path).name, loop))
            if not loop:
                self._later(0.05, leg_id, PlaybackDone(leg_id, self._players))
            return self._players
        if name == "stop_player":
            return None
        raise AssertionError(f"unexpected SIP command {name}")


class RecordingStore:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        async def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return {"desktop_present": False, "originate_failed": kwargs.get("outcome")}.get(name)
        return record

    def names(self) -> list[str]:
        return [n for n, _, _ in self.calls]

    def kwargs(self, name: str) -> dict[str, Any]:
        [kw] = [kw for n, _, kw in self.calls if n == name]
        return kw


def leg_maker(sip: ScriptedSip) -> Callable[[], Leg]:
    """The worker's ``new_leg`` over the scripted SIP thread: leg1, leg2, ..."""
    count = 0

    def new_leg() -> Leg:
        nonlocal count
        count += 1
        leg = Leg(sip, f"leg{count}")  # type: ignore[arg-type]
        sip.legs[leg.leg_id] = leg
        return leg
    return new_leg


def session(tmp_path: Path, script: dict[str, str],
            no_line_for: int = 0) -> tuple[OriginateSession, ScriptedSip, RecordingStore]:
    settings = Settings(var_dir=tmp_path, workers={"agent_ring_timeout_s": 0.3},
                        callbacks={"dial_uri": "sip:{number}@127.0.0.1:5099", "ring_timeout_s": 0.3})
    sip, store = ScriptedSip(script, no_line_for), RecordingStore()
    ctx = SimpleNamespace(settings=settings, store=store, new_leg=leg_maker(sip))
    offer = Offer("o1.1", "o1", "agent1", AGENT_URI, "sales", kind="outbound", dial=True, number=NUMBER,
                  hotline="demo", caller_id="+8215880000")
    return OriginateSession(ctx, offer), sip, store  # type: ignore[arg-type]


async def run(s: OriginateSession) -> None:
    await asyncio.wait_for(s.run(), 10)


async def test_connected_the_agent_first_then_the_customer_with_the_caller_id(tmp_path: Path) -> None:
    s, sip, store = session(tmp_path, {"sip:agent1": "answer", f"sip:{NUMBER}": "answer-then-hangup:0.2"})
    await run(s)
    (a_uri, a_leg, a_customer, _, _), (c_uri, c_leg, c_customer, c_from, c_slot) = sip.dials
    assert (a_uri, a_customer) == (AGENT_URI, True)  # the agent's leg takes the caller slot
    assert (c_uri, c_customer, c_from, c_slot) == (f"sip:{NUMBER}@127.0.0.1:5099", False,
                                                   "sip:+8215880000@127.0.0.1", a_leg)
    assert (s.agent_leg is None or s.agent_leg.leg_id == a_leg) and s.leg.leg_id == c_leg
    assert sip.bridges == [(c_leg, a_leg)]
    assert (a_leg, "ringback-440-480-8000.wav", True) in sip.plays
    assert store.names() == ["desktop_present", "originate_agent_answered", "originate_connected", "end_call",
                             "set_call_field"], store.names()
    assert store.kwargs("end_call")["reason"] == "customer_hangup"
    assert a_leg in sip.hangups  # the customer hung up: the agent's leg is ended


@pytest.mark.parametrize(("script", "outcome", "reason", "agent_state", "customer_dialled"), [
    ({"sip:agent1": "ring"}, "agent_no_answer", "ring_no_answer", "break", False),
    ({"sip:agent1": "busy"}, "agent_rejected", "agent_rejected_486", "available", False),
    ({"sip:agent1": "full"}, "failed", "worker_full", "available", False),
    ({"sip:agent1": "answer", f"sip:{NUMBER}": "busy"}, "busy", "customer_busy", "available", True),
    ({"sip:agent1": "answer", f"sip:{NUMBER}": "ring"}, "no_answer", "customer_no_answer", "available", True),
    ({"sip:agent1": "answer-then-hangup:0.1", f"sip:{NUMBER}": "ring"}, "cancelled", "agent_hangup", "available",
     True),
])
async def test_not_connected(tmp_path: Path, script: dict[str, str], outcome: str, reason: str, agent_state: str,
                             customer_dialled: bool) -> None:
    s, sip, store = session(tmp_path, script)
    await run(s)
    assert len(sip.dials) == (2 if customer_dialled else 1)
    failed = store.kwargs("originate_failed")
    assert (failed["outcome"], failed["reason"], failed["agent_state"]) == (outcome, reason, agent_state)
    assert "originate_connected" not in store.names() and "end_call" not in store.names() and not sip.bridges
    if customer_dialled:
        assert s.leg.leg_id in sip.hangups or s.leg.is_ended  # a ringing customer's INVITE is cancelled
        assert ("originate_agent_answered" in store.names())
    heard = [name for leg, name, _ in sip.plays if leg == sip.dials[0][1]]
    if outcome in ("busy", "no_answer"):
        assert heard[-1] == "busytone-480-620-8000.wav"  # the agent hears why before it is hung up
    agent = sip.dials[0][1]
    assert agent in sip.hangups or sip.legs[agent].is_ended or reason == "worker_full"  # no leg is left up
    assert {leg.leg_id for leg in s.made} == {d[1] for d in sip.dials} | {s.leg.leg_id}


async def test_a_library_slot_still_held_for_a_moment_is_waited_for(tmp_path: Path) -> None:
    """pjsua2 keeps a slot ~0.5 s after a leg ended: the agent is rung once it is free, not sent on a break."""
    s, sip, store = session(tmp_path, {"sip:agent1": "answer", f"sip:{NUMBER}": "answer-then-hangup:0.1"},
                            no_line_for=3)
    await run(s)
    assert len(sip.dials) == 2 and "originate_connected" in store.names() and "originate_failed" not in store.names()
