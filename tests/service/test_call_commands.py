"""Commands to live calls through the state layer and the API, on a real Redis and real HTTP.

The worker's side of the channel is played by the test with the same state-layer calls a worker
makes (``next_message`` pops its inbox, ``reply_command`` answers); the real worker and SIP are in
``tests/e2e/test_call_commands.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from ivr.core import commands
from ivr.core.errors import Conflict, NotFound, TimedOut
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer
from tests.service.test_cti_api import ADMIN, AGENT1, AGENT2, PREFIX, SUPER, Api, code_of, make_settings, offered


@pytest.fixture
def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX)


async def live_call(store: QueueStore, cid: str, worker: str = "w0") -> None:
    await store.register_worker(worker, "host:1", ttl_s=30, slots=2)
    await store.call_start(cid, worker, ani="+15550001", dnis="1000", hotline="demo", language="en",
                           plan_version="v1")


async def serve_one(store: QueueStore, worker: str, status: commands.Status, code: str = "") -> commands.Command:
    """Pop the worker's inbox up to the first command (offers go to sessions), answer it as a worker would."""
    msg = await store.next_message(worker, timeout_s=5)
    while msg is not None and not isinstance(msg, commands.Command):
        msg = await store.next_message(worker, timeout_s=5)
    assert isinstance(msg, commands.Command), msg
    assert not msg.expired()
    await store.reply_command(commands.Reply(msg.command_id, status, code))
    return msg


async def test_a_command_reaches_the_owning_worker_once_and_its_reply_comes_back(store: QueueStore,
                                                                                redis: Redis) -> None:
    await live_call(store, "c1", "w3")
    worker = asyncio.create_task(serve_one(store, "w3", commands.Status.ACCEPTED))
    reply = await store.send_command(commands.Hangup(call_id="c1", by="super1", role="supervisor"), 3.0)
    got = await worker
    assert reply.status is commands.Status.ACCEPTED and reply.command_id == got.command_id
    assert isinstance(got, commands.Hangup) and got.call_id == "c1" and got.by == "super1"
    assert got.deadline_ms > 0
    assert await redis.llen(store.keys.worker_inbox("w3")) == 0  # delivered once, nothing left behind


async def test_unknown_ended_and_orphaned_calls_are_refused_before_delivery(store: QueueStore, redis: Redis) -> None:
    with pytest.raises(NotFound) as nf:
        await store.send_command(commands.Hangup(call_id="nope", by="x"), 1.0)
    assert nf.value.code == "call.not_found"
    await live_call(store, "c2")
    await store.end_call("c2", reason="caller_hangup", wrapup_s=0, ttl_s=60)
    with pytest.raises(Conflict) as ended:
        await store.send_command(commands.Hangup(call_id="c2", by="x"), 1.0)
    assert ended.value.code == "call.ended"
    await store.call_start("c3", "dead", ani="1", dnis="1000", hotline="d", language="en", plan_version="v")
    with pytest.raises(Conflict) as gone:
        await store.send_command(commands.Hangup(call_id="c3", by="x"), 1.0)
    assert gone.value.code == "call.gone"
    assert await redis.llen(store.keys.worker_inbox("dead")) == 0


async def test_no_reply_is_a_timeout_and_the_late_command_is_expired(store: QueueStore) -> None:
    await live_call(store, "c4")
    with pytest.raises(TimedOut) as to:
        await store.send_command(commands.Hangup(call_id="c4", by="x"), 0.3)
    assert to.value.code == "command.timeout"
    late = await store.next_message("w0", timeout_s=1)
    assert isinstance(late, commands.Hangup) and late.expired()  # a worker drops it unanswered


async def test_malformed_inbox_messages_are_errors_not_commands(store: QueueStore, redis: Redis) -> None:
    for raw in ('{"type": "command", "kind": "reboot", "call_id": "c"}',
                '{"type": "command", "kind": "hangup"}',
                '{"type": "command", "kind": "hangup", "call_id": "c", "by": "x", "surprise": 1, "deadline_ms": "x"}',
                '{"offer_id": "o"}', '[1, 2]', '"text"', 'not json', '{"type": "command", "kind": ["hangup"]}'):
        await redis.rpush(store.keys.worker_inbox("w5"), raw)
        with pytest.raises(ValueError):
            await store.next_message("w5", timeout_s=1)
    assert await store.next_message("w5", timeout_s=0.1) is None  # each bad message was consumed, once


# --- the API route ------------------------------------------------------------------------------

@pytest.fixture
async def apis(tmp_path: Path, redis_server: RedisServer, redis: Redis) -> AsyncIterator[tuple[Api, Api]]:
    await redis.flushdb()
    a, b = Api(make_settings(tmp_path, redis_server)), Api(make_settings(tmp_path / "b", redis_server))
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


async def test_hangup_route_roles_codes_and_any_instance(apis: tuple[Api, Api], store: QueueStore) -> None:
    a, b = apis
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{a.url}/api/v1/calls/none/hangup", headers=SUPER) as r:
            assert r.status == 404 and await code_of(r) == "call.not_found"
        async with http.post(f"{a.url}/api/v1/calls/none/hangup") as r:
            assert r.status == 401
        await store.register_worker("w0", "host:1", ttl_s=30, slots=2)
        await offered(store, "c1", agent="agent1")
        # another agent may not end agent1's call; agent1, supervisors and admins may
        async with http.post(f"{a.url}/api/v1/calls/c1/hangup", headers=AGENT2) as r:
            assert r.status == 403 and await code_of(r) == "auth.forbidden"
        # sent to instance b: the command still reaches the worker that owns the call
        worker = asyncio.create_task(serve_one(store, "w0", commands.Status.ACCEPTED))
        async with http.post(f"{b.url}/api/v1/calls/c1/hangup", headers=AGENT1) as r:
            assert r.status == 202, await r.text()
            body = await r.json()
        cmd = await worker
        assert body == {"call_id": "c1", "command": "hangup", "status": "accepted", "command_id": cmd.command_id}
        assert cmd.by == "agent1" and cmd.role == "agent"
        # the worker found the call gone meanwhile: 409 call.gone, never a 500
        worker = asyncio.create_task(serve_one(store, "w0", commands.Status.GONE, "call.gone"))
        async with http.post(f"{a.url}/api/v1/calls/c1/hangup", headers=ADMIN) as r:
            assert r.status == 409 and await code_of(r) == "call.gone"
        await worker
        # nobody answers: 504 command.timeout
        a.settings.api.command_timeout_s = 0.3
        async with http.post(f"{a.url}/api/v1/calls/c1/hangup", headers=SUPER) as r:
            assert r.status == 504 and await code_of(r) == "command.timeout"
        await store.end_call("c1", reason="caller_hangup", wrapup_s=0, ttl_s=60)
        async with http.post(f"{a.url}/api/v1/calls/c1/hangup", headers=SUPER) as r:
            assert r.status == 409 and await code_of(r) == "call.ended"
