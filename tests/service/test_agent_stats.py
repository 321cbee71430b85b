"""Per-agent statistics on a real Redis: the time in each state split at interval boundaries, handled /
talk / hold counters, the running state added at read time; the API (roles, bad parameters, CSV), a
queue's intervals, and a supervisor forcing an agent's state or signing it out (audited, ``by`` on the
event, applied after the call when forced on an agent on a call).

Times are made long by moving ``state_since`` / the call's times back (the scripts measure from those
fields): no test sleeps for the minutes it talks about."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings
from ivr.core.errors import Conflict
from ivr.core.events import AgentState
from ivr.queues.agent_stats import AgentStatsStore, add_running, local_days
from ivr.queues.stats import StatsConfig, iso
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer, free_port
from tests.service.pages import serving

PREFIX = "ags"
INTERVAL = 900
CONFIG = StatsConfig(interval_s=INTERVAL, service_level_s=(10, 20), short_abandon_s=0, keep_days=35)
SUPER = {"Authorization": "Bearer super1-demo-token"}
AGENT1 = {"Authorization": "Bearer agent1-demo-token"}


@pytest.fixture
def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX, stats=CONFIG)


@pytest.fixture
async def agents(store: QueueStore) -> AgentStatsStore:
    for aid in ("agent1", "agent2"):
        await store.register_agent(aid, name=aid, skills={"billing": 3}, sip_uri=f"sip:{aid}@127.0.0.1:5999",
                                   languages=["en"])
    return AgentStatsStore(store)


async def backdate_state(store: QueueStore, aid: str, since_ms: int) -> None:
    await store.redis.hset(store.keys.agent(aid), "state_since", str(since_ms))


async def intervals(store: QueueStore, aid: str) -> dict[int, dict[str, int]]:
    """The stored counters of the agent (no running time), by interval start."""
    out = {}
    for start in await store.redis.zrange(store.keys.agent_intervals(aid), 0, -1):
        raw = await store.redis.hgetall(store.keys.agent_interval(aid, int(start)))
        out[int(start)] = {k.decode(): int(v) for k, v in raw.items()}
    return out


async def call_to(store: QueueStore, cid: str, aid: str = "agent1") -> None:
    """Call ``cid`` queued in billing and answered by ``aid`` (available first)."""
    await store.call_start(cid, "w0", ani="+15550001", dnis="1000", hotline="demo", language="en", plan_version="v1")
    await store.set_agent_state(aid, AgentState.AVAILABLE)
    offer = await store.enqueue(cid, queue="billing", skill="billing", priority=0, journey={})
    assert offer is not None and offer.agent_id == aid
    assert await store.offer_answered(cid, offer.offer_id) == aid


async def backdate_call(store: QueueStore, cid: str, seconds: int) -> None:
    call = await store.get_call(cid)
    assert call is not None
    for name in ("started_at", "queued_at", "offered_at", "answered_at", "agent_since"):
        if call.get(name):
            await store.set_call_field(cid, name, str(int(call[name]) - seconds * 1000))


# --- the counters -------------------------------------------------------------------------------

async def test_time_in_a_state_is_split_at_the_interval_boundaries(store: QueueStore, agents: AgentStatsStore) -> None:
    await store.set_agent_state("agent1", AgentState.BREAK, "lunch")
    now_s = int(time.time())
    cur = now_s - now_s % INTERVAL
    # on break since 100 s before the interval before the current one began: 100 s, a whole interval, the rest
    since = (cur - INTERVAL - 100) * 1000
    await backdate_state(store, "agent1", since)
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    got = await intervals(store, "agent1")
    assert got[cur - 2 * INTERVAL]["ms_break"] == 100_000
    assert got[cur - INTERVAL]["ms_break"] == INTERVAL * 1000
    agent = await store.get_agent("agent1")
    assert agent is not None
    # the current interval holds the rest, up to the change (state_since of the new state)
    assert got[cur]["ms_break"] == int(agent["state_since"]) - cur * 1000
    assert sum(v["ms_break"] for v in got.values()) == int(agent["state_since"]) - since
    for start, v in got.items():
        assert v["start"] == start and v["length_s"] == INTERVAL
        ttl = await store.redis.ttl(store.keys.agent_interval("agent1", start))
        assert 0 < ttl <= 35 * 86400 - (now_s - start - INTERVAL)  # 35 days after the interval began
    # offline time is not counted: agent2 was offline since it was registered
    await backdate_state(store, "agent2", since)
    await store.set_agent_state("agent2", AgentState.AVAILABLE)
    assert await intervals(store, "agent2") == {}


async def test_agent_figures_are_kept_35_days_even_when_the_queues_keep_longer(redis: Redis) -> None:
    store = QueueStore(redis, prefix=PREFIX, stats=StatsConfig(interval_s=INTERVAL, keep_days=63))
    await store.register_agent("agent1", name="a", skills={"billing": 3}, sip_uri=None, languages=["en"])
    await store.set_agent_state("agent1", AgentState.BREAK)
    # a second on break (both changes may fall in the same millisecond: no time, no interval written)
    await backdate_state(store, "agent1", int(time.time() * 1000) - 1000)
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    starts = list((await intervals(store, "agent1")).keys())
    assert starts, "the second on break is in an interval"
    for start in starts:  # one, or two when the second straddles an interval's start
        assert 34 * 86400 < await store.redis.ttl(store.keys.agent_interval("agent1", start)) <= 35 * 86400
    assert 34 * 86400 < await store.redis.ttl(store.keys.agent_intervals("agent1")) <= 35 * 86400


async def test_a_state_held_for_days_counts_its_last_48_hours_only(store: QueueStore, agents: AgentStatsStore) -> None:
    await store.set_agent_state("agent1", AgentState.BREAK, "holiday")
    await backdate_state(store, "agent1", int(time.time() * 1000) - 60 * 86400 * 1000)  # 60 days ago
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    got = await intervals(store, "agent1")
    total = sum(v["ms_break"] for v in got.values())
    # from the first interval that begins within the last 48 hours (one change writes at most 192), all indexed
    assert (2 * 86400 - INTERVAL) * 1000 < total <= 2 * 86400 * 1000
    assert len(got) <= 2 * 86400 // INTERVAL


async def test_a_handled_call_counts_handle_talk_and_hold(store: QueueStore, agents: AgentStatsStore) -> None:
    await call_to(store, "c1")
    await backdate_call(store, "c1", 60)
    await store.set_call_field("c1", "hold_s", "10")  # 10 s on hold during the minute
    await store.end_call("c1", reason="caller_hangup", wrapup_s=5, ttl_s=3600)
    stored = merge_raw(await intervals(store, "agent1"))
    assert stored["handled"] == 1
    assert stored["hold_ms"] == 10_000
    assert 65_000 <= stored["handle_ms"] < 66_000  # 60 s connected (+ the ms the test took) + 5 s wrap-up
    assert stored["talk_ms"] == stored["handle_ms"] - 10_000 - 5_000
    # the queue counts the same handle time (one formula)
    q = [iv async for iv in store.iter_intervals("billing", 0, int(time.time()) + 10)]
    assert sum(iv.counts.get("handle_ms", 0) for iv in q) == stored["handle_ms"]
    today = await agents.today("agent1")
    assert today["handled"] == 1 and today["aht_s"] == round(stored["handle_ms"] / 1000, 4)
    assert today["avg_hold_s"] == 10.0
    agent = await store.get_agent("agent1")
    assert agent is not None and agent["state"] == "wrapup"  # its state time is the agent's (state_since), apart


def merge_raw(rows: dict[int, dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in rows.values():
        for name, n in v.items():
            if name not in ("start", "length_s"):
                out[name] = out.get(name, 0) + n
    return out


async def test_the_running_state_is_added_at_read_time_and_occupancy_follows(
        store: QueueStore, agents: AgentStatsStore) -> None:
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    now_ms = int(time.time() * 1000)
    await backdate_state(store, "agent1", now_ms - 30_000)  # available for 30 s, nothing stored yet
    assert await intervals(store, "agent1") == {}
    await call_to(store, "c1")  # available -> reserved -> oncall (the reserved and available time stored)
    await backdate_state(store, "agent1", int(time.time() * 1000) - 90_000)  # on the call for 90 s
    today = await agents.today("agent1")
    assert 30_000 <= today["ms_available"] < 31_000
    assert 90_000 <= today["ms_oncall"] < 91_000
    busy = today["ms_reserved"] + today["ms_oncall"] + today["ms_wrapup"]
    assert today["occupancy"] == round(busy / (busy + today["ms_available"]), 4)
    assert today["signed_in_ms"] == busy + today["ms_available"] + today["ms_break"]
    # a read of a past range adds nothing of the running state
    past = [g async for g in agents.read(["agent1"], 0, 900)]
    assert past[0].intervals == [] and past[0].state == "oncall"


# --- forcing a state ------------------------------------------------------------------------------

async def events(store: QueueStore, etype: str) -> list[dict[str, Any]]:
    out = []
    for _, fields in await store.redis.xrange(store.keys.events):
        f = {k.decode(): v.decode() for k, v in fields.items()}
        if f["type"] == etype:
            out.append(json.loads(f["data"]))
    return out


async def test_a_forced_sign_out_waits_for_the_end_of_the_call_and_no_call_is_offered_meanwhile(
        store: QueueStore, agents: AgentStatsStore) -> None:
    await call_to(store, "c1")
    with pytest.raises(Conflict) as busy:
        await agents.force("agent1", "offline", "end of shift", by="super1", force=False)
    assert busy.value.code == "agent.busy"
    with pytest.raises(Conflict):
        await agents.force("agent1", "available", "", by="super1", force=True)  # never pending
    res = await agents.force("agent1", "offline", "end of shift", by="super1", force=True)
    assert res == {"applied": False, "pending": "offline"}
    a = await store.get_agent("agent1")
    assert a is not None and a["state"] == "oncall" and a["pending_state"] == "offline" and a["pending_by"] == "super1"
    pend = await events(store, "agent.state_pending")
    assert pend[-1]["state"] == "offline" and pend[-1]["by"] == "super1" and pend[-1]["current"] == "oncall"
    # a caller waits for billing; agent1's call ends without wrap-up: it signs out instead of taking it
    await store.call_start("c2", "w0", ani="+15550002", dnis="1000", hotline="demo", language="en", plan_version="v1")
    assert await store.enqueue("c2", queue="billing", skill="billing", priority=0, journey={}) is None
    await store.end_call("c1", reason="caller_hangup", wrapup_s=0, ttl_s=3600)
    a = await store.get_agent("agent1")
    assert a is not None and a["state"] == "offline" and a["reason"] == "end of shift" and "pending_state" not in a
    c2 = await store.get_call("c2")
    assert c2 is not None and c2["state"] == "queued"
    last = (await events(store, "agent.state"))[-1]
    assert last["agent_id"] == "agent1" and last["state"] == "offline" and last["by"] == "super1"


async def test_a_pending_break_applies_after_the_wrapup(store: QueueStore, agents: AgentStatsStore) -> None:
    await call_to(store, "c1")
    await agents.force("agent1", "break", "coaching", by="super1", force=True)
    await store.end_call("c1", reason="caller_hangup", wrapup_s=30, ttl_s=3600)
    a = await store.get_agent("agent1")
    assert a is not None and a["state"] == "wrapup" and a["pending_state"] == "break"
    # the wrap-up ends (the agent says "ready"): the break applies instead of available
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    a = await store.get_agent("agent1")
    assert a is not None and a["state"] == "break" and a["reason"] == "coaching"
    # an agent not on a call changes at once
    res = await agents.force("agent1", "available", "", by="super1", force=False)
    assert res["applied"] is True
    assert (await events(store, "agent.state"))[-1]["by"] == "super1"


# --- the API -----------------------------------------------------------------------------------------

@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    return Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                    api={"host": "127.0.0.1", "port": free_port()},
                    routing={"queues": {"support": {}}})


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with serving(settings) as url, aiohttp.ClientSession() as http:
        yield url, http


async def test_agent_stats_api_roles_params_and_csv(api: tuple[str, aiohttp.ClientSession], redis: Redis) -> None:
    url, http = api
    store = QueueStore(redis, prefix=PREFIX)
    await call_to(store, "c1")
    await store.set_call_field("c1", "hold_s", "4")
    await store.end_call("c1", reason="caller_hangup", wrapup_s=0, ttl_s=3600)
    async with http.get(f"{url}/api/v1/agents/stats", headers=SUPER) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert body["by"] == "day" and body["interval_s"] == 900
    a1 = next(a for a in body["agents"] if a["agent_id"] == "agent1")
    assert a1["total"]["handled"] == 1 and a1["total"]["hold_ms"] == 4000 and a1["state"] == "available"
    assert len(a1["rows"]) == 1 and a1["rows"][0]["length_s"] == 86400
    async with http.get(f"{url}/api/v1/agents/agent1/stats?by=interval", headers=AGENT1) as r:
        assert r.status == 200
        mine = await r.json()
    assert [a["agent_id"] for a in mine["agents"]] == ["agent1"]
    assert mine["agents"][0]["rows"][-1]["length_s"] == 900
    async with http.get(f"{url}/api/v1/agents/stats?format=csv", headers=SUPER) as r:
        assert r.status == 200 and r.content_type == "text/csv"
        assert "attachment" in r.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO(await r.text())))
    assert any(row["agent_id"] == "agent1" and row["handled"] == "1" and row["hold_ms"] == "4000" for row in rows)
    async with http.get(f"{url}/api/v1/agents/agent1/stats", headers={**AGENT1, "Accept": "text/csv"}) as r:
        assert r.status == 200 and r.content_type == "text/csv"
    for path, headers, status, code in (
            ("/api/v1/agents/stats", AGENT1, 403, "auth.forbidden"),
            ("/api/v1/agents/agent2/stats", AGENT1, 403, "auth.forbidden"),
            ("/api/v1/agents/nobody/stats", SUPER, 404, "agent.not_found"),
            ("/api/v1/agents/stats?by=week", SUPER, 400, "request.invalid"),
            ("/api/v1/agents/stats?since=yesterday", SUPER, 400, "request.invalid"),
            ("/api/v1/agents/stats?format=xml", SUPER, 400, "request.invalid"),
            ("/api/v1/agents/stats?since=2025-13-01", SUPER, 400, "request.invalid"),
            ("/api/v1/agents/stats?since=" + "9" * 70, SUPER, 400, "request.invalid")):
        async with http.get(f"{url}{path}", headers=headers) as r:
            assert r.status == status, (path, await r.text())
            assert (await r.json())["error"]["code"] == code, path
    async with http.get(f"{url}/api/v1/agents/stats") as r:
        assert r.status == 401
    # bounded ranges: a longer one is cut to its end, an empty one is empty
    for query, days in (("since=2025-01-01&until=2025-06-01", 35),
                        ("by=interval&since=2025-01-01&until=2025-01-20", 7)):
        async with http.get(f"{url}/api/v1/agents/stats?{query}", headers=SUPER) as r:
            body = await r.json()
        assert body["cut"] is True
        span = (_epoch(body["until"]) - _epoch(body["since"])) / 86400
        assert days <= span < days + 1 / 96
    async with http.get(f"{url}/api/v1/agents/stats?since=2026-01-01&until=2025-12-01", headers=SUPER) as r:
        body = await r.json()
    assert r.status == 200 and all(a["rows"] == [] for a in body["agents"])


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def test_queue_intervals_api(api: tuple[str, aiohttp.ClientSession], redis: Redis) -> None:
    url, http = api
    store = QueueStore(redis, prefix=PREFIX)
    await call_to(store, "c1")
    now = int(time.time())
    cur = now - now % 900
    since, until = iso(cur - 3600), iso(cur + 900)
    async with http.get(f"{url}/api/v1/queues/billing/intervals", params={"since": since, "until": until},
                        headers=SUPER) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert [iv["start"] for iv in body["intervals"]] == [iso(s) for s in range(cur - 3600, cur + 900, 900)]
    assert body["intervals"][-1]["offered"] == 1 and body["intervals"][-1]["answered"] == 1
    assert body["intervals"][-1]["service_level"]["10"]["sl2"] == 1.0
    assert body["intervals"][0]["offered"] == 0 and body["intervals"][0]["service_level"]["10"]["sl2"] is None
    assert body["thresholds"] == [10, 20]
    # a configured queue with no call yet: zeros, not 404
    async with http.get(f"{url}/api/v1/queues/support/intervals", headers=SUPER) as r:
        assert r.status == 200
        assert all(iv["offered"] == 0 for iv in (await r.json())["intervals"])
    async with http.get(f"{url}/api/v1/queues/billing/intervals?format=csv", headers=SUPER) as r:
        assert r.status == 200 and r.content_type == "text/csv"
        rows = list(csv.DictReader(io.StringIO(await r.text())))
    assert rows[-1]["offered"] == "1" and rows[-1]["sl2_10"] == "1.0"
    for path, headers, status in (("/api/v1/queues/nope/intervals", SUPER, 404),
                                  ("/api/v1/queues/billing/intervals", AGENT1, 403),
                                  ("/api/v1/queues/billing/intervals?since=yesterday", SUPER, 400),
                                  ("/api/v1/queues/billing/intervals?format=pdf", SUPER, 400)):
        async with http.get(f"{url}{path}", headers=headers) as r:
            assert r.status == status, path


async def test_force_api_is_audited_and_checked(api: tuple[str, aiohttp.ClientSession], redis: Redis) -> None:
    url, http = api
    store = QueueStore(redis, prefix=PREFIX)
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    async with http.post(f"{url}/api/v1/agents/agent1/force", json={"state": "break", "reason": "meeting"},
                         headers=SUPER) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert body["applied"] is True and body["agent"]["state"] == "break" and body["agent"]["reason"] == "meeting"
    await call_to(store, "c1")
    async with http.post(f"{url}/api/v1/agents/agent1/force", json={"state": "offline"}, headers=SUPER) as r:
        assert r.status == 409 and (await r.json())["error"]["code"] == "agent.busy"
    async with http.post(f"{url}/api/v1/agents/agent1/force", json={"state": "offline", "force": True},
                         headers=SUPER) as r:
        assert r.status == 200
        body = await r.json()
    assert body["applied"] is False and body["pending"]["state"] == "offline" and body["pending"]["by"] == "super1"
    entries, _ = await store.audit_entries(action="agent.forced")
    assert [e["detail"]["applied"] for e in entries] == ["after_call", "now"]  # newest first
    assert entries[0]["by"] == "super1" and entries[0]["target"] == "agent:agent1" and entries[0]["call_id"] == "c1"
    # the existing state route, used by a supervisor on another agent, is the same forced change
    async with http.post(f"{url}/api/v1/agents/agent2/state", json={"state": "break", "reason": "training"},
                         headers=SUPER) as r:
        assert r.status == 200
    entries, _ = await store.audit_entries(action="agent.forced", target="agent:agent2")
    assert len(entries) == 1
    for payload, headers, status in (({"state": "break"}, AGENT1, 403),
                                     ({"state": "oncall"}, SUPER, 400),
                                     ({"state": "break", "force": 1}, SUPER, 400),
                                     ({"state": "break", "reason": "x" * 65}, SUPER, 400),
                                     ({"state": "break", "force": "yes"}, SUPER, 400),
                                     ({"state": "break", "extra": 1}, SUPER, 400)):
        async with http.post(f"{url}/api/v1/agents/agent2/force", json=payload, headers=headers) as r:
            assert r.status == status, (payload, await r.text())
    async with http.post(f"{url}/api/v1/agents/ghost/force", json={"state": "break"}, headers=SUPER) as r:
        assert r.status == 404


def test_local_days_follow_the_servers_time_zone_across_a_dst_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """By-day rows are local days: a 23-hour day (Europe/Berlin, 2025-03-30) starts and ends at midnight."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        lo = int(datetime.fromisoformat("2025-03-29T10:00:00+01:00").timestamp())
        hi = int(datetime.fromisoformat("2025-04-01T00:00:00+02:00").timestamp())
        days = local_days(lo, hi)
        assert [datetime.fromtimestamp(d).isoformat() for d in days] == [
            "2025-03-29T00:00:00", "2025-03-30T00:00:00", "2025-03-31T00:00:00"]
        assert days[2] - days[1] == 23 * 3600
        # running time is summed into the day it falls in
        ivs = add_running([], "break", (days[1] + 23 * 3600 - 600) * 1000, days[0], hi, (days[2] + 600) * 1000,
                          INTERVAL, days)
        assert [(iv.start_s, iv.counts["ms_break"]) for iv in ivs] == [(days[1], 600_000), (days[2], 600_000)]
    finally:
        monkeypatch.undo()
        time.tzset()
