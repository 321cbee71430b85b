"""Skill-based routing: who may take a waiting caller, which agent is chosen, and how that widens.

**Targets.** A queue is a routing target configured in ``routing.queues`` (:class:`QueueSettings`):
required skills (all of them), a minimum proficiency (agents have skills with proficiency 1-5), whether
the agent must speak the call's language, a strategy, what to do when no agent is logged in, and
escalation steps. A queue that is not configured routes to agents with the skill named like the
queue, any proficiency, any language, longest idle first (so plans that name a queue only keep
working). The dial plan's queue node may name the skills, the language and a minimum proficiency;
what it names wins over the queue's settings (:func:`resolve_route`).

**What Redis holds** (the scripts in ``lua/lib/routing.lua``; key names in :mod:`ivr.queues.keys`):

* a waiting caller's current requirement, on its call hash (``route``): the language ('' = any), the
  strategy, and one or more *alternatives*, each a set of skills and a minimum proficiency; an
  agent may take the caller when it meets one alternative (escalation adds alternatives);
* the caller waits in its queue's ZSET (``Keys.waiting``: positions and estimates) and in one
  *route* ZSET per alternative (``Keys.route_waiting``: callers needing exactly those skills, that
  proficiency and that language), all scored ``(9 - priority) * 1e13 + queued_at ms``: higher
  priority first, then first come first served. Each route that has callers is listed under its
  first skill, scored by its head caller (``Keys.skill_routes``);
* available agents per skill: by the time they became available (``Keys.idle``), per proficiency
  level too (``Keys.idle_level``), and by id (``Keys.ready``, for round robin).

**Matching.** Every decision is one Lua script, so one caller is never offered to two agents nor
two callers to one agent; only ``available`` agents are in the indexes (never wrap-up, break,
reserved, on a call or offline).

* When an agent becomes available it takes the best waiting caller it qualifies for (priority, then
  wait): per skill of the agent, the routes listed under it are walked best head first, stopping at
  the first route whose requirement the agent meets (or once heads are worse than the best found).
* When a caller is queued (or escalated, or its offer failed) it goes to an available agent meeting
  one of its alternatives, chosen by the strategy:

  - ``longest_idle``: the agent available the longest (per alternative, the rarest skill's
    proficiency-level sets from the minimum up are scanned for the first agent that also has the
    other skills and the language);
  - ``best_proficiency``: the highest proficiency in the alternative's *first* skill, ties to the
    longest idle;
  - ``round_robin``: the next available qualifying agent by id after the last one this queue got
    (a rotating pointer per queue, ``Keys.round_robin``).

  Scans stop at the first qualifying agent of a set; they go further only past agents that lack
  another required skill or the language.

**Escalation** (``escalation`` steps): after ``after_s`` seconds in the queue a step lowers the
minimum proficiency (never raises it), adds skills whose agents are accepted too (each one an
alternative at the current minimum), or moves the caller to another queue (its skills, proficiency
and strategy; the caller keeps its priority and time, so its place). The stages are computed here
when the caller is queued; the housekeeping script (run by the worker holding the lease about every
half second) applies the due ones, records ``stage`` on the call hash, emits ``call.escalated`` and
tries to match the caller at once.

**No agents.** With ``no_agents: fallback`` a caller for whom no agent meeting any alternative is
logged in (any state but offline) is not queued: :meth:`QueueStore.enqueue` raises
``queue.no_agents`` and the worker goes to the queue node's ``on_timeout`` at once (``call.left_queue``
with reason ``no_agents``). Only checked when the caller is queued; a node without ``on_timeout``
always waits.

**Priority** is 0-9 (higher first): the node's ``priority`` (a number or a template such as
``{crm.priority}`` for VIPs) and its complaint ``tier`` (``urgent`` 9, ``important`` 5, ``normal``
0), the higher of the two.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ivr.core.config import ROUTING_NAME, QueueSettings, Strategy
from ivr.core.errors import BadRequest

NoAgents = Literal["queue", "fallback"]
_NAME = re.compile(ROUTING_NAME)


@dataclass(frozen=True)
class Requirement:
    """One way to qualify: every skill in ``skills`` at ``min_proficiency`` or better."""

    skills: tuple[str, ...]
    min_proficiency: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"skills": list(self.skills), "m": self.min_proficiency}


@dataclass(frozen=True)
class Stage:
    """What the requirement becomes ``after_s`` seconds after the caller was queued."""

    after_s: float
    alternatives: tuple[Requirement, ...]
    queue: str | None = None  # moved to another queue
    strategy: Strategy | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"after_s": self.after_s, "alts": [a.to_json() for a in self.alternatives]}
        if self.queue is not None:
            d["queue"] = self.queue
        if self.strategy is not None:
            d["strategy"] = self.strategy
        return d


@dataclass(frozen=True)
class Route:
    """Who may take a caller and how the agent is chosen; what :meth:`QueueStore.enqueue` stores."""

    alternatives: tuple[Requirement, ...]
    language: str = ""  # '' = any language
    strategy: Strategy = "longest_idle"
    no_agents: NoAgents = "queue"
    stages: tuple[Stage, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.alternatives or any(not a.skills for a in self.alternatives):
            raise BadRequest("a route needs at least one skill", code="queue.invalid")
        for a in (*self.alternatives, *(x for s in self.stages for x in s.alternatives)):
            for skill in a.skills:
                if not _NAME.match(skill):
                    raise BadRequest(f"bad skill name {skill!r}", code="queue.invalid")
            if not 1 <= a.min_proficiency <= 5:
                raise BadRequest("proficiency is 1..5", code="queue.invalid")

    @classmethod
    def skill(cls, skill: str) -> Route:
        """The route of a queue with no settings: agents with ``skill``, longest idle first."""
        return cls((Requirement((skill,)),))

    @property
    def primary_skill(self) -> str:
        return self.alternatives[0].skills[0]

    def to_json(self) -> str:
        return json.dumps({"lang": self.language, "strategy": self.strategy, "no_agents": self.no_agents,
                           "alts": [a.to_json() for a in self.alternatives]})

    def stages_json(self) -> str:
        return json.dumps([s.to_json() for s in self.stages])


def resolve_route(queues: Mapping[str, QueueSettings], queue: str, *, skills: Sequence[str] = (),
                  language: str = "", language_required: bool | None = None,
                  min_proficiency: int | None = None, can_fall_back: bool = False) -> Route:
    """The route of a caller queued in ``queue`` from the queue's settings and the dial plan's node.

    ``skills`` and ``min_proficiency``, when given, replace the queue's; the call's ``language`` is
    required when ``language_required`` is True (the plan named it) or, when it is None, when the
    queue's settings say so. ``can_fall_back``: the plan has somewhere to go when the queue gives up
    (``on_timeout``); without it ``no_agents: fallback`` waits anyway."""
    qs = queues.get(queue) or QueueSettings()
    m = min_proficiency or qs.min_proficiency
    first = Requirement(tuple(skills) or tuple(qs.skills) or (queue,), m)
    required = qs.language_required if language_required is None else language_required
    alts: tuple[Requirement, ...] = (first,)
    stages: list[Stage] = []
    for step in qs.escalation:
        moved: str | None = None
        new_strategy: Strategy | None = None
        if step.move_to is not None:
            target = queues.get(step.move_to) or QueueSettings()
            moved, new_strategy = step.move_to, target.strategy
            m = target.min_proficiency
            alts = (Requirement(tuple(target.skills) or (step.move_to,), m),)
        if step.min_proficiency is not None and step.min_proficiency < m:
            m = step.min_proficiency
            alts = tuple(Requirement(a.skills, m) for a in alts)
        for skill in step.add_skills:
            alts = (*alts, Requirement((skill,), m))
        alts = tuple(dict.fromkeys(alts))  # no duplicates, order kept
        stages.append(Stage(step.after_s, alts, moved, new_strategy))
    return Route((first,), language if required else "", qs.strategy,
                 qs.no_agents if can_fall_back else "queue", tuple(stages))
