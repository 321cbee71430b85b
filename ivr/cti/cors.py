"""CORS for the configured origins only (``api.cors_origins``): a CRM page on another origin may call
the API with its bearer token; any other origin gets no CORS headers, so browsers refuse it. Tokens
travel in the Authorization header, never in cookies, so credentials are not allowed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ivr.cti.errors import error_response

METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
HEADERS = "Authorization, Content-Type, Last-Event-ID, Idempotency-Key"  # the last: click-to-dial retries
MAX_AGE = "600"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def cors_middleware(origins: list[str]) -> Middleware:
    allowed = {o.rstrip("/") for o in origins}

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        if preflight:
            if origin not in allowed:
                return error_response(403, "cors.origin_refused", f"origin {origin} is not allowed")
            return web.Response(status=204, headers={
                "Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": METHODS,
                "Access-Control-Allow-Headers": HEADERS, "Access-Control-Max-Age": MAX_AGE, "Vary": "Origin"})
        response = await handler(request)
        if origin is not None and origin in allowed and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "WWW-Authenticate, Idempotent-Replayed"
            response.headers["Vary"] = "Origin"
        return response

    return cors
