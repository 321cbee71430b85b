"""The OpenAPI document against the real application's router: same operations, valid OpenAPI 3.1."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from ivr.core.config import Settings
from ivr.cti.app import init_app
from ivr.cti.openapi import PAGES, api_routes, build, statuses
from ivr.cti.operations import OPERATIONS


@pytest.fixture(scope="module")
def app() -> web.Application:
    return init_app(Settings())


@pytest.fixture(scope="module")
def doc(app: web.Application) -> dict[str, Any]:
    return build(app)


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


def test_the_document_has_exactly_the_routes_of_the_router(app: web.Application, doc: dict[str, Any]) -> None:
    routes = set(api_routes(app))
    assert documented(doc) == routes, (
        f"routes without an entry in ivr.cti.operations.OPERATIONS: {sorted(routes - documented(doc))}")
    assert len(routes) >= 20


def test_every_documented_operation_is_a_real_route(app: web.Application) -> None:
    stale = set(OPERATIONS) - set(api_routes(app))
    assert not stale, f"OPERATIONS entries without a route (renamed or removed?): {sorted(stale)}"


def test_only_pages_static_files_and_head_twins_are_left_out(app: web.Application) -> None:
    left_out = {(r.method, r.resource.canonical if r.resource else "") for r in app.router.routes()} - set(
        api_routes(app))
    for method, path in left_out:
        assert method == "HEAD" or path in PAGES, (method, path)
    assert ("GET", "/") in left_out


async def nothing(request: web.Request) -> web.Response:
    return web.Response()


def test_a_route_without_metadata_is_missing_from_the_document() -> None:
    extra = init_app(Settings())
    extra.router.add_get("/api/v1/undocumented", nothing)
    assert ("GET", "/api/v1/undocumented") in set(api_routes(extra))
    assert ("GET", "/api/v1/undocumented") not in documented(build(extra))


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_operation_says_who_may_call_it_and_every_status(doc: dict[str, Any]) -> None:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            meta = OPERATIONS[(method.upper(), path)]
            codes = set(op["responses"])
            assert codes == {str(s) for s in statuses(meta)}
            if meta.roles is None:
                assert op["security"] == [] and "401" not in codes and op["description"].startswith("Public")
                continue
            assert op["security"] == [{"bearer": []}] and "401" in codes
            assert op["description"].startswith("Roles: "), (method, path)
            for code in codes - {"101", "200", "201", "202", "204"}:
                assert op["responses"][code]["content"]["application/json"]["schema"] in (
                    {"$ref": "#/components/schemas/Error"}, {"$ref": "#/components/schemas/Ready"})
            if "requestBody" in op:
                assert {"400", "413"} <= codes


def test_request_bodies_are_the_models_json_schema(doc: dict[str, Any]) -> None:
    body = doc["paths"]["/api/v1/agents"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/AgentCreate"}
    create = doc["components"]["schemas"]["AgentCreate"]
    assert set(create["required"]) == {"id", "name"} and create["additionalProperties"] is False
    state = doc["paths"]["/api/v1/agents/{agent_id}/state"]["post"]
    assert state["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/StateChange"}
    assert "409" in state["responses"]
    for name in ("AgentUpdate", "Disposition", "Rollback", "AgentState"):
        assert name in doc["components"]["schemas"]


def test_websockets_are_gets_answering_101(doc: dict[str, Any]) -> None:
    for path in ("/api/v1/agents/{agent_id}/events", "/api/v1/events"):
        op = doc["paths"][path]["get"]
        assert "101" in op["responses"] and "200" not in op["responses"]
        assert "WebSocket" in op["responses"]["101"]["description"]
        assert any(p["name"] == "last_event_id" and p["in"] == "query" for p in op["parameters"])


def test_query_parameters_are_documented(doc: dict[str, Any]) -> None:
    def params(path: str) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in doc["paths"][path]["get"].get("parameters", [])}

    assert params("/api/v1/voicemail")["mailbox"]["required"] is True
    assert params("/api/v1/voicemail")["limit"]["schema"]["maximum"] == 500
    assert "since" in params("/api/v1/queues") and "since" in params("/api/v1/queues/{queue}/stats")
    assert params("/api/v1/callbacks")["queue"]["required"] is True
    assert params("/api/v1/agents/{agent_id}")["agent_id"]["in"] == "path"


def test_the_disposition_codes_are_the_configured_ones() -> None:
    app = init_app(Settings(api={"dispositions": ["sold", "lost"]}))
    schema = build(app)["components"]["schemas"]["Disposition"]
    assert schema["properties"]["disposition"]["enum"] == ["sold", "lost"]


def test_skills_and_languages_carry_their_constraints(doc: dict[str, Any]) -> None:
    create = doc["components"]["schemas"]["AgentCreate"]["properties"]
    assert create["skills"]["additionalProperties"] is False and create["skills"]["maxProperties"] == 64
    [(pattern, level)] = create["skills"]["patternProperties"].items()
    assert pattern == r"^[A-Za-z0-9_.-]{1,64}$" and (level["minimum"], level["maximum"]) == (1, 5)
    assert create["languages"]["items"]["pattern"].startswith("^[a-z]{2,3}")
