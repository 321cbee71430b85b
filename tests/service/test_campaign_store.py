"""Outbound campaigns (``lua/lib/campaigns.lua``) against a real Redis, the dialler driven with a
controlled clock (``now_ms``): the token bucket never lets more calls out than the rate allows,
max_concurrent and the progressive gate hold, the do-not-call list is checked again when dialling,
a closed calling window dials nobody, retries back off and stop at the cap, a worker dying while a
record rings retries it but after the answer never redials it, pause / resume / stop, and ticks run
at once never dial a record twice."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from ivr.core.errors import BadRequest, Conflict, NotFound
from ivr.core.events import AgentState
from ivr.queues.store import QueueStore

PREFIX = "cpt"
SLOTS = 1000


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    s = QueueStore(redis, prefix=PREFIX)
    await s.register_worker("w0", "host:1", ttl_s=60, slots=SLOTS)
    return s


def numbers(n: int, base: int = 1000) -> list[dict[str, Any]]:
    return [{"number": f"+8210555{base + i:05d}", "name": f"cust{i}"} for i in range(n)]


async def campaign(store: QueueStore, rows: int = 10, *, rate: float = 50, conc: int = 500,
                   start: bool = True, **kw: Any) -> str:
    c = await store.campaign_create(name="care", plan="survey", by="super1",
                                    pacing={"rate_per_s": rate, "max_concurrent": conc, **kw.pop("pacing", {})}, **kw)
    cid = c["id"]
    if rows:
        await store.campaign_add_records(cid, numbers(rows))
    if start:
        await store.campaign_action(cid, "start", by="super1")
    return str(cid)


async def events(store: QueueStore, etype: str) -> list[dict[str, Any]]:
    return [json.loads(f[b"data"]) for _id, f in await store.redis.xrange(store.keys.events)
            if f[b"type"].decode() == etype]


async def dialing(store: QueueStore, cid: str) -> list[dict[str, Any]]:
    recs, _ = await store.campaign_records(cid, state="dialing", limit=1000)
    return recs


def now() -> int:
    return int(time.time() * 1000)


async def test_create_and_upload_counts_duplicates_and_dnc(store: QueueStore) -> None:
    await store.dnc_add(["+82 10 5550 1003"])
    cid = await campaign(store, rows=0, start=False)
    res = await store.campaign_add_records(cid, [*numbers(5), numbers(1)[0]])
    assert res == {"added": 5, "dnc": 1, "duplicates": [5], "zones_full": []}
    c = await store.get_campaign(cid)
    assert c is not None and c["state"] == "draft" and c["records"] == 5
    assert c["counts"]["pending"] == 4 and c["counts"]["dnc"] == 1
    recs, nxt = await store.campaign_records(cid, limit=3)
    assert [r["id"] for r in recs] == [f"{cid}:1", f"{cid}:2", f"{cid}:3"] and nxt == 3
    # no number in any key name
    for key in await store.redis.keys(f"{PREFIX}:*"):
        assert b"555" not in key
    assert [e["state"] for e in await events(store, "campaign.state")] == ["draft"]


async def test_pacing_never_exceeds_the_rate(store: QueueStore) -> None:
    cid = await campaign(store, rows=60, rate=2.0, conc=500)
    t0 = now()
    placed_at: list[int] = []
    for i in range(101):  # 10 s of 100 ms ticks
        t = t0 + i * 100
        placed, _ = await store.campaign_tick(now_ms=t)
        placed_at += [t] * placed
    # token bucket: in any window of d ms, at most the tokens saved up at its start + rate * d calls; the
    # bucket (cap max(1, rate) = 2) never fills while records wait: one at the start, less than 1 after
    for a in range(len(placed_at)):
        for b in range(a, len(placed_at)):
            assert b - a + 1 <= 1 + 2.0 * (placed_at[b] - placed_at[a]) / 1000 + 1e-9
    assert len(placed_at) == 21  # 1 at once + 2/s for 10 s: the rate is reached, not only bounded
    assert len(await dialing(store, cid)) == 21


async def test_max_concurrent_holds_and_frees_on_end(store: QueueStore) -> None:
    cid = await campaign(store, rows=10, rate=50, conc=3)
    t = now()
    for i in range(10):
        await store.campaign_tick(now_ms=t + i * 100)
    live = await dialing(store, cid)
    assert len(live) == 3
    call = live[0]["last_call_id"]
    await store.dialout_answered(call, call + ".d")
    for i in range(10, 20):
        await store.campaign_tick(now_ms=t + i * 100)
    assert len(await dialing(store, cid)) == 2  # the answered call still counts
    await store.end_call(call, reason="ivr_hangup", wrapup_s=0, ttl_s=60)
    await store.campaign_tick(now_ms=t + 2100)
    assert len(await dialing(store, cid)) == 3


async def test_progressive_dials_only_for_available_agents(store: QueueStore) -> None:
    cid = await campaign(store, rows=10, rate=50, conc=50, queue="sales",
                         pacing={"mode": "progressive", "ratio": 2.0})
    t = now()
    assert await store.campaign_tick(now_ms=t) == (0, False)  # nobody available
    await store.register_agent("a1", name="a1", skills={"sales": 1}, sip_uri="sip:a1@x", languages=["en"])
    await store.set_agent_state("a1", AgentState.AVAILABLE)
    for i in range(1, 10):
        await store.campaign_tick(now_ms=t + i * 100)
    assert len(await dialing(store, cid)) == 2  # 1 agent * ratio 2
    # an answered customer waits in the queue: no new call until an agent takes it
    first = (await dialing(store, cid))[0]["last_call_id"]
    await store.dialout_answered(first, first + ".d")
    await store.register_agent("a2", name="a2", skills={"sales": 1}, sip_uri="sip:a2@x", languages=["en"])
    await store.set_agent_state("a2", AgentState.AVAILABLE)
    await store.redis.zadd(store.keys.waiting("sales"), {first: 1})
    assert await store.campaign_tick(now_ms=t + 2000) == (0, False)
    await store.redis.zrem(store.keys.waiting("sales"), first)
    placed, _ = await store.campaign_tick(now_ms=t + 2100)
    assert placed == 3  # 2 agents * 2 - 1 still ringing


async def test_dnc_is_checked_again_when_dialling(store: QueueStore) -> None:
    cid = await campaign(store, rows=3, rate=50)
    await store.dnc_add(["+821055501001"])
    t = now()
    for i in range(5):
        await store.campaign_tick(now_ms=t + i * 100)
    recs, _ = await store.campaign_records(cid)
    assert [r["state"] for r in recs] == ["dialing", "dnc", "dialing"]
    assert recs[1]["attempts"] == 0 and recs[1]["last_call_id"] == ""
    assert await store.redis.llen(store.keys.worker_inbox("w0")) == 2
    assert await store.dnc_check(["+821055501001", "+821055501000"]) == [True, False]
    assert await store.dnc_remove(["0082 10 5550 1001"]) == 1


async def test_a_closed_window_dials_nobody(store: QueueStore) -> None:
    window = {"timezone": "Asia/Seoul", "open": [{"days": ["mon-fri"], "from": "09:00", "to": "18:00"}]}
    cid = await campaign(store, rows=0, rate=50, window=window, start=False)
    rows = numbers(4)
    rows[1]["tz"], rows[3]["tz"] = "America/New_York", "America/New_York"
    await store.campaign_add_records(cid, rows)
    await store.campaign_action(cid, "start", by="super1")
    windows = await store.campaign_windows()
    assert windows[cid] == (json.loads(json.dumps(window, sort_keys=True)), ["", "America/New_York"])
    t = now()
    assert await store.campaign_tick(now_ms=t) == (0, False)  # with a window, not said open: closed
    assert await store.campaign_tick(now_ms=t + 1000, open_zones={cid: []}) == (0, False)
    placed, _ = await store.campaign_tick(now_ms=t + 2000, open_zones={cid: [1]})
    assert placed == 2
    assert sorted(r["n"] for r in await dialing(store, cid)) == [2, 4]


async def test_retries_back_off_and_stop_at_the_cap(store: QueueStore) -> None:
    cid = await campaign(store, rows=1, rate=50, retries={"max_attempts": 3, "backoff_s": {"busy": 60},
                                                          "multiplier": 2})
    t = now()
    expected_gap = [60_000, 120_000]
    for attempt in (1, 2, 3):
        placed, _ = await store.campaign_tick(now_ms=t)
        assert placed == 1
        rec = (await dialing(store, cid))[0]
        assert rec["attempts"] == attempt and rec["last_call_id"] == f"{cid}.1.{attempt}"
        before = now()
        await store.dialout_failed(rec["last_call_id"], rec["last_call_id"] + ".d", outcome="busy",
                                   reason="customer_busy", ttl_s=60)
        after = now()
        recs, _ = await store.campaign_records(cid)
        if attempt == 3:
            assert (recs[0]["state"], recs[0]["last_outcome"]) == ("failed", "busy")
            break
        assert recs[0]["state"] == "retry"
        retry_at = recs[0]["retry_at"]
        assert before + expected_gap[attempt - 1] <= retry_at <= after + expected_gap[attempt - 1]
        assert await store.campaign_tick(now_ms=retry_at - 1) == (0, False)
        t = retry_at
    assert await store.campaign_tick(now_ms=t + 10**7) == (0, False)
    c = await store.get_campaign(cid)
    assert c is not None and c["state"] == "finished" and c["counts"]["failed"] == 1
    rec_events = [(e["state"], e["attempt"]) for e in await events(store, "campaign.record")]
    assert rec_events == [("dialing", 1), ("retry", 1), ("dialing", 2), ("retry", 2), ("dialing", 3),
                          ("failed", 3)]


async def test_a_worker_dying_while_ringing_retries_after_answer_never_redials(store: QueueStore) -> None:
    cid = await campaign(store, rows=2, rate=50, retries={"backoff_s": {"failed": 30}})
    t = now()
    await store.campaign_tick(now_ms=t)
    await store.campaign_tick(now_ms=t + 100)
    first, _second = await dialing(store, cid)
    await store.dialout_answered(first["last_call_id"], first["last_call_id"] + ".d")
    assert await store.reap_worker("w0", wrapup_s=0, ttl_s=60) == 2
    recs, _ = await store.campaign_records(cid)
    assert (recs[0]["state"], recs[0]["last_outcome"]) == ("done", "lost")
    assert recs[0]["result"]["outcome"] == "lost"
    assert (recs[1]["state"], recs[1]["last_reason"]) == ("retry", "worker_lost")
    # later: only the one not reached is dialled again
    for i in range(1, 5):
        await store.campaign_tick(now_ms=recs[1]["retry_at"] + i * 100)
    again = await dialing(store, cid)
    assert [(r["n"], r["attempts"]) for r in again] == [(2, 2)]


async def test_concurrent_ticks_never_dial_a_record_twice(store: QueueStore) -> None:
    cid = await campaign(store, rows=40, rate=50, conc=500)
    t = now()
    results = await asyncio.gather(*(store.campaign_tick(now_ms=t + 1000 + i) for i in range(30)))
    placed = sum(p for p, _ in results)
    live = await dialing(store, cid)
    assert placed == len(live) <= 40
    assert await store.redis.llen(store.keys.worker_inbox("w0")) == placed
    assert all(r["attempts"] == 1 for r in live)
    assert placed <= 1 + 50 * 1.03  # one bucket, whatever the interleaving


async def test_no_worker_slot_spends_no_token_and_loses_no_record(store: QueueStore) -> None:
    await store.register_worker("w0", "host:1", ttl_s=60, slots=2)
    cid = await campaign(store, rows=5, rate=50)
    t = now()
    placed, unavailable = await store.campaign_tick(now_ms=t + 1000)
    assert (placed, unavailable) == (2, True)
    c = await store.get_campaign(cid)
    assert c is not None and c["counts"]["pending"] == 3 and c["counts"]["dialing"] == 2


async def test_pause_resume_stop(store: QueueStore) -> None:
    cid = await campaign(store, rows=5, rate=50)
    t = now()
    await store.campaign_tick(now_ms=t)
    await store.campaign_action(cid, "pause", by="super1")
    assert await store.campaign_tick(now_ms=t + 1000) == (0, False)
    with pytest.raises(Conflict):
        await store.campaign_action(cid, "start", by="super1")
    await store.campaign_update(cid, pacing={"rate_per_s": 1, "max_concurrent": 2})
    with pytest.raises(Conflict):
        await store.campaign_update(cid, plan="other")
    await store.campaign_action(cid, "resume", by="super1")
    await store.campaign_tick(now_ms=t + 2000)
    live = await dialing(store, cid)
    assert len(live) == 2
    await store.campaign_action(cid, "stop", by="super1")
    c = await store.get_campaign(cid)
    assert c is not None and c["state"] == "stopped" and c["counts"]["cancelled"] == 3
    # a call under way when stopped is not retried
    call = live[1]["last_call_id"]
    await store.dialout_failed(call, call + ".d", outcome="no_answer", reason="customer_no_answer", ttl_s=60)
    recs, _ = await store.campaign_records(cid, state="cancelled")
    assert len(recs) == 4
    assert [e["state"] for e in await events(store, "campaign.state")] == ["draft", "running", "paused", "running",
                                                                         "stopped"]
    with pytest.raises(Conflict):
        await store.campaign_action(cid, "resume", by="super1")
    with pytest.raises(Conflict):
        await store.campaign_add_records(cid, numbers(1, base=9000))
    await store.campaign_delete(cid)
    assert await store.get_campaign(cid) is None
    assert not await store.redis.keys(f"{PREFIX}:campaign:{cid}:*")


async def test_progress_is_sent_at_most_once_a_second(store: QueueStore) -> None:
    cid = await campaign(store, rows=20, rate=50)
    t = now()
    for i in range(30):
        await store.campaign_tick(now_ms=t + i * 100)
    progress = [e for e in await events(store, "campaign.progress") if e["campaign_id"] == cid]
    assert 2 <= len(progress) <= 4
    assert progress[-1]["counts"]["dialing"] + progress[-1]["counts"]["pending"] == 20


@pytest.mark.parametrize("kw", [
    {"name": "", "plan": "survey"},
    {"name": "x", "plan": "../etc"},
    {"name": "x", "plan": "survey", "pacing": {"rate_per_s": 51}},
    {"name": "x", "plan": "survey", "pacing": {"rate_per_s": 0}},
    {"name": "x", "plan": "survey", "pacing": {"max_concurrent": 501}},
    {"name": "x", "plan": "survey", "pacing": {"mode": "predictive"}},
    {"name": "x", "plan": "survey", "pacing": {"ratio": 9}},
    {"name": "x", "plan": "survey", "retries": {"max_attempts": 11}},
    {"name": "x", "plan": "survey", "retries": {"backoff_s": {"busy": 1}}},
    {"name": "x", "plan": "survey", "retries": {"backoff_s": {"other": 60}}},
    {"name": "x", "plan": "survey", "ring_s": 5},
    {"name": "x", "plan": "survey", "caller_id": "sip:evil"},
])
async def test_hostile_settings_are_refused(store: QueueStore, kw: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        await store.campaign_create(by="super1", **kw)
    assert not await store.redis.exists(store.keys.campaigns_index)


async def test_unknown_campaign(store: QueueStore) -> None:
    with pytest.raises(NotFound):
        await store.campaign_action("CP999", "start", by="x")
    with pytest.raises(BadRequest):
        await store.campaign_action("CS1", "start", by="x")
    assert await store.get_campaign("CP999") is None


async def test_a_call_the_worker_could_not_place_costs_no_attempt(store: QueueStore) -> None:
    cid = await campaign(store, rows=1, rate=50, retries={"max_attempts": 1})
    t = now()
    await store.campaign_tick(now_ms=t)
    [rec] = await dialing(store, cid)
    before = now()
    await store.dialout_failed(rec["last_call_id"], rec["last_call_id"] + ".d", outcome="failed",
                               reason="worker_full", ttl_s=60)
    recs, _ = await store.campaign_records(cid)
    assert (recs[0]["state"], recs[0]["attempts"], recs[0]["last_reason"]) == ("retry", 0, "worker_full")
    assert before + 1000 <= recs[0]["retry_at"] <= now() + 1000
    placed, _ = await store.campaign_tick(now_ms=recs[0]["retry_at"])
    assert placed == 1
    [again] = await dialing(store, cid)
    assert (again["attempts"], again["last_call_id"]) == (1, f"{cid}.1.2")  # a new call id, the first attempt
