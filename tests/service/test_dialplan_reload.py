"""Dial-plan reload status in a real Redis, shown and rolled back through the real CTI API (aiohttp)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings
from ivr.cti.app import init_app
from ivr.dialplan.loader import content_version
from ivr.dialplan.registry import LiveRegistry, VersionArchive
from ivr.dialplan.reports import plan_reports
from ivr.queues.dialplan_status import DialplanStatus
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer
from tests.unit.test_dialplan_registry import plan_yaml

TOKENS = {"agent": "agent1-demo-token", "supervisor": "super1-demo-token", "admin": "admin-demo-token"}


class Api:
    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url, self.http = url, http

    async def call(self, method: str, path: str, role: str | None = "supervisor",
                   body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
        async with self.http.request(method, f"{self.url}{path}", json=body, headers=headers) as r:
            return r.status, await r.json()

    async def plans(self) -> dict[str, Any]:
        status, body = await self.call("GET", "/api/v1/dialplans")
        assert status == 200, body
        return {p["plan"]: p for p in body["dialplans"]}


class Worker:
    """What a worker does for dial plans: a live registry and its status reporter."""

    def __init__(self, name: str, settings: Settings, redis: Redis) -> None:
        self.store = QueueStore(redis)
        archive = VersionArchive(settings.var_dir / "dialplans", settings.dialplan.keep_versions)
        self.plans = LiveRegistry(settings.dialplans_dir, archive, by=name)
        self.status = DialplanStatus(redis, self.store.keys, name)
        self.name = name

    async def look(self) -> None:
        """One round of the watcher: reload, report."""
        await asyncio.to_thread(self.plans.reload)
        await self.status.report(plan_reports(self.plans))


@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    (tmp_path / "dialplans").mkdir()
    return Settings(users=DEMO_USERS, var_dir=tmp_path / "var", dialplans_dir=tmp_path / "dialplans",
                    redis={"port": redis_server.port}, dialplan={"reload_poll_s": 0.05})


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[Api]:
    runner = web.AppRunner(init_app(settings), shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        async with aiohttp.ClientSession() as http:
            yield Api(f"http://127.0.0.1:{port}", http)
    finally:
        await runner.cleanup()


async def test_versions_errors_and_rollback_through_the_api(settings: Settings, redis: Redis, api: Api) -> None:
    plan_file = settings.dialplans_dir / "hotline.yaml"
    v1 = content_version(plan_yaml(queue="billing").encode())
    plan_file.write_text(plan_yaml(queue="billing"))
    workers = [Worker("w0", settings, redis), Worker("w1", settings, redis)]
    for w in workers:
        await w.store.register_worker(w.name, f"test:{w.name}", ttl_s=60)
        await w.look()

    hotline = (await api.plans())["hotline"]
    assert hotline == {**hotline, "name": "Demo", "file": "hotline.yaml", "numbers": ["1000"], "active": v1,
                       "archived": v1, "workers": {"w0": v1, "w1": v1}, "errors": {}, "last_error": None}
    assert (await api.call("GET", "/api/v1/dialplans", role="agent"))[0] == 403
    assert (await api.call("GET", "/api/v1/dialplans", role=None))[0] == 401

    # a broken save: every worker keeps v1 and says why
    plan_file.write_text(plan_yaml(queue="billing") + "  oops: [unclosed\n")
    for w in workers:
        await w.look()
    hotline = (await api.plans())["hotline"]
    assert hotline["active"] == v1 and hotline["workers"] == {"w0": v1, "w1": v1}
    err = hotline["last_error"]
    assert err["code"] == "dialplan.yaml" and err["running"] == v1 and err["file"] == "hotline.yaml"
    assert err["message"].startswith(f"{plan_file}:"), err["message"]
    assert set(hotline["errors"]) == {"w0", "w1"}

    # a good save; one worker has not looked yet: the API shows both versions
    v2 = content_version(plan_yaml(queue="support").encode())
    plan_file.write_text(plan_yaml(queue="support"))
    await workers[0].look()
    hotline = (await api.plans())["hotline"]
    assert hotline["workers"] == {"w0": v2, "w1": v1} and set(hotline["errors"]) == {"w1"}
    await workers[1].look()
    hotline = (await api.plans())["hotline"]
    assert hotline["active"] == v2 and hotline["last_error"] is None and hotline["archived"] == v2

    status, body = await api.call("GET", "/api/v1/dialplans/hotline/versions")
    assert status == 200 and body["current"] == v2
    assert [(v["version"], v["source"]) for v in body["versions"]] == [(v2, "file"), (v1, "file")]
    assert (await api.call("GET", "/api/v1/dialplans/nosuch/versions"))[1]["error"]["code"] == "dialplan.not_found"

    # rollback: admin only, a known version, then the watchers load it like an edit
    rollback = "/api/v1/dialplans/hotline/rollback"
    status, body = await api.call("POST", rollback, role="supervisor", body={})
    assert status == 403 and body["error"]["code"] == "auth.forbidden"
    status, body = await api.call("POST", rollback, role="admin", body={"version": "not a version"})
    assert status == 400 and body["error"]["code"] == "request.invalid"
    status, body = await api.call("POST", rollback, role="admin", body={"version": "0123456789ab"})
    assert status == 404 and body["error"]["code"] == "dialplan.version_not_found"
    status, body = await api.call("POST", "/api/v1/dialplans/nosuch/rollback", role="admin", body={})
    assert status == 404 and body["error"]["code"] == "dialplan.not_found"
    status, body = await api.call("POST", rollback, role="admin", body={})
    assert status == 200, body
    assert (body["version"], body["previous"], body["source"], body["by"]) == (v1, v2, "rollback", "admin")
    assert plan_file.read_text() == plan_yaml(queue="billing")
    for w in workers:
        await w.look()
    hotline = (await api.plans())["hotline"]
    assert hotline["active"] == v1 and hotline["workers"] == {"w0": v1, "w1": v1}
    _, body = await api.call("GET", "/api/v1/dialplans/hotline/versions")
    latest = body["versions"][0]
    assert (latest["version"], latest["source"], latest["by"]) == (v1, "rollback", "admin")

    # a worker that stops (or dies: its alive key expires) no longer counts
    await workers[1].status.clear()
    await redis.delete(workers[0].store.keys.worker_alive("w0"))
    hotline = (await api.plans())["hotline"]
    assert hotline["workers"] == {} and hotline["active"] is None and hotline["archived"] == v1


async def test_the_watcher_reports_reloads_and_errors_in_redis(settings: Settings, redis: Redis) -> None:
    plan_file = settings.dialplans_dir / "hotline.yaml"
    plan_file.write_text(plan_yaml())
    worker = Worker("w0", settings, redis)
    keys = worker.store.keys
    task = asyncio.create_task(worker.plans.watch(settings.dialplan.reload_poll_s,
                                                  lambda reg: worker.status.report(plan_reports(reg))))

    async def field(key: str, want: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            raw = await redis.hget(key, "w0")
            value = json.loads(raw) if raw else None
            if want(value):
                return value or {}
            await asyncio.sleep(0.05)
        raise AssertionError(f"{key}: {value}")

    try:
        v1 = content_version(plan_file.read_bytes())
        await field(keys.dialplan_active("hotline"), lambda v: v and v["version"] == v1)
        plan_file.write_text("name: [broken\n")
        err = await field(keys.dialplan_errors("hotline"), lambda v: v is not None)
        assert err["code"] == "dialplan.yaml" and err["running"] == v1
        assert worker.plans.for_number("1000").version == v1  # type: ignore[union-attr]
        plan_file.write_text(plan_yaml(queue="sales"))
        v2 = content_version(plan_file.read_bytes())
        await field(keys.dialplan_active("hotline"), lambda v: v and v["version"] == v2)
        await field(keys.dialplan_errors("hotline"), lambda v: v is None)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
