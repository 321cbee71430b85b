"""Complaint cases: their tiers, the status machine and the limits of their fields.

One setter writes a case's status: ``set_case_status`` in ``ivr/queues/lua/lib/cases.lua``, which
refuses any move not listed here (error ``case.bad_transition``). This module is its Python mirror; a
unit test checks the two tables agree. The checks below (:func:`check_case_id`, :func:`check_text`...)
are what :class:`ivr.queues.store.QueueStore` applies before a script runs (the scripts check again,
cheaply); a value that fails raises BadRequest ``case.invalid``, so hostile input is a clear 400.

Statuses (the complaint as the customer lives it):

- ``open`` — opened (from the IVR or by an agent), nobody has called the customer back yet;
- ``contacted`` — an agent reached the customer (the first time sets ``contacted_at`` and
  ``first_contact_ms``: the figure the per-tier report measures against the due time);
- ``resolved`` — the problem is solved (it may come back: ``reopened``);
- ``closed`` — done (may still be reopened);
- ``reopened`` — back again with a new due time; waits for contact like ``open``.

``open`` and ``reopened`` cases are *pending*: they are in the due index (``Keys.cases_due``),
count in ``open:<tier>`` and can become overdue.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum

from ivr.core.errors import BadRequest

#: Tiers by urgency, most urgent first (each has its own due time, ``cases.due_s``).
CASE_TIERS: tuple[str, ...] = ("urgent", "important", "normal")


class CaseStatus(StrEnum):
    OPEN = "open"
    CONTACTED = "contacted"
    RESOLVED = "resolved"
    CLOSED = "closed"
    REOPENED = "reopened"


S = CaseStatus

#: The status a new case starts in.
INITIAL: CaseStatus = S.OPEN

#: Allowed moves: status -> the statuses it may go to.
CASE_TRANSITIONS: Mapping[CaseStatus, frozenset[CaseStatus]] = {
    S.OPEN: frozenset({S.CONTACTED, S.RESOLVED, S.CLOSED}),
    S.CONTACTED: frozenset({S.RESOLVED, S.CLOSED}),
    S.RESOLVED: frozenset({S.CLOSED, S.REOPENED}),
    S.CLOSED: frozenset({S.REOPENED}),
    S.REOPENED: frozenset({S.CONTACTED, S.RESOLVED, S.CLOSED}),
}

#: Statuses waiting for (first or renewed) contact: in the due index, counted as open, may go overdue.
PENDING: frozenset[CaseStatus] = frozenset({S.OPEN, S.REOPENED})

#: Statuses of a case not finished yet: a customer's index of them (``Keys.customer_cases``) is how a
#: repeat caller is recognised (:meth:`ivr.queues.store.QueueStore.open_cases_for`).
UNFINISHED: frozenset[CaseStatus] = frozenset({S.OPEN, S.CONTACTED, S.REOPENED})

# Limits of the case record (docs/cti-api.md, "Complaint cases").
REASON_MAX = 200
CUSTOMER_NAME_MAX = 100
CRM_ID_MAX = 64
HOTLINE_MAX = 120
NOTE_MAX = 2000
NOTES_KEEP = 200
CALLS_KEEP = 50
LIST_MAX = 200          # the most cases one page of the list returns
DEADLINE_BATCH_MAX = 1000  # the most cases one deadline scan marks
CUSTOMER_CASES_KEEP = 20   # the newest unfinished cases a customer's index keeps (and one look-up returns)

CASE_ID = re.compile(r"^CS[0-9]{1,12}$")
PLAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$")   # a dial plan's file name without .yaml
ANSWER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")          # a follow-up answer's name (solved, csat)
ANSWERS_MAX = 20       # answers a case keeps (a follow-up survey's)
ANSWER_MAX = 200       # characters of one answer
CUSTOMER = re.compile(r"^\+?[0-9*#]{1,32}$")
ACTOR = re.compile(r"^[A-Za-z0-9_.:@-]{1,100}$")   # who did it: an agent or user id, ``ivr:<plan>``
AGENT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")       # an owner (agent id)
CALL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


def allowed(current: CaseStatus | None, new: CaseStatus) -> bool:
    """Whether a case in ``current`` (None: no case yet) may move to ``new``."""
    if current is None:
        return new is INITIAL
    return new in CASE_TRANSITIONS[current]


def invalid(message: str) -> BadRequest:
    return BadRequest(message, code="case.invalid")


def check_case_id(case_id: str) -> str:
    if not isinstance(case_id, str) or not CASE_ID.fullmatch(case_id):
        raise invalid("a case id is CS followed by 1-12 digits")
    return case_id


def check_tier(tier: str) -> str:
    if tier not in CASE_TIERS:
        raise invalid(f"tier must be one of {', '.join(CASE_TIERS)}")
    return tier


def check_status(status: str) -> CaseStatus:
    try:
        return CaseStatus(status)
    except ValueError:
        raise invalid(f"status must be one of {', '.join(s.value for s in CaseStatus)}") from None


def check_pattern(name: str, value: str, pattern: re.Pattern[str], *, empty: bool = False) -> str:
    """``value`` matches ``pattern`` (or is "" when ``empty``)."""
    if not isinstance(value, str) or not ((empty and value == "") or pattern.fullmatch(value)):
        raise invalid(f"{name} is not valid")
    return value


def check_text(name: str, value: str, max_len: int, *, empty: bool = True, multiline: bool = False) -> str:
    """A free text of at most ``max_len`` characters, without control characters (newlines allowed
    with ``multiline``), non-blank unless ``empty``."""
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string")
    if len(value) > max_len:
        raise invalid(f"{name} is longer than {max_len} characters")
    if (_CONTROL_BUT_NEWLINE if multiline else _CONTROL).search(value):
        raise invalid(f"{name} must not hold control characters" + ("" if multiline else " or line breaks"))
    if not empty and not value.strip():
        raise invalid(f"{name} must not be empty")
    return value


def check_ms(name: str, value: int) -> int:
    """An epoch time in ms (0 .. year 5138)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**14:
        raise invalid(f"{name} must be an epoch time in ms")
    return value
