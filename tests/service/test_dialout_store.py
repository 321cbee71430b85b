"""Automated outbound calls (``lua/lib/dialout.lua``) against a real Redis: placing one gives it to the
worker with a free slot with everything it needs (number, plan, variables); answered it enters its
plan (state ``ivr``) and ends like any call; not reached it ends with the outcome; a worker that dies
while it rings ends it ``lost``; hostile specs are refused before anything is written."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from ivr.core.errors import BadRequest, Conflict, Unavailable
from ivr.queues.store import Offer, QueueStore

PREFIX = "dot"
NUMBER = "+821055501234"


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    s = QueueStore(redis, prefix=PREFIX)
    await s.register_worker("w0", "host:1", ttl_s=60, slots=2)
    return s


async def record(store: QueueStore, cid: str) -> dict[str, str]:
    raw = await store.redis.hgetall(store.keys.call(cid))
    return {k.decode(): v.decode() for k, v in raw.items()}


async def events(store: QueueStore) -> list[tuple[str, dict[str, object]]]:
    out = []
    for _id, fields in await store.redis.xrange(store.keys.events):
        out.append((fields[b"type"].decode(), json.loads(fields[b"data"])))
    return out


async def test_a_placed_call_reaches_the_worker_with_its_plan_and_variables(store: QueueStore) -> None:
    w = await store.dialout_start("d1", number=NUMBER, plan="survey", purpose="test", caller_id="+8215880000",
                                  hotline="demo", language="ko", variables={"case.id": "CS7", "name": "Zoë"},
                                  ring_s=12, queue="billing", case_id="CS7")
    assert w == "w0"
    offer = await store.next_message("w0", timeout_s=0.1)
    assert isinstance(offer, Offer) and offer.is_dialout and offer.dial
    assert (offer.call_id, offer.number, offer.plan, offer.caller_id, offer.language) == (
        "d1", NUMBER, "survey", "+8215880000", "ko")
    assert offer.variables == {"case.id": "CS7", "name": "Zoë"} and offer.ring_s == 12 and offer.agent_id == ""
    c = await record(store, "d1")
    assert (c["state"], c["kind"], c["direction"], c["case_id"], c["queue"]) == (
        "dialing", "dialout", "outbound", "CS7", "billing")
    assert await store.redis.sismember(store.keys.worker_calls("w0"), "d1")
    assert ("call.started", "d1") in [(t, d.get("call_id")) for t, d in await events(store)]


async def test_answered_it_is_in_its_plan_and_ends_like_any_call(store: QueueStore) -> None:
    await store.dialout_start("d2", number=NUMBER, plan="survey", purpose="test")
    assert await store.dialout_answered("d2", "d2.d")
    assert await store.dialout_answered("d2", "d2.d")  # twice: harmless
    assert not await store.dialout_answered("d2", "other.d")
    c = await record(store, "d2")
    assert c["state"] == "ivr" and "answered_at" in c
    await store.end_call("d2", reason="ivr_hangup", wrapup_s=0, ttl_s=60)
    c = await record(store, "d2")
    assert (c["state"], c["outcome"]) == ("ended", "completed")
    assert not await store.redis.sismember(store.keys.worker_calls("w0"), "d2")


@pytest.mark.parametrize("outcome", ["busy", "no_answer", "failed"])
async def test_not_reached_it_ends_with_the_outcome_once(store: QueueStore, outcome: str) -> None:
    await store.dialout_start("d3", number=NUMBER, plan="survey", purpose="test", queue="billing")
    assert await store.dialout_failed("d3", "d3.d", outcome=outcome, reason="why", ttl_s=60) == outcome
    assert await store.dialout_failed("d3", "d3.d", outcome=outcome, reason="why", ttl_s=60) is None
    c = await record(store, "d3")
    assert (c["state"], c["outcome"], c["end_reason"]) == ("ended", outcome, "why")
    assert not await store.redis.sismember(store.keys.active_calls, "d3")
    ended = [d for t, d in await events(store) if t == "call.ended"]
    assert [(d["call_id"], d["outcome"]) for d in ended] == [("d3", outcome)]
    assert (await store.queue_stats("billing")).interval.counts.get("outbound_failed") == 1


async def test_a_dead_worker_ends_a_ringing_call_lost(store: QueueStore) -> None:
    await store.dialout_start("d4", number=NUMBER, plan="survey", purpose="test")
    assert await store.reap_worker("w0", wrapup_s=0, ttl_s=60) == 1
    c = await record(store, "d4")
    assert (c["state"], c["outcome"], c["end_reason"]) == ("ended", "lost", "worker_lost")


async def test_no_free_slot_places_nothing(store: QueueStore) -> None:
    await store.dialout_start("d5", number=NUMBER, plan="survey", purpose="test")
    await store.dialout_start("d6", number=NUMBER, plan="survey", purpose="test")
    with pytest.raises(Unavailable):
        await store.dialout_start("d7", number=NUMBER, plan="survey", purpose="test")
    assert not await store.redis.exists(store.keys.call("d7"))
    with pytest.raises(Conflict):  # a live record of that id
        await store.dialout_start("d5", number=NUMBER, plan="survey", purpose="test")


@pytest.mark.parametrize("spec", [
    {"number": "", "plan": "survey", "purpose": "test"},
    {"number": "+82 10 555", "plan": "survey", "purpose": "test"},
    {"number": "1" * 33, "plan": "survey", "purpose": "test"},
    {"number": "sip:evil@host", "plan": "survey", "purpose": "test"},
    {"number": NUMBER, "plan": "../etc/passwd", "purpose": "test"},
    {"number": NUMBER, "plan": "", "purpose": "test"},
    {"number": NUMBER, "plan": "survey", "purpose": "anything"},
    {"number": NUMBER, "plan": "survey", "purpose": "test", "variables": {"x": "y" * 9000}},
])
async def test_hostile_specs_are_refused_and_write_nothing(store: QueueStore, spec: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        await store.dialout_start("d8", **spec)  # type: ignore[arg-type]
    assert not await store.redis.exists(store.keys.call("d8"))
    assert await store.redis.llen(store.keys.worker_inbox("w0")) == 0
