"""Staffing checked against the seeded queue-day simulation (ivr.planning.simulate): a day with a known
arrival profile, staffed interval by interval as Erlang C (or Erlang A, with impatient callers)
recommends, achieves the target service level within a few points, and what the formulas predict."""

from __future__ import annotations

from ivr.planning.erlang import required_agents, service_a, service_c
from ivr.planning.simulate import DayResult, day_profile, simulate_day

SLOTS, INTERVAL = 48, 1800
AHT, THRESHOLD, TARGET = 180.0, 20, 0.8
DAYS = 10  # seeded days pooled: about 24,000 calls


def pooled(results: list[DayResult]) -> tuple[float, float]:
    within = sum(i.answered_within for r in results for i in r.intervals)
    done = sum(i.answered + i.abandoned for r in results for i in r.intervals)
    abandoned = sum(i.abandoned for r in results for i in r.intervals)
    return within / done, abandoned / sum(r.offered for r in results)


def test_a_day_staffed_as_erlang_c_recommends_meets_the_target() -> None:
    offered = day_profile(2400, SLOTS)
    agents = [required_agents(o / INTERVAL, AHT, target=TARGET, threshold_s=THRESHOLD).agents for o in offered]
    predicted = sum(service_c(n, o / INTERVAL, AHT, THRESHOLD).service_level * o
                    for n, o in zip(agents, offered, strict=True)) / sum(offered)
    days = [simulate_day(offered, [AHT] * SLOTS, agents, interval_s=INTERVAL, threshold_s=THRESHOLD, seed=s)
            for s in range(DAYS)]
    sl, abandon = pooled(days)
    assert abandon == 0
    assert sl >= TARGET - 0.03, (sl, predicted)
    assert abs(sl - predicted) <= 0.03, (sl, predicted)
    # one agent fewer in every interval misses the target: the simulation is sensitive to staffing
    short = [simulate_day(offered, [AHT] * SLOTS, [max(0, n - 1) for n in agents], interval_s=INTERVAL,
                          threshold_s=THRESHOLD, seed=s) for s in range(DAYS)]
    assert pooled(short)[0] < TARGET - 0.05


def test_a_day_with_impatient_callers_staffed_as_erlang_a_recommends_meets_the_target() -> None:
    patience = 120.0
    offered = day_profile(2400, SLOTS)
    needs = [required_agents(o / INTERVAL, AHT, target=TARGET, threshold_s=THRESHOLD, model="erlang_a",
                             patience_s=patience) for o in offered]
    agents = [n.agents for n in needs]
    predicted_abandon = sum(service_a(n, o / INTERVAL, AHT, THRESHOLD, patience).p_abandon * o if n else 0.0
                            for n, o in zip(agents, offered, strict=True)) / sum(offered)
    predicted_sl = sum(service_a(n, o / INTERVAL, AHT, THRESHOLD, patience).service_level * o if n else 0.0
                       for n, o in zip(agents, offered, strict=True)) / sum(offered)
    days = [simulate_day(offered, [AHT] * SLOTS, agents, interval_s=INTERVAL, threshold_s=THRESHOLD,
                         patience_s=patience, seed=100 + s) for s in range(DAYS)]
    sl, abandon = pooled(days)
    assert sl >= TARGET - 0.03, sl
    assert abs(sl - predicted_sl) <= 0.03, (sl, predicted_sl)  # Erlang A's SL (abandons count as misses)
    assert abs(abandon - predicted_abandon) <= 0.02, (abandon, predicted_abandon)
    # Erlang C would have staffed more: Erlang A saves agents and still meets the target
    erlang_c = [required_agents(o / INTERVAL, AHT, target=TARGET, threshold_s=THRESHOLD).agents for o in offered]
    assert sum(agents) < sum(erlang_c)


def test_the_simulation_is_deterministic_for_a_seed() -> None:
    offered = day_profile(500, 24)
    a = simulate_day(offered, [120.0] * 24, [5] * 24, interval_s=INTERVAL, threshold_s=20, patience_s=60, seed=7)
    b = simulate_day(offered, [120.0] * 24, [5] * 24, interval_s=INTERVAL, threshold_s=20, patience_s=60, seed=7)
    c = simulate_day(offered, [120.0] * 24, [5] * 24, interval_s=INTERVAL, threshold_s=20, patience_s=60, seed=8)
    assert a == b
    assert a != c
    assert 400 < a.offered < 600
