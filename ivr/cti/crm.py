"""The CRM connector of the screen-pop: finds the caller's record and adds it to ``call.offered``.

* Lookups are HTTP requests built from templates (``crm.lookups``). Those keyed by a variable
  collected in the IVR (an account number: one customer) are tried before those keyed by the caller
  number (a number may be shared by a household or a switchboard); the first that finds a record wins.
  A variable masked in the journey (``****``, a ``sensitive`` collect) is never used.
* Several records found: the pop lists them (``multiple``) and the agent chooses; the connector never
  picks one for them. Records are deduplicated by id.
* The pop waits ``crm.timeout_ms`` (800 ms) at most for everything; then it goes out at once with
  ``crm.status = "timeout"``. A request still running then goes on (``crm.request_timeout_s``) and
  fills the cache for the next offer of the call.
* When a call is queued, :meth:`CrmConnector.warm` starts the lookups (one API instance does it, the
  others see its mark), so the record is usually in the cache before the offer.
* Replies are cached in Redis for ``crm.cache_ttl_s``, keyed by a SHA-256 of the resolved request
  (never a number in a key name); concurrent lookups of one request share one HTTP request.
* Requests go through :class:`ivr.dialplan.lookup.HttpDataPort`: only the host of the configured
  URL, no redirect elsewhere, bounded size, JSON only. Logs carry the lookup's name, the status and
  the time, never a number, an account or a query string.

The ``crm`` field of a pop (see docs/crm.md)::

    {"status": "matched", "lookup": "by_account", "ms": 12, "cached": false,
     "record": {"id": "C-1", "name": "Kim", "link": "https://crm/contacts/C-1", "fields": {...}}}
    {"status": "multiple", "lookup": "by_phone", "ms": 30, "cached": false, "total": 3, "records": [...],
     "search_link": "..."}
    {"status": "none" | "timeout" | "error", "lookup": "by_phone" | null, "ms": 800,
     "reason": "connection" (error only), "search_link": "..."}
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import phonenumbers
from redis.exceptions import RedisError
from yarl import URL

from ivr.core.config import CrmLookup, CrmSettings, DialplanSettings
from ivr.core.logging import get_logger
from ivr.dialplan.engine import lookup_path
from ivr.dialplan.lookup import HttpDataPort
from ivr.dialplan.ports import LookupFailed
from ivr.dialplan.templates import render, render_url, to_str
from ivr.queues.store import QueueStore, StreamEvent

log = get_logger(__name__)

_MASKED = re.compile(r"^\*{2,}\d{0,2}$")
_HOST = re.compile(r"^(https?)://([^/{}?#]+)")
MAX_CACHED = 100  # records kept per cached reply


def masked(value: str) -> bool:
    """A value the journey shows masked (``****``, ``****34``): a secret the caller keyed in."""
    return bool(_MASKED.match(value))


def caller_formats(ani: str, region: str | None) -> dict[str, str]:
    """The caller number as CRMs store it: ``ani`` as received, ``ani_digits``, ``ani_e164``
    (+821012345678) and ``ani_national`` (01012345678), the last two when the number parses."""
    out = {"ani": ani, "ani_digits": re.sub(r"\D", "", ani)}
    try:
        num = phonenumbers.parse(ani, region)
    except phonenumbers.NumberParseException:
        return out
    if phonenumbers.is_possible_number(num):
        out["ani_e164"] = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
        national = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.NATIONAL)
        out["ani_national"] = re.sub(r"\D", "", national)
    return out


def call_context(data: Mapping[str, Any], region: str | None = None) -> dict[str, str]:
    """Template variables of a call (an event's data or a call record): the IVR's variables that
    are not masked, then the call's own fields (which win)."""
    journey = data.get("journey")
    variables = journey.get("data") if isinstance(journey, dict) else None
    ctx: dict[str, str] = {}
    if isinstance(variables, dict):
        for name, value in variables.items():
            text = to_str(value)
            if isinstance(name, str) and text and not masked(text):
                ctx[name] = text
    for name in ("ani", "dnis", "hotline", "queue", "language", "call_id"):
        ctx.pop(name, None)
        text = to_str(data.get(name))
        if text:
            ctx[name] = text
    if ctx.get("ani"):
        ctx.update(caller_formats(ctx["ani"], region))
    return {k: v for k, v in ctx.items() if v}


def render_body(template: Any, ctx: Mapping[str, str]) -> Any:
    """A JSON body template with every string rendered."""
    if isinstance(template, str):
        return render(template, ctx)
    if isinstance(template, dict):
        return {k: render_body(v, ctx) for k, v in template.items()}
    if isinstance(template, list):
        return [render_body(v, ctx) for v in template]
    return template


def records_of(reply: Any, lookup: CrmLookup) -> list[dict[str, Any]]:
    """The records of a JSON reply, each ``{id, name, fields}``; records without an id are left
    out, and a record listed twice counts once."""
    raw = lookup_path(reply, lookup.records) if lookup.records else reply
    items = raw if isinstance(raw, list) else [raw] if isinstance(raw, dict) else []
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        rid = lookup_path(item, lookup.id_field)
        if rid is None or isinstance(rid, dict | list | bool) or to_str(rid) == "":
            continue
        rid = to_str(rid)
        if rid in seen:
            continue
        seen.add(rid)
        name = lookup_path(item, lookup.name_field)
        fields = {label: value for label, path in lookup.fields.items()
                  if (value := lookup_path(item, path)) is not None}
        out.append({"id": rid, "name": to_str(name) if not isinstance(name, dict | list) else "",
                    "fields": fields})
    return out


@dataclass(frozen=True)
class Request:
    """One resolved lookup request; ``digest`` names it in the cache."""

    lookup: CrmLookup
    method: str
    url: str
    body: dict[str, Any] | None

    @property
    def digest(self) -> str:
        raw = json.dumps([self.lookup.name, self.method, self.url, self.body], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class Found:
    records: list[dict[str, Any]]
    total: int
    cached: bool = False


def request_for(lookup: CrmLookup, ctx: Mapping[str, str]) -> Request | None:
    """The request of ``lookup`` for the call, None when its key variable is unset (or masked)."""
    if not ctx.get(lookup.needs):
        return None
    body = render_body(lookup.body, ctx) if lookup.body is not None and lookup.method == "POST" else None
    return Request(lookup, lookup.method, render_url(lookup.url, ctx), body)


class CrmConnector:
    """The hub's :class:`~ivr.cti.hub.Enricher`: ``{"crm": {...}}`` for each pop."""

    def __init__(self, settings: CrmSettings, store: QueueStore) -> None:
        self.settings = settings
        self.store = store
        # IVR variables (account numbers) first, the caller number after: stable otherwise
        self.lookups = sorted(settings.lookups, key=lambda lk: lk.needs.startswith("ani"))
        self._ports: dict[str, HttpDataPort] = {}
        self._sessions: list[aiohttp.ClientSession] = []
        self._flights: dict[str, asyncio.Task[Found]] = {}

    # -- the Enricher protocol -------------------------------------------------------------------
    async def for_pop(self, ev: StreamEvent) -> dict[str, Any]:
        """The ``crm`` field of a ``call.offered`` pop, within ``crm.timeout_ms``; never raises."""
        return await self._lookup(ev.data, call_id=ev.data.get("call_id"))

    async def for_task(self, ev: StreamEvent) -> dict[str, Any]:
        """The ``crm`` field of a ``case.task_offered`` (the case's customer looked up as a caller, by the
        lookups keyed by the caller number), as for a pop; never raises."""
        return await self._lookup({"ani": ev.data.get("customer") or ""}, case_id=ev.data.get("case_id"))

    async def _lookup(self, data: Mapping[str, Any], **ids: Any) -> dict[str, Any]:
        started = time.monotonic()
        try:
            result = await self.resolve(call_context(data, self.settings.region),
                                        budget_s=self.settings.timeout_ms / 1000.0)
        except Exception:
            log.exception("crm.failed", **ids)
            result = {"status": "error", "lookup": None, "reason": "internal"}
        result["ms"] = int((time.monotonic() - started) * 1000)
        log.info("crm.pop", **ids, status=result["status"], lookup=result.get("lookup"),
                 ms=result["ms"], cached=result.get("cached"))
        return {"crm": result}

    async def warm(self, ev: StreamEvent) -> None:
        """A call was queued: run its lookups now (unless another API instance does), so the pop
        finds the record in the cache."""
        try:
            data: Mapping[str, Any] = ev.data
            if "ani" not in data:
                call = await self.store.get_call(str(ev.data.get("call_id") or ""))
                if call is None:
                    return
                data = {**call, "queue": ev.data.get("queue", call.get("queue", ""))}
            await self.resolve(call_context(data, self.settings.region), budget_s=None, warming=True)
        except Exception:
            log.exception("crm.warm_failed", call_id=ev.data.get("call_id"))

    # -- lookups ---------------------------------------------------------------------------------
    async def resolve(self, ctx: Mapping[str, str], *, budget_s: float | None,
                      warming: bool = False) -> dict[str, Any]:
        """Try the lookups in order within ``budget_s`` (None: no limit) and describe the outcome."""
        current: CrmLookup | None = None
        failure: tuple[CrmLookup, str] | None = None
        tried: CrmLookup | None = None
        try:
            async with asyncio.timeout(budget_s):
                for lookup in self.lookups:
                    req = request_for(lookup, ctx)
                    if req is None:
                        continue
                    current = lookup
                    try:
                        found = await self._find(req, warming)
                    except LookupFailed as exc:
                        failure = (lookup, str(exc))
                        continue
                    if found is None:  # another instance is warming this request
                        return {"status": "skipped", "lookup": lookup.name}
                    tried = lookup
                    if found.records:
                        return self._matched(lookup, found, ctx)
        except TimeoutError:
            return {"status": "timeout", "lookup": current.name if current else None,
                    **self._search(current, ctx)}
        if failure is not None:
            lookup, reason = failure
            return {"status": "error", "lookup": lookup.name, "reason": reason, **self._search(lookup, ctx)}
        return {"status": "none", "lookup": tried.name if tried else None, **self._search(tried, ctx)}

    def _matched(self, lookup: CrmLookup, found: Found, ctx: Mapping[str, str]) -> dict[str, Any]:
        records = [self._view(lookup, r, ctx) for r in found.records[: self.settings.max_records]]
        if len(found.records) == 1:
            return {"status": "matched", "lookup": lookup.name, "cached": found.cached, "record": records[0]}
        return {"status": "multiple", "lookup": lookup.name, "cached": found.cached, "total": found.total,
                "records": records, **self._search(lookup, ctx)}

    @staticmethod
    def _view(lookup: CrmLookup, record: Mapping[str, Any], ctx: Mapping[str, str]) -> dict[str, Any]:
        out = dict(record)
        if lookup.link:
            variables = {**ctx, **{k: to_str(v) for k, v in record["fields"].items()},
                         "id": record["id"], "name": record["name"]}
            out["link"] = render_url(lookup.link, variables)
        return out

    @staticmethod
    def _search(lookup: CrmLookup | None, ctx: Mapping[str, str]) -> dict[str, str]:
        if lookup is None or not lookup.search_link:
            return {}
        return {"search_link": render_url(lookup.search_link, ctx)}

    async def _find(self, req: Request, warming: bool) -> Found | None:
        """The records of ``req``: from the cache, from a request under way, or fetched now."""
        digest = req.digest
        cached = await self._cache_get(digest)
        if cached is not None:
            return cached
        task = self._flights.get(digest)
        if task is None:
            if warming and not await self._mark_warming(digest):
                return None
            task = asyncio.get_running_loop().create_task(self._fetch(req), name=f"crm:{req.lookup.name}")
            self._flights[digest] = task
            task.add_done_callback(lambda t: self._landed(digest, t))
        return await asyncio.shield(task)

    def _landed(self, digest: str, task: asyncio.Task[Found]) -> None:
        if self._flights.get(digest) is task:
            del self._flights[digest]
        if not task.cancelled():
            task.exception()  # retrieved: a failure was reported to whoever waited

    async def _fetch(self, req: Request) -> Found:
        started = time.monotonic()
        reply = await self._port(req.lookup).fetch(req.method, req.url, req.body, self.settings.request_timeout_s)
        records = records_of(reply, req.lookup)
        found = Found(records[:MAX_CACHED], len(records))
        log.info("crm.lookup", lookup=req.lookup.name, records=len(records),
                 ms=int((time.monotonic() - started) * 1000))
        if self.settings.cache_ttl_s:
            with contextlib.suppress(RedisError):
                await self.store.cache_crm(req.digest, json.dumps({"records": found.records, "total": found.total}),
                                           self.settings.cache_ttl_s)
        return found

    async def _cache_get(self, digest: str) -> Found | None:
        if not self.settings.cache_ttl_s:
            return None
        try:
            raw = await self.store.crm_cached(digest)
        except RedisError:
            return None
        if raw is None:
            return None
        data = json.loads(raw)
        return Found(data["records"], int(data["total"]), cached=True)

    async def _mark_warming(self, digest: str) -> bool:
        try:
            return await self.store.claim_crm_warming(digest, int(self.settings.request_timeout_s * 1000))
        except RedisError:
            return True

    def _port(self, lookup: CrmLookup) -> HttpDataPort:
        port = self._ports.get(lookup.name)
        if port is None:
            session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                headers={"Accept": "application/json", "User-Agent": "ivr-hotline-crm",
                         **{k: v.get_secret_value() for k, v in lookup.headers.items()}})
            self._sessions.append(session)
            port = self._ports[lookup.name] = HttpDataPort(DialplanSettings(lookup_hosts=[allowed_host(lookup.url)]),
                                                           session=session)
        return port

    async def close(self) -> None:
        """Stop the requests under way and close the HTTP sessions."""
        tasks = list(self._flights.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for session in self._sessions:
            await session.close()
        self._sessions.clear()
        self._ports.clear()


def allowed_host(url_template: str) -> str:
    """``host:port`` of a URL template's literal host: the only place its lookup may reach."""
    m = _HOST.match(url_template)
    if m is None:
        raise ValueError("a CRM URL needs a literal http(s) host")
    u = URL(f"{m.group(1)}://{m.group(2)}/")
    host = u.host or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{u.port}"
