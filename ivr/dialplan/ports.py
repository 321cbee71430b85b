"""What the dial-plan engine needs from the outside, as interfaces (it never imports ``sip``)."""

from __future__ import annotations

from typing import Protocol

from ivr.dialplan.journey import Journey
from ivr.dialplan.model import Prompt


class CallPort(Protocol):
    async def play(self, prompt: Prompt, *, barge_in: bool) -> str | None:
        """Play a prompt; with barge-in return the digit that interrupted it."""
        ...

    async def get_digit(self, timeout_s: float) -> str | None: ...

    async def hangup(self) -> None: ...


class QueuePort(Protocol):
    async def wait_for_agent(self, *, queue: str, skill: str, priority: int, journey: Journey) -> str:
        """Queue the caller until an agent takes the call (or the caller leaves); returns the outcome."""
        ...
