"""Bad requests to the real CTI API on a real Redis: each gets a clear 4xx JSON body
``{"error": {"code", "message"}}`` with a stable code, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings
from ivr.cti.app import init_app
from tests.conftest import RedisServer, free_port

PREFIX = "err"
ADMIN = {"Authorization": "Bearer admin-demo-token"}
SUPER = {"Authorization": "Bearer super1-demo-token"}
AGENT1 = {"Authorization": "Bearer agent1-demo-token"}
MAX_BODY = 4096
Api = tuple[str, aiohttp.ClientSession]


@pytest.fixture
async def api(tmp_path: Path, redis_server: RedisServer, redis: Redis) -> AsyncIterator[Api]:
    settings = Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                        api={"host": "127.0.0.1", "port": free_port(), "max_body_bytes": MAX_BODY})
    runner = web.AppRunner(init_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.api.port).start()
    async with aiohttp.ClientSession() as http:
        yield f"http://127.0.0.1:{settings.api.port}", http
    await runner.cleanup()


async def error(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    """The reply's error object, after checking its status and that it is JSON."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    err: dict[str, Any] = (await resp.json())["error"]
    assert err["code"] and err["message"]
    return err


async def test_an_oversize_body_is_413(api: Api) -> None:
    url, http = api
    big = {"id": "agent9", "name": "x" * (MAX_BODY + 10)}
    async with http.post(f"{url}/api/v1/agents", json=big, headers=ADMIN) as resp:
        assert (await error(resp, 413))["code"] == "request.too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
        for _ in range(4):
            yield b" " * 2048

    async with http.post(f"{url}/api/v1/agents", data=chunks(), headers=ADMIN) as resp:
        assert (await error(resp, 413))["code"] == "request.too_large"


@pytest.mark.parametrize("raw", [b"{bad", b"\xff\xfe", b"[]", b"null", b'{"state": "available"'])
async def test_malformed_json_is_400(api: Api, raw: bytes) -> None:
    url, http = api
    async with http.post(f"{url}/api/v1/agents/agent1/state", data=raw,
                         headers={**AGENT1, "Content-Type": "application/json"}) as resp:
        err = await error(resp, 400)
    assert err["code"] == "request.invalid"


async def test_unknown_body_fields_and_bad_values_are_400(api: Api) -> None:
    url, http = api
    for body, field in (({"state": "available", "mood": "ok"}, "mood"), ({"state": "asleep"}, "state"),
                        ({"id": "bad id", "name": "X"}, "id"),
                        ({"id": "a9", "name": "X", "skills": {"b": "3"}}, "skills.b"),
                        ({"id": "a9", "name": "X", "skills": {"b": 6}}, "skills.b"),
                        ({"id": "a9", "name": "X", "skills": {"b c": 3}}, "skills"),
                        ({"id": "a9", "name": "X", "languages": ["english"]}, "languages.0")):
        path = "/api/v1/agents" if "id" in body else "/api/v1/agents/agent1/state"
        async with http.post(url + path, json=body, headers=ADMIN if "id" in body else AGENT1) as resp:
            err = await error(resp, 400)
        assert err["code"] == "request.invalid" and field in err["message"]


async def test_an_unknown_route_is_404_json(api: Api) -> None:
    url, http = api
    for path in ("/api/v1/nothing", "/api/v2/agents", "/nope"):
        async with http.get(url + path, headers=SUPER) as resp:
            assert (await error(resp, 404))["code"] == "http.404"


async def test_a_wrong_method_is_405_json(api: Api) -> None:
    url, http = api
    async with http.put(f"{url}/api/v1/agents", json={}, headers=ADMIN) as resp:
        assert (await error(resp, 405))["code"] == "http.405"
        assert {"GET", "POST"} <= set(resp.headers["Allow"].split(","))
    async with http.delete(f"{url}/api/v1/queues", headers=ADMIN) as resp:
        assert (await error(resp, 405))["code"] == "http.405"


@pytest.mark.parametrize("query", ["mailbox=sales&limit=%C2%B2", "mailbox=sales&limit=0", "mailbox=sales&limit=501",
                                   "mailbox=sales&limit=-1", "mailbox=sales&limit=1e3", "mailbox=a%20b", ""])
async def test_bad_query_parameters_are_400(api: Api, query: str) -> None:
    url, http = api
    async with http.get(f"{url}/api/v1/voicemail?{query}", headers=SUPER) as resp:
        assert (await error(resp, 400))["code"] == "request.invalid"
    async with http.get(f"{url}/api/v1/voicemail?mailbox=sales&limit=500", headers=SUPER) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("since", ["yesterday", "0001-01-01", "2024-13-01"])
async def test_a_bad_since_is_400(api: Api, since: str) -> None:
    url, http = api
    async with http.get(f"{url}/api/v1/queues", params={"since": since}, headers=SUPER) as resp:
        assert (await error(resp, 400))["code"] == "request.invalid"


@pytest.mark.parametrize("last", ["%C2%B2", "abc", "1-", "-1", "1234567890123456"])
async def test_a_bad_last_event_id_is_400_before_the_socket_opens(api: Api, last: str) -> None:
    url, http = api
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        async with http.ws_connect(f"{url}/api/v1/events?last_event_id={last}", headers=SUPER):
            pass
    assert exc.value.status == 400


async def test_a_plain_get_on_a_websocket_route_says_so(api: Api) -> None:
    url, http = api
    for path, headers in (("/api/v1/events", SUPER), ("/api/v1/agents/agent1/events", AGENT1)):
        async with http.get(url + path, headers=headers) as resp:
            assert (await error(resp, 400))["code"] == "request.websocket_required"


async def test_the_token_is_checked_before_anything_else(api: Api) -> None:
    url, http = api
    long_id = "a" * 80
    for method, path in (("GET", f"/api/v1/agents/{long_id}"), ("POST", f"/api/v1/agents/{long_id}/state"),
                         ("GET", f"/api/v1/agents/{long_id}/events"), ("GET", "/api/v1/voicemail?limit=x")):
        async with http.request(method, url + path, data=b"{bad") as resp:
            assert (await error(resp, 401))["code"] == "auth.missing_token"
            assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_redis_out_of_reach_is_503_not_500(tmp_path: Path) -> None:
    private = RedisServer(tmp_path / "redis")
    private.start()
    try:
        settings = Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": private.url, "prefix": PREFIX},
                            api={"host": "127.0.0.1", "port": free_port()})
        runner = web.AppRunner(init_app(settings))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.api.port).start()
    finally:
        private.stop()
    url = f"http://127.0.0.1:{settings.api.port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/api/v1/agents", headers=SUPER) as resp:
                assert (await error(resp, 503))["code"] == "redis.unavailable"
                assert resp.headers["Retry-After"] == "2"
            async with http.get(f"{url}/readyz") as resp:
                assert resp.status == 503 and (await resp.json())["redis"] is False
            async with http.get(f"{url}/healthz") as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()
