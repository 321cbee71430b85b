"""The CTI API against its own OpenAPI document, fuzzed by schemathesis: the real app on a real Redis.

With the token of each role, generated requests (valid and invalid) must never get a 500, and every
reply's status, content type and JSON must be what the document says. Without a token (or with a
generated wrong one), every operation but the public ones answers 401 with the Bearer challenge.
``EXAMPLES`` requests per operation and mode (fixed seed), ``EXAMPLES_401`` without a token: most of
the time goes into generating the requests (a profile: 60 % in hypothesis drawing from the schemas),
about 35 s of CPU per role at 4 examples (the suite must stay under 20 min).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from redis.asyncio import Redis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from ivr.core.config import DEMO_USERS, Settings
from ivr.core.events import AgentState
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer, free_port
from tests.live_api import live_api

PREFIX = "conf"
TOKENS = {"admin": "admin-demo-token", "supervisor": "super1-demo-token", "agent": "agent1-demo-token"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection, positive_data_acceptance]
EXAMPLES = 4
#: a request without a token is refused before anything reads it: two of each mode show that
EXAMPLES_401 = 2
#: the records seed() makes: parameters with these names point at them in a pass of their own
SEEDED = {"agent_id": "agent1", "call_id": "c1", "queue": "billing", "case_id": "CS1"}
PUBLIC = {"/healthz", "/readyz", "/api/openapi.json"}


async def seed(url: str) -> None:
    """A queue with a caller waiting, a call answered by agent1 and agent1's complaint case CS1, so the
    listings are not empty."""
    redis = Redis.from_url(url)
    try:
        await redis.flushdb()
        store = QueueStore(redis, prefix=PREFIX)
        await store.register_agent("agent1", name="A1", skills={"billing": 3}, sip_uri=None, languages=["en"])
        for cid in ("c1", "c2"):
            await store.call_start(cid, "w0", ani="+15550001", dnis="1000", hotline="demo", language="en",
                                   plan_version="v1")
        await store.set_agent_state("agent1", AgentState.AVAILABLE)
        offer = await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={"steps": []})
        assert offer is not None
        await store.offer_answered("c1", offer.offer_id)
        await store.enqueue("c2", queue="billing", skill="billing", priority=0, journey={"steps": []})
        case = await store.open_case(tier="normal", reason="seeded", customer="+15550001", opened_by="super1",
                                     owner="agent1", call_id="c1", due_at_ms=int(time.time() * 1000) + 3_600_000)
        assert case["id"] == SEEDED["case_id"]
    finally:
        await redis.aclose()


@pytest.fixture(scope="module")
def api_url(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    asyncio.run(seed(redis_server.url))
    var: Path = tmp_path_factory.mktemp("conformance")
    s = Settings(users=DEMO_USERS, var_dir=var / "var", dialplans_dir=var / "dialplans",
                 redis={"url": redis_server.url, "prefix": PREFIX}, api={"host": "127.0.0.1", "port": free_port()})
    with live_api(s) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(api_url: str) -> Any:
    schema = schemathesis.openapi.from_url(f"{api_url}/api/openapi.json")
    schema.config.update(base_url=api_url)
    # unknown query parameters are ignored, as most HTTP APIs do (unknown body fields are refused:
    # test_api_errors.py)
    schema.config.generation.update(allow_x00=False, allow_extra_parameters=False)
    return schema


def seeded(operation: Any) -> dict[str, dict[str, str]]:
    """Overrides that point the operation's parameters at the seeded records (none: nothing to point)."""
    out: dict[str, dict[str, str]] = {}
    for param in operation.definition.raw.get("parameters", []):
        if param["name"] in SEEDED and param["in"] in ("path", "query"):
            out.setdefault("path_parameters" if param["in"] == "path" else "query", {})[param["name"]] = \
                SEEDED[param["name"]]
    return out


Validate = Callable[[Any], Any]


def excused(operation: Any, check: Any) -> bool:
    """Readiness answers 503 while no worker runs (none does here): an answer, not a server error.
    A WebSocket route answers a valid plain GET 400: the handshake headers are not in the document."""
    if operation.path == "/readyz":
        return check is not_a_server_error or check is positive_data_acceptance
    if operation.path == "/api/v1/calls" and operation.method.upper() == "POST":
        # click-to-dial: which schema-valid numbers may be dialled is configuration (calls.outbound_allow,
        # empty here: 403 number.not_allowed), and staff must name the agent (400 request.invalid)
        return check is positive_data_acceptance
    if operation.path == "/api/v1/cases/{case_id}" and operation.method.upper() == "PATCH":
        # a close's follow-up: which plans a follow-up call may play is configuration (the dial plans;
        # none here: 400 case.follow_up_plan), and follow_up goes with status closed (400 request.invalid)
        return check is positive_data_acceptance
    if operation.path.startswith(("/api/v1/campaigns", "/api/v1/dnc/upload")) and \
            operation.method.upper() in ("POST", "PATCH"):
        # campaigns: the plan must be a file of the plans folder, a window's zones and days those of the
        # tz database, and an uploaded list's rows are checked one by one (400 campaign.invalid, campaign.csv)
        body = operation.definition.raw.get("requestBody", {}).get("content", {})
        # a CSV body is text: a "number" schemathesis sends instead is a text too, and may be a list
        return check is positive_data_acceptance or (check is negative_data_rejection and "text/csv" in body)
    return check is positive_data_acceptance and "101" in operation.definition.raw["responses"]


#: the lists' cursors: opaque, only the server makes valid ones (tests/service/test_call_list.py,
#: test_cases_api.py)
CURSOR = re.compile(r"[A-Za-z0-9_-]{1,400}")


def without_made_up_cursor(case: Any) -> None:
    """A generated cursor of the documented shape is still not one the server made, so it is
    refused (400): leave it out. A malformed one stays (negative data, refused as it should be)."""
    query = case.query if isinstance(case.query, dict) else None
    if (case.operation.path in ("/api/v1/calls", "/api/v1/cases", "/api/v1/recordings", "/api/v1/transcripts",
                                "/api/v1/alerts/history")
            and query and CURSOR.fullmatch(str(query.get("cursor", "")))):
        del query["cursor"]


def conforms(headers: dict[str, str], checks: list[Any]) -> Validate:
    """Send the case with ``headers`` and run the schemathesis ``checks`` on the reply."""
    def validate(case: Any) -> Any:
        without_made_up_cursor(case)
        return case.call_and_validate(headers=headers, checks=checks, timeout=10)
    return validate


def refused_without_token(case: Any) -> Any:
    """Send the case without a token: 401 with a stable code and the Bearer challenge."""
    response = case.call(headers={"Authorization": None}, timeout=10)
    assert response.status_code == 401, (response.status_code, response.text)
    assert response.json()["error"]["code"] in ("auth.missing_token", "auth.invalid_token")
    assert response.headers.get("www-authenticate") == ["Bearer"]
    return response


def fuzz(operation: Any, mode: GenerationMode, validate: Validate, seen: set[tuple[str, int]],
         overrides: dict[str, dict[str, str]] | None = None, examples: int = EXAMPLES) -> str | None:
    """Run ``examples`` generated requests of one operation through ``validate``; the first problem
    found, if any. Adds the (operation, status) pairs it got to ``seen``."""

    @given(case=operation.as_strategy(generation_mode=mode, **(overrides or {})))
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        seen.add((operation.label, validate(case).status_code))

    try:
        run()
    except Unsatisfiable:  # nothing to negate: no parameters, no body
        assert mode is GenerationMode.NEGATIVE
    except (Exception, BaseExceptionGroup) as exc:
        return f"{mode.value}{' (seeded)' if overrides else ''} {operation.label}: {exc}"
    return None


def operations(schema: Any) -> list[Any]:
    ops = [result.ok() for result in schema.get_all_operations()]
    assert len(ops) >= 20
    return ops


@pytest.mark.parametrize("role", sorted(TOKENS))
def test_every_operation_conforms_to_the_document(api_schema: Any, role: str) -> None:
    headers = {"Authorization": f"Bearer {TOKENS[role]}"}
    problems: list[str | None] = []
    seen: set[tuple[str, int]] = set()
    for operation in operations(api_schema):
        checks = [c for c in CHECKS if not excused(operation, c)]
        validate = conforms(headers, checks)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            problems.append(fuzz(operation, mode, validate, seen))
        if overrides := seeded(operation):
            problems.append(fuzz(operation, GenerationMode.POSITIVE, validate, seen, overrides))
    found = [p for p in problems if p]
    assert not found, "\n\n".join(found)
    answered = {label for label, status in seen if status < 300}
    assert len(answered) >= {"admin": 12, "supervisor": 10, "agent": 4}[role], "\n".join(sorted(answered))


def test_without_a_token_every_operation_but_the_public_ones_is_401(api_schema: Any) -> None:
    problems: list[str | None] = []
    seen: set[tuple[str, int]] = set()
    protected = [op for op in operations(api_schema) if op.path not in PUBLIC]
    for operation in protected:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            problems.append(fuzz(operation, mode, refused_without_token, seen, examples=EXAMPLES_401))
    found = [p for p in problems if p]
    assert not found, "\n\n".join(found)
    assert {label for label, _ in seen} == {op.label for op in protected}
