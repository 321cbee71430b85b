"""Staffing a forecast (ivr.planning.service.plan_intervals): the queue's own target, shrinkage, maximum
occupancy, and Erlang A chosen where the history gives the queue's patience."""

from __future__ import annotations

import math
from datetime import date, timedelta

from ivr.core.config import Settings
from ivr.planning.erlang import required_agents
from ivr.planning.forecast import Forecast, History, build_history, forecast
from ivr.planning.service import local_midnight, plan_intervals
from ivr.queues.stats import Interval

CUTOFF = date(2026, 3, 2)


def flat_forecast(*, abandons: bool) -> Forecast:
    """Two weeks of 50 calls every half hour (AHT 300 s); with ``abandons``, 2 of them give up after
    a total of 60 s of waiting, so the patience is known."""
    ivs = []
    for d in range(14):
        base = local_midnight(CUTOFF - timedelta(days=14 - d))
        for s in range(48):
            counts = {"offered": 50, "handled": 50, "handle_ms": 50 * 300_000}
            if abandons:
                counts.update(abandoned=2, abandon_wait_ms=60_000, answer_wait_ms=48 * 10_000)
            ivs.append(Interval(base + s * 1800, 1800, counts))
    h: History = build_history(ivs, 1800)
    return forecast(h, [CUTOFF], cutoff=CUTOFF, history_weeks=8, backtest_weeks=1, default_aht_s=180)


def test_the_queues_own_target_shrinkage_and_occupancy_are_used() -> None:
    fc = flat_forecast(abandons=False)
    default = Settings(planning={"shrinkage": 0.25})
    relaxed = Settings(planning={"shrinkage": 0.25},
                       routing={"service_level_s": [10, 20], "queues": {
                           "billing": {"service_level_target": 0.8, "service_level_threshold_s": 20}}})
    strict = plan_intervals(fc, default, "billing")
    loose = plan_intervals(fc, relaxed, "billing")
    assert len(strict) == len(loose) == 48
    want = required_agents(50 / 1800, 300, target=0.9, threshold_s=10, max_occupancy=0.85).agents
    assert {p.need.agents for p in strict} == {want}
    assert {p.need.model for p in strict} == {"erlang_c"}  # no abandons: no patience, Erlang C
    assert all(p.scheduled == math.ceil(want / 0.75) for p in strict)
    assert all(p.need.service.service_level >= 0.9 for p in strict)
    assert all(lo.need.agents < st.need.agents for lo, st in zip(loose, strict, strict=True))
    assert all(p.need.service.occupancy <= 0.85 for p in loose)
    assert plan_intervals(fc, relaxed, "other")[0].need.agents == want  # other queues keep the default


def test_erlang_a_where_the_patience_is_known_unless_erlang_c_is_asked_for() -> None:
    fc = flat_forecast(abandons=True)
    # every caller's wait (48 x 10 s + 60 s) over the 2 abandons of each interval
    assert fc.patience_s is not None and abs(fc.patience_s - 270.0) < 1e-6
    auto = plan_intervals(fc, Settings(), "billing")
    c_only = plan_intervals(fc, Settings(planning={"model": "erlang_c"}), "billing")
    assert {p.need.model for p in auto} == {"erlang_a"} and {p.need.model for p in c_only} == {"erlang_c"}
    assert auto[0].need.agents <= c_only[0].need.agents
    assert auto[0].need.service.p_abandon > 0
