"""Which dial-plan version each worker runs and why a file did not load, in Redis for the API."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from ivr.queues.keys import Keys


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


@dataclass(frozen=True)
class PlanReport:
    """What one worker says of one plan: the version it runs (``active``: version, name, file,
    numbers) and the last load error (``error``: code, message, file, version, running, at), if
    any. Made from the worker's registry by :func:`ivr.dialplan.registry.plan_reports`."""

    plan: str
    active: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class DialplanStatus:
    """A worker's reporter: ``report`` runs whenever its plans change (:meth:`LiveRegistry.watch`)."""

    def __init__(self, redis: Redis, keys: Keys, worker: str) -> None:
        self.redis = redis
        self.keys = keys
        self.worker = worker

    async def report(self, reports: Iterable[PlanReport]) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        known = {_s(p) for p in await self.redis.smembers(self.keys.dialplans)}
        reported: set[str] = set()
        async with self.redis.pipeline(transaction=True) as pipe:
            for r in reports:
                reported.add(r.plan)
                pipe.sadd(self.keys.dialplans, r.plan)
                if r.active is not None:
                    pipe.hset(self.keys.dialplan_active(r.plan), self.worker, json.dumps({**r.active, "at": now}))
                else:
                    pipe.hdel(self.keys.dialplan_active(r.plan), self.worker)
                if r.error is not None:
                    pipe.hset(self.keys.dialplan_errors(r.plan), self.worker, json.dumps(r.error))
                else:
                    pipe.hdel(self.keys.dialplan_errors(r.plan), self.worker)
            for plan in known - reported:  # deleted plan files
                pipe.hdel(self.keys.dialplan_active(plan), self.worker)
                pipe.hdel(self.keys.dialplan_errors(plan), self.worker)
            await pipe.execute()

    async def clear(self) -> None:
        """A stopping worker runs no plan any more."""
        plans = {_s(p) for p in await self.redis.smembers(self.keys.dialplans)}
        async with self.redis.pipeline(transaction=True) as pipe:
            for plan in plans:
                pipe.hdel(self.keys.dialplan_active(plan), self.worker)
                pipe.hdel(self.keys.dialplan_errors(plan), self.worker)
            await pipe.execute()


@dataclass
class PlanStatus:
    """What the workers reported about one plan: ``workers`` worker -> active entry, ``errors``
    worker -> error entry (see :class:`ivr.queues.keys.Keys`)."""

    plan: str
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)


async def read_status(redis: Redis, keys: Keys) -> dict[str, PlanStatus]:
    out: dict[str, PlanStatus] = {}
    for plan in sorted(_s(p) for p in await redis.smembers(keys.dialplans)):
        active = await redis.hgetall(keys.dialplan_active(plan))
        errors = await redis.hgetall(keys.dialplan_errors(plan))
        out[plan] = PlanStatus(plan, {_s(w): json.loads(v) for w, v in active.items()},
                               {_s(w): json.loads(v) for w, v in errors.items()})
    return out
