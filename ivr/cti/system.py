"""System routes: liveness, readiness, and the running configuration for admins (secrets masked)."""

from __future__ import annotations

from aiohttp import web

from ivr.cti.auth import require_role
from ivr.cti.context import SETTINGS, STORE, user


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when Redis answers and at least ``workers.count`` workers hold their leases."""
    store, settings = request.app[STORE], request.app[SETTINGS]
    try:
        await store.ping()
    except Exception:
        return web.json_response({"ready": False, "redis": False}, status=503)
    alive = [w for w in await store.worker_names() if await store.worker_holder(w)]
    ready = len(alive) >= settings.workers.count
    return web.json_response({"ready": ready, "redis": True, "workers_alive": len(alive),
                              "workers": settings.workers.count}, status=200 if ready else 503)


async def get_config(request: web.Request) -> web.Response:
    """The configuration this API instance runs with (admin); every secret (a ``SecretStr``: tokens,
    passwords, webhook secrets, CRM headers) is dumped by pydantic as ``**********``."""
    require_role(await user(request), "admin")
    return web.json_response(request.app[SETTINGS].model_dump(mode="json"))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/api/v1/config", get_config),
    ]
