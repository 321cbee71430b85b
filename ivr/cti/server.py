"""The API's HTTP server: what happens around the application, before and after any route.

- A request aiohttp's parser refuses (a request line or header field longer than
  ``api.max_header_bytes``, too many headers, bytes HTTP does not allow...) gets the JSON error of
  :func:`ivr.cti.errors.protocol_error_response` (431 or 400) and one warning line with the client
  address and the error's class only. aiohttp's own handler would log a traceback holding the
  header's first bytes (a token) and echo them in the 400 body.
- Every response says ``X-Content-Type-Options: nosniff``, ``Cache-Control: no-store`` unless the
  route chose its own caching (the pages revalidate), and ``Server: hotline`` without versions.
- The access log is a JSON line with the client address, never the query string.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ivr.core.config import Settings
from ivr.core.logging import get_logger
from ivr.cti.client_address import client_of
from ivr.cti.errors import SECURITY_HEADERS, protocol_error_response

log = get_logger(__name__)


class AccessLogger(AbstractAccessLogger):
    """JSON access log with the client address, without query strings (they may carry secrets)."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        log.info("http.access", client=client_of(request), method=request.method, path=request.path,
                 status=response.status, ms=round(time * 1000, 1))


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the headers every response of the application carries."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Server"] = SECURITY_HEADERS["Server"]


class _ProtocolHandler(RequestHandler):
    """aiohttp's connection handler with the parser's errors answered by :mod:`ivr.cti.errors`."""

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already under way: cannot send the error")
        response = protocol_error_response(status, exc)
        # never the message or a traceback: both may hold the request's bytes (a token)
        log.warning("http.rejected", client=request.remote, status=response.status,
                    error=type(exc).__name__ if exc is not None else None)
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _ProtocolHandler(self, loop=self._loop, **self._kwargs)


def server_options(settings: Settings) -> dict[str, Any]:
    """What the connection handler is built with (limits and the access log)."""
    return {"access_log_class": AccessLogger, "max_line_size": settings.api.max_header_bytes,
            "max_field_size": settings.api.max_header_bytes}


class ApiRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer protocol errors as :class:`_ProtocolHandler` does."""

    def __init__(self, app: web.Application, settings: Settings, **kwargs: Any) -> None:
        super().__init__(app, **{**server_options(settings), **kwargs})

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return _Server(plain.request_handler, request_factory=plain.request_factory,
                       handler_cancellation=plain.handler_cancellation, loop=plain._loop, **plain._kwargs)


async def serve(app: web.Application, settings: Settings, stop: asyncio.Event) -> None:
    """Serve ``app`` on ``api.host:api.port`` until ``stop`` is set, then shut down gracefully."""
    runner = ApiRunner(app, settings)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.api.host, settings.api.port).start()
        await stop.wait()
    finally:
        await runner.cleanup()


def run(app: web.Application, settings: Settings) -> None:
    """The API process: serve until SIGTERM or SIGINT."""
    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(app, settings, stop)

    asyncio.run(_main())
