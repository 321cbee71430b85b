"""CTI routes of live supervision: a supervisor listens to, whispers to or barges into a call.

``POST /api/v1/calls/{id}/monitor`` {mode, target_type, target} has the worker that holds the call
dial the supervisor's phone (an allowlisted number, or the phone of an agent or user id) as an extra
leg; ``PATCH`` {mode} switches listen / whisper / barge; ``DELETE`` ends the supervisor's leg. Each is
one command (:mod:`ivr.core.commands`: MonitorStart, MonitorChange, MonitorStop) carried out by the
worker (:class:`ivr.calls.agent_call.AgentCall`), which also writes the audit trail of every start,
change and stop. Supervisors and admins only: anyone else gets 403 and an audit entry
``monitor.denied``. No leg free on that worker: 503 ``call.no_leg`` (Retry-After) with the call unchanged.
"""

from __future__ import annotations

import re
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ivr.core import commands
from ivr.core.errors import Conflict, Forbidden, NotFound
from ivr.core.logging import get_logger
from ivr.cti.agents import AGENT_ID
from ivr.cti.auth import User
from ivr.cti.call_control import NUMBER
from ivr.cti.command_reply import send_command
from ivr.cti.context import SETTINGS, STORE, body, user
from ivr.dialplan.destinations import transfer_allowed

log = get_logger(__name__)

MonitorModeName = Literal["listen", "whisper", "barge"]
SUPERVISORS = ("supervisor", "admin")


#: a number or an agent id (which one ``target_type`` says; the handler checks the one it names)
TARGET = f"^(?:{NUMBER.strip('^$')}|{AGENT_ID.strip('^$')})$"


class MonitorStartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: MonitorModeName = Field(description="listen: the supervisor hears caller and agent; whisper: the "
                                  "agent hears the supervisor too, the caller does not; barge: all three talk")
    target_type: Literal["number", "agent"] = Field(description="where the supervisor's phone is")
    target: str = Field(min_length=1, max_length=64, pattern=TARGET,
                        description="number: a number `calls.outbound_allow` allows (else 403 "
                        "`number.not_allowed`); agent: an agent's (or a configured user's) id whose phone is "
                        "dialled (else 404 `agent.not_found`)")


class MonitorChangeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: MonitorModeName


async def _supervisor(request: web.Request) -> tuple[User, str]:
    """The asking supervisor and the path's call id. Anyone else: 403, and the attempt is audited."""
    who = await user(request)
    call_id = request.match_info["call_id"]
    if who.role not in SUPERVISORS:
        try:
            await request.app[STORE].audit("monitor.denied", by=who.id, role=who.role, target=call_id,
                                           call_id=call_id, detail={"method": request.method})
        except Exception as exc:  # the refusal stands even when the trail cannot be written
            log.warning("audit.failed", action="monitor.denied", error=type(exc).__name__)
        log.info("call.monitor_denied", call_id=call_id, by=who.id, role=who.role)
        raise Forbidden(f"{who.role} {who.id} may not supervise calls", code="auth.forbidden")
    return who, call_id


async def _live(request: web.Request, call_id: str) -> None:
    call = await request.app[STORE].get_call(call_id)
    if call is None:
        raise NotFound("no such call", code="call.not_found")
    if call.get("state") == "ended":
        raise Conflict("the call has already ended", code="call.ended")


async def _send(request: web.Request, command: commands.Command, name: str) -> web.Response:
    """Send; a worker with no leg free answers 503 ``call.no_leg`` with Retry-After, as for a consult
    (the call is unchanged; a leg frees when one of the worker's calls ends)."""
    return await send_command(request, command, name)


async def start_monitor(request: web.Request) -> web.Response:
    """Dial the supervisor's phone from the worker holding the call and supervise in ``mode``."""
    who, call_id = await _supervisor(request)
    await _live(request, call_id)
    req = await body(request, MonitorStartBody)
    settings, store = request.app[SETTINGS], request.app[STORE]
    if req.target_type == "number" and not (re.fullmatch(NUMBER, req.target)
                                            and transfer_allowed(req.target, settings.calls.outbound_allow)):
        raise Forbidden("the number is not in calls.outbound_allow", code="number.not_allowed")
    if req.target_type == "agent":
        if not re.fullmatch(AGENT_ID, req.target):
            raise NotFound(f"no agent {req.target!r} with a phone"[:120], code="agent.not_found")
        agent = await store.get_agent(req.target)
        user_phone = any(u.id == req.target and u.sip_uri for u in settings.users)
        if agent is None and not user_phone:
            raise NotFound(f"no agent {req.target} with a phone", code="agent.not_found")
    return await _send(request, commands.MonitorStart(call_id=call_id, by=who.id, role=who.role, mode=req.mode,
                                                      target_type=req.target_type, target=req.target), "monitor")


async def change_monitor(request: web.Request) -> web.Response:
    """Switch the supervisor on the call between listen, whisper and barge."""
    who, call_id = await _supervisor(request)
    await _live(request, call_id)
    req = await body(request, MonitorChangeBody)
    return await _send(request, commands.MonitorChange(call_id=call_id, by=who.id, role=who.role, mode=req.mode),
                       "monitor/change")


async def stop_monitor(request: web.Request) -> web.Response:
    """End the supervisor's leg; caller and agent go on."""
    who, call_id = await _supervisor(request)
    await _live(request, call_id)
    return await _send(request, commands.MonitorStop(call_id=call_id, by=who.id, role=who.role), "monitor/stop")


def routes() -> list[web.RouteDef]:
    path = "/api/v1/calls/{call_id}/monitor"
    return [web.post(path, start_monitor), web.patch(path, change_monitor), web.delete(path, stop_monitor)]
