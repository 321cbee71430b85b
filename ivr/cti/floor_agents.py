"""The wallboard as a supervisor's workplace: per-agent figures by interval, a queue's intervals for
the charts (both JSON or CSV), and a supervisor forcing an agent's state or signing it out.

- ``GET /api/v1/agents/stats`` (supervisors, admins) and ``GET /api/v1/agents/{agent_id}/stats``
  (also the agent itself): handled calls, handle / talk / hold time and the time in each state per
  agent, ``by=day`` (default) or ``by=interval``, from ``since`` (default local midnight) to ``until``
  (default now). See :mod:`ivr.queues.agent_stats` for what is counted.
- ``GET /api/v1/queues/{queue}/intervals``: a queue's counters and figures per statistics interval
  (every interval of the range, empty ones as zeros), for the SL and offered / answered / abandoned charts.
- ``POST /api/v1/agents/{agent_id}/force`` (supervisors, admins): break, offline (sign-out) or
  available. Audited (``agent.forced``); ``agent.state`` carries ``by``. An agent on a call (ringing or
  connected) is not changed mid-call: 409 ``agent.busy`` unless ``force: true`` (break or offline
  only), which keeps the change on the agent and applies it when the call and its wrap-up are over
  (``applied: false`` and ``pending`` in the reply; ``agent.state_pending`` tells its desktop and the
  floor). A sign-out reaches the agent's
  desktop as its ``agent.state`` event (offline, ``by`` the supervisor), which shows it signed out.

Ranges are bounded (:data:`MAX_DAYS`, :data:`MAX_INTERVAL_DAYS`, :data:`MAX_ROWS`): a longer one is cut
to its end (``cut: true`` in the reply, ``since`` where it begins); ``until`` not after ``since`` is empty.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ivr.core.errors import BadRequest, Conflict, NotFound
from ivr.core.events import AgentState
from ivr.core.logging import get_logger
from ivr.cti.auth import User, require_role, require_self_or
from ivr.cti.calls import time_param
from ivr.cti.context import SETTINGS, STORE, body, user
from ivr.queues.agent_stats import COUNTERS, AgentStatsStore, figures, local_days, local_midnight, merge, row
from ivr.queues.stats import COUNTERS as QUEUE_COUNTERS
from ivr.queues.stats import figures as queue_figures
from ivr.queues.stats import iso

log = get_logger(__name__)

MAX_DAYS = 35  # a range of agent figures by day, or of a queue's intervals
MAX_INTERVAL_DAYS = 7  # a range of agent figures by interval
MAX_ROWS = 100_000  # agents x buckets of one agent-statistics request
BY = ("day", "interval")
AGENT_COUNTERS = COUNTERS  # the counters of an agent's interval (the OpenAPI schema lists them)
FORCE_STATES = (AgentState.AVAILABLE, AgentState.BREAK, AgentState.OFFLINE)
AGENT_CSV = ("agent_id", "start", "length_s", "handled", "aht_s", "avg_talk_s", "avg_hold_s", "occupancy",
             "signed_in_ms", *[c for c in COUNTERS if c != "handled"])


class ForceState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["available", "break", "offline"] = Field(description="offline: signed out")
    reason: str = Field("", max_length=64, description="shown on the agent's desktop and the wallboard")
    force: bool = Field(False, strict=True, description="an agent on a call: apply it (break or offline) "
                                                        "when the call and its wrap-up are over")


# --- parameters ------------------------------------------------------------------------------------

def _time(request: web.Request, name: str) -> int | None:
    """``?since=`` / ``?until=`` as epoch seconds (ISO 8601, without an offset the server's local time,
    or epoch seconds; 400 otherwise)."""
    ms = time_param(request, name)
    return None if ms is None else ms // 1000


def _range(request: web.Request, max_s: int) -> tuple[int, int, bool]:
    """``since`` (default local midnight) and ``until`` (default now), epoch seconds, ``since`` aligned
    down to the statistics interval; a range longer than ``max_s`` starts ``max_s`` before ``until``
    (third item true: cut). ``until`` not after ``since``: an empty range."""
    now = time.time()
    interval = request.app[STORE].stats_config.interval_s
    since, until = _time(request, "since"), _time(request, "until")
    hi = int(now) + 1 if until is None else until
    lo = local_midnight(now) if since is None else since
    cut = hi - lo > max_s
    if cut:
        lo = hi - max_s
    lo = lo - lo % interval
    return lo, max(lo, hi), cut


def _format(request: web.Request) -> bool:
    """True for CSV (``format=csv`` or ``Accept: text/csv``)."""
    fmt = request.query.get("format", "")
    if fmt not in ("", "json", "csv"):
        raise BadRequest("format must be json or csv", code="request.invalid")
    return fmt == "csv" or (not fmt and "text/csv" in request.headers.get("Accept", ""))


def _by(request: web.Request) -> str:
    by = request.query.get("by", "day")
    if by not in BY:
        raise BadRequest("by must be day or interval", code="request.invalid")
    return by


def _cell(v: Any) -> str:
    """No cell a spreadsheet would run as a formula; None as empty."""
    text = "" if v is None else str(v)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]], filename: str) -> web.Response:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(header)
    for r in rows:
        w.writerow([_cell(v) for v in r])
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# --- agent statistics --------------------------------------------------------------------------------

async def _agent_stats(request: web.Request, agent_ids: list[str], filename: str) -> web.Response:
    by = _by(request)
    want_csv = _format(request)
    store = request.app[STORE]
    bucket = store.stats_config.interval_s if by == "interval" else 86400
    # at most MAX_ROWS agent rows: with many agents, a shorter range (reported as `cut`)
    most = min((MAX_INTERVAL_DAYS if by == "interval" else MAX_DAYS) * 86400,
               max(1, MAX_ROWS // max(1, len(agent_ids))) * bucket)
    lo, hi, cut = _range(request, most)
    out: list[dict[str, Any]] = []
    buckets = local_days(lo, hi) if by == "day" else None
    async for got in AgentStatsStore(store).read(agent_ids, lo, hi, buckets=buckets):
        out.append({"agent_id": got.agent_id, "state": got.state or "offline",
                    "state_since": got.since_ms, "total": figures(merge(got.intervals)),
                    "rows": [row(iv) for iv in got.intervals]})
    if want_csv:
        lines = ([a["agent_id"], *[r[c] for c in AGENT_CSV[1:]]] for a in out for r in a["rows"])
        return _csv(AGENT_CSV, lines, filename)
    return web.json_response({"since": iso(lo), "until": iso(hi), "by": by, "cut": cut,
                              "interval_s": store.stats_config.interval_s, "agents": out})


async def agents_stats(request: web.Request) -> web.Response:
    """Every agent's figures (supervisors, admins)."""
    require_role(await user(request), "supervisor", "admin")
    return await _agent_stats(request, await request.app[STORE].agent_ids(), "agent-stats.csv")


async def agent_stats(request: web.Request) -> web.Response:
    """One agent's figures (the agent itself, supervisors, admins)."""
    who = await user(request)
    agent_id = request.match_info["agent_id"]
    require_self_or(who, agent_id, "supervisor", "admin")
    if len(agent_id) > 64 or await request.app[STORE].get_agent(agent_id) is None:
        raise NotFound(f"no agent {agent_id[:64]}", code="agent.not_found")
    return await _agent_stats(request, [agent_id], f"agent-stats-{agent_id}.csv")


# --- a queue's intervals -------------------------------------------------------------------------------

async def queue_intervals(request: web.Request) -> web.Response:
    """A queue's figures per statistics interval from ``since`` to ``until`` (every interval, empty ones
    as zeros), with the service level at each threshold."""
    require_role(await user(request), "supervisor", "admin")
    queue = request.match_info["queue"]
    store, settings = request.app[STORE], request.app[SETTINGS]
    if len(queue) > 64 or (queue not in await store.queue_names() and queue not in settings.routing.queues):
        raise NotFound(f"no queue {queue[:64]}", code="queue.not_found")
    lo, hi, cut = _range(request, MAX_DAYS * 86400)
    want_csv = _format(request)
    interval = store.stats_config.interval_s
    thresholds = store.stats_config.service_level_s
    found = {iv.start_s: iv.counts async for iv in store.iter_intervals(queue, lo, hi)}
    rows = []
    for start in range(lo, hi, interval):  # bounded: MAX_DAYS of intervals
        rows.append({"start": iso(start), "length_s": interval, **queue_figures(found.get(start, {}), thresholds)})
    if want_csv:
        header = ["start", "length_s", *QUEUE_COUNTERS, "max_answer_wait_ms", "max_abandon_wait_ms",
                  *[f"sl1_{t}" for t in thresholds], *[f"sl2_{t}" for t in thresholds],
                  "asa_s", "abandon_rate", "aht_s", "avg_hold_s"]
        lines = ([r["start"], r["length_s"], *[r[c] for c in QUEUE_COUNTERS], r["max_answer_wait_ms"],
                  r["max_abandon_wait_ms"], *[r["service_level"][str(t)]["sl1"] for t in thresholds],
                  *[r["service_level"][str(t)]["sl2"] for t in thresholds],
                  r["asa_s"], r["abandon_rate"], r["aht_s"], r["avg_hold_s"]] for r in rows)
        return _csv(header, lines, f"queue-{queue}-intervals.csv")
    return web.json_response({"queue": queue, "since": iso(lo), "until": iso(hi), "cut": cut, "interval_s": interval,
                              "thresholds": list(thresholds), "intervals": rows})


# --- forcing an agent's state ----------------------------------------------------------------------------

async def force(request: web.Request, who: User, agent_id: str, state: AgentState, reason: str,
                force: bool) -> dict[str, Any]:
    """A supervisor's change of an agent's state (see the module docstring): the reply."""
    if state not in FORCE_STATES:
        raise Conflict(f"a supervisor cannot set state {state.value}", code="agent.state_invalid")
    store = request.app[STORE]
    before = await store.get_agent(agent_id) if len(agent_id) <= 64 else None
    if before is None:
        raise NotFound(f"no agent {agent_id[:64]}", code="agent.not_found")
    res = await AgentStatsStore(store).force(agent_id, state.value, reason or "supervisor", by=who.id, force=force)
    applied = bool(res.get("applied"))
    await store.audit("agent.forced", by=who.id, role=who.role, target=f"agent:{agent_id}",
                      call_id=before.get("call_id", ""),
                      detail={"state": state.value, "reason": reason, "previous": before.get("state", ""),
                              "applied": "now" if applied else "after_call"})
    log.info("agent.forced", agent_id=agent_id, by=who.id, state=state.value, applied=applied)
    agent = await store.get_agent(agent_id) or {}
    if applied:
        return {"applied": True, "agent": agent}
    return {"applied": False, "pending": {"state": state.value, "reason": reason or "supervisor", "by": who.id},
                 "agent": agent}


async def force_state(request: web.Request) -> web.Response:
    who = await user(request)
    require_role(who, "supervisor", "admin")
    req = await body(request, ForceState)
    reply = await force(request, who, request.match_info["agent_id"], AgentState(req.state), req.reason, req.force)
    return web.json_response(reply)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/agents/stats", agents_stats),
        web.get("/api/v1/agents/{agent_id}/stats", agent_stats),
        web.get("/api/v1/queues/{queue}/intervals", queue_intervals),
        web.post("/api/v1/agents/{agent_id}/force", force_state),
    ]
