"""Who is asking: the client's address, through the load balancers the configuration trusts.

A request from an address in ``api.trusted_proxies`` was forwarded: the client is the right-most
``X-Forwarded-For`` entry that is not itself a trusted proxy (entries further left are whatever the
client chose to send). From any other address the header is ignored: a client cannot pretend to
be someone else. The failed-authentication limit and the access log use this address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
CLIENT = web.RequestKey("client_address", str)
MAX_HOPS = 16  # X-Forwarded-For entries looked at, from the right


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _trusted(text: str | None, proxies: Sequence[Network]) -> bool:
    address = _ip(text or "")
    return address is not None and any(address in net for net in proxies)


def resolve(remote: str | None, forwarded_for: str | None, proxies: Sequence[Network]) -> str | None:
    if not proxies or not _trusted(remote, proxies):
        return remote
    client = remote
    for hop in reversed([h for h in (forwarded_for or "").split(",")][-MAX_HOPS:]):
        address = _ip(hop)
        if address is None:
            return client  # garbage: the last address a trusted proxy vouched for
        client = str(address)
        if not any(address in net for net in proxies):
            return client
    return client


def client_middleware(proxies: Sequence[str]) -> Callable[..., Awaitable[web.StreamResponse]]:
    networks = [ipaddress.ip_network(p, strict=False) for p in proxies]

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        request[CLIENT] = resolve(request.remote, request.headers.get("X-Forwarded-For"), networks) or "unknown"
        return await handler(request)

    return middleware


def client_of(request: web.BaseRequest) -> str | None:
    """The client's address (the direct peer when the middleware did not run: parser errors)."""
    value: str | None = request.get(CLIENT, request.remote)
    return value
