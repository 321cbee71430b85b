"""Hostile HTTP at the real API server (ApiRunner, as ``ivr api`` serves it) on a real Redis:
oversized and malformed headers, token guessing, and the headers every response carries."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings
from ivr.cti.app import init_app
from ivr.cti.server import ApiRunner
from tests.conftest import RedisServer, free_port

PREFIX = "hard"
SUPER = {"Authorization": "Bearer super1-demo-token"}
MAX_FAILURES = 5
TOKEN = "SeCrEtToKeN"  # a marker: no byte of it may come back or reach a log


class Api:
    def __init__(self, s: Settings) -> None:
        self.settings = s
        self.port = s.api.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.runner = ApiRunner(init_app(s), s, shutdown_timeout=1.0)

    def raw(self, request: bytes) -> bytes:
        """Send raw bytes, return everything the server answers (it closes after an error)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(request)
            out = b""
            for _ in range(1000):  # bounded: the server closes the connection after its answer
                chunk = conn.recv(65536)
                if not chunk:
                    break
                out += chunk
            return out


@pytest.fixture
async def api(tmp_path: Path, redis_server: RedisServer, redis: Redis) -> AsyncIterator[Api]:
    s = Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                 api={"host": "127.0.0.1", "port": free_port(),
                      "auth_limit": {"max_failures": MAX_FAILURES, "window_s": 600, "block_s": 600}})
    a = Api(s)
    await a.runner.setup()
    await web.TCPSite(a.runner, "127.0.0.1", a.port).start()
    yield a
    await a.runner.cleanup()


def from_address(address: str) -> aiohttp.ClientSession:
    """A client whose connections come from ``address`` (any 127.x.y.z is this host's loopback)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))


def no_secret_logged(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """Neither the stdlib logs (aiohttp's) nor structlog's lines hold a traceback or the token."""
    for record in caplog.records:
        assert record.exc_info is None, f"traceback logged: {record.getMessage()}"
        assert TOKEN not in record.getMessage()
    out = capsys.readouterr()
    for text in (out.out, out.err):
        assert TOKEN not in text and "Traceback" not in text


@pytest.mark.parametrize("request_bytes", [
    b"GET /api/v1/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() * 800 + b"\r\n\r\n",
    b"GET /api/v1/agents/agent1/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Protocol: bearer." + TOKEN.encode() * 800 + b"\r\n\r\n",
    b"GET /api/v1/agents?t=" + TOKEN.encode() * 800 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/v1/agents HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-%d: " % i + TOKEN.encode() + b"\r\n" for i in range(200)) + b"\r\n",
])
async def test_oversized_headers_get_431_echoing_nothing_and_logging_no_traceback(
        api: Api, request_bytes: bytes, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    reply = await asyncio.to_thread(api.raw, request_bytes)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ")[1] == b"431", reply[:300]
    assert b'"request.header_too_large"' in body
    assert TOKEN.encode() not in reply
    no_secret_logged(caplog, capsys)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(min_size=1, max_size=64))
async def test_malformed_header_bytes_get_a_json_4xx_echoing_nothing(
        api: Api, junk: bytes, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    value = TOKEN.encode() + junk
    reply = await asyncio.to_thread(
        api.raw, b"GET /api/v1/agents HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " + value +
        b"\r\n\r\n")
    status = int(reply.split(b" ", 2)[1])
    assert status in (400, 401, 429, 431), reply[:300]
    assert b"application/json" in reply.partition(b"\r\n\r\n")[0]
    assert TOKEN.encode() not in reply
    no_secret_logged(caplog, capsys)


async def test_every_json_reply_says_nosniff_no_store_and_no_versions(api: Api) -> None:
    async with aiohttp.ClientSession() as http:
        for path, headers, status in [("/api/v1/agents", SUPER, 200), ("/api/v1/agents", {}, 401),
                                      ("/api/v1/calls/nope", SUPER, 404), ("/api/v1/nowhere", SUPER, 404),
                                      ("/healthz", {}, 200), ("/api/openapi.json", {}, 200)]:
            async with http.get(f"{api.url}{path}", headers=headers) as r:
                assert r.status == status, path
                assert r.headers["X-Content-Type-Options"] == "nosniff", path
                assert r.headers["Cache-Control"] == "no-store", path
                assert r.headers["Server"] == "hotline", path
        async with http.get(f"{api.url}/") as r:  # the pages keep their own caching (revalidate)
            assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["Server"] == "hotline"


async def test_token_guessing_gets_429_with_retry_after_for_that_address_only(
        api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    async with from_address("127.0.0.2") as attacker, from_address("127.0.0.3") as agent:
        for i in range(MAX_FAILURES):
            async with attacker.get(f"{api.url}/api/v1/agents", headers={"Authorization": f"Bearer guess{i}"}) as r:
                assert r.status == 401
        for headers in ({"Authorization": "Bearer guess-again"}, SUPER):  # a right guess no longer shows
            async with attacker.get(f"{api.url}/api/v1/agents", headers=headers) as r:
                assert r.status == 429
                assert (await r.json())["error"]["code"] == "auth.rate_limited"
                assert 1 <= int(r.headers["Retry-After"]) <= 600
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # the desktop's WebSocket too
            await attacker.ws_connect(f"{api.url}/api/v1/agents/agent1/events",
                                      protocols=["bearer.agent1-demo-token"])
        assert refused.value.status == 429
        async with agent.get(f"{api.url}/api/v1/agents", headers=SUPER) as r:  # elsewhere: not locked out
            assert r.status == 200
        async with agent.get(f"{api.url}/api/v1/agents", headers={"Authorization": "Bearer typo"}) as r:
            assert r.status == 401
    out = capsys.readouterr()
    access = [line for line in (out.out + out.err).splitlines() if "http.access" in line]
    assert any("127.0.0.2" in line for line in access), "the access log names the client"


async def test_missing_tokens_do_not_count_as_guesses(api: Api) -> None:
    async with from_address("127.0.0.4") as http:
        for _ in range(MAX_FAILURES * 3):
            async with http.get(f"{api.url}/api/v1/agents") as r:
                assert r.status == 401
        async with http.get(f"{api.url}/api/v1/agents", headers=SUPER) as r:
            assert r.status == 200


async def test_behind_a_trusted_proxy_each_forwarded_client_is_limited_on_its_own(
        tmp_path: Path, redis_server: RedisServer, redis: Redis) -> None:
    s = Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                 api={"host": "127.0.0.1", "port": free_port(), "trusted_proxies": ["127.0.0.5/32"],
                      "auth_limit": {"max_failures": MAX_FAILURES, "window_s": 600, "block_s": 600}})
    a = Api(s)
    await a.runner.setup()
    await web.TCPSite(a.runner, "127.0.0.1", a.port).start()
    try:
        async with from_address("127.0.0.5") as proxy, from_address("127.0.0.6") as spoofer:
            for i in range(MAX_FAILURES):
                async with proxy.get(f"{a.url}/api/v1/agents", headers={
                        "Authorization": f"Bearer guess{i}", "X-Forwarded-For": "1.2.3.4, 203.0.113.7"}) as r:
                    assert r.status == 401
            async with proxy.get(f"{a.url}/api/v1/agents", headers={**SUPER, "X-Forwarded-For": "203.0.113.7"}) as r:
                assert r.status == 429
            async with proxy.get(f"{a.url}/api/v1/agents", headers={**SUPER, "X-Forwarded-For": "203.0.113.8"}) as r:
                assert r.status == 200  # another client behind the same balancer
            for i in range(MAX_FAILURES):  # an untrusted peer cannot dodge the limit by inventing hops
                async with spoofer.get(f"{a.url}/api/v1/agents", headers={
                        "Authorization": f"Bearer guess{i}", "X-Forwarded-For": f"198.51.100.{i}"}) as r:
                    assert r.status == 401
            spoofed = {**SUPER, "X-Forwarded-For": "198.51.100.99"}
            async with spoofer.get(f"{a.url}/api/v1/agents", headers=spoofed) as r:
                assert r.status == 429
    finally:
        await a.runner.cleanup()


@pytest.mark.parametrize("offered", [["bearer.agent1-demo-token", "hotline"], ["hotline", "bearer.agent1-demo-token"]])
async def test_a_websocket_token_sent_as_sub_protocol_is_not_sent_back(api: Api, offered: list[str]) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{api.url}/api/v1/agents/agent1/events", protocols=offered) as ws:
            assert ws.protocol == "hotline"
            assert (await ws.receive_json(timeout=5))["type"] == "hello"


async def test_agents_who_signed_in_from_a_blocked_address_keep_working_there(api: Api) -> None:
    """One office NAT: a guesser blocks its address, the agents already signed in from it go on."""
    agent1 = {"Authorization": "Bearer agent1-demo-token"}
    async with from_address("127.0.0.8") as office:
        for headers in (SUPER, agent1):
            async with office.get(f"{api.url}/api/v1/agents/agent1", headers=headers) as r:
                assert r.status == 200
        for i in range(MAX_FAILURES):
            async with office.get(f"{api.url}/api/v1/agents", headers={"Authorization": f"Bearer guess{i}"}) as r:
                assert r.status == 401
        for headers in (SUPER, agent1):
            async with office.get(f"{api.url}/api/v1/agents/agent1", headers=headers) as r:
                assert r.status == 200
        for headers in ({"Authorization": "Bearer guess-again"}, {"Authorization": "Bearer admin-demo-token"}):
            async with office.get(f"{api.url}/api/v1/agents/agent1", headers=headers) as r:
                assert r.status == 429  # guesses, and tokens never seen from here, wait


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["Authorization", "Sec-WebSocket-Protocol", "Cookie", "X-Forwarded-For", "Origin",
                             "X-Anything"]),
       size=st.integers(8191, 40_000), prefix=st.sampled_from(["Bearer ", "bearer.", ""]))
async def test_any_header_over_the_limit_gets_431_and_no_echo(
        api: Api, name: str, size: int, prefix: str, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    value = (prefix + TOKEN * (size // len(TOKEN) + 1))[:size]
    reply = await asyncio.to_thread(
        api.raw, f"GET /api/v1/agents HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{name}: {value}\r\n\r\n".encode())
    assert reply.split(b"\r\n")[0].split(b" ")[1] == b"431", reply[:200]
    assert TOKEN.encode() not in reply
    no_secret_logged(caplog, capsys)
