"""Callbacks (virtual hold) and redial resume against a real Redis: a booked callback competes for
agents at the caller's place once the caller hangs up, its offer goes to a live worker with a free
slot, attempts are retried at the same place and given up after the last, and a caller who calls
again takes back the place they had (from an abandon within the window, or from their callback)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from ivr.core.errors import Conflict
from ivr.core.events import AgentState, EventType
from ivr.queues.store import Offer, QueueStore


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    s = QueueStore(redis, prefix="cbt")
    for aid in ("a1", "a2"):
        await s.register_agent(aid, name=aid.upper(), skills={"billing": 3}, sip_uri=f"sip:{aid}@127.0.0.1:5999",
                               languages=["en"])
    return s


async def start(store: QueueStore, cid: str, *, ani: str, worker: str = "w0") -> None:
    await store.call_start(cid, worker, ani=ani, dnis="1000", hotline="Demo", language="en", plan_version="v1")


async def queue(store: QueueStore, cid: str, *, ani: str, priority: int = 0, worker: str = "w0") -> Offer | None:
    await start(store, cid, ani=ani, worker=worker)
    offer = await store.enqueue(cid, queue="billing", skill="billing", priority=priority, journey={})
    await asyncio.sleep(0.003)  # distinct milliseconds: distinct places
    return offer


async def book(store: QueueStore, cid: str, cb_id: str) -> int:
    _, place, created = await store.request_callback(cid, callback_id=cb_id, queue="billing", number="5550100",
                                                     journey={"steps": []})
    assert created
    return place


async def hang_up(store: QueueStore, cid: str, resume_s: int = 0) -> str | None:
    return await store.end_call(cid, reason="caller_hangup", wrapup_s=0, ttl_s=600, resume_s=resume_s)


async def events(store: QueueStore, *types: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type, e.data) for e in await store.read_events("0-0") if not types or e.type in types]


async def drain_inbox(store: QueueStore, worker: str) -> list[Offer]:
    out = []
    while (o := await store.next_message(worker, timeout_s=0.05)) is not None:
        assert isinstance(o, Offer), o
        out.append(o)
    return out


async def test_a_callback_waits_at_its_place_and_goes_to_a_live_worker_with_a_free_slot(store: QueueStore) -> None:
    await store.register_worker("w0", "h:1", ttl_s=30, slots=2)   # full: two calls below
    await store.register_worker("w1", "h:2", ttl_s=30, slots=2)   # one free slot
    await store.register_worker("w2", "h:3", ttl_s=30, slots=0)   # draining
    await queue(store, "early", ani="+15550001")                  # ahead of the callback
    await queue(store, "booker", ani="+15550002")
    await queue(store, "late", ani="+15550003", worker="w1")      # behind it
    place = await book(store, "booker", "cb1")
    assert await store.waiting("billing") == ["early", "late"]
    # booked while the caller is still on the line: nothing competes for it yet
    assert (await store.get_call("cb1"))["state"] == "booked"  # type: ignore[index]
    await start(store, "other", ani="+15550009")  # w0 now holds early, booker, other
    assert await hang_up(store, "booker") == "ivr"
    assert await store.waiting("billing") == ["early", "cb1", "late"]
    assert await store.redis.zscore(store.keys.waiting("billing"), "cb1") == place
    [(_, queued)] = await events(store, EventType.CALLBACK_QUEUED)
    assert queued["origin_call_id"] == "booker" and queued["place"] == place

    first = await store.set_agent_state("a1", AgentState.AVAILABLE)
    assert first is not None and first.call_id == "early" and not first.is_callback
    offer = await store.set_agent_state("a2", AgentState.AVAILABLE)
    assert offer is not None and offer.is_callback and offer.call_id == "cb1" and offer.agent_id == "a2"
    assert offer.dial
    assert (offer.number, offer.hotline, offer.language) == ("5550100", "Demo", "en")
    # w0 is full (2 calls), w2 drains: w1 (one call, 2 slots) dials it
    assert await drain_inbox(store, "w1") == [offer]
    assert await drain_inbox(store, "w0") == [first]
    call = await store.get_call("cb1")
    assert call is not None and (call["state"], call["worker"], call["agent_id"]) == ("offered", "w1", "a2")
    assert await store.worker_load("w1") == 2
    assert await store.waiting("billing") == ["late"]
    assert (await store.get_agent("a2"))["state"] == "reserved"  # type: ignore[index]

    # the customer answers and confirms; the agent answers; the talk ends: the callback is done
    assert await store.callback_dialing("cb1", offer.offer_id) == 1
    await store.callback_confirmed("cb1", offer.offer_id)
    assert await store.offer_answered("cb1", offer.offer_id) == "a2"
    assert await store.end_call("cb1", reason="agent_hangup", wrapup_s=0, ttl_s=600) == "completed"
    cb = await store.get_callback("cb1")
    assert cb is not None and cb["state"] == "done" and cb["attempts"] == "1"
    assert await store.list_callbacks("billing") == []
    assert await store.worker_load("w1") == 1
    kinds = [t for t, d in await events(store) if d.get("call_id") == "cb1"]
    assert kinds == ["callback.queued", "call.offered", "callback.dialing", "callback.connected", "call.answered",
                     "call.ended"], kinds


async def test_no_worker_with_a_free_slot_lets_the_next_caller_have_the_agent(store: QueueStore) -> None:
    await store.register_worker("w0", "h:1", ttl_s=30, slots=1)
    await queue(store, "booker", ani="+15550002")
    await book(store, "booker", "cb1")
    await hang_up(store, "booker")
    await queue(store, "late", ani="+15550003")  # w0's only slot
    offer = await store.set_agent_state("a1", AgentState.AVAILABLE)
    assert offer is not None and offer.call_id == "late"
    call = await store.get_call("cb1")
    assert call is not None and call["state"] == "scheduled" and "worker" not in call
    assert await store.waiting("billing") == []
    # the slot frees; once due the callback competes again at its place and gets the next agent
    await hang_up(store, "late")
    await asyncio.sleep(2.1)
    assert await store.release_due_callbacks() == 1
    # a1 went back to available when "late" hung up while offered: it takes the callback
    again = await drain_inbox(store, "w0")
    assert [o.call_id for o in again if o.is_callback] == ["cb1"]


async def test_not_reached_is_retried_at_the_same_place_then_given_up(store: QueueStore) -> None:
    await store.register_worker("w0", "h:1", ttl_s=30, slots=2)
    await queue(store, "booker", ani="+15550002")
    place = await book(store, "booker", "cb1")
    await hang_up(store, "booker")
    for attempt in (1, 2):
        offer = await store.set_agent_state("a1", AgentState.AVAILABLE)
        assert offer is not None and offer.call_id == "cb1"
        assert await store.callback_dialing("cb1", offer.offer_id) == attempt
        # a caller arriving meanwhile queues behind the callback's place
        if attempt == 1:
            await queue(store, "late", ani="+15550003")
        result = await store.callback_retry("cb1", offer.offer_id, "no_answer", retry_after_s=0.05,
                                            max_attempts=2 if attempt == 2 else 3)
        assert result == ("retry" if attempt == 1 else "failed")
        if attempt == 1:
            # the agent is available again and takes the next caller; the callback waits out its delay
            agent = await store.get_agent("a1")
            assert agent is not None and agent["state"] == "reserved" and agent["call_id"] == "late"
            assert (await store.get_call("cb1"))["state"] == "scheduled"  # type: ignore[index]
            assert await store.worker_load("w0") == 1  # only "late": the callback left the worker
            await store.end_call("late", reason="caller_hangup", wrapup_s=0, ttl_s=600)
            await store.set_agent_state("a1", AgentState.BREAK)
            await asyncio.sleep(0.06)
            await queue(store, "later", ani="+15550004")
            assert await store.release_due_callbacks() == 1
            assert await store.waiting("billing") == ["cb1", "later"]  # back at its place, ahead
            assert await store.redis.zscore(store.keys.waiting("billing"), "cb1") == place
    cb = await store.get_callback("cb1")
    assert cb is not None and cb["state"] == "failed" and cb["attempts"] == "2"
    assert await store.list_callbacks("billing") == []
    call = await store.get_call("cb1")
    assert call is not None and (call["state"], call["outcome"]) == ("ended", "failed")
    assert await store.waiting("billing") == []  # "later" took the agent that was released
    assert (await store.get_agent("a1"))["call_id"] == "later"  # type: ignore[index]
    kinds = [(t, d.get("reason")) for t, d in await events(store, "callback.retry", "callback.failed",
                                                            "call.offer_failed") if d["call_id"] == "cb1"]
    assert kinds == [("call.offer_failed", "callback_no_answer"), ("callback.retry", "no_answer"),
                     ("call.offer_failed", "callback_no_answer"), ("callback.failed", "no_answer")]
    with pytest.raises(Conflict):  # the old offer is stale
        await store.callback_retry("cb1", "cb1.1", "no_answer", retry_after_s=1, max_attempts=3)


async def test_a_worker_dying_while_dialling_puts_the_callback_back(store: QueueStore) -> None:
    await store.register_worker("w5", "h:5", ttl_s=30, slots=2)
    await queue(store, "booker", ani="+15550002")
    await book(store, "booker", "cb1")
    await hang_up(store, "booker")
    offer = await store.set_agent_state("a1", AgentState.AVAILABLE)
    assert offer is not None and offer.call_id == "cb1"
    await store.callback_dialing("cb1", offer.offer_id)
    await store.redis.delete(store.keys.worker_alive("w5"), store.keys.worker_slots("w5"))
    assert await store.reap_worker("w5", wrapup_s=0, ttl_s=600) == 1
    call = await store.get_call("cb1")
    assert call is not None and call["state"] == "scheduled"
    assert (await store.get_agent("a1"))["state"] == "available"  # type: ignore[index]
    assert [cb["id"] for cb in await store.list_callbacks("billing")] == ["cb1"]  # still pending


async def test_a_redial_within_the_window_resumes_the_abandoned_place(store: QueueStore) -> None:
    await queue(store, "first", ani="+15550001")
    place = await store.redis.zscore(store.keys.waiting("billing"), "first")
    await queue(store, "middle", ani="+15550005")
    assert await hang_up(store, "first", resume_s=60) == "abandoned"
    assert 0 < await store.redis.ttl(store.keys.resume("billing", "+15550001")) <= 60
    await queue(store, "again", ani="+15550001")
    assert await store.waiting("billing") == ["again", "middle"]
    assert await store.redis.zscore(store.keys.waiting("billing"), "again") == place
    [(_, resumed)] = await events(store, EventType.CALL_PLACE_RESTORED)
    assert (resumed["call_id"], resumed["from"], resumed["previous"]) == ("again", "abandon", "first")
    assert resumed["waited_before_s"] > 0
    # used once: hanging up again without a window, the next call starts at the back
    await hang_up(store, "again")
    await queue(store, "third", ani="+15550001")
    assert await store.waiting("billing") == ["middle", "third"]


async def test_the_resume_window_expires_and_other_numbers_do_not_resume(store: QueueStore) -> None:
    await queue(store, "first", ani="+15550001")
    await queue(store, "middle", ani="+15550005")
    await hang_up(store, "first", resume_s=1)
    await queue(store, "stranger", ani="+15550007")
    await queue(store, "anon", ani="anonymous")
    await hang_up(store, "anon", resume_s=60)
    assert not await store.redis.exists(store.keys.resume("billing", "anonymous"))
    await asyncio.sleep(1.1)
    await queue(store, "again", ani="+15550001")
    assert await store.waiting("billing") == ["middle", "stranger", "again"]
    assert await events(store, EventType.CALL_PLACE_RESTORED) == []


async def test_a_redial_takes_the_callback_place_and_cancels_it(store: QueueStore) -> None:
    await store.register_worker("w0", "h:1", ttl_s=30, slots=2)
    await queue(store, "booker", ani="+15550002")
    place = await book(store, "booker", "cb1")
    await queue(store, "middle", ani="+15550005")
    await hang_up(store, "booker")
    assert await store.waiting("billing") == ["cb1", "middle"]
    await queue(store, "redial", ani="+15550002")
    assert await store.waiting("billing") == ["redial", "middle"]  # one service, at the callback's place
    assert await store.redis.zscore(store.keys.waiting("billing"), "redial") == place
    cb = await store.get_callback("cb1")
    assert cb is not None and cb["state"] == "superseded"
    assert await store.list_callbacks("billing") == []
    [(_, cancelled)] = await events(store, EventType.CALLBACK_CANCELLED)
    assert (cancelled["by"], cancelled["superseded_by"]) == ("redial", "redial")
    [(_, resumed)] = await events(store, EventType.CALL_PLACE_RESTORED)
    assert (resumed["from"], resumed["previous"]) == ("callback", "cb1")
    offer = await store.set_agent_state("a1", AgentState.AVAILABLE)
    assert offer is not None and offer.call_id == "redial" and not offer.is_callback


async def test_a_redial_while_the_callback_is_dialled_ends_it_instead_of_retrying(store: QueueStore) -> None:
    await store.register_worker("w0", "h:1", ttl_s=30, slots=2)
    await queue(store, "booker", ani="+15550002")
    await book(store, "booker", "cb1")
    await hang_up(store, "booker")
    offer = await store.set_agent_state("a1", AgentState.AVAILABLE)
    assert offer is not None and offer.call_id == "cb1"
    await store.callback_dialing("cb1", offer.offer_id)
    await queue(store, "redial", ani="+15550002")  # busy line: the customer is calling us
    assert await store.waiting("billing") == ["redial"]
    assert await store.callback_retry("cb1", offer.offer_id, "busy", retry_after_s=1, max_attempts=3) == "superseded"
    assert (await store.get_callback("cb1"))["state"] == "superseded"  # type: ignore[index]
    assert (await store.get_agent("a1"))["call_id"] == "redial"  # type: ignore[index]


async def test_cancelling_a_queued_callback_takes_it_out_of_routing(store: QueueStore) -> None:
    await queue(store, "booker", ani="+15550002")
    await book(store, "booker", "cb1")
    await hang_up(store, "booker")
    assert await store.waiting("billing") == ["cb1"]
    await store.cancel_callback("cb1", by="super1", ttl_s=600)
    assert await store.waiting("billing") == []
    call = await store.get_call("cb1")
    assert call is not None and (call["state"], call["outcome"]) == ("ended", "cancelled")
    assert await store.set_agent_state("a1", AgentState.AVAILABLE) is None


async def test_an_agent_not_answering_a_confirmed_callback_keeps_the_customer_on_that_worker(
        store: QueueStore) -> None:
    await store.register_worker("w0", "h:1", ttl_s=30, slots=2)
    await store.register_worker("w1", "h:2", ttl_s=30, slots=2)
    await queue(store, "booker", ani="+15550002")
    place = await book(store, "booker", "cb1")
    await hang_up(store, "booker")
    offer = await store.set_agent_state("a1", AgentState.AVAILABLE)
    assert offer is not None and offer.dial
    worker = (await store.get_call("cb1"))["worker"]  # type: ignore[index]
    await store.callback_dialing("cb1", offer.offer_id)
    await store.callback_confirmed("cb1", offer.offer_id)
    await queue(store, "late", ani="+15550003")
    # agent a1 does not answer: the customer waits at their place, on the worker holding their leg
    assert await store.offer_failed("cb1", offer.offer_id, "ring_no_answer") is None
    assert await store.waiting("billing") == ["cb1", "late"]
    assert await store.redis.zscore(store.keys.waiting("billing"), "cb1") == place
    again = await store.set_agent_state("a2", AgentState.AVAILABLE)
    assert again is not None and again.call_id == "cb1" and again.is_callback and not again.dial
    assert [o.offer_id for o in await drain_inbox(store, worker)] == [offer.offer_id, again.offer_id]
    with pytest.raises(Conflict):  # a re-offer never dials the customer again
        await store.callback_dialing("cb1", again.offer_id)
    assert await store.offer_answered("cb1", again.offer_id) == "a2"
