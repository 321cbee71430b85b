"""Opening a complaint case: its due time and its customer.

Shared by the case routes (:mod:`ivr.cti.cases`) and the disposition that opens a case for a call
(:mod:`ivr.cti.calls`). The due time is ``case_due`` of :mod:`ivr.dialplan.hours` (``cases.due_s``
per tier, counted in the business hours of the case's plan when ``cases.business_hours``): the plan
of the case's call (its hotline), else ``cases.hours_plan``, else the plan answering ``*``, else the
first; the API reads them from ``dialplans_dir`` (:class:`PlanHours`). No plan: wall time.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ivr.core.case_states import HOTLINE_MAX
from ivr.core.errors import DialplanError
from ivr.core.logging import get_logger
from ivr.cti.auth import User
from ivr.cti.context import SETTINGS, STORE
from ivr.cti.originate import NUMBER
from ivr.dialplan.hours import case_due
from ivr.dialplan.loader import LoadedPlan, load_plan, plan_files
from ivr.dialplan.registry import plan_id

log = get_logger(__name__)

Tier = Literal["urgent", "important", "normal"]
#: characters a case's text never holds: control characters and line separators
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_CONTROL_BUT_LF = r"\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029"
#: spaces that make a text blank (what str.strip() takes away besides control characters)
_SPACE = r" \xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
#: one line of text
LINE = f"^[^{_CONTROL}]*$"
#: one line that is not blank
REASON = f"^[{_SPACE}]*[^{_SPACE}{_CONTROL}][^{_CONTROL}]*$"
#: lines (line feeds only) that are not all blank
TEXT = f"^[{_SPACE}\\n]*[^{_SPACE}{_CONTROL}][^{_CONTROL_BUT_LF}]*$"


class CaseFromCall(BaseModel):
    """A case opened with a call's disposition (``POST /api/v1/calls/{call_id}/disposition``)."""

    model_config = ConfigDict(extra="forbid")
    tier: Tier
    reason: str = Field(min_length=1, max_length=200, pattern=REASON, description="one line")


# --- the plans whose business hours count ----------------------------------------------------------

class PlanHours:
    """The dial plans of ``dialplans_dir`` as the API reads them for due times: each file loaded
    once and again only when it changes (size, mtime); a file that does not load is left out (its
    cases count wall time). Blocking: call :meth:`find` in a thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[Path, tuple[tuple[int, int], LoadedPlan | None]] = {}
        self._lock = threading.Lock()  # requests look plans up from several threads at once

    def _plans(self) -> list[LoadedPlan]:
        with self._lock:
            return self._read()

    def _read(self) -> list[LoadedPlan]:
        files = plan_files(self.directory) if self.directory.is_dir() else []
        out: list[LoadedPlan] = []
        for path in files:
            try:
                st = os.stat(path)
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            known = self._files.get(path)
            if known is None or known[0] != stamp:
                try:
                    loaded: LoadedPlan | None = load_plan(path)
                except DialplanError as exc:
                    log.warning("cases.plan_unusable", file=str(path), code=exc.code)
                    loaded = None
                known = (stamp, loaded)
                self._files[path] = known
            if known[1] is not None:
                out.append(known[1])
        for gone in set(self._files) - set(files):
            self._files.pop(gone, None)
        return out

    def plans(self) -> list[LoadedPlan]:
        """Every plan that loads (blocking: call it in a thread)."""
        return self._plans()

    def find(self, hotline: str, default: str | None) -> LoadedPlan | None:
        """The plan named ``hotline`` (its name or its id); else the plan ``default`` (an id); else
        the plan answering ``*``, else the first."""
        plans = self._plans()
        if hotline:
            for lp in plans:
                if hotline in (lp.plan.name, plan_id(lp.path)):
                    return lp
        if default:
            for lp in plans:
                if plan_id(lp.path) == default:
                    return lp
            log.warning("cases.hours_plan_unknown", plan=default)
        return next((lp for lp in plans if "*" in lp.plan.numbers), plans[0] if plans else None)


PLANS = web.AppKey("case_plans", PlanHours)


def setup(app: web.Application, dialplans_dir: Path) -> None:
    """What the case routes need on the application (before it starts)."""
    app[PLANS] = PlanHours(dialplans_dir)


async def _plan(request: web.Request, hotline: str) -> LoadedPlan | None:
    settings = request.app[SETTINGS]
    return await asyncio.to_thread(request.app[PLANS].find, hotline, settings.cases.hours_plan)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


async def due_ms(request: web.Request, tier: str, hotline: str, opened_ms: int | None = None) -> tuple[int, str]:
    """(due time in epoch ms, the hotline whose hours counted) for a case of ``tier`` opened at
    ``opened_ms`` (None: now)."""
    loaded = await _plan(request, hotline)
    opened = datetime.fromtimestamp((opened_ms if opened_ms is not None else time.time() * 1000) / 1000, UTC)
    due = case_due(opened, tier, request.app[SETTINGS].cases, loaded)
    return _ms(due), loaded.plan.name if loaded is not None else hotline[:HOTLINE_MAX]


def customer_of(call: dict[str, Any]) -> str:
    """The customer's number of a call (an outbound call's dialled number, else the caller's), or ""
    when it is not a phone number (anonymous, a SIP address)."""
    number = str((call.get("number") if call.get("direction") == "outbound" else call.get("ani")) or "")
    return number if re.fullmatch(NUMBER, number) else ""


async def open_for_call(request: web.Request, who: User, call_id: str, call: dict[str, Any], *, tier: str,
                        reason: str, owner: str, customer: str | None = None, crm_id: str = "",
                        customer_name: str = "") -> dict[str, Any]:
    """Open a case linked to ``call`` (its customer and hotline unless given)."""
    due, hotline = await due_ms(request, tier, str(call.get("hotline") or ""))
    case = await request.app[STORE].open_case(
        tier=tier, reason=reason, customer=customer if customer is not None else customer_of(call),
        opened_by=who.id, due_at_ms=due, hotline=hotline, owner=owner, call_id=call_id, crm_id=crm_id,
        customer_name=customer_name)
    log.info("case.opened", case_id=case["id"], tier=tier, owner=owner, by=who.id, call_id=call_id)
    return case


