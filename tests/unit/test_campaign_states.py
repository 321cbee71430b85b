"""The campaign and record state machines: the Lua setters' tables (lib/campaigns.lua) and the Python
mirror (ivr.core.campaign_states) agree; only the setters write a campaign's or a record's state;
numbers are normalised E.164-like; the settings' bounds."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from ivr.core import campaign_states as cps
from ivr.core.errors import BadRequest

LUA = Path(str(resources.files("ivr.queues").joinpath("lua")))
SETTER = LUA / "lib" / "campaigns.lua"


def _lua_table(name: str) -> dict[str, list[str]]:
    body = re.search(rf"local {name} = \{{(.*?)\n\}}", SETTER.read_text(), re.S)
    assert body, name
    return {state: re.findall(r"'(\w+)'", targets)
            for state, targets in re.findall(r"^\s*(\w+) = \{([^}]*)\},?$", body.group(1), re.M)}


def test_lua_and_python_tables_agree() -> None:
    for name, table, enum in (("CAMPAIGN_TRANSITIONS", cps.CAMPAIGN_TRANSITIONS, cps.CampaignState),
                              ("RECORD_TRANSITIONS", cps.RECORD_TRANSITIONS, cps.RecordState)):
        lua = _lua_table(name)
        assert set(lua) == {s.value for s in enum}
        assert {k: set(v) for k, v in lua.items()} == {k.value: {t.value for t in v} for k, v in table.items()}


def test_every_state_is_reachable_and_final_states_are_final() -> None:
    seen, todo = {cps.RECORD_INITIAL}, [cps.RECORD_INITIAL]
    while todo:
        for nxt in cps.RECORD_TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(cps.RecordState)
    assert all(not cps.RECORD_TRANSITIONS[s] for s in cps.FINAL)
    assert cps.allowed_record(None, cps.RecordState.DNC) and not cps.allowed_record(None, cps.RecordState.DONE)
    assert not cps.allowed_campaign(cps.CampaignState.STOPPED, cps.CampaignState.RUNNING)


def test_only_the_setters_write_a_state_in_campaigns_lua() -> None:
    """In lib/campaigns.lua, `'state'` is written only by set_campaign_state, set_record_state and
    CP.create; no other script writes it on a campaign key."""
    text = SETTER.read_text()
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"^(?:local )?function ([\w.]+)\(", text, re.M)]
    spans = {n: (a, b) for (a, n), (b, _) in zip(starts, [*starts[1:], (len(text), "")], strict=True)}
    for m in re.finditer(r"'state'", text):
        line = text[text.rfind("\n", 0, m.start()) + 1:text.find("\n", m.end())]
        if re.search(r"'HM?GET'", line):
            continue
        inside = [n for n, (a, b) in spans.items() if a <= m.start() < b]
        assert inside in (["set_campaign_state"], ["set_record_state"], ["CP.create"]), (line, inside)
    for path in sorted((LUA / "scripts").glob("campaign_*.lua")):
        assert not re.search(r"'HSET',[^\n]*'state'", path.read_text()), path


@pytest.mark.parametrize(("raw", "norm"), [
    ("+82 10-5550-1234", "+821055501234"), ("0082 10 5550 1234", "+821055501234"), ("(02) 555.1234", "025551234"),
    ("+1 212 555 0100", "+12125550100"), ("12", None), ("=cmd|' /C calc'!A0", None), ("+82 10 abc", None),
    ("1" * 21, None), ("", None), ("sip:a@b", None),
])
def test_numbers_are_normalised(raw: str, norm: str | None) -> None:
    assert cps.normalise_number(raw) == norm


def test_settings_defaults_and_backoff() -> None:
    p = cps.check_pacing({})
    assert p == {"rate_per_s": 1.0, "max_concurrent": 10, "mode": "fixed", "ratio": 1.0, "skill": ""}
    r = cps.check_retries({"backoff_s": {"busy": 60}, "multiplier": 3})
    assert r["backoff_s"] == {"busy": 60, "no_answer": 1800, "failed": 600}
    assert cps.backoff_s(r, "busy", 3) == 60 * 9
    with pytest.raises(BadRequest):
        cps.check_pacing({"rate_per_s": True})
    with pytest.raises(BadRequest):
        cps.check_retries({"multiplier": 0.5})
