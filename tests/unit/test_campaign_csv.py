"""Campaign lists as CSV (ivr.cti.campaign_csv): hostile files get a clear refusal or their bad rows
reported by line and skipped; the export never hands a spreadsheet a formula and masks numbers."""

from __future__ import annotations

import csv
import io

import pytest

from ivr.core.errors import BadRequest
from ivr.cti.campaign_csv import cell, export_header, export_records, mask, parse_numbers, parse_records


def everyone(number: str) -> bool:
    return True


def test_a_good_list() -> None:
    raw = ("Number, Name ,tz,plan_tier\r\n+82 10-5550-1234,김민수,Asia/Seoul,gold\r\n"
           "0082105550999,Ann,,silver\r\n\r\n").encode()
    p = parse_records(raw, allowed=everyone)
    assert p.rows == [
        {"number": "+821055501234", "name": "김민수", "tz": "Asia/Seoul", "variables": {"campaign.plan_tier": "gold"}},
        {"number": "+82105550999", "name": "Ann", "tz": "", "variables": {"campaign.plan_tier": "silver"}}]
    assert p.lines == [2, 3] and p.bad == 0


def test_bad_rows_are_reported_by_line_and_skipped() -> None:
    raw = ("number,name,tz\n"
           "+821055501234,ok,\n"            # 2 kept
           "not a number,x,\n"              # 3
           "+821055501234,dup,\n"           # 4 duplicate
           "+821055501235,x,Mars/Base\n"    # 5 zone
           "+821055501236,\"a\nb\",\n"      # 6-7 line break in a cell
           "+821055501237,x\n"              # 8 field count
           "+821055501238," + "x" * 1001 + ",\n"  # 9 too long
           "+821055501239,tab\x01x,\n"      # 10 control
           "+821055501240,last,UTC\n").encode()  # 11 kept
    p = parse_records(raw, allowed=everyone)
    assert [r["name"] for r in p.rows] == ["ok", "last"] and p.lines == [2, 11]
    assert [e["line"] for e in p.errors] == [3, 4, 5, 6, 8, 9, 10]
    assert p.bad == 7 and p.duplicates == 1
    assert "duplicate" in p.errors[1]["error"]


def test_outbound_allow_is_applied() -> None:
    p = parse_records(b"number\n+821055501234\n+12125550100\n", allowed=lambda n: n.startswith("+82"))
    assert [r["number"] for r in p.rows] == ["+821055501234"] and p.errors[0]["line"] == 3


@pytest.mark.parametrize(("raw", "words"), [
    (b"", "empty"),
    (b"name,tz\nAnn,UTC\n", "no number column"),
    (b"number,number\n1234,1234\n", "twice"),
    (b"number,=cmd\n1234,x\n", "column"),
    ("number,name\n+821055501234,Zo\xe9\n".encode("latin-1"), "not utf-8"),
    (b"number\n" + b"+8210555" + b"0" * (5 * 1024 * 1024), "larger than"),
    (b"num\x00ber\n1234\n", "NUL"),
])
def test_unreadable_lists_are_refused_whole(raw: bytes, words: str) -> None:
    with pytest.raises(BadRequest) as exc:
        parse_records(raw, allowed=everyone)
    assert exc.value.code == "campaign.csv" and words.lower() in str(exc.value).lower()


def test_other_encodings_when_named() -> None:
    raw = "number,name\n+821055501234,김민수\n".encode("cp949")
    with pytest.raises(BadRequest):
        parse_records(raw, allowed=everyone)
    assert parse_records(raw, allowed=everyone, encoding="cp949").rows[0]["name"] == "김민수"
    bom = "\ufeffnumber,name\n+821055501234,Ann\n".encode()
    assert parse_records(bom, allowed=everyone).rows[0]["name"] == "Ann"
    with pytest.raises(BadRequest):
        parse_records(raw, allowed=everyone, encoding="rot13")


def test_too_many_rows_and_a_huge_field() -> None:
    many = b"number\n" + b"".join(b"+8210%08d\n" % i for i in range(10_001))
    with pytest.raises(BadRequest):
        parse_records(many, allowed=everyone)
    huge = b"number,name\n+821055501234,\"" + b"x" * 200_000 + b"\"\n+821055501235,ok\n"
    p = parse_records(huge, allowed=everyone)
    assert p.bad == 1 and [r["name"] for r in p.rows] == ["ok"]


def test_formula_injection_is_defused_in_the_export() -> None:
    p = parse_records(b"number,name,note\n+821055501234,=cmd|' /C calc'!A0,@SUM(1)\n", allowed=everyone)
    rec = {"id": "CP1:1", **p.rows[0], "state": "done", "attempts": 1, "last_outcome": "completed",
           "result": {"outcome": "completed", "csat": 5, "variables": {"campaign.note": "@SUM(1)", "solved": "-1"}}}
    text = export_header() + export_records([rec], reveal=False)
    rows = list(csv.reader(io.StringIO(text)))
    head, row = rows
    assert row[head.index("name")] == "'=cmd|' /C calc'!A0"
    assert row[head.index("number")] == "*********1234"
    assert row[head.index("answers")].startswith("{") and "campaign.note" not in row[head.index("answers")]
    assert all(not c.startswith(("=", "+", "-", "@")) for c in row if c != row[head.index("number")])
    assert export_records([rec], reveal=True).split(",")[1] == "+821055501234"
    assert cell("+1") == "'+1" and cell(None) == "" and mask("+12") == "+12"


def test_dnc_numbers() -> None:
    numbers, errors = parse_numbers(b"number,reason\n+82 10 5550 1234,asked\nnope,x\n0082105550999,\n")
    assert numbers == ["+821055501234", "+82105550999"] and errors == [{"line": 3, "error": "not a phone number"}]
    assert parse_numbers(b"+821055501234\n+821055501235\n")[0] == ["+821055501234", "+821055501235"]
