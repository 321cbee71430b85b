"""The HTTP ``DataPort`` of ``lookup`` nodes (aiohttp), with its safety rails.

* Only hosts in ``dialplan.lookup_hosts`` are reachable, and never a URL with credentials
  (``user:password@host``): the plan would carry a secret that ``graph`` and ``simulate`` print.
  An entry ``host`` allows that host on any port; ``host:port`` (``[v6addr]:port``) only that port
  (a URL without a port has the scheme's default, 80 or 443). Host names compare case-insensitively.
  Only ``http``/``https``. This is the rule ``ivr dialplan check`` applies to literal URLs as well.
* Redirects are followed (at most :data:`MAX_REDIRECTS`) only to the same host and port, and only when
  that is still allowed; anything else fails with ``redirect``.
* The whole exchange (connect, redirects, reading the body) is bounded by the node's ``timeout_s``.
* ``body`` is sent as JSON with POST only (a GET has no body).
* The reply must be 2xx, at most :data:`MAX_BYTES` (after decompression), and JSON (whatever its
  Content-Type says).
* No cookies are kept, no proxy settings are read from the environment.

Every failure raises :class:`~ivr.dialplan.ports.LookupFailed` whose message is a short reason the
engine puts into the journey (``error:<reason>``): ``not_allowed``, ``bad_url``, ``timeout``,
``connection``, ``http_<status>``, ``redirect``, ``too_large``, ``bad_json``.
Logs carry the host and the reason, never the query string (it may carry the caller's number or a key).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import aiohttp
from yarl import URL

from ivr.core.config import DialplanSettings
from ivr.core.logging import get_logger
from ivr.dialplan.ports import LookupFailed

log = get_logger(__name__)

MAX_BYTES = 256 * 1024
MAX_REDIRECTS = 3
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = {301, 302, 303, 307, 308}


def _parse_entry(entry: str) -> tuple[str, int | None]:
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        host, port = entry, ""
    return host, int(port) if port.isdigit() else None


def _target(url: URL) -> tuple[str, int] | None:
    if url.scheme not in _DEFAULT_PORTS or not url.host:
        return None
    try:
        port = url.port
    except ValueError:
        return None
    return url.host.lower().strip("[]"), port or _DEFAULT_PORTS[url.scheme]


def host_allowed(url: str | URL, allowed: Iterable[str]) -> bool:
    """Whether ``url`` (http/https) points at a host:port of the allowlist (see the module doc)."""
    try:
        u = url if isinstance(url, URL) else URL(url)
    except (ValueError, TypeError):
        return False
    if u.user is not None or u.password is not None or "@" in (u.raw_authority or ""):
        return False  # credentials in a URL: never sent, never shown
    target = _target(u)
    if target is None:
        return False
    host, port = target
    for entry in allowed:
        e_host, e_port = _parse_entry(entry)
        if e_host == host and (e_port is None or e_port == port):
            return True
    return False


class HttpDataPort:
    """``DataPort`` over HTTP. Use as ``async with HttpDataPort(settings) as data:`` or call
    :meth:`close` when done; the aiohttp session is created on first use (inside the running loop)."""

    def __init__(self, settings: DialplanSettings, *, max_bytes: int = MAX_BYTES,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.allowed = list(settings.lookup_hosts)
        self.max_bytes = max_bytes
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> HttpDataPort:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                headers={"Accept": "application/json", "User-Agent": "ivr-hotline-lookup"})
        return self._session

    async def fetch(self, method: str, url: str, body: Mapping[str, Any] | None, timeout_s: float) -> Any:
        try:
            u = URL(url)
        except (ValueError, TypeError):
            raise LookupFailed("bad_url") from None
        host = u.host or "?"
        if not host_allowed(u, self.allowed):
            log.warning("lookup.failed", host=host, reason="not_allowed")
            raise LookupFailed("not_allowed")
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                reply = await self._exchange(method.upper(), u, body, timeout_s)
        except LookupFailed as exc:
            log.warning("lookup.failed", host=host, reason=str(exc), ms=_ms(started))
            raise
        except TimeoutError:
            log.warning("lookup.failed", host=host, reason="timeout", ms=_ms(started))
            raise LookupFailed("timeout") from None
        except aiohttp.InvalidURL:
            log.warning("lookup.failed", host=host, reason="bad_url")
            raise LookupFailed("bad_url") from None
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("lookup.failed", host=host, reason="connection", error=type(exc).__name__,
                        ms=_ms(started))
            raise LookupFailed("connection") from None
        log.info("lookup.ok", host=host, ms=_ms(started))
        return reply

    async def _exchange(self, method: str, url: URL, body: Mapping[str, Any] | None, timeout_s: float) -> Any:
        origin = _target(url)
        payload = dict(body) if body is not None and method == "POST" else None
        for _ in range(MAX_REDIRECTS + 1):
            async with self._http().request(
                    method, url, json=payload, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                if resp.status in _REDIRECTS:
                    location = resp.headers.get("Location")
                    if not location:
                        raise LookupFailed("redirect")
                    nxt = url.join(URL(location))
                    if _target(nxt) != origin or not host_allowed(nxt, self.allowed):
                        raise LookupFailed("redirect")
                    if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                        method, payload = "GET", None
                    url = nxt
                    continue
                if not 200 <= resp.status < 300:
                    raise LookupFailed(f"http_{resp.status}")
                if resp.content_length is not None and resp.content_length > self.max_bytes:
                    raise LookupFailed("too_large")
                data = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > self.max_bytes:
                        raise LookupFailed("too_large")
            try:
                return json.loads(bytes(data))
            except (ValueError, UnicodeDecodeError):
                raise LookupFailed("bad_json") from None
        raise LookupFailed("redirect")


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
