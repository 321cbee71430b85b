"""The live-supervision routes (ivr/cti/supervision.py) on a real API, a real Redis and real HTTP:
who may (supervisors and admins; anyone else 403 and audited), what a request must hold (400), what
is refused before anything reaches the worker (404, 403 number.not_allowed, 409 call.ended), the
worker's refusals (503 call.no_leg, as a consult), and an agent's view of its own record. The worker's side is
played as in tests/service/test_call_commands.py; the real worker is in tests/e2e/test_supervision.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from ivr.core import commands
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer
from tests.service.test_call_commands import serve_one
from tests.service.test_cti_api import ADMIN, AGENT1, PREFIX, SUPER, Api, code_of, make_settings, offered


@pytest.fixture
def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX)


@pytest.fixture
async def api(tmp_path: Path, redis_server: RedisServer, redis: Redis) -> AsyncIterator[Api]:
    await redis.flushdb()
    settings = make_settings(tmp_path, redis_server)
    settings.calls.outbound_allow = ["+1555077?"]
    a = Api(settings)
    await a.start()
    yield a
    await a.stop()


async def talking(store: QueueStore, cid: str = "c1") -> None:
    """Call ``cid`` on worker w0, answered by agent1."""
    await store.register_worker("w0", "host:1", ttl_s=30, slots=2)
    await store.offer_answered(cid, await offered(store, cid))


async def audit(redis: Redis) -> list[dict[str, str]]:
    entries: Any = await redis.xrange(f"{PREFIX}:audit")
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


START = {"mode": "listen", "target_type": "number", "target": "+15550777"}


async def test_an_agent_is_refused_every_route_and_each_attempt_is_audited(api: Api, store: QueueStore,
                                                                           redis: Redis) -> None:
    await talking(store)
    url = f"{api.url}/api/v1/calls/c1/monitor"
    async with aiohttp.ClientSession() as http:
        for method, body in (("POST", START), ("PATCH", {"mode": "barge"}), ("DELETE", None)):
            async with http.request(method, url, json=body, headers=AGENT1) as r:
                assert r.status == 403 and await code_of(r) == "auth.forbidden"
        async with http.post(url, json=START) as r:
            assert r.status == 401
    trail = await audit(redis)
    assert [(a["action"], a["by"], a["role"], a["call_id"], json.loads(a["detail"])) for a in trail] == [
        ("monitor.denied", "agent1", "agent", "c1", {"method": m}) for m in ("POST", "PATCH", "DELETE")]
    assert await redis.llen(store.keys.worker_inbox("w0")) == 1  # the offer only: nothing was sent
    call = await store.get_call("c1")
    assert call and "monitored" not in call


@pytest.mark.parametrize("body", [
    {"mode": "spy", "target_type": "number", "target": "+15550777"},
    {"mode": "listen", "target_type": "queue", "target": "billing"},
    {"mode": "listen", "target_type": "number", "target": "sip:evil@example.com"},
    {"mode": "listen", "target_type": "agent", "target": "../../x"},
    {"mode": "listen", "target_type": "number"},
    {**START, "uri": "sip:x@127.0.0.1"},
    [1, 2],
])
async def test_a_malformed_start_is_a_400(api: Api, store: QueueStore, body: Any) -> None:
    await talking(store)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{api.url}/api/v1/calls/c1/monitor", json=body, headers=SUPER) as r:
            assert r.status == 400 and await code_of(r) == "request.invalid"
        async with http.post(f"{api.url}/api/v1/calls/c1/monitor", data=b"\xff{", headers=SUPER) as r:
            assert r.status == 400
        async with http.patch(f"{api.url}/api/v1/calls/c1/monitor", json={"mode": "loud"}, headers=SUPER) as r:
            assert r.status == 400 and await code_of(r) == "request.invalid"


async def test_refusals_before_the_worker(api: Api, store: QueueStore, redis: Redis) -> None:
    await talking(store)
    url = f"{api.url}/api/v1/calls/c1/monitor"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={**START, "target": "+15550999"}, headers=SUPER) as r:
            assert r.status == 403 and await code_of(r) == "number.not_allowed"
        async with http.post(url, json={**START, "target_type": "agent", "target": "nobody"}, headers=ADMIN) as r:
            assert r.status == 404 and await code_of(r) == "agent.not_found"
        async with http.post(f"{api.url}/api/v1/calls/none/monitor", json=START, headers=SUPER) as r:
            assert r.status == 404 and await code_of(r) == "call.not_found"
        await store.end_call("c1", reason="caller_hangup", wrapup_s=0, ttl_s=60)
        async with http.delete(url, headers=SUPER) as r:
            assert r.status == 409 and await code_of(r) == "call.ended"
    assert await redis.llen(store.keys.worker_inbox("w0")) == 1  # the offer only


async def test_the_worker_gets_the_command_and_its_no_leg_is_a_503(api: Api, store: QueueStore) -> None:
    await talking(store)
    await store.next_message("w0", timeout_s=1)  # the offer
    async with aiohttp.ClientSession() as http:
        worker = asyncio.create_task(serve_one(store, "w0", commands.Status.REFUSED, "call.no_leg"))
        async with http.post(f"{api.url}/api/v1/calls/c1/monitor", json=START, headers=SUPER) as r:
            assert r.status == 503 and await code_of(r) == "call.no_leg"
        sent = await worker
        assert isinstance(sent, commands.MonitorStart)
        assert (sent.mode, sent.target_type, sent.target, sent.by, sent.role) == (
            "listen", "number", "+15550777", "super1", "supervisor")
        worker = asyncio.create_task(serve_one(store, "w0", commands.Status.ACCEPTED))
        async with http.patch(f"{api.url}/api/v1/calls/c1/monitor", json={"mode": "whisper"}, headers=ADMIN) as r:
            assert r.status == 202 and (await r.json())["status"] == "accepted"
        sent = await worker
        assert isinstance(sent, commands.MonitorChange) and sent.mode == "whisper" and sent.role == "admin"


async def test_an_agent_sees_on_its_record_only_a_supervision_it_is_told_of(api: Api, store: QueueStore) -> None:
    await talking(store)
    await store.call_control("c1", "monitor_start", by="super1", a1="listen")
    await store.call_control("c1", "monitor_answered", by="super1")

    async def view(who: dict[str, str]) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(f"{api.url}/api/v1/calls/c1", headers=who) as r:
            assert r.status == 200
            data: dict[str, Any] = await r.json()
            return data

    assert "monitored" not in await view(AGENT1) and "monitor" not in await view(AGENT1)
    sup = await view(SUPER)
    assert sup["monitored"] == "listen" and sup["monitor"]["by"] == "super1" and sup["monitor"]["state"] == "talking"
    await store.call_control("c1", "monitor_change", by="super1", a1="whisper")
    mine = await view(AGENT1)
    assert mine["monitored"] == "whisper" and mine["monitor"]["notice"] == "coached"
