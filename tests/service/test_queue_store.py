"""The queue core against a real Redis: matching, offers, wrap-up, abandon, ordering."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis

from ivr.core.errors import Conflict, NotFound
from ivr.core.events import AgentState
from ivr.queues.scripts import lua_script
from ivr.queues.store import QueueStore


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    s = QueueStore(redis, prefix="t")
    await s.register_agent("a1", name="A1", skills={"billing": 3}, sip_uri="sip:a1@127.0.0.1:5999",
                           languages=["en"])
    await s.register_agent("a2", name="A2", skills={"billing": 5, "sales": 2}, sip_uri="sip:a2@x",
                           languages=["en"])
    return s


async def start(store: QueueStore, cid: str, worker: str = "w0") -> None:
    await store.call_start(cid, worker, ani="+15550001", dnis="1000", hotline="demo", language="en",
                           plan_version="v1")


async def test_new_agents_start_offline_and_nothing_is_offered(store: QueueStore) -> None:
    await start(store, "c1")
    assert await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={}) is None
    assert await store.waiting("billing") == ["c1"]
    assert (await store.get_agent("a1"))["state"] == "offline"


async def test_longest_idle_agent_gets_the_call_and_worker_inbox_holds_the_offer(store: QueueStore) -> None:
    assert await store.set_agent_state("a2", AgentState.AVAILABLE) is None
    await asyncio.sleep(0.005)
    await store.set_agent_state("a1", AgentState.AVAILABLE)
    await start(store, "c1", worker="w7")
    offer = await store.enqueue("c1", queue="billing", skill="billing", priority=0,
                                journey={"steps": [{"node": "main", "digit": "2"}]})
    assert offer is not None and offer.agent_id == "a2" and offer.call_id == "c1"
    assert await store.next_message("w7", timeout_s=0.1) == offer
    call = await store.get_call("c1")
    assert call is not None and call["state"] == "offered" and call["agent_id"] == "a2"
    assert (await store.get_agent("a2"))["state"] == "reserved"
    assert await store.waiting("billing") == []
    events = await store.read_events("0-0")
    offered = [e for e in events if e.type == "call.offered"]
    assert len(offered) == 1
    assert offered[0].data["journey"] == {"steps": [{"node": "main", "digit": "2"}]}
    assert offered[0].data["agent_id"] == "a2" and offered[0].data["ani"] == "+15550001"


async def test_agent_becoming_available_takes_highest_priority_then_oldest(store: QueueStore) -> None:
    for cid, prio in (("c1", 0), ("c2", 5), ("c3", 5)):
        await start(store, cid)
        await store.enqueue(cid, queue="billing", skill="billing", priority=prio, journey={})
        await asyncio.sleep(0.002)
    offer = await store.set_agent_state("a1", AgentState.AVAILABLE)
    assert offer is not None and offer.call_id == "c2"
    offer = await store.set_agent_state("a2", AgentState.AVAILABLE)
    assert offer is not None and offer.call_id == "c3"
    assert await store.waiting("billing") == ["c1"]


async def test_answer_then_hangup_goes_through_wrapup_back_to_available(store: QueueStore) -> None:
    await store.set_agent_state("a1", AgentState.AVAILABLE)
    await start(store, "c1")
    offer = await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={})
    assert offer is not None
    assert await store.offer_answered("c1", offer.offer_id) == "a1"
    assert (await store.get_agent("a1"))["state"] == "oncall"
    assert await store.end_call("c1", reason="caller_hangup", wrapup_s=0.2, ttl_s=60) == "completed"
    assert (await store.get_agent("a1"))["state"] == "wrapup"
    assert await store.active_calls() == set()
    assert await store.release_wrapups() == []
    await asyncio.sleep(0.25)
    assert await store.release_wrapups() == []
    agent = await store.get_agent("a1")
    assert agent is not None and agent["state"] == "available" and "call_id" not in agent
    call = await store.get_call("c1")
    assert call is not None and call["state"] == "ended" and call["outcome"] == "completed"
    assert 0 < await store.redis.ttl(store.keys.call("c1")) <= 60


async def test_offer_failure_puts_caller_back_at_head_and_agent_on_break(store: QueueStore) -> None:
    await start(store, "c1")
    await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={})
    await start(store, "c2")
    await store.enqueue("c2", queue="billing", skill="billing", priority=0, journey={})
    offer = await store.set_agent_state("a1", AgentState.AVAILABLE)
    assert offer is not None and offer.call_id == "c1"
    assert await store.offer_failed("c1", offer.offer_id, "ring_no_answer") is None
    assert await store.waiting("billing") == ["c1", "c2"]
    agent = await store.get_agent("a1")
    assert agent is not None and agent["state"] == "break" and agent["reason"] == "ring_no_answer"
    with pytest.raises(Conflict):
        await store.offer_answered("c1", offer.offer_id)


async def test_abandon_while_offered_frees_the_agent_for_the_next_caller(store: QueueStore) -> None:
    await start(store, "c1")
    await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={})
    await start(store, "c2")
    await store.enqueue("c2", queue="billing", skill="billing", priority=0, journey={})
    await store.set_agent_state("a1", AgentState.AVAILABLE)
    assert await store.end_call("c1", reason="caller_hangup", wrapup_s=5, ttl_s=60) == "abandoned"
    agent = await store.get_agent("a1")
    assert agent is not None and agent["state"] == "reserved" and agent["call_id"] == "c2"


async def test_busy_agent_cannot_change_state_and_unknown_agent_is_not_found(store: QueueStore) -> None:
    await store.set_agent_state("a1", AgentState.AVAILABLE)
    await start(store, "c1")
    await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={})
    with pytest.raises(Conflict) as exc:
        await store.set_agent_state("a1", AgentState.BREAK)
    assert exc.value.code == "agent.busy"
    with pytest.raises(NotFound):
        await store.set_agent_state("nobody", AgentState.AVAILABLE)
    with pytest.raises(Conflict):
        await store.set_agent_state("a2", AgentState.ONCALL)
    with pytest.raises(NotFound):
        await store.enqueue("never-started", queue="billing", skill="billing", priority=0, journey={})


async def test_dead_workers_calls_are_lost_and_their_agents_released(store: QueueStore) -> None:
    await store.register_worker("w9", "h:1", ttl_s=1)
    await store.register_agent("a3", name="A3", skills={"billing": 1}, sip_uri="sip:a3@x", languages=["en"])
    for cid in ("talking", "ringing", "waiting", "menu"):
        await start(store, cid, worker="w9")
    await store.set_agent_state("a1", AgentState.AVAILABLE)
    offer = await store.enqueue("talking", queue="billing", skill="billing", priority=0, journey={})
    assert offer is not None
    await store.offer_answered("talking", offer.offer_id)
    await store.set_agent_state("a2", AgentState.AVAILABLE)
    assert await store.enqueue("ringing", queue="billing", skill="billing", priority=0, journey={})
    assert await store.enqueue("waiting", queue="billing", skill="billing", priority=0, journey={}) is None
    await start(store, "elsewhere", worker="w1")  # another worker's call is not touched

    assert await store.housekeeping("me", lease_ms=5000, wrapup_s=0, ttl_s=60) == {}  # w9 still alive
    await asyncio.sleep(1.1)
    assert await store.housekeeping("other", lease_ms=5000, wrapup_s=0, ttl_s=60) is None  # not leader
    assert await store.housekeeping("me", lease_ms=5000, wrapup_s=0, ttl_s=60) == {"w9": 4}
    for cid in ("talking", "ringing", "waiting", "menu"):
        call = await store.get_call(cid)
        assert call is not None and call["outcome"] == "lost" and call["end_reason"] == "worker_lost", call
    assert await store.waiting("billing") == []
    assert await store.active_calls() == {"elsewhere"}
    for aid in ("a1", "a2"):
        agent = await store.get_agent(aid)
        assert agent is not None and agent["state"] == "available" and "call_id" not in agent
    assert await store.redis.llen(store.keys.worker_inbox("w9")) == 0
    assert [e.data["calls"] for e in await store.read_events("0-0") if e.type == "worker.lost"] == [4]


async def test_housekeeping_releases_wrapups_when_due(store: QueueStore) -> None:
    await store.set_agent_state("a1", AgentState.AVAILABLE)
    await start(store, "c1")
    await store.register_worker("w0", "h:1")
    offer = await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={})
    assert offer is not None
    await store.offer_answered("c1", offer.offer_id)
    await store.end_call("c1", reason="caller_hangup", wrapup_s=0.3, ttl_s=60)
    await store.housekeeping("me", lease_ms=5000, wrapup_s=0, ttl_s=60)
    assert (await store.get_agent("a1"))["state"] == "wrapup"
    await asyncio.sleep(0.35)
    await store.housekeeping("me", lease_ms=5000, wrapup_s=0, ttl_s=60)
    assert (await store.get_agent("a1"))["state"] == "available"


async def test_agent_leaving_first_goes_to_wrapup_and_end_call_leaves_the_agent_alone(store: QueueStore) -> None:
    await store.set_agent_state("a1", AgentState.AVAILABLE)
    await start(store, "c1")
    offer = await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={})
    assert offer is not None
    await store.offer_answered("c1", offer.offer_id)
    # the agent hangs up; the caller stays for a survey
    assert await store.agent_left("c1", wrapup_s=0.3) == "a1"
    agent = await store.get_agent("a1")
    assert agent is not None and agent["state"] == "wrapup"
    call = await store.get_call("c1")
    assert call is not None and call["state"] == "ivr" and call["agent_id"] == "a1" and call["agent_left_at"]
    assert await store.agent_left("c1", wrapup_s=0.3) is None  # twice: nothing more
    left = [e.data for e in await store.read_events("0-0") if e.type == "call.agent_left"]
    assert len(left) == 1 and left[0]["agent_id"] == "a1" and left[0]["queue"] == "billing", left
    # wrap-up ends while the caller is still in the survey: the agent takes the next caller
    await asyncio.sleep(0.35)
    await store.release_wrapups()
    await start(store, "c2")
    offer2 = await store.enqueue("c2", queue="billing", skill="billing", priority=0, journey={})
    assert offer2 is not None and offer2.agent_id == "a1"
    await store.offer_answered("c2", offer2.offer_id)
    # the first call ends later: answered (completed), and the agent (now on c2) is not touched
    assert await store.end_call("c1", reason="ivr_hangup", wrapup_s=5, ttl_s=60) == "completed"
    agent = await store.get_agent("a1")
    assert agent is not None and agent["state"] == "oncall" and agent["call_id"] == "c2"
    states = [e.data["state"] for e in await store.read_events("0-0") if e.type == "agent.state"]
    assert states == ["available", "reserved", "oncall", "wrapup", "available", "reserved", "oncall"]


async def test_agent_left_with_no_wrapup_makes_the_agent_available_and_matched(store: QueueStore) -> None:
    await store.set_agent_state("a1", AgentState.AVAILABLE)
    await start(store, "c1")
    offer = await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={})
    assert offer is not None
    await store.offer_answered("c1", offer.offer_id)
    await start(store, "c2")
    assert await store.enqueue("c2", queue="billing", skill="billing", priority=0, journey={}) is None
    assert await store.agent_left("c1", wrapup_s=0) == "a1"
    agent = await store.get_agent("a1")
    assert agent is not None and agent["state"] == "reserved" and agent["call_id"] == "c2"
    assert await store.next_message("w0", timeout_s=0.1) == offer  # c1's own offer, then c2's
    nxt = await store.next_message("w0", timeout_s=0.1)
    assert nxt is not None and nxt.call_id == "c2"


async def test_agent_left_does_nothing_unless_connected(store: QueueStore) -> None:
    await start(store, "c1")
    assert await store.agent_left("c1", wrapup_s=1) is None  # in the IVR
    await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={})
    assert await store.agent_left("c1", wrapup_s=1) is None  # waiting
    call = await store.get_call("c1")
    assert call is not None and call["state"] == "queued"
    assert await store.end_call("c1", reason="caller_hangup", wrapup_s=1, ttl_s=60) == "abandoned"
    assert await store.agent_left("c1", wrapup_s=1) is None  # ended
    assert await store.agent_left("never", wrapup_s=1) is None
    assert not [e for e in await store.read_events("0-0") if e.type == "call.agent_left"]


async def test_a_redis_that_lost_its_scripts_gets_them_again_and_every_store_shares_one_text(
        store: QueueStore, redis: Redis) -> None:
    """A restarted (or new) Redis knows no script: the first run loads it (NOSCRIPT, then EVALSHA
    again). The scripts' text is made once per process, whatever the number of stores."""
    await redis.script_flush()
    await start(store, "c1")
    assert await store.get_call("c1") is not None
    assert (await redis.script_exists(lua_script("call_start").sha)) == [True]
    other = QueueStore(redis, prefix="t")
    assert lua_script("call_start") is lua_script("call_start")  # one object: one copy of ~120 k characters
    await start(other, "c2")
    assert await other.get_call("c2") is not None


async def test_end_call_sets_the_given_fields_in_the_same_script_and_refuses_other_names(store: QueueStore) -> None:
    """The session's end is one round trip: the journey and the RTP figures go on the record with it."""
    await store.call_start("c9", "w0", ani="+15550009", dnis="1000", hotline="demo", language="en", plan_version="v1")
    journey = json.dumps({"steps": [{"node": "welcome", "digit": "2", "outcome": "billing"}]})
    rtp = json.dumps({"caller": {"rx": 50, "lost": 0}})
    outcome = await store.end_call("c9", reason="caller_hangup", wrapup_s=0, ttl_s=60,
                                   fields={"journey": journey, "rtp": rtp})
    record = await store.get_call("c9")
    assert record is not None
    assert record["journey"] == json.loads(journey) and json.loads(record["rtp"]) == json.loads(rtp)
    assert outcome == "ivr" and record["outcome"] == "ivr", record  # ended in the menu: an IVR call
    ended = [e for e in await store.read_events("0-0") if e.type == "call.ended"]
    assert [e.data["call_id"] for e in ended] == ["c9"]
    for bad in ("State", "a b", "", "x" * 40, "state\n"):
        with pytest.raises(ValueError):
            await store.end_call("c9", reason="caller_hangup", wrapup_s=0, ttl_s=60, fields={bad: "1"})
    # a call that was never started: its end creates no record from the fields
    await store.end_call("nope", reason="caller_hangup", wrapup_s=0, ttl_s=60, fields={"journey": journey})
    assert await store.get_call("nope") is None
