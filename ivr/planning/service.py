"""Placeholder (issue 21, planning work): the staffing need of a queue now, for the alerts.

Contract (/work/coord/contract-21.md): ``staffing_now`` returns the agents a queue needs on the phones in
the interval holding ``now_s`` (Erlang C / A on the interval's forecast, shrinkage *not* applied: these
are agents taking calls), or None when the queue has no history to forecast from. It must be cheap to
call every few seconds for every queue (cache what depends on the history only: per queue and day)."""

from __future__ import annotations

from dataclasses import dataclass

from ivr.core.config import Settings
from ivr.queues.store import QueueStore


@dataclass(frozen=True)
class StaffingNow:
    queue: str
    interval_start_s: int
    forecast_offered: float
    aht_s: float
    required: int  # agents on the phones for the target (no shrinkage)


async def staffing_now(store: QueueStore, settings: Settings, queue: str, now_s: float) -> StaffingNow | None:
    return None
