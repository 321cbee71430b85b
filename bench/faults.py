"""Faults under traffic (``python bench/faults.py``; part of ``make bench``; a smoke version of each
runs in ``make test``, tests/e2e/test_faults.py).

One whole hotline (``ivr run``: Redis, Kamailio edge, pjsua2 workers, API) with agents who take
calls: each agent has a sipp phone that answers, and a desktop (a WebSocket client that reconnects
with ``?last_event_id=`` as the real page does). A real HTTP server stands in for the CRM: it
answers the pop's contact lookup and receives every webhook. sipp callers dial in through the edge,
press 2 and wait for billing; an agent takes them or they hang up while waiting.

Each scenario runs traffic, injects one fault half way, lets everything settle, then accounts for
every call, pop and webhook that the traffic produced:

- calls: every call the edge let in has an ended record; its outcome is normal unless it was on
  the killed worker, and those (exactly those) are recorded ``lost``; sipp's failed calls are
  exactly the lost ones; calls refused with ``503`` under overload are counted apart (not lost: the
  caller was told to retry);
- pops: every ``call.offered`` to an agent with a desktop reached that desktop (after a reconnect,
  by replay);
- webhooks: every event of the stream was delivered to the CRM at least once; none is a dead letter.

Scenarios: ``kill_worker`` (``kill -9`` of the busiest worker), ``redis_restart``, ``api_restart``
(agents connected), ``crm_down`` (lookups and webhooks refused for ``crm_down_s``), ``broken_plan``
(the dial-plan file saved broken, then fixed), ``sip_flood`` (3x the rated call rate),
``sip_fuzz`` (malformed SIP to the edge and to every worker). Each returns a report with ``ok`` and
the list of ``problems``; nothing here asserts: the smoke tests and the bench read the reports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import newest_result, sipp_counts  # noqa: E402
from ivr.queues.outbox import Outbox  # noqa: E402
from ivr.queues.store import stream_event  # noqa: E402
from tests.e2e.conftest import Hotline  # noqa: E402
from tests.ports import free_udp_tcp_port  # noqa: E402
from tests.scenarios import render_scenario  # noqa: E402
from tests.sipp_helpers import SippResult, SippServer, run_sipp, scenario  # noqa: E402

CALLER = "+15550001"
ENDPOINT = "crm"
SCENARIOS = ("kill_worker", "redis_restart", "api_restart", "crm_down", "broken_plan", "sip_flood", "sip_fuzz")


@dataclass(frozen=True)
class Scale:
    """How big each scenario is. ``rated_cps``: the call rate the hotline is rated for (the flood
    sends 3x that); ``traffic_s``: how long callers keep coming in each scenario."""
    name: str
    workers: int
    agents: int
    rate_cps: float
    hold_ms: int
    traffic_s: float
    crm_down_s: float
    rated_cps: float
    fuzz_packets: int
    settle_s: float
    webhook_backoff: dict[str, float] = field(default_factory=dict)


# Sized so that the traffic alone stays near half of the pool: a caller with an agent holds two of its
# worker's four pjsua2 call slots, and the library keeps a slot about 0.5 s after its leg ended; a
# pool run near its limit refuses callers with 503, which these scenarios would count as a loss.
SMOKE = Scale("smoke", workers=6, agents=2, rate_cps=2, hold_ms=2000, traffic_s=5, crm_down_s=3,
              rated_cps=2, fuzz_packets=300, settle_s=40,
              webhook_backoff={"backoff_base_s": 0.2, "backoff_cap_s": 1.0})
# Production webhook defaults: after 2 minutes of CRM outage the next retry can be a minute away.
BENCH = Scale("bench", workers=24, agents=8, rate_cps=4, hold_ms=6000, traffic_s=60, crm_down_s=120,
              rated_cps=8, fuzz_packets=5000, settle_s=300)


# --- the CRM: contact lookups and the webhook receiver ----------------------------------------------

class Crm:
    """A real HTTP server on loopback; :meth:`down` closes its socket (connections refused)."""

    def __init__(self) -> None:
        self.port = free_udp_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.deliveries: Counter[str] = Counter()  # event id -> times delivered
        self.lookups = 0
        self._runner: web.AppRunner | None = None

    async def _contacts(self, request: web.Request) -> web.Response:
        self.lookups += 1
        items = [{"contact": {"id": "C-1", "full_name": "Kim Minji"}}] if request.query.get("phone") == CALLER else []
        return web.json_response({"data": {"items": items}})

    async def _hook(self, request: web.Request) -> web.Response:
        await request.read()
        self.deliveries[request.headers.get("X-Ivr-Event-Id", "")] += 1
        return web.Response(status=204)

    async def up(self) -> None:
        app = web.Application()
        app.router.add_get("/api/contacts", self._contacts)
        app.router.add_post("/hooks", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


# --- an agent's desktop that reconnects ---------------------------------------------------------------

class Desktop:
    """The agent page's event feed: reconnects after any drop with ``?last_event_id=``."""

    def __init__(self, api: str, agent: str, token: str) -> None:
        self.url = f"{api}/api/v1/agents/{agent}/events"
        self.token = token
        self.events: dict[str, dict[str, Any]] = {}  # stream id -> event
        self.connects = 0
        self.gaps = 0
        self.last_id: str | None = None
        self.hello_id: str | None = None  # the stream's last id when the first socket opened
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self, http: aiohttp.ClientSession) -> None:
        while not self._stop.is_set():
            cursor = self.last_id or self.hello_id  # as the page does (ivr/cti/static/common.js)
            params = {"last_event_id": cursor} if cursor else {}
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                async with http.ws_connect(self.url, params=params, heartbeat=5,
                                           headers={"Authorization": f"Bearer {self.token}"}) as ws:
                    self.connects += 1
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        ev = json.loads(msg.data)
                        if ev.get("type") == "hello" and not self.last_id and not self.hello_id:
                            self.hello_id = ev.get("last_event_id")
                        if ev.get("type") == "replay.gap":
                            self.gaps += 1
                        if "id" in ev:
                            self.events[ev["id"]] = ev
                            self.last_id = ev["id"]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.3)

    def start(self, http: aiohttp.ClientSession) -> None:
        self._task = asyncio.create_task(self._run(http), name=f"desktop {self.url}")

    async def stop(self) -> None:
        self._stop.set()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


# --- the rig ---------------------------------------------------------------------------------------

class Rig:
    """The hotline, its agents (phones and desktops) and the CRM, started together."""

    def __init__(self, work: Path, scale: Scale) -> None:
        self.work = work
        self.scale = scale
        self.crm = Crm()
        self.agents = [f"fa{i}" for i in range(1, scale.agents + 1)]
        self.phone_ports = {a: free_udp_tcp_port() for a in self.agents}
        self.tokens = {a: f"{a}-fault-token-{os.getpid()}" for a in self.agents}
        self.plans = work / "dialplans"
        users = [{"id": a, "name": a, "skills": {"billing": 4}, "token": self.tokens[a],
                  "sip_uri": f"sip:{a}@127.0.0.1:{self.phone_ports[a]}"} for a in self.agents]
        users.append({"id": "super1", "name": "Sam", "role": "supervisor", "token": "super1-test-token"})
        self.h = Hotline(work / "hotline", workers=scale.workers, wrapup_s=0.3, overrides={
            "log_level": "warning",
            "dialplans_dir": str(self.plans),
            "dialplan": {"reload_poll_s": 0.3},
            "workers": {"drain_s": 3},
            # the callers all come from one sipp, as from a carrier's SBC: exempt from the per-source
            # flood limit (the flood scenario is about the pool's overload answer, not the ban list)
            "edge": {"flood": {"exempt_networks": ["127.0.0.1/32"]}},
            "users": users,
            # no lookup cache: every pop asks the CRM, so every pop during the outage meets it
            "crm": {"cache_ttl_s": 0, "lookups": [{"name": "by_phone", "needs": "ani",
                                 "url": self.crm.url + "/api/contacts?phone={ani}", "records": "data.items",
                                 "id_field": "contact.id", "name_field": "contact.full_name"}]},
            "webhooks": {"endpoints": [{"name": ENDPOINT, "url": self.crm.url + "/hooks",
                                        "secret": "fault-harness-secret-0123", "events": ["*"]}],
                         **scale.webhook_backoff},
        })
        self.phones: list[SippServer] = []
        self.desktops: dict[str, Desktop] = {}
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None
        return self._http

    async def start(self) -> None:
        self.plans.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "dialplans" / "hotline.yaml", self.plans / "hotline.yaml")
        await self.crm.up()
        phone = render_scenario("agent_phone.xml", self.work / "phone", keep="remote-hangs-up",
                                drop="agent-hangs-up", ring_ms=300, talk_ms=self.scale.hold_ms + 30_000)
        for a in self.agents:
            self.phones.append(await SippServer(phone, workdir=self.work / "phones", tag=a, port=self.phone_ports[a],
                                                max_runtime=24 * 3600,
                                                extra=["-mp", str(free_udp_tcp_port())]).start())
        await self.h.start(timeout=300)
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        for a in self.agents:
            self.desktops[a] = Desktop(self.h.api, a, self.tokens[a])
            self.desktops[a].start(self.http)
        for a in self.agents:
            await self.agent_state(a, "available")

    async def stop(self) -> None:
        for d in self.desktops.values():
            await d.stop()
        if self._http is not None:
            await self._http.close()
        self.h.stop(timeout=60)
        for p in self.phones:
            await p.stop()
        await self.crm.down()

    async def agent_state(self, agent: str, state: str) -> None:
        for _ in range(50):  # bounded: the API may be restarting
            with contextlib.suppress(aiohttp.ClientError):
                async with self.http.post(f"{self.h.api}/api/v1/agents/{agent}/state", json={"state": state},
                                          headers={"Authorization": f"Bearer {self.tokens[agent]}"}) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"could not make {agent} {state}")

    # --- traffic ---

    def _rate_args(self, cps: float) -> list[str]:
        # sipp's -r is calls per -rp milliseconds: 2.5 calls/s is -r 5 -rp 2000
        per, window = (int(cps), 1000) if float(cps).is_integer() else (round(cps * 10), 10_000)
        return ["-r", str(per), "-rp", str(window)]

    async def callers(self, tag: str, seconds: float, cps: float | None = None) -> SippResult:
        """Callers who press 2 and hang up after ``hold_ms`` (answered by an agent or not)."""
        cps = cps or self.scale.rate_cps
        sf = render_scenario("caller.xml", self.work / tag, keep="caller-hangs-up", drop="remote-hangs-up",
                             digit=2, dtmf_at_ms=300, talk_ms=self.scale.hold_ms)
        calls = max(1, round(cps * seconds))
        return await run_sipp(sf, ("127.0.0.1", self.h.edge_port), workdir=self.work / tag, tag="callers",
                              calls=calls, limit_s=seconds + self.scale.hold_ms / 1000 + 90,
                              extra=["-s", "1000", *self._rate_args(cps), "-l", str(calls),
                                     "-mp", str(free_udp_tcp_port())])

    async def overload_callers(self, tag: str, seconds: float, cps: float) -> SippResult:
        calls = max(1, round(cps * seconds))
        return await run_sipp(scenario("overload_caller.xml"), ("127.0.0.1", self.h.edge_port),
                              workdir=self.work / tag, tag="flood", calls=calls,
                              limit_s=seconds + self.scale.hold_ms / 1000 + 90,
                              extra=["-s", "1000", *self._rate_args(cps), "-l", str(calls),
                                     "-d", str(self.scale.hold_ms), "-mp", str(free_udp_tcp_port())])

    # --- what the hotline holds ---

    async def redis_call(self, fn: Callable[[Any], Awaitable[Any]], timeout: float = 30) -> Any:
        """Run ``fn(redis)`` on a fresh connection, retried while Redis restarts (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            redis = self.h.redis()
            try:
                return await fn(redis)
            except (ConnectionError, OSError, Exception) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Redis unreachable: {exc}") from exc
                await asyncio.sleep(0.2)
            finally:
                await redis.aclose()

    async def call_ids(self) -> set[str]:
        async def scan(redis: Any) -> set[str]:
            return {k.decode().split(":", 2)[2] async for k in redis.scan_iter("ivr:call:*", count=1000)}
        return set(await self.redis_call(scan))

    async def last_event_id(self) -> str:
        async def last(redis: Any) -> str:
            return await self.h.store(redis).last_event_id()
        return str(await self.redis_call(last))

    async def worker_pid(self, worker: str) -> int | None:
        async def holder(redis: Any) -> str | None:
            return await self.h.store(redis).worker_holder(worker)
        value = await self.redis_call(holder)
        return int(value.rpartition(":")[2]) if value else None

    def pids(self, pattern: str) -> list[int]:
        out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False).stdout
        return [int(p) for p in out.split()]


# --- accounting --------------------------------------------------------------------------------------

@dataclass
class Before:
    calls: set[str]
    event_id: str
    dead: int
    t: float = field(default_factory=time.time)


async def before(rig: Rig) -> Before:
    async def dead(redis: Any) -> int:
        return (await Outbox(redis).dead_counts([ENDPOINT]))[ENDPOINT]
    return Before(await rig.call_ids(), await rig.last_event_id(), await rig.redis_call(dead))


async def settle(rig: Rig, b: Before, timeout: float) -> dict[str, Any]:
    """Wait until every call since ``b`` has ended and the webhook backlog is empty (bounded)."""
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while True:
        async def look(redis: Any) -> dict[str, Any]:
            active = int(await redis.scard("ivr:calls:active"))
            backlog = (await Outbox(redis).backlog([ENDPOINT]))[ENDPOINT]
            return {"active": active, "backlog": backlog}
        state = await rig.redis_call(look)
        if (state["active"] == 0 and state["backlog"] == 0) or time.monotonic() > deadline:
            state["settled"] = state["active"] == 0 and state["backlog"] == 0
            return state
        await asyncio.sleep(0.5)


async def account(rig: Rig, b: Before, traffic: list[SippResult], *, expected_lost: set[str] | None = None,
                  settle_s: float | None = None) -> dict[str, Any]:
    """Every call, pop and webhook since ``b``, and what was lost (see the module's docstring)."""
    expected_lost = expected_lost or set()
    settled = await settle(rig, b, settle_s or rig.scale.settle_s)
    await asyncio.sleep(1.0)  # the last events reach desktops and the CRM

    async def records(redis: Any) -> dict[str, dict[str, Any]]:
        store = rig.h.store(redis)
        new = {k.decode().split(":", 2)[2] async for k in redis.scan_iter("ivr:call:*", count=1000)} - b.calls
        out = {}
        for cid in new:
            rec = await store.get_call(cid)
            if rec:
                out[cid] = rec
        return out

    async def events(redis: Any) -> list[Any]:
        raw = await redis.xrange(rig.h.store(redis).keys.events, min=f"({b.event_id}")
        return [stream_event(e) for e in raw]

    async def dead(redis: Any) -> int:
        return (await Outbox(redis).dead_counts([ENDPOINT]))[ENDPOINT]

    recs = await rig.redis_call(records)
    evs = await rig.redis_call(events)
    dead_now = await rig.redis_call(dead)

    sipp = [sipp_counts(r.output, ("placed", "successful", "failed", "refused_503"), missing=0) for r in traffic]
    placed = sum(s["placed"] for s in sipp)
    failed = sum(s["failed"] for s in sipp)
    refused = sum(s["refused_503"] for s in sipp)
    outcomes = Counter(r.get("outcome", "") for r in recs.values())
    unfinished = sorted(cid for cid, r in recs.items() if r.get("state") != "ended")
    lost = {cid for cid, r in recs.items() if r.get("outcome") == "lost"}

    offered = [e for e in evs if e.type == "call.offered" and e.data.get("agent_id") in rig.desktops]
    pops_missing = [e.id for e in offered if e.id not in rig.desktops[e.data["agent_id"]].events]
    hooks_missing = [e.id for e in evs if rig.crm.deliveries[e.id] == 0]
    duplicates = sum(rig.crm.deliveries[e.id] - 1 for e in evs if rig.crm.deliveries[e.id] > 1)
    # the phones are up all along: an agent who could not be dialled was sent on a break for nothing
    offer_failures = Counter(str(e.data.get("reason", "")) for e in evs if e.type == "call.offer_failed")

    problems = []
    if not settled["settled"]:
        problems.append(f"not settled within the time allowed: {settled}")
    if failed != len(expected_lost):
        problems.append(f"sipp: {failed} failed calls, {len(expected_lost)} expected (the killed worker's)")
    if placed - refused != len(recs):
        problems.append(f"{placed} calls placed, {refused} refused with 503, but {len(recs)} call records")
    if unfinished:
        problems.append(f"calls not ended: {unfinished}")
    if lost != expected_lost:
        problems.append(f"recorded lost {sorted(lost)}, expected {sorted(expected_lost)}")
    if pops_missing:
        problems.append(f"pops that never reached the desktop: {pops_missing}")
    if hooks_missing:
        problems.append(f"events never delivered to the CRM: {len(hooks_missing)}")
    if offer_failures.get("unreachable"):
        problems.append(f"agents not dialled although their phones were up: {offer_failures['unreachable']}")
    if dead_now != b.dead:
        problems.append(f"webhook dead letters: {dead_now - b.dead} new")
    return {
        "traffic": {"placed": placed, "successful": sum(s["successful"] for s in sipp), "failed": failed,
                    "refused_503": refused},
        "calls": {"recorded": len(recs), "outcomes": dict(outcomes), "unfinished": unfinished,
                  "lost": sorted(lost), "expected_lost": sorted(expected_lost)},
        "pops": {"offered": len(offered), "missing": pops_missing,
                 "reconnects": sum(max(0, d.connects - 1) for d in rig.desktops.values()),
                 "replay_gaps": sum(d.gaps for d in rig.desktops.values()),
                 "offers_failed": dict(offer_failures)},
        "webhooks": {"events": len(evs), "delivered": len(evs) - len(hooks_missing), "duplicates": duplicates,
                     "dead_letters": dead_now - b.dead, "missing": hooks_missing[:20]},
        "settled": settled,
        "ok": not problems, "problems": problems,
    }


# --- the scenarios -----------------------------------------------------------------------------------

async def _during(rig: Rig, tag: str, fault: Callable[[], Awaitable[dict[str, Any]]],
                  at_s: float | None = None) -> tuple[list[SippResult], dict[str, Any]]:
    """Callers for ``traffic_s``; ``fault`` runs ``at_s`` seconds in (half way by default)."""
    traffic = asyncio.create_task(rig.callers(tag, rig.scale.traffic_s))
    await asyncio.sleep(at_s if at_s is not None else rig.scale.traffic_s / 2)
    info = await fault()
    return [await traffic], info


async def kill_worker(rig: Rig) -> dict[str, Any]:
    """``kill -9`` of the worker with the most calls; its calls (and only those) must be recorded lost."""
    b = await before(rig)
    expected: set[str] = set()

    async def fault() -> dict[str, Any]:
        async def busiest(redis: Any) -> tuple[str, set[str]]:
            store = rig.h.store(redis)
            calls = {w: {c.decode() for c in await redis.smembers(store.keys.worker_calls(w))}
                     for w in await store.worker_names()}
            victim = max(sorted(calls), key=lambda w: len(calls[w]))
            return victim, calls[victim]
        victim, calls = await rig.redis_call(busiest)
        pid = await rig.worker_pid(victim)
        assert pid, f"worker {victim} has no heartbeat"
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()

        async def on_it(redis: Any) -> set[str]:  # calls that got in between the look and the kill
            return {c.decode() for c in await redis.smembers(rig.h.store(redis).keys.worker_calls(victim))}
        expected.update(calls | await rig.redis_call(on_it))
        for _ in range(200):
            new = await rig.worker_pid(victim)
            if new and new != pid:
                break
            await asyncio.sleep(0.05)
        return {"worker": victim, "calls_on_it": len(expected), "restarted_in_s": round(time.monotonic() - killed, 2)}

    traffic, info = await _during(rig, "kill", fault)
    report = await account(rig, b, traffic, expected_lost=expected)
    return {"fault": info, **report}


async def _terminate_and_time_return(rig: Rig, pattern: str, up: Callable[[], Awaitable[bool]],
                                     within_s: float = 30.0) -> dict[str, Any]:
    """SIGTERM every process matching ``pattern``; seconds until ``up()`` holds again with none of
    them left (the supervisor restarted the role), or None if that took longer than ``within_s``."""
    pids = rig.pids(pattern)
    assert pids, f"no process matches {pattern!r}"
    t0 = time.monotonic()
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    while time.monotonic() - t0 < within_s:
        await asyncio.sleep(0.05)
        if not set(rig.pids(pattern)) & set(pids) and await up():
            return {"pids": pids, "back_in_s": round(time.monotonic() - t0, 2)}
    return {"pids": pids, "back_in_s": None}


async def redis_restart(rig: Rig) -> dict[str, Any]:
    """The private redis-server stopped (it writes its append-only file) and started again by the
    supervisor while calls are in the IVR, in queue and with agents."""
    b = await before(rig)

    async def accepts() -> bool:
        try:
            socket.create_connection(("127.0.0.1", rig.h.redis_port), 0.2).close()
        except OSError:
            return False
        return True

    async def fault() -> dict[str, Any]:
        return await _terminate_and_time_return(rig, f"redis-server.*{rig.h.redis_port}", accepts, 20)

    traffic, info = await _during(rig, "redis", fault)
    return {"fault": info, **await account(rig, b, traffic)}


async def api_restart(rig: Rig) -> dict[str, Any]:
    """The API process stopped and started again (by the supervisor) with every desktop connected:
    the desktops reconnect and get what they missed; the workers ring agents without the pop ack."""
    b = await before(rig)

    async def ready() -> bool:
        with contextlib.suppress(aiohttp.ClientError):
            async with rig.http.get(f"{rig.h.api}/readyz") as r:
                return r.status == 200
        return False

    async def fault() -> dict[str, Any]:
        return await _terminate_and_time_return(rig, f"ivr.cli api.*{rig.h.workdir}", ready)

    traffic, info = await _during(rig, "api", fault)
    return {"fault": info, **await account(rig, b, traffic)}


async def crm_down(rig: Rig) -> dict[str, Any]:
    """The CRM refuses connections for ``crm_down_s``: pops go without the contact (flagged), webhooks
    wait in the outbox and are all delivered once it is back."""
    b = await before(rig)
    s = rig.scale
    traffic = asyncio.create_task(rig.callers("crm", s.crm_down_s + s.traffic_s))
    await asyncio.sleep(s.traffic_s / 2)
    await rig.crm.down()
    t_down = time.monotonic()
    await asyncio.sleep(s.crm_down_s)
    await rig.crm.up()
    back = time.monotonic()
    report = await account(rig, b, [await traffic])
    pops = [e for d in rig.desktops.values() for e in d.events.values()
            if e.get("type") == "call.offered" and stream_id(e["id"]) > stream_id(b.event_id)]
    crm = Counter((e.get("crm") or {}).get("status", "absent") for e in pops)
    return {"fault": {"down_s": round(back - t_down, 1), "pops_by_crm_status": dict(crm)}, **report}


def stream_id(eid: str) -> tuple[int, int]:
    ms, _, seq = eid.partition("-")
    return int(ms), int(seq or 0)


BROKEN_PLAN = "name: broken\nnumbers: [\"1000\"\nstart: welcome\nnodes: {welcome: {type: nothing}}\n"


async def broken_plan(rig: Rig) -> dict[str, Any]:
    """The plan file saved broken mid-traffic (then fixed): calls go on with the last good version,
    and the error is visible to the admin (``GET /api/v1/dialplans``)."""
    b = await before(rig)
    path = rig.plans / "hotline.yaml"
    good = path.read_text()

    async def fault() -> dict[str, Any]:
        path.write_text(BROKEN_PLAN)
        shown = None
        for _ in range(100):
            await asyncio.sleep(0.1)
            with contextlib.suppress(aiohttp.ClientError):
                async with rig.http.get(f"{rig.h.api}/api/v1/dialplans",
                                        headers={"Authorization": "Bearer super1-test-token"}) as r:
                    body = await r.json() if r.status == 200 else {}
                    errs = [p for p in body.get("dialplans", []) if p.get("errors")]
                    if errs:
                        shown = next(iter(errs[0]["errors"].values()))
                        break
        await asyncio.sleep(rig.scale.traffic_s / 4)  # calls keep arriving while the file is broken
        path.write_text(good)
        return {"error_shown": shown}

    traffic, info = await _during(rig, "plan", fault, at_s=rig.scale.traffic_s / 4)
    return {"fault": info, **await account(rig, b, traffic)}


async def sip_flood(rig: Rig) -> dict[str, Any]:
    """Callers at 3x the rated call rate: every call is either served to its end or refused with
    ``503`` + ``Retry-After`` at once; none is half-served."""
    b = await before(rig)
    cps = 3 * rig.scale.rated_cps
    traffic = [await rig.overload_callers("flood", rig.scale.traffic_s, cps)]
    report = await account(rig, b, traffic)
    return {"fault": {"rate_cps": cps, "rated_cps": rig.scale.rated_cps}, **report}


FUZZ_BODY = "v=0\r\nm=audio 9 RTP/AVP 0 8 101\r\n"
FUZZ_INVITE = ("INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:9;branch=z9hG4bK{b}\r\n"
               "From: <sip:fuzz@127.0.0.1>;tag={b}\r\nTo: <sip:1000@127.0.0.1>\r\nCall-ID: fuzz-{b}\r\n"
               "CSeq: 1 INVITE\r\nContact: <sip:fuzz@127.0.0.1:9>\r\nMax-Forwards: 70\r\n"
               "Content-Type: application/sdp\r\nContent-Length: {cl}\r\n\r\n{body}")


def framed(headers: str, body: str = FUZZ_BODY) -> bytes:
    """A message whose Content-Length is its body's real length (what decides, over UDP and TCP
    alike, that the edge parses it whole and may forward it)."""
    data = body.encode()
    return headers.replace("{cl}", str(len(data))).encode() + data


def dangerous_packets(tag: str, transport: str = "UDP") -> list[bytes]:
    """Well-framed INVITEs of each class pjsua2 workers die of or ignore: a body without a
    Content-Type (aborted a full worker), an empty or non-MIME Content-Type, two Content-Types,
    many Vias in headers and in one header, and an oversized request. The edge must answer them
    itself; sent straight to a worker, the worker must refuse them (it admits calls from the edge
    only) and live on."""
    base = FUZZ_INVITE.replace("{transport}", transport).replace("{body}", "")

    def one(i: int) -> str:
        return base.replace("{b}", f"{tag}d{i}")

    vias = "".join(f"Via: SIP/2.0/UDP 192.0.2.{k % 250 + 1}:5060;branch=z9hG4bKv{k}\r\n" for k in range(1000))
    via_list = "Via: " + ", ".join(f"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKl{k}" for k in range(40)) + "\r\n"
    variants = [
        one(0).replace("Content-Type: application/sdp\r\n", ""),
        one(1).replace("Content-Type: application/sdp", "Content-Type: "),
        one(2).replace("Content-Type: application/sdp", "Content-Type: sdp"),
        one(3).replace("Content-Type: application/sdp", "Content-Type: application/sdp/x"),
        one(4).replace("Content-Type: application/sdp\r\n", "Content-Type: application/sdp\r\nc: text/plain\r\n"),
        one(5).replace("Max-Forwards: 70\r\n", vias + "Max-Forwards: 70\r\n"),
        one(6).replace("Max-Forwards: 70\r\n", via_list + "Max-Forwards: 70\r\n"),
        one(7).replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nX-Pad: " + "a" * 5000 + "\r\n"),
    ]
    return [framed(v) for v in variants]


def fuzz_packets(n: int, seed: int = 7) -> list[bytes]:
    """``n`` malformed SIP datagrams, the same for a given seed: first the dangerous ones, well framed
    (:func:`dangerous_packets`); then a valid INVITE cut, with bytes flipped, headers dropped,
    doubled or blown up, bad numbers, the dangerous classes again with random bodies (correct
    Content-Length), and plain garbage."""
    rnd = random.Random(seed)
    out = dangerous_packets(f"{seed}ct")[:n]
    i = 0
    while len(out) < n:
        msg = framed(FUZZ_INVITE.replace("{transport}", "UDP").replace("{body}", "").replace("{b}", f"{seed}x{i}"))
        kind = i % 9
        i += 1
        if kind == 0:
            msg = msg[:rnd.randrange(1, len(msg))]
        elif kind == 1:
            b = bytearray(msg)
            for _ in range(rnd.randrange(1, 20)):
                b[rnd.randrange(len(b))] = rnd.randrange(256)
            msg = bytes(b)
        elif kind == 2:
            lines = msg.split(b"\r\n")
            del lines[rnd.randrange(1, 9)]
            msg = b"\r\n".join(lines)
        elif kind == 3:
            msg = msg.replace(b"Via:", b"Via: SIP/2.0/UDP " + b"9" * rnd.randrange(100, 4000) + b"\r\nVia:", 1)
        elif kind == 4:
            msg = re.sub(rb"Content-Length: \d+", rnd.choice(
                [b"Content-Length: -1", b"Content-Length: 99999999999", b"Content-Length: x"]), msg)
        elif kind == 5:
            msg = msg.replace(b"CSeq: 1 INVITE", rnd.choice([b"CSeq: 4294967296 INVITE", b"CSeq: INVITE",
                                                             b"CSeq: 1 BYE", b"CSeq: 1 \xff\xfe"]))
        elif kind == 6:
            msg = msg.replace(b"sip:1000@127.0.0.1 SIP/2.0", rnd.choice(
                [b"sip:@ SIP/2.0", b"<> SIP/9.9", b"sip:1000@127.0.0.1", b"sip:" + b"%" * 300 + b" SIP/2.0"]))
        elif kind == 7:  # a dangerous class with a random body, still correctly framed
            body = rnd.randbytes(rnd.randrange(1, 600)).decode("latin-1")
            ctype = rnd.choice(["", "Content-Type: \r\n", "Content-Type: ;;\r\n", "Content-Type: a/b/c\r\n"])
            head = FUZZ_INVITE.replace("{transport}", "UDP").replace("{body}", "").replace("{b}", f"{seed}y{i}")
            msg = head.replace("Content-Type: application/sdp\r\n", ctype).replace(
                "{cl}", str(len(body.encode("latin-1")))).encode() + body.encode("latin-1")
        else:
            msg = rnd.randbytes(rnd.randrange(1, 1400))
        out.append(msg)
    return out


async def send_tcp(target: tuple[str, int], packets: list[bytes], within_s: float = 2.0,
                   gap_s: float = 0.0) -> None:
    """Each packet on its own TCP connection (a broken one must not hide the next), bounded;
    ``gap_s`` between packets."""
    for i, pkt in enumerate(packets):
        if i and gap_s:
            await asyncio.sleep(gap_s)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(*target), within_s)
        except (OSError, TimeoutError):
            continue
        try:
            writer.write(pkt)
            await asyncio.wait_for(writer.drain(), within_s)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()


# Between dangerous packets sent straight to a worker. Each INVITE a worker refuses holds one of its
# four library call slots until pjsua reports it over (tens of ms); a burst of them fills the slots
# of a worker that carries calls, it answers the edge 486, and the edge rests it until its next
# probe: with every worker rested, a legitimate caller got 503 + Retry-After (1 run in 4 on 2
# cores). That burst is a denial of service at the workers' ports, which only the edge and the
# agents' phones may reach (docs/security.md); the scenario checks what it is for - no message
# aborts a worker, full or not - without it.
WORKER_GAP_S = 0.05


async def sip_fuzz(rig: Rig) -> dict[str, Any]:
    """Malformed SIP while calls run: the fuzz to the edge over UDP, the dangerous (well-framed)
    packets over UDP and TCP to the edge and straight to every worker: no call fails (a malformed
    request that took workers out would fail calls with 503) and no process dies."""
    b = await before(rig)
    n = rig.scale.fuzz_packets

    async def fault() -> dict[str, Any]:
        workers = [f"w{i}" for i in range(rig.scale.workers)]
        pids0 = {w: await rig.worker_pid(w) for w in workers}
        edge0 = rig.pids(f"kamailio.*{rig.h.workdir}")
        edge = ("127.0.0.1", rig.h.edge_port)
        targets = [edge] + [("127.0.0.1", rig.h.sip_base + i) for i in range(rig.scale.workers)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i, pkt in enumerate(fuzz_packets(n)):
                s.sendto(pkt, edge)
                if i % 50 == 49:
                    await asyncio.sleep(0.02)
            for target in targets:
                for pkt in dangerous_packets(f"u{target[1]}"):
                    s.sendto(pkt, target)
                    if target != edge:
                        await asyncio.sleep(WORKER_GAP_S)
        for target in targets:
            await send_tcp(target, dangerous_packets(f"t{target[1]}", "TCP"),
                           gap_s=0.0 if target == edge else WORKER_GAP_S)
        await asyncio.sleep(1)
        pids1 = {w: await rig.worker_pid(w) for w in workers}
        return {"packets": n, "dangerous": len(dangerous_packets("x")) * 2 * len(targets),
                "workers_restarted": sorted(w for w in workers if pids0[w] != pids1[w]),
                "edge_restarted": set(rig.pids(f"kamailio.*{rig.h.workdir}")) != set(edge0)}

    traffic, info = await _during(rig, "fuzz", fault, at_s=rig.scale.traffic_s / 4)
    report = await account(rig, b, traffic)
    if info["workers_restarted"] or info["edge_restarted"]:
        report["ok"] = False
        report["problems"].append(f"processes died of malformed SIP: {info}")
    return {"fault": info, **report}


RUNNERS: dict[str, Callable[[Rig], Awaitable[dict[str, Any]]]] = {
    "kill_worker": kill_worker, "redis_restart": redis_restart, "api_restart": api_restart,
    "crm_down": crm_down, "broken_plan": broken_plan, "sip_flood": sip_flood, "sip_fuzz": sip_fuzz}


async def faults_bench(scale: Scale = BENCH, names: tuple[str, ...] = SCENARIOS,
                       work: Path | None = None) -> dict[str, Any]:
    """Every scenario in ``names`` on one rig, one after the other; their reports."""
    work = work or Path("/tmp") / f"ivr-faults-{os.getpid()}"
    rig = Rig(work, scale)
    out: dict[str, Any] = {"scale": asdict(scale), "scenarios": {}}
    try:
        await rig.start()
        for name in names:
            print(f"  fault {name} ...", flush=True)
            t0 = time.monotonic()
            report = await RUNNERS[name](rig)
            report["seconds"] = round(time.monotonic() - t0, 1)
            out["scenarios"][name] = report
            print(f"  fault {name}: ok={report['ok']} {report['problems']}", flush=True)
    finally:
        await rig.stop()
    out["ok"] = all(r["ok"] for r in out["scenarios"].values())
    return out


def measured_setup_rate() -> float | None:
    """The highest call rate with zero failures of the newest ``make bench`` run (bench/capacity.py)."""
    def rate(data: dict[str, Any]) -> float | None:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            return float(data["ours"]["setup_rate"]["max_rate_zero_failures_cps"])
        return None
    found = newest_result(rate)
    if found is None:
        return None
    print(f"rated call rate {found[0]} calls/s from {found[1].name}", flush=True)
    return found[0]


async def main() -> None:
    from bench.harness import save
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="the small scale of make test")
    ap.add_argument("--only", default="", help="comma-separated scenarios (default: all)")
    ap.add_argument("--rated-cps", type=float, default=None, help="the rated call rate (the flood sends 3x)")
    ap.add_argument("--no-save", action="store_true", help="print the reports, write no results file")
    args = ap.parse_args()
    scale = SMOKE if args.smoke else BENCH
    rated = args.rated_cps or (None if args.smoke else measured_setup_rate())
    if rated:
        scale = Scale(**{**asdict(scale), "rated_cps": rated})
    names = tuple(n for n in args.only.split(",") if n) or SCENARIOS
    result = await faults_bench(scale, names)
    if args.no_save:
        print(json.dumps(result, indent=2))
    else:
        save("faults", result)


if __name__ == "__main__":
    asyncio.run(main())
