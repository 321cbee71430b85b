"""The CTI API on a real Redis, through real HTTP and WebSockets: agent administration and tokens,
roles, disposition write-back, event replay on reconnect, several API instances, CORS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings
from ivr.core.events import AgentState
from ivr.cti.app import init_app
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer
from tests.ports import free_udp_tcp_port

PREFIX = "cti"
SUPER = {"Authorization": "Bearer super1-demo-token"}
ADMIN = {"Authorization": "Bearer admin-demo-token"}
AGENT1 = {"Authorization": "Bearer agent1-demo-token"}
AGENT2 = {"Authorization": "Bearer agent2-demo-token"}
CRM_ORIGIN = "https://crm.example.com"


def make_settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    return Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                    api={"host": "127.0.0.1", "port": free_udp_tcp_port(), "cors_origins": [CRM_ORIGIN]})


class Api:
    """One real API instance on loopback."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = f"http://127.0.0.1:{settings.api.port}"
        self.runner = web.AppRunner(init_app(settings), shutdown_timeout=1.0)

    async def start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.settings.api.port).start()

    async def stop(self) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def api(tmp_path: Path, redis_server: RedisServer, redis: Redis) -> AsyncIterator[Api]:
    await redis.flushdb()
    a = Api(make_settings(tmp_path, redis_server))
    await a.start()
    yield a
    await a.stop()



@pytest.fixture
def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX)


async def code_of(resp: aiohttp.ClientResponse) -> str:
    data = await resp.json()
    code: str = data["error"]["code"]
    assert data["error"]["message"]
    return code


async def offered(store: QueueStore, cid: str, agent: str = "agent1") -> str:
    """Call ``cid`` queued for billing and offered to ``agent``; returns the offer id."""
    await store.call_start(cid, "w0", ani="+15550001", dnis="1000", hotline="demo", language="en",
                           plan_version="v1")
    await store.set_agent_state(agent, AgentState.AVAILABLE)
    offer = await store.enqueue(cid, queue="billing", skill="billing", priority=0,
                                journey={"steps": [{"node": "main", "type": "menu", "digit": "2"}]})
    assert offer is not None and offer.agent_id == agent
    return offer.offer_id


class Feed:
    """A real WebSocket client of an event feed, keeping every message."""

    def __init__(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        self.http, self.url, self.token = http, url, token
        self.messages: list[dict[str, Any]] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self, last_event_id: str | None = None) -> dict[str, Any]:
        params = {"last_event_id": last_event_id} if last_event_id else None
        self.ws = await self.http.ws_connect(self.url, protocols=[f"bearer.{self.token}"], params=params)
        hello = json.loads((await self.ws.receive(timeout=5)).data)
        assert hello["type"] == "hello"
        self._task = asyncio.create_task(self._read())
        return hello

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            self.messages.append(json.loads(msg.data))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait(self, pred: Any, timeout: float = 5.0) -> dict[str, Any]:
        for _ in range(int(timeout / 0.02)):
            for m in self.messages:
                if pred(m):
                    return m
            await asyncio.sleep(0.02)
        raise AssertionError(f"not received; got {[m.get('type') for m in self.messages]}")

    def ids(self) -> list[str]:
        return [m["id"] for m in self.messages if "id" in m]


# --- agents and tokens ---------------------------------------------------------------------------

NEW_AGENT = {"id": "carol", "name": "Carol", "skills": {"billing": 4}, "languages": ["en", "ko"],
             "sip_uri": "sip:carol@127.0.0.1:5999"}


async def test_an_admin_creates_an_agent_whose_token_works_and_is_stored_only_hashed(
        api: Api, http: aiohttp.ClientSession, redis: Redis) -> None:
    async with http.post(f"{api.url}/api/v1/agents", json=NEW_AGENT, headers=ADMIN) as r:
        assert r.status == 201
        created = await r.json()
    token = created["token"]
    assert created["agent_id"] == "carol" and created["state"] == "offline"
    assert created["skills"] == {"billing": 4} and len(token) >= 40
    carol = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{api.url}/api/v1/agents/carol", headers=carol) as r:
        assert r.status == 200 and "token" not in await r.json()
    async with http.post(f"{api.url}/api/v1/agents/carol/state", json={"state": "available"}, headers=carol) as r:
        assert r.status == 200 and (await r.json())["state"] == "available"
    # the agent may not read another agent, nor the list
    async with http.get(f"{api.url}/api/v1/agents/agent1", headers=carol) as r:
        assert r.status == 403 and await code_of(r) == "auth.forbidden"
    async with http.get(f"{api.url}/api/v1/agents", headers=carol) as r:
        assert r.status == 403
    # the clear token is nowhere in Redis
    for key in await redis.keys("*"):
        kind = (await redis.type(key)).decode()
        dump = ""
        if kind == "hash":
            dump = json.dumps({k.decode(): v.decode(errors="replace") for k, v in (await redis.hgetall(key)).items()})
        elif kind == "string":
            dump = (await redis.get(key) or b"").decode(errors="replace")
        elif kind == "stream":
            dump = repr(await redis.xrange(key))
        assert token not in dump, f"clear token in {key!r}"


async def test_agent_administration_is_for_admins_with_clear_errors(api: Api, http: aiohttp.ClientSession) -> None:
    for who in (AGENT1, SUPER):
        async with http.post(f"{api.url}/api/v1/agents", json=NEW_AGENT, headers=who) as r:
            assert r.status == 403 and await code_of(r) == "auth.forbidden"
    async with http.post(f"{api.url}/api/v1/agents", json=NEW_AGENT) as r:
        assert r.status == 401 and await code_of(r) == "auth.missing_token"
        assert r.headers["WWW-Authenticate"] == "Bearer"
    async with http.post(f"{api.url}/api/v1/agents", json=NEW_AGENT,
                         headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 401 and await code_of(r) == "auth.invalid_token"
    bad = [{**NEW_AGENT, "skills": {"billing": 9}}, {**NEW_AGENT, "id": "a b"}, {**NEW_AGENT, "extra": 1},
           {**NEW_AGENT, "languages": ["english!"]}, {"id": "x"}, [1, 2]]
    for body in bad:
        async with http.post(f"{api.url}/api/v1/agents", json=body, headers=ADMIN) as r:
            assert r.status == 400 and await code_of(r) == "request.invalid", body
    async with http.post(f"{api.url}/api/v1/agents", data=b"{nope", headers=ADMIN) as r:
        assert r.status == 400
    for dup in ("agent1", "carol"):
        if dup == "carol":
            async with http.post(f"{api.url}/api/v1/agents", json=NEW_AGENT, headers=ADMIN) as r:
                assert r.status == 201
        async with http.post(f"{api.url}/api/v1/agents", json={**NEW_AGENT, "id": dup}, headers=ADMIN) as r:
            assert r.status == 409 and await code_of(r) == "agent.exists"


async def test_update_rotate_and_delete_an_agent(api: Api, http: aiohttp.ClientSession, store: QueueStore) -> None:
    async with http.post(f"{api.url}/api/v1/agents", json=NEW_AGENT, headers=ADMIN) as r:
        old = {"Authorization": f"Bearer {(await r.json())['token']}"}
    async with http.patch(f"{api.url}/api/v1/agents/carol", json={"skills": {"support": 2}, "name": "Carol B"},
                          headers=ADMIN) as r:
        assert r.status == 200
        a = await r.json()
    assert a["skills"] == {"support": 2} and a["name"] == "Carol B" and a["languages"] == ["en", "ko"]
    assert a["sip_uri"] == "sip:carol@127.0.0.1:5999"
    async with http.patch(f"{api.url}/api/v1/agents/carol", json={"skills": {"support": 0}}, headers=ADMIN) as r:
        assert r.status == 400
    async with http.patch(f"{api.url}/api/v1/agents/agent1", json={"name": "x"}, headers=ADMIN) as r:
        assert r.status == 409 and await code_of(r) == "agent.configured"
    async with http.patch(f"{api.url}/api/v1/agents/ghost", json={"name": "x"}, headers=ADMIN) as r:
        assert r.status == 404 and await code_of(r) == "agent.not_found"
    # rotation: the old token stops at once
    async with http.post(f"{api.url}/api/v1/agents/carol/token", headers=ADMIN) as r:
        assert r.status == 200
        new = {"Authorization": f"Bearer {(await r.json())['token']}"}
    async with http.get(f"{api.url}/api/v1/agents/carol", headers=old) as r:
        assert r.status == 401 and await code_of(r) == "auth.invalid_token"
    async with http.get(f"{api.url}/api/v1/agents/carol", headers=new) as r:
        assert r.status == 200
    # an agent holding a call cannot be deleted; then it can, and its token dies with it
    await store.set_agent_state("carol", AgentState.AVAILABLE)
    await store.call_start("c9", "w0", ani="1", dnis="2", hotline="h", language="en", plan_version="v")
    offer = await store.enqueue("c9", queue="support", skill="support", priority=0, journey={})
    assert offer is not None and offer.agent_id == "carol"
    async with http.delete(f"{api.url}/api/v1/agents/carol", headers=ADMIN) as r:
        assert r.status == 409 and await code_of(r) == "agent.busy"
    await store.offer_failed("c9", offer.offer_id, "test")
    await store.set_agent_state("carol", AgentState.OFFLINE)
    async with http.delete(f"{api.url}/api/v1/agents/carol", headers=ADMIN) as r:
        assert r.status == 204
    async with http.get(f"{api.url}/api/v1/agents/carol", headers=new) as r:
        assert r.status == 401
    async with http.get(f"{api.url}/api/v1/agents/carol", headers=ADMIN) as r:
        assert r.status == 404
    assert "carol" not in await store.agent_ids()
    assert not await store.redis.sismember(store.keys.staffed("support"), "carol")
    async with http.delete(f"{api.url}/api/v1/agents/agent1", headers=ADMIN) as r:
        assert r.status == 409 and await code_of(r) == "agent.configured"


async def test_an_agent_may_not_set_a_routing_state_or_another_agents(api: Api, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{api.url}/api/v1/agents/agent1/state", json={"state": "oncall"}, headers=AGENT1) as r:
        assert r.status in (400, 409)
        await code_of(r)
    async with http.post(f"{api.url}/api/v1/agents/agent1/state", json={"state": "break"}, headers=AGENT2) as r:
        assert r.status == 403
    async with http.post(f"{api.url}/api/v1/agents/agent1/state", json={"state": "break", "reason": "lunch"},
                         headers=SUPER) as r:
        assert r.status == 200 and (await r.json())["reason"] == "lunch"


# --- disposition ---------------------------------------------------------------------------------

async def test_the_calls_agent_writes_disposition_and_notes_back(
        api: Api, http: aiohttp.ClientSession, store: QueueStore) -> None:
    offer_id = await offered(store, "c1")
    await store.offer_answered("c1", offer_id)
    async with http.get(f"{api.url}/api/v1/dispositions", headers=AGENT1) as r:
        codes = (await r.json())["dispositions"]
    assert "resolved" in codes
    body = {"disposition": "follow_up", "notes": "가입 해지 문의; call back Friday", "crm_record_id": "C-1002"}
    async with http.post(f"{api.url}/api/v1/calls/c1/disposition", json=body, headers=AGENT2) as r:
        assert r.status == 403
    async with http.post(f"{api.url}/api/v1/calls/c1/disposition", json={"disposition": "made_up"},
                         headers=AGENT1) as r:
        assert r.status == 400 and await code_of(r) == "call.disposition_invalid"
    async with http.post(f"{api.url}/api/v1/calls/c1/disposition", json={**body, "notes": "x" * 5000},
                         headers=AGENT1) as r:
        assert r.status == 400 and await code_of(r) == "request.invalid"
    async with http.post(f"{api.url}/api/v1/calls/nope/disposition", json=body, headers=AGENT1) as r:
        assert r.status == 404 and await code_of(r) == "call.not_found"
    async with http.post(f"{api.url}/api/v1/calls/c1/disposition", json=body, headers=AGENT1) as r:
        assert r.status == 200
        call = await r.json()
    assert call["disposition"] == "follow_up" and call["notes"] == body["notes"]
    assert call["disposition_by"] == "agent1" and call["crm_record_id"] == "C-1002"
    [ev] = [e for e in await store.read_events("0-0") if e.type == "call.disposition"]
    assert ev.data["call_id"] == "c1" and ev.data["agent_id"] == "agent1" and ev.data["notes"] == body["notes"]
    assert ev.data["crm_record_id"] == "C-1002"


# --- event feeds ---------------------------------------------------------------------------------

async def test_a_desktop_that_reconnects_gets_what_it_missed_once_and_in_order(
        api: Api, http: aiohttp.ClientSession, store: QueueStore) -> None:
    feed = Feed(http, f"{api.url}/api/v1/agents/agent1/events", "agent1-demo-token")
    await feed.open()
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    seen = await feed.wait(lambda m: m.get("type") == "agent.state" and m["state"] == "available")
    await feed.close()
    # while it is away: a break, a call offered and answered, another agent's event
    await store.set_agent_state("agent1", AgentState.BREAK, "coffee")
    await store.set_agent_state("agent2", AgentState.BREAK, "training")
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    offer_id = await offered(store, "c1")
    await store.offer_answered("c1", offer_id)
    missed = [e for e in await store.events_after(seen["id"])
              if e.data.get("agent_id") == "agent1" and e.type in {"agent.state", "call.offered", "call.answered"}]
    assert len(missed) >= 5
    again = Feed(http, f"{api.url}/api/v1/agents/agent1/events", "agent1-demo-token")
    hello = await again.open(last_event_id=seen["id"])
    assert hello["agent"]["state"] == "oncall" and hello["call"]["call_id"] == "c1"
    await again.wait(lambda m: m.get("type") == "call.answered")
    await store.agent_left("c1", wrapup_s=30)  # live, after the replay
    await again.wait(lambda m: m.get("type") == "agent.state" and m["state"] == "wrapup")
    await again.close()
    ids = again.ids()
    assert ids[:len(missed)] == [e.id for e in missed]
    assert len(ids) == len(set(ids)), "an event came twice"
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert all(m.get("agent_id") == "agent1" for m in again.messages)
    pop = next(m for m in again.messages if m["type"] == "call.offered")
    assert pop["ani"] == "+15550001" and pop["journey"]["steps"][0]["digit"] == "2"


async def test_a_bad_or_too_old_last_event_id(api: Api, http: aiohttp.ClientSession, store: QueueStore) -> None:
    async with http.get(f"{api.url}/api/v1/agents/agent1/events", params={"last_event_id": "yesterday"},
                        headers=AGENT1) as r:
        assert r.status == 400 and await code_of(r) == "request.invalid"
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    feed = Feed(http, f"{api.url}/api/v1/agents/agent1/events", "agent1-demo-token")
    await feed.open(last_event_id="1-0")  # before anything the capped stream still keeps
    gap = await feed.wait(lambda m: m.get("type") == "replay.gap")
    await feed.wait(lambda m: m.get("type") == "agent.state" and m["state"] == "available")
    await feed.close()
    assert gap["oldest"] and feed.messages[0]["type"] == "replay.gap"


async def test_the_pop_reaches_the_agent_on_whichever_api_instance_it_is_connected_to(
        tmp_path: Path, redis_server: RedisServer, redis: Redis, api: Api, http: aiohttp.ClientSession,
        store: QueueStore) -> None:
    other = Api(make_settings(tmp_path, redis_server))
    await other.start()
    try:
        feed = Feed(http, f"{other.url}/api/v1/agents/agent1/events", "agent1-demo-token")
        await feed.open()
        offer_id = await offered(store, "c1")
        pop = await feed.wait(lambda m: m.get("type") == "call.offered")
        assert pop["call_id"] == "c1" and pop["offer_id"] == offer_id
        assert await store.wait_pop_ack(offer_id, timeout_s=3), "the instance with the socket did not ack"
        await feed.close()
        assert [m["type"] for m in feed.messages].count("call.offered") == 1
    finally:
        await other.stop()


async def test_supervisors_get_the_floor_feed_and_agents_do_not(
        api: Api, http: aiohttp.ClientSession, store: QueueStore) -> None:
    async with http.get(f"{api.url}/api/v1/events", headers=AGENT1) as r:
        assert r.status == 403
    floor = Feed(http, f"{api.url}/api/v1/events", "super1-demo-token")
    await floor.open()
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    await store.set_agent_state("agent2", AgentState.BREAK, "lunch")
    await floor.wait(lambda m: m.get("agent_id") == "agent2" and m.get("state") == "break")
    await floor.wait(lambda m: m.get("agent_id") == "agent1" and m.get("state") == "available")
    await floor.close()


# --- CORS ----------------------------------------------------------------------------------------

async def test_cors_allows_only_the_configured_origins(api: Api, http: aiohttp.ClientSession) -> None:
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    async with http.options(f"{api.url}/api/v1/agents", headers={**pre, "Origin": CRM_ORIGIN}) as r:
        assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == CRM_ORIGIN
        assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
        assert "Access-Control-Allow-Credentials" not in r.headers
    async with http.options(f"{api.url}/api/v1/agents", headers={**pre, "Origin": "https://evil.example"}) as r:
        assert r.status == 403 and await code_of(r) == "cors.origin_refused"
        assert "Access-Control-Allow-Origin" not in r.headers
    async with http.get(f"{api.url}/api/v1/agents", headers={**SUPER, "Origin": CRM_ORIGIN}) as r:
        assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == CRM_ORIGIN
    async with http.get(f"{api.url}/api/v1/agents", headers={"Origin": CRM_ORIGIN}) as r:
        assert r.status == 401 and r.headers["Access-Control-Allow-Origin"] == CRM_ORIGIN  # the page can read why
    async with http.get(f"{api.url}/api/v1/agents", headers={**SUPER, "Origin": "https://evil.example"}) as r:
        assert "Access-Control-Allow-Origin" not in r.headers


def test_a_wildcard_or_path_is_not_a_cors_origin() -> None:
    from ivr.core.config import load_settings
    from ivr.core.errors import ConfigError

    for bad in ("*", "https://crm.example.com/path", "crm.example.com"):
        with pytest.raises(ConfigError):
            load_settings(None, api={"cors_origins": [bad]})


async def test_the_pop_carries_the_wait_estimate_the_caller_was_given(
        api: Api, http: aiohttp.ClientSession, store: QueueStore) -> None:
    feed = Feed(http, f"{api.url}/api/v1/agents/agent1/events", "agent1-demo-token")
    await feed.open()
    await store.call_start("c1", "w0", ani="+15550001", dnis="1000", hotline="demo", language="en",
                           plan_version="v1")
    assert await store.enqueue("c1", queue="billing", skill="billing", priority=5, journey={}) is None
    estimate = await store.wait_estimate("c1")
    assert estimate is not None
    await store.remember_estimate("c1", estimate)
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    pop = await feed.wait(lambda m: m.get("type") == "call.offered")
    await feed.close()
    assert pop["ewt_s"] == round(estimate.seconds) and pop["priority"] == 5 and pop["waited_s"] >= 0


async def test_a_burst_of_desktops_connecting_at_once_all_get_in(
        tmp_path: Path, redis_server: RedisServer, redis: Redis) -> None:
    """150 desktops at once wait for a Redis connection instead of failing (redis-py's default pool
    refused the 101st command, a 500: found by bench/pops.py)."""
    await redis.flushdb()
    a = Api(make_settings(tmp_path, redis_server))
    await a.start()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        feeds = [Feed(http, f"{a.url}/api/v1/agents/agent1/events", "agent1-demo-token") for _ in range(150)]
        try:
            hellos = await asyncio.gather(*(f.open() for f in feeds))
            assert all(h["agent"]["agent_id"] == "agent1" for h in hellos)
        finally:
            await asyncio.gather(*(f.close() for f in feeds))
            await a.stop()


async def test_a_page_that_acks_its_pops_lets_the_phone_ring_only_then(
        api: Api, http: aiohttp.ClientSession, store: QueueStore) -> None:
    feed = Feed(http, f"{api.url}/api/v1/agents/agent1/events?ack=client", "agent1-demo-token")
    await feed.open()
    offer_id = await offered(store, "c1")
    await feed.wait(lambda m: m.get("type") == "call.offered")
    assert not await store.wait_pop_ack(offer_id, timeout_s=0.3), "acked before the page said so"
    assert feed.ws is not None
    await feed.ws.send_json({"type": "ack", "offer_id": "someone-elses.1"})  # never sent to this page
    await feed.ws.send_str("not json")
    await feed.ws.send_json({"type": "ack", "offer_id": offer_id})
    assert await store.wait_pop_ack(offer_id, timeout_s=3)
    assert not await store.wait_pop_ack("someone-elses.1", timeout_s=0.1)
    await feed.close()


async def test_an_idle_socket_is_pinged_and_shutdown_closes_sockets_at_once(
        tmp_path: Path, redis_server: RedisServer, redis: Redis, http: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import ivr.cti.hub

    monkeypatch.setattr(ivr.cti.hub, "PING_S", 0.2)
    a = Api(make_settings(tmp_path, redis_server))
    a.runner = web.AppRunner(init_app(a.settings), shutdown_timeout=30.0)
    await a.start()
    feed = Feed(http, f"{a.url}/api/v1/agents/agent1/events", "agent1-demo-token")
    await feed.open()
    await feed.wait(lambda m: m.get("type") == "ping")
    stopping = asyncio.create_task(a.stop())
    assert feed._task is not None
    await asyncio.wait_for(feed._task, 10)  # the server closed it (a 30 s shutdown timeout would fail this)
    assert feed.ws is not None and feed.ws.close_code == 1001
    await asyncio.wait_for(stopping, 10)


async def test_admins_read_the_running_config_with_every_secret_masked(api: Api, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{api.url}/api/v1/config", headers=SUPER) as r:
        assert r.status == 403
    async with http.get(f"{api.url}/api/v1/config", headers=ADMIN) as r:
        assert r.status == 200
        text = await r.text()
    config = json.loads(text)
    assert config["api"]["cors_origins"] == [CRM_ORIGIN]
    assert {u["token"] for u in config["users"]} == {"**********"}
    assert "demo-token" not in text
