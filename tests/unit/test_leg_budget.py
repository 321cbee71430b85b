"""The leg budget: the one place that decides how a worker's 4 legs are spent."""

from __future__ import annotations

import pytest

from ivr.core.config import Settings
from ivr.core.leg_budget import WHEEL_MAX_LEGS, LegBudget


def test_four_legs_carry_two_callers_each_with_a_leg_for_its_agent() -> None:
    b = LegBudget()
    assert b.max_legs == WHEEL_MAX_LEGS == 4 and b.caller_slots == 2
    assert b.admits(0) and b.admits(1) and not b.admits(2)
    assert not b.admits(0, draining=True)
    assert b.free_caller_slots(1) == 1 and b.free_caller_slots(5) == 0
    assert b.fits_leg(3) and not b.fits_leg(4)


def test_a_spare_leg_for_consults_costs_a_caller() -> None:
    assert LegBudget(spare_legs=1).caller_slots == 1
    assert LegBudget(max_legs=3).caller_slots == 1


@pytest.mark.parametrize("kwargs", [{"max_legs": 5}, {"max_legs": 0}, {"spare_legs": 3}, {"legs_per_caller": 0},
                                    {"spare_legs": -1}])
def test_budgets_that_admit_nobody_or_exceed_the_wheel_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        LegBudget(**kwargs)


def test_settings_take_the_budget_from_the_one_policy() -> None:
    w = Settings().workers
    assert w.leg_budget == LegBudget(max_legs=w.max_legs, spare_legs=w.spare_legs)
    assert w.callers_per_worker == w.leg_budget.caller_slots


def test_a_consult_leg_is_granted_only_beside_the_admitted_pairs() -> None:
    b = LegBudget()
    assert b.grants_extra(callers=1, extra_legs=0)        # one caller and its agent: a third leg fits
    assert not b.grants_extra(callers=2, extra_legs=0)    # two pairs: every leg is spent
    assert not b.grants_extra(callers=1, extra_legs=2)
    spare = LegBudget(spare_legs=1)
    assert spare.caller_slots == 1 and spare.grants_extra(callers=1, extra_legs=0)


def test_a_worker_consulting_for_one_caller_admits_no_second_caller() -> None:
    b = LegBudget()
    assert b.admits(1, extra_legs=0)                      # 2 + 2 legs fit
    assert not b.admits(1, extra_legs=1)                  # 2 + 1 extra + 2 would be 5
    assert b.admits(0, extra_legs=1)                      # a consult left over after its caller: 1 + 2 fit


def test_settings_spare_legs_reach_the_budget_and_a_budget_with_no_caller_is_a_config_error() -> None:
    assert Settings(workers={"spare_legs": 1}).workers.callers_per_worker == 1
    with pytest.raises(ValueError):
        Settings(workers={"max_legs": 2, "spare_legs": 1})
