"""A customer's unfinished complaint cases against a real Redis: the index (``Keys.customer_cases``)
follows every status move, ``open_cases_for`` gives them newest first, bounded, refusing hostile
input, and ``open_or_join_case`` never opens a second case for a customer who has one."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from ivr.core import case_states as cs
from ivr.core.errors import BadRequest
from ivr.queues.store import QueueStore

HOUR = 3_600_000
T0 = (int(time.time() * 1000) // 1000) * 1000
ANA, BEN = "+4930111", "+4930222"


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix="cuc")


async def open_case(store: QueueStore, customer: str = ANA, *, at: int = T0, **kw: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"tier": "important", "reason": "billed twice", "opened_by": "ivr:demo"} | kw
    return await store.open_case(customer=customer, due_at_ms=at + HOUR, now_ms=at, **fields)


def ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["id"] for c in cases]


async def test_the_index_follows_every_status_move(store: QueueStore) -> None:
    case = await open_case(store)
    cid = case["id"]
    assert ids(await store.open_cases_for(ANA)) == [cid]
    await store.set_case_status(cid, "contacted", by="ada", now_ms=T0 + 1000)
    [contacted] = await store.open_cases_for(ANA)
    assert contacted["status"] == "contacted" and contacted["id"] == cid
    await store.set_case_status(cid, "resolved", by="ada", now_ms=T0 + 2000)
    assert await store.open_cases_for(ANA) == []
    await store.set_case_status(cid, "reopened", by="ada", due_at_ms=T0 + 2 * HOUR, now_ms=T0 + 3000)
    assert [(c["id"], c["status"]) for c in await store.open_cases_for(ANA)] == [(cid, "reopened")]
    await store.set_case_status(cid, "closed", by="ada", now_ms=T0 + 4000)
    assert await store.open_cases_for(ANA) == []
    await store.set_case_status(cid, "reopened", by="ada", due_at_ms=T0 + 2 * HOUR, now_ms=T0 + 5000)
    await store.update_case(cid, by="ada", tier="urgent", owner="ada", reason="billed three times")
    [back] = await store.open_cases_for(ANA)
    assert (back["id"], back["tier"], back["reason"]) == (cid, "urgent", "billed three times")
    await store.set_case_status(cid, "closed", by="ada", now_ms=T0 + 6000)
    # empty: the key is gone; and it never names the number, only its digest
    digest = hashlib.sha1(ANA.encode()).hexdigest()
    assert not await store.redis.exists(store.keys.customer_cases(digest))
    other = await open_case(store, BEN)
    assert await store.redis.zrange(store.keys.customer_cases(hashlib.sha1(BEN.encode()).hexdigest()), 0, -1) == [
        other["id"].encode()]
    assert not [k for k in await store.redis.keys("cuc:*") if BEN.encode() in k or b"4930222" in k]


async def test_newest_first_limited_and_only_the_customers_own(store: QueueStore) -> None:
    made = [(await open_case(store, at=T0 + i * 1000))["id"] for i in range(7)]
    await open_case(store, BEN, at=T0 + 50_000)
    await open_case(store, "", at=T0 + 60_000)  # anonymous: in no customer's index
    assert ids(await store.open_cases_for(ANA)) == made[::-1][:5]
    assert ids(await store.open_cases_for(ANA, limit=2)) == made[::-1][:2]
    assert ids(await store.open_cases_for(ANA, limit=20)) == made[::-1]
    await store.set_case_status(made[6], "closed", by="ada")
    assert ids(await store.open_cases_for(ANA, limit=1)) == [made[5]]
    assert len(await store.open_cases_for(BEN)) == 1 and await store.open_cases_for("") == []


async def test_the_index_is_bounded(store: QueueStore) -> None:
    made = [(await open_case(store, at=T0 + i))["id"] for i in range(cs.CUSTOMER_CASES_KEEP + 5)]
    digest = hashlib.sha1(ANA.encode()).hexdigest()
    assert await store.redis.zcard(store.keys.customer_cases(digest)) == cs.CUSTOMER_CASES_KEEP
    assert ids(await store.open_cases_for(ANA, limit=cs.CUSTOMER_CASES_KEEP)) == made[::-1][:cs.CUSTOMER_CASES_KEEP]


async def test_hostile_input_is_refused(store: QueueStore) -> None:
    await open_case(store)
    for customer in ("+49 30", "a" * 5, "1" * 33, "+4930111\n", "*" * 40, "ivr:cuc:case:CS1"):
        with pytest.raises(BadRequest) as err:
            await store.open_cases_for(customer)
        assert err.value.code == "case.invalid", customer
    for limit in (0, -1, 21, True, 2.5):
        with pytest.raises(BadRequest) as err:
            await store.open_cases_for(ANA, limit=limit)  # type: ignore[arg-type]
        assert err.value.code == "case.invalid", limit
    with pytest.raises(BadRequest):  # the script checks again
        await store._run("case_customer", ANA, 99)


async def test_a_customer_with_an_open_case_gets_no_second_one(store: QueueStore) -> None:
    """Two calls of one customer at once: one case, both calls linked to it; a finished case does not
    count (a new one opens)."""
    base: dict[str, Any] = {"tier": "urgent", "reason": "line down", "customer": ANA, "opened_by": "ivr:demo",
                            "due_at_ms": T0 + HOUR}
    results = await asyncio.gather(*(store.open_or_join_case(**base, call_id=f"call-{i}") for i in range(4)))
    assert len({c["id"] for c, _ in results}) == 1 and sorted(e for _, e in results) == [False, True, True, True]
    case = await store.get_case(results[0][0]["id"])
    assert case is not None and sorted(case["calls"]) == ["call-0", "call-1", "call-2", "call-3"]
    again, existing = await store.open_or_join_case(**base, call_id=case["calls"][-1])
    assert existing and again["version"] == case["version"]  # the last linked call again: nothing changes
    await store.set_case_status(case["id"], "resolved", by="ada")
    fresh, existing = await store.open_or_join_case(**base, call_id="call-5")
    assert not existing and fresh["id"] != case["id"] and fresh["calls"] == ["call-5"]
    anonymous = [await store.open_or_join_case(**(base | {"customer": ""})) for _ in range(2)]
    assert [e for _, e in anonymous] == [False, False] and anonymous[0][0]["id"] != anonymous[1][0]["id"]


async def test_a_case_reopened_by_a_follow_up_answer_is_found_again(store: QueueStore) -> None:
    """The follow-up survey's unsolved answer (``case_answers`` with a due time) reopens a closed case
    through the one status setter: the repeat caller finds it again; an answer that does not reopen
    leaves the index as it was."""
    cid = (await open_case(store))["id"]
    await store.set_case_status(cid, "closed", by="ada", now_ms=T0 + 1000)
    assert await store.open_cases_for(ANA) == []
    _, reopened = await store.case_answers(cid, call_id="", answers={"csat": "4"}, by="ivr:survey",
                                           now_ms=T0 + 2000)
    assert not reopened and await store.open_cases_for(ANA) == []
    _, reopened = await store.case_answers(cid, call_id="", answers={"solved": "no"}, by="ivr:survey",
                                           reopen_due_at_ms=T0 + 2 * HOUR, now_ms=T0 + 3000)
    assert reopened
    assert [(c["id"], c["status"]) for c in await store.open_cases_for(ANA)] == [(cid, "reopened")]
