"""Every queue script runs after all the shared Lua libraries (ivr/queues/scripts.py), in one chunk; Lua
allows 200 local variables in a function, the chunk included. A library that adds many top-level
locals would make every script fail to load at once: keep a margin, and say how much is left."""

from __future__ import annotations

import re

from ivr.queues.scripts import LIBRARIES, NAMES, lua_source

LIMIT = 200
MARGIN = 30
_LOCAL = re.compile(r"^local\s+(?:function\s+([A-Za-z_]\w*)|([A-Za-z_][\w\s,]*?)\s*(?:=|$))", re.M)


def top_level_locals(text: str) -> int:
    count = 0
    for fn, names in _LOCAL.findall(text):
        count += 1 if fn else len([n for n in names.split(",") if n.strip()])
    return count


def test_each_script_with_the_libraries_stays_well_under_luas_200_locals() -> None:
    libs = sum(top_level_locals(lua_source("lib", lib)) for lib in LIBRARIES)
    worst = max((top_level_locals(lua_source("scripts", name)), name) for name in NAMES)
    assert libs + worst[0] <= LIMIT - MARGIN, (
        f"{libs} library locals + {worst[0]} in {worst[1]}: near Lua's limit of {LIMIT}; put a library's "
        "constants and helpers in its table (CS.X, CP.x) instead of top-level locals")
