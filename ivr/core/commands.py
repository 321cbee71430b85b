"""Commands to a live call: typed, frozen, addressed by call id, answered once.

The API sends a command through the state layer (:meth:`ivr.queues.store.QueueStore.send_command`)
to the inbox of the worker that owns the call (the call record names it); the worker hands it to the
call's session, which carries it out and answers with a :class:`Reply`. Delivery is at most once: the
inbox is a list the worker pops, and a command whose deadline passed before the worker saw it is
dropped unanswered (the sender has already reported a timeout).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar

DTMF = re.compile(r"[0-9*#A-D]{1,32}")


class Status(StrEnum):
    ACCEPTED = "accepted"  # carried out (or started, for commands that take time)
    REFUSED = "refused"    # not possible in the call's present state; ``code`` says why
    GONE = "gone"          # the call is no longer on that worker


@dataclass(frozen=True, kw_only=True)
class Command:
    """Base of every command. ``kind`` names the concrete class on the wire."""

    kind: ClassVar[str] = ""
    call_id: str
    by: str                      # the user who asked (id), for the record and the audit
    role: str = ""               # that user's role
    command_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    deadline_ms: int = 0         # epoch ms after which the worker must not carry it out

    def expired(self, now_ms: int | None = None) -> bool:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return bool(self.deadline_ms) and now > self.deadline_ms


@dataclass(frozen=True, kw_only=True)
class Hangup(Command):
    """End the call for every party."""

    kind: ClassVar[str] = "hangup"


@dataclass(frozen=True, kw_only=True)
class Hold(Command):
    """Put the customer on hold: music on hold for them, silence for the agent."""

    kind: ClassVar[str] = "hold"


@dataclass(frozen=True, kw_only=True)
class Resume(Command):
    """Take the customer off hold."""

    kind: ClassVar[str] = "resume"


@dataclass(frozen=True, kw_only=True)
class Mute(Command):
    """Nobody hears the agent (the agent still hears the call)."""

    kind: ClassVar[str] = "mute"


@dataclass(frozen=True, kw_only=True)
class Unmute(Command):
    kind: ClassVar[str] = "unmute"


#: what a transfer or consult goes to: a queue (by name), an agent (by id), a number (allowlisted)
TARGET_TYPES = frozenset({"queue", "agent", "number"})


@dataclass(frozen=True, kw_only=True)
class Transfer(Command):
    """Blind transfer: the agent is released to wrap-up; the customer goes to the target."""

    kind: ClassVar[str] = "transfer"
    target_type: str
    target: str


@dataclass(frozen=True, kw_only=True)
class Consult(Command):
    """The customer on hold, the agent talks to the target (then complete, cancel, swap, conference)."""

    kind: ClassVar[str] = "consult"
    target_type: str
    target: str


@dataclass(frozen=True, kw_only=True)
class ConsultComplete(Command):
    """Join the customer to the consult target; the agent is released to wrap-up."""

    kind: ClassVar[str] = "consult_complete"


@dataclass(frozen=True, kw_only=True)
class ConsultCancel(Command):
    """End the consult leg; the agent is back with the customer."""

    kind: ClassVar[str] = "consult_cancel"


@dataclass(frozen=True, kw_only=True)
class ConsultSwap(Command):
    """Switch the agent between the customer and the consult target (the other hears music)."""

    kind: ClassVar[str] = "consult_swap"


@dataclass(frozen=True, kw_only=True)
class Conference(Command):
    """From a consult: customer, agent and target all talk."""

    kind: ClassVar[str] = "conference"


@dataclass(frozen=True, kw_only=True)
class ConferenceLeave(Command):
    """``agent_id`` leaves the conference; the customer and the other party go on."""

    kind: ClassVar[str] = "conference_leave"
    agent_id: str


@dataclass(frozen=True, kw_only=True)
class SendDtmf(Command):
    """Send keys to the customer's leg (e.g. into an external IVR after a transfer)."""

    kind: ClassVar[str] = "dtmf"
    digits: str


@dataclass(frozen=True, kw_only=True)
class Reject(Command):
    """The offered agent refuses offer ``offer_id`` while its phone rings (or before): the agent's
    leg is cancelled and the caller goes back to the head of its queue (``call.offer_failed``,
    reason ``rejected``)."""

    kind: ClassVar[str] = "reject"
    offer_id: str


@dataclass(frozen=True, kw_only=True)
class RecordStart(Command):
    """Start recording the call (a queue whose policy is ``on_demand``; ``always``: already on)."""

    kind: ClassVar[str] = "record_start"


@dataclass(frozen=True, kw_only=True)
class RecordPause(Command):
    """Pause the recording (e.g. while the customer reads a card number): silence in the file."""

    kind: ClassVar[str] = "record_pause"


@dataclass(frozen=True, kw_only=True)
class RecordResume(Command):
    """Go on recording after a pause."""

    kind: ClassVar[str] = "record_resume"


# --- live supervision (docs/call-control.md, "Live supervision") ----------------------------------

#: what a supervisor does on a call (ivr.calls.media_plan.MonitorMode has the same values)
MONITOR_MODES = frozenset({"listen", "whisper", "barge"})
#: where the supervisor's phone is: an allowlisted number, or an agent (or user) id's phone
MONITOR_TARGET_TYPES = frozenset({"number", "agent"})


@dataclass(frozen=True, kw_only=True)
class MonitorStart(Command):
    """Dial the supervisor's phone (``target``) from the worker holding the call, as an extra leg,
    and let it listen, whisper to the agent or barge in (``mode``)."""

    kind: ClassVar[str] = "monitor_start"
    mode: str
    target_type: str
    target: str


@dataclass(frozen=True, kw_only=True)
class MonitorChange(Command):
    """The supervisor on the call switches between listen, whisper and barge."""

    kind: ClassVar[str] = "monitor_change"
    mode: str


@dataclass(frozen=True, kw_only=True)
class MonitorStop(Command):
    """End the supervisor's leg; caller and agent go on as before."""

    kind: ClassVar[str] = "monitor_stop"


COMMANDS: dict[str, type[Command]] = {cls.kind: cls for cls in (
    Hangup, Hold, Resume, Mute, Unmute, Transfer, Consult, ConsultComplete, ConsultCancel, ConsultSwap,
    Conference, ConferenceLeave, SendDtmf, Reject, RecordStart, RecordPause, RecordResume, MonitorStart,
    MonitorChange, MonitorStop)}


def encode(command: Command) -> str:
    """The command as the inbox message (``type`` = ``command``, beside offers)."""
    return json.dumps({"type": "command", "kind": command.kind, **asdict(command)})


def decode(raw: str | bytes | dict[str, Any]) -> Command:
    """The command of an inbox message; ValueError for an unknown kind or malformed fields."""
    data = json.loads(raw) if isinstance(raw, str | bytes) else dict(raw)
    cls = COMMANDS.get(str(data.get("kind", "")))
    if cls is None:
        raise ValueError(f"unknown command kind {data.get('kind')!r}")
    names = {f.name for f in fields(cls)}
    try:
        command = cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise ValueError(f"malformed {cls.kind} command: {exc}") from None
    for f in fields(command):
        value = getattr(command, f.name)
        expected = int if f.name == "deadline_ms" else str
        if type(value) is not expected:
            raise ValueError(f"malformed {cls.kind} command: {f.name} must be {expected.__name__}")
    if not command.call_id or not command.command_id:
        raise ValueError(f"malformed {cls.kind} command: call_id and command_id are required")
    if isinstance(command, Transfer | Consult) and (command.target_type not in TARGET_TYPES or not command.target):
        raise ValueError(f"malformed {cls.kind} command: target_type must be one of {sorted(TARGET_TYPES)}")
    if isinstance(command, MonitorStart | MonitorChange) and command.mode not in MONITOR_MODES:
        raise ValueError(f"malformed {cls.kind} command: mode must be one of {sorted(MONITOR_MODES)}")
    if isinstance(command, MonitorStart) and (command.target_type not in MONITOR_TARGET_TYPES or not command.target):
        raise ValueError(f"malformed {cls.kind} command: target_type must be one of {sorted(MONITOR_TARGET_TYPES)}")
    if isinstance(command, SendDtmf) and not DTMF.fullmatch(command.digits):
        raise ValueError(f"malformed {cls.kind} command: digits must be 1-32 of 0-9 * # A-D")
    return command


@dataclass(frozen=True)
class Reply:
    command_id: str
    status: Status
    code: str = ""      # stable error code when refused or gone (e.g. ``call.gone``)
    message: str = ""

    def encode(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: str | bytes) -> Reply:
        data = json.loads(raw)
        return cls(str(data["command_id"]), Status(data["status"]), str(data.get("code", "")),
                   str(data.get("message", "")))
