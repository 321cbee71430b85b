"""The one setter of a call's state refuses every move the state machine does not allow (real Redis)."""

from __future__ import annotations

import itertools

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ivr.core.call_states import INITIAL, CallState, allowed
from ivr.queues.scripts import LIBRARIES, lua_source

# A script that creates a record in A[1] (or not, when ''), then moves it to A[2].
_BODY = """
local ckey = k('call', 'c1')
if A[1] ~= '' then create_call(ckey, A[1], 'call_id', 'c1') end
set_call_state(ckey, A[2], 'touched', '1')
return redis.call('HGET', ckey, 'state')
"""


@pytest.fixture
async def move(redis: Redis):  # type: ignore[no-untyped-def]
    src = "\n".join([*(lua_source("lib", name) for name in LIBRARIES), _BODY])
    script = redis.register_script(src)

    async def run(first: str, then: str) -> str:
        await redis.delete("t:call:c1")
        out = await script(keys=[], args=["t", "1000", '{"interval_s": 900, "keep_s": 86400, "sl": [20]}',
                                          first, then])
        return out.decode()
    return run


async def test_each_allowed_move_from_an_initial_state_is_written(redis: Redis, move) -> None:  # type: ignore[no-untyped-def]
    for first, then in itertools.product(INITIAL, CallState):
        if allowed(first, then):
            assert await move(first.value, then.value) == then.value
            assert await redis.hget("t:call:c1", "touched") == b"1"


async def test_each_forbidden_move_from_an_initial_state_is_refused(redis: Redis, move) -> None:  # type: ignore[no-untyped-def]
    refused = 0
    for first, then in itertools.product(INITIAL, CallState):
        if not allowed(first, then):
            with pytest.raises(ResponseError, match=rf"call.bad_transition .* {first.value} -> {then.value}"):
                await move(first.value, then.value)
            assert await redis.hget("t:call:c1", "state") == first.value.encode()
            assert await redis.hget("t:call:c1", "touched") is None
            refused += 1
    assert refused > 10


async def test_a_record_that_does_not_exist_cannot_be_moved(move) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ResponseError, match=r"call.bad_transition .* none -> queued"):
        await move("", "queued")


async def test_creating_over_a_live_record_is_refused(redis: Redis) -> None:
    src = "\n".join([*(lua_source("lib", name) for name in LIBRARIES),
                     "create_call(k('call', 'c2'), 'ivr') set_call_state(k('call', 'c2'), 'queued') "
                     "create_call(k('call', 'c2'), 'ivr') return 1"])
    with pytest.raises(ResponseError, match=r"call.bad_transition .* queued -> ivr"):
        await redis.eval(src, 0, "t", "1000", '{"interval_s": 900, "keep_s": 86400, "sl": [20]}')
