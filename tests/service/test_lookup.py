"""The lookup data port against a real HTTP server on 127.0.0.1: JSON replies, errors, timeouts,
size cap, redirects and the host allowlist."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from ivr.core.config import DialplanSettings
from ivr.dialplan.lookup import MAX_BYTES, HttpDataPort, host_allowed
from ivr.dialplan.ports import LookupFailed
from tests.ports import free_udp_tcp_port


class Server:
    def __init__(self) -> None:
        self.port = free_udp_tcp_port()
        self.requests: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.other_port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()

        async def note(request: web.Request) -> None:
            body = await request.text()
            self.requests.append({"method": request.method, "path": request.path, "query": dict(request.query),
                                  "body": json.loads(body) if body else None})

        async def ok(request: web.Request) -> web.StreamResponse:
            await note(request)
            return web.json_response({"customer": {"tier": "gold", "name": "김철수"}, "echo": dict(request.query)})

        async def echo(request: web.Request) -> web.StreamResponse:
            await note(request)
            return web.json_response({"got": self.requests[-1]["body"]})

        async def fail(request: web.Request) -> web.StreamResponse:
            await note(request)
            return web.json_response({"error": "boom"}, status=500)

        async def missing(request: web.Request) -> web.StreamResponse:
            await note(request)
            raise web.HTTPNotFound()

        async def slow(request: web.Request) -> web.StreamResponse:
            await note(request)
            try:
                await asyncio.wait_for(self.release.wait(), 10)
            except TimeoutError:
                pass
            return web.json_response({"late": True})

        async def html(request: web.Request) -> web.StreamResponse:
            await note(request)
            return web.Response(text="<html>not json</html>", content_type="text/html")

        async def big(request: web.Request) -> web.StreamResponse:
            await note(request)
            return web.json_response({"blob": "x" * (MAX_BYTES + 10)})

        async def big_chunked(request: web.Request) -> web.StreamResponse:
            await note(request)
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            resp.content_type = "application/json"
            await resp.prepare(request)
            await resp.write(b'{"blob": "')
            for _ in range(40):
                await resp.write(b"y" * 8192)
            await resp.write(b'"}')
            await resp.write_eof()
            return resp

        async def redirect_same(request: web.Request) -> web.StreamResponse:
            await note(request)
            raise web.HTTPFound("/ok?from=redirect")

        async def redirect_other(request: web.Request) -> web.StreamResponse:
            await note(request)
            raise web.HTTPFound(f"http://localhost:{self.port}/ok")

        async def redirect_port(request: web.Request) -> web.StreamResponse:
            await note(request)
            raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{self.other_port}/ok")

        async def redirect_loop(request: web.Request) -> web.StreamResponse:
            await note(request)
            raise web.HTTPFound("/loop")

        app.router.add_get("/ok", ok)
        app.router.add_post("/echo", echo)
        app.router.add_get("/fail", fail)
        app.router.add_get("/missing", missing)
        app.router.add_get("/slow", slow)
        app.router.add_get("/html", html)
        app.router.add_get("/big", big)
        app.router.add_get("/big-chunked", big_chunked)
        app.router.add_get("/redirect-same", redirect_same)
        app.router.add_get("/redirect-other", redirect_other)
        app.router.add_get("/redirect-port", redirect_port)
        app.router.add_get("/loop", redirect_loop)
        return app


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    runner = web.AppRunner(srv.app(), shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", srv.port).start()
    try:
        yield srv
    finally:
        srv.release.set()
        await runner.cleanup()


@pytest.fixture
async def data(server: Server) -> AsyncIterator[HttpDataPort]:
    async with HttpDataPort(DialplanSettings(lookup_hosts=[f"127.0.0.1:{server.port}"])) as port:
        yield port


async def reason(data: HttpDataPort, url: str, method: str = "GET", timeout_s: float = 2.0) -> str:
    with pytest.raises(LookupFailed) as e:
        await data.fetch(method, url, None, timeout_s)
    return str(e.value)


async def test_ok_json_with_an_encoded_query(server: Server, data: HttpDataPort) -> None:
    reply = await data.fetch("GET", f"{server.base}/ok?phone=%2B8210%20123", None, 2.0)
    assert reply["customer"] == {"tier": "gold", "name": "김철수"}
    assert server.requests[0]["query"] == {"phone": "+8210 123"}


async def test_post_sends_the_body_as_json(server: Server, data: HttpDataPort) -> None:
    reply = await data.fetch("POST", f"{server.base}/echo", {"phone": "+1", "n": "2"}, 2.0)
    assert reply == {"got": {"phone": "+1", "n": "2"}}


async def test_http_errors(server: Server, data: HttpDataPort) -> None:
    assert await reason(data, f"{server.base}/fail") == "http_500"
    assert await reason(data, f"{server.base}/missing") == "http_404"


async def test_timeout_is_bounded_by_the_nodes_timeout(server: Server, data: HttpDataPort) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await reason(data, f"{server.base}/slow", timeout_s=0.3) == "timeout"
    assert loop.time() - started < 2.0
    assert server.requests and server.requests[0]["path"] == "/slow"


async def test_a_reply_that_is_not_json(server: Server, data: HttpDataPort) -> None:
    assert await reason(data, f"{server.base}/html") == "bad_json"


async def test_oversize_replies_are_refused_with_or_without_content_length(server: Server,
                                                                          data: HttpDataPort) -> None:
    assert await reason(data, f"{server.base}/big") == "too_large"
    assert await reason(data, f"{server.base}/big-chunked") == "too_large"


async def test_hosts_not_allowlisted_are_never_contacted(server: Server) -> None:
    for allowed in ([], ["127.0.0.1:1"], ["localhost"], [f"example.com:{server.port}"]):
        async with HttpDataPort(DialplanSettings(lookup_hosts=allowed)) as port:
            assert await reason(port, f"{server.base}/ok") == "not_allowed"
    assert server.requests == []
    async with HttpDataPort(DialplanSettings(lookup_hosts=["127.0.0.1"])) as port:   # host alone: any port
        assert (await port.fetch("GET", f"{server.base}/ok", None, 2.0))["customer"]["tier"] == "gold"


async def test_redirects_only_to_the_same_host_and_port(server: Server, data: HttpDataPort) -> None:
    reply = await data.fetch("GET", f"{server.base}/redirect-same", None, 2.0)
    assert reply["echo"] == {"from": "redirect"}
    assert await reason(data, f"{server.base}/redirect-other") == "redirect"
    server.other_port = free_udp_tcp_port()
    assert await reason(data, f"{server.base}/redirect-port") == "redirect"
    assert await reason(data, f"{server.base}/loop") == "redirect"
    assert [r["path"] for r in server.requests].count("/ok") == 1


async def test_connection_refused(server: Server) -> None:
    dead = free_udp_tcp_port()
    async with HttpDataPort(DialplanSettings(lookup_hosts=[f"127.0.0.1:{dead}"])) as port:
        assert await reason(port, f"http://127.0.0.1:{dead}/ok") == "connection"


def test_host_allowed_rules() -> None:
    assert host_allowed("https://CRM.example/api", ["crm.example"])
    assert host_allowed("https://crm.example:8443/api", ["crm.example"])
    assert host_allowed("https://crm.example/api", ["crm.example:443"])
    assert not host_allowed("http://crm.example/api", ["crm.example:443"])
    assert host_allowed("http://[::1]:8080/x", ["[::1]:8080"]) and host_allowed("http://[::1]:8080/x", ["::1"])
    assert not host_allowed("http://crm.example.evil.com/", ["crm.example"])
    assert not host_allowed("http://crm.example@evil.com/", ["crm.example"])
    assert not host_allowed("ftp://crm.example/", ["crm.example"])
    assert not host_allowed("file:///etc/passwd", ["crm.example", ""])
    assert not host_allowed("not a url", ["crm.example"])
