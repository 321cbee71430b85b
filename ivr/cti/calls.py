"""CTI routes for call records: the record itself, its voicemail (WAV), mailboxes and callbacks.

Voicemail files are served only from the path stored on the call record, re-checked to lie inside
``<var_dir>/voicemail``; API replies never show that path, only the download URL.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ivr.core.config import Settings
from ivr.core.errors import BadRequest, NotFound
from ivr.core.logging import get_logger
from ivr.cti.auth import TokenAuth, User, require_role, require_self_or
from ivr.queues.store import QueueStore
from ivr.runtime.call_record import NAME, voicemail_file

log = get_logger(__name__)

LIST_MAX = 500


def _voicemail_view(entry: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in entry.items() if k != "path"}
    out["url"] = f"/api/v1/calls/{entry.get('call_id', '')}/voicemail"
    return out


def _name_param(request: web.Request, name: str) -> str:
    value = request.query.get(name, "")
    if not NAME.match(value):
        raise BadRequest(f"query parameter {name} is required: 1-64 of A-Z a-z 0-9 _ . -", code="request.invalid")
    return value


def _limit(request: web.Request, default: int = 100) -> int:
    raw = request.query.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= LIST_MAX:
        raise BadRequest(f"limit must be 1..{LIST_MAX}", code="request.invalid")
    return int(raw)


class CallsApi:
    """The routes; the app's keys come in through the constructor (see :func:`ivr.cti.app.init_app`)."""

    def __init__(self, store: web.AppKey[QueueStore], settings: web.AppKey[Settings],
                 auth: web.AppKey[TokenAuth]) -> None:
        self._store, self._settings, self._auth = store, settings, auth

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v1/calls/{call_id}", self.get_call),
            web.get("/api/v1/calls/{call_id}/voicemail", self.get_voicemail),
            web.get("/api/v1/voicemail", self.list_voicemail),
            web.get("/api/v1/callbacks", self.list_callbacks),
            web.delete("/api/v1/callbacks/{callback_id}", self.cancel_callback),
        ]

    def _user(self, request: web.Request) -> User:
        return request.app[self._auth].authenticate(request)

    async def get_call(self, request: web.Request) -> web.Response:
        """The call record (journey, csat, voicemail, variables, callback); supervisors, admins and the
        call's own agent."""
        user = self._user(request)
        store = request.app[self._store]
        call = await store.get_call(request.match_info["call_id"])
        if call is None:
            raise NotFound("no such call", code="call.not_found")
        require_self_or(user, call.get("agent_id", ""), "supervisor", "admin")
        if isinstance(call.get("voicemail"), dict):
            call["voicemail"] = _voicemail_view(call["voicemail"])
        if call.get("callback_id"):
            cb = await store.get_callback(call["callback_id"])
            if cb is not None:
                call["callback"] = {k: cb[k] for k in ("id", "queue", "state", "place", "created_at") if k in cb}
        return web.json_response(call)

    async def get_voicemail(self, request: web.Request) -> web.StreamResponse:
        """The call's voicemail as audio/wav."""
        require_role(self._user(request), "supervisor", "admin")
        call_id = request.match_info["call_id"]
        call = await request.app[self._store].get_call(call_id)
        if call is None:
            raise NotFound("no such call", code="call.not_found")
        vm = call.get("voicemail")
        if not isinstance(vm, dict) or not vm.get("path"):
            raise NotFound("the call has no voicemail", code="voicemail.not_found")
        file = voicemail_file(str(vm["path"]), request.app[self._settings])
        if file is None:
            log.warning("voicemail.path_refused", call_id=call_id)
            raise NotFound("the call has no voicemail", code="voicemail.not_found")
        if not file.is_file():
            raise NotFound("the voicemail file is gone", code="voicemail.not_found")
        name = call_id if NAME.match(call_id) else "voicemail"
        return web.FileResponse(file, headers={"Content-Type": "audio/wav",
                                               "Content-Disposition": f'attachment; filename="{name}.wav"'})

    async def list_voicemail(self, request: web.Request) -> web.Response:
        require_role(self._user(request), "supervisor", "admin")
        mailbox = _name_param(request, "mailbox")
        entries = await request.app[self._store].voicemails(mailbox, _limit(request))
        return web.json_response({"mailbox": mailbox, "voicemail": [_voicemail_view(e) for e in entries]})

    async def list_callbacks(self, request: web.Request) -> web.Response:
        """Pending callbacks of a queue, best place first."""
        require_role(self._user(request), "supervisor", "admin")
        queue = _name_param(request, "queue")
        return web.json_response({"queue": queue,
                                  "callbacks": await request.app[self._store].list_callbacks(queue)})

    async def cancel_callback(self, request: web.Request) -> web.Response:
        user = self._user(request)
        require_role(user, "supervisor", "admin")
        cb_id = request.match_info["callback_id"]
        if not NAME.match(cb_id):
            raise NotFound("no such callback", code="callback.not_found")
        store = request.app[self._store]
        await store.cancel_callback(cb_id, by=user.id, ttl_s=request.app[self._settings].routing.call_ttl_s)
        log.info("callback.cancelled", callback_id=cb_id, by=user.id)
        return web.json_response(await store.get_callback(cb_id))
