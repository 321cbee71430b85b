"""The call state machine: the Lua setter's table and the Python mirror agree, and only the setter
writes a call's state."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from ivr.core.call_states import INITIAL, TRANSITIONS, CallState, allowed

LUA = Path(str(resources.files("ivr.queues").joinpath("lua")))
SETTER = LUA / "lib" / "call_state.lua"


def _lua_table(name: str) -> dict[str, list[str]]:
    text = SETTER.read_text()
    body = re.search(rf"local {name} = \{{(.*?)\n\}}", text, re.S)
    assert body, f"{name} not found in {SETTER}"
    table: dict[str, list[str]] = {}
    for state, targets in re.findall(r"^\s*(\w+) = \{([^}]*)\},?$", body.group(1), re.M):
        table[state] = re.findall(r"'(\w+)'", targets)
    return table


def test_lua_and_python_transition_tables_agree() -> None:
    lua = _lua_table("CALL_TRANSITIONS")
    assert set(lua) == {s.value for s in CallState}
    assert {k: set(v) for k, v in lua.items()} == {k.value: {t.value for t in v} for k, v in TRANSITIONS.items()}
    initial = re.search(r"local CALL_INITIAL = \{(.*?)\}", SETTER.read_text())
    assert initial and set(re.findall(r"(\w+) = true", initial.group(1))) == {s.value for s in INITIAL}


def test_every_live_state_can_end_and_ended_is_terminal() -> None:
    for state, targets in TRANSITIONS.items():
        if state is CallState.ENDED:
            assert not targets
        else:
            assert CallState.ENDED in targets, state
    assert allowed(None, CallState.IVR) and not allowed(None, CallState.CONNECTED)
    assert not allowed(CallState.ENDED, CallState.IVR)
    assert allowed(CallState.CONNECTED, CallState.HELD) and allowed(CallState.HELD, CallState.CONNECTED)


def test_every_state_is_reachable_from_an_initial_state() -> None:
    seen = set(INITIAL)
    todo = list(INITIAL)
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(CallState)


_CALL_KEY = r"(ckey|k\('call', *[^)]*\))"


def test_only_the_setter_writes_a_calls_state() -> None:
    """No script writes `state` on a call key except through set_call_state / create_call."""
    offenders = []
    for path in sorted(LUA.rglob("*.lua")):
        if path == SETTER:
            continue
        text = path.read_text()
        for m in re.finditer(r"redis\.call\('HSET', *" + _CALL_KEY + r",(?:[^)]|\n)*?'state'", text):
            offenders.append(f"{path.relative_to(LUA)}:{text[:m.start()].count(chr(10)) + 1}")
        for m in re.finditer(r"'HSET', *" + _CALL_KEY + r"[^\n]*", text):
            line = m.group(0)
            assert "'state'" not in line, f"{path.name}: {line}"
    assert not offenders, offenders


def test_every_state_the_scripts_set_is_a_known_state() -> None:
    used = set()
    for path in LUA.rglob("*.lua"):
        used |= set(re.findall(r"(?:set_call_state|create_call)\([^,]+, *'(\w+)'", path.read_text()))
    assert used and used <= {s.value for s in CallState}, used - {s.value for s in CallState}


def test_the_design_notes_table_is_the_state_machine() -> None:
    """docs/call-control.md shows the table (TRANSITIONS) to people: it must not drift from the code."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "call-control.md").read_text()
    rows = dict(re.findall(r"^\| (\w+) \| ([^|]+) \|$", doc, flags=re.M))
    rows.pop("from", None)
    table = {state: frozenset() if moves.strip() == "—" else frozenset(m.strip() for m in moves.split(","))
             for state, moves in rows.items()}
    assert table == {s.value: frozenset(t.value for t in tos) for s, tos in TRANSITIONS.items()}
