"""The case API's own tables against the case state machine: the statuses and tiers the request
models accept, the moves the desktop offers (cases.js), and texts the API lets through that the
store must take (so a schema-valid request never ends in the store's 400)."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

from ivr.core import case_states as cs
from ivr.core.errors import BadRequest
from ivr.cti.case_open import CaseFromCall, Tier
from ivr.cti.cases import MOVES, STATUSES, TIERS, CaseCreate, CaseNoteAdd, CaseUpdate, Status

STATIC = Path(__file__).resolve().parents[2] / "ivr" / "cti" / "static"


def test_the_api_knows_the_statuses_tiers_and_moves_of_the_state_machine() -> None:
    assert set(STATUSES) == {str(s) for s in cs.CASE_TRANSITIONS} == set(typing.get_args(Status))
    assert tuple(TIERS) == tuple(cs.CASE_TIERS) == typing.get_args(Tier)
    assert MOVES == {str(k): {str(s) for s in v} for k, v in cs.CASE_TRANSITIONS.items()}


def test_the_desktop_offers_exactly_the_allowed_moves() -> None:
    text = (STATIC / "cases.js").read_text()
    table = re.search(r"const MOVES = (\{.*?\});", text, re.S)
    assert table, "cases.js has no MOVES table"
    as_json = re.sub(r"(\w+):", r'"\1":', table[1]).replace(",\n}", "\n}")
    moves = json.loads(re.sub(r",\s*}", "}", as_json))
    assert {k: set(v) for k, v in moves.items()} == {k: set(v) for k, v in MOVES.items()}


@pytest.mark.parametrize("reason", ["a", " late parcel ", "é中文 <b>x</b>", "x" * 200, "tab-free\u00e9"])
def test_a_reason_the_api_accepts_the_store_accepts(reason: str) -> None:
    CaseCreate(tier="urgent", reason=reason)
    CaseFromCall(tier="normal", reason=reason)
    assert cs.check_text("reason", reason, cs.REASON_MAX, empty=False) == reason


@pytest.mark.parametrize("reason", ["", " ", "\u3000", "\u00a0 ", "a\nb", "a\tb", "x\x00", "\u2028", "x" * 201])
def test_a_reason_the_store_refuses_the_api_refuses(reason: str) -> None:
    with pytest.raises(ValidationError):
        CaseCreate(tier="urgent", reason=reason)
    with pytest.raises(ValidationError):
        CaseUpdate(reason=reason)
    if len(reason) <= cs.REASON_MAX:
        with pytest.raises(BadRequest):
            cs.check_text("reason", reason, cs.REASON_MAX, empty=False)


@pytest.mark.parametrize("text", ["a", "line one\nline two", "\n\nx\n", "x" * 2000])
def test_a_note_the_api_accepts_the_store_accepts(text: str) -> None:
    CaseNoteAdd(text=text)
    assert cs.check_text("text", text, cs.NOTE_MAX, empty=False, multiline=True) == text


@pytest.mark.parametrize("text", ["", " \n ", "a\tb", "a\rb", "x\x7f", "x" * 2001])
def test_a_note_the_store_refuses_the_api_refuses(text: str) -> None:
    with pytest.raises(ValidationError):
        CaseNoteAdd(text=text)
    with pytest.raises(BadRequest):
        cs.check_text("text", text, cs.NOTE_MAX, empty=False, multiline=True)


def test_customers_call_ids_and_owners_follow_the_stores_patterns() -> None:
    for customer in ("", "+8210555", "*#1", "1" * 32):
        CaseCreate(tier="normal", reason="r", customer=customer)
        assert cs.check_pattern("customer", customer, cs.CUSTOMER, empty=True) == customer
    for bad in ("12ab", "+", "1" * 33, "+1 2"):
        with pytest.raises(ValidationError):
            CaseCreate(tier="normal", reason="r", customer=bad)
    for call_id in ("c1", "0f3a9b2c4d5e6f70", "a:b.c_d-e"):
        CaseCreate(tier="normal", reason="r", call_id=call_id)
        assert cs.check_pattern("call_id", call_id, cs.CALL_ID) == call_id
    for owner in ("agent1", "a.b_c-d"):
        assert CaseUpdate(owner=owner).owner == cs.check_pattern("owner", owner, cs.AGENT)
    assert CaseUpdate(owner="").owner == ""
