"""The dial plan's ``RecordPort`` for one call: survey score, voicemail, variables, callback requests,
complaint cases (and, at the call's start, the caller's unfinished ones: a repeat caller).

Every value is checked here before anything is written (a bad field writes nothing and raises
``BadRequest`` with a stable code); the writes themselves are Lua scripts of the queue store. Values
may be personal (numbers, what the caller typed): logs carry field names only.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ivr.core.case_states import ACTOR, CUSTOMER, CUSTOMER_CASES_KEEP, PENDING
from ivr.core.config import Settings
from ivr.core.errors import BadRequest
from ivr.core.logging import get_logger
from ivr.core.media_store import NAME, voicemail_file
from ivr.dialplan.hours import case_due
from ivr.dialplan.journey import Journey
from ivr.dialplan.loader import LoadedPlan
from ivr.dialplan.ports import CaseRef
from ivr.dialplan.registry import plan_id
from ivr.queues.routing import resolve_route
from ivr.queues.store import QueueStore

log = get_logger(__name__)

FIELDS = frozenset({"csat", "voicemail", "variables", "disposition"})
VOICEMAIL_KEEP = 1000          # entries a mailbox's list keeps (newest)
VARIABLES_MAX = 64             # variables per save
VARIABLE_VALUE_MAX = 1024      # characters per value
VARIABLES_MAX_BYTES = 8 * 1024  # the call's merged variables, as JSON
NO_REASON = "complaint from the IVR"  # a case node that gives no reason (a case needs one)
CASE_LOOKUP_S = 1.0  # the most a call's start waits for the caller's open cases (then: none)
_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
_NUMBER_SEPARATORS = str.maketrans("", "", " -.()")


class VoicemailMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    mailbox: str = Field(pattern=NAME.pattern)
    path: str = Field(min_length=1, max_length=4096)
    seconds: float = Field(ge=0, le=3600)
    ended_by: Literal["terminator", "max_length", "hangup", "silence"]


def case_variables(cases: Sequence[Mapping[str, Any]], *, now_ms: int) -> dict[str, str]:
    """The plan variables of a caller's unfinished cases (newest first, as
    :meth:`QueueStore.open_cases_for` returns them): ``case.id``, ``case.tier``, ``case.status`` of
    the newest, ``case.overdue`` ("true" when it waits for contact past its due time, else "false")
    and ``case.count``; ``{}`` without cases."""
    if not cases:
        return {}
    newest = cases[0]
    due = newest.get("due_at")
    waiting = newest.get("status") in PENDING
    overdue = waiting and (bool(newest.get("overdue")) or (isinstance(due, int) and due < now_ms))
    return {"case.id": str(newest["id"]), "case.tier": str(newest["tier"]), "case.status": str(newest["status"]),
            "case.overdue": "true" if overdue else "false", "case.count": str(len(cases))}


def check_csat(value: Any) -> int:
    """A score 1..5: an int, or the key the caller pressed ("1".."5")."""
    if isinstance(value, str) and len(value) == 1 and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise BadRequest("csat must be an integer 1..5", code="record.csat_invalid")
    return value


def check_voicemail(value: Any, settings: Settings) -> dict[str, Any]:
    """``{mailbox, path, seconds, ended_by}`` whose path is an existing WAV under ``<var_dir>/voicemail``."""
    if not isinstance(value, Mapping):
        raise BadRequest("voicemail must be an object {mailbox, path, seconds, ended_by}",
                         code="record.voicemail_invalid")
    data = dict(value)
    if isinstance(data.get("seconds"), int) and not isinstance(data.get("seconds"), bool):
        data["seconds"] = float(data["seconds"])
    try:
        meta = VoicemailMeta.model_validate(data)
    except ValidationError as exc:
        names = ", ".join(".".join(map(str, e["loc"])) or "voicemail" for e in exc.errors())
        raise BadRequest(f"voicemail fields invalid: {names}", code="record.voicemail_invalid") from exc
    file = voicemail_file(meta.path, settings)
    if file is None:
        raise BadRequest("the voicemail path must be a .wav file under the voicemail directory",
                         code="record.voicemail_path")
    if not file.is_file():
        raise BadRequest("the voicemail file does not exist", code="record.voicemail_path")
    return {**meta.model_dump(), "path": str(file)}


def check_variables(value: Any) -> dict[str, str]:
    """Names like ``order_id`` (letters, digits, ``_.-``), string values, bounded in number and size."""
    if not isinstance(value, Mapping):
        raise BadRequest("variables must be an object of strings", code="record.variables_invalid")
    if len(value) > VARIABLES_MAX:
        raise BadRequest(f"at most {VARIABLES_MAX} variables at a time", code="record.variables_invalid")
    out: dict[str, str] = {}
    for name, val in value.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise BadRequest("variable names are 1-64 of A-Z a-z 0-9 _ . -", code="record.variables_invalid")
        if not isinstance(val, str) or len(val) > VARIABLE_VALUE_MAX:
            raise BadRequest(f"variable {name} must be a string of at most {VARIABLE_VALUE_MAX} characters",
                             code="record.variables_invalid")
        out[name] = val
    if len(json.dumps(out)) > VARIABLES_MAX_BYTES:
        raise BadRequest(f"variables exceed {VARIABLES_MAX_BYTES} bytes", code="record.too_large")
    return out


def check_disposition(value: Any) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise BadRequest("disposition is 1-64 of A-Z a-z 0-9 _ . -", code="record.disposition_invalid")
    return value


def check_number(number: Any) -> str:
    """A number to call back: optional ``+`` and 3..20 digits; spaces, dots, dashes and parentheses are
    dropped. Anything else (letters, ``@ ; < > :``, quotes, line breaks...) is refused, so the number
    can never carry SIP URI parameters or headers."""
    if not isinstance(number, str) or len(number) > 32:
        raise BadRequest("the callback number must be digits (optionally +), 3-20 long",
                         code="callback.number_invalid")
    clean = number.strip().translate(_NUMBER_SEPARATORS)
    if not _NUMBER.fullmatch(clean):
        raise BadRequest("the callback number must be digits (optionally +), 3-20 long",
                         code="callback.number_invalid")
    return clean


def check_queue(queue: Any) -> str:
    if not isinstance(queue, str) or not NAME.match(queue):
        raise BadRequest("queue names are 1-64 of A-Z a-z 0-9 _ . -", code="callback.queue_invalid")
    return queue


class CallRecord:
    """``RecordPort`` of one call, backed by the queue store."""

    def __init__(self, store: QueueStore, call_id: str, *, settings: Settings, plan: LoadedPlan | None = None) -> None:
        self.store = store
        self.call_id = call_id
        self.settings = settings
        self.plan = plan  # the call's plan: its business hours count for a case's due time
        self.log = log.bind(call_id=call_id)

    def _checked(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(str(f) for f in fields if f not in FIELDS)
        if unknown:
            raise BadRequest(f"unknown call record fields: {', '.join(unknown)} (allowed: {', '.join(sorted(FIELDS))})",
                             code="record.field_unknown")
        out: dict[str, Any] = {}
        if "csat" in fields:
            out["csat"] = check_csat(fields["csat"])
        if "voicemail" in fields:
            out["voicemail"] = check_voicemail(fields["voicemail"], self.settings)
        if "variables" in fields:
            out["variables"] = check_variables(fields["variables"])
        if "disposition" in fields:
            out["disposition"] = check_disposition(fields["disposition"])
        return out

    async def save(self, fields: Mapping[str, Any]) -> None:
        """Store ``csat`` / ``voicemail`` / ``variables`` / ``disposition`` on the call record. Every
        field is checked before any is written."""
        checked = self._checked(fields)
        try:
            if "variables" in checked:
                await self.store.record_variables(self.call_id, checked["variables"],
                                                  max_bytes=VARIABLES_MAX_BYTES)
            if "disposition" in checked:
                await self.store.record_field(self.call_id, "disposition", checked["disposition"])
            if "voicemail" in checked:
                await self.store.record_voicemail(self.call_id, checked["voicemail"], keep=VOICEMAIL_KEEP)
            if "csat" in checked:
                await self.store.record_csat(self.call_id, checked["csat"])
        except Exception as exc:
            self.log.warning("record.save_failed", fields=sorted(checked), error=type(exc).__name__)
            raise
        self.log.info("record.saved", fields=sorted(checked))

    async def request_callback(self, *, queue: str, number: str, journey: Journey) -> str:
        """Book a callback that keeps the caller's place in ``queue``; returns its id."""
        queue = check_queue(queue)
        clean = check_number(number)
        route = resolve_route(self.settings.routing.queues, queue)
        cb_id, place, created = await self.store.request_callback(
            self.call_id, callback_id=uuid.uuid4().hex, queue=queue, number=clean, journey=journey.to_dict(),
            route=route, ttl_s=self.settings.routing.call_ttl_s)
        self.log.info("callback.booked", callback_id=cb_id, queue=queue, place=place, created=created)
        return cb_id

    async def open_case(self, *, tier: str, reason: str, customer: str) -> CaseRef:
        """Open a complaint case linked to this call, due by tier in the plan's business hours (an
        anonymous caller's case has no number: the agent gets it from the call). A caller who has an
        unfinished case (open, contacted, reopened) gets no second one: the call is linked to the
        newest, which comes back ``existing``."""
        opened = datetime.now(UTC)
        due = case_due(opened, tier, self.settings.cases, self.plan)
        name = self.plan.plan.name if self.plan is not None else ""
        case, existing = await self.store.open_or_join_case(
            tier=tier, reason=reason or NO_REASON, customer=customer if CUSTOMER.fullmatch(customer) else "",
            opened_by=self._by(), due_at_ms=int(due.timestamp() * 1000), hotline=name,
            call_id=self.call_id, now_ms=int(opened.timestamp() * 1000))
        case_id = str(case["id"])
        if existing:
            self.log.info("case.joined", case_id=case_id, tier=case["tier"], status=case["status"])
        else:
            self.log.info("case.opened", case_id=case_id, tier=tier,
                          due_in_s=round((due - opened).total_seconds()))
        return CaseRef(case_id, existing=existing)

    async def case_answers(self, case_id: str, answers: Mapping[str, str], *, reopen: bool) -> bool:
        """Write a follow-up's answers to case ``case_id`` and this call; ``reopen``: a resolved or
        closed case is reopened, due again by its tier in the plan's business hours."""
        due_ms: int | None = None
        if reopen:
            case = await self.store.get_case(case_id)
            if case is None:
                raise BadRequest(f"no case {case_id}", code="case.not_found")
            now = datetime.now(UTC)
            due_ms = int(case_due(now, str(case["tier"]), self.settings.cases, self.plan).timestamp() * 1000)
        case, reopened = await self.store.case_answers(case_id, call_id=self.call_id, answers=answers, by=self._by(),
                                                       reopen_due_at_ms=due_ms)
        self.log.info("case.answers", case_id=case_id, names=sorted(answers), reopened=reopened)
        return reopened

    def _by(self) -> str:
        """Who acts for the IVR on cases: ``ivr:<plan id>`` (an id: a plan's name is any text)."""
        by = f"ivr:{plan_id(self.plan.path)}" if self.plan is not None else "ivr"
        return by if ACTOR.fullmatch(by) else "ivr"

    async def repeat_caller(self, caller: str, *, timeout_s: float = CASE_LOOKUP_S,
                            cases: list[dict[str, Any]] | None = None) -> dict[str, str]:
        """The caller's unfinished complaint cases as plan variables (:func:`case_variables`; none:
        ``{}``), the call linked to the newest (``case.call_linked``; the agent's pop and the case
        show it). Bounded by ``timeout_s``; a failure or a timeout is logged and means none: the call
        goes on."""
        if not CUSTOMER.fullmatch(caller):  # anonymous, a SIP user name: no number, no cases
            return {}
        try:
            async with asyncio.timeout(timeout_s):
                if cases is None:  # not looked up with the call's start
                    cases = await self.store.open_cases_for(caller, limit=CUSTOMER_CASES_KEEP)
                if cases:
                    await self.store.link_case_call(str(cases[0]["id"]), self.call_id, by=self._by())
            found = case_variables(cases, now_ms=int(time.time() * 1000))
        except Exception as exc:  # Redis down or slow, a refused value: the call goes on without
            self.log.warning("case.lookup_failed", error=type(exc).__name__)
            return {}
        if found:
            self.log.info("case.repeat_caller", case_id=found["case.id"], count=found["case.count"],
                          overdue=found["case.overdue"])
        return found
