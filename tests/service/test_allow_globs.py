"""The state layer's Lua form of ``calls.outbound_allow`` (ivr/queues/allow.py) means what the dial
plan's globs mean (ivr/dialplan/destinations.py): checked on a real Redis's Lua against Python."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from ivr.dialplan.destinations import transfer_allowed
from ivr.queues.allow import lua_pattern, lua_patterns

GLOBS = ["+8210*", "1555???0100", "+82-2*", "02*", "*", "+1(555)*", "%d*", "+44.7*"]
NUMBERS = ["+821055501234", "+8210", "+8220000", "15550000100", "155512300100", "1555abc0100", "+82-21234",
           "0212345", "+1(555)1", "%d99", "+44.7123", "+4477123", "", "*#", "+", "12#*"]

# what lib/cases.lua CS.number_allowed does: a number (digits, * and #, a leading +; 1-32), then a pattern
CHECK = ("local n = ARGV[1] local good = #n <= 32 and string.match(n, '^%+?[0-9*#]+$') local ok = {} "
         "for i, p in ipairs(cjson.decode(ARGV[2])) do ok[i] = (good and string.match(n, p)) and 1 or 0 end "
         "return ok")


@pytest.mark.parametrize("number", NUMBERS)
async def test_lua_patterns_match_what_the_globs_match(redis: Redis, number: str) -> None:
    got = await redis.eval(CHECK, 0, number, lua_patterns(GLOBS))
    want = [1 if transfer_allowed(number, [g]) else 0 for g in GLOBS]
    assert got == want, (number, list(zip(GLOBS, got, want, strict=True)))


def test_an_empty_allow_list_allows_nothing() -> None:
    assert json.loads(lua_patterns([])) == []
    assert lua_pattern("+8210*") == "^%+8210[%w_!~+%-]*$"
