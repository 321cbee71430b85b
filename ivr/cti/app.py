"""The CTI API (aiohttp): wires the route modules, the middlewares and the background tasks.

Routes live in small modules, each with a ``routes()`` list: ``agents`` (profiles, state, event
feeds), ``calls`` (records, disposition, voicemail, callbacks), ``floor`` (queues and their stats),
``dialplans``. Shared keys and helpers are in :mod:`ivr.cti.context`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ivr.core.config import Settings
from ivr.core.logging import get_logger
from ivr.cti import agents, calls, dialplans, floor, metrics, openapi
from ivr.cti.auth import TokenAuth
from ivr.cti.context import AUTH, HUB, SETTINGS, STORE
from ivr.cti.cors import cors_middleware
from ivr.cti.errors import error_middleware
from ivr.cti.hub import PopHub
from ivr.queues.connection import close, connect
from ivr.queues.stats import StatsConfig
from ivr.queues.store import QueueStore
from ivr.runtime.tasks import TaskGroup

log = get_logger(__name__)


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


async def desktop_page(request: web.Request) -> web.Response:
    html = resources.files("ivr.cti").joinpath("static", "desktop.html").read_text()
    return web.Response(text=html, content_type="text/html")


class AccessLogger(AbstractAccessLogger):
    """JSON access log without query strings (they may carry secrets)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        log.info("http.access", method=request.method, path=request.path, status=response.status,
                 ms=round(time * 1000, 1))


def init_app(settings: Settings) -> web.Application:
    api_metrics = metrics.ApiMetrics()
    app = web.Application(middlewares=[metrics.metrics_middleware(api_metrics),
                                       cors_middleware(settings.api.cors_origins), error_middleware],
                          client_max_size=settings.api.max_body_bytes)
    app[SETTINGS] = settings
    app[metrics.METRICS] = api_metrics

    async def resources_ctx(app: web.Application) -> AsyncIterator[None]:
        redis = connect(settings.redis)
        store = QueueStore(redis, settings.redis.prefix, settings.routing.events_maxlen,
                           StatsConfig.from_routing(settings.routing))
        app[STORE] = store
        app[AUTH] = TokenAuth(settings, store)
        for u in settings.users:  # idempotent: every API instance makes sure the agents exist
            if u.role == "agent":
                await store.register_agent(u.id, name=u.name, skills=u.skills, sip_uri=u.sip_uri,
                                           languages=u.languages)
        app[HUB] = hub = PopHub(store, observe_pop=api_metrics.observe_pop)
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
    for module in (agents, calls, floor, dialplans, metrics):
        r.add_routes(module.routes())
    openapi.setup(app)
    return app


def main(settings: Settings) -> None:
    web.run_app(init_app(settings), host=settings.api.host, port=settings.api.port,
                access_log_class=AccessLogger, print=None, handle_signals=True)
