"""The case status machine: the Lua setter's table and the Python mirror agree, only the setter
writes a case's status, and the store's input checks refuse hostile values with ``case.invalid``."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from ivr.core import case_states as cs
from ivr.core.case_states import CASE_TIERS, CASE_TRANSITIONS, INITIAL, PENDING, CaseStatus, allowed
from ivr.core.errors import BadRequest

LUA = Path(str(resources.files("ivr.queues").joinpath("lua")))
SETTER = LUA / "lib" / "cases.lua"


def _lua_table(name: str) -> dict[str, list[str]]:
    text = SETTER.read_text()
    body = re.search(rf"local {name} = \{{(.*?)\n\}}", text, re.S)
    assert body, f"{name} not found in {SETTER}"
    return {state: re.findall(r"'(\w+)'", targets)
            for state, targets in re.findall(r"^\s*(\w+) = \{([^}]*)\},?$", body.group(1), re.M)}


def test_lua_and_python_transition_tables_agree() -> None:
    lua = _lua_table("CASE_TRANSITIONS")
    assert set(lua) == {s.value for s in CaseStatus}
    assert {k: set(v) for k, v in lua.items()} == {k.value: {t.value for t in v} for k, v in CASE_TRANSITIONS.items()}
    text = SETTER.read_text()
    initial = re.search(r"local CASE_INITIAL = '(\w+)'", text)
    assert initial and initial.group(1) == INITIAL == "open"
    pending = re.search(r"local CASE_PENDING = \{(.*?)\}", text)
    assert pending and set(re.findall(r"(\w+) = true", pending.group(1))) == {s.value for s in PENDING}
    tiers = re.search(r"TIERS = \{(.*?)\}", text)
    assert tiers and set(re.findall(r"(\w+) = true", tiers.group(1))) == set(CASE_TIERS)


def test_the_machine_of_the_contract() -> None:
    s = CaseStatus
    assert CASE_TIERS == ("urgent", "important", "normal")
    assert allowed(None, s.OPEN) and not allowed(None, s.CONTACTED)
    assert allowed(s.OPEN, s.CONTACTED) and allowed(s.CONTACTED, s.RESOLVED) and allowed(s.RESOLVED, s.CLOSED)
    assert allowed(s.CLOSED, s.REOPENED) and allowed(s.REOPENED, s.CONTACTED)
    assert not allowed(s.CONTACTED, s.OPEN) and not allowed(s.OPEN, s.REOPENED) and not allowed(s.CLOSED, s.OPEN)
    assert not any(allowed(x, x) for x in s), "no status moves to itself"
    # every status is reachable from open, and every one can end closed
    seen, todo = {INITIAL}, [INITIAL]
    while todo:
        for nxt in CASE_TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(s)
    assert all(s.CLOSED in CASE_TRANSITIONS[x] for x in s if x is not s.CLOSED)


def _function_spans(text: str) -> dict[str, tuple[int, int]]:
    """Where each top-level function of a Lua file starts and ends (offsets; ends at the next one)."""
    starts = [(m.start(), m.group(1)) for m in
              re.finditer(r"^(?:local )?function ([\w.]+)\(", text, re.M)]
    return {name: (a, b) for (a, name), (b, _) in zip(starts, [*starts[1:], (len(text), "")], strict=True)}


def test_only_the_setter_writes_a_cases_status() -> None:
    """A script that touches cases names the field `status` only to read it (HGET/HMGET); in cases.lua
    the setter and the creation of a case write it, nothing else. (A transcript's `status`, in scripts
    that name no case, is not a case's.)"""
    offenders = []
    for path in sorted(LUA.rglob("*.lua")):
        text = path.read_text()
        if path != SETTER and "k('case'" not in text and "CS." not in text:
            continue  # names no case key and calls no case function: a `status` there is another thing's
        for m in re.finditer(r"'status'", text):
            line_start = text.rfind("\n", 0, m.start()) + 1
            line = text[line_start:text.find("\n", m.end())]
            where = f"{path.relative_to(LUA)}:{text[:m.start()].count(chr(10)) + 1}"
            if re.search(r"'HM?GET'", line):
                continue  # a read
            if path == SETTER:
                inside = [n for n, (a, b) in _function_spans(text).items() if a <= m.start() < b]
                if inside not in (["set_case_status"], ["CS.create"]):
                    offenders.append(f"{where} (in {inside})")
            else:
                offenders.append(where)
        if path != SETTER:
            assert not re.search(r"set\('status'", text), path
    assert not offenders, offenders


def test_the_lua_limits_are_the_python_ones() -> None:
    text = SETTER.read_text()
    assert f"local CASE_CALLS_KEEP = {cs.CALLS_KEEP}" in text
    note = (LUA / "scripts" / "case_note.lua").read_text()
    assert f"0, {cs.NOTES_KEEP - 1})" in note and f"'text', A[3], {cs.NOTE_MAX})" in note
    opened = (LUA / "scripts" / "case_open.lua").read_text()
    assert f"'reason', A[2], {cs.REASON_MAX})" in opened
    assert f"'customer_name', A[4], {cs.CUSTOMER_NAME_MAX})" in opened and f"'crm_id', A[5], {cs.CRM_ID_MAX})" in opened
    listing = (LUA / "scripts" / "case_list.lua").read_text()
    assert f"limit > {cs.LIST_MAX}" in listing
    deadlines = (LUA / "scripts" / "case_deadlines.lua").read_text()
    assert f"limit > {cs.DEADLINE_BATCH_MAX}" in deadlines
    assert f"local CUSTOMER_CASES_KEEP = {cs.CUSTOMER_CASES_KEEP}" in text
    assert f"limit > {cs.CUSTOMER_CASES_KEEP}" in (LUA / "scripts" / "case_customer.lua").read_text()
    unfinished = re.search(r"local CASE_UNFINISHED = \{([^}]*)\}", text)
    assert unfinished and set(re.findall(r"(\w+) = true", unfinished.group(1))) == {s.value for s in cs.UNFINISHED}


@pytest.mark.parametrize("value", ["", "CS", "cs1", "CS1234567890123", "CS1 ", "CS-1", "CS1\n", "../CS1", "CS١"])
def test_case_ids_are_cs_and_digits(value: str) -> None:
    with pytest.raises(BadRequest) as err:
        cs.check_case_id(value)
    assert err.value.code == "case.invalid"


def test_the_checks_accept_good_values_and_refuse_the_rest() -> None:
    assert cs.check_case_id("CS17") == "CS17" and cs.check_case_id("CS123456789012")
    assert cs.check_tier("urgent") == "urgent" and cs.check_status("reopened") is CaseStatus.REOPENED
    assert cs.check_text("reason", "é" * 200, 200) and cs.check_text("text", "a\nb", 10, multiline=True)
    assert cs.check_pattern("customer", "", cs.CUSTOMER, empty=True) == ""
    assert cs.check_pattern("customer", "+4930123*#", cs.CUSTOMER) and cs.check_ms("due", 0) == 0
    refused = [
        lambda: cs.check_tier("URGENT"), lambda: cs.check_status("done"),
        lambda: cs.check_text("reason", "x" * 201, 200), lambda: cs.check_text("reason", "a\nb", 200),
        lambda: cs.check_text("reason", "a\x00", 200), lambda: cs.check_text("reason", "  ", 200, empty=False),
        lambda: cs.check_text("text", "a\x1b[2J", 2000, multiline=True),
        lambda: cs.check_pattern("customer", "+49 30", cs.CUSTOMER),
        lambda: cs.check_pattern("customer", "", cs.CUSTOMER),
        lambda: cs.check_pattern("owner", "a:b", cs.AGENT), lambda: cs.check_pattern("owner", "x" * 65, cs.AGENT),
        lambda: cs.check_ms("due", -1), lambda: cs.check_ms("due", True), lambda: cs.check_ms("due", 10**14),
        lambda: cs.check_ms("due", 1.5),  # type: ignore[arg-type]
    ]
    for check in refused:
        with pytest.raises(BadRequest) as err:
            check()
        assert err.value.code == "case.invalid"
