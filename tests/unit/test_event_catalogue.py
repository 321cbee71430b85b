"""The event catalogue is the one list of events: every emitter sends what it says, the hub's
audiences come from it, and docs/events.md is made from it."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from ivr.core import event_catalogue as cat
from ivr.core.config import Settings, load_settings
from ivr.core.errors import ConfigError
from ivr.core.events import EventType
from ivr.cti import hub

ROOT = Path(__file__).resolve().parents[2]
LUA = Path(str(resources.files("ivr.queues").joinpath("lua")))


def _table_keys(body: str) -> set[str]:
    keys, depth, cur = set(), 0, ""
    for ch in body + ",":
        if ch == "," and depth == 0:
            if "=" in cur:
                keys.add(cur.split("=", 1)[0].strip())
            cur = ""
            continue
        depth += ch in "({["
        depth -= ch in ")}]"
        cur += ch
    return keys


def _braced(text: str, start: int) -> str:
    depth, i = 0, start
    while True:
        depth += text[i] == "{"
        depth -= text[i] == "}"
        i += 1
        if depth == 0:
            return text[start + 1:i - 1]


def lua_emits() -> list[tuple[str, set[str], str]]:
    """(event type, the field names it sends, where) of every ``emit(...)`` in the Lua sources."""
    found = []
    for path in sorted(LUA.rglob("*.lua")):
        text = path.read_text()
        for m in re.finditer(r"\bemit\('([\w.]+)', *", text):
            where = f"{path.relative_to(LUA)}:{text[:m.start()].count(chr(10)) + 1}"
            if text[m.end()] == "{":
                keys = _table_keys(_braced(text, m.end()))
            else:  # a table built in a local first, maybe with fields added after
                var = re.match(r"\w+", text[m.end():])
                assert var, where
                local = re.search(rf"local {var.group(0)} = \{{", text)
                assert local, f"{where}: {var.group(0)} is not a local table"
                keys = _table_keys(_braced(text, local.end() - 1))
                keys |= set(re.findall(rf"\b{var.group(0)}\.(\w+) *=", text))
            found.append((m.group(1), keys, where))
    return found


def test_every_lua_emitter_sends_the_fields_of_its_catalogue_entry() -> None:
    emits = lua_emits()
    assert len(emits) > 25
    for etype, keys, where in emits:
        assert etype in {t.value for t in EventType}, f"{where}: {etype} is not in the catalogue"
        spec = cat.wire_fields(cat.CATALOGUE[EventType(etype)])
        required = {k for k, req in spec.items() if req}
        assert required <= keys, f"{where}: {etype} misses {sorted(required - keys)}"
        unknown = sorted(keys - set(spec))
        assert not unknown, f"{where}: {etype} sends fields the catalogue does not know: {unknown}"


def test_every_catalogue_event_has_an_emitter() -> None:
    emitted = {e for e, _, _ in lua_emits()}
    python = set()
    for path in (ROOT / "ivr").rglob("*.py"):
        python |= set(re.findall(r"EventType\.(\w+)", path.read_text()))
    missing = {t.value for t in cat.CATALOGUE if t.value not in emitted and t.name not in python}
    assert not missing, f"catalogued but never emitted: {sorted(missing)}"


def test_the_lua_emitters_version_is_the_catalogues() -> None:
    prelude = (LUA / "lib" / "prelude.lua").read_text()
    assert re.search(r"local EVENT_VERSION = (\d+)", prelude).group(1) == str(cat.VERSION)  # type: ignore[union-attr]


def test_the_hub_routes_by_the_catalogue_audiences() -> None:
    assert hub.AGENT_EVENTS == cat.with_audience(cat.AGENT)
    assert hub.FLOOR_EVENTS == cat.with_audience(cat.FLOOR)
    assert "call.offered" in hub.AGENT_EVENTS and "call.queued" in hub.FLOOR_EVENTS - hub.AGENT_EVENTS


def test_the_events_document_is_up_to_date() -> None:
    doc = (ROOT / "docs" / "events.md").read_text()
    assert doc == cat.markdown() + "\n", "docs/events.md is stale: write ivr.core.event_catalogue.markdown() to it"


def test_consumers_parse_events_through_the_catalogue() -> None:
    ended = cat.parse("call.ended", {"call_id": "c", "outcome": "completed", "reason": "caller_hangup",
                                     "agent_id": "a", "queue": "q", "duration_s": 3.5, "ts": 1, "v": 1, "later": "x"})
    assert isinstance(ended, cat.CallEnded) and ended.duration_s == 3.5 and ended.ts == 1
    resumed = cat.parse("call.place_restored", {"call_id": "c", "queue": "q", "from": "abandon", "previous": "p",
                                         "priority": 1, "place": 2.0, "waited_before_s": 1.0})
    assert isinstance(resumed, cat.CallPlaceRestored) and resumed.from_ == "abandon"
    for etype, data in [("no.such", {}), ("call.ended", {"call_id": "c"})]:
        with pytest.raises(ValueError):
            cat.parse(etype, data)


def test_webhook_subscriptions_must_name_catalogued_events() -> None:
    assert cat.matches_any("*") and cat.matches_any("call.*") and cat.matches_any("callback.failed")
    assert not cat.matches_any("call.endd") and not cat.matches_any("calls.*")
    endpoint = {"name": "crm", "url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef"}
    Settings(webhooks={"endpoints": [{**endpoint, "events": ["call.ended", "callback.*"]}]})
    with pytest.raises(ConfigError, match=r"no event type matches 'call\.endd'"):
        load_settings(webhooks={"endpoints": [{**endpoint, "events": ["call.endd"]}]})


def test_agent_phone_events_reach_the_desktop_and_the_floor_without_addresses() -> None:
    """``agent.phone`` goes to the agent's desktop and the floor feed, and carries the number of
    devices only (what ``GET /api/v1/agents/{id}`` shows), never a contact, address or user agent."""
    assert "agent.phone" in hub.AGENT_EVENTS and "agent.phone" in hub.FLOOR_EVENTS
    assert cat.wire_fields(cat.AgentPhone) == {"agent_id": True, "registered": True, "contacts": True, "reason": True}
    ev = cat.parse("agent.phone", {"agent_id": "ada", "registered": True, "contacts": 2, "reason": "devices",
                                   "ts": 5, "v": 2})
    assert isinstance(ev, cat.AgentPhone) and ev.contacts == 2
    # every reason the docstring explains is one a Lua emitter sends, and the other way round
    emitters = [(LUA / w.split(":")[0]).read_text() for e, _, w in lua_emits() if e == "agent.phone"]
    sent = {r for text in emitters for r in re.findall(r"'(registered|unregistered|devices|stale)'", text)}
    documented = set(re.findall(r"``(registered|unregistered|devices|stale)``", cat.AgentPhone.__doc__ or ""))
    assert sent == documented == {"registered", "unregistered", "devices", "stale"}
