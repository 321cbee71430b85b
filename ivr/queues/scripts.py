"""The Lua scripts: each multi-key change is one script, run atomically by Redis.

Each entry script (``lua/scripts/<name>.lua``) runs after the shared libraries of ``lua/lib/``, so
the rules live in one place: ``call_state.lua`` the call state machine (the one setter of a call's
state, see :mod:`ivr.core.call_states`), ``prelude.lua`` the shared helpers (agent state changes,
offers, call ends, events), ``routing.lua`` the skill routing (indexes, matching, escalation; see
:mod:`ivr.queues.routing`), ``callbacks.lua`` the callbacks and redial resume, ``originate.lua`` the
click-to-dial call (the API's and a follow-up task's), ``dialout.lua`` the automated outbound call
that runs a dial plan (a follow-up survey, a campaign's) and ``cases.lua`` the complaint cases (the one
setter of a case's status, see :mod:`ivr.core.case_states`) and their follow-up tasks; ``campaigns.lua``
the outbound campaigns (the one setter of a campaign's and a record's state, see
:mod:`ivr.core.campaign_states`) and their dialler.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

NAMES = (
    "call_start",
    "enqueue",
    "leave_queue",
    "agent_register",
    "agent_remove",
    "agent_phones",
    "agent_token",
    "agent_set_state",
    "agent_wrapup_extend",
    "offer_answered",
    "offer_failed",
    "agent_left",
    "end_call",
    "release_wrapups",
    "reap_worker",
    "housekeeping",
    "record_csat",
    "record_voicemail",
    "record_variables",
    "record_field",
    "record_disposition",
    "callback_request",
    "callback_cancel",
    "callback_dialing",
    "callback_confirmed",
    "callback_retry",
    "callbacks_due",
    "queue_status",
    "queue_snapshot",
    "interval_history",
    "escalate",
    "command_send",
    "record_crm",
    "call_control",
    "calls_page",
    "originate",
    "originate_agent_answered",
    "originate_connected",
    "originate_failed",
    "case_open",
    "case_status",
    "case_update",
    "case_note",
    "case_link_call",
    "case_list",
    "case_counts",
    "case_deadlines",
    "case_first_contact",
    "case_report",
    "case_offer_tasks",
    "case_task_accept",
    "case_task_decline",
    "case_customer",
    "case_followups",
    "case_answers",
    "case_purge",
    "dialout_start",
    "dialout_answered",
    "dialout_failed",
    # outbound campaigns (lib/campaigns.lua)
    "campaign_create",
    "campaign_update",
    "campaign_state",
    "campaign_records_add",
    "campaign_records_page",
    "campaign_tick",
    "campaign_dnc",
    "campaign_delete",
    # recordings (docs/recording.md)
    "recording_saved",
    "recording_state",
    "recording_delete",
    # transcripts and quality checks (lib/quality.lua; docs/quality.md)
    "transcript_save",
    "transcript_fail",
    "transcribe_claim",
    "transcribe_requeue",
    "transcript_search",
    "quality_review",
    "quality_report",
    # agent statistics and a supervisor's change of an agent's state (issue 21, ivr/queues/agent_stats.py)
    "agent_stats",
    "agent_force",
)


#: The shared libraries every queue script runs after, in this order.
LIBRARIES = ("call_state", "prelude", "routing", "callbacks", "originate", "dialout", "cases", "campaigns", "quality")


def lua_source(folder: str, name: str) -> str:
    """The text of ``lua/<folder>/<name>.lua`` (folder ``lib`` or ``scripts``)."""
    return resources.files("ivr.queues").joinpath("lua", folder, f"{name}.lua").read_text()


def script_source(name: str) -> str:
    """The whole text Redis runs for queue script ``name``: the libraries, then its body."""
    return "\n".join([*(lua_source("lib", lib) for lib in LIBRARIES), lua_source("scripts", name)])


class Scripts:
    """Registers every script once per client; call them as ``await scripts.run("enqueue", ...)``."""

    def __init__(self, redis: Redis, prefix: str, events_maxlen: int, stats_json: str) -> None:
        self._fixed = [prefix, str(events_maxlen), stats_json]
        self._scripts: dict[str, AsyncScript] = {name: redis.register_script(script_source(name)) for name in NAMES}

    async def run(self, name: str, *args: Any) -> Any:
        return await self._scripts[name](keys=[], args=[*self._fixed, *(str(a) for a in args)])
