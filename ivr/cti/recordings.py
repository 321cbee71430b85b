"""CTI routes for call recordings and the audit trail (docs/recording.md).

- ``GET /api/v1/recordings``: the list, newest first (agents: their own calls only, when
  ``recording.agents_hear_own``); ``GET /api/v1/recordings/{id}``: one recording's record.
- ``GET /api/v1/recordings/{id}/audio``: the stereo file (caller left, agent side right), with HTTP
  Range (a player seeks without fetching the whole file); ``?download=1`` as an attachment.
- ``DELETE /api/v1/recordings/{id}``: admins; the file and every index entry go.
- ``GET /api/v1/audit``: admins; who listened to, downloaded, deleted or supervised what.

Who may hear a recording is :func:`ivr.cti.recording_access.may_hear`. Every play, download, refusal
and deletion is audited (:meth:`ivr.queues.store.QueueStore.audit`). A reply never carries the
store's key or a path: the audio is reached through its URL only.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from ivr.core.errors import Forbidden, NotFound
from ivr.core.logging import get_logger
from ivr.core.recording_store import BadKey, open_store
from ivr.cti.auth import User, require_role
from ivr.cti.calls import query_choice, time_param
from ivr.cti.context import SETTINGS, STORE, limit_param, user
from ivr.cti.cursor import decode_cursor, encode_cursor
from ivr.cti.recording_access import may_hear

log = get_logger(__name__)
RECORDING_ID = re.compile(r"^R[0-9a-f]{20}$")
AUDIT_ID = re.compile(r"^[0-9]{1,15}-[0-9]{1,15}$")
_MEDIA = {"opus": "audio/ogg", "mp3": "audio/mpeg"}
_HIDDEN = frozenset({"key", "store"})
_NAME = r"[A-Za-z0-9_.-]{1,64}"


def recording_view(rec: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in rec.items() if k not in _HIDDEN}
    out["audio_url"] = f"/api/v1/recordings/{rec.get('id', '')}/audio"
    return out


async def _recording(request: web.Request) -> tuple[User, dict[str, Any]]:
    """The path's recording and its reader: 404 for an unknown id, 403 (audited) when the reader may
    not hear it."""
    who = await user(request)
    rid = request.match_info["recording_id"]
    if not RECORDING_ID.match(rid):
        raise NotFound("no such recording", code="recording.not_found")
    rec = await request.app[STORE].get_recording(rid)
    if rec is None:
        raise NotFound("no such recording", code="recording.not_found")
    if not may_hear(who, rec, request.app[SETTINGS]):
        await request.app[STORE].audit("recording.denied", by=who.id, role=who.role, target=rid,
                                       call_id=str(rec.get("call_id", "")),
                                       detail={"route": request.method + " " + request.path.rsplit("/", 1)[-1]})
        raise Forbidden(f"{who.role} {who.id} may not hear this recording", code="auth.forbidden")
    return who, rec


async def list_recordings(request: web.Request) -> web.Response:
    who = await user(request)
    settings = request.app[SETTINGS]
    agent_id = query_choice(request, "agent_id", _NAME, "an agent id")
    if who.role == "agent":
        if not settings.recording.agents_hear_own:
            raise Forbidden("agents may not hear recordings here", code="auth.forbidden")
        agent_id = who.id
    elif who.role == "supervisor" and not settings.recording.supervisors_hear_all:
        raise Forbidden("supervisors may not hear recordings here", code="auth.forbidden")
    queue = query_choice(request, "queue", _NAME, "a queue name")
    start, end = time_param(request, "from"), time_param(request, "to")
    filters = [agent_id, queue, start, end]
    raw = request.query.get("cursor")
    after = decode_cursor(filters, raw, RECORDING_ID) if raw is not None else None
    recs, nxt = await request.app[STORE].list_recordings(
        agent_id=agent_id, queue="" if agent_id else queue, from_ms=start or 0,
        to_ms=end if end is not None else 2**53, limit=limit_param(request, 50), after=after)
    if agent_id and queue:
        recs = [r for r in recs if r.get("queue") == queue]
    return web.json_response({"recordings": [recording_view(r) for r in recs],
                              "next_cursor": encode_cursor(filters, nxt) if nxt else None})


async def get_recording(request: web.Request) -> web.Response:
    _, rec = await _recording(request)
    return web.json_response(recording_view(rec))


async def recording_audio(request: web.Request) -> web.StreamResponse:
    """The file, with Range. A play is audited once, on its first request (no Range, or one from
    byte 0); the seeks of the same play are not."""
    who, rec = await _recording(request)
    rid = str(rec["id"])
    try:
        path = await asyncio.to_thread(open_store(request.app[SETTINGS]).path, str(rec.get("key", "")))
    except (BadKey, FileNotFoundError):
        log.warning("recording.file_missing", recording_id=rid)
        raise NotFound("the recording's file is gone", code="recording.not_found") from None
    download = request.query.get("download") in ("1", "true")
    rng = request.headers.get("Range", "")
    if download or not rng or re.fullmatch(r"bytes=0-[0-9]*", rng.strip()):
        await request.app[STORE].audit("recording.download" if download else "recording.play", by=who.id,
                                       role=who.role, target=rid, call_id=str(rec.get("call_id", "")))
    fmt = str(rec.get("format", "opus"))
    headers = {"Content-Type": _MEDIA.get(fmt, "application/octet-stream"), "Cache-Control": "private, no-store"}
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{rid}.{fmt}"'
    return web.FileResponse(path, headers=headers)


async def delete_recording(request: web.Request) -> web.Response:
    who = await user(request)
    require_role(who, "admin")
    _, rec = await _recording(request)
    rid = str(rec["id"])
    try:
        removed = await asyncio.to_thread(open_store(request.app[SETTINGS]).delete, str(rec.get("key", "")))
    except BadKey:
        removed = False
    await request.app[STORE].recording_deleted(rid, reason="admin", by=who.id)
    await request.app[STORE].audit("recording.deleted", by=who.id, role=who.role, target=rid,
                                   call_id=str(rec.get("call_id", "")), detail={"file_removed": str(removed).lower()})
    return web.json_response({"id": rid, "deleted": True})


async def list_audit(request: web.Request) -> web.Response:
    who = await user(request)
    require_role(who, "admin")
    action = query_choice(request, "action", r"[a-z_]{1,32}(\.[a-z_]{1,32})?(\*)?|[a-z_]{1,32}\.\*", "an action, "
                          "or a prefix ending in .*")
    by = query_choice(request, "by", _NAME, "a user id")
    target = query_choice(request, "target", r"[A-Za-z0-9_.:-]{1,80}", "a target id")
    start, end = time_param(request, "from"), time_param(request, "to")
    before = query_choice(request, "cursor", AUDIT_ID.pattern[1:-1], "the next_cursor of the previous page")
    entries, nxt = await request.app[STORE].audit_entries(
        action=action, by=by, target=target, from_ms=start or 0, to_ms=end if end is not None else 2**53,
        before=before or None, limit=limit_param(request, 100))
    return web.json_response({"entries": entries, "next_cursor": nxt})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/recordings", list_recordings),
        web.get("/api/v1/recordings/{recording_id}", get_recording),
        web.get("/api/v1/recordings/{recording_id}/audio", recording_audio),
        web.delete("/api/v1/recordings/{recording_id}", delete_recording),
        web.get("/api/v1/audit", list_audit),
    ]
