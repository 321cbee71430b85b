"""The event catalogue: one frozen dataclass per event type on the deployment's event stream.

Every event is emitted by a Lua script (``ivr/queues/lua``, ``emit(type, {fields})``) or by the
state layer, read by the screen-pop hub (:mod:`ivr.cti.hub`: who sees it), the webhooks (the CRM
gets them as they are) and the reports. This module is the one list of what each carries;
``tests/unit/test_event_catalogue.py`` checks that every Lua emitter sends exactly these fields and
that ``docs/events.md`` (made by :func:`markdown`) is up to date.

Every event carries ``ts`` (epoch ms, set by the emitter) and ``v`` (:data:`VERSION`): a consumer
that sees a newer ``v`` than it knows may find fields it does not know; fields are only ever added
within a version, never renamed or removed.

Version 2 (call control): ``call.resumed`` now means "off hold again"; the redial event that version 1
called ``call.resumed`` is ``call.place_restored`` (same fields). Every other event is unchanged.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, get_type_hints

from ivr.core.events import EventType

VERSION = 2

AGENT = "agent"  # the agent named by ``agent_id`` sees it on its desktop
FLOOR = "floor"  # supervisors see it on the wallboard's floor feed

E = EventType


@dataclass(frozen=True, kw_only=True)
class Event:
    type: ClassVar[EventType]
    audience: ClassVar[frozenset[str]] = frozenset()
    ts: int = 0   # when it happened, epoch ms
    v: int = VERSION


def _wire(name: str) -> str:
    return name.rstrip("_")  # ``from_`` is ``from`` on the wire


# --- calls --------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class CallStarted(Event):
    """A call entered a worker and its dial plan started; or (``direction`` outbound) a click-to-dial
    call was placed: ``ani`` is then the customer's number and ``dnis`` the caller ID shown to them."""
    type: ClassVar[EventType] = E.CALL_STARTED
    audience: ClassVar[frozenset[str]] = frozenset({FLOOR})
    call_id: str
    worker: str
    ani: str
    dnis: str
    hotline: str
    language: str
    direction: str = "inbound"


@dataclass(frozen=True, kw_only=True)
class CallQueued(Event):
    """The call entered a skill queue (its route: skills, minimum proficiency, language, strategy)."""
    type: ClassVar[EventType] = E.CALL_QUEUED
    audience: ClassVar[frozenset[str]] = frozenset({FLOOR})
    call_id: str
    queue: str
    skill: str
    priority: int
    skills: list[str]
    min_proficiency: int
    language: str
    strategy: str


@dataclass(frozen=True, kw_only=True)
class CallEscalated(Event):
    """A waiting caller's escalation step was applied (wider skills, another queue)."""
    type: ClassVar[EventType] = E.CALL_ESCALATED
    call_id: str
    stage: int
    queue: str
    from_queue: str
    alternatives: list[dict[str, Any]]
    strategy: str
    waited_s: float


@dataclass(frozen=True, kw_only=True)
class CallOffered(Event):
    """An agent was reserved for the call: the screen-pop. The stream entry also holds the journey
    (``journey``, JSON); the hub adds the CRM match (``crm``) for the agent's desktop. A click-to-dial
    call (``direction`` outbound) pops too, before the agent's phone rings: ``ani`` is the customer."""
    type: ClassVar[EventType] = E.CALL_OFFERED
    audience: ClassVar[frozenset[str]] = frozenset({AGENT, FLOOR})
    call_id: str
    offer_id: str
    agent_id: str
    queue: str
    priority: int
    waited_s: float
    ani: str
    dnis: str
    hotline: str
    language: str
    ewt_s: float | None = None
    transferred_from: str = ""  # the agent who transferred the call here ("" = not a transfer)
    direction: str = "inbound"


@dataclass(frozen=True, kw_only=True)
class CallDialing(Event):
    """Click-to-dial: the agent answered its phone and the customer is being dialled (with the hotline's
    caller ID); ``call.answered`` follows when the customer answers, else ``call.ended`` with outcome
    no_answer, busy, failed or cancelled."""
    type: ClassVar[EventType] = E.CALL_DIALING
    audience: ClassVar[frozenset[str]] = frozenset({AGENT, FLOOR})
    call_id: str
    offer_id: str
    agent_id: str
    queue: str


@dataclass(frozen=True, kw_only=True)
class CallOfferFailed(Event):
    """The agent did not take the offer (ring-no-answer, busy, unreachable); the caller keeps its place."""
    type: ClassVar[EventType] = E.CALL_OFFER_FAILED
    audience: ClassVar[frozenset[str]] = frozenset({AGENT, FLOOR})
    call_id: str
    offer_id: str
    agent_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class CallAnswered(Event):
    """The agent answered: caller and agent are bridged."""
    type: ClassVar[EventType] = E.CALL_ANSWERED
    audience: ClassVar[frozenset[str]] = frozenset({AGENT, FLOOR})
    call_id: str
    offer_id: str
    agent_id: str
    waited_s: float


@dataclass(frozen=True, kw_only=True)
class CallAgentLeft(Event):
    """The agent hung up first; the caller stays in the plan (e.g. a survey)."""
    type: ClassVar[EventType] = E.CALL_AGENT_LEFT
    call_id: str
    agent_id: str
    queue: str
    talk_s: float


@dataclass(frozen=True, kw_only=True)
class CallLeftQueue(Event):
    """Taken out of its queue back into the plan (max wait, no agents logged in...)."""
    type: ClassVar[EventType] = E.CALL_LEFT_QUEUE
    call_id: str
    queue: str
    reason: str
    waited_s: float


@dataclass(frozen=True, kw_only=True)
class CallAbandoned(Event):
    """The caller hung up while queued or offered (``short``: sooner than the short-abandon limit)."""
    type: ClassVar[EventType] = E.CALL_ABANDONED
    audience: ClassVar[frozenset[str]] = frozenset({FLOOR})
    call_id: str
    queue: str
    waited_s: float
    short: bool
    state: str
    agent_id: str


@dataclass(frozen=True, kw_only=True)
class CallEnded(Event):
    """The call is over (``outcome``: completed, abandoned, ivr, lost; for a click-to-dial call that never
    connected: agent_no_answer, agent_rejected, no_answer, busy, failed, cancelled; ``reason``: who ended it)."""
    type: ClassVar[EventType] = E.CALL_ENDED
    audience: ClassVar[frozenset[str]] = frozenset({AGENT, FLOOR})
    call_id: str
    outcome: str
    reason: str
    agent_id: str
    queue: str
    duration_s: float


@dataclass(frozen=True, kw_only=True)
class CallPlaceRestored(Event):
    """A redial took back the caller's earlier place (``from``: abandon or callback). Version 1
    called it ``call.resumed``."""
    type: ClassVar[EventType] = E.CALL_PLACE_RESTORED
    call_id: str
    queue: str
    from_: str
    previous: str
    priority: int
    place: float
    waited_before_s: float


@dataclass(frozen=True, kw_only=True)
class CallDisposition(Event):
    """The agent's wrap-up: disposition code and notes (CTI API)."""
    type: ClassVar[EventType] = E.CALL_DISPOSITION
    audience: ClassVar[frozenset[str]] = frozenset({AGENT, FLOOR})
    call_id: str
    agent_id: str
    disposition: str
    notes: str
    by: str
    crm_record_id: str = ""


@dataclass(frozen=True, kw_only=True)
class CallCsat(Event):
    """The caller's survey score (1-5) stored on the call record."""
    type: ClassVar[EventType] = E.CALL_CSAT
    audience: ClassVar[frozenset[str]] = frozenset({FLOOR})
    call_id: str
    csat: int
    queue: str
    agent_id: str
    hotline: str


@dataclass(frozen=True, kw_only=True)
class CallCrmMatched(Event):
    """The CRM lookup of the screen-pop settled; its result is stored on the call record (``crm``).
    ``status``: matched, multiple, none."""
    type: ClassVar[EventType] = E.CALL_CRM_MATCHED
    call_id: str
    agent_id: str
    status: str
    lookup: str
    record_id: str = ""


@dataclass(frozen=True, kw_only=True)
class VoicemailNew(Event):
    """A voicemail was attached to the call record."""
    type: ClassVar[EventType] = E.VOICEMAIL_NEW
    call_id: str
    mailbox: str
    seconds: float
    ended_by: str
    queue: str
    agent_id: str
    hotline: str


# --- agents and workers -------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class AgentStateChanged(Event):
    """An agent's state changed (``previous`` -> ``state``, with the reason); into wrap-up, with
    ``wrapup_until`` (epoch ms), when it ends unless extended."""
    type: ClassVar[EventType] = E.AGENT_STATE
    audience: ClassVar[frozenset[str]] = frozenset({AGENT, FLOOR})
    agent_id: str
    state: str
    previous: str
    reason: str
    wrapup_until: int | None = None
    by: str = ""
    """The supervisor who set it (a forced break or sign-out; "" for the agent itself and routing)."""


@dataclass(frozen=True, kw_only=True)
class AgentStatePending(Event):
    """A supervisor set the agent's state to ``state`` (break, offline) while it was ``current``
    (reserved or on a call): it applies when the call and its wrap-up are over (CTI API,
    ``POST /api/v1/agents/{id}/force``)."""
    type: ClassVar[EventType] = E.AGENT_STATE_PENDING
    audience: ClassVar[frozenset[str]] = frozenset({AGENT, FLOOR})
    agent_id: str
    state: str
    reason: str
    by: str
    current: str


@dataclass(frozen=True, kw_only=True)
class AgentWrapupExtended(Event):
    """The agent's wrap-up now ends at ``wrapup_until`` (epoch ms), ``extended_s`` later (CTI API)."""
    type: ClassVar[EventType] = E.AGENT_WRAPUP_EXTENDED
    audience: ClassVar[frozenset[str]] = frozenset({AGENT, FLOOR})
    agent_id: str
    wrapup_until: int
    extended_s: float
    by: str


@dataclass(frozen=True, kw_only=True)
class AgentPhone(Event):
    """The agent's phone (``phone: registered``: it registers at the edge) is now ``registered`` with
    ``contacts`` devices, or not. ``reason``: ``registered``, ``devices`` (still registered, another
    number of devices), ``unregistered`` (the edge holds no binding any more: unregistered, expired,
    or its password was changed), ``stale`` (no poll of the edge for ``edge.registrar.stale_after_s``:
    the edge or its poller is down). Routing offers the agent calls only while it is registered.
    No contact address, user agent or IP: only how many devices, as ``GET /api/v1/agents/{id}``."""
    type: ClassVar[EventType] = E.AGENT_PHONE
    audience: ClassVar[frozenset[str]] = frozenset({AGENT, FLOOR})
    agent_id: str
    registered: bool
    contacts: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class AgentDeleted(Event):
    """An admin deleted the agent (CTI API)."""
    type: ClassVar[EventType] = E.AGENT_DELETED
    audience: ClassVar[frozenset[str]] = frozenset({AGENT, FLOOR})
    agent_id: str


@dataclass(frozen=True, kw_only=True)
class WorkerLost(Event):
    """A worker died: its ``calls`` live calls were recorded lost."""
    type: ClassVar[EventType] = E.WORKER_LOST
    worker: str
    calls: int


# --- callbacks ----------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class CallbackRequested(Event):
    """A caller booked a callback that keeps its place."""
    type: ClassVar[EventType] = E.CALLBACK_REQUESTED
    callback_id: str
    call_id: str
    queue: str
    place: float
    priority: int
    hotline: str


@dataclass(frozen=True, kw_only=True)
class CallbackCancelled(Event):
    """A pending callback was cancelled (``by`` a user, or ``redial`` when the caller called again)."""
    type: ClassVar[EventType] = E.CALLBACK_CANCELLED
    callback_id: str
    call_id: str
    queue: str
    by: str
    superseded_by: str = ""


@dataclass(frozen=True, kw_only=True)
class CallbackQueued(Event):
    """The caller hung up: the callback now waits for an agent at its place."""
    type: ClassVar[EventType] = E.CALLBACK_QUEUED
    callback_id: str
    call_id: str
    origin_call_id: str
    queue: str
    place: float


@dataclass(frozen=True, kw_only=True)
class CallbackDialing(Event):
    """A worker dials the customer (an agent is reserved)."""
    type: ClassVar[EventType] = E.CALLBACK_DIALING
    callback_id: str
    call_id: str
    origin_call_id: str
    queue: str
    agent_id: str
    worker: str
    attempt: int


@dataclass(frozen=True, kw_only=True)
class CallbackConnected(Event):
    """The customer answered and confirmed; the agent is rung next."""
    type: ClassVar[EventType] = E.CALLBACK_CONNECTED
    callback_id: str
    call_id: str
    origin_call_id: str
    queue: str
    agent_id: str
    attempt: int


@dataclass(frozen=True, kw_only=True)
class CallbackRetry(Event):
    """Not reached (no answer, busy, no key...): tried again in ``retry_in_s``."""
    type: ClassVar[EventType] = E.CALLBACK_RETRY
    callback_id: str
    call_id: str
    queue: str
    reason: str
    attempt: int
    retry_in_s: float


@dataclass(frozen=True, kw_only=True)
class CallbackFailed(Event):
    """Given up after the last retry."""
    type: ClassVar[EventType] = E.CALLBACK_FAILED
    callback_id: str
    call_id: str
    origin_call_id: str
    queue: str
    reason: str
    attempts: int


# --- call control (hold, mute, transfer, consult, conference: docs/call-control.md) --------------

AF = frozenset({AGENT, FLOOR})


@dataclass(frozen=True, kw_only=True)
class CallHeld(Event):
    """The caller is on hold (music on hold; the agent hears nothing)."""
    type: ClassVar[EventType] = E.CALL_HELD
    audience: ClassVar[frozenset[str]] = AF
    call_id: str
    agent_id: str
    by: str


@dataclass(frozen=True, kw_only=True)
class CallResumed(Event):
    """The caller is off hold (``held_s``: how long this hold lasted). Version 1 used the name for
    what is now ``call.place_restored``."""
    type: ClassVar[EventType] = E.CALL_RESUMED
    audience: ClassVar[frozenset[str]] = AF
    call_id: str
    agent_id: str
    by: str
    held_s: float


@dataclass(frozen=True, kw_only=True)
class CallMuted(Event):
    """Nobody hears the agent any more."""
    type: ClassVar[EventType] = E.CALL_MUTED
    audience: ClassVar[frozenset[str]] = AF
    call_id: str
    agent_id: str
    by: str


@dataclass(frozen=True, kw_only=True)
class CallUnmuted(Event):
    type: ClassVar[EventType] = E.CALL_UNMUTED
    audience: ClassVar[frozenset[str]] = AF
    call_id: str
    agent_id: str
    by: str


@dataclass(frozen=True, kw_only=True)
class CallTransferred(Event):
    """The caller went to a queue, an agent or a number (``mode``: blind, consult, conference); the
    agent ``from_agent`` (also ``agent_id``, whose desktop sees it) is released to wrap-up. Not an
    abandon."""
    type: ClassVar[EventType] = E.CALL_TRANSFERRED
    audience: ClassVar[frozenset[str]] = AF
    call_id: str
    agent_id: str
    from_agent: str
    by: str
    target_type: str
    target: str
    mode: str


@dataclass(frozen=True, kw_only=True)
class CallConsultStarted(Event):
    """The caller is on hold while its agent rings a consult target (``target_agent_id`` when the
    target is an agent or a queue's agent)."""
    type: ClassVar[EventType] = E.CALL_CONSULT_STARTED
    audience: ClassVar[frozenset[str]] = AF
    call_id: str
    agent_id: str
    target_type: str
    target: str
    target_agent_id: str


@dataclass(frozen=True, kw_only=True)
class CallConsultOffered(Event):
    """The consulted agent's pop (the stream entry holds the caller's ``journey``, as call.offered)."""
    type: ClassVar[EventType] = E.CALL_CONSULT_OFFERED
    audience: ClassVar[frozenset[str]] = frozenset({AGENT})
    call_id: str
    agent_id: str
    from_agent: str
    ani: str
    queue: str


@dataclass(frozen=True, kw_only=True)
class CallConsultAnswered(Event):
    """The consult target answered: agent and target talk, the caller hears music."""
    type: ClassVar[EventType] = E.CALL_CONSULT_ANSWERED
    audience: ClassVar[frozenset[str]] = AF
    call_id: str
    agent_id: str
    target_agent_id: str


@dataclass(frozen=True, kw_only=True)
class CallConsultFailed(Event):
    """The consult target did not answer or hung up (``reason``); the agent is back with the caller
    (``target_agent_id``: the consulted agent, whose desktop sees it too; "" for a number)."""
    type: ClassVar[EventType] = E.CALL_CONSULT_FAILED
    audience: ClassVar[frozenset[str]] = AF
    call_id: str
    agent_id: str
    reason: str
    target_agent_id: str = ""


@dataclass(frozen=True, kw_only=True)
class CallConsultCancelled(Event):
    """The agent ended the consult; it is back with the caller (``target_agent_id``: the consulted
    agent, whose desktop sees it too; "" for a number)."""
    type: ClassVar[EventType] = E.CALL_CONSULT_CANCELLED
    audience: ClassVar[frozenset[str]] = AF
    call_id: str
    agent_id: str
    by: str
    target_agent_id: str = ""


@dataclass(frozen=True, kw_only=True)
class CallConsultSwapped(Event):
    """The agent switched between caller and target (``talking_to``); the other hears music."""
    type: ClassVar[EventType] = E.CALL_CONSULT_SWAPPED
    audience: ClassVar[frozenset[str]] = AF
    call_id: str
    agent_id: str
    talking_to: str


@dataclass(frozen=True, kw_only=True)
class CallConsultCompleted(Event):
    """Caller and consult target are joined; ``agent_id`` (the first agent) goes to wrap-up."""
    type: ClassVar[EventType] = E.CALL_CONSULT_COMPLETED
    audience: ClassVar[frozenset[str]] = AF
    call_id: str
    agent_id: str
    by: str
    target_agent_id: str


@dataclass(frozen=True, kw_only=True)
class CallConferenced(Event):
    """Caller, agent and target all talk (``agents``: the agent ids, or the number of an outside party)."""
    type: ClassVar[EventType] = E.CALL_CONFERENCED
    audience: ClassVar[frozenset[str]] = AF
    call_id: str
    agent_id: str
    agents: list[str]


@dataclass(frozen=True, kw_only=True)
class CallConferenceLeft(Event):
    """``agent_id`` left the conference; the others go on (``agents``: who is still in it)."""
    type: ClassVar[EventType] = E.CALL_CONFERENCE_LEFT
    audience: ClassVar[frozenset[str]] = AF
    call_id: str
    agent_id: str
    by: str
    agents: list[str] | None = None


@dataclass(frozen=True, kw_only=True)
class CallMonitor(Event):
    """A supervisor on the call (live supervision): ``mode`` listen, whisper or barge once its phone
    answered, or ``stopped`` (``reason``: requested, supervisor_hangup, no_answer, unreachable,
    agent_left, call_ended). ``notice`` is what the agent's desktop shows (coached, barged, listened
    or ""); the agent's desktop receives the event only when ``agent_sees`` (a listen is shown only
    with ``supervision.notify_agent_on_listen``; the event that clears a notice is seen too)."""
    type: ClassVar[EventType] = E.CALL_MONITOR
    audience: ClassVar[frozenset[str]] = AF
    call_id: str
    agent_id: str
    supervisor: str
    mode: str
    notice: str
    agent_sees: bool
    reason: str = ""


# --- complaint cases (ivr/queues/lua/lib/cases.lua; statuses: ivr/core/case_states.py) ------------
# ``agent_id`` is the case's owner ("" = nobody): its desktop sees the event. Times are epoch ms.


@dataclass(frozen=True, kw_only=True)
class CaseOpened(Event):
    """A complaint case was opened (status ``open``) by ``opened_by`` (``ivr:<plan>`` for the dial
    plan's case node, else the agent or user id), due at ``due_at``; ``call_id`` is the call it was
    opened from and is linked to ("" = none), ``hotline`` the plan whose hours count for its due time."""
    type: ClassVar[EventType] = E.CASE_OPENED
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    tier: str
    status: str
    reason: str
    customer: str
    agent_id: str
    due_at: int
    opened_by: str
    call_id: str
    hotline: str


@dataclass(frozen=True, kw_only=True)
class CaseStatusChanged(Event):
    """The case moved from ``previous`` to ``status`` (open, contacted, resolved, closed, reopened),
    by ``by``; ``due_at`` is its due time (the new one when reopened)."""
    type: ClassVar[EventType] = E.CASE_STATUS
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    status: str
    previous: str
    tier: str
    agent_id: str
    by: str
    due_at: int


@dataclass(frozen=True, kw_only=True)
class CaseUpdated(Event):
    """The case's ``changed`` fields (tier, owner, reason, due_at) changed, by ``by``; ``tier``,
    ``agent_id`` and ``due_at`` are the new values. A new owner: ``agents`` names the previous and
    the new one (both desktops see it)."""
    type: ClassVar[EventType] = E.CASE_UPDATED
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    tier: str
    agent_id: str
    by: str
    changed: list[str]
    due_at: int
    agents: list[str] | None = None


@dataclass(frozen=True, kw_only=True)
class CaseNote(Event):
    """``by`` added a note to the case: ``length`` characters (the text itself only through the API)."""
    type: ClassVar[EventType] = E.CASE_NOTE
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    agent_id: str
    by: str
    length: int


@dataclass(frozen=True, kw_only=True)
class CaseCallLinked(Event):
    """``by`` linked call ``call_id`` to the case (the call record names the case in ``case_id``)."""
    type: ClassVar[EventType] = E.CASE_CALL_LINKED
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    call_id: str
    agent_id: str
    by: str


@dataclass(frozen=True, kw_only=True)
class CaseOverdue(Event):
    """An open or reopened case passed its due time (``due_at``) without contact: the escalation
    alert (sent once per due time; a new due time may be missed again). ``customer`` is the number to
    call back."""
    type: ClassVar[EventType] = E.CASE_OVERDUE
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    tier: str
    agent_id: str
    due_at: int
    customer: str


@dataclass(frozen=True, kw_only=True)
class CaseTaskOffered(Event):
    """A pending case nearing its due time (``overdue``: past it) was offered to agent ``agent_id`` as
    a follow-up task (a preview: the desktop shows the case, the agent dials or skips it), until
    ``task_expires``; the agent is reserved meanwhile (``task_kind`` ``followup``: a closed case's
    follow-up call, 回访, rather than its first contact). ``agent_id`` is the agent offered the task,
    ``owner`` the case's owner ("" = nobody); ``customer`` the number the task dials."""
    type: ClassVar[EventType] = E.CASE_TASK_OFFERED
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    agent_id: str
    tier: str
    customer: str
    due_at: int
    overdue: bool
    reason: str
    task_expires: int
    owner: str = ""
    customer_name: str = ""
    crm_id: str = ""
    hotline: str = ""
    task_kind: str = "deadline"  # "followup": the follow-up call (回访) after the case was closed


@dataclass(frozen=True, kw_only=True)
class CaseTaskAccepted(Event):
    """Agent ``agent_id`` accepted the case's follow-up task: click-to-dial call ``call_id`` (linked to
    the case) rings its phone, then the customer (the call's own events follow)."""
    type: ClassVar[EventType] = E.CASE_TASK_ACCEPTED
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    agent_id: str
    call_id: str


@dataclass(frozen=True, kw_only=True)
class CaseTaskDeclined(Event):
    """The case's follow-up task went back from agent ``agent_id``: ``reason`` ``declined`` (or the
    agent's own reason), ``timeout`` (neither accepted nor declined in time; both keep the agent from
    this case for 10 minutes), ``agent_break`` / ``agent_offline`` (the agent left), ``case_<status>``
    (the case no longer waits for contact). The case is offered again (unless it no longer waits)."""
    type: ClassVar[EventType] = E.CASE_TASK_DECLINED
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    agent_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class CaseFollowupScheduled(Event):
    """Closing the case scheduled its follow-up (回访) at ``at`` (epoch ms): ``mode`` ``call`` (an
    automated call plays dial plan ``plan``) or ``task`` (an agent calls, offered as a task)."""
    type: ClassVar[EventType] = E.CASE_FOLLOWUP_SCHEDULED
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    agent_id: str = ""  # the case's owner: its desktop gets the event
    mode: str
    at: int
    plan: str
    by: str


@dataclass(frozen=True, kw_only=True)
class CaseFollowupStarted(Event):
    """The follow-up is under way: attempt ``attempt``; ``mode`` ``call``: the automated call
    ``call_id`` dials the customer; ``task``: it was offered to agent ``agent_id`` (case.task_offered
    with ``task_kind`` followup)."""
    type: ClassVar[EventType] = E.CASE_FOLLOWUP_STARTED
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    mode: str
    attempt: int
    call_id: str = ""
    agent_id: str = ""


@dataclass(frozen=True, kw_only=True)
class CaseFollowupRetry(Event):
    """Attempt ``attempt`` (call ``call_id``) did not reach the customer (``outcome`` busy, no_answer,
    failed; ``reason`` why): tried again in ``retry_in_s``."""
    type: ClassVar[EventType] = E.CASE_FOLLOWUP_RETRY
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    agent_id: str = ""  # the case's owner: its desktop gets the event
    call_id: str
    outcome: str
    reason: str
    attempt: int
    retry_in_s: float


@dataclass(frozen=True, kw_only=True)
class CaseFollowupFailed(Event):
    """The follow-up gave up: ``attempts`` made, ``reason`` the last outcome (or ``no_number``,
    ``plan_not_found``)."""
    type: ClassVar[EventType] = E.CASE_FOLLOWUP_FAILED
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    agent_id: str = ""  # the case's owner: its desktop gets the event
    attempts: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class CaseFollowupDone(Event):
    """The follow-up reached the customer on call ``call_id`` (``outcome`` of that call: completed, or
    lost when its worker died); ``answers`` what the plan's case_update nodes wrote (e.g. solved, csat),
    ``reopened`` whether an answer reopened the case."""
    type: ClassVar[EventType] = E.CASE_FOLLOWUP_DONE
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    agent_id: str = ""  # the case's owner: its desktop gets the event
    call_id: str
    outcome: str
    answers: dict[str, str]
    reopened: bool


@dataclass(frozen=True, kw_only=True)
class CaseFollowupCancelled(Event):
    """The case's scheduled follow-up was cancelled (``reason`` reopened: the case is being handled again)."""
    type: ClassVar[EventType] = E.CASE_FOLLOWUP_CANCELLED
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    agent_id: str = ""  # the case's owner: its desktop gets the event
    reason: str


@dataclass(frozen=True, kw_only=True)
class CaseAnswers(Event):
    """A dial plan's ``case_update`` node wrote the customer's answers to the case (and call ``call_id``'s
    record): ``answers`` (name -> value, e.g. solved: no, csat: 4), ``reopened`` when it reopened the case."""
    type: ClassVar[EventType] = E.CASE_ANSWERS
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    agent_id: str = ""  # the case's owner: its desktop gets the event
    call_id: str
    answers: dict[str, str]
    reopened: bool
    by: str


@dataclass(frozen=True, kw_only=True)
class CasePurged(Event):
    """Closed case ``case_id`` (closed at ``closed_at``) passed ``cases.retention_days`` and was deleted
    with its notes: the API answers 404 for it from now on (calls that named it keep their records)."""
    type: ClassVar[EventType] = E.CASE_PURGED
    audience: ClassVar[frozenset[str]] = AF
    case_id: str
    closed_at: int
    agent_id: str = ""


# --- outbound campaigns (ivr/queues/lua/lib/campaigns.lua; states: ivr/core/campaign_states.py) ----
# No number is ever in these events: records are named by id (``<campaign>:<n>``).


@dataclass(frozen=True, kw_only=True)
class CampaignStateChanged(Event):
    """Campaign ``campaign_id`` moved from ``previous`` ("" when just created, as a draft) to
    ``state`` (draft, running, paused, stopped, finished), by ``by`` (a user, or ``dialler`` when
    every record was final)."""
    type: ClassVar[EventType] = E.CAMPAIGN_STATE
    audience: ClassVar[frozenset[str]] = frozenset({FLOOR})
    campaign_id: str
    state: str
    previous: str
    by: str


@dataclass(frozen=True, kw_only=True)
class CampaignProgress(Event):
    """The campaign's records per state (``counts``: pending, dialing, answered, done, retry, failed,
    dnc, cancelled), at most once a second per campaign while they change (the wallboard's tile)."""
    type: ClassVar[EventType] = E.CAMPAIGN_PROGRESS
    audience: ClassVar[frozenset[str]] = frozenset({FLOOR})
    campaign_id: str
    state: str
    counts: dict[str, int]


@dataclass(frozen=True, kw_only=True)
class CampaignRecord(Event):
    """Record ``record_id`` of the campaign moved from ``previous`` to ``state`` (dialing, answered,
    done, retry, failed, dnc, cancelled); ``outcome`` the call's (busy, no_answer, failed,
    completed, lost; "" otherwise), ``attempt`` the attempts so far. Never the number."""
    type: ClassVar[EventType] = E.CAMPAIGN_RECORD
    audience: ClassVar[frozenset[str]] = frozenset({FLOOR})
    campaign_id: str
    record_id: str
    state: str
    previous: str
    outcome: str
    attempt: int


@dataclass(frozen=True, kw_only=True)
class CampaignDeleted(Event):
    """The campaign and its records were deleted."""
    type: ClassVar[EventType] = E.CAMPAIGN_DELETED
    audience: ClassVar[frozenset[str]] = frozenset({FLOOR})
    campaign_id: str


@dataclass(frozen=True, kw_only=True)
class RecordingStarted(Event):
    """The call's recording started: ``by`` the agent (on demand) or ``policy``; ``ivr`` when it
    includes the IVR part. The agent sees it on its desktop."""
    type: ClassVar[EventType] = E.RECORDING_STARTED
    audience: ClassVar[frozenset[str]] = frozenset({AGENT, FLOOR})
    call_id: str
    agent_id: str
    by: str


@dataclass(frozen=True, kw_only=True)
class RecordingPaused(Event):
    """The recording is paused (``by`` the agent, or ``sensitive`` for a sensitive collect): the
    file has silence until it resumes."""
    type: ClassVar[EventType] = E.RECORDING_PAUSED
    audience: ClassVar[frozenset[str]] = frozenset({AGENT, FLOOR})
    call_id: str
    agent_id: str
    by: str


@dataclass(frozen=True, kw_only=True)
class RecordingResumed(Event):
    """The recording goes on after a pause."""
    type: ClassVar[EventType] = E.RECORDING_RESUMED
    audience: ClassVar[frozenset[str]] = frozenset({AGENT, FLOOR})
    call_id: str
    agent_id: str
    by: str


@dataclass(frozen=True, kw_only=True)
class RecordingSaved(Event):
    """A recording was compressed, stored and indexed (ids and duration only: never a path, a number
    or audio; fetch it with ``GET /api/v1/recordings/{recording_id}``)."""
    type: ClassVar[EventType] = E.RECORDING_SAVED
    audience: ClassVar[frozenset[str]] = frozenset({FLOOR})
    recording_id: str
    call_id: str
    agent_id: str
    queue: str
    duration_ms: int


@dataclass(frozen=True, kw_only=True)
class RecordingDeleted(Event):
    """A recording was deleted, file and index: ``reason`` retention or admin (``by``)."""
    type: ClassVar[EventType] = E.RECORDING_DELETED
    audience: ClassVar[frozenset[str]] = frozenset({FLOOR})
    recording_id: str
    call_id: str
    reason: str
    by: str



# --- transcripts and quality checks (docs/quality.md) ------------------------------------------

@dataclass(frozen=True, kw_only=True)
class TranscriptReady(Event):
    """A recording was transcribed (both channels); ``words`` how many words the model heard. The
    text is read with ``GET /api/v1/recordings/{recording_id}/transcript``, never sent."""
    type: ClassVar[EventType] = E.TRANSCRIPT_READY
    recording_id: str
    call_id: str
    agent_id: str
    queue: str
    words: int


@dataclass(frozen=True, kw_only=True)
class QualityScored(Event):
    """The queue's quality rules scored a transcribed recording: ``score`` 0-100 and how many checks
    failed (``flags``; their names, e.g. a required phrase's name, ``forbidden``, ``silence``,
    ``overtalk``, ``talk_ratio``, come with ``GET /api/v1/recordings/{recording_id}/quality``)."""
    type: ClassVar[EventType] = E.QUALITY_SCORED
    audience: ClassVar[frozenset[str]] = frozenset({FLOOR})
    recording_id: str
    call_id: str
    agent_id: str
    queue: str
    score: int
    flags: int


@dataclass(frozen=True, kw_only=True)
class QualityReviewed(Event):
    """A supervisor or admin (``by``) reviewed a recording: their ``score`` 0-100 (the comment is
    read through the API)."""
    type: ClassVar[EventType] = E.QUALITY_REVIEWED
    audience: ClassVar[frozenset[str]] = frozenset({AGENT, FLOOR})
    recording_id: str
    call_id: str
    agent_id: str
    by: str
    score: int


# --- floor alerts (docs/alerts.md) -------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class AlertRaised(Event):
    """An alert rule's condition held ``for_s``: a new active alert (one per rule and queue). ``value`` is
    the measured figure, ``threshold`` the rule's, ``clear_at`` the level it must be back past to clear
    (the hysteresis band); ``queue`` is "" for a system rule; ``sound``: the wallboard plays a sound."""
    type: ClassVar[EventType] = E.ALERT_RAISED
    audience: ClassVar[frozenset[str]] = frozenset({FLOOR})
    id: str
    rule: str
    metric: str
    queue: str
    severity: str
    value: float
    threshold: float
    clear_at: float
    direction: str
    raised_at: int
    message: str
    sound: bool
    cleared_at: int | None = None  # always null here: the field is the cleared event's


@dataclass(frozen=True, kw_only=True)
class AlertAcknowledged(Event):
    """A supervisor or admin (``by``) acknowledged an active alert: it stays active until it clears, the
    wallboards dim it and stop its sound."""
    type: ClassVar[EventType] = E.ALERT_ACKNOWLEDGED
    audience: ClassVar[frozenset[str]] = frozenset({FLOOR})
    id: str
    rule: str
    queue: str
    severity: str
    by: str
    acked_at: int


@dataclass(frozen=True, kw_only=True)
class AlertCleared(Event):
    """An active alert cleared: its value was back past ``clear_at`` for ``clear_for_s`` (or its rule was
    switched off: ``value`` null). The fields are the raised alert's, with ``cleared_at`` and the last value."""
    type: ClassVar[EventType] = E.ALERT_CLEARED
    audience: ClassVar[frozenset[str]] = frozenset({FLOOR})
    id: str
    rule: str
    metric: str
    queue: str
    severity: str
    value: float | None
    threshold: float
    clear_at: float
    direction: str
    raised_at: int
    cleared_at: int
    message: str
    sound: bool
    acked_by: str = ""
    acked_at: int | None = None


CATALOGUE: dict[EventType, type[Event]] = {cls.type: cls for cls in Event.__subclasses__()}


def wire_fields(cls: type[Event]) -> dict[str, bool]:
    """The fields of ``cls`` as they appear in an event's data -> whether each is required."""
    return {_wire(f.name): f.default is MISSING and f.default_factory is MISSING
            for f in fields(cls) if f.name not in ("ts", "v")}


def parse(etype: str, data: Mapping[str, Any]) -> Event:
    """The event of type ``etype`` from its stream data (fields it does not know are ignored: a newer
    ``v`` may add some). ValueError for an unknown type or a missing required field."""
    try:
        cls = CATALOGUE[EventType(etype)]
    except ValueError:
        raise ValueError(f"unknown event type {etype!r}") from None
    kwargs = {f.name: data[_wire(f.name)] for f in fields(cls) if _wire(f.name) in data}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{etype}: {exc}") from None


def matches_any(pattern: str) -> bool:
    """Whether a subscription pattern (``*``, ``call.*``, an exact type) names at least one event type."""
    return any(fnmatch.fnmatchcase(t.value, pattern) for t in CATALOGUE)


def with_audience(audience: str) -> frozenset[str]:
    """The event types ``audience`` (AGENT or FLOOR) receives."""
    return frozenset(t.value for t, cls in CATALOGUE.items() if audience in cls.audience)


_JSON = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _json_type(hint: Any) -> str:
    text = str(hint)
    for py, name in _JSON.items():
        if hint is py:
            return name
    if text.startswith("list"):
        return "array"
    if text.startswith("dict"):
        return "object"
    if "None" in text:
        return _json_type(float) + " or null"
    return text


def markdown() -> str:
    """docs/events.md: every event type with its fields, who sees it and what it means."""
    out = ["# Events", "",
           "Every event on the stream (`ivr:events`), as the desktops, the wallboard, the webhooks and the "
           "reports get it. Generated from `ivr/core/event_catalogue.py` (a test keeps this file up to date).",
           "",
           f"Each event carries `ts` (epoch ms) and `v` (the catalogue version, now {VERSION}); within a "
           "version fields are only added, never renamed or removed. Desktop: the agent named by `agent_id` "
           "gets it on its WebSocket; floor: the supervisors' feed (`GET /api/v1/events`). Webhooks get "
           "every type their endpoint's `events` globs match.", ""]
    for etype, cls in sorted(CATALOGUE.items(), key=lambda kv: kv[0].value):
        hints = get_type_hints(cls)
        seen = ", ".join(sorted(a if a != AGENT else "desktop" for a in cls.audience)) or "webhooks and reports only"
        out += [f"## `{etype.value}`", "", " ".join((cls.__doc__ or "").split()), "", f"Seen by: {seen}.", "",
                "| field | type | required |", "| --- | --- | --- |"]
        required = wire_fields(cls)
        for f in fields(cls):
            if f.name in ("ts", "v"):
                continue
            out.append(f"| `{_wire(f.name)}` | {_json_type(hints[f.name])} | "
                       f"{'yes' if required[_wire(f.name)] else 'no'} |")
        out.append("")
    return "\n".join(out)


__all__ = ["AGENT", "CATALOGUE", "FLOOR", "VERSION", "Event", "markdown", "matches_any", "parse", "wire_fields",
           "with_audience",
           *(cls.__name__ for cls in CATALOGUE.values())]
