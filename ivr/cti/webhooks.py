"""Webhooks: every call event POSTed, signed, to the configured endpoints (the CRM), from a
persistent outbox in Redis (:mod:`ivr.queues.outbox`), with retries and dead letters.

* Two tasks per API instance: :meth:`Webhooks.fill` moves events from the stream into the outbox
  (through a consumer group: each event once per endpoint, whatever the number of instances, none
  lost when one dies) and :meth:`Webhooks.deliver` POSTs them.
* Each POST carries ``{id, type, occurred_at, data}`` and the headers ``X-Ivr-Event-Id``,
  ``X-Ivr-Timestamp`` and ``X-Ivr-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``
  (one ``v1=`` per secret while one is being rotated). See docs/webhooks.md for the receiver's side.
* 2xx: delivered. 408, 429, other statuses, timeouts and connection errors: retried, the whole
  endpoint backing off (exponential, with jitter, ``Retry-After`` honoured) so its events stay in
  order and a receiver that is down is probed, not hammered. Another 4xx: the receiver refused the
  event, a dead letter at once. Out of attempts: a dead letter. Dead letters are listed and replayed
  over the API (:func:`routes`).
* Logs name the endpoint and the receiver's host, never the URL's path or query, nor a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import hmac
import json
import random
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import aiohttp
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from yarl import URL

from ivr.core.config import WebhookEndpoint, WebhookSettings
from ivr.core.errors import BadRequest, Conflict, NotFound
from ivr.core.logging import get_logger
from ivr.cti.auth import require_role
from ivr.cti.context import limit_param, user
from ivr.queues.connection import BLOCK_S
from ivr.queues.outbox import Claimed, Entry, Idle, Outbox
from ivr.queues.store import StreamEvent

log = get_logger(__name__)

USER_AGENT = "ivr-hotline-webhooks/1"
SIGNATURE_VERSION = "v1"
BATCH = 200  # stream entries read (and put in the outbox) at once
FORGET_CONSUMERS_MS = 24 * 3600 * 1000  # a stopped instance's consumer is dropped from the group after a day
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\.\d{1,15}-\d{1,15}$")

Outcome = Literal["done", "retry", "dead"]


# --- pure parts: signature, backoff, outcome ---------------------------------------------------
def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` with ``secret``."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secrets: Sequence[str], timestamp: str, body: bytes) -> str:
    """``v1=<hex>`` per secret, comma separated (the new secret first while rotating)."""
    return ", ".join(f"{SIGNATURE_VERSION}={sign(s, timestamp, body)}" for s in secrets)


def verify(secret: str, header: str, timestamp: str, body: bytes, *, now: float | None = None,
           tolerance_s: float = 300.0) -> bool:
    """What a receiver checks: the timestamp is within ``tolerance_s`` of now (a captured request
    cannot be replayed later) and one ``v1=`` signature matches (compared in constant time)."""
    if not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    found = False
    for part in header.split(","):
        version, _, value = part.strip().partition("=")
        if version == SIGNATURE_VERSION and hmac.compare_digest(value, expected):
            found = True
    return found


def backoff_s(failures: int, *, base_s: float, cap_s: float, jitter: float,
              rnd: random.Random | None = None) -> float:
    """The wait after the endpoint's ``failures``-th failure in a row: ``base_s * 2**(failures-1)``,
    capped at ``cap_s``, less a random share of at most ``jitter`` of it."""
    exp = min(max(failures, 1) - 1, 60)
    delay = min(cap_s, base_s * (2.0**exp))
    return delay * (1.0 - jitter * (rnd or random).random())


def outcome_of(status: int | None) -> Outcome:
    """2xx done; 408, 429, 5xx, other non-4xx and no reply (None) retried; any other 4xx dead."""
    if status is None:
        return "retry"
    if 200 <= status < 300:
        return "done"
    if 400 <= status < 500 and status not in (408, 429):
        return "dead"
    return "retry"


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds asked by a ``Retry-After`` header (seconds or an HTTP date), None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def wants(patterns: Sequence[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to ``patterns`` (types or globs like ``call.*``) gets the event."""
    return bool(event_type) and any(p == "*" or fnmatch.fnmatchcase(event_type, p) for p in patterns)


def iso_ms(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000.0, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_entry(ev: StreamEvent, endpoints: Sequence[WebhookEndpoint]) -> Entry:
    """The outbox entry of one stream event: its body ``{id, type, occurred_at, data}`` (the call
    journey, when the event has one, is ``data.journey``) and the endpoints that want it."""
    ms_part = ev.id.partition("-")[0]
    ts = ev.data.get("ts")
    at = iso_ms(float(ts) if isinstance(ts, int | float) else float(ms_part or 0))
    body = json.dumps({"id": ev.id, "type": ev.type, "occurred_at": at, "data": ev.data},
                      ensure_ascii=False, separators=(",", ":"))
    return Entry(ev.id, ev.type, at, body, tuple(ep.name for ep in endpoints if wants(ep.events, ev.type)))


def redact(url: str) -> str:
    """The URL without credentials, query or fragment (they may hold a token)."""
    u = URL(url)
    return str(u.with_user(None).with_password(None).with_query(None).with_fragment(None))


# --- the service -----------------------------------------------------------------------------
class Webhooks:
    """The outbox filler, the delivery loop, and what the API and /metrics read."""

    def __init__(self, settings: WebhookSettings, redis: Redis, prefix: str = "ivr", *,
                 instance: str | None = None, lease_s: float | None = None, rnd: random.Random | None = None) -> None:
        self.settings = settings
        self.endpoints = {ep.name: ep for ep in settings.endpoints}
        self.outbox = Outbox(redis, prefix)
        self.consumer = instance or f"api-{uuid.uuid4().hex[:12]}"
        # a lease outlives any delivery attempt by far: a live holder never loses it
        self.lease_ms = int((lease_s if lease_s is not None else settings.timeout_s * 2 + 30) * 1000)
        self._rnd = rnd or random.Random()
        self._wake = {name: asyncio.Event() for name in self.endpoints}
        self._session: aiohttp.ClientSession | None = None

    # -- the filler ------------------------------------------------------------------------------
    async def fill(self) -> None:
        """Move stream events into the outbox until cancelled (the API's task)."""
        if not self.endpoints:
            return
        next_reclaim = 0.0
        group_ready = False
        own_pending = True  # what this consumer read and did not put (a put that failed) goes first
        while True:
            try:
                if not group_ready:
                    await self.outbox.ensure_group()
                    group_ready = True
                while own_pending:  # bounded: each round puts what it read, or raises
                    events = await self.outbox.read(self.consumer, count=BATCH, block_ms=None, own_pending=True)
                    await self.put(events)
                    own_pending = len(events) == BATCH
                if time.monotonic() >= next_reclaim:
                    await self.reclaim()
                    next_reclaim = time.monotonic() + max(0.05, self.settings.claim_idle_s / 2)
                block = int(min(BLOCK_S, max(0.05, self.settings.claim_idle_s / 2)) * 1000)
                await self.put(await self.outbox.read(self.consumer, count=BATCH, block_ms=block))
            except ResponseError as exc:
                own_pending = True
                if "NOGROUP" in str(exc):  # Redis lost the group (restarted empty): make it again
                    group_ready = False
                    continue
                log.warning("webhooks.redis_error", loop="fill", error=str(exc))
                await asyncio.sleep(0.5)
            except RedisError as exc:  # a put that failed (Redis restarting): its events are re-read at once
                own_pending = True  # after, not left for another instance's reclaim (claim_idle_s later)
                log.warning("api.redis_unavailable", loop="webhooks.fill", error=str(exc))
                await asyncio.sleep(0.5)

    async def reclaim(self) -> int:
        """Take over the events another instance read but never put in the outbox (it died)."""
        raw = await self.outbox.reclaim(self.consumer, idle_ms=int(self.settings.claim_idle_s * 1000))
        if raw:
            log.warning("webhooks.reclaimed", events=len(raw))
            await self.put(raw)
        with contextlib.suppress(ResponseError):
            await self.outbox.forget_consumers(self.consumer, idle_ms=FORGET_CONSUMERS_MS)
        return len(raw)

    async def put(self, events: Sequence[StreamEvent]) -> int:
        """Queue stream events for their endpoints (and acknowledge them) in one step."""
        if not events:
            return 0
        entries = [event_entry(ev, list(self.endpoints.values())) for ev in events]
        made = await self.outbox.put(entries)
        for name in {name for e in entries for name in e.endpoints}:
            self._wake[name].set()
        return made

    # -- the delivery loop -----------------------------------------------------------------------
    async def deliver(self) -> None:
        """POST queued events until cancelled: ``max_in_flight`` lanes per endpoint."""
        if not self.endpoints:
            return
        try:
            async with asyncio.TaskGroup() as lanes:
                for ep in self.endpoints.values():
                    for i in range(ep.max_in_flight):
                        lanes.create_task(self._lane(ep), name=f"webhooks:{ep.name}:{i}")
        finally:
            await self.close()

    async def _lane(self, ep: WebhookEndpoint) -> None:
        wake = self._wake[ep.name]
        while True:
            wake.clear()
            try:
                got = await self.outbox.claim(ep.name, max_in_flight=ep.max_in_flight, lease_ms=self.lease_ms,
                                              token=uuid.uuid4().hex)
            except RedisError as exc:
                log.warning("api.redis_unavailable", loop="webhooks.deliver", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            if isinstance(got, Idle):
                wait = self.settings.poll_s if got.wait_s is None else min(got.wait_s, self.settings.poll_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), wait)
                continue
            try:
                await self.attempt(ep, got)
            except asyncio.CancelledError:  # the API stops mid-delivery: the next holder takes it at once
                with contextlib.suppress(RedisError, TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self.outbox.release(got)
                raise
            except Exception:  # a bug must not stop the endpoint's deliveries: the lease brings it back
                log.exception("webhook.attempt_failed", endpoint=ep.name)
                await asyncio.sleep(1.0)

    async def attempt(self, ep: WebhookEndpoint, got: Claimed) -> Outcome:
        """POST one claimed delivery and record what came of it."""
        status, error, retry_after = await self._post(ep, got)
        outcome = outcome_of(status)
        host = URL(ep.url).host
        try:
            if outcome == "done":
                await self.outbox.done(got.id, status or 200)
                log.debug("webhook.delivered", endpoint=ep.name, event_id=got.event_id, attempts=got.attempts)
                return outcome
            s = self.settings
            delay = backoff_s(got.failures + 1, base_s=s.backoff_base_s, cap_s=s.backoff_cap_s, jitter=s.jitter,
                              rnd=self._rnd)
            if retry_after is not None:
                delay = min(s.backoff_cap_s, max(delay, retry_after))
            res = await self.outbox.fail(got, status=status, error=error, dead=outcome == "dead", delay_s=delay,
                                         max_attempts=s.max_attempts, dead_max=s.dead_max)
            if res == "dead":
                log.warning("webhook.dead_letter", endpoint=ep.name, host=host, event_id=got.event_id,
                            type=got.type, attempts=got.attempts, error=error)
                return "dead"
            log.info("webhook.retry", endpoint=ep.name, host=host, event_id=got.event_id, attempts=got.attempts,
                     error=error, retry_in_s=round(delay, 3))
            return "retry"
        except RedisError as exc:  # the lease runs out and the delivery is tried again
            log.warning("api.redis_unavailable", loop="webhooks.deliver", error=str(exc))
            return "retry"

    async def _post(self, ep: WebhookEndpoint, got: Claimed) -> tuple[int | None, str, float | None]:
        body = got.body.encode()
        ts = str(int(time.time()))
        secrets = [ep.secret.get_secret_value()]
        if ep.previous_secret is not None:
            secrets.append(ep.previous_secret.get_secret_value())
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "X-Ivr-Event-Id": got.event_id, "X-Ivr-Event-Type": got.type,
                   "X-Ivr-Delivery-Attempt": str(got.attempts), "X-Ivr-Timestamp": ts,
                   "X-Ivr-Signature": signature_header(secrets, ts, body)}
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                async with self._http().post(ep.url, data=body, headers=headers, allow_redirects=False) as resp:
                    with contextlib.suppress(aiohttp.ClientError):
                        await resp.content.read(64 * 1024)  # a short reply keeps the connection reusable
                    return resp.status, f"http_{resp.status}", retry_after_s(resp.headers.get("Retry-After"))
        except TimeoutError:
            return None, "timeout", None
        except (aiohttp.ClientError, OSError) as exc:
            return None, f"connection:{type(exc).__name__}", None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- what the API and /metrics read ----------------------------------------------------------
    async def backlog(self) -> dict[str, int]:
        """Deliveries waiting or under way, per endpoint."""
        return await self.outbox.backlog(self.endpoints)

    async def dead_count(self) -> int:
        """Dead letters of every endpoint."""
        return sum((await self.outbox.dead_counts(self.endpoints)).values())

    async def overview(self) -> dict[str, Any]:
        backlog = await self.backlog()
        dead = await self.outbox.dead_counts(self.endpoints)
        out = []
        for name, ep in self.endpoints.items():
            state = await self.outbox.endpoint_state(name)
            paused = int(state.get("paused_until", 0) or 0)
            out.append({
                "name": name, "url": redact(ep.url), "events": ep.events, "max_in_flight": ep.max_in_flight,
                "backlog": backlog[name], "in_flight": state["in_flight"], "dead": dead[name],
                "delivered": int(state.get("delivered", 0) or 0),
                "failures_in_a_row": int(state.get("failures", 0) or 0),
                "backing_off_until": iso_ms(paused) if paused > time.time() * 1000 else None,
                "last_success_at": _iso_field(state.get("last_success_at")),
                "last_failure_at": _iso_field(state.get("last_failure_at")),
                "last_error": state.get("last_error") or None,
            })
        return {"endpoints": out, "backlog": sum(backlog.values()), "dead": sum(dead.values())}

    async def dead_letters(self, endpoint: str | None, limit: int) -> list[dict[str, Any]]:
        names = [endpoint] if endpoint else list(self.endpoints)
        return [dead_letter_view(d) for d in await self.outbox.dead_letters(names, limit)]

    async def replay(self, delivery_id: str) -> dict[str, Any]:
        """Put one dead letter back in its outbox (``webhook.dead_letter_not_found`` otherwise)."""
        found = await self.outbox.delivery(delivery_id)
        if found is None or found.get("state") != "dead":
            raise NotFound("no such dead letter", code="webhook.dead_letter_not_found")
        if found.get("endpoint") not in self.endpoints:
            raise Conflict("its endpoint is no longer configured", code="webhook.endpoint_unknown")
        if not await self.outbox.replay(delivery_id):
            raise NotFound("no such dead letter", code="webhook.dead_letter_not_found")
        self._wake[found["endpoint"]].set()
        log.info("webhook.replayed", endpoint=found["endpoint"], event_id=found.get("event_id"))
        return dead_letter_view({**found, "state": "pending", "attempts": "0"})

    async def replay_all(self, endpoint: str | None) -> int:
        total = 0
        for name in [endpoint] if endpoint else list(self.endpoints):
            n = await self.outbox.replay_all(name)
            if n:
                self._wake[name].set()
                log.info("webhook.replayed", endpoint=name, deliveries=n)
            total += n
        return total


def _iso_field(value: str | int | None) -> str | None:
    return iso_ms(float(value)) if value not in (None, "") else None


def dead_letter_view(d: Mapping[str, str]) -> dict[str, Any]:
    status = d.get("last_status") or ""
    return {
        "id": d.get("id"), "endpoint": d.get("endpoint"), "event_id": d.get("event_id"), "type": d.get("type"),
        "state": d.get("state"), "attempts": int(d.get("attempts") or 0),
        "last_error": d.get("last_error") or None, "last_status": int(status) if status.isdigit() else None,
        "occurred_at": d.get("occurred_at"), "queued_at": _iso_field(d.get("created_at")),
        "last_attempt_at": _iso_field(d.get("last_attempt_at")), "died_at": _iso_field(d.get("died_at")),
        "replays": int(d.get("replays") or 0),
    }


# --- routes ------------------------------------------------------------------------------------
WEBHOOKS = web.AppKey("webhooks", Webhooks)


def _endpoint_param(request: web.Request) -> str | None:
    name = request.query.get("endpoint")
    if name is None:
        return None
    if not name:
        raise BadRequest("endpoint must name a webhook endpoint (leave it out for all)", code="request.invalid")
    if name not in request.app[WEBHOOKS].endpoints:
        raise NotFound(f"no webhook endpoint {name!r}", code="webhook.endpoint_not_found")
    return name


async def list_webhooks(request: web.Request) -> web.Response:
    """The endpoints (no secrets, URLs without query), their backlog, dead letters and health."""
    require_role(await user(request), "supervisor", "admin")
    return web.json_response(await request.app[WEBHOOKS].overview())


async def list_dead_letters(request: web.Request) -> web.Response:
    require_role(await user(request), "supervisor", "admin")
    endpoint, limit = _endpoint_param(request), limit_param(request)
    return web.json_response({"dead_letters": await request.app[WEBHOOKS].dead_letters(endpoint, limit)})


async def replay_dead_letter(request: web.Request) -> web.Response:
    who = await user(request)
    require_role(who, "admin")
    delivery_id = request.match_info["delivery_id"]
    if not _DELIVERY_ID.match(delivery_id):
        raise NotFound("no such dead letter", code="webhook.dead_letter_not_found")
    view = await request.app[WEBHOOKS].replay(delivery_id)
    log.info("webhook.replay_requested", by=who.id, deliveries=1)
    return web.json_response(view)


async def replay_dead_letters(request: web.Request) -> web.Response:
    """Every dead letter (of ``?endpoint=`` only, when given) back in the outbox."""
    who = await user(request)
    require_role(who, "admin")
    n = await request.app[WEBHOOKS].replay_all(_endpoint_param(request))
    log.info("webhook.replay_requested", by=who.id, deliveries=n)
    return web.json_response({"replayed": n})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/webhooks", list_webhooks),
        web.get("/api/v1/webhooks/dead-letters", list_dead_letters),
        web.post("/api/v1/webhooks/dead-letters/replay", replay_dead_letters),
        web.post("/api/v1/webhooks/dead-letters/{delivery_id}/replay", replay_dead_letter),
    ]
