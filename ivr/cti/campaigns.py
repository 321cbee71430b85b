"""Outbound campaigns over the API (docs/campaigns.md): create and change a campaign, upload its list
(CSV), start / pause / resume / stop it, read its records and export them, and the do-not-call list.

Supervisors and admins only. The store (:class:`ivr.queues.store.QueueStore`, one Lua script per
change, ``lua/lib/campaigns.lua``) keeps the state machines and emits the ``campaign.*`` events; the
dialler runs on a worker (:mod:`ivr.runtime.worker`). This module checks what a person sends: the
plan exists, the window parses (:class:`ivr.dialplan.calling_window.CallingWindow`), the numbers of
a list are allowed (``calls.outbound_allow``), and turns the CSV into rows
(:mod:`ivr.cti.campaign_csv`). An upload reads its body as a stream, up to 5 MB, whatever
``api.max_body_bytes`` says for JSON bodies.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ivr.core import campaign_states as cps
from ivr.core.errors import BadRequest, NotFound
from ivr.core.logging import get_logger
from ivr.cti import campaign_csv
from ivr.cti.auth import require_role
from ivr.cti.context import SETTINGS, STORE, body, limit_param, user
from ivr.dialplan.calling_window import CallingWindow
from ivr.dialplan.destinations import transfer_allowed

log = get_logger(__name__)

CAMPAIGN_ID = cps.CAMPAIGN_ID.pattern
ACTIONS = ("start", "pause", "resume", "stop")
RECORD_STATES = tuple(s.value for s in cps.RecordState)
RECORDS_LIMIT_MAX = 1000
EXPORT_PAGE = 1000
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class Pacing(BaseModel):
    model_config = _STRICT
    rate_per_s: float = Field(1.0, ge=cps.RATE_MIN, le=cps.RATE_MAX, description="calls started per second, at most")
    max_concurrent: int = Field(10, ge=1, le=cps.CONCURRENT_MAX, description="calls under way at once, at most")
    mode: Literal["fixed", "progressive"] = Field(
        "fixed", description="progressive: calls ringing at once <= available agents of `skill` (default: the "
        "campaign's queue) * ratio")
    ratio: float = Field(1.0, ge=cps.RATIO_MIN, le=cps.RATIO_MAX)
    skill: str = Field("", pattern=r"^([A-Za-z0-9_.-]{1,64})?$", description="agents counted (progressive)")


class Backoff(BaseModel):
    model_config = _STRICT
    busy: int = Field(300, ge=cps.BACKOFF_MIN_S, le=cps.BACKOFF_MAX_S)
    no_answer: int = Field(1800, ge=cps.BACKOFF_MIN_S, le=cps.BACKOFF_MAX_S)
    failed: int = Field(600, ge=cps.BACKOFF_MIN_S, le=cps.BACKOFF_MAX_S)


class Retries(BaseModel):
    model_config = _STRICT
    max_attempts: int = Field(3, ge=1, le=cps.ATTEMPTS_MAX, description="calls of one record at most")
    backoff_s: Backoff = Field(default_factory=Backoff, description="wait after a first failed attempt, by outcome")
    multiplier: float = Field(2.0, ge=1.0, le=cps.MULTIPLIER_MAX, description="each further wait is this many "
                              "times the previous")


class CampaignCreate(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=cps.NAME_MAX, pattern=r"^[^\x00-\x1f\x7f]*$")
    plan: str = Field(pattern=cps.PLAN_ID.pattern, description="the dial plan (its id) an answered call runs")
    queue: str = Field("", pattern=r"^([A-Za-z0-9_.-]{1,64})?$",
                       description="the queue its plan sends customers to (counts; gates progressive pacing)")
    caller_id: str = Field("", pattern=r"^(\+?[0-9]{3,20})?$", description="shown to customers; empty: "
                           "`calls.caller_id`")
    language: str = Field("", pattern=r"^([A-Za-z0-9_.-]{1,64})?$")
    pacing: Pacing = Field(default_factory=Pacing)
    window: CallingWindow | None = Field(None, description="when customers may be called; null: any time")
    retries: Retries = Field(default_factory=Retries)
    ring_s: int = Field(30, ge=cps.RING_MIN_S, le=cps.RING_MAX_S, description="how long a customer's phone rings")


class CampaignUpdate(BaseModel):
    """Every field while draft; pacing and window while running or paused."""
    model_config = _STRICT
    name: str | None = Field(None, min_length=1, max_length=cps.NAME_MAX, pattern=r"^[^\x00-\x1f\x7f]*$")
    plan: str | None = Field(None, pattern=cps.PLAN_ID.pattern)
    queue: str | None = Field(None, pattern=r"^([A-Za-z0-9_.-]{1,64})?$")
    caller_id: str | None = Field(None, pattern=r"^(\+?[0-9]{3,20})?$")
    language: str | None = Field(None, pattern=r"^([A-Za-z0-9_.-]{1,64})?$")
    pacing: Pacing | None = None
    window: CallingWindow | None = None
    no_window: bool = Field(False, description="true: drop the window (call any time)")
    retries: Retries | None = None
    ring_s: int | None = Field(None, ge=cps.RING_MIN_S, le=cps.RING_MAX_S)


class DncChange(BaseModel):
    model_config = _STRICT
    numbers: list[Annotated[str, Field(pattern=cps.NUMBER.pattern)]] = Field(
        min_length=1, max_length=cps.RECORDS_PER_UPLOAD, description="phone numbers, + and 3 to 20 digits")


async def _staff(request: web.Request) -> str:
    who = await user(request)
    require_role(who, "supervisor", "admin")
    return who.id


def _plan_known(request: web.Request, plan: str) -> None:
    folder = request.app[SETTINGS].dialplans_dir
    if not ((folder / f"{plan}.yaml").is_file() or (folder / f"{plan}.yml").is_file()):
        raise BadRequest(f"no dial plan {plan!r} in the plans folder", code="campaign.invalid")


def _window(w: CallingWindow | None) -> dict[str, Any] | None:
    return None if w is None else w.model_dump(mode="json", by_alias=True)


def _campaign_id(request: web.Request) -> str:
    cid = request.match_info["campaign_id"]
    if not cps.CAMPAIGN_ID.fullmatch(cid):
        raise NotFound("no such campaign", code="campaign.not_found")
    return cid


async def _get(request: web.Request, cid: str) -> dict[str, Any]:
    c = await request.app[STORE].get_campaign(cid)
    if c is None:
        raise NotFound("no such campaign", code="campaign.not_found")
    return c


async def create_campaign(request: web.Request) -> web.Response:
    by = await _staff(request)
    req = await body(request, CampaignCreate)
    _plan_known(request, req.plan)
    settings = request.app[SETTINGS]
    c = await request.app[STORE].campaign_create(
        name=req.name, plan=req.plan, by=by, queue=req.queue, caller_id=req.caller_id or settings.calls.caller_id,
        language=req.language, pacing=req.pacing.model_dump(), window=_window(req.window),
        retries=req.retries.model_dump(), ring_s=req.ring_s)
    return web.json_response(c, status=201)


async def list_campaigns(request: web.Request) -> web.Response:
    await _staff(request)
    limit = limit_param(request, 100, cps.LIST_MAX)
    return web.json_response({"campaigns": await request.app[STORE].list_campaigns(limit=limit)})


async def get_campaign(request: web.Request) -> web.Response:
    await _staff(request)
    return web.json_response(await _get(request, _campaign_id(request)))


async def update_campaign(request: web.Request) -> web.Response:
    await _staff(request)
    cid = _campaign_id(request)
    req = await body(request, CampaignUpdate)
    await _get(request, cid)
    changes: dict[str, Any] = {}
    for name in ("name", "plan", "queue", "caller_id", "language", "ring_s"):
        v = getattr(req, name)
        if v is not None:
            changes[name] = v
    if req.plan is not None:
        _plan_known(request, req.plan)
    if req.pacing is not None:
        changes["pacing"] = req.pacing.model_dump()
    if req.retries is not None:
        changes["retries"] = req.retries.model_dump()
    if req.window is not None and req.no_window:
        raise BadRequest("window and no_window together", code="campaign.invalid")
    if req.window is not None:
        changes["window"] = _window(req.window)
    elif req.no_window:
        changes["window"] = None
    if not changes:
        raise BadRequest("nothing to change", code="campaign.invalid")
    return web.json_response(await request.app[STORE].campaign_update(cid, **changes))


async def delete_campaign(request: web.Request) -> web.Response:
    await _staff(request)
    cid = _campaign_id(request)
    await _get(request, cid)
    await request.app[STORE].campaign_delete(cid)
    return web.Response(status=204)


def _action(action: Literal["start", "pause", "resume", "stop"]) -> Any:
    async def handler(request: web.Request) -> web.Response:
        by = await _staff(request)
        cid = _campaign_id(request)
        return web.json_response(await request.app[STORE].campaign_action(cid, action, by=by))
    handler.__name__ = f"{action}_campaign"
    return handler


async def _read_upload(request: web.Request) -> bytes:
    """The body, at most 5 MB (413 ``request.too_large`` beyond), read as a stream."""
    ctype = request.content_type
    if ctype not in ("text/csv", "text/plain", "application/octet-stream"):
        raise BadRequest("send the list as text/csv", code="campaign.csv")
    limit = cps.UPLOAD_MAX_BYTES
    length = request.content_length
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
    chunks, size = [], 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


def _encoding(request: web.Request) -> str:
    enc = request.query.get("encoding", "utf-8").lower()
    if enc not in campaign_csv.ENCODINGS:
        raise BadRequest(f"encoding must be one of {', '.join(campaign_csv.ENCODINGS)}", code="request.invalid")
    return enc


async def upload_records(request: web.Request) -> web.Response:
    await _staff(request)
    cid = _campaign_id(request)
    encoding = _encoding(request)
    await _get(request, cid)
    raw = await _read_upload(request)
    allow = request.app[SETTINGS].calls.outbound_allow
    parsed = campaign_csv.parse_records(raw, allowed=lambda n: transfer_allowed(n, allow), encoding=encoding)
    res: dict[str, Any] = {"added": 0, "dnc": 0, "duplicates": [], "zones_full": []}
    if parsed.rows:
        res = await request.app[STORE].campaign_add_records(cid, parsed.rows)
    errors = list(parsed.errors)
    for pos in res["duplicates"]:
        if len(errors) < campaign_csv.ERRORS_SHOWN:
            errors.append({"line": parsed.lines[pos], "error": "duplicate: the number is in the campaign already"})
    for pos in res["zones_full"]:
        if len(errors) < campaign_csv.ERRORS_SHOWN:
            errors.append({"line": parsed.lines[pos], "error": f"more than {cps.ZONES_MAX} time zones"})
    errors.sort(key=lambda e: int(e["line"]))
    skipped = parsed.bad + len(res["duplicates"]) + len(res["zones_full"])
    log.info("campaign.records_uploaded", campaign_id=cid, added=res["added"], skipped=skipped)
    return web.json_response({"campaign_id": cid, "added": res["added"], "dnc": res["dnc"], "skipped": skipped,
                              "duplicates": parsed.duplicates + len(res["duplicates"]), "errors": errors})


_AFTER = re.compile(r"^[0-9]{1,9}$")


async def list_records(request: web.Request) -> web.Response:
    await _staff(request)
    cid = _campaign_id(request)
    state = request.query.get("state")
    if state is not None and state not in RECORD_STATES:
        raise BadRequest(f"state must be one of {', '.join(RECORD_STATES)}", code="request.invalid")
    after_raw = request.query.get("after", "0")
    if not _AFTER.fullmatch(after_raw):
        raise BadRequest("after must be a record number", code="request.invalid")
    limit = limit_param(request, 50, RECORDS_LIMIT_MAX)
    await _get(request, cid)
    reveal = (await user(request)).role == "admin"
    records, nxt = await request.app[STORE].campaign_records(cid, state=state, after=int(after_raw), limit=limit)
    if not reveal:
        for r in records:
            r["number"] = campaign_csv.mask(str(r.get("number", "")))
    return web.json_response({"records": records, "next_after": nxt})


async def export_records(request: web.Request) -> web.StreamResponse:
    await _staff(request)
    cid = _campaign_id(request)
    await _get(request, cid)
    reveal = (await user(request)).role == "admin"
    resp = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                       "Content-Disposition": f'attachment; filename="{cid}.csv"'})
    await resp.prepare(request)
    await resp.write(("\ufeff" + campaign_csv.export_header()).encode())
    after: int | None = 0
    for _ in range(100_000):
        records, after = await request.app[STORE].campaign_records(cid, after=after or 0, limit=EXPORT_PAGE)
        if records:
            await resp.write(campaign_csv.export_records(records, reveal=reveal).encode())
        if not after:
            break
    await resp.write_eof()
    return resp


async def dnc_add(request: web.Request) -> web.Response:
    await _staff(request)
    req = await body(request, DncChange)
    numbers = _dnc_numbers(req.numbers)
    return web.json_response({"added": await request.app[STORE].dnc_add(numbers), "numbers": len(numbers)})


async def dnc_remove(request: web.Request) -> web.Response:
    await _staff(request)
    req = await body(request, DncChange)
    numbers = _dnc_numbers(req.numbers)
    return web.json_response({"removed": await request.app[STORE].dnc_remove(numbers), "numbers": len(numbers)})


async def dnc_upload(request: web.Request) -> web.Response:
    await _staff(request)
    encoding = _encoding(request)
    numbers, errors = campaign_csv.parse_numbers(await _read_upload(request), encoding)
    if not numbers:
        raise BadRequest("the list holds no phone number", code="campaign.csv")
    added = await request.app[STORE].dnc_add(numbers) if numbers else 0
    return web.json_response({"added": added, "numbers": len(numbers), "errors": errors})


def _dnc_numbers(raw: list[str]) -> list[str]:
    out = []
    for i, n in enumerate(raw):
        norm = cps.normalise_number(n) if isinstance(n, str) and len(n) <= 40 else None
        if norm is None:
            raise BadRequest(f"numbers[{i}] is not a phone number", code="campaign.invalid")
        out.append(norm)
    return out


def routes() -> list[web.RouteDef]:
    base = "/api/v1/campaigns/{campaign_id}"
    return [
        web.post("/api/v1/campaigns", create_campaign),
        web.get("/api/v1/campaigns", list_campaigns),
        web.get(base, get_campaign),
        web.patch(base, update_campaign),
        web.delete(base, delete_campaign),
        *(web.post(f"{base}/{a}", _action(a)) for a in ACTIONS),  # type: ignore[arg-type]
        web.post(f"{base}/records", upload_records),
        web.get(f"{base}/records", list_records),
        web.get(f"{base}/export", export_records),
        web.post("/api/v1/dnc", dnc_add),
        web.delete("/api/v1/dnc", dnc_remove),
        web.post("/api/v1/dnc/upload", dnc_upload),
    ]
