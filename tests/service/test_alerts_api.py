"""The alerts API on the real app and a real Redis: roles (agents get 403), bad parameters (400), the
active list, the history's filters and cursor, the effective rules, and acknowledging (audited)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from ivr.alerts.engine import AlertEvaluator
from ivr.core.config import DEMO_USERS, AlertRule, Settings
from ivr.core.events import AgentState
from ivr.cti.app import init_app
from ivr.queues.stats import StatsConfig
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer, free_port

PREFIX = "alertsapi"
AGENT = {"Authorization": "Bearer agent1-demo-token"}
SUPER = {"Authorization": "Bearer super1-demo-token"}
ADMIN = {"Authorization": "Bearer admin-demo-token"}
RULES = [AlertRule(name="queue_full", metric="waiting", threshold=1, clear_at=0, for_s=0, clear_for_s=0,
                   severity="critical", sound=True),
         AlertRule(name="long_wait", metric="longest_wait_s", threshold=3600, for_s=0),
         AlertRule(name="dead_letters", metric="dead_letters", threshold=0, for_s=0),
         AlertRule(name="sl", metric="service_level", threshold=0.8, for_s=86400, min_calls=2),
         AlertRule(name="workers", metric="worker_load", threshold=0.9, for_s=86400)]


@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    return Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                    api={"host": "127.0.0.1", "port": free_port()}, speech={"enabled": False},
                    alerts={"enabled": False, "rules": RULES},  # the test drives the evaluator itself
                    routing={"short_abandon_s": 0,
                             "queues": {"vip": {"alerts": {"queue_full": {"threshold": 0, "severity": "warning"}}}}})


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[str]:
    runner = web.AppRunner(init_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.api.port).start()
    yield f"http://127.0.0.1:{settings.api.port}"
    await runner.cleanup()


@pytest.fixture
def store(redis: Redis, settings: Settings) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX, stats=StatsConfig.from_routing(settings.routing))


async def get(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with http.get(url, headers=headers) as r:
        return r.status, await r.json()


async def two_waiting(store: QueueStore, queue: str = "billing") -> None:
    for cid in (f"{queue}-1", f"{queue}-2"):
        await store.call_start(cid, "w0", ani="+15550001", dnis="1000", hotline="demo", language="en",
                               plan_version="v1")
        await store.enqueue(cid, queue=queue, skill=queue, priority=0, journey={"steps": []})


async def test_agents_may_not_use_the_alerts_api(api: str, http: aiohttp.ClientSession) -> None:
    for path in ("/api/v1/alerts", "/api/v1/alerts/history", "/api/v1/alerts/rules"):
        status, body = await get(http, api + path, AGENT)
        assert status == 403 and body["error"]["code"] == "auth.forbidden", path
        status, _ = await get(http, api + path, {})
        assert status == 401
    async with http.post(f"{api}/api/v1/alerts/AL1/ack", headers=AGENT) as r:
        assert r.status == 403


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=x", "since=yesterday", "until=2024-13-01",
                                   "queue=a%20b", "rule=" + "r" * 65, "severity=fatal", "severity=info,",
                                   "cursor=%21%21", "cursor=eyJzIjoxLCJjIjoiQUwxIiwicSI6IngifQ"])
async def test_bad_history_parameters_are_a_400(api: str, http: aiohttp.ClientSession, query: str) -> None:
    status, body = await get(http, f"{api}/api/v1/alerts/history?{query}", SUPER)
    assert status == 400 and body["error"]["code"] == "request.invalid", query


async def test_alerts_are_listed_filtered_paged_and_acknowledged(
        api: str, http: aiohttp.ClientSession, settings: Settings, store: QueueStore) -> None:
    status, body = await get(http, f"{api}/api/v1/alerts", SUPER)
    assert status == 200 and body["alerts"] == [] and body["counts"] == {"info": 0, "warning": 0, "critical": 0}
    await two_waiting(store, "billing")
    await two_waiting(store, "vip")
    ev = AlertEvaluator(store, settings, owner="test")
    now = int(time.time() * 1000)
    raised, _ = await ev.evaluate(now) or ([], [])
    assert sorted((a["queue"], a["severity"]) for a in raised) == [("billing", "critical"), ("vip", "warning")]

    status, body = await get(http, f"{api}/api/v1/alerts", ADMIN)
    assert [a["queue"] for a in body["alerts"]] == ["billing", "vip"]  # critical first
    assert body["counts"] == {"info": 0, "warning": 1, "critical": 1}
    billing = body["alerts"][0]
    assert billing["message"] == "billing: callers waiting 2 above 1" and billing["sound"] is True
    assert billing["acked_by"] is None and billing["cleared_at"] is None and billing["raised_at"] == now

    # the history: filters, and a cursor that goes on
    status, body = await get(http, f"{api}/api/v1/alerts/history?severity=warning", SUPER)
    assert [a["queue"] for a in body["alerts"]] == ["vip"]
    status, body = await get(http, f"{api}/api/v1/alerts/history?queue=billing&rule=queue_full", SUPER)
    assert [a["id"] for a in body["alerts"]] == [billing["id"]]
    status, page1 = await get(http, f"{api}/api/v1/alerts/history?limit=1", SUPER)
    assert len(page1["alerts"]) == 1 and page1["next_cursor"]
    status, page2 = await get(http, f"{api}/api/v1/alerts/history?limit=1&cursor={page1['next_cursor']}", SUPER)
    assert status == 200 and len(page2["alerts"]) == 1 and page2["alerts"][0]["id"] != page1["alerts"][0]["id"]
    status, body = await get(http, f"{api}/api/v1/alerts/history?queue=vip&cursor={page1['next_cursor']}", SUPER)
    assert status == 400  # a cursor belongs to its filters
    status, body = await get(http, f"{api}/api/v1/alerts/history?until=2001-01-01", SUPER)
    assert status == 200 and body == {"alerts": [], "next_cursor": None}

    # acknowledge: who and when, audited; it stays active
    async with http.post(f"{api}/api/v1/alerts/{billing['id']}/ack", headers=SUPER) as r:
        assert r.status == 200
        acked = await r.json()
    assert acked["acked_by"] == "super1" and acked["acked_at"] >= now and acked["cleared_at"] is None
    status, body = await get(http, f"{api}/api/v1/alerts", SUPER)
    assert [a["acked_by"] for a in body["alerts"]] == ["super1", None]
    entries, _ = await store.audit_entries(action="alert.ack")
    assert [(e["by"], e["target"], e["detail"]) for e in entries] == [
        ("super1", billing["id"], {"rule": "queue_full", "queue": "billing"})]
    for bad, code in (("AL999999", 404), ("nope", 404)):
        async with http.post(f"{api}/api/v1/alerts/{bad}/ack", headers=SUPER) as r:
            assert r.status == code and (await r.json())["error"]["code"] == "alert.not_found"
    # once cleared: 409, and the history says when
    for cid in ("billing-1", "billing-2"):
        await store.leave_queue(cid, "timeout")
    _, cleared = await ev.evaluate(now + 1000) or ([], [])
    assert [a["id"] for a in cleared] == [billing["id"]]
    async with http.post(f"{api}/api/v1/alerts/{billing['id']}/ack", headers=SUPER) as r:
        assert r.status == 409 and (await r.json())["error"]["code"] == "alert.not_active"
    status, body = await get(http, f"{api}/api/v1/alerts/history?queue=billing", SUPER)
    assert body["alerts"][0]["cleared_at"] == now + 1000 and body["alerts"][0]["clear_value"] == 0


async def test_the_rules_in_force_per_queue(api: str, http: aiohttp.ClientSession, store: QueueStore) -> None:
    await two_waiting(store, "sales")  # a queue known from Redis only
    status, body = await get(http, f"{api}/api/v1/alerts/rules", SUPER)
    assert status == 200
    assert [r["name"] for r in body["system"]] == ["dead_letters", "workers"]
    assert sorted(body["queues"]) == ["sales", "vip"]
    vip = {r["name"]: r for r in body["queues"]["vip"]}
    assert vip["queue_full"]["threshold"] == 0 and vip["queue_full"]["severity"] == "warning"
    assert vip["queue_full"]["clear_at"] == 0 and vip["long_wait"]["direction"] == "above"
    sales = {r["name"]: r for r in body["queues"]["sales"]}
    assert sales["queue_full"]["threshold"] == 1 and sales["queue_full"]["severity"] == "critical"


async def test_metrics_has_the_gauges_the_prometheus_rules_read(
        api: str, http: aiohttp.ClientSession, settings: Settings, store: QueueStore) -> None:
    await store.register_agent("a1", name="A1", skills={"billing": 3}, sip_uri=None, languages=["en"])
    await two_waiting(store, "billing")  # nobody available yet: both wait
    await store.set_agent_state("a1", AgentState.AVAILABLE)  # takes the first caller
    call = await store.get_call("billing-1")
    assert call is not None and call.get("offer_id")
    await store.offer_answered("billing-1", str(call["offer_id"]))
    await store.end_call("billing-2", reason="caller_hangup", wrapup_s=0, ttl_s=3600)  # the other gives up
    await two_waiting(store, "vip")
    await store.register_worker("w0", "h:1", ttl_s=30, slots=4)  # holds billing-1 and vip's two callers
    await AlertEvaluator(store, settings, owner="test").evaluate()
    async with http.get(f"{api}/metrics", headers=SUPER) as r:
        assert r.status == 200
        text = await r.text()
    lines = set(text.splitlines())
    assert 'ivr_queue_service_level{queue="billing",threshold="10",window="1800"} 0.5' in lines
    assert 'ivr_queue_abandon_rate{queue="billing",window="1800"} 0.5' not in lines  # no abandon rule: not measured
    assert 'ivr_queue_agents_signed_in{queue="billing"} 1.0' in lines
    assert "ivr_worker_load 0.75" in lines
    assert 'ivr_alerts_active{severity="warning"} 1.0' in lines  # vip's queue_full (its own severity)
    assert 'ivr_alerts_active{severity="critical"} 0.0' in lines
    assert "ivr_speech_up" not in text  # speech.enabled is off
    async with http.get(f"{api}/metrics", headers=AGENT) as r:
        assert r.status == 403
