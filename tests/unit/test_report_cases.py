"""The pure parts of ``ivr report cases``: the masked customer number, the 90th percentile, one row."""

from __future__ import annotations

from ivr.queues.report import CASE_COLUMNS, case_row, mask_number, p90_ms
from ivr.queues.stats import iso


def test_every_digit_but_the_last_four_is_masked() -> None:
    assert mask_number("+4930123456") == "+******3456"
    assert mask_number("0301234567#") == "******4567#"
    assert mask_number("*31#0123456789") == "***#******6789"
    assert mask_number("1234") == "1234" and mask_number("12") == "12" and mask_number("") == ""


def test_the_90th_percentile_is_the_nearest_rank() -> None:
    assert p90_ms([]) is None
    assert p90_ms([5]) == 5
    assert p90_ms([3, 1, 2]) == 3
    assert p90_ms(list(range(10, 0, -1))) == 9   # 9 of 10 at or below it
    assert p90_ms(list(range(1, 21))) == 18


def test_a_row_writes_times_in_utc_and_blanks_what_is_not_there() -> None:
    case = {"id": "CS7", "tier": "urgent", "status": "open", "opened_at": 1_700_000_000_000,
            "due_at": 1_700_003_600_000, "contacted_at": None, "first_contact_ms": None, "resolved_at": None,
            "closed_at": None, "reopened": 0, "owner": "", "customer": "+4930123456", "hotline": "demo",
            "opened_by": "ivr:demo", "calls": ["c1"], "overdue": True, "first_contact": "overdue"}
    row = dict(zip(CASE_COLUMNS, case_row(case), strict=True))
    assert row["opened_at"] == iso(1_700_000_000) == "2023-11-14T22:13:20.000+00:00"
    assert (row["contacted_at"], row["first_contact_s"], row["met"], row["overdue"]) == ("", "", "overdue", "yes")
    assert (row["customer"], row["calls"], row["reopened"]) == ("+******3456", "1", "0")
    met = case_row({**case, "contacted_at": 1_700_000_090_500, "first_contact_ms": 90_500, "first_contact": "met",
                    "overdue": False})
    assert dict(zip(CASE_COLUMNS, met, strict=True))["first_contact_s"] == "90.5"
    assert dict(zip(CASE_COLUMNS, met, strict=True))["met"] == "yes"
