"""SIP passwords of agents' registering phones over the real API (real Redis, real HTTP): admin only,
shown once, stored only as the digest HA1, refused for static phones and passwords fixed in the file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings
from ivr.core.sip_auth import sip_ha1
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer
from tests.ports import free_udp_tcp_port
from tests.service.test_cti_api import ADMIN, AGENT1, PREFIX, SUPER, Api, code_of

USERS: list[dict[str, Any]] = [
    *DEMO_USERS,
    {"id": "desk1", "name": "Dee (desk phone)", "skills": {"billing": 2}, "phone": "registered",
     "token": "desk1-test-token"},
    {"id": "desk2", "name": "Dan (fixed password)", "phone": "registered", "sip_password": "fixed-in-file",
     "token": "desk2-test-token"},
]


@pytest.fixture
async def api(tmp_path: Path, redis_server: RedisServer, redis: Redis) -> AsyncIterator[Api]:
    await redis.flushdb()
    settings = Settings(users=USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                        api={"host": "127.0.0.1", "port": free_udp_tcp_port()},
                        edge={"host": "127.0.0.1", "port": 5999, "registrar": {"realm": "hotline.test"}})
    a = Api(settings)
    await a.start()
    yield a
    await a.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_admin_sets_a_password_shown_once_and_stored_as_ha1(api: Api, http: aiohttp.ClientSession,
                                                                  redis: Redis) -> None:
    async with http.post(f"{api.url}/api/v1/agents/desk1/sip-password", headers=ADMIN) as r:
        assert r.status == 200
        first = await r.json()
    async with http.post(f"{api.url}/api/v1/agents/desk1/sip-password", headers=ADMIN) as r:
        second = await r.json()

    assert first["username"] == "desk1" and first["realm"] == "hotline.test"
    assert first["aor"] == "sip:desk1@127.0.0.1:5999"
    assert len(first["sip_password"]) >= 20 and first["sip_password"] != second["sip_password"]
    creds = await QueueStore(redis, PREFIX).sip_credentials()
    assert creds["desk1"].ha1 == sip_ha1("desk1", "hotline.test", second["sip_password"]), "the last one counts"
    raw = b"".join(v if isinstance(v, bytes) else v.encode()
                   for v in (await redis.hgetall(f"{PREFIX}:sip:credentials")).values())
    assert first["sip_password"].encode() not in raw and second["sip_password"].encode() not in raw


async def test_only_admins_set_sip_passwords(api: Api, http: aiohttp.ClientSession) -> None:
    for headers in (AGENT1, SUPER, {"Authorization": "Bearer desk1-test-token"}):
        async with http.post(f"{api.url}/api/v1/agents/desk1/sip-password", headers=headers) as r:
            assert r.status == 403, headers
    async with http.post(f"{api.url}/api/v1/agents/desk1/sip-password") as r:
        assert r.status == 401


async def test_static_phones_unknown_agents_and_fixed_passwords_are_refused(api: Api,
                                                                            http: aiohttp.ClientSession) -> None:
    async with http.post(f"{api.url}/api/v1/agents/agent1/sip-password", headers=ADMIN) as r:
        assert (r.status, await code_of(r)) == (409, "agent.phone_static")
    async with http.post(f"{api.url}/api/v1/agents/nobody/sip-password", headers=ADMIN) as r:
        assert (r.status, await code_of(r)) == (404, "agent.not_found")
    async with http.post(f"{api.url}/api/v1/agents/desk2/sip-password", headers=ADMIN) as r:
        assert (r.status, await code_of(r)) == (409, "agent.configured")


async def test_agent_view_shows_the_phone(api: Api, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{api.url}/api/v1/agents/desk1", headers={"Authorization": "Bearer desk1-test-token"}) as r:
        desk = await r.json()
    async with http.get(f"{api.url}/api/v1/agents/agent1", headers=AGENT1) as r:
        static = await r.json()

    assert desk["phone"] == {"mode": "registered", "registered": False, "contacts": 0}
    assert desk["sip_uri"] == "sip:desk1@127.0.0.1:5999"
    assert static["phone"]["mode"] == "static"


async def test_an_api_agent_with_a_registering_phone(api: Api, http: aiohttp.ClientSession) -> None:
    body = {"id": "carol", "name": "Carol", "skills": {"billing": 3}, "phone": "registered"}
    async with http.post(f"{api.url}/api/v1/agents", headers=ADMIN, json=body) as r:
        assert r.status == 201
        carol = await r.json()
    async with http.post(f"{api.url}/api/v1/agents", headers=ADMIN,
                         json={**body, "id": "dave", "sip_uri": "sip:dave@10.0.0.9"}) as r:
        both = (r.status, await code_of(r))
    async with http.patch(f"{api.url}/api/v1/agents/carol", headers=ADMIN,
                          json={"phone": "static", "sip_uri": "sip:carol@10.0.0.8"}) as r:
        static = await r.json()
    async with http.patch(f"{api.url}/api/v1/agents/carol", headers=ADMIN, json={"phone": "registered"}) as r:
        back = await r.json()

    assert carol["phone"]["mode"] == "registered" and carol["sip_uri"] == "sip:carol@127.0.0.1:5999"
    assert both == (400, "request.invalid")
    assert static["phone"]["mode"] == "static" and static["sip_uri"] == "sip:carol@10.0.0.8"
    assert back["phone"]["mode"] == "registered" and back["sip_uri"] == "sip:carol@127.0.0.1:5999"
