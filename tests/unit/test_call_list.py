"""The call list's pure parts: the record's decoding, the cursor, the filters, the report's hold and
handle time (records written the way docs/call-control.md says call control writes them)."""

from __future__ import annotations

import base64
import json

import pytest

from ivr.core.errors import BadRequest
from ivr.cti.calls import call_view, decode_cursor, encode_cursor
from ivr.queues.report import CALL_COLUMNS, call_hold_s, call_row
from ivr.queues.stats import figures
from ivr.queues.store import CallQuery, StreamEvent

CONTROLLED = {
    "call_id": "c1", "state": "ended", "direction": "outbound", "priority": "3", "started_at": "1700000000000",
    "queued_at": "1700000001000", "answered_at": "1700000004000", "ended_at": "1700000064000",
    "waited_ms": "3100", "hold_s": "12.5", "hold_count": "2", "muted": "1",
    "consult": json.dumps({"target_type": "queue", "target": "sales", "agent_id": "a1", "state": "talking"}),
    "transfers": json.dumps([{"at": 1700000030000, "by": "a1", "from_agent": "a1", "target_type": "agent",
                              "target": "a2", "mode": "blind"}]),
    "transferred_from": "a1", "conference": json.dumps(["a1", "a2"]), "journey": json.dumps({"steps": []}),
    "route": json.dumps({"alts": [{"skills": ["billing"], "m": 1}]}), "stages": "[]", "ttl": "60",
}


def test_a_record_comes_out_with_numbers_and_objects() -> None:
    rec = call_view(CONTROLLED)
    assert rec["priority"] == 3 and rec["started_at"] == 1700000000000 and rec["waited_s"] == 3.1
    assert rec["hold_s"] == 12.5 and rec["hold_count"] == 2 and rec["muted"] is True
    assert rec["consult"]["target"] == "sales" and rec["transfers"][0]["target"] == "a2"
    assert rec["conference"] == ["a1", "a2"] and rec["route"]["alts"][0]["m"] == 1 and rec["stages"] == []
    assert "ttl" not in rec and "waited_ms" not in rec


def test_an_older_record_without_waited_ms_gets_the_wait_from_its_times() -> None:
    rec = call_view({"call_id": "c2", "queued_at": "1000", "answered_at": "4100"})
    assert rec["waited_s"] == 3.1


def test_fields_that_do_not_decode_are_left_out_and_unknown_ones_kept() -> None:
    rec = call_view({"call_id": "c3", "priority": "high", "transfers": "{", "conference": '{"a": 1}',
                     "hold_count": "1.5e400", "future_field": "x", "csat": "4"})
    assert rec == {"call_id": "c3", "future_field": "x", "csat": 4}


def test_a_voicemail_path_never_shows() -> None:
    rec = call_view({"call_id": "c4", "voicemail": json.dumps({"path": "/var/x.wav", "seconds": 2})})
    assert rec["voicemail"] == {"seconds": 2, "call_id": "c4", "url": "/api/v1/calls/c4/voicemail"}


def test_a_cursor_goes_back_to_its_position_only_with_its_filters() -> None:
    q = CallQuery(agent_id="a1", number="+8210", number_prefix=True)
    cursor = encode_cursor(q, (1700000000000, "c-9"))
    assert decode_cursor(q, cursor) == (1700000000000, "c-9")
    for other in (CallQuery(agent_id="a2", number="+8210", number_prefix=True), CallQuery(agent_id="a1")):
        with pytest.raises(BadRequest):
            decode_cursor(other, cursor)
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=="))
    for changed in ({**raw, "s": -1}, {**raw, "s": True}, {**raw, "c": ""}, {**raw, "x": 1}, [raw]):
        forged = base64.urlsafe_b64encode(json.dumps(changed).encode()).decode().rstrip("=")
        with pytest.raises(BadRequest):
            decode_cursor(q, forged)
    for junk in ("", "=", "a" * 401, "ü", cursor[:-2]):
        with pytest.raises(BadRequest):
            decode_cursor(q, junk)


def test_the_report_row_splits_talk_and_hold_and_counts_a_hold_under_way() -> None:
    ev = StreamEvent("1700000064000-0", "call.ended", {"call_id": "c1", "reason": "hangup"})
    row = dict(zip(CALL_COLUMNS, call_row(ev, CONTROLLED), strict=True))
    assert row["waited_s"] == "3.1" and row["handle_s"] == "60" and row["hold_s"] == "12.5"
    assert row["talk_s"] == "47.5" and row["hold_count"] == "2" and row["transfers"] == "1"
    assert row["direction"] == "outbound" and row["transferred_from"] == "a1"
    held = {**CONTROLLED, "held_at": "1700000060000"}  # ended while held, 4 s into the hold
    assert call_hold_s(held) == 16.5
    assert call_hold_s({"hold_s": "junk"}) == 0.0


def test_aht_and_average_hold_come_from_the_counters() -> None:
    f = figures({"handled": 2, "handle_ms": 200_000, "hold_ms": 30_000, "transfer_abandoned": 1}, (20,))
    assert f["aht_s"] == 100.0 and f["avg_hold_s"] == 15.0 and f["transfer_abandoned"] == 1
    assert f["abandon_rate"] is None
