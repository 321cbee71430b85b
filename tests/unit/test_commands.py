"""Command messages: what goes into a worker's inbox and back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.core import commands


def test_a_command_survives_the_inbox_round_trip() -> None:
    cmd = commands.Hangup(call_id="c1", by="super1", role="supervisor", deadline_ms=123)
    raw = commands.encode(cmd)
    assert json.loads(raw)["type"] == "command" and json.loads(raw)["kind"] == "hangup"
    assert commands.decode(raw) == cmd


def test_deadline() -> None:
    cmd = commands.Hangup(call_id="c1", by="x", deadline_ms=1000)
    assert cmd.expired(now_ms=1001) and not cmd.expired(now_ms=1000)
    assert not commands.Hangup(call_id="c1", by="x").expired()  # no deadline: never expires


def test_a_reply_survives_its_round_trip() -> None:
    r = commands.Reply("id1", commands.Status.REFUSED, "call.not_connected", "why")
    assert commands.Reply.decode(r.encode()) == r


@pytest.mark.parametrize("raw", [
    {"kind": "reboot", "call_id": "c", "by": "x"},
    {"kind": "hangup", "by": "x"},
    {"kind": "hangup", "call_id": "", "by": "x"},
    {"kind": "hangup", "call_id": 5, "by": "x"},
    {"kind": "hangup", "call_id": "c", "by": "x", "deadline_ms": "soon"},
    {"kind": "hangup", "call_id": "c", "by": "x", "deadline_ms": True},
])
def test_malformed_commands_are_value_errors(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        commands.decode(raw)


@given(st.dictionaries(st.sampled_from(["kind", "call_id", "by", "role", "command_id", "deadline_ms", "x"]),
                       st.one_of(st.text(max_size=5), st.integers(), st.none(), st.booleans(),
                                 st.lists(st.integers(), max_size=2), st.just("hangup"))))
def test_any_message_decodes_to_a_valid_command_or_a_value_error(raw: dict[str, object]) -> None:
    try:
        cmd = commands.decode(raw)
    except ValueError:
        return
    assert isinstance(cmd, commands.Hangup) and isinstance(cmd.call_id, str) and cmd.call_id
    assert type(cmd.deadline_ms) is int
