"""The alert evaluator on a real Redis with a controllable clock (``now_ms``): raise after ``for_s``,
deduplication, hysteresis on clearing, the lease moving to another instance that goes on with the
timers, acknowledgement, the history's paging, and the figures the rules read (service level over
the window, staffing gap, worker load, the speech probe against a real HTTP server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis

from ivr.alerts.engine import AlertEvaluator, worker_load
from ivr.core.config import AlertRule, Settings
from ivr.core.errors import Conflict, NotFound
from ivr.core.events import AgentState
from ivr.planning.service import StaffingNow
from ivr.queues.alerts_store import AlertStore, Changes
from ivr.queues.stats import StatsConfig
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer, free_port

PREFIX = "alerts"
T0 = 1_800_000_000_000  # the evaluator's clock (ms); the figures are Redis's own


def settings_with(redis_server: RedisServer, *rules: AlertRule, **extra: Any) -> Settings:
    return Settings(redis={"url": redis_server.url, "prefix": PREFIX}, speech={"enabled": False},
                    alerts={"rules": list(rules)}, **extra)


@pytest.fixture
def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX, stats=StatsConfig(short_abandon_s=0))


async def caller(store: QueueStore, cid: str, queue: str = "billing") -> None:
    await store.call_start(cid, "w0", ani="+15550001", dnis="1000", hotline="demo", language="en", plan_version="v1")
    assert await store.enqueue(cid, queue=queue, skill=queue, priority=0, journey={"steps": []}) is None


async def events(redis: Redis, prefix: str = "alert.") -> list[tuple[str, dict[str, Any]]]:
    out = []
    for _id, f in await redis.xrange(f"{PREFIX}:events"):
        etype = f[b"type"].decode()
        if etype.startswith(prefix):
            out.append((etype, json.loads(f[b"data"])))
    return out


WAITING = AlertRule(name="queue_full", metric="waiting", threshold=1, clear_at=0, for_s=10, clear_for_s=20,
                    severity="critical", sound=True)


async def test_an_alert_is_raised_after_for_s_once_and_cleared_with_hysteresis(
        redis: Redis, redis_server: RedisServer, store: QueueStore) -> None:
    ev = AlertEvaluator(store, settings_with(redis_server, WAITING), owner="api-1")
    await caller(store, "c1")
    await caller(store, "c2")  # 2 waiting > 1
    assert await ev.evaluate(T0) == ([], [])  # the condition starts: a timer, no alert
    assert await ev.alerts.pending() == {"queue_full|billing": T0}
    assert await ev.evaluate(T0 + 9_999) == ([], [])
    raised, cleared = await ev.evaluate(T0 + 10_000)
    assert [a["rule"] for a in raised] == ["queue_full"] and not cleared
    alert = raised[0]
    assert alert["queue"] == "billing" and alert["value"] == 2 and alert["severity"] == "critical"
    assert alert["message"] == "billing: callers waiting 2 above 1" and alert["raised_at"] == T0 + 10_000
    assert await ev.alerts.pending() == {}
    # deduplicated: the condition goes on, no second alert
    assert await ev.evaluate(T0 + 30_000) == ([], [])
    assert [a["id"] for a in await ev.alerts.active()] == [alert["id"]]
    # back to 1: under the threshold but not past clear_at (0): it stays, no clear timer
    await store.leave_queue("c2", "timeout")
    assert await ev.evaluate(T0 + 40_000) == ([], [])
    assert await ev.alerts.pending() == {}
    # 0 waiting: the clear timer runs clear_for_s; a caller in between restarts it
    await store.leave_queue("c1", "timeout")
    assert await ev.evaluate(T0 + 50_000) == ([], [])
    await caller(store, "c3")
    await caller(store, "c4")
    assert await ev.evaluate(T0 + 60_000) == ([], [])
    assert await ev.alerts.pending() == {}
    await store.leave_queue("c3", "timeout")
    await store.leave_queue("c4", "timeout")
    assert await ev.evaluate(T0 + 61_000) == ([], [])
    assert await ev.evaluate(T0 + 80_999) == ([], [])
    raised, cleared = await ev.evaluate(T0 + 81_000)
    assert not raised and [a["id"] for a in cleared] == [alert["id"]]
    assert await ev.alerts.active() == []
    stored = await ev.alerts.get(alert["id"])
    assert stored is not None and stored["cleared_at"] == T0 + 81_000 and stored["clear_value"] == 0
    seen = await events(redis)
    assert [e for e, _ in seen] == ["alert.raised", "alert.cleared"]
    r, c = seen[0][1], seen[1][1]
    assert {k: r[k] for k in ("id", "rule", "metric", "queue", "value", "threshold", "clear_at", "sound")} == {
        "id": alert["id"], "rule": "queue_full", "metric": "waiting", "queue": "billing", "value": 2,
        "threshold": 1, "clear_at": 0, "sound": True}
    assert c["cleared_at"] == T0 + 81_000 and c["raised_at"] == T0 + 10_000 and c["value"] == 0


async def test_a_dip_restarts_the_raise_timer(redis_server: RedisServer, store: QueueStore) -> None:
    ev = AlertEvaluator(store, settings_with(redis_server, WAITING), owner="api-1")
    await caller(store, "c1")
    await caller(store, "c2")
    await ev.evaluate(T0)
    await store.leave_queue("c2", "timeout")  # 1: no longer above 1
    await ev.evaluate(T0 + 5_000)
    await caller(store, "c3")
    assert await ev.evaluate(T0 + 10_000) == ([], [])  # a new timer from here
    assert await ev.alerts.pending() == {"queue_full|billing": T0 + 10_000}
    raised, _ = await ev.evaluate(T0 + 20_000)
    assert [a["rule"] for a in raised] == ["queue_full"]


async def test_the_lease_moves_and_the_new_evaluator_goes_on_with_the_timers(
        redis: Redis, redis_server: RedisServer, store: QueueStore) -> None:
    s = settings_with(redis_server, WAITING)
    a, b = AlertEvaluator(store, s, owner="api-a"), AlertEvaluator(store, s, owner="api-b")
    await caller(store, "c1")
    await caller(store, "c2")
    assert await a.evaluate(T0) == ([], [])
    assert await b.evaluate(T0 + 1_000) is None  # a holds the lease: b does nothing
    assert await a.alerts.lease_holder() == "api-a"
    await redis.delete(f"{PREFIX}:alerts:lease")  # a died: its lease expired
    raised, _ = await b.evaluate(T0 + 10_000)
    assert [x["rule"] for x in raised] == ["queue_full"]  # a's timer went on: raised at T0 + for_s
    assert await a.evaluate(T0 + 11_000) is None  # a is back: b holds the lease now
    assert await b.evaluate(T0 + 12_000) == ([], [])  # not raised again
    # an evaluator that lost the lease between reading and writing changes nothing
    with pytest.raises(Conflict):
        await a.alerts.apply("api-a", Changes(pending={"x|": 1}), now_ms=T0, history_ms=86_400_000)
    assert len(await events(redis, "alert.raised")) == 1
    # a clean stop gives the lease up
    await b.alerts.release("api-b")
    assert await b.alerts.lease_holder() is None


async def test_acknowledging_keeps_the_alert_active_until_it_clears(
        redis: Redis, redis_server: RedisServer, store: QueueStore) -> None:
    ev = AlertEvaluator(store, settings_with(redis_server, WAITING.model_copy(update={"for_s": 0, "clear_for_s": 0})),
                        owner="api-1")
    await caller(store, "c1")
    await caller(store, "c2")
    raised, _ = await ev.evaluate(T0)
    aid = raised[0]["id"]
    acked = await ev.alerts.acknowledge(aid, by="super1", now_ms=T0 + 1)
    assert acked["acked_by"] == "super1" and acked["acked_at"] == T0 + 1
    again = await ev.alerts.acknowledge(aid, by="admin", now_ms=T0 + 2)
    assert again["acked_by"] == "super1"  # the first acknowledgement stays
    assert [a["acked_by"] for a in await ev.alerts.active()] == ["super1"]
    with pytest.raises(NotFound):
        await ev.alerts.acknowledge("AL999", by="super1", now_ms=T0)
    await store.leave_queue("c1", "timeout")
    await store.leave_queue("c2", "timeout")
    _, cleared = await ev.evaluate(T0 + 5)
    assert [a["id"] for a in cleared] == [aid]
    with pytest.raises(Conflict):
        await ev.alerts.acknowledge(aid, by="super1", now_ms=T0 + 6)
    types = [e for e, _ in await events(redis)]
    assert types == ["alert.raised", "alert.acknowledged", "alert.cleared"]
    cleared_event = (await events(redis, "alert.cleared"))[0][1]
    assert cleared_event["acked_by"] == "super1"


async def test_the_history_pages_through_alerts_raised_in_the_same_millisecond(redis: Redis) -> None:
    alerts = AlertStore(redis, PREFIX)
    assert await alerts.lease("me", 10_000)
    raise_ = [{"key": f"r|q{i:02d}", "rule": "r" if i % 2 else "s", "metric": "waiting", "queue": f"q{i:02d}",
               "severity": "warning" if i % 3 else "critical", "value": 5, "threshold": 1, "clear_at": 0,
               "direction": "above", "message": "m", "sound": False} for i in range(25)]
    raised, _ = await alerts.apply("me", Changes(raise_=raise_), now_ms=T0, history_ms=86_400_000)
    assert len(raised) == 25
    later, _ = await alerts.apply("me", Changes(raise_=[{**raise_[0], "key": "late|q"}]), now_ms=T0 + 1000,
                                  history_ms=86_400_000)
    seen: list[str] = []
    after = None
    for _ in range(20):
        page = await alerts.history(since_ms=0, until_ms=T0 + 10_000, after=after, limit=4)
        seen += [a["id"] for a in page.alerts]
        if page.next is None or not page.alerts:
            break
        after = page.next
    assert seen[0] == later[0]["id"] and len(seen) == 26 and len(set(seen)) == 26
    only = await alerts.history(since_ms=0, until_ms=T0 + 10_000, rule="r", severities=["critical"], limit=100)
    assert {a["queue"] for a in only.alerts} == {f"q{i:02d}" for i in range(25) if i % 2 and not i % 3}
    window = await alerts.history(since_ms=T0 + 1, until_ms=T0 + 10_000, limit=100)
    assert [a["id"] for a in window.alerts] == [later[0]["id"]]
    # the history is capped (the oldest go first) and kept history_ms
    await alerts.apply("me", Changes(), now_ms=T0 + 2000, history_ms=86_400_000, history_max=10)
    assert await redis.zcard(f"{PREFIX}:alerts:history") == 10
    await alerts.apply("me", Changes(), now_ms=T0 + 86_400_000 + 1500, history_ms=86_400_000)
    assert await redis.zcard(f"{PREFIX}:alerts:history") == 0  # T0 + 1000 is more than a day before


async def test_service_level_over_the_window_needs_min_calls(redis_server: RedisServer, store: QueueStore) -> None:
    sl = AlertRule(name="sl", metric="service_level", threshold=0.8, for_s=0, clear_for_s=0, min_calls=3)
    ev = AlertEvaluator(store, settings_with(redis_server, sl), owner="api-1")
    await store.register_agent("a1", name="A1", skills={"billing": 3}, sip_uri=None, languages=["en"])
    await store.set_agent_state("a1", AgentState.AVAILABLE)
    await store.call_start("c1", "w0", ani="+1", dnis="1", hotline="demo", language="en", plan_version="v1")
    offer = await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={"steps": []})
    assert offer is not None
    await store.offer_answered("c1", offer.offer_id)  # answered at once: within 10 s
    for cid in ("c2", "c3"):  # two callers give up
        await caller(store, cid)
        await store.end_call(cid, reason="caller_hangup", wrapup_s=0, ttl_s=3600)
    fig = await ev.collector.collect()
    assert fig.values["sl|billing"] == pytest.approx(1 / 3)
    raised, _ = await ev.evaluate(T0)
    assert raised[0]["message"] == "billing: service level (10 s) 33% below 80%"
    # with more calls needed than there were: no verdict, the alert stays
    ev2 = AlertEvaluator(store, settings_with(redis_server, sl.model_copy(update={"min_calls": 10})), owner="api-1")
    assert ev2.collector and (await ev2.collector.collect()).values["sl|billing"] is None
    assert await ev2.evaluate(T0 + 1000) == ([], [])


async def test_the_staffing_gap_counts_the_agents_signed_in_and_not_on_break(
        redis_server: RedisServer, store: QueueStore) -> None:
    rule = AlertRule(name="short", metric="staffing_gap", threshold=0, for_s=0, clear_for_s=0)

    async def need(_store: QueueStore, _s: Settings, queue: str, now_s: float) -> StaffingNow | None:
        return StaffingNow(queue, int(now_s), 20.0, 180.0, 3) if queue == "billing" else None

    ev = AlertEvaluator(store, settings_with(redis_server, rule), owner="api-1", staffing=need)
    await caller(store, "c0", queue="sales")  # a queue without a forecast: no verdict
    await store.leave_queue("c0", "timeout")
    await caller(store, "c1")
    await store.leave_queue("c1", "timeout")
    for aid, state in (("a1", AgentState.AVAILABLE), ("a2", AgentState.BREAK), ("a3", AgentState.OFFLINE)):
        await store.register_agent(aid, name=aid, skills={"billing": 3}, sip_uri=None, languages=["en"])
        await store.set_agent_state(aid, state)
    fig = await ev.collector.collect()
    assert fig.queues["billing"].signed_in == 1 and fig.queues["billing"].required == 3
    assert fig.values["short|billing"] == 2 and fig.values["short|sales"] is None
    raised, _ = await ev.evaluate(T0)
    assert [(a["queue"], a["message"]) for a in raised] == [("billing", "billing: agents short of the need 2 above 0")]


async def test_forecasting_many_queues_cold_is_spread_over_evaluations(
        redis_server: RedisServer, store: QueueStore) -> None:
    """A queue's first staffing need of the day is a forecast (up to a few hundred ms): one evaluation
    spends at most its budget on them; the other queues get their verdict in the next evaluations,
    and a queue forecast once is asked again every time (its forecast is cached)."""
    rule = AlertRule(name="short", metric="staffing_gap", threshold=0, for_s=0, clear_for_s=0)
    asked: list[str] = []

    async def slow_need(_store: QueueStore, _s: Settings, queue: str, now_s: float) -> StaffingNow | None:
        asked.append(queue)
        await asyncio.sleep(0.15)  # a cold forecast (the real one also caches: asked again, it answers at once)
        return StaffingNow(queue, int(now_s), 20.0, 180.0, 2)

    ev = AlertEvaluator(store, settings_with(redis_server, rule), owner="api-1", staffing=slow_need)
    ev.collector.cold_budget_s = 0.25
    queues = [f"q{i}" for i in range(5)]
    for i, q in enumerate(queues):
        await caller(store, f"c{i}", queue=q)
        await store.leave_queue(f"c{i}", "timeout")
    first = await ev.collector.collect()
    known = [q for q in queues if first.queues[q].required is not None]
    assert len(known) == 2, "0.15 s each against a 0.25 s budget: two forecasts, the rest wait"
    assert all(first.values[f"short|{q}"] is None for q in queues if q not in known), "no verdict yet, no alert"
    second = await ev.collector.collect()
    assert sum(second.queues[q].required is not None for q in queues) == 4, "the known two and two more"
    third = await ev.collector.collect()
    assert all(third.queues[q].required == 2 for q in queues)


async def test_worker_load_is_the_busy_share_of_the_live_workers_slots(store: QueueStore, redis: Redis) -> None:
    assert await worker_load(store) is None
    await store.register_worker("w0", "h:1", ttl_s=30, slots=10)
    await store.register_worker("w1", "h:2", ttl_s=30, slots=10)
    await store.register_worker("w2", "h:3", ttl_s=30, slots=10)
    await redis.delete(store.keys.worker_alive("w2"))  # dead: its slots do not count
    await redis.sadd(store.keys.worker_calls("w0"), *[f"c{i}" for i in range(9)])
    await redis.sadd(store.keys.worker_calls("w1"), *[f"d{i}" for i in range(9)])
    assert await worker_load(store) == pytest.approx(0.9)


@pytest.fixture
async def speech() -> AsyncIterator[tuple[int, dict[str, int]]]:
    state = {"status": 200}

    async def healthz(_r: web.Request) -> web.Response:
        return web.Response(status=state["status"])

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port, state
    await runner.cleanup()


async def test_speech_down_follows_the_speech_services_healthz(
        redis: Redis, redis_server: RedisServer, store: QueueStore, speech: tuple[int, dict[str, int]]) -> None:
    port, state = speech
    rule = AlertRule(name="speech", metric="speech_down", threshold=0.5, for_s=0, clear_for_s=0, severity="critical")
    s = Settings(redis={"url": redis_server.url, "prefix": PREFIX}, speech={"host": "127.0.0.1", "port": port},
                 alerts={"rules": [rule]})
    ev = AlertEvaluator(store, s, owner="api-1")
    assert await ev.evaluate(T0) == ([], [])
    state["status"] = 503  # the model is not loaded
    raised, _ = await ev.evaluate(T0 + 1000)
    assert [a["message"] for a in raised] == ["speech service down"] and raised[0]["queue"] == ""
    state["status"] = 200
    _, cleared = await ev.evaluate(T0 + 2000)
    assert len(cleared) == 1


async def test_an_alert_whose_rule_is_switched_off_clears(redis_server: RedisServer, store: QueueStore) -> None:
    rule = WAITING.model_copy(update={"for_s": 0})
    await caller(store, "c1")
    await caller(store, "c2")
    raised, _ = await AlertEvaluator(store, settings_with(redis_server, rule), owner="x").evaluate(T0)
    assert len(raised) == 1
    off = settings_with(redis_server, rule,
                        routing={"queues": {"billing": {"alerts": {"queue_full": {"enabled": False}}}}})
    _, cleared = await AlertEvaluator(store, off, owner="x").evaluate(T0 + 1)
    assert [a["id"] for a in cleared] == [raised[0]["id"]]
    assert cleared[0]["clear_message"] == "billing: queue_full no longer in force"


async def test_running_evaluators_hand_over_when_the_holder_stops_or_its_lease_expires(
        redis: Redis, redis_server: RedisServer, store: QueueStore) -> None:
    s = Settings(redis={"url": redis_server.url, "prefix": PREFIX}, speech={"enabled": False},
                 alerts={"evaluate_s": 0.2, "rules": [WAITING.model_copy(update={"for_s": 0})]})
    a, b = AlertEvaluator(store, s, owner="api-a"), AlertEvaluator(store, s, owner="api-b")
    assert a.lease_ms == 1000
    # a lease nobody renews expires on its own: the other instance takes it
    assert await a.evaluate(T0) == ([], [])
    assert await b.evaluate(T0) is None
    for _ in range(40):
        await asyncio.sleep(0.05)
        if await a.alerts.lease_holder() is None:
            break
    assert await b.evaluate(T0) == ([], [])
    await b.alerts.release("api-b")
    # two running evaluators: one evaluates; when it stops (gives the lease up) the other goes on
    run_a = asyncio.create_task(a.run())
    for _ in range(40):
        await asyncio.sleep(0.05)
        if await a.alerts.lease_holder() == "api-a":
            break
    run_b = asyncio.create_task(b.run())
    await asyncio.sleep(0.3)
    assert await a.alerts.lease_holder() == "api-a"
    await a.stop()  # the API's shutdown: stop, then cancel
    run_a.cancel()
    await asyncio.gather(run_a, return_exceptions=True)
    await caller(store, "c1")
    await caller(store, "c2")
    for _ in range(100):
        await asyncio.sleep(0.05)
        if await b.alerts.active():
            break
    assert await b.alerts.lease_holder() == "api-b"
    assert [x["rule"] for x in await b.alerts.active()] == ["queue_full"]
    await b.stop()
    assert await b.alerts.lease_holder() is None
    assert await b.evaluate() is None  # stopped: it takes the lease no more
    run_b.cancel()
    await asyncio.gather(run_b, return_exceptions=True)
    assert len(await events(redis, "alert.raised")) == 1
