"""Queue statistics: the interval counters the Lua scripts keep, and the figures derived from them.

**Counters.** Each queue has one Redis hash per interval (``Keys.queue_interval``; ``routing.stats_interval_s``
long, aligned on the epoch, so quarter hours by default; kept ``routing.stats_keep_days``) and a ZSET
index of its intervals. The scripts update them in the same atomic step as the change they count
(``stats_*`` helpers in ``lua/lib/prelude.lua``). **A counter goes to the interval in which its event
happens**: a call queued at 10:14 and answered at 10:16 is offered in the 10:00 interval and answered
in the 10:15 one (as in most ACD interval reports); a call's wait is measured from the moment it
entered the queue.

============================  ===============================================================
``offered``                   calls that entered the queue (every enqueue)
``answered``                  queued calls an agent answered; ``answer_wait_ms`` sums their waits
                              (queued to answered, ringing included), ``max_answer_wait_ms``
``answered_within_<T>``       answered calls that waited at most T seconds, for each threshold T
                              of ``routing.service_level_s``
``abandoned``                 callers who hung up while waiting or while an agent was being
                              offered the call, ``routing.short_abandon_s`` or more after they
                              were queued; ``abandon_wait_ms`` sums their waits, ``max_abandon_wait_ms``
``short_abandoned``           the same, sooner than ``short_abandon_s`` (misdials, impatient
                              redials): counted apart and left out of the rates below
``timeouts``                  callers taken out of the queue at the queue's ``max_wait``
``left``                      callers taken out of the queue for another reason
``callbacks``                 waiting callers who booked a callback (they keep their place)
``lost``                      waiting callers whose worker died
``handled``, ``handle_ms``    answered calls whose handling ended, and their handle time: talk
                              plus hold plus wrap-up, from the answer to the end of wrap-up
                              (the same figure the wait estimate uses); a call that ends while
                              held, consulting, conferenced or being transferred is handled too
``hold_ms``                   of that handle time, the time on hold (the record's ``hold_s``
                              and the hold under way when it ended)
``transfer_abandoned``        transferred calls (the record has ``transfers`` or
                              ``transferred_from``) that ended while waiting in the queue they
                              were transferred to: not abandons, and out of the abandon rate
============================  ===============================================================

**Figures** (``None`` when the denominator is zero; T is a threshold):

- ``SL1(T) = answered_within_T / answered`` -- service level of the answered calls.
- ``SL2(T) = answered_within_T / (answered + abandoned)`` -- service level *with abandons*: every
  abandon (short ones excluded) counts as a call not answered in time.
- ``ASA = answer_wait_ms / answered`` (seconds).
- ``abandon rate = abandoned / (offered - short_abandoned)``.
- ``AHT = handle_ms / handled`` (seconds): talk + hold + wrap-up.
- ``average hold = hold_ms / handled`` (seconds).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ivr.core.config import RoutingSettings
from ivr.core.events import AgentState

COUNTERS = ("offered", "answered", "answer_wait_ms", "abandoned", "abandon_wait_ms", "short_abandoned",
            "timeouts", "left", "callbacks", "lost", "handled", "handle_ms", "hold_ms", "transfer_abandoned",
            # click-to-dial calls naming the queue (lua/scripts/originate*.lua): placed, connected, not connected
            "outbound", "outbound_answered", "outbound_failed")
MAXIMA = ("max_answer_wait_ms", "max_abandon_wait_ms")
WITHIN = "answered_within_"


@dataclass(frozen=True)
class StatsConfig:
    """What the scripts need to count: interval length, service-level thresholds, short abandons."""

    interval_s: int = 900
    service_level_s: tuple[int, ...] = (10, 20)
    short_abandon_s: float = 5.0
    keep_days: int = 63
    call_ttl_s: int = 7 * 24 * 3600
    """How long an ended call record is kept (``routing.call_ttl_s``): the call list's indexes keep
    the calls that started within that time and a day (a call may last long before its record
    starts to expire)."""

    @classmethod
    def from_routing(cls, routing: RoutingSettings) -> StatsConfig:
        return cls(routing.stats_interval_s, tuple(routing.service_level_s), routing.short_abandon_s,
                   routing.stats_keep_days, routing.call_ttl_s)

    @property
    def calls_keep_s(self) -> int:
        return self.call_ttl_s + 86400

    def to_json(self) -> str:
        """The form ``prelude.lua`` reads (ARGV[3])."""
        return json.dumps({"interval_s": self.interval_s, "sl": list(self.service_level_s),
                           "short_ms": round(self.short_abandon_s * 1000), "keep_s": self.keep_days * 86400,
                           "calls_keep_s": self.calls_keep_s})

    def interval_start(self, epoch_s: float) -> int:
        s = int(epoch_s)
        return s - s % self.interval_s


@dataclass(frozen=True)
class Interval:
    """One queue's counters for one interval (``start_s`` epoch seconds, ``length_s`` long)."""

    start_s: int
    length_s: int
    counts: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> Interval:
        d = {_s(k): int(float(_s(v))) for k, v in raw.items()}
        start, length = d.pop("start", 0), d.pop("length_s", 0)
        return cls(start, length, d)


def merge(intervals: Iterable[Interval]) -> dict[str, int]:
    """The counters of several intervals together (sums; maxima for ``max_*``)."""
    out: dict[str, int] = {}
    for iv in intervals:
        for name, v in iv.counts.items():
            out[name] = max(out.get(name, 0), v) if name.startswith("max_") else out.get(name, 0) + v
    return out


def _ratio(num: float, den: float, scale: float = 1.0) -> float | None:
    return round(num / den / scale, 4) if den > 0 else None


def figures(counts: Mapping[str, int], thresholds: Sequence[int]) -> dict[str, Any]:
    """Counters plus the derived figures (see the module docstring), JSON-ready."""
    c = {name: int(counts.get(name, 0)) for name in (*COUNTERS, *MAXIMA)}
    answered, abandoned = c["answered"], c["abandoned"]
    sl: dict[str, dict[str, Any]] = {}
    for t in thresholds:
        within = int(counts.get(f"{WITHIN}{t}", 0))
        sl[str(t)] = {"answered_within": within, "sl1": _ratio(within, answered),
                      "sl2": _ratio(within, answered + abandoned)}
    return {
        **c,
        "service_level": sl,
        "asa_s": _ratio(c["answer_wait_ms"], answered, 1000),
        "abandon_rate": _ratio(abandoned, c["offered"] - c["short_abandoned"]),
        "aht_s": _ratio(c["handle_ms"], c["handled"], 1000),
        "avg_hold_s": _ratio(c["hold_ms"], c["handled"], 1000),
        "avg_abandon_wait_s": _ratio(c["abandon_wait_ms"], abandoned, 1000),
    }


@dataclass(frozen=True)
class QueueStats:
    """A queue's real-time picture: who waits, which agents can take its calls, and the figures of
    the current interval and of the period since ``since_s`` (today by default)."""

    queue: str
    skill: str
    at_ms: int
    waiting: int
    longest_wait_s: float
    agents: dict[str, int]
    interval: Interval
    period: list[Interval]
    since_s: int
    thresholds: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue, "skill": self.skill, "at": iso(self.at_ms / 1000),
            "waiting": self.waiting, "longest_wait_s": self.longest_wait_s,
            "agents": self.agents,
            "interval": {"start": iso(self.interval.start_s), "length_s": self.interval.length_s,
                         **figures(self.interval.counts, self.thresholds)},
            "period": {"since": iso(self.since_s), "intervals": len(self.period),
                       **figures(merge(self.period), self.thresholds)},
        }

    @classmethod
    def from_script(cls, queue: str, res: Sequence[Any], config: StatsConfig, since_s: int) -> QueueStats:
        now_ms, skill, waiting, oldest = int(res[0]), _s(res[1]), int(res[2]), _s(res[3])
        flat = [_s(x) for x in res[4]]
        agents = {s.value: 0 for s in AgentState}
        agents.update({flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)})
        intervals = [Interval.from_hash(dict(zip(h[::2], h[1::2], strict=True))) for h in res[5]]
        current = config.interval_start(now_ms / 1000)
        interval = next((iv for iv in intervals if iv.start_s == current), Interval(current, config.interval_s))
        return cls(queue, skill, now_ms, waiting,
                   round(max(0, now_ms - int(oldest)) / 1000, 3) if oldest else 0.0,
                   agents, interval, intervals, since_s, config.service_level_s)


def start_of_today(now_s: float) -> int:
    """Local midnight of the day holding ``now_s`` (the server's time zone), in epoch seconds."""
    local = datetime.fromtimestamp(now_s).astimezone()
    return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())


def parse_time(text: str) -> float:
    """ISO 8601 date or date-time as epoch seconds; without an offset it is the server's local time.
    ValueError names the text when it is not one."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or time: {text!r} (e.g. 2024-05-01 or "
                         "2024-05-01T08:00:00+09:00)") from None
    return (dt if dt.tzinfo else dt.astimezone()).timestamp()


def iso(epoch_s: float) -> str:
    """ISO 8601 in UTC, to the millisecond."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
