"""Volume and handle-time forecasts per queue and planning interval (docs/planning.md).

Pure functions of an interval history (no I/O, no clock). Days are local days of the server's time
zone (as the queue statistics' "today" is); an interval's slot is its local time of day divided by
the planning interval (a 25-hour day of a DST change adds its repeated hour to the same slots, a
23-hour day has its skipped slot empty).

Two methods, chosen per queue by back-test:

- ``seasonal``: each slot of a day is the mean of the same weekday and slot over the last
  ``history_weeks`` weeks (day-of-week x time-of-day).
- ``holt_winters``: additive Holt-Winters with a damped trend on the *daily totals* (weekly season;
  alpha, beta, gamma chosen by a grid search on the one-step-ahead error), times the weekday's
  intraday profile (each slot's share of the weekday's calls over the window).

**Back-test:** the most recent ``backtest_weeks`` weeks before the forecast are held out; each method
learns from the weeks before them and forecasts them; WAPE (sum |f - a| / sum a) and MAPE over the
intervals with calls are reported for both; the lower WAPE wins (a tie: seasonal). Less than a week
of history before the held-out weeks: no back-test, seasonal.

**Holidays** (dates given by the caller) are left out of training (Holt-Winters sees the seasonal
expectation in their place). A holiday in the forecast gets the queue's holiday profile (the mean of
past holidays in the history, per slot) or, with no past holiday, the ordinary forecast; a ``closed``
date (every plan reaching the queue is closed) gets zero.

**AHT** per weekday and slot: the slot's handle time over its handled calls in the window, pulled
towards the queue's overall AHT by a prior of ``AHT_PRIOR_CALLS`` calls (a slot with few calls is
mostly the overall figure); no handled call at all: ``default_aht_s``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

from ivr.queues.stats import Interval

Method = Literal["seasonal", "holt_winters"]
METHODS: tuple[Method, ...] = ("seasonal", "holt_winters")
#: the weight (in calls) of the overall AHT in a slot's AHT
AHT_PRIOR_CALLS = 5.0
#: abandons a history needs before its patience is trusted (Erlang A)
MIN_ABANDONS = 10
#: Holt-Winters' grid: alpha (level), beta (trend), gamma (season); damping of the trend
_ALPHAS = (0.05, 0.1, 0.2, 0.35, 0.5)
_BETAS = (0.0, 0.02, 0.05, 0.15)
_GAMMAS = (0.05, 0.15, 0.3)
_PHI = 0.98
#: most days a history holds (two years and a bit: planning.history_weeks is at most 104)
MAX_DAYS = 800


@dataclass
class Day:
    """One local day's figures per slot."""

    offered: list[float]
    handled: list[float]
    handle_s: list[float]

    @property
    def total(self) -> float:
        return sum(self.offered)


@dataclass
class History:
    """A queue's interval history folded into local days of ``slots`` planning intervals, plus the
    totals patience is measured from."""

    interval_s: int
    days: dict[date, Day] = field(default_factory=dict)
    abandoned: int = 0
    wait_s: float = 0.0  # every caller's wait: answered and abandoned

    @property
    def slots(self) -> int:
        return 86400 // self.interval_s

    def day(self, d: date) -> Day:
        got = self.days.get(d)
        if got is None:
            n = self.slots
            got = self.days[d] = Day([0.0] * n, [0.0] * n, [0.0] * n)
        return got

    @property
    def patience_s(self) -> float | None:
        """Mean patience: every caller's wait over the abandons (None with fewer than MIN_ABANDONS)."""
        if self.abandoned < MIN_ABANDONS or self.wait_s <= 0:
            return None
        return self.wait_s / self.abandoned


def slot_of(epoch_s: int, interval_s: int) -> tuple[date, int]:
    """The local day and slot of an instant."""
    t = time.localtime(epoch_s)
    return date(t.tm_year, t.tm_mon, t.tm_mday), (t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec) // interval_s


def build_history(intervals: Iterable[Interval], interval_s: int) -> History:
    """Fold statistics intervals (any length dividing ``interval_s``) into planning slots."""
    h = History(interval_s)
    for iv in intervals:
        d, slot = slot_of(iv.start_s, interval_s)
        if d not in h.days and len(h.days) >= MAX_DAYS:
            continue
        c = iv.counts
        day = h.day(d)
        day.offered[slot] += c.get("offered", 0)
        day.handled[slot] += c.get("handled", 0)
        day.handle_s[slot] += c.get("handle_ms", 0) / 1000
        h.abandoned += c.get("abandoned", 0)
        h.wait_s += (c.get("answer_wait_ms", 0) + c.get("abandon_wait_ms", 0)) / 1000
    return h


def day_range(first: date, last: date) -> list[date]:
    """Every date from ``first`` to ``last`` included."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# --- the methods -------------------------------------------------------------------------------

def _training_days(h: History, cutoff: date, weeks: int) -> list[date]:
    """The days the methods learn from: from the first day with data (at most ``weeks`` weeks) up
    to the day before ``cutoff``; days with no interval in between count as days without calls."""
    known = [d for d in h.days if d < cutoff]
    if not known:
        return []
    first = max(min(known), cutoff - timedelta(days=7 * weeks))
    return day_range(first, cutoff - timedelta(days=1))


def _zeros(h: History) -> Day:
    n = h.slots
    return Day([0.0] * n, [0.0] * n, [0.0] * n)


def seasonal(h: History, train: Sequence[date], holidays: frozenset[date],
             targets: Sequence[date]) -> list[list[float]]:
    """Per target day, per slot: the mean of the same weekday's slot over the training days."""
    sums: dict[int, list[float]] = {}
    counts: dict[int, int] = {}
    for d in train:
        if d in holidays:
            continue
        w = d.weekday()
        row = h.days.get(d) or _zeros(h)
        acc = sums.setdefault(w, [0.0] * h.slots)
        for i, v in enumerate(row.offered):
            acc[i] += v
        counts[w] = counts.get(w, 0) + 1
    out = []
    for d in targets:
        w = d.weekday()
        n = counts.get(w, 0)
        out.append([v / n for v in sums[w]] if n else [0.0] * h.slots)
    return out


def _profiles(h: History, train: Sequence[date], holidays: frozenset[date]) -> dict[int, list[float]]:
    """Per weekday, each slot's share of the weekday's calls."""
    sums: dict[int, list[float]] = {}
    for d in train:
        if d in holidays or d not in h.days:
            continue
        acc = sums.setdefault(d.weekday(), [0.0] * h.slots)
        for i, v in enumerate(h.days[d].offered):
            acc[i] += v
    out = {}
    for w, acc in sums.items():
        total = sum(acc)
        out[w] = [v / total for v in acc] if total > 0 else [0.0] * h.slots
    return out


def _hw_fit(series: Sequence[float], weekdays: Sequence[int], alpha: float, beta: float,
            gamma: float) -> tuple[float, float, list[float], float]:
    """Run additive Holt-Winters (damped trend) over ``series``: (level, trend, season by weekday, SSE)."""
    first = series[:7]
    level = sum(first) / len(first)
    trend = (sum(series[7:14]) / 7 - level) / 7 if len(series) >= 14 else 0.0
    season = [0.0] * 7
    for v, w in zip(first, weekdays[:7], strict=False):
        season[w] = v - level
    sse = 0.0
    for t in range(7, len(series)):
        v, w = series[t], weekdays[t]
        pred = level + _PHI * trend + season[w]
        sse += (v - pred) ** 2
        new_level = alpha * (v - season[w]) + (1 - alpha) * (level + _PHI * trend)
        trend = beta * (new_level - level) + (1 - beta) * _PHI * trend
        season[w] = gamma * (v - new_level) + (1 - gamma) * season[w]
        level = new_level
    return level, trend, season, sse


def holt_winters(h: History, train: Sequence[date], holidays: frozenset[date],
                 targets: Sequence[date]) -> list[list[float]] | None:
    """Per target day, per slot: the daily total from Holt-Winters times the weekday's profile.
    None with less than two weeks to learn from."""
    if len(train) < 14:
        return None
    base = seasonal(h, train, holidays, train)  # the weekday expectation, for the holidays' places
    series = [sum(base[i]) if d in holidays else (h.days[d].total if d in h.days else 0.0)
              for i, d in enumerate(train)]
    weekdays = [d.weekday() for d in train]
    best: tuple[float, float, float, list[float]] | None = None
    best_sse = math.inf
    for a in _ALPHAS:
        for b in _BETAS:
            for g in _GAMMAS:
                level, trend, season, sse = _hw_fit(series, weekdays, a, b, g)
                if sse < best_sse:
                    best_sse, best = sse, (level, trend, 0.0, season)
    assert best is not None
    level, trend, _, season = best
    profiles = _profiles(h, train, holidays)
    last = train[-1]
    out = []
    for d in targets:
        steps = (d - last).days
        damp = _PHI * (1 - _PHI ** max(steps, 1)) / (1 - _PHI)  # sum of PHI^i, i = 1..steps
        total = max(0.0, level + damp * trend + season[d.weekday()])
        prof = profiles.get(d.weekday(), [0.0] * h.slots)
        out.append([total * p for p in prof])
    return out


def _predict(method: Method, h: History, train: Sequence[date], holidays: frozenset[date],
             targets: Sequence[date]) -> list[list[float]] | None:
    if method == "seasonal":
        return seasonal(h, train, holidays, targets)
    return holt_winters(h, train, holidays, targets)


# --- errors and the back-test ------------------------------------------------------------------

@dataclass(frozen=True)
class Errors:
    wape: float | None
    mape: float | None
    intervals: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {"wape": None if self.wape is None else round(self.wape, 4),
                "mape": None if self.mape is None else round(self.mape, 4), "intervals": self.intervals}


def errors(forecast: Sequence[Sequence[float]], actual: Sequence[Sequence[float]]) -> Errors:
    """WAPE over every interval and MAPE over the intervals with calls."""
    abs_err = total = 0.0
    ape: list[float] = []
    n = 0
    for frow, arow in zip(forecast, actual, strict=True):
        for f, a in zip(frow, arow, strict=True):
            n += 1
            abs_err += abs(f - a)
            total += a
            if a > 0:
                ape.append(abs(f - a) / a)
    return Errors(abs_err / total if total > 0 else None, sum(ape) / len(ape) if ape else None, n)


@dataclass(frozen=True)
class Backtest:
    method: Method
    errors: dict[str, Errors]
    held_out_from: date | None

    def to_dict(self) -> dict[str, object]:
        return {"method": self.method, "held_out_from": self.held_out_from.isoformat() if self.held_out_from else None,
                "errors": {m: e.to_dict() for m, e in self.errors.items()}}


def backtest(h: History, cutoff: date, *, history_weeks: int, backtest_weeks: int,
             holidays: frozenset[date]) -> Backtest:
    """Hold out the ``backtest_weeks`` weeks before ``cutoff``, forecast them with each method from
    the weeks before, and pick the method with the lower WAPE."""
    hold_from = cutoff - timedelta(days=7 * backtest_weeks)
    train = _training_days(h, hold_from, history_weeks)
    if len(train) < 7:
        return Backtest("seasonal", {}, None)
    held = [d for d in day_range(hold_from, cutoff - timedelta(days=1)) if d not in holidays]
    actual = [(h.days[d].offered if d in h.days else [0.0] * h.slots) for d in held]
    errs: dict[str, Errors] = {}
    for m in METHODS:
        pred = _predict(m, h, train, holidays, held)
        if pred is not None:
            errs[m] = errors(pred, actual)
    scored = [(e.wape, METHODS.index(m), m) for m, e in errs.items() if e.wape is not None]
    method: Method = min(scored)[2] if scored else "seasonal"  # type: ignore[assignment]
    return Backtest(method, errs, hold_from)


# --- the forecast --------------------------------------------------------------------------------

@dataclass(frozen=True)
class DayForecast:
    day: date
    offered: list[float]
    aht_s: list[float]
    holiday: bool
    closed: bool


@dataclass(frozen=True)
class Forecast:
    """A queue's forecast for some days, the method used and the back-test behind the choice."""

    interval_s: int
    days: list[DayForecast]
    backtest: Backtest
    method: Method | None  # None: no history at all
    aht_s: float  # the overall AHT of the window
    patience_s: float | None
    trained_from: date | None
    cutoff: date
    holiday_basis: Literal["history", "regular", "none"] = "none"


def forecast(h: History, targets: Sequence[date], *, cutoff: date, history_weeks: int, backtest_weeks: int,
             default_aht_s: float, holidays: frozenset[date] = frozenset(), closed: frozenset[date] = frozenset(),
             method: Method | None = None) -> Forecast:
    """Forecast ``targets`` (days at or after ``cutoff``) from the history before ``cutoff``."""
    train = _training_days(h, cutoff, history_weeks)
    n = h.slots
    handled = sum(sum(h.days[d].handled) for d in train if d in h.days)
    handle_s = sum(sum(h.days[d].handle_s) for d in train if d in h.days)
    overall = handle_s / handled if handled > 0 else default_aht_s
    if not train:
        days = [DayForecast(d, [0.0] * n, [overall] * n, d in holidays, d in closed) for d in targets]
        return Forecast(h.interval_s, days, Backtest("seasonal", {}, None), None, overall, None, None, cutoff)
    bt = backtest(h, cutoff, history_weeks=history_weeks, backtest_weeks=backtest_weeks, holidays=holidays)
    chosen: Method = method or bt.method
    pred = _predict(chosen, h, train, holidays, targets)
    if pred is None:
        chosen = "seasonal"
        pred = seasonal(h, train, holidays, targets)
    # AHT per weekday and slot, with the overall AHT as a prior
    aht_sum: dict[int, list[float]] = {}
    aht_n: dict[int, list[float]] = {}
    for d in train:
        if d in h.days and d not in holidays:
            row, w = h.days[d], d.weekday()
            s, c = aht_sum.setdefault(w, [0.0] * n), aht_n.setdefault(w, [0.0] * n)
            for i in range(n):
                s[i] += row.handle_s[i]
                c[i] += row.handled[i]
    past_holidays = [d for d in train if d in holidays and d in h.days]
    profile = None
    if past_holidays:
        profile = [sum(h.days[d].offered[i] for d in past_holidays) / len(past_holidays) for i in range(n)]
    basis: Literal["history", "regular", "none"] = "none"
    days = []
    for d, vals in zip(targets, pred, strict=True):
        w = d.weekday()
        s, c = aht_sum.get(w, [0.0] * n), aht_n.get(w, [0.0] * n)
        aht = [(s[i] + AHT_PRIOR_CALLS * overall) / (c[i] + AHT_PRIOR_CALLS) for i in range(n)]
        if d in closed:
            vals = [0.0] * n
        elif d in holidays:
            if profile is not None:
                vals, basis = list(profile), "history"
            elif basis == "none":
                basis = "regular"
        days.append(DayForecast(d, [max(0.0, v) for v in vals], aht, d in holidays, d in closed))
    return Forecast(h.interval_s, days, bt, chosen, overall, h.patience_s, train[0], cutoff, basis)
