"""What the dial-plan engine needs from the outside, as interfaces (it never imports ``sip``).

Three implementations exist: the SIP call session on a worker (:mod:`ivr.calls.session`), the
simulator (:mod:`ivr.dialplan.simulator`) and the fakes of the engine's unit tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ivr.dialplan.journey import Journey
from ivr.dialplan.model import Prompt


@dataclass(frozen=True)
class Ask:
    """One turn of waiting for the caller: play ``prompts`` in order (may be none) and take digits or
    speech.

    Digits: the turn ends at ``max_digits`` keys, at ``terminator`` (not included in the answer), or
    ``inter_digit_s`` after the last key; no key within ``timeout_s`` after the prompt ends is
    no-input. Speech (only when ``phrases`` is non-empty or ``spoken_digits`` is set): the caller's
    audio is recognised against ``phrases`` (a closed grammar); ``spoken_digits`` also accepts digits
    said aloud and returns them as ``digits``. With ``barge_in`` a key or the start of speech stops
    the prompt.
    """

    prompts: tuple[Prompt, ...]
    language: str
    barge_in: bool = True
    timeout_s: float = 5.0
    max_digits: int = 1
    terminator: str | None = None
    inter_digit_s: float = 3.0
    phrases: tuple[str, ...] = ()
    spoken_digits: bool = False
    max_speech_s: float = 8.0
    variables: Mapping[str, str] = field(default_factory=dict)  # for {placeholders} in the prompts
    sensitive: bool = False  # a sensitive collect's turn: kept off the call's recording


@dataclass(frozen=True)
class Answer:
    kind: Literal["digits", "speech", "no_input"]
    digits: str = ""           # keys pressed, or digits spoken when ``spoken_digits``
    phrase: str = ""           # the grammar phrase recognised (``kind == "speech"``)
    text: str = ""             # the raw recognised text
    confidence: float = 1.0
    agreement: float = 1.0     # share of the recogniser's decodes that agreed on the answer (speech)
    decodes: int = 1           # how many decodes voted (1: no voting)

    @staticmethod
    def none() -> Answer:
        return Answer("no_input")


@dataclass(frozen=True)
class Recording:
    path: str
    seconds: float
    ended_by: Literal["terminator", "max_length", "hangup", "silence"]


class CallPort(Protocol):
    """Call control of the caller's leg."""

    @property
    def caller(self) -> str: ...

    @property
    def dnis(self) -> str: ...

    async def play(self, prompt: Prompt, *, language: str, variables: Mapping[str, str]) -> None:
        """Play a prompt to the end (no input taken)."""
        ...

    async def ask(self, ask: Ask) -> Answer: ...

    async def record(self, *, max_s: float, beep: bool, terminator: str, name: str) -> Recording:
        """Record the caller (voicemail) until the terminator key, ``max_s`` or hang-up."""
        ...

    async def transfer(self, destination: str, *, ring_s: float) -> Literal["completed", "failed"]:
        """Connect the caller to ``destination`` (already checked against the allowlist); returns when
        the transferred call ends ("completed") or could not be set up ("failed")."""
        ...

    async def hangup(self) -> None: ...


@dataclass(frozen=True)
class QueueTarget:
    queue: str
    skills: tuple[str, ...]
    language: str
    priority: int
    max_wait_s: float | None = None
    announce_every_s: float | None = None
    announce_position: bool = False
    announce_wait: bool = False
    keys: tuple[str, ...] = ()   # keys that leave the queue while waiting
    min_proficiency: int | None = None  # None: the queue's (routing.queues), else 1
    skills_from_plan: bool = True       # False: the plan named none (``skills`` is the queue name)
    language_from_plan: bool = True     # False: the call's language, required only if the queue says so
    recording: str | None = None        # the node's recording policy; None: the queue's (recording.policy)


#: "agent_hangup", "caller_hangup", "timeout", or "key:<digit>" (the caller pressed one of
#: QueueTarget.keys and has left the queue).
QueueOutcome = str


class QueuePort(Protocol):
    async def wait_for_agent(self, target: QueueTarget, journey: Journey) -> QueueOutcome:
        """Queue the caller until an agent took the call and it ended, ``max_wait_s`` passed, or the
        caller pressed one of ``target.keys`` while still waiting (``"key:<digit>"``)."""
        ...


@dataclass(frozen=True)
class CaseRef:
    """The complaint case a ``case`` node got: opened for this call, or the caller's unfinished one."""

    case_id: str
    existing: bool = False


class RecordPort(Protocol):
    """Writes to the call record (the CRM and the agent see it)."""

    async def save(self, fields: Mapping[str, Any]) -> None:
        """Store fields on the call record (``csat``, ``voicemail``, ``variables``...)."""
        ...

    async def request_callback(self, *, queue: str, number: str, journey: Journey) -> str:
        """Book a callback that keeps the caller's place; returns its id."""
        ...

    async def case_answers(self, case_id: str, answers: Mapping[str, str], *, reopen: bool) -> bool:
        """Write ``answers`` to case ``case_id`` and this call's record; ``reopen`` reopens a resolved
        or closed case (due again by its tier). Returns whether it was reopened."""
        ...

    async def open_case(self, *, tier: str, reason: str, customer: str) -> CaseRef:
        """Open a complaint case for this call (linked to it, due by tier); a caller who has an
        unfinished case gets no second one: that case is linked to the call and returned
        (``existing``)."""
        ...


class DataPort(Protocol):
    async def fetch(self, method: str, url: str, body: Mapping[str, Any] | None, timeout_s: float) -> Any:
        """An HTTP data dip; returns the decoded JSON. Raises ``LookupFailed`` on any failure."""
        ...


class CallerGone(Exception):
    """The caller hung up: raised by any CallPort method; the engine lets it propagate."""


class LookupFailed(Exception):
    """A data dip failed: host not allowed, timeout, HTTP error or reply that is not JSON."""
