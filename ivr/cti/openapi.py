"""The OpenAPI 3.1 document of the CTI API, built at start-up from the application's own router.

Every route of the router that has an entry in :data:`ivr.cti.operations.OPERATIONS` becomes an
operation of the document; a route without one is left out (and logged), so the test comparing the
document with the router fails until it is described. Not documented on purpose (:func:`excluded`):
the HTML pages, static files, and the HEAD twin aiohttp adds to every GET.

Request bodies are the pydantic models' JSON schemas (what the handlers validate with); WebSocket
routes are GETs answering 101. Served without a token at ``GET /api/openapi.json``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web
from pydantic.json_schema import models_json_schema

from ivr.core.logging import get_logger
from ivr.cti.context import SETTINGS
from ivr.cti.operations import MODELS, OPERATIONS, PATH_PARAMS, SCHEMAS, Operation, Param, Schema, ref

log = get_logger(__name__)

DOCUMENT = web.AppKey("openapi_document", dict[str, Any])
#: HTML pages for people (ivr.cti.pages), not API operations
PAGES = frozenset({"/", "/wallboard", "/static/{name}",  # HTML pages and their scripts and styles
                   "/static/lib/sip.js/{path}"})  # the browser phone's library (ivr.cti.webrtc)
REASONS = {
    101: "Switching Protocols: the WebSocket is open",
    200: "OK", 201: "Created", 202: "Accepted: the worker holding the call carried the command out",
    204: "No Content",
    400: "Bad request: `request.invalid`, `request.malformed_json` or a code of the operation",
    401: "No token or an unknown one: `auth.missing_token`, `auth.invalid_token`",
    403: "The token's role may not do this: `auth.forbidden`",
    404: "Not found (the code names what: `agent.not_found`, `call.not_found`...)",
    409: "Conflict with the current state (see the operation's description)",
    413: "Request body larger than `api.max_body_bytes`: `request.too_large`",
    429: "Too many unknown tokens from this address: `auth.rate_limited`, with Retry-After",
    503: "Redis does not answer (`redis.unavailable`, with Retry-After); for /readyz: not ready",
    504: "The worker holding the call did not answer in time: `command.timeout` (nothing was done)",
}
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def template(path: str) -> str:
    """An aiohttp path (``/a/{id}`` or ``/a/{id:\\d+}``) as an OpenAPI path template (``/a/{id}``)."""
    return _PARAM.sub(r"{\1}", path)


def excluded(route: web.AbstractRoute) -> bool:
    resource = route.resource
    if resource is None or isinstance(resource, web.StaticResource):
        return True
    if route.method == "HEAD":  # the twin aiohttp adds to each GET
        return True
    return template(resource.canonical) in PAGES


def api_routes(app: web.Application) -> Iterator[tuple[str, str]]:
    """The router's ``(method, path template)`` pairs the document must describe."""
    for route in app.router.routes():
        if not excluded(route):
            assert route.resource is not None
            yield route.method, template(route.resource.canonical)


def _roles_text(op: Operation) -> str:
    if op.roles is None:
        return "Public: no token."
    text = "Roles: " + ", ".join(op.roles)
    if op.own:
        text += f"; an agent for {op.own}"
    return text + "."


def statuses(op: Operation) -> list[int]:
    """Every status the operation may answer."""
    out = {101 if op.websocket else op.ok, *op.errors}
    if op.roles is not None:  # the token may be looked up in Redis
        out |= {401, 429, 503}
        if set(op.roles) != {"agent", "supervisor", "admin"} or op.own:
            out.add(403)
    if op.body is not None or op.raw_body:
        out |= {400, 413}
    if op.params or op.websocket:  # checked parameters; a GET without the WebSocket handshake
        out.add(400)
    return sorted(out)


def _param(p: Param) -> Schema:
    return {"name": p.name, "in": p.where, "required": p.required, "description": p.description,
            "schema": p.schema}


def _path_params(path: str) -> list[Schema]:
    return [{"name": name, "in": "path", "required": True, "schema": PATH_PARAMS.get(name, {"type": "string"})}
            for name in _PARAM.findall(path)]


def operation(method: str, path: str, op: Operation, bodies: dict[str, Schema]) -> Schema:
    out: Schema = {
        "operationId": f"{method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', path).strip('_')}",
        "summary": op.summary,
        "description": "\n\n".join(t for t in (_roles_text(op), op.description) if t),
        "tags": [op.tag],
        "security": [] if op.roles is None else [{"bearer": []}],
    }
    params = [*_path_params(path), *(_param(p) for p in op.params)]
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": bodies[op.body.__name__]}}}
    elif op.raw_body:
        out["requestBody"] = {"required": True, "content": {c: {"schema": {"type": "string"}} for c in op.raw_body}}
    responses: dict[str, Schema] = {}
    for status in statuses(op):
        reply: Schema = {"description": REASONS.get(status, "")}
        if status == 101:
            reply["description"] = REASONS[101] + ". " + (op.description or op.summary)
        elif status == op.ok and status != 204:
            reply["content"] = {c: {"schema": (op.response or {}) if c == "application/json" else {"type": "string"}}
                                for c in op.content}
        elif status >= 400:
            reply["content"] = {"application/json": {"schema": dict(op.replies).get(status, ref("Error"))}}
        responses[str(status)] = reply
    out["responses"] = responses
    return out


def _model_schemas() -> tuple[dict[str, Schema], dict[str, Schema]]:
    """(components from the pydantic models, model name -> its request body schema)."""
    refs, top = models_json_schema([(m, "validation") for m in MODELS],
                                   ref_template="#/components/schemas/{model}")
    bodies = {m.__name__: refs[(m, "validation")] for m in MODELS}
    return dict(top.get("$defs", {})), bodies


def _configured(components: dict[str, Schema], app: web.Application) -> None:
    """What the configuration decides: the disposition codes an agent may set."""
    if SETTINGS in app:
        components["Disposition"]["properties"]["disposition"]["enum"] = list(app[SETTINGS].api.dispositions)


def build(app: web.Application) -> dict[str, Any]:
    """The document for ``app``'s router; routes without an entry in OPERATIONS are logged and left out."""
    components, bodies = _model_schemas()
    _configured(components, app)
    paths: dict[str, dict[str, Schema]] = {}
    for method, path in sorted(api_routes(app), key=lambda mp: (mp[1], mp[0])):
        op = OPERATIONS.get((method, path))
        if op is None:
            log.warning("openapi.undocumented_route", method=method, path=path)
            continue
        paths.setdefault(path, {})[method.lower()] = operation(method, path, op, bodies)
    try:
        release = version("ivr-hotline")
    except PackageNotFoundError:
        release = "0"
    return {
        "openapi": "3.1.0",
        "info": {"title": "Hotline CTI API", "version": release,
                 "description": "Agents, calls, queues, dial plans and webhooks of the hotline. Every error "
                                "is `{\"error\": {\"code\", \"message\"}}` with a stable code."},
        "paths": paths,
        "components": {"schemas": {**components, **SCHEMAS},
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "an API token (kept only as its SHA-256)"}}},
        "security": [{"bearer": []}],
    }


async def serve(request: web.Request) -> web.Response:
    return web.json_response(request.app[DOCUMENT])


def setup(app: web.Application) -> None:
    """Serve the document; it is built once the router is complete (at start-up)."""
    app.router.add_get("/api/openapi.json", serve)

    async def on_startup(app: web.Application) -> None:
        app[DOCUMENT] = build(app)

    app.on_startup.append(on_startup)
