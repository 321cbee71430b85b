"""Queue position, the recorded history and the wait estimate against a real Redis."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from ivr.core.events import AgentState
from ivr.queues.estimate import DEFAULT_AHT_S
from ivr.queues.store import QueueStore


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    s = QueueStore(redis, prefix="t")
    await s.register_agent("a1", name="A1", skills={"billing": 3}, sip_uri="sip:a1@127.0.0.1:5999",
                           languages=["en"])
    await s.register_agent("a2", name="A2", skills={"billing": 5, "sales": 2}, sip_uri="sip:a2@x",
                           languages=["en"])
    return s


async def queued(store: QueueStore, cid: str, priority: int = 0, queue: str = "billing") -> None:
    await store.call_start(cid, "w0", ani="+15550001", dnis="1000", hotline="demo", language="en",
                           plan_version="v1")
    await store.enqueue(cid, queue=queue, skill=queue, priority=priority, journey={})


async def test_position_follows_priority_then_arrival(store: QueueStore) -> None:
    for cid in ("c1", "c2", "c3"):
        await queued(store, cid)
    assert [await store.queue_position(c) for c in ("c1", "c2", "c3")] == [(1, 3), (2, 3), (3, 3)]
    await queued(store, "vip", priority=5)
    assert [await store.queue_position(c) for c in ("vip", "c1", "c3")] == [(1, 4), (2, 4), (4, 4)]
    await store.call_start("ivr-only", "w0", ani="", dnis="", hotline="demo", language="en", plan_version="v1")
    assert await store.queue_position("ivr-only") is None
    assert await store.queue_position("nobody") is None
    assert await store.wait_estimate("nobody") is None


async def test_offered_call_is_not_waiting_and_a_failed_offer_puts_it_back_first(store: QueueStore) -> None:
    await queued(store, "c1")
    await queued(store, "c2")
    offer = await store.set_agent_state("a1", AgentState.AVAILABLE)
    assert offer is not None and offer.call_id == "c1"
    assert await store.queue_position("c1") is None
    assert await store.queue_position("c2") == (1, 1)
    await store.offer_failed("c1", offer.offer_id, "ring_no_answer")
    assert await store.queue_position("c1") == (1, 2) and await store.queue_position("c2") == (2, 2)


async def test_staffed_agents_are_those_logged_in(store: QueueStore) -> None:
    assert await store.staffed("billing") == set()
    await store.set_agent_state("a1", AgentState.AVAILABLE)
    await store.set_agent_state("a2", AgentState.BREAK)
    assert await store.staffed("billing") == {"a1", "a2"} and await store.staffed("sales") == {"a2"}
    await store.set_agent_state("a1", AgentState.OFFLINE)
    assert await store.staffed("billing") == {"a2"}
    # a profile change while logged in moves the agent between the skills' sets
    await store.register_agent("a2", name="A2", skills={"sales": 2}, sip_uri="sip:a2@x", languages=["en"])
    assert await store.staffed("billing") == set() and await store.staffed("sales") == {"a2"}


async def test_without_history_the_estimate_is_default_handle_time_over_staffed(store: QueueStore) -> None:
    await store.set_agent_state("a1", AgentState.BREAK)
    await store.set_agent_state("a2", AgentState.BREAK)
    for cid in ("c1", "c2", "c3"):
        await queued(store, cid)
    est = await store.wait_estimate("c3")
    assert est is not None
    assert (est.position, est.waiting, est.basis) == (3, 3, "default")
    assert est.seconds == pytest.approx(3 * DEFAULT_AHT_S / 2)


async def test_answered_and_ended_calls_record_departures_and_handle_time(store: QueueStore) -> None:
    # c1 is offered the moment it is queued: a departure, but no departure-interval sample
    await store.set_agent_state("a1", AgentState.AVAILABLE)
    await queued(store, "c1")
    assert await store.offer_answered("c1", "c1.1") == "a1"
    stats = await store.queue_history("billing")
    assert stats["departures"] == 1 and "gap_ms" not in stats and stats["last_departure"] > 0
    await store.end_call("c1", reason="caller_hangup", wrapup_s=2, ttl_s=60)
    stats = await store.queue_history("billing")
    assert stats["handled"] == 1 and stats["aht_ms"] >= 2000  # talk + 2 s wrap-up

    # a1 is in wrap-up: c2 waits at the head until a1 is available again
    await queued(store, "c2")
    waiting = await store.wait_estimate("c2")
    assert waiting is not None and waiting.basis == "handle_time"
    assert waiting.seconds == pytest.approx(stats["aht_ms"] / 1000)  # one staffed agent (a1)
    await asyncio.sleep(0.05)
    offer = await store.set_agent_state("a1", AgentState.AVAILABLE)
    assert offer is not None and offer.call_id == "c2"
    await store.offer_answered("c2", offer.offer_id)
    stats = await store.queue_history("billing")
    assert stats["departures"] == 2 and stats["gap_ms"] >= 50

    # now the departure interval drives the estimate: position x interval
    await queued(store, "c3")
    await queued(store, "c4")
    est = await store.wait_estimate("c4")
    assert est is not None and (est.position, est.waiting, est.basis) == (2, 2, "departures")
    assert est.seconds == pytest.approx(2 * stats["gap_ms"] / 1000)


async def test_interval_is_a_weighted_average(store: QueueStore, redis: Redis) -> None:
    await redis.hset("t:queue:billing:stats", mapping={"gap_ms": 40000, "last_departure": 1})
    await store.call_start("c1", "w0", ani="", dnis="", hotline="demo", language="en", plan_version="v1")
    await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={})
    # offered_at after queued_at, last departure long ago: the sample is the time since queueing
    await redis.hset("t:call:c1", mapping={"queued_at": 1_000_000, "offered_at": 1_010_000, "state": "offered",
                                           "offer_id": "c1.9", "agent_id": "a1"})
    await store.offer_answered("c1", "c1.9")
    stats = await store.queue_history("billing")
    assert stats["gap_ms"] == 40000 + 0.25 * (10000 - 40000)
    assert stats["last_departure"] == 1_010_000
