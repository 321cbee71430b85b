"""CTI routes that act on a live call: hold, mute, blind transfer, consult, conference, keys.

Every route sends one command (:mod:`ivr.core.commands`) to the worker that holds the call, through
any API instance (:meth:`QueueStore.send_command`), and answers 202 once the worker carried it out.
The worker's refusals keep their stable codes; their HTTP statuses are one table for every command
route (:data:`ivr.cti.command_reply.REFUSAL_STATUS`). Who may: the call's agent (or the agent it is
consulting, for the conference routes), supervisors and admins on any call.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ivr.core import commands
from ivr.core.config import ROUTING_NAME
from ivr.core.errors import Conflict, Forbidden, NotFound
from ivr.core.logging import get_logger
from ivr.cti.agents import AGENT_ID
from ivr.cti.auth import User
from ivr.cti.command_reply import send_command
from ivr.cti.context import SETTINGS, STORE, body, user
from ivr.dialplan.destinations import transfer_allowed

log = get_logger(__name__)

NUMBER = r"^\+?[0-9*#]{1,32}$"


class QueueTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["queue"]
    queue: str = Field(pattern=ROUTING_NAME)

    @property
    def value(self) -> str:
        return self.queue


class AgentTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["agent"]
    agent_id: str = Field(pattern=AGENT_ID)

    @property
    def value(self) -> str:
        return self.agent_id


class NumberTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["number"]
    number: str = Field(pattern=NUMBER, description="must match calls.outbound_allow")

    @property
    def value(self) -> str:
        return self.number


#: where a transfer or consult goes: a queue, an agent or a number (by ``type``)
Target = Annotated[QueueTarget | AgentTarget | NumberTarget, Field(discriminator="type")]


class TargetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: Target


class DtmfBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    digits: str = Field(pattern=r"^[0-9*#A-D]{1,32}$", description="1-32 of 0-9 * # A-D, sent as RFC 2833 events")


class LeaveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: str | None = Field(None, pattern=AGENT_ID,
                                 description="who leaves (supervisors and admins); default: the asking agent")


async def _live_call(request: web.Request, *, consulted_may: bool = False) -> tuple[User, str, dict[str, Any]]:
    """The user, call id and record of the path's live call the user may act on (404, 403, 409)."""
    who = await user(request)
    call_id = request.match_info["call_id"]
    call = await request.app[STORE].get_call(call_id)
    if call is None:
        raise NotFound("no such call", code="call.not_found")
    mine = who.id == call.get("agent_id")
    if consulted_may and not mine:
        consult = call.get("consult")
        if isinstance(consult, str):
            with contextlib.suppress(ValueError):
                consult = json.loads(consult)
        mine = isinstance(consult, dict) and who.id == consult.get("agent_id")
    if not mine and who.role not in ("supervisor", "admin"):
        raise Forbidden(f"{who.role} {who.id} may not act on this call", code="auth.forbidden")
    if call.get("state") == "ended":
        raise Conflict("the call has already ended", code="call.ended")
    return who, call_id, call


Make = Callable[[User, str, Any], commands.Command]


async def _send(request: web.Request, name: str, make: Make, *, model: type[BaseModel] | None = None,
                consulted_may: bool = False) -> web.Response:
    """Check who asks and the call (401, 403, 404, 409), then the body (400), then send the command."""
    who, call_id, _ = await _live_call(request, consulted_may=consulted_may)
    req = None
    if model is not None:
        req = await body(request, model) if request.can_read_body or model is not LeaveBody else LeaveBody()
    if isinstance(req, TargetBody):
        await _check_target(request, req.target)
    return await send_command(request, make(who, call_id, req), name)


def _simple(kind: type[commands.Command], name: str, *, consulted_may: bool = False) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return await _send(request, name, lambda who, cid, _: kind(call_id=cid, by=who.id, role=who.role),
                           consulted_may=consulted_may)
    handler.__name__ = f"{name.replace('/', '_')}_call"
    return handler


async def _check_target(request: web.Request, target: QueueTarget | AgentTarget | NumberTarget) -> None:
    settings = request.app[SETTINGS]
    if target.type == "number" and not transfer_allowed(target.value, settings.calls.outbound_allow):
        raise Forbidden("the number is not in calls.outbound_allow", code="number.not_allowed")
    store = request.app[STORE]
    if target.type == "queue" and not await _queue_known(request, target.value):
        raise NotFound(f"no queue {target.value}", code="queue.not_found")
    if target.type == "agent" and await store.get_agent(target.value) is None:
        raise NotFound(f"no agent {target.value}", code="agent.not_found")


async def transfer_call(request: web.Request) -> web.Response:
    """Blind transfer to a queue, an agent or an allowlisted number."""
    return await _send(request, "transfer", lambda who, cid, req: commands.Transfer(
        call_id=cid, by=who.id, role=who.role, target_type=req.target.type, target=req.target.value),
        model=TargetBody)


async def consult_call(request: web.Request) -> web.Response:
    """Put the caller on hold and ring the target for the agent."""
    return await _send(request, "consult", lambda who, cid, req: commands.Consult(
        call_id=cid, by=who.id, role=who.role, target_type=req.target.type, target=req.target.value),
        model=TargetBody)


async def dtmf_call(request: web.Request) -> web.Response:
    return await _send(request, "dtmf", lambda who, cid, req: commands.SendDtmf(
        call_id=cid, by=who.id, role=who.role, digits=req.digits), model=DtmfBody)


async def leave_conference(request: web.Request) -> web.Response:
    def make(who: User, cid: str, req: LeaveBody) -> commands.Command:
        if req.agent_id and req.agent_id != who.id and who.role not in ("supervisor", "admin"):
            raise Forbidden("an agent may only take itself out of a conference", code="auth.forbidden")
        return commands.ConferenceLeave(call_id=cid, by=who.id, role=who.role, agent_id=req.agent_id or who.id)

    return await _send(request, "conference/leave", make, model=LeaveBody, consulted_may=True)


async def _agents(request: web.Request) -> list[dict[str, Any]]:
    store = request.app[STORE]
    found = [await store.get_agent(aid) for aid in sorted(await store.agent_ids())]
    return [a for a in found if a]


async def _queues(request: web.Request, agents: list[dict[str, Any]] | None = None) -> set[str]:
    """Every queue a call can go to: configured (routing.queues), used (a call waited there), or named
    by an agent's skill (a queue without settings routes to the skill of its name)."""
    store, settings = request.app[STORE], request.app[SETTINGS]
    names = set(settings.routing.queues) | set(await store.queue_names())
    for agent in agents if agents is not None else await _agents(request):
        if isinstance(agent.get("skills"), dict):
            names |= set(agent["skills"])
    return names


async def _queue_known(request: web.Request, queue: str) -> bool:
    """Whether a call can go to ``queue``; the agents are read only when the cheap sources say no."""
    store, settings = request.app[STORE], request.app[SETTINGS]
    if queue in settings.routing.queues or queue in await store.queue_names():
        return True
    return queue in await _queues(request)


async def call_targets(request: web.Request) -> web.Response:
    """Who a call can go to: agents (with their state), queues (callers waiting), and the directory
    of external numbers (``calls.directory``)."""
    await user(request)
    store, settings = request.app[STORE], request.app[SETTINGS]
    found = await _agents(request)
    agents = [{"id": a.get("agent_id", ""), "name": a.get("name", ""), "state": a.get("state", "")} for a in found]
    queues = []
    for queue in sorted(await _queues(request, found)):
        queues.append({"name": queue, "waiting": len(await store.waiting(queue))})
    numbers = [{"label": d.label, "number": d.number} for d in settings.calls.directory
               if transfer_allowed(d.number, settings.calls.outbound_allow)]
    return web.json_response({"agents": agents, "queues": queues, "numbers": numbers})


ROUTES: tuple[tuple[str, Any], ...] = (
    ("hold", _simple(commands.Hold, "hold")),
    ("resume", _simple(commands.Resume, "resume")),
    ("mute", _simple(commands.Mute, "mute")),
    ("unmute", _simple(commands.Unmute, "unmute")),
    ("transfer", transfer_call),
    ("consult", consult_call),
    ("consult/complete", _simple(commands.ConsultComplete, "consult/complete")),
    ("consult/cancel", _simple(commands.ConsultCancel, "consult/cancel")),
    ("consult/swap", _simple(commands.ConsultSwap, "consult/swap")),
    ("conference", _simple(commands.Conference, "conference")),
    ("conference/leave", leave_conference),
    ("dtmf", dtmf_call),
    ("recording/start", _simple(commands.RecordStart, "recording/start")),
    ("recording/pause", _simple(commands.RecordPause, "recording/pause")),
    ("recording/resume", _simple(commands.RecordResume, "recording/resume")),
)


def routes() -> list[web.RouteDef]:
    return [web.post(f"/api/v1/calls/{{call_id}}/{path}", handler) for path, handler in ROUTES] + [
        web.get("/api/v1/call-targets", call_targets)]
