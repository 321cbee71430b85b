"""What the SIP thread reports to asyncio: frozen dataclasses, one per thing that happened."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SipEvent:
    leg_id: str


@dataclass(frozen=True)
class IncomingCall(SipEvent):
    ani: str
    dnis: str
    sip_call_id: str
    source: str


@dataclass(frozen=True)
class Rejected(SipEvent):
    """An INVITE the worker refused by itself (admission control)."""

    code: int
    reason: str


@dataclass(frozen=True)
class Ringing(SipEvent):
    code: int


@dataclass(frozen=True)
class Answered(SipEvent):
    pass


@dataclass(frozen=True)
class MediaReady(SipEvent):
    pass


@dataclass(frozen=True)
class Dtmf(SipEvent):
    digit: str
    method: str


@dataclass(frozen=True)
class PlaybackDone(SipEvent):
    player_id: int


@dataclass(frozen=True)
class Disconnected(SipEvent):
    code: int
    reason: str
    rtp: dict[str, int] = field(default_factory=dict)
