"""The CTI API (aiohttp): wires the route modules, the middlewares and the background tasks.

Routes live in small modules, each with a ``routes()`` list: ``agents`` (profiles, state, event
feeds), ``calls`` (records, disposition, voicemail, callbacks), ``cases`` (complaint cases),
``originate`` (click-to-dial), ``recordings`` (call recordings, the audit trail),
``floor`` (queues and their stats),
``dialplans``, ``webhooks`` (endpoints, dead letters; its outbox filler and delivery loop run here),
``pages`` (the agent desktop and the wallboard), ``system`` (health, readiness, config). The CRM
connector (:mod:`ivr.cti.crm`) adds the caller's record to each pop. Shared keys and helpers are in
:mod:`ivr.cti.context`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ivr.alerts.engine import AlertEvaluator
from ivr.core.config import Settings
from ivr.core.logging import get_logger
from ivr.core.sip_auth import offer_uri
from ivr.core.tasks import TaskGroup
from ivr.cti import (
    agents,
    alerts,
    call_control,
    calls,
    campaigns,
    cases,
    dialplans,
    floor,
    floor_agents,
    metrics,
    openapi,
    originate,
    pages,
    planning,
    quality,
    recordings,
    server,
    supervision,
    system,
    webhooks,
    webrtc,
)
from ivr.cti.auth import TokenAuth
from ivr.cti.case_open import setup as setup_cases
from ivr.cti.client_address import client_middleware
from ivr.cti.context import AUTH, HUB, SETTINGS, STORE
from ivr.cti.cors import cors_middleware
from ivr.cti.crm import CrmConnector
from ivr.cti.errors import error_middleware
from ivr.cti.hub import PopHub
from ivr.cti.server import security_headers
from ivr.queues.alerts_store import AlertStore
from ivr.queues.connection import close, connect
from ivr.queues.stats import StatsConfig
from ivr.queues.store import QueueStore

log = get_logger(__name__)


def init_app(settings: Settings) -> web.Application:
    api_metrics = metrics.ApiMetrics()
    app = web.Application(middlewares=[client_middleware(settings.api.trusted_proxies),
                                       metrics.metrics_middleware(api_metrics),
                                       cors_middleware(settings.api.cors_origins), error_middleware],
                          client_max_size=settings.api.max_body_bytes)
    app[SETTINGS] = settings
    app[floor.LIVE] = floor.LiveCounts()
    setup_cases(app, settings.dialplans_dir)
    app[metrics.METRICS] = api_metrics
    app.on_response_prepare.append(security_headers)

    async def resources_ctx(app: web.Application) -> AsyncIterator[None]:
        redis = connect(settings.redis)
        store = QueueStore(redis, settings.redis.prefix, settings.routing.events_maxlen,
                           StatsConfig.from_routing(settings.routing))
        app[STORE] = store
        app[AUTH] = TokenAuth(settings, store)
        for u in settings.users:  # idempotent: every API instance makes sure the agents exist
            if u.role == "agent":
                await store.register_agent(u.id, name=u.name, skills=u.skills, sip_uri=offer_uri(u, settings.edge),
                                           languages=u.languages,
                                           phone="registered" if u.phone == "registered" else "")
        crm = CrmConnector(settings.crm, store) if settings.crm.lookups else None
        app[HUB] = hub = PopHub(store, enrich=crm, observe_pop=api_metrics.observe_pop)
        app[webhooks.WEBHOOKS] = hooks = webhooks.Webhooks(settings.webhooks, redis, settings.redis.prefix)
        app[metrics.WEBHOOK_BACKLOG] = hooks
        tasks = TaskGroup("api")
        tasks.spawn("pump", hub.pump())
        tasks.spawn("presence", hub.presence())
        tasks.spawn("webhooks-fill", hooks.fill())
        tasks.spawn("webhooks-deliver", hooks.deliver())
        # floor alerts: every instance runs the evaluator, the holder of its Redis lease evaluates
        app[alerts.ALERTS] = alert_store = AlertStore(redis, settings.redis.prefix, settings.routing.events_maxlen)
        evaluator = AlertEvaluator(store, settings, webhooks=hooks, alerts=alert_store)
        if settings.alerts.enabled:
            tasks.spawn("alerts", evaluator.run())
        yield
        if settings.alerts.enabled:
            await evaluator.stop()  # its lease goes to another instance at once
        await tasks.cancel_all()
        await hub.close()
        await hooks.close()
        if crm is not None:
            await crm.close()
        await close(redis)

    app.cleanup_ctx.append(resources_ctx)

    async def close_sockets(app: web.Application) -> None:
        await app[HUB].close_sockets()

    app.on_shutdown.append(close_sockets)
    r = app.router
    # floor_agents before agents: its /api/v1/agents/stats must come before /api/v1/agents/{agent_id}
    # (aiohttp before 3.10 matched resources in registration order: "stats" would be an agent id)
    for module in (system, floor_agents, agents, calls, cases, call_control, originate, floor, dialplans, webhooks,
                   pages, metrics, campaigns, recordings, supervision, quality, alerts, planning, webrtc):
        r.add_routes(module.routes())
    openapi.setup(app)
    return app


def main(settings: Settings) -> None:
    if not settings.users:
        log.warning("api.no_users", hint="no users: configured; only agents an admin created can sign in")
    server.run(init_app(settings), settings)
