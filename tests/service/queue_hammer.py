"""One process of the queue concurrency test (tests/service/test_queue_concurrency.py).

``python -m tests.service.queue_hammer URL PREFIX WORKER SEED OPS AGENT[,AGENT...]`` plays a worker
holding calls (``WORKER``) and the desktops of some agents, against the real store, at random:

- callers arrive (call_start + enqueue with a random route and priority), abandon while queued or
  while offered (end_call), hang up after talking (end_call with a random wrap-up) or stay after
  the agent left (agent_left, end_call later);
- its agents go available, on break or offline; wrap-ups are released;
- like a worker it pops its inbox (QueueStore.next_message) and answers or fails (ring-no-answer) the
  offers, or the caller hangs up while it rings.

Expected refusals (an agent busy, an offer made stale by a concurrent change) are counted, anything
else ends the process with a traceback and a non-zero status. Prints one JSON line: the calls it
started, operations done, refusals by code.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections import Counter

from ivr.core.config import RedisSettings
from ivr.core.errors import Conflict
from ivr.core.events import AgentState
from ivr.queues.connection import close, connect
from ivr.queues.routing import Requirement, Route
from ivr.queues.store import Offer, QueueStore

#: (queue, route): the same route always goes with the same queue.
ROUTES: tuple[tuple[str, Route], ...] = (
    ("q0", Route((Requirement(("s0",), 1),), "", "longest_idle")),
    ("q1", Route((Requirement(("s1",), 2),), "", "best_proficiency")),
    ("q2", Route((Requirement(("s0", "s1"), 3),), "", "round_robin")),
    ("q3", Route((Requirement(("s2",), 1),), "ko", "longest_idle")),
)
EVENTS_MAXLEN = 5_000_000  # the test reads the whole stream
MAX_HELD = 25              # calls one process holds at once


class Driver:
    def __init__(self, store: QueueStore, worker: str, rnd: random.Random, agents: list[str]) -> None:
        self.store, self.worker, self.rnd, self.agents = store, worker, rnd, agents
        self.calls: dict[str, str] = {}  # call id -> what this process last saw: queued, offered, connected, ivr
        self.started: list[str] = []
        self.refused: Counter[str] = Counter()
        self.ops = 0
        self.stop = False

    async def refusable(self, coro: object) -> object:
        self.ops += 1
        try:
            return await coro  # type: ignore[misc]
        except Conflict as exc:
            assert exc.code in ("agent.busy", "offer.stale"), exc.code
            self.refused[exc.code or ""] += 1
            return None

    def pick(self, *states: str) -> str | None:
        ids = [c for c, s in self.calls.items() if s in states]
        return self.rnd.choice(ids) if ids else None

    async def end(self, cid: str, reason: str, wrapup_s: float) -> None:
        self.calls.pop(cid, None)
        self.ops += 1
        await self.store.end_call(cid, reason=reason, wrapup_s=wrapup_s, ttl_s=3600)

    async def step(self) -> None:
        r = self.rnd.random()
        if r < 0.30:
            if len(self.calls) >= MAX_HELD:
                return
            cid = f"{self.worker}-{len(self.started):05d}"
            queue, route = self.rnd.choice(ROUTES)
            self.started.append(cid)
            self.calls[cid] = "queued"
            await self.store.call_start(cid, self.worker, ani="+1555", dnis="1000", hotline="h", language="ko",
                                        plan_version="v")
            self.ops += 2
            await self.store.enqueue(cid, queue=queue, skill=route.primary_skill,
                                     priority=self.rnd.choice((0, 0, 0, 5)), journey={}, route=route)
        elif r < 0.38:
            cid = self.pick("queued")
            if cid:  # abandons while waiting (or while an offer is on its way: the store knows)
                await self.end(cid, "caller_hangup", 0)
        elif r < 0.58:
            cid = self.pick("connected", "ivr")
            if cid:
                await self.end(cid, "caller_hangup", self.rnd.choice((0.0, 0.0, 0.02, 0.05)))
        elif r < 0.62:
            cid = self.pick("connected")
            if cid:
                self.ops += 1
                self.calls[cid] = "ivr"
                await self.store.agent_left(cid, wrapup_s=self.rnd.choice((0.0, 0.03)))
        elif r < 0.92:
            state = self.rnd.choice((AgentState.AVAILABLE,) * 5 + (AgentState.BREAK,) * 2 + (AgentState.OFFLINE,))
            await self.refusable(self.store.set_agent_state(self.rnd.choice(self.agents), state, "hammer"))
        else:
            self.ops += 1
            await self.store.release_wrapups()

    async def on_offer(self, offer: Offer) -> None:
        if self.calls.get(offer.call_id) is None:  # ended here meanwhile: the store made it stale
            await self.refusable(self.store.offer_answered(offer.call_id, offer.offer_id))
            return
        r = self.rnd.random()
        if r < 0.65:
            if await self.refusable(self.store.offer_answered(offer.call_id, offer.offer_id)):
                self.calls[offer.call_id] = "connected"
        elif r < 0.85:
            self.calls[offer.call_id] = "queued"
            await self.refusable(self.store.offer_failed(offer.call_id, offer.offer_id, "ring_no_answer"))
        else:
            await self.end(offer.call_id, "caller_hangup", 0)

    async def inbox(self) -> None:
        idle = 0
        while not self.stop or idle < 2:
            offer = await self.store.next_message(self.worker, timeout_s=0.1)
            if offer is None:
                idle += 1
                continue
            idle = 0
            assert isinstance(offer, Offer), offer  # the hammer sends no commands
            await self.on_offer(offer)


async def main(url: str, prefix: str, worker: str, seed: int, ops: int, agents: list[str]) -> None:
    redis = connect(RedisSettings(url=url))
    store = QueueStore(redis, prefix=prefix, events_maxlen=EVENTS_MAXLEN)
    d = Driver(store, worker, random.Random(seed), agents)
    inbox = asyncio.ensure_future(d.inbox())
    try:
        while d.ops < ops and not inbox.done():
            await d.step()
    finally:
        d.stop = True
        await inbox
        await close(redis)
    print(json.dumps({"worker": worker, "started": d.started, "ops": d.ops, "refused": dict(d.refused)}))


if __name__ == "__main__":
    u, p, w, s, n, a = sys.argv[1:7]
    asyncio.run(main(u, p, w, int(s), int(n), a.split(",")))
