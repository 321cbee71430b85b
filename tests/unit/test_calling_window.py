"""Calling windows of campaigns (ivr.dialplan.calling_window): open in the customer's zone, closed on
holidays (local day), unknown zones never open, bad stored windows close the campaign."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from ivr.dialplan.calling_window import CallingWindow, is_open_for, next_open_for, open_map

RAW = {"timezone": "Asia/Seoul", "open": [{"days": ["mon-fri"], "from": "09:00", "to": "18:00"}]}
MON_10_SEOUL = datetime(2026, 12, 7, 1, 0)  # 10:00 Monday in Seoul, 20:00 Sunday in New York


def test_open_in_the_customers_zone() -> None:
    w = CallingWindow.model_validate(RAW)
    assert is_open_for(w, "", MON_10_SEOUL)
    assert not is_open_for(w, "America/New_York", MON_10_SEOUL)
    assert next_open_for(w, "America/New_York", MON_10_SEOUL) == datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    assert not is_open_for(w, "Not/AZone", MON_10_SEOUL) and next_open_for(w, "../etc", MON_10_SEOUL) is None


def test_a_holiday_closes_the_local_day() -> None:
    w = CallingWindow.model_validate({**RAW, "holidays": ["2026-12-07"]})
    assert w.holidays == [date(2026, 12, 7)]
    assert not is_open_for(w, "", MON_10_SEOUL)
    assert next_open_for(w, "", MON_10_SEOUL) == datetime(2026, 12, 8, 0, 0, tzinfo=UTC)


def test_open_map() -> None:
    windows = {"CP1": (RAW, ["", "America/New_York", "Asia/Tokyo"]), "CP2": (None, [""]),
               "CP3": ({"open": "nonsense"}, [""])}
    assert open_map(windows, MON_10_SEOUL) == {"CP1": [0, 2], "CP3": []}


@pytest.mark.parametrize("raw", [
    {"open": []}, {"timezone": "Mars/Base", "open": RAW["open"]}, {"open": [{"days": []}]},
    {"open": RAW["open"], "holidays": ["not a date"]}, {"open": RAW["open"], "extra": 1},
])
def test_bad_windows_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CallingWindow.model_validate(raw)
