"""The CTI API (aiohttp): agents' state, calls, queues, and the screen-pop WebSocket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from pydantic import BaseModel, ConfigDict, ValidationError

from ivr.core.config import Settings
from ivr.core.errors import BadRequest, NotFound
from ivr.core.events import AgentState
from ivr.core.logging import get_logger
from ivr.cti.auth import TokenAuth, User, require_role, require_self_or
from ivr.cti.calls import CallsApi
from ivr.cti.errors import error_middleware
from ivr.cti.hub import PopHub
from ivr.queues.connection import close, connect
from ivr.queues.stats import StatsConfig, parse_time
from ivr.queues.store import QueueStore
from ivr.runtime.tasks import TaskGroup

log = get_logger(__name__)

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", QueueStore)
AUTH = web.AppKey("auth", TokenAuth)
HUB = web.AppKey("hub", PopHub)


class StateChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: AgentState
    reason: str = ""


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    raw = await request.read()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise BadRequest(msgs, code="request.invalid") from exc


def _user(request: web.Request) -> User:
    return request.app[AUTH].authenticate(request)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    store, settings = request.app[STORE], request.app[SETTINGS]
    try:
        await store.redis.ping()
    except Exception:
        return web.json_response({"ready": False, "redis": False}, status=503)
    alive = [w for w in await store.worker_names() if await store.worker_holder(w)]
    ready = len(alive) >= settings.workers.count
    return web.json_response({"ready": ready, "redis": True, "workers_alive": len(alive),
                              "workers": settings.workers.count}, status=200 if ready else 503)


async def list_agents(request: web.Request) -> web.Response:
    require_role(_user(request), "supervisor", "admin")
    store = request.app[STORE]
    agents = [await store.get_agent(a) for a in await store.agent_ids()]
    return web.json_response({"agents": [a for a in agents if a]})


async def get_agent(request: web.Request) -> web.Response:
    agent_id = request.match_info["agent_id"]
    require_self_or(_user(request), agent_id, "supervisor", "admin")
    agent = await request.app[STORE].get_agent(agent_id)
    if agent is None:
        raise NotFound(f"no agent {agent_id}", code="agent.not_found")
    return web.json_response(agent)


async def set_state(request: web.Request) -> web.Response:
    agent_id = request.match_info["agent_id"]
    require_self_or(_user(request), agent_id, "supervisor")
    change: StateChange = await _body(request, StateChange)
    store = request.app[STORE]
    await store.set_agent_state(agent_id, change.state, change.reason)
    return web.json_response(await store.get_agent(agent_id))


def _since(request: web.Request) -> int | None:
    """``?since=`` (ISO 8601; without an offset: the server's local time) as epoch seconds."""
    raw = request.query.get("since")
    if raw is None:
        return None
    try:
        return int(parse_time(raw))
    except ValueError as exc:
        raise BadRequest(str(exc), code="request.invalid") from exc


async def list_queues(request: web.Request) -> web.Response:
    """Every queue with its real-time ``stats`` (see :meth:`QueueStore.queue_stats`; ``?since=``
    sets the start of the period, local midnight by default)."""
    require_role(_user(request), "supervisor", "admin")
    store, since = request.app[STORE], _since(request)
    out = []
    for queue, skill in sorted((await store.queue_names()).items()):
        stats = (await store.queue_stats(queue, since_s=since)).to_dict()
        out.append({"queue": queue, "skill": skill, "waiting": stats["waiting"], "stats": stats})
    return web.json_response({"queues": out})


async def queue_stats(request: web.Request) -> web.Response:
    require_role(_user(request), "supervisor", "admin")
    stats = await request.app[STORE].queue_stats(request.match_info["queue"], since_s=_since(request))
    return web.json_response(stats.to_dict())


async def agent_events(request: web.Request) -> web.WebSocketResponse:
    """The agent desktop's live feed: call.offered (the screen-pop), call.answered, call.ended..."""
    agent_id = request.match_info["agent_id"]
    user = _user(request)
    require_self_or(user, agent_id, "supervisor")
    protos = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    ws = web.WebSocketResponse(heartbeat=20, protocols=protos[:1])
    await ws.prepare(request)
    hub, store = request.app[HUB], request.app[STORE]
    hub.add(agent_id, ws)
    await store.mark_desktop(agent_id, hub.instance)
    log.info("desktop.connected", agent_id=agent_id)
    try:
        await ws.send_str(json.dumps({"type": "hello", "agent": await store.get_agent(agent_id)}))
        async for _msg in ws:
            pass  # the desktop acts over REST; the socket only carries events
    finally:
        hub.remove(agent_id, ws)
        if agent_id not in hub.sockets:
            await store.clear_desktop(agent_id)
        log.info("desktop.disconnected", agent_id=agent_id)
    return ws


async def desktop_page(request: web.Request) -> web.Response:
    html = resources.files("ivr.cti").joinpath("static", "desktop.html").read_text()
    return web.Response(text=html, content_type="text/html")


class AccessLogger(AbstractAccessLogger):
    """JSON access log without query strings (they may carry secrets)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        log.info("http.access", method=request.method, path=request.path, status=response.status,
                 ms=round(time * 1000, 1))


def init_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.api.max_body_bytes)
    app[SETTINGS] = settings
    app[AUTH] = TokenAuth(settings)

    async def resources_ctx(app: web.Application) -> AsyncIterator[None]:
        redis = connect(settings.redis)
        store = QueueStore(redis, settings.redis.prefix, settings.routing.events_maxlen,
                           StatsConfig.from_routing(settings.routing))
        app[STORE] = store
        for u in settings.users:  # idempotent: every API instance makes sure the agents exist
            if u.role == "agent":
                await store.register_agent(u.id, name=u.name, skills=u.skills, sip_uri=u.sip_uri,
                                           languages=u.languages)
        app[HUB] = hub = PopHub(store)
        tasks = TaskGroup("api")
        tasks.spawn("pump", hub.pump())
        tasks.spawn("presence", hub.presence())
        yield
        await tasks.cancel_all()
        await close(redis)

    app.cleanup_ctx.append(resources_ctx)
    r = app.router
    r.add_get("/", desktop_page)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/api/v1/agents", list_agents)
    r.add_get("/api/v1/agents/{agent_id}", get_agent)
    r.add_post("/api/v1/agents/{agent_id}/state", set_state)
    r.add_get("/api/v1/agents/{agent_id}/events", agent_events)
    r.add_routes(CallsApi(STORE, SETTINGS, AUTH).routes())  # /api/v1/calls, /voicemail, /callbacks
    r.add_get("/api/v1/queues", list_queues)
    r.add_get("/api/v1/queues/{queue}/stats", queue_stats)
    from ivr.cti.dialplans import add_routes as add_dialplan_routes  # imports this module

    add_dialplan_routes(app)
    return app


def main(settings: Settings) -> None:
    web.run_app(init_app(settings), host=settings.api.host, port=settings.api.port,
                access_log_class=AccessLogger, print=None, handle_signals=True)
