"""Outbound campaigns over the CTI API (docs/campaigns.md) on a real Redis through a real API server:
create, upload a CSV (bad rows reported by line), start / pause / resume / stop, records and their
masking, the export (formulas defused), the do-not-call list, roles, and hostile bodies (4xx with a
code, never a 500)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer
from tests.ports import free_udp_tcp_port
from tests.service.test_cti_api import Api, code_of

PREFIX = "cpapi"
SUPER = {"Authorization": "Bearer super1-demo-token"}
ADMIN = {"Authorization": "Bearer admin-demo-token"}
AGENT1 = {"Authorization": "Bearer agent1-demo-token"}
CSV = {"Content-Type": "text/csv"}

PLAN = """\
name: Survey
numbers: ["+8215880000"]
language: en
start: bye
nodes:
  bye: {type: hangup}
"""

LIST = ("number,name,tz,tier\r\n"
        "+82 10-5550-1001,=cmd|' /C calc'!A0,Asia/Seoul,gold\r\n"
        "+82 10-5550-1002,Bob,,silver\r\n"
        "not a number,Eve,,x\r\n"
        "+82 10-5550-1001,Dup,,x\r\n"
        "+1 212 555 0100,Not allowed,,x\r\n")


@pytest.fixture
async def api(tmp_path: Path, redis_server: RedisServer, redis: Redis) -> AsyncIterator[Api]:
    (tmp_path / "dialplans").mkdir()
    (tmp_path / "dialplans" / "survey.yaml").write_text(PLAN)
    a = Api(Settings(users=DEMO_USERS, var_dir=tmp_path / "var", dialplans_dir=tmp_path / "dialplans",
                     redis={"url": redis_server.url, "prefix": PREFIX}, calls={"outbound_allow": ["+82*"]},
                     api={"host": "127.0.0.1", "port": free_udp_tcp_port()}))
    await a.start()
    yield a
    await a.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def create(api: Api, http: aiohttp.ClientSession, **extra: Any) -> dict[str, Any]:
    spec = {"name": "Winter care", "plan": "survey", "queue": "care",
            "pacing": {"rate_per_s": 5, "max_concurrent": 4}, **extra}
    async with http.post(f"{api.url}/api/v1/campaigns", json=spec, headers=SUPER) as r:
        assert r.status == 201, await r.text()
        data: dict[str, Any] = await r.json()
        return data


async def test_the_whole_life_of_a_campaign(api: Api, http: aiohttp.ClientSession, redis: Redis) -> None:
    c = await create(api, http, window={"timezone": "Asia/Seoul",
                                        "open": [{"days": ["mon-fri"], "from": "09:00", "to": "20:00"}],
                                        "holidays": ["2026-12-25"]})
    cid = c["id"]
    assert c["state"] == "draft" and c["window"]["open"][0]["from"] == "09:00:00"
    base = f"{api.url}/api/v1/campaigns/{cid}"
    async with http.post(f"{base}/records", data=LIST.encode(), headers={**SUPER, **CSV}) as r:
        assert r.status == 200, await r.text()
        up = await r.json()
    assert (up["added"], up["skipped"], up["duplicates"]) == (2, 3, 1)
    assert [e["line"] for e in up["errors"]] == [4, 5, 6]
    assert "outbound_allow" in up["errors"][2]["error"]
    async with http.get(f"{base}/records", headers=SUPER) as r:
        recs = (await r.json())["records"]
    assert [x["number"] for x in recs] == ["*********1001", "*********1002"]
    assert recs[0]["variables"] == {"campaign.tier": "gold"} and recs[0]["tz"] == "Asia/Seoul"
    async with http.get(f"{base}/records?state=pending&limit=1", headers=ADMIN) as r:
        page = await r.json()
    assert page["records"][0]["number"] == "+821055501001" and page["next_after"] == 1
    for action, state in (("start", "running"), ("pause", "paused"), ("resume", "running")):
        async with http.post(f"{base}/{action}", headers=SUPER) as r:
            assert (r.status, (await r.json())["state"]) == (200, state)
    async with http.patch(base, json={"pacing": {"rate_per_s": 1, "max_concurrent": 2}}, headers=SUPER) as r:
        assert r.status == 200 and (await r.json())["pacing"]["rate_per_s"] == 1
    async with http.patch(base, json={"plan": "survey"}, headers=SUPER) as r:
        assert (r.status, await code_of(r)) == (409, "campaign.bad_transition")
    async with http.delete(base, headers=SUPER) as r:
        assert (r.status, await code_of(r)) == (409, "campaign.bad_transition")
    async with http.get(f"{base}/export", headers=SUPER) as r:
        assert r.status == 200 and r.content_type == "text/csv"
        text = (await r.read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["record_id", "number", "name"] and len(rows) == 3
    assert rows[1][1] == "*********1001" and rows[1][2] == "'=cmd|' /C calc'!A0"
    async with http.post(f"{base}/stop", headers=SUPER) as r:
        assert (await r.json())["counts"]["cancelled"] == 2
    async with http.post(f"{base}/resume", headers=SUPER) as r:
        assert (r.status, await code_of(r)) == (409, "campaign.bad_transition")
    async with http.get(f"{api.url}/api/v1/campaigns", headers=SUPER) as r:
        assert [x["id"] for x in (await r.json())["campaigns"]] == [cid]
    async with http.delete(base, headers=SUPER) as r:
        assert r.status == 204
    async with http.get(base, headers=SUPER) as r:
        assert (r.status, await code_of(r)) == (404, "campaign.not_found")


async def test_the_do_not_call_list(api: Api, http: aiohttp.ClientSession, redis: Redis) -> None:
    async with http.post(f"{api.url}/api/v1/dnc", json={"numbers": ["+821055501002"]}, headers=SUPER) as r:
        assert (r.status, (await r.json())["added"]) == (200, 1)
    async with http.post(f"{api.url}/api/v1/dnc/upload", data=b"number\n+821055501003\nbad\n",
                         headers={**SUPER, **CSV}) as r:
        res = await r.json()
    assert (res["added"], res["errors"]) == (1, [{"line": 3, "error": "not a phone number"}])
    c = await create(api, http)
    async with http.post(f"{api.url}/api/v1/campaigns/{c['id']}/records", data=LIST.encode(),
                         headers={**SUPER, **CSV}) as r:
        assert (await r.json())["dnc"] == 1
    async with http.delete(f"{api.url}/api/v1/dnc", json={"numbers": ["+821055501002"]}, headers=ADMIN) as r:
        assert (await r.json())["removed"] == 1
    store = QueueStore(redis, prefix=PREFIX)
    assert await store.dnc_check(["+821055501002", "+821055501003"]) == [False, True]
    assert not [k for k in await redis.keys(f"{PREFIX}:*") if b"5550" in k]


async def test_roles_and_hostile_input(api: Api, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{api.url}/api/v1/campaigns", headers=AGENT1) as r:
        assert (r.status, await code_of(r)) == (403, "auth.forbidden")
    async with http.post(f"{api.url}/api/v1/dnc", json={"numbers": ["+821055501002"]}, headers=AGENT1) as r:
        assert r.status == 403
    bad_specs: list[dict[str, Any]] = [
        {"name": "x", "plan": "nope"}, {"name": "x", "plan": "../survey"},
        {"name": "x", "plan": "survey", "pacing": {"rate_per_s": 500}},
        {"name": "x", "plan": "survey", "window": {"timezone": "Mars/Base", "open": [{"days": ["mon"]}]}},
        {"name": "x", "plan": "survey", "retries": {"backoff_s": {"busy": 1}}},
        {"name": "\x00", "plan": "survey"}, {"plan": "survey"},
    ]
    for spec in bad_specs:
        async with http.post(f"{api.url}/api/v1/campaigns", json=spec, headers=SUPER) as r:
            assert r.status == 400, spec
            assert await code_of(r) in ("request.invalid", "campaign.invalid")
    c = await create(api, http)
    base = f"{api.url}/api/v1/campaigns/{c['id']}"
    for data, headers, code in (
        (b"", CSV, "campaign.csv"),
        (b"name\nAnn\n", CSV, "campaign.csv"),
        ("number,name\n+821055501001,Zo\xe9\n".encode("latin-1"), CSV, "campaign.csv"),
        (b"number\n+821055501001\n", {"Content-Type": "application/json"}, "campaign.csv"),
    ):
        async with http.post(f"{base}/records", data=data, headers={**SUPER, **headers}) as r:
            assert (r.status, await code_of(r)) == (400, code)
    async with http.post(f"{base}/records?encoding=latin-1",
                         data="number,name\n+821055501001,Zo\xe9\n".encode("latin-1"), headers={**SUPER, **CSV}) as r:
        assert (await r.json())["added"] == 1
    big = b"number\n" + b"+8210555" * (5 * 1024 * 1024 // 8 + 10)
    async with http.post(f"{base}/records", data=io.BytesIO(big), headers={**SUPER, **CSV}) as r:
        assert (r.status, await code_of(r)) == (413, "request.too_large")
    for url in (f"{api.url}/api/v1/campaigns/CP999", f"{api.url}/api/v1/campaigns/zz"):
        async with http.get(url, headers=SUPER) as r:
            assert (r.status, await code_of(r)) == (404, "campaign.not_found")
    for q in ("state=nope", "after=-1", "limit=0", "limit=5000"):
        async with http.get(f"{base}/records?{q}", headers=SUPER) as r:
            assert (r.status, await code_of(r)) == (400, "request.invalid")
    async with http.patch(base, json={}, headers=SUPER) as r:
        assert (r.status, await code_of(r)) == (400, "campaign.invalid")
    async with http.post(f"{api.url}/api/v1/dnc", json={"numbers": ["=1+1"]}, headers=SUPER) as r:
        assert (r.status, await code_of(r)) == (400, "request.invalid")
