"""Who may hear a recording (and read what was said in it): the one rule, used by every route that
serves a recording's audio, transcript or quality checks.

- admins: every recording;
- supervisors: every recording when ``recording.supervisors_hear_all`` (the default), else none;
- agents: the recordings they are heard on (``agents`` of the record: whoever was on the agent
  channel, also before a transfer) when ``recording.agents_hear_own`` (the default), else none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ivr.core.config import Settings
from ivr.cti.auth import User


def may_hear(user: User, rec: Mapping[str, Any], settings: Settings) -> bool:
    if user.role == "admin":
        return True
    if user.role == "supervisor":
        return settings.recording.supervisors_hear_all
    if user.role == "agent":
        agents = rec.get("agents") or []
        return settings.recording.agents_hear_own and isinstance(agents, list) and user.id in agents
    return False
