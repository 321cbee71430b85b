"""A seeded discrete-event simulation of a queue day, to check staffing against (docs/planning.md).

Calls arrive as a Poisson process whose rate is constant within each interval (``offered`` calls
expected per interval), handle times are exponential with the interval's AHT, callers give up after
an exponential patience (or never), service is first come first served, and the number of agents
on the phones changes at interval boundaries (an agent leaving finishes the call in hand first).
Every call is counted in the interval it arrived in: answered within the threshold, answered,
abandoned -- the service level is the stats' SL2 (abandons count as failures).

The result depends only on the arguments and ``seed`` (``random.Random``). Bounded: at most
``MAX_CALLS`` arrivals.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

MAX_CALLS = 2_000_000


@dataclass(frozen=True)
class IntervalResult:
    offered: int
    answered: int
    answered_within: int
    abandoned: int
    wait_s: float

    @property
    def service_level(self) -> float | None:
        done = self.answered + self.abandoned
        return self.answered_within / done if done else None


@dataclass(frozen=True)
class DayResult:
    intervals: list[IntervalResult]

    @property
    def offered(self) -> int:
        return sum(i.offered for i in self.intervals)

    @property
    def service_level(self) -> float | None:
        within = sum(i.answered_within for i in self.intervals)
        done = sum(i.answered + i.abandoned for i in self.intervals)
        return within / done if done else None

    @property
    def abandon_rate(self) -> float | None:
        return sum(i.abandoned for i in self.intervals) / self.offered if self.offered else None


def simulate_day(offered: Sequence[float], aht_s: Sequence[float], agents: Sequence[int], *, interval_s: int,
                 threshold_s: float, patience_s: float | None = None, seed: int = 1) -> DayResult:
    """Run one day of ``len(offered)`` intervals; calls still waiting at the end are served (the
    day drains with the last interval's agents)."""
    if not len(offered) == len(aht_s) == len(agents):
        raise ValueError("offered, aht_s and agents need one value per interval")
    rng = random.Random(seed)
    n_int = len(offered)
    # arrivals
    arrivals: list[tuple[float, int]] = []
    for i, expected in enumerate(offered):
        if expected <= 0:
            continue
        rate, t = expected / interval_s, float(i * interval_s)
        end = (i + 1) * interval_s
        while True:
            t += rng.expovariate(rate)
            if t >= end:
                break
            arrivals.append((t, i))
            if len(arrivals) > MAX_CALLS:
                raise ValueError(f"more than {MAX_CALLS} calls in the day")
    stats: list[list[float]] = [[0, 0, 0, 0, 0.0] for _ in range(n_int)]  # offered, answered, within, abandoned, wait
    # events: (time, order, kind, payload): kinds 0 = agent free, 1 = staffing change, 2 = arrival, 3 = give up
    events: list[tuple[float, int, int, int]] = []
    seq = 0
    for i in range(n_int):
        heapq.heappush(events, (i * interval_s, seq, 1, agents[i]))
        seq += 1
    for k, (at, _i) in enumerate(arrivals):
        heapq.heappush(events, (at, seq, 2, k))
        seq += 1
    staffed = 0  # agents on the phones now
    busy = 0
    waiting: deque[int] = deque()
    gone: set[int] = set()  # callers who gave up (lazy removal from ``waiting``)
    served: set[int] = set()

    def start(k: int, now: float) -> None:
        nonlocal busy, seq
        t0, i = arrivals[k]
        wait = now - t0
        row = stats[i]
        row[1] += 1
        row[2] += wait <= threshold_s
        row[4] += wait
        busy += 1
        served.add(k)
        aht = aht_s[min(n_int - 1, int(now // interval_s))] if aht_s else 1.0
        heapq.heappush(events, (now + rng.expovariate(1.0 / aht), seq, 0, k))
        seq += 1

    def dispatch(now: float) -> None:
        while busy < staffed and waiting:
            k = waiting.popleft()
            if k not in gone:
                start(k, now)

    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == 0:
            busy -= 1
            dispatch(now)
        elif kind == 1:
            staffed = payload
            dispatch(now)
        elif kind == 2:
            _t, i = arrivals[payload]
            stats[i][0] += 1
            waiting.append(payload)
            dispatch(now)
            if payload not in served and patience_s:
                heapq.heappush(events, (now + rng.expovariate(1.0 / patience_s), seq, 3, payload))
                seq += 1
        elif payload not in served and payload not in gone:
            gone.add(payload)
            _t, i = arrivals[payload]
            stats[i][3] += 1
            stats[i][4] += now - _t
    return DayResult([IntervalResult(int(r[0]), int(r[1]), int(r[2]), int(r[3]), float(r[4])) for r in stats])


def day_profile(total: float, slots: int, *, peak_slot: float | None = None, width: float | None = None) -> list[float]:
    """A bell-shaped day of ``total`` calls over ``slots`` intervals (for tests and the benchmark)."""
    peak = slots / 2 if peak_slot is None else peak_slot
    w = slots / 6 if width is None else width
    raw = [math.exp(-((i - peak) / w) ** 2 / 2) for i in range(slots)]
    s = sum(raw)
    return [total * r / s for r in raw]
