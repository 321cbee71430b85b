"""Alerts reach the webhooks through the event stream: the real API (its evaluator and its webhook
outbox) on a real Redis, a real HTTP receiver subscribed to ``alert.*``, an alert raised by a caller
waiting and cleared when the caller leaves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, AlertRule, Settings
from ivr.cti.app import init_app
from ivr.cti.webhooks import verify
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer
from tests.ports import free_udp_tcp_port

PREFIX = "alertshook"
SECRET = "whsec-0123456789abcdef"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        raw = await request.read()
        h = request.headers
        assert verify(SECRET, h["X-Ivr-Signature"], h["X-Ivr-Timestamp"], raw)
        got.append(json.loads(raw))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_udp_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port, got
    await runner.cleanup()


async def wait_for(pred: Any, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_a_webhook_subscribed_to_alerts_gets_raised_and_cleared(
        tmp_path: Path, redis_server: RedisServer, redis: Redis,
        receiver: tuple[int, list[dict[str, Any]]]) -> None:
    port, got = receiver
    rule = AlertRule(name="callers_waiting", metric="waiting", threshold=0, for_s=0, clear_for_s=0)
    settings = Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                        api={"host": "127.0.0.1", "port": free_udp_tcp_port()}, speech={"enabled": False},
                        alerts={"evaluate_s": 0.2, "rules": [rule]},
                        webhooks={"endpoints": [{"name": "noc", "url": f"http://127.0.0.1:{port}/hook",
                                                 "secret": SECRET, "events": ["alert.*"]}]})
    runner = web.AppRunner(init_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.api.port).start()
    try:
        await asyncio.sleep(0.5)  # the outbox's consumer group exists: events from now on
        store = QueueStore(redis, prefix=PREFIX)
        await store.call_start("c1", "w0", ani="+15550001", dnis="1000", hotline="demo", language="en",
                               plan_version="v1")
        await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={"steps": []})
        await wait_for(lambda: any(e.get("type") == "alert.raised" for e in got))
        await store.leave_queue("c1", "timeout")
        await wait_for(lambda: any(e.get("type") == "alert.cleared" for e in got))
    finally:
        await runner.cleanup()
    assert {e["type"] for e in got} == {"alert.raised", "alert.cleared"}  # nothing else: the subscription
    raised = next(e["data"] for e in got if e["type"] == "alert.raised")
    cleared = next(e["data"] for e in got if e["type"] == "alert.cleared")
    assert {k: raised[k] for k in ("id", "rule", "metric", "queue", "severity", "value", "threshold", "message")} == {
        "id": "AL1", "rule": "callers_waiting", "metric": "waiting", "queue": "billing", "severity": "warning",
        "value": 1, "threshold": 0, "message": "billing: callers waiting 1 above 0"}
    assert cleared["id"] == "AL1" and cleared["value"] == 0 and cleared["cleared_at"] >= raised["raised_at"]
