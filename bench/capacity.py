"""Capacity and call-setup figures of the real stack, side by side with sipp's own UAS as the C reference.

Ours: ``ivr run`` (Redis, Kamailio edge, N pjsua2 workers, API) on loopback, driven through the edge
by sipp callers (tests/sipp/caller.xml: press 2, wait in the billing queue with music on hold, no
agent logged in, hang up after ``talk_ms``). Reference: tests/sipp/reference_uas.xml (answer with
SDP, play G.711 audio until the caller's BYE) run by sipp on loopback and driven by the SAME caller
scenario with the SAME client options, after ours has stopped (so both have the machine alone,
apart from other jobs on it).

Sections (:func:`capacity_sections` runs them all and fills the results dict):

- capacity ramp: at each level (e.g. 100, 200, ... up to the pool's caller capacity = 2 x workers)
  that many calls are placed at a fixed rate and held until all are up at once; recorded: peak
  concurrent calls (Redis ``SCARD ivr:calls:active`` for ours, sipp's own peak for both), successful
  and failed calls, CPU and RSS on the plateau, INVITE -> 200 OK latency percentiles. The ramp stops
  at the first level with failures.
- per call: (value at a level - idle value) / calls, for the server's CPU and RSS; idle RSS of one
  pjsua2 worker.
- setup rate: short calls at increasing rates, ``rate_seconds`` each, until a rate has failures.
- ratios ours / reference, and PNG charts (bench/plots.py).

CPU is measured two ways: the machine's busy share (/proc/stat; includes sipp's caller and any
other job on the machine) and the server's own processes (/proc/<pid>/stat utime+stime, as a
share of the whole machine); per-call figures use the latter, which other jobs do not disturb.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import resource
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from redis.asyncio import Redis

from bench.harness import sipp_counts
from bench.procfs import cpu_ticks, descendants, machine_jiffies, pids_matching, pss_mb, rss_mb
from ivr.core.config import WorkerSettings
from tests import ports
from tests.e2e import conftest as e2e
from tests.e2e.conftest import Hotline
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippServer, run_sipp, scenario

CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
RECV_TIMEOUT_MS = 10_000  # a caller not answered (or not given its BYE's 200) within 10 s is a failed call
DTMF_AT_MS = 300
SCREEN_COUNTS = ("successful", "failed", "sipp_peak_calls")  # what a level reports of sipp's screen


# --- parsing sipp's output (pure; tests/unit/test_bench_capacity.py) ------------------------------

def parse_rtt_csv(text: str) -> list[tuple[float, float]]:
    """sipp's ``-trace_rtt`` file (``Date_ms;response_time_ms;rtd_no``, one row per call with
    ``-rtt_freq 1``) -> [(ms since sipp started, INVITE -> 200 OK ms)] for response-time 1."""
    rows = []
    for line in text.splitlines():
        parts = line.strip().split(";")
        if len(parts) < 3 or not parts[0][:1].isdigit():
            continue  # header or a torn last line
        with contextlib.suppress(ValueError):
            if int(parts[2]) == 1:
                rows.append((float(parts[0]), float(parts[1])))
    return rows


def percentile(samples: list[float], p: float) -> float | None:
    """Nearest-rank percentile (a value that was measured), None without samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency_summary(samples: list[float]) -> dict[str, Any]:
    return {"n": len(samples), **{f"p{p}": percentile(samples, p) for p in (50, 95, 99)},
            "max": max(samples) if samples else None}


def achieved_rate(rows: list[tuple[float, float]]) -> float | None:
    """Calls answered per second over the span of the answers (None below two calls)."""
    if len(rows) < 2:
        return None
    sent = sorted(t - rtt for t, rtt in rows)  # when each INVITE went out
    span_s = (sent[-1] - sent[0]) / 1000
    return round((len(rows) - 1) / span_s, 1) if span_s > 0 else None


def ratio(ours: float | None, reference: float | None) -> float | None:
    """ours / reference, None when either is unknown or the reference is 0 (below sipp's 1 ms)."""
    if ours is None or reference is None or reference == 0:
        return None
    return round(ours / reference, 3)


def default_levels(capacity: int, step: int = 100) -> list[int]:
    """100, 200, ... up to ``capacity`` (which is always the last level); a pool under ``step``
    callers gets quarters of it."""
    if capacity < step:
        return sorted({max(1, capacity * q // 4) for q in (1, 2, 3, 4)})
    levels = list(range(step, capacity + 1, step))
    return levels if levels[-1] == capacity else [*levels, capacity]


# --- measuring processes ------------------------------------------------------------------------

@dataclass
class Snapshot:
    at: float
    busy: int
    total: int
    ticks: int

    @staticmethod
    def take(pids: list[int]) -> Snapshot:
        busy, total = machine_jiffies()
        return Snapshot(time.monotonic(), busy, total, cpu_ticks(pids))


def cpu_between(a: Snapshot, b: Snapshot) -> dict[str, float]:
    """Machine busy % and the server processes' CPU as % of the whole machine, between two snapshots."""
    elapsed = max(1e-3, b.at - a.at)
    return {"cpu_busy_pct_of_machine": round(100 * (b.busy - a.busy) / max(1, b.total - a.total), 1),
            "server_cpu_pct_of_machine": round(100 * (b.ticks - a.ticks) / CLK_TCK / elapsed / CORES, 2)}


# --- one system under test ----------------------------------------------------------------------

@dataclass
class Target:
    """Where the callers go and which processes are the server."""

    name: str
    address: tuple[str, int]
    server_pids: Callable[[], list[int]]
    redis: Redis | None = None
    worker_pids: Callable[[], list[int]] = list  # ours: the pjsua2 workers and the parent they are forked from
    workers: int = 0  # ours: how many workers (the idle figures per worker divide by it)
    samples: dict[str, list[float]] = field(default_factory=dict)  # latency samples per section


@dataclass
class Plan:
    levels: list[int]
    fill_rate: int
    plateau_s: float
    rates: list[int]
    rate_seconds: int


def client_options() -> list[str]:
    """What every caller sipp gets, ours and reference alike."""
    return ["-s", "1000", "-recv_timeout", str(RECV_TIMEOUT_MS), "-trace_rtt", "-rtt_freq", "1",
            "-max_socket", "20000"]


def caller_scenario(work: Path, tag: str, talk_ms: int) -> str:
    """caller.xml (press 2, hang up after ``talk_ms``) rendered as ``<work>/<tag>.xml``, so that sipp's
    rtt file is ``<tag>_<pid>_rtt.csv``."""
    rendered = render_scenario("caller.xml", work / "rendered" / tag, keep="caller-hangs-up", drop="remote-hangs-up",
                               digit=2, dtmf_at_ms=DTMF_AT_MS, talk_ms=talk_ms)
    out = work / f"{tag}.xml"
    shutil.copyfile(rendered, out)
    return str(out)


def read_rtt(work: Path, tag: str) -> list[tuple[float, float]]:
    rows: list[tuple[float, float]] = []
    for path in sorted(work.glob(f"{tag}_*_rtt.csv")):
        rows.extend(parse_rtt_csv(path.read_text(errors="replace")))
    return rows


async def redis_peak(redis: Redis | None, stop: asyncio.Event, peak: list[int]) -> None:
    """Keep the highest ``SCARD ivr:calls:active`` seen in ``peak[0]`` until ``stop``."""
    while redis is not None and not stop.is_set():
        with contextlib.suppress(Exception):
            peak[0] = max(peak[0], int(await redis.scard("ivr:calls:active")))
        await asyncio.sleep(0.2)


async def hold_level(target: Target, work: Path, calls: int, plan: Plan) -> dict[str, Any]:
    """Place ``calls`` calls at ``plan.fill_rate`` and hold them: CPU is measured on the plateau
    (after the last call was placed and answered, for ``plan.plateau_s``), RSS at its end."""
    fill_s = calls / plan.fill_rate
    talk_ms = int((fill_s + 2 + plan.plateau_s + 2) * 1000)
    tag = f"{target.name}-cap{calls}"
    sf = caller_scenario(work, tag, talk_ms)
    stop, peak = asyncio.Event(), [0]
    sampler = asyncio.ensure_future(redis_peak(target.redis, stop, peak))
    t0 = time.monotonic()
    sipp = asyncio.ensure_future(run_sipp(
        sf, target.address, workdir=work, tag=tag, calls=calls, limit_s=talk_ms / 1000 + fill_s + 60,
        trace_messages=False, extra=[*client_options(), "-r", str(plan.fill_rate), "-l", str(calls)]))
    await asyncio.sleep(fill_s + 2)
    pids = target.server_pids()
    a = Snapshot.take(pids)
    await asyncio.sleep(plan.plateau_s)
    b = Snapshot.take(pids)
    rss, pss = rss_mb(pids), pss_mb(pids)
    res = await sipp
    stop.set()
    await sampler
    rows = read_rtt(work, tag)
    latencies = [rtt for _, rtt in rows]
    target.samples.setdefault("capacity", []).extend(latencies)
    counts = sipp_counts(res.output, SCREEN_COUNTS)
    unfinished = max(0, calls - max(0, counts["successful"]) - max(0, counts["failed"]))
    return {"calls": calls, "fill_rate_cps": plan.fill_rate, "talk_ms": talk_ms,
            **({"peak_concurrent_redis": peak[0]} if target.redis is not None else {}),
            **counts, "unfinished": unfinished, "seconds": round(time.monotonic() - t0, 1),
            **cpu_between(a, b), "server_rss_mb": rss, "server_pss_mb": pss,
            "invite_to_200_ms": latency_summary(latencies)}


def failed(level: dict[str, Any]) -> bool:
    return bool(level["failed"] != 0 or level.get("unfinished") or level["successful"] < level["calls"])


async def settle(target: Target, within_s: float = 30.0) -> None:
    """Between levels: until no call is left in Redis (ours), or a short pause (the reference)."""
    deadline = time.monotonic() + within_s
    while target.redis is not None and time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if int(await target.redis.scard("ivr:calls:active")) == 0:
                break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)


async def capacity_ramp(target: Target, work: Path, plan: Plan, pool: int | None) -> dict[str, Any]:
    """The levels in order until one has failures: the highest zero-failure level and what bound it."""
    levels: list[dict[str, Any]] = []
    for calls in plan.levels:
        level = await hold_level(target, work, calls, plan)
        levels.append(level)
        print(f"  {target.name} capacity {calls}: {_brief(level)}", flush=True)
        await settle(target)
        if failed(level):
            break
    good = [lv["calls"] for lv in levels if not failed(lv)]
    best = max(good, default=0)
    if levels and failed(levels[-1]):
        bound = f"failures at {levels[-1]['calls']} calls"
    elif pool is not None and best >= pool:
        bound = "pool size"
    else:
        bound = "highest level tried"
    return {"levels": levels, "max_concurrent_zero_failures": best, "bound": bound}


async def rate_level(target: Target, work: Path, rate: int, seconds: int) -> dict[str, Any]:
    """``rate`` short calls per second (answer, greeting, DTMF, queue, hang up 200 ms later) for ``seconds``."""
    tag = f"{target.name}-rate{rate}"
    sf = caller_scenario(work, tag, talk_ms=200)
    calls = rate * seconds
    t0 = time.monotonic()
    res = await run_sipp(sf, target.address, workdir=work, tag=tag, calls=calls, limit_s=seconds + 60,
                         trace_messages=False, extra=[*client_options(), "-r", str(rate), "-l", str(rate * 3)])
    rows = read_rtt(work, tag)
    latencies = [rtt for _, rtt in rows]
    target.samples.setdefault("setup", []).extend(latencies)
    counts = sipp_counts(res.output, SCREEN_COUNTS)
    unfinished = max(0, calls - max(0, counts["successful"]) - max(0, counts["failed"]))
    return {"rate_cps": rate, "calls": calls, **counts, "unfinished": unfinished,
            "achieved_cps": achieved_rate(rows), "seconds": round(time.monotonic() - t0, 1),
            "invite_to_200_ms": latency_summary(latencies)}


def sustained(level: dict[str, Any]) -> bool:
    """Zero failures, and the calls really went out at (90% of) the asked rate."""
    achieved = level.get("achieved_cps")
    return not failed(level) and achieved is not None and achieved >= 0.9 * level["rate_cps"]


async def setup_rates(target: Target, work: Path, plan: Plan) -> dict[str, Any]:
    levels: list[dict[str, Any]] = []
    for rate in plan.rates:
        level = await rate_level(target, work, rate, plan.rate_seconds)
        levels.append(level)
        print(f"  {target.name} setup {rate} cps: {_brief(level)}", flush=True)
        await settle(target)
        if not sustained(level):
            break
    good = [lv["rate_cps"] for lv in levels if sustained(lv)]
    bound = f"not sustained at {levels[-1]['rate_cps']} calls/s" if levels and not sustained(levels[-1]) \
        else "highest rate tried"
    return {"levels": levels, "max_rate_zero_failures_cps": max(good, default=0), "bound": bound}


def _brief(level: dict[str, Any]) -> str:
    keys = ("successful", "failed", "unfinished", "peak_concurrent_redis", "sipp_peak_calls", "achieved_cps",
            "server_cpu_pct_of_machine", "cpu_busy_pct_of_machine", "server_rss_mb", "server_pss_mb")
    lat = level["invite_to_200_ms"]
    figures = ", ".join(f"{k}={level[k]}" for k in keys if k in level)
    return f"{figures}, invite->200 p50/p99={lat['p50']}/{lat['p99']} ms"


async def measure_idle(target: Target, seconds: float) -> dict[str, Any]:
    """The server's CPU and RSS with no call; for ours also one pjsua2 worker's share (the workers'
    total / their number)."""
    pids, workers = target.server_pids(), target.worker_pids()
    a, wa = Snapshot.take(pids), Snapshot.take(workers)
    await asyncio.sleep(seconds)
    b, wb = Snapshot.take(pids), Snapshot.take(workers)
    out: dict[str, Any] = {**cpu_between(a, b), "server_rss_mb": rss_mb(pids), "server_pss_mb": pss_mb(pids)}
    if workers:
        n = target.workers or len(workers)  # their parent's memory and CPU are theirs too
        out.update({"worker_processes": len(workers), "rss_mb_per_worker": round(rss_mb(workers) / n, 1),
                    "pss_mb_per_worker": round(pss_mb(workers) / n, 1),
                    "cpu_pct_of_machine_per_worker":
                        round(cpu_between(wa, wb)["server_cpu_pct_of_machine"] / n, 3)})
    return out


def per_call(idle: dict[str, Any], levels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """(value at the level - idle) / calls for the server's CPU (% of machine) and RSS (MB)."""
    out = []
    for lv in levels:
        calls = max(1, lv["calls"])
        out.append({"calls": lv["calls"],
                    "server_cpu_pct_per_call": round((lv["server_cpu_pct_of_machine"]
                                                      - idle["server_cpu_pct_of_machine"]) / calls, 4),
                    "server_rss_mb_per_call": round((lv["server_rss_mb"] - idle["server_rss_mb"]) / calls, 3),
                    "server_pss_mb_per_call": round((lv["server_pss_mb"] - idle["server_pss_mb"]) / calls, 3)})
    return out


async def run_target(target: Target, work: Path, plan: Plan, pool: int | None, idle_s: float) -> dict[str, Any]:
    """Idle figures, the capacity ramp, per-call costs and the setup rates of one system."""
    idle = await measure_idle(target, idle_s)
    print(f"  {target.name} idle: {idle}", flush=True)
    cap = await capacity_ramp(target, work, plan, pool)
    rates = await setup_rates(target, work, plan)
    return {"idle": idle, "capacity": cap, "per_call": per_call(idle, cap["levels"]), "setup_rate": rates}


# --- ours and the reference ---------------------------------------------------------------------

_RESERVED: list[tuple[int, int]] = []  # port ranges this process handed out with sliding_port_range


def sliding_port_range(count: int, band: tuple[int, int] = (20000, 32767)) -> int:
    """A base port with ``count`` free loopback ports from it, by sliding over ``band``.

    tests.ports.free_port_range tries bases one range-size apart only, so with 200 workers (8,000
    RTP ports) it finds nothing as soon as another job on this machine holds a few ports in the
    wrong places; this search skips past each busy port instead."""
    size = -(-count // ports.STRIDE) * ports.STRIDE
    base = band[0]
    while base + size - 1 <= band[1]:
        clash = next((hi for lo, hi in _RESERVED if lo < base + size and base < hi), None)
        if clash is not None:
            base = clash
            continue
        busy = next((p for p in range(base, base + size, ports.STRIDE) if not ports._free(p, ports.LOOPBACK)), None)
        if busy is None:
            _RESERVED.append((base, base + size))
            return base
        base = busy + ports.STRIDE
    raise RuntimeError(f"no free range of {count} loopback ports in {band}")


def make_hotline(workdir: Path, workers: int, overrides: dict[str, Any], rtp_ports_per_worker: int = 0) -> Hotline:
    """The e2e Hotline, its SIP and RTP port ranges found by :func:`sliding_port_range`.

    ``rtp_ports_per_worker`` 0 keeps the configured 40; with 200 workers that needs 8,000 contiguous
    free ports below the ephemeral range, and when other jobs' ports leave no such gap each worker
    gets 20 instead. The result records what was used (``rtp_ports_per_worker``): fewer ports per
    worker is not the production set-up (see the report of the 2026-11-22 run)."""
    with mock.patch.object(e2e, "free_port_range", lambda count: 0):  # the ranges are chosen below
        h = Hotline(workdir, workers=workers, overrides=overrides)
    h.sip_base = sliding_port_range(workers)
    per_worker = rtp_ports_per_worker or WorkerSettings().rtp_ports_per_worker
    try:
        h.rtp_base = sliding_port_range(workers * per_worker)
    except RuntimeError:
        if rtp_ports_per_worker:
            raise
        per_worker = 20
        h.rtp_base = sliding_port_range(workers * per_worker)
    h.overrides = e2e.merge(h.overrides, {"workers": {"rtp_ports_per_worker": per_worker}})
    return h


def log_problems(h: Hotline) -> dict[str, int]:
    """Warnings and errors the hotline logged while loaded (before it is stopped), by event, and
    the roles' own stderr lines that look like crashes: a failed level's first explanation."""
    counts: Counter[str] = Counter()
    for record in h.log_records():
        if record.get("level") in ("warning", "error", "critical"):
            counts[str(record.get("event"))] += 1
    for line in h.log_path.read_text(errors="replace").splitlines():
        if not line.startswith("{") and re.search(r"Assertion|Segmentation|Traceback|CRITICAL|ERROR", line):
            counts[f"stderr: {line.strip()[:160]}"] += 1
    return dict(counts.most_common(20))


def raise_open_files() -> None:
    """sipp (and pjsua2) inherit our open-file limit: take the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run_ours(args: argparse.Namespace, work: Path, plan: Plan,
                   result: dict[str, Any]) -> tuple[dict[str, Any], Target]:
    # All load comes from one sipp on 127.0.0.1, as from a carrier's SBC: exempt it from the edge's
    # per-source flood limit (which would otherwise ban it, as it should ban a single flooding source).
    # The edge's admission rate is lifted: this measures what the stack sustains, past the rate the
    # edge would admit by default (bench/admission.py measures the refusals above it).
    h = make_hotline(work / "hotline", args.workers,
                     {"log_level": "warning", "workers": {"drain_s": 5},
                      "edge": {"flood": {"exempt_networks": ["127.0.0.1/32"]}, "max_calls_per_s": 100_000}},
                     args.rtp_ports_per_worker)
    t0 = time.monotonic()
    redis: Redis | None = None
    try:
        await h.start(timeout=900)
        redis = h.redis()  # after the start: `ivr run` writes the Redis password it generated
        result["startup_s"] = round(time.monotonic() - t0, 1)
        result["rtp_ports_per_worker"] = h.config()["workers"]["rtp_ports_per_worker"]
        assert h.proc is not None
        root = h.proc.pid
        target = Target("ours", ("127.0.0.1", h.edge_port),
                        lambda: sorted(set(descendants(root)) | set(pids_matching(str(h.workdir)))), redis,
                        worker_pids=lambda: pids_matching(str(h.workdir), also="worker"), workers=args.workers)
        await asyncio.sleep(5)  # let the workers' start-up work end before idle is measured
        out = await run_target(target, work / "sipp", plan, args.workers * 2, args.idle_s)
        out["log_problems"] = log_problems(h)
        return out, target
    finally:
        if redis is not None:
            await redis.aclose()
        h.stop(timeout=60)


async def run_reference(args: argparse.Namespace, work: Path, plan: Plan) -> tuple[dict[str, Any], Target]:
    budget = len(plan.levels) * (max(plan.levels) / plan.fill_rate + plan.plateau_s + 40) \
        + len(plan.rates) * (plan.rate_seconds + 40) + 120
    server = SippServer(scenario("reference_uas.xml"), workdir=work / "reference", tag="reference-uas",
                        max_runtime=budget, trace_messages=False, extra=["-max_socket", "20000"])
    async with server:
        assert server.process is not None and server.process.pid is not None
        pid = server.process.pid
        target = Target("reference", server.address, lambda: [pid])
        return await run_target(target, work / "sipp", plan, None, min(args.idle_s, 5)), target


def comparison(ours: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """ours / reference: max zero-failure concurrency and setup rate; INVITE -> 200 p50/p99 and
    server CPU per call at the highest level (rate) both passed with zero failures."""
    out: dict[str, Any] = {
        "max_concurrent_zero_failures": ratio(ours["capacity"]["max_concurrent_zero_failures"],
                                              ref["capacity"]["max_concurrent_zero_failures"]),
        "max_setup_rate": ratio(ours["setup_rate"]["max_rate_zero_failures_cps"],
                                ref["setup_rate"]["max_rate_zero_failures_cps"]),
        "reference_capacity_bound": ref["capacity"]["bound"],
        "reference_setup_rate_bound": ref["setup_rate"]["bound"],
    }
    cap = _common_level(ours["capacity"]["levels"], ref["capacity"]["levels"], "calls", failed)
    if cap is not None:
        o, r = cap
        out["capacity_level_compared"] = o["calls"]
        for p in ("p50", "p99"):
            out[f"capacity_invite_to_200_{p}"] = ratio(o["invite_to_200_ms"][p], r["invite_to_200_ms"][p])
        po = next(x for x in ours["per_call"] if x["calls"] == o["calls"])
        pr = next(x for x in ref["per_call"] if x["calls"] == r["calls"])
        out["server_cpu_per_call"] = ratio(po["server_cpu_pct_per_call"], pr["server_cpu_pct_per_call"])
        out["server_rss_per_call"] = ratio(po["server_rss_mb_per_call"], pr["server_rss_mb_per_call"])
    rate = _common_level(ours["setup_rate"]["levels"], ref["setup_rate"]["levels"], "rate_cps",
                         lambda lv: not sustained(lv))
    if rate is not None:
        o, r = rate
        out["setup_rate_compared_cps"] = o["rate_cps"]
        for p in ("p50", "p99"):
            out[f"setup_invite_to_200_{p}"] = ratio(o["invite_to_200_ms"][p], r["invite_to_200_ms"][p])
    out["note"] = ("a ratio is null when the reference's value is 0 or missing; sipp's INVITE -> 200 times "
                   "come in steps of its coarse clock (4 ms on this kernel), so a 0 means under 4 ms. Where the "
                   "reference's bound is the highest level (rate) tried, its true maximum is higher and the "
                   "max ratio is an upper bound of ours / reference")
    return out


def _common_level(ours: list[dict[str, Any]], ref: list[dict[str, Any]], key: str,
                  bad: Callable[[dict[str, Any]], bool]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The highest level both ran without failures (ours', reference's), or None."""
    by_key = {lv[key]: lv for lv in ref if not bad(lv)}
    both = [lv for lv in ours if not bad(lv) and lv[key] in by_key]
    if not both:
        return None
    best = max(both, key=lambda lv: lv[key])
    return best, by_key[best[key]]


def charts(stem: Path, ours: dict[str, Any], ref: dict[str, Any] | None, targets: list[Target]) -> list[Path]:
    """Concurrent calls vs server CPU and RSS; INVITE -> 200 histograms; latency vs setup rate.
    (matplotlib is imported here, so the parsing above needs only the test extra.)"""
    from bench import plots

    sides = {"ours": ours, **({"reference": ref} if ref else {})}

    def xy(side: dict[str, Any], section: str, key: str,
           value: Callable[[dict[str, Any]], Any]) -> tuple[list[float], list[float]]:
        levels = side[section]["levels"]
        return [lv[key] for lv in levels], [value(lv) for lv in levels]

    out = [plots.line_chart(
        stem.with_name(f"{stem.name}-capacity-resources.png"), "Concurrent calls in menu + queue: server CPU and RSS",
        "concurrent calls held", "server CPU (% of machine)",
        {f"{n} CPU": xy(s, "capacity", "calls", lambda lv: lv["server_cpu_pct_of_machine"]) for n, s in sides.items()},
        ylabel_right="server RSS (MB)",
        series_right={f"{n} RSS": xy(s, "capacity", "calls", lambda lv: lv["server_rss_mb"])
                      for n, s in sides.items()})]
    out.append(plots.line_chart(
        stem.with_name(f"{stem.name}-setup-rate-latency.png"), "INVITE -> 200 OK latency vs call setup rate",
        "calls/s", "ms",
        {f"{n} {p}": xy(s, "setup_rate", "rate_cps", _latency(p)) for n, s in sides.items() for p in ("p50", "p99")}))
    for section in ("capacity", "setup"):
        path = plots.latency_histogram(stem, section, {t.name: t.samples.get(section, []) for t in targets},
                                       what="INVITE -> 200 OK")
        if path is not None:
            out.append(path)
    return out


def _latency(p: str) -> Callable[[dict[str, Any]], Any]:
    return lambda lv: lv["invite_to_200_ms"][p]


def plan_from(args: argparse.Namespace) -> Plan:
    pool = args.workers * 2
    levels = [int(x) for x in args.levels.split(",")] if args.levels else default_levels(pool)
    return Plan(levels=levels, fill_rate=args.fill_rate, plateau_s=args.plateau_s,
                rates=[int(r) for r in args.rates.split(",")], rate_seconds=args.rate_seconds)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The flags of this section (bench/run.py documents them)."""
    ap.add_argument("--workers", type=int, default=200, help="pjsua2 workers (caller capacity = 2 x workers)")
    ap.add_argument("--levels", default="",
                    help="concurrent-call levels, e.g. 100,200 (default: 100s up to 2 x workers)")
    ap.add_argument("--fill-rate", type=int, default=25, help="calls/s while filling a capacity level")
    ap.add_argument("--plateau-s", type=float, default=6.0, help="seconds CPU is measured with a level's calls all up")
    ap.add_argument("--rates", default="25,50,75,100,150,200", help="setup rates tried, calls/s")
    ap.add_argument("--rate-seconds", type=int, default=15, help="seconds each setup rate lasts")
    ap.add_argument("--idle-s", type=float, default=10.0, help="seconds idle CPU is measured")
    ap.add_argument("--rtp-ports-per-worker", type=int, default=0,
                    help="RTP ports per worker (default: the configured 40, or 20 when no gap that big is free)")
    ap.add_argument("--no-reference", action="store_true", help="skip the sipp-UAS reference runs")


async def capacity_sections(args: argparse.Namespace, result: dict[str, Any], stem: Path) -> None:
    """Ours, then the reference; fills ``result`` and writes charts named ``<stem>-*.png``."""
    raise_open_files()
    plan = plan_from(args)
    work = Path("/tmp") / f"ivr-bench-{os.getpid()}"
    result.update({"workers": args.workers, "caller_capacity": args.workers * 2})
    result["capacity_plan"] = {"levels": plan.levels, "fill_rate_cps": plan.fill_rate, "plateau_s": plan.plateau_s,
                               "setup_rates_cps": plan.rates, "rate_seconds": plan.rate_seconds,
                               "sipp_client_options": client_options()}
    print(f"capacity (ours): {args.workers} workers, levels {plan.levels}, setup rates {plan.rates}", flush=True)
    ours, ours_target = await run_ours(args, work, plan, result)
    result["ours"] = ours
    targets = [ours_target]
    ref = None
    if not args.no_reference:
        print("capacity (reference: sipp UAS on loopback, same callers)", flush=True)
        ref, ref_target = await run_reference(args, work, plan)
        result["reference"] = ref
        result["ours_vs_reference"] = comparison(ours, ref)
        targets.append(ref_target)
    written = charts(stem, ours, ref, targets)
    from bench.plots import relative

    result.setdefault("plots", []).extend(relative(p) for p in written)
