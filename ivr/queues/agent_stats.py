"""Per-agent statistics by interval: what the Lua scripts count, and the figures made from it.

**Counters.** Each agent has one Redis hash per statistics interval (``Keys.agent_interval``: the
queues' ``routing.stats_interval_s``; kept 35 days, ``routing.stats_keep_days`` if shorter: about 200
bytes per agent and interval signed in, measured with MEMORY USAGE) and a ZSET index of its
intervals, written in the same atomic step as the change they count (``agent_*`` helpers in
``lua/lib/prelude.lua``):

=====================  ====================================================================
``ms_<state>``         milliseconds spent in ``available``, ``reserved`` (ringing), ``oncall``,
                       ``wrapup``, ``break`` — added when the agent leaves the state, split at
                       the interval boundaries it crossed (offline time is not counted; a
                       state held for days counts its last 48 hours). The state the agent is in
                       now is added at read time, up to now.
``handled``            calls whose part of the agent ended (hang-up, transfer, consult completed,
                       left a conference, left for a survey) — inbound and click-to-dial alike
``handle_ms``          their handle time: talk + hold + wrap-up, from when the agent got the
                       call to its end plus the wrap-up granted (the queue's ``handle_ms``)
``talk_ms``            of it, the talk: handle minus hold minus wrap-up
``hold_ms``            of it, the time on hold
=====================  ====================================================================

**Figures** (``None`` when the denominator is zero):

- ``signed_in_ms`` = available + reserved + oncall + wrapup + break.
- ``occupancy = (reserved + oncall + wrapup) / (available + reserved + oncall + wrapup)``.
- ``aht_s = handle_ms / handled``, ``avg_talk_s``, ``avg_hold_s`` alike (seconds).
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ivr.queues.stats import iso
from ivr.queues.store import QueueStore

STATES = ("available", "reserved", "oncall", "wrapup", "break")
STATE_FIELDS = tuple(f"ms_{s}" for s in STATES)
COUNTERS = ("handled", "handle_ms", "talk_ms", "hold_ms", *STATE_FIELDS)
BATCH = 50  # agents per read script: Redis stays responsive
SPLIT_S = 2 * 86400  # a state held longer counts its last 48 hours (AGENT_SPLIT_S in lua/lib/prelude.lua)


@dataclass
class AgentInterval:
    """One agent's counters for one interval (``start_s`` epoch seconds, ``length_s`` long)."""

    start_s: int
    length_s: int
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AgentInterval:
        d = {str(k): int(v) for k, v in row.items()}
        start, length = d.pop("start", 0), d.pop("length_s", 0)
        return cls(start, length, d)


@dataclass(frozen=True)
class AgentRead:
    """What one read found for one agent: its state now, since when (ms), its intervals (running
    time of the state now included)."""

    agent_id: str
    state: str
    since_ms: int | None
    intervals: list[AgentInterval]


def merge(intervals: Iterable[AgentInterval]) -> dict[str, int]:
    out: dict[str, int] = {}
    for iv in intervals:
        for name, v in iv.counts.items():
            out[name] = out.get(name, 0) + v
    return out


def _ratio(num: float, den: float, scale: float = 1.0) -> float | None:
    return round(num / den / scale, 4) if den > 0 else None


def figures(counts: Mapping[str, int]) -> dict[str, Any]:
    """Counters plus the derived figures (see the module docstring), JSON-ready."""
    c = {name: int(counts.get(name, 0)) for name in COUNTERS}
    busy = c["ms_reserved"] + c["ms_oncall"] + c["ms_wrapup"]
    return {
        **c,
        "signed_in_ms": sum(c[f] for f in STATE_FIELDS),
        "occupancy": _ratio(busy, busy + c["ms_available"]),
        "aht_s": _ratio(c["handle_ms"], c["handled"], 1000),
        "avg_talk_s": _ratio(c["talk_ms"], c["handled"], 1000),
        "avg_hold_s": _ratio(c["hold_ms"], c["handled"], 1000),
    }


def bucket_of(buckets: Sequence[int], start_s: int) -> int:
    """The last of the ascending ``buckets`` starting at or before ``start_s`` (the first one before them all)."""
    i = bisect.bisect_right(buckets, start_s)
    return buckets[max(0, i - 1)]


def add_running(intervals: list[AgentInterval], state: str, since_ms: int | None, from_s: int, to_s: int,
                now_ms: int, length_s: int, buckets: Sequence[int] | None = None) -> list[AgentInterval]:
    """``intervals`` (rows per interval, or per bucket when ``buckets`` are given) with the time of the
    state the agent is in now (from ``since_ms`` to ``now_ms``) added, split at the interval boundaries,
    within [from_s, to_s). Sorted by start."""
    by_start = {iv.start_s: iv for iv in intervals}
    if state in STATES and since_ms is not None:
        step = length_s * 1000
        oldest = now_ms - SPLIT_S * 1000
        oldest += (step - oldest % step) % step  # as the scripts count it: the last 48 hours' intervals
        t, end = max(since_ms, from_s * 1000, oldest), min(now_ms, to_s * 1000)
        while t < end:  # bounded by the range, which the API bounds
            start = t - t % step
            stop = min(end, start + step)
            key = bucket_of(buckets, start // 1000) if buckets else start // 1000
            iv = by_start.setdefault(key, AgentInterval(key, 0 if buckets else length_s))
            name = f"ms_{state}"
            iv.counts[name] = iv.counts.get(name, 0) + (stop - t)
            t = stop
    return sorted(by_start.values(), key=lambda iv: iv.start_s)


def local_midnight(epoch_s: float) -> int:
    """The start of the local day (the server's time zone) holding ``epoch_s``, right on DST days too
    (``mktime`` works the offset of midnight out; a fixed offset of the moment would be an hour off)."""
    t = time.localtime(epoch_s)
    return int(time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1)))


def local_days(from_s: int, to_s: int) -> list[int]:
    """The starts of the local days (the server's time zone) that [from_s, to_s) touches, ascending."""
    days: list[int] = []
    day = local_midnight(from_s)
    while day < to_s and len(days) < 400:  # bounded: the API's ranges are far shorter
        days.append(day)
        day = local_midnight(day + 86400 + 7200)  # a DST day is 23 or 25 hours long
    return days


def row(iv: AgentInterval) -> dict[str, Any]:
    return {"start": iso(iv.start_s), "length_s": iv.length_s, **figures(iv.counts)}


class AgentStatsStore:
    """The agent-statistics section of the state layer; it runs its script through the :class:`QueueStore`."""

    def __init__(self, store: QueueStore) -> None:
        self.store = store
        self.keys = store.keys
        self.interval_s = store.stats_config.interval_s

    async def read(self, agent_ids: Sequence[str], from_s: int, to_s: int, *,
                   buckets: Sequence[int] | None = None) -> AsyncIterator[AgentRead]:
        """Each agent's intervals starting in [from_s, to_s) (the current state's running time added),
        or with ``buckets`` (ascending starts, e.g. :func:`local_days`) their sums per bucket (summed in
        Redis: a short reply); ``BATCH`` agents per script run."""
        spec = json.dumps(list(buckets)) if buckets else ""
        for i in range(0, len(agent_ids), BATCH):
            res = json.loads(await self.store._run("agent_stats", from_s, to_s, spec, *agent_ids[i:i + BATCH]))
            now_ms = int(res[0])
            for entry in res[1] or []:  # cjson writes an empty list as {}
                aid, state, since = str(entry[0]), str(entry[1]), str(entry[2])
                ivs = [AgentInterval.from_row(h) for h in entry[3] or []]
                since_ms = int(float(since)) if since else None
                rows = add_running(ivs, state, since_ms, from_s, to_s, now_ms, self.interval_s, buckets)
                for iv in rows if buckets else ():
                    iv.length_s = 86400  # a local day (23 or 25 hours on a DST change)
                yield AgentRead(aid, state, since_ms, rows)

    async def force(self, agent_id: str, state: str, reason: str, *, by: str, force: bool) -> dict[str, Any]:
        """A supervisor's change of the agent's state (``lua/scripts/agent_force.lua``):
        ``{"applied": true, "offer": ...}`` or, for an agent on a call with ``force``,
        ``{"applied": false, "pending": state}``. NotFound ``agent.not_found``, Conflict ``agent.busy``."""
        raw = await self.store._run("agent_force", agent_id, state, reason, by, "1" if force else "0")
        return dict(json.loads(raw))

    async def today(self, agent_id: str) -> dict[str, Any]:
        """One agent's figures since local midnight (a convenience for tests and the desktop)."""
        now = time.time()
        async for got in self.read([agent_id], local_midnight(now), int(now) + 1):
            return figures(merge(got.intervals))
        return figures({})


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
