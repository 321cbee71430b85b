"""Webhooks against a real Redis and real HTTP receivers on 127.0.0.1: signed deliveries, a receiver
that is down then up, retries and dead letters, several API instances, instances dying mid-batch
or mid-delivery, and the dead-letter API of the real CTI app."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings, WebhookSettings
from ivr.core.events import AgentState
from ivr.core.tasks import TaskGroup
from ivr.cti.app import init_app
from ivr.cti.webhooks import Webhooks, verify
from ivr.queues.outbox import Claimed
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer
from tests.ports import free_udp_tcp_port

PREFIX = "wh"
SECRET = "whsec-0123456789abcdef"
ADMIN = {"Authorization": "Bearer admin-demo-token"}
SUPER = {"Authorization": "Bearer super1-demo-token"}
AGENT1 = {"Authorization": "Bearer agent1-demo-token"}


class Receiver:
    """A webhook receiver: checks each signature, answers what ``status`` says for the event."""

    def __init__(self, secret: str = SECRET) -> None:
        self.port = free_udp_tcp_port()
        self.secret = secret
        self.attempts: list[dict[str, Any]] = []  # every request
        self.accepted: list[str] = []  # event ids answered 2xx, in arrival order
        self.status: Callable[[dict[str, Any]], int] = lambda _event: 200
        self.gate: asyncio.Event | None = None  # when set: requests wait for it before any answer
        self.arrived = 0  # requests received (answered or not yet)
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/in?token=not-shown"

    async def start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            raw = await request.read()
            self.arrived += 1
            if self.gate is not None:
                await self.gate.wait()
            event = json.loads(raw)
            h = request.headers
            verified = verify(self.secret, h["X-Ivr-Signature"], h["X-Ivr-Timestamp"], raw)
            status = self.status(event) if verified else 401
            self.attempts.append({"event": event, "verified": verified, "status": status,
                                  "id_header": h["X-Ivr-Event-Id"], "type_header": h["X-Ivr-Event-Type"],
                                  "attempt": int(h["X-Ivr-Delivery-Attempt"])})
            if 200 <= status < 300:
                self.accepted.append(event["id"])
            return web.json_response({"ok": status < 300}, status=status)

        app = web.Application()
        app.router.add_post("/hooks/in", hook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX)


def hook_settings(url: str, **kw: Any) -> WebhookSettings:
    endpoint = {"name": "crm", "url": url, "secret": SECRET, **kw.pop("endpoint", {})}
    defaults: dict[str, Any] = {"backoff_base_s": 0.02, "backoff_cap_s": 0.2, "jitter": 0.0, "timeout_s": 2.0,
                                "claim_idle_s": 0.2, "poll_s": 0.05, "max_attempts": 50}
    return WebhookSettings.model_validate({"endpoints": [endpoint], **defaults, **kw})


Running = Callable[..., Awaitable[Webhooks]]


@pytest.fixture
async def running(redis: Redis) -> AsyncIterator[Running]:
    """Start a webhooks service (an API instance's filler and delivery loop) on the shared Redis."""
    groups: list[tuple[TaskGroup, Webhooks]] = []

    async def start(settings: WebhookSettings, *, fill: bool = True, deliver: bool = True,
                    **kw: Any) -> Webhooks:
        hooks = Webhooks(settings, redis, PREFIX, **kw)
        await hooks.outbox.ensure_group()
        tasks = TaskGroup(f"test-{len(groups)}")
        if fill:
            tasks.spawn("fill", hooks.fill())
        if deliver:
            tasks.spawn("deliver", hooks.deliver())
        groups.append((tasks, hooks))
        return hooks

    yield start
    for tasks, hooks in groups:
        await tasks.cancel_all()
        await hooks.close()


async def until(check: Callable[[], Awaitable[bool] | bool], within_s: float = 10.0, what: str = "") -> None:
    for _ in range(int(within_s / 0.02)):
        res = check()
        if await res if isinstance(res, Awaitable) else res:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {within_s} s: {what}")


async def calls(store: QueueStore, n: int, first: int = 0) -> list[str]:
    """Start ``n`` calls (one call.started event each); returns their event ids in stream order."""
    for i in range(first, first + n):
        await store.call_start(f"c{i}", "w0", ani="+15550001", dnis="1000", hotline="demo", language="en",
                               plan_version="v1")
    events = [e for e in await store.read_events("0-0", count=10_000) if e.type == "call.started"]
    return [e.id for e in events][first:first + n]


async def test_a_signed_event_reaches_the_receiver_which_verifies_it(
        running: Running, receiver: Receiver, store: QueueStore) -> None:
    hooks = await running(hook_settings(receiver.url))
    [eid] = await calls(store, 1)
    await until(lambda: receiver.accepted == [eid], what="delivered")
    [got] = receiver.attempts
    assert got["verified"] and got["status"] == 200 and got["attempt"] == 1
    assert got["id_header"] == eid and got["type_header"] == "call.started"
    event = got["event"]
    assert set(event) == {"id", "type", "occurred_at", "data"}
    assert event["id"] == eid and event["type"] == "call.started" and event["occurred_at"].endswith("Z")
    assert event["data"]["call_id"] == "c0" and event["data"]["ani"] == "+15550001"
    await until(lambda: _zero(hooks), what="outbox empty")
    assert await hooks.dead_count() == 0


async def _zero(hooks: Webhooks) -> bool:
    return await hooks.backlog() == {"crm": 0}


async def test_a_receiver_down_then_up_gets_every_event_once_in_order(
        running: Running, store: QueueStore) -> None:
    down = Receiver()  # not started: connections are refused
    hooks = await running(hook_settings(down.url))
    ids = await calls(store, 20)
    await until(lambda: _failures(hooks, 3), what="the endpoint backs off")
    assert await hooks.backlog() == {"crm": 20}
    await down.start()
    try:
        await until(lambda: len(down.accepted) >= 20, what="all delivered once the receiver is up")
        await until(lambda: _zero(hooks), what="outbox empty")
        assert down.accepted == ids  # each once, in the order they happened
        assert all(a["verified"] for a in down.attempts)
        assert await hooks.dead_count() == 0
    finally:
        await down.stop()


async def _failures(hooks: Webhooks, n: int) -> bool:
    state = await hooks.outbox.endpoint_state("crm")
    return int(state.get("failures", 0)) >= n


async def test_failures_are_retried_with_backoff_then_become_dead_letters(
        running: Running, receiver: Receiver, store: QueueStore) -> None:
    receiver.status = lambda _event: 503
    hooks = await running(hook_settings(receiver.url, max_attempts=3))
    [eid] = await calls(store, 1)
    await until(lambda: _dead(hooks, 1), what="a dead letter")
    assert [a["attempt"] for a in receiver.attempts] == [1, 2, 3] and receiver.accepted == []
    [dead] = await hooks.dead_letters(None, 10)
    assert dead["id"] == f"crm.{eid}" and dead["event_id"] == eid and dead["type"] == "call.started"
    assert dead["attempts"] == 3 and dead["last_status"] == 503 and dead["last_error"] == "http_503"
    assert dead["state"] == "dead" and dead["died_at"] and dead["queued_at"]
    assert await hooks.backlog() == {"crm": 0}
    state = await hooks.outbox.endpoint_state("crm")
    assert int(state["failures"]) == 3 and int(state["dead"]) == 1


async def _dead(hooks: Webhooks, n: int) -> bool:
    return await hooks.dead_count() >= n


async def test_a_refusal_is_a_dead_letter_at_once_and_408_429_are_retried(
        running: Running, receiver: Receiver, store: QueueStore) -> None:
    answers = {"c0": [422], "c1": [429, 408, 200]}
    receiver.status = lambda event: answers[event["data"]["call_id"]].pop(0)
    hooks = await running(hook_settings(receiver.url, max_attempts=5))
    first, second = await calls(store, 2)
    await until(lambda: receiver.accepted == [second], what="the second delivered")
    assert [(a["event"]["id"], a["status"]) for a in receiver.attempts] == [
        (first, 422), (second, 429), (second, 408), (second, 200)]
    [dead] = await hooks.dead_letters("crm", 10)
    assert dead["event_id"] == first and dead["attempts"] == 1 and dead["last_status"] == 422


async def test_two_api_instances_deliver_each_event_once(
        running: Running, receiver: Receiver, store: QueueStore) -> None:
    settings = hook_settings(receiver.url, endpoint={"max_in_flight": 4})
    one = await running(settings)
    await running(settings)
    ids = await calls(store, 120)
    await until(lambda: len(receiver.accepted) >= 120, what="all delivered")
    await until(lambda: _zero(one), what="outbox empty")
    assert Counter(receiver.accepted) == Counter(ids)
    assert max(Counter(receiver.accepted).values()) == 1


async def test_strict_order_holds_across_instances(
        running: Running, receiver: Receiver, store: QueueStore) -> None:
    settings = hook_settings(receiver.url)  # max_in_flight 1
    await running(settings)
    await running(settings)
    ids = await calls(store, 40)
    await until(lambda: len(receiver.accepted) >= 40, what="all delivered")
    assert receiver.accepted == ids


async def test_a_filler_that_dies_mid_batch_loses_nothing(
        running: Running, receiver: Receiver, store: QueueStore, redis: Redis) -> None:
    settings = hook_settings(receiver.url)
    dying = Webhooks(settings, redis, PREFIX, instance="dying")
    await dying.outbox.ensure_group()
    ids = await calls(store, 10)
    batch = await dying.outbox.read(dying.consumer, count=10, block_ms=None)
    assert [ev.id for ev in batch] == ids
    await dying.put(batch[:4])  # then the instance dies: 6 events read, never put in the outbox
    await running(settings, deliver=False)  # another instance takes them over (claim_idle_s 0.2)
    await running(settings, fill=False)
    await until(lambda: len(receiver.accepted) >= 10, what="all delivered")
    assert receiver.accepted == ids
    pending = await redis.xpending(store.keys.events, "webhooks")
    assert pending["pending"] == 0


async def test_events_whose_put_failed_go_out_at_once_not_after_a_reclaim(
        running: Running, receiver: Receiver, store: QueueStore, redis: Redis) -> None:
    """A put that failed (Redis restarting between the read and the put) leaves the events pending
    for this same instance: it puts them first, long before any reclaim (claim_idle_s 1 hour here)."""
    settings = hook_settings(receiver.url).model_copy(update={"claim_idle_s": 3600.0})
    hooks = await running(settings, fill=False, instance="me")
    ids = await calls(store, 5)
    read = await hooks.outbox.read(hooks.consumer, count=10, block_ms=None)
    assert [ev.id for ev in read] == ids  # read, then the put failed
    again = Webhooks(settings, redis, PREFIX, instance="me")  # the same instance's filler, next round
    filler = TaskGroup("filler")
    filler.spawn("fill", again.fill())
    try:
        await until(lambda: len(receiver.accepted) >= 5, within_s=5, what="the read events delivered")
    finally:
        await filler.cancel_all()
        await again.close()
    assert receiver.accepted == ids
    assert (await redis.xpending(store.keys.events, "webhooks"))["pending"] == 0


async def test_a_delivery_whose_holder_died_is_delivered_when_its_lease_expires(
        running: Running, receiver: Receiver, store: QueueStore, redis: Redis) -> None:
    settings = hook_settings(receiver.url)
    dying = Webhooks(settings, redis, PREFIX, instance="dying")
    await dying.outbox.ensure_group()
    [eid] = await calls(store, 1)
    await dying.put(await dying.outbox.read(dying.consumer, count=10, block_ms=None))
    got = await dying.outbox.claim("crm", max_in_flight=1, lease_ms=300, token="t-dying")
    assert isinstance(got, Claimed) and got.event_id == eid  # claimed, then the instance dies
    await running(settings, fill=False)
    await until(lambda: receiver.accepted == [eid], what="delivered after the lease")
    assert [a["attempt"] for a in receiver.attempts] == [2]
    # the dead holder's late report changes nothing
    assert await dying.outbox.fail(got, status=None, error="timeout", dead=False, delay_s=1, max_attempts=3,
                                   dead_max=10) == "stale"


async def test_a_delivery_whose_holder_stops_is_given_back_at_once(
        running: Running, receiver: Receiver, store: QueueStore, redis: Redis) -> None:
    """An API instance that stops (SIGTERM, a deploy) while a POST is under way gives the delivery
    back: the next instance retries it at once instead of after the lease (90 s here)."""
    settings = hook_settings(receiver.url, timeout_s=30.0)
    receiver.gate = asyncio.Event()
    stopping = Webhooks(settings, redis, PREFIX, instance="stopping")
    await stopping.outbox.ensure_group()
    tasks = TaskGroup("stopping")
    tasks.spawn("fill", stopping.fill())
    tasks.spawn("deliver", stopping.deliver())
    [eid] = await calls(store, 1)
    await until(lambda: receiver.arrived == 1, what="the first attempt under way")
    await tasks.cancel_all()
    await stopping.close()
    assert (await stopping.outbox.endpoint_state("crm"))["in_flight"] == 0
    receiver.gate.set()
    await running(settings, fill=False)
    await until(lambda: any(a["attempt"] == 2 and a["status"] == 200 for a in receiver.attempts), within_s=5,
                what="delivered again at once")
    assert all(a["id_header"] == eid for a in receiver.attempts)


# --- the dead-letter API of the real CTI app ---------------------------------------------------

@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer, receiver: Receiver) -> Settings:
    hooks = hook_settings(receiver.url, max_attempts=2).model_dump(mode="python")
    hooks["endpoints"][0]["events"] = ["call.disposition", "call.ended"]
    return Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                    api={"host": "127.0.0.1", "port": free_udp_tcp_port()}, webhooks=hooks)


@pytest.fixture
async def api(settings: Settings, store: QueueStore) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    runner = web.AppRunner(init_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.api.port).start()
    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{settings.api.port}"
        await until(lambda: _group_exists(store), what="the API's filler is reading")
        yield base, http
    await runner.cleanup()


async def _group_exists(store: QueueStore) -> bool:
    if not await store.redis.exists(store.keys.events):
        return False
    return any(g["name"] == b"webhooks" for g in await store.redis.xinfo_groups(store.keys.events))


async def answered(store: QueueStore, cid: str) -> None:
    await store.call_start(cid, "w0", ani="+15550001", dnis="1000", hotline="demo", language="en", plan_version="v1")
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    offer = await store.enqueue(cid, queue="billing", skill="billing", priority=0, journey={"steps": []})
    assert offer is not None
    await store.offer_answered(cid, offer.offer_id)


async def test_dispositions_go_to_the_crm_and_dead_letters_are_listed_and_replayed_over_the_api(
        api: tuple[str, aiohttp.ClientSession], receiver: Receiver, store: QueueStore) -> None:
    base, http = api
    receiver.status = lambda _event: 400  # the CRM refuses everything at first
    for cid in ("c1", "c2"):
        await answered(store, cid)
        async with http.post(f"{base}/api/v1/calls/{cid}/disposition", headers=AGENT1,
                             json={"disposition": "resolved", "notes": f"notes of {cid}"}) as r:
            assert r.status == 200
        await store.end_call(cid, reason="hangup", wrapup_s=0, ttl_s=600)
    await until(lambda: len(receiver.attempts) >= 4, what="four refusals")
    assert [(a["event"]["type"], a["event"]["data"]["call_id"]) for a in receiver.attempts] == [
        ("call.disposition", "c1"), ("call.ended", "c1"), ("call.disposition", "c2"), ("call.ended", "c2")]
    assert receiver.attempts[0]["event"]["data"]["notes"] == "notes of c1"

    async with http.get(f"{base}/api/v1/webhooks", headers=SUPER) as r:
        assert r.status == 200
        overview = await r.json()
    [ep] = overview["endpoints"]
    assert ep["name"] == "crm" and ep["url"] == f"http://127.0.0.1:{receiver.port}/hooks/in"
    assert ep["dead"] == 4 and ep["backlog"] == 0 and overview["dead"] == 4
    assert SECRET not in json.dumps(overview) and "not-shown" not in json.dumps(overview)

    async with http.get(f"{base}/api/v1/webhooks/dead-letters?endpoint=crm&limit=3", headers=SUPER) as r:
        assert r.status == 200
        dead = (await r.json())["dead_letters"]
    assert len(dead) == 3 and {d["type"] for d in dead} <= {"call.disposition", "call.ended"}
    assert all(d["last_status"] == 400 and d["attempts"] == 1 and d["endpoint"] == "crm" for d in dead)
    assert "body" not in dead[0]

    receiver.status = lambda _event: 200  # the CRM is fixed
    one = dead[0]["id"]
    async with http.post(f"{base}/api/v1/webhooks/dead-letters/{one}/replay", headers=ADMIN) as r:
        assert r.status == 200
        assert (await r.json())["attempts"] == 0
    await until(lambda: len(receiver.accepted) == 1, what="the replayed one delivered")
    async with http.post(f"{base}/api/v1/webhooks/dead-letters/{one}/replay", headers=ADMIN) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "webhook.dead_letter_not_found"
    async with http.post(f"{base}/api/v1/webhooks/dead-letters/replay?endpoint=crm", headers=ADMIN) as r:
        assert r.status == 200 and await r.json() == {"replayed": 3}
    await until(lambda: len(receiver.accepted) == 4, what="all replayed ones delivered")
    assert sorted(receiver.accepted) == sorted({a["event"]["id"] for a in receiver.attempts})
    async with http.get(f"{base}/api/v1/webhooks", headers=ADMIN) as r:
        after = await r.json()
    assert after["dead"] == 0 and after["endpoints"][0]["delivered"] == 4


async def test_the_webhook_routes_need_a_token_and_the_right_role(
        api: tuple[str, aiohttp.ClientSession]) -> None:
    base, http = api
    reads = ["/api/v1/webhooks", "/api/v1/webhooks/dead-letters"]
    writes = ["/api/v1/webhooks/dead-letters/replay", "/api/v1/webhooks/dead-letters/crm.1-0/replay"]
    for path in reads:
        async with http.get(base + path) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "auth.missing_token"
        async with http.get(base + path, headers=AGENT1) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "auth.forbidden"
    for path in writes:
        async with http.post(base + path) as r:
            assert r.status == 401
        for who in (AGENT1, SUPER):
            async with http.post(base + path, headers=who) as r:
                assert r.status == 403 and (await r.json())["error"]["code"] == "auth.forbidden"
    async with http.get(f"{base}/api/v1/webhooks/dead-letters?endpoint=nope", headers=SUPER) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "webhook.endpoint_not_found"
    async with http.get(f"{base}/api/v1/webhooks/dead-letters?limit=0", headers=SUPER) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "request.invalid"
    for bad in ("crm.1-0", "x", "..%2F..%2Fetc"):
        async with http.post(f"{base}/api/v1/webhooks/dead-letters/{bad}/replay", headers=ADMIN) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "webhook.dead_letter_not_found"
    async with http.post(f"{base}/api/v1/webhooks/dead-letters/replay?endpoint=nope", headers=ADMIN) as r:
        assert r.status == 404
