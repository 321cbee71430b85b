"""Floor alerts over the API (docs/alerts.md), for supervisors and admins: the active alerts, their
history, the effective rules, and acknowledging an alert. The evaluator itself
(:class:`ivr.alerts.engine.AlertEvaluator`) runs beside the API (``resources_ctx``), one at a time
across the instances (a Redis lease)."""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp import web

from ivr.alerts.config import rules_for
from ivr.alerts.engine import queue_list
from ivr.core.config import ROUTING_NAME
from ivr.core.errors import BadRequest, NotFound
from ivr.core.logging import get_logger
from ivr.cti import cursor
from ivr.cti.auth import require_role
from ivr.cti.calls import time_param
from ivr.cti.context import SETTINGS, STORE, limit_param, user
from ivr.queues.alerts_store import AlertStore, counts

log = get_logger(__name__)

ALERTS = web.AppKey("alerts", AlertStore)
ALERT_ID = r"^AL[0-9]{1,15}$"
_ALERT_ID = re.compile(ALERT_ID)
SEVERITIES = ("info", "warning", "critical")
SEVERITY_LIST = r"^(info|warning|critical)(,(info|warning|critical)){0,2}$"
HISTORY_LIMIT_DEFAULT = 50
HISTORY_LIMIT_MAX = 200
FIELDS = ("id", "rule", "metric", "queue", "severity", "value", "threshold", "clear_at", "direction", "threshold_s",
          "message", "sound", "raised_at", "cleared_at", "clear_value", "clear_message", "acked_by", "acked_at")


def public(a: dict[str, Any]) -> dict[str, Any]:
    """An alert as the API shows it (the same fields always, null when not set)."""
    out = {f: a.get(f) for f in FIELDS}
    out["acked_by"] = out["acked_by"] or None
    out["clear_message"] = out["clear_message"] or None
    out["sound"] = bool(out["sound"])
    for f in ("raised_at", "cleared_at", "acked_at", "threshold_s"):
        out[f] = out[f] if isinstance(out[f], int) and not isinstance(out[f], bool) else None
    for f in ("value", "threshold", "clear_at", "clear_value"):
        v = out[f]
        out[f] = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
    return out


def _alerts(request: web.Request) -> AlertStore:
    return request.app[ALERTS]


def _choice(request: web.Request, name: str, pattern: str, what: str) -> str:
    raw = request.query.get(name)
    if raw is None:
        return ""
    if not re.fullmatch(pattern, raw):
        raise BadRequest(f"{name} must be {what}", code="request.invalid")
    return raw


async def list_active(request: web.Request) -> web.Response:
    """``GET /api/v1/alerts``: the active alerts, most severe first."""
    require_role(await user(request), "supervisor", "admin")
    active = await _alerts(request).active()
    return web.json_response({"alerts": [public(a) for a in active], "counts": counts(active),
                              "at": int(time.time() * 1000)})


async def history(request: web.Request) -> web.Response:
    """``GET /api/v1/alerts/history``: raised alerts newest first (filters, cursor paging)."""
    require_role(await user(request), "supervisor", "admin")
    settings = request.app[SETTINGS]
    now = int(time.time() * 1000)
    oldest = now - settings.alerts.history_days * 86_400_000
    since = time_param(request, "since")
    until = time_param(request, "until")
    lo = max(oldest, since if since is not None else oldest)
    hi = until if until is not None else now + 1
    queue = _choice(request, "queue", ROUTING_NAME, "a queue name")
    rule = _choice(request, "rule", ROUTING_NAME, "a rule name")
    sev = _choice(request, "severity", SEVERITY_LIST, f"one or more of {', '.join(SEVERITIES)}, comma-separated")
    severities = sorted(set(sev.split(","))) if sev else []
    limit = limit_param(request, HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX)
    filters = ["alerts", since, until, queue, rule, severities]
    after = None
    if "cursor" in request.query:
        after = cursor.decode_cursor(filters, request.query["cursor"], _ALERT_ID)
    if hi <= lo:
        return web.json_response({"alerts": [], "next_cursor": None})
    page = await _alerts(request).history(since_ms=lo, until_ms=hi, queue=queue, rule=rule, severities=severities,
                                          after=after, limit=limit)
    nxt = cursor.encode_cursor(filters, page.next) if page.next else None
    return web.json_response({"alerts": [public(a) for a in page.alerts], "next_cursor": nxt})


async def rules(request: web.Request) -> web.Response:
    """``GET /api/v1/alerts/rules``: the rules in force, system-wide and per queue (configured queues and
    the queues in Redis)."""
    require_role(await user(request), "supervisor", "admin")
    settings = request.app[SETTINGS]
    queues = await queue_list(request.app[STORE], settings)
    return web.json_response({"system": [r.to_dict() for r in rules_for(settings, None)],
                              "queues": {q: [r.to_dict() for r in rules_for(settings, q)] for q in queues}})


async def acknowledge(request: web.Request) -> web.Response:
    """``POST /api/v1/alerts/{id}/ack``: acknowledged (who, when; audited ``alert.ack``); it stays
    active until it clears. 404 ``alert.not_found``, 409 ``alert.not_active`` once cleared."""
    who = await user(request)
    require_role(who, "supervisor", "admin")
    alert_id = request.match_info["id"]
    if not _ALERT_ID.fullmatch(alert_id):
        raise NotFound(f"no alert {alert_id[:40]!r}", code="alert.not_found")
    alert = await _alerts(request).acknowledge(alert_id, by=who.id, now_ms=int(time.time() * 1000))
    await request.app[STORE].audit("alert.ack", by=who.id, role=who.role, target=alert_id,
                                   detail={"rule": str(alert.get("rule", "")), "queue": str(alert.get("queue", ""))})
    log.info("alert.acknowledged", id=alert_id, by=who.id, rule=alert.get("rule"), queue=alert.get("queue"))
    return web.json_response(public(alert))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/alerts", list_active),
        web.get("/api/v1/alerts/history", history),
        web.get("/api/v1/alerts/rules", rules),
        web.post("/api/v1/alerts/{id}/ack", acknowledge),
    ]
