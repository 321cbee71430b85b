"""Dial-plan versions over the API: what runs where, the last errors, the history, rollback.

The running versions and load errors come from Redis (reported by every worker's watcher); the
history and the archived contents come from the version archive under ``<var_dir>/dialplans``,
which is on the API's host (``ivr run`` runs everything on one host; with several hosts, the API
host's archive and dial-plan files are the ones it shows and rolls back, see docs).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ivr.core.errors import NotFound
from ivr.cti.auth import require_role
from ivr.cti.context import SETTINGS, STORE, body, user
from ivr.dialplan.registry import VersionArchive
from ivr.queues.dialplan_status import PlanStatus


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str | None = Field(None, pattern=r"^[0-9a-f]{12}$",
                                description="archived version to restore; default: the previous one")


def _archive(request: web.Request) -> VersionArchive:
    s = request.app[SETTINGS]
    return VersionArchive(s.var_dir / "dialplans", s.dialplan.keep_versions)


async def _live(request: web.Request, status: PlanStatus) -> PlanStatus:
    """Only workers that are alive now."""
    store = request.app[STORE]
    alive = {w for w in {*status.workers, *status.errors} if await store.worker_holder(w)}
    return PlanStatus(status.plan, {w: v for w, v in status.workers.items() if w in alive},
                      {w: v for w, v in status.errors.items() if w in alive})


def _summary(plan: str, status: PlanStatus, archive: VersionArchive) -> dict[str, Any]:
    current = archive.current(plan)
    counts = Counter(v["version"] for v in status.workers.values())
    active = max(counts, key=lambda v: (counts[v], v == (current and current.version))) if counts else None
    meta = next((v for v in status.workers.values() if v["version"] == active), {})
    last_error = max(status.errors.values(), key=lambda e: e.get("at") or "", default=None)
    return {
        "plan": plan,
        "name": meta.get("name"),
        "file": meta.get("file") or (current.file if current else None),
        "numbers": meta.get("numbers", []),
        "active": active,
        "archived": current.version if current else None,
        "workers": {w: v["version"] for w, v in sorted(status.workers.items())},
        "errors": dict(sorted(status.errors.items())),
        "last_error": last_error,
    }


async def list_dialplans(request: web.Request) -> web.Response:
    require_role(await user(request), "supervisor", "admin")
    archive = _archive(request)
    store = request.app[STORE]
    statuses = await store.plan_statuses()
    out = []
    for plan in sorted({*statuses, *archive.plans()}):
        status = await _live(request, statuses.get(plan, PlanStatus(plan)))
        out.append(_summary(plan, status, archive))
    return web.json_response({"dialplans": out})


async def _known(request: web.Request, plan: str) -> VersionArchive:
    archive = _archive(request)
    store = request.app[STORE]
    if plan not in archive.plans() and not await store.plan_known(plan):
        raise NotFound(f"no dial plan {plan}", code="dialplan.not_found")
    return archive


async def list_versions(request: web.Request) -> web.Response:
    require_role(await user(request), "supervisor", "admin")
    plan = request.match_info["plan"]
    archive = await _known(request, plan)
    entries = archive.history(plan)
    current = entries[-1].version if entries else None
    return web.json_response({"plan": plan, "current": current,
                              "versions": [e.model_dump() for e in reversed(entries)]})


async def rollback(request: web.Request) -> web.Response:
    who = await user(request)
    require_role(who, "admin")
    plan = request.match_info["plan"]
    req = await body(request, Rollback)
    archive = await _known(request, plan)
    previous = archive.current(plan)
    entry = await asyncio.to_thread(archive.rollback, plan, request.app[SETTINGS].dialplans_dir,
                                    req.version, by=who.id)
    return web.json_response({"plan": plan, "previous": previous.version if previous else None,
                              **entry.model_dump()})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/dialplans", list_dialplans),
        web.get("/api/v1/dialplans/{plan}/versions", list_versions),
        web.post("/api/v1/dialplans/{plan}/rollback", rollback),
    ]
