"""CTI routes for call records: the record itself, the agent's disposition and notes, its voicemail
(WAV), mailboxes and callbacks.

Voicemail files are served only from the path stored on the call record, re-checked to lie inside
``<var_dir>/voicemail``; API replies never show that path, only the download URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ivr.core import commands
from ivr.core.errors import BadRequest, Conflict, Forbidden, NotFound
from ivr.core.logging import get_logger
from ivr.core.media_store import NAME, voicemail_file
from ivr.cti import cursor
from ivr.cti.auth import User, require_role, require_self_or
from ivr.cti.case_open import CaseFromCall, open_for_call
from ivr.cti.command_reply import send_command
from ivr.cti.context import SETTINGS, STORE, body, limit_param, user
from ivr.queues.stats import parse_time
from ivr.queues.store import CallQuery

log = get_logger(__name__)


# --- the typed call record ------------------------------------------------------------------------

class CallRecord(BaseModel):
    """A call record as the API shows it (``GET /api/v1/calls/{id}`` and the call list): the Redis
    hash ``ivr:call:<id>`` decoded once, here. Times are epoch milliseconds, durations seconds;
    what the scripts store as JSON comes back as objects and lists. Fields a record does not have
    are left out. Fields this schema does not know (a newer writer) are passed through as written."""

    model_config = ConfigDict(extra="allow")

    call_id: str
    state: str | None = Field(None, description="ivr, queued, offered, connected, held, consulting, "
                                                "transferring, conferenced, booked, scheduled, ended")
    kind: str | None = Field(None, description="`callback` for a callback's record")
    direction: str | None = Field(None, description="inbound (also when absent) or outbound")
    worker: str | None = None
    ani: str | None = Field(None, description="the caller's number")
    dnis: str | None = Field(None, description="the number dialled")
    number: str | None = Field(None, description="the number a callback or an outbound call dials")
    hotline: str | None = None
    language: str | None = None
    plan_version: str | None = None
    queue: str | None = None
    skill: str | None = None
    priority: int | None = None
    stage: int | None = Field(None, description="escalation steps applied")
    agent_id: str | None = None
    offer_id: str | None = None
    offers: int | None = Field(None, description="offers made to agents")
    started_at: int | None = None
    queued_at: int | None = None
    offered_at: int | None = None
    answered_at: int | None = None
    agent_left_at: int | None = None
    left_queue_at: int | None = None
    ended_at: int | None = None
    waited_s: float | None = Field(None, description="queued to answered, ringing included: the figure of "
                                                     "the call.answered event, the queue statistics and the report")
    ewt_s: float | None = Field(None, description="the last wait estimate the caller was told")
    outcome: str | None = Field(None, description="completed, abandoned, ivr, lost... once ended")
    end_reason: str | None = None
    left_reason: str | None = None
    journey: dict[str, Any] | None = None
    route: dict[str, Any] | None = None
    stages: list[dict[str, Any]] | None = None
    rtp: dict[str, Any] | None = Field(None, description="RTP counters per leg")
    csat: int | None = None
    voicemail: dict[str, Any] | None = Field(None, description="with its download `url` (never a path)")
    variables: dict[str, str] | None = None
    crm: dict[str, Any] | None = None
    disposition: str | None = None
    notes: str | None = None
    disposition_by: str | None = None
    dispositions: dict[str, dict[str, Any]] | None = Field(
        None, description="each agent's part of the call: {agent: {disposition, notes, by, at}} (a call "
                          "transferred on has one per agent; disposition/notes above are the last)")
    crm_record_id: str | None = None
    case_id: str | None = Field(None, description="the complaint case the call is linked to (the last one)")
    recording: str | None = Field(None, description="while the call runs: `on` or `paused` (docs/recording.md)")
    recording_id: str | None = Field(None, description="its recording, once stored: `GET /api/v1/recordings/{id}`")
    recording_ms: int | None = Field(None, description="the stored recording's duration")
    recording_sha256: str | None = Field(None, description="the stored recording's SHA-256")
    callback_id: str | None = None
    callback: dict[str, Any] | None = None
    # call control (docs/call-control.md)
    held_at: int | None = Field(None, description="while held")
    hold_s: float | None = Field(None, description="total time held")
    hold_count: int | None = None
    muted: bool | None = None
    consult: dict[str, Any] | None = Field(None, description="{target_type, target, agent_id, state} while consulting")
    transfers: list[dict[str, Any]] | None = Field(
        None, description="[{at, by, from_agent, target_type, target, mode}]")
    transferred_from: str | None = Field(None, description="the agent of the last transfer")
    conference: list[str] | None = Field(None, description="agent ids while conferenced")
    # live supervision (docs/call-control.md "Live supervision"); an agent sees them only while the
    # agent's desktop is told (whisper, barge; listen with supervision.notify_agent_on_listen)
    monitored: str | None = Field(None, description="listen, whisper or barge while a supervisor is on the call")
    monitor: dict[str, Any] | None = Field(
        None, description="{by, mode, state ringing/talking, since, notice} while a supervisor is on the call")


_INTS = frozenset(name for name, f in CallRecord.model_fields.items()
                  if f.annotation == (int | None))
_FLOATS = frozenset(name for name, f in CallRecord.model_fields.items()
                    if f.annotation == (float | None))
_JSON = frozenset({"journey", "route", "stages", "rtp", "voicemail", "variables", "crm", "callback", "consult",
                   "transfers", "conference", "dispositions", "monitor"})
#: stored on the record for the scripts, never shown
_HIDDEN = frozenset({"ttl", "waited_ms"})


def _monitor_notice(value: Any) -> str:
    try:
        monitor = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return ""
    return str(monitor.get("notice") or "") if isinstance(monitor, dict) else ""


def _decode(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in _JSON:
        return json.loads(value)
    if name in _INTS:
        return int(float(value))
    if name in _FLOATS:
        return float(value)
    if name == "muted":
        return value not in ("", "0")
    return value


def call_view(raw: Mapping[str, Any], *, role: str = "") -> dict[str, Any]:
    """The JSON of a call record (the store's hash, strings or values already decoded) as
    :class:`CallRecord` says. A field that does not decode (a record of an older or broken writer)
    is left out and logged, never an error: the rest of the record is shown. For an agent (``role``)
    a supervisor's listen it is not told of is left out."""
    if role == "agent" and "monitored" in raw and not _monitor_notice(raw.get("monitor")):
        raw = {k: v for k, v in raw.items() if k not in ("monitored", "monitor")}
    out: dict[str, Any] = {}
    bad: list[str] = []
    for name, value in raw.items():
        if name in _HIDDEN or value is None:
            continue
        try:
            out[name] = _decode(name, value)
        except (ValueError, TypeError, OverflowError):
            bad.append(name)
    waited = raw.get("waited_ms")
    try:
        if waited not in (None, ""):
            out["waited_s"] = round(float(waited) / 1000, 3)
        elif out.get("answered_at") is not None and out.get("queued_at") is not None:
            out["waited_s"] = round(max(0, out["answered_at"] - out["queued_at"]) / 1000, 3)  # older records
    except (TypeError, ValueError):
        bad.append("waited_s")
    if isinstance(out.get("voicemail"), dict):
        out["voicemail"] = _voicemail_view({**out["voicemail"], "call_id": out.get("call_id", "")})
    out.setdefault("call_id", "")
    for _ in range(3):
        try:
            rec = CallRecord.model_validate(out)
            break
        except ValidationError as exc:
            for err in exc.errors():
                name = str(err["loc"][0]) if err["loc"] else ""
                if name and name != "call_id":
                    out.pop(name, None)
                    bad.append(name)
    else:
        rec = CallRecord(call_id=str(out.get("call_id", "")))
    if bad:
        log.warning("call.record_fields_skipped", call_id=out.get("call_id"), fields=sorted(set(bad)))
    return rec.model_dump(mode="json", exclude_none=True)

def _voicemail_view(entry: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in entry.items() if k != "path"}
    out["url"] = f"/api/v1/calls/{entry.get('call_id', '')}/voicemail"
    return out


def _name_param(request: web.Request, name: str) -> str:
    value = request.query.get(name, "")
    if not NAME.match(value):
        raise BadRequest(f"query parameter {name} is required: 1-64 of A-Z a-z 0-9 _ . -", code="request.invalid")
    return value


async def _own_call(request: web.Request) -> tuple[User, str, dict[str, Any]]:
    """The user, the call id and the record of the path's call, which the user may act on: its own
    agent, a supervisor, an admin (404 ``call.not_found``, 403 ``auth.forbidden`` otherwise)."""
    who = await user(request)
    call_id = request.match_info["call_id"]
    call = await request.app[STORE].get_call(call_id)
    if call is None:
        raise NotFound("no such call", code="call.not_found")
    require_self_or(who, call.get("agent_id", ""), "supervisor", "admin")
    return who, call_id, call


def handled_by(call: Mapping[str, Any]) -> set[str]:
    """The agents who took part in a call: its agent, the senders of its transfers, the agents of its
    conference (what the call list's agent index holds, ``call_agents`` in ``lua/lib/prelude.lua``)."""
    out = {str(call.get("agent_id") or ""), str(call.get("transferred_from") or "")}
    for name, key in (("transfers", "from_agent"), ("conference", None)):
        value = call.get(name)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        for item in value if isinstance(value, list) else []:
            agent = item.get(key) if key and isinstance(item, dict) else item
            if isinstance(agent, str):
                out.add(agent)
    out.discard("")
    return out


async def get_call(request: web.Request) -> web.Response:
    """The call record (journey, csat, voicemail, variables, callback); supervisors, admins and the
    agents who took part in it (also the one who transferred it on: it is in their call list)."""
    who = await user(request)
    store = request.app[STORE]
    call = await store.get_call(request.match_info["call_id"])
    if call is None:
        raise NotFound("no such call", code="call.not_found")
    if who.role == "agent" and who.id not in handled_by(call):
        require_self_or(who, str(call.get("agent_id") or ""), "supervisor", "admin")
    if call.get("callback_id"):
        cb = await store.get_callback(call["callback_id"])
        if cb is not None:
            call["callback"] = {k: cb[k] for k in ("id", "queue", "state", "place", "created_at") if k in cb}
    return web.json_response(call_view(call, role=who.role))


# --- the call list ----------------------------------------------------------------------------------

CALLS_LIMIT_MAX = 200
CALLS_LIMIT_DEFAULT = 50
_NUMBER = re.compile(r"[+]?[0-9A-Za-z#._-]{1,64}[*]?")
_EPOCH = re.compile(r"[0-9]{1,11}(\.[0-9]{1,6})?")
#: a calendar date the server's parser takes: no 31 November, 29 February only in a leap year, no year 0
#: (a pattern that took every day up to 31 had the document promise dates the server refused)
_YEAR = r"([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_LEAP_YEAR = r"([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
CALENDAR_DATE = (rf"({_YEAR}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
                 rf"|02-(0[1-9]|1[0-9]|2[0-8]))|{_LEAP_YEAR}-02-29)")
#: the local date-time (no offset) the documents allow besides RFC 3339 dates and date-times
LOCAL_TIME = (rf"{CALENDAR_DATE}T([01][0-9]|2[0-3]):[0-5][0-9]"
              r"(:[0-5][0-9](\.[0-9]{1,6})?)?")
_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
                  r"([Tt]([0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
                  r"|[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?))?")
_CALL_ID = re.compile(r"[^\x00-\x1f\x7f]{1,200}")
_MAX_MS = cursor.MAX_MS
OUTCOMES = ("completed", "abandoned", "ivr", "lost", "transferred", "cancelled", "failed", "superseded")


def time_param(request: web.Request, name: str) -> int | None:
    """``?from=`` / ``?to=`` as epoch ms: ISO 8601 (no offset: the server's local time) or epoch seconds."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:  # RFC 3339 allows a lower-case t and z; times before 1970 or after 9999 are clamped
        if _EPOCH.fullmatch(raw):
            seconds = float(raw)
        elif _ISO.fullmatch(raw):
            seconds = parse_time(raw.upper())
        else:
            raise ValueError(raw)
        ms = round(seconds * 1000)
    except (ValueError, OverflowError, OSError):
        raise BadRequest(f"{name} must be an ISO 8601 date or date-time, or epoch seconds "
                         "(e.g. 2024-05-01, 2024-05-01T08:00:00+09:00, 1714550400)", code="request.invalid") from None
    return min(max(ms, 0), _MAX_MS)


def query_choice(request: web.Request, name: str, pattern: str | re.Pattern[str], what: str) -> str:
    raw = request.query.get(name)
    if raw is None:
        return ""
    if not re.fullmatch(pattern, raw):
        raise BadRequest(f"{name} must be {what}", code="request.invalid")
    return raw


def _calls_limit(request: web.Request) -> int:
    raw = request.query.get("limit", str(CALLS_LIMIT_DEFAULT))
    if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= CALLS_LIMIT_MAX:
        raise BadRequest(f"limit must be 1..{CALLS_LIMIT_MAX}", code="request.invalid")
    return int(raw)


def _filters(query: CallQuery) -> list[object]:
    """What a cursor is bound to: the filters of the query that made it (the forced agent too)."""
    return [query.from_ms, query.to_ms, query.agent_id, query.queue, query.number, query.number_prefix,
            query.outcome, query.direction]


def encode_cursor(query: CallQuery, pos: tuple[int, str]) -> str:
    """An opaque cursor: the position (start ms, call id) of the last call looked at, bound to the
    query's filters (:mod:`ivr.cti.cursor`)."""
    return cursor.encode_cursor(_filters(query), pos)


def decode_cursor(query: CallQuery, raw: str) -> tuple[int, str]:
    """The position of a cursor made for ``query``; 400 ``request.invalid`` for anything else."""
    return cursor.decode_cursor(_filters(query), raw, _CALL_ID)


def calls_query(request: web.Request, who: User) -> CallQuery:
    """The list's filters from the query string (400 ``request.invalid`` for a bad one). An agent
    sees only the calls it took: its ``agent_id`` is forced, whatever it asked for."""
    start, end = time_param(request, "from"), time_param(request, "to")  # to <= from: nothing
    number = query_choice(request, "number", _NUMBER, "a number (1-64 of + 0-9 A-Z a-z # . _ -), "
                                                 "ending with * for a prefix")
    agent_id = query_choice(request, "agent_id", r"[A-Za-z0-9_.-]{1,64}", "an agent id")
    if who.role == "agent":
        agent_id = who.id
    return CallQuery(
        from_ms=start if start is not None else 0, to_ms=end if end is not None else _MAX_MS + 1,
        agent_id=agent_id, queue=query_choice(request, "queue", r"[A-Za-z0-9_.-]{1,64}", "a queue name"),
        number=number.rstrip("*"), number_prefix=number.endswith("*"),
        outcome=query_choice(request, "outcome", "|".join(OUTCOMES), f"one of {', '.join(OUTCOMES)}"),
        direction=query_choice(request, "direction", "inbound|outbound", "inbound or outbound"))


async def list_calls(request: web.Request) -> web.Response:
    """Call records, newest first, filtered and paginated with an opaque cursor (see
    :meth:`QueueStore.list_calls`); agents get their own calls only."""
    who = await user(request)
    query = calls_query(request, who)
    limit = _calls_limit(request)
    raw_cursor = request.query.get("cursor")
    after = decode_cursor(query, raw_cursor) if raw_cursor is not None else None
    page = await request.app[STORE].list_calls(query, limit=limit, after=after)
    return web.json_response({"calls": [call_view(c, role=who.role) for c in page.calls],
                              "next_cursor": encode_cursor(query, page.next) if page.next else None})


async def get_voicemail(request: web.Request) -> web.StreamResponse:
    """The call's voicemail as audio/wav."""
    require_role(await user(request), "supervisor", "admin")
    call_id = request.match_info["call_id"]
    call = await request.app[STORE].get_call(call_id)
    if call is None:
        raise NotFound("no such call", code="call.not_found")
    vm = call.get("voicemail")
    if not isinstance(vm, dict) or not vm.get("path"):
        raise NotFound("the call has no voicemail", code="voicemail.not_found")
    file = voicemail_file(str(vm["path"]), request.app[SETTINGS])
    if file is None:
        log.warning("voicemail.path_refused", call_id=call_id)
        raise NotFound("the call has no voicemail", code="voicemail.not_found")
    if not file.is_file():
        raise NotFound("the voicemail file is gone", code="voicemail.not_found")
    name = call_id if NAME.match(call_id) else "voicemail"
    return web.FileResponse(file, headers={"Content-Type": "audio/wav",
                                           "Content-Disposition": f'attachment; filename="{name}.wav"'})


async def list_voicemail(request: web.Request) -> web.Response:
    require_role(await user(request), "supervisor", "admin")
    mailbox = _name_param(request, "mailbox")
    entries = await request.app[STORE].voicemails(mailbox, limit_param(request))
    return web.json_response({"mailbox": mailbox, "voicemail": [_voicemail_view(e) for e in entries]})


async def list_callbacks(request: web.Request) -> web.Response:
    """Pending callbacks of a queue, best place first."""
    require_role(await user(request), "supervisor", "admin")
    queue = _name_param(request, "queue")
    return web.json_response({"queue": queue,
                              "callbacks": await request.app[STORE].list_callbacks(queue)})


async def cancel_callback(request: web.Request) -> web.Response:
    who = await user(request)
    require_role(who, "supervisor", "admin")
    cb_id = request.match_info["callback_id"]
    if not NAME.match(cb_id):
        raise NotFound("no such callback", code="callback.not_found")
    store = request.app[STORE]
    await store.cancel_callback(cb_id, by=who.id, ttl_s=request.app[SETTINGS].routing.call_ttl_s)
    log.info("callback.cancelled", callback_id=cb_id, by=who.id)
    return web.json_response(await store.get_callback(cb_id))


class Disposition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disposition: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="one of api.dispositions")
    notes: str = Field("", max_length=4000)
    crm_record_id: str | None = Field(None, max_length=128, pattern=r"^[^\x00-\x1f]+$",
                                      description="the CRM record the agent confirmed (when the pop listed several)")
    case: CaseFromCall | None = Field(None, description="open a complaint case for the call: owned by the call's "
                                                        "agent, the customer the call's number, linked to the call")


async def set_disposition(request: web.Request) -> web.Response:
    """The agent's wrap-up: a disposition code and notes on the call record (an agent who took part
    in it - also the one who transferred it on and is in wrap-up for it - a supervisor or an admin);
    ``call.disposition`` carries them, with who set them, to the CRM's webhook. With ``case``, a
    complaint case is opened for the call (once: a call linked to a case keeps it) and the reply
    carries its ``case_id``."""
    who = await user(request)
    call_id = request.match_info["call_id"]
    store = request.app[STORE]
    call = await store.get_call(call_id)
    if call is None:
        raise NotFound("no such call", code="call.not_found")
    if who.role not in ("supervisor", "admin") and who.id not in handled_by(call):
        raise Forbidden(f"{who.role} {who.id} may not act on this call", code="auth.forbidden")
    req = await body(request, Disposition)
    allowed = request.app[SETTINGS].api.dispositions
    if req.disposition not in allowed:
        raise BadRequest(f"disposition must be one of {', '.join(allowed)}", code="call.disposition_invalid")
    case_id = str(call.get("case_id") or "")
    if req.case is not None and not case_id:  # a call already linked to a case (a disposition saved again) keeps it
        owner = who.id if who.role == "agent" else str(call.get("agent_id") or "")
        case = await open_for_call(request, who, call_id, call, tier=req.case.tier, reason=req.case.reason,
                                   owner=owner)
        case_id = case["id"]
    await store.record_disposition(call_id, req.disposition, req.notes, who.id, crm_record_id=req.crm_record_id,
                                   agent_id=who.id if who.role == "agent" else "")
    log.info("call.disposition", call_id=call_id, disposition=req.disposition, by=who.id, case_id=case_id)
    reply = call_view(await store.get_call(call_id) or {"call_id": call_id}, role=who.role)
    if req.case is not None:
        reply["case_id"] = case_id
    return web.json_response(reply)


async def hangup_call(request: web.Request) -> web.Response:
    """End a live call for every party: supervisors and admins any call, an agent its own. The
    command goes to the worker that holds the call, whichever API instance receives it."""
    who, call_id, call = await _own_call(request)
    if call.get("state") == "ended":
        raise Conflict("the call has already ended", code="call.ended")
    return await send_command(request, commands.Hangup(call_id=call_id, by=who.id, role=who.role), "hangup")


async def list_dispositions(request: web.Request) -> web.Response:
    await user(request)
    return web.json_response({"dispositions": request.app[SETTINGS].api.dispositions})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/calls", list_calls),
        web.get("/api/v1/calls/{call_id}", get_call),
        web.get("/api/v1/calls/{call_id}/voicemail", get_voicemail),
        web.post("/api/v1/calls/{call_id}/disposition", set_disposition),
        web.post("/api/v1/calls/{call_id}/hangup", hangup_call),
        web.get("/api/v1/dispositions", list_dispositions),
        web.get("/api/v1/voicemail", list_voicemail),
        web.get("/api/v1/callbacks", list_callbacks),
        web.delete("/api/v1/callbacks/{callback_id}", cancel_callback),
    ]
