"""CTI routes for call recordings and the audit trail (docs/recording.md).

- ``GET /api/v1/recordings``: the list, newest first (agents: their own calls only, when
  ``recording.agents_hear_own``); ``GET /api/v1/recordings/{id}``: one recording's record.
- ``GET /api/v1/recordings/{id}/audio``: the stereo file (caller left, agent side right), with HTTP
  Range (a player seeks without fetching the whole file); ``?download=1`` as an attachment.
- ``POST /api/v1/recordings/{id}/play``: a play link for an ``<audio src>``, which cannot send the
  bearer token: the same audio URL with ``?play=<expiry>.<user>.<signature>``, an HMAC of the
  recording, the user and the expiry (``PLAY_LINK_S``) under a key shared by the API instances
  (:meth:`ivr.queues.store.QueueStore.playback_secret`). It opens that one recording, for minutes,
  and nothing else; the audit trail has the play once, when the link is made (the player's Range
  requests are not new plays). The access log never shows query strings.
- ``DELETE /api/v1/recordings/{id}``: admins; the file and every index entry go.
- ``GET /api/v1/audit``: admins; who listened to, downloaded, deleted or supervised what.

Who may hear a recording is :func:`ivr.cti.recording_access.may_hear`. Every play, download, refusal
and deletion is audited (:meth:`ivr.queues.store.QueueStore.audit`). A reply never carries the
store's key or a path: the audio is reached through its URL only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from ivr.core.errors import Forbidden, NotFound, Unauthorized
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
AUDIT_ACTION = re.compile(r"^[a-z_]{1,32}(\.[a-z_]{1,32})?\*?$|^[a-z_]{1,32}\.\*$")
AUDIT_TARGET = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")
PLAY_LINK_S = 300  # a play link opens its recording this long
PLAY_TOKEN = re.compile(r"^([0-9]{10,16})\.([A-Za-z0-9_.-]{1,64})\.([A-Za-z0-9_-]{43})$")


def _signature(secret: bytes, rid: str, who: str, expires: int) -> str:
    mac = hmac.new(secret, f"{rid}|{who}|{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


async def _play_link_ok(request: web.Request, rid: str, token: str) -> str:
    """The user a valid, unexpired play link of ``rid`` was made for; 401 otherwise."""
    m = PLAY_TOKEN.match(token)
    bad = Unauthorized("the play link is not valid or has expired: ask for a new one", code="auth.invalid_token")
    if m is None:
        raise bad
    expires, who, sig = int(m.group(1)), m.group(2), m.group(3)
    secret = await request.app[STORE].playback_secret()
    if expires < time.time() * 1000 or not hmac.compare_digest(sig, _signature(secret, rid, who, expires)):
        raise bad
    return who


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
        agent_id=agent_id, queue=queue, from_ms=start or 0,
        to_ms=end if end is not None else 2**53, limit=limit_param(request, 50), after=after)
    return web.json_response({"recordings": [recording_view(r) for r in recs],
                              "next_cursor": encode_cursor(filters, nxt) if nxt else None})


async def get_recording(request: web.Request) -> web.Response:
    _, rec = await _recording(request)
    return web.json_response(recording_view(rec))


async def play_link(request: web.Request) -> web.Response:
    """A link an ``<audio src>`` plays (and seeks with Range) without the bearer token; audited."""
    who, rec = await _recording(request)
    rid = str(rec["id"])
    await _file(request, rec)  # a link to a file that is gone would only fail in the player: say it now
    expires = int((time.time() + PLAY_LINK_S) * 1000)
    sig = _signature(await request.app[STORE].playback_secret(), rid, who.id, expires)
    await request.app[STORE].audit("recording.play", by=who.id, role=who.role, target=rid,
                                   call_id=str(rec.get("call_id", "")), detail={"via": "link"})
    return web.json_response({"url": f"/api/v1/recordings/{rid}/audio?play={expires}.{who.id}.{sig}",
                              "expires_at": expires})


async def recording_audio(request: web.Request) -> web.StreamResponse:
    """The file, with Range: with the bearer token (a play is audited once, on its first request:
    no Range, or one from byte 0; the seeks of the same play are not), or with a play link."""
    token = request.query.get("play")
    if token is not None:
        rid = request.match_info["recording_id"]
        await _play_link_ok(request, rid, token)  # first: without a valid link nothing is said (401)
        rec = await request.app[STORE].get_recording(rid) if RECORDING_ID.match(rid) else None
        if rec is None:
            raise NotFound("no such recording", code="recording.not_found")
        return await _serve(request, rec, download=False)
    who, rec = await _recording(request)
    rid = str(rec["id"])
    download = request.query.get("download") in ("1", "true")
    rng = request.headers.get("Range", "")
    if download or not rng or re.fullmatch(r"bytes=0-[0-9]*", rng.strip()):
        await request.app[STORE].audit("recording.download" if download else "recording.play", by=who.id,
                                       role=who.role, target=rid, call_id=str(rec.get("call_id", "")))
    return await _serve(request, rec, download=download)


async def _file(request: web.Request, rec: dict[str, Any]) -> Path:
    """The recording's file in the store; 404 ``recording.not_found`` when it is gone."""
    try:
        path: Path = await asyncio.to_thread(open_store(request.app[SETTINGS]).path, str(rec.get("key", "")))
    except (BadKey, FileNotFoundError):
        log.warning("recording.file_missing", recording_id=str(rec.get("id", "")))
        raise NotFound("the recording's file is gone", code="recording.not_found") from None
    return path


async def _serve(request: web.Request, rec: dict[str, Any], *, download: bool) -> web.StreamResponse:
    rid = str(rec["id"])
    path = await _file(request, rec)
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
    action = query_choice(request, "action", AUDIT_ACTION, "an action, or a prefix ending in .*")
    by = query_choice(request, "by", _NAME, "a user id")
    target = query_choice(request, "target", AUDIT_TARGET, "a target id")
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
        web.post("/api/v1/recordings/{recording_id}/play", play_link),
        web.delete("/api/v1/recordings/{recording_id}", delete_recording),
        web.get("/api/v1/audit", list_audit),
    ]
