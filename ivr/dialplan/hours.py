"""Business hours: is a plan open now, when does it open next, and when are N seconds of open time used up.

Pure functions of their arguments (no clock, no I/O). A plan's ``hours:`` (:class:`BusinessHours`) are
open at an instant exactly when the branch condition ``open: true`` holds then
(:func:`ivr.dialplan.conditions.open_now`): the instant is inside one of the ``open`` windows (the
window's own time zone, else the plan's; an overnight window ``22:00``-``06:00`` belongs to the day it
starts) and its date in the plan's time zone is not in the ``holidays`` calendar (a holiday closes the
whole local day). ``None`` hours are always open: time counts as on the wall clock.

Open time is real elapsed time, so daylight saving time neither loses nor invents any: a window
``22:00``-``06:00`` over the spring-forward night is open 7 hours, over the fall-back night 9, and a
window that starts in the skipped hour opens when the clock jumps past its start.

:func:`deadline` walks the open time in slabs of one UTC day: in each it takes the windows whose
days touch the slab, turns their local wall-clock spans into UTC spans piece by piece between the
zone's offset changes, takes the holidays out, and consumes whole spans, so the work is per window
and per day, never per minute. Every search stops after :data:`MAX_DAYS` days with a
:class:`~ivr.core.errors.DialplanError`: ``dialplan.hours_never_open`` when the hours were never open
in that time, ``dialplan.hours_too_far`` when they were but not long enough.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from ivr.core.config import CaseSettings
from ivr.core.errors import BadRequest, DialplanError
from ivr.dialplan.conditions import END_OF_DAY, local, open_now
from ivr.dialplan.loader import LoadedPlan
from ivr.dialplan.model import DAY_NAMES, BusinessHours, TimeWindow

#: How far any search looks ahead of its start.
MAX_DAYS = 366
_SEARCH = timedelta(days=MAX_DAYS)
_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)
_SECOND = timedelta(seconds=1)
#: Starts the walk accepts: a search of MAX_DAYS plus a day of time zone offsets stays inside datetime's years.
_EARLIEST = datetime(2, 1, 1)
_LATEST = datetime(9998, 1, 1)

Calendars = Mapping[str, Sequence[date]]
Span = tuple[datetime, datetime]   # [start, end) in naive UTC


def is_open(now: datetime, hours: BusinessHours | None, *, timezone: str, calendars: Calendars) -> bool:
    """The hours are open at ``now`` (naive: UTC); ``timezone`` is the plan's."""
    return open_now(hours, now, timezone, calendars)


def next_open(now: datetime, hours: BusinessHours | None, *, timezone: str,
              calendars: Calendars) -> datetime | None:
    """The first instant at or after ``now`` at which the hours are open (``now`` itself when they are),
    in ``now``'s time zone (naive ``now``: UTC); None when they do not open within :data:`MAX_DAYS` days."""
    start = _utc(now)
    if hours is None:
        return _back(start, now)
    for begin, _end in _open_spans(start, hours, timezone, calendars):
        return _back(begin, now)
    return None


def deadline(start: datetime, seconds: float, hours: BusinessHours | None, *, timezone: str,
             calendars: Calendars) -> datetime:
    """``start`` plus ``seconds`` of open time, in ``start``'s time zone (naive ``start``: UTC).

    A start outside the hours counts from the next opening (so 0 seconds give the next opening); the
    result may be the very instant the hours close. ``None`` hours: elapsed wall-clock time.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be a finite number >= 0, not {seconds!r}")
    begin = _utc(start)
    if seconds > _SEARCH.total_seconds():
        raise DialplanError(f"{seconds:g} seconds of open time are more than the {MAX_DAYS} days a deadline "
                            "may reach", code="dialplan.hours_too_far", seconds=seconds)
    need = timedelta(seconds=seconds)
    if hours is None:
        return _back(begin + need, start)
    found = False
    for s, e in _open_spans(begin, hours, timezone, calendars):
        found = True
        if e - s >= need:
            return _back(s + need, start)
        need -= e - s
    if not found:
        raise _never_open(begin)
    raise DialplanError(f"{seconds:g} seconds of open time are not reached within {MAX_DAYS} days of "
                        f"{begin:%Y-%m-%d %H:%M} UTC: the hours are open too little",
                        code="dialplan.hours_too_far", seconds=seconds)


def case_due(opened: datetime, tier: str, settings: CaseSettings, loaded: LoadedPlan | None) -> datetime:
    """When a case of ``tier`` opened at ``opened`` is due: ``settings.due_s[tier]`` seconds later,
    counted in the business hours of ``loaded`` when ``settings.business_hours`` and the plan has
    hours, else on the wall clock."""
    seconds = next((s for t, s in settings.due_s.items() if t == tier), None)
    if seconds is None:
        raise BadRequest(f"unknown tier {tier[:40]!r} (one of {', '.join(settings.due_s)})", code="case.invalid")
    if not settings.business_hours or loaded is None:
        return deadline(opened, seconds, None, timezone="UTC", calendars={})
    plan = loaded.plan
    return deadline(opened, seconds, plan.hours, timezone=plan.timezone, calendars=plan.calendars)


# --- the walk ------------------------------------------------------------------------------------
def _utc(when: datetime) -> datetime:
    """Naive UTC (naive input is UTC already), in the range the walk can handle."""
    out = when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo is not None else when
    if not _EARLIEST <= out < _LATEST:
        raise ValueError(f"{when.isoformat()} is outside the years business hours are computed for")
    return out


def _back(utc: datetime, like: datetime) -> datetime:
    """``utc`` (naive UTC) in the time zone of ``like`` (UTC when ``like`` is naive)."""
    return utc.replace(tzinfo=UTC).astimezone(like.tzinfo or UTC)


def _never_open(begin: datetime) -> DialplanError:
    return DialplanError(f"the business hours are never open in the {MAX_DAYS} days from {begin:%Y-%m-%d %H:%M} "
                         "UTC (is every open day a holiday?)", code="dialplan.hours_never_open")


def _open_spans(begin: datetime, hours: BusinessHours, timezone: str, calendars: Calendars) -> Iterator[Span]:
    """The open spans from ``begin`` on, in order, up to :data:`MAX_DAYS` days after it (a span that
    goes on over midnight UTC comes as two adjacent spans)."""
    holidays = frozenset(calendars.get(hours.holidays, ())) if hours.holidays is not None else frozenset()
    limit = begin + _SEARCH
    u0 = datetime.combine(begin.date(), datetime.min.time())
    while u0 < limit:
        for s, e in _slab(u0, hours, timezone, holidays):
            s, e = max(s, begin), min(e, limit)
            if s < e:
                yield s, e
        u0 += _DAY


def _slab(u0: datetime, hours: BusinessHours, timezone: str, holidays: frozenset[date]) -> list[Span]:
    """The open spans inside the UTC day ``[u0, u0 + 1 day)``, sorted and merged."""
    spans: list[Span] = []
    for window in hours.open:
        if not window.days:
            continue
        segments = _segments(window.timezone or timezone, u0)
        for day in _local_dates(segments, overnight=True):
            if DAY_NAMES[day.weekday()] in window.days:
                spans += _preimage(*_wall_span(window, day), segments)
    spans = _merge(spans)
    if holidays and spans:
        segments = _segments(timezone, u0)
        closed = [p for day in _local_dates(segments, overnight=False) if day in holidays
                  for p in _preimage(datetime.combine(day, datetime.min.time()),
                                     datetime.combine(day + _DAY, datetime.min.time()), segments)]
        spans = _subtract(spans, _merge(closed))
    return spans


def _wall_span(window: TimeWindow, day: date) -> tuple[datetime, datetime]:
    """The local wall-clock span of ``window`` on ``day`` (as :func:`~ivr.dialplan.conditions.in_window`
    reads it: ``to`` 23:59:59 is midnight, ``to`` at or before ``from`` ends the next day)."""
    a = datetime.combine(day, window.start)
    if window.end == END_OF_DAY:
        return a, datetime.combine(day + _DAY, datetime.min.time())
    if window.start < window.end:
        return a, datetime.combine(day, window.end)
    return a, datetime.combine(day + _DAY, window.end)


Segment = tuple[datetime, datetime, timedelta]   # [start, end) in naive UTC with the zone's UTC offset


@functools.lru_cache(maxsize=4096)
def _segments(zone: str, u0: datetime) -> tuple[Segment, ...]:
    """The UTC day ``[u0, u0 + 1 day)`` cut where ``zone``'s UTC offset changes (looked for between
    hourly samples and found to the second: the tz database changes offsets at whole seconds)."""

    def offset(u: datetime) -> timedelta:
        return local(u.replace(tzinfo=UTC), zone).utcoffset() or timedelta(0)

    out: list[Segment] = []
    start, current = u0, offset(u0)
    for h in range(1, 25):
        hi = u0 + h * _HOUR
        while offset(hi) != current:
            base = max(start, hi - _HOUR)                     # offset(base) is current, offset(hi) is not
            lo_s, hi_s = 0, int((hi - base).total_seconds())
            while hi_s - lo_s > 1:
                mid = (lo_s + hi_s) // 2
                if offset(base + mid * _SECOND) == current:
                    lo_s = mid
                else:
                    hi_s = mid
            change = base + hi_s * _SECOND
            out.append((start, change, current))
            start, current = change, offset(change)
    out.append((start, u0 + _DAY, current))
    return tuple(out)


def _local_dates(segments: Sequence[Segment], *, overnight: bool) -> Iterator[date]:
    """The local dates the wall clock shows during the segments (and the day before the first, whose
    overnight windows may reach into them)."""
    first = min(s + o for s, _e, o in segments).date()
    last = max(e + o - timedelta(microseconds=1) for _s, e, o in segments).date()
    day = first - _DAY if overnight else first
    while day <= last:
        yield day
        day += _DAY


def _preimage(a: datetime, b: datetime, segments: Sequence[Segment]) -> list[Span]:
    """The instants of the segments whose local wall-clock time is in ``[a, b)``."""
    out: list[Span] = []
    for s, e, o in segments:
        lo, hi = max(s, a - o), min(e, b - o)
        if lo < hi:
            out.append((lo, hi))
    return out


def _merge(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _subtract(spans: list[Span], holes: list[Span]) -> list[Span]:
    """``spans`` minus ``holes`` (both sorted and merged)."""
    out: list[Span] = []
    for s, e in spans:
        for hs, he in holes:
            if he <= s or hs >= e:
                continue
            if hs > s:
                out.append((s, hs))
            s = max(s, he)
            if s >= e:
                break
        if s < e:
            out.append((s, e))
    return out


__all__ = ["MAX_DAYS", "case_due", "deadline", "is_open", "next_open"]
