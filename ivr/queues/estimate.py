"""Estimated wait of a caller in a queue, from the queue's recent history.

What is recorded (atomically, in the queue scripts; see ``prelude.lua``), per queue in the hash
``Keys.queue_stats``:

* ``gap_ms``: the exponentially weighted average (weight 0.25 for the newest sample) of the time a
  caller spent at the *head* of the queue before it was offered to the agent who answered, counted
  from the later of its queueing and the previous departure. Only callers that had to wait are
  sampled (one offered the moment it was queued says nothing about how fast the queue moves). While
  callers wait, every staffed agent is busy, so this is the queue's observed departure interval: it
  already includes how many agents serve the queue and how long they take.
* ``last_departure``: when (ms) the last answered caller left the queue; ``departures``: how many.
* ``aht_ms``: the weighted average handle time (talk + wrap-up) of the queue's answered calls that
  ended; ``handled``: how many.

and per skill the set ``Keys.staffed`` of the agents with the skill that are logged in (not offline).

The estimate for the caller at ``position`` (1 = next) is, in this order:

1. ``position × gap`` when the queue has a departure interval and its last departure is recent (within
   :data:`FRESH_S`): the caller needs ``position`` more departures;
2. else ``position × AHT / max(1, staffed agents)``, with the recorded AHT or :data:`DEFAULT_AHT_S`
   when no call of the queue was handled yet.

It is recomputed at each announcement (one read-only script: ``ZRANK``, ``ZCARD``, ``HMGET``,
``SCARD``), so it moves as the caller moves up and as the history changes. It is deterministic: the
same inputs always give the same estimate. Its error against real waits is measured by
``bench/estimate.py`` (figures in docs/queue-stats.md, "Wait estimate and its error").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Departure history older than this is not "recent": the estimate falls back to handle time.
FRESH_S = 1800.0
#: Handle time assumed for a queue that has handled no call yet.
DEFAULT_AHT_S = 180.0

Basis = Literal["departures", "handle_time", "default"]


@dataclass(frozen=True)
class QueueHistory:
    """What the queue's stats hash holds, in seconds; ``None`` where nothing was recorded."""

    gap_s: float | None = None
    last_departure_age_s: float | None = None
    departures: int = 0
    aht_s: float | None = None
    handled: int = 0


@dataclass(frozen=True)
class WaitEstimate:
    position: int  # 1-based
    waiting: int   # callers waiting in the queue, this one included
    seconds: float
    basis: Basis


def estimate_wait(position: int, history: QueueHistory, staffed: int) -> tuple[float, Basis]:
    """Seconds the caller at ``position`` (1 = next) should expect to wait, and what it is based on."""
    position = max(1, position)
    if (history.gap_s is not None and history.last_departure_age_s is not None
            and history.last_departure_age_s <= FRESH_S):
        return position * history.gap_s, "departures"
    if history.aht_s is not None and history.handled > 0:
        return position * history.aht_s / max(1, staffed), "handle_time"
    return position * DEFAULT_AHT_S / max(1, staffed), "default"


def wait_minutes(seconds: float) -> int:
    """Whole minutes for an announcement: 0 under a minute, else rounded to the nearest (at least 1)."""
    if seconds < 60:
        return 0
    return max(1, int(seconds / 60 + 0.5))
