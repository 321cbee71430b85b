"""Click-to-dial: ``POST /api/v1/calls`` places an outbound call for an agent (docs/call-control.md).

Everything that can be refused is refused here, before anything rings: the number must match
``calls.outbound_allow`` (403 ``number.not_allowed``); an agent dials only for itself, supervisors,
admins and the CRM's integration user (a supervisor or admin token: the CRM has no other way in) for
any agent; the agent must be available (409 ``agent.not_available``, atomically with reserving it in
the ``originate`` script); some live worker must have a free call slot (503 ``worker.unavailable``).
The worker side is :mod:`ivr.calls.originate`.

``Idempotency-Key`` (1-128 visible ASCII characters): the same user sending the same key again within
``IDEMPOTENCY_TTL_S`` gets the first call back (202, ``Idempotent-Replayed: true``) and nothing rings
twice; the same key with a different request is 409 ``idempotency.mismatch``. The key is stored only
as a SHA-256 with the user's id. The customer's number is never logged.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ivr.core.config import ROUTING_NAME, Settings
from ivr.core.errors import BadRequest, Forbidden, NotFound
from ivr.core.logging import get_logger
from ivr.cti.agents import AGENT_ID
from ivr.cti.context import SETTINGS, STORE, body, user
from ivr.dialplan.destinations import transfer_allowed
from ivr.queues.store import QueueStore

log = get_logger(__name__)
IDEMPOTENCY_TTL_S = 24 * 3600
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
NUMBER = r"^\+?[0-9*#]{1,32}$"


class Originate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: str = Field(pattern=NUMBER, description="the customer's number (digits, * and #, optional leading +); "
                                                    "must match calls.outbound_allow")
    agent_id: str | None = Field(None, pattern=AGENT_ID,
                                 description="the agent whose phone rings first; an agent's token: itself "
                                             "(the default); required for supervisors, admins and the CRM")
    queue: str | None = Field(None, pattern=ROUTING_NAME, description="the queue whose statistics count the call")


def check_number(number: str, settings: Settings) -> None:
    """403 ``number.not_allowed`` unless ``number`` matches ``calls.outbound_allow`` (click-to-dial and
    the follow-up task of a case, :mod:`ivr.cti.cases`)."""
    if not transfer_allowed(number, settings.calls.outbound_allow):
        raise Forbidden("the number is not allowed for outbound calls (calls.outbound_allow)",
                        code="number.not_allowed")


async def caller_id(settings: Settings, store: QueueStore) -> tuple[str, str]:
    """The caller ID customers see and the hotline's name: ``calls.caller_id``, else the first number of
    the first hotline (dial plan, by id) a live worker runs (click-to-dial and case follow-up tasks)."""
    statuses = await store.plan_statuses()
    for plan in sorted(statuses):
        for entry in statuses[plan].workers.values():
            numbers = [str(n) for n in entry.get("numbers") or []]
            if numbers:
                name = str(entry.get("name") or plan)
                return settings.calls.caller_id or numbers[0], name
    return settings.calls.caller_id, ""


async def _queue_known(queue: str, agent_id: str, settings: Settings, store: QueueStore) -> bool:
    """A configured queue, one calls have entered, or one the agent takes calls of (a skill of its:
    queues not configured are served by the skill of their name)."""
    if queue in settings.routing.queues or queue in await store.queue_names():
        return True
    agent = await store.get_agent(agent_id)
    return agent is not None and queue in agent.get("skills", {})


def _idempotency(request: web.Request, user_id: str, req: Originate, agent_id: str) -> tuple[str, str]:
    """(digest of user + key, digest of the request) or ('', '') without the header."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return "", ""
    if not IDEMPOTENCY_KEY.match(key):
        raise BadRequest("Idempotency-Key must be 1-128 visible ASCII characters", code="request.invalid")
    digest = hashlib.sha256(f"{user_id}\n{key}".encode()).hexdigest()
    what = json.dumps([agent_id, req.number, req.queue or ""])
    return digest, hashlib.sha256(what.encode()).hexdigest()


async def originate(request: web.Request) -> web.Response:
    """Ring the agent's phone, then the customer's, and bridge them (202 once the call is placed)."""
    who = await user(request)
    req = await body(request, Originate)
    settings, store = request.app[SETTINGS], request.app[STORE]
    agent_id = req.agent_id or (who.id if who.role == "agent" else None)
    if agent_id is None:
        raise BadRequest("agent_id is required: the agent whose phone rings first", code="request.invalid")
    if who.role == "agent" and agent_id != who.id:
        raise Forbidden(f"agent {who.id} may dial only for itself", code="auth.forbidden")
    check_number(req.number, settings)
    if req.queue and not await _queue_known(req.queue, agent_id, settings, store):
        raise NotFound(f"no queue {req.queue}", code="queue.not_found")
    idem, request_digest = _idempotency(request, who.id, req, agent_id)
    shown, hotline = await caller_id(settings, store)
    new, call_id, state, worker = await store.originate(
        uuid.uuid4().hex[:16], agent_id=agent_id, number=req.number, caller_id=shown, hotline=hotline,
        queue=req.queue or "", by=who.id, idempotency=idem, request=request_digest,
        idempotency_ttl_s=IDEMPOTENCY_TTL_S)
    log.info("call.originate", call_id=call_id, agent_id=agent_id, by=who.id, role=who.role, worker=worker,
             replayed=not new)
    headers = {} if new else {"Idempotent-Replayed": "true"}
    return web.json_response({"call_id": call_id, "status": state, "agent_id": agent_id, "direction": "outbound"},
                             status=202, headers=headers)


def routes() -> list[web.RouteDef]:
    return [web.post("/api/v1/calls", originate)]
