"""Queue, agent and call state in Redis: the one API the workers and the CTI API use."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ivr.core import campaign_states as cps
from ivr.core import case_states as cs
from ivr.core import commands
from ivr.core.config import Role
from ivr.core.errors import BadRequest, Conflict, IvrError, NotFound, TimedOut, Unavailable
from ivr.core.events import AGENT_SETTABLE, AgentState
from ivr.core.sip_auth import SipCredential
from ivr.queues.allow import lua_patterns
from ivr.queues.dialplan_status import PlanStatus, read_status
from ivr.queues.estimate import QueueHistory, WaitEstimate, estimate_wait
from ivr.queues.keys import Keys
from ivr.queues.routing import Route
from ivr.queues.scripts import Scripts
from ivr.queues.stats import Interval, QueueStats, StatsConfig, start_of_today

FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")  # a plain call field set with end_call (journey, rtp)

_ERRORS: dict[str, type[IvrError]] = {
    "call.not_found": NotFound,
    "agent.not_found": NotFound,
    "agent.busy": Conflict,
    "agent.not_in_wrapup": Conflict,
    "agent.wrapup_max": Conflict,
    "offer.stale": Conflict,
    "callback.not_found": NotFound,
    "callback.not_pending": Conflict,
    "record.too_large": BadRequest,
    "queue.no_agents": Conflict,
    "call.ended": Conflict,
    "call.gone": Conflict,
    "call.bad_transition": Conflict,
    "call.wrong_state": Conflict,
    "monitor.active": Conflict,
    "monitor.none": Conflict,
    "agent.not_available": Conflict,
    "queue.no_agent_available": Conflict,
    "request.invalid": BadRequest,
    "call.exists": Conflict,
    "agent.no_phone": Conflict,
    "worker.unavailable": Unavailable,
    "idempotency.mismatch": Conflict,
    "case.not_found": NotFound,
    "case.bad_transition": Conflict,
    "case.invalid": BadRequest,
    "case.task_gone": Conflict,
    "case.no_number": Conflict,
    "campaign.not_found": NotFound,
    "campaign.bad_transition": Conflict,
    "campaign.invalid": BadRequest,
    "recording.exists": Conflict,
}
AUDIT_MAXLEN = 1_000_000
#: a page of recordings, and where the next starts (``(started_at, id)`` of its last), None at the end
RecordingPage = tuple[list[dict[str, Any]], tuple[int, str] | None]

#: The most cases one page of the case list looks at (``case_list.lua``): a script's running time is bounded.
CASE_LIST_BUDGET = 2000


@dataclass(frozen=True)
class Offer:
    """A reservation of an agent for a waiting call, handed to the worker that holds the call.

    A callback's offer (``kind`` "callback") goes to a worker chosen for it, which dials ``number``
    first (see :mod:`ivr.calls.callback`); ``call_id`` is then the callback's id. A click-to-dial
    call's (``kind`` "outbound", :mod:`ivr.calls.originate`) rings the agent first, then ``number``
    with ``caller_id``."""

    offer_id: str
    call_id: str
    agent_id: str
    sip_uri: str
    queue: str
    kind: str = "call"
    dial: bool = False  # a callback's first offer on a worker: dial the customer
    number: str = ""
    hotline: str = ""
    language: str = ""
    caller_id: str = ""
    plan: str = ""  # an automated call's (kind "dialout"): the plan id to run when the customer answers
    variables: Mapping[str, str] = dataclasses.field(default_factory=dict)  # seeded into that plan
    ring_s: float = 0  # how long its customer's phone may ring (0: callbacks.ring_timeout_s)

    @property
    def is_callback(self) -> bool:
        return self.kind == "callback"

    @property
    def is_outbound(self) -> bool:
        return self.kind == "outbound"

    @property
    def is_dialout(self) -> bool:
        return self.kind == "dialout"

    @classmethod
    def from_json(cls, raw: str | bytes) -> Offer:
        d = json.loads(raw)
        variables = json.loads(d.get("variables") or "{}")
        if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
            raise ValueError("an offer's variables must be a JSON object of strings")
        return cls(d["offer_id"], d["call_id"], d["agent_id"], d["sip_uri"], d["queue"], d.get("kind", "call"),
                   bool(d.get("dial", False)), d.get("number", ""), d.get("hotline", ""), d.get("language", ""),
                   d.get("caller_id", ""), d.get("plan", ""), variables, float(d.get("ring_s") or 0))


@dataclass(frozen=True)
class FollowUp:
    """The follow-up (回访) a close schedules: ``mode`` task or call (``plan``: the dial plan id it
    plays), due at ``at_ms``; ``attempts`` calls at most, ``retry_after_ms`` apart, ``ring_s`` each."""

    mode: Literal["task", "call"]
    at_ms: int
    plan: str = ""
    attempts: int = 3
    retry_after_ms: int = 3_600_000
    ring_s: int = 30

    def script_args(self) -> list[Any]:
        if self.mode not in ("task", "call"):
            raise cs.invalid("follow-up mode must be task or call")
        if self.mode == "call" and not cs.PLAN_ID.fullmatch(self.plan):
            raise cs.invalid("a follow-up call needs its dial plan's id")
        cs.check_ms("at_ms", self.at_ms)
        for name, value, low, high in (("attempts", self.attempts, 1, 10),
                                       ("retry_after_ms", self.retry_after_ms, 60_000, 7 * 86_400_000),
                                       ("ring_s", self.ring_s, 5, 120)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise cs.invalid(f"{name} must be {low}-{high}")
        return [self.mode, self.at_ms, self.plan, self.attempts, self.retry_after_ms, self.ring_s]


@dataclass(frozen=True)
class StreamEvent:
    id: str
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class CallQuery:
    """The filters of the call list (:meth:`QueueStore.list_calls`, applied by ``calls_page.lua``).
    Times are epoch ms, ``to_ms`` excluded; ``queue`` is the record's (last) queue; ``number``
    matches the caller (``ani``), the dialled number (``dnis``) or the number a callback or an
    outbound call dials (``number``), exactly or, with ``number_prefix``, as a prefix; ``direction``
    inbound matches records without one. Empty strings match everything."""

    from_ms: int = 0
    to_ms: int = 2**53
    agent_id: str = ""
    queue: str = ""
    number: str = ""
    number_prefix: bool = False
    outcome: str = ""
    direction: str = ""


@dataclass(frozen=True)
class CallPage:
    """One page of the call list, newest first: the records (hashes as strings) and where the next
    page starts (``(started_ms, call_id)`` of the last call looked at), None when there is no more."""

    calls: list[dict[str, str]]
    next: tuple[int, str] | None


def _offer(result: Any) -> Offer | None:
    return Offer.from_json(result) if result else None


class QueueStore:
    def __init__(self, redis: Redis, prefix: str = "ivr", events_maxlen: int = 100_000,
                 stats: StatsConfig | None = None) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.stats_config = stats or StatsConfig()
        self._scripts = Scripts(redis, prefix, events_maxlen, self.stats_config.to_json())

    async def _run(self, name: str, *args: Any, errors: Mapping[str, type[IvrError]] | None = None) -> Any:
        """Run a script; its ``code message`` errors become the :class:`IvrError` of ``_ERRORS`` (or of
        ``errors``, a section's own codes)."""
        try:
            return await self._scripts.run(name, *args)
        except ResponseError as exc:
            code, _, msg = str(exc).partition(" ")
            err = (errors or {}).get(code) or _ERRORS.get(code)
            if err is None:
                raise
            raise err(msg or code, code=code) from exc

    # --- calls -----------------------------------------------------------------------------
    async def call_start(self, call_id: str, worker: str, *, ani: str, dnis: str, hotline: str,
                         language: str, plan_version: str, cases_for: int = 0) -> list[dict[str, Any]] | None:
        """Record the new call. With ``cases_for`` (1-20) and a caller number as cases hold it, the
        caller's unfinished cases come back with it, as :meth:`open_cases_for` gives them (one round
        trip for a call's start); None when not asked, not a number, or the look-up failed."""
        want = cases_for if cases_for > 0 and cs.CUSTOMER.fullmatch(ani) else 0
        res = await self._run("call_start", call_id, worker, ani, dnis, hotline, language, plan_version,
                              min(want, cs.CUSTOMER_CASES_KEEP))
        if not want or not isinstance(res, list) or len(res) < 2 or int(res[1]) != 1:
            return None
        return [_case(c) for c in res[2:]]

    async def update_journey(self, call_id: str, journey: Mapping[str, Any]) -> None:
        await self.redis.hset(self.keys.call(call_id), "journey", json.dumps(journey))

    async def enqueue(self, call_id: str, *, queue: str, skill: str, priority: int,
                      journey: Mapping[str, Any], route: Route | None = None) -> Offer | None:
        """Queue the call and offer it at once when an agent can take it (the offer also goes to the
        worker's inbox). ``route`` says who may take it and how the agent is chosen (see
        :mod:`ivr.queues.routing`); without it: agents with ``skill``, longest idle first.
        ``queue.no_agents`` (Conflict) when the route falls back with nobody logged in to take it."""
        route = route or Route.skill(skill)
        return _offer(await self._run("enqueue", call_id, queue, skill, priority, json.dumps(journey),
                                      route.to_json(), route.stages_json()))

    async def leave_queue(self, call_id: str, reason: str) -> bool:
        """Take a waiting call out of its queue (back in the IVR). False when it is not waiting:
        an offer is in flight (let it play out), or the call is connected or over."""
        return bool(int(await self._run("leave_queue", call_id, reason)))

    async def offer_answered(self, call_id: str, offer_id: str) -> str:
        return _s(await self._run("offer_answered", call_id, offer_id))

    async def offer_failed(self, call_id: str, offer_id: str, reason: str) -> Offer | None:
        return _offer(await self._run("offer_failed", call_id, offer_id, reason))

    async def call_control(self, call_id: str, op: str, *, by: str, a1: str = "", a2: str = "",
                           wrapup_s: float = 0) -> dict[str, Any]:
        """Record a call-control step (hold, resume, mute, unmute, transfer, consult, consult_answered,
        consult_swap, consult_cancel, consult_failed, consult_complete, conference, conference_leave,
        and live supervision's monitor_start, monitor_answered, monitor_change, monitor_stop:
        see ``lua/scripts/call_control.lua``) with its agents' states and events, atomically. Returns
        ``{"changed": bool, ...}``; Conflict ``call.wrong_state`` / ``agent.not_available`` /
        ``queue.no_agent_available``, NotFound ``agent.not_found`` when it cannot be done."""
        res = await self._run("call_control", call_id, op, by, a1, a2, wrapup_s)
        out: dict[str, Any] = json.loads(res)
        return out

    async def agent_left(self, call_id: str, *, wrapup_s: float) -> str | None:
        """The agent's leg of a connected call ended and the caller stays in the plan (e.g. a survey):
        the agent goes to wrap-up (available at once with ``wrapup_s`` 0) and ``call.agent_left`` is
        emitted; the call is back in the IVR. Returns the agent id, or None when the call was not
        connected (nothing changes: calling it twice, or after ``end_call``, is harmless)."""
        res = await self._run("agent_left", call_id, wrapup_s)
        return _s(res) if res else None

    async def end_call(self, call_id: str, *, reason: str, wrapup_s: float, ttl_s: int,
                       resume_s: int = 0, fields: Mapping[str, str] | None = None) -> str | None:
        """End the call; a caller hanging up while waiting keeps its place ``resume_s`` seconds for a
        redial from the same number to the same queue (``call.place_restored`` when it comes).
        ``fields`` (plain fields such as the journey) are set on the record first, in the same script."""
        pairs: list[str] = []
        for name, value in (fields or {}).items():
            if not FIELD_NAME.fullmatch(name):
                raise ValueError(f"not a plain call field: {name!r}")
            pairs += [name, value]
        res = await self._run("end_call", call_id, reason, wrapup_s, ttl_s, resume_s, *pairs)
        return _s(res) if res else None

    async def set_call_field(self, call_id: str, field: str, value: str) -> None:
        await self.redis.hset(self.keys.call(call_id), field, value)

    async def get_call(self, call_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(self.keys.call(call_id))
        if not raw:
            return None
        call: dict[str, Any] = {_s(k): _s(v) for k, v in raw.items()}
        call["journey"] = json.loads(call.get("journey") or "{}")
        for name in ("voicemail", "variables", "crm"):  # JSON written by the record_* scripts
            if name in call:
                call[name] = json.loads(call[name])
        if "csat" in call:
            call["csat"] = int(call["csat"])
        return call

    async def list_calls(self, query: CallQuery, *, limit: int, after: tuple[int, str] | None = None,
                         budget: int = 1000) -> CallPage:
        """Calls that started in [query.from_ms, query.to_ms), newest first (ties: by id, descending),
        passing ``query``, after the position ``after`` (a page's ``next``), at most ``limit``.

        One read-only script (``calls_page.lua``) walks one index (``Keys.agent_calls`` with an
        agent, else ``Keys.queue_calls`` with a queue, else ``Keys.calls_index``) by rank from just
        after the position, checking the filters on a few fields of each record inside Redis; then
        the whole records of the calls that passed are read. A page costs O(log n + entries looked
        at) whatever the number of calls kept, and calls that start meanwhile (newer than the
        position) never shift the pages. At most ``budget`` entries are looked at: with a filter few
        calls pass, a page may come back short with a ``next`` to go on from. Entries whose record
        expired are skipped."""
        if limit < 1:
            return CallPage([], None)
        index, name = (("agent", query.agent_id) if query.agent_id
                       else ("queue", query.queue) if query.queue else ("all", ""))
        res = await self._run("calls_page", index, name, query.from_ms, query.to_ms - 1,
                              "" if after is None else after[0], "" if after is None else after[1],
                              limit, budget, json.dumps({
                                  "queue": query.queue, "outcome": query.outcome, "direction": query.direction,
                                  "number": query.number, "prefix": query.number_prefix}))
        more, last_s, last_id, ids = int(res[0]), _s(res[1]), _s(res[2]), [_s(c) for c in res[3:]]
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.hgetall(self.keys.call(cid))
            rows = await pipe.execute()
        calls = [{_s(k): _s(v) for k, v in raw.items()} for raw in rows if raw]
        return CallPage(calls, (int(last_s), last_id) if more and last_s else None)

    async def stored_crm(self, call_id: str) -> dict[str, Any] | None:
        """The CRM match stored on the call record (see :meth:`record_crm`), if any."""
        raw = await self.redis.hget(self.keys.call(call_id), "crm")
        return _json_object(_s(raw)) if raw else None

    async def record_crm(self, call_id: str, crm: Mapping[str, Any], *, agent_id: str) -> bool:
        """Store the settled CRM match of the call once (emits ``call.crm_matched``); False when it
        already had one or the call has no record."""
        found = crm.get("record")
        record: Mapping[str, Any] = found if isinstance(found, dict) else {}
        return bool(await self._run("record_crm", call_id, json.dumps(crm), str(crm.get("status", "")),
                                    str(crm.get("lookup") or ""), str(record.get("id", "")), agent_id))

    # --- small reads and writes the API needs (so only this layer talks to Redis) ---------------
    async def token_owner(self, digest: str) -> tuple[str, Role] | None:
        """(agent id, role) of the API-made token whose sha256 is ``digest``, if any."""
        raw = await self.redis.hget(self.keys.tokens, digest)
        if not raw:
            return None
        data = json.loads(raw)
        return str(data["id"]), data["role"]

    async def ping(self) -> bool:
        """Whether Redis answers (readiness)."""
        return bool(await self.redis.ping())

    async def agent_states(self, agent_ids: Sequence[str]) -> list[str | None]:
        """The state of each agent (None for one deleted meanwhile), in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for agent_id in agent_ids:
                pipe.hget(self.keys.agent(agent_id), "state")
            states = await pipe.execute()
        return [None if raw is None else _s(raw) for raw in states]

    async def plan_statuses(self) -> dict[str, PlanStatus]:
        """What the workers reported about each dial plan (:mod:`ivr.queues.dialplan_status`)."""
        return await read_status(self.redis, self.keys)

    async def plan_known(self, plan: str) -> bool:
        return bool(await self.redis.sismember(self.keys.dialplans, plan))

    async def crm_cached(self, digest: str) -> str | None:
        """The CRM reply cached under a request's digest (JSON), if any."""
        raw = await self.redis.get(self.keys.crm_cache(digest))
        return None if raw is None else _s(raw)

    async def cache_crm(self, digest: str, reply_json: str, ttl_s: int) -> None:
        await self.redis.set(self.keys.crm_cache(digest), reply_json, ex=ttl_s)

    async def claim_crm_warming(self, digest: str, ttl_ms: int) -> bool:
        """True for the one API instance that may warm this request now."""
        return bool(await self.redis.set(self.keys.crm_warming(digest), "1", nx=True, px=ttl_ms))

    async def active_calls(self) -> set[str]:
        return {_s(c) for c in await self.redis.smembers(self.keys.active_calls)}

    # --- the call record: survey, voicemail, variables (values are checked by the caller) ----------
    async def record_csat(self, call_id: str, csat: int) -> None:
        """Store the survey score on the call and emit ``call.csat``."""
        await self._run("record_csat", call_id, csat)

    async def record_voicemail(self, call_id: str, meta: Mapping[str, Any], *, keep: int) -> dict[str, Any]:
        """Store voicemail metadata ``{mailbox, path, seconds, ended_by}`` on the call, put it at the
        head of the mailbox's list (``keep`` newest are kept) and emit ``voicemail.new``."""
        entry: dict[str, Any] = json.loads(_s(await self._run("record_voicemail", call_id, json.dumps(dict(meta)),
                                                                keep)))
        return entry

    async def record_variables(self, call_id: str, variables: Mapping[str, str], *, max_bytes: int) -> dict[str, str]:
        """Merge ``variables`` into the call's; ``record.too_large`` if the result exceeds ``max_bytes``."""
        merged: dict[str, str] = json.loads(_s(await self._run("record_variables", call_id,
                                                               json.dumps(dict(variables)), max_bytes)))
        return merged

    async def record_field(self, call_id: str, field: str, value: str) -> None:
        """Set a plain field on an existing call (``call.not_found`` otherwise)."""
        await self._run("record_field", call_id, field, value)

    async def record_disposition(self, call_id: str, disposition: str, notes: str, by: str, *,
                                 crm_record_id: str | None = None, agent_id: str = "") -> None:
        """An agent's wrap-up on the call record (``agent_id``'s part; default the call's agent), and
        ``call.disposition`` on the event stream (to that agent's desktop; with the CRM record the
        agent confirmed, when given)."""
        await self._run("record_disposition", call_id, disposition, notes, by, crm_record_id or "", agent_id)

    async def voicemails(self, mailbox: str, limit: int = 100) -> list[dict[str, Any]]:
        """The mailbox's voicemail entries, newest first."""
        return [json.loads(e) for e in await self.redis.lrange(self.keys.mailbox(mailbox), 0, max(limit, 1) - 1)]

    # --- callbacks -------------------------------------------------------------------------
    async def request_callback(self, call_id: str, *, callback_id: str, queue: str, number: str,
                               journey: Mapping[str, Any], priority: int | None = None,
                               route: Route | None = None, ttl_s: int = 7 * 24 * 3600) -> tuple[str, int, bool]:
        """Book a callback keeping the caller's place in ``queue``; returns (id, place, created). A call
        has at most one pending callback: asking again returns that one with ``created`` False.

        When the call ends the callback competes for agents at that place (``callback.queued``);
        ``route`` says who may take it (default: the call's route when it waited in ``queue``, else
        agents with the skill named like the queue)."""
        res = await self._run("callback_request", call_id, callback_id, queue, number, json.dumps(dict(journey)),
                              "" if priority is None else priority, route.to_json() if route else "", ttl_s)
        return _s(res[0]), int(res[1]), bool(int(res[2]))

    async def get_callback(self, callback_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(self.keys.callback(callback_id))
        return _callback(raw) if raw else None

    async def list_callbacks(self, queue: str) -> list[dict[str, Any]]:
        """The queue's pending callbacks, best place first."""
        ids = await self.redis.zrange(self.keys.callbacks(queue), 0, -1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for cb_id in ids:
                pipe.hgetall(self.keys.callback(_s(cb_id)))
            rows = await pipe.execute()
        return [_callback(r) for r in rows if r]

    async def cancel_callback(self, callback_id: str, *, by: str = "", ttl_s: int = 7 * 24 * 3600) -> None:
        """Cancel a pending callback (``callback.not_found`` / ``callback.not_pending`` otherwise,
        also while a worker is calling it)."""
        await self._run("callback_cancel", callback_id, by, ttl_s)

    async def callback_dialing(self, call_id: str, offer_id: str) -> int:
        """The worker dials the callback's customer; returns the attempt number (``callback.dialing``)."""
        return int(await self._run("callback_dialing", call_id, offer_id))

    async def callback_confirmed(self, call_id: str, offer_id: str) -> None:
        """The customer answered and confirmed (``callback.connected``); the agent is rung next."""
        await self._run("callback_confirmed", call_id, offer_id)

    async def callback_retry(self, call_id: str, offer_id: str, reason: str, *, retry_after_s: float,
                             max_attempts: int) -> str:
        """The customer was not reached: the agent is available again and the callback competes at
        its place after ``retry_after_s``; ``failed`` once ``max_attempts`` dialled attempts were made
        (``superseded`` when the caller called again meanwhile). Returns retry, failed or superseded."""
        return _s(await self._run("callback_retry", call_id, offer_id, reason, retry_after_s, max_attempts))

    async def release_due_callbacks(self, limit: int = 20) -> int:
        """Put callbacks whose retry is due back at their place (housekeeping does it too)."""
        return int(await self._run("callbacks_due", limit))

    # --- click-to-dial (ivr.calls.originate, ivr.cti.originate) ------------------------------
    async def originate(self, call_id: str, *, agent_id: str, number: str, caller_id: str, hotline: str,
                        queue: str, by: str, idempotency: str = "", request: str = "",
                        idempotency_ttl_s: int = 86400) -> tuple[bool, str, str, str]:
        """Place a click-to-dial call for ``agent_id`` (reserved at once) on a live worker with a free
        slot. ``idempotency``: a digest of the user and its Idempotency-Key; a retry with the same one
        and the same ``request`` digest gets the first call back. Returns (new, call id, state, worker).
        NotFound ``agent.not_found``; Conflict ``agent.not_available``, ``agent.no_phone``,
        ``idempotency.mismatch``; Unavailable ``worker.unavailable``."""
        res = await self._run("originate", call_id, agent_id, number, caller_id, hotline, queue, by,
                              idempotency, request or "-", idempotency_ttl_s)
        return _s(res[0]) == "new", _s(res[1]), _s(res[2]), _s(res[3])

    async def originate_agent_answered(self, call_id: str, offer_id: str, caller_id: str) -> None:
        """The agent answered; the customer is dialled now (``call.dialing``). ``offer.stale`` when the
        call is no longer dialing (ended meanwhile)."""
        await self._run("originate_agent_answered", call_id, offer_id, caller_id)

    async def originate_connected(self, call_id: str, offer_id: str) -> str:
        """The customer answered: the call is connected (``call.answered``)."""
        return _s(await self._run("originate_connected", call_id, offer_id))

    async def originate_failed(self, call_id: str, offer_id: str, *, outcome: str, reason: str,
                               agent_state: str, ttl_s: int) -> str | None:
        """The call never connected: ended with ``outcome``, the agent to ``agent_state``. None when
        it was not dialing any more."""
        res = await self._run("originate_failed", call_id, offer_id, outcome, reason, agent_state, ttl_s)
        return _s(res) if res else None

    # --- automated calls (lua/lib/dialout.lua, ivr.calls.dialout) --------------------------------
    async def dialout_start(self, call_id: str, *, number: str, plan: str, purpose: str, caller_id: str = "",
                            hotline: str = "", language: str = "", variables: Mapping[str, str] | None = None,
                            ring_s: float = 0, queue: str = "", case_id: str = "", campaign: str = "",
                            record: str = "") -> str:
        """Place an automated call: a worker dials ``number`` and runs plan ``plan`` (a plan id) when
        it is answered, with ``variables`` seeded. ``purpose`` (``followup``, ``campaign``; ``test``)
        names whose hook in ``lua/lib/dialout.lua`` hears how it went. Returns the worker.
        Unavailable ``worker.unavailable`` when no worker has a free call slot."""
        spec = {"number": number, "plan": plan, "purpose": purpose, "caller_id": caller_id, "hotline": hotline,
                "language": language, "variables": json.dumps(dict(variables or {}), ensure_ascii=False),
                "ring_s": ring_s, "queue": queue, "case_id": case_id, "campaign": campaign, "record": record}
        return _s(await self._run("dialout_start", call_id, json.dumps(spec, ensure_ascii=False)))

    async def dialout_answered(self, call_id: str, offer_id: str) -> bool:
        """The customer answered: the call is in its plan (state ``ivr``). False when the offer is stale."""
        return bool(await self._run("dialout_answered", call_id, offer_id))

    async def dialout_failed(self, call_id: str, offer_id: str, *, outcome: Literal["busy", "no_answer", "failed"],
                             reason: str, ttl_s: int) -> str | None:
        """The customer was not reached: the record ends with ``outcome`` and its owner hears of it.
        None when it was not dialing any more."""
        res = await self._run("dialout_failed", call_id, offer_id, outcome, reason, ttl_s)
        return _s(res) if res else None

    # --- cases (complaints; lua/lib/cases.lua, ivr.core.case_states) ----------------------------
    # Every value is checked here (BadRequest ``case.invalid``) before its script runs; the scripts
    # check again, cheaply. ``now_ms`` (epoch ms) runs a script at that time instead of the Redis
    # server's clock (tests drive deadlines with it). Cases come back as :func:`_case` decodes them.
    async def open_case(self, *, tier: str, reason: str, customer: str, opened_by: str, due_at_ms: int,
                        hotline: str = "", owner: str = "", call_id: str = "", crm_id: str = "",
                        customer_name: str = "", now_ms: int | None = None) -> dict[str, Any]:
        """Open a case (status open, id ``CS<n>``) due at ``due_at_ms``, linked to ``call_id`` when
        given (the call record gets ``case_id``); emits ``case.opened``."""
        case, _ = await self._open_case(False, tier=tier, reason=reason, customer=customer, opened_by=opened_by,
                                        due_at_ms=due_at_ms, hotline=hotline, owner=owner, call_id=call_id,
                                        crm_id=crm_id, customer_name=customer_name, now_ms=now_ms)
        return case

    async def open_or_join_case(self, *, tier: str, reason: str, customer: str, opened_by: str, due_at_ms: int,
                                hotline: str = "", owner: str = "", call_id: str = "", crm_id: str = "",
                                customer_name: str = "",
                                now_ms: int | None = None) -> tuple[dict[str, Any], bool]:
        """Like :meth:`open_case`, but a customer who has an unfinished case (open, contacted,
        reopened) gets no second one: the newest is taken (unchanged; ``call_id`` is linked to it,
        ``case.call_linked``). Returns the case and whether it existed. One script: two calls of one
        customer at once cannot open two cases."""
        return await self._open_case(True, tier=tier, reason=reason, customer=customer, opened_by=opened_by,
                                     due_at_ms=due_at_ms, hotline=hotline, owner=owner, call_id=call_id,
                                     crm_id=crm_id, customer_name=customer_name, now_ms=now_ms)

    async def _open_case(self, join: bool, *, tier: str, reason: str, customer: str, opened_by: str,
                         due_at_ms: int, hotline: str, owner: str, call_id: str, crm_id: str, customer_name: str,
                         now_ms: int | None) -> tuple[dict[str, Any], bool]:
        cs.check_tier(tier)
        cs.check_text("reason", reason, cs.REASON_MAX, empty=False)
        cs.check_pattern("customer", customer, cs.CUSTOMER, empty=True)
        cs.check_pattern("opened_by", opened_by, cs.ACTOR)
        cs.check_ms("due_at_ms", due_at_ms)
        cs.check_text("hotline", hotline, cs.HOTLINE_MAX)
        cs.check_pattern("owner", owner, cs.AGENT, empty=True)
        cs.check_pattern("call_id", call_id, cs.CALL_ID, empty=True)
        cs.check_text("crm_id", crm_id, cs.CRM_ID_MAX)
        cs.check_text("customer_name", customer_name, cs.CUSTOMER_NAME_MAX)
        existing, case = await self._run("case_open", tier, reason, customer, customer_name, crm_id, hotline, owner,
                                         opened_by, call_id, due_at_ms, _now(now_ms), "1" if join else "")
        return _case(case), _s(existing) == "1"

    async def open_cases_for(self, customer: str, limit: int = 5) -> list[dict[str, Any]]:
        """The customer's unfinished cases (open, contacted, reopened), newest first (by
        ``opened_at``), ``limit`` (1-20) at most: how a repeat caller is recognised. ``customer`` is
        a number as cases hold it (``+`` and digits, ``*``, ``#``; else BadRequest ``case.invalid``);
        "" (an anonymous caller) has none. The index (``Keys.customer_cases``) keeps a customer's
        newest 20."""
        if customer == "":
            return []
        cs.check_pattern("customer", customer, cs.CUSTOMER)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= cs.CUSTOMER_CASES_KEEP:
            raise cs.invalid(f"limit must be 1-{cs.CUSTOMER_CASES_KEEP}")
        return [_case(c) for c in await self._run("case_customer", customer, limit)]

    async def get_case(self, case_id: str) -> dict[str, Any] | None:
        """The case, None when there is none with that id."""
        raw = await self.redis.hgetall(self.keys.case(cs.check_case_id(case_id)))
        return _case({_s(k): _s(v) for k, v in raw.items()}) if raw else None

    async def list_cases(self, *, status: str | None = None, owner: str | None = None, tier: str | None = None,
                         due: Literal["soon", "overdue"] | None = None, soon_ms: int = 900_000,
                         limit: int = 50, before: tuple[int, str] | None = None,
                         now_ms: int | None = None) -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
        """Cases passing the filters, newest first by ``opened_at`` (ties by id, descending), after the
        position ``before`` (the cursor a page returned), at most ``limit`` (1-200). ``due`` soon:
        open or reopened cases due in [now, now + soon_ms]; overdue: open or reopened, due before now.
        Returns the page and the cursor of the next one (None: no more). One read-only script
        (``case_list.lua``) looks at :data:`CASE_LIST_BUDGET` cases at most: a page with a rare
        filter may come back short (even empty) with a cursor to go on from."""
        if status is not None:
            cs.check_status(status)
        if owner is not None:
            cs.check_pattern("owner", owner, cs.AGENT)
        if tier is not None:
            cs.check_tier(tier)
        if due not in (None, "soon", "overdue"):
            raise cs.invalid("due must be soon or overdue")
        if isinstance(soon_ms, bool) or not isinstance(soon_ms, int) or not 0 <= soon_ms <= 366 * 86_400_000:
            raise cs.invalid("soon_ms must be 0 to a year")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= cs.LIST_MAX:
            raise cs.invalid(f"limit must be 1-{cs.LIST_MAX}")
        if before is not None:
            if not (isinstance(before, tuple) and len(before) == 2):
                raise cs.invalid("the cursor is (opened_at ms, case id)")
            cs.check_ms("cursor", before[0])
            cs.check_case_id(before[1])
        res = await self._run("case_list", status or "", owner or "", tier or "", due or "", soon_ms, limit,
                              "" if before is None else before[0], "" if before is None else before[1],
                              _now(now_ms), CASE_LIST_BUDGET)
        more, last_s, last_id = int(res[0]), _s(res[1]), _s(res[2])
        cases = [_case(c) for c in res[3:]]
        return cases, ((int(last_s), last_id) if more and last_s else None)

    async def set_case_status(self, case_id: str, status: str, *, by: str, due_at_ms: int | None = None,
                              now_ms: int | None = None, follow_up: FollowUp | None = None) -> dict[str, Any]:
        """Move the case to ``status`` (see :data:`ivr.core.case_states.CASE_TRANSITIONS`; Conflict
        ``case.bad_transition`` otherwise, NotFound ``case.not_found``); ``due_at_ms`` (required to
        reopen, refused otherwise) is the reopened case's new due time. The first ``contacted`` sets
        ``contacted_at`` and ``first_contact_ms``. Emits ``case.status``; returns the case.
        ``follow_up`` (closing only): schedule the follow-up (回访), ``case.followup_scheduled``;
        reopening cancels one not under way (``case.followup_cancelled``)."""
        cs.check_case_id(case_id)
        new = cs.check_status(status)
        cs.check_pattern("by", by, cs.ACTOR)
        if (new is cs.CaseStatus.REOPENED) != (due_at_ms is not None):
            raise cs.invalid("due_at_ms is required to reopen a case, and only then")
        if due_at_ms is not None:
            cs.check_ms("due_at_ms", due_at_ms)
        fu: list[Any] = ["", "", "", "", "", ""]
        if follow_up is not None:
            if new is not cs.CaseStatus.CLOSED:
                raise cs.invalid("only closing a case schedules a follow-up")
            fu = follow_up.script_args()
        return _case(await self._run("case_status", case_id, new.value, by,
                                     "" if due_at_ms is None else due_at_ms, _now(now_ms), *fu))

    async def purge_closed_cases(self, *, closed_before_ms: int, limit: int = 100) -> int:
        """Delete the cases closed before ``closed_before_ms`` (their notes and index entries too;
        ``case.purged`` each), ``limit`` at most. Returns how many."""
        cs.check_ms("closed_before_ms", closed_before_ms)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise cs.invalid("limit must be 1-1000")
        return int(await self._run("case_purge", closed_before_ms, limit))

    async def case_followups(self, *, caller_id: str, skill: str, task_timeout_ms: int, limit: int = 20,
                             now_ms: int | None = None, allow: Sequence[str] | None = None) -> int:
        """Start the follow-ups (回访) due by now, ``limit`` at most: an automated call placed
        (:meth:`dialout_start`'s rules; no worker free: it stays due) or a task offered to the owner
        or the longest idle agent with ``skill`` (``case.task_offered`` with ``task_kind`` followup).
        Returns how many started (the worker's housekeeping leader runs it every tick). ``allow``
        (``calls.outbound_allow``; None: no check): a number matching none of these globs is never
        dialled: the follow-up fails (``number_not_allowed``)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise cs.invalid("limit must be 1-1000")
        return int(await self._run("case_followups", limit, _now(now_ms), caller_id, skill, task_timeout_ms,
                                   "" if allow is None else lua_patterns(allow)))

    async def case_answers(self, case_id: str, *, call_id: str, answers: Mapping[str, str], by: str,
                           reopen_due_at_ms: int | None = None,
                           now_ms: int | None = None) -> tuple[dict[str, Any], bool]:
        """A dial plan's answers (the ``case_update`` node): merged into the case's ``followup_answers``
        and call ``call_id``'s ``answers`` (at most 20 names ``[a-z][a-z0-9_]{0,31}``, texts of at most
        200 characters; BadRequest ``case.invalid`` otherwise, nothing written); with
        ``reopen_due_at_ms`` a resolved or closed case is reopened due then. Emits ``case.answers``.
        Returns the case and whether it was reopened."""
        cs.check_case_id(case_id)
        cs.check_pattern("by", by, cs.ACTOR)
        if call_id:
            cs.check_pattern("call_id", call_id, cs.CALL_ID)
        if not isinstance(answers, Mapping) or len(answers) > cs.ANSWERS_MAX:
            raise cs.invalid(f"at most {cs.ANSWERS_MAX} answers")
        for name, value in answers.items():
            cs.check_pattern("answer name", name, cs.ANSWER_NAME)
            cs.check_text(f"answers.{name}", value, cs.ANSWER_MAX)
        if reopen_due_at_ms is not None:
            cs.check_ms("reopen_due_at_ms", reopen_due_at_ms)
        text = json.dumps(dict(answers), ensure_ascii=False)
        reopened, case = await self._run("case_answers", case_id, call_id, text,
                                         "" if reopen_due_at_ms is None else reopen_due_at_ms, by, _now(now_ms))
        return _case(case), _s(reopened) == "1"

    async def update_case(self, case_id: str, *, by: str, tier: str | None = None, owner: str | None = None,
                          reason: str | None = None, due_at_ms: int | None = None) -> dict[str, Any]:
        """Change the case's tier, owner ("" = nobody), reason or due time (None: unchanged); emits
        ``case.updated`` naming the fields that changed (none: nothing emitted). A new due time of an
        open or reopened case is a new deadline (no longer overdue until it passes). Returns the case."""
        cs.check_case_id(case_id)
        cs.check_pattern("by", by, cs.ACTOR)
        changes: dict[str, Any] = {}
        if tier is not None:
            changes["tier"] = cs.check_tier(tier)
        if owner is not None:
            changes["owner"] = cs.check_pattern("owner", owner, cs.AGENT, empty=True)
        if reason is not None:
            changes["reason"] = cs.check_text("reason", reason, cs.REASON_MAX, empty=False)
        if due_at_ms is not None:
            changes["due_at"] = cs.check_ms("due_at_ms", due_at_ms)
        return _case(await self._run("case_update", case_id, by, json.dumps(changes)))

    async def add_case_note(self, case_id: str, *, by: str, text: str, now_ms: int | None = None) -> dict[str, Any]:
        """Add a note (at most 2000 characters, line breaks allowed) to the case; the latest 200 are
        kept. ``case.note`` carries its length, not its text. Returns the note ``{at, by, text}``."""
        cs.check_case_id(case_id)
        cs.check_pattern("by", by, cs.ACTOR)
        cs.check_text("text", text, cs.NOTE_MAX, empty=False, multiline=True)
        note: dict[str, Any] = json.loads(_s(await self._run("case_note", case_id, by, text, _now(now_ms))))
        return note

    async def case_notes(self, case_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The case's latest ``limit`` notes, newest first."""
        key = self.keys.case_notes(cs.check_case_id(case_id))
        return [json.loads(n) for n in await self.redis.lrange(key, 0, max(1, min(limit, cs.NOTES_KEEP)) - 1)]

    async def link_case_call(self, case_id: str, call_id: str, *, by: str) -> dict[str, Any]:
        """Link the call to the case (last of its ``calls``, the newest 50 kept); the call record, when
        it exists, gets ``case_id`` (a call names one case: the last it was linked to). Emits
        ``case.call_linked`` (not when it was the last linked call already). Returns the case."""
        cs.check_case_id(case_id)
        cs.check_pattern("call_id", call_id, cs.CALL_ID)
        cs.check_pattern("by", by, cs.ACTOR)
        return _case(await self._run("case_link_call", case_id, call_id, by))

    async def case_counts(self, *, now_ms: int | None = None, soon_ms: int = 900_000) -> dict[str, Any]:
        """``{"status": {status: n}, "open": {tier: n}, "overdue": n, "due_soon": n}``: cases per
        status, open or reopened cases per tier, those past their due time now and those due within
        ``soon_ms``. ``overdue`` counts from the due index, so a case is overdue the moment its due
        time passes (the deadline scan marks it, ``cases:counts`` overdue, within a tick)."""
        if isinstance(soon_ms, bool) or not isinstance(soon_ms, int) or not 0 <= soon_ms <= 366 * 86_400_000:
            raise cs.invalid("soon_ms must be 0 to a year")
        res = json.loads(_s(await self._run("case_counts", _now(now_ms), soon_ms)))
        counts = res["counts"] if isinstance(res["counts"], dict) else {}  # an empty Lua table encodes as {}
        return {"status": {s.value: int(counts.get(f"status:{s.value}", 0)) for s in cs.CaseStatus},
                "open": {t: int(counts.get(f"open:{t}", 0)) for t in cs.CASE_TIERS},
                "overdue": int(res["past_due"]), "due_soon": int(res["due_soon"])}

    async def case_deadlines(self, *, now_ms: int | None = None, limit: int = 100) -> int:
        """Mark open or reopened cases whose due time passed overdue, each once, at most ``limit``
        (1-1000) of them (the earliest due first); emits ``case.overdue`` for each. Returns how many
        (the worker's housekeeping calls it again while a batch comes back full)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= cs.DEADLINE_BATCH_MAX:
            raise cs.invalid(f"limit must be 1-{cs.DEADLINE_BATCH_MAX}")
        return int(await self._run("case_deadlines", limit, _now(now_ms)))

    async def case_first_contact(self, *, since_ms: int, until_ms: int) -> dict[str, dict[str, Any]]:
        """Time to first contact per tier over the cases opened in [since_ms, until_ms), like a service
        level: ``{tier: {"opened", "contacted", "within_due", "overdue_waiting", "met",
        "avg_first_contact_s"}}``. ``contacted``: cases contacted at least once; ``within_due``: of
        those, contacted first by their due time; ``overdue_waiting``: open or reopened cases never
        contacted and marked overdue (missed too). ``met`` = within_due / (contacted + overdue_waiting),
        None when both are 0 (cases still in time, or resolved or closed without a contact, are not
        counted); ``avg_first_contact_s`` None when none was contacted. Reads 1000 cases a script run,
        at most 1000 runs."""
        cs.check_ms("since_ms", since_ms)
        cs.check_ms("until_ms", until_ms)
        totals = {t: {"opened": 0, "contacted": 0, "within_due": 0, "overdue_waiting": 0, "first_contact_ms": 0}
                  for t in cs.CASE_TIERS}
        rank: int | str = ""
        for _ in range(1000 if until_ms > since_ms else 0):
            res = json.loads(_s(await self._run("case_first_contact", since_ms, until_ms, rank, 1000)))
            for tier, row in res["tiers"].items():
                for name, n in row.items():
                    totals[tier][name] += int(n)
            if int(res["next"]) < 0:
                break
            rank = int(res["next"])
        return {tier: first_contact_figures(t) for tier, t in totals.items()}

    async def iter_case_report(self, *, since_ms: int, until_ms: int,
                               page: int = 500) -> AsyncIterator[dict[str, Any]]:
        """Every case opened in [since_ms, until_ms), oldest first (``ivr report cases``), as
        :func:`_case` decodes it plus ``first_contact``: how it counts in :meth:`case_first_contact`
        (``met``, ``late``, ``overdue`` - never contacted, open or reopened and marked overdue - or ""
        when not judged; the one definition is ``CS.first_contact_class`` in ``lua/lib/cases.lua``).
        Reads ``page`` (1-1000) cases a script run, from a cursor (opened_at, id): any number of cases."""
        cs.check_ms("since_ms", since_ms)
        cs.check_ms("until_ms", until_ms)
        if isinstance(page, bool) or not isinstance(page, int) or not 1 <= page <= 1000:
            raise cs.invalid("page must be 1-1000")
        cursor: tuple[int | str, str] = ("", "")
        while until_ms > since_ms:
            res = await self._run("case_report", since_ms, until_ms, cursor[0], cursor[1], page)
            for raw in res[3:]:
                yield _case(raw)
            if not int(res[0]) or not _s(res[1]):
                return
            cursor = (int(_s(res[1])), _s(res[2]))

    # --- follow-up tasks (lua/lib/cases.lua "Follow-up tasks"; the worker's housekeeping offers them) ---
    async def case_offer_tasks(self, *, before_ms: int, skill: str, timeout_ms: int, now_ms: int | None = None,
                               limit: int = 20, allow: Sequence[str] | None = None) -> int:
        """Give tasks past their expiry back (``case.task_declined`` reason ``timeout``; the agent is
        available again and kept from that case for 10 minutes), then offer pending cases (open or
        reopened) due by ``now + before_ms`` with no task out and no call of theirs under way, the
        earliest due first (overdue cases lead), ``limit`` (1-1000) at most: each to its owner when
        available with a phone that can ring and not kept from it, else the longest idle such agent
        with ``skill``, else (an overdue case) any such agent. The agent is reserved (reason ``task``)
        until ``now + timeout_ms``; ``case.task_offered``. Returns how many were offered (none: no
        agent now, tried again next time). One script run looks at 500 pending cases at most.
        ``allow`` (``calls.outbound_allow``; None: no check): a case whose number matches none of these
        globs is not offered (nobody could dial it)."""
        cs.check_ms("before_ms", before_ms)
        if before_ms > 366 * 86_400_000:
            raise cs.invalid("before_ms must be 0 to a year")
        cs.check_pattern("skill", skill, cs.AGENT)
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or not 1000 <= timeout_ms <= 86_400_000:
            raise cs.invalid("timeout_ms must be 1 s to a day")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= cs.DEADLINE_BATCH_MAX:
            raise cs.invalid(f"limit must be 1-{cs.DEADLINE_BATCH_MAX}")
        return int(await self._run("case_offer_tasks", before_ms, skill, timeout_ms, limit, _now(now_ms),
                                   "" if allow is None else lua_patterns(allow)))

    async def case_task_accept(self, case_id: str, agent_id: str, *, call_id: str, caller_id: str, hotline: str,
                               by: str, now_ms: int | None = None) -> tuple[str, str, str]:
        """The agent accepts the case's follow-up task it holds: in one step a click-to-dial call
        ``call_id`` to the case's customer (as :meth:`originate`: the agent's phone rings first, the
        worker gets the offer; ``call.started``, ``call.offered``), linked to the case (the answer
        contacts it, :meth:`originate_connected`), the task cleared; ``case.task_accepted``.
        Returns (call id, state, worker). Conflict ``case.task_gone`` (the agent does not hold this
        task, or it expired), ``case.no_number``, ``agent.no_phone``; NotFound ``case.not_found``;
        Unavailable ``worker.unavailable`` (the task stays the agent's until it expires)."""
        cs.check_case_id(case_id)
        cs.check_pattern("agent_id", agent_id, cs.AGENT)
        cs.check_pattern("call_id", call_id, cs.CALL_ID)
        cs.check_text("caller_id", caller_id, 64)
        cs.check_text("hotline", hotline, cs.HOTLINE_MAX)
        cs.check_pattern("by", by, cs.ACTOR)
        res = await self._run("case_task_accept", case_id, agent_id, call_id, caller_id, hotline, by, _now(now_ms))
        return _s(res[0]), _s(res[1]), _s(res[2])

    async def case_task_decline(self, case_id: str, agent_id: str, *, reason: str = "declined",
                                now_ms: int | None = None) -> None:
        """The agent holding the case's follow-up task gives it back: available again (offered a
        waiting caller at once), not offered this case again for 10 minutes; ``case.task_declined``.
        ``reason``: a short name (letters, digits, ``_.:-``). Conflict ``case.task_gone`` when the
        agent does not hold this task; NotFound ``case.not_found``."""
        cs.check_case_id(case_id)
        cs.check_pattern("agent_id", agent_id, cs.AGENT)
        cs.check_pattern("reason", reason, cs.CALL_ID)
        await self._run("case_task_decline", case_id, agent_id, reason, _now(now_ms))

    # --- campaigns (outbound; lua/lib/campaigns.lua, ivr.core.campaign_states) -------------------
    # Values are checked here (BadRequest ``campaign.invalid``); ``now_ms`` runs a script at that time
    # (tests drive pacing and retries with it). Campaigns and records come back as dicts of their hash
    # (see :func:`_campaign`, :func:`_campaign_record`).
    async def campaign_create(self, *, name: str, plan: str, by: str, queue: str = "", caller_id: str = "",
                              hotline: str = "", language: str = "", pacing: Mapping[str, Any] | None = None,
                              window: Mapping[str, Any] | None = None, retries: Mapping[str, Any] | None = None,
                              ring_s: int = 30, now_ms: int | None = None) -> dict[str, Any]:
        """A new campaign (id ``CP<n>``) in draft; ``campaign.state``."""
        spec = self._campaign_fields(name=name, plan=plan, queue=queue, caller_id=caller_id, hotline=hotline,
                                     language=language, pacing=pacing or {}, window=window, retries=retries or {},
                                     ring_s=ring_s)
        cps.check_pattern("by", by, cps.ACTOR)
        return _campaign(await self._run("campaign_create", json.dumps(spec), by, _now(now_ms)))

    @staticmethod
    def _campaign_fields(**f: Any) -> dict[str, Any]:
        """The given settings checked, as the scripts store them (pacing, window, retries as JSON text)."""
        out: dict[str, Any] = {}
        if "name" in f:
            out["name"] = cps.check_text("name", f["name"], cps.NAME_MAX, empty=False)
        if "plan" in f:
            out["plan"] = cps.check_pattern("plan", f["plan"], cps.PLAN_ID)
        if "queue" in f:
            out["queue"] = cps.check_pattern("queue", f["queue"], cps.ROUTING_NAME, empty=True)
        if "caller_id" in f:
            out["caller_id"] = cps.check_pattern("caller_id", f["caller_id"], cps.NUMBER, empty=True)
        if "hotline" in f:
            out["hotline"] = cps.check_text("hotline", f["hotline"], 120)
        if "language" in f:
            out["language"] = cps.check_pattern("language", f["language"], cps.ROUTING_NAME, empty=True)
        if "pacing" in f:
            out["pacing"] = json.dumps(cps.check_pacing(f["pacing"]))
        if "window" in f:
            out["window"] = cps.check_window(f["window"])
        if "retries" in f:
            out["retries"] = json.dumps(cps.check_retries(f["retries"]))
        if "ring_s" in f:
            r = f["ring_s"]
            if isinstance(r, bool) or not isinstance(r, int) or not cps.RING_MIN_S <= r <= cps.RING_MAX_S:
                raise cps.invalid(f"ring_s must be {cps.RING_MIN_S} to {cps.RING_MAX_S}")
            out["ring_s"] = r
        return out

    async def campaign_update(self, campaign_id: str, *, now_ms: int | None = None, **changes: Any) -> dict[str, Any]:
        """Change settings: everything while draft; pacing and window while running or paused (Conflict
        ``campaign.bad_transition`` otherwise). A new pacing keeps the tokens (capped)."""
        cps.check_campaign_id(campaign_id)
        unknown = set(changes) - {"name", "plan", "queue", "caller_id", "hotline", "language", "pacing", "window",
                                  "retries", "ring_s"}
        if unknown:
            raise cps.invalid(f"unknown field {sorted(unknown)[0]}")
        fields = self._campaign_fields(**changes)
        return _campaign(await self._run("campaign_update", campaign_id, json.dumps(fields), _now(now_ms)))

    async def campaign_action(self, campaign_id: str, action: Literal["start", "pause", "resume", "stop"], *,
                              by: str, now_ms: int | None = None) -> dict[str, Any]:
        """start (draft), pause (running), resume (paused), stop (draft, running, paused: its waiting
        records are cancelled; calls under way finish and are not retried). ``campaign.state``."""
        cps.check_campaign_id(campaign_id)
        if action not in ("start", "pause", "resume", "stop"):
            raise cps.invalid("action must be start, pause, resume or stop")
        cps.check_pattern("by", by, cps.ACTOR)
        return _campaign(await self._run("campaign_state", campaign_id, action, by, _now(now_ms)))

    async def campaign_add_records(self, campaign_id: str, rows: Sequence[Mapping[str, Any]], *,
                                   now_ms: int | None = None) -> dict[str, Any]:
        """Add records ``{number (normalised), name, tz, variables (dict of str)}``; numbers already in
        the campaign are skipped, numbers on the do-not-call list are added as ``dnc`` (never dialled).
        Returns ``{added, dnc, duplicates: [row positions, 0-based], zones_full: [...]}``."""
        cps.check_campaign_id(campaign_id)
        if len(rows) > cps.RECORDS_PER_UPLOAD:
            raise cps.invalid(f"at most {cps.RECORDS_PER_UPLOAD} records an upload")
        clean = []
        for i, row in enumerate(rows):
            number = row.get("number")
            if not isinstance(number, str) or not cps.NUMBER.fullmatch(number):
                raise cps.invalid(f"row {i}: the number is not normalised")
            variables = json.dumps(dict(row.get("variables") or {}), ensure_ascii=False)
            if len(variables.encode()) > cps.VARIABLES_MAX_BYTES:
                raise cps.invalid(f"row {i}: the variables exceed {cps.VARIABLES_MAX_BYTES} bytes")
            clean.append({"number": number, "name": cps.check_text("name", row.get("name", ""), cps.RECORD_NAME_MAX),
                          "tz": cps.check_pattern("tz", row.get("tz", ""), cps.ZONE, empty=True),
                          "variables": variables})
        out: dict[str, Any] = {"added": 0, "dnc": 0, "duplicates": [], "zones_full": []}
        for start in range(0, len(clean), 1000):
            batch = clean[start:start + 1000]
            res = await self._run("campaign_records_add", campaign_id, json.dumps(batch, ensure_ascii=False),
                                  _now(now_ms))
            out["added"] += int(res[0])
            out["dnc"] += int(res[1])
            out["duplicates"] += [start + int(p) - 1 for p in json.loads(_s(res[2]) if _s(res[2]) != "{}" else "[]")]
            out["zones_full"] += [start + int(p) - 1 for p in json.loads(_s(res[3]) if _s(res[3]) != "{}" else "[]")]
        return out

    async def get_campaign(self, campaign_id: str) -> dict[str, Any] | None:
        """The campaign with its record counts, None when there is none."""
        raw = await self.redis.hgetall(self.keys.campaign(cps.check_campaign_id(campaign_id)))
        if not raw or raw.get(b"deleting"):
            return None
        return _campaign({_s(k): _s(v) for k, v in raw.items()})

    async def list_campaigns(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Campaigns, newest first, ``limit`` (1-200) at most."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= cps.LIST_MAX:
            raise cps.invalid(f"limit must be 1-{cps.LIST_MAX}")
        ids = [_s(i) for i in await self.redis.zrevrange(self.keys.campaigns_index, 0, limit - 1)]
        out = []
        for cid in ids:
            c = await self.get_campaign(cid)
            if c is not None:
                out.append(c)
        return out

    async def campaign_records(self, campaign_id: str, *, state: str | None = None, after: int = 0,
                               limit: int = 50) -> tuple[list[dict[str, Any]], int | None]:
        """Records in upload order after record number ``after``, of ``state`` when given, ``limit``
        (1-1000) at most; returns them and the ``after`` of the next page (None: no more). NotFound
        ``campaign.not_found``."""
        cps.check_campaign_id(campaign_id)
        if state is not None and state not in {s.value for s in cps.RecordState}:
            raise cps.invalid("unknown record state")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise cps.invalid("limit must be 1-1000")
        if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after < 10**9:
            raise cps.invalid("after must be a record number")
        res = await self._run("campaign_records_page", campaign_id, state or "", after, limit, 5000)
        nxt = int(res[0])
        return [_campaign_record(r) for r in res[1:]], (nxt or None)

    async def campaign_delete(self, campaign_id: str) -> None:
        """Delete a draft, stopped or finished campaign and its records (Conflict
        ``campaign.bad_transition`` otherwise); ``campaign.deleted``."""
        cps.check_campaign_id(campaign_id)
        for _ in range(10_000):
            if int(await self._run("campaign_delete", campaign_id, 2000)) == 0:
                return

    async def campaign_windows(self) -> dict[str, tuple[dict[str, Any] | None, list[str]]]:
        """The running campaigns: id -> (calling window or None, the time zones of their records by zone
        number, "" = the window's). What the dialler needs to say which zones are open now."""
        out: dict[str, tuple[dict[str, Any] | None, list[str]]] = {}
        for raw_id in await self.redis.smembers(self.keys.campaigns_running):
            cid = _s(raw_id)
            window, zones = await self.redis.hmget(self.keys.campaign(cid), "window", "zones")
            w = _s(window) if window is not None else ""
            out[cid] = (json.loads(w) if w else None, json.loads(_s(zones)) if zones else [""])
        return out

    async def campaign_tick(self, *, now_ms: int | None = None, open_zones: Mapping[str, Sequence[int]] | None = None,
                            budget: int = 50) -> tuple[int, bool]:
        """One run of the dialler: for each running campaign, calls to its due records (pending, or
        retry whose time came) in its open time zones, as its token bucket (``rate_per_s``, at most
        max(1, rate) saved up), ``max_concurrent`` and (progressive) the available agents allow, each
        checked against the do-not-call list first; ``budget`` (1-200) calls at most in all. A campaign
        with a window that is not in ``open_zones`` (id -> open zone numbers) dials nobody this time.
        Returns (calls placed, whether it stopped because no worker had a free slot)."""
        if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= cps.TICK_DIALS_MAX:
            raise cps.invalid(f"budget must be 1-{cps.TICK_DIALS_MAX}")
        opened = {cid: [int(z) for z in zs] for cid, zs in (open_zones or {}).items()}
        res = await self._run("campaign_tick", _now(now_ms), json.dumps(opened) if opened else "{}", budget)
        return int(res[0]), bool(int(res[1]))

    async def dnc_add(self, numbers: Sequence[str]) -> int:
        """Put normalised numbers on the do-not-call list (digests only). Returns how many were new."""
        return int(await self._run("campaign_dnc", "add", json.dumps(_dnc_numbers(numbers))))

    async def dnc_remove(self, numbers: Sequence[str]) -> int:
        """Take numbers off the do-not-call list. Returns how many were on it."""
        return int(await self._run("campaign_dnc", "remove", json.dumps(_dnc_numbers(numbers))))

    async def dnc_check(self, numbers: Sequence[str]) -> list[bool]:
        """Whether each number is on the do-not-call list."""
        if not numbers:
            return []
        return [bool(int(x)) for x in await self._run("campaign_dnc", "check", json.dumps(_dnc_numbers(numbers)))]

    # --- agents ----------------------------------------------------------------------------
    async def register_agent(self, agent_id: str, *, name: str, skills: Mapping[str, int],
                             sip_uri: str | None, languages: list[str], phone: str = "") -> None:
        """``phone="registered"``: ``sip_uri`` is the agent's AOR at the edge, and routing offers it
        calls only while its phone is registered there (:meth:`record_phones`)."""
        await self._run("agent_register", agent_id, name, json.dumps(dict(skills)), sip_uri or "",
                        json.dumps(languages), phone)

    # --- agents' phones (registrations at the edge, SIP credentials) -------------------------
    async def record_phones(self, registered: Mapping[str, int], stale_after_s: float, source: str = "edge") -> int:
        """The edge's registrations now (``{agent id: live contacts}``, every AOR with a binding), as
        poller ``source`` saw them: each counts for ``stale_after_s``. Pollers of several edges add
        up; the same edge polled twice counts once (each poller replaces its own picture). Emits
        ``agent.phone`` on every change; an available agent whose phone just came back is matched
        with a waiting caller. Returns the offers made."""
        return int(await self._run("agent_phones", int(stale_after_s * 1000), json.dumps(dict(registered)),
                                   source))

    async def set_sip_credential(self, credential: SipCredential) -> None:
        """Store an agent's SIP password as its HA1 (the previous one is replaced)."""
        await self.redis.hset(self.keys.sip_credentials, credential.agent_id, credential.to_json())

    async def sip_credentials(self) -> dict[str, SipCredential]:
        """Every HA1 an admin set over the API (broken entries are left out)."""
        raw = await self.redis.hgetall(self.keys.sip_credentials)
        out = {}
        for agent_id, text in raw.items():
            cred = SipCredential.from_json(_s(agent_id), _s(text))
            if cred is not None:
                out[cred.agent_id] = cred
        return out

    async def remove_agent(self, agent_id: str) -> None:
        """Delete the agent (``agent.busy`` while it holds a call): it leaves every index, and its
        API token stops working."""
        await self._run("agent_remove", agent_id)

    async def set_agent_token(self, agent_id: str, digest: str, role: str) -> None:
        """Store the SHA-256 ``digest`` of the agent's new token; the previous one is revoked."""
        await self._run("agent_token", agent_id, digest, json.dumps({"id": agent_id, "role": role}))

    async def set_agent_state(self, agent_id: str, state: AgentState, reason: str = "") -> Offer | None:
        if state not in AGENT_SETTABLE:
            raise Conflict(f"an agent cannot set state {state}", code="agent.state_invalid")
        return _offer(await self._run("agent_set_state", agent_id, state.value, reason))

    async def extend_wrapup(self, agent_id: str, extend_s: float, *, max_s: float, by: str) -> int:
        """Push the agent's wrap-up deadline ``extend_s`` later (from now when it is already due),
        at most ``max_s`` after the wrap-up began; ``agent.wrapup_extended`` tells its desktops.
        Returns the new deadline (epoch ms). Conflict ``agent.not_in_wrapup`` / ``agent.wrapup_max``."""
        return int(await self._run("agent_wrapup_extend", agent_id, extend_s, max_s, by))

    async def get_agent(self, agent_id: str) -> dict[str, Any] | None:
        """The agent's hash; in wrap-up also ``wrapup_until`` (epoch ms, when it ends)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.agent(agent_id))
            pipe.zscore(self.keys.wrapup, agent_id)
            raw, deadline = await pipe.execute()
        if not raw:
            return None
        agent: dict[str, Any] = {_s(k): _s(v) for k, v in raw.items()}
        if deadline is not None and agent.get("state") == "wrapup":
            agent["wrapup_until"] = int(deadline)
        agent["skills"] = json.loads(agent.get("skills") or "{}")
        agent["languages"] = json.loads(agent.get("languages") or "[]")
        agent["phone"] = _phone_view(agent)
        return agent

    async def agent_ids(self) -> list[str]:
        return sorted(_s(a) for a in await self.redis.smembers(self.keys.agents))

    async def escalate(self, limit: int = 20) -> int:
        """Apply the escalation steps that are due (housekeeping does it too); returns how many
        calls were escalated."""
        return int(await self._run("escalate", limit))

    async def release_wrapups(self) -> list[Offer]:
        return [Offer.from_json(o) for o in await self._run("release_wrapups")]

    # --- queues ----------------------------------------------------------------------------
    async def waiting(self, queue: str) -> list[str]:
        return [_s(c) for c in await self.redis.zrange(self.keys.waiting(queue), 0, -1)]

    async def queue_position(self, call_id: str) -> tuple[int, int] | None:
        """(position, callers waiting) of a waiting call, position 1 being the next to be offered;
        None when the call is not waiting (in the IVR, offered to an agent, connected or over)."""
        status = await self._run("queue_status", call_id)
        return (int(status[0]), int(status[1])) if status else None

    async def wait_estimate(self, call_id: str) -> WaitEstimate | None:
        """The caller's position and estimated wait (see :mod:`ivr.queues.estimate`); None when the
        call is not waiting."""
        status = await self._run("queue_status", call_id)
        if not status:
            return None
        position, waiting = int(status[0]), int(status[1])
        gap, last, departures, aht, handled = (_s(v) for v in status[2:7])
        staffed, now = int(status[7]), int(status[8])
        history = QueueHistory(
            gap_s=float(gap) / 1000 if gap else None,
            last_departure_age_s=max(0.0, (now - float(last)) / 1000) if last else None,
            departures=int(departures or 0),
            aht_s=float(aht) / 1000 if aht else None,
            handled=int(handled or 0))
        seconds, basis = estimate_wait(position, history, staffed)
        return WaitEstimate(position, waiting, seconds, basis)

    async def remember_estimate(self, call_id: str, estimate: WaitEstimate) -> None:
        """Keep the latest estimate told to the caller on the call (``ewt_s``): the pop shows it."""
        await self.redis.hset(self.keys.call(call_id), "ewt_s", str(round(estimate.seconds)))

    async def queue_history(self, queue: str) -> dict[str, float]:
        """The queue's recorded history (the stats hash; see :mod:`ivr.queues.estimate`)."""
        return {_s(k): float(v) for k, v in (await self.redis.hgetall(self.keys.queue_stats(queue))).items()}

    async def staffed(self, skill: str) -> set[str]:
        """The agents with ``skill`` that are logged in (not offline)."""
        return {_s(a) for a in await self.redis.smembers(self.keys.staffed(skill))}

    async def queue_names(self) -> dict[str, str]:
        return {_s(q): _s(s) for q, s in (await self.redis.hgetall(self.keys.queues)).items()}

    async def declare_queues(self, queues: Mapping[str, str]) -> int:
        """List configured queues (name -> skills joined with ``+``) for the statistics before their
        first call; a queue already listed keeps its skill (the first enqueue sets the routed one).
        Returns how many were new."""
        if not queues:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue, skill in queues.items():
                pipe.hsetnx(self.keys.queues, queue, skill)
            return sum(int(x) for x in await pipe.execute())

    # --- statistics (see ivr.queues.stats) ---------------------------------------------------
    async def queue_stats(self, queue: str, *, since_s: int | None = None) -> QueueStats:
        """The queue's real-time statistics in one consistent read: callers waiting, the longest
        wait, agents with its skill by state, and the figures of the current interval and of the
        intervals starting at or after ``since_s`` (default: local midnight). ``queue.not_found``
        for a queue no call ever entered."""
        since = start_of_today(time.time()) if since_s is None else since_s
        res = await self._run("queue_snapshot", queue, since)
        if not res:
            raise NotFound(f"no queue {queue}", code="queue.not_found")
        return QueueStats.from_script(queue, res, self.stats_config, since)

    #: the counters :meth:`interval_history` gives, in its order
    HISTORY_FIELDS = ("offered", "handled", "handle_ms", "abandoned", "answer_wait_ms", "abandon_wait_ms")

    async def interval_history(self, queue: str, from_s: int, to_s: int, *,
                               slice_size: int = 1000) -> AsyncIterator[Interval]:
        """The queue's intervals starting in [from_s, to_s), oldest first, with the counters of
        :data:`HISTORY_FIELDS` only (the forecast's), read ``slice_size`` at a time by a read-only
        script that answers one string per slice (a year of quarter hours: about 0.5 s)."""
        lo = from_s
        while lo < to_s:
            count, last, text = await self._run("interval_history", queue, lo, to_s, slice_size)
            raw = _s(text)
            values = [int(x) for x in raw.split(",")] if raw else []
            for i in range(0, len(values), 7):
                yield Interval(values[i], 0, dict(zip(self.HISTORY_FIELDS, values[i + 1:i + 7], strict=True)))
            if int(count) < slice_size:
                return
            lo = int(_s(last)) + 1

    async def iter_intervals(self, queue: str, from_s: int, to_s: int, *, batch: int = 500) -> AsyncIterator[Interval]:
        """The queue's intervals starting in [from_s, to_s), oldest first, read ``batch`` at a time."""
        index, offset = self.keys.queue_intervals(queue), 0
        while True:
            starts = await self.redis.zrangebyscore(index, from_s, f"({to_s}", start=offset, num=batch)
            if not starts:
                return
            async with self.redis.pipeline(transaction=False) as pipe:
                for start in starts:
                    pipe.hgetall(self.keys.queue_interval(queue, int(_s(start))))
                rows = await pipe.execute()
            for raw in rows:
                if raw:
                    yield Interval.from_hash(raw)
            offset += len(starts)

    async def iter_ended_calls(self, from_ms: int, to_ms: int, *,
                               batch: int = 500) -> AsyncIterator[tuple[StreamEvent, dict[str, Any] | None]]:
        """Every call that ended in [from_ms, to_ms), in the order they ended, as its ``call.ended``
        event and its record (None once the record expired, see ``routing.call_ttl_s``). Reads the
        event stream ``batch`` entries at a time: only calls whose end is still in the stream."""
        start: str = str(from_ms)
        end = str(to_ms - 1)  # an id of milliseconds only stands for every entry of that millisecond
        if to_ms <= from_ms:
            return
        while True:
            entries = await self.redis.xrange(self.keys.events, start, end, count=batch)
            if not entries:
                return
            ended = [ev for ev in map(stream_event, entries) if ev.type == "call.ended"]
            async with self.redis.pipeline(transaction=False) as pipe:
                for ev in ended:
                    pipe.hgetall(self.keys.call(str(ev.data.get("call_id", ""))))
                rows = await pipe.execute()
            for ev, raw in zip(ended, rows, strict=True):
                yield ev, ({_s(k): _s(v) for k, v in raw.items()} if raw else None)
            if len(entries) < batch:
                return
            start = f"({_s(entries[-1][0])}"

    # --- workers: registration, leases, the reaper -------------------------------------------
    async def register_worker(self, worker: str, identity: str, ttl_s: int = 5, slots: int | None = None) -> None:
        """Heartbeat: ``identity`` is "host:pid" of the process running ``worker``; ``slots``: how many
        calls it can hold (0 while draining), for choosing who dials a callback (None: unchanged)."""
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip, no MULTI/EXEC
            pipe.sadd(self.keys.workers, worker)
            pipe.set(self.keys.worker_alive(worker), identity, ex=ttl_s)
            if slots is not None:
                pipe.set(self.keys.worker_slots(worker), slots, ex=ttl_s)
            await pipe.execute()

    async def unregister_worker(self, worker: str) -> None:
        """A worker that stops cleanly is no longer alive (its name is free at once)."""
        await self.redis.delete(self.keys.worker_alive(worker))

    async def workers_alive(self, workers: Sequence[str]) -> int:
        """How many of ``workers`` hold their alive lease now."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for w in workers:
                pipe.exists(self.keys.worker_alive(w))
            return sum(bool(x) for x in await pipe.execute())

    async def worker_holder(self, worker: str) -> str | None:
        value = await self.redis.get(self.keys.worker_alive(worker))
        return _s(value) if value is not None else None

    async def worker_names(self) -> list[str]:
        return sorted(_s(w) for w in await self.redis.smembers(self.keys.workers))

    async def reap_worker(self, worker: str, *, wrapup_s: float, ttl_s: int) -> int:
        """Record every call of a dead worker as lost and release what it held."""
        return int(await self._run("reap_worker", worker, wrapup_s, ttl_s))

    async def housekeeping(self, owner: str, *, lease_ms: int, wrapup_s: float, ttl_s: int) -> dict[str, int] | None:
        """If ``owner`` holds (or takes) the housekeeper lease: release ended wrap-ups, apply due
        escalation steps and reap the calls of workers whose heartbeat expired. Returns the reaped
        workers, or None if not leader."""
        res = await self._run("housekeeping", owner, lease_ms, wrapup_s, ttl_s)
        if not int(res[0]):
            return None
        return {name: int(n) for name, _, n in (_s(x).partition("=") for x in res[1:])}

    async def worker_load(self, worker: str) -> int:
        return int(await self.redis.scard(self.keys.worker_calls(worker)))

    # --- worker inbox and screen-pop acknowledgement ---------------------------------------
    async def next_message(self, worker: str, timeout_s: float) -> Offer | commands.Command | None:
        """The next message of the worker's inbox: an offer or a command to one of its calls. A
        message that is neither (malformed, an unknown command) is logged by the caller as a
        ValueError and skipped."""
        item = await self.redis.blpop([self.keys.worker_inbox(worker)], timeout=timeout_s)
        if not item:
            return None
        data = json.loads(item[1])
        if isinstance(data, dict) and data.get("type") == "command":
            return commands.decode(data)
        try:
            return Offer.from_json(item[1])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed inbox message: {type(exc).__name__} {exc}") from None

    # --- commands to live calls (ivr.core.commands) -----------------------------------------
    async def send_command(self, command: commands.Command, timeout_s: float) -> commands.Reply:
        """Deliver ``command`` to the worker that owns its call and wait for the reply.

        NotFound ``call.not_found``; Conflict ``call.ended`` / ``call.gone`` when it cannot be
        delivered; TimedOut ``command.timeout`` when no reply came within ``timeout_s`` (the
        worker drops the command once its deadline passed, so it is never carried out later)."""
        deadline = int((time.time() + timeout_s) * 1000)
        command = dataclasses.replace(command, deadline_ms=deadline)
        await self._run("command_send", command.call_id, commands.encode(command))
        # The reply list outlives the wait by its own TTL; a little grace over the deadline for the
        # round trip, so a command the worker carried out at its deadline is still answered.
        item = await self.redis.blpop([self.keys.command_reply(command.command_id)], timeout=timeout_s + 0.5)
        if not item:
            raise TimedOut(f"the worker did not answer the {command.kind} command within {timeout_s} s",
                           code="command.timeout")
        return commands.Reply.decode(item[1])

    async def reply_command(self, reply: commands.Reply) -> None:
        key = self.keys.command_reply(reply.command_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, reply.encode())
            pipe.expire(key, 60)
            await pipe.execute()

    async def ack_pop(self, offer_id: str) -> None:
        key = self.keys.offer_ack(offer_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, "1")
            pipe.expire(key, 60)
            await pipe.execute()

    async def wait_pop_ack(self, offer_id: str, timeout_s: float) -> bool:
        return bool(await self.redis.blpop([self.keys.offer_ack(offer_id)], timeout=timeout_s))

    async def desktop_present(self, agent_id: str) -> bool:
        return bool(await self.redis.exists(self.keys.agent_desktop(agent_id)))

    async def mark_desktop(self, agent_id: str, instance: str, ttl_s: int = 15) -> None:
        await self.redis.set(self.keys.agent_desktop(agent_id), instance, ex=ttl_s)

    async def clear_desktop(self, agent_id: str) -> None:
        await self.redis.delete(self.keys.agent_desktop(agent_id))

    # --- recordings (lua/scripts/recording_*.lua; docs/recording.md) ------------------------------
    async def recording_saved(self, rec: Mapping[str, Any], *, transcribe: bool) -> None:
        """Index a finished recording (fields: :meth:`Keys.recording`), set ``recording_id`` on its
        call, queue it for the transcriber when ``transcribe``, emit ``recording.saved``."""
        await self._run("recording_saved", json.dumps({f: str(v) for f, v in rec.items()}),
                        "1" if transcribe else "")

    async def recording_state(self, call_id: str, what: Literal["started", "paused", "resumed", "stopped"], *,
                              by: str) -> None:
        """The call's recording started, paused or resumed: ``recording`` on the call record and
        the event (its agent sees it); stopped while the call goes on: the field goes."""
        await self._run("recording_state", call_id, what, by)

    async def get_recording(self, recording_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(self.keys.recording(recording_id))
        return _recording(raw) if raw else None

    async def list_recordings(self, *, agent_id: str = "", queue: str = "", from_ms: int = 0,
                              to_ms: int = 2**53, limit: int = 50,
                              after: tuple[int, str] | None = None, budget: int = 5000) -> RecordingPage:
        """Recordings that started in [from_ms, to_ms), newest first (ties by id, descending), after
        the position ``after`` (the previous page's last ``(started_at, id)``), at most ``limit``;
        with where the next page starts (None at the end). One index is walked (the agent's, the
        queue's, else all); with both an agent and a queue, the agent's, keeping the queue's
        recordings only. At most ``budget`` entries are looked at: a page may then be short, with
        where to go on."""
        index = (self.keys.agent_recordings(agent_id) if agent_id
                 else self.keys.queue_recordings(queue) if queue else self.keys.recordings_index)
        keep_queue = queue if agent_id else ""
        top = to_ms - 1 if after is None else min(to_ms - 1, after[0])
        out: list[dict[str, Any]] = []
        offset, page, looked = 0, max(limit, 1) + 20, 0
        last_looked: tuple[int, str] | None = None
        while len(out) < limit:
            rows: Any = await self.redis.zrevrangebyscore(index, top, from_ms, start=offset, num=page,
                                                          withscores=True)
            if not rows:
                return out, None
            offset += len(rows)
            ids = [(int(score), _s(rid)) for rid, score in rows]
            ids = [(sc, rid) for sc, rid in ids if after is None or (sc, rid) < after]
            async with self.redis.pipeline(transaction=False) as pipe:
                for _, rid in ids:
                    pipe.hgetall(self.keys.recording(rid))
                records = await pipe.execute()
            for pos, raw in zip(ids, records, strict=True):
                if len(out) >= limit:
                    break
                if looked >= budget:
                    return out, last_looked
                looked += 1
                last_looked = pos
                rec = _recording(raw) if raw else None
                if rec is not None and (not keep_queue or rec.get("queue") == keep_queue):
                    out.append(rec)
            if len(rows) < page:
                break
        if len(out) < limit:
            return out, None
        last = out[-1]
        return out, (int(last["started_at"]), str(last["id"]))

    async def recordings_expired(self, *, now_ms: int | None = None, limit: int = 100) -> list[tuple[str, str]]:
        """``(id, store key)`` of recordings whose ``delete_after`` passed, oldest first."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        ids = [_s(r) for r in await self.redis.zrangebyscore(self.keys.recordings_expiry, 0, now, start=0, num=limit)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for rid in ids:
                pipe.hget(self.keys.recording(rid), "key")
            keys = await pipe.execute()
        return [(rid, _s(key) if key else "") for rid, key in zip(ids, keys, strict=True)]

    async def recording_deleted(self, recording_id: str, *, reason: str, by: str) -> bool:
        """Take a recording (whose file is gone) out of the index; ``recording.deleted``. False when
        it was not indexed."""
        return bool(await self._run("recording_delete", recording_id, reason, by))

    async def playback_secret(self) -> bytes:
        """The key recording play links are signed with: made once, shared by every API instance."""
        await self.redis.set(self.keys.playback_secret, secrets.token_hex(32), nx=True)
        raw = await self.redis.get(self.keys.playback_secret)
        return bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw).encode()

    # --- the audit trail ---------------------------------------------------------------------
    async def audit(self, action: str, *, by: str, role: str, target: str, call_id: str = "",
                    detail: Mapping[str, str] | None = None) -> None:
        """Append who did what to what (listening to, downloading, deleting, supervising) to the
        audit stream. Never pass a secret, a caller's number or audio."""
        await self.redis.xadd(self.keys.audit, {
            "at": str(int(time.time() * 1000)), "action": action, "by": by, "role": role, "target": target,
            "call_id": call_id, "detail": json.dumps(dict(detail or {}), separators=(",", ":"))},
            maxlen=AUDIT_MAXLEN, approximate=True)

    async def audit_entries(self, *, action: str = "", by: str = "", target: str = "", from_ms: int = 0,
                            to_ms: int = 2**53, before: str | None = None, limit: int = 100,
                            budget: int = 5000) -> tuple[list[dict[str, Any]], str | None]:
        """Audit entries newest first, filtered (``action`` exact or a prefix ending in ``.``/``*``),
        before the entry id ``before``; at most ``budget`` entries are looked at per page (a page may
        come back short with a cursor to go on from). Returns the entries and the next cursor."""
        from_ms = max(0, from_ms)
        if to_ms <= from_ms:
            return [], None
        hi = f"({before}" if before else (f"{to_ms - 1}" if to_ms < 2**53 else "+")
        lo = f"{from_ms}" if from_ms else "-"
        out: list[dict[str, Any]] = []
        looked, cursor = 0, None
        prefix = action[:-1] if action.endswith("*") else action
        while looked < budget and len(out) < limit:
            rows: Any = await self.redis.xrevrange(self.keys.audit, max=hi, min=lo, count=min(500, budget - looked))
            if not rows:
                return out, None
            for eid, fields in rows:
                looked += 1
                cursor = _s(eid)
                f = {_s(k): _s(v) for k, v in fields.items()}
                if action and not (f.get("action") == action or (action.endswith("*") and
                                                                  f.get("action", "").startswith(prefix))):
                    continue
                if (by and f.get("by") != by) or (target and f.get("target") != target):
                    continue
                out.append({"id": cursor, "at": int(f.get("at") or 0), "action": f.get("action", ""),
                            "by": f.get("by", ""), "role": f.get("role", ""), "target": f.get("target", ""),
                            "call_id": f.get("call_id", ""), "detail": _json_object(f.get("detail"))})
                if len(out) >= limit:
                    return out, cursor
            hi = f"({cursor}"
        return out, cursor

    # --- event stream ----------------------------------------------------------------------
    async def read_events(self, last_id: str, block_ms: int | None = None,
                          count: int = 500) -> list[StreamEvent]:
        res: Any = await self.redis.xread({self.keys.events: last_id}, count=count, block=block_ms)
        out: list[StreamEvent] = []
        for _stream, entries in res or []:
            out.extend(stream_event(e) for e in entries)
        return out

    async def events_after(self, last_id: str, count: int = 500) -> list[StreamEvent]:
        """Events after ``last_id`` (exclusive), oldest first, at most ``count``."""
        res: Any = await self.redis.xrange(self.keys.events, min=f"({last_id}", count=count)
        return [stream_event(e) for e in res or []]

    async def first_event_id(self) -> str | None:
        """The oldest event still kept (the stream is capped), None when there is none."""
        res: Any = await self.redis.xrange(self.keys.events, count=1)
        return _s(res[0][0]) if res else None

    async def last_event_id(self) -> str:
        info = await self.redis.xinfo_stream(self.keys.events) if await self.redis.exists(
            self.keys.events) else None
        return _s(info["last-generated-id"]) if info else "0-0"


def _recording(raw: Mapping[Any, Any]) -> dict[str, Any]:
    r: dict[str, Any] = {_s(k): _s(v) for k, v in raw.items()}
    for f in ("started_at", "ended_at", "duration_ms", "bytes", "clock_rate", "delete_after", "version"):
        with contextlib.suppress(ValueError):
            r[f] = int(r.get(f) or 0)
    for f in ("agents", "pauses"):
        try:
            v = json.loads(r.get(f) or "[]")
        except ValueError:
            v = []
        r[f] = v if isinstance(v, list) else []
    r["ivr"] = r.get("ivr") == "1"
    return r


def stream_event(entry: Any) -> StreamEvent:
    """One entry of the event stream (``(id, {type, data, journey?})`` as redis-py returns it); the
    call journey, when the entry has one, becomes ``data["journey"]``. Fields that are not JSON
    objects are read as empty: one bad entry never stops a reader of the stream."""
    eid, fields = entry
    f = {_s(k): _s(v) for k, v in (fields or {}).items()}
    data = _json_object(f.get("data"))
    if "journey" in f:
        data["journey"] = _json_object(f["journey"])
    return StreamEvent(_s(eid), f.get("type", ""), data)


def _json_object(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _callback(raw: Mapping[Any, Any]) -> dict[str, Any]:
    cb: dict[str, Any] = {_s(k): _s(v) for k, v in raw.items()}
    cb["journey"] = json.loads(cb.get("journey") or "{}")
    for name in ("place", "priority", "created_at", "ended_at"):
        if name in cb:
            cb[name] = int(float(cb[name]))
    return cb


_CASE_TIMES = ("opened_at", "due_at", "contacted_at", "resolved_at", "closed_at", "updated_at", "first_contact_ms",
               "task_at", "task_expires", "followup_at", "followup_done_at")


def _case(raw: Any) -> dict[str, Any]:
    """A case as the store returns it, from its hash (or the JSON of it a script returns): the times
    (epoch ms) int or None, ``calls`` a list, ``overdue`` a bool, ``reopened`` and ``version`` int,
    ``first_contact_met`` a bool (None before the first contact); ``task_agent`` ("" = no follow-up
    task out), ``task_at`` and ``task_expires`` (None without one), ``task_call``."""
    case: dict[str, Any] = json.loads(_s(raw)) if isinstance(raw, (str, bytes)) else dict(raw)
    for name in _CASE_TIMES:
        value = case.get(name)
        case[name] = int(float(value)) if value not in (None, "") else None
    calls = json.loads(case.get("calls") or "[]")
    case["calls"] = calls if isinstance(calls, list) else []
    case["overdue"] = case.get("overdue") == "1"
    met = case.get("first_contact_met")
    case["first_contact_met"] = None if met in (None, "") else met == "1"
    for name in ("reopened", "version"):
        case[name] = int(float(case.get(name) or 0))
    case["task_agent"] = case.get("task_agent") or ""  # the agent its follow-up task is out to
    case["task_call"] = case.get("task_call") or ""    # the call of the last accepted task
    # the follow-up (回访): followup (task | call, "" = none), followup_state, the answers as an object
    answers = json.loads(case.get("followup_answers") or "{}")
    case["followup_answers"] = answers if isinstance(answers, dict) else {}
    case["followup_attempts"] = int(float(case.get("followup_attempts") or 0))
    return case


def first_contact_figures(totals: Mapping[str, int]) -> dict[str, Any]:
    """The time-to-first-contact figures of one group of cases (a tier, or all), from its totals
    ``opened``, ``contacted``, ``within_due``, ``overdue_waiting`` and ``first_contact_ms`` (the sum
    over the contacted ones): ``met`` = within_due / (contacted + overdue_waiting), None when both
    are 0; ``avg_first_contact_s`` None when none was contacted. :meth:`QueueStore.case_first_contact`
    and ``ivr report cases --summary`` both use it."""
    judged = totals["contacted"] + totals["overdue_waiting"]
    return {"opened": totals["opened"], "contacted": totals["contacted"], "within_due": totals["within_due"],
            "overdue_waiting": totals["overdue_waiting"],
            "met": totals["within_due"] / judged if judged else None,
            "avg_first_contact_s": (totals["first_contact_ms"] / totals["contacted"] / 1000
                                    if totals["contacted"] else None)}


def _now(now_ms: int | None) -> int | str:
    """A script's clock argument: the given time (checked), or "" for the Redis server's."""
    return "" if now_ms is None else cs.check_ms("now_ms", now_ms)


def _phone_view(agent: dict[str, Any]) -> dict[str, Any]:
    """``{"mode", "registered", "contacts"}`` of an agent hash (its raw phone_* fields are consumed):
    mode ``registered`` (a phone registering at the edge; registered while the last poll of the edge
    found a binding and is recent), ``static`` (a fixed SIP URI) or ``none``."""
    mode = agent.pop("phone", "") or ""
    contacts = int(agent.pop("phone_contacts", "0") or 0)
    until = int(agent.pop("phone_until", "0") or 0)
    if mode == "registered":
        live = contacts > 0 and until > time.time() * 1000
        return {"mode": "registered", "registered": live, "contacts": contacts if live else 0}
    return {"mode": "static" if agent.get("sip_uri") else "none", "registered": False, "contacts": 0}


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


_CAMPAIGN_INTS = ("created_at", "updated_at", "records", "ring_s", "version", "tokens_at", "progress_at",
                  "running_at", "paused_at", "stopped_at", "finished_at")


def _campaign(raw: Any) -> dict[str, Any]:
    """A campaign from its hash (or the JSON of it): pacing, window (None = always open), retries and
    zones decoded, ``counts`` per record state, the times int."""
    c: dict[str, Any] = json.loads(_s(raw)) if isinstance(raw, (str, bytes)) else dict(raw)
    counts = {s.value: 0 for s in cps.RecordState}
    for name in list(c):
        if name.startswith("count:"):
            counts[name[6:]] = int(c.pop(name))
    c["counts"] = counts
    for name in _CAMPAIGN_INTS:
        if c.get(name) not in (None, ""):
            c[name] = int(float(c[name]))
    for name in ("pacing", "retries"):
        c[name] = json.loads(c[name]) if c.get(name) else {}
    c["window"] = json.loads(c["window"]) if c.get("window") else None
    c["zones"] = json.loads(c["zones"]) if c.get("zones") else [""]
    c["tokens"] = float(c.get("tokens") or 0)
    return c


def _campaign_record(raw: Any) -> dict[str, Any]:
    """A record from its hash (or the JSON of it): variables and result decoded, counts int."""
    r: dict[str, Any] = json.loads(_s(raw)) if isinstance(raw, (str, bytes)) else dict(raw)
    for name in ("n", "attempts", "zone", "added_at", "updated_at", "answered_at", "done_at"):
        if r.get(name) not in (None, ""):
            r[name] = int(float(r[name]))
    r["retry_at"] = int(float(r["retry_at"])) if r.get("retry_at") not in (None, "") else None
    r["variables"] = json.loads(r["variables"]) if r.get("variables") else {}
    r["result"] = json.loads(r["result"]) if r.get("result") else None
    return r


def _dnc_numbers(numbers: Sequence[str]) -> list[str]:
    if isinstance(numbers, str) or len(numbers) > cps.RECORDS_PER_UPLOAD:
        raise cps.invalid(f"numbers must be a list of at most {cps.RECORDS_PER_UPLOAD}")
    out = []
    for n in numbers:
        norm = cps.normalise_number(n)
        if norm is None:
            raise cps.invalid("a number is not valid")
        out.append(norm)
    return out
