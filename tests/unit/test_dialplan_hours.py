"""Business hours (ivr/dialplan/hours.py): open or not, next opening, deadlines in open time, case due
times. Fixed instants only; daylight saving time both ways in two zones; hostile hours and amounts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ivr.core.config import CaseSettings
from ivr.core.errors import BadRequest, DialplanError
from ivr.dialplan.hours import MAX_DAYS, case_due, deadline, is_open, next_open
from ivr.dialplan.loader import LoadedPlan
from ivr.dialplan.model import BusinessHours, Plan

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
SEOUL = ZoneInfo("Asia/Seoul")
H = 3600


def hours(*windows: dict[str, Any], holidays: str | None = None) -> BusinessHours:
    return BusinessHours.model_validate({"open": list(windows), "holidays": holidays})


def win(days: list[str], start: str, end: str, **kw: Any) -> dict[str, Any]:
    return {"days": days, "from": start, "to": end, **kw}


OFFICE = hours(win(["mon-fri"], "09:00", "18:00"), holidays="us")
NIGHTS = hours(win(["mon-fri"], "22:00", "06:00"))
SAT_NIGHT = hours(win(["sat"], "22:00", "06:00"))
SUN_EARLY = hours(win(["sun"], "01:00", "05:00"))
US = {"us": [date(2026, 11, 26)]}          # Thanksgiving, a Thursday


def at(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0, tz: ZoneInfo = NY) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=tz)


# 2026-11-23 is a Monday; 2026-12-04 a Friday. US clocks change on 2026-03-08 (02:00 -> 03:00) and
# 2026-11-01 (02:00 -> 01:00); German ones on 2026-03-29 (02:00 -> 03:00) and 2026-10-25 (03:00 -> 02:00).
@pytest.mark.parametrize(("case", "start", "seconds", "hrs", "zone", "due"), [
    ("inside hours", at(2026, 11, 23, 10), H, OFFICE, "America/New_York", at(2026, 11, 23, 11)),
    ("over the closing", at(2026, 11, 23, 17, 30), H, OFFICE, "America/New_York", at(2026, 11, 24, 9, 30)),
    ("before opening", at(2026, 11, 23, 7), H, OFFICE, "America/New_York", at(2026, 11, 23, 10)),
    ("after closing", at(2026, 11, 23, 19), H, OFFICE, "America/New_York", at(2026, 11, 24, 10)),
    ("weekend", at(2026, 11, 28, 12), H, OFFICE, "America/New_York", at(2026, 11, 30, 10)),
    ("friday evening (the docs' example)", at(2026, 12, 4, 17, 30), H, OFFICE, "America/New_York",
     at(2026, 12, 7, 9, 30)),
    ("holiday skipped", at(2026, 11, 25, 17, 30), H, OFFICE, "America/New_York", at(2026, 11, 27, 9, 30)),
    ("several days", at(2026, 11, 23, 9), 4 * 9 * H + 60, OFFICE, "America/New_York", at(2026, 11, 30, 9, 1)),
    ("0 seconds inside", at(2026, 11, 23, 10), 0, OFFICE, "America/New_York", at(2026, 11, 23, 10)),
    ("0 seconds outside: the opening", at(2026, 11, 23, 19), 0, OFFICE, "America/New_York",
     at(2026, 11, 24, 9)),
    ("used up at the closing", at(2026, 11, 23, 17), H, OFFICE, "America/New_York", at(2026, 11, 23, 18)),
    # overnight: Friday 22:00 runs to Saturday 06:00; the next night is Monday's
    ("overnight", at(2026, 11, 27, 23), 8 * H, NIGHTS, "America/New_York", at(2026, 11, 30, 23)),
    ("overnight, after midnight", at(2026, 11, 28, 5), 2 * H, NIGHTS, "America/New_York", at(2026, 11, 30, 23)),
    ("overnight, monday morning is closed", at(2026, 11, 30, 3), H, NIGHTS, "America/New_York",
     at(2026, 11, 30, 23)),
    # spring forward: the night of 2026-03-07 has 7 real hours from 22:00 to 06:00
    ("NY spring forward", at(2026, 3, 7, 22), 7 * H, SAT_NIGHT, "America/New_York", at(2026, 3, 8, 6)),
    ("NY spring forward, a second more", at(2026, 3, 7, 22), 7 * H + 1, SAT_NIGHT, "America/New_York",
     at(2026, 3, 14, 22, 0, 1)),
    # fall back: the night of 2026-10-31 has 9
    ("NY fall back", at(2026, 10, 31, 22), 9 * H, SAT_NIGHT, "America/New_York", at(2026, 11, 1, 6)),
    ("NY fall back, a second more", at(2026, 10, 31, 22), 9 * H + 1, SAT_NIGHT, "America/New_York",
     at(2026, 11, 7, 22, 0, 1)),
    ("Berlin spring forward", at(2026, 3, 29, 0, tz=BERLIN), 3 * H, SUN_EARLY, "Europe/Berlin",
     at(2026, 3, 29, 5, tz=BERLIN)),
    ("Berlin fall back", at(2026, 10, 25, 0, tz=BERLIN), 5 * H, SUN_EARLY, "Europe/Berlin",
     at(2026, 10, 25, 5, tz=BERLIN)),
    ("Berlin fall back, plain day", at(2026, 10, 23, 12, tz=BERLIN), 9 * H, OFFICE, "Europe/Berlin",
     at(2026, 10, 26, 12, tz=BERLIN)),
    # the window's own zone wins over the plan's: Monday 09:00-10:00 in New York = 23:00-24:00 in Seoul
    ("window with its own zone", at(2026, 11, 23, 8, tz=SEOUL), 1800,
     hours(win(["mon"], "09:00", "10:00", timezone="America/New_York")), "Asia/Seoul",
     at(2026, 11, 23, 23, 30, tz=SEOUL)),
    ("no hours: wall time, over the DST change", at(2026, 3, 8, 1, 30), H, None, "America/New_York",
     at(2026, 3, 8, 3, 30)),
])
def test_deadline(case: str, start: datetime, seconds: int, hrs: BusinessHours | None, zone: str,
                  due: datetime) -> None:
    got = deadline(start, seconds, hrs, timezone=zone, calendars=US)
    assert got == due, case
    assert got.tzinfo == start.tzinfo     # answered in the start's zone


def test_a_window_starting_in_the_skipped_hour_opens_when_the_clock_jumps_past_it() -> None:
    h = hours(win(["sun"], "02:30", "04:00"))    # 02:30 does not exist on 2026-03-29 in Berlin
    kw: dict[str, Any] = {"timezone": "Europe/Berlin", "calendars": {}}
    assert next_open(at(2026, 3, 29, 0, tz=BERLIN), h, **kw) == at(2026, 3, 29, 3, tz=BERLIN)
    assert deadline(at(2026, 3, 29, 0, tz=BERLIN), H, h, **kw) == at(2026, 3, 29, 4, tz=BERLIN)


def test_a_window_in_the_repeated_hour_is_open_both_times() -> None:
    h = hours(win(["sun"], "02:00", "02:30"))    # 02:00-03:00 comes twice on 2026-10-25 in Berlin
    kw: dict[str, Any] = {"timezone": "Europe/Berlin", "calendars": {}}
    start = at(2026, 10, 25, 0, tz=BERLIN)
    # (in UTC: an aware time in the repeated hour never equals one of another zone, PEP 495)
    assert deadline(start, 1800, h, **kw).astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    later = deadline(start, 1801, h, **kw)
    assert later.astimezone(UTC) == datetime(2026, 10, 25, 1, 0, 1, tzinfo=UTC)                 # 02:00:01 CET
    assert (later.hour, later.minute, later.second, later.fold) == (2, 0, 1, 1)
    assert is_open(datetime(2026, 10, 25, 1, 15, tzinfo=UTC), h, **kw)                       # 02:15 CET


@pytest.mark.parametrize(("start", "hrs", "zone"), [
    (at(2026, 3, 7, 20), SAT_NIGHT, "America/New_York"),
    (at(2026, 10, 31, 20), SAT_NIGHT, "America/New_York"),
    (at(2026, 3, 28, 23, tz=BERLIN), SUN_EARLY, "Europe/Berlin"),
    (at(2026, 10, 24, 23, tz=BERLIN), SUN_EARLY, "Europe/Berlin"),
    (at(2026, 10, 24, 23, tz=BERLIN), hours(win(["sun"], "02:00", "02:30")), "Europe/Berlin"),
    (at(2026, 11, 25, 12), OFFICE, "America/New_York"),
])
def test_deadlines_agree_with_a_minute_by_minute_count_of_open(start: datetime, hrs: BusinessHours,
                                                               zone: str) -> None:
    """Every minute is_open (the branch condition) calls open is counted once: over the DST nights as
    much open time as the walk finds, none lost, none invented."""
    kw: dict[str, Any] = {"timezone": zone, "calendars": US}
    start = start.astimezone(UTC)                # (aware arithmetic in a zone is wall-clock arithmetic)
    minutes = 0
    t = start
    for _ in range(3 * 24 * 60):                 # three days, bounded
        minutes += is_open(t, hrs, **kw)
        t += timedelta(minutes=1)
    assert minutes > 0
    end = deadline(start, minutes * 60, hrs, **kw)
    assert start < end <= t
    assert sum(is_open(start + timedelta(minutes=m), hrs, **kw) for m in range(3 * 24 * 60)
               if start + timedelta(minutes=m) < end) == minutes


@pytest.mark.parametrize(("now", "expected"), [
    (at(2026, 11, 23, 10), at(2026, 11, 23, 10)),       # open: now
    (at(2026, 11, 23, 18), at(2026, 11, 24, 9)),        # closing time is closed
    (at(2026, 11, 25, 19), at(2026, 11, 27, 9)),        # Thursday is a holiday
    (at(2026, 11, 27, 18, 1), at(2026, 11, 30, 9)),     # weekend
])
def test_next_open(now: datetime, expected: datetime) -> None:
    assert next_open(now, OFFICE, timezone="America/New_York", calendars=US) == expected


def test_holidays_close_the_whole_local_day_even_overnight() -> None:
    h = hours(win(["mon-sun"], "22:00", "06:00"), holidays="us")
    kw: dict[str, Any] = {"timezone": "America/New_York", "calendars": US}
    assert is_open(at(2026, 11, 25, 23), h, **kw)
    assert not is_open(at(2026, 11, 26, 2), h, **kw)      # Wednesday's night, but Thursday's date
    assert not is_open(at(2026, 11, 26, 23), h, **kw)
    assert is_open(at(2026, 11, 27, 0), h, **kw)          # Thursday's night on Friday's date
    assert deadline(at(2026, 11, 25, 23), 2 * H, h, **kw) == at(2026, 11, 27, 1)


def test_no_hours_is_always_open_and_naive_times_are_utc() -> None:
    kw: dict[str, Any] = {"timezone": "Asia/Seoul", "calendars": {}}
    assert is_open(datetime(2026, 11, 28, 3), None, **kw)
    assert next_open(datetime(2026, 11, 28, 3), None, **kw) == datetime(2026, 11, 28, 3, tzinfo=UTC)
    assert deadline(datetime(2026, 11, 23, 0, 30), H, OFFICE, **kw) == datetime(2026, 11, 23, 1, 30, tzinfo=UTC)
    assert deadline(datetime(2026, 11, 23, 0, 30), 90, None, **kw) == datetime(2026, 11, 23, 0, 31, 30, tzinfo=UTC)


def test_an_unknown_holiday_calendar_closes_nothing() -> None:
    h = hours(win(["mon-fri"], "09:00", "18:00"), holidays="nope")
    assert is_open(at(2026, 11, 26, 10), h, timezone="America/New_York", calendars=US)
    assert deadline(at(2026, 11, 26, 10), H, h, timezone="America/New_York", calendars=US) == at(2026, 11, 26, 11)


# --- hostile -------------------------------------------------------------------------------------
def test_hours_that_never_open_are_a_clear_error() -> None:
    mondays = [date(2026, 11, 23) + timedelta(weeks=w) for w in range(60)]
    h = hours(win(["mon"], "09:00", "10:00"), holidays="every_monday")
    kw: dict[str, Any] = {"timezone": "America/New_York", "calendars": {"every_monday": mondays}}
    with pytest.raises(DialplanError, match=f"never open in the {MAX_DAYS} days") as err:
        deadline(at(2026, 11, 23, 8), 60, h, **kw)
    assert err.value.code == "dialplan.hours_never_open"
    assert next_open(at(2026, 11, 23, 8), h, **kw) is None
    assert not is_open(at(2026, 11, 23, 9, 30), h, **kw)


def test_hours_need_a_window_with_a_day() -> None:
    with pytest.raises(ValueError, match="never be open"):
        hours(win([], "09:00", "10:00"))
    with pytest.raises(ValueError, match="at least 1"):
        hours()


@pytest.mark.parametrize(("seconds", "hrs"), [
    (1e12, None),                                        # beyond any year datetime knows
    (1e12, OFFICE),
    (MAX_DAYS * 86400 + 1, hours(win(["mon-sun"], "00:00", "00:00"))),  # 24/7, but more than the search
    (60 * H, hours(win(["mon"], "09:00", "10:00"))),     # an hour a week: 52 hours a year
])
def test_huge_amounts_are_bounded(seconds: float, hrs: BusinessHours | None) -> None:
    with pytest.raises(DialplanError) as err:
        deadline(at(2026, 11, 23, 8), seconds, hrs, timezone="America/New_York", calendars={})
    assert err.value.code == "dialplan.hours_too_far"


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf")])
def test_bad_amounts_are_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="finite number"):
        deadline(at(2026, 11, 23, 8), seconds, OFFICE, timezone="America/New_York", calendars={})


def test_starts_beyond_the_calendar_are_refused() -> None:
    with pytest.raises(ValueError, match="outside the years"):
        deadline(datetime(9999, 12, 31, tzinfo=UTC), 60, OFFICE, timezone="America/New_York", calendars={})
    with pytest.raises(ValueError, match="outside the years"):
        next_open(datetime(1, 1, 1, tzinfo=UTC), OFFICE, timezone="America/New_York", calendars={})


# --- properties ----------------------------------------------------------------------------------
SAMPLES = [
    (OFFICE, "America/New_York"),
    (NIGHTS, "America/New_York"),
    (SUN_EARLY, "Europe/Berlin"),
    (hours(win(["mon", "wed"], "08:00", "12:00"), win(["tue-sat"], "10:00", "11:30", timezone="Asia/Seoul"),
           win(["sun"], "02:00", "02:30")), "Europe/Berlin"),
]
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
instants = st.integers(0, 366 * 86400).map(lambda s: YEAR_START + timedelta(seconds=s))
samples = st.sampled_from(SAMPLES)


@hsettings(max_examples=150)
@given(start=instants, a=st.integers(0, 30 * H), b=st.integers(1, 30 * H), sample=samples)
def test_deadline_adds_up(start: datetime, a: int, b: int, sample: tuple[BusinessHours, str]) -> None:
    hrs, zone = sample
    kw: dict[str, Any] = {"timezone": zone, "calendars": US}
    first = deadline(start, a, hrs, **kw)
    assert deadline(first, b, hrs, **kw) == deadline(start, a + b, hrs, **kw)


@hsettings(max_examples=150)
@given(start=instants, a=st.integers(0, 30 * H), b=st.integers(0, 30 * H), sample=samples)
def test_deadline_is_monotonic_and_ends_in_open_time(start: datetime, a: int, b: int,
                                                     sample: tuple[BusinessHours, str]) -> None:
    hrs, zone = sample
    kw: dict[str, Any] = {"timezone": zone, "calendars": US}
    lo, hi = sorted((a, b))
    assert start <= deadline(start, lo, hrs, **kw) <= deadline(start, hi, hrs, **kw)
    if hi:
        assert is_open(deadline(start, hi, hrs, **kw) - timedelta(seconds=1), hrs, **kw)


@hsettings(max_examples=200)
@given(now=instants, sample=samples)
def test_next_open_is_now_exactly_when_open(now: datetime, sample: tuple[BusinessHours, str]) -> None:
    hrs, zone = sample
    kw: dict[str, Any] = {"timezone": zone, "calendars": US}
    opening = next_open(now, hrs, **kw)
    assert opening is not None
    assert (opening == now) == is_open(now, hrs, **kw)
    assert is_open(opening, hrs, **kw)
    if opening > now:
        assert not is_open(opening - timedelta(seconds=1), hrs, **kw)


# --- case due times ------------------------------------------------------------------------------
def loaded(**plan: Any) -> LoadedPlan:
    p = Plan.model_validate({"name": "t", "numbers": ["1"], "start": "h", "nodes": {"h": {"type": "hangup"}},
                             **plan})
    return LoadedPlan(p, Path("t.yaml"), "v1")


FRIDAY_EVENING = at(2026, 12, 4, 17, 30)


def test_case_due_counts_the_plans_hours() -> None:
    plan = loaded(timezone="America/New_York", hours={"open": [win(["mon-fri"], "09:00", "18:00")]})
    s = CaseSettings()
    assert case_due(FRIDAY_EVENING, "urgent", s, plan) == at(2026, 12, 7, 9, 30)
    assert case_due(FRIDAY_EVENING, "important", s, plan) == at(2026, 12, 7, 10, 30)
    assert case_due(FRIDAY_EVENING, "normal", s, plan) == at(2026, 12, 7, 12, 30)
    custom = CaseSettings(due_s={"urgent": 600, "important": 1200, "normal": 86400})
    assert case_due(FRIDAY_EVENING, "urgent", custom, plan) == at(2026, 12, 4, 17, 40)


def test_case_due_on_the_wall_clock() -> None:
    with_hours = loaded(timezone="America/New_York", hours={"open": [win(["mon-fri"], "09:00", "18:00")]})
    wall = FRIDAY_EVENING + timedelta(hours=1)
    assert case_due(FRIDAY_EVENING, "urgent", CaseSettings(business_hours=False), with_hours) == wall
    assert case_due(FRIDAY_EVENING, "urgent", CaseSettings(), loaded(timezone="America/New_York")) == wall
    assert case_due(FRIDAY_EVENING, "urgent", CaseSettings(), None) == wall


def test_case_due_refuses_an_unknown_tier() -> None:
    with pytest.raises(BadRequest) as err:
        case_due(FRIDAY_EVENING, "whenever", CaseSettings(), None)
    assert err.value.code == "case.invalid"
