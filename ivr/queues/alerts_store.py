"""Floor alerts in Redis (docs/alerts.md): the active alerts (one per rule and queue), the hysteresis
timers, the history, and the evaluator's lease. Every change is one Lua script
(``lua/scripts/alert_*.lua`` after ``lua/lib/alerts.lua``) that also emits ``alert.raised``,
``alert.acknowledged`` and ``alert.cleared`` on the event stream (the floor feed, the webhooks).

Only the API instance holding the lease evaluates (:meth:`AlertStore.lease`); :meth:`apply` refuses
the changes of an instance that lost it meanwhile (``alerts.not_leader``), so two evaluators never
raise the same alert twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ivr.core.errors import Conflict, IvrError, NotFound
from ivr.core.event_catalogue import VERSION
from ivr.queues.keys import Keys
from ivr.queues.scripts import lua_script, run_script
from ivr.queues.stats import Interval
from ivr.queues.store import QueueStore

HISTORY_MAX = 100_000  # alerts kept in the history at most (the oldest go first)
HISTORY_BUDGET = 5000  # history entries one page looks at, at most
SCRIPTS = ("lease", "apply", "ack", "queues", "agents")
QUEUE_BATCH = 50  # queues one alert_queues script reads (Redis stays responsive)


class NotLeader(Conflict):
    """The evaluator lost its lease between reading and applying: its changes were not made."""


_ERRORS: dict[str, type[IvrError]] = {"alert.not_found": NotFound, "alert.not_active": Conflict,
                                      "alerts.not_leader": NotLeader}


def alert_key(rule: str, queue: str | None) -> str:
    """The deduplication key: one active alert per rule and queue ("" for a system rule)."""
    return f"{rule}|{queue or ''}"


@dataclass
class Changes:
    """What one evaluation changes: alerts to raise (their fields, ``key`` included), alerts to clear
    (``key``, ``value``, ``message``), timers started (key -> since ms) and stopped."""

    raise_: list[dict[str, Any]] = field(default_factory=list)
    clear: list[dict[str, Any]] = field(default_factory=list)
    pending: dict[str, int] = field(default_factory=dict)
    unpend: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.raise_ or self.clear or self.pending or self.unpend)


@dataclass(frozen=True)
class QueueNow:
    """What the queue rules read of one queue: ``skill`` "" for a queue no call ever entered."""

    queue: str
    skill: str
    at_ms: int
    waiting: int
    oldest_ms: int | None
    intervals: list[Interval]

    @property
    def longest_wait_s(self) -> float:
        return round(max(0, self.at_ms - self.oldest_ms) / 1000, 3) if self.oldest_ms is not None else 0.0


@dataclass(frozen=True)
class HistoryPage:
    alerts: list[dict[str, Any]]
    next: tuple[int, str] | None  # (raised_at ms, id) of the last alert looked at, to go on from


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _alert(raw: Any) -> dict[str, Any]:
    a: dict[str, Any] = json.loads(_s(raw))
    for f in ("cleared_at", "acked_at"):
        if not isinstance(a.get(f), int):
            a[f] = None
    return a


class AlertStore:
    """The alerts section of the state layer (a small class over the store's Redis, like ``Outbox``)."""

    def __init__(self, redis: Redis, prefix: str = "ivr", events_maxlen: int = 100_000) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self._fixed = [prefix, str(events_maxlen), str(VERSION)]
        for name in SCRIPTS:  # made here, so a missing file fails the start, not a call
            lua_script(f"alert_{name}", ("alerts",))

    async def _run(self, name: str, *args: Any) -> Any:
        try:
            return await run_script(self.redis, lua_script(f"alert_{name}", ("alerts",)),
                                    [*self._fixed, *(str(a) for a in args)])
        except ResponseError as exc:
            code, _, msg = str(exc).partition(" ")
            err = _ERRORS.get(code)
            if err is None:
                raise
            raise err(msg or code, code=code) from exc

    # --- the evaluator ------------------------------------------------------------------------
    async def lease(self, owner: str, lease_ms: int) -> bool:
        """Take or renew the evaluator's lease; True when ``owner`` holds it now."""
        return bool(int(await self._run("lease", owner, lease_ms)))

    async def lease_holder(self) -> str | None:
        raw = await self.redis.get(self.keys.alerts_lease)
        return _s(raw) if raw is not None else None

    async def release(self, owner: str) -> None:
        """Give the lease up at a clean stop (another instance takes it at its next evaluation)."""
        if await self.lease_holder() == owner:
            await self.redis.delete(self.keys.alerts_lease)

    async def pending(self) -> dict[str, int]:
        """The hysteresis timers: key -> since when (epoch ms) the condition holds."""
        return {_s(k): int(_s(v)) for k, v in (await self.redis.hgetall(self.keys.alerts_pending)).items()}

    async def apply(self, owner: str, changes: Changes, *, now_ms: int, history_ms: int,
                    history_max: int = HISTORY_MAX) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Make ``changes`` in one step (409 ``alerts.not_leader`` if ``owner`` lost the lease): the
        alerts raised (deduplicated: not when one is active for the rule and queue) and cleared."""
        req = {"now": now_ms, "raise": changes.raise_, "clear": changes.clear,
               "pending": changes.pending, "unpend": changes.unpend}
        raw = json.loads(_s(await self._run("apply", owner, history_ms, history_max, json.dumps(req))))
        raised = raw.get("raised") or []
        cleared = raw.get("cleared") or []
        return ([_alert(json.dumps(a)) for a in raised] if isinstance(raised, list) else [],
                [_alert(json.dumps(a)) for a in cleared] if isinstance(cleared, list) else [])

    async def queues_now(self, queues: Sequence[str], since_s: int, counters: Sequence[str]) -> list[QueueNow]:
        """Callers waiting, the oldest one and the intervals starting at or after ``since_s`` of each
        queue (their ``counters`` only), :data:`QUEUE_BATCH` queues per script call."""
        out: list[QueueNow] = []
        fields = json.dumps(list(counters))
        for i in range(0, len(queues), QUEUE_BATCH):
            now, rows = await self._run("queues", since_s, fields, *queues[i:i + QUEUE_BATCH])
            for queue, skill, waiting, oldest, intervals in rows:
                out.append(QueueNow(_s(queue), _s(skill), int(now), int(waiting), int(_s(oldest)) if oldest else None,
                                    [Interval.from_hash({**dict(zip(h[::2], h[1::2], strict=True)), "length_s": 0})
                                     for h in intervals]))
        return out

    async def agents_by_skill(self) -> dict[str, dict[str, int]]:
        """Agents per skill and state (one pass over the agents)."""
        raw = json.loads(_s(await self._run("agents")))
        return {str(skill): {str(st): int(n) for st, n in states.items()} for skill, states in raw.items()}

    # --- reading and acknowledging -------------------------------------------------------------
    async def active(self) -> list[dict[str, Any]]:
        """The active alerts, most severe first, then oldest first."""
        order = {"critical": 0, "warning": 1, "info": 2}
        alerts = [_alert(v) for v in (await self.redis.hgetall(self.keys.alerts_active)).values()]
        return sorted(alerts, key=lambda a: (order.get(a.get("severity", ""), 3), a.get("raised_at") or 0,
                                             a.get("id", "")))

    async def active_keys(self) -> dict[str, dict[str, Any]]:
        return {_s(k): _alert(v) for k, v in (await self.redis.hgetall(self.keys.alerts_active)).items()}

    async def get(self, alert_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self.keys.alert(alert_id))
        return _alert(raw) if raw is not None else None

    async def acknowledge(self, alert_id: str, *, by: str, now_ms: int) -> dict[str, Any]:
        """Acknowledge an active alert (who and when); 404 ``alert.not_found``, 409 ``alert.not_active``
        once it cleared. Acknowledging twice keeps the first."""
        return _alert(await self._run("ack", alert_id, by, now_ms))

    async def history(self, *, since_ms: int, until_ms: int, queue: str = "", rule: str = "",
                      severities: Sequence[str] = (), after: tuple[int, str] | None = None, limit: int = 100,
                      budget: int = HISTORY_BUDGET) -> HistoryPage:
        """Alerts raised in [since_ms, until_ms), newest first, after ``after``, filtered; at most
        ``budget`` are looked at per page (a short page then says where to go on)."""
        out: list[dict[str, Any]] = []
        looked = 0
        last = after
        while looked < budget and len(out) < limit:
            rows = await self._rows(last, since_ms, until_ms, min(500, budget - looked))
            if not rows:
                return HistoryPage(out, None)
            raws = await self.redis.mget([self.keys.alert(i) for i, _ in rows])
            for (rid, score), raw in zip(rows, raws, strict=True):
                looked += 1
                last = (score, rid)
                if raw is None:
                    continue
                a = _alert(raw)
                if (queue and a.get("queue") != queue) or (rule and a.get("rule") != rule) or (
                        severities and a.get("severity") not in severities):
                    continue
                out.append(a)
                if len(out) >= limit:
                    return HistoryPage(out, last)
        return HistoryPage(out, last)

    async def _rows(self, after: tuple[int, str] | None, since_ms: int, until_ms: int,
                    n: int) -> list[tuple[str, int]]:
        """Up to ``n`` history entries (id, raised_at) newest first: after the entry ``after`` (by its
        rank now: alerts raised in the same millisecond are not skipped), else from ``until_ms``."""
        key = self.keys.alerts_history
        rank: Any = await self.redis.zrevrank(key, after[1]) if after is not None else None
        raw: Any
        if rank is not None:
            raw = await self.redis.zrevrange(key, int(rank) + 1, int(rank) + n, withscores=True)
        else:  # no cursor, or its entry left the history meanwhile: by time
            hi = f"({until_ms}" if after is None else f"({after[0]}"
            raw = await self.redis.zrevrangebyscore(key, hi, since_ms, start=0, num=n, withscores=True)
        rows = [(_s(m), int(sc)) for m, sc in raw]
        return [(m, sc) for m, sc in rows if since_ms <= sc < until_ms] if rank is not None else rows


async def worker_capacity(store: QueueStore, max_workers: int) -> tuple[int, int]:
    """(calls held, caller slots) of the live workers (the first ``max_workers`` by name): what the
    workers' heartbeats say (``register_worker(slots=)``; a draining worker has 0 slots)."""
    names = (await store.worker_names())[:max_workers]
    if not names:
        return 0, 0
    keys = store.keys
    async with store.redis.pipeline(transaction=False) as pipe:
        for w in names:
            pipe.exists(keys.worker_alive(w))
            pipe.get(keys.worker_slots(w))
            pipe.scard(keys.worker_calls(w))
        res = await pipe.execute()
    slots = busy = 0
    for i in range(len(names)):
        alive, s, calls = res[3 * i:3 * i + 3]
        if alive:
            slots += int(s or 0)
            busy += int(calls or 0)
    return busy, slots


def counts(alerts: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Active alerts per severity (every severity present, zero or not)."""
    out = {"info": 0, "warning": 0, "critical": 0}
    for a in alerts:
        sev = str(a.get("severity", ""))
        if sev in out:
            out[sev] += 1
    return out
