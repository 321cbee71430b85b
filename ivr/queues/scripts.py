"""The Lua scripts: each multi-key change is one script, run atomically by Redis.

Each script is ``prelude.lua`` + ``routing.lua`` + its body; the prelude holds the shared helpers
(agent state changes, offers, call ends, events) and ``routing.lua`` the skill routing (indexes,
matching, escalation; see :mod:`ivr.queues.routing`) and ``callbacks.lua`` the callbacks and redial
resume, so the rules live in one place.
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
    "agent_token",
    "agent_set_state",
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
    "escalate",
)


def _source(name: str) -> str:
    return resources.files("ivr.queues").joinpath("lua", f"{name}.lua").read_text()


class Scripts:
    """Registers every script once per client; call them as ``await scripts.run("enqueue", ...)``."""

    def __init__(self, redis: Redis, prefix: str, events_maxlen: int, stats_json: str) -> None:
        prelude = _source("prelude") + "\n" + _source("routing") + "\n" + _source("callbacks")
        self._fixed = [prefix, str(events_maxlen), stats_json]
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(prelude + "\n" + _source(name)) for name in NAMES
        }

    async def run(self, name: str, *args: Any) -> Any:
        return await self._scripts[name](keys=[], args=[*self._fixed, *(str(a) for a in args)])
