"""One way to send a command to a live call from a route and answer it: 202 when the worker carried
it out, the worker's refusal as its stable code and HTTP status (one table), 409 ``call.gone`` when
the call left meanwhile, 504 ``command.timeout`` (raised by the state layer) when no reply came."""

from __future__ import annotations

from aiohttp import web

from ivr.core import commands
from ivr.core.errors import BadRequest, Conflict, Forbidden, IvrError, NotFound, Unavailable
from ivr.core.logging import get_logger
from ivr.cti.context import SETTINGS, STORE

log = get_logger(__name__)

#: the HTTP status of a worker's refusal, by its code (anything else: 409)
REFUSAL_STATUS: dict[str, type[IvrError]] = {
    "call.no_leg": Unavailable,
    "number.not_allowed": Forbidden,
    "agent.not_found": NotFound,
    "queue.not_found": NotFound,
    "request.invalid": BadRequest,
    "recording.not_allowed": Forbidden,
    "auth.forbidden": Forbidden,  # the worker checks the role again (live supervision)
}


async def send_command(request: web.Request, command: commands.Command, name: str) -> web.Response:
    reply = await request.app[STORE].send_command(command, request.app[SETTINGS].api.command_timeout_s)
    log.info("call.command", call_id=command.call_id, command=name, by=command.by, status=reply.status,
             code=reply.code)
    if reply.status is commands.Status.GONE:
        raise Conflict(reply.message or "the call is no longer there", code=reply.code or "call.gone")
    if reply.status is not commands.Status.ACCEPTED:
        error = REFUSAL_STATUS.get(reply.code, Conflict)
        details = {"retry_after_s": 5} if error is Unavailable else {}
        raise error(reply.message or f"the call refused {name} ({reply.code})",
                    code=reply.code or "command.refused", **details)
    return web.json_response({"call_id": command.call_id, "command": name, "status": "accepted",
                              "command_id": command.command_id}, status=202)
