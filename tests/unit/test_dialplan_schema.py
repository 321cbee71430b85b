"""The exported JSON Schema: draft 2020-12, every node type, and it accepts the shipped plans.

The schema is checked with the ``jsonschema`` package when the environment has it; otherwise with
the small validator below, which knows every keyword pydantic emits and refuses any other one (so a
schema it cannot judge fails instead of passing unchecked).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ivr.dialplan.loader import SCHEMA_ID, json_data, plan_schema
from ivr.dialplan.model import NODE_TYPES

ROOT = Path(__file__).resolve().parents[2]
PLANS = [ROOT / "dialplans" / "hotline.yaml", *sorted((ROOT / "dialplans" / "examples").glob("*.yaml"))]
ANNOTATIONS = {"title", "description", "default", "format", "discriminator", "examples", "$schema", "$id",
               "$defs", "deprecated", "readOnly"}
OBJECT_KEYWORDS = {"properties", "patternProperties", "additionalProperties", "required"}
TYPES: dict[str, Any] = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _errors(schema: dict[str, Any], value: Any, root: dict[str, Any], where: str = "$") -> list[str]:
    unknown = set(schema) - ANNOTATIONS - set(_KEYWORDS)
    assert not unknown, f"validator does not know {unknown} at {where}"
    out: list[str] = []
    for key, check in _KEYWORDS.items():
        if key in schema:
            out += check(schema, value, root, where)
    if OBJECT_KEYWORDS & set(schema):
        out += _props(schema, value, root, where)
    return out


def _type(s: dict[str, Any], v: Any, root: dict[str, Any], w: str) -> list[str]:
    t = s["type"]
    if t == "integer":
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif t == "number":
        ok = isinstance(v, int | float) and not isinstance(v, bool)
    else:
        ok = isinstance(v, TYPES[t]) and not (t != "boolean" and isinstance(v, bool))
    return [] if ok else [f"{w}: not {t}: {v!r}"]


def _ref(s: dict[str, Any], v: Any, root: dict[str, Any], w: str) -> list[str]:
    assert s["$ref"].startswith("#/$defs/")
    return _errors(root["$defs"][s["$ref"].removeprefix("#/$defs/")], v, root, w)


def _any_of(s: dict[str, Any], v: Any, root: dict[str, Any], w: str) -> list[str]:
    results = [_errors(sub, v, root, w) for sub in s["anyOf"]]
    return [] if any(not r for r in results) else [f"{w}: no anyOf matches: {results}"]


def _one_of(s: dict[str, Any], v: Any, root: dict[str, Any], w: str) -> list[str]:
    good = sum(not _errors(sub, v, root, w) for sub in s["oneOf"])
    return [] if good == 1 else [f"{w}: {good} oneOf members match"]


def _props(s: dict[str, Any], v: Any, root: dict[str, Any], w: str) -> list[str]:
    if not isinstance(v, dict):
        return []
    out = [f"{w}: missing {k}" for k in s.get("required", []) if k not in v]
    for k, item in v.items():
        if k in s.get("properties", {}):
            out += _errors(s["properties"][k], item, root, f"{w}.{k}")
            continue
        pats = [p for p in s.get("patternProperties", {}) if re.search(p, k)]
        for p in pats:
            out += _errors(s["patternProperties"][p], item, root, f"{w}.{k}")
        if not pats:
            extra = s.get("additionalProperties", True)
            if extra is False:
                out.append(f"{w}: unknown property {k}")
            elif isinstance(extra, dict):
                out += _errors(extra, item, root, f"{w}.{k}")
    return out


def _items(s: dict[str, Any], v: Any, root: dict[str, Any], w: str) -> list[str]:
    return [e for i, item in enumerate(v) for e in _errors(s["items"], item, root, f"{w}[{i}]")] \
        if isinstance(v, list) else []


def _bound(key: str, test: Any) -> Any:
    def check(s: dict[str, Any], v: Any, root: dict[str, Any], w: str) -> list[str]:
        if isinstance(v, bool) or not isinstance(v, int | float | str | list | dict):
            return []
        size = v if isinstance(v, int | float) else len(v)
        kind = {"minLength": str, "maxLength": str, "minItems": list, "maxItems": list,
                "minProperties": dict, "maxProperties": dict}.get(key, int | float)
        if not isinstance(v, kind):
            return []
        return [] if test(size, s[key]) else [f"{w}: {key} {s[key]} fails for {v!r}"]
    return check


_KEYWORDS: dict[str, Any] = {
    "type": _type, "$ref": _ref, "anyOf": _any_of, "oneOf": _one_of,
    **{key: lambda s, v, r, w: [] for key in OBJECT_KEYWORDS},  # all checked by _props together
    "items": _items,
    "const": lambda s, v, r, w: [] if v == s["const"] else [f"{w}: not {s['const']!r}"],
    "enum": lambda s, v, r, w: [] if v in s["enum"] else [f"{w}: {v!r} not in {s['enum']}"],
    "pattern": lambda s, v, r, w: [] if not isinstance(v, str) or re.search(s["pattern"], v)
    else [f"{w}: {v!r} !~ {s['pattern']}"],
    "minimum": _bound("minimum", lambda a, b: a >= b), "maximum": _bound("maximum", lambda a, b: a <= b),
    "exclusiveMinimum": _bound("exclusiveMinimum", lambda a, b: a > b),
    "exclusiveMaximum": _bound("exclusiveMaximum", lambda a, b: a < b),
    "minLength": _bound("minLength", lambda a, b: a >= b), "maxLength": _bound("maxLength", lambda a, b: a <= b),
    "minItems": _bound("minItems", lambda a, b: a >= b), "maxItems": _bound("maxItems", lambda a, b: a <= b),
    "minProperties": _bound("minProperties", lambda a, b: a >= b),
    "propertyNames": lambda s, v, r, w: [e for k in (v if isinstance(v, dict) else {})
                                         for e in _errors(s["propertyNames"], k, r, f"{w}.{k}")],
}


def validation_errors(schema: dict[str, Any], data: Any) -> list[str]:
    if importlib.util.find_spec("jsonschema") is not None:
        import jsonschema

        return [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(data)]
    return _errors(schema, data, schema)


def test_schema_header_and_every_node_type() -> None:
    schema = plan_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID and schema["title"] == "IVR dial plan"
    nodes = schema["properties"]["nodes"]
    (node_schema,) = nodes["patternProperties"].values()
    mapping = node_schema["discriminator"]["mapping"]
    assert set(mapping) == set(NODE_TYPES)
    for tag, ref in mapping.items():
        definition = schema["$defs"][ref.removeprefix("#/$defs/")]
        assert definition["properties"]["type"]["const"] == tag
        assert definition["additionalProperties"] is False
    assert nodes["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "numbers", "start", "nodes"}
    json.dumps(schema)  # plain JSON


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.name)
def test_schema_accepts_the_shipped_plans(path: Path) -> None:
    assert validation_errors(plan_schema(), json_data(path)) == []


def test_schema_refuses_broken_plans() -> None:
    schema = plan_schema()
    good = json_data(PLANS[0])
    assert validation_errors(schema, good) == []
    cases = [
        {**good, "colour": "red"},
        {**good, "nodes": {**good["nodes"], "bad name!": {"type": "hangup"}}},
        {**good, "nodes": {**good["nodes"], "x": {"type": "teleport"}}},
        {**good, "nodes": {**good["nodes"], "x": {"type": "play", "prompt": "hi", "colour": 1}}},
        {**good, "nodes": {**good["nodes"], "x": {"type": "menu", "prompt": "hi", "options": []}}},
        {**good, "numbers": "1000"},
        {k: v for k, v in good.items() if k != "start"},
    ]
    for case in cases:
        assert validation_errors(schema, case), case
    # a plain string is a text prompt, as the loader accepts it
    assert validation_errors(schema, {**good, "nodes": {**good["nodes"], "x": {"type": "play", "prompt": "hi"}}}) == []


def test_cli_writes_the_schema(tmp_path: Path) -> None:
    out = tmp_path / "dialplan.schema.json"
    done = subprocess.run([sys.executable, "-m", "ivr.cli", "dialplan", "schema", "-o", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == plan_schema()
