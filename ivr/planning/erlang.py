"""Erlang C and Erlang A: the service a number of agents gives an interval's calls, and the fewest
agents that meet a service-level target (docs/planning.md).

Pure functions, no I/O. Time is in seconds. Notation: ``rate`` calls per second arriving, ``aht``
the mean handle time, ``A = rate * aht`` the offered load in Erlangs, ``n`` agents on the phones.

**Erlang C** (M/M/n, callers never give up): P(wait) = C(n, A), computed from the Erlang B
recursion (numerically stable, no factorials); SL(t) = 1 - C * exp(-(n - A) t / aht); ASA = C * aht /
(n - A) over all calls; occupancy A / n. ``n <= A``: the queue grows without bound (SL 0, P(wait) 1).

**Erlang A** (M/M/n+M, Palm's model: callers give up after an exponential patience of mean
1 / ``theta``): the stationary distribution of the birth-death chain (birth ``rate``, death
``min(k, n) / aht + max(k - n, 0) * theta``), truncated where the tail is negligible. P(wait) = P(k >= n),
P(abandon) = theta * E[queue] / rate, ASA = E[queue] / rate (every caller's wait, Little's law), occupancy =
carried load (1 - P(abandon)) A / n. The service level counts abandons as failures (the stats' SL2):
the share of callers answered within t. A caller who finds j others waiting is answered within t
when the j ahead of it have left (served or given up, rate n / aht + i * theta with i still ahead)
and a line has freed before t and before its own patience runs out; that probability is computed
for every j at once by uniformization of the tagged caller's chain (bounded steps, cached per
(n, aht, theta, t): it does not depend on the arrival rate).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

Model = Literal["erlang_c", "erlang_a"]

#: most agents a search tries (a bigger need is reported as this and flagged ``capped``)
MAX_AGENTS = 5000
#: the queue-length tail of Erlang A left out (probability)
_TAIL = 1e-10
#: most waiting callers the Erlang A chain holds
_MAX_QUEUE = 2000
#: most uniformization steps (a bigger product of rate and threshold is cut: the rest is < 1e-9)
_MAX_STEPS = 20000


@dataclass(frozen=True)
class Service:
    """What ``agents`` agents give: service level at ``threshold_s``, average wait, occupancy."""

    agents: int
    p_wait: float
    service_level: float
    asa_s: float
    occupancy: float
    p_abandon: float = 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {"agents": self.agents, "p_wait": round(self.p_wait, 4), "service_level": round(self.service_level, 4),
                "asa_s": round(self.asa_s, 1) if math.isfinite(self.asa_s) else -1.0,
                "occupancy": round(self.occupancy, 4), "p_abandon": round(self.p_abandon, 4)}


def erlang_b(n: int, load: float) -> float:
    """Blocking probability of n lines with ``load`` Erlangs (the stable recursion)."""
    b = 1.0
    for k in range(1, n + 1):
        b = load * b / (k + load * b)
    return b


def erlang_c(n: int, load: float) -> float:
    """Probability that a caller waits (n agents, ``load`` Erlangs); 1 when n <= load."""
    if load <= 0:
        return 0.0
    if n <= load:
        return 1.0
    b = erlang_b(n, load)
    return n * b / (n - load * (1 - b))


def service_c(n: int, rate: float, aht: float, threshold_s: float) -> Service:
    """Erlang C figures of n agents."""
    load = rate * aht
    if load <= 0:
        return Service(n, 0.0, 1.0, 0.0, 0.0)
    if n <= load:
        return Service(n, 1.0, 0.0, math.inf, 1.0 if n else 0.0)
    c = erlang_c(n, load)
    sl = 1 - c * math.exp(-(n - load) * threshold_s / aht)
    return Service(n, c, max(0.0, min(1.0, sl)), c * aht / (n - load), load / n)


def _stationary(n: int, rate: float, aht: float, theta: float) -> list[float]:
    """Stationary probabilities p[k] of k callers in the system (M/M/n+M), truncated."""
    mu = 1.0 / aht
    weights = [1.0]
    w, k = 1.0, 0
    total = 1.0
    while True:
        k += 1
        death = min(k, n) * mu + max(k - n, 0) * theta
        w = w * rate / death
        weights.append(w)
        total += w
        if k >= n and (w / total < _TAIL or k - n >= _MAX_QUEUE):
            break
        if k > n + _MAX_QUEUE:
            break
    return [x / total for x in weights]


@functools.lru_cache(maxsize=512)
def _answered_within(n: int, aht: float, theta: float, threshold_s: float, ahead: int) -> tuple[float, ...]:
    """For j = 0..ahead callers ahead (all lines busy): the probability that a caller arriving then is
    answered within ``threshold_s``. Uniformization of the tagged caller's chain: from j ahead it moves
    to j - 1 at n*mu + j*theta (j = 0: answered), gives up at theta."""
    mu = 1.0 / aht
    down = [n * mu + j * theta for j in range(ahead + 1)]
    lam = down[-1] + theta
    if lam <= 0:
        return tuple(0.0 for _ in range(ahead + 1))
    x = lam * threshold_s
    # g[j]: probability of having been answered within k steps of the discrete chain, from j ahead
    g = [0.0] * (ahead + 1)
    result = [0.0] * (ahead + 1)
    pois = math.exp(-x) if x < 700 else 0.0
    log_pois = -x
    steps = min(_MAX_STEPS, int(x + 10 * math.sqrt(x) + 20))
    stay = [1 - (d + theta) / lam for d in down]
    p_down = [d / lam for d in down]
    cum = 0.0
    for k in range(steps + 1):
        if k:
            log_pois += math.log(x) - math.log(k)
            pois = math.exp(log_pois)
            prev = g
            g = [p_down[0] * 1.0 + stay[0] * prev[0]] + [
                p_down[j] * prev[j - 1] + stay[j] * prev[j] for j in range(1, ahead + 1)]
        # P(answered by time t) = sum_k Poisson(k; x) * g_k
        for j in range(ahead + 1):
            result[j] += pois * g[j]
        cum += pois
        if cum > 1 - 1e-12 and k > x:
            break
    return tuple(min(1.0, r) for r in result)


def service_a(n: int, rate: float, aht: float, threshold_s: float, patience_s: float) -> Service:
    """Erlang A figures of n agents, callers giving up after ``patience_s`` on average."""
    load = rate * aht
    if load <= 0:
        return Service(n, 0.0, 1.0, 0.0, 0.0)
    theta = 1.0 / patience_s
    if n == 0:
        return Service(0, 1.0, 0.0, patience_s, 0.0, 1.0)
    p = _stationary(n, rate, aht, theta)
    p_wait = sum(p[n:])
    queue = sum((k - n) * p[k] for k in range(n, len(p)))
    p_ab = min(1.0, theta * queue / rate)
    within = _answered_within(n, round(aht, 3), round(theta, 9), float(threshold_s), len(p) - n - 1)
    sl = sum(p[:n]) + sum(p[n + j] * within[j] for j in range(len(p) - n))
    occupancy = min(1.0, load * (1 - p_ab) / n)
    return Service(n, p_wait, max(0.0, min(1.0, sl)), queue / rate, occupancy, p_ab)


def service(model: Model, n: int, rate: float, aht: float, threshold_s: float,
            patience_s: float | None = None) -> Service:
    if model == "erlang_a" and patience_s is not None and patience_s > 0:
        return service_a(n, rate, aht, threshold_s, patience_s)
    return service_c(n, rate, aht, threshold_s)


@dataclass(frozen=True)
class Need:
    """The fewest agents meeting the target, what they give, and whether the search hit MAX_AGENTS."""

    agents: int
    service: Service
    model: Model
    capped: bool = False


def required_agents(rate: float, aht: float, *, target: float, threshold_s: float, max_occupancy: float = 1.0,
                    model: Model = "erlang_c", patience_s: float | None = None) -> Need:
    """The fewest agents whose service level at ``threshold_s`` is at least ``target`` and whose
    occupancy is at most ``max_occupancy``. No calls: 0 agents."""
    if not (math.isfinite(rate) and math.isfinite(aht)) or rate < 0 or aht <= 0:
        raise ValueError(f"rate must be >= 0 and aht > 0, not {rate!r}, {aht!r}")
    if not 0 < target <= 1 or not 0 < max_occupancy <= 1:
        raise ValueError("target and max_occupancy must be in (0, 1]")
    use: Model = model if model == "erlang_a" and patience_s is not None and patience_s > 0 else "erlang_c"
    load = rate * aht
    if load <= 0:
        return Need(0, Service(0, 0.0, 1.0, 0.0, 0.0), use)
    # Erlang C's need bounds Erlang A's from above (giving up only shortens the queue): search down from it.
    n = max(1, math.ceil(load / max_occupancy - 1e-9), math.floor(load) + 1)
    while n <= MAX_AGENTS:
        s = service_c(n, rate, aht, threshold_s)
        if s.service_level >= target and s.occupancy <= max_occupancy + 1e-12:
            break
        n += 1
    else:
        return Need(MAX_AGENTS, service_c(MAX_AGENTS, rate, aht, threshold_s), "erlang_c", capped=True)
    if use == "erlang_c":
        return Need(n, s, use)
    assert patience_s is not None
    best = service_a(n, rate, aht, threshold_s, patience_s)
    while n > 1:
        lower = service_a(n - 1, rate, aht, threshold_s, patience_s)
        if lower.service_level < target or lower.occupancy > max_occupancy + 1e-12:
            break
        n, best = n - 1, lower
    return Need(n, best, use)


def scheduled_agents(required: int, shrinkage: float) -> int:
    """Agents to schedule so that ``required`` are on the phones: ceil(required / (1 - shrinkage))."""
    if not 0 <= shrinkage < 1:
        raise ValueError("shrinkage must be in [0, 1)")
    return math.ceil(required / (1 - shrinkage) - 1e-9)
