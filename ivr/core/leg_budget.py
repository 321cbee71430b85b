"""The leg budget of one SIP worker: how its call legs are spent. The one place that knows.

The pjsua2 wheel holds at most 4 call legs per process (``NOTES-pjsua2.md``). Today a worker admits
a caller only while a leg stays free for the agent it will be connected to, so 4 legs carry 2
callers. Call control spends legs deliberately: a consult or a three-way conference needs a third
leg for the caller's call (an *extra* leg), and so does a supervisor's phone (live supervision);
recording needs none (it is a conference-bridge port). Every decision about legs asks this object:

- a new caller is admitted while its pair (caller + agent) fits beside every admitted caller's pair
  and every extra leg up (``admits``): a worker consulting for one caller takes no second caller,
  the edge gives that caller to another worker (503 + Retry-After, as for a full worker);
- an extra leg is granted while it fits beside the admitted pairs (``grants_extra``): a worker
  with two callers connected has none, and the consult is refused (``call.no_leg``) with the caller
  still talking to the agent;
- ``spare_legs`` keeps legs out of admission, so that a consult is always possible: with 1 spare
  leg a worker admits 1 caller and always has its third leg (half the callers per worker).

See docs/call-control.md ("The leg budget") for the measured cost.
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

    def admits(self, callers: int, *, draining: bool = False, extra_legs: int = 0) -> bool:
        """Whether a new caller (inbound, or a customer the worker dials) may come in now, beside
        ``callers`` admitted ones and ``extra_legs`` consult or conference legs up."""
        if draining or callers >= self.caller_slots:
            return False
        return (callers + 1) * self.legs_per_caller + extra_legs <= self.max_legs

    def grants_extra(self, callers: int, extra_legs: int) -> bool:
        """Whether one more extra leg (a consult or conference target) fits beside the pairs of
        ``callers`` admitted callers and ``extra_legs`` extra legs already up."""
        return callers * self.legs_per_caller + extra_legs + 1 <= self.max_legs

    def fits_leg(self, legs_up: int) -> bool:
        """Whether the library has room for one more leg (an agent's, a consult's)."""
        return legs_up < self.max_legs
