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

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

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


@dataclass(frozen=True)
class LuaScript:
    """One script as Redis runs it: its whole text (the libraries, then its body) and its SHA1."""

    source: str
    sha: str


@functools.cache
def lua_script(body: str, libraries: tuple[str, ...] = LIBRARIES) -> LuaScript:
    """``lua/scripts/<body>.lua`` after ``libraries``, made once per process. The queue scripts are
    ~9 M characters together (each carries the libraries): every store used to make its own copy
    through redis-py's ``register_script`` (21 MB of an idle worker's 36 MB), and now the workers'
    parent makes them once for all of them (ivr/runtime/forkserver.py)."""
    source = "\n".join([*(lua_source("lib", lib) for lib in libraries), lua_source("scripts", body)])
    return LuaScript(source, hashlib.sha1(source.encode()).hexdigest())


async def run_script(redis: Redis, script: LuaScript, args: Sequence[Any]) -> Any:
    """``EVALSHA``; on a Redis that does not know the script yet (a restart, a new server), load it once
    and run it again."""
    try:
        return await redis.evalsha(script.sha, 0, *args)
    except NoScriptError:
        await redis.script_load(script.source)
        return await redis.evalsha(script.sha, 0, *args)


class Scripts:
    """The queue scripts of one client; call them as ``await scripts.run("enqueue", ...)``."""

    def __init__(self, redis: Redis, prefix: str, events_maxlen: int, stats_json: str) -> None:
        self._redis = redis
        self._fixed = [prefix, str(events_maxlen), stats_json]
        for name in NAMES:  # made here, so a missing file fails the start, not a call
            lua_script(name)

    async def run(self, name: str, *args: Any) -> Any:
        return await run_script(self._redis, lua_script(name), [*self._fixed, *(str(a) for a in args)])
