"""Regular expressions of dial plans (``collect.pattern``, ``branch`` ``matches``) that cannot run away.

Python's ``re`` backtracks: ``(0+)+1`` against 30 zeros takes longer than a caller waits, and a
worker that matches it stops serving every call. A plan's expression is therefore refused (by the
schema, so by ``check`` and by the reload alike) when it

* is longer than :data:`MAX_PATTERN` characters;
* repeats something that itself repeats (``(a+)+``, ``(\\d{2,})*``): nested quantifiers;
* repeats an alternation whose branches are not single characters (``(a|ab)*``);
* uses a back-reference (``(a)\\1``) or a look-around;
* has more than :data:`MAX_UNBOUNDED` unbounded repetitions (``*``, ``+``, ``{n,}``: ``.*.*.*`` is
  cubic).

At call time the text matched is at most :data:`MAX_SUBJECT` characters (a longer value does not match).
With these rules the backtracking is at most quadratic in a short text.
"""

from __future__ import annotations

import re
from re import _parser as sre_parse  # type: ignore[attr-defined]  # the re module's own parser (3.11+)
from typing import Any

MAX_PATTERN = 200
MAX_SUBJECT = 256
MAX_UNBOUNDED = 2
_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}
_SINGLE = {"LITERAL", "NOT_LITERAL", "IN", "ANY", "CATEGORY"}
_REFUSED = {"GROUPREF", "GROUPREF_EXISTS", "ASSERT", "ASSERT_NOT"}


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a safe regular expression for a plan, or None."""
    if len(pattern) > MAX_PATTERN:
        return f"a regular expression has at most {MAX_PATTERN} characters"
    try:
        re.compile(pattern)
        tree = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError, ValueError) as exc:
        return f"not a regular expression: {exc}"
    if _unbounded(tree) > MAX_UNBOUNDED:
        return f"at most {MAX_UNBOUNDED} unbounded repetitions (*, +, {{n,}}) in a plan's regular expression"
    return _walk(tree, in_repeat=False)


def _unbounded(node: Any) -> int:
    """How many repetitions without an upper bound the parsed expression has."""
    count = 0
    for op, arg in _items(node):
        name = str(op)
        if name in _REPEATS:
            count += (arg[1] is sre_parse.MAXREPEAT) + _unbounded(arg[2])
        elif name == "SUBPATTERN":
            count += _unbounded(arg[-1])
        elif name == "BRANCH":
            count += sum(_unbounded(b) for b in arg[1])
        elif name == "ATOMIC_GROUP":
            count += _unbounded(arg)
    return count


def _items(node: Any) -> list[tuple[Any, Any]]:
    return list(node.data if hasattr(node, "data") else node)


def _walk(node: Any, *, in_repeat: bool) -> str | None:
    for op, arg in _items(node):
        name = str(op)
        if name in _REFUSED:
            return "back-references and look-arounds are not allowed in a plan's regular expression"
        if name in _REPEATS:
            lo, hi, body = arg
            many = hi is sre_parse.MAXREPEAT or hi > 1
            if in_repeat and lo != hi:
                return "nested repetition (like (a+)+) can make matching take forever: not allowed"
            found = _walk(body, in_repeat=in_repeat or many)
            if found:
                return found
        elif name == "SUBPATTERN":
            found = _walk(arg[-1], in_repeat=in_repeat)
            if found:
                return found
        elif name == "BRANCH":
            branches = arg[1]
            if in_repeat and not all(len(_items(b)) == 1 and str(_items(b)[0][0]) in _SINGLE for b in branches):
                return "a repeated alternation (like (a|ab)*) can make matching take forever: use a character " \
                       "class or no repetition"
            for b in branches:
                found = _walk(b, in_repeat=in_repeat)
                if found:
                    return found
        elif name == "ATOMIC_GROUP":
            found = _walk(arg, in_repeat=in_repeat)
            if found:
                return found
    return None


def fullmatch(pattern: str, text: str) -> bool:
    """``re.fullmatch`` within the subject bound (a longer text does not match)."""
    return len(text) <= MAX_SUBJECT and re.fullmatch(pattern, text) is not None
