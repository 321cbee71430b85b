"""Load and validate dial-plan files; map dialed numbers to plans."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from ivr.core.errors import DialplanError
from ivr.dialplan.model import Plan


@dataclass(frozen=True)
class LoadedPlan:
    plan: Plan
    path: Path
    version: str  # content hash: every call records the exact version it ran on


def load_plan(path: Path) -> LoadedPlan:
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise DialplanError(f"{where}: {getattr(exc, 'problem', exc)}", code="dialplan.yaml") from exc
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise DialplanError(f"{path}: {msgs}", code="dialplan.invalid") from exc
    return LoadedPlan(plan, path, hashlib.sha256(raw).hexdigest()[:12])


class PlanRegistry:
    """All plans of a directory, by dialed number."""

    def __init__(self, plans: list[LoadedPlan]) -> None:
        self.by_number: dict[str, LoadedPlan] = {}
        for lp in plans:
            for number in lp.plan.numbers:
                if number in self.by_number:
                    other = self.by_number[number].path
                    raise DialplanError(f"{lp.path}: number {number} is also used by {other}",
                                        code="dialplan.duplicate_number")
                self.by_number[number] = lp
        self.plans = plans

    @classmethod
    def from_dir(cls, directory: Path) -> PlanRegistry:
        files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
        if not files:
            raise DialplanError(f"no dial plans in {directory}", code="dialplan.none")
        return cls([load_plan(f) for f in files])

    def for_number(self, dnis: str) -> LoadedPlan | None:
        return self.by_number.get(dnis) or self.by_number.get("*")
