"""Forecast and staffing over the API (docs/planning.md), for supervisors and admins.

- ``GET /api/v1/queues/{queue}/forecast?date=&days=``: per planning interval the forecast offered
  calls and AHT, the actual figures of the intervals that have begun, holiday flags; the method, the
  back-test errors of every method. JSON, or CSV (``format=csv`` or ``Accept: text/csv``).
- ``GET /api/v1/queues/{queue}/staffing?date=``: per interval the forecast, the agents required
  (Erlang C or A), scheduled (with shrinkage), the expected SL / ASA / occupancy; for the current and
  the next intervals the agents signed in now and how many are short. JSON or CSV.
- ``GET /api/v1/staffing``: every queue, now and the next :data:`NEXT_INTERVALS` intervals, with the
  "short by N at HH:MM" text.

Holidays come from the dial plans (:func:`queue_holidays`): a date in any calendar of a plan that
routes to the queue (any plan, when none names it) is a holiday; it is a *closed* day when every
such plan's ``hours.holidays`` calendar holds it (zero calls forecast).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from datetime import date, datetime
from typing import Any

from aiohttp import web

from ivr.core.config import ROUTING_NAME, Settings
from ivr.core.errors import BadRequest, NotFound
from ivr.cti.auth import require_role
from ivr.cti.case_open import PLANS, PlanHours
from ivr.cti.context import SETTINGS, STORE, user
from ivr.dialplan.loader import LoadedPlan
from ivr.dialplan.model import CallbackNode, QueueNode
from ivr.planning.forecast import Forecast, slot_of
from ivr.planning.service import (
    MAX_DAYS,
    Actual,
    Holidays,
    IntervalPlan,
    actuals,
    day_starts,
    local_date,
    plan_intervals,
    queue_forecast,
)
from ivr.queues.store import QueueStore

_NAME = re.compile(ROUTING_NAME)
#: a date the API plans for: 1970-2099 (any such day; the history read is planning.history_weeks long)
DATE_PATTERN = r"^(19[7-9][0-9]|20[0-9][0-9])-[0-9]{2}-[0-9]{2}$"
_DATE = re.compile(DATE_PATTERN)
#: intervals after the current one that /api/v1/staffing looks at
NEXT_INTERVALS = 4
#: most queues /api/v1/staffing answers for
MAX_QUEUES = 500
ON_THE_PHONES = ("available", "reserved", "oncall", "wrapup")
FORECAST_CSV = ("start", "forecast_offered", "aht_s", "holiday", "closed", "actual_offered", "actual_answered",
                "actual_abandoned", "actual_aht_s")
STAFFING_CSV = ("start", "forecast_offered", "aht_s", "required", "scheduled", "expected_sl", "expected_asa_s",
                "expected_occupancy", "signed_in", "short_by")


# --- parameters ----------------------------------------------------------------------------------

async def _queue(request: web.Request) -> tuple[QueueStore, Settings, str]:
    require_role(await user(request), "supervisor", "admin")
    store, settings = request.app[STORE], request.app[SETTINGS]
    queue = request.match_info["queue"]
    if not _NAME.fullmatch(queue) or (queue not in settings.routing.queues
                                      and queue not in await store.queue_names()):
        raise NotFound(f"no queue {queue[:64]}", code="queue.not_found")
    return store, settings, queue


def _date(request: web.Request, today: date) -> date:
    raw = request.query.get("date")
    if raw is None or raw == "":
        return today
    if not _DATE.fullmatch(raw):
        raise BadRequest("date must be YYYY-MM-DD, 1970 to 2099", code="request.invalid")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"no such date: {raw[:10]}", code="request.invalid") from None


def _days(request: web.Request) -> int:
    raw = request.query.get("days", "1")
    if not re.fullmatch(r"[0-9]{1,2}", raw) or not 1 <= int(raw) <= MAX_DAYS:
        raise BadRequest(f"days must be 1..{MAX_DAYS}", code="request.invalid")
    return int(raw)


def _wants_csv(request: web.Request) -> bool:
    fmt = request.query.get("format", "")
    if fmt not in ("", "json", "csv"):
        raise BadRequest("format must be json or csv", code="request.invalid")
    return fmt == "csv" or (not fmt and "text/csv" in request.headers.get("Accept", ""))


# --- holidays from the plans -----------------------------------------------------------------------

def _routes_to(lp: LoadedPlan, queue: str) -> bool:
    return any(isinstance(n, QueueNode | CallbackNode) and n.queue == queue for n in lp.plan.nodes.values())


def queue_holidays(plans: list[LoadedPlan], queue: str) -> Holidays:
    """The holidays of the plans routing to ``queue`` (every plan when none does), and the dates on
    which all of them are closed."""
    mine = [lp for lp in plans if _routes_to(lp, queue)] or plans
    dates: set[date] = set()
    for lp in mine:
        for days in lp.plan.calendars.values():
            dates.update(days)
    closed = set(dates)
    for lp in mine:
        hours = lp.plan.hours
        shut = set(lp.plan.calendars.get(hours.holidays, [])) if hours is not None and hours.holidays else set()
        closed &= shut
    return Holidays(frozenset(dates), frozenset(closed))


def _plans(request: web.Request) -> list[LoadedPlan]:
    hours: PlanHours = request.app[PLANS]
    return hours.plans()  # the loaded plans the case due times use (cached per file)


async def _holidays(request: web.Request, queue: str) -> Holidays:
    plans = await asyncio.to_thread(_plans, request)
    return queue_holidays(plans, queue)


# --- replies -------------------------------------------------------------------------------------

def _hhmm(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s).strftime("%H:%M")


def _iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s).astimezone().isoformat(timespec="minutes")


def _actual(a: Actual | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {"offered": a.offered, "answered": a.answered, "abandoned": a.abandoned, "handled": a.handled,
            "aht_s": a.aht_s}


def _forecast_head(queue: str, fc: Forecast, first: date, days: int) -> dict[str, Any]:
    return {"queue": queue, "date": first.isoformat(), "days": days, "interval_s": fc.interval_s,
            "method": fc.method, "chosen_by": "backtest" if fc.backtest.errors else "default",
            "backtest": fc.backtest.to_dict(), "aht_s": round(fc.aht_s, 1),
            "patience_s": round(fc.patience_s, 1) if fc.patience_s is not None else None,
            "trained_from": fc.trained_from.isoformat() if fc.trained_from else None,
            "cutoff": fc.cutoff.isoformat(), "holiday_basis": fc.holiday_basis}


def _cell(v: Any) -> Any:
    return "" if v is None else v


def _csv(header: tuple[str, ...], rows: list[list[Any]], filename: str) -> web.Response:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(header)
    for r in rows:
        w.writerow([_cell(v) for v in r])
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})


async def get_forecast(request: web.Request) -> web.Response:
    store, settings, queue = await _queue(request)
    now = time.time()
    today = local_date(now)
    first, days, want_csv = _date(request, today), _days(request), _wants_csv(request)
    holidays = await _holidays(request, queue)
    fc = await queue_forecast(store, settings.planning, queue, first, days, today=today, holidays=holidays)
    rows: list[dict[str, Any]] = []
    for day in fc.days:
        starts = day_starts(day.day, fc.interval_s)
        got = await actuals(store, queue, starts, fc.interval_s, now)
        for start, plan in zip(starts, plan_slots(fc, day.day, starts), strict=True):
            offered, aht = plan
            rows.append({"start": _iso(start), "start_s": start, "offered": round(offered, 2), "aht_s": round(aht, 1),
                         "holiday": day.holiday, "closed": day.closed, "actual": _actual(got.get(start))})
    if want_csv:
        actual_keys = ("offered", "answered", "abandoned", "aht_s")
        return _csv(FORECAST_CSV, [[r["start"], r["offered"], r["aht_s"], int(r["holiday"]), int(r["closed"]),
                                    *((r["actual"] or {}).get(k) for k in actual_keys)]
                                   for r in rows], f"forecast-{queue}-{first.isoformat()}.csv")
    return web.json_response({**_forecast_head(queue, fc, first, days), "intervals": rows})


def plan_slots(fc: Forecast, d: date, starts: list[int]) -> list[tuple[float, float]]:
    """(offered, aht) of each interval start of day ``d``."""
    day = next(x for x in fc.days if x.day == d)
    out = []
    for s in starts:
        sd, slot = slot_of(s, fc.interval_s)
        slot = slot if sd == d else 0
        out.append((day.offered[slot], day.aht_s[slot]))
    return out


async def _signed_in(store: QueueStore, queue: str, now: float) -> tuple[int | None, dict[str, int]]:
    """Agents of the queue on the phones now (signed in, not on a break), and all by state."""
    try:
        stats = await store.queue_stats(queue, since_s=int(now) + 1)
    except NotFound:
        return None, {}
    return sum(stats.agents.get(s, 0) for s in ON_THE_PHONES), dict(stats.agents)


def _short(plans: list[IntervalPlan], signed_in: int | None, now: float, interval_s: int) -> dict[str, Any]:
    """The current and next intervals against the agents signed in now: the first shortfall."""
    ahead = [p for p in plans if p.start_s + interval_s > now][:NEXT_INTERVALS + 1]
    if signed_in is None:
        return {"by": None, "at": None, "text": None, "intervals": [p.start_s for p in ahead]}
    for p in ahead:
        gap = p.need.agents - signed_in
        if gap > 0:
            return {"by": gap, "at": _iso(p.start_s),
                    "text": f"short by {gap} at {_hhmm(p.start_s)}", "intervals": [x.start_s for x in ahead]}
    return {"by": 0, "at": None, "text": None, "intervals": [p.start_s for p in ahead]}


def _staffing_head(settings: Settings, queue: str, fc: Forecast) -> dict[str, Any]:
    share, threshold = settings.routing.target(queue)
    p = settings.planning
    return {"queue": queue, "target": {"share": share, "threshold_s": threshold}, "method": fc.method,
            "patience_s": round(fc.patience_s, 1) if fc.patience_s is not None else None,
            "model": p.model, "shrinkage": p.shrinkage, "max_occupancy": p.max_occupancy,
            "interval_s": fc.interval_s}


async def get_staffing(request: web.Request) -> web.Response:
    store, settings, queue = await _queue(request)
    now = time.time()
    today = local_date(now)
    first, want_csv = _date(request, today), _wants_csv(request)
    holidays = await _holidays(request, queue)
    fc = await queue_forecast(store, settings.planning, queue, first, 1, today=today, holidays=holidays)
    plans = await asyncio.to_thread(plan_intervals, fc, settings, queue)
    signed_in, by_state = await _signed_in(store, queue, now)
    # the agents signed in now say something about today's coming intervals only
    short = _short(plans, signed_in, now, fc.interval_s) if first == today else \
        {"by": None, "at": None, "text": None, "intervals": []}
    near = set(short["intervals"])
    got = await actuals(store, queue, [p.start_s for p in plans], fc.interval_s, now)
    rows = []
    for p in plans:
        row = p.to_dict()
        here = p.start_s in near and signed_in is not None
        row["signed_in"] = signed_in if here else None
        row["short_by"] = max(0, p.need.agents - signed_in) if here and signed_in is not None else None
        row["actual"] = _actual(got.get(p.start_s))
        rows.append(row)
    if want_csv:
        return _csv(STAFFING_CSV, [[r["start"], r["offered"], r["aht_s"], r["required"], r["scheduled"],
                                    r["expected_sl"], r["expected_asa_s"], r["expected_occupancy"], r["signed_in"],
                                    r["short_by"]] for r in rows], f"staffing-{queue}-{first.isoformat()}.csv")
    return web.json_response({**_staffing_head(settings, queue, fc), "date": first.isoformat(),
                              "signed_in_now": signed_in, "agents": by_state,
                              "short": {k: v for k, v in short.items() if k != "intervals"}, "intervals": rows})


async def all_staffing(request: web.Request) -> web.Response:
    """Every queue: the current and the next intervals, required against signed in now."""
    require_role(await user(request), "supervisor", "admin")
    store, settings = request.app[STORE], request.app[SETTINGS]
    now = time.time()
    today = local_date(now)
    names = sorted(set(settings.routing.queues) | set(await store.queue_names()))[:MAX_QUEUES]
    plans_all = await asyncio.to_thread(_plans, request)
    out = []
    for queue in names:
        fc = await queue_forecast(store, settings.planning, queue, today, 2, today=today,
                                  holidays=queue_holidays(plans_all, queue))
        plans = await asyncio.to_thread(plan_intervals, fc, settings, queue)
        signed_in, _ = await _signed_in(store, queue, now)
        short = _short(plans, signed_in, now, fc.interval_s)
        near = [p for p in plans if p.start_s in set(short["intervals"])]
        out.append({**_staffing_head(settings, queue, fc), "signed_in": signed_in,
                    "short_by": short["by"], "short_at": short["at"], "text": short["text"],
                    "intervals": [{"start": _iso(p.start_s), "offered": round(p.offered, 2),
                                   "aht_s": round(p.aht_s, 1), "required": p.need.agents, "scheduled": p.scheduled,
                                   "short_by": max(0, p.need.agents - signed_in) if signed_in is not None else None}
                                  for p in near]})
    return web.json_response({"at": _iso(int(now)), "queues": out})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/queues/{queue}/forecast", get_forecast),
        web.get("/api/v1/queues/{queue}/staffing", get_staffing),
        web.get("/api/v1/staffing", all_staffing),
    ]
