"""Load and validate dial-plan files; map dialed numbers to plans.

A file is parsed into PyYAML's node tree first, so that every mapping key and value keeps its line
and column: pydantic's errors (``loc`` paths) and the graph checks of :mod:`ivr.dialplan.checks` are
reported as ``file:line:col: message``, all of them at once. Unlike plain ``yaml.safe_load``:

* a key given twice in one mapping is an error (PyYAML would silently keep the last one);
* scalars resolve as in YAML 1.2: ``18:00`` is the text "18:00" (YAML 1.1 makes it the number
  1080, which a time field would take as 00:18), ``yes``/``no``/``on``/``off`` are words (menu
  phrases), only ``true``/``false`` are booleans, and only plain decimals are numbers (``0101234``
  stays a text).
"""

from __future__ import annotations

import hashlib
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from ivr.core.errors import DialplanError
from ivr.dialplan import limits
from ivr.dialplan.model import NODE_TYPES, Plan

DataPath = tuple[str | int, ...]
Severity = Literal["error", "warning"]
SCHEMA_ID = "https://hotline.invalid/schemas/dialplan.schema.json"


@dataclass(frozen=True, order=True)
class Problem:
    """One finding of a check, at a place in a file (line and column are 1-based)."""

    file: str
    line: int
    col: int
    message: str
    code: str = "dialplan.invalid"
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "col": self.col, "code": self.code,
                "severity": self.severity, "message": self.message}


@dataclass(frozen=True)
class Span:
    key: tuple[int, int] | None  # where the mapping key starts (None: list items and the root)
    value: tuple[int, int]       # where the value starts
    collection: bool             # the value is a mapping or a list


class Positions:
    """Line and column of every key and value of a YAML document, by data path."""

    def __init__(self, spans: dict[DataPath, Span] | None = None) -> None:
        self.spans = spans or {}

    def __contains__(self, path: DataPath) -> bool:
        return tuple(path) in self.spans

    def at(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        """Where ``path`` is; for a path that is not in the file, where its closest parent is.

        A mapping or list is shown at its key (``welcome:``), a scalar at its value; ``key=True``
        always prefers the key.
        """
        p = tuple(path)
        while p and p not in self.spans:
            p = p[:-1]
        span = self.spans.get(p)
        if span is None:
            return (1, 1)
        exact = p == tuple(path)
        if span.key is not None and (key or span.collection or not exact):
            return span.key
        return span.value


# --- YAML ----------------------------------------------------------------------------------------
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema booleans and numbers (see the module docstring), and the
    bounds of :mod:`ivr.dialplan.limits`: aliases, nesting depth, and values a constructor rejects
    (``2026-02-30``, ``!!int abc``) become YAML errors at their place instead of exceptions."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > limits.MAX_ALIASES:
                self._refuse(f"more than {limits.MAX_ALIASES} aliases (*name)")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > limits.MAX_DEPTH:
                self._refuse(f"nested deeper than {limits.MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _refuse(self, why: str) -> None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        raise yaml.composer.ComposerError(None, None, why, event.start_mark)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # PyYAML's constructors fail in many ways on odd values (a bad date, a
            # tagged scalar its regular expression does not match, a number too large to read)
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value: {_short(exc)}",
                                                    node.start_mark) from None


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT, _BOOL)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
                       r"|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))


@dataclass
class ParsedFile:
    path: Path
    raw: bytes
    data: Any = None
    positions: Positions = field(default_factory=Positions)
    problems: list[Problem] = field(default_factory=list)

    @property
    def version(self) -> str:
        return content_version(self.raw)


def content_version(raw: bytes) -> str:
    """A plan's version: the hash of its file's content (every call records the one it ran on)."""
    return hashlib.sha256(raw).hexdigest()[:12]


def _mark(m: yaml.Mark) -> tuple[int, int]:
    return (m.line + 1, m.column + 1)


def read_bounded(path: Path) -> bytes:
    """A file's bytes, reading at most one byte more than :data:`~ivr.dialplan.limits.MAX_FILE_BYTES`
    (so a huge file is never read whole; :func:`parse_file` refuses it)."""
    with path.open("rb") as f:
        return f.read(limits.MAX_FILE_BYTES + 1)


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= limits.MAX_QUOTED else text[:limits.MAX_QUOTED] + "..."


def _not_utf8(file: str, raw: bytes, exc: UnicodeDecodeError) -> Problem:
    at = exc.start
    line, col = raw.count(b"\n", 0, at) + 1, at - (raw.rfind(b"\n", 0, at) + 1) + 1
    return Problem(file, line, col, f"not UTF-8 text: byte 0x{raw[at]:02x} (a plan file is UTF-8)",
                   "dialplan.encoding")


def _yaml_problem(file: str, raw: bytes, exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, col = _mark(mark) if mark is not None else (1, 1)
    if isinstance(exc, yaml.reader.ReaderError):  # control characters: a position in characters
        text = raw.decode("utf-8", "replace")
        at = max(0, min(int(exc.position), len(text)))
        line, col = text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1
        return Problem(file, line, col, f"YAML: character #x{exc.character:04x} is not allowed", "dialplan.yaml")
    problem = getattr(exc, "problem", None) or str(exc)
    return Problem(file, line, col, f"YAML: {_short(problem)}", "dialplan.yaml")


def _expanded_size(root: yaml.Node) -> int | None:
    """How many YAML nodes the document has once its aliases are expanded (capped just above
    :data:`~ivr.dialplan.limits.MAX_EXPANDED_NODES`); None for an alias that contains itself."""
    memo: dict[int, int] = {}
    active: set[int] = set()
    cap = limits.MAX_EXPANDED_NODES + 1

    def size(node: yaml.Node) -> int | None:  # depth is bounded by MAX_DEPTH
        key = id(node)
        if key in memo:
            return memo[key]
        if key in active:
            return None
        active.add(key)
        total = 1
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        for child in children:
            n = size(child)
            if n is None:
                return None
            total = min(cap, total + n)
        active.discard(key)
        memo[key] = total
        return total

    return size(root)


def parse_file(path: Path, raw: bytes | None = None) -> ParsedFile:
    """Read and parse one file: data, positions, and YAML problems (syntax, duplicate keys, the
    bounds of :mod:`ivr.dialplan.limits`). Never raises for any content; ``OSError`` on reading."""
    raw = read_bounded(path) if raw is None else raw
    parsed = ParsedFile(path, raw)
    file = str(path)
    if len(raw) > limits.MAX_FILE_BYTES:
        parsed.problems.append(Problem(file, 1, 1, f"the file is larger than {limits.MAX_FILE_BYTES} bytes: "
                                       "refused", "dialplan.too_large"))
        return parsed
    try:  # UTF-8 only (a BOM allowed): other encodings YAML allows would be read differently elsewhere
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        parsed.problems.append(_not_utf8(file, raw, exc))
        return parsed
    loader: _Loader | None = None
    try:
        loader = _Loader(text.removeprefix("\ufeff"))
        node = loader.get_single_node()
        if node is not None:
            size = _expanded_size(node)
            if size is None:
                raise yaml.composer.ComposerError(None, None, "an alias refers to the block that contains it",
                                                  node.start_mark)
            if size > limits.MAX_EXPANDED_NODES:
                raise yaml.composer.ComposerError(
                    None, None, f"more than {limits.MAX_EXPANDED_NODES} values once aliases are expanded",
                    node.start_mark)
        parsed.data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        parsed.problems.append(_yaml_problem(file, raw, exc))
        return parsed
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        parsed.problems.append(Problem(str(path), 1, 1, "the file is empty: a dial plan needs name, "
                                                        "numbers, start and nodes", "dialplan.yaml"))
        return parsed
    spans: dict[DataPath, Span] = {(): Span(None, _mark(node.start_mark), True)}
    dups: dict[tuple[int, int], Problem] = {}
    _walk(node, (), spans, dups, set(), loader, str(path))
    parsed.positions = Positions(spans)
    parsed.problems.extend(dups.values())
    return parsed


def _walk(node: yaml.Node, path: DataPath, spans: dict[DataPath, Span], dups: dict[tuple[int, int], Problem],
          active: set[int], loader: _Loader, file: str) -> None:
    if id(node) in active:  # a recursive alias
        return
    active.add(id(node))
    try:
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                spans.setdefault((*path, i), Span(None, _mark(item.start_mark), _is_coll(item)))
                _walk(item, (*path, i), spans, dups, active, loader, file)
        elif isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            merges: list[yaml.Node] = []
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    merges.append(value_node)
                    continue
                key = _key(key_node, loader)
                if key in seen:
                    first = _mark(seen[key].start_mark)
                    where = _mark(key_node.start_mark)
                    dups[where] = Problem(file, *where, f"duplicate key {_short(repr(key))} (first at line {first[0]}, "
                                          f"column {first[1]}); YAML keeps only this last one",
                                          "dialplan.duplicate_key")
                    stale = (*path, key)
                    for k in [k for k in spans if k[:len(stale)] == stale]:
                        del spans[k]
                else:
                    seen[key] = key_node
                spans[(*path, key)] = Span(_mark(key_node.start_mark), _mark(value_node.start_mark),
                                           _is_coll(value_node))
                _walk(value_node, (*path, key), spans, dups, active, loader, file)
            for merged in merges:  # `<<: *base` - explicit keys above win
                sources = merged.value if isinstance(merged, yaml.SequenceNode) else [merged]
                for src in sources:
                    sub: dict[DataPath, Span] = {}
                    _walk(src, path, sub, {}, active, loader, file)
                    for k, v in sub.items():
                        spans.setdefault(k, v)
    finally:
        active.discard(id(node))


def _is_coll(node: yaml.Node) -> bool:
    return isinstance(node, yaml.MappingNode | yaml.SequenceNode)


def _key(node: yaml.Node, loader: _Loader) -> Any:
    try:
        key = loader.construct_object(node, deep=True)
        hash(key)
        return key
    except (yaml.YAMLError, TypeError):
        return id(node)


# --- validation ----------------------------------------------------------------------------------
def validate(parsed: ParsedFile) -> Plan | None:
    """Validate parsed data as a :class:`Plan`; schema problems are added to ``parsed.problems``."""
    if parsed.data is None and parsed.problems:
        return None
    try:
        return Plan.model_validate(parsed.data)
    except ValidationError as exc:
        parsed.problems.extend(_schema_problems(str(parsed.path), exc, parsed.data, parsed.positions))
        return None


@dataclass
class _Err:
    path: DataPath   # the part of loc that exists in the data
    loc: tuple[str | int, ...]
    type: str
    msg: str
    input: Any
    missing: str | int | None = None


def _schema_problems(file: str, exc: ValidationError, data: Any, pos: Positions) -> list[Problem]:
    errs: list[_Err] = []
    for e in exc.errors(include_url=False):
        loc = tuple(e["loc"])
        path, missing = _data_path(data, loc)
        errs.append(_Err(path, loc, e["type"], e["msg"], e.get("input"), missing))
    # A union tries every member: drop "wrong type" errors of members the value was clearly not meant
    # for (another member's errors reach deeper into the value).
    errs = [a for a in errs if not (a.type.endswith("_type") and any(
        len(b.path) > len(a.path) and b.path[:len(a.path)] == a.path for b in errs))]
    out: dict[tuple[DataPath, str], tuple[tuple[int, int], list[str]]] = {}
    for err in errs:
        where, text, code = _describe(err, pos)
        entry = out.setdefault((err.path, code), (where, []))
        if text not in entry[1]:
            entry[1].append(text)
    problems = []
    for (path, code), (where, texts) in out.items():
        prefix = ".".join(map(str, path))
        message = "; or ".join(texts) if code == "dialplan.invalid" else "; ".join(texts)
        problems.append(Problem(file, *where, f"{prefix}: {message}" if prefix else message, code))
    return problems


def _data_path(data: Any, loc: tuple[str | int, ...]) -> tuple[DataPath, str | int | None]:
    """The part of a pydantic ``loc`` that names data in the file (union tags are skipped)."""
    path: list[str | int] = []
    cur = data
    missing: str | int | None = None
    for seg in loc:
        if seg == "[key]":
            continue
        if len(path) == 2 and path[0] == "nodes" and isinstance(cur, dict) and seg == cur.get("type") \
                and seg in NODE_TYPES and len(loc) > 2:
            continue  # the node type is the union's tag: a `queue` node's fields are not under `queue:`
        if isinstance(cur, dict) and seg in cur:
            cur = cur[seg]
            path.append(seg)
        elif isinstance(cur, list) and isinstance(seg, int) and 0 <= seg < len(cur):
            cur = cur[seg]
            path.append(seg)
        else:
            missing = seg
    return tuple(path), missing


def _describe(err: _Err, pos: Positions) -> tuple[tuple[int, int], str, str]:
    if err.type == "extra_forbidden":
        name = err.path[-1] if err.path else err.loc[-1]
        model = _model_at(err.loc[:-1])
        valid = f" (valid: {', '.join(_field_names(model))})" if model is not None else ""
        err.path = err.path[:-1]
        text = f"unknown field {_short(repr(name))}{valid}"
        return pos.at((*err.path, name), key=True), text, "dialplan.unknown_field"
    if err.type in ("union_tag_invalid", "union_tag_not_found"):
        valid = ", ".join(sorted(NODE_TYPES))
        if err.type == "union_tag_not_found":
            return pos.at(err.path), f"a node needs a type (valid: {valid})", "dialplan.unknown_type"
        tag = err.input.get("type") if isinstance(err.input, dict) else None
        text = f"unknown node type {_short(repr(tag))} (valid: {valid})"
        return pos.at((*err.path, "type")), text, "dialplan.unknown_type"
    if err.type == "missing":
        return pos.at(err.path), f"missing field {err.missing!r}", "dialplan.missing_field"
    msg = err.msg.removeprefix("Value error, ")
    if "[key]" in err.loc:
        return pos.at(err.path, key=True), f"key: {msg}", "dialplan.invalid"
    return pos.at(err.path), msg, "dialplan.invalid"


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _label(tp: Any) -> str:
    """How pydantic names a union member in ``loc``."""
    tp = _unwrap(tp)
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin is not None and args:
        return f"{getattr(origin, '__name__', origin)}[{','.join(_label(a) for a in args)}]"
    return str(getattr(tp, "__name__", tp))


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    tp: Any = Plan
    for seg in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            found = [f.annotation for name, f in tp.model_fields.items() if seg in (name, f.alias)]
            if not found:
                return None
            tp = found[0]
            continue
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is list:
            tp = args[0]
        elif origin is dict:
            tp = args[0] if seg == "[key]" else args[1]
        elif origin in (typing.Union, types.UnionType):
            match = [a for a in args if (isinstance(seg, str) and NODE_TYPES.get(seg) is a) or _label(a) == seg]
            if not match:
                return None
            tp = match[0]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


# --- loading -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedPlan:
    plan: Plan
    path: Path
    version: str  # content hash: every call records the exact version it ran on
    positions: Positions = field(default_factory=Positions, compare=False, repr=False)


def read_plan(path: Path, raw: bytes | None = None) -> tuple[LoadedPlan | None, list[Problem]]:
    """Parse and validate one file (no graph checks): the plan, or None and its problems."""
    parsed = parse_file(path, raw)
    plan = validate(parsed)
    if plan is None or any(p.severity == "error" for p in parsed.problems):
        return None, sorted(parsed.problems)
    return LoadedPlan(plan, path, parsed.version, parsed.positions), sorted(parsed.problems)


def load_plan(path: Path, raw: bytes | None = None) -> LoadedPlan:
    """Load one plan for running calls: YAML, schema and graph errors raise :class:`DialplanError`,
    and so does anything else that goes wrong with this file (an unreadable file, a bug met by odd
    content: code ``dialplan.internal``), so a caller that loads many files never stops at one.

    The checks that need settings (lookup hosts, transfer destinations) and the prompt files are
    :func:`ivr.dialplan.checks.check_files`'s job.
    """
    from ivr.dialplan.checks import graph_problems

    try:
        loaded, problems = read_plan(path, raw)
        if loaded is not None:
            problems += graph_problems(loaded.plan, loaded.positions, str(path))
    except OSError as exc:
        raise DialplanError(f"{path}:1:1: error: cannot read: {exc.strerror or exc}", code="dialplan.io") from None
    except Exception as exc:  # never let one file's content stop a reload or a check of the others
        raise DialplanError(f"{path}:1:1: error: cannot check this file ({type(exc).__name__})",
                            code="dialplan.internal") from None
    errors = sorted(p for p in problems if p.severity == "error")
    if errors:
        raise DialplanError("\n".join(map(str, errors)), code=errors[0].code,
                            problems=[p.to_dict() for p in errors])
    assert loaded is not None
    return loaded


def plan_files(directory: Path) -> list[Path]:
    """The plan files of a directory: top-level ``*.yaml`` and ``*.yml`` (sub-directories are not
    read); hidden files (editors' lock and backup files) are not plans."""
    files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
    return [f for f in files if not f.name.startswith(".")]


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
        files = plan_files(directory)
        if not files:
            raise DialplanError(f"no dial plans in {directory}", code="dialplan.none")
        return cls([load_plan(f) for f in files])

    def for_number(self, dnis: str) -> LoadedPlan | None:
        return self.by_number.get(dnis) or self.by_number.get("*")

    def for_id(self, plan_id: str) -> LoadedPlan | None:
        """The plan whose file is ``<plan_id>.yaml`` (an automated call names its plan so)."""
        return next((lp for lp in self.plans if lp.path.stem == plan_id), None)


# --- JSON Schema ---------------------------------------------------------------------------------
def plan_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a dial-plan file, for editors and other tools."""
    schema = Plan.model_json_schema(by_alias=True, mode="validation")
    defs = schema.get("$defs", {})
    if "Prompt" in defs:  # a plain string is a text prompt (Prompt's "before" validator)
        obj = defs["Prompt"]
        defs["Prompt"] = {"title": obj.get("title", "Prompt"), "description": obj.get("description", ""),
                          "anyOf": [{"type": "string", "minLength": 1}, {**obj, "title": "Prompt object"}]}
    nodes = schema["properties"]["nodes"]
    nodes["additionalProperties"] = False  # node names must match the pattern
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "IVR dial plan", **{k: v for k, v in schema.items() if k != "title"}}


def json_data(path: Path) -> Any:
    """The data of a plan file as JSON values (dates and times as ISO text), e.g. for schema tools."""
    return _jsonable(parse_file(path).data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
