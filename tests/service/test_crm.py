"""The CRM connector against a real HTTP server standing in for the CRM (and one that is down, and
one that is slow), with a real Redis for its cache; and a real pop through the CTI API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, CrmSettings, Settings
from ivr.core.event_catalogue import VERSION
from ivr.core.events import AgentState
from ivr.cti.app import init_app
from ivr.cti.crm import CrmConnector
from ivr.queues.store import QueueStore, StreamEvent
from tests.conftest import RedisServer
from tests.ports import free_udp_tcp_port

PREFIX = "crm"
ANI = "+15550001"
CONTACTS: dict[str, list[dict[str, Any]]] = {
    "+15550001": [{"contact": {"id": "C-1", "full_name": "Ada Kim", "tier": "gold"}}],
    "+15550002": [{"contact": {"id": "C-2", "full_name": "Ben Lee", "tier": "silver"}},
                  {"contact": {"id": "C-3", "full_name": "Bo Lee", "tier": "normal"}},
                  {"contact": {"id": "C-2", "full_name": "Ben Lee", "tier": "silver"}},  # listed twice
                  {"contact": {"id": "C-4", "full_name": "Bea Lee", "tier": "normal"}}],
}
ACCOUNTS = {"778899": {"account": {"number": "778899", "holder": "Cho Min", "plan": "family"}}}


class FakeCrm:
    """A CRM on 127.0.0.1: contacts by phone (GET), accounts by number (POST), a slow path."""

    def __init__(self) -> None:
        self.port = free_udp_tcp_port()
        self.requests: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()

        async def contacts(request: web.Request) -> web.Response:
            self.requests.append({"path": request.path, "phone": request.query.get("phone"),
                                  "auth": request.headers.get("Authorization")})
            return web.json_response({"data": {"items": CONTACTS.get(request.query.get("phone", ""), [])}})

        async def accounts(request: web.Request) -> web.Response:
            body = await request.json()
            self.requests.append({"path": request.path, "body": body})
            found = ACCOUNTS.get(body.get("query", {}).get("number", ""))
            return web.json_response({"result": found})

        async def slow(request: web.Request) -> web.Response:
            self.requests.append({"path": request.path, "phone": request.query.get("phone")})
            await asyncio.wait_for(self.release.wait(), 10)  # held until the test releases it
            return web.json_response({"data": {"items": CONTACTS.get(request.query.get("phone", ""), [])}})

        app.router.add_get("/api/contacts", contacts)
        app.router.add_post("/api/accounts/search", accounts)
        app.router.add_get("/api/slow/contacts", slow)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def crm() -> AsyncIterator[FakeCrm]:
    server = FakeCrm()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX)


def by_phone(base: str, path: str = "/api/contacts") -> dict[str, Any]:
    return {"name": "by_phone", "needs": "ani", "url": base + path + "?phone={ani_e164}",
            "headers": {"Authorization": "Bearer crm-api-key"},
            "records": "data.items", "id_field": "contact.id", "name_field": "contact.full_name",
            "fields": {"tier": "contact.tier"}, "link": "https://crm.example.com/contacts/{id}",
            "search_link": "https://crm.example.com/search?phone={ani}"}


def by_account(base: str) -> dict[str, Any]:
    return {"name": "by_account", "needs": "account", "method": "POST", "url": base + "/api/accounts/search",
            "body": {"query": {"number": "{account}"}, "limit": 5}, "records": "result",
            "id_field": "account.number", "name_field": "account.holder", "fields": {"plan": "account.plan"},
            "link": "https://crm.example.com/accounts/{id}"}


ConnectorFactory = Callable[..., CrmConnector]


@pytest.fixture
async def connector(store: QueueStore) -> AsyncIterator[ConnectorFactory]:
    made: list[CrmConnector] = []

    def make(*lookups: dict[str, Any], **settings: Any) -> CrmConnector:
        c = CrmConnector(CrmSettings(lookups=list(lookups), **settings), store)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


def offered(ani: str = ANI, **variables: str) -> StreamEvent:
    return StreamEvent("1700000000000-0", "call.offered", {
        "call_id": "c1", "offer_id": "o1", "agent_id": "agent1", "queue": "billing", "ani": ani, "dnis": "1000",
        "hotline": "demo", "language": "en", "journey": {"plan": "main", "steps": [], "data": dict(variables)}})


async def test_one_match_by_caller_number(crm: FakeCrm, connector: ConnectorFactory) -> None:
    pop = (await connector(by_phone(crm.base)).for_pop(offered()))["crm"]
    assert pop["status"] == "matched" and pop["lookup"] == "by_phone" and pop["cached"] is False
    assert pop["record"] == {"id": "C-1", "name": "Ada Kim", "fields": {"tier": "gold"},
                             "link": "https://crm.example.com/contacts/C-1"}
    assert isinstance(pop["ms"], int)
    assert crm.requests == [{"path": "/api/contacts", "phone": ANI, "auth": "Bearer crm-api-key"}]


async def test_several_matches_are_listed_for_the_agent_not_guessed(crm: FakeCrm, connector: ConnectorFactory) -> None:
    pop = (await connector(by_phone(crm.base), max_records=2).for_pop(offered("+15550002")))["crm"]
    assert pop["status"] == "multiple" and pop["total"] == 3  # C-2 listed twice counts once
    assert [r["id"] for r in pop["records"]] == ["C-2", "C-3"]
    assert pop["records"][1]["link"] == "https://crm.example.com/contacts/C-3"
    assert pop["search_link"] == "https://crm.example.com/search?phone=%2B15550002"


async def test_no_match(crm: FakeCrm, connector: ConnectorFactory) -> None:
    pop = (await connector(by_phone(crm.base)).for_pop(offered("+15559999")))["crm"]
    assert pop["status"] == "none" and pop["lookup"] == "by_phone"
    assert "record" not in pop and "records" not in pop
    assert pop["search_link"].startswith("https://crm.example.com/search?phone=")


async def test_an_account_number_is_preferred_over_the_caller_number(
        crm: FakeCrm, connector: ConnectorFactory) -> None:
    c = connector(by_phone(crm.base), by_account(crm.base))  # configured caller number first
    pop = (await c.for_pop(offered(account="778899")))["crm"]
    assert pop["status"] == "matched" and pop["lookup"] == "by_account"
    assert pop["record"] == {"id": "778899", "name": "Cho Min", "fields": {"plan": "family"},
                             "link": "https://crm.example.com/accounts/778899"}
    assert crm.requests == [{"path": "/api/accounts/search", "body": {"query": {"number": "778899"}, "limit": 5}}]
    # an account number the CRM does not know: the caller number still finds the record
    pop = (await c.for_pop(offered(account="000000")))["crm"]
    assert pop["status"] == "matched" and pop["lookup"] == "by_phone" and pop["record"]["id"] == "C-1"


async def test_a_masked_variable_is_never_used(crm: FakeCrm, connector: ConnectorFactory) -> None:
    c = connector(by_account(crm.base), by_phone(crm.base))
    pop = (await c.for_pop(offered(account="****")))["crm"]
    assert pop["lookup"] == "by_phone" and pop["status"] == "matched"
    assert [r["path"] for r in crm.requests] == ["/api/contacts"]
    # only a masked account and no caller number: nothing to look up
    pop = (await c.for_pop(offered("", account="****99")))["crm"]
    assert pop["status"] == "none" and pop["lookup"] is None
    assert len(crm.requests) == 1


async def test_a_slow_crm_lets_the_pop_go_flagged_and_fills_the_cache_later(
        crm: FakeCrm, connector: ConnectorFactory) -> None:
    c = connector(by_phone(crm.base, "/api/slow/contacts"), timeout_ms=100)
    pop = (await c.for_pop(offered()))["crm"]
    assert pop["status"] == "timeout" and pop["lookup"] == "by_phone"
    assert pop["search_link"] == "https://crm.example.com/search?phone=%2B15550001"
    crm.release.set()  # the CRM answers at last: the next offer joins the request still under way
    pop = (await c.for_pop(offered()))["crm"]
    assert pop["status"] == "matched" and pop["record"]["id"] == "C-1"
    pop = (await c.for_pop(offered()))["crm"]  # which filled the cache
    assert pop["status"] == "matched" and pop["cached"] is True
    assert len(crm.requests) == 1


async def test_a_crm_that_is_down_gives_an_error_flag(connector: ConnectorFactory) -> None:
    down = f"http://127.0.0.1:{free_udp_tcp_port()}"  # nothing listens there
    pop = (await connector(by_phone(down)).for_pop(offered()))["crm"]
    assert pop["status"] == "error" and pop["reason"] == "connection" and pop["lookup"] == "by_phone"


async def test_an_error_on_one_lookup_falls_back_to_the_next(crm: FakeCrm, connector: ConnectorFactory) -> None:
    broken = {**by_account(f"http://127.0.0.1:{free_udp_tcp_port()}")}
    pop = (await connector(broken, by_phone(crm.base)).for_pop(offered(account="778899")))["crm"]
    assert pop["status"] == "matched" and pop["lookup"] == "by_phone"


async def test_the_cache_answers_the_second_pop_and_concurrent_pops_share_one_request(
        crm: FakeCrm, connector: ConnectorFactory, store: QueueStore) -> None:
    c = connector(by_phone(crm.base))
    pops = await asyncio.gather(*(c.for_pop(offered()) for _ in range(5)))
    assert {p["crm"]["status"] for p in pops} == {"matched"}
    assert len(crm.requests) == 1
    again = (await c.for_pop(offered()))["crm"]
    assert again["status"] == "matched" and again["cached"] is True
    assert len(crm.requests) == 1
    keys = [k.decode() for k in await store.redis.keys(f"{PREFIX}:crm:*")]
    assert len(keys) == 1 and keys[0].startswith(f"{PREFIX}:crm:cache:")
    assert not any(digits in k for k in keys for digits in ("5550001", "15550001"))
    assert 0 < await store.redis.ttl(keys[0]) <= 60


async def test_no_cache_when_its_ttl_is_zero(crm: FakeCrm, connector: ConnectorFactory) -> None:
    c = connector(by_phone(crm.base), cache_ttl_s=0)
    for _ in range(2):
        assert (await c.for_pop(offered()))["crm"]["cached"] is False
    assert len(crm.requests) == 2


async def test_a_queued_call_is_looked_up_before_its_offer_by_one_instance(
        crm: FakeCrm, connector: ConnectorFactory, store: QueueStore) -> None:
    await store.call_start("c1", "w0", ani=ANI, dnis="1000", hotline="demo", language="en", plan_version="v1")
    await store.enqueue("c1", queue="billing", skill="billing", priority=0,
                        journey={"plan": "main", "steps": [], "data": {"account": "****"}})
    [queued] = [e for e in await store.read_events("0-0") if e.type == "call.queued"]
    assert "ani" not in queued.data  # the connector reads the number from the call record
    first, second = connector(by_phone(crm.base)), connector(by_phone(crm.base))
    await asyncio.gather(first.warm(queued), second.warm(queued))  # two API instances
    assert len(crm.requests) == 1
    pop = (await second.for_pop(offered()))["crm"]
    assert pop["status"] == "matched" and pop["cached"] is True
    assert len(crm.requests) == 1


# --- the pop itself, through the CTI API --------------------------------------------------------

@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer, crm: FakeCrm) -> Settings:
    return Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                    api={"host": "127.0.0.1", "port": free_udp_tcp_port()},
                    crm={"lookups": [by_account(crm.base), by_phone(crm.base)]})


async def test_the_pop_on_the_agents_desktop_carries_the_crm_record(
        settings: Settings, store: QueueStore, crm: FakeCrm) -> None:
    runner = web.AppRunner(init_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.api.port).start()
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"http://127.0.0.1:{settings.api.port}/api/v1/agents/agent1/events",
                headers={"Authorization": "Bearer agent1-demo-token"}) as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello"
            await store.call_start("c9", "w0", ani=ANI, dnis="1000", hotline="demo", language="en",
                                   plan_version="v1")
            await store.set_agent_state("agent1", AgentState.AVAILABLE)
            offer = await store.enqueue("c9", queue="billing", skill="billing", priority=0,
                                        journey={"plan": "main", "steps": [], "data": {"account": "778899"}})
            assert offer is not None
            pop: dict[str, Any] = {}
            for _ in range(20):
                pop = json.loads((await ws.receive(timeout=5)).data)
                if pop["type"] == "call.offered":
                    break
            assert pop["type"] == "call.offered" and pop["call_id"] == "c9"
            assert pop["crm"]["status"] == "matched" and pop["crm"]["lookup"] == "by_account"
            assert pop["crm"]["record"]["name"] == "Cho Min"
            assert await store.wait_pop_ack(offer.offer_id, 5)  # the pop was acknowledged after it was written
    finally:
        await runner.cleanup()


async def _pop(ws: aiohttp.ClientWebSocketResponse, call_id: str) -> dict[str, Any]:
    for _ in range(30):
        msg = json.loads((await ws.receive(timeout=5)).data)
        if msg["type"] == "call.offered" and msg["call_id"] == call_id:
            return dict(msg)
    raise AssertionError(f"no pop of {call_id}")


async def test_the_match_is_stored_once_replayed_without_a_lookup_and_kept_off_the_floor(
        settings: Settings, store: QueueStore, crm: FakeCrm, redis: Redis) -> None:
    """The CRM is asked once per call: the settled match goes on the call record (and the stream as
    call.crm_matched), a desktop that reconnects gets the stored one, and the supervisors' floor feed
    neither carries customer data nor causes a lookup."""
    runner = web.AppRunner(init_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.api.port).start()
    base = f"http://127.0.0.1:{settings.api.port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"{base}/api/v1/events",
                                       headers={"Authorization": "Bearer super1-demo-token"}) as floor:
                assert (await floor.receive_json(timeout=5))["type"] == "hello"
                await store.call_start("c7", "w0", ani=ANI, dnis="1000", hotline="demo", language="en",
                                       plan_version="v1")
                await store.set_agent_state("agent1", AgentState.AVAILABLE)
                await store.enqueue("c7", queue="billing", skill="billing", priority=0,
                                    journey={"plan": "main", "steps": [], "data": {}})
                on_floor = await _pop(floor, "c7")
                assert "crm" not in on_floor
            await asyncio.sleep(0.3)  # a warm-up of the queued call may run (one request at most)
            before = len(crm.requests)
            assert before <= 1
            async with http.ws_connect(f"{base}/api/v1/agents/agent1/events?last_event_id=0-0",
                                       headers={"Authorization": "Bearer agent1-demo-token"}) as ws:
                pop = await _pop(ws, "c7")
            assert pop["crm"]["status"] == "matched" and pop["crm"]["record"]["name"] == "Ada Kim"
            record = await store.get_call("c7")
            assert record is not None and record["crm"]["record"]["id"] == pop["crm"]["record"]["id"]
            asked = len(crm.requests)
            # a reconnect replays the pop with the stored match: no new request, no second event
            async with http.ws_connect(f"{base}/api/v1/agents/agent1/events?last_event_id=0-0",
                                       headers={"Authorization": "Bearer agent1-demo-token"}) as ws:
                again = await _pop(ws, "c7")
            assert again["crm"] == pop["crm"]
            assert len(crm.requests) == asked
            matched = [e for e in await store.read_events("0-0") if e.type == "call.crm_matched"]
            assert len(matched) == 1
            assert matched[0].data["call_id"] == "c7" and matched[0].data["status"] == "matched"
            assert matched[0].data["record_id"] == pop["crm"]["record"]["id"] and matched[0].data["v"] == VERSION
    finally:
        await runner.cleanup()
