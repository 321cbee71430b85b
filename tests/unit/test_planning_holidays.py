"""Which dates are holidays, and closed days, for a queue (ivr.cti.planning.queue_holidays): from the
calendars of the dial plans that route to it, closed only when every such plan's hours close."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from ivr.cti.planning import queue_holidays
from ivr.dialplan.loader import LoadedPlan, load_plan


def plan(tmp_path: Path, name: str, queue: str, calendars: dict[str, list[str]], closed_by: str | None) -> LoadedPlan:
    cal = "".join(f"  {k}: [{', '.join(v)}]\n" for k, v in calendars.items())
    hours = (f'hours:\n  open: [{{days: [mon-fri], from: "08:00", to: "18:00"}}]\n  holidays: {closed_by}\n'
             if closed_by else "")
    path = tmp_path / f"{name}.yaml"
    path.write_text(f'name: {name}\nnumbers: ["{1000 + ord(name[0])}"]\ntimezone: UTC\n'
                    f"calendars:\n{cal}{hours}start: q\nnodes:\n  q:\n    type: queue\n    queue: {queue}\n")
    return load_plan(path)


def test_dates_of_the_plans_routing_to_the_queue_and_closed_only_when_all_close(tmp_path: Path) -> None:
    a = plan(tmp_path, "a", "billing", {"public": ["2026-12-25", "2027-01-01"], "promo": ["2026-12-26"]}, "public")
    b = plan(tmp_path, "b", "billing", {"public": ["2026-12-25"]}, "public")
    other = plan(tmp_path, "c", "sales", {"x": ["2026-07-04"]}, "x")
    h = queue_holidays([a, b, other], "billing")
    assert h.dates == {date(2026, 12, 25), date(2027, 1, 1), date(2026, 12, 26)}  # not sales' July 4th
    # Dec 25: both plans closed; Jan 1: plan b stays open; Dec 26: a promotion day, open
    assert h.closed == {date(2026, 12, 25)}


def test_a_queue_no_plan_names_takes_every_plans_calendars(tmp_path: Path) -> None:
    a = plan(tmp_path, "a", "billing", {"public": ["2026-12-25"]}, "public")
    b = plan(tmp_path, "b", "sales", {"public": ["2026-12-25"], "x": ["2026-07-04"]}, None)
    h = queue_holidays([a, b], "support")
    assert h.dates == {date(2026, 12, 25), date(2026, 7, 4)}
    assert h.closed == frozenset()  # plan b has no hours: always open
    assert queue_holidays([], "support").dates == frozenset()
