"""Rules of the architecture that import contracts cannot see (those are in pyproject.toml and run
as `lint-imports`): who may talk to the SIP engine, and who may talk to Redis."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _offenders(skip: str, patterns: list[str], allow: frozenset[str] = frozenset()) -> list[str]:
    out = []
    for path in sorted((ROOT / "ivr").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if path.parent.name == skip or rel in allow:
            continue
        text = path.read_text()
        for pattern in patterns:
            out += [f"{rel}:{text[:m.start()].count(chr(10)) + 1}: {m.group(0)}" for m in re.finditer(pattern, text)]
    return out


def test_only_legs_command_the_sip_engine() -> None:
    """Outside ivr/sip nothing names the engine or sends raw commands to the SIP thread: calls are
    controlled through Leg (and the endpoint's few methods on SipThread); leg arithmetic is the
    leg budget's (ivr/core/leg_budget.py)."""
    assert not _offenders("sip", [r"\bSipEngine\b", r"\bsip\.call\(", r"\.max_legs\s*//"])


def test_only_the_state_layer_talks_to_redis_for_data() -> None:
    """Outside ivr/queues no module sends commands to Redis (the state layer has a method for each
    thing the others need); the supervisor manages the redis-server process, not its data."""
    assert not _offenders("queues", [r"\bstore\.redis\.", r"\bredis\.(get|set|hget|hset|hgetall|sismember|smembers|"
                                     r"exists|delete|ping|pipeline|xadd|xread|blpop|rpush|lpush|eval|expire)\("])
