"""Calling windows of outbound campaigns: when a customer may be called, in the customer's time zone.

A campaign's ``window`` (:class:`CallingWindow`) has the shape of a plan's business hours
(:class:`~ivr.dialplan.model.BusinessHours`: ``open`` windows of days and times) plus a default
``timezone`` and ``holidays`` (dates on which nobody is called, the whole local day). Each record may
carry its own ``tz`` (an IANA zone): its windows are read in that zone (a window that names its own
``timezone`` keeps it, so leave it out for per-customer zones). Pure functions (no clock, no I/O);
the campaign dialler (:mod:`ivr.runtime.worker`) asks :func:`open_map` which zones are open now
and hands the answer to the state layer's tick, which cannot import this package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from pydantic import Field, ValidationError, field_validator

from ivr.core.logging import get_logger
from ivr.dialplan.hours import is_open, next_open
from ivr.dialplan.model import BusinessHours, TimeWindow, _check_zone, _Strict

log = get_logger(__name__)

#: The name of the holiday calendar a window's ``holidays`` become (the plan calendars' shape).
CALENDAR = "campaign"


class CallingWindow(_Strict):
    """When a campaign's customers may be called."""

    timezone: str = Field("UTC", description="IANA zone of the windows and holidays unless a record gives its own tz")
    open: list[TimeWindow] = Field(min_length=1, max_length=50, description="call during any of these windows")
    holidays: list[date] = Field([], max_length=400, description="dates on which nobody is called (local day)")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return _check_zone(v)

    @field_validator("open")
    @classmethod
    def _some_day(cls, v: list[TimeWindow]) -> list[TimeWindow]:
        if not any(w.days for w in v):
            raise ValueError("no window has a day: nobody would ever be called")
        return v

    def hours(self) -> BusinessHours:
        return BusinessHours(open=self.open, holidays=CALENDAR if self.holidays else None)


def zone_of(window: CallingWindow, tz: str) -> str | None:
    """The zone a record of time zone ``tz`` ("" = the window's) is called in; None when ``tz`` is
    not a known zone (such a record is never in an open zone)."""
    if tz == "":
        return window.timezone
    try:
        return _check_zone(tz)
    except ValueError:
        return None


def is_open_for(window: CallingWindow, tz: str, now: datetime) -> bool:
    """May a record of time zone ``tz`` be called at ``now`` (naive: UTC)?"""
    zone = zone_of(window, tz)
    if zone is None:
        return False
    return is_open(now, window.hours(), timezone=zone, calendars={CALENDAR: window.holidays})


def next_open_for(window: CallingWindow, tz: str, now: datetime) -> datetime | None:
    """When a record of time zone ``tz`` may next be called (``now`` when it may now)."""
    zone = zone_of(window, tz)
    if zone is None:
        return None
    return next_open(now, window.hours(), timezone=zone, calendars={CALENDAR: window.holidays})


def open_map(windows: Mapping[str, tuple[Mapping[str, Any] | None, Sequence[str]]],
             now: datetime) -> dict[str, list[int]]:
    """For the running campaigns (id -> (window as stored or None, their records' zones by number)),
    the numbers of the zones open at ``now``: what :meth:`ivr.queues.store.QueueStore.campaign_tick`
    takes. A campaign without a window is left out (always open); one whose stored window does not
    parse is closed (logged)."""
    out: dict[str, list[int]] = {}
    for cid, (raw, zones) in windows.items():
        if raw is None:
            continue
        try:
            window = CallingWindow.model_validate(raw)
        except ValidationError as exc:
            log.warning("campaign.bad_window", campaign_id=cid, error=str(exc)[:200])
            out[cid] = []
            continue
        out[cid] = [i for i, tz in enumerate(zones) if is_open_for(window, tz, now)]
    return out
