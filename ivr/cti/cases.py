"""Complaint cases over the API (docs/cti-api.md "Cases"): open, list, read, change, notes, linked calls,
the counts of the wallboard, and the follow-up task a case nearing its deadline becomes (accept: dial
the customer like click-to-dial; decline).

Who may do what: an agent opens cases it owns, sees and changes only its own (status and reason;
it may claim an unowned case by naming itself owner); supervisors and admins see and change every
case (tier, owner too) and read the counts. The store (:class:`ivr.queues.store.QueueStore`, one Lua
script per change) keeps the state machine and emits the ``case.*`` events; this module works out
the due times: ``case_due`` of :mod:`ivr.dialplan.hours` with the business hours of the case's
plan (the plan of its call, else ``cases.hours_plan``, else the plan answering ``*`` or the first).

Follow-up tasks: the worker's housekeeping offers a pending case to an agent (``case.task_offered``,
the agent reserved, the case's ``task_agent``); the agent holding it accepts (the customer is dialled
as click-to-dial does, :mod:`ivr.cti.originate`) or declines; a supervisor or admin may take a task
back from an agent (decline) but not accept it for one. An agent reaches a case it owns or a task
offered to it.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ivr.core import case_states as cs
from ivr.core.config import FollowUpMode
from ivr.core.errors import BadRequest, Conflict, Forbidden, NotFound
from ivr.core.logging import get_logger
from ivr.cti import cursor
from ivr.cti.agents import AGENT_ID
from ivr.cti.auth import User, require_role
from ivr.cti.calls import handled_by
from ivr.cti.case_open import LINE, REASON, TEXT, Tier, due_ms, open_for_call
from ivr.cti.context import SETTINGS, STORE, body, limit_param, user
from ivr.cti.originate import caller_id, check_number
from ivr.queues.stats import start_of_today
from ivr.queues.store import FollowUp, QueueStore

log = get_logger(__name__)

CASE_ID = cs.CASE_ID.pattern
_CASE_ID = cs.CASE_ID
Status = Literal["open", "contacted", "resolved", "closed", "reopened"]
STATUSES: tuple[str, ...] = tuple(s.value for s in cs.CaseStatus)
TIERS: tuple[str, ...] = cs.CASE_TIERS
#: the moves of the case state machine (ivr.core.case_states), as strings
MOVES: dict[str, frozenset[str]] = {k.value: frozenset(s.value for s in v) for k, v in cs.CASE_TRANSITIONS.items()}
#: what a case's due time still counts for (not yet contacted)
WAITING = frozenset(s.value for s in cs.PENDING)
CASES_LIMIT_MAX = cs.LIST_MAX
CASES_LIMIT_DEFAULT = 50
NOTES_SHOWN = 50
CALL_ID = cs.CALL_ID.pattern
CUSTOMER = f"^({cs.CUSTOMER.pattern[1:-1]})?$"


class CaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier: Tier
    reason: str = Field(min_length=1, max_length=cs.REASON_MAX, pattern=REASON, description="one line")
    customer: str | None = Field(None, pattern=CUSTOMER, description="the customer's number (default: the call's)")
    call_id: str | None = Field(None, pattern=CALL_ID, description="a call to link (its customer and hotline "
                                                                  "are the case's unless given)")
    owner: str | None = Field(None, pattern=AGENT_ID, description="the agent who owns it (an agent: itself only, "
                                                                 "the default)")
    crm_id: str = Field("", max_length=cs.CRM_ID_MAX, pattern=LINE)
    customer_name: str = Field("", max_length=cs.CUSTOMER_NAME_MAX, pattern=LINE)


class CaseUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Status | None = Field(None, description="open -> contacted|resolved|closed; contacted -> resolved|"
                                                     "closed; resolved -> closed|reopened; closed -> reopened; "
                                                     "reopened -> contacted|resolved|closed")
    tier: Tier | None = Field(None, description="supervisors and admins")
    owner: str | None = Field(None, pattern=f"^$|{AGENT_ID}",
                              description="\"\": nobody; an agent may only claim an unowned case for itself")
    reason: str | None = Field(None, min_length=1, max_length=cs.REASON_MAX, pattern=REASON)
    follow_up: FollowUpRequest | None = Field(None, description="with status closed: the follow-up (回访) to "
                                              "schedule (default: cases.follow_up)")


class FollowUpRequest(BaseModel):
    """The follow-up (回访) a close schedules; what is left out comes from ``cases.follow_up``."""
    model_config = ConfigDict(extra="forbid")
    mode: FollowUpMode | None = Field(None, description="none | task (an agent calls back) | call (an automated "
                                                         "call plays `plan`)")
    after_s: int | None = Field(None, ge=60, le=90 * 86_400, description="how long after closing")
    plan: str | None = Field(None, pattern=cs.PLAN_ID.pattern, description="the dial plan (file name without "
                                                                           ".yaml) a follow-up call plays")


class CaseNoteAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=cs.NOTE_MAX, pattern=TEXT)


class CaseCallLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    call_id: str = Field(pattern=CALL_ID)


# --- access ---------------------------------------------------------------------------------------------

def _staff(who: User) -> bool:
    return who.role in ("supervisor", "admin")


def task_agent(case: dict[str, Any]) -> str:
    """The agent a case is offered to as a follow-up task right now, or ""."""
    return str(case.get("task_agent") or "")


async def _case(request: web.Request, who: User) -> dict[str, Any]:
    """The path's case, which the user may see: staff any, an agent its own or the one offered to it as
    a task (404 ``case.not_found``, 403 ``auth.forbidden``)."""
    case_id = request.match_info["case_id"]
    case = await request.app[STORE].get_case(case_id) if _CASE_ID.fullmatch(case_id) else None
    if case is None:
        raise NotFound("no such case", code="case.not_found")
    if not _staff(who) and who.id not in (case.get("owner"), task_agent(case)):
        raise Forbidden(f"agent {who.id} may see only its own cases", code="auth.forbidden")
    return case


async def _agent_known(store: QueueStore, agent_id: str) -> None:
    if agent_id and await store.get_agent(agent_id) is None:
        raise NotFound(f"no agent {agent_id}", code="agent.not_found")


async def _linkable_call(request: web.Request, who: User, call_id: str) -> dict[str, Any]:
    """A call the user may link to a case: staff any, an agent one it took part in."""
    call = await request.app[STORE].get_call(call_id)
    if call is None:
        raise NotFound("no such call", code="call.not_found")
    if not _staff(who) and who.id not in handled_by(call):
        raise Forbidden(f"agent {who.id} may link only calls it took", code="auth.forbidden")
    return call


# --- routes -----------------------------------------------------------------------------------------------

async def create_case(request: web.Request) -> web.Response:
    who = await user(request)
    req = await body(request, CaseCreate)
    store = request.app[STORE]
    if who.role == "agent":
        if req.owner not in (None, who.id):
            raise Forbidden(f"agent {who.id} may open cases only for itself", code="auth.forbidden")
        owner = who.id
    else:
        owner = req.owner or ""
        await _agent_known(store, owner)
    if req.call_id:
        call = await _linkable_call(request, who, req.call_id)
        case = await open_for_call(request, who, req.call_id, call, tier=req.tier, reason=req.reason, owner=owner,
                                   customer=req.customer, crm_id=req.crm_id, customer_name=req.customer_name)
    else:
        due, hotline = await due_ms(request, req.tier, "")
        case = await store.open_case(tier=req.tier, reason=req.reason, customer=req.customer or "",
                                     opened_by=who.id, due_at_ms=due, hotline=hotline, owner=owner,
                                     crm_id=req.crm_id, customer_name=req.customer_name)
        log.info("case.opened", case_id=case["id"], tier=req.tier, owner=owner, by=who.id)
    return web.json_response(case, status=201)


def _choice(request: web.Request, name: str, allowed: tuple[str, ...] | str) -> str | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    ok = raw in allowed if isinstance(allowed, tuple) else re.fullmatch(allowed, raw) is not None
    if not ok:
        what = ", ".join(allowed) if isinstance(allowed, tuple) else "an agent id or me"
        raise BadRequest(f"{name} must be {what}", code="request.invalid")
    return raw


async def list_cases(request: web.Request) -> web.Response:
    """Cases newest first (by opened_at), filtered, with an opaque cursor; an agent its own only."""
    who = await user(request)
    status = _choice(request, "status", STATUSES)
    tier = _choice(request, "tier", TIERS)
    due: Literal["soon", "overdue"] | None = {"soon": "soon", "overdue": "overdue", None: None}[
        _choice(request, "due", ("soon", "overdue"))]
    owner = _choice(request, "owner", f"me|{AGENT_ID[1:-1]}")
    if owner == "me":
        owner = who.id
    if who.role == "agent":
        if owner not in (None, who.id):
            raise Forbidden(f"agent {who.id} may list only its own cases", code="auth.forbidden")
        owner = who.id
    limit = limit_param(request, CASES_LIMIT_DEFAULT, CASES_LIMIT_MAX)
    filters = ["cases", status, owner, tier, due]
    raw = request.query.get("cursor")
    before = cursor.decode_cursor(filters, raw, _CASE_ID) if raw is not None else None
    soon_ms = request.app[SETTINGS].cases.due_soon_s * 1000
    cases, after = await request.app[STORE].list_cases(
        status=status, owner=owner, tier=tier, due=due, soon_ms=soon_ms, limit=limit, before=before)
    return web.json_response({"cases": cases,
                              "next_cursor": cursor.encode_cursor(filters, after) if after else None,
                              "due_soon_s": request.app[SETTINGS].cases.due_soon_s})


async def case_counts(request: web.Request) -> web.Response:
    """Open cases per tier, per status, overdue, due soon; and today's first contact per tier."""
    require_role(await user(request), "supervisor", "admin")
    store = request.app[STORE]
    counts = await store.case_counts(soon_ms=request.app[SETTINGS].cases.due_soon_s * 1000)
    now = time.time()
    first = await store.case_first_contact(since_ms=start_of_today(now) * 1000, until_ms=int(now * 1000) + 1)
    return web.json_response({**counts, "first_contact": first})


async def get_case(request: web.Request) -> web.Response:
    who = await user(request)
    case = await _case(request, who)
    notes = await request.app[STORE].case_notes(case["id"], NOTES_SHOWN)
    return web.json_response({**case, "notes": notes})


async def update_case(request: web.Request) -> web.Response:
    """Change status, tier, owner, reason. A tier change of a case not yet contacted moves its due
    time (from opened_at); a reopen counts its due time from now."""
    who = await user(request)
    case_id = request.match_info["case_id"]
    req = await body(request, CaseUpdate)
    store = request.app[STORE]
    if not _CASE_ID.fullmatch(case_id) or (case := await store.get_case(case_id)) is None:
        raise NotFound("no such case", code="case.not_found")
    owner = case.get("owner") or ""
    if not _staff(who):
        claims = not owner and req.owner == who.id
        if owner != who.id and not claims:
            raise Forbidden(f"agent {who.id} may change only its own cases (or claim an unowned one)",
                            code="auth.forbidden")
        if req.tier is not None or req.owner not in (None, who.id):
            raise Forbidden("an agent may change only status and reason (and claim an unowned case)",
                            code="auth.forbidden")
    elif req.owner:
        await _agent_known(store, req.owner)
    if req.status is not None and req.status != case["status"] and req.status not in MOVES.get(case["status"], ()):
        raise Conflict(f"a case {case['status']} cannot become {req.status}", code="case.bad_transition")
    tier = req.tier or case["tier"]
    changes: dict[str, Any] = {}
    if req.tier is not None and req.tier != case["tier"]:
        changes["tier"] = req.tier
        if case["status"] in WAITING and req.status in (None, case["status"]):
            changes["due_at_ms"], _ = await due_ms(request, req.tier, case.get("hotline") or "", case["opened_at"])
    if req.owner is not None and req.owner != owner:
        changes["owner"] = req.owner
    if req.reason is not None and req.reason != case.get("reason"):
        changes["reason"] = req.reason
    if changes:
        case = await store.update_case(case_id, by=who.id, **changes)
    if req.follow_up is not None and req.status != "closed":
        raise BadRequest("follow_up goes with status closed", code="request.invalid")
    if req.status is not None and req.status != case["status"]:
        due = None
        if req.status == "reopened":
            due, _ = await due_ms(request, tier, case.get("hotline") or "")
        follow = _follow_up(request, req.follow_up, case) if req.status == "closed" else None
        case = await store.set_case_status(case_id, req.status, by=who.id, due_at_ms=due, follow_up=follow)
    log.info("case.changed", case_id=case_id, by=who.id, fields=sorted(changes), status=req.status)
    return web.json_response(case)


def _follow_up(request: web.Request, asked: FollowUpRequest | None, case: dict[str, Any]) -> FollowUp | None:
    """The follow-up a close schedules: the request's fields over ``cases.follow_up``; None for mode
    none. A call needs a plan that exists (400 ``case.follow_up_plan``); the case a number that may be
    dialled (409 ``case.no_number``, 403 ``number.not_allowed``: ``calls.outbound_allow``)."""
    conf = request.app[SETTINGS].cases.follow_up
    asked = asked or FollowUpRequest()
    mode = asked.mode or conf.mode
    if mode == "none":
        return None
    if not case.get("customer"):
        raise Conflict(f"{case['id']} has no customer number to call back", code="case.no_number")
    check_number(str(case["customer"]), request.app[SETTINGS])
    plan = asked.plan or conf.plan or ""
    if mode == "call":
        folder = request.app[SETTINGS].dialplans_dir
        if not plan or not any((folder / f"{plan}{ext}").is_file() for ext in (".yaml", ".yml")):
            raise BadRequest(f"a follow-up call needs a dial plan of {folder} (none named {plan!r})",
                             code="case.follow_up_plan")
    after = asked.after_s if asked.after_s is not None else conf.after_s
    return FollowUp(mode=mode, at_ms=int(time.time() * 1000) + after * 1000, plan=plan if mode == "call" else "",
                    attempts=conf.attempts, retry_after_ms=conf.retry_after_s * 1000, ring_s=conf.ring_s)


async def add_note(request: web.Request) -> web.Response:
    who = await user(request)
    req = await body(request, CaseNoteAdd)
    case = await _case(request, who)
    note = await request.app[STORE].add_case_note(case["id"], by=who.id, text=req.text)
    return web.json_response(note, status=201)


async def link_call(request: web.Request) -> web.Response:
    who = await user(request)
    req = await body(request, CaseCallLink)
    case = await _case(request, who)
    await _linkable_call(request, who, req.call_id)
    return web.json_response(await request.app[STORE].link_case_call(case["id"], req.call_id, by=who.id))


async def accept_task(request: web.Request) -> web.Response:
    """The agent holding the case's task dials its customer: its phone rings first, then the customer's
    (click-to-dial with the case's hotline); the call record carries ``case_id``."""
    who = await user(request)
    if who.role != "agent":
        raise Forbidden("only the agent a task is offered to accepts it", code="auth.forbidden")
    case = await _case(request, who)
    if task_agent(case) != who.id:
        raise Conflict(f"case {case['id']} is not offered to {who.id} (any more)", code="case.task_gone")
    number = str(case.get("customer") or "")
    if not number:
        raise Conflict(f"case {case['id']} has no customer number to dial", code="case.no_number")
    settings, store = request.app[SETTINGS], request.app[STORE]
    check_number(number, settings)
    shown, first_hotline = await caller_id(settings, store)
    call_id, state, worker = await store.case_task_accept(
        case["id"], who.id, call_id=uuid.uuid4().hex[:16], caller_id=shown,
        hotline=str(case.get("hotline") or "") or first_hotline, by=who.id)
    log.info("case.task_accepted", case_id=case["id"], agent_id=who.id, call_id=call_id, worker=worker)
    return web.json_response({"call_id": call_id, "status": state, "case_id": case["id"]}, status=202)


async def decline_task(request: web.Request) -> web.Response:
    """The agent holding the case's task skips it (it is offered to someone else, not to this agent for a
    while); a supervisor or admin takes it back from whoever holds it."""
    who = await user(request)
    case = await _case(request, who)
    holder = task_agent(case)
    if not holder or (who.role == "agent" and holder != who.id):
        raise Conflict(f"case {case['id']} has no task offered to {who.id if who.role == 'agent' else 'anyone'}",
                       code="case.task_gone")
    await request.app[STORE].case_task_decline(case["id"], holder, reason="declined")
    log.info("case.task_declined", case_id=case["id"], agent_id=holder, by=who.id)
    return web.json_response({"case_id": case["id"], "agent_id": holder, "reason": "declined"})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/cases", create_case),
        web.get("/api/v1/cases", list_cases),
        web.get("/api/v1/cases/counts", case_counts),
        web.get("/api/v1/cases/{case_id}", get_case),
        web.patch("/api/v1/cases/{case_id}", update_case),
        web.post("/api/v1/cases/{case_id}/notes", add_note),
        web.post("/api/v1/cases/{case_id}/calls", link_call),
        web.post("/api/v1/cases/{case_id}/task/accept", accept_task),
        web.post("/api/v1/cases/{case_id}/task/decline", decline_task),
    ]
