"""Event and state vocabularies shared by every role."""

from __future__ import annotations

from enum import StrEnum


class AgentState(StrEnum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    RESERVED = "reserved"
    ONCALL = "oncall"
    WRAPUP = "wrapup"
    BREAK = "break"


class EventType(StrEnum):
    """Types on the deployment's event stream (``Keys.events``)."""

    CALL_STARTED = "call.started"
    CALL_QUEUED = "call.queued"
    CALL_ESCALATED = "call.escalated"          # a waiting caller's escalation step applied (ivr.queues.routing)
    CALL_OFFERED = "call.offered"
    CALL_OFFER_FAILED = "call.offer_failed"
    CALL_ANSWERED = "call.answered"
    CALL_AGENT_LEFT = "call.agent_left"        # the agent hung up first; the caller stays in the plan
    CALL_LEFT_QUEUE = "call.left_queue"        # taken out of its queue, back in the plan (e.g. max wait)
    CALL_ABANDONED = "call.abandoned"          # hung up while queued or offered (waited_s, short); then call.ended
    CALL_ENDED = "call.ended"
    CALL_DIALING = "call.dialing"              # click-to-dial: the agent answered, the customer is dialled
    AGENT_STATE = "agent.state"
    CALL_DISPOSITION = "call.disposition"      # the agent's disposition code and notes (CTI API)
    AGENT_PHONE = "agent.phone"                # the agent's phone registered / unregistered at the edge
    AGENT_DELETED = "agent.deleted"            # an admin deleted the agent (CTI API)
    AGENT_WRAPUP_EXTENDED = "agent.wrapup_extended"  # the agent (or a supervisor) asked for more wrap-up time
    AGENT_STATE_PENDING = "agent.state_pending"  # a supervisor's change waits for the end of the agent's call
    CALL_CSAT = "call.csat"                    # survey score stored on the call record
    VOICEMAIL_NEW = "voicemail.new"            # a voicemail was attached to the call record
    CALLBACK_REQUESTED = "callback.requested"  # a caller booked a callback (keeps their place)
    CALLBACK_CANCELLED = "callback.cancelled"
    CALLBACK_QUEUED = "callback.queued"        # the caller hung up: the callback now waits for an agent at its place
    CALLBACK_DIALING = "callback.dialing"      # a worker dials the customer (an agent is reserved)
    CALLBACK_CONNECTED = "callback.connected"  # the customer answered and confirmed; the agent is called next
    CALLBACK_RETRY = "callback.retry"          # not reached (no answer, busy, no key...): tried again later
    CALLBACK_FAILED = "callback.failed"        # given up after the last retry
    CALL_PLACE_RESTORED = "call.place_restored"  # a redial took back the caller's earlier place (abandon or callback)
    CALL_HELD = "call.held"                    # the agent put the caller on hold (music on hold)
    CALL_RESUMED = "call.resumed"              # the caller is off hold again (catalogue v2; v1 used it for redials)
    CALL_MUTED = "call.muted"
    CALL_UNMUTED = "call.unmuted"
    CALL_TRANSFERRED = "call.transferred"      # blind, or a consult completed: the caller goes to the target
    CALL_CONSULT_STARTED = "call.consult_started"
    CALL_CONSULT_OFFERED = "call.consult_offered"  # the consulted agent's pop
    CALL_CONSULT_ANSWERED = "call.consult_answered"
    CALL_CONSULT_FAILED = "call.consult_failed"
    CALL_CONSULT_CANCELLED = "call.consult_cancelled"
    CALL_CONSULT_SWAPPED = "call.consult_swapped"
    CALL_CONSULT_COMPLETED = "call.consult_completed"
    CALL_CONFERENCED = "call.conferenced"
    CALL_CONFERENCE_LEFT = "call.conference_left"
    CALL_MONITOR = "call.monitor"              # a supervisor listens, whispers, barges or stopped (live supervision)
    CALL_CRM_MATCHED = "call.crm_matched"      # the pop's CRM lookup settled; stored on the call record (crm)
    WORKER_LOST = "worker.lost"                # a worker died: its calls were recorded lost (calls = how many)
    CASE_OPENED = "case.opened"                # a complaint case was opened (IVR node, agent, API)
    CASE_STATUS = "case.status"                # a case moved to another status (ivr.core.case_states)
    CASE_UPDATED = "case.updated"              # a case's tier, owner, reason or due time changed
    CASE_NOTE = "case.note"                    # a note was added to a case (its length; the text via the API)
    CASE_CALL_LINKED = "case.call_linked"      # a call was linked to a case
    CASE_OVERDUE = "case.overdue"              # an open or reopened case passed its due time without contact
    CASE_TASK_OFFERED = "case.task_offered"    # a case nearing its due time was offered to an agent (follow-up task)
    CASE_TASK_ACCEPTED = "case.task_accepted"  # the agent accepted the task: it dials the customer
    CASE_TASK_DECLINED = "case.task_declined"  # the task went back (declined, expired, the agent left...)
    CASE_FOLLOWUP_SCHEDULED = "case.followup_scheduled"  # closing the case scheduled its follow-up (回访)
    CASE_FOLLOWUP_STARTED = "case.followup_started"  # the follow-up is under way: an automated call, or an agent's task
    CASE_FOLLOWUP_RETRY = "case.followup_retry"      # the customer was not reached: tried again later
    CASE_FOLLOWUP_FAILED = "case.followup_failed"    # not reached after the last attempt (or no number)
    CASE_FOLLOWUP_DONE = "case.followup_done"        # the follow-up reached the customer; its answers
    CASE_FOLLOWUP_CANCELLED = "case.followup_cancelled"  # the case was reopened before its follow-up
    CASE_PURGED = "case.purged"                      # a closed case past its retention was deleted
    CASE_ANSWERS = "case.answers"                    # a dial plan (case_update) wrote the customer's answers
    # outbound campaigns (ivr/queues/lua/lib/campaigns.lua; states: ivr.core.campaign_states)
    CAMPAIGN_STATE = "campaign.state"          # a campaign was created, started, paused, resumed, stopped or finished
    CAMPAIGN_PROGRESS = "campaign.progress"    # a campaign's record counts (at most once a second each)
    CAMPAIGN_RECORD = "campaign.record"        # a campaign record changed state (dialing, retry, done...)
    CAMPAIGN_DELETED = "campaign.deleted"      # a campaign and its records were deleted
    # recordings (docs/recording.md)
    RECORDING_STARTED = "recording.started"    # a call's recording started (policy always, or the agent)
    RECORDING_PAUSED = "recording.paused"      # the agent (or a sensitive collect) paused it: silence in the file
    RECORDING_RESUMED = "recording.resumed"    # recording again after a pause
    RECORDING_SAVED = "recording.saved"        # a recording was compressed, stored and indexed
    RECORDING_DELETED = "recording.deleted"    # retention or an admin deleted a recording (file and index)
    # transcripts and quality checks (docs/quality.md)
    TRANSCRIPT_READY = "transcript.ready"      # a recording was transcribed (ids and the number of words)
    QUALITY_SCORED = "quality.scored"          # the quality rules scored a transcribed recording
    QUALITY_REVIEWED = "quality.reviewed"      # a supervisor or admin added a manual review score
    # floor alerts (docs/alerts.md)
    ALERT_RAISED = "alert.raised"              # an alert rule's condition held for_s: a new active alert
    ALERT_ACKNOWLEDGED = "alert.acknowledged"  # a supervisor acknowledged an active alert (its sound stops)
    ALERT_CLEARED = "alert.cleared"            # the value was back past clear_at for clear_for_s


# States an agent may ask for herself; the others are set by the routing engine.
AGENT_SETTABLE = frozenset({AgentState.AVAILABLE, AgentState.BREAK, AgentState.OFFLINE})
