"""The follow-up (回访) of a closed case against a real Redis, with the clock driven through ``now_ms``:
closing schedules it; when due, an automated call is placed (the dialler's offer names the survey plan
and seeds case.*) or a task is offered to an agent; not reached it is tried again until the cap; the
plan's answers go to the case and the call, an unsolved one reopens the case; reopening cancels a
follow-up not under way; a task's agent who does not answer does not use up an attempt; a dead
worker while the phone rings is retried; hostile answers write nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from ivr.core import event_catalogue as cat
from ivr.core.errors import BadRequest
from ivr.core.events import AgentState
from ivr.queues.store import FollowUp, Offer, QueueStore

PREFIX = "cfu"
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
NUMBER = "+821055501234"
T0 = (int(time.time() * 1000) // 1000) * 1000


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    s = QueueStore(redis, prefix=PREFIX)
    await s.register_worker("w0", "host:1", ttl_s=60, slots=2)
    return s


async def closed_case(store: QueueStore, *, mode: str = "call", customer: str = NUMBER, attempts: int = 2,
                      owner: str = "") -> str:
    case = await store.open_case(tier="important", reason="refund missing", customer=customer,
                                 customer_name="Kim", hotline="demo", opened_by="ivr:demo", owner=owner,
                                 due_at_ms=T0 + 2 * HOUR, now_ms=T0)
    cid = str(case["id"])
    await store.set_case_status(cid, "contacted", by="ada", now_ms=T0 + MIN)
    await store.set_case_status(cid, "resolved", by="ada", now_ms=T0 + 2 * MIN)
    follow = FollowUp(mode=mode, at_ms=T0 + DAY, plan="survey" if mode == "call" else "",  # type: ignore[arg-type]
                      attempts=attempts, retry_after_ms=HOUR, ring_s=20)
    await store.set_case_status(cid, "closed", by="ada", now_ms=T0 + 3 * MIN, follow_up=follow)
    return cid


async def due(store: QueueStore, now: int) -> int:
    return await store.case_followups(caller_id="+8215880000", skill="complaints", task_timeout_ms=MIN, now_ms=now)


async def events(store: QueueStore, *types: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type, e.data) for e in await store.events_after("0-0", 5000) if not types or e.type in types]


async def case_of(store: QueueStore, case_id: str) -> dict[str, Any]:
    case = await store.get_case(case_id)
    assert case is not None
    return case


async def offer_of(store: QueueStore) -> Offer:
    offer = await store.next_message("w0", timeout_s=0.1)
    assert isinstance(offer, Offer)
    return offer


async def test_a_closed_case_is_called_when_due_with_its_survey_plan(store: QueueStore) -> None:
    cid = await closed_case(store)
    [(_, scheduled)] = await events(store, "case.followup_scheduled")
    assert (scheduled["case_id"], scheduled["mode"], scheduled["at"], scheduled["plan"]) == (cid, "call", T0 + DAY,
                                                                                              "survey")
    assert await due(store, T0 + DAY - 1) == 0
    assert await store.redis.llen(store.keys.worker_inbox("w0")) == 0
    assert await due(store, T0 + DAY) == 1
    assert await due(store, T0 + DAY + 1000) == 0  # once: it is under way
    offer = await offer_of(store)
    assert offer.is_dialout and offer.plan == "survey" and offer.number == NUMBER and offer.ring_s == 20
    assert offer.caller_id == "+8215880000" and offer.hotline == "demo"
    assert offer.variables == {"case.id": cid, "case.tier": "important", "case.reason": "refund missing",
                               "customer.name": "Kim"}
    record = await store.get_call(offer.call_id)
    assert record is not None and (record["purpose"], record["case_id"]) == ("followup", cid)
    case = await case_of(store, cid)
    assert (case["followup_state"], case["followup_call"], case["followup_attempts"]) == (
        "calling", offer.call_id, 1)
    [(_, started)] = await events(store, "case.followup_started")
    assert (started["mode"], started["attempt"], started["call_id"]) == ("call", 1, offer.call_id)
    for t, d in await events(store, "case.followup_scheduled", "case.followup_started"):
        cat.parse(t, d)


async def test_not_reached_it_is_tried_again_until_the_cap(store: QueueStore) -> None:
    cid = await closed_case(store, attempts=2)
    assert await due(store, T0 + DAY) == 1
    first = await offer_of(store)
    assert await store.dialout_failed(first.call_id, first.offer_id, outcome="busy", reason="customer_busy",
                                      ttl_s=60) == "busy"
    [(_, retry)] = await events(store, "case.followup_retry")
    assert (retry["outcome"], retry["attempt"], retry["retry_in_s"]) == ("busy", 1, 3600.0)
    case = await case_of(store, cid)
    assert case["followup_state"] == "scheduled"
    # an hour after the busy signal (the dialler's clock: the server's here), by the controlled clock
    assert int(case["followup_at"]) >= T0 + HOUR
    assert await due(store, int(case["followup_at"]) - 1) == 0
    assert await due(store, int(case["followup_at"])) == 1
    second = await offer_of(store)
    assert second.call_id != first.call_id
    await store.dialout_failed(second.call_id, second.offer_id, outcome="no_answer", reason="customer_no_answer",
                               ttl_s=60)
    [(_, failed)] = await events(store, "case.followup_failed")
    assert (failed["case_id"], failed["attempts"], failed["reason"]) == (cid, 2, "no_answer")
    assert (await case_of(store, cid))["followup_state"] == "failed"
    assert await due(store, T0 + 3 * DAY) == 0


async def test_an_unsolved_answer_reopens_the_case_and_the_answers_reach_case_and_call(store: QueueStore) -> None:
    cid = await closed_case(store)
    await due(store, T0 + DAY)
    offer = await offer_of(store)
    assert await store.dialout_answered(offer.call_id, offer.offer_id)
    case = await case_of(store, cid)
    assert case["followup_state"] == "answered" and offer.call_id in case["calls"]
    _, reopened = await store.case_answers(cid, call_id=offer.call_id, answers={"csat": "2"}, by="ivr:survey",
                                           now_ms=T0 + DAY + 5000)
    assert not reopened
    case, reopened = await store.case_answers(cid, call_id=offer.call_id, answers={"solved": "no"}, by="ivr:survey",
                                              reopen_due_at_ms=T0 + DAY + 2 * HOUR, now_ms=T0 + DAY + 6000)
    assert reopened and case["status"] == "reopened" and case["due_at"] == T0 + DAY + 2 * HOUR
    assert case["followup_answers"] == {"csat": "2", "solved": "no"}
    record = await store.get_call(offer.call_id)
    assert record is not None and json.loads(record["answers"]) == {"csat": "2", "solved": "no"}
    await store.end_call(offer.call_id, reason="ivr_hangup", wrapup_s=0, ttl_s=60)
    [(_, done)] = await events(store, "case.followup_done")
    assert (done["call_id"], done["outcome"], done["answers"], done["reopened"]) == (
        offer.call_id, "completed", {"csat": "2", "solved": "no"}, True)
    assert (await case_of(store, cid))["followup_state"] == "done"
    answers = [d for _, d in await events(store, "case.answers")]
    assert [(a["answers"], a["reopened"]) for a in answers] == [({"csat": "2"}, False), ({"solved": "no"}, True)]
    for t, d in await events(store, "case.answers", "case.followup_done"):
        cat.parse(t, d)


async def test_reopening_cancels_a_follow_up_not_under_way(store: QueueStore) -> None:
    cid = await closed_case(store)
    await store.set_case_status(cid, "reopened", by="super1", due_at_ms=T0 + 3 * HOUR, now_ms=T0 + HOUR)
    [(_, cancelled)] = await events(store, "case.followup_cancelled")
    assert cancelled == {"case_id": cid, "reason": "reopened", "agent_id": "", "ts": T0 + HOUR, "v": cancelled["v"]}
    assert await due(store, T0 + DAY) == 0
    assert await store.redis.llen(store.keys.worker_inbox("w0")) == 0


async def test_no_free_worker_keeps_it_due_and_a_case_without_number_fails(store: QueueStore) -> None:
    cid = await closed_case(store)
    await store.redis.set(store.keys.worker_slots("w0"), 0)
    assert await due(store, T0 + DAY) == 0
    assert (await case_of(store, cid))["followup_state"] == "scheduled"
    await store.redis.set(store.keys.worker_slots("w0"), 2)
    assert await due(store, T0 + DAY + 500) == 1
    anonymous = await closed_case(store, customer="")
    assert await due(store, T0 + 2 * DAY) == 0
    assert (await case_of(store, anonymous))["followup_state"] == "failed"
    assert [d["reason"] for _, d in await events(store, "case.followup_failed")] == ["no_number"]


async def test_a_dead_worker_while_the_phone_rings_is_an_attempt_tried_again(store: QueueStore) -> None:
    cid = await closed_case(store)
    await due(store, T0 + DAY)
    await store.reap_worker("w0", wrapup_s=0, ttl_s=60)
    [(_, retry)] = await events(store, "case.followup_retry")
    assert (retry["case_id"], retry["outcome"], retry["reason"]) == (cid, "failed", "worker_lost")


async def test_a_task_follow_up_goes_to_an_agent_who_calls(store: QueueStore) -> None:
    await store.register_agent("ada", name="Ada", skills={"complaints": 1}, sip_uri="sip:ada@127.0.0.1:5090",
                               languages=["en"])
    await store.set_agent_state("ada", AgentState.AVAILABLE)
    cid = await closed_case(store, mode="task")
    assert await due(store, T0 + DAY) == 1
    [(_, offered)] = await events(store, "case.task_offered")
    assert (offered["case_id"], offered["agent_id"], offered["task_kind"]) == (cid, "ada", "followup")
    # the agent accepts; its phone does not answer: offered again at once, no attempt used
    call, _, _ = await store.case_task_accept(cid, "ada", call_id="t1", caller_id="+8215880000", hotline="demo",
                                             by="ada", now_ms=T0 + DAY + 1000)
    assert (await case_of(store, cid))["followup_state"] == "calling"
    await store.originate_failed(call, f"{call}.1", outcome="agent_no_answer", reason="ring_no_answer",
                                 agent_state="available", ttl_s=60)
    case = await case_of(store, cid)
    assert (case["followup_state"], case["followup_attempts"]) == ("scheduled", 0)
    assert await due(store, T0 + DAY + 2000) == 1
    call, _, _ = await store.case_task_accept(cid, "ada", call_id="t2", caller_id="+8215880000", hotline="demo",
                                             by="ada", now_ms=T0 + DAY + 3000)
    await store.originate_agent_answered(call, f"{call}.1", "+8215880000")
    await store.originate_connected(call, f"{call}.1")
    [(_, done)] = await events(store, "case.followup_done")
    assert (done["case_id"], done["call_id"], done["outcome"]) == (cid, "t2", "completed")
    assert (await case_of(store, cid))["followup_state"] == "done"


@pytest.mark.parametrize("answers", [
    {"Solved": "no"}, {"1st": "no"}, {"a" * 33: "x"}, {"solved": "x" * 201}, {"solved": 3},
    {f"q{i}": "1" for i in range(21)}, {"solved": "line\x00break"},
])
async def test_hostile_answers_write_nothing(store: QueueStore, answers: dict[str, Any]) -> None:
    cid = await closed_case(store)
    with pytest.raises(BadRequest):
        await store.case_answers(cid, call_id="", answers=answers, by="ivr:survey")
    assert (await case_of(store, cid))["followup_answers"] == {}
    assert await events(store, "case.answers") == []


async def test_closed_cases_past_their_retention_are_deleted_with_their_notes(store: QueueStore) -> None:
    old = await closed_case(store, mode="task")
    await store.add_case_note(old, by="ada", text="called twice")
    assert await store.redis.exists(store.keys.case_notes(old))
    kept = await closed_case(store, mode="task")
    reopened = await closed_case(store, mode="task")
    await store.set_case_status(reopened, "reopened", by="super1", due_at_ms=T0 + DAY, now_ms=T0 + HOUR)
    # everything was closed at T0 + 3 min by the controlled clock; move the second's close later
    await store.redis.zadd(store.keys.cases_closed, {kept: T0 + 10 * MIN})
    counts = await store.case_counts(soon_ms=MIN)
    assert await store.purge_closed_cases(closed_before_ms=T0 + 5 * MIN) == 1
    assert await store.get_case(old) is None
    assert not await store.redis.exists(store.keys.case_notes(old))
    assert not await store.redis.zscore(store.keys.cases_index, old)
    assert not await store.redis.zscore(store.keys.cases_followups, old)
    assert await store.get_case(kept) is not None and await store.get_case(reopened) is not None
    after = await store.case_counts(soon_ms=MIN)
    assert after["status"]["closed"] == counts["status"]["closed"] - 1
    [(_, purged)] = await events(store, "case.purged")
    assert (purged["case_id"], purged["closed_at"]) == (old, T0 + 3 * MIN)
    cat.parse("case.purged", purged)
    assert await store.purge_closed_cases(closed_before_ms=T0 + 5 * MIN) == 0
    with pytest.raises(BadRequest):
        await store.purge_closed_cases(closed_before_ms=-1)


async def test_a_worker_with_no_leg_free_after_all_uses_no_attempt(store: QueueStore) -> None:
    cid = await closed_case(store, attempts=1)
    await due(store, T0 + DAY)
    offer = await offer_of(store)
    await store.dialout_failed(offer.call_id, offer.offer_id, outcome="failed", reason="worker_full", ttl_s=60)
    case = await case_of(store, cid)
    assert (case["followup_state"], case["followup_attempts"]) == ("scheduled", 0)
    assert await events(store, "case.followup_retry", "case.followup_failed") == []
    assert await due(store, int(case["followup_at"])) == 1  # a second later, the one attempt still left
