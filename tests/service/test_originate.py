"""Click-to-dial (``POST /api/v1/calls``) on a real API server and a real Redis: validation and roles
refused before anything rings, the agent reserved through the one agent-state setter, the offer in a
live worker's inbox, idempotent retries, and the record through every outcome of the Lua scripts the
worker runs (the SIP side is tests/e2e/test_originate.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings
from ivr.core.events import AgentState
from ivr.queues.dialplan_status import DialplanStatus, PlanReport
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer
from tests.ports import free_udp_tcp_port
from tests.service.test_cti_api import ADMIN, AGENT1, AGENT2, SUPER, Api, code_of

PREFIX = "orig"
CRM_ORIGIN = "https://crm.example.com"
ALLOWED = "+8210*"
NUMBER = "+821055501234"


def api_settings(tmp_path: Path, redis_server: RedisServer, caller_id: str) -> Settings:
    return Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                    api={"host": "127.0.0.1", "port": free_udp_tcp_port(), "cors_origins": [CRM_ORIGIN]},
                    calls={"outbound_allow": [ALLOWED], "caller_id": caller_id})


@pytest.fixture
async def api(tmp_path: Path, redis_server: RedisServer, redis: Redis) -> AsyncIterator[Api]:
    await redis.flushdb()
    a = Api(api_settings(tmp_path, redis_server, "+8215880000"))
    await a.start()
    yield a
    await a.stop()


@pytest.fixture
async def api_first_hotline(tmp_path: Path, redis_server: RedisServer, redis: Redis) -> AsyncIterator[Api]:
    """The API with calls.caller_id empty: customers see the first hotline's number."""
    await redis.flushdb()
    a = Api(api_settings(tmp_path, redis_server, ""))
    await a.start()
    yield a
    await a.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX)


async def inbox(redis: Redis, worker: str = "w0") -> list[dict[str, Any]]:
    return [json.loads(m) for m in await redis.lrange(f"{PREFIX}:worker:{worker}:inbox", 0, -1)]


async def events(store: QueueStore) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type, e.data) for e in await store.events_after("0-0", 1000)]


async def post(http: aiohttp.ClientSession, api: Api, body: Any, headers: dict[str, str]) -> aiohttp.ClientResponse:
    async with http.post(f"{api.url}/api/v1/calls", json=body, headers=headers) as r:
        await r.read()
        return r


async def test_refusals_come_before_anything_rings(api: Api, http: aiohttp.ClientSession, store: QueueStore,
                                                   redis: Redis) -> None:
    await store.register_worker("w0", "host:1", ttl_s=30, slots=2)
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    cases: list[tuple[Any, dict[str, str], int, str]] = [
        ({"number": "+15550001"}, AGENT1, 403, "number.not_allowed"),           # not in outbound_allow
        ({"number": "+8210555;x"}, AGENT1, 400, "request.invalid"),            # not a number
        ({"number": "sip:x@evil.example"}, AGENT1, 400, "request.invalid"),
        ({"number": NUMBER, "extra": 1}, AGENT1, 400, "request.invalid"),
        ({"number": NUMBER, "agent_id": "a b"}, AGENT1, 400, "request.invalid"),
        ([NUMBER], AGENT1, 400, "request.invalid"),
        ({}, AGENT1, 400, "request.invalid"),
        ({"number": NUMBER, "agent_id": "agent1"}, AGENT2, 403, "auth.forbidden"),  # an agent for another
        ({"number": NUMBER}, SUPER, 400, "request.invalid"),                    # staff must name the agent
        ({"number": NUMBER, "agent_id": "nobody"}, SUPER, 404, "agent.not_found"),
        ({"number": NUMBER, "queue": "no-such-queue"}, AGENT1, 404, "queue.not_found"),
        ({"number": NUMBER}, AGENT2, 409, "agent.not_available"),               # agent2 is offline
        ({"number": NUMBER, "agent_id": "super1"}, ADMIN, 404, "agent.not_found"),  # not an agent
    ]
    for body, who, status, code in cases:
        async with http.post(f"{api.url}/api/v1/calls", json=body, headers=who) as r:
            assert r.status == status, (body, r.status, await r.text())
            assert await code_of(r) == code, body
    async with http.post(f"{api.url}/api/v1/calls", json={"number": NUMBER}) as r:
        assert r.status == 401
    async with http.post(f"{api.url}/api/v1/calls", data=b"{nope", headers=AGENT1) as r:
        assert r.status == 400
    async with http.post(f"{api.url}/api/v1/calls", json={"number": NUMBER},
                         headers={**AGENT1, "Idempotency-Key": "a b"}) as r:
        assert r.status == 400 and await code_of(r) == "request.invalid"
    assert await inbox(redis) == []
    assert (await store.get_agent("agent1") or {})["state"] == "available"
    assert not [t for t, _ in await events(store) if t.startswith("call.")]


async def test_no_worker_with_a_free_slot_is_503_and_the_agent_stays_available(
        api: Api, http: aiohttp.ClientSession, store: QueueStore, redis: Redis) -> None:
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    r = await post(http, api, {"number": NUMBER}, AGENT1)
    assert r.status == 503
    await store.register_worker("w0", "host:1", ttl_s=30, slots=0)  # draining
    async with http.post(f"{api.url}/api/v1/calls", json={"number": NUMBER}, headers=AGENT1) as r:
        assert r.status == 503 and await code_of(r) == "worker.unavailable"
    assert (await store.get_agent("agent1") or {})["state"] == "available"
    assert await inbox(redis) == []


async def test_an_agent_dials_for_itself_reserved_and_popped(api: Api, http: aiohttp.ClientSession,
                                                             store: QueueStore, redis: Redis) -> None:
    await store.register_worker("w0", "host:1", ttl_s=30, slots=2)
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    async with http.post(f"{api.url}/api/v1/calls", json={"number": NUMBER, "queue": "sales"}, headers=AGENT1) as r:
        assert r.status == 202, await r.text()
        reply = await r.json()
    assert reply["status"] == "dialing" and reply["agent_id"] == "agent1" and reply["direction"] == "outbound"
    cid = reply["call_id"]
    call = await store.get_call(cid) or {}
    assert (call["state"], call["direction"], call["agent_id"], call["ani"], call["dnis"], call["worker"],
            call["queue"], call["originated_by"]) == (
        "dialing", "outbound", "agent1", NUMBER, "+8215880000", "w0", "sales", "agent1"), call
    agent = await store.get_agent("agent1") or {}
    assert (agent["state"], agent["call_id"], agent["reason"]) == ("reserved", cid, "outbound")
    [msg] = await inbox(redis)
    assert (msg["kind"], msg["dial"], msg["call_id"], msg["agent_id"], msg["number"], msg["caller_id"],
            msg["sip_uri"]) == ("outbound", True, cid, "agent1", NUMBER, "+8215880000", "sip:agent1@127.0.0.1:5090")
    mine = [(t, d) for t, d in await events(store) if d.get("call_id") == cid]
    assert [t for t, _ in mine] == ["call.started", "call.offered"]
    assert all(d["direction"] == "outbound" for _, d in mine)
    assert mine[1][1]["agent_id"] == "agent1" and mine[1][1]["ani"] == NUMBER  # the pop shows the customer
    # meanwhile nobody else's call is offered to agent1, and agent1 cannot dial again
    async with http.post(f"{api.url}/api/v1/calls", json={"number": NUMBER}, headers=AGENT1) as r:
        assert r.status == 409 and await code_of(r) == "agent.not_available"
    await store.call_start("in1", "w0", ani="+15550009", dnis="1000", hotline="demo", language="en", plan_version="v")
    assert await store.enqueue("in1", queue="billing", skill="billing", priority=0, journey={}) is None


async def test_a_crm_retry_with_the_same_idempotency_key_rings_once(api: Api, http: aiohttp.ClientSession,
                                                                     store: QueueStore, redis: Redis) -> None:
    await store.register_worker("w0", "host:1", ttl_s=30, slots=2)
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    # the CRM's page (another origin) may send the key and read whether its retry was replayed
    async with http.options(f"{api.url}/api/v1/calls", headers={
            "Origin": CRM_ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key"}) as r:
        assert r.status == 204 and "Idempotency-Key" in r.headers["Access-Control-Allow-Headers"]
    crm = {**SUPER, "Idempotency-Key": "crm-7f3a-0001", "Origin": CRM_ORIGIN}
    body = {"number": NUMBER, "agent_id": "agent1"}
    async with http.post(f"{api.url}/api/v1/calls", json=body, headers=crm) as r:
        assert r.status == 202 and "Idempotent-Replayed" not in r.headers
        assert "Idempotent-Replayed" in r.headers["Access-Control-Expose-Headers"]
        first = await r.json()
    async with http.post(f"{api.url}/api/v1/calls", json=body, headers=crm) as r:
        assert r.status == 202 and r.headers["Idempotent-Replayed"] == "true"
        again = await r.json()
    assert again["call_id"] == first["call_id"] and again["status"] == "dialing"
    assert len(await inbox(redis)) == 1
    async with http.post(f"{api.url}/api/v1/calls", json={**body, "number": "+821099990000"}, headers=crm) as r:
        assert r.status == 409 and await code_of(r) == "idempotency.mismatch"
    # the key is the user's own: an admin's same key is another request (agent1 is busy now)
    admin = {**ADMIN, "Idempotency-Key": "crm-7f3a-0001"}
    async with http.post(f"{api.url}/api/v1/calls", json=body, headers=admin) as r:
        assert r.status == 409 and await code_of(r) == "agent.not_available"
    assert not [k for k in await redis.keys(f"{PREFIX}:originate:*") if b"crm-7f3a" in k]  # only a digest


async def test_without_a_configured_caller_id_the_first_hotlines_number_is_shown(
        api_first_hotline: Api, http: aiohttp.ClientSession, store: QueueStore, redis: Redis) -> None:
    for plan, name, numbers in (("b-plan", "Bravo", ["2000"]), ("a-plan", "Alpha", ["1000", "1001"])):
        await DialplanStatus(redis, store.keys, "w0").report([PlanReport(plan, active={
            "version": "v1", "name": name, "file": f"{plan}.yaml", "numbers": numbers})])
    await store.register_worker("w0", "host:1", ttl_s=30, slots=2)
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    async with http.post(f"{api_first_hotline.url}/api/v1/calls", json={"number": NUMBER}, headers=AGENT1) as r:
        assert r.status == 202, await r.text()
        cid = (await r.json())["call_id"]
    call = await store.get_call(cid) or {}
    assert (call["dnis"], call["caller_id"], call["hotline"]) == ("1000", "1000", "Alpha"), call
    [msg] = await inbox(redis)
    assert msg["caller_id"] == "1000" and msg["hotline"] == "Alpha"


async def originated(store: QueueStore, cid: str = "o1", queue: str = "sales") -> str:
    await store.register_worker("w0", "host:1", ttl_s=30, slots=2)
    await store.register_agent("agent1", name="Ada", skills={"sales": 3}, sip_uri="sip:agent1@127.0.0.1:5090",
                               languages=["en"])
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    new, got, state, worker = await store.originate(cid, agent_id="agent1", number=NUMBER, caller_id="+8215880000",
                                                    hotline="demo", queue=queue, by="agent1")
    assert (new, got, state, worker) == (True, cid, "dialing", "w0")
    return f"{cid}.1"


async def test_connected_outbound_call_ends_like_any_call(redis: Redis, store: QueueStore) -> None:
    offer_id = await originated(store)
    await store.originate_agent_answered("o1", offer_id, "+8215880000")
    assert (await store.get_agent("agent1") or {})["state"] == "oncall"
    assert (await store.get_call("o1") or {})["state"] == "dialing"
    assert await store.originate_connected("o1", offer_id) == "agent1"
    assert await store.originate_connected("o1", offer_id) == "agent1"  # a retry changes nothing
    assert (await store.get_call("o1") or {})["state"] == "connected"
    assert await store.end_call("o1", reason="customer_hangup", wrapup_s=5, ttl_s=600) == "completed"
    call = await store.get_call("o1") or {}
    assert (call["state"], call["outcome"], call["direction"]) == ("ended", "completed", "outbound")
    assert (await store.get_agent("agent1") or {})["state"] == "wrapup"
    mine = [t for t, d in await events(store) if d.get("call_id") == "o1"]
    assert mine == ["call.started", "call.offered", "call.dialing", "call.answered", "call.ended"]
    stats = await store.queue_stats("sales")
    counts = stats.interval.counts
    assert counts.get("outbound") == 1 and counts.get("outbound_answered") == 1 and counts.get("handled") == 1, counts


@pytest.mark.parametrize(("outcome", "agent_state"), [("busy", "available"), ("agent_no_answer", "break"),
                                                      ("no_answer", "available"), ("cancelled", "available")])
async def test_a_call_that_never_connected_ends_with_its_outcome(redis: Redis, store: QueueStore, outcome: str,
                                                                 agent_state: str) -> None:
    offer_id = await originated(store)
    got = await store.originate_failed("o1", offer_id, outcome=outcome, reason=f"why_{outcome}",
                                       agent_state=agent_state, ttl_s=600)
    assert got == outcome
    assert await store.originate_failed("o1", offer_id, outcome="failed", reason="again", agent_state="available",
                                        ttl_s=600) is None  # once only
    call = await store.get_call("o1") or {}
    assert (call["state"], call["outcome"], call["end_reason"]) == ("ended", outcome, f"why_{outcome}")
    agent = await store.get_agent("agent1") or {}
    assert agent["state"] == agent_state and "call_id" not in agent
    assert "o1" not in await store.active_calls()
    [ended] = [d for t, d in await events(store) if t == "call.ended"]
    assert (ended["outcome"], ended["agent_id"], ended["queue"]) == (outcome, "agent1", "sales")
    assert (await store.queue_stats("sales")).interval.counts.get("outbound_failed") == 1


async def test_a_dialing_call_of_a_dead_worker_is_lost_and_frees_the_agent(redis: Redis, store: QueueStore) -> None:
    await originated(store)
    assert await store.reap_worker("w0", wrapup_s=5, ttl_s=600) == 1
    call = await store.get_call("o1") or {}
    assert (call["state"], call["outcome"]) == ("ended", "lost")
    assert (await store.get_agent("agent1") or {})["state"] == "available"
    assert await redis.llen(f"{PREFIX}:worker:w0:inbox") == 0
