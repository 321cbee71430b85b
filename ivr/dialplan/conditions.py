"""``branch`` conditions: pure functions of the call's variables, caller number and the time.

A condition holds when every field it gives holds (AND); ``not: true`` inverts the result.

* ``time``: one window, or a list of windows of which any may hold. A window holds when the local
  time (the window's ``timezone``, else the plan's) is in ``[from, to)`` on one of its ``days``.
  ``to`` before ``from`` is an overnight window that belongs to the day it *started*:
  ``{days: [fri], from: "22:00", to: "06:00"}`` holds Friday 22:00 until Saturday 06:00, not
  Friday 03:00. ``to`` equal to ``from`` is a whole 24 hours from ``from``. A ``to`` of 23:59:59 (the
  default) reaches the end of the day.
* ``holiday``: today's date in the plan's time zone is in the plan's calendar of that name (an
  unknown calendar never holds).
* ``open``: ``true`` holds while the plan's business hours (``hours:``) are open: not on a day of
  their ``holidays`` calendar (the plan's time zone) and inside one of their ``open`` windows (as
  ``time``); ``false`` holds while they are not. A plan without hours is always open.
* ``caller``: glob(s) over the caller number, anchored at both ends; ``*`` any run of characters,
  ``?`` exactly one; every other character (``+`` included) is literal. A list holds when any holds.
* ``var`` with operators (all given must hold). An unset variable is the empty string:

  - ``equals`` / ``not_equals``: when the expected value is a number and the variable parses as a
    (finite) number, compared as numbers (``"5.0"`` equals ``5``); a boolean expected value is
    ``true``/``false`` (case-insensitive); otherwise compared as strings.
  - ``in``: equals one of the values (same comparison as ``equals``).
  - ``matches``: the whole value matches the regular expression (``re.fullmatch``; a value longer than
    :data:`~ivr.dialplan.safe_regex.MAX_SUBJECT` characters does not match).
  - ``exists: true``: the variable is set and not empty; ``exists: false``: the opposite.
  - ``gt`` / ``lt``: numeric; a value that is not a number makes them false.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from zoneinfo import ZoneInfo

from ivr.dialplan import safe_regex
from ivr.dialplan.model import DAY_NAMES, BranchNode, BusinessHours, Condition, TimeWindow
from ivr.dialplan.templates import to_str

END_OF_DAY = dtime(23, 59, 59)


@dataclass(frozen=True)
class Context:
    """What a condition can look at."""

    now: datetime                       # aware; naive is taken as UTC
    timezone: str = "UTC"               # the plan's
    caller: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)
    calendars: Mapping[str, Sequence[date]] = field(default_factory=dict)
    hours: BusinessHours | None = None  # the plan's


def choose(node: BranchNode, ctx: Context) -> tuple[str, int | None]:
    """The target of the first rule that holds and its index, else ``(default, None)``."""
    for i, rule in enumerate(node.rules):
        if holds(rule.when, ctx):
            return rule.goto, i
    return node.default, None


def holds(cond: Condition, ctx: Context) -> bool:
    result = _all_fields(cond, ctx)
    return not result if cond.negate else result


def _all_fields(cond: Condition, ctx: Context) -> bool:
    if cond.time is not None:
        windows = cond.time if isinstance(cond.time, list) else [cond.time]
        if not any(in_window(w, ctx.now, ctx.timezone) for w in windows):
            return False
    if cond.holiday is not None and not is_holiday(cond.holiday, ctx.now, ctx.timezone, ctx.calendars):
        return False
    if cond.open is not None and open_now(ctx.hours, ctx.now, ctx.timezone, ctx.calendars) != cond.open:
        return False
    if cond.caller is not None:
        globs = cond.caller if isinstance(cond.caller, list) else [cond.caller]
        if not any(caller_matches(g, ctx.caller) for g in globs):
            return False
    if cond.var is not None and not var_holds(cond, ctx.variables.get(cond.var)):
        return False
    return True


# --- time ----------------------------------------------------------------------------------------
def local(now: datetime, zone: str) -> datetime:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(ZoneInfo(zone))


def in_window(window: TimeWindow, now: datetime, default_zone: str) -> bool:
    t = local(now, window.timezone or default_zone)
    start = _seconds(window.start)
    end = 24 * 3600 if window.end == END_OF_DAY else _seconds(window.end)
    here = _seconds(t.time())
    today = DAY_NAMES[t.weekday()]
    yesterday = DAY_NAMES[(t.weekday() - 1) % 7]
    if start < end:
        return today in window.days and start <= here < end
    # overnight (or a whole day when end == start): the part after midnight belongs to the day before
    if today in window.days and here >= start:
        return True
    return yesterday in window.days and here < end


def _seconds(t: dtime) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


def is_holiday(calendar: str, now: datetime, zone: str, calendars: Mapping[str, Sequence[date]]) -> bool:
    dates = calendars.get(calendar)
    if not dates:
        return False
    return local(now, zone).date() in set(dates)


def open_now(hours: BusinessHours | None, now: datetime, zone: str,
             calendars: Mapping[str, Sequence[date]]) -> bool:
    """The business hours are open at ``now`` (``zone``: the plan's); no hours: always open."""
    if hours is None:
        return True
    if hours.holidays is not None and is_holiday(hours.holidays, now, zone, calendars):
        return False
    return any(in_window(w, now, zone) for w in hours.open)


def day_of(now: datetime, zone: str) -> date:
    return local(now, zone).date()


# --- caller --------------------------------------------------------------------------------------
def glob_regex(glob: str) -> re.Pattern[str]:
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in glob]
    return re.compile("".join(parts), re.S)


def caller_matches(glob: str, number: str) -> bool:
    return glob_regex(glob).fullmatch(number) is not None


# --- variables -----------------------------------------------------------------------------------
def as_number(value: object) -> float | None:
    """A finite float, or None (booleans are not numbers)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    try:
        n = float(str(value).strip())
    except ValueError:
        return None
    return n if math.isfinite(n) else None


def equals(value: str, expected: str | int | float | bool) -> bool:
    if isinstance(expected, bool):
        return value.strip().lower() == to_str(expected)
    if isinstance(expected, int | float):
        a, b = as_number(value), as_number(expected)
        if a is not None and b is not None:
            return a == b
        return value == to_str(expected)
    return value == expected


def var_holds(cond: Condition, raw: str | None) -> bool:
    value = "" if raw is None else raw
    if cond.equals is not None and not equals(value, cond.equals):
        return False
    if cond.not_equals is not None and equals(value, cond.not_equals):
        return False
    if cond.one_of is not None and not any(equals(value, v) for v in cond.one_of):
        return False
    if cond.matches is not None and not safe_regex.fullmatch(cond.matches, value):
        return False
    if cond.exists is not None and (value != "") != cond.exists:
        return False
    if cond.gt is not None:
        n = as_number(value)
        if n is None or not n > cond.gt:
            return False
    if cond.lt is not None:
        n = as_number(value)
        if n is None or not n < cond.lt:
            return False
    return True


__all__ = ["Context", "as_number", "caller_matches", "choose", "day_of", "equals", "holds", "in_window",
           "is_holiday", "open_now", "var_holds"]
