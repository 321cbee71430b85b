"""Queue routes: for supervisors every queue with its live statistics (see
:meth:`ivr.queues.store.QueueStore.queue_stats` and docs/queue-stats.md), its service-level target
and the thresholds of the alert rules in force for it (the server's: every wallboard shows the same);
for an agent's desktop the queues it can take calls from, with their counts only.

**Configured queues show before their first call:** the queues of ``routing.queues`` and of the
plans' ``queue`` nodes are listed in Redis (:meth:`QueueStore.declare_queues`, with the skills their
calls will need) whenever the list is read, so a wallboard opened at the start of the day shows every
queue, with zero figures."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from ivr.alerts.config import rules_for
from ivr.core.config import QUEUE_METRICS, Settings
from ivr.core.errors import BadRequest, NotFound
from ivr.cti.auth import require_role, require_self_or
from ivr.cti.case_open import PLANS
from ivr.cti.context import SETTINGS, STORE, user
from ivr.dialplan.loader import LoadedPlan
from ivr.dialplan.model import QueueNode
from ivr.queues.stats import parse_time
from ivr.queues.store import QueueStore


def _since(request: web.Request) -> int | None:
    """``?since=`` (ISO 8601; without an offset: the server's local time) as epoch seconds."""
    raw = request.query.get("since")
    if raw is None:
        return None
    try:
        return int(parse_time(raw))
    except ValueError as exc:
        raise BadRequest(str(exc), code="request.invalid") from exc


def configured_queues(settings: Settings, plans: list[LoadedPlan]) -> dict[str, str]:
    """Queue name -> the skills its callers need (joined with ``+``, as the enqueue lists it): the
    queues of ``routing.queues`` and of every plan's queue nodes (a node's own skills win)."""
    out = {q: "+".join(qs.skills or [q]) for q, qs in settings.routing.queues.items()}
    for lp in plans:
        for node in lp.plan.nodes.values():
            if isinstance(node, QueueNode) and node.queue not in out:
                qs = settings.routing.queues.get(node.queue)
                out[node.queue] = "+".join(node.skills or (qs.skills if qs else []) or [node.queue])
    return out


async def declare_configured(request: web.Request) -> None:
    plans = await asyncio.to_thread(request.app[PLANS].plans)
    await request.app[STORE].declare_queues(configured_queues(request.app[SETTINGS], plans))


def targets(settings: Settings, queue: str) -> dict[str, Any]:
    """The queue's service-level target and the thresholds of its alert rules (the lowest per metric)."""
    share, threshold_s = settings.routing.target(queue)
    thresholds: dict[str, float] = {}
    for rule in rules_for(settings, queue):
        if rule.metric in QUEUE_METRICS:
            known = thresholds.get(rule.metric)
            better = known is None or (rule.threshold > known if rule.below else rule.threshold < known)
            if better:
                thresholds[rule.metric] = rule.threshold
    return {"target": {"share": share, "threshold_s": threshold_s}, "thresholds": thresholds}


async def list_queues(request: web.Request) -> web.Response:
    """Every queue with its real-time ``stats`` (``?since=`` sets the start of the period, local
    midnight by default), its target and alert thresholds; configured queues before their first call too."""
    require_role(await user(request), "supervisor", "admin")
    store, since, settings = request.app[STORE], _since(request), request.app[SETTINGS]
    await declare_configured(request)
    out = []
    for queue, skill in sorted((await store.queue_names()).items()):
        try:
            stats = (await store.queue_stats(queue, since_s=since)).to_dict()
        except NotFound:  # gone since it was listed
            continue
        out.append({"queue": queue, "skill": skill, "waiting": stats["waiting"], "stats": stats,
                    **targets(settings, queue)})
    return web.json_response({"queues": out})


async def queue_stats(request: web.Request) -> web.Response:
    require_role(await user(request), "supervisor", "admin")
    queue = request.match_info["queue"]
    store = request.app[STORE]
    if len(queue) <= 64 and queue not in await store.queue_names():
        await declare_configured(request)
    if queue not in await store.queue_names():
        raise NotFound(f"no queue {queue[:64]}", code="queue.not_found")
    stats = await store.queue_stats(queue, since_s=_since(request))
    return web.json_response(stats.to_dict())


async def agent_queues(request: web.Request) -> web.Response:
    """The queues an agent serves (it has every skill the queue asks for): callers waiting, the
    longest wait, and how many agents of the queue are in each state. Counts only: nothing about
    another agent or caller."""
    who = await user(request)
    agent_id = request.match_info["agent_id"]
    require_self_or(who, agent_id, "supervisor", "admin")
    store = request.app[STORE]
    agent = await store.get_agent(agent_id) if len(agent_id) <= 64 else None
    if agent is None:
        raise NotFound(f"no agent {agent_id[:64]}", code="agent.not_found")
    skills = set(agent["skills"])
    fresh = request.query.get("fresh") == "1"  # the desktop after its own call changed the counts
    out = []
    for queue, skill in sorted((await store.queue_names()).items()):
        if not skill or not set(skill.split("+")) <= skills:
            continue
        live = await request.app[LIVE].get(store, queue, fresh=fresh)
        if live is not None:
            out.append({"queue": queue, "skill": skill, **live})
    return web.json_response({"agent_id": agent_id, "queues": out})


LIVE_TTL_S = 2.0  # every desktop asks every 10 s: one snapshot per queue per 2 s serves them all


class LiveCounts:
    """Queues' live counts (waiting, longest wait, agents by state), shared by the desktops of one
    API instance for ``LIVE_TTL_S``."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def get(self, store: QueueStore, queue: str, *, fresh: bool = False) -> dict[str, Any] | None:
        """None for a queue that is gone; ``fresh`` reads Redis whatever the cache holds."""
        now = time.monotonic()
        hit = self._seen.get(queue)
        if hit is not None and not fresh and now - hit[0] < LIVE_TTL_S:
            return hit[1]
        try:
            stats = await store.queue_stats(queue, since_s=int(time.time()) + 1)  # live counts only
            live: dict[str, Any] | None = {"waiting": stats.waiting, "longest_wait_s": stats.longest_wait_s,
                                           "agents": stats.agents}
        except NotFound:
            live = None
        if len(self._seen) > 10_000:  # queues come and go: never grows without bound
            self._seen.clear()
        self._seen[queue] = (now, live)
        return live


LIVE = web.AppKey("live_queue_counts", LiveCounts)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/queues", list_queues),
        web.get("/api/v1/queues/{queue}/stats", queue_stats),
        web.get("/api/v1/agents/{agent_id}/queues", agent_queues),
    ]
