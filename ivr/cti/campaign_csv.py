"""Campaign lists in and results out as CSV (docs/campaigns.md "Records"). Pure: bytes in, rows out.

Upload (:func:`parse_records`): UTF-8 (a BOM is fine; ``encoding`` may name cp949 / euc-kr /
latin-1 / utf-16 for lists saved by spreadsheet programs), at most 5 MB and 10,000 data rows. The
first row names the columns (case and spaces ignored): ``number`` (required), ``name``, ``tz`` (an
IANA zone: the customer's, for the calling window), and any other column ``x`` (letters, digits,
``_``) becomes the variable ``campaign.x`` of the record's calls. A row that cannot be used (no valid
number, a number ``calls.outbound_allow`` does not allow, an unknown zone, a field too long, control
characters, the same number twice in the upload) is reported with its line number and skipped; the
others are kept. A file that cannot be read at all (encoding, no header, no number column, too big)
is refused whole (BadRequest ``campaign.csv``).

Export (:func:`export_records`): one line per record; a cell that a spreadsheet would run as a
formula (starting with ``= + - @``, a tab or a carriage return) is prefixed with ``'``; numbers are
masked but for their last 4 digits unless the reader is an admin.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ivr.core import campaign_states as cps
from ivr.core.errors import BadRequest
from ivr.dialplan.model import _check_zone

ENCODINGS = ("utf-8", "cp949", "euc-kr", "latin-1", "utf-16")
COLUMNS_MAX = 50
FIELD_MAX = 1000           # characters of one cell (a longer one, up to the csv module's limit, is a bad row)
VALUE_MAX = 200            # characters of one variable
ERRORS_SHOWN = 100         # bad rows reported one by one (all are counted)
COLUMN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def refused(message: str) -> BadRequest:
    return BadRequest(message, code="campaign.csv")


@dataclass
class Parsed:
    """The usable rows (``{number, name, tz, variables}``, with ``lines``: the line of each), the bad
    rows (line, reason; the first :data:`ERRORS_SHOWN`) and how many there were."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    bad: int = 0
    duplicates: int = 0

    def reject(self, line: int, reason: str) -> None:
        self.bad += 1
        if len(self.errors) < ERRORS_SHOWN:
            self.errors.append({"line": line, "error": reason})


def decode(raw: bytes, encoding: str = "utf-8") -> str:
    if len(raw) > cps.UPLOAD_MAX_BYTES:
        raise refused(f"the list is larger than {cps.UPLOAD_MAX_BYTES} bytes")
    if encoding not in ENCODINGS:
        raise refused(f"encoding must be one of {', '.join(ENCODINGS)}")
    try:
        text = raw.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise refused(f"the list is not {encoding} (line {line}); save it as CSV UTF-8 or name its encoding") from None
    if "\x00" in text:
        raise refused("the list holds NUL characters: not a text CSV file")
    return text


def parse_records(raw: bytes, *, allowed: Callable[[str], bool], encoding: str = "utf-8") -> Parsed:
    """The records of an uploaded list (see the module doc). ``allowed(number)`` says whether a
    normalised number may be dialled (``calls.outbound_allow``)."""
    text = decode(raw, encoding)
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    try:
        header = next(reader)
    except StopIteration:
        raise refused("the list is empty: its first line names the columns (number, name, tz, ...)") from None
    except csv.Error as exc:
        raise refused(f"the header cannot be read: {exc}") from None
    names = [h.strip().lower().lstrip("\ufeff") for h in header]
    if len(names) > COLUMNS_MAX:
        raise refused(f"at most {COLUMNS_MAX} columns")
    for n in names:
        if not COLUMN.fullmatch(n):
            raise refused(f"column {n[:40]!r}: names are letters, digits and _ (at most 32), starting with a letter")
    if len(set(names)) != len(names):
        raise refused("a column is named twice")
    if "number" not in names:
        raise refused("the list has no number column")
    out = Parsed()
    seen: set[str] = set()
    rows_seen = 0
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            out.reject(line, f"unreadable: {str(exc)[:80]}")
            continue
        if not any(c.strip() for c in cells):
            continue
        rows_seen += 1
        if rows_seen > cps.RECORDS_PER_UPLOAD:
            raise refused(f"at most {cps.RECORDS_PER_UPLOAD} records an upload: split the list")
        problem = _row(names, cells, allowed, seen, out, line)
        if problem:
            out.reject(line, problem)
    return out


def _row(names: Sequence[str], cells: Sequence[str], allowed: Callable[[str], bool], seen: set[str],
         out: Parsed, line: int) -> str | None:
    if len(cells) != len(names):
        return f"{len(cells)} fields, the header has {len(names)}"
    row = dict(zip(names, cells, strict=True))
    for name, value in row.items():
        if len(value) > FIELD_MAX:
            return f"{name} is longer than {FIELD_MAX} characters"
        if _CONTROL.search(value) or "\n" in value:
            return f"{name} holds control characters or a line break"
    number = cps.normalise_number(row.pop("number"))
    if number is None:
        return "the number is not a phone number (+ and 3 to 20 digits)"
    if not allowed(number):
        return "the number is not allowed for outbound calls (calls.outbound_allow)"
    name = row.pop("name", "").strip()
    if len(name) > cps.RECORD_NAME_MAX:
        return f"name is longer than {cps.RECORD_NAME_MAX} characters"
    tz = row.pop("tz", "").strip()
    if tz:
        try:
            _check_zone(tz)
        except ValueError:
            return "tz is not a time zone (an IANA name such as Asia/Seoul)"
    variables = {}
    for col, value in row.items():
        if len(value) > VALUE_MAX:
            return f"{col} is longer than {VALUE_MAX} characters"
        variables[f"campaign.{col}"] = value.strip()
    if len(json.dumps(variables, ensure_ascii=False).encode()) > cps.VARIABLES_MAX_BYTES:
        return f"the variables exceed {cps.VARIABLES_MAX_BYTES} bytes"
    if number in seen:
        out.duplicates += 1
        return "duplicate: the number is on an earlier line"
    seen.add(number)
    out.rows.append({"number": number, "name": name, "tz": tz, "variables": variables})
    out.lines.append(line)
    return None


def parse_numbers(raw: bytes, encoding: str = "utf-8") -> tuple[list[str], list[dict[str, Any]]]:
    """A do-not-call list: one number a line, or a CSV with a ``number`` column. Returns the
    normalised numbers and the bad lines (the first :data:`ERRORS_SHOWN`)."""
    text = decode(raw, encoding)
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    numbers: list[str] = []
    errors: list[dict[str, Any]] = []
    col = 0
    first = True
    for cells in _safe(reader):
        if not cells or not any(c.strip() for c in cells):
            continue
        if first:
            first = False
            names = [c.strip().lower() for c in cells]
            if "number" in names:
                col = names.index("number")
                continue
        n = cps.normalise_number(cells[col] if col < len(cells) else "")
        if n is None:
            if len(errors) < ERRORS_SHOWN:
                errors.append({"line": reader.line_num, "error": "not a phone number"})
        else:
            numbers.append(n)
        if len(numbers) > cps.RECORDS_PER_UPLOAD:
            raise refused(f"at most {cps.RECORDS_PER_UPLOAD} numbers an upload")
    return numbers, errors


def _safe(reader: Iterable[list[str]]) -> Iterable[list[str]]:
    it = iter(reader)
    while True:
        try:
            yield next(it)
        except StopIteration:
            return
        except csv.Error:
            continue


def cell(value: object) -> str:
    """A value as a CSV cell a spreadsheet shows and never runs (formula injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def mask(number: str) -> str:
    """All but the last 4 digits hidden."""
    return "*" * max(0, len(number) - 4) + number[-4:]


EXPORT_COLUMNS = ("record_id", "number", "name", "tz", "state", "attempts", "last_outcome", "last_reason",
                  "last_call_id", "retry_at", "result_outcome", "csat", "answers")


def export_header() -> str:
    return _line(EXPORT_COLUMNS)


def export_records(records: Iterable[Mapping[str, Any]], *, reveal: bool) -> str:
    """CSV lines (no header) of records as the store returns them; numbers masked unless ``reveal``."""
    out = []
    for r in records:
        result = r.get("result") or {}
        variables = result.get("variables") or {}
        answers = {k: v for k, v in variables.items() if not str(k).startswith("campaign.")}
        number = str(r.get("number", ""))
        out.append(_line((r.get("id", ""), number if reveal else mask(number), cell(r.get("name", "")),
                          cell(r.get("tz", "")), r.get("state", ""), r.get("attempts", 0),
                          r.get("last_outcome", ""), cell(r.get("last_reason", "")), r.get("last_call_id", ""),
                          r.get("retry_at") or "", result.get("outcome", ""), result.get("csat", ""),
                          cell(json.dumps(answers, ensure_ascii=False, sort_keys=True) if answers else ""))))
    return "".join(out)


def _line(values: Sequence[object]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(["" if v is None else v for v in values])
    return buf.getvalue()
