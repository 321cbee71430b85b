"""The record side of call control (lua/scripts/call_control.lua) on a real Redis: states, the agents'
states, hold time, transfers and events move together, and every refusal leaves everything as it was.
The media side runs in tests/e2e/test_call_control.py."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from ivr.core.errors import Conflict, NotFound
from ivr.core.events import AgentState
from ivr.queues.store import QueueStore

PREFIX = "cc"


@pytest.fixture
def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX)


async def events(store: QueueStore, *types: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type, e.data) for e in await store.read_events("0-0") if not types or e.type in types]


async def connected(store: QueueStore, cid: str = "c1") -> None:
    """Call ``cid`` talking to agent a1 (billing); a2 (support) is logged in and available."""
    await store.register_worker("w0", "host:1", ttl_s=30, slots=2)
    for aid, skill in (("a1", "billing"), ("a2", "support")):
        await store.register_agent(aid, name=aid, skills={skill: 3}, sip_uri=f"sip:{aid}@127.0.0.1:5999",
                                   languages=[])
    await store.set_agent_state("a1", AgentState.AVAILABLE)
    await store.call_start(cid, "w0", ani="+15550001", dnis="1000", hotline="demo", language="en", plan_version="v1")
    offer = await store.enqueue(cid, queue="billing", skill="billing", priority=3, journey={"steps": ["x"]})
    assert offer is not None
    await store.offer_answered(cid, offer.offer_id)
    await store.set_agent_state("a2", AgentState.AVAILABLE)


async def state(store: QueueStore, cid: str = "c1") -> str:
    call = await store.get_call(cid)
    assert call is not None
    return str(call["state"])


async def agent_state(store: QueueStore, aid: str) -> str:
    agent = await store.get_agent(aid)
    assert agent is not None
    return str(agent["state"])


async def test_hold_and_resume_count_the_time_held_once_each(store: QueueStore) -> None:
    await connected(store)
    assert (await store.call_control("c1", "hold", by="a1"))["changed"] is True
    assert (await store.call_control("c1", "hold", by="a1"))["changed"] is False  # idempotent
    assert await state(store) == "held"
    assert (await store.call_control("c1", "resume", by="a1"))["changed"] is True
    assert (await store.call_control("c1", "resume", by="a1"))["changed"] is False
    call = await store.get_call("c1")
    assert call and call["state"] == "connected" and "held_at" not in call
    assert int(call["hold_count"]) == 1 and float(call["hold_s"]) >= 0
    assert [t for t, _ in await events(store, "call.held", "call.resumed")] == ["call.held", "call.resumed"]


async def test_a_consult_reserves_the_target_and_completing_it_hands_the_call_over(store: QueueStore) -> None:
    await connected(store)
    res = await store.call_control("c1", "consult", by="a1", a1="agent", a2="a2")
    assert res["agent_id"] == "a2" and res["sip_uri"].startswith("sip:a2@")
    assert await state(store) == "consulting" and await agent_state(store, "a2") == "reserved"
    with pytest.raises(Conflict) as wrong:  # not answered yet: nothing to complete
        await store.call_control("c1", "consult_complete", by="a1")
    assert wrong.value.code == "call.wrong_state"
    await store.call_control("c1", "consult_answered", by="a1")
    assert await agent_state(store, "a2") == "oncall"
    await store.call_control("c1", "consult_complete", by="a1", wrapup_s=5)
    call = await store.get_call("c1")
    assert call and call["state"] == "connected" and call["agent_id"] == "a2" and "consult" not in call
    assert await agent_state(store, "a1") == "wrapup"
    transfers = json.loads(call["transfers"]) if isinstance(call["transfers"], str) else call["transfers"]
    assert transfers[-1]["mode"] == "consult" and transfers[-1]["from_agent"] == "a1"
    ended = await store.end_call("c1", reason="caller_hangup", wrapup_s=0, ttl_s=60)
    assert ended == "completed" and await agent_state(store, "a2") == "available"


async def test_a_failed_consult_frees_the_target_and_returns_the_caller_to_the_agent(store: QueueStore) -> None:
    await connected(store)
    await store.call_control("c1", "consult", by="a1", a1="queue", a2="support")
    await store.call_control("c1", "consult_failed", by="a1", a1="no_answer")
    assert await state(store) == "connected" and await agent_state(store, "a2") == "available"
    [(_, failed)] = await events(store, "call.consult_failed")
    assert failed["reason"] == "no_answer" and failed["agent_id"] == "a1"


async def test_a_caller_hanging_up_mid_consult_releases_both_agents(store: QueueStore) -> None:
    await connected(store)
    await store.call_control("c1", "consult", by="a1", a1="agent", a2="a2")
    assert await store.end_call("c1", reason="caller_hangup", wrapup_s=0, ttl_s=60) == "completed"
    assert await agent_state(store, "a1") == "available" and await agent_state(store, "a2") == "available"
    call = await store.get_call("c1")
    assert call and call["state"] == "ended" and float(call["hold_s"]) >= 0 and "held_at" not in call


async def test_conference_then_the_first_agent_leaves(store: QueueStore) -> None:
    await connected(store)
    await store.call_control("c1", "consult", by="a1", a1="agent", a2="a2")
    await store.call_control("c1", "consult_answered", by="a1")
    await store.call_control("c1", "conference", by="a1")
    call = await store.get_call("c1")
    assert call and call["state"] == "conferenced"
    with pytest.raises(NotFound):
        await store.call_control("c1", "conference_leave", by="s1", a1="a9")
    res = await store.call_control("c1", "conference_leave", by="a1", a1="a1", wrapup_s=0)
    assert res["agent_id"] == "a2" and await state(store) == "connected"
    assert await agent_state(store, "a1") == "available" and await agent_state(store, "a2") == "oncall"


async def test_a_blind_transfer_to_an_agent_offers_it_and_releases_the_sender(store: QueueStore) -> None:
    await connected(store)
    res = await store.call_control("c1", "transfer", by="a1", a1="agent", a2="a2", wrapup_s=0)
    assert json.loads(res["offer"])["agent_id"] == "a2"
    call = await store.get_call("c1")
    assert call and call["state"] == "offered" and call["transferred_from"] == "a1"
    assert await agent_state(store, "a1") == "available" and await agent_state(store, "a2") == "reserved"
    [(_, offered)] = [e for e in await events(store, "call.offered") if e[1]["agent_id"] == "a2"]
    assert offered["transferred_from"] == "a1"


@pytest.mark.parametrize(("op", "a1", "a2", "code"), [
    ("transfer", "agent", "a1", "agent.not_available"),   # to itself
    ("transfer", "agent", "nobody", "agent.not_found"),
    ("consult", "agent", "a1", "agent.not_available"),
    ("consult", "queue", "sales", "queue.no_agent_available"),
    ("consult_swap", "caller", "", "call.wrong_state"),
    ("conference", "", "", "call.wrong_state"),
    ("conference_leave", "a1", "", "call.wrong_state"),
    ("resume_all", "", "", "request.invalid"),
])
async def test_refusals_change_nothing(store: QueueStore, op: str, a1: str, a2: str, code: str) -> None:
    await connected(store)
    before = await store.get_call("c1")
    agents = [await store.get_agent(a) for a in ("a1", "a2")]
    with pytest.raises(Exception) as refused:
        await store.call_control("c1", op, by="a1", a1=a1, a2=a2)
    assert getattr(refused.value, "code", "") == code
    assert await store.get_call("c1") == before
    assert [await store.get_agent(a) for a in ("a1", "a2")] == agents


async def test_an_ended_call_refuses_every_step(store: QueueStore) -> None:
    await connected(store)
    await store.end_call("c1", reason="caller_hangup", wrapup_s=0, ttl_s=60)
    with pytest.raises(Conflict) as ended:
        await store.call_control("c1", "hold", by="a1")
    assert ended.value.code == "call.ended"
    with pytest.raises(NotFound):
        await store.call_control("nope", "hold", by="a1")


async def test_an_outside_number_leaving_a_conference_leaves_the_caller_with_the_agent(store: QueueStore) -> None:
    await connected(store)
    await store.call_control("c1", "consult", by="a1", a1="number", a2="+15550777")
    await store.call_control("c1", "consult_answered", by="a1")
    await store.call_control("c1", "conference", by="a1")
    res = await store.call_control("c1", "conference_leave", by="target_hangup", a1="")
    call = await store.get_call("c1")
    assert res["agent_id"] == "a1" and call and call["state"] == "connected" and "consult" not in call
    assert await agent_state(store, "a1") == "oncall"


async def test_a_wrapup_extension_counts_in_the_handle_time_of_the_call_it_wraps_up(store: QueueStore) -> None:
    await connected(store)
    await store.end_call("c1", reason="caller_hangup", wrapup_s=10, ttl_s=60)

    async def handle_ms() -> int:
        return sum([int(iv.counts.get("handle_ms", 0))
                    async for iv in store.iter_intervals("billing", 0, int(time.time()) + 86400)])

    before = await handle_ms()
    deadline = await store.extend_wrapup("a1", 30, max_s=600, by="a1")
    assert deadline > 0 and await handle_ms() - before == pytest.approx(30_000, abs=1_000)
