"""Forecast and staffing of a queue from its interval history in Redis (docs/planning.md).

What the API (:mod:`ivr.cti.planning`) and the alerts (``staffing_now``) call. The forecast of a day
is made from the history *before* it (before today for a future day: complete days only), so it is
fixed for the day and cached per queue and day (:data:`CACHE_SIZE` entries, least recently used
out); the actual figures of past intervals are read fresh each time.

Holidays are the caller's: ``Holidays(dates, closed)`` (the API computes them from the dial plans'
calendars; :func:`staffing_now` takes them as an optional argument, none by default).
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from ivr.core.config import PlanningSettings, Settings
from ivr.planning.erlang import Model, Need, required_agents, scheduled_agents
from ivr.planning.forecast import Forecast, History, build_history, forecast, slot_of
from ivr.queues.stats import Interval, merge
from ivr.queues.store import QueueStore

#: forecasts kept (queue x day x parameters)
CACHE_SIZE = 1024
#: the most days one forecast covers
MAX_DAYS = 14


@dataclass(frozen=True)
class Holidays:
    """Dates that are holidays for a queue, and those of them on which it is closed (zero calls)."""

    dates: frozenset[date] = frozenset()
    closed: frozenset[date] = frozenset()


NO_HOLIDAYS = Holidays()


@dataclass(frozen=True)
class StaffingNow:
    queue: str
    interval_start_s: int
    forecast_offered: float
    aht_s: float
    required: int  # agents on the phones for the target (no shrinkage)


@dataclass(frozen=True)
class IntervalPlan:
    """One planning interval of a queue: the forecast and what it needs."""

    start_s: int
    offered: float
    aht_s: float
    holiday: bool
    closed: bool
    need: Need
    scheduled: int

    def to_dict(self) -> dict[str, Any]:
        s = self.need.service
        return {"start": _iso(self.start_s), "start_s": self.start_s, "offered": round(self.offered, 2),
                "aht_s": round(self.aht_s, 1), "holiday": self.holiday, "closed": self.closed,
                "required": self.need.agents, "scheduled": self.scheduled, "model": self.need.model,
                "capped": self.need.capped, "expected_sl": round(s.service_level, 4),
                "expected_asa_s": round(s.asa_s, 1) if math.isfinite(s.asa_s) else None,
                "expected_occupancy": round(s.occupancy, 4), "expected_abandon": round(s.p_abandon, 4)}


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s).astimezone().isoformat(timespec="minutes")


def local_midnight(d: date) -> int:
    """Epoch seconds of local midnight starting ``d`` (the server's time zone)."""
    return int(datetime(d.year, d.month, d.day).astimezone().timestamp())


def local_date(epoch_s: float) -> date:
    return datetime.fromtimestamp(epoch_s).date()


def day_starts(d: date, interval_s: int) -> list[int]:
    """The planning intervals of local day ``d``: epoch starts from its midnight to the next."""
    a, b = local_midnight(d), local_midnight(d + timedelta(days=1))
    first = a - a % interval_s if a % interval_s else a
    return list(range(first, b, interval_s))


async def read_intervals(store: QueueStore, queue: str, from_s: int, to_s: int) -> list[Interval]:
    return [iv async for iv in store.iter_intervals(queue, from_s, to_s)]


async def read_history(store: QueueStore, queue: str, from_s: int, to_s: int, interval_s: int) -> History:
    """The queue's intervals starting in [from_s, to_s) folded into a :class:`History` (read a slice
    at a time by a read-only script: :meth:`QueueStore.interval_history`)."""
    intervals = [iv async for iv in store.interval_history(queue, from_s, to_s)]
    return build_history(intervals, interval_s)


_CACHE: OrderedDict[tuple[Any, ...], Forecast] = OrderedDict()


def _remember(key: tuple[Any, ...], value: Forecast) -> None:
    _CACHE[key] = value
    _CACHE.move_to_end(key)
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)


def clear_cache() -> None:
    """Forget every cached forecast and staffing (tests: a new Redis client may reuse an old one's id)."""
    _CACHE.clear()
    _NOW.plans.clear()
    _need.cache_clear()


async def queue_forecast(store: QueueStore, planning: PlanningSettings, queue: str, first: date, days: int = 1, *,
                         today: date | None = None, holidays: Holidays = NO_HOLIDAYS) -> Forecast:
    """The forecast of ``days`` days from ``first``, learnt from the history before ``first`` (before
    today when ``first`` is later): ``planning.history_weeks`` weeks of it."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be 1..{MAX_DAYS}")
    today = today or local_date(time.time())
    cutoff = min(first, today)
    key = (id(store.redis), store.keys.prefix, queue, cutoff, first, days, planning.interval_s,
           planning.history_weeks, planning.backtest_weeks, planning.default_aht_s, holidays)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    lo = local_midnight(cutoff - timedelta(days=7 * planning.history_weeks))
    history = await read_history(store, queue, lo, local_midnight(cutoff), planning.interval_s)
    targets = [first + timedelta(days=i) for i in range(days)]
    # CPU work (tens of ms to a few hundred per queue): in a thread, so the API's event loop (pops,
    # desktops) keeps turning while a cold cache is filled, e.g. every queue's first alert evaluation of a day
    fc = await asyncio.to_thread(functools.partial(
        forecast, history, targets, cutoff=cutoff, history_weeks=planning.history_weeks,
        backtest_weeks=planning.backtest_weeks, default_aht_s=planning.default_aht_s,
        holidays=holidays.dates, closed=holidays.closed))
    _remember(key, fc)
    return fc


@functools.lru_cache(maxsize=16384)
def _need(rate: float, aht: float, target: float, threshold_s: int, max_occupancy: float, model: Model,
          patience_s: float | None) -> Need:
    return required_agents(rate, aht, target=target, threshold_s=threshold_s, max_occupancy=max_occupancy,
                           model=model, patience_s=patience_s)


def plan_intervals(fc: Forecast, settings: Settings, queue: str) -> list[IntervalPlan]:
    """Every planning interval of the forecast's days with the agents it needs."""
    p = settings.planning
    share, threshold = settings.routing.target(queue)
    model: Model = "erlang_c" if p.model == "erlang_c" or fc.patience_s is None else "erlang_a"
    patience = round(fc.patience_s, 1) if model == "erlang_a" and fc.patience_s is not None else None
    out = []
    for day in fc.days:
        for start in day_starts(day.day, fc.interval_s):
            d, slot = slot_of(start, fc.interval_s)
            if d != day.day:  # the interval straddling midnight of an odd UTC offset: counted the day it starts
                slot = 0
            offered, aht = day.offered[slot], day.aht_s[slot]
            need = _need(round(offered / fc.interval_s, 6), round(aht, 1), share, threshold, p.max_occupancy,
                         model, patience)
            out.append(IntervalPlan(start, offered, aht, day.holiday, day.closed, need,
                                    scheduled_agents(need.agents, p.shrinkage)))
    return out


@dataclass(frozen=True)
class Actual:
    offered: int
    answered: int
    abandoned: int
    handled: int
    aht_s: float | None


async def actuals(store: QueueStore, queue: str, starts: Sequence[int], interval_s: int,
                  now_s: float) -> dict[int, Actual]:
    """The recorded figures of the intervals of ``starts`` that have begun by ``now_s``."""
    past = [s for s in starts if s <= now_s]
    if not past:
        return {}
    rows = await read_intervals(store, queue, past[0], past[-1] + interval_s)
    by: dict[int, list[Interval]] = {}
    for iv in rows:
        by.setdefault(iv.start_s - (iv.start_s - past[0]) % interval_s, []).append(iv)
    out = {}
    for s in past:
        c = merge(by.get(s, []))
        handled = c.get("handled", 0)
        out[s] = Actual(c.get("offered", 0), c.get("answered", 0), c.get("abandoned", 0), handled,
                        round(c.get("handle_ms", 0) / handled / 1000, 1) if handled else None)
    return out


@dataclass
class _NowCache:
    plans: OrderedDict[tuple[Any, ...], list[IntervalPlan] | None] = field(default_factory=OrderedDict)


_NOW = _NowCache()


async def staffing_now(store: QueueStore, settings: Settings, queue: str, now_s: float, *,
                       holidays: Holidays = NO_HOLIDAYS) -> StaffingNow | None:
    """The agents ``queue`` needs on the phones in the planning interval holding ``now_s`` (Erlang C
    or A on the interval's forecast, no shrinkage), or None when it has no history. Cached per queue
    and day: cheap to call every few seconds."""
    today = local_date(now_s)
    p = settings.planning
    key = (id(store.redis), store.keys.prefix, queue, today, tuple(p.model_dump().values()),
           settings.routing.target(queue), holidays)
    if key in _NOW.plans:
        plans = _NOW.plans[key]
        _NOW.plans.move_to_end(key)
    else:
        fc = await queue_forecast(store, p, queue, today, 1, today=today, holidays=holidays)
        plans = await asyncio.to_thread(plan_intervals, fc, settings, queue) if fc.method is not None else None
        _NOW.plans[key] = plans
        while len(_NOW.plans) > CACHE_SIZE:
            _NOW.plans.popitem(last=False)
    if plans is None:
        return None
    here = [ip for ip in plans if ip.start_s <= now_s < ip.start_s + p.interval_s]
    if not here:
        return None
    ip = here[0]
    return StaffingNow(queue, ip.start_s, round(ip.offered, 2), round(ip.aht_s, 1), ip.need.agents)
