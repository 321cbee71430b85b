"""Domain errors -> HTTP, in one place. Every error body is ``{"error": {"code", "message"}}``.

Redis out of reach (down, failing over) is a 503 ``redis.unavailable`` with ``Retry-After``, not a 500.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ivr.core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    IvrError,
    NotFound,
    TimedOut,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from ivr.core.logging import get_logger

log = get_logger(__name__)

STATUS: list[tuple[type[IvrError], int]] = [
    (BadRequest, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TimedOut, 504),
    (TooManyRequests, 429),
    (Unavailable, 503),
]


#: Every response carries these (:mod:`ivr.cti.server`); a route may choose its own Cache-Control.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Server": "hotline",
}


def protocol_error_response(status: int, exc: BaseException | None) -> web.Response:
    """The answer to a request the HTTP parser refused. Nothing of the request is echoed: the text
    of aiohttp's exception holds the offending bytes (a header's first bytes may be a token)."""
    if isinstance(exc, LineTooLong) or (exc is not None and "Too many headers" in str(exc)):
        response = error_response(431, "request.header_too_large",
                                  "a request line or header field is too large, or there are too many headers")
    elif status >= 500:
        response = error_response(500, "internal", "internal error")
    else:
        response = error_response(status if 400 <= status < 500 else 400, "request.malformed",
                                  "malformed HTTP request")
    response.headers.update(SECURITY_HEADERS)
    return response


def error_response(status: int, code: str, message: str) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def status_of(exc: IvrError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 400


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except IvrError as exc:
        response = error_response(status_of(exc), exc.code, exc.message)
        if "retry_after_s" in exc.details:
            response.headers["Retry-After"] = str(int(exc.details["retry_after_s"]))
        return response
    except (RedisConnectionError, RedisTimeoutError) as exc:  # also a full connection pool
        log.warning("api.redis_unavailable", path=request.path, error=str(exc))
        response = error_response(503, "redis.unavailable", "the data store does not answer: retry shortly")
        response.headers["Retry-After"] = "2"
        return response
    except json.JSONDecodeError as exc:
        return error_response(400, "request.malformed_json", f"body is not valid JSON: {exc.msg}")
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "request.too_large", "request body too large")
    except web.HTTPException as exc:
        if exc.status >= 400:
            response = error_response(exc.status, f"http.{exc.status}", exc.reason)
            if "Allow" in exc.headers:  # a 405 names the methods the resource has
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        raise
    except Exception:
        log.exception("api.unhandled", path=request.path)
        return error_response(500, "internal", "internal error")
