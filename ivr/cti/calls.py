"""CTI routes for call records: the record itself, the agent's disposition and notes, its voicemail
(WAV), mailboxes and callbacks.

Voicemail files are served only from the path stored on the call record, re-checked to lie inside
``<var_dir>/voicemail``; API replies never show that path, only the download URL.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ivr.core import commands
from ivr.core.errors import BadRequest, Conflict, NotFound
from ivr.core.logging import get_logger
from ivr.core.media_store import NAME, voicemail_file
from ivr.cti.auth import User, require_role, require_self_or
from ivr.cti.context import SETTINGS, STORE, body, limit_param, user

log = get_logger(__name__)

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


async def get_call(request: web.Request) -> web.Response:
    """The call record (journey, csat, voicemail, variables, callback); supervisors, admins and the
    call's own agent."""
    _, _, call = await _own_call(request)
    store = request.app[STORE]
    if isinstance(call.get("voicemail"), dict):
        call["voicemail"] = _voicemail_view(call["voicemail"])
    if call.get("callback_id"):
        cb = await store.get_callback(call["callback_id"])
        if cb is not None:
            call["callback"] = {k: cb[k] for k in ("id", "queue", "state", "place", "created_at") if k in cb}
    return web.json_response(call)


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


async def set_disposition(request: web.Request) -> web.Response:
    """The agent's wrap-up: a disposition code and notes on the call record (the call's agent, a
    supervisor or an admin); ``call.disposition`` carries them to the CRM's webhook."""
    who, call_id, _ = await _own_call(request)
    store = request.app[STORE]
    req = await body(request, Disposition)
    allowed = request.app[SETTINGS].api.dispositions
    if req.disposition not in allowed:
        raise BadRequest(f"disposition must be one of {', '.join(allowed)}", code="call.disposition_invalid")
    await store.record_disposition(call_id, req.disposition, req.notes, who.id, crm_record_id=req.crm_record_id)
    log.info("call.disposition", call_id=call_id, disposition=req.disposition, by=who.id)
    return web.json_response(await store.get_call(call_id))


async def hangup_call(request: web.Request) -> web.Response:
    """End a live call for every party: supervisors and admins any call, an agent its own. The
    command goes to the worker that holds the call, whichever API instance receives it."""
    who, call_id, call = await _own_call(request)
    store = request.app[STORE]
    if call.get("state") == "ended":
        raise Conflict("the call has already ended", code="call.ended")
    command = commands.Hangup(call_id=call_id, by=who.id, role=who.role)
    reply = await store.send_command(command, request.app[SETTINGS].api.command_timeout_s)
    log.info("call.command", call_id=call_id, command="hangup", by=who.id, status=reply.status, code=reply.code)
    if reply.status is not commands.Status.ACCEPTED:
        raise Conflict(reply.message or f"the call refused the command ({reply.code})",
                       code=reply.code or "command.refused")
    return web.json_response({"call_id": call_id, "command": "hangup", "status": "accepted",
                              "command_id": command.command_id}, status=202)


async def list_dispositions(request: web.Request) -> web.Response:
    await user(request)
    return web.json_response({"dispositions": request.app[SETTINGS].api.dispositions})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/calls/{call_id}", get_call),
        web.get("/api/v1/calls/{call_id}/voicemail", get_voicemail),
        web.post("/api/v1/calls/{call_id}/disposition", set_disposition),
        web.post("/api/v1/calls/{call_id}/hangup", hangup_call),
        web.get("/api/v1/dispositions", list_dispositions),
        web.get("/api/v1/voicemail", list_voicemail),
        web.get("/api/v1/callbacks", list_callbacks),
        web.delete("/api/v1/callbacks/{callback_id}", cancel_callback),
    ]
