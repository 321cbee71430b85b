"""GET /metrics of the real CTI API on a real Redis: who may read it, and that its figures follow a
queued call, the agents' states, a screen-pop written to a real WebSocket and the HTTP requests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings
from ivr.core.events import AgentState
from ivr.cti.app import init_app
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer, free_port

PREFIX = "met"
SUPER = {"Authorization": "Bearer super1-demo-token"}
ADMIN = {"Authorization": "Bearer admin-demo-token"}
AGENT1 = {"Authorization": "Bearer agent1-demo-token"}
Api = tuple[str, aiohttp.ClientSession]


@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    return Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                    api={"host": "127.0.0.1", "port": free_port()})


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX)


@pytest.fixture
async def api(settings: Settings, store: QueueStore) -> AsyncIterator[Api]:
    runner = web.AppRunner(init_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.api.port).start()
    async with aiohttp.ClientSession() as http:
        yield f"http://127.0.0.1:{settings.api.port}", http
    await runner.cleanup()


async def scrape(api: Api, headers: dict[str, str] = SUPER) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus_client: (name, sorted labels) -> value."""
    url, http = api
    async with http.get(f"{url}/metrics", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples: list[Sample] = [s for family in text_string_to_metric_families(text) for s in family.samples]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


async def start_call(store: QueueStore, cid: str) -> None:
    await store.call_start(cid, "w0", ani="+15550001", dnis="1000", hotline="demo", language="en", plan_version="v1")


async def test_metrics_need_a_supervisor_or_admin_token(api: Api) -> None:
    url, http = api
    async with http.get(f"{url}/metrics") as resp:
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "auth.missing_token"
    async with http.get(f"{url}/metrics", headers=AGENT1) as resp:
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "auth.forbidden"
    for headers in (SUPER, ADMIN):
        assert ("ivr_active_calls", ()) in await scrape(api, headers)


async def test_metrics_follow_calls_agents_and_a_screen_pop(api: Api, store: QueueStore) -> None:
    url, http = api
    idle = await scrape(api)
    assert idle[("ivr_active_calls", ())] == 0
    assert idle[("ivr_agents", (("state", "offline"),))] == 2  # agent1 and agent2 of the demo users
    assert idle[("ivr_pop_latency_seconds_count", ())] == 0
    assert not any(name == "ivr_queue_waiting_calls" for name, _ in idle)
    assert idle[("ivr_webhook_dead_letters", ())] == 0  # the outbox, with no endpoint configured
    assert not any(name == "ivr_webhook_backlog" for name, _ in idle)

    async with http.ws_connect(f"{url}/api/v1/agents/agent1/events", headers=AGENT1) as ws:
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "hello"
        await store.set_agent_state("agent1", AgentState.AVAILABLE)
        await start_call(store, "c1")
        offer = await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={"steps": []})
        assert offer is not None and offer.agent_id == "agent1"
        for _ in range(20):  # agent.state first, then the pop
            msg = json.loads((await ws.receive(timeout=10)).data)
            if msg["type"] == "call.offered":
                break
        assert msg["call_id"] == "c1"
        assert await store.wait_pop_ack(offer.offer_id, 10)  # the hub acks after it observed the latency
        await start_call(store, "c2")  # nobody free: c2 waits
        assert await store.enqueue("c2", queue="billing", skill="billing", priority=0, journey={"steps": []}) is None
        await start_call(store, "c3")  # still in the IVR

        m = await scrape(api)
        assert m[("ivr_active_calls", ())] == 3
        assert m[("ivr_queue_waiting_calls", (("queue", "billing"),))] == 1
        assert m[("ivr_queue_longest_wait_seconds", (("queue", "billing"),))] >= 0
        assert m[("ivr_agents", (("state", "reserved"),))] == 1
        assert m[("ivr_agents", (("state", "offline"),))] == 1
        assert m[("ivr_agents", (("state", "available"),))] == 0
        assert m[("ivr_desktop_sockets", ())] == 1
        assert m[("ivr_pop_latency_seconds_count", ())] == 1
        assert m[("ivr_pop_latency_seconds_bucket", (("le", "2.0"),))] == 1
        assert 0 <= m[("ivr_pop_latency_seconds_sum", ())] <= 2

    await store.leave_queue("c2", "test")
    m = await scrape(api)
    assert m[("ivr_queue_waiting_calls", (("queue", "billing"),))] == 0
    assert m[("ivr_queue_longest_wait_seconds", (("queue", "billing"),))] == 0
    assert m[("ivr_http_requests_total", (("method", "GET"), ("route", "/api/v1/agents/{agent_id}/events"),
                                          ("status", "101")))] == 1


async def test_http_requests_are_counted_by_route_template_and_status(api: Api) -> None:
    url, http = api
    for path, headers in (("/api/v1/agents/agent1", AGENT1), ("/api/v1/agents/agent2", AGENT1),
                          ("/api/v1/agents/agent2", SUPER), ("/no/such/page", SUPER)):
        async with http.get(url + path, headers=headers):
            pass
    m = await scrape(api)

    def count(route: str, status: str) -> float:
        return m.get(("ivr_http_requests_total", (("method", "GET"), ("route", route), ("status", status))), 0)

    assert count("/api/v1/agents/{agent_id}", "200") == 2
    assert count("/api/v1/agents/{agent_id}", "403") == 1
    assert count("unmatched", "404") == 1
    timed = ("ivr_http_request_duration_seconds_count", (("method", "GET"), ("route", "/api/v1/agents/{agent_id}")))
    assert m[timed] == 3
    assert not any("agent1" in str(labels) for _, labels in m)  # raw paths never become label values


async def test_openmetrics_on_request(api: Api) -> None:
    url, http = api
    async with http.get(f"{url}/metrics", headers={**ADMIN, "Accept": "application/openmetrics-text"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await resp.text()).rstrip().endswith("# EOF")
