"""The call state machine: every state a call record can be in and the moves allowed between them.

One setter writes a call's state: ``set_call_state`` in ``ivr/queues/lua/lib/call_state.lua``, which
refuses any move not listed here (error ``call.bad_transition``). This module is its Python mirror; a
unit test checks the two tables agree, so code on either side reasons about the same machine.

States (the call as the caller lives it):

- ``ivr`` — in the dial plan (menus, prompts), also back from a queue or after the agent left;
- ``queued`` — waiting in a skill queue for an agent;
- ``offered`` — an agent is reserved and being rung (for a callback: the customer is being dialled);
- ``connected`` — talking to an agent;
- ``held`` — the agent put the caller on hold (music on hold);
- ``consulting`` — the caller is on hold while the agent talks to a consult target;
- ``transferring`` — a blind transfer rings its target (agent or number) while the caller waits;
- ``conferenced`` — caller, agent and a third party talk together;
- ``booked`` — a callback record while the caller who booked it is still on the line;
- ``scheduled`` — a callback record waiting for its next attempt;
- ``dialing`` — an outbound call being placed: a click-to-dial call (the agent's phone rings, then the
  customer's; ``connected`` when the customer answers, ``ivr.calls.originate``) or an automated call
  (the customer's phone rings; ``ivr`` when they answer and its dial plan runs, ``ivr.calls.dialout``);
- ``ended`` — over (terminal; the record expires).

Flags that can be on in any live state are fields of their own, not states: ``recording``
(``on``/``paused``) and ``monitored`` (a supervisor listens, whispers or barges).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class CallState(StrEnum):
    IVR = "ivr"
    QUEUED = "queued"
    OFFERED = "offered"
    CONNECTED = "connected"
    HELD = "held"
    CONSULTING = "consulting"
    TRANSFERRING = "transferring"
    CONFERENCED = "conferenced"
    BOOKED = "booked"
    SCHEDULED = "scheduled"
    DIALING = "dialing"
    ENDED = "ended"


S = CallState

#: The states a new call record starts in: a call entering a worker, a booked callback, a click-to-dial call.
INITIAL: frozenset[CallState] = frozenset({S.IVR, S.BOOKED, S.DIALING})

#: Allowed moves: state -> the states it may go to. Ending is allowed from every live state.
TRANSITIONS: Mapping[CallState, frozenset[CallState]] = {
    S.IVR: frozenset({S.IVR, S.QUEUED, S.ENDED}),
    S.QUEUED: frozenset({S.QUEUED, S.IVR, S.OFFERED, S.SCHEDULED, S.ENDED}),
    S.OFFERED: frozenset({S.CONNECTED, S.QUEUED, S.SCHEDULED, S.ENDED}),
    S.CONNECTED: frozenset({S.IVR, S.HELD, S.CONSULTING, S.TRANSFERRING, S.CONFERENCED, S.QUEUED, S.ENDED}),
    S.HELD: frozenset({S.IVR, S.CONNECTED, S.CONSULTING, S.TRANSFERRING, S.QUEUED, S.ENDED}),
    S.CONSULTING: frozenset({S.CONNECTED, S.HELD, S.CONFERENCED, S.TRANSFERRING, S.ENDED}),
    S.TRANSFERRING: frozenset({S.CONNECTED, S.QUEUED, S.OFFERED, S.ENDED}),
    S.CONFERENCED: frozenset({S.CONNECTED, S.HELD, S.ENDED}),
    S.BOOKED: frozenset({S.QUEUED, S.ENDED}),
    S.SCHEDULED: frozenset({S.QUEUED, S.ENDED}),
    S.DIALING: frozenset({S.CONNECTED, S.IVR, S.ENDED}),
    S.ENDED: frozenset(),
}

#: Live states in which an agent is on the call (its leg is up or being changed).
WITH_AGENT: frozenset[CallState] = frozenset({S.CONNECTED, S.HELD, S.CONSULTING, S.TRANSFERRING, S.CONFERENCED})

#: Flags of a live call (fields beside the state) and their allowed values; '' clears a flag.
FLAGS: Mapping[str, frozenset[str]] = {
    "recording": frozenset({"on", "paused"}),
    "monitored": frozenset({"listen", "whisper", "barge"}),
}


def allowed(current: CallState | None, new: CallState) -> bool:
    """Whether a call in ``current`` (None: no record yet) may move to ``new``."""
    if current is None:
        return new in INITIAL
    return new in TRANSITIONS[current]
