"""Who hears whom on a call with an agent: one pure table, and the one object that applies it.

A call on a worker has up to four legs: the customer's (``caller``), the agent's, a consult or
conference target's, and a supervisor's (``monitor``: live supervision, :class:`MonitorMode`). Hold,
mute, consult, swap, conference and supervision are all the same thing at the media level: a set of
one-way links between those legs on the worker's conference bridge, plus the legs that hear music on
hold. :func:`links` and :func:`music` say what each mode wants; :class:`CallMedia`
moves the bridge from what it has to that, in one SIP-thread command (no SIP re-INVITE: the phones
keep their streams, so a hold or a swap takes effect on the next 20 ms frame and no phone or trunk
can refuse it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ivr.sip.legs import Leg, LegEnded

Link = tuple[str, str]  # (leg that speaks, leg that hears)


class MonitorMode(StrEnum):
    """What a supervisor on the call does. The supervisor always hears what the agent hears and the
    agent itself; whisper adds the supervisor to what the agent hears; barge adds the supervisor to
    what everyone the agent talks to hears."""

    LISTEN = "listen"    # the supervisor hears caller and agent; nobody hears the supervisor
    WHISPER = "whisper"  # + the agent hears the supervisor (coaching); the caller does not
    BARGE = "barge"      # + everyone the agent talks to hears the supervisor


class Mode(StrEnum):
    TALK = "talk"              # caller and agent talk
    HELD = "held"              # the caller hears music; the agent hears nothing
    CONSULT = "consult"        # the agent talks to the target; the caller hears music
    SWAPPED = "swapped"        # during a consult the agent is back with the caller; the target hears music
    CONFERENCE = "conference"  # everyone hears everyone


@dataclass(frozen=True)
class Parties:
    caller: str
    agent: str | None = None
    target: str | None = None
    monitor: str | None = None  # a supervisor's leg (live supervision)


def _both(a: str | None, b: str | None) -> set[Link]:
    return set() if a is None or b is None else {(a, b), (b, a)}


def links(mode: Mode, p: Parties, *, muted: bool = False, monitor: MonitorMode | None = None) -> frozenset[Link]:
    """The one-way links ``mode`` wants; a muted agent is heard by nobody but a supervisor. With a
    supervisor (``p.monitor`` and ``monitor``) the links of :func:`monitor_links` are added."""
    want: set[Link]
    if mode is Mode.TALK:
        want = _both(p.caller, p.agent)
    elif mode is Mode.HELD:
        want = set()
    elif mode is Mode.CONSULT:
        want = _both(p.agent, p.target)
    elif mode is Mode.SWAPPED:
        want = _both(p.caller, p.agent)
    else:
        want = _both(p.caller, p.agent) | _both(p.caller, p.target) | _both(p.agent, p.target)
    want |= monitor_links(frozenset(want), p, monitor)
    if muted and p.agent is not None:
        want = {(src, dst) for src, dst in want if src != p.agent or dst == p.monitor}
    return frozenset(want)


def monitor_links(base: frozenset[Link], p: Parties, monitor: MonitorMode | None) -> set[Link]:
    """A supervisor's links beside the links ``base`` of the call's mode (before mute): it hears the
    agent and whoever the agent hears (on hold: the agent only; in a consult: agent and target);
    whisper: the agent hears it; barge: whoever hears the agent hears it too. Without an agent there
    is nothing to supervise (no links: the worker ends the supervisor's leg)."""
    if monitor is None or p.monitor is None or p.agent is None:
        return set()
    sup, agent = p.monitor, p.agent
    want: set[Link] = {(agent, sup)} | {(src, sup) for src, dst in base if dst == agent}
    if monitor in (MonitorMode.WHISPER, MonitorMode.BARGE):
        want.add((sup, agent))
    if monitor is MonitorMode.BARGE:
        want |= {(sup, dst) for src, dst in base if src == agent}
    return want


def music(mode: Mode, p: Parties) -> frozenset[str]:
    """The legs that hear music on hold in ``mode``."""
    if mode in (Mode.HELD, Mode.CONSULT):
        return frozenset({p.caller})
    if mode is Mode.SWAPPED and p.target is not None:
        return frozenset({p.target})
    return frozenset()


class CallMedia:
    """The bridge state of one call: its links and its music-on-hold players. Only this object
    changes them, so what the call has is always what it last applied."""

    def __init__(self, moh_path: str) -> None:
        self.moh_path = moh_path
        self.current: frozenset[Link] = frozenset()
        self.players: dict[str, tuple[Leg, int]] = {}  # leg id -> (leg, its music player)

    async def apply(self, mode: Mode, legs: dict[str, Leg], p: Parties, *, muted: bool = False,
                    monitor: MonitorMode | None = None) -> None:
        """Move the bridge to ``mode`` (and a supervisor's ``monitor`` mode) for the parties ``p``
        (``legs``: every leg of ``p`` by id)."""
        want = links(mode, p, muted=muted, monitor=monitor)
        hear = music(mode, p)
        for leg_id in [lid for lid in self.players if lid not in hear]:
            leg, player = self.players.pop(leg_id)
            if not leg.is_ended:
                await leg.stop_playback(player)
        for leg_id in hear - self.players.keys():
            leg = legs[leg_id]
            if leg.is_ended:
                continue
            try:
                player, _ = await leg.start_playback(self.moh_path, loop=True)
            except LegEnded:
                continue
            self.players[leg_id] = (leg, player)
        on, off = sorted(want - self.current), sorted(self.current - want)
        made: list[Link] = []
        if on or off:
            made = await next(iter(legs.values())).sip.relink(on, off)
        # a link to a leg without media yet (a target still ringing) is made by a later apply
        self.current = (self.current - set(off)) | set(made)

    def forget(self, leg_id: str) -> None:
        """A leg left the call: its links and player went with it."""
        self.current = frozenset(link for link in self.current if leg_id not in link)
        self.players.pop(leg_id, None)
