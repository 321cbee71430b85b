"""The agent desktop's browser phone (docs/webrtc.md, "The agent's browser phone"): where it
registers, and the SIP library it runs.

- ``GET /api/v1/agents/{id}/webrtc`` (the agent itself; supervisors, admins): the secure WebSocket of
  the edge (``edge.webrtc``), the address of record and digest user name and realm the phone
  registers with. Never the SIP password: the agent types it (an admin set it with ``POST
  .../sip-password``) and the page keeps it in the tab's sessionStorage, sent only to the edge.
- ``/static/lib/sip.js/<file>.js``: SIP.js, as ``make install`` put it from ``deploy/npm``'s lock
  (``npm ci``), nothing vendored in the repository. Its ES modules load as they are under the pages'
  ``script-src 'self'``; only ``.js`` files under the library's ``lib/`` are served.

The edge's WebSocket is another origin (its own port): the desktop page's Content-Security-Policy
lets the page connect to that one address (:func:`connect_sources`, used by :mod:`ivr.cti.pages`).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from ivr.core.config import Settings
from ivr.core.errors import NotFound
from ivr.core.sip_auth import phone_aor
from ivr.cti.auth import require_self_or
from ivr.cti.context import SETTINGS, STORE, user

#: where ``make install`` installs the npm lock (deploy/npm/node_modules, git-ignored)
NPM_ROOT = Path(__file__).resolve().parents[2] / "deploy" / "npm" / "node_modules"
LIBRARY = "sip.js"
LIB_FILE = re.compile(r"^(?:[a-z0-9][a-z0-9_-]{0,63}/){0,6}[a-z0-9][a-z0-9_.-]{0,63}\.js$")
LIB_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # revalidate (ETag): a new lock is picked up at the next load
}
_lib_cache: dict[str, tuple[bytes, str]] = {}  # bounded by the library's files (about 100)


def _webrtc(settings: Settings) -> Any:
    """``settings.edge.webrtc`` (None before the edge's WebRTC settings exist)."""
    return getattr(settings.edge, "webrtc", None)


def enabled(settings: Settings) -> bool:
    return bool(getattr(_webrtc(settings), "enabled", True))


def wss_port(settings: Settings) -> int:
    port = getattr(_webrtc(settings), "wss_port", None)
    return int(port) if port is not None else settings.edge.port + 3


def ws_url(settings: Settings) -> str:
    """The edge's SIP-over-WebSocket address the browser connects to."""
    host = settings.edge.host.strip("[]")
    host = f"[{host}]" if ":" in host else host
    return f"wss://{host}:{wss_port(settings)}"


def connect_sources(settings: Settings) -> list[str]:
    """What the desktop page may connect to besides its own origin: the edge's WebSocket."""
    return [ws_url(settings)] if enabled(settings) else []


async def phone_config(request: web.Request) -> web.Response:
    who = await user(request)
    agent_id = request.match_info["agent_id"]
    if not agent_id or len(agent_id) > 64:
        raise NotFound(f"no agent {agent_id[:64]}", code="agent.not_found")
    require_self_or(who, agent_id, "supervisor", "admin")
    agent = await request.app[STORE].get_agent(agent_id)
    if agent is None:
        raise NotFound(f"no agent {agent_id}", code="agent.not_found")
    settings = request.app[SETTINGS]
    reason = ""
    if not enabled(settings):
        reason = "edge.webrtc.enabled is off"
    elif agent["phone"]["mode"] != "registered":
        reason = "the agent's phone is not a registering one (phone: registered)"
    return web.json_response({
        "enabled": not reason, "reason": reason, "ws_url": ws_url(settings),
        "aor": phone_aor(agent_id, settings.edge), "username": agent_id, "realm": settings.edge.sip_realm,
        "ice_servers": ice_servers(settings),
    })


def ice_servers(settings: Settings) -> list[dict[str, Any]]:
    """``edge.webrtc.ice_servers`` as RTCIceServer entries (none by default: rtpengine is reachable
    directly, docs/webrtc.md)."""
    servers = getattr(_webrtc(settings), "ice_servers", None) or []
    return [s.model_dump(exclude_none=True) for s in servers]


def _lib_file(name: str) -> tuple[bytes, str]:
    if name in _lib_cache:
        return _lib_cache[name]
    if not LIB_FILE.match(name) or ".." in name:
        raise NotFound("no such library file", code="page.not_found")
    root = (NPM_ROOT / LIBRARY / "lib").resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFound(f"no library file {name} (is the npm lock installed? make install)", code="page.not_found")
    data = path.read_bytes()
    got = (data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"')
    _lib_cache[name] = got
    return got


async def library(request: web.Request) -> web.Response:
    data, etag = _lib_file(request.match_info["path"])
    headers = {**LIB_HEADERS, "ETag": etag}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, headers=headers, content_type="text/javascript", charset="utf-8")


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/agents/{agent_id}/webrtc", phone_config),
            web.get(f"/static/lib/{LIBRARY}/{{path:.+}}", library)]
