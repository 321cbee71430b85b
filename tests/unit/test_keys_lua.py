"""Key names once: every key a Lua script builds with ``k(...)`` has the shape of a key that
``ivr/queues/keys.py`` names, so the two cannot drift apart."""

from __future__ import annotations

import inspect
import re
from importlib import resources
from pathlib import Path

from ivr.queues.keys import Keys

LUA = Path(str(resources.files("ivr.queues").joinpath("lua")))
ANY = "*"


def python_shapes() -> dict[tuple[str, ...], str]:
    """The shape of every key Keys names (variable parts as ``*``) -> the member that names it."""
    keys = Keys("P")
    shapes: dict[tuple[str, ...], str] = {}
    for name, member in inspect.getmembers(Keys):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            value = getattr(keys, name)
        elif inspect.isfunction(member):
            params = list(inspect.signature(member).parameters)[1:]
            value = getattr(keys, name)(*(f"\x00{i}" for i in range(len(params))))
        else:
            continue
        if not isinstance(value, str):
            continue
        parts = value.split(":")
        assert parts[0] == "P"
        shapes[tuple(ANY if "\x00" in p else p for p in parts[1:])] = name
    return shapes


def _split_args(text: str) -> list[str]:
    args, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        cur += ch
    args.append(cur.strip())
    return args


def lua_shapes() -> dict[tuple[str, ...], list[str]]:
    """The shape of every ``k(...)`` call in the Lua sources -> where it is."""
    found: dict[tuple[str, ...], list[str]] = {}
    for path in sorted(LUA.rglob("*.lua")):
        text = path.read_text()
        for m in re.finditer(r"(?<![\w.])k\(", text):
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += text[i] == "("
                depth -= text[i] == ")"
                i += 1
            inner = text[m.end():i - 1]
            if inner == "...":  # the definition of k itself
                continue
            parts = []
            for arg in _split_args(inner):
                lit = re.fullmatch(r"'([^']*)'", arg)
                parts.append(lit.group(1) if lit else ANY)
            line = text[:m.start()].count("\n") + 1
            found.setdefault(tuple(parts), []).append(f"{path.relative_to(LUA)}:{line}")
    return found


def _named(shape: tuple[str, ...], py: dict[tuple[str, ...], str]) -> bool:
    """A Lua shape is named when a keys.py shape has the same literals (a variable part there may be
    a literal in Lua, e.g. the lease ``housekeeper``)."""
    return any(len(p) == len(shape) and all(a == b or a == ANY for a, b in zip(p, shape, strict=True)) for p in py)


def test_every_lua_key_is_named_in_keys_py() -> None:
    py = python_shapes()
    lua = lua_shapes()
    assert len(lua) > 30
    unknown = {shape: where for shape, where in lua.items() if not _named(shape, py)}
    assert not unknown, "keys built in Lua that keys.py does not name: " + "; ".join(
        f"{':'.join(s)} at {', '.join(w)}" for s, w in unknown.items())


def test_the_shape_parser_sees_variables_and_literals() -> None:
    assert _split_args("'queue', q, 'interval', string.format('%d', x)") == [
        "'queue'", "q", "'interval'", "string.format('%d', x)"]
    py = python_shapes()
    assert ("queue", ANY, "waiting") in py
    assert _named(("lease", "housekeeper"), py) and not _named(("queue", ANY, "waitin"), py)
    assert not _named(("queue", ANY), py) or ("queue", ANY) in py
