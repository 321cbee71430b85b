"""Call control on the real stack: what each command adds, and what the leg budget costs.

``python bench/call_control.py`` (``make bench-call-control``, about 5 minutes) or a section of
``make bench`` (``--no-call-control`` skips it). Two parts, each on ``ivr run`` started by
tests.e2e.conftest.Hotline on loopback, driven through the Kamailio edge by sipp:

- **latency** (``--cc-workers`` 104 pjsua2 workers, default leg policy): ``--cc-connected`` (3) callers
  press 1 (sales) and are answered by agents whose phones are one sipp UAS (tests/sipp/cc_phone.xml,
  each call sends a 2700 Hz tone); then ``--cc-waiting`` (197) callers press 2 and wait in the billing
  queue with music on hold (no billing agent), as bench/capacity.py places them: 200 calls up. The
  connected calls come first so that the edge's least-loaded dispatch gives each a worker of its own
  (a worker full of callers refuses consults: that is part 2). For ``--cc-cycle-s`` (60) seconds each
  connected call runs, as a supervisor, over and over: hold, resume, mute, unmute, dtmf, consult
  (queue support: an available agent), consult/swap twice, consult/cancel, consult again,
  conference, conference/leave (as the first agent: the target keeps the caller), transfer to the
  support queue (the caller is offered to the next free agent). Measured: request -> 202 per command
  (the API answers 202 once the worker changed the bridge or refused: an upper bound of request ->
  bridge change), p50/p95/p99. On one call a kernel-stamped capture of the caller's media port
  (tests/e2e/test_media.py StampedSniffer) gives request -> first RTP packet whose content changed
  (hold: the agent's tone gives way to music; resume: the tone is back), the on-the-wire figure.
- **leg policy** (``--cc-leg-workers`` 4 workers, once with ``workers.spare_legs`` 0, once with 1):
  (a) callers per worker: pool capacity + 2 callers wait in a queue; the peak held at once / workers,
  the refused ones, the workers' RSS and CPU per caller; (b) consult success as load rises: at 25, 50,
  75, 100 % of the pool's caller capacity (connected to agents), a consult is tried on every
  connected call: 202 vs 503 ``call.no_leg`` counted (each accepted one is cancelled at once).
  Against the previous figures: the newest bench/results/*.json with a capacity section (2 callers
  per worker, its server CPU per caller): callers per core = callers / cores of server CPU.

The load average (1, 5, 15 min) is recorded at the start and end of each part: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402

from bench.capacity import (  # noqa: E402
    Snapshot,
    caller_scenario,
    client_options,
    cpu_between,
    latency_summary,
    log_problems,
    make_hotline,
    raise_open_files,
)
from bench.harness import newest_result, save, sipp_counts  # noqa: E402
from bench.procfs import descendants, pids_matching, rss_mb  # noqa: E402
from tests.call_audio import AGENT_HZ, CALLER_HZ, MOH_BAND, tone_pcap  # noqa: E402
from tests.e2e.conftest import Hotline, merge  # noqa: E402
from tests.ports import free_udp_tcp_port  # noqa: E402
from tests.rtp_pcap import alaw_decode  # noqa: E402
from tests.scenarios import render_scenario  # noqa: E402
from tests.sipp_helpers import SippResult, SippServer, run_sipp  # noqa: E402

COMMANDS = ("hold", "resume", "mute", "unmute", "dtmf", "consult", "consult/swap", "consult/cancel",
            "conference", "conference/leave", "transfer")
CORES = os.cpu_count() or 1
RATE = 8000
BUSY = ("agent.not_available", "queue.no_agent_available")  # no free consult target yet: tried again
LONG_MS = 600_000  # a connected caller waits this long for the hotline's BYE (the bench hangs up first)


# --- pure helpers (tests/unit/test_bench_call_control.py) ---------------------------------------

def classify_frame(payload: bytes, tone_hz: float = AGENT_HZ, silence_dbfs: float = -50.0) -> str:
    """One RTP frame of G.711 A-law: "tone" when most of its energy is within 100 Hz of
    ``tone_hz``, "music" when most is in the music-on-hold band, "silence" below ``silence_dbfs``,
    else "other". A 20 ms frame resolves 50 Hz, plenty to tell a tone above 2 kHz from the music."""
    pcm = np.array(alaw_decode(payload), dtype=np.float64)
    if len(pcm) < 40:
        return "other"
    rms = math.sqrt(float(np.mean(pcm ** 2)))
    if 20 * math.log10(max(rms, 1e-9) / 32768) < silence_dbfs:
        return "silence"
    power = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / RATE)
    total = float(power.sum()) or 1.0
    if float(power[np.abs(freqs - tone_hz) <= 100].sum()) / total > 0.5:
        return "tone"
    if float(power[(freqs >= MOH_BAND[0]) & (freqs <= MOH_BAND[1])].sum()) / total > 0.5:
        return "music"
    return "other"


def first_change(frames: Sequence[tuple[float, str]], after: float, *, to: str | None = None,
                 away_from: str | None = None) -> float | None:
    """The stamp of the first frame at or after ``after`` whose class is ``to`` (or is not
    ``away_from``), None if none; ``frames`` are (stamp, class) in capture order."""
    for ts, kind in frames:
        if ts < after:
            continue
        if (to is not None and kind == to) or (away_from is not None and kind != away_from):
            return ts
    return None


def consult_capacity(max_legs: int, spare_legs: int) -> int:
    """Callers a worker admits: each caller's call holds a pair of legs (caller + agent) and
    ``spare_legs`` stay out of admission for consults (ivr/core/leg_budget.py)."""
    return max(0, (max_legs - spare_legs) // 2)


def success_rate(counts: dict[str, int]) -> float | None:
    tried = sum(counts.values())
    return round(counts.get("accepted", 0) / tried, 3) if tried else None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- the rig: a hotline with agents whose phones are one sipp UAS ------------------------------

@dataclass
class Rig:
    h: Hotline
    http: aiohttp.ClientSession
    work: Path
    phone: SippServer
    agent_pcap: Path
    caller_pcap: Path
    samples: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in COMMANDS})
    refusals: dict[str, dict[str, int]] = field(default_factory=dict)
    callers: list[asyncio.Task[SippResult]] = field(default_factory=list)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.h.tokens[who]}"}

    async def post(self, path: str, body: dict[str, Any] | None = None, who: str = "super1") -> tuple[int, str, float]:
        """(status, error code or "", seconds from the request to the reply)."""
        t0 = time.perf_counter()
        async with self.http.post(f"{self.h.api}{path}", json=body, headers=self.auth(who)) as r:
            text = await r.text()
            dt = time.perf_counter() - t0
        code = ""
        if r.status >= 300:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                code = json.loads(text)["error"]["code"]
        return r.status, code or str(r.status), dt

    async def command(self, cid: str, cmd: str, body: dict[str, Any] | None = None, who: str = "super1",
                      retry_busy: bool = False) -> tuple[int, str]:
        """One timed command on call ``cid``; a 202 is a latency sample, anything else is counted
        under ``refusals``. With ``retry_busy``, 409 agent.not_available (no free target yet) is
        retried (bounded) and not counted."""
        for _ in range(50):
            status, code, dt = await self.post(f"/api/v1/calls/{cid}/{cmd}", body, who)
            if retry_busy and code in BUSY:
                await asyncio.sleep(0.2)
                continue
            break
        if status == 202:
            self.samples[cmd].append(dt * 1000)
        else:
            self.refusals.setdefault(cmd, {}).setdefault(code, 0)
            self.refusals[cmd][code] += 1
        return status, code

    async def record(self, cid: str) -> dict[str, Any]:
        redis = self.h.redis()
        try:
            return await self.h.store(redis).get_call(cid) or {}
        finally:
            await redis.aclose()

    async def wait_record(self, cid: str, check: Any, timeout: float = 15) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = await self.record(cid)
            if check(rec):
                return rec
            await asyncio.sleep(0.05)
        return None

    async def active(self) -> set[str]:
        redis = self.h.redis()
        try:
            return set(await self.h.store(redis).active_calls())
        finally:
            await redis.aclose()

    async def connected(self) -> dict[str, dict[str, Any]]:
        out = {}
        for cid in await self.active():
            rec = await self.record(cid)
            if rec.get("state") == "connected":
                out[cid] = rec
        return out

    async def agent_state(self, agent: str) -> str:
        redis = self.h.redis()
        try:
            a = await self.h.store(redis).get_agent(agent)
            return str(a["state"]) if a else ""
        finally:
            await redis.aclose()

    async def wait_agent(self, agent: str, state: str, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.agent_state(agent) == state:
                return True
            await asyncio.sleep(0.05)
        return False

    async def login(self, agent: str) -> None:
        async with self.http.post(f"{self.h.api}/api/v1/agents/{agent}/state", json={"state": "available"},
                                  headers=self.auth(agent)) as r:
            if r.status != 200:
                raise RuntimeError(f"login {agent}: {r.status} {await r.text()}")

    def call_in(self, digit: int, calls: int = 1, media_port: int | None = None, tag: str = "cc") -> None:
        """``calls`` callers (sending a 2300 Hz tone) press ``digit`` and wait for the hotline's BYE."""
        sf = render_scenario("cc_caller.xml", self.work / "rendered" / tag, keep="remote-hangs-up",
                             drop="caller-hangs-up", digit=digit, dtmf_at_ms=500, talk_ms=LONG_MS,
                             audio_pcap=self.caller_pcap)
        self.callers.append(asyncio.create_task(run_sipp(
            sf, ("127.0.0.1", self.h.edge_port), workdir=self.work / "sipp", tag=tag, calls=calls,
            limit_s=LONG_MS / 1000, trace_messages=False,
            extra=["-s", "1000", "-r", "2", "-mp", str(media_port or free_udp_tcp_port())])))

    async def wait_connected(self, n: int, timeout: float = 40) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        calls: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            calls = await self.connected()
            if len(calls) >= n:
                return calls
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{len(calls)} of {n} calls connected:\n{self.h.log_tail(30)}")

    async def hang_up_all(self) -> None:
        for cid in await self.active():
            with contextlib.suppress(aiohttp.ClientError):
                await self.post(f"/api/v1/calls/{cid}/hangup")
        for task in self.callers:
            task.cancel()
        await asyncio.gather(*self.callers, return_exceptions=True)
        self.callers.clear()


def agents_config(h: Hotline, phone_port: int, names: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = [{"id": "super1", "name": "Sam", "role": "supervisor", "token": h.tokens["super1"]}]
    for agent, skills in names.items():
        h.tokens[agent] = f"{agent}-bench-token"
        users.append({"id": agent, "name": agent, "skills": skills, "sip_uri": f"sip:{agent}@127.0.0.1:{phone_port}",
                      "token": h.tokens[agent]})
    return users


@contextlib.asynccontextmanager
async def rig(work: Path, workers: int, agents: dict[str, dict[str, int]], overrides: dict[str, Any],
              timeout: float = 300) -> Any:
    phone_port = free_udp_tcp_port()
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    base = {"log_level": "warning", "workers": {"drain_s": 2}, "routing": {"wrapup_s": 0.3},
            "calls": {"consult_ring_s": 10}, "edge": {"flood": {"exempt_networks": ["127.0.0.1/32"]}}}
    h = make_hotline(work / "hotline", workers, base)
    h.overrides = {**merge(h.overrides, overrides), "users": agents_config(h, phone_port, agents)}
    pcaps = {p: tone_pcap(hz, 120, work / f"{p}.pcap") for p, hz in (("caller", CALLER_HZ), ("agent", AGENT_HZ))}
    sf = render_scenario("cc_phone.xml", work / "rendered" / "phone", keep="remote-hangs-up", drop="agent-hangs-up",
                         ring_ms=100, talk_ms=LONG_MS, audio_pcap=pcaps["agent"])
    phone = SippServer(sf, workdir=work / "sipp", tag="phones", port=phone_port, max_runtime=900,
                       trace_messages=False, extra=["-mp", str(free_udp_tcp_port())])
    try:
        await h.start(timeout=timeout)
        async with phone, aiohttp.ClientSession() as http:
            r = Rig(h, http, work, phone, pcaps["agent"], pcaps["caller"])
            try:
                yield r
            finally:
                await r.hang_up_all()
    finally:
        await asyncio.to_thread(h.stop, 60)


def server_pids(h: Hotline) -> list[int]:
    assert h.proc is not None
    return sorted(set(descendants(h.proc.pid)) | set(pids_matching(str(h.workdir))))


# --- part 1: the latency of each command with 200 calls up -------------------------------------

@dataclass
class Wire:
    """Request -> first changed RTP packet at the caller's media port, for hold and resume."""

    sniffer: Any
    port: int
    marks: list[tuple[str, float]] = field(default_factory=list)

    def figures(self) -> dict[str, list[float]]:
        frames = [(p.ts, classify_frame(p.rtp_payload)) for p in self.sniffer.rtp(dst=self.port)
                  if p.rtp_payload_type == 8]
        out: dict[str, list[float]] = {"hold": [], "resume": []}
        for cmd, t0 in self.marks:
            ts = first_change(frames, t0, away_from="tone") if cmd == "hold" else first_change(frames, t0, to="tone")
            if ts is not None and ts - t0 < 2:
                out[cmd].append((ts - t0) * 1000)
        return out


async def cycle(r: Rig, cid: str, wire: Wire | None, stop_at: float) -> int:
    """Run the commands on call ``cid`` until ``stop_at``; returns the cycles completed."""
    done = 0
    while time.monotonic() < stop_at:
        for cmd in ("hold", "resume"):
            if wire is not None:
                await asyncio.sleep(0.4)  # a stretch of the old sound before (and after) the command
                wire.marks.append((cmd, time.time()))
            await r.command(cid, cmd)
        if wire is not None:
            await asyncio.sleep(0.4)  # the agent's tone back at the caller before the mute silences it
        await r.command(cid, "mute")
        await r.command(cid, "unmute")
        await r.command(cid, "dtmf", {"digits": "1"})
        target = {"target": {"type": "queue", "queue": "support"}}
        status, _ = await r.command(cid, "consult", target, retry_busy=True)
        if status == 202:
            if await r.wait_record(cid, lambda rec: '"talking"' in str(rec.get("consult", ""))):
                await r.command(cid, "consult/swap")
                await r.command(cid, "consult/swap")
            await r.command(cid, "consult/cancel")
        first = str((await r.record(cid)).get("agent_id", ""))
        status, _ = await r.command(cid, "consult", target, retry_busy=True)
        if status == 202:
            if await r.wait_record(cid, lambda rec: '"talking"' in str(rec.get("consult", ""))):
                await r.command(cid, "conference")
                await r.command(cid, "conference/leave", who=first or "super1")
            else:
                await r.command(cid, "consult/cancel")
        await r.command(cid, "transfer", target)
        if not await r.wait_record(cid, lambda rec: rec.get("state") == "connected", timeout=20):
            break  # nobody took the transferred caller: this call's part ends (its log says why)
        done += 1
    return done


async def pin_workers(r: Rig, cids: list[str]) -> list[str]:
    """A consult (answered) on each call; the calls whose consult is up."""
    pinned = []
    for cid in cids:
        for _ in range(50):
            status, code, _ = await r.post(f"/api/v1/calls/{cid}/consult",
                                           {"target": {"type": "queue", "queue": "support"}})
            if code not in BUSY:
                break
            await asyncio.sleep(0.2)
        if status == 202 and await r.wait_record(cid, lambda rec: '"talking"' in str(rec.get("consult", ""))):
            pinned.append(cid)
    return pinned


async def shared_workers(r: Rig, cids: list[str]) -> int:
    """How many of the calls ``cids`` are on a worker that holds another caller."""
    redis = r.h.redis()
    try:
        store = r.h.store(redis)
        n = 0
        for cid in cids:
            worker = (await r.record(cid)).get("worker")
            if worker and int(await store.worker_load(str(worker)) or 0) > 1:
                n += 1
        return n
    finally:
        await redis.aclose()


async def latency_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from tests.e2e.test_media import StampedSniffer

    agents = {f"cc{i}": {"sales": 1, "support": 1} for i in range(1, 3 * args.cc_connected + 1)}
    out: dict[str, Any] = {"workers": args.cc_workers, "connected_calls": args.cc_connected,
                           "waiting_callers": args.cc_waiting, "load_average_start": load_average()}
    t0 = time.monotonic()
    async with rig(work / "latency", args.cc_workers, agents, {}) as r:
        out["startup_s"] = round(time.monotonic() - t0, 1)
        for agent in agents:
            await r.login(agent)
        wire_port = free_udp_tcp_port()
        sniffer = StampedSniffer({wire_port})
        sniffer.max_seconds = args.cc_cycle_s + 240  # read by its thread, which starts on entering
        with sniffer:
            r.call_in(1, media_port=wire_port, tag="cc-wire")
            calls = await r.wait_connected(1)
            wire_cid = next(iter(calls))
            for i in range(1, args.cc_connected):
                r.call_in(1, tag=f"cc-{i}")
                calls = await r.wait_connected(i + 1)
            # Each connected call's worker is kept for it while the waiting callers come in: a consult
            # holds its third leg, so the worker refuses a second caller (503: the edge tries the next
            # worker). Without this the least-loaded dispatch puts a second caller on every worker
            # once all have one, and a worker with two callers refuses consults (part 2 counts that).
            pinned = await pin_workers(r, list(calls))
            # the waiting callers: press 2, billing queue, music on hold, no billing agent
            fill_s = args.cc_waiting / args.cc_fill_rate
            talk_ms = int((fill_s + args.cc_cycle_s + 60) * 1000)
            sf = caller_scenario(work / "latency" / "sipp", "waiting", talk_ms)
            waiting = asyncio.create_task(run_sipp(
                sf, ("127.0.0.1", r.h.edge_port), workdir=work / "latency" / "sipp", tag="waiting",
                calls=args.cc_waiting, limit_s=talk_ms / 1000 + fill_s + 30, trace_messages=False,
                extra=[*client_options(), "-r", str(args.cc_fill_rate), "-l", str(args.cc_waiting)]))
            deadline = time.monotonic() + fill_s + 30
            up = 0
            while time.monotonic() < deadline:
                up = len(await r.active())
                if up >= args.cc_connected + args.cc_waiting:
                    break
                await asyncio.sleep(0.5)
            out["calls_up_at_start"] = up
            for cid in pinned:
                await r.post(f"/api/v1/calls/{cid}/consult/cancel")
            await asyncio.sleep(1)
            out["workers_with_two_callers_among_connected"] = await shared_workers(r, list(calls))
            print(f"  latency: {up} calls up, {args.cc_connected} connected; commands for {args.cc_cycle_s} s",
                  flush=True)
            pids = server_pids(r.h)
            a = Snapshot.take(pids)
            wire = Wire(sniffer, wire_port)
            stop_at = time.monotonic() + args.cc_cycle_s
            cycles = await asyncio.gather(*(cycle(r, cid, wire if cid == wire_cid else None, stop_at)
                                            for cid in calls))
            b = Snapshot.take(pids)
            out["calls_up_at_end"] = len(await r.active())
            out["cycles_per_call"] = list(cycles)
            out.update(cpu_between(a, b))
            out["server_rss_mb"] = rss_mb(pids)
            on_wire = wire.figures()
        out["log_problems"] = log_problems(r.h)
        waiting.cancel()  # the waiting callers' sipp is stopped with the hotline
        await asyncio.gather(waiting, return_exceptions=True)
        out["request_to_202_ms"] = {cmd: latency_summary(s) for cmd, s in r.samples.items()}
        out["request_to_rtp_change_ms"] = {cmd: latency_summary(s) for cmd, s in on_wire.items()}
        # commands whose change was not seen within 2 s are left out of the figures above: counted here
        out["wire_commands_sent"] = {cmd: sum(1 for c, _ in wire.marks if c == cmd) for cmd in on_wire}
        out["refused"] = r.refusals
        out["_samples_ms"] = {**{cmd: s for cmd, s in r.samples.items() if s},
                              **{f"wire {cmd}": s for cmd, s in on_wire.items() if s}}
    out["load_average_end"] = load_average()
    return out


# --- part 2: the leg policy ---------------------------------------------------------------------

async def callers_per_worker(r: Rig, workers: int, capacity: int) -> dict[str, Any]:
    """Capacity + 2 callers wait in the billing queue (no agent logged in): how many are held at once."""
    calls = capacity * workers + 2
    rate = 5
    talk_ms = int((calls / rate + 6) * 1000)
    sf = caller_scenario(r.work / "sipp", "per-worker", talk_ms)
    task = asyncio.create_task(run_sipp(sf, ("127.0.0.1", r.h.edge_port), workdir=r.work / "sipp", tag="per-worker",
                                        calls=calls, limit_s=talk_ms / 1000 + 30, trace_messages=False,
                                        extra=[*client_options(), "-r", str(rate), "-l", str(calls)]))
    peak = 0
    pids: list[int] = []
    a = b = None
    rss = 0.0
    while not task.done():
        peak = max(peak, len(await r.active()))
        if a is None and peak >= capacity * workers:
            pids = pids_matching(str(r.h.workdir), also="worker")
            a = Snapshot.take(pids)
        elif a is not None and b is None and time.monotonic() - a.at > 3:
            b = Snapshot.take(pids)
            rss = rss_mb(pids)
        await asyncio.sleep(0.2)
    res = task.result()
    out: dict[str, Any] = {"callers_placed": calls, "peak_held": peak, "callers_per_worker": round(peak / workers, 2),
                           **sipp_counts(res.output)}
    if a is not None and b is not None and peak:
        cpu = cpu_between(a, b)["server_cpu_pct_of_machine"]
        out.update({"workers_cpu_pct_of_machine": cpu, "workers_rss_mb": rss,
                    "workers_rss_mb_per_caller": round(rss / peak, 1),
                    "callers_per_core_workers_only": round(peak / (cpu / 100 * CORES), 1) if cpu > 0 else None})
    return out


async def consult_ramp(r: Rig, capacity: int, workers: int) -> list[dict[str, Any]]:
    """At 25, 50, 75, 100 % of the pool's callers (connected to agents), a consult on every call."""
    pool = capacity * workers
    levels: list[dict[str, Any]] = []
    placed = 0
    for pct in (25, 50, 75, 100):
        n = max(1, round(pool * pct / 100))
        if n > placed:
            r.call_in(1, calls=n - placed, tag=f"ramp-{n}")
            placed = n
        try:
            calls = await r.wait_connected(n)
        except RuntimeError as exc:
            levels.append({"load_pct": pct, "connected": len(await r.connected()), "error": str(exc)[:300]})
            break
        counts: dict[str, int] = {}
        for cid in calls:
            status, code = await r.command(cid, "consult", {"target": {"type": "agent", "agent_id": "target"}},
                                           retry_busy=True)
            key = "accepted" if status == 202 else code
            counts[key] = counts.get(key, 0) + 1
            if status == 202:
                # cancelled once answered, as an agent would: a phone is never left with a CANCEL
                await r.wait_record(cid, lambda rec: '"talking"' in str(rec.get("consult", "")), timeout=10)
                await r.command(cid, "consult/cancel")
                await r.wait_record(cid, lambda rec: rec.get("state") == "connected", timeout=10)
                await r.wait_agent("target", "available", timeout=10)
        levels.append({"load_pct": pct, "connected": len(calls), "consults": counts,
                       "success_rate": success_rate(counts)})
        print(f"    {pct}% ({len(calls)} connected): {counts}", flush=True)
    return levels


async def leg_policy_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"workers": args.cc_leg_workers, "load_average_start": load_average()}
    for spare in (0, 1):
        capacity = consult_capacity(4, spare)
        agents = {f"s{i}": {"sales": 1} for i in range(1, capacity * args.cc_leg_workers + 1)}
        agents["target"] = {"support": 1}
        print(f"  leg policy spare_legs {spare}: {args.cc_leg_workers} workers", flush=True)
        async with rig(work / f"legs-{spare}", args.cc_leg_workers, agents, {"workers": {"spare_legs": spare}}) as r:
            per_worker = await callers_per_worker(r, args.cc_leg_workers, capacity)
            print(f"    per worker: {per_worker}", flush=True)
            for _ in range(60):  # the waiting callers hang up (bounded: 18 s)
                if not await r.active():
                    break
                await asyncio.sleep(0.3)
            for agent in agents:
                await r.login(agent)
            ramp = await consult_ramp(r, capacity, args.cc_leg_workers)
            out[f"spare_legs_{spare}"] = {"admitted_callers_per_worker": capacity, "per_worker": per_worker,
                                          "consults_by_load": ramp, "log_problems": log_problems(r.h)}
    out["load_average_end"] = load_average()
    return out


def previous_figures() -> dict[str, Any] | None:
    """Callers per worker and per core of the newest capacity run (bench/capacity.py)."""
    found = newest_result(lambda d: d if isinstance(d.get("ours"), dict) and "capacity" in d["ours"] else None)
    if found is None:
        return None
    data, path, _ = found
    levels = [lv for lv in data["ours"]["capacity"]["levels"] if lv.get("failed") == 0]
    if not levels:
        return None
    top = max(levels, key=lambda lv: lv["calls"])
    cores = (data.get("machine") or {}).get("cores") or CORES
    cpu = top["server_cpu_pct_of_machine"]
    by_level = {lv["calls"]: round(lv["calls"] / (lv["server_cpu_pct_of_machine"] / 100 * cores), 1)
                for lv in levels if lv.get("server_cpu_pct_of_machine")}
    per_call: dict[str, Any] = next((pc for pc in data["ours"].get("per_call", []) if pc["calls"] == top["calls"]), {})
    return {"file": str(path.relative_to(ROOT)), "workers": data.get("workers"), "callers": top["calls"],
            "server_cpu_pct_per_call": per_call.get("server_cpu_pct_per_call"),
            "server_rss_mb_per_call": per_call.get("server_rss_mb_per_call"),
            "idle_cpu_pct_of_machine_per_worker": data["ours"]["idle"].get("cpu_pct_of_machine_per_worker"),
            "callers_per_worker": round(top["calls"] / data["workers"], 2) if data.get("workers") else None,
            "server_cpu_pct_of_machine": cpu,
            "callers_per_core": round(top["calls"] / (cpu / 100 * cores), 1) if cpu else None,
            "callers_per_core_by_level": by_level,
            "rss_mb_per_worker": data["ours"]["idle"].get("rss_mb_per_worker")}


def projection(previous: dict[str, Any], callers_per_worker: float) -> dict[str, Any] | None:
    """Callers per core and memory per caller at a policy's callers per worker, from the previous
    run's measured costs: a caller's own CPU and RSS plus its share of an idle worker's."""
    keys = ("server_cpu_pct_per_call", "idle_cpu_pct_of_machine_per_worker", "server_rss_mb_per_call",
            "rss_mb_per_worker")
    if any(previous.get(k) is None for k in keys) or callers_per_worker <= 0:
        return None
    call_cpu, idle_cpu, call_rss, worker_rss = (float(previous[k]) for k in keys)
    cpu = call_cpu + idle_cpu / callers_per_worker  # % of the machine per caller
    return {"callers_per_worker": callers_per_worker, "cpu_pct_of_machine_per_caller": round(cpu, 4),
            "callers_per_core": round(100 / cpu / CORES, 1) if cpu > 0 else None,
            "rss_mb_per_caller": round(call_rss + worker_rss / callers_per_worker, 1)}


def comparison(latency: dict[str, Any] | None, legs: dict[str, Any] | None,
               previous: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"previous": previous}
    if latency and latency.get("server_cpu_pct_of_machine"):
        up = latency.get("calls_up_at_end") or 0
        out["now_200_calls"] = {"callers": up, "workers": latency["workers"],
                                "server_cpu_pct_of_machine": latency["server_cpu_pct_of_machine"],
                                "callers_per_core": round(up / (latency["server_cpu_pct_of_machine"] / 100 * CORES), 1)}
    if legs:
        for spare in (0, 1):
            side = legs.get(f"spare_legs_{spare}")
            if side:
                out[f"spare_legs_{spare}_callers_per_worker"] = side["per_worker"]["callers_per_worker"]
    if previous:
        out["projected_from_previous_costs"] = {
            f"spare_legs_{spare}": projection(previous, consult_capacity(4, spare)) for spare in (0, 1)}
    if previous and previous.get("callers_per_worker") and legs and legs.get("spare_legs_1"):
        out["workers_needed_spare_legs_1_vs_previous"] = round(
            previous["callers_per_worker"] / max(0.01, legs["spare_legs_1"]["per_worker"]["callers_per_worker"]), 2)
    return out


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The flags of this section (``--cc-`` ones: bench/run.py has its own ``--workers``)."""
    ap.add_argument("--cc-workers", type=int, default=104, help="workers for the latency part")
    ap.add_argument("--cc-connected", type=int, default=3, help="connected calls running commands")
    ap.add_argument("--cc-waiting", type=int, default=197, help="callers waiting with music on hold")
    ap.add_argument("--cc-fill-rate", type=int, default=25, help="calls/s placing the waiting ones")
    ap.add_argument("--cc-cycle-s", type=float, default=60.0, help="seconds of commands")
    ap.add_argument("--cc-leg-workers", type=int, default=4, help="workers for the leg policy part")
    ap.add_argument("--cc-no-latency", action="store_true", help="skip the latency part")
    ap.add_argument("--cc-no-legs", action="store_true", help="skip the leg policy part")


async def call_control_bench(args: argparse.Namespace) -> dict[str, Any]:
    raise_open_files()
    work = Path("/tmp") / f"ivr-bench-cc-{os.getpid()}"
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": {"cores": CORES},
                              "load_average_start": load_average()}
    latency = legs = None
    if not args.cc_no_latency:
        print(f"call control latency: {args.cc_workers} workers, {args.cc_connected + args.cc_waiting} calls up",
              flush=True)
        latency = result["latency"] = await latency_part(args, work)
    if not args.cc_no_legs:
        print("call control leg policy: callers per worker, consult success as load rises", flush=True)
        legs = result["leg_policy"] = await leg_policy_part(args, work)
    result["against_previous"] = comparison(latency, legs, previous_figures())
    result["load_average_end"] = load_average()
    result["reproduce"] = "make bench-call-control  (python bench/call_control.py)"
    return result


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap)
    args = ap.parse_args()
    save("call-control", await call_control_bench(args))


if __name__ == "__main__":
    asyncio.run(main())
