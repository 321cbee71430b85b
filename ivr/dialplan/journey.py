"""The call journey: what the caller did, as the agent and the CRM will see it.

``to_dict()`` goes into the screen-pop and the call record; its shape only ever grows (new optional
keys), keys are never renamed. A step lists only the fields that are set:

* ``node``, ``type``, ``at`` (epoch seconds): always.
* ``digit``: keys pressed (``collect`` stores them masked but the last two, e.g. ``****34``).
* ``phrase``, ``confidence``, ``agreement``: a speech answer (``agreement``: the share of the
  recogniser's decodes that agreed on it; 1.0 when one decode ran).
* ``outcome``: what came of the node; per type see :mod:`ivr.dialplan.engine`.
* ``attempt``: 1-based attempt of a node that asks (menu, collect, survey).
* ``goto``: the node chosen when ``outcome`` is not itself a node name (a confirmed speech answer).
* ``detail``: a non-sensitive detail (queue name, lookup host, survey score, mailbox, ...).

``data`` is the call's variable dict (the engine keeps it up to date); variables named in
``sensitive`` (a ``collect`` with ``sensitive: true``) are shown as ``****``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Step:
    node: str
    type: str
    at: float
    digit: str | None = None
    phrase: str | None = None
    confidence: float | None = None
    agreement: float | None = None
    outcome: str | None = None
    attempt: int | None = None
    goto: str | None = None
    detail: str | None = None


@dataclass
class Journey:
    plan: str
    plan_version: str
    language: str
    steps: list[Step] = field(default_factory=list)
    data: dict[str, str] = field(default_factory=dict)
    sensitive: set[str] = field(default_factory=set)

    def step(self, node: str, type_: str, **kw: Any) -> Step:
        s = Step(node=node, type=type_, at=round(time.time(), 3), **kw)
        self.steps.append(s)
        return s

    def path(self) -> list[str]:
        """The nodes visited, in order, each once per visit (consecutive attempts count once)."""
        out: list[str] = []
        for s in self.steps:
            if not out or out[-1] != s.node or s.attempt in (None, 1):
                out.append(s.node)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "plan_version": self.plan_version,
            "language": self.language,
            # read field by field: dataclasses.asdict deep-copies every value (a call's end paid for it)
            "steps": [{k: v for k in STEP_FIELDS if (v := getattr(s, k)) is not None} for s in self.steps],
            "data": {k: "****" if k in self.sensitive else v for k, v in self.data.items()},
        }


STEP_FIELDS = tuple(f.name for f in fields(Step))

#: Entries shorter than this are masked whole; longer ones keep their last two digits.
SHOW_TAIL_FROM = 8


def mask_digits(digits: str) -> str:
    """Digits as journeys and logs may show them: all masked, entries of :data:`SHOW_TAIL_FROM` or more
    digits keep the last two (``12345678`` -> ``******78``; ``1234`` -> ``****``). The one rule of the
    engine (journey) and the call runtime (logs)."""
    if len(digits) >= SHOW_TAIL_FROM:
        return "*" * (len(digits) - 2) + digits[-2:]
    return "*" * len(digits)
