"""The webhook outbox in Redis: events wait here, per endpoint, until a receiver took them.

* The deployment's event stream (``Keys.events``) is read through a consumer group
  (:data:`GROUP`): with several API instances each event is taken by one of them, and
  :meth:`Outbox.put` queues it for every endpoint that wants it *and* acknowledges it in the group
  in one script. An instance that dies between reading and putting leaves the events pending in
  the group; :meth:`Outbox.reclaim` hands them to a live instance (``XAUTOCLAIM``). So each event
  enters each endpoint's outbox exactly once.
* A delivery is claimed with a lease (:meth:`Outbox.claim`). Success removes it
  (:meth:`Outbox.done`); a failure backs the endpoint off or makes a dead letter
  (:meth:`Outbox.fail`). A holder that stops mid-delivery gives it back at once
  (:meth:`Outbox.release`); one that dies releases it when the lease expires:
  deliveries are at least once, receivers dedupe by event id.
* Per endpoint, deliveries go in event order, at most ``max_in_flight`` at once.

Everything that changes more than one key is one Lua script (``lua/lib/outbox.lua`` + ``lua/scripts/outbox_*.lua``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ivr.queues.keys import Keys
from ivr.queues.scripts import lua_script, run_script
from ivr.queues.store import StreamEvent, stream_event

#: The consumer group of the event stream that feeds the outbox.
GROUP = "webhooks"


@dataclass(frozen=True)
class Entry:
    """One stream event ready for the outbox: its id, type, time (ISO 8601), the JSON body every
    endpoint receives, and the endpoints that want it (none: acknowledged only)."""

    id: str
    type: str
    at: str
    body: str
    endpoints: tuple[str, ...]


@dataclass(frozen=True)
class Claimed:
    """A delivery this holder leased: POST ``body`` to the endpoint, then report with the token."""

    id: str
    endpoint: str
    event_id: str
    type: str
    body: str
    attempts: int
    failures: int  # the endpoint's failed attempts in a row before this one (sets the backoff)
    token: str


@dataclass(frozen=True)
class Idle:
    """Nothing to claim now; ``wait_s`` until something may be (None: nothing is pending)."""

    wait_s: float | None


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


SCRIPTS = ("fill", "claim", "done", "fail", "release", "replay")


class Outbox:
    def __init__(self, redis: Redis, prefix: str = "ivr") -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        for name in SCRIPTS:  # made here, so a missing file fails the start, not a call
            lua_script(f"outbox_{name}", ("outbox",))

    async def _run(self, name: str, *args: Any) -> Any:
        return await run_script(self.redis, lua_script(f"outbox_{name}", ("outbox",)),
                                [self.keys.prefix, *(str(a) for a in args)])

    # --- from the event stream ----------------------------------------------------------------
    async def ensure_group(self) -> None:
        """Create the consumer group at the end of the stream (events from now on), once."""
        try:
            await self.redis.xgroup_create(self.keys.events, GROUP, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, consumer: str, *, count: int, block_ms: int | None,
                   own_pending: bool = False) -> list[StreamEvent]:
        """New stream entries for ``consumer`` (they stay pending in the group until :meth:`put`);
        with ``own_pending`` those it read before and has not put yet (a put that failed), at once."""
        res: Any = await self.redis.xreadgroup(GROUP, consumer, {self.keys.events: "0" if own_pending else ">"},
                                               count=count, block=None if own_pending else block_ms)
        out: list[StreamEvent] = []
        for _stream, entries in res or []:
            out.extend(stream_event(e) for e in entries if e and e[1] is not None)  # None: trimmed meanwhile
        return out

    async def reclaim(self, consumer: str, *, idle_ms: int, count: int = 100,
                      rounds: int = 50) -> list[StreamEvent]:
        """Entries another consumer read ``idle_ms`` or more ago and never put: now ``consumer``'s.
        Entries trimmed from the stream meanwhile are dropped from the group by Redis."""
        out: list[StreamEvent] = []
        cursor = "0-0"
        for _ in range(rounds):
            res: Any = await self.redis.xautoclaim(self.keys.events, GROUP, consumer, idle_ms,
                                                   start_id=cursor, count=count)
            cursor = _s(res[0])
            out.extend(stream_event(e) for e in res[1] if e and e[1] is not None)
            if cursor == "0-0":
                break
        return out

    async def forget_consumers(self, keep: str, *, idle_ms: int) -> int:
        """Drop consumers of the group with nothing pending, idle ``idle_ms`` or more (instances that
        stopped); returns how many."""
        gone = 0
        for c in await self.redis.xinfo_consumers(self.keys.events, GROUP):
            name = _s(c["name"])
            if name != keep and int(c["pending"]) == 0 and int(c["idle"]) >= idle_ms:
                await self.redis.xgroup_delconsumer(self.keys.events, GROUP, name)
                gone += 1
        return gone

    async def put(self, entries: Sequence[Entry]) -> int:
        """Queue each entry for its endpoints and acknowledge it, atomically; returns the deliveries
        created (an entry already queued creates none)."""
        if not entries:
            return 0
        payload = [{"id": e.id, "type": e.type, "at": e.at, "body": e.body, "endpoints": list(e.endpoints)}
                   for e in entries]
        return int(await self._run("fill", GROUP, _lua_json(payload)))

    # --- deliveries ---------------------------------------------------------------------------
    async def claim(self, endpoint: str, *, max_in_flight: int, lease_ms: int, token: str) -> Claimed | Idle:
        res = await self._run("claim", endpoint, max_in_flight, lease_ms, token)
        if not _s(res[0]):
            wait = int(res[1])
            return Idle(None if wait < 0 else wait / 1000.0)
        return Claimed(id=_s(res[0]), endpoint=endpoint, body=_s(res[1]), attempts=int(res[2]),
                       failures=int(res[3]), event_id=_s(res[4]), type=_s(res[5]), token=token)

    async def done(self, delivery_id: str, status: int) -> bool:
        return bool(int(await self._run("done", delivery_id, status)))

    async def release(self, claimed: Claimed) -> bool:
        """Give a claimed delivery back unfinished (its holder stops): the next claim retries it."""
        return bool(int(await self._run("release", claimed.id, claimed.token)))

    async def fail(self, claimed: Claimed, *, status: int | None, error: str, dead: bool, delay_s: float,
                   max_attempts: int, dead_max: int) -> str:
        """Record a failed attempt: ``retry`` (the endpoint waits ``delay_s``), ``dead`` (refused or
        out of attempts) or ``stale`` (the lease was lost meanwhile; nothing changed)."""
        return _s(await self._run("fail", claimed.id, claimed.token, "" if status is None else status, error,
                                  "1" if dead else "0", int(delay_s * 1000), max_attempts, dead_max))

    # --- dead letters and figures -------------------------------------------------------------
    async def dead_letters(self, endpoints: Iterable[str], limit: int) -> list[dict[str, str]]:
        """The newest ``limit`` dead letters of ``endpoints``, newest first, without their bodies."""
        ranked: list[tuple[float, str]] = []
        for ep in endpoints:
            rows: Any = await self.redis.zrevrange(self.keys.webhook_dead(ep), 0, limit - 1, withscores=True)
            ranked.extend((float(score), _s(did)) for did, score in rows)
        ranked.sort(reverse=True)
        ids = [did for _, did in ranked[:limit]]
        async with self.redis.pipeline(transaction=False) as pipe:
            for did in ids:
                pipe.hgetall(self.keys.webhook_delivery(did))
            hashes: list[Any] = await pipe.execute()
        return [{_s(k): _s(v) for k, v in raw.items() if _s(k) not in ("body", "lease")} for raw in hashes if raw]

    async def delivery(self, delivery_id: str) -> dict[str, str] | None:
        raw = await self.redis.hgetall(self.keys.webhook_delivery(delivery_id))
        return {_s(k): _s(v) for k, v in raw.items()} if raw else None

    async def replay(self, delivery_id: str) -> bool:
        """A dead letter back in its outbox with its attempts reset; False if it is not one."""
        return bool(int(await self._run("replay", delivery_id, "", 0)))

    async def replay_all(self, endpoint: str, *, batch: int = 1000) -> int:
        """Every dead letter of ``endpoint`` back in its outbox; returns how many."""
        total = 0
        while True:
            n = int(await self._run("replay", "", endpoint, batch))
            total += n
            if n < batch:
                return total

    async def backlog(self, endpoints: Iterable[str]) -> dict[str, int]:
        """Deliveries waiting or under way, per endpoint."""
        names = list(endpoints)
        async with self.redis.pipeline(transaction=False) as pipe:
            for ep in names:
                pipe.zcard(self.keys.webhook_queue(ep))
            counts = await pipe.execute()
        return {ep: int(n) for ep, n in zip(names, counts, strict=True)}

    async def dead_counts(self, endpoints: Iterable[str]) -> dict[str, int]:
        names = list(endpoints)
        async with self.redis.pipeline(transaction=False) as pipe:
            for ep in names:
                pipe.zcard(self.keys.webhook_dead(ep))
            counts = await pipe.execute()
        return {ep: int(n) for ep, n in zip(names, counts, strict=True)}

    async def endpoint_state(self, endpoint: str) -> dict[str, str | int]:
        """The endpoint's state hash plus ``in_flight`` (deliveries under way)."""
        raw = await self.redis.hgetall(self.keys.webhook_endpoint(endpoint))
        out: dict[str, str | int] = {_s(k): _s(v) for k, v in raw.items()}
        out["in_flight"] = int(await self.redis.zcard(self.keys.webhook_inflight(endpoint)))
        return out


def _lua_json(payload: list[dict[str, Any]]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
