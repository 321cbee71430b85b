"""The settings' number globs (``calls.outbound_allow``) as Lua patterns, so the state layer can check
a number where it decides to dial it (a follow-up call, a follow-up task) without a round trip.

Same meaning as :mod:`ivr.dialplan.destinations` (which the state layer cannot import): ``*`` is any
run of the characters a number or a SIP user part may hold, ``?`` one of them, every other character
itself; the whole number must match. ``tests/unit/test_allow_globs.py`` checks the two agree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

_USER_CLASS = "[%w_!~+%-]"  # Lua: letters, digits and _ ! ~ + - (destinations._USER)


def lua_pattern(glob: str) -> str:
    """One glob as an anchored Lua pattern."""
    out = []
    for ch in glob:
        if ch == "*":
            out.append(_USER_CLASS + "*")
        elif ch == "?":
            out.append(_USER_CLASS)
        elif ch.isalnum() and ch.isascii():
            out.append(ch)
        else:
            out.append("%" + ch if ch in "^$()%.[]*+-?" else ch)
    return "^" + "".join(out) + "$"


def lua_patterns(globs: Sequence[str]) -> str:
    """The globs as a JSON array of Lua patterns (a script argument); ``[]``: no number is allowed."""
    return json.dumps([lua_pattern(g) for g in globs])
