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


@pytest.mark.parametrize("cmd", [
    commands.Hold(call_id="c", by="a1"), commands.Resume(call_id="c", by="a1"),
    commands.Mute(call_id="c", by="a1"), commands.Unmute(call_id="c", by="a1"),
    commands.Transfer(call_id="c", by="a1", target_type="queue", target="support"),
    commands.Consult(call_id="c", by="a1", target_type="number", target="+8210"),
    commands.ConsultComplete(call_id="c", by="a1"), commands.ConsultCancel(call_id="c", by="a1"),
    commands.ConsultSwap(call_id="c", by="a1"), commands.Conference(call_id="c", by="a1"),
    commands.ConferenceLeave(call_id="c", by="s1", agent_id="a2"),
    commands.SendDtmf(call_id="c", by="a1", digits="12#"),
])
def test_every_call_control_command_survives_the_inbox(cmd: commands.Command) -> None:
    assert commands.decode(commands.encode(cmd)) == cmd


@pytest.mark.parametrize("raw", [
    {"kind": "transfer", "call_id": "c", "by": "a", "target_type": "pbx", "target": "x"},
    {"kind": "consult", "call_id": "c", "by": "a", "target_type": "agent", "target": ""},
    {"kind": "dtmf", "call_id": "c", "by": "a", "digits": "12x"},
    {"kind": "dtmf", "call_id": "c", "by": "a", "digits": "1" * 33},
    {"kind": "conference_leave", "call_id": "c", "by": "a"},
])
def test_a_call_control_command_with_a_bad_target_or_keys_is_refused_at_the_inbox(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        commands.decode({"type": "command", "command_id": "x", **raw})


@pytest.mark.parametrize("cmd", [
    commands.MonitorStart(call_id="c", by="super1", role="supervisor", mode="listen", target_type="number",
                          target="+15550777"),
    commands.MonitorStart(call_id="c", by="super1", role="supervisor", mode="barge", target_type="agent",
                          target="super1"),
    commands.MonitorChange(call_id="c", by="super1", role="supervisor", mode="whisper"),
    commands.MonitorStop(call_id="c", by="admin", role="admin"),
])
def test_every_supervision_command_survives_the_inbox(cmd: commands.Command) -> None:
    assert commands.decode(commands.encode(cmd)) == cmd


@pytest.mark.parametrize("raw", [
    {"kind": "monitor_start", "call_id": "c", "by": "s", "mode": "spy", "target_type": "number", "target": "1"},
    {"kind": "monitor_start", "call_id": "c", "by": "s", "mode": "listen", "target_type": "queue", "target": "q"},
    {"kind": "monitor_start", "call_id": "c", "by": "s", "mode": "listen", "target_type": "agent", "target": ""},
    {"kind": "monitor_start", "call_id": "c", "by": "s", "mode": "listen", "target_type": "agent"},
    {"kind": "monitor_start", "call_id": "c", "by": "s", "mode": 1, "target_type": "agent", "target": "a"},
    {"kind": "monitor_change", "call_id": "c", "by": "s", "mode": "LISTEN"},
    {"kind": "monitor_change", "call_id": "c", "by": "s"},
])
def test_a_supervision_command_with_a_bad_mode_or_target_is_refused_at_the_inbox(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        commands.decode(raw)


def test_the_command_modes_are_the_media_tables_modes() -> None:
    from ivr.calls.media_plan import MonitorMode  # a unit test may look across layers

    assert commands.MONITOR_MODES == {m.value for m in MonitorMode}
