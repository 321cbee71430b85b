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
    assert w.leg_budget == LegBudget(max_legs=w.max_legs)
    assert w.callers_per_worker == w.leg_budget.caller_slots
