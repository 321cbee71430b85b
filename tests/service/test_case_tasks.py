"""Follow-up tasks of complaint cases against a real Redis: a case nearing its due time offered to an
agent (the owner first, else the longest idle skilled agent whose phone can ring; overdue cases first
and to anyone), accepted (the click-to-dial call in the same step), declined or expired (the agent
kept from the case for 10 minutes), given back when the agent leaves, the customer's answer
contacting the case, concurrent accepts, and the worker's housekeeping running the scan. The clock
is driven through ``now_ms``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from ivr.core import event_catalogue as cat
from ivr.core.config import Settings
from ivr.core.errors import BadRequest, Conflict, NotFound
from ivr.core.events import AgentState
from ivr.queues.store import QueueStore
from ivr.runtime.worker import Worker

PREFIX = "ctk"
MIN = 60_000
HOUR = 60 * MIN
BEFORE = 30 * MIN      # cases.offer_before_s
TIMEOUT = MIN          # cases.task_timeout_s
NUMBER = "+821055501234"
T0 = (int(time.time() * 1000) // 1000) * 1000  # the controlled clock starts near the server's


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    s = QueueStore(redis, prefix=PREFIX)
    await s.register_worker("w0", "host:1", ttl_s=60, slots=4)
    return s


async def agent(store: QueueStore, aid: str, *, skills: dict[str, int] | None = None, sip: bool = True,
                phone: str = "", available: bool = True) -> None:
    """An agent (skill ``complaints`` unless told), available unless told; ``phone="registered"``:
    its phone must register at the edge (record_phones) before anything can ring it."""
    await store.register_agent(aid, name=aid, skills={"complaints": 1} if skills is None else skills,
                               sip_uri=f"sip:{aid}@127.0.0.1:5090" if sip else None, languages=["en"], phone=phone)
    if available:
        await store.set_agent_state(aid, AgentState.AVAILABLE)
        await asyncio.sleep(0.005)  # the next agent becomes available a few ms later: idle order is defined


async def open_case(store: QueueStore, *, at: int = T0, due_in: int = HOUR, owner: str = "",
                    customer: str = NUMBER, tier: str = "urgent") -> str:
    case = await store.open_case(tier=tier, reason="no water since Monday", customer=customer,
                                 customer_name="Zoë", crm_id="crm-7", hotline="demo", opened_by="ivr:demo",
                                 owner=owner, due_at_ms=at + due_in, now_ms=at)
    return str(case["id"])


async def offer(store: QueueStore, now: int) -> int:
    return await store.case_offer_tasks(before_ms=BEFORE, skill="complaints", timeout_ms=TIMEOUT, now_ms=now)


async def events(store: QueueStore, *types: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type, e.data) for e in await store.events_after("0-0", 5000) if not types or e.type in types]


async def offered_to(store: QueueStore) -> list[tuple[str, str]]:
    return [(d["case_id"], d["agent_id"]) for _, d in await events(store, "case.task_offered")]


async def inbox(redis: Redis, worker: str = "w0") -> list[dict[str, Any]]:
    return [json.loads(m) for m in await redis.lrange(f"{PREFIX}:worker:{worker}:inbox", 0, -1)]


async def agent_view(store: QueueStore, aid: str) -> tuple[str, str, str]:
    a = await store.get_agent(aid) or {}
    return a["state"], a.get("reason", ""), a.get("task", "")


async def case_of(store: QueueStore, case_id: str) -> dict[str, Any]:
    case = await store.get_case(case_id)
    assert case is not None
    return case


async def test_a_case_is_offered_once_from_offer_before_its_due_time(store: QueueStore) -> None:
    await agent(store, "ada")
    cs1 = await open_case(store)                                    # urgent: due in 1 h
    assert await offer(store, T0 + HOUR - BEFORE - 1) == 0           # not yet
    assert await agent_view(store, "ada") == ("available", "", "")
    assert await events(store, "case.task_offered") == []
    assert await offer(store, T0 + HOUR - BEFORE) == 1               # 30 min after it opened
    assert await offer(store, T0 + HOUR - BEFORE + 1000) == 0        # once: the task is out
    assert await agent_view(store, "ada") == ("reserved", "task", cs1)
    case = await case_of(store, cs1)
    at = T0 + HOUR - BEFORE
    assert (case["task_agent"], case["task_at"], case["task_expires"]) == ("ada", at, at + TIMEOUT)
    assert case["status"] == "open"
    [(_, data)] = await events(store, "case.task_offered")
    assert data == {"case_id": cs1, "agent_id": "ada", "tier": "urgent", "customer": NUMBER, "due_at": T0 + HOUR,
                    "overdue": False, "reason": "no water since Monday", "task_expires": at + TIMEOUT,
                    "owner": "", "customer_name": "Zoë", "crm_id": "crm-7", "hotline": "demo", "task_kind": "deadline",
                    "ts": at, "v": 2}
    assert isinstance(cat.parse("case.task_offered", data), cat.CaseTaskOffered)
    assert [d for t, d in await events(store, "agent.state")][-1] | {"ts": 0} == {
        "agent_id": "ada", "state": "reserved", "previous": "available", "reason": "task", "ts": 0, "v": 2}
    # a case opened closer to its deadline than offer_before is offered at once (to the next agent)
    await agent(store, "bob")
    cs2 = await open_case(store, at=at + 30_000, due_in=10 * MIN, tier="important")
    assert await offer(store, at + 30_000) == 1
    assert (await offered_to(store))[-1] == (cs2, "bob")


async def test_the_owner_first_else_the_longest_idle_skilled_agent_whose_phone_can_ring(
        store: QueueStore, redis: Redis) -> None:
    await agent(store, "a-unskilled", skills={"billing": 3})          # longest idle, but without the skill
    await agent(store, "b-unregistered", phone="registered")          # its phone never registered
    await agent(store, "c-no-sip", sip=False)                         # no phone at all
    await agent(store, "d-skilled")
    await agent(store, "e-skilled")
    await agent(store, "owner", skills={})                             # owns the first case, no skill needed
    at = int(time.time() * 1000) - BEFORE  # offered by the server's clock: the edge's registrations count by it
    own = await open_case(store, at=at, owner="owner")
    other = await open_case(store, at=at, due_in=HOUR + 1)
    assert await offer(store, at + HOUR - BEFORE + 1) == 2
    assert await offered_to(store) == [(own, "owner"), (other, "d-skilled")]
    # with the phone registered at the edge, that agent (idle longer than e) gets the next case
    await store.record_phones({"b-unregistered": 1}, stale_after_s=60)
    third = await open_case(store, at=at, due_in=HOUR + 2)
    assert await offer(store, at + HOUR - BEFORE + 2) == 1
    assert (await offered_to(store))[-1] == (third, "b-unregistered")
    # the owner goes on break: its task goes back (to e, the one skilled agent left), and a case of
    # an owner who cannot take it is not held back either
    await store.set_agent_state("owner", AgentState.BREAK)
    fourth = await open_case(store, at=at, owner="owner", due_in=HOUR + 3)
    assert await offer(store, at + HOUR - BEFORE + 3) == 1
    assert (await offered_to(store))[-1] == (own, "e-skilled")
    await agent(store, "f-skilled")
    assert await offer(store, at + HOUR - BEFORE + 3) == 1
    assert (await offered_to(store))[-1] == (fourth, "f-skilled")
    # nobody left who may take a case: a-unskilled and c-no-sip never get one
    fifth = await open_case(store, at=at, due_in=HOUR + 4)
    assert await offer(store, at + HOUR - BEFORE + 4) == 0
    assert (await case_of(store, fifth))["task_agent"] == ""
    assert await agent_view(store, "a-unskilled") == ("available", "", "")
    assert await agent_view(store, "c-no-sip") == ("available", "", "")


async def test_overdue_cases_come_first_and_go_to_any_agent(store: QueueStore) -> None:
    later = await open_case(store, due_in=HOUR)
    overdue = await open_case(store, due_in=10 * MIN)
    now = T0 + 20 * MIN                                  # both within offer_before; the second one overdue
    assert await store.case_deadlines(now_ms=now) == 1
    await agent(store, "zed", skills={"billing": 1})     # no complaints skill
    assert await offer(store, now) == 1                  # the overdue case escalates to anyone
    assert await offered_to(store) == [(overdue, "zed")]
    [(_, data)] = await events(store, "case.task_offered")
    assert data["overdue"] is True
    assert (await case_of(store, later))["task_agent"] == ""  # in time: skilled agents (or its owner) only
    # one skilled agent, two cases waiting: the earlier due (overdue) one is offered first
    await store.case_task_decline(overdue, "zed", now_ms=now)
    await store.set_agent_state("zed", AgentState.BREAK)
    await agent(store, "sam")
    assert await offer(store, now + 1) == 1
    assert (await offered_to(store))[-1] == (overdue, "sam")


async def test_no_agent_nothing_then_offered_when_one_becomes_available(store: QueueStore) -> None:
    await agent(store, "ada", available=False)
    cs1 = await open_case(store)
    assert await offer(store, T0 + HOUR - BEFORE) == 0
    assert await offer(store, T0 + HOUR - BEFORE + 500) == 0
    assert await events(store, "case.task_offered") == []
    assert (await case_of(store, cs1))["task_agent"] == ""
    await store.set_agent_state("ada", AgentState.AVAILABLE)
    assert await offer(store, T0 + HOUR - BEFORE + 1000) == 1
    assert await offered_to(store) == [(cs1, "ada")]


async def test_accept_dials_the_customer_in_the_same_step(store: QueueStore, redis: Redis) -> None:
    await agent(store, "ada")
    await agent(store, "bob")
    cs1 = await open_case(store, owner="ada")
    now = T0 + HOUR - BEFORE
    assert await offer(store, now) == 1
    result = await store.case_task_accept(cs1, "ada", call_id="task-call-1", caller_id="+8215880000",
                                          hotline="demo", by="ada", now_ms=now + 5000)
    assert result == ("task-call-1", "dialing", "w0")
    call = await store.get_call("task-call-1") or {}
    assert (call["state"], call["direction"], call["kind"], call["agent_id"], call["ani"], call["number"],
            call["dnis"], call["hotline"], call["worker"], call["case_id"], call["originated_by"]) == (
        "dialing", "outbound", "outbound", "ada", NUMBER, NUMBER, "+8215880000", "demo", "w0", cs1, "ada"), call
    [msg] = await inbox(redis)
    assert (msg["type"], msg["kind"], msg["dial"], msg["call_id"], msg["agent_id"], msg["number"], msg["caller_id"],
            msg["sip_uri"], msg["offer_id"]) == ("offer", "outbound", True, "task-call-1", "ada", NUMBER,
                                                "+8215880000", "sip:ada@127.0.0.1:5090", "task-call-1.1")
    a = await store.get_agent("ada") or {}
    assert (a["state"], a["reason"], a["call_id"], a.get("task")) == ("reserved", "outbound", "task-call-1", None)
    case = await case_of(store, cs1)
    assert (case["task_agent"], case["task_at"], case["task_expires"], case["task_call"], case["calls"]) == (
        "", None, None, "task-call-1", ["task-call-1"])
    assert case["status"] == "open"                      # contacted once the customer answers
    mine = [(t, d) for t, d in await events(store) if d.get("call_id") == "task-call-1"]
    assert [t for t, _ in mine] == ["call.started", "call.offered", "case.task_accepted"]
    assert mine[2][1] == {"case_id": cs1, "agent_id": "ada", "call_id": "task-call-1", "ts": now + 5000, "v": 2}
    assert isinstance(cat.parse("case.task_accepted", mine[2][1]), cat.CaseTaskAccepted)
    assert mine[1][1]["direction"] == "outbound" and mine[1][1]["ani"] == NUMBER  # the pop shows the customer
    # while its call is under way the case is offered to nobody else (bob stays available)
    assert await offer(store, now + 10_000) == 0
    assert await agent_view(store, "bob") == ("available", "", "")


async def test_accept_refused_for_another_agent_after_expiry_and_without_a_number(store: QueueStore,
                                                                                 redis: Redis) -> None:
    await agent(store, "ada")
    await agent(store, "bob")
    cs1 = await open_case(store)
    now = T0 + HOUR - BEFORE
    assert await offer(store, now) == 1                                  # to ada (idle longer)
    kw: dict[str, Any] = {"caller_id": "+8215880000", "hotline": "demo", "by": "bob", "now_ms": now + 1}
    with pytest.raises(Conflict) as gone:
        await store.case_task_accept(cs1, "bob", call_id="c-bob", **kw)
    assert gone.value.code == "case.task_gone"
    with pytest.raises(Conflict) as gone:
        await store.case_task_decline(cs1, "bob", now_ms=now + 1)
    assert gone.value.code == "case.task_gone"
    with pytest.raises(NotFound):
        await store.case_task_accept("CS999", "ada", call_id="c-x", **kw)
    for bad in [{"call_id": "a b"}, {"call_id": ""}, {"caller_id": "x\ny"}, {"by": ""}]:
        with pytest.raises(BadRequest):
            await store.case_task_accept(cs1, "ada", **{**kw, "call_id": "c-ok", **bad})
    for case_id, aid in [("cs1", "ada"), (cs1, "a b"), (cs1, "")]:
        with pytest.raises(BadRequest):
            await store.case_task_accept(case_id, aid, call_id="c-ok", **kw)
    with pytest.raises(BadRequest):
        await store.case_task_decline(cs1, "ada", reason="no way!")
    # expired (past task_expires, before the scan gave it back): refused; the scan gives it back
    with pytest.raises(Conflict) as gone:
        await store.case_task_accept(cs1, "ada", call_id="c-late", **{**kw, "now_ms": now + TIMEOUT + 1})
    assert gone.value.code == "case.task_gone"
    assert await offer(store, now + TIMEOUT + 1) == 1                   # ada's back, bob gets it
    with pytest.raises(Conflict) as gone:
        await store.case_task_accept(cs1, "ada", call_id="c-late", **{**kw, "now_ms": now + TIMEOUT + 2})
    assert gone.value.code == "case.task_gone"
    assert await store.get_call("c-bob") is None and await store.get_call("c-late") is None
    assert await inbox(redis) == []
    # a case without the customer's number: no call; the agent still holds the task (it may skip it)
    anonymous = await open_case(store, customer="", due_in=HOUR + 30_000)
    assert await offer(store, now + TIMEOUT + 4) == 1
    assert (await offered_to(store))[-1] == (anonymous, "ada")
    with pytest.raises(Conflict) as no_number:
        await store.case_task_accept(anonymous, "ada", call_id="c-anon", **{**kw, "now_ms": now + TIMEOUT + 5})
    assert no_number.value.code == "case.no_number"
    assert await agent_view(store, "ada") == ("reserved", "task", anonymous)
    assert await store.get_call("c-anon") is None and await inbox(redis) == []


async def test_decline_frees_the_agent_and_keeps_it_from_the_case_for_ten_minutes(store: QueueStore) -> None:
    await agent(store, "ada", skills={"complaints": 1, "billing": 1})
    await agent(store, "bob")
    cs1 = await open_case(store, owner="ada")
    now = T0 + HOUR - BEFORE
    assert await offer(store, now) == 1
    # a caller waits for billing meanwhile: declining gives ada the caller at once
    await store.call_start("in-1", "w0", ani="+15550009", dnis="1000", hotline="demo", language="en", plan_version="v")
    assert await store.enqueue("in-1", queue="billing", skill="billing", priority=0, journey={}) is None
    await store.case_task_decline(cs1, "ada", now_ms=now + 1000)
    [(_, declined)] = await events(store, "case.task_declined")
    assert declined == {"case_id": cs1, "agent_id": "ada", "reason": "declined", "ts": now + 1000, "v": 2}
    assert isinstance(cat.parse("case.task_declined", declined), cat.CaseTaskDeclined)
    a = await store.get_agent("ada") or {}
    assert (a["state"], a["call_id"], a.get("task")) == ("reserved", "in-1", None)  # offered the waiting caller
    states = [d for _, d in await events(store, "agent.state") if d["agent_id"] == "ada"]
    assert [(d["state"], d["reason"]) for d in states[-2:]] == [("available", "task_declined"), ("reserved", "offer")]
    assert (await case_of(store, cs1))["task_agent"] == ""
    # the next offer goes to bob, not the owner; bob declines too: nobody may take it for 10 minutes
    await store.end_call("in-1", reason="caller_hangup", wrapup_s=0, ttl_s=60)  # the caller gave up meanwhile
    assert await agent_view(store, "ada") == ("available", "caller_abandoned", "")
    assert await offer(store, now + 2000) == 1
    assert (await offered_to(store))[-1] == (cs1, "bob")
    await store.case_task_decline(cs1, "bob", reason="busy_with_other", now_ms=now + 3000)
    assert (await events(store, "case.task_declined"))[-1][1]["reason"] == "busy_with_other"
    assert await offer(store, now + 1000 + 10 * MIN - 1) == 0
    assert await agent_view(store, "ada") == ("available", "caller_abandoned", "")
    assert await offer(store, now + 1000 + 10 * MIN + 1) == 1        # ada's ten minutes are over
    assert (await offered_to(store))[-1] == (cs1, "ada")


async def test_a_task_neither_accepted_nor_declined_expires(store: QueueStore) -> None:
    await agent(store, "ada")
    cs1 = await open_case(store, owner="ada")
    now = T0 + HOUR - BEFORE
    assert await offer(store, now) == 1
    assert await offer(store, now + TIMEOUT) == 0                      # at task_expires: still ada's
    assert await agent_view(store, "ada") == ("reserved", "task", cs1)
    await agent(store, "bob")
    assert await offer(store, now + TIMEOUT + 1) == 1                  # expired: back, and to bob at once
    assert (await events(store, "case.task_declined"))[-1][1] | {"ts": 0} == {
        "case_id": cs1, "agent_id": "ada", "reason": "timeout", "ts": 0, "v": 2}
    assert await agent_view(store, "ada") == ("available", "task_timeout", "")
    assert await offered_to(store) == [(cs1, "ada"), (cs1, "bob")]
    assert await store.redis.zrange(store.keys.cases_tasks, 0, -1) == [cs1.encode()]


async def test_the_customers_answer_contacts_the_case_and_a_failed_call_offers_it_again(store: QueueStore) -> None:
    await agent(store, "ada")
    cs1 = await open_case(store, owner="ada")
    cs2 = await open_case(store, owner="ada", due_in=HOUR + 1)
    now = T0 + HOUR - BEFORE
    # the first call fails (the customer is busy): the case still waits and is offered again
    assert await offer(store, now) == 1
    await store.case_task_accept(cs1, "ada", call_id="call-a", caller_id="+8215880000", hotline="demo", by="ada",
                                 now_ms=now + 1)
    await store.originate_agent_answered("call-a", "call-a.1", "+8215880000")
    assert await store.originate_failed("call-a", "call-a.1", outcome="busy", reason="customer_busy",
                                        agent_state="available", ttl_s=60) == "busy"
    assert (await case_of(store, cs1))["status"] == "open"
    assert await offer(store, now + 2) == 1
    assert (await offered_to(store))[-1] == (cs1, "ada")
    # the second call is answered: the case is contacted by ada, and its first contact measured
    await store.case_task_accept(cs1, "ada", call_id="call-b", caller_id="+8215880000", hotline="demo", by="ada",
                                 now_ms=now + 3)
    await store.originate_agent_answered("call-b", "call-b.1", "+8215880000")
    assert await store.originate_connected("call-b", "call-b.1") == "ada"
    case = await case_of(store, cs1)
    assert case["status"] == "contacted" and case["first_contact_met"] is True
    assert case["contacted_at"] is not None and case["first_contact_ms"] == case["contacted_at"] - T0
    assert case["calls"] == ["call-a", "call-b"] and case["task_call"] == "call-b"
    status = [d for _, d in await events(store, "case.status")]
    assert [(d["case_id"], d["status"], d["previous"], d["by"]) for d in status] == [(cs1, "contacted", "open", "ada")]
    report = await store.case_first_contact(since_ms=T0, until_ms=T0 + 1)
    assert report["urgent"]["contacted"] == 1 and report["urgent"]["within_due"] == 1
    # the contacted case is never offered again; the other one is, once ada is free
    await store.end_call("call-b", reason="agent_hangup", wrapup_s=0, ttl_s=60)
    assert await offer(store, now + 10) == 1
    assert (await offered_to(store))[-1] == (cs2, "ada")


async def test_an_agent_leaving_gives_its_task_back(store: QueueStore) -> None:
    await agent(store, "ada")
    cs1 = await open_case(store, owner="ada")
    now = T0 + HOUR - BEFORE
    assert await offer(store, now) == 1
    with pytest.raises(Conflict) as busy:                   # available: decline it instead
        await store.set_agent_state("ada", AgentState.AVAILABLE)
    assert busy.value.code == "agent.busy"
    await store.set_agent_state("ada", AgentState.BREAK, "lunch")
    assert await agent_view(store, "ada") == ("break", "lunch", "")
    assert (await case_of(store, cs1))["task_agent"] == ""
    assert (await events(store, "case.task_declined"))[-1][1]["reason"] == "agent_break"
    await agent(store, "bob")
    assert await offer(store, now + 1) == 1                 # offered again at once (no exclusion for ada)
    await store.set_agent_state("bob", AgentState.OFFLINE)
    assert (await events(store, "case.task_declined"))[-1][1] | {"ts": 0} == {
        "case_id": cs1, "agent_id": "bob", "reason": "agent_offline", "ts": 0, "v": 2}
    await store.set_agent_state("ada", AgentState.AVAILABLE)
    assert await offer(store, now + 2) == 1
    assert await offered_to(store) == [(cs1, "ada"), (cs1, "bob"), (cs1, "ada")]
    # resolved while its task is out: the agent is free again
    await store.set_case_status(cs1, "resolved", by="super1", now_ms=now + 3)
    assert await agent_view(store, "ada") == ("available", "task_case_resolved", "")
    assert (await events(store, "case.task_declined"))[-1][1]["reason"] == "case_resolved"
    assert await offer(store, now + 4) == 0


async def test_a_reaped_worker_frees_the_agent_and_the_case_is_offered_again(store: QueueStore) -> None:
    await agent(store, "ada")
    cs1 = await open_case(store, owner="ada")
    now = T0 + HOUR - BEFORE
    assert await offer(store, now) == 1
    await store.case_task_accept(cs1, "ada", call_id="call-r", caller_id="+8215880000", hotline="demo", by="ada",
                                 now_ms=now + 1)
    assert await offer(store, now + 2) == 0                 # its call is under way
    assert await store.reap_worker("w0", wrapup_s=0, ttl_s=60) == 1
    assert (await store.get_call("call-r") or {})["outcome"] == "lost"
    assert await agent_view(store, "ada") == ("available", "call_lost", "")
    assert (await case_of(store, cs1))["status"] == "open"
    assert await offer(store, now + 3) == 1
    assert await offered_to(store) == [(cs1, "ada"), (cs1, "ada")]


async def test_two_concurrent_accepts_one_wins(store: QueueStore, redis: Redis) -> None:
    await agent(store, "ada")
    cs1 = await open_case(store, owner="ada")
    now = T0 + HOUR - BEFORE
    assert await offer(store, now) == 1

    async def accept(call_id: str) -> tuple[str, str, str] | str:
        try:
            return await store.case_task_accept(cs1, "ada", call_id=call_id, caller_id="+8215880000",
                                                hotline="demo", by="ada", now_ms=now + 1)
        except Conflict as exc:
            return exc.code

    results = await asyncio.gather(accept("race-1"), accept("race-2"))
    won = [r for r in results if isinstance(r, tuple)]
    assert len(won) == 1 and results.count("case.task_gone") == 1, results
    assert len(await inbox(redis)) == 1
    assert (await case_of(store, cs1))["calls"] == [won[0][0]]
    assert len(await events(store, "case.task_accepted")) == 1


async def test_the_workers_housekeeping_leader_offers_tasks(store: QueueStore) -> None:
    """The housekeeping loop of a worker runs the offer scan with the cases settings, by the server's clock."""
    await agent(store, "ada")
    now = int(time.time() * 1000)
    cs1 = await open_case(store, at=now - HOUR, due_in=HOUR + 10 * MIN)   # due in 10 minutes
    settings = Settings(cases={"offer_before_s": 900, "skill": "complaints", "task_timeout_s": 30},
                        calls={"outbound_allow": ["+8210*"]})
    worker = Worker(settings, 0, name="hk-test")
    task = asyncio.create_task(worker._housekeeping(store), name="test.housekeeping")
    try:
        got: list[tuple[str, str]] = []
        for _ in range(100):  # the first tick offers it; wait for it, 10 s at most
            got = await offered_to(store)
            if got:
                break
            await asyncio.sleep(0.1)
        assert got == [(cs1, "ada")]
        case = await case_of(store, cs1)
        assert case["task_expires"] is not None and case["task_at"] is not None
        assert case["task_expires"] - case["task_at"] == 30_000
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_case_whose_number_may_not_be_dialled_is_not_offered(store: QueueStore) -> None:
    """calls.outbound_allow (given as ``allow``) is checked before a task is offered: nobody could dial it."""
    await agent(store, "ada")
    foreign = await open_case(store, customer="+4420700000")
    local = await open_case(store, due_in=HOUR + 1)
    offered = await store.case_offer_tasks(before_ms=BEFORE, skill="complaints", timeout_ms=TIMEOUT,
                                           now_ms=T0 + HOUR - BEFORE + 1, allow=["+8210*"])
    assert offered == 1 and await offered_to(store) == [(local, "ada")]
    assert (await case_of(store, foreign))["task_agent"] == ""
    # none allowed: nothing is offered at all
    await agent(store, "bob")
    assert await store.case_offer_tasks(before_ms=BEFORE, skill="complaints", timeout_ms=TIMEOUT,
                                        now_ms=T0 + HOUR - BEFORE + 2, allow=[]) == 0
