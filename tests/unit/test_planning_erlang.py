"""Erlang C and Erlang A (ivr.planning.erlang) against a published worked example and against each other.

The worked example is Call Centre Helper's "Erlang C Formula - Made Simple With an Easy Worked Example"
(https://www.callcentrehelper.com/erlang-c-formula-example-121281.htm): 100 calls in 30 minutes, an AHT
of 180 s, a target of 80 % answered within 20 s, maximum occupancy 85 %, shrinkage 30 %. Traffic
intensity 10 Erlangs; starting from N = A + 1 = 11 agents the article finds P(wait) = 68.21 % and a
service level of 39.0 %, then 64.0 % with 12 agents, 79.6 % with 13 and 88.8 % with 14: 14 agents
(occupancy 71.4 %, under the 85 % maximum), 20 once 30 % shrinkage is allowed for.
"""

from __future__ import annotations

import math

import pytest

from ivr.planning.erlang import (
    MAX_AGENTS,
    erlang_c,
    required_agents,
    scheduled_agents,
    service_a,
    service_c,
)

RATE = 100 / 1800  # calls per second
AHT = 180.0


def test_the_worked_example_probability_of_waiting_with_11_agents() -> None:
    assert erlang_c(11, RATE * AHT) == pytest.approx(0.6821, abs=5e-5)


@pytest.mark.parametrize(("agents", "sl"), [(11, 0.390), (12, 0.640), (13, 0.796), (14, 0.888)])
def test_the_worked_example_service_level_per_number_of_agents(agents: int, sl: float) -> None:
    assert service_c(agents, RATE, AHT, 20).service_level == pytest.approx(sl, abs=5e-4)


def test_the_worked_example_needs_14_agents_and_20_with_shrinkage() -> None:
    need = required_agents(RATE, AHT, target=0.8, threshold_s=20, max_occupancy=0.85)
    assert need.agents == 14
    assert need.model == "erlang_c"
    assert need.service.occupancy == pytest.approx(0.714, abs=5e-4)
    assert need.service.asa_s == pytest.approx(7.8, abs=0.05)  # C * AHT / (N - A) = 0.1741 * 180 / 4
    assert scheduled_agents(need.agents, 0.3) == 20


def test_the_maximum_occupancy_binds_on_a_big_queue() -> None:
    # 100 Erlangs: the SL target alone needs ~106 agents (occupancy ~94 %); 85 % occupancy needs 118
    sl_only = required_agents(100 / 180, 180, target=0.8, threshold_s=20)
    capped = required_agents(100 / 180, 180, target=0.8, threshold_s=20, max_occupancy=0.85)
    assert sl_only.agents < 110 < capped.agents == math.ceil(100 / 0.85)
    assert capped.service.occupancy <= 0.85


def test_no_calls_need_no_agent_and_bad_figures_are_refused() -> None:
    assert required_agents(0.0, 180, target=0.9, threshold_s=10).agents == 0
    with pytest.raises(ValueError):
        required_agents(-1, 180, target=0.9, threshold_s=10)
    with pytest.raises(ValueError):
        required_agents(1, float("nan"), target=0.9, threshold_s=10)
    with pytest.raises(ValueError):
        required_agents(1, 180, target=1.5, threshold_s=10)
    with pytest.raises(ValueError):
        scheduled_agents(3, 1.0)


def test_an_overloaded_queue_has_no_service_level() -> None:
    s = service_c(9, RATE, AHT, 20)  # 10 Erlangs on 9 agents: the queue grows without end
    assert (s.p_wait, s.service_level, s.asa_s) == (1.0, 0.0, math.inf)


def test_erlang_a_with_endless_patience_is_erlang_c() -> None:
    for n in (11, 13, 15):
        a, c = service_a(n, RATE, AHT, 20, patience_s=1e8), service_c(n, RATE, AHT, 20)
        assert a.p_wait == pytest.approx(c.p_wait, abs=1e-4)
        assert a.service_level == pytest.approx(c.service_level, abs=1e-4)
        assert a.asa_s == pytest.approx(c.asa_s, rel=1e-3)
        assert a.p_abandon < 1e-5


def test_erlang_a_needs_fewer_agents_when_callers_give_up() -> None:
    c = required_agents(RATE, AHT, target=0.8, threshold_s=20)
    a = required_agents(RATE, AHT, target=0.8, threshold_s=20, model="erlang_a", patience_s=120)
    assert a.model == "erlang_a"
    assert a.agents < c.agents
    assert a.service.service_level >= 0.8
    assert 0 < a.service.p_abandon < 0.2
    below = service_a(a.agents - 1, RATE, AHT, 20, 120)
    assert below.service_level < 0.8  # the fewest that meet the target
    # an Erlang A queue with 10 Erlangs on 9 agents is stable: the impatient leave
    assert 0 < service_a(9, RATE, AHT, 20, 120).service_level < 0.8


def test_erlang_a_without_patience_falls_back_to_erlang_c() -> None:
    need = required_agents(RATE, AHT, target=0.8, threshold_s=20, model="erlang_a", patience_s=None)
    assert (need.model, need.agents) == ("erlang_c", 14)


def test_a_need_beyond_the_search_limit_is_capped_not_searched_forever() -> None:
    need = required_agents(1000.0, 600, target=0.9, threshold_s=10)  # 600,000 Erlangs
    assert need.capped and need.agents == MAX_AGENTS


def test_a_second_published_example_the_call_calc_application_note() -> None:
    """Footbridge's "Erlang C Call Calc" application note (http://www.al911.org/qos_calc.htm): 2 call
    takers, 60-second calls arriving at 30 an hour: "fewer than 8 percent of callers will wait more
    than 10 seconds"; with 20 seconds of record work added (80-second calls), "the QOS falls to 14
    percent"."""
    rate = 30 / 3600
    waits_60 = 1 - service_c(2, rate, 60, 10).service_level
    waits_80 = 1 - service_c(2, rate, 80, 10).service_level
    assert 0.07 < waits_60 < 0.08
    assert round(waits_80, 2) == 0.14
