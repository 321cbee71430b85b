"""Branch conditions (time zones, overnight windows, holidays, caller globs, variable operators) and
templates: pure functions, then the branch node through the engine."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from ivr.dialplan import templates
from ivr.dialplan.conditions import Context, caller_matches, choose, holds, in_window, is_holiday
from ivr.dialplan.model import BranchNode, BusinessHours, Condition, TimeWindow
from ivr.dialplan.templates import names, render, render_url, to_str
from tests.unit.test_dialplan_engine import FakeCall, run

UTC = ZoneInfo("UTC")
SEOUL = ZoneInfo("Asia/Seoul")
NY = ZoneInfo("America/New_York")


def window(**kw: Any) -> TimeWindow:
    return TimeWindow.model_validate(kw)


def cond(**kw: Any) -> Condition:
    return Condition.model_validate(kw)


def at(y: int, mo: int, d: int, h: int, mi: int = 0, tz: ZoneInfo = UTC) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=tz)


# 2026-11-23 is a Monday.
# --- time windows -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("when", "expected"), [
    (at(2026, 11, 23, 9, 0, SEOUL), True),     # from is inclusive
    (at(2026, 11, 23, 17, 59, SEOUL), True),
    (at(2026, 11, 23, 18, 0, SEOUL), False),   # to is exclusive
    (at(2026, 11, 23, 8, 59, SEOUL), False),
    (at(2026, 11, 22, 10, 0, SEOUL), False),   # Sunday
    (at(2026, 11, 23, 1, 0, UTC), True),       # 10:00 in Seoul
    (at(2026, 11, 22, 23, 30, UTC), False),    # Monday 08:30 in Seoul
    (at(2026, 11, 22, 19, 0, NY), True),       # Sunday evening in New York = Monday 09:00 in Seoul
])
def test_weekday_window_in_the_plan_time_zone(when: datetime, expected: bool) -> None:
    w = window(days=["mon-fri"], **{"from": "09:00", "to": "18:00"})
    assert in_window(w, when, "Asia/Seoul") is expected


def test_the_windows_own_zone_wins_over_the_plans() -> None:
    w = window(days=["mon"], timezone="America/New_York", **{"from": "09:00", "to": "10:00"})
    assert in_window(w, at(2026, 11, 23, 14, 30), "Asia/Seoul")       # 09:30 in New York
    assert not in_window(w, at(2026, 11, 23, 9, 30), "Asia/Seoul")


@pytest.mark.parametrize(("when", "expected"), [
    (at(2026, 11, 27, 22, 0), True),    # Friday 22:00: starts
    (at(2026, 11, 27, 23, 59), True),
    (at(2026, 11, 28, 3, 0), True),     # Saturday 03:00 belongs to Friday's window
    (at(2026, 11, 28, 6, 0), False),    # to is exclusive
    (at(2026, 11, 27, 3, 0), False),    # Friday 03:00 would be Thursday's night: not listed
    (at(2026, 11, 28, 22, 30), False),  # Saturday night is not listed
    (at(2026, 11, 27, 12, 0), False),
])
def test_overnight_window_belongs_to_the_day_it_started(when: datetime, expected: bool) -> None:
    w = window(days=["fri"], **{"from": "22:00", "to": "06:00"})
    assert in_window(w, when, "UTC") is expected


def test_default_window_is_the_whole_day_and_equal_ends_are_24_hours() -> None:
    assert in_window(window(), datetime(2026, 11, 23, 23, 59, 59, 900000, tzinfo=UTC), "UTC")
    assert in_window(window(), at(2026, 11, 23, 0, 0), "UTC")
    w = window(days=["mon"], **{"from": "12:00", "to": "12:00"})
    assert in_window(w, at(2026, 11, 23, 12, 0), "UTC") and in_window(w, at(2026, 11, 24, 11, 59), "UTC")
    assert not in_window(w, at(2026, 11, 24, 12, 0), "UTC") and not in_window(w, at(2026, 11, 23, 11, 0), "UTC")


def test_naive_now_is_utc_and_a_list_of_windows_is_any() -> None:
    c = cond(time=[{"days": ["sat"]}, {"days": ["mon"], "from": "09:00", "to": "10:00"}])
    ctx = Context(now=datetime(2026, 11, 23, 9, 30), timezone="UTC")
    assert holds(c, ctx)
    assert not holds(c, Context(now=datetime(2026, 11, 23, 10, 30), timezone="UTC"))
    assert holds(c, Context(now=datetime(2026, 11, 28, 15, 0), timezone="UTC"))


# --- holidays ---------------------------------------------------------------------------------------
def test_holiday_is_the_date_in_the_plan_zone_and_unknown_calendars_never_hold() -> None:
    cal = {"kr": [date(2026, 12, 25)], "empty": []}
    assert is_holiday("kr", at(2026, 12, 24, 16, 0), "Asia/Seoul", cal)      # 01:00 on the 25th in Seoul
    assert not is_holiday("kr", at(2026, 12, 24, 16, 0), "UTC", cal)
    assert not is_holiday("kr", at(2026, 12, 25, 15, 0), "Asia/Seoul", cal)  # the 26th in Seoul
    assert not is_holiday("nope", at(2026, 12, 25, 3, 0), "UTC", cal)
    assert not is_holiday("empty", at(2026, 12, 25, 3, 0), "UTC", cal)
    ctx = Context(now=at(2026, 12, 25, 3, 0), calendars=cal)
    assert holds(cond(holiday="kr"), ctx) and not holds(cond(holiday="nope"), ctx)
    assert holds(cond(holiday="nope", **{"not": True}), ctx)


# --- business hours ---------------------------------------------------------------------------------
HOURS = BusinessHours.model_validate({"open": [{"days": ["mon-fri"], "from": "09:00", "to": "18:00"},
                                               {"days": ["sat"], "from": "22:00", "to": "02:00"}],
                                      "holidays": "kr"})


@pytest.mark.parametrize(("when", "is_open"), [
    (at(2026, 11, 23, 1, 0), True),        # Monday 10:00 in Seoul
    (at(2026, 11, 23, 9, 0), False),       # Monday 18:00 in Seoul: closing time
    (at(2026, 11, 28, 16, 30), True),      # Sunday 01:30 in Seoul: Saturday's overnight window
    (at(2026, 11, 29, 3, 0), False),       # Sunday 12:00 in Seoul
    (at(2026, 12, 25, 1, 0), False),       # Friday 10:00 in Seoul, a holiday of kr
])
def test_open_holds_while_the_plans_hours_are_open(when: datetime, is_open: bool) -> None:
    ctx = Context(now=when, timezone="Asia/Seoul", caller="+8210", calendars={"kr": [date(2026, 12, 25)]},
                  hours=HOURS)
    assert holds(cond(open=True), ctx) is is_open
    assert holds(cond(open=False), ctx) is not is_open
    assert holds(cond(open=True, **{"not": True}), ctx) is not is_open
    assert holds(cond(open=True, caller="+82*"), ctx) is is_open
    assert not holds(cond(open=True, caller="+1*"), ctx)


def test_a_plan_without_hours_is_always_open() -> None:
    ctx = Context(now=at(2026, 11, 29, 3, 0), timezone="Asia/Seoul")
    assert holds(cond(open=True), ctx) and not holds(cond(open=False), ctx)


# --- caller globs -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("glob", "number", "expected"), [
    ("+8210*", "+821012345678", True),
    ("+8210*", "821012345678", False),        # + is literal
    ("+8210*", "+8210", True),                # * may be empty
    ("1555???0100", "15551230100", True),
    ("1555???0100", "1555120100", False),     # ? is exactly one
    ("1555???0100", "155512340100", False),
    ("1555", "15551", False),                 # anchored
    ("*0100", "+15551230100", True),
    ("anonymous", "anonymous", True),
    ("[12]*", "1", False),                    # brackets are literal, not classes
    ("[12]*", "[12]99", True),
    ("+1.55*", "+1x55", False),               # dots are literal
])
def test_caller_globs(glob: str, number: str, expected: bool) -> None:
    assert caller_matches(glob, number) is expected


def test_caller_list_is_any() -> None:
    c = cond(caller=["+8210*", "+1555*"])
    assert holds(c, Context(now=at(2026, 1, 1, 0), caller="+15550001"))
    assert not holds(c, Context(now=at(2026, 1, 1, 0), caller="+4420"))


# --- variables --------------------------------------------------------------------------------------
def var(value: str | None, **ops: Any) -> bool:
    variables = {} if value is None else {"v": value}
    return holds(cond(var="v", **ops), Context(now=at(2026, 1, 1, 0), variables=variables))


@pytest.mark.parametrize(("value", "ops", "expected"), [
    ("gold", {"equals": "gold"}, True),
    ("Gold", {"equals": "gold"}, False),              # strings are exact
    ("5.0", {"equals": 5}, True),                     # numbers compare as numbers
    ("5", {"equals": 5.0}, True),
    ("05", {"equals": "5"}, False),                   # a text expected value compares as text
    ("abc", {"equals": 5}, False),
    ("true", {"equals": True}, True),
    ("True", {"equals": True}, True),
    ("false", {"equals": True}, False),
    ("false", {"equals": False}, True),
    ("1", {"equals": True}, False),
    (None, {"equals": ""}, True),                     # unset is the empty string
    (None, {"equals": "x"}, False),
    ("gold", {"not_equals": "silver"}, True),
    ("gold", {"not_equals": "gold"}, False),
    ("3", {"not_equals": 3}, False),
    (None, {"not_equals": "x"}, True),
    ("vip", {"in": ["gold", "vip"]}, True),
    ("2.0", {"in": [1, 2]}, True),
    ("bronze", {"in": ["gold", "vip"]}, False),
    ("AB-123", {"matches": "[A-Z]{2}-[0-9]+"}, True),
    ("AB-123x", {"matches": "[A-Z]{2}-[0-9]+"}, False),  # fullmatch
    (None, {"matches": ".*"}, True),
    ("x", {"exists": True}, True),
    ("", {"exists": True}, False),
    (None, {"exists": True}, False),
    (None, {"exists": False}, True),
    ("", {"exists": False}, True),
    ("x", {"exists": False}, False),
    ("81", {"gt": 80}, True),
    ("80", {"gt": 80}, False),
    ("79.5", {"lt": 80}, True),
    ("high", {"gt": 1}, False),
    ("high", {"lt": 1}, False),
    (None, {"lt": 1}, False),
    ("nan", {"lt": 1}, False),
    (" 42 ", {"gt": 41, "lt": 43}, True),             # operators AND
    ("50", {"gt": 41, "lt": 43}, False),
    ("50", {"gt": 41, "not": True}, False),
    ("10", {"gt": 41, "not": True}, True),
])
def test_variable_operators(value: str | None, ops: dict[str, Any], expected: bool) -> None:
    assert var(value, **ops) is expected


def test_fields_are_anded_and_not_inverts_the_whole() -> None:
    c = cond(caller="+82*", var="tier", equals="gold", time={"days": ["mon"]})
    ctx = Context(now=at(2026, 11, 23, 12), caller="+8210", variables={"tier": "gold"})
    assert holds(c, ctx)
    assert not holds(c, Context(now=at(2026, 11, 24, 12), caller="+8210", variables={"tier": "gold"}))
    assert not holds(c, Context(now=at(2026, 11, 23, 12), caller="+1", variables={"tier": "gold"}))
    negated = cond(caller="+82*", var="tier", equals="gold", **{"not": True})
    assert not holds(negated, ctx) and holds(negated, Context(now=ctx.now, caller="+1", variables={"tier": "gold"}))


def test_choose_takes_the_first_rule_that_holds_else_default() -> None:
    node = BranchNode.model_validate({"type": "branch", "default": "d", "rules": [
        {"if": {"var": "a", "exists": True}, "goto": "first"},
        {"if": {"var": "b", "exists": True}, "goto": "second"},
        {"if": {"var": "b", "equals": "x"}, "goto": "third"}]})
    now = at(2026, 1, 1, 0)
    assert choose(node, Context(now=now, variables={"a": "1", "b": "x"})) == ("first", 0)
    assert choose(node, Context(now=now, variables={"b": "x"})) == ("second", 1)
    assert choose(node, Context(now=now, variables={})) == ("d", None)


# --- templates --------------------------------------------------------------------------------------
def test_render_variables_escapes_and_unknown_names() -> None:
    v = {"caller": "+1", "crm.tier": "gold"}
    assert render("{caller} is {crm.tier}", v) == "+1 is gold"
    assert render("{{caller}} {{{caller}}} }} {", v) == "{caller} {+1} } {"
    assert render("{ caller } {1x} {a..b}", v) == "{ caller } {1x} {a..b}"
    templates._warned.discard("nobody_sets_this")
    with capture_logs() as logs:
        assert render("[{nobody_sets_this}]", v) == "[]"
        assert render("[{nobody_sets_this}]", v) == "[]"
    warnings = [e for e in logs if e["event"] == "dialplan.template_unknown_variable"]
    assert len(warnings) == 1 and warnings[0]["variable"] == "nobody_sets_this"


def test_render_url_percent_encodes_values_only() -> None:
    v = {"q": "a b/c?d&e=f#g", "caller": "+82 10"}
    assert render_url("https://h.example/x/{q}?phone={caller}&k=1", v) == (
        "https://h.example/x/a%20b%2Fc%3Fd%26e%3Df%23g?phone=%2B82%2010&k=1")
    assert render_url("https://h.example/{q}", {"q": "한"}) == "https://h.example/%ED%95%9C"


def test_names_and_to_str() -> None:
    assert names("{a} {b.c} {a} {{d}}") == ["a", "b.c"]
    assert (to_str(True), to_str(False), to_str(3), to_str(2.5), to_str(None)) == ("true", "false", "3", "2.5", "")


# --- the branch node through the engine -------------------------------------------------------------
BRANCH = """
start: b
timezone: Asia/Seoul
calendars: {kr: ["2026-12-25"]}
nodes:
  b:
    type: branch
    rules:
      - {if: {caller: "+1555000*"}, goto: test}
      - {if: {holiday: kr}, goto: closed}
      - {if: {time: {days: [mon-fri], from: "09:00", to: "18:00"}}, goto: open}
      - {if: {time: {days: [sat], from: "22:00", to: "06:00"}}, goto: night}
    default: closed
  test: {type: hangup}
  closed: {type: hangup}
  open: {type: hangup}
  night: {type: hangup}
"""


@pytest.mark.parametrize(("caller", "when", "target"), [
    ("+15550001", at(2026, 11, 23, 3), "test"),
    ("+8210", at(2026, 12, 25, 1), "closed"),          # holiday in Seoul (10:00 on a Friday)
    ("+8210", at(2026, 11, 23, 1), "open"),            # Monday 10:00 in Seoul
    ("+8210", at(2026, 11, 23, 10), "closed"),         # Monday 19:00 in Seoul
    ("+8210", at(2026, 11, 28, 14), "night"),          # Saturday 23:00 in Seoul
    ("+8210", at(2026, 11, 28, 19), "night"),          # Sunday 04:00 in Seoul: Saturday's night
    ("+8210", at(2026, 11, 29, 14), "closed"),         # Sunday 23:00 in Seoul
])
async def test_branch_node_uses_the_injected_clock_and_records_the_rule(caller: str, when: datetime,
                                                                        target: str) -> None:
    env = await run(BRANCH, FakeCall(caller=caller), now=when)
    assert env.result.node == target
    step = env.result.journey.steps[0]
    assert (step.type, step.outcome) == ("branch", target)
    assert step.detail in ("default", "rule 0", "rule 1", "rule 2", "rule 3")


async def test_branch_on_variables_set_earlier() -> None:
    env = await run("""
        start: s
        nodes:
          s: {type: set, variables: {score: "{crm.score}"}, next: b}
          b:
            type: branch
            rules:
              - {if: {var: score, gt: 80}, goto: hi}
              - {if: {var: score, exists: false}, goto: none}
            default: lo
          hi: {type: hangup}
          lo: {type: hangup}
          none: {type: hangup}
        """, variables={"crm.score": "91"})
    assert env.result.node == "hi"


async def test_branch_on_the_plans_business_hours() -> None:
    plan = """
        start: b
        timezone: America/New_York
        calendars: {us: ["2026-11-26"]}
        hours:
          open: [{days: [mon-fri], from: "09:00", to: "18:00"}]
          holidays: us
        nodes:
          b:
            type: branch
            rules:
              - {if: {open: false}, goto: closed}
            default: open
          open: {type: hangup}
          closed: {type: hangup}
        """
    assert (await run(plan, now=at(2026, 11, 25, 15))).result.node == "open"      # Wednesday 10:00 in NY
    assert (await run(plan, now=at(2026, 11, 26, 15))).result.node == "closed"    # Thanksgiving
    assert (await run(plan, now=at(2026, 11, 25, 23, 30))).result.node == "closed"  # Wednesday 18:30
