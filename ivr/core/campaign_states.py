"""Outbound campaigns: the campaign and record state machines and the limits of their fields.

One setter writes a campaign's state (``set_campaign_state``) and one a record's
(``set_record_state``), both in ``ivr/queues/lua/lib/campaigns.lua``; they refuse any move not listed
here (error ``campaign.bad_transition``). This module is their Python mirror; a unit test checks the
tables agree. The checks below are what :class:`ivr.queues.store.QueueStore` applies before a script
runs (the scripts check again, cheaply); a value that fails raises BadRequest ``campaign.invalid``.

Campaign states: ``draft`` (being set up: records uploaded, everything editable) -> ``running`` (the
dialler calls its records) <-> ``paused`` -> ``stopped`` (by a person: records not yet dialled are
``cancelled``) | ``finished`` (every record reached a final state).

Record states (one customer of the list):

- ``pending`` — not dialled yet;
- ``dialing`` — an automated call (``lua/lib/dialout.lua``) rings it now (the only state in which a
  call of the record exists: one script moves it in, the dialout hook moves it out);
- ``answered`` — the customer answered: never dialled again, whatever happens next;
- ``done`` — the answered call is over (its outcome and answers in ``result``);
- ``retry`` — not reached (busy, no answer, failed): dialled again at ``retry_at``;
- ``failed`` — not reached ``max_attempts`` times (or the call could not be placed at all: a
  plan or number the dialout refuses);
- ``dnc`` — on the do-not-call list (at upload or at dial time): never dialled;
- ``cancelled`` — the campaign was stopped before it was reached.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import StrEnum

from ivr.core.errors import BadRequest


class CampaignState(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    FINISHED = "finished"


class RecordState(StrEnum):
    PENDING = "pending"
    DIALING = "dialing"
    ANSWERED = "answered"
    DONE = "done"
    RETRY = "retry"
    FAILED = "failed"
    DNC = "dnc"
    CANCELLED = "cancelled"


C = CampaignState
R = RecordState

CAMPAIGN_INITIAL: CampaignState = C.DRAFT
RECORD_INITIAL: RecordState = R.PENDING

#: Allowed campaign moves: state -> the states it may go to.
CAMPAIGN_TRANSITIONS: Mapping[CampaignState, frozenset[CampaignState]] = {
    C.DRAFT: frozenset({C.RUNNING, C.STOPPED}),
    C.RUNNING: frozenset({C.PAUSED, C.STOPPED, C.FINISHED}),
    C.PAUSED: frozenset({C.RUNNING, C.STOPPED}),
    C.STOPPED: frozenset(),
    C.FINISHED: frozenset(),
}

#: Allowed record moves.
RECORD_TRANSITIONS: Mapping[RecordState, frozenset[RecordState]] = {
    R.PENDING: frozenset({R.DIALING, R.DNC, R.CANCELLED, R.FAILED}),
    R.DIALING: frozenset({R.ANSWERED, R.RETRY, R.FAILED, R.CANCELLED}),
    R.ANSWERED: frozenset({R.DONE}),
    R.DONE: frozenset(),
    R.RETRY: frozenset({R.DIALING, R.DNC, R.CANCELLED, R.FAILED}),
    R.FAILED: frozenset(),
    R.DNC: frozenset(),
    R.CANCELLED: frozenset(),
}

#: Records the dialler may still call (waiting for their turn).
WAITING: frozenset[RecordState] = frozenset({R.PENDING, R.RETRY})
#: Records with a call under way (count against ``max_concurrent``).
LIVE: frozenset[RecordState] = frozenset({R.DIALING, R.ANSWERED})
#: Final record states.
FINAL: frozenset[RecordState] = frozenset({R.DONE, R.FAILED, R.DNC, R.CANCELLED})

#: Campaign states in which its settings other than pacing and window are frozen.
EDITABLE_ALL: frozenset[CampaignState] = frozenset({C.DRAFT})
EDITABLE_PACING: frozenset[CampaignState] = frozenset({C.DRAFT, C.RUNNING, C.PAUSED})
#: States in which records may be added.
ACCEPTS_RECORDS: frozenset[CampaignState] = frozenset({C.DRAFT, C.RUNNING, C.PAUSED})
#: States in which a campaign may be deleted.
DELETABLE: frozenset[CampaignState] = frozenset({C.DRAFT, C.STOPPED, C.FINISHED})

# Limits (docs/campaigns.md).
NAME_MAX = 100
RATE_MIN, RATE_MAX = 0.01, 50.0
CONCURRENT_MAX = 500
RATIO_MIN, RATIO_MAX = 0.5, 3.0
ATTEMPTS_MAX = 10
BACKOFF_MIN_S, BACKOFF_MAX_S = 30, 7 * 86400
MULTIPLIER_MAX = 4.0
RING_MIN_S, RING_MAX_S = 10, 120
RECORDS_PER_UPLOAD = 10_000
UPLOAD_MAX_BYTES = 5 * 1024 * 1024
RECORD_NAME_MAX = 100
VARIABLES_MAX_BYTES = 4096
ZONES_MAX = 64           # distinct time zones of one campaign's records
SETTINGS_MAX_BYTES = 16384  # the JSON of a campaign's window (or pacing, retries)
LIST_MAX = 200
TICK_DIALS_MAX = 200     # calls one tick may place, over all campaigns

CAMPAIGN_ID = re.compile(r"^CP[0-9]{1,12}$")
RECORD_ID = re.compile(r"^CP[0-9]{1,12}:[0-9]{1,9}$")
NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
PLAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$")
ROUTING_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ACTOR = re.compile(r"^[A-Za-z0-9_.:@-]{1,100}$")
ZONE = re.compile(r"^[A-Za-z0-9_+/-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

OUTCOMES = ("busy", "no_answer", "failed")


def allowed_campaign(current: CampaignState, new: CampaignState) -> bool:
    return new in CAMPAIGN_TRANSITIONS[current]


def allowed_record(current: RecordState | None, new: RecordState) -> bool:
    if current is None:
        return new in (RECORD_INITIAL, R.DNC)
    return new in RECORD_TRANSITIONS[current]


def invalid(message: str) -> BadRequest:
    return BadRequest(message, code="campaign.invalid")


def check_campaign_id(campaign_id: str) -> str:
    if not isinstance(campaign_id, str) or not CAMPAIGN_ID.fullmatch(campaign_id):
        raise invalid("a campaign id is CP followed by 1-12 digits")
    return campaign_id


def check_pattern(name: str, value: str, pattern: re.Pattern[str], *, empty: bool = False) -> str:
    if not isinstance(value, str) or not ((empty and value == "") or pattern.fullmatch(value)):
        raise invalid(f"{name} is not valid")
    return value


def check_text(name: str, value: str, max_len: int, *, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string")
    if len(value) > max_len:
        raise invalid(f"{name} is longer than {max_len} characters")
    if _CONTROL.search(value):
        raise invalid(f"{name} must not hold control characters")
    if not empty and not value.strip():
        raise invalid(f"{name} must not be empty")
    return value


def _number(name: str, value: float, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise invalid(f"{name} must be {lo:g} to {hi:g}")
    return float(value)


def check_pacing(p: Mapping[str, object]) -> dict[str, object]:
    """``{rate_per_s, max_concurrent, mode, ratio, skill}`` with defaults; BadRequest when out of bounds."""
    mode = p.get("mode", "fixed")
    if mode not in ("fixed", "progressive"):
        raise invalid("pacing mode must be fixed or progressive")
    skill = p.get("skill", "")
    check_pattern("pacing skill", skill, ROUTING_NAME, empty=True)  # type: ignore[arg-type]
    conc = p.get("max_concurrent", 10)
    if isinstance(conc, bool) or not isinstance(conc, int) or not 1 <= conc <= CONCURRENT_MAX:
        raise invalid(f"max_concurrent must be 1 to {CONCURRENT_MAX}")
    return {"rate_per_s": _number("rate_per_s", p.get("rate_per_s", 1.0), RATE_MIN, RATE_MAX),  # type: ignore[arg-type]
            "max_concurrent": conc, "mode": mode,
            "ratio": _number("ratio", p.get("ratio", 1.0), RATIO_MIN, RATIO_MAX),  # type: ignore[arg-type]
            "skill": skill}


DEFAULT_BACKOFF_S = {"busy": 300, "no_answer": 1800, "failed": 600}


def check_retries(r: Mapping[str, object]) -> dict[str, object]:
    """``{max_attempts, backoff_s: {busy, no_answer, failed}, multiplier}`` with defaults."""
    attempts = r.get("max_attempts", 3)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= ATTEMPTS_MAX:
        raise invalid(f"max_attempts must be 1 to {ATTEMPTS_MAX}")
    raw = r.get("backoff_s") or {}
    if not isinstance(raw, Mapping) or set(raw) - set(OUTCOMES):
        raise invalid("backoff_s names busy, no_answer, failed")
    backoff = {o: int(_number(f"backoff_s.{o}", raw.get(o, DEFAULT_BACKOFF_S[o]), BACKOFF_MIN_S, BACKOFF_MAX_S))
               for o in OUTCOMES}
    return {"max_attempts": attempts, "backoff_s": backoff,
            "multiplier": _number("multiplier", r.get("multiplier", 2.0), 1.0, MULTIPLIER_MAX)}  # type: ignore[arg-type]


def backoff_s(retries: Mapping[str, object], outcome: str, attempts: int) -> float:
    """How long after its ``attempts``-th failed attempt (outcome ``outcome``) a record is dialled
    again: ``backoff_s[outcome] * multiplier ** (attempts - 1)`` (the Lua hook computes the same)."""
    base = retries["backoff_s"][outcome]  # type: ignore[index]
    return float(base) * float(retries["multiplier"]) ** (attempts - 1)  # type: ignore[arg-type]


_NUMBER_PUNCT = re.compile(r"[\s().\-/]")


def normalise_number(raw: str) -> str | None:
    """An E.164-like number from what a list holds (``+82 10-5550-1234``, ``0082...``, ``(02) 555``):
    spaces, dots, dashes, slashes and brackets dropped, a leading ``00`` read as ``+``; None when
    what is left is not ``+`` and 3 to 20 digits."""
    if not isinstance(raw, str):
        return None
    s = _NUMBER_PUNCT.sub("", raw.strip())
    if s.startswith("00") and NUMBER.fullmatch("+" + s[2:]):
        return "+" + s[2:]
    return s if NUMBER.fullmatch(s) else None


def check_window(window: Mapping[str, object] | None) -> str:
    """The window as stored: its JSON ("" = none); the shape is checked by the caller's model
    (:mod:`ivr.dialplan.calling_window`)."""
    if window is None:
        return ""
    if not isinstance(window, Mapping):
        raise invalid("window must be an object")
    text = json.dumps(dict(window), sort_keys=True, default=str)
    if len(text) > SETTINGS_MAX_BYTES:
        raise invalid(f"window is longer than {SETTINGS_MAX_BYTES} bytes")
    return text
