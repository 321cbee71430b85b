"""What a worker reports of its dial plans to Redis: the version of each it runs and its last load
error (stored by :class:`ivr.queues.dialplan_status.DialplanStatus`, read by the API)."""

from __future__ import annotations

from ivr.dialplan.registry import LiveRegistry
from ivr.queues.dialplan_status import PlanReport


def plan_reports(registry: LiveRegistry) -> list[PlanReport]:
    """The reports of every plan file the registry watches."""
    out = []
    for state in registry.states.values():
        active = None
        if state.loaded is not None:
            lp = state.loaded
            active = {"version": lp.version, "name": lp.plan.name, "file": state.path.name,
                      "numbers": list(lp.plan.numbers)}
        error = None
        if state.error is not None:
            error = {"code": state.error.code, "message": state.error.message, "file": state.path.name,
                     "version": state.seen, "running": state.loaded.version if state.loaded else None,
                     "at": state.error_at}
        out.append(PlanReport(state.plan, active, error))
    return out
