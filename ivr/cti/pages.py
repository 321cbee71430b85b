"""The browser pages the CTI API serves: the agent desktop (``/``), the supervisors' wallboard
(``/wallboard``) and their scripts and styles (``/static/<name>.js|css``, from ``ivr/cti/static``).

The pages hold no data: they log in with a bearer token (kept in the tab's ``sessionStorage``) and
use the same REST calls and WebSockets as any other client. Every page goes out with a strict
Content-Security-Policy: scripts and styles from this origin only (no inline code, nothing from
another site), connections to this origin only, media from the page's own object URLs only (the
recording player), no framing. The scripts put data in the page with
``textContent`` and build elements one by one, so a caller number or a CRM name is never markup.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources

from aiohttp import web

from ivr.core.errors import NotFound
from ivr.cti import webrtc
from ivr.cti.context import SETTINGS

PAGES = {"/": "desktop.html", "/wallboard": "wallboard.html"}
ASSET = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(js|css)$")
CONTENT_TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css"}

CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",  # CSP 3: 'self' covers ws:// and wss:// of this host
    # the recording player streams a play link of this host (recording.js, ivr.cti.recordings)
    "media-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",  # the forms are sent by the scripts, never by the browser
    "frame-ancestors 'none'",
])
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # revalidate (ETag): a new release is picked up at the next load
}


def _file(name: str) -> bytes:
    path = resources.files("ivr.cti").joinpath("static", name)
    if not path.is_file():
        raise NotFound(f"no file {name}", code="page.not_found")
    return path.read_bytes()


def _reply(request: web.Request, name: str, connect: tuple[str, ...] = ()) -> web.Response:
    data = _file(name)
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    headers = {**HEADERS, "ETag": etag}
    if connect:  # the desktop's browser phone talks to the edge's WebSocket (ivr.cti.webrtc)
        sources = " ".join(("connect-src 'self'", *connect))
        headers["Content-Security-Policy"] = CSP.replace("connect-src 'self'", sources)
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, headers=headers, charset="utf-8",
                        content_type=CONTENT_TYPES[name.rsplit(".", 1)[1]])


async def page(request: web.Request) -> web.Response:
    name = PAGES[request.path]
    connect = webrtc.connect_sources(request.app[SETTINGS]) if name == "desktop.html" else []
    return _reply(request, name, tuple(connect))


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not ASSET.match(name):
        raise NotFound(f"no file {name[:64]}", code="page.not_found")
    return _reply(request, name)


def routes() -> list[web.RouteDef]:
    return [*(web.get(path, page) for path in PAGES), web.get("/static/{name}", asset)]
