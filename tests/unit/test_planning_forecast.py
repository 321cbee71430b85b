"""Forecasts (ivr.planning.forecast) on generated interval histories with known patterns: a weekly and
intraday shape, a trend, holidays, handle times and patience are recovered; the back-test reports
every method's error and picks the lower."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta

import pytest

from ivr.planning.forecast import Forecast, History, build_history, forecast
from ivr.planning.service import day_starts, local_midnight
from ivr.queues.stats import Interval

WEEKDAY = (1.0, 0.95, 0.9, 0.9, 0.85, 0.5, 0.0)  # Monday .. Sunday; closed on Sundays
STATS_S, PLAN_S = 900, 1800
CUTOFF = date(2026, 3, 2)  # a Monday; the history is the 8 weeks before it
WEEKS = 8


def intraday(slot15: int) -> float:
    """Share of a day's calls in a 15-minute slot: a bell around 11:00, open 08:00-20:00."""
    if not 32 <= slot15 < 80:
        return 0.0
    raw = [math.exp(-(((s - 44) / 10) ** 2) / 2) if 32 <= s < 80 else 0.0 for s in range(96)]
    return raw[slot15] / sum(raw)


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


Total = Callable[[date, int], float]


def generate(total: Total, *, weeks: int = WEEKS, seed: int = 1, aht_s: float = 240.0,
             abandons: int = 0) -> list[Interval]:
    """Stats intervals (15 min) of ``weeks`` weeks before CUTOFF: ``total(day, index)`` calls a day
    shaped by WEEKDAY and the intraday bell, Poisson noise."""
    rng = random.Random(seed)
    out = []
    first = CUTOFF - timedelta(days=7 * weeks)
    for i in range((CUTOFF - first).days):
        d = first + timedelta(days=i)
        base = local_midnight(d)
        for s in range(96):
            lam = total(d, i) * WEEKDAY[d.weekday()] * intraday(s)
            n = poisson(rng, lam)
            counts = {"offered": n, "handled": n, "handle_ms": int(n * aht_s * 1000)}
            if abandons and n:
                counts.update(abandoned=1, abandon_wait_ms=30_000, answer_wait_ms=n * 5_000)
            out.append(Interval(base + s * STATS_S, STATS_S, counts))
    return out


def truth(total: Total, d: date, index: int) -> list[float]:
    """The expected calls of each 30-minute slot of ``d``."""
    return [total(d, index) * WEEKDAY[d.weekday()] * (intraday(2 * k) + intraday(2 * k + 1)) for k in range(48)]


def run(h: History, days: list[date], **kw: object) -> Forecast:
    return forecast(h, days, cutoff=CUTOFF, history_weeks=WEEKS, backtest_weeks=1, default_aht_s=180.0,
                    **kw)  # type: ignore[arg-type]


def wape(f: list[float], a: list[float]) -> float:
    return sum(abs(x - y) for x, y in zip(f, a, strict=True)) / sum(a)


NEXT_WEEK = [CUTOFF + timedelta(days=i) for i in range(7)]


def flat(_d: date, _i: int) -> float:
    return 400.0


def test_fifteen_minute_intervals_fold_into_half_hours_and_nothing_is_lost() -> None:
    ivs = generate(flat)
    h = build_history(ivs, PLAN_S)
    assert h.slots == 48
    assert len(h.days) == 7 * WEEKS
    assert sum(d.total for d in h.days.values()) == sum(iv.counts["offered"] for iv in ivs)
    quarter = build_history(ivs, STATS_S)  # 15-minute planning: one slot per statistics interval
    assert quarter.slots == 96
    assert sum(d.total for d in quarter.days.values()) == sum(d.total for d in h.days.values())


def test_the_weekly_and_intraday_shape_is_recovered() -> None:
    fc = run(build_history(generate(flat), PLAN_S), NEXT_WEEK)
    assert fc.method in ("seasonal", "holt_winters")
    assert set(fc.backtest.errors) == {"seasonal", "holt_winters"}  # both back-tested, errors reported
    for m, e in fc.backtest.errors.items():
        assert e.wape is not None and e.mape is not None and e.intervals == 7 * 48, m
        assert e.wape < 0.3, (m, e)  # against noisy actuals (Poisson: ~20 % in a 30-min slot of ~15 calls)
    for day in fc.days:
        want = truth(flat, day.day, 0)
        if day.day.weekday() == 6:
            assert sum(day.offered) == 0  # closed on Sundays: nothing forecast
            continue
        assert wape(day.offered, want) < 0.12, day.day
    monday, saturday = fc.days[0], fc.days[5]
    assert 0.4 < sum(saturday.offered) / sum(monday.offered) < 0.6
    peak = max(range(48), key=lambda k: monday.offered[k])
    assert peak in (21, 22, 23)  # the bell's top: 10:30-11:30
    assert all(v == 0 for v in monday.offered[:16])  # closed before 08:00


def test_a_trend_is_followed_by_holt_winters_chosen_by_the_backtest() -> None:
    def growing(_d: date, i: int) -> float:
        return 200.0 + 5.0 * i

    fc = run(build_history(generate(growing), PLAN_S), NEXT_WEEK)
    errs = fc.backtest.errors
    assert errs["holt_winters"].wape is not None and errs["seasonal"].wape is not None
    assert errs["holt_winters"].wape < errs["seasonal"].wape
    assert fc.backtest.method == fc.method == "holt_winters"
    for k, day in enumerate(fc.days[:6]):
        want = sum(truth(growing, day.day, 7 * WEEKS + k))
        assert abs(sum(day.offered) - want) / want < 0.1, (day.day, sum(day.offered), want)
    # the seasonal mean of eight weeks lags far behind the trend
    lagging = run(build_history(generate(growing), PLAN_S), NEXT_WEEK, method="seasonal")
    assert sum(lagging.days[0].offered) < 0.85 * sum(truth(growing, CUTOFF, 7 * WEEKS))


def test_the_backtest_chooses_the_method_with_the_lower_wape() -> None:
    for seed in (1, 2, 3):
        fc = run(build_history(generate(flat, seed=seed), PLAN_S), NEXT_WEEK[:1])
        errs = {m: e.wape for m, e in fc.backtest.errors.items()}
        assert fc.method == min(errs, key=lambda m: (errs[m], m != "seasonal"))


def test_holidays_are_left_out_of_training_and_get_the_holiday_profile() -> None:
    past = CUTOFF - timedelta(days=26)  # a Wednesday, four weeks back: a fifth of the usual calls

    def with_holiday(d: date, _i: int) -> float:
        return 80.0 if d == past else 400.0

    h = build_history(generate(with_holiday), PLAN_S)
    wednesday, holiday, closed = CUTOFF + timedelta(days=2), CUTOFF + timedelta(days=9), CUTOFF + timedelta(days=16)
    assert past.weekday() == wednesday.weekday() == holiday.weekday() == closed.weekday() == 2
    targets = [wednesday, holiday, closed]
    fc = run(h, targets, holidays=frozenset({past, holiday, closed}), closed=frozenset({closed}),
             method="seasonal")
    normal = sum(truth(flat, wednesday, 0))
    got = {d.day: d for d in fc.days}
    assert abs(sum(got[wednesday].offered) - normal) / normal < 0.05  # not pulled down by the past holiday
    assert (got[holiday].holiday, got[holiday].closed) == (True, False)
    assert fc.holiday_basis == "history"
    assert 0.1 < sum(got[holiday].offered) / normal < 0.3  # the past holiday's profile
    assert sum(got[closed].offered) == 0 and got[closed].closed
    # not told about the holiday, the seasonal mean drops by about a tenth (one day in eight at 20 %)
    blind = run(h, [wednesday], method="seasonal")
    assert sum(blind.days[0].offered) < 0.95 * sum(got[wednesday].offered)


def test_a_holiday_with_no_past_holiday_gets_the_ordinary_forecast() -> None:
    h = build_history(generate(flat), PLAN_S)
    day = CUTOFF + timedelta(days=1)
    fc = run(h, [day], holidays=frozenset({day}), method="seasonal")
    plain = run(h, [day], method="seasonal")
    assert fc.holiday_basis == "regular" and fc.days[0].holiday
    assert fc.days[0].offered == plain.days[0].offered


def test_handle_time_and_patience_are_learnt_from_the_history() -> None:
    fc = run(build_history(generate(flat, aht_s=240.0, abandons=1), PLAN_S), NEXT_WEEK[:1])
    assert fc.aht_s == pytest.approx(240.0, abs=0.5)
    busy = max(range(48), key=lambda k: fc.days[0].offered[k])
    assert fc.days[0].aht_s[busy] == pytest.approx(240.0, abs=0.5)
    assert fc.patience_s is not None and fc.patience_s > 30  # every caller's wait over the abandons


def test_no_history_forecasts_nothing_with_the_default_aht() -> None:
    fc = run(History(PLAN_S), NEXT_WEEK[:2])
    assert fc.method is None and fc.patience_s is None
    assert all(v == 0 for d in fc.days for v in d.offered)
    assert fc.days[0].aht_s[0] == 180.0


def test_a_short_history_is_not_backtested() -> None:
    h = build_history(generate(flat, weeks=1), PLAN_S)
    fc = run(h, NEXT_WEEK[:1])
    assert fc.backtest.errors == {} and fc.method == "seasonal"
    assert sum(fc.days[0].offered) > 0


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The server's time zone is Europe/Berlin for the test (local days, DST)."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_daylight_saving_change_keeps_local_days_and_slots(berlin: None) -> None:
    spring, autumn = date(2026, 3, 29), date(2026, 10, 25)  # 23 and 25 hours in Berlin
    assert len(day_starts(spring, PLAN_S)) == 46 and len(day_starts(autumn, PLAN_S)) == 50
    assert len(day_starts(spring + timedelta(days=1), PLAN_S)) == 48
    # a history of every local half hour across the spring change: 10 calls each, folded by local time
    first = local_midnight(date(2026, 3, 16))
    ivs = [Interval(s, PLAN_S, {"offered": 10}) for s in range(first, local_midnight(date(2026, 4, 6)), PLAN_S)]
    h = build_history(ivs, PLAN_S)
    assert len(h.days) == 21
    assert h.days[spring].offered[4:6] == [0.0, 0.0]  # 02:00-03:00 never happened
    assert sum(h.days[spring].offered) == 460 and sum(h.days[spring + timedelta(days=1)].offered) == 480
    fc = forecast(h, [date(2026, 4, 6)], cutoff=date(2026, 4, 6), history_weeks=3, backtest_weeks=1,
                  default_aht_s=180.0, method="seasonal")
    assert fc.days[0].offered[8] == pytest.approx(10.0)  # 04:00 local, after the change as before it
