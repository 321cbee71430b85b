"""The leg budget of one SIP worker: how its call legs are spent. The one place that knows.

The pjsua2 wheel holds at most 4 call legs per process (``NOTES-pjsua2.md``). Today a worker admits
a caller only while a leg stays free for the agent it will be connected to, so 4 legs carry 2
callers. Call control spends legs deliberately: a consult or a three-way conference needs a third
leg for the caller's call, recording and supervision need none (they are conference-bridge ports).
``spare_legs`` keeps legs out of admission for that; every decision about legs asks this object.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the wheel's compile-time cap (PJSUA_MAX_CALLS); a larger maxCalls is silently cut to it
WHEEL_MAX_LEGS = 4


@dataclass(frozen=True)
class LegBudget:
    max_legs: int = WHEEL_MAX_LEGS
    legs_per_caller: int = 2   # the caller's own leg and its agent's
    spare_legs: int = 0        # kept free of admission (e.g. for consults)

    def __post_init__(self) -> None:
        if not 1 <= self.max_legs <= WHEEL_MAX_LEGS:
            raise ValueError(f"max_legs must be 1..{WHEEL_MAX_LEGS}")
        if self.legs_per_caller < 1 or self.spare_legs < 0 or self.caller_slots < 1:
            raise ValueError("the budget must admit at least one caller")

    @property
    def caller_slots(self) -> int:
        """Callers one worker admits at once."""
        return (self.max_legs - self.spare_legs) // self.legs_per_caller

    def free_caller_slots(self, callers: int) -> int:
        return max(0, self.caller_slots - callers)

    def admits(self, callers: int, *, draining: bool = False) -> bool:
        """Whether a new caller (inbound, or a customer the worker dials) may come in now."""
        return not draining and callers < self.caller_slots

    def fits_leg(self, legs_up: int) -> bool:
        """Whether the library has room for one more leg (an agent's, a consult's)."""
        return legs_up < self.max_legs
