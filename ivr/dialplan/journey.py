"""The call journey: what the caller did, as the agent and the CRM will see it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Step:
    node: str
    type: str
    at: float
    digit: str | None = None
    phrase: str | None = None
    confidence: float | None = None
    outcome: str | None = None


@dataclass
class Journey:
    plan: str
    plan_version: str
    language: str
    steps: list[Step] = field(default_factory=list)
    data: dict[str, str] = field(default_factory=dict)

    def step(self, node: str, type_: str, **kw: Any) -> Step:
        s = Step(node=node, type=type_, at=round(time.time(), 3), **kw)
        self.steps.append(s)
        return s

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "plan_version": self.plan_version,
            "language": self.language,
            "steps": [{k: v for k, v in asdict(s).items() if v is not None} for s in self.steps],
            "data": dict(self.data),
        }
