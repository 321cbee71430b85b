"""What the OpenAPI document says about each route: summary, roles, parameters, bodies, replies.

One :class:`Operation` per ``(method, path)`` of the router, in :data:`OPERATIONS`. The document
(:mod:`ivr.cti.openapi`) is built from the router's routes and these entries: a route without an
entry is left out of it, and the test that compares the document with the router fails, so a new
route cannot go undocumented unnoticed.

The statuses each operation may answer follow from its entry: 401 and 503 (Redis out of reach) for
every route that needs a token, 403 unless every role may use it without condition, 400 and 413 for
a request body, 400 for checked query parameters, plus the ones listed in ``errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from ivr.core.config import ROUTING_NAME, Role
from ivr.core.events import AgentState
from ivr.cti import alerts as cti_alerts
from ivr.cti import call_control, floor_agents, quality, recordings, supervision
from ivr.cti import planning as _planning
from ivr.cti.agents import AGENT_ID, AgentCreate, AgentUpdate, RejectOffer, StateChange, WrapupExtend
from ivr.cti.calls import CALLS_LIMIT_DEFAULT, CALLS_LIMIT_MAX, LOCAL_TIME, OUTCOMES, CallRecord, Disposition
from ivr.cti.campaign_csv import ENCODINGS
from ivr.cti.campaigns import ACTIONS, CAMPAIGN_ID, RECORD_STATES, CampaignCreate, CampaignUpdate, DncChange
from ivr.cti.cases import (
    CASE_ID,
    CASES_LIMIT_DEFAULT,
    CASES_LIMIT_MAX,
    STATUSES,
    TIERS,
    CaseCallLink,
    CaseCreate,
    CaseNoteAdd,
    CaseUpdate,
)
from ivr.cti.context import LIST_MAX
from ivr.cti.cursor import CURSOR_PATTERN
from ivr.cti.dialplans import Rollback
from ivr.cti.originate import Originate
from ivr.dialplan.registry import VersionEntry

Schema = dict[str, Any]
ALL_ROLES: tuple[Role, ...] = ("agent", "supervisor", "admin")
STAFF: tuple[Role, ...] = ("supervisor", "admin")


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True)
class Param:
    """A query parameter or request header."""

    name: str
    schema: Schema
    description: str
    required: bool = False
    where: Literal["query", "header"] = "query"


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    roles: tuple[Role, ...] | None
    """Who may call it; None: public (no token)."""
    own: str = ""
    """What an agent may reach of its own when ``agent`` is not in ``roles`` (e.g. "its own profile")."""
    description: str = ""
    ok: int = 200
    response: Schema | None = None
    """Schema of the ``ok`` reply's JSON (None: no body, or not JSON: see ``content``)."""
    content: tuple[str, ...] = ("application/json",)
    body: type[BaseModel] | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    """Statuses beyond the derived ones (404, 409, 503...)."""
    replies: tuple[tuple[int, Schema], ...] = ()
    """The JSON of an error status that is not the error object (status, schema)."""
    websocket: bool = False
    raw_body: tuple[str, ...] = ()
    """Media types of a body that is not JSON (a CSV upload): documented as a string."""


# --- parameters ------------------------------------------------------------------------------

NAME_SCHEMA: Schema = {"type": "string", "pattern": ROUTING_NAME}
PATH_PARAMS: dict[str, Schema] = {
    "agent_id": {"type": "string", "pattern": AGENT_ID},
    "call_id": {"type": "string", "minLength": 1},
    "callback_id": {"type": "string", "minLength": 1},
    "queue": {"type": "string", "minLength": 1},
    "plan": {"type": "string", "minLength": 1},
    "id": {"type": "string", "minLength": 1},
    "recording_id": {"type": "string", "minLength": 1},
}
SINCE = Param("since", {"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"}],
                       "examples": ["2024-05-01", "2024-05-01T08:00:00+09:00"]},
              "start of the statistics period (ISO 8601; without an offset: the server's local time); "
              "default: local midnight")
LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": LIST_MAX, "default": 100},
              "most entries to return")
LAST_EVENT_ID = Param("last_event_id", {"type": "string", "pattern": r"^[0-9]{1,15}(-[0-9]{1,15})?$"},
                      "replay the events after this stream id (as the Last-Event-ID header does)")
ENDPOINT = Param("endpoint", NAME_SCHEMA, "only this webhook endpoint")

TIME_SCHEMA: Schema = {"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"},
                                                   {"pattern": f"^{LOCAL_TIME}$"},
                                                   {"pattern": r"^[0-9]{1,11}(\.[0-9]{1,6})?$"}],
                       "examples": ["2024-05-01", "2024-05-01T08:00:00+09:00", "1714550400"]}
CALL_LIST_PARAMS: tuple[Param, ...] = (
    Param("from", TIME_SCHEMA, "calls that started at or after (ISO 8601, without an offset the server's local "
                               "time; or epoch seconds)"),
    Param("to", TIME_SCHEMA, "calls that started before (excluded); none when not after `from`"),
    Param("number", {"type": "string", "pattern": r"^[+]?[0-9A-Za-z#._-]{1,64}[*]?$"},
          "the caller's or the dialled number, exactly; ending with `*`: numbers starting so"),
    Param("agent_id", {"type": "string", "pattern": AGENT_ID}, "calls this agent answered (agents: always "
                                                               "themselves)"),
    Param("queue", NAME_SCHEMA, "calls whose (last) queue is this one"),
    Param("outcome", {"enum": list(OUTCOMES)}, "how the call ended"),
    Param("direction", {"enum": ["inbound", "outbound"]}, "inbound (records without a direction) or outbound"),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": CALLS_LIMIT_MAX, "default": CALLS_LIMIT_DEFAULT},
          "most calls to return"),
    Param("cursor", {"type": "string", "pattern": CURSOR_PATTERN}, "the `next_cursor` of the previous "
                                                                             "page"),
)

# --- reply schemas (hand-written: the replies are Redis hashes and figures, not models) ----------

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
OBJ: Schema = {"type": "object"}
NULLABLE_STR: Schema = {"type": ["string", "null"]}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"],
                                 "properties": {"code": {**STR, "description": "stable, e.g. auth.forbidden"},
                                                "message": STR}}}},
    "Agent": {
        "type": "object", "required": ["agent_id", "name", "state"],
        "properties": {
            "agent_id": STR, "name": STR,
            "skills": {"type": "object", "additionalProperties": INT},
            "languages": {"type": "array", "items": STR},
            "sip_uri": {**STR, "description": "empty when the agent has no phone"},
            "state": {"enum": [s.value for s in AgentState]},
            "state_since": {**STR, "description": "epoch milliseconds"},
            "reason": STR,
            "call_id": STR, "offer_id": STR,
            "task": {**STR, "description": "reserved for a complaint case's follow-up task: the case id"},
            "wrapup_until": {"type": "integer", "description": "in wrap-up: when it ends (epoch ms)"},
            "phone": {"type": "object", "required": ["mode", "registered", "contacts"], "properties": {
                "mode": {"enum": ["registered", "static", "none"],
                         "description": "registered: the phone registers at the edge (sip_uri is its AOR); "
                                        "static: a fixed sip_uri; none: no phone"},
                "registered": {"type": "boolean", "description": "mode registered: the edge holds a live "
                               "registration (offers go only to such agents)"},
                "contacts": {**INT, "description": "registered devices; an offer rings them all"}}}}},
    "AgentList": {"type": "object", "required": ["agents"],
                  "properties": {"agents": {"type": "array", "items": ref("Agent")}}},
    "NewAgent": {"allOf": [ref("Agent"), {"type": "object", "required": ["token"], "properties": {
        "token": {**STR, "description": "the agent's bearer token, shown this once"}}}]},
    "NewSipPassword": {
        "type": "object", "required": ["agent_id", "username", "sip_password", "realm", "aor"],
        "properties": {"agent_id": STR, "username": {**STR, "description": "digest user name (the agent id)"},
                       "sip_password": {**STR, "description": "shown this once; only its HA1 is kept"},
                       "realm": STR, "aor": {**STR, "description": "what the phone registers"}}},
    "NewToken": {"type": "object", "required": ["agent_id", "token"],
                 "properties": {"agent_id": STR, "token": STR}},
    "CallList": {
        "type": "object", "required": ["calls", "next_cursor"],
        "properties": {"calls": {"type": "array", "items": ref("CallRecord")},
                       "next_cursor": {**NULLABLE_STR,
                                       "description": "give it as `cursor` (with the same filters) for the next "
                                                      "page; null on the last page"}}},
    "Dispositions": {"type": "object", "required": ["dispositions"],
                     "properties": {"dispositions": {"type": "array", "items": STR}}},
    "VoicemailList": {
        "type": "object", "required": ["mailbox", "voicemail"],
        "properties": {"mailbox": STR, "voicemail": {"type": "array", "items": {
            "type": "object", "required": ["url"],
            "properties": {"call_id": STR, "url": STR, "seconds": {"type": "number"}}}}}},
    "CommandAccepted": {
        "type": "object", "required": ["call_id", "command", "status", "command_id"],
        "properties": {"call_id": STR, "command": STR, "status": {"enum": ["accepted"]}, "command_id": STR}},
    "Callback": {"type": "object", "properties": {"id": STR, "queue": STR, "state": STR}},
    "Originated": {
        "type": "object", "required": ["call_id", "status", "agent_id", "direction"],
        "properties": {"call_id": STR, "agent_id": STR, "direction": {"const": "outbound"},
                       "status": {**STR, "description": "dialing; for a replayed Idempotency-Key the call's "
                                                        "state now (connected, ended...)"}}},
    "CallbackList": {"type": "object", "required": ["queue", "callbacks"],
                     "properties": {"queue": STR, "callbacks": {"type": "array", "items": ref("Callback")}}},
    "QueueStats": {
        "type": "object", "required": ["queue", "waiting", "longest_wait_s", "agents", "interval", "period"],
        "properties": {
            "queue": STR, "skill": STR, "at": STR, "waiting": INT,
            "longest_wait_s": {"type": "number"},
            "agents": {"type": "object", "additionalProperties": INT},
            "interval": OBJ, "period": OBJ}},
    "AgentQueues": {"type": "object", "required": ["agent_id", "queues"], "properties": {
        "agent_id": STR, "queues": {"type": "array", "items": {
            "type": "object", "required": ["queue", "skill", "waiting", "longest_wait_s", "agents"],
            "properties": {"queue": STR, "skill": STR, "waiting": INT, "longest_wait_s": {"type": "number"},
                           "agents": {"type": "object", "additionalProperties": INT,
                                      "description": "agents of the queue per state"}}}}}},
    "QueueList": {"type": "object", "required": ["queues"], "properties": {"queues": {"type": "array", "items": {
        "type": "object", "required": ["queue", "waiting", "stats", "target", "thresholds"],
        "properties": {"queue": STR, "skill": STR, "waiting": INT, "stats": ref("QueueStats"),
                       "target": {"type": "object", "required": ["share", "threshold_s"],
                                  "properties": {"share": {"type": "number"}, "threshold_s": INT},
                                  "description": "the service-level target: share answered within threshold_s"},
                       "thresholds": {"type": "object", "additionalProperties": {"type": "number"},
                                      "description": "per queue metric (service_level, longest_wait_s, "
                                                     "abandon_rate, waiting, staffing_gap) the threshold of the "
                                                     "alert rule in force (the tightest when several)"}}}}}},
    "DialplanList": {"type": "object", "required": ["dialplans"], "properties": {"dialplans": {
        "type": "array", "items": {"type": "object", "required": ["plan"], "properties": {
            "plan": STR, "name": NULLABLE_STR, "file": NULLABLE_STR, "active": NULLABLE_STR,
            "archived": NULLABLE_STR, "numbers": {"type": "array"}, "workers": OBJ, "errors": OBJ}}}}},
    "DialplanVersions": {"type": "object", "required": ["plan", "current", "versions"], "properties": {
        "plan": STR, "current": NULLABLE_STR, "versions": {"type": "array", "items": ref("VersionEntry")}}},
    "RollbackDone": {"allOf": [ref("VersionEntry"), {"type": "object", "required": ["plan", "previous"],
                                                     "properties": {"plan": STR, "previous": NULLABLE_STR}}]},
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
    "Ready": {"type": "object", "required": ["ready", "redis"], "properties": {
        "ready": {"type": "boolean"}, "redis": {"type": "boolean"}, "workers_alive": INT, "workers": INT}},
}
#: pydantic models whose JSON schema goes to the components (request bodies, some replies)
MODELS: tuple[type[BaseModel], ...] = (AgentCreate, AgentUpdate, StateChange, WrapupExtend, RejectOffer,
                                       Disposition, Rollback, VersionEntry, CallRecord, Originate)

# --- the operations ----------------------------------------------------------------------------

OPERATIONS: dict[tuple[str, str], Operation] = {
    # operations
    ("GET", "/healthz"): Operation("Liveness: the API process answers", "health", None, response=ref("Health")),
    ("GET", "/readyz"): Operation(
        "Readiness: Redis answers and enough workers are alive", "health", None, response=ref("Ready"),
        description="503 (same body) while Redis is down or fewer workers than `workers.count` hold "
                    "their lease.", errors=(503,), replies=((503, ref("Ready")),)),
    ("GET", "/api/v1/config"): Operation(
        "The configuration this API instance runs with, every secret masked", "health", ("admin",),
        response=OBJ),
    ("GET", "/api/openapi.json"): Operation("This document (OpenAPI 3.1)", "health", None, response=OBJ),
    ("GET", "/metrics"): Operation(
        "Prometheus metrics", "health", STAFF, content=("text/plain", "application/openmetrics-text"),
        description="Active calls, callers waiting and the longest wait per queue, agents per state, "
                    "desktop sockets, webhook backlog and dead letters, the screen-pop latency "
                    "histogram and HTTP requests by route and status. Prometheus sends the token as "
                    "`authorization: {type: Bearer, credentials: ...}`."),
    # agents
    ("GET", "/api/v1/agents"): Operation("Every agent with its state", "agents", STAFF, response=ref("AgentList")),
    ("POST", "/api/v1/agents"): Operation(
        "Create an agent", "agents", ("admin",), ok=201, body=AgentCreate, response=ref("NewAgent"),
        description="The reply carries the agent's token, shown this once (only its SHA-256 is kept). "
                    "409 `agent.exists` when the id is taken.", errors=(409,)),
    ("GET", "/api/v1/agents/{agent_id}"): Operation(
        "An agent's profile and state", "agents", STAFF, own="its own profile", response=ref("Agent"),
        errors=(404,)),
    ("PATCH", "/api/v1/agents/{agent_id}"): Operation(
        "Change an agent's profile", "agents", ("admin",), body=AgentUpdate, response=ref("Agent"),
        description="A change of skills applies to the next routing decision. 409 `agent.configured` for "
                    "an agent of the configuration file (edit it there).", errors=(404, 409)),
    ("DELETE", "/api/v1/agents/{agent_id}"): Operation(
        "Delete an agent", "agents", ("admin",), ok=204,
        description="409 `agent.busy` while it holds a call, `agent.configured` for an agent of the "
                    "configuration file.", errors=(404, 409)),
    ("POST", "/api/v1/agents/{agent_id}/token"): Operation(
        "Give an agent a new token", "agents", ("admin",), response=ref("NewToken"),
        description="The old token stops working at once. Only for agents made over the API.",
        errors=(404, 409)),
    ("POST", "/api/v1/agents/{agent_id}/sip-password"): Operation(
        "Give an agent's registering phone a new SIP password", "agents", ("admin",),
        response=ref("NewSipPassword"),
        description="Generated, shown this once, stored only as its digest HA1. The edge accepts it (and "
                    "drops the phone's registrations made with the old one) within "
                    "`edge.registrar.poll_interval_s`. 409 `agent.phone_static` for an agent without "
                    "`phone: registered`, `agent.configured` when the configuration file fixes the password.",
        errors=(404, 409)),
    ("POST", "/api/v1/agents/{agent_id}/state"): Operation(
        "Set an agent's state", "agents", ("supervisor",), own="its own state", body=StateChange,
        response=ref("Agent"),
        description="available, break or offline; 409 `agent.state_invalid` for the states routing sets.",
        errors=(404, 409)),
    ("POST", "/api/v1/agents/{agent_id}/wrapup"): Operation(
        "Extend an agent's wrap-up", "agents", ("supervisor",), own="its own wrap-up", body=WrapupExtend,
        response=ref("Agent"),
        description="The wrap-up deadline (`wrapup_until`, epoch ms) moves `extend_s` later, at most "
                    "`routing.wrapup_max_s` after the wrap-up began; `agent.wrapup_extended` tells the "
                    "desktops. 409 `agent.not_in_wrapup`, `agent.wrapup_max`. Ready now: set the state "
                    "to available.", errors=(404, 409)),
    ("GET", "/api/v1/agents/{agent_id}/events"): Operation(
        "The agent desktop's live feed (WebSocket)", "agents", ("supervisor",), own="its own events",
        websocket=True, params=(LAST_EVENT_ID,
                                Param("Last-Event-ID", LAST_EVENT_ID.schema, LAST_EVENT_ID.description,
                                      where="header")),
        description="JSON messages: `hello` (agent, current call), then `call.offered` (the screen-pop, "
                    "before the phone rings), `call.answered`, `call.ended`, `agent.state`... each with "
                    "its stream `id`. A browser may send the token as the sub-protocol `bearer.<token>`.",
        errors=(404,)),
    ("GET", "/api/v1/events"): Operation(
        "Every agent's and queue's events (WebSocket), for the wallboard", "agents", STAFF, websocket=True,
        params=(LAST_EVENT_ID,)),
    # calls
    ("GET", "/api/v1/calls"): Operation(
        "Call records, newest first: filters and cursor pagination", "calls", STAFF, own="the calls it took",
        response=ref("CallList"), params=CALL_LIST_PARAMS,
        description="Calls by start time, newest first. An agent gets the calls it answered (also the ones it "
                    "transferred) whatever `agent_id` says. A page holds at most `limit` calls and costs what "
                    "it reads, not what is stored: with a filter few calls pass, a page may hold fewer (up to "
                    "1,000 records are looked at per request) and `next_cursor` goes on from there. Calls that "
                    "start while paging never shift the pages. Calls are listed as long as their record is kept "
                    "(`routing.call_ttl_s` after they end). 400 `request.invalid` for a bad parameter or a "
                    "cursor not made for these filters."),
    ("GET", "/api/v1/calls/{call_id}"): Operation(
        "A call record", "calls", STAFF, own="the calls it took part in (answered, transferred on, conferenced)",
        response=ref("CallRecord"),
        description="Journey, survey score, voicemail (its download URL), variables, callback.",
        errors=(404,)),
    ("GET", "/api/v1/calls/{call_id}/voicemail"): Operation(
        "A call's voicemail", "calls", STAFF, content=("audio/wav",), errors=(404,)),
    ("POST", "/api/v1/calls/{call_id}/disposition"): Operation(
        "Wrap-up: disposition code and notes", "calls", STAFF, own="the calls it took", body=Disposition,
        response=ref("CallRecord"),
        description="400 `call.disposition_invalid` for a code not in `api.dispositions`; the "
                    "`call.disposition` event carries it to the CRM's webhook. With `case` ({tier, reason}) a "
                    "complaint case is opened for the call (owner: the call's agent, customer: the call's number, "
                    "due as for `POST /api/v1/cases`) and the reply carries its `case_id`; a call already linked "
                    "to a case keeps that one.", errors=(404,)),
    ("POST", "/api/v1/calls/{call_id}/reject"): Operation(
        "Refuse an offered call", "calls", STAFF, own="an offer made to it", body=RejectOffer, ok=202,
        response=ref("CommandAccepted"),
        description="The worker cancels the agent's ringing leg; the caller goes back to the head of its "
                    "queue and the agent to `break` (reason `rejected`): `call.offer_failed`. 409 "
                    "`offer.stale` when that offer is not ringing any more (answered, failed, another "
                    "offer), `call.ended`, `call.gone`; 504 `command.timeout`.", errors=(404, 409, 504)),
    ("POST", "/api/v1/calls/{call_id}/hangup"): Operation(
        "End a live call", "calls", STAFF, own="the call it is on", ok=202, response=ref("CommandAccepted"),
        description="Ends the call for every party through the worker that holds it (any API instance). "
                    "202 once the worker hung up; 404 `call.not_found`; 409 `call.ended` when it is over, "
                    "`call.gone` when it ended meanwhile or its worker is gone; 504 `command.timeout` when "
                    "the worker did not answer within `api.command_timeout_s` (the command is then dropped).",
        errors=(404, 409, 504)),
    ("POST", "/api/v1/calls"): Operation(
        "Click-to-dial: ring the agent's phone, then the customer's", "calls", STAFF,
        own="calls for itself, while available", ok=202, body=Originate, response=ref("Originated"),
        params=(Param("Idempotency-Key", {"type": "string", "pattern": r"^[\x21-\x7e]{1,128}$"},
                      "a retry with the same key (same user, same request, within 24 h) gets the first call "
                      "back (`Idempotent-Replayed: true`) instead of ringing twice", where="header"),),
        description="The agent's desktop pops (`call.offered`, direction outbound) and its phone rings; when "
                    "the agent answers (`call.dialing`) the customer is dialled with `calls.caller_id` (empty: "
                    "the first hotline's number) and both are bridged (`call.answered`). A normal call record "
                    "with `direction` outbound; not connected, it ends with outcome agent_no_answer, "
                    "agent_rejected, no_answer, busy, failed or cancelled. 403 `number.not_allowed` (not in "
                    "`calls.outbound_allow`), `request.invalid` (no agent_id from a supervisor or admin); "
                    "403 an agent naming another agent; 404 `agent.not_found`, `queue.not_found`; 409 "
                    "`agent.not_available` (not available), `agent.no_phone`, `idempotency.mismatch` (the key "
                    "was used for another request); 503 `worker.unavailable` (no worker has a free call slot).",
        errors=(404, 409)),
    ("GET", "/api/v1/dispositions"): Operation(
        "The disposition codes an agent may set", "calls", ALL_ROLES, response=ref("Dispositions")),
    ("GET", "/api/v1/voicemail"): Operation(
        "A mailbox's voicemail, newest first", "calls", STAFF, response=ref("VoicemailList"),
        params=(Param("mailbox", NAME_SCHEMA, "the mailbox", required=True), LIMIT)),
    ("GET", "/api/v1/callbacks"): Operation(
        "A queue's pending callbacks, best place first", "calls", STAFF, response=ref("CallbackList"),
        params=(Param("queue", NAME_SCHEMA, "the queue", required=True),)),
    ("DELETE", "/api/v1/callbacks/{callback_id}"): Operation(
        "Cancel a pending callback", "calls", STAFF, response=ref("Callback"),
        description="409 `callback.not_pending` once it is being dialled or over.", errors=(404, 409)),
    # queues
    ("GET", "/api/v1/queues"): Operation(
        "Every queue with its live statistics, target and alert thresholds", "queues", STAFF,
        response=ref("QueueList"), params=(SINCE,),
        description="Configured queues (`routing.queues` and the plans' queue nodes) are listed before their "
                    "first call, with zero figures."),
    ("GET", "/api/v1/agents/{agent_id}/queues"): Operation(
        "The queues an agent serves, with their live counts", "queues", STAFF, own="its own queues",
        response=ref("AgentQueues"),
        description="The queues whose skills the agent has all of: callers waiting, the longest wait (s) "
                    "and how many of the queue's agents are in each state. Counts only; shared by every "
                    "desktop of the API instance for 2 s unless `fresh=1`.", errors=(404,),
        params=(Param("fresh", {"type": "string", "enum": ["1"]}, "read the counts now, not the 2 s cache"),)),
    ("GET", "/api/v1/queues/{queue}/stats"): Operation(
        "A queue's live statistics", "queues", STAFF, response=ref("QueueStats"), params=(SINCE,),
        errors=(404,)),
    # dial plans
    ("GET", "/api/v1/dialplans"): Operation(
        "Every dial plan: the version each live worker runs, the last load errors", "dialplans", STAFF,
        response=ref("DialplanList")),
    ("GET", "/api/v1/dialplans/{plan}/versions"): Operation(
        "A dial plan's archived versions, newest first", "dialplans", STAFF, response=ref("DialplanVersions"),
        errors=(404,)),
    ("POST", "/api/v1/dialplans/{plan}/rollback"): Operation(
        "Put an archived version back", "dialplans", ("admin",), body=Rollback, response=ref("RollbackDone"),
        description="Writes the version back to the plan file; the workers' watchers load it. 404 "
                    "`dialplan.version_not_found` when there is no such (or no previous) version.",
        errors=(404,)),
    # webhooks (ivr.cti.webhooks)
    ("GET", "/api/v1/webhooks"): Operation(
        "The webhook endpoints with their backlog", "webhooks", STAFF, response=OBJ),
    ("GET", "/api/v1/webhooks/dead-letters"): Operation(
        "Deliveries given up after the last retry", "webhooks", STAFF, response=OBJ, params=(ENDPOINT, LIMIT),
        errors=(404,)),
    ("POST", "/api/v1/webhooks/dead-letters/{delivery_id}/replay"): Operation(
        "Deliver a dead letter again", "webhooks", ("admin",), response=OBJ, errors=(404,)),
    ("POST", "/api/v1/webhooks/dead-letters/replay"): Operation(
        "Deliver every dead letter again", "webhooks", ("admin",), response=OBJ, params=(ENDPOINT,),
        errors=(404,)),
}

# --- call control (ivr.cti.call_control; docs/call-control.md) -------------------------------------

_COMMAND_ERRORS = (
    " 404 `call.not_found`; 409 `call.ended`, `call.gone` (it ended meanwhile or its worker is gone), "
    "`call.wrong_state` (the message says the state); 504 `command.timeout` when the worker did not "
    "answer within `api.command_timeout_s` (nothing was done).")


def _control(summary: str, description: str, *, body: type[BaseModel] | None = None,
             errors: tuple[int, ...] = (), own: str = "the call it is on") -> Operation:
    return Operation(summary, "call control", STAFF, own=own, ok=202, response=ref("CommandAccepted"),
                     description=description + _COMMAND_ERRORS, body=body, errors=(404, 409, 504, *errors))


OPERATIONS.update({
    ("POST", "/api/v1/calls/{call_id}/recording/start"): _control(
        "Start recording the call", "For a queue whose recording policy is `on_demand` (with `always` it is "
        "already on: accepted, nothing changes). The caller hears the recording notice. 403 "
        "`recording.not_allowed` when calls of the queue are never recorded.", errors=(403,)),
    ("POST", "/api/v1/calls/{call_id}/recording/pause"): _control(
        "Pause the recording", "Until resumed the recording has silence (e.g. while the customer reads a card "
        "number); the pause is listed in the recording's `pauses`. 409 `recording.off` when it is not "
        "recording. Idempotent."),
    ("POST", "/api/v1/calls/{call_id}/recording/resume"): _control(
        "Resume the recording", "Idempotent."),
    ("POST", "/api/v1/calls/{call_id}/hold"): _control(
        "Put the caller on hold", "The caller hears music on hold, the agent hears nothing. Holding a "
        "held call is accepted and changes nothing (`call.held` once)."),
    ("POST", "/api/v1/calls/{call_id}/resume"): _control(
        "Take the caller off hold", "Caller and agent talk again (`call.resumed` with the seconds held; "
        "hold time counts in handle time). Idempotent."),
    ("POST", "/api/v1/calls/{call_id}/mute"): _control(
        "Mute the agent", "Nobody hears the agent; the agent still hears the call. Idempotent."),
    ("POST", "/api/v1/calls/{call_id}/unmute"): _control("Unmute the agent", "Idempotent."),
    ("POST", "/api/v1/calls/{call_id}/transfer"): _control(
        "Blind transfer", "The agent is released to wrap-up at once; the caller goes to a queue (keeping "
        "its journey and priority; the next agent's pop shows `transferred_from`), to a named agent "
        "(who must be available: 409 `agent.not_available`; not answering: the caller goes back to "
        "the head of its queue) or to a number allowed by `calls.outbound_allow` (403 "
        "`number.not_allowed`; not answering: back to its queue). 404 `queue.not_found`, "
        "`agent.not_found`.", body=call_control.TargetBody, errors=(400,)),
    ("POST", "/api/v1/calls/{call_id}/consult"): _control(
        "Consult a colleague, a queue or a number", "The caller hears music while the target rings "
        "(`calls.consult_ring_s`); the agent talks to it once it answers (`call.consult_answered`), "
        "or is back with the caller when it does not (`call.consult_failed`). A queue target is an "
        "available agent of that queue now (409 `queue.no_agent_available`). 503 `call.no_leg` "
        "(with Retry-After) when the worker holding the call has no leg free for it: nothing changed, "
        "the caller still talks to the agent. 403 `number.not_allowed` for a number "
        "`calls.outbound_allow` does not allow.", body=call_control.TargetBody, errors=(400, 503)),
    ("POST", "/api/v1/calls/{call_id}/consult/complete"): _control(
        "Complete the consult (warm transfer)", "Caller and target talk; the agent is released to "
        "wrap-up. The consulting agent's (or staff's) to give: the consulted agent may only leave a "
        "conference."),
    ("POST", "/api/v1/calls/{call_id}/consult/cancel"): _control(
        "Cancel the consult", "The target's leg ends; the agent is back with the caller."),
    ("POST", "/api/v1/calls/{call_id}/consult/swap"): _control(
        "Swap between caller and target", "The agent talks to the other party; the one left hears music."),
    ("POST", "/api/v1/calls/{call_id}/conference"): _control(
        "Join caller, agent and target", "From an answered consult: all three hear each other."),
    ("POST", "/api/v1/calls/{call_id}/conference/leave"): _control(
        "Leave the conference", "The asking agent (or, for supervisors and admins, `agent_id`) leaves; "
        "the caller and the other party go on.", body=call_control.LeaveBody,
        own="the call it is on or is consulted on"),
    ("POST", "/api/v1/calls/{call_id}/dtmf"): _control(
        "Send keys to the caller's leg", "RFC 2833 telephone events (e.g. into an external IVR after a "
        "transfer). The keys are never logged.", body=call_control.DtmfBody, errors=(400,)),
    ("GET", "/api/v1/call-targets"): Operation(
        "Where a call can be transferred", "call control", ALL_ROLES, response=ref("CallTargets"),
        description="Agents with their state, queues with the callers waiting, and the directory of "
                    "external numbers (`calls.directory`, those `calls.outbound_allow` allows)."),
})
SCHEMAS["CallTargets"] = {
    "type": "object", "required": ["agents", "queues", "numbers"],
    "properties": {
        "agents": {"type": "array", "items": {"type": "object", "required": ["id", "name", "state"],
                                              "properties": {"id": STR, "name": STR, "state": STR}}},
        "queues": {"type": "array", "items": {"type": "object", "required": ["name", "waiting"],
                                              "properties": {"name": STR, "waiting": INT}}},
        "numbers": {"type": "array", "items": {"type": "object", "required": ["label", "number"],
                                               "properties": {"label": STR, "number": STR}}}}}
MODELS = (*MODELS, call_control.TargetBody, call_control.LeaveBody, call_control.DtmfBody)

# --- live supervision (ivr.cti.supervision; docs/call-control.md "Live supervision") ---------------

_MONITOR = (" Supervisors and admins only: anyone else gets 403 `auth.forbidden` and an audit entry "
            "`monitor.denied`. Every start, change and stop is in the audit trail and an event `call.monitor`.")

OPERATIONS.update({
    ("POST", "/api/v1/calls/{call_id}/monitor"): Operation(
        "Listen to, whisper to or barge into a call", "call control", STAFF, ok=202,
        response=ref("CommandAccepted"), body=supervision.MonitorStartBody, errors=(400, 403, 404, 409, 504),
        description="The worker holding the call dials the supervisor's phone (`target_type` number: a "
        "number `calls.outbound_allow` allows, else 403 `number.not_allowed`; agent: the phone of that "
        "agent, or of a configured user with a `sip_uri`, else 404 `agent.not_found`) as an extra leg; "
        "it rings `supervision.ring_s`. listen: the supervisor hears caller and agent, nobody hears "
        "the supervisor; whisper: the agent hears the supervisor too, the caller does not; barge: all "
        "three talk. 503 `call.no_leg` (Retry-After) when that worker has no leg free (the call is unchanged), 409 "
        "`monitor.active` when a supervisor is already on the call." + _MONITOR + _COMMAND_ERRORS),
    ("PATCH", "/api/v1/calls/{call_id}/monitor"): Operation(
        "Switch between listen, whisper and barge", "call control", STAFF, ok=202,
        response=ref("CommandAccepted"), body=supervision.MonitorChangeBody, errors=(400, 403, 404, 409, 504),
        description="409 `monitor.none` when no supervisor is on the call." + _MONITOR + _COMMAND_ERRORS),
    ("DELETE", "/api/v1/calls/{call_id}/monitor"): Operation(
        "Stop supervising", "call control", STAFF, ok=202, response=ref("CommandAccepted"),
        errors=(403, 404, 409, 504),
        description="The supervisor's leg ends; caller and agent go on as before. 409 `monitor.none` "
        "when no supervisor is on the call." + _MONITOR + _COMMAND_ERRORS),
})
MODELS = (*MODELS, supervision.MonitorStartBody, supervision.MonitorChangeBody)

# --- complaint cases (ivr.cti.cases; docs/cti-api.md "Complaint cases") ----------------------------

PATH_PARAMS["case_id"] = {"type": "string", "pattern": CASE_ID}
NULLABLE_INT: Schema = {"type": ["integer", "null"]}
TIER_ENUM: Schema = {"enum": list(TIERS)}
STATUS_ENUM: Schema = {"enum": list(STATUSES)}
PER_TIER: Schema = {"type": "object", "additionalProperties": INT}
SCHEMAS.update({
    "Case": {
        "type": "object", "required": ["id", "tier", "status", "owner", "opened_at", "due_at", "calls", "version"],
        "properties": {
            "id": {**STR, "pattern": CASE_ID, "description": "readable over the phone (CS17)"},
            "tier": TIER_ENUM, "status": STATUS_ENUM,
            "reason": STR, "customer": {**STR, "description": "the customer's number, or empty"},
            "customer_name": STR, "crm_id": STR,
            "hotline": {**STR, "description": "the dial plan whose business hours count"},
            "owner": {**STR, "description": "the agent who owns it, or empty"},
            "opened_by": {**STR, "description": "ivr:<plan>, or the user who opened it"},
            "opened_at": INT,
            "due_at": {**NULLABLE_INT, "description": "first contact is due by then (epoch ms)"},
            "contacted_at": NULLABLE_INT, "resolved_at": NULLABLE_INT, "closed_at": NULLABLE_INT,
            "updated_at": NULLABLE_INT,
            "calls": {"type": "array", "items": STR, "description": "linked call ids, newest last (50 at most)"},
            "reopened": INT,
            "overdue": {"type": "boolean", "description": "its deadline passed before the first contact"},
            "first_contact_ms": {**NULLABLE_INT, "description": "opened to first contacted"},
            "task_agent": {**STR, "description": "the agent its follow-up task is offered to now, or empty"},
            "task_at": {**NULLABLE_INT, "description": "when the task was offered (epoch ms)"},
            "task_expires": {**NULLABLE_INT,
                             "description": "when the task goes back unless accepted or declined (epoch ms)"},
            "version": {**INT, "description": "goes up with every change"}}},
    "CaseNote": {"type": "object", "required": ["at", "by", "text"],
                 "properties": {"at": INT, "by": STR, "text": STR}},
    "CaseList": {
        "type": "object", "required": ["cases", "next_cursor", "due_soon_s"],
        "properties": {"cases": {"type": "array", "items": ref("Case")},
                       "due_soon_s": {**INT, "description": "`cases.due_soon_s`: what `due=soon` means"},
                       "next_cursor": {**NULLABLE_STR, "description": "give it as `cursor` (with the same filters) "
                                                                      "for the next page; null on the last page"}}},
    "CaseCounts": {
        "type": "object", "required": ["status", "open", "overdue", "due_soon", "first_contact"],
        "properties": {
            "status": {**PER_TIER, "description": "cases per status"},
            "open": {**PER_TIER, "description": "open and reopened cases per tier"},
            "overdue": {**INT, "description": "open or reopened cases past their due time"},
            "due_soon": {**INT, "description": "open or reopened cases due within `cases.due_soon_s`"},
            "first_contact": {"type": "object", "description": "cases opened today (local midnight), per tier",
                              "additionalProperties": {
                                  "type": "object", "required": ["contacted", "within_due", "met"],
                                  "properties": {"contacted": INT, "within_due": INT,
                                                 "met": {"type": ["number", "null"],
                                                         "description": "within_due / contacted"},
                                                 "avg_first_contact_s": {"type": ["number", "null"]}}}}}},
})
SCHEMAS["TaskAccepted"] = {
    "type": "object", "required": ["call_id", "status", "case_id"],
    "properties": {"call_id": {**STR, "description": "the follow-up call (its record carries `case_id`)"},
                   "status": {**STR, "description": "dialing"}, "case_id": {**STR, "pattern": CASE_ID}}}
SCHEMAS["TaskDeclined"] = {
    "type": "object", "required": ["case_id", "agent_id", "reason"],
    "properties": {"case_id": {**STR, "pattern": CASE_ID},
                   "agent_id": {**STR, "description": "the agent the task was offered to"},
                   "reason": {"const": "declined"}}}
SCHEMAS["CaseDetail"] = {"allOf": [ref("Case"), {"type": "object", "required": ["notes"], "properties": {
    "notes": {"type": "array", "items": ref("CaseNote"), "description": "the latest 50, newest first"}}}]}
MODELS = (*MODELS, CaseCreate, CaseUpdate, CaseNoteAdd, CaseCallLink)
_MINE = "its own cases"
OPERATIONS.update({
    ("POST", "/api/v1/cases"): Operation(
        "Open a complaint case", "cases", ALL_ROLES, own="cases it owns, on calls it took", ok=201, body=CaseCreate,
        response=ref("Case"),
        description="The due time is `cases.due_s` of the tier from now, counted in the business hours of the "
                    "case's plan (the call's, else `cases.hours_plan`) when `cases.business_hours`. An agent owns "
                    "the cases it opens (403 naming another owner); supervisors and admins name any agent or "
                    "none. With `call_id` (an agent: a call it took) the case takes the call's customer and "
                    "hotline unless given, and is linked to it. 404 `call.not_found`, `agent.not_found`. "
                    "`case.opened` goes to the owner's desktop, the wallboard and the webhooks.",
        errors=(404,)),
    ("GET", "/api/v1/cases"): Operation(
        "Complaint cases, newest first: filters and cursor pagination", "cases", STAFF, own=_MINE,
        response=ref("CaseList"),
        params=(Param("status", STATUS_ENUM, "cases in this status"),
                Param("owner", {"type": "string", "pattern": f"^me$|{AGENT_ID}"},
                      "`me` or an agent id (agents: themselves only, 403 for another)"),
                Param("tier", TIER_ENUM, "cases of this tier"),
                Param("due", {"enum": ["soon", "overdue"]}, "open or reopened cases due within "
                                                            "`cases.due_soon_s` / past their due time"),
                Param("limit", {"type": "integer", "minimum": 1, "maximum": CASES_LIMIT_MAX,
                                "default": CASES_LIMIT_DEFAULT}, "most cases to return"),
                Param("cursor", {"type": "string", "pattern": CURSOR_PATTERN},
                      "the `next_cursor` of the previous page (400 `request.invalid` with other filters)")),
        description="By opening time, newest first. An agent gets its own cases, whatever `owner` says "
                    "(naming another agent: 403)."),
    ("GET", "/api/v1/cases/counts"): Operation(
        "Complaint counts for the wallboard", "cases", STAFF, response=ref("CaseCounts"),
        description="Open cases per tier, cases per status, overdue, due soon, and the first contact of "
                    "today's cases per tier (contacted, within the due time, the ratio met)."),
    ("GET", "/api/v1/cases/{case_id}"): Operation(
        "A complaint case with its latest notes", "cases", STAFF, own="its own cases and a task offered to it",
        response=ref("CaseDetail"), errors=(404,),
        description="404 `case.not_found`; 403 for an agent and another agent's case (unless offered to it as a "
                    "follow-up task: `task_agent`)."),
    ("PATCH", "/api/v1/cases/{case_id}"): Operation(
        "Change a case's status, tier, owner or reason", "cases", STAFF, own=_MINE, body=CaseUpdate,
        response=ref("Case"),
        description="An agent changes status and reason of its own cases and may claim an unowned case "
                    "(`owner`: itself). A reopened case is due `cases.due_s` of its tier from now; a tier change "
                    "of a case not yet contacted moves its due time (from when it was opened). 409 "
                    "`case.bad_transition` for a move the state machine does not allow (open -> contacted, "
                    "resolved, closed; contacted -> resolved, closed; resolved -> closed, reopened; closed -> "
                    "reopened; reopened -> contacted, resolved, closed); 404 `case.not_found`, `agent.not_found`. "
                    "Closing schedules the follow-up (回访) of `cases.follow_up`, or the body's `follow_up` "
                    "(`mode` none | task | call, `after_s`, `plan`): 400 `case.follow_up_plan` for a call without "
                    "a dial plan that exists, `request.invalid` for `follow_up` without status closed; reopening "
                    "cancels a follow-up not under way. An empty body changes nothing.", errors=(404, 409)),
    ("POST", "/api/v1/cases/{case_id}/notes"): Operation(
        "Add a note to a case", "cases", STAFF, own=_MINE, ok=201, body=CaseNoteAdd, response=ref("CaseNote"),
        description="`case.note` carries its length (not its text) to the desktops and webhooks.", errors=(404,)),
    ("POST", "/api/v1/cases/{case_id}/calls"): Operation(
        "Link a call to a case", "cases", STAFF, own="its own cases and calls it took", body=CaseCallLink,
        response=ref("Case"),
        description="The call record gets the `case_id` (a call links to one case: the last). 404 "
                    "`case.not_found`, `call.not_found`.", errors=(404,)),
    ("POST", "/api/v1/cases/{case_id}/task/accept"): Operation(
        "Dial the follow-up task offered to me", "cases", ("agent",), ok=202, response=ref("TaskAccepted"),
        description="Only the agent the task is offered to (`case.task_offered`; supervisors and admins may not "
                    "accept for an agent: 403). As click-to-dial: the agent's phone rings, then the case's "
                    "customer with `calls.caller_id` (empty: the first hotline's number); the call record "
                    "carries `case_id` and the case links the call; once the customer answers the case is "
                    "`contacted`. 409 `case.task_gone` (not offered to this agent, or no more: declined, "
                    "expired after `cases.task_timeout_s`), `case.no_number` (the case has no customer number); "
                    "403 `number.not_allowed` (not in `calls.outbound_allow`); 404 `case.not_found`; 503 "
                    "`worker.unavailable` (no live worker with a free call slot; the task stays offered).",
        errors=(404, 409)),
    ("POST", "/api/v1/cases/{case_id}/task/decline"): Operation(
        "Skip a follow-up task", "cases", STAFF, own="a task offered to it", response=ref("TaskDeclined"),
        description="The agent is available again and is not offered this case for 10 minutes; the case is "
                    "offered to another agent at the next housekeeping tick (`case.task_declined`). Supervisors "
                    "and admins take a task back from whichever agent holds it. 409 `case.task_gone` (no task "
                    "offered, or to another agent); 404 `case.not_found`; 403 an agent and a case neither its "
                    "own nor offered to it.", errors=(404, 409)),
})


# --- recordings and the audit trail (ivr.cti.recordings; docs/recording.md) ------------------------

RECORDING_PARAMS: tuple[Param, ...] = (
    Param("from", TIME_SCHEMA, "recordings that started at or after"),
    Param("to", TIME_SCHEMA, "recordings that started before (excluded)"),
    Param("agent_id", {"type": "string", "pattern": AGENT_ID}, "recordings this agent is heard on (agents: "
                                                               "always themselves)"),
    Param("queue", NAME_SCHEMA, "recordings of calls answered from this queue"),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": LIST_MAX, "default": 50}, "most to return"),
    Param("cursor", {"type": "string", "pattern": CURSOR_PATTERN}, "the `next_cursor` of the previous page"),
)
SCHEMAS.update({
    "Recording": {
        "type": "object", "required": ["id", "call_id", "started_at", "duration_ms", "format", "sha256", "audio_url"],
        "properties": {
            "id": {"type": "string", "pattern": r"^R[0-9a-f]{20}$"}, "call_id": STR, "started_at": INT,
            "ended_at": INT, "duration_ms": INT, "format": {"enum": ["opus", "mp3"]},
            "channels": {"type": "string", "description": "left, right: caller,agent"}, "clock_rate": INT,
            "bytes": INT, "sha256": STR, "agents": {"type": "array", "items": STR}, "agent_id": STR, "queue": STR,
            "pauses": {"type": "array", "items": {"type": "array", "items": INT},
                       "description": "[start_ms, end_ms] into the file: silence there"},
            "ivr": {"type": "boolean"}, "delete_after": INT, "version": INT,
            "audio_url": {"type": "string", "description": "GET it (HTTP Range works) to play; ?download=1 to save"}}},
    "RecordingList": {"type": "object", "required": ["recordings", "next_cursor"],
                      "properties": {"recordings": {"type": "array", "items": ref("Recording")},
                                     "next_cursor": NULLABLE_STR}},
    "AuditEntry": {"type": "object", "required": ["id", "at", "action", "by", "role", "target"],
                   "properties": {"id": STR, "at": INT, "action": STR, "by": STR, "role": STR, "target": STR,
                                  "call_id": STR, "detail": OBJ}},
    "AuditList": {"type": "object", "required": ["entries", "next_cursor"],
                  "properties": {"entries": {"type": "array", "items": ref("AuditEntry")},
                                 "next_cursor": NULLABLE_STR}},
})
_HEAR = ("who may hear it: admins; supervisors when `recording.supervisors_hear_all`; an agent the calls it is "
         "heard on when `recording.agents_hear_own` (else 403 `auth.forbidden`, audited as `recording.denied`)")
OPERATIONS.update({
    ("GET", "/api/v1/recordings"): Operation(
        "Call recordings, newest first", "recordings", ALL_ROLES, response=ref("RecordingList"),
        description="Agents get the recordings they are heard on. " + _HEAR + ".", params=RECORDING_PARAMS,
        errors=(400, 403)),
    ("GET", "/api/v1/recordings/{recording_id}"): Operation(
        "One recording's record", "recordings", ALL_ROLES, response=ref("Recording"),
        description=_HEAR[0].upper() + _HEAR[1:] + ".", errors=(403, 404)),
    ("GET", "/api/v1/recordings/{recording_id}/audio"): Operation(
        "Play or download a recording", "recordings", ALL_ROLES, content=("audio/ogg", "audio/mpeg"),
        description="Stereo: the caller on the left channel, the agent side on the right. Supports HTTP Range "
        "(206). Audited (`recording.play`, once per play: the request without a Range or from byte 0; "
        "`recording.download` with `?download=1`, which also names the file). " + _HEAR + ".",
        params=(Param("download", {"enum": ["1", "true"]}, "as an attachment"),
                Param("play", {"type": "string", "pattern": r"^[0-9]{10,16}\.[A-Za-z0-9_.-]{1,64}\.[A-Za-z0-9_-]{43}$"},
                      "a play link's signature (`POST .../play`): instead of the bearer token")),
        errors=(403, 404)),
    ("POST", "/api/v1/recordings/{recording_id}/play"): Operation(
        "A play link for an <audio> element", "recordings", ALL_ROLES, response={
            "type": "object", "required": ["url", "expires_at"],
            "properties": {"url": {"type": "string"}, "expires_at": INT}},
        description="The audio URL with a signature that opens this one recording for 5 minutes without the "
        "bearer token (an `<audio src>` cannot send it), so the browser streams and seeks with Range. The play "
        "is audited here (`recording.play`, once). A changed or expired link: 401 `auth.invalid_token`. " + _HEAR
        + ".", errors=(403, 404)),
    ("DELETE", "/api/v1/recordings/{recording_id}"): Operation(
        "Delete a recording (file and index)", "recordings", ("admin",), response=OBJ,
        description="Audited (`recording.deleted`); `recording.deleted` event.", errors=(404,)),
    ("GET", "/api/v1/audit"): Operation(
        "The audit trail, newest first", "recordings", ("admin",), response=ref("AuditList"),
        description="Who played, downloaded, deleted or was refused a recording, who supervised a call "
        "(and whatever else is audited). At most 5,000 entries are looked at per page: with a narrow "
        "filter a page may come back short with a `next_cursor` to go on from.",
        params=(Param("action", {"type": "string", "pattern": recordings.AUDIT_ACTION.pattern},
                      "an action (`recording.play`) or a prefix (`recording.*`)"),
                Param("by", NAME_SCHEMA, "who"),
                Param("target", {"type": "string", "pattern": recordings.AUDIT_TARGET.pattern},
                      "what (a recording id, an agent id...)"),
                Param("from", TIME_SCHEMA, "at or after"), Param("to", TIME_SCHEMA, "before"),
                Param("cursor", {"type": "string", "pattern": r"^[0-9]{1,15}-[0-9]{1,15}$"}, "the `next_cursor`"),
                LIMIT), errors=(400,)),
})

# --- outbound campaigns (ivr.cti.campaigns; docs/campaigns.md) --------------------------------------

PATH_PARAMS["campaign_id"] = {"type": "string", "pattern": CAMPAIGN_ID}
_COUNTS: Schema = {"type": "object", "additionalProperties": INT,
                   "description": "records per state (pending, dialing, answered, done, retry, failed, dnc, cancelled)"}
SCHEMAS.update({
    "Campaign": {
        "type": "object", "required": ["id", "name", "plan", "state", "pacing", "retries", "counts", "records"],
        "properties": {
            "id": {**STR, "pattern": CAMPAIGN_ID}, "name": STR, "plan": STR, "queue": STR, "caller_id": STR,
            "language": STR, "state": {"enum": ["draft", "running", "paused", "stopped", "finished"]},
            "pacing": {"type": "object"}, "retries": {"type": "object"},
            "window": {"type": ["object", "null"], "description": "null: customers are called at any time"},
            "ring_s": INT, "records": {**INT, "description": "records uploaded (the last record number)"},
            "counts": _COUNTS, "zones": {"type": "array", "items": STR},
            "created_at": INT, "updated_at": INT, "created_by": STR, "version": INT}},
    "CampaignList": {"type": "object", "required": ["campaigns"],
                     "properties": {"campaigns": {"type": "array", "items": ref("Campaign")}}},
    "CampaignRecord": {
        "type": "object", "required": ["id", "state", "attempts"],
        "properties": {"id": {**STR, "description": "<campaign>:<n>"}, "n": INT,
                       "number": {**STR, "description": "masked but for the last 4 digits unless the reader is "
                                                         "an admin"},
                       "name": STR, "tz": STR, "state": {"enum": list(RECORD_STATES)}, "attempts": INT,
                       "last_outcome": STR, "last_reason": STR, "last_call_id": STR,
                       "retry_at": NULLABLE_INT, "variables": {"type": "object"},
                       "result": {"type": ["object", "null"],
                                  "description": "the answered call's outcome, csat and variables"}}},
    "CampaignRecords": {"type": "object", "required": ["records", "next_after"],
                        "properties": {"records": {"type": "array", "items": ref("CampaignRecord")},
                                       "next_after": {**NULLABLE_INT,
                                                      "description": "give it as `after` for the next page"}}},
    "CampaignUpload": {
        "type": "object", "required": ["campaign_id", "added", "dnc", "skipped", "duplicates", "errors"],
        "properties": {"campaign_id": STR, "added": INT,
                       "dnc": {**INT, "description": "added as dnc: on the do-not-call list, never dialled"},
                       "skipped": INT, "duplicates": INT,
                       "errors": {"type": "array", "description": "the first 100 bad rows",
                                  "items": {"type": "object", "required": ["line", "error"],
                                            "properties": {"line": INT, "error": STR}}}}},
    "DncResult": {"type": "object", "required": ["numbers"],
                  "properties": {"added": INT, "removed": INT, "numbers": INT,
                                 "errors": {"type": "array", "items": {"type": "object"}}}},
})
MODELS = (*MODELS, CampaignCreate, CampaignUpdate, DncChange)
_CAMPAIGN_ERRORS = ("400 `campaign.invalid`; 404 `campaign.not_found`; 409 `campaign.bad_transition` (not in a "
                    "state that allows it)")
_ENCODING = Param("encoding", {"enum": list(ENCODINGS), "default": "utf-8"}, "the list's text encoding")
OPERATIONS.update({
    ("POST", "/api/v1/campaigns"): Operation(
        "Create an outbound campaign (draft)", "campaigns", STAFF, ok=201, body=CampaignCreate,
        response=ref("Campaign"),
        description="A draft: upload its list, then start it. `plan` must be a plan of the plans folder. "
                    "`campaign.state`. 400 `campaign.invalid`."),
    ("GET", "/api/v1/campaigns"): Operation(
        "Campaigns, newest first, with their progress", "campaigns", STAFF, response=ref("CampaignList"),
        params=(Param("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 100},
                      "most campaigns to return"),)),
    ("GET", "/api/v1/campaigns/{campaign_id}"): Operation(
        "A campaign with its record counts", "campaigns", STAFF, response=ref("Campaign"), errors=(404,)),
    ("PATCH", "/api/v1/campaigns/{campaign_id}"): Operation(
        "Change a campaign", "campaigns", STAFF, body=CampaignUpdate, response=ref("Campaign"),
        description="Everything while draft; pacing and window while running or paused (a new rate applies "
                    "at the next tick). " + _CAMPAIGN_ERRORS, errors=(404, 409)),
    ("DELETE", "/api/v1/campaigns/{campaign_id}"): Operation(
        "Delete a campaign and its records", "campaigns", STAFF, ok=204,
        description="Draft, stopped or finished only (409 `campaign.bad_transition`); `campaign.deleted`.",
        errors=(404, 409)),
    **{("POST", f"/api/v1/campaigns/{{campaign_id}}/{a}"): Operation(
        f"{a.capitalize()} a campaign", "campaigns", STAFF, response=ref("Campaign"),
        description={"start": "draft -> running: the dialler calls its records at its pace.",
                     "pause": "running -> paused: no new call; calls under way finish.",
                     "resume": "paused -> running.",
                     "stop": "draft, running or paused -> stopped (final): records not yet reached are "
                             "cancelled; calls under way finish and are not retried."}[a]
                    + " `campaign.state`. " + _CAMPAIGN_ERRORS, errors=(404, 409))
       for a in ACTIONS},
    ("POST", "/api/v1/campaigns/{campaign_id}/records"): Operation(
        "Upload records (CSV)", "campaigns", STAFF, response=ref("CampaignUpload"), raw_body=("text/csv",),
        params=(_ENCODING,),
        description="CSV, at most 5 MB and 10,000 rows: a header naming `number` (required), `name`, `tz` "
                    "and any other column `x` (the variable `campaign.x` of the calls). Bad rows (and numbers "
                    "already in the campaign) are reported by line and skipped; numbers on the do-not-call "
                    "list are added as `dnc`. 400 `campaign.csv` (unreadable: encoding, no header, no number "
                    "column, too many rows); 413 `request.too_large`; 409 stopped or finished.",
        errors=(404, 409)),
    ("GET", "/api/v1/campaigns/{campaign_id}/records"): Operation(
        "A campaign's records in upload order", "campaigns", STAFF, response=ref("CampaignRecords"),
        params=(Param("state", {"enum": list(RECORD_STATES)}, "records in this state"),
                Param("after", {"type": "integer", "minimum": 0}, "the `next_after` of the previous page"),
                Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                      "most records to return")),
        errors=(404,)),
    ("GET", "/api/v1/campaigns/{campaign_id}/export"): Operation(
        "Export a campaign's results (CSV)", "campaigns", STAFF, content=("text/csv",),
        description="One line per record: id, number (masked but for the last 4 digits unless admin), name, "
                    "tz, state, attempts, last outcome and reason, last call, retry time, the answered call's "
                    "outcome, csat and answers. Cells a spreadsheet would run as formulas start with `'`.",
        errors=(404,)),
    ("POST", "/api/v1/dnc"): Operation(
        "Add numbers to the do-not-call list", "campaigns", STAFF, body=DncChange, response=ref("DncResult"),
        description="Only digests are stored. Checked when a list is uploaded and again before every call. "
                    "400 `campaign.invalid` (a number is not a phone number)."),
    ("DELETE", "/api/v1/dnc"): Operation(
        "Take numbers off the do-not-call list", "campaigns", STAFF, body=DncChange, response=ref("DncResult")),
    ("POST", "/api/v1/dnc/upload"): Operation(
        "Add a list of numbers to the do-not-call list (CSV or one a line)", "campaigns", STAFF,
        response=ref("DncResult"), raw_body=("text/csv",), params=(_ENCODING,),
        description="At most 5 MB and 10,000 numbers; lines that are no phone number are reported. 400 "
                    "`campaign.csv`; 413 `request.too_large`."),
})


# --- transcripts and quality checks (ivr.cti.quality; docs/quality.md) -------------------------------

PATH_PARAMS.setdefault("recording_id", {"type": "string", "pattern": quality.RECORDING_ID})
_WORD: Schema = {"type": "object", "required": ["word", "start", "end", "conf"],
                 "properties": {"word": STR, "start": {"type": "number", "description": "s from the start"},
                                "end": {"type": "number"}, "conf": {"type": "number"}}}
_CHANNEL: Schema = {"type": "object", "required": ["text", "words"],
                    "properties": {"text": {**STR, "description": "the words, normalised, space-separated"},
                                   "words": {"type": "array", "items": _WORD}}}
_NULLABLE_NUMBER: Schema = {"type": ["number", "null"]}
SCHEMAS.update({
    "Transcript": {
        "type": "object", "required": ["recording_id", "status", "channels"],
        "properties": {
            "recording_id": STR, "call_id": STR, "agent_id": STR, "queue": STR, "started_at": INT,
            "duration_ms": INT, "status": {"enum": ["done", "failed", "skipped"]},
            "error": {**STR, "description": "why it failed (failed) or was skipped (backlog)"},
            "language": STR, "model": STR, "decoded_at": INT,
            "channels": {"type": "object", "required": ["caller", "agent"],
                         "properties": {"caller": _CHANNEL, "agent": _CHANNEL}}}},
    "Review": {"type": "object", "required": ["at", "by", "role", "score", "comment"],
               "properties": {"at": INT, "by": STR, "role": STR, "score": INT, "comment": STR}},
    "Quality": {
        "type": "object", "required": ["recording_id", "score", "flags", "checks", "reviews"],
        "properties": {
            "recording_id": STR, "call_id": STR, "agent_id": STR, "queue": STR,
            "score": {**NULLABLE_INT, "description": "0-100; null until transcribed and scored"},
            "flags": {"type": "array", "items": STR, "description": "the names of the failed checks"},
            "checks": {"type": "array", "items": {"type": "object"},
                       "description": "every check: name, kind, passed, weight and what was found"},
            "rules": {**STR, "description": "the rule set applied: the queue's name or `default`"},
            "scored_at": NULLABLE_INT, "review_count": INT, "review_avg": _NULLABLE_NUMBER,
            "reviews": {"type": "array", "items": ref("Review"), "description": "the latest 50, newest first"}}},
    "TranscriptHits": {
        "type": "object", "required": ["hits", "next_cursor"],
        "properties": {
            "hits": {"type": "array", "items": {
                "type": "object", "required": ["recording_id", "started_at", "matches"],
                "properties": {"recording_id": STR, "call_id": STR, "agent_id": STR, "queue": STR,
                               "started_at": INT, "duration_ms": INT, "score": NULLABLE_INT,
                               "flags": {"type": "array", "items": STR},
                               "matches": {"type": "array", "items": {"type": "object"}}}}},
            "next_cursor": {**NULLABLE_STR, "description": "give it as `cursor` (same filters) for the next page"}}},
    "QualityReport": {
        "type": "object", "required": ["agents", "since", "until", "looked", "truncated"],
        "properties": {
            "agents": {"type": "array", "items": {
                "type": "object", "required": ["agent_id", "calls", "scored", "avg_score", "flags", "reviews"],
                "properties": {"agent_id": STR, "calls": INT, "talk_s": {"type": "number"}, "scored": INT,
                               "avg_score": _NULLABLE_NUMBER, "min_score": NULLABLE_INT,
                               "flags": {"type": "object", "additionalProperties": INT},
                               "reviews": INT, "avg_review": _NULLABLE_NUMBER}}},
            "since": INT, "until": INT, "looked": INT, "truncated": {"type": "boolean"}, "generated_at": INT}},
})
MODELS = (*MODELS, quality.ReviewAdd)
_PERIOD = (Param("since", TIME_SCHEMA, "recordings that started at or after (ISO 8601 or epoch seconds)"),
           Param("until", TIME_SCHEMA, "recordings that started before (excluded)"))
_HEAR = ("whoever may hear the recording (`recording.agents_hear_own`, `recording.supervisors_hear_all`); "
         "a refusal is 403 and audited (`recording.denied`). ")
OPERATIONS.update({
    ("GET", "/api/v1/recordings/{recording_id}/transcript"): Operation(
        "What was said in a recorded call, per channel, with word times", "quality", ALL_ROLES,
        own="recordings it is heard on", response=ref("Transcript"),
        description=_HEAR + "Audited (`transcript.view`). 404 `recording.not_found`, `transcript.not_found` "
                    "(not transcribed yet, or `quality.transcribe` off).", errors=(404,)),
    ("GET", "/api/v1/recordings/{recording_id}/quality"): Operation(
        "A recorded call's quality: score, flags, each check, manual reviews", "quality", ALL_ROLES,
        own="recordings it is heard on", response=ref("Quality"),
        description=_HEAR + "Audited (`transcript.view`). 404 `recording.not_found`.", errors=(404,)),
    ("POST", "/api/v1/recordings/{recording_id}/reviews"): Operation(
        "Add a manual review (score 0-100, comment)", "quality", STAFF, ok=201, body=quality.ReviewAdd,
        response=ref("Review"),
        description="Supervisors and admins who may hear the recording; agents 403 (audited). `quality.reviewed` "
                    "(the score, not the comment) goes to the agent's desktop and the wallboard; audited "
                    "(`review.added`). 404 `recording.not_found`.", errors=(404,)),
    ("GET", "/api/v1/transcripts"): Operation(
        "Search transcripts by words or a phrase, agent, queue and date", "quality", ALL_ROLES,
        own="its own calls", response=ref("TranscriptHits"),
        params=(Param("q", {"type": "string", "maxLength": quality.Q_MAX_CHARS},
                      "words (all of them, as the model writes them); several: also in a row on one side"),
                Param("agent", {"type": "string", "pattern": AGENT_ID}, "the call's agent (agents: themselves)"),
                Param("queue", NAME_SCHEMA, "the queue the call was answered from"), *_PERIOD,
                Param("cursor", {"type": "string", "pattern": CURSOR_PATTERN}, "the previous page's `next_cursor`"),
                Param("limit", {"type": "integer", "minimum": 1, "maximum": quality.SEARCH_LIMIT_MAX,
                                "default": quality.SEARCH_LIMIT_DEFAULT}, "most hits to return")),
        description="Newest first. A page may be short (up to 5,000 transcripts are looked at per page) with a "
                    "`next_cursor` to go on. Each hit has the matches with a few words around them. Audited "
                    "(`transcript.search`; the number of words searched, never the words)."),
    ("GET", "/api/v1/quality/agents"): Operation(
        "Per-agent quality report (JSON or CSV)", "quality", ALL_ROLES, own="its own row",
        response=ref("QualityReport"), content=("application/json", "text/csv"),
        params=(*_PERIOD, Param("agent", {"type": "string", "pattern": AGENT_ID}, "one agent (agents: themselves)"),
                Param("format", {"enum": ["json", "csv"]}, "csv: the same as `Accept: text/csv`")),
        description="Over the recordings that started in the period: calls, talk time, scored calls, average "
                    "and lowest score, flags per check, manual reviews and their average. CSV columns: "
                    + ", ".join(quality.CSV_COLUMNS) + ". Audited (`quality.report`)."),
})

# --- alerts ----------------------------------------------------------------------------------------------

_RULE: Schema = {
    "type": "object", "required": ["name", "metric", "queue", "threshold", "clear_at", "direction", "for_s",
                                   "clear_for_s", "severity", "sound"],
    "properties": {
        "name": {"type": "string"}, "metric": {"type": "string"}, "queue": NULLABLE_STR,
        "threshold": {"type": "number"}, "clear_at": {"type": "number", "description": "the hysteresis level"},
        "direction": {"enum": ["above", "below"]}, "for_s": {"type": "number"}, "clear_for_s": {"type": "number"},
        "window_s": {"type": "integer"}, "min_calls": {"type": "integer"},
        "severity": {"enum": ["info", "warning", "critical"]}, "sound": {"type": "boolean"},
        "threshold_s": NULLABLE_INT}}
SCHEMAS.update({
    "Alert": {
        "type": "object",
        "required": ["id", "rule", "metric", "queue", "severity", "value", "threshold", "clear_at", "direction",
                     "message", "sound", "raised_at", "cleared_at", "acked_by", "acked_at"],
        "properties": {
            "id": {"type": "string", "pattern": cti_alerts.ALERT_ID}, "rule": {"type": "string"},
            "metric": {"type": "string"}, "queue": {"type": "string", "description": "\"\" for a system rule"},
            "severity": {"enum": ["info", "warning", "critical"]},
            "value": {**_NULLABLE_NUMBER, "description": "the value measured when raised"},
            "threshold": _NULLABLE_NUMBER, "clear_at": _NULLABLE_NUMBER, "direction": {"enum": ["above", "below"]},
            "threshold_s": {**NULLABLE_INT, "description": "service_level: the answer time it is measured at"},
            "message": {"type": "string"}, "sound": {"type": "boolean"},
            "raised_at": {**NULLABLE_INT, "description": "epoch ms"}, "cleared_at": NULLABLE_INT,
            "clear_value": _NULLABLE_NUMBER, "clear_message": NULLABLE_STR,
            "acked_by": NULLABLE_STR, "acked_at": NULLABLE_INT}},
    "AlertList": {"type": "object", "required": ["alerts", "counts", "at"],
                  "properties": {"alerts": {"type": "array", "items": ref("Alert")},
                                 "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                                 "at": {"type": "integer"}}},
    "AlertHistory": {"type": "object", "required": ["alerts", "next_cursor"],
                     "properties": {"alerts": {"type": "array", "items": ref("Alert")},
                                    "next_cursor": {**NULLABLE_STR, "description": "give it as `cursor` (same "
                                                    "filters) for the next page"}}},
    "AlertRules": {"type": "object", "required": ["system", "queues"],
                   "properties": {"system": {"type": "array", "items": _RULE},
                                  "queues": {"type": "object", "additionalProperties": {"type": "array",
                                                                                         "items": _RULE}}}},
})
OPERATIONS.update({
    ("GET", "/api/v1/alerts"): Operation(
        "The active floor alerts", "alerts", STAFF, response=ref("AlertList"),
        description="Most severe first, then oldest first; one per rule and queue. `counts`: active alerts per "
                    "severity. Live changes come as `alert.raised`, `alert.acknowledged` and `alert.cleared` on "
                    "the floor feed (docs/alerts.md)."),
    ("GET", "/api/v1/alerts/history"): Operation(
        "Alerts raised, newest first", "alerts", STAFF, response=ref("AlertHistory"),
        params=(Param("since", TIME_SCHEMA, "alerts raised at or after (ISO 8601 or epoch seconds; at most "
                                            "`alerts.history_days` ago)"),
                Param("until", TIME_SCHEMA, "alerts raised before (excluded)"),
                Param("queue", NAME_SCHEMA, "one queue"), Param("rule", NAME_SCHEMA, "one rule"),
                Param("severity", {"type": "string", "pattern": cti_alerts.SEVERITY_LIST},
                      "severities, comma-separated"),
                Param("cursor", {"type": "string", "pattern": CURSOR_PATTERN}, "the previous page's `next_cursor`"),
                Param("limit", {"type": "integer", "minimum": 1, "maximum": cti_alerts.HISTORY_LIMIT_MAX,
                                "default": cti_alerts.HISTORY_LIMIT_DEFAULT}, "most alerts to return")),
        description="Active and cleared alerts by the time they were raised. A page may be short (5,000 alerts "
                    "are looked at per page at most) with a `next_cursor` to go on."),
    ("GET", "/api/v1/alerts/rules"): Operation(
        "The alert rules in force", "alerts", STAFF, response=ref("AlertRules"),
        description="`alerts.rules` with each queue's changes (`routing.queues.<q>.alerts`) and the defaults "
                    "each metric takes (the service level's threshold is the queue's target): the system rules "
                    "and, per queue (the configured ones and those in Redis), the queue rules."),
    ("POST", "/api/v1/alerts/{id}/ack"): Operation(
        "Acknowledge an active alert", "alerts", STAFF, response=ref("Alert"), errors=(404, 409),
        description="Records who and when (audited: `alert.ack`) and emits `alert.acknowledged`: the "
                    "wallboards dim the alert and stop its sound. It stays active until it clears; a second "
                    "acknowledgement keeps the first. 409 `alert.not_active` once it cleared."),
})

# --- planning: forecast and staffing -------------------------------------------------------------

_NUM: Schema = {"type": "number"}
_NULL_NUM: Schema = {"type": ["number", "null"]}
_NULL_INT: Schema = {"type": ["integer", "null"]}
_ERRORS: Schema = {"type": "object", "required": ["wape", "mape", "intervals"],
                   "properties": {"wape": _NULL_NUM, "mape": _NULL_NUM, "intervals": INT}}
_ACTUAL: Schema = {"type": ["object", "null"], "properties": {
    "offered": INT, "answered": INT, "abandoned": INT, "handled": INT, "aht_s": _NULL_NUM}}
_TARGET: Schema = {"type": "object", "required": ["share", "threshold_s"],
                   "properties": {"share": _NUM, "threshold_s": INT}}
_PLAN_HEAD: dict[str, Schema] = {
    "queue": STR, "target": _TARGET, "method": {"enum": ["seasonal", "holt_winters", None]},
    "patience_s": _NULL_NUM, "model": {"enum": ["auto", "erlang_c", "erlang_a"]}, "shrinkage": _NUM,
    "max_occupancy": _NUM, "interval_s": INT}
SCHEMAS.update({
    "Forecast": {
        "type": "object", "required": ["queue", "date", "days", "interval_s", "method", "backtest", "intervals"],
        "properties": {
            "queue": STR, "date": {"type": "string", "format": "date"}, "days": INT, "interval_s": INT,
            "method": {"enum": ["seasonal", "holt_winters", None]}, "chosen_by": {"enum": ["backtest", "default"]},
            "backtest": {"type": "object", "required": ["method", "errors"], "properties": {
                "method": STR, "held_out_from": NULLABLE_STR,
                "errors": {"type": "object", "additionalProperties": _ERRORS}}},
            "aht_s": _NUM, "patience_s": _NULL_NUM, "trained_from": NULLABLE_STR, "cutoff": STR,
            "holiday_basis": {"enum": ["history", "regular", "none"]},
            "intervals": {"type": "array", "items": {
                "type": "object", "required": ["start", "start_s", "offered", "aht_s", "holiday", "closed", "actual"],
                "properties": {"start": STR, "start_s": INT, "offered": _NUM, "aht_s": _NUM,
                               "holiday": {"type": "boolean"}, "closed": {"type": "boolean"}, "actual": _ACTUAL}}}}},
    "Staffing": {
        "type": "object", "required": ["queue", "target", "date", "signed_in_now", "short", "intervals"],
        "properties": {
            **_PLAN_HEAD, "date": STR, "signed_in_now": _NULL_INT,
            "agents": {"type": "object", "additionalProperties": INT},
            "short": {"type": "object", "properties": {"by": _NULL_INT, "at": NULLABLE_STR, "text": NULLABLE_STR}},
            "intervals": {"type": "array", "items": {
                "type": "object", "required": ["start", "offered", "aht_s", "required", "scheduled", "expected_sl"],
                "properties": {"start": STR, "start_s": INT, "offered": _NUM, "aht_s": _NUM, "required": INT,
                               "scheduled": INT, "model": {"enum": ["erlang_c", "erlang_a"]},
                               "capped": {"type": "boolean"}, "expected_sl": _NUM, "expected_asa_s": _NULL_NUM,
                               "expected_occupancy": _NUM, "expected_abandon": _NUM, "holiday": {"type": "boolean"},
                               "closed": {"type": "boolean"}, "signed_in": _NULL_INT, "short_by": _NULL_INT,
                               "actual": _ACTUAL}}}}},
    "StaffingAll": {
        "type": "object", "required": ["at", "queues"],
        "properties": {"at": STR, "queues": {"type": "array", "items": {
            "type": "object", "required": ["queue", "target", "signed_in", "short_by", "text", "intervals"],
            "properties": {
                **_PLAN_HEAD, "signed_in": _NULL_INT, "short_by": _NULL_INT, "short_at": NULLABLE_STR,
                "text": NULLABLE_STR,
                "intervals": {"type": "array", "items": {"type": "object", "properties": {
                    "start": STR, "offered": _NUM, "aht_s": _NUM, "required": INT, "scheduled": INT,
                    "short_by": _NULL_INT}}}}}}}},
})
_PLAN_DATE = Param("date", {"type": "string", "format": "date", "pattern": _planning.DATE_PATTERN},
                   "the (first) local day, YYYY-MM-DD; default today")
_PLAN_FORMAT = Param("format", {"enum": ["json", "csv"]}, "csv: the same as `Accept: text/csv`")
OPERATIONS.update({
    ("GET", "/api/v1/queues/{queue}/forecast"): Operation(
        "A queue's volume and AHT forecast per planning interval, with actuals (JSON or CSV)", "planning", STAFF,
        response=ref("Forecast"), content=("application/json", "text/csv"),
        params=(_PLAN_DATE, Param("days", {"type": "integer", "minimum": 1, "maximum": 14, "default": 1},
                                  "how many days from `date`"), _PLAN_FORMAT),
        description="Per `planning.interval_s` interval: forecast offered calls and AHT, the actual offered / "
                    "answered / abandoned / AHT where the interval has begun, holiday and closed flags (from the "
                    "dial plans' calendars). The method (seasonal or Holt-Winters) is chosen by back-test over the "
                    "last `planning.backtest_weeks` weeks; the errors (WAPE, MAPE over intervals with calls) of "
                    "every method are given. The forecast of a day learns from the history before it (before "
                    "today for a later day). CSV columns: " + ", ".join(_planning.FORECAST_CSV)
                    + ". 404 `queue.not_found`.", errors=(404,)),
    ("GET", "/api/v1/queues/{queue}/staffing"): Operation(
        "Agents a queue needs per interval for its service-level target (JSON or CSV)", "planning", STAFF,
        response=ref("Staffing"), content=("application/json", "text/csv"), params=(_PLAN_DATE, _PLAN_FORMAT),
        description="Per interval: forecast, AHT, agents required on the phones (Erlang C, or Erlang A where the "
                    "queue's patience is known; the fewest meeting `routing.target(queue)` and "
                    "`planning.max_occupancy`), scheduled (`required / (1 - planning.shrinkage)`), expected SL, "
                    "ASA, occupancy; for the current and next 4 intervals the agents signed in now (not on a "
                    "break) and how many are short. CSV columns: " + ", ".join(_planning.STAFFING_CSV)
                    + ". 404 `queue.not_found`.", errors=(404,)),
    ("GET", "/api/v1/staffing"): Operation(
        "Every queue's staffing now and in the next intervals", "planning", STAFF, response=ref("StaffingAll"),
        description="For every queue (configured or known): the current and the next 4 intervals' required and "
                    "scheduled agents against those signed in now, and the first shortfall as text "
                    "(\"short by 3 at 14:30\")."),
})

# --- floor: per-agent figures, forcing an agent's state ------------------------------------------
_AGENT_FIGURES: Schema = {
    "type": "object", "required": ["handled", "handle_ms", "talk_ms", "hold_ms", "signed_in_ms", "occupancy"],
    "properties": {**{c: INT for c in floor_agents.AGENT_COUNTERS}, "signed_in_ms": INT,
                   "occupancy": {**_NULLABLE_NUMBER,
                                 "description": "(reserved + oncall + wrapup) / (that + available)"},
                   "aht_s": _NULLABLE_NUMBER, "avg_talk_s": _NULLABLE_NUMBER, "avg_hold_s": _NULLABLE_NUMBER}}
SCHEMAS.update({
    "AgentStats": {
        "type": "object", "required": ["since", "until", "by", "cut", "interval_s", "agents"],
        "properties": {
            "since": STR, "until": STR, "by": {"enum": list(floor_agents.BY)}, "interval_s": INT,
            "cut": {"type": "boolean", "description": "the range was longer than allowed: it starts at `since`"},
            "agents": {"type": "array", "items": {
                "type": "object", "required": ["agent_id", "state", "total", "rows"],
                "properties": {
                    "agent_id": STR, "state": STR, "state_since": NULLABLE_INT, "total": _AGENT_FIGURES,
                    "rows": {"type": "array", "items": {"allOf": [_AGENT_FIGURES, {
                        "type": "object", "required": ["start", "length_s"],
                        "properties": {"start": STR, "length_s": INT}}]}}}}}}},
    "QueueIntervals": {
        "type": "object", "required": ["queue", "since", "until", "cut", "interval_s", "thresholds", "intervals"],
        "properties": {
            "queue": STR, "since": STR, "until": STR, "interval_s": INT,
            "cut": {"type": "boolean", "description": "the range was longer than allowed: it starts at `since`"},
            "thresholds": {"type": "array", "items": INT},
            "intervals": {"type": "array", "items": {
                "type": "object", "required": ["start", "length_s", "offered", "answered", "abandoned",
                                               "service_level"],
                "properties": {"start": STR, "length_s": INT, "offered": INT, "answered": INT, "abandoned": INT,
                               "service_level": OBJ, "asa_s": _NULLABLE_NUMBER, "abandon_rate": _NULLABLE_NUMBER,
                               "aht_s": _NULLABLE_NUMBER}}}}},
    "AgentForced": {
        "type": "object", "required": ["applied", "agent"],
        "properties": {"applied": {"type": "boolean"}, "agent": ref("Agent"),
                       "pending": {"type": "object", "required": ["state", "reason", "by"],
                                   "properties": {"state": STR, "reason": STR, "by": STR}}}},
})
MODELS = (*MODELS, floor_agents.ForceState)
_STATS_PERIOD = (
    Param("since", TIME_SCHEMA, "from (ISO 8601; without an offset the server's local time); default local midnight"),
    Param("until", TIME_SCHEMA, "to (excluded); default now"),
    Param("format", {"enum": ["json", "csv"]}, "csv: the same as `Accept: text/csv`"))
_BY = Param("by", {"enum": list(floor_agents.BY), "default": "day"},
            "one row per agent and local day, or per statistics interval")
_AGENT_STATS_TEXT = (
    "Handled calls, handle / talk / hold time (ms) and the time in each state (`ms_available`, `ms_reserved` "
    "= ringing, `ms_oncall`, `ms_wrapup`, `ms_break`; split at interval boundaries, the current state counted "
    f"up to now), occupancy, AHT. `by=day` spans {floor_agents.MAX_DAYS} days at most, `by=interval` "
    f"{floor_agents.MAX_INTERVAL_DAYS}, and at most {floor_agents.MAX_ROWS} agent rows: a longer range is cut to "
    "its end (`cut`); `until` not after `since` gives no rows. CSV columns: "
    + ", ".join(floor_agents.AGENT_CSV) + " (see docs/queue-stats.md).")
OPERATIONS.update({
    ("GET", "/api/v1/agents/stats"): Operation(
        "Every agent's figures by day or interval (JSON or CSV)", "agents", STAFF, response=ref("AgentStats"),
        content=("application/json", "text/csv"), params=(_BY, *_STATS_PERIOD), description=_AGENT_STATS_TEXT),
    ("GET", "/api/v1/agents/{agent_id}/stats"): Operation(
        "One agent's figures by day or interval (JSON or CSV)", "agents", STAFF, own="its own figures",
        response=ref("AgentStats"), content=("application/json", "text/csv"), params=(_BY, *_STATS_PERIOD),
        description=_AGENT_STATS_TEXT + " 404 `agent.not_found`.", errors=(404,)),
    ("GET", "/api/v1/queues/{queue}/intervals"): Operation(
        "A queue's figures per statistics interval (JSON or CSV)", "queues", STAFF, response=ref("QueueIntervals"),
        content=("application/json", "text/csv"), params=_STATS_PERIOD,
        description="Every interval from `since` to `until` (empty ones as zeros): the queue's counters, the "
                    "service level SL1/SL2 at each threshold, ASA, abandon rate, AHT, as in `/stats`. At most "
                    f"{floor_agents.MAX_DAYS} days (a longer range is cut to its end: `cut`). 404 `queue.not_found` "
                    "for a queue neither in Redis nor configured.", errors=(404,)),
    ("POST", "/api/v1/agents/{agent_id}/force"): Operation(
        "A supervisor sets an agent's state or signs it out", "agents", STAFF, body=floor_agents.ForceState,
        response=ref("AgentForced"),
        description="available, break or offline (signed out), at once; audited (`agent.forced`) and the "
                    "`agent.state` event names the supervisor (`by`). An agent on a call (ringing or connected): "
                    "409 `agent.busy`, unless `force: true` with break or offline: then `applied` is false and "
                    "`pending` says what waits for the end of the call and its wrap-up (`agent.state_pending` "
                    "now; the agent takes no new call). 404 `agent.not_found`.", errors=(404, 409)),
})

# --- the agent's browser phone (ivr.cti.webrtc; docs/webrtc.md) -------------------------------------
SCHEMAS.update({
    "WebRtcPhone": {
        "type": "object", "required": ["enabled", "reason", "ws_url", "aor", "username", "realm", "ice_servers"],
        "properties": {
            "enabled": {"type": "boolean", "description": "the browser phone can register (edge.webrtc.enabled "
                                                          "and the agent has `phone: registered`)"},
            "reason": {**STR, "description": "why not, when not enabled; empty otherwise"},
            "ws_url": {**STR, "description": "the edge's SIP-over-WebSocket address (wss://)"},
            "aor": {**STR, "description": "the address of record the phone registers"},
            "username": {**STR, "description": "digest user name (the agent id)"},
            "realm": STR,
            "ice_servers": {"type": "array", "items": OBJ, "description": "RTCIceServer entries ({urls, "
                            "username, credential}) from edge.webrtc.ice_servers; empty by default"}}},
})
OPERATIONS.update({
    ("GET", "/api/v1/agents/{agent_id}/webrtc"): Operation(
        "Where an agent's browser phone registers", "agents", ("supervisor", "admin"), own="its own phone",
        response=ref("WebRtcPhone"),
        description="The edge's secure WebSocket and the SIP identity (address of record, digest user name "
                    "and realm) the desktop's browser phone registers with. Never the SIP password: an admin "
                    "sets it (`POST .../sip-password`), the agent types it. 404 `agent.not_found`.",
        errors=(404,)),
})
