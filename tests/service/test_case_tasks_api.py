"""Follow-up tasks of complaint cases over the CTI API (docs/cti-api.md, "Follow-up tasks") on a real Redis
through a real API server: the task offered by the store's housekeeping scan (``case_offer_tasks``), then
``POST /api/v1/cases/{id}/task/accept`` and ``/task/decline``: who may (the agent holding it; staff may
decline, not accept; another agent), what accepting does (a click-to-dial call of the case's customer in a
live worker's inbox, its record carrying ``case_id``), the errors (task gone, no number, a number outside
``calls.outbound_allow``, no worker with a free slot), the reply shapes and hostile ids. The SIP side is
tests/e2e/test_case_tasks.py."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings
from ivr.core.events import AgentState
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer
from tests.ports import free_udp_tcp_port
from tests.service.test_cti_api import ADMIN, AGENT1, AGENT2, SUPER, Api, Feed, code_of

PREFIX = "tasks"
NUMBER = "+821055501234"
CALLER_ID = "+8215880000"
HOUR_MS = 3_600_000


@pytest.fixture
async def api(tmp_path: Path, redis_server: RedisServer, redis: Redis) -> AsyncIterator[Api]:
    await redis.flushdb()
    (tmp_path / "dialplans").mkdir()
    a = Api(Settings(users=DEMO_USERS, var_dir=tmp_path / "var", dialplans_dir=tmp_path / "dialplans",
                     redis={"url": redis_server.url, "prefix": PREFIX},
                     api={"host": "127.0.0.1", "port": free_udp_tcp_port()},
                     calls={"outbound_allow": ["+8210*"], "caller_id": CALLER_ID}))
    await a.start()
    yield a
    await a.stop()


@pytest.fixture
def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX)


async def offer(store: QueueStore, agent: str = "agent1", *, owner: str = "agent1", customer: str = NUMBER,
                due_in_ms: int = HOUR_MS // 2, hotline: str = "") -> str:
    """A case of ``owner`` due in ``due_in_ms`` (negative: overdue), offered as a task to ``agent``
    (made available for it); returns the case id."""
    now = int(time.time() * 1000)
    case = await store.open_case(tier="urgent", reason="billed twice", customer=customer, opened_by="super1",
                                 owner=owner, hotline=hotline, due_at_ms=now + due_in_ms)
    if due_in_ms < 0:
        await store.case_deadlines()
    await store.set_agent_state(agent, AgentState.AVAILABLE)
    assert await store.case_offer_tasks(before_ms=HOUR_MS, skill="complaints", timeout_ms=60_000) == 1
    got = await store.get_case(case["id"]) or {}
    assert got.get("task_agent") == agent, got
    return str(case["id"])


async def post(http: aiohttp.ClientSession, api: Api, case_id: str, what: str,
               who: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{api.url}/api/v1/cases/{case_id}/task/{what}", headers=who) as r:
        return r.status, await r.json()


async def inbox(redis: Redis) -> list[dict[str, Any]]:
    return [json.loads(m) for m in await redis.lrange(f"{PREFIX}:worker:w0:inbox", 0, -1)]


async def event_types(store: QueueStore, case_id: str) -> list[str]:
    return [e.type for e in await store.events_after("0-0", 2000) if e.data.get("case_id") == case_id]


async def test_the_agent_holding_a_task_dials_the_customer(api: Api, http: aiohttp.ClientSession,
                                                         store: QueueStore, redis: Redis) -> None:
    await store.register_worker("w0", "host:1", ttl_s=30, slots=2)
    feed = Feed(http, api.url.replace("http", "ws") + "/api/v1/agents/agent1/events", "agent1-demo-token")
    await feed.open()
    try:
        case_id = await offer(store, hotline="Care line")
        pop = await feed.wait(lambda m: m.get("type") == "case.task_offered")
    finally:
        await feed.close()
    assert (pop["case_id"], pop["agent_id"], pop["tier"], pop["customer"], pop["reason"]) == (
        case_id, "agent1", "urgent", NUMBER, "billed twice"), pop
    assert "crm" not in pop  # no CRM connector configured
    assert (await store.get_agent("agent1") or {})["state"] == "reserved"

    status, reply = await post(http, api, case_id, "accept", AGENT1)
    assert status == 202, reply
    assert set(reply) == {"call_id", "status", "case_id"} and reply["case_id"] == case_id
    assert reply["status"] == "dialing"
    cid = reply["call_id"]
    call = await store.get_call(cid) or {}
    assert (call["direction"], call["agent_id"], call["ani"], call["dnis"], call["hotline"], call["case_id"],
            call["originated_by"]) == ("outbound", "agent1", NUMBER, CALLER_ID, "Care line", case_id, "agent1"), call
    [msg] = await inbox(redis)
    assert (msg["kind"], msg["call_id"], msg["agent_id"], msg["number"], msg["caller_id"]) == (
        "outbound", cid, "agent1", NUMBER, CALLER_ID), msg
    agent = await store.get_agent("agent1") or {}
    assert (agent["state"], agent["call_id"]) == ("reserved", cid), agent
    case = await store.get_case(case_id) or {}
    assert case["calls"] == [cid] and not case.get("task_agent") and case["status"] == "open", case
    assert "case.task_accepted" in await event_types(store, case_id)
    # the task is used up: accepting or declining it again is 409
    for what in ("accept", "decline"):
        status, reply = await post(http, api, case_id, what, AGENT1)
        assert (status, reply["error"]["code"]) == (409, "case.task_gone"), (what, reply)
    assert len(await inbox(redis)) == 1


async def test_who_may_accept_and_decline(api: Api, http: aiohttp.ClientSession, store: QueueStore,
                                          redis: Redis) -> None:
    await store.register_worker("w0", "host:1", ttl_s=30, slots=2)
    case_id = await offer(store)  # agent1's case, offered to agent1
    # staff never accept for an agent; another agent neither owns it nor holds it
    for who, what, status, code in [(SUPER, "accept", 403, "auth.forbidden"), (ADMIN, "accept", 403, "auth.forbidden"),
                                    (AGENT2, "accept", 403, "auth.forbidden"),
                                    (AGENT2, "decline", 403, "auth.forbidden")]:
        got, reply = await post(http, api, case_id, what, who)
        assert (got, reply["error"]["code"]) == (status, code), (who, what, reply)
    async with http.post(f"{api.url}/api/v1/cases/{case_id}/task/accept") as r:
        assert r.status == 401
    assert await inbox(redis) == []
    # the holder reads the case; a supervisor takes the task back
    async with http.get(f"{api.url}/api/v1/cases/{case_id}", headers=AGENT1) as r:
        assert r.status == 200
    status, reply = await post(http, api, case_id, "decline", SUPER)
    assert (status, reply) == (200, {"case_id": case_id, "agent_id": "agent1", "reason": "declined"})
    assert (await store.get_agent("agent1") or {})["state"] == "available"
    assert "case.task_declined" in await event_types(store, case_id)
    for who, what in [(AGENT1, "accept"), (AGENT1, "decline"), (SUPER, "decline")]:
        status, reply = await post(http, api, case_id, what, who)
        assert (status, reply["error"]["code"]) == (409, "case.task_gone"), (what, reply)

    # an overdue case of agent2 (offline) escalates to any available agent: agent1 holds it now;
    # agent2 may read its case but the task is not its own; agent1 skips it itself
    late = await offer(store, owner="agent2", due_in_ms=-60_000)
    for what in ("accept", "decline"):
        status, reply = await post(http, api, late, what, AGENT2)
        assert (status, reply["error"]["code"]) == (409, "case.task_gone"), (what, reply)
    status, reply = await post(http, api, late, "decline", AGENT1)
    assert (status, reply) == (200, {"case_id": late, "agent_id": "agent1", "reason": "declined"})
    assert (await store.get_agent("agent1") or {})["state"] == "available"
    # skipped: agent1 is not offered that case again for a while
    assert await store.case_offer_tasks(before_ms=HOUR_MS, skill="complaints", timeout_ms=60_000) == 0
    assert await inbox(redis) == []


async def test_a_task_that_cannot_be_dialled_stays_offered(api: Api, http: aiohttp.ClientSession,
                                                           store: QueueStore, redis: Redis) -> None:
    # no worker with a free call slot: 503, the task still offered
    case_id = await offer(store)
    status, reply = await post(http, api, case_id, "accept", AGENT1)
    assert (status, reply["error"]["code"]) == (503, "worker.unavailable"), reply
    assert (await store.get_case(case_id) or {}).get("task_agent") == "agent1"
    await store.register_worker("w0", "host:1", ttl_s=30, slots=2)
    status, reply = await post(http, api, case_id, "decline", AGENT1)
    assert status == 200, reply
    # a number calls.outbound_allow does not allow: 403, nothing dialled, the agent may skip it
    abroad = await offer(store, customer="+15550001")
    status, reply = await post(http, api, abroad, "accept", AGENT1)
    assert (status, reply["error"]["code"]) == (403, "number.not_allowed"), reply
    assert (await store.get_case(abroad) or {}).get("task_agent") == "agent1"
    assert (await post(http, api, abroad, "decline", AGENT1))[0] == 200
    # a case without a customer number
    silent = await offer(store, customer="")
    status, reply = await post(http, api, silent, "accept", AGENT1)
    assert (status, reply["error"]["code"]) == (409, "case.no_number"), reply
    assert (await post(http, api, silent, "decline", AGENT1))[0] == 200
    assert await inbox(redis) == []
    assert not [e for e in await store.events_after("0-0", 2000) if e.type.startswith("call.")]


@pytest.mark.parametrize("case_id", ["CS999", "cs1", "CS1%3B", "CS12345678901234", "CS-1", "%00", "CS1%20",
                                     "..%2F..%2Fagents", "C" * 300, "CS%F0%9F%98%80"])
async def test_hostile_case_ids_are_404(api: Api, http: aiohttp.ClientSession, case_id: str) -> None:
    for what in ("accept", "decline"):
        for who in (AGENT1, SUPER):
            async with http.post(f"{api.url}/api/v1/cases/{case_id}/task/{what}", headers=who) as r:
                if who is SUPER and what == "accept":
                    assert r.status == 403, await r.text()  # the role first: staff never accept
                    continue
                assert r.status == 404, (case_id, what, await r.text())
                assert await code_of(r) == "case.not_found"
