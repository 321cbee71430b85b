"""The call list (``GET /api/v1/calls``) and the typed call record, on a real Redis through a real
API server: filters, cursor pages while calls keep arriving, who sees what, hostile parameters, the
record's types (and old records), one wait figure for pop, record, statistics and report, and hold
and transfers in the statistics as call control writes them (docs/call-control.md)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings
from ivr.core.events import AgentState
from ivr.queues.report import CALL_COLUMNS, call_row
from ivr.queues.store import CallQuery, QueueStore
from tests.conftest import RedisServer
from tests.ports import free_udp_tcp_port
from tests.service.test_cti_api import Api, Feed, code_of

PREFIX = "list"
SUPER = {"Authorization": "Bearer super1-demo-token"}
ADMIN = {"Authorization": "Bearer admin-demo-token"}
AGENT1 = {"Authorization": "Bearer agent1-demo-token"}
AGENT2 = {"Authorization": "Bearer agent2-demo-token"}


@pytest.fixture
async def api(tmp_path: Path, redis_server: RedisServer, redis: Redis) -> AsyncIterator[Api]:
    s = Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                 api={"host": "127.0.0.1", "port": free_udp_tcp_port()})
    a = Api(s)
    await a.start()
    yield a
    await a.stop()



@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    s = QueueStore(redis, prefix=PREFIX)
    for aid in ("agent1", "agent2"):
        await s.register_agent(aid, name=aid, skills={"billing": 3, "sales": 3}, sip_uri=f"sip:{aid}@127.0.0.1:5999",
                               languages=["en"])
    return s


async def only(store: QueueStore, agent: str | None) -> None:
    """``agent`` alone available (None: nobody); agents on a call stay on it."""
    for aid in ("agent1", "agent2"):
        got = await store.get_agent(aid)
        if aid != agent and got is not None and got["state"] not in ("reserved", "oncall"):
            await store.set_agent_state(aid, AgentState.BREAK)
    if agent is not None:
        await store.set_agent_state(agent, AgentState.AVAILABLE)


async def start(store: QueueStore, cid: str, *, ani: str = "+15550001", dnis: str = "1000") -> None:
    await store.call_start(cid, "w0", ani=ani, dnis=dnis, hotline="demo", language="en", plan_version="v1")


async def answered(store: QueueStore, cid: str, agent: str, queue: str = "billing", *, ani: str = "+15550001",
                   end: bool = True) -> None:
    """A call ``agent`` answered in ``queue`` (and that ended, unless ``end`` is False)."""
    await start(store, cid, ani=ani)
    await only(store, agent)
    offer = await store.enqueue(cid, queue=queue, skill=queue, priority=0, journey={"steps": []})
    assert offer is not None and offer.agent_id == agent
    await store.offer_answered(cid, offer.offer_id)
    if end:
        await store.end_call(cid, reason="hangup", wrapup_s=0, ttl_s=3600)


async def abandoned(store: QueueStore, cid: str, queue: str = "billing", *, ani: str = "+15550001") -> None:
    await only(store, None)
    await start(store, cid, ani=ani)
    assert await store.enqueue(cid, queue=queue, skill=queue, priority=0, journey={"steps": []}) is None
    await store.end_call(cid, reason="hangup", wrapup_s=0, ttl_s=3600)


async def ids(http: aiohttp.ClientSession, api: Api, headers: dict[str, str], **params: str) -> list[str]:
    async with http.get(f"{api.url}/api/v1/calls", headers=headers, params=params) as r:
        assert r.status == 200, await r.text()
        data = await r.json()
    assert data["next_cursor"] is None
    return [c["call_id"] for c in data["calls"]]


async def seed(store: QueueStore) -> dict[str, dict[str, Any]]:
    """Six calls of every kind, c01 the oldest, each started in a later millisecond (the time filter's
    bounds are start times: two in the same millisecond could not be told apart); returns their records."""
    step = 0.003
    await answered(store, "c01", "agent1", "billing", ani="+15550001")
    await asyncio.sleep(step)
    await answered(store, "c02", "agent2", "sales", ani="+15550002")
    await asyncio.sleep(step)
    await abandoned(store, "c03", "billing", ani="+15559999")
    await asyncio.sleep(step)
    await start(store, "c04", ani="anonymous", dnis="2000")  # stays in the IVR and ends there
    await store.end_call("c04", reason="hangup", wrapup_s=0, ttl_s=3600)
    await asyncio.sleep(step)
    await start(store, "c05", ani="+15550001")  # an outbound call as click-to-dial writes it
    await store.record_field("c05", "direction", "outbound")
    await store.record_field("c05", "number", "+821012345678")
    await asyncio.sleep(step)
    await answered(store, "c06", "agent1", "sales", ani="+15550003", end=False)  # still talking
    return {cid: (await store.get_call(cid)) or {} for cid in ("c01", "c02", "c03", "c04", "c05", "c06")}


# --- filters -----------------------------------------------------------------------------------------

async def test_every_filter_narrows_the_list_newest_first(
        api: Api, http: aiohttp.ClientSession, store: QueueStore) -> None:
    records = await seed(store)
    newest = ["c06", "c05", "c04", "c03", "c02", "c01"]
    assert await ids(http, api, SUPER) == newest
    assert await ids(http, api, ADMIN, agent_id="agent1") == ["c06", "c01"]
    assert await ids(http, api, SUPER, queue="billing") == ["c03", "c01"]
    assert await ids(http, api, SUPER, queue="sales", agent_id="agent1") == ["c06"]
    assert await ids(http, api, SUPER, outcome="abandoned") == ["c03"]
    assert await ids(http, api, SUPER, outcome="completed") == ["c02", "c01"]
    assert await ids(http, api, SUPER, outcome="ivr") == ["c04"]
    assert await ids(http, api, SUPER, direction="outbound") == ["c05"]
    assert await ids(http, api, SUPER, direction="inbound") == ["c06", "c04", "c03", "c02", "c01"]
    assert await ids(http, api, SUPER, number="+15550001") == ["c05", "c01"]
    assert await ids(http, api, SUPER, number="+1555000*") == ["c06", "c05", "c02", "c01"]
    assert await ids(http, api, SUPER, number="2000") == ["c04"]  # the dialled number
    assert await ids(http, api, SUPER, number="+8210*") == ["c05"]  # the number an outbound call dials
    assert await ids(http, api, SUPER, number="+1555") == []  # exact unless it ends with *
    assert await ids(http, api, SUPER, queue="nobody") == []
    # time: [from, to) on the start, as ISO 8601 or epoch seconds
    t3, t5 = int(records["c03"]["started_at"]), int(records["c05"]["started_at"])
    expected = [c for c in newest if t3 <= int(records[c]["started_at"]) < t5]
    assert "c03" in expected and "c04" in expected and "c05" not in expected
    assert await ids(http, api, SUPER, **{"from": f"{t3 / 1000:.3f}", "to": f"{t5 / 1000:.3f}"}) == expected
    iso_from = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t3 // 1000)) + f".{t3 % 1000:03d}+00:00"
    assert await ids(http, api, SUPER, **{"from": iso_from, "to": f"{t5 / 1000:.3f}"}) == expected
    assert await ids(http, api, SUPER, **{"from": f"{t5 / 1000:.3f}", "to": f"{t3 / 1000:.3f}"}) == []
    assert await ids(http, api, SUPER, to="2000-01-01") == []


# --- pages ---------------------------------------------------------------------------------------------

async def page(http: aiohttp.ClientSession, api: Api, headers: dict[str, str],
               **params: str) -> tuple[list[str], str | None]:
    async with http.get(f"{api.url}/api/v1/calls", headers=headers, params=params) as r:
        assert r.status == 200, await r.text()
        data = await r.json()
    return [c["call_id"] for c in data["calls"]], data["next_cursor"]


async def test_pages_go_on_where_they_stopped_while_new_calls_arrive(
        api: Api, http: aiohttp.ClientSession, store: QueueStore) -> None:
    for i in range(25):
        await start(store, f"p{i:02d}", ani=f"+1666{i:04d}")
    first, cursor = await page(http, api, SUPER, limit="10")
    assert first == [f"p{i:02d}" for i in range(24, 14, -1)] and cursor
    for i in range(25, 30):  # new calls while the agent reads
        await start(store, f"p{i:02d}")
    second, cursor2 = await page(http, api, SUPER, limit="10", cursor=cursor)
    assert second == [f"p{i:02d}" for i in range(14, 4, -1)] and cursor2
    third, cursor3 = await page(http, api, SUPER, limit="10", cursor=cursor2)
    assert third == [f"p{i:02d}" for i in range(4, -1, -1)] and cursor3 is None
    fresh, _ = await page(http, api, SUPER, limit="5")
    assert fresh == [f"p{i:02d}" for i in range(29, 24, -1)]
    # the same pages with a filter that the index does not apply (fewer per page, same order)
    seen: list[str] = []
    cursor_n: str | None = ""
    for _ in range(10):
        got, cursor_n = await page(http, api, SUPER, limit="4", number="+16660*",
                                   **({"cursor": cursor_n} if cursor_n else {}))
        seen += got
        if cursor_n is None:
            break
    assert seen == [f"p{i:02d}" for i in range(24, -1, -1)]


async def test_calls_of_the_same_millisecond_are_neither_lost_nor_repeated_across_pages(
        api: Api, http: aiohttp.ClientSession, store: QueueStore, redis: Redis) -> None:
    for i in range(7):
        await start(store, f"t{i}")
    index = store.keys.calls_index
    await redis.zadd(index, {f"t{i}": 1_700_000_000_000 for i in range(7)})  # the same start, as a burst may have
    got: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        ids_, cursor = await page(http, api, SUPER, limit="3", **({"cursor": cursor} if cursor else {}))
        got += ids_
        if cursor is None:
            break
    assert got == [f"t{i}" for i in range(6, -1, -1)]


async def test_an_expired_record_leaves_no_hole_and_no_error(
        api: Api, http: aiohttp.ClientSession, store: QueueStore, redis: Redis) -> None:
    for cid in ("e1", "e2", "e3"):
        await start(store, cid)
    await redis.delete(store.keys.call("e2"))  # its TTL ran out; the index still names it
    assert await ids(http, api, SUPER) == ["e3", "e1"]


# --- who sees what -----------------------------------------------------------------------------------

async def test_an_agent_sees_only_its_own_calls_whatever_it_asks(
        api: Api, http: aiohttp.ClientSession, store: QueueStore) -> None:
    await seed(store)
    assert await ids(http, api, AGENT1) == ["c06", "c01"]
    assert await ids(http, api, AGENT1, agent_id="agent2") == ["c06", "c01"]
    assert await ids(http, api, AGENT1, number="+15550002") == []  # agent2's caller
    assert await ids(http, api, AGENT2) == ["c02"]
    assert await ids(http, api, SUPER, agent_id="agent2") == ["c02"]
    async with http.get(f"{api.url}/api/v1/calls/c02", headers=AGENT1) as r:
        assert r.status == 403 and await code_of(r) == "auth.forbidden"
    async with http.get(f"{api.url}/api/v1/calls") as r:
        assert r.status == 401
    # a cursor made for a supervisor's query does not open another agent's calls to an agent
    _, cursor = await page(http, api, SUPER, limit="1", agent_id="agent1")
    assert cursor is not None
    async with http.get(f"{api.url}/api/v1/calls", headers=AGENT2,
                        params={"limit": "1", "agent_id": "agent1", "cursor": cursor}) as r:
        assert r.status == 400 and await code_of(r) == "request.invalid"


async def test_the_agent_who_transferred_a_call_still_finds_it(
        api: Api, http: aiohttp.ClientSession, store: QueueStore) -> None:
    await answered(store, "x1", "agent1", end=False)
    # a blind transfer as call control writes it: agent2 has the call now, agent1 sent it
    await store.record_field("x1", "agent_id", "agent2")
    await store.record_field("x1", "transferred_from", "agent1")
    await store.record_field("x1", "transfers", json.dumps([{"at": 1, "by": "agent1", "from_agent": "agent1",
                                                             "target_type": "agent", "target": "agent2",
                                                             "mode": "blind"}]))
    await store.end_call("x1", reason="hangup", wrapup_s=0, ttl_s=3600)
    assert await ids(http, api, AGENT1) == ["x1"]
    assert await ids(http, api, AGENT2) == ["x1"]
    for headers in (AGENT1, AGENT2):  # and both may open the record the list shows them
        async with http.get(f"{api.url}/api/v1/calls/x1", headers=headers) as r:
            assert r.status == 200 and (await r.json())["transferred_from"] == "agent1"


async def test_the_agents_of_a_conference_find_the_call(
        api: Api, http: aiohttp.ClientSession, store: QueueStore) -> None:
    await answered(store, "f1", "agent1", end=False)
    await store.record_field("f1", "conference", json.dumps(["agent1", "agent2"]))
    await store.end_call("f1", reason="hangup", wrapup_s=0, ttl_s=3600)
    assert await ids(http, api, AGENT2) == ["f1"]
    async with http.get(f"{api.url}/api/v1/calls/f1", headers=AGENT2) as r:
        assert r.status == 200


# --- hostile parameters ------------------------------------------------------------------------------

def _b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


@pytest.mark.parametrize("params", [
    {"from": "yesterday"}, {"from": "2024-13-45"}, {"to": "2024-05-01T25:00"}, {"from": "1e10"}, {"from": "-5"},
    {"from": "１７００"}, {"limit": "0"}, {"limit": "201"}, {"limit": "-1"}, {"limit": "10000000000000"},
    {"limit": "²"}, {"limit": "ten"}, {"cursor": "!!!"}, {"cursor": "abc"}, {"cursor": "x" * 401},
    {"cursor": _b64({"s": 1, "c": "c01"})}, {"cursor": _b64({"s": "1", "c": "c01", "q": "x"})},
    {"cursor": _b64({"s": 10**30, "c": "c01", "q": "x"})}, {"cursor": _b64([1, 2, 3])},
    {"cursor": _b64({"s": 1, "c": "c\x00", "q": "x"})}, {"number": "٣٣٣"}, {"number": "+1 555"},
    {"number": "*"}, {"number": "1" * 65}, {"agent_id": "agent١"}, {"agent_id": "a/b"}, {"queue": "bil ling"},
    {"outcome": "won"}, {"direction": "sideways"}, {"queue": "\u202ebilling"},
])
async def test_a_bad_parameter_is_a_clear_400(
        api: Api, http: aiohttp.ClientSession, store: QueueStore, params: dict[str, str]) -> None:
    await seed(store)
    for headers in (SUPER, AGENT1):
        async with http.get(f"{api.url}/api/v1/calls", headers=headers, params=params) as r:
            assert r.status == 400, (params, r.status, await r.text())
            assert await code_of(r) == "request.invalid"


async def test_a_cursor_of_other_filters_is_refused_and_the_largest_page_is_200(
        api: Api, http: aiohttp.ClientSession, store: QueueStore) -> None:
    for i in range(205):
        await start(store, f"b{i:03d}")
    got, cursor = await page(http, api, SUPER, limit="200")
    assert len(got) == 200 and cursor
    async with http.get(f"{api.url}/api/v1/calls", headers=SUPER, params={"cursor": cursor, "queue": "x"}) as r:
        assert r.status == 400 and "cursor" in (await r.json())["error"]["message"]
    rest, end = await page(http, api, SUPER, limit="200", cursor=cursor)
    assert rest == ["b004", "b003", "b002", "b001", "b000"] and end is None


# --- the typed record ----------------------------------------------------------------------------------

async def openapi(http: aiohttp.ClientSession, api: Api) -> dict[str, Any]:
    async with http.get(f"{api.url}/api/openapi.json") as r:
        doc: dict[str, Any] = await r.json()
    return doc


def validator(doc: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**doc["components"]["schemas"][name], "components": doc["components"]})


async def test_the_record_has_objects_and_numbers_and_the_call_control_fields(
        api: Api, http: aiohttp.ClientSession, store: QueueStore) -> None:
    await answered(store, "r1", "agent1", end=False)
    rtp = {"caller": {"rx": 120, "tx": 118}, "agent": {"rx": 117, "tx": 119}}
    await store.set_call_field("r1", "rtp", json.dumps(rtp))
    # the call-control fields as the contract says they are written
    for name, value in {"direction": "inbound", "hold_s": "12.5", "hold_count": "2", "muted": "1",
                        "consult": json.dumps({"target_type": "agent", "target": "agent2", "agent_id": "agent1",
                                               "state": "ringing"}),
                        "transfers": json.dumps([{"at": 1700000000000, "by": "agent1", "from_agent": "agent1",
                                                  "target_type": "queue", "target": "sales", "mode": "blind"}]),
                        "transferred_from": "agent1", "conference": json.dumps(["agent1", "agent2"])}.items():
        await store.record_field("r1", name, value)
    async with http.get(f"{api.url}/api/v1/calls/r1", headers=SUPER) as r:
        assert r.status == 200
        rec = await r.json()
    assert rec["rtp"] == rtp
    assert rec["route"]["alts"][0]["skills"] == ["billing"] and rec["stages"] == []
    assert isinstance(rec["priority"], int) and isinstance(rec["started_at"], int)
    assert isinstance(rec["answered_at"], int) and rec["answered_at"] >= rec["queued_at"]
    assert isinstance(rec["offers"], int) and isinstance(rec["waited_s"], float)
    assert rec["hold_s"] == 12.5 and rec["hold_count"] == 2 and rec["muted"] is True
    assert rec["consult"]["target"] == "agent2" and rec["transfers"][0]["mode"] == "blind"
    assert rec["transferred_from"] == "agent1" and rec["conference"] == ["agent1", "agent2"]
    assert "waited_ms" not in rec
    doc = await openapi(http, api)
    validator(doc, "CallRecord").validate(rec)
    async with http.get(f"{api.url}/api/v1/calls", headers=SUPER) as r:
        listed = await r.json()
    validator(doc, "CallList").validate(listed)
    assert listed["calls"] == [rec]  # the list and the record: one schema, one decoding


async def test_an_old_or_broken_record_still_serializes(
        api: Api, http: aiohttp.ClientSession, store: QueueStore, redis: Redis) -> None:
    await start(store, "o1")
    await redis.hset(store.keys.call("o1"), mapping={
        "priority": "high", "hold_s": "a while", "transfers": "{not json", "conference": '"agent1"',
        "rtp": "[1, 2]", "muted": "1", "queued_at": "1700000000000.0", "legacy_field": "kept as written",
        "journey": "{}"})
    async with http.get(f"{api.url}/api/v1/calls/o1", headers=SUPER) as r:
        assert r.status == 200
        rec = await r.json()
    for gone in ("priority", "hold_s", "transfers", "conference", "rtp"):
        assert gone not in rec
    assert rec["queued_at"] == 1700000000000 and rec["muted"] is True and rec["legacy_field"] == "kept as written"
    validator(await openapi(http, api), "CallRecord").validate(rec)
    assert await ids(http, api, SUPER) == ["o1"]


# --- one wait figure -----------------------------------------------------------------------------------

async def test_the_pop_the_record_the_queue_statistics_and_the_report_show_the_same_wait(
        api: Api, http: aiohttp.ClientSession, store: QueueStore) -> None:
    feed = Feed(http, f"{api.url}/api/v1/agents/agent1/events", "agent1-demo-token")
    await feed.open()
    try:
        await start(store, "w1")
        assert await store.enqueue("w1", queue="billing", skill="billing", priority=0, journey={}) is None
        await asyncio.sleep(0.2)  # the caller waits for an agent...
        await only(store, "agent1")
        pop = await feed.wait(lambda m: m.get("type") == "call.offered")
        await asyncio.sleep(0.3)  # ...and while the agent's phone rings
        assert await store.offer_answered("w1", pop["offer_id"]) == "agent1"
        answer = await feed.wait(lambda m: m.get("type") == "call.answered")
        await store.end_call("w1", reason="hangup", wrapup_s=0, ttl_s=3600)
    finally:
        await feed.close()
    async with http.get(f"{api.url}/api/v1/calls/w1", headers=AGENT1) as r:
        record = await r.json()
    async with http.get(f"{api.url}/api/v1/queues/billing/stats", headers=SUPER) as r:
        stats = await r.json()
    [(ev, raw)] = [x async for x in store.iter_ended_calls(0, int(time.time() * 1000) + 1000)]
    report = dict(zip(CALL_COLUMNS, call_row(ev, raw), strict=True))
    waited = answer["waited_s"]  # what the desktop's pop shows once the agent answered
    assert record["waited_s"] == waited
    assert stats["period"]["answered"] == 1 and stats["period"]["answer_wait_ms"] / 1000 == waited
    assert float(report["waited_s"]) == waited
    assert waited > pop["waited_s"]  # the ringing counts: the offer only knew the wait until then


# --- hold and transfers in the statistics ------------------------------------------------------------

async def test_hold_counts_in_handle_time_also_when_the_call_ends_held(
        api: Api, http: aiohttp.ClientSession, store: QueueStore, redis: Redis) -> None:
    await answered(store, "h1", "agent1", end=False)
    answered_at = int((await store.get_call("h1") or {})["answered_at"])
    # call control held the call (4 s, closed) and holds it again since 2 s: answered 10 s ago
    await redis.hset(store.keys.call("h1"), mapping={"state": "held", "hold_s": "4.0", "hold_count": "2",
                                                     "held_at": str(answered_at - 2000),
                                                     "answered_at": str(answered_at - 10_000)})
    await store.end_call("h1", reason="hangup", wrapup_s=0, ttl_s=3600)
    agent = await store.get_agent("agent1")
    assert agent is not None and agent["state"] == "available"  # released although it ended held
    async with http.get(f"{api.url}/api/v1/queues/billing/stats", headers=SUPER) as r:
        iv = (await r.json())["period"]
    assert iv["handled"] == 1 and iv["handle_ms"] >= 10_000
    assert 6000 <= iv["hold_ms"] < iv["handle_ms"] and iv["avg_hold_s"] == iv["hold_ms"] / 1000
    assert iv["aht_s"] == round(iv["handle_ms"] / 1000, 4)
    [(ev, raw)] = [x async for x in store.iter_ended_calls(0, int(time.time() * 1000) + 1000)]
    row = dict(zip(CALL_COLUMNS, call_row(ev, raw), strict=True))
    assert row["hold_count"] == "2" and float(row["hold_s"]) >= 6.0
    assert abs(float(row["talk_s"]) + float(row["hold_s"]) - float(row["handle_s"])) < 0.002


async def test_a_transferred_caller_who_hangs_up_in_the_new_queue_is_not_an_abandon(
        api: Api, http: aiohttp.ClientSession, store: QueueStore, redis: Redis) -> None:
    await answered(store, "t1", "agent1", "billing", end=False)
    # a blind transfer to sales as call control writes it: back in a queue, nobody there to take it
    await only(store, None)
    await redis.hset(store.keys.call("t1"), mapping={
        "state": "queued", "queue": "sales", "queued_at": str(int(time.time() * 1000) - 30_000),
        "transferred_from": "agent1",
        "transfers": json.dumps([{"at": 1, "by": "agent1", "from_agent": "agent1", "target_type": "queue",
                                  "target": "sales", "mode": "blind"}])})
    await abandoned(store, "t2", "sales")  # a real abandon next to it, for contrast
    await store.end_call("t1", reason="hangup", wrapup_s=0, ttl_s=3600)
    async with http.get(f"{api.url}/api/v1/queues/sales/stats", headers=SUPER) as r:
        iv = (await r.json())["period"]
    assert iv["transfer_abandoned"] == 1 and iv["abandoned"] + iv["short_abandoned"] == 1
    abandons = [e.data["call_id"] for e in await store.read_events("0-0") if e.type == "call.abandoned"]
    assert abandons == ["t2"]


# --- the store's walk: budget and a cursor whose call left the index ---------------------------------

async def test_a_rare_match_comes_in_short_pages_that_go_on_to_the_end(store: QueueStore) -> None:
    for i in range(12):
        await start(store, f"s{i:02d}", ani="+17770000" if i in (1, 2) else "+15550001")
    query = CallQuery(number="+1777", number_prefix=True)
    got, pages, after = [], 0, None
    for _ in range(10):
        page_ = await store.list_calls(query, limit=50, after=after, budget=5)
        got += [c["call_id"] for c in page_.calls]
        pages += 1
        after = page_.next
        if after is None:
            break
    assert got == ["s02", "s01"] and pages == 3  # 5 + 5 + 2 entries looked at


async def test_a_cursor_whose_call_left_the_index_goes_on_below_its_start(
        store: QueueStore, redis: Redis) -> None:
    for i in range(6):
        await start(store, f"g{i}")
    first = await store.list_calls(CallQuery(), limit=2)
    assert [c["call_id"] for c in first.calls] == ["g5", "g4"] and first.next is not None
    await redis.zrem(store.keys.calls_index, "g4")  # trimmed meanwhile
    rest = await store.list_calls(CallQuery(), limit=10, after=first.next)
    assert [c["call_id"] for c in rest.calls] == ["g3", "g2", "g1", "g0"] and rest.next is None
    # the same when its neighbours started in the same millisecond (ordered by id there)
    await redis.zadd(store.keys.calls_index, {f"g{i}": 1_700_000_000_000 for i in range(6)})
    first = await store.list_calls(CallQuery(), limit=3)
    assert [c["call_id"] for c in first.calls] == ["g5", "g4", "g3"] and first.next is not None
    await redis.zrem(store.keys.calls_index, "g3")
    rest = await store.list_calls(CallQuery(), limit=10, after=first.next)
    assert [c["call_id"] for c in rest.calls] == ["g2", "g1", "g0"] and rest.next is None
