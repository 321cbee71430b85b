"""Several processes hammer the queue store at once (tests/service/queue_hammer.py): callers arrive,
abandon, are offered, answered, not answered, hang up; agents go available, on break, offline.
Afterwards the Redis state and the whole event stream must show no double offer, no agent with two
calls, no lost caller, no agent left reserved, and first come first served within a priority."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from ivr.core.events import AgentState
from ivr.queues.store import Offer, QueueStore, StreamEvent
from tests.conftest import RedisServer
from tests.service.queue_hammer import EVENTS_MAXLEN, ROUTES

ROOT = Path(__file__).resolve().parents[2]
PROCESSES, AGENTS_EACH, OPS_EACH = 4, 4, 4000
PREFIX = "hm"


def fits(agent: dict[str, Any], route_skills: tuple[str, ...], m: int, lang: str) -> bool:
    return (all(int(agent["skills"].get(s, 0)) >= m for s in route_skills)
            and (lang == "" or lang in agent["languages"]))


ROUTE_OF = {q: (r.alternatives[0].skills, r.alternatives[0].min_proficiency, r.language) for q, r in ROUTES}


async def all_events(store: QueueStore) -> list[StreamEvent]:
    out: list[StreamEvent] = []
    last = "0-0"
    for _ in range(10_000):
        batch = await store.read_events(last, count=5000)
        if not batch:
            return out
        out.extend(batch)
        last = batch[-1].id
    raise AssertionError("event stream did not end")


def check_events(events: list[StreamEvent]) -> dict[str, Any]:
    """Replays the stream: per call no second offer while one is in flight and nothing after its end;
    per agent an offer only right after it went from available to reserved, answers only for the
    call it holds, and every state change starting from the state it was in."""
    started: list[str] = []
    ended: Counter[str] = Counter()
    in_flight: dict[str, str] = {}   # call -> offer id being offered
    connected: set[str] = set()
    agent_state: dict[str, str] = {}
    fresh_reserve: dict[str, bool] = {}
    holding: dict[str, str | None] = {}
    released: dict[str, str | None] = {}
    queued: dict[str, tuple[int, str, int, int]] = {}   # call -> (queued_at, queue, priority, order)
    first_offer: dict[str, int] = {}
    offers = 0
    for i, ev in enumerate(events):
        d, cid, aid = ev.data, ev.data.get("call_id", ""), ev.data.get("agent_id", "")
        if ev.type == "agent.state":
            prev = agent_state.get(aid)
            assert prev is None or d["previous"] == prev, (i, ev, prev)
            agent_state[aid] = d["state"]
            fresh_reserve[aid] = d["state"] == "reserved" and d["previous"] == "available"
            if d["state"] not in ("reserved", "oncall"):
                released[aid], holding[aid] = holding.get(aid), None
            continue
        if cid:
            assert not ended[cid], f"event after the end of {cid}: {ev}"
        if ev.type == "call.started":
            started.append(cid)
        elif ev.type == "call.queued":
            assert cid in started
            queued.setdefault(cid, (int(d["ts"]), d["queue"], int(d["priority"]), i))
        elif ev.type == "call.offered":
            offers += 1
            assert cid not in in_flight and cid not in connected, f"double offer of {cid}: {ev}"
            assert fresh_reserve.get(aid), f"{aid} offered {cid} without going from available to reserved"
            assert holding.get(aid) is None, f"{aid} offered {cid} while holding {holding.get(aid)}"
            fresh_reserve[aid] = False
            holding[aid] = cid
            in_flight[cid] = d["offer_id"]
            first_offer.setdefault(cid, i)
        elif ev.type == "call.offer_failed":
            assert in_flight.pop(cid) == d["offer_id"]
            assert released.get(aid) == cid, (ev, released.get(aid))
        elif ev.type == "call.answered":
            assert in_flight.pop(cid) == d["offer_id"] and holding.get(aid) == cid, ev
            connected.add(cid)
        elif ev.type == "call.agent_left":
            connected.discard(cid)
        elif ev.type == "call.ended":
            ended[cid] += 1
            in_flight.pop(cid, None)
            connected.discard(cid)
    assert len(started) == len(set(started))
    return {"started": started, "ended": ended, "queued": queued, "first_offer": first_offer, "offers": offers,
            "agent_state": agent_state}


def check_fifo(queued: dict[str, tuple[int, str, int, int]], first_offer: dict[str, int]) -> int:
    """Within one queue (one route) and one priority, callers are first offered in the order they
    were queued (queued_at ms). Two callers queued in the same millisecond have no order: the one
    queued first may be matched at once, before the other exists, or both wait and the waiting score
    (equal) orders them by call id. Returns the pairs of consecutive offers compared."""
    groups: dict[tuple[str, int], list[tuple[int, tuple[int, str]]]] = defaultdict(list)
    for cid, at in first_offer.items():
        ts, queue, prio, _ = queued[cid]
        groups[(queue, prio)].append((at, (ts, cid)))
    compared = 0
    for key, offered in groups.items():
        offered.sort()
        order = [q for _, q in offered]
        for a, b in itertools.pairwise(order):
            assert a[0] <= b[0], f"{key}: {b[1]} (queued {b[0]}) was offered before {a[1]} (queued {a[0]})"
            compared += 1
    return compared


async def check_state(store: QueueStore, redis: Redis, started: list[str], ended: Counter[str],
                      agents: list[str]) -> Counter[str]:
    """Every call started is ended exactly once or live exactly once, where its state says; agents
    and indexes agree with the calls; no available agent could take a waiting caller."""
    keys = store.keys
    active = await store.active_calls()
    assert active <= set(started)
    waiting = {q: set(await store.waiting(q)) for q, _ in ROUTES}
    profiles = {a: await store.get_agent(a) for a in agents}
    states: Counter[str] = Counter()
    for cid in started:
        call = await store.get_call(cid)
        assert call is not None, f"lost caller {cid}"
        if ended[cid]:
            assert ended[cid] == 1 and cid not in active and call["state"] == "ended", (cid, call)
            assert all(cid not in w for w in waiting.values())
            continue
        assert cid in active, (cid, call)
        state = call["state"]
        states[state] += 1
        in_queues = [q for q, w in waiting.items() if cid in w]
        holders = [a for a, p in profiles.items() if p and p.get("call_id") == cid]
        if state == "queued":
            assert in_queues == [call["queue"]] and not holders, (cid, in_queues, holders)
            skills, m, lang = ROUTE_OF[call["queue"]]
            assert await redis.zscore(keys.route_waiting(f"{m}/{lang or '*'}/{'+'.join(sorted(skills))}"), cid)
            for a, p in profiles.items():
                assert not (p and p["state"] == "available" and fits(p, skills, m, lang)), \
                    f"{a} is available while {cid}, whom it could take, waits"
        elif state in ("offered", "connected"):
            assert not in_queues and holders == [call["agent_id"]], (cid, call, holders)
            agent = profiles[call["agent_id"]]
            assert agent is not None
            assert agent["state"] == ("reserved" if state == "offered" else "oncall")
            if state == "offered":  # the offer waits in its worker's inbox (the drivers are gone)
                inbox = [Offer.from_json(o) for o in await redis.lrange(keys.worker_inbox(call["worker"]), 0, -1)]
                assert call["offer_id"] in {o.offer_id for o in inbox}, (cid, call)
        else:
            assert state == "ivr" and not in_queues and not holders, (cid, call, in_queues, holders)
    for q, w in waiting.items():
        assert w <= active, f"{q} holds callers that are not live: {w - active}"
    for a, p in profiles.items():
        assert p is not None
        if p["state"] in ("reserved", "oncall"):
            call = await store.get_call(p["call_id"])
            assert call and call["agent_id"] == a and call["state"] in ("offered", "connected"), (a, p, call)
        idle = await redis.zscore(keys.idle("s0"), a) if "s0" in p["skills"] else None
        assert (idle is not None) == (p["state"] == "available" and "s0" in p["skills"]), (a, p)
    return states


async def test_processes_hammering_the_store_keep_every_invariant(redis_server: RedisServer, redis: Redis) -> None:
    store = QueueStore(redis, prefix=PREFIX, events_maxlen=EVENTS_MAXLEN)
    rnd = random.Random(7)
    agents = [f"a{i:02d}" for i in range(PROCESSES * AGENTS_EACH)]
    for aid in agents:
        await store.register_agent(aid, name=aid, sip_uri=f"sip:{aid}@x",
                                   skills={s: rnd.randint(1, 5) for s in ("s0", "s1", "s2") if rnd.random() < 0.8},
                                   languages=rnd.choice((["ko"], ["en"], ["ko", "en"])))
    profiles = [await store.get_agent(a) for a in agents]
    for skills, m, lang in ROUTE_OF.values():  # every route has agents who can take it
        assert sum(fits(p, skills, m, lang) for p in profiles if p) >= 2

    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.service.queue_hammer", redis_server.url, PREFIX, f"w{i}", str(100 + i),
        str(OPS_EACH), ",".join(agents[i * AGENTS_EACH:(i + 1) * AGENTS_EACH]),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for i in range(PROCESSES)]
    reports = []
    try:
        for p in procs:
            out, err = await asyncio.wait_for(p.communicate(), 180)
            assert p.returncode == 0, err.decode()
            reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    started = [c for r in reports for c in r["started"]]
    assert sum(r["ops"] for r in reports) >= PROCESSES * OPS_EACH
    assert len(started) > 1000

    events = await all_events(store)
    seen = check_events(events)
    assert sorted(seen["started"]) == sorted(started)  # every call a process started, and no other
    assert seen["offers"] > 500
    states = await check_state(store, redis, started, seen["ended"], agents)
    compared = check_fifo(seen["queued"], seen["first_offer"])
    assert compared > 300
    refused = Counter[str]()
    for r in reports:
        refused.update(r["refused"])
    # the races the drivers provoke did happen: agents busy when told to change, answers to offers
    # of callers who had hung up, callers left waiting, offers in flight, talks in progress
    assert refused["agent.busy"] > 0 and refused["offer.stale"] > 0, refused

    # drain: every caller hangs up; after the wrap-ups nobody is reserved and nothing waits
    for cid in await store.active_calls():
        await store.end_call(cid, reason="drain", wrapup_s=0.01, ttl_s=3600)
    for _ in range(100):
        if not await redis.zcard(store.keys.wrapup):
            break
        await store.release_wrapups()
    assert not await store.active_calls()
    for aid in agents:
        a = await store.get_agent(aid)
        assert a is not None and a["state"] not in ("reserved", "oncall", "wrapup") and "call_id" not in a, a
        if a["state"] != AgentState.OFFLINE:
            assert aid in await store.staffed(next(iter(a["skills"])))
    for q, _ in ROUTES:
        assert not await store.waiting(q)
    assert not await redis.keys(f"{PREFIX}:route:*")
    assert not await redis.keys(f"{PREFIX}:skill:*:routes")
    assert not await redis.zcard(store.keys.escalations)
    for i in range(PROCESSES):
        assert not await store.worker_load(f"w{i}")
    final = check_events(await all_events(store))
    assert all(final["ended"][c] == 1 for c in started)
    print(f"\n{len(started)} calls, {sum(r['ops'] for r in reports)} operations, {seen['offers']} offers, "
          f"{len(events)} events, {compared} FIFO pairs, live at the end {dict(states)}, refused {dict(refused)}")
