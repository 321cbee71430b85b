"""Soak test of the real stack (`make bench-soak`, issue 7): a steady load for a long time.

About ``concurrent`` sipp callers are up all the time for ``minutes`` minutes, through the edge:
each presses 2 and waits in the billing queue with music on hold (no agent logged in), then hangs
up after ``hold_ms`` (the scenario of bench/run.py's capacity section). Every ``sample_s`` the
soak records RSS per role, machine CPU, active calls and the Redis figures (DBSIZE, used_memory,
keys without a TTL, keys by kind, event stream length).

Verdicts are computed, not asserted (the caller reads ``ok`` and ``failed``):

- RSS flat: growth < 5 % per role and in total, mean of the first 10 % of the steady period (after
  a warm-up) against the mean of its last 10 %. Redis is left out (its growth, ended call records
  kept for a week and the event stream, is by design and judged by its keys below); RssAnon and
  RssShmem growth come with it, to tell a heap leak from Kamailio's shared pool being paged in;
- zero failed calls (sipp) and every call placed successful;
- no key growth beyond live calls: the keys without a TTL once traffic has drained are the ones
  there before traffic (ended call records carry a TTL, ``routing.call_ttl_s``, and are reported
  as such);
- the event stream stays within ``routing.events_maxlen`` (approximate trimming: one stream node
  of slack).

``python bench/soak.py --workers N --concurrent M --minutes X`` starts its own hotline (as
bench/run.py does), runs the soak and writes bench/results/soak-<date>.json plus two PNG charts.
Without ``--concurrent`` it takes 70 % of the newest capacity measured in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from bench import plots  # noqa: E402
from bench.harness import RESULTS, newest_result, save, sipp_counts  # noqa: E402
from bench.procfs import all_pids, cmdline, machine_jiffies, status_kb  # noqa: E402
from ivr.core.config import RoutingSettings  # noqa: E402
from ivr.queues.keys import Keys  # noqa: E402
from tests.e2e.conftest import Hotline  # noqa: E402
from tests.scenarios import render_scenario  # noqa: E402
from tests.sipp_helpers import run_sipp  # noqa: E402

ROLES = ("workers", "api", "edge", "redis", "speech", "supervisor", "other")
RSS_GROWTH_LIMIT_PCT = 5.0
CLI_ROLES = {"worker": "workers", "worker-pool": "workers", "api": "api", "speech": "speech", "run": "supervisor"}


# ---------------------------------------------------------------------------------------- processes

def classify(cmdline: str) -> str | None:
    """The hotline role of a process from its command line; None for what is not part of the stack
    (the sipp load generator). ``redis-server`` rewrites its title to ``redis-server host:port``;
    the edge is Kamailio's processes and the Python guard that runs it."""
    argv = cmdline.split()
    if not argv:
        return None
    exe = os.path.basename(argv[0])
    if exe == "sipp":
        return None
    if exe.startswith("redis-server"):
        return "redis"
    if exe == "kamailio" or "kamailio" in argv:
        return "edge"
    if "ivr.cli" in argv:
        i = argv.index("ivr.cli")
        return CLI_ROLES.get(argv[i + 1], "other") if i + 1 < len(argv) else "other"
    return "other"


def stack_processes(workdir: str, redis_port: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process of the hotline: its command line names the hotline's
    work directory, or it is the redis-server on the hotline's port (whose title does not)."""
    out = []
    for pid in all_pids():
        cmd = cmdline(pid)
        is_redis = cmd.startswith("redis-server") and cmd.endswith(f":{redis_port}")
        if workdir in cmd or is_redis:
            out.append((pid, cmd))
    return out


#: the memory measures of a role: VmRSS and two of its parts, RssAnon (heap and stacks: where a
#: leak shows) and RssShmem (shared memory: Kamailio's pool, whose pages count in the VmRSS of
#: every child that touched them, so the edge's VmRSS climbs as its children touch more of the pool)
MEASURES = {"rss": "VmRSS", "anon": "RssAnon", "shmem": "RssShmem"}


def memory_by_role(procs: list[tuple[int, str]]) -> dict[str, dict[str, float]]:
    """Per measure (rss, anon, shmem): the sum over each role's processes in MB; processes of no
    role (sipp) are left out."""
    kb: dict[str, dict[str, int]] = {m: {} for m in MEASURES}
    for pid, cmd in procs:
        role = classify(cmd)
        if role is None:
            continue
        found = status_kb(pid, list(MEASURES.values()))
        for measure, name in MEASURES.items():
            kb[measure][role] = kb[measure].get(role, 0) + found[name]
    return {m: {role: round(v / 1024, 1) for role, v in sorted(by.items())} for m, by in kb.items()}


# ---------------------------------------------------------------------------------------- redis keys

ID_LIKE = re.compile(r"\d|^[0-9a-f-]{16,}$")


def key_kind(key: str) -> str:
    """The key up to its second ':' (``ivr:call``), for the keys-by-kind counts."""
    return ":".join(key.split(":")[:2])


def key_pattern(key: str) -> str:
    """The key with its id-like parts (any digit, or a long hex string) as ``*``: the shape a leak
    report names (``ivr:call:*``, ``ivr:worker:*:inbox``)."""
    return ":".join("*" if ID_LIKE.search(part) else part for part in key.split(":"))


@dataclass
class Census:
    """Every ``<prefix>:*`` key with its TTL (-1: none)."""
    ttls: dict[str, int] = field(default_factory=dict)

    @property
    def persistent(self) -> set[str]:
        return {k for k, ttl in self.ttls.items() if ttl == -1}

    def by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for k in self.ttls:
            out[key_kind(k)] = out.get(key_kind(k), 0) + 1
        return dict(sorted(out.items()))

    def expiring_by_pattern(self) -> dict[str, dict[str, int]]:
        """Keys with a TTL per pattern: how many, and their TTL range (s)."""
        out: dict[str, dict[str, int]] = {}
        for k, ttl in self.ttls.items():
            if ttl < 0:
                continue
            p = out.setdefault(key_pattern(k), {"count": 0, "ttl_min_s": ttl, "ttl_max_s": ttl})
            p["count"] += 1
            p["ttl_min_s"], p["ttl_max_s"] = min(p["ttl_min_s"], ttl), max(p["ttl_max_s"], ttl)
        return dict(sorted(out.items()))


async def census(redis: Redis, prefix: str, batch: int = 1000) -> Census:
    """SCAN the prefix's keys, asking each batch's TTLs in one pipeline (one round trip per batch)."""
    out = Census()
    cursor = 0
    for _ in range(1_000_000):  # bounded: SCAN ends when the cursor comes back to 0
        cursor, keys = await redis.scan(cursor, match=f"{prefix}:*", count=batch)
        if keys:
            pipe = redis.pipeline(transaction=False)
            for k in keys:
                pipe.ttl(k)
            for k, ttl in zip(keys, await pipe.execute(), strict=True):
                if ttl != -2:  # gone between SCAN and TTL
                    out.ttls[k.decode() if isinstance(k, bytes) else k] = int(ttl)
        if cursor == 0:
            break
    return out


def new_persistent(before: set[str], after: set[str]) -> dict[str, int]:
    """Keys without a TTL present after traffic but not before, counted per pattern."""
    out: dict[str, int] = {}
    for k in after - before:
        out[key_pattern(k)] = out.get(key_pattern(k), 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


# ---------------------------------------------------------------------------------------- sampling

@dataclass
class Sampler:
    """Takes a sample of the hotline's figures every ``every_s`` until :meth:`stop`."""
    h: Hotline
    redis: Redis
    keys: Keys
    every_s: float
    t0: float = field(default_factory=time.monotonic)
    samples: list[dict[str, Any]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _cpu: tuple[int, int] = field(default_factory=machine_jiffies)

    async def sample(self) -> dict[str, Any]:
        procs = await asyncio.to_thread(stack_processes, str(self.h.workdir), self.h.redis_port)
        mem = memory_by_role(procs)
        rss = mem["rss"]
        busy, total = machine_jiffies()
        cpu = 100 * (busy - self._cpu[0]) / max(1, total - self._cpu[1])
        self._cpu = (busy, total)
        c = await census(self.redis, self.keys.prefix)
        info = await self.redis.info("memory")
        s = {"t_s": round(time.monotonic() - self.t0, 1), "rss_mb": rss,
             "rss_mb_total": round(sum(rss.values()), 1),
             **{f"{m}_mb": mem[m] for m in ("anon", "shmem")},
             **{f"{m}_mb_total": round(sum(mem[m].values()), 1) for m in ("anon", "shmem")},
             "cpu_busy_pct_of_machine": round(cpu, 1),
             "active_calls": int(await self.redis.scard(self.keys.active_calls)),
             "dbsize": int(await self.redis.dbsize()), "used_memory_mb": round(info["used_memory"] / 2**20, 2),
             "keys": len(c.ttls), "keys_no_ttl": len(c.persistent), "keys_by_kind": c.by_kind(),
             "events_len": int(await self.redis.xlen(self.keys.events))}
        self.samples.append(s)
        return s

    async def run(self) -> None:
        for _ in range(10_000_000):  # bounded; ends on stop()
            s = await self.sample()
            print(f"  t={s['t_s']:7.1f}s active={s['active_calls']:4d} rss={s['rss_mb_total']:8.1f}MB "
                  f"cpu={s['cpu_busy_pct_of_machine']:5.1f}% keys={s['keys']} no_ttl={s['keys_no_ttl']} "
                  f"events={s['events_len']}", flush=True)
            try:
                await asyncio.wait_for(self._stop.wait(), self.every_s)
                return
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stop.set()


# ---------------------------------------------------------------------------------------- analysis

def warmup_s(duration_s: float) -> float:
    """Start of the steady period: 3 minutes in, or 20 % of a short run."""
    return min(180.0, 0.2 * duration_s)


def window_means(ts: list[float], vs: list[float], start_s: float, end_s: float,
                 frac: float = 0.1) -> tuple[float, float] | None:
    """Means of the values in the first and the last ``frac`` of [start_s, end_s]; a window with no
    sample takes the sample nearest to it inside the period. None without any sample in the period."""
    inside = [(t, v) for t, v in zip(ts, vs, strict=True) if start_s <= t <= end_s]
    if not inside:
        return None
    span = (end_s - start_s) * frac
    first = [v for t, v in inside if t <= start_s + span] or [inside[0][1]]
    last = [v for t, v in inside if t >= end_s - span] or [inside[-1][1]]
    return sum(first) / len(first), sum(last) / len(last)


def growth(ts: list[float], vs: list[float], start_s: float, end_s: float) -> dict[str, float] | None:
    """Mean of the first 10 % of the period, of the last 10 %, and the growth between them (%)."""
    means = window_means(ts, vs, start_s, end_s)
    if means is None:
        return None
    first, last = means
    pct = 100 * (last - first) / first if first > 0 else 0.0
    return {"first_mb": round(first, 1), "last_mb": round(last, 1), "growth_pct": round(pct, 2)}


def rss_growth(samples: list[dict[str, Any]], start_s: float, end_s: float,
               measure: str = "rss") -> dict[str, dict[str, float]]:
    """Memory growth per role, in total (``total``) and in total but Redis (``total_without_redis``)
    over the steady period; ``measure`` is ``rss`` (VmRSS), ``anon`` (RssAnon) or ``shmem`` (RssShmem)."""
    ts = [s["t_s"] for s in samples]
    roles = sorted({r for s in samples for r in s[f"{measure}_mb"]})
    series = {role: [s[f"{measure}_mb"].get(role, 0.0) for s in samples] for role in roles}
    series["total"] = [s[f"{measure}_mb_total"] for s in samples]
    series["total_without_redis"] = [t - s[f"{measure}_mb"].get("redis", 0.0)
                                     for t, s in zip(series["total"], samples, strict=True)]
    out: dict[str, dict[str, float]] = {}
    for name, vs in series.items():
        g = growth(ts, vs, start_s, end_s)
        if g is not None:
            out[name] = g
    return out


# Redis holds every ended call record (routing.call_ttl_s, a week by default) and the event stream
# (routing.events_maxlen): its memory grows during a soak by design. It is judged by its keys
# (nothing without a TTL left behind, the stream bounded), not by its RSS.
RSS_NOT_JUDGED = ("redis", "total")


def verdict(*, rss: dict[str, dict[str, float]], calls: int, sipp: dict[str, int], persistent_before: int,
            persistent_after: int, new_keys: dict[str, int], active_after: int, events_max: int,
            events_maxlen: int, anon: dict[str, dict[str, float]] | None = None,
            rss_limit_pct: float = RSS_GROWTH_LIMIT_PCT) -> dict[str, Any]:
    """``ok`` and the names of the conditions that failed (with their figures). A role whose RSS
    grew too much is named with its RssAnon growth when known (flat RssAnon: shared pages, no leak)."""
    failed: list[str] = []
    if not rss:
        failed.append("rss: no sample in the steady period")
    for role, g in rss.items():
        if role not in RSS_NOT_JUDGED and g["growth_pct"] >= rss_limit_pct:
            why = f", RssAnon {anon[role]['growth_pct']:+}%" if anon and role in anon else ""
            failed.append(f"rss {role}: +{g['growth_pct']}% ({g['first_mb']} -> {g['last_mb']} MB{why})")
    if sipp.get("failed", -1) != 0:
        failed.append(f"failed calls: {sipp.get('failed')}")
    if sipp.get("successful", -1) != calls:
        failed.append(f"successful calls: {sipp.get('successful')} of {calls}")
    leaked = per_call_keys(new_keys)
    if leaked:
        failed.append(f"keys without TTL: {persistent_before} before traffic, {persistent_after} after "
                      f"it drained; new per-call keys: {leaked}")
    if active_after != 0:
        failed.append(f"active calls after drain: {active_after}")
    slack = max(100, events_maxlen // 100)  # XADD MAXLEN ~ trims whole stream nodes
    if events_max > events_maxlen + slack:
        failed.append(f"event stream: {events_max} entries > maxlen {events_maxlen}")
    return {"ok": not failed, "failed": failed}


def per_call_keys(new_keys: dict[str, int]) -> dict[str, int]:
    """The new keys without a TTL whose name carries an id (a ``*`` in the pattern): those can
    multiply with calls. A fixed name (``ivr:queues``, ``ivr:events``, made by the first call that
    queues or logs an event) exists once whatever the number of calls, so it is no leak."""
    return {p: n for p, n in new_keys.items() if "*" in p}


def plan(concurrent: int, minutes: float, hold_ms: int) -> dict[str, Any]:
    """sipp's pace for about ``concurrent`` calls up at all times: ``concurrent`` new calls per
    ``hold_ms`` (-r/-rp), at most 1.2x as many at once (-l), ``minutes`` worth of calls (-m)."""
    calls = max(1, round(concurrent * minutes * 60_000 / hold_ms))
    return {"calls": calls, "rate_cps": round(concurrent * 1000 / hold_ms, 3),
            "sipp_args": ["-s", "1000", "-r", str(concurrent), "-rp", str(hold_ms),
                          "-l", str(math.ceil(concurrent * 1.2) + 1)]}


# ---------------------------------------------------------------------------------------- the soak

async def soak(h: Hotline, work: Path, *, concurrent: int, minutes: float, hold_ms: int = 20000,
               sample_s: float = 15.0, plots_dir: Path = RESULTS) -> dict[str, Any]:
    """Drive the started hotline ``h`` with about ``concurrent`` held calls for ``minutes``; return
    the samples, the growth figures, the key census and the verdict."""
    keys = Keys("ivr")
    routing = RoutingSettings(**h.config().get("routing", {}))
    p = plan(concurrent, minutes, hold_ms)
    sf = render_scenario("caller.xml", work / "soak", keep="caller-hangs-up", drop="remote-hangs-up",
                         digit=2, dtmf_at_ms=300, talk_ms=hold_ms)
    redis = h.redis()
    try:
        sampler = Sampler(h, redis, keys, sample_s)
        before = await census(redis, keys.prefix)
        await asyncio.sleep(1)  # the first CPU figure spans at least a second
        sampler.t0 = time.monotonic()
        task = asyncio.ensure_future(sampler.run())
        res = await run_sipp(sf, ("127.0.0.1", h.edge_port), workdir=work, tag="soak", calls=p["calls"],
                             limit_s=minutes * 60 + hold_ms / 1000 + 120, extra=p["sipp_args"],
                             trace_messages=False)
        traffic_end = time.monotonic() - sampler.t0
        drain_s = await drain(redis, keys)
        after = await census(redis, keys.prefix)
        sizes = await record_sizes(redis, after, keys)
        events_bytes = sizes.pop("events_bytes")
        sampler.stop()
        await task
        final = await sampler.sample()
    finally:
        await redis.aclose()
    counts = sipp_counts(res.output)
    start_s = warmup_s(traffic_end)
    samples = sampler.samples
    during = [s for s in samples if s["t_s"] <= traffic_end]
    rss = rss_growth(during, start_s, traffic_end)
    anon = rss_growth(during, start_s, traffic_end, "anon")
    new_keys = new_persistent(before.persistent, after.persistent)
    events_max = max(s["events_len"] for s in samples)
    expiring = after.expiring_by_pattern()
    steady = [s for s in samples if start_s <= s["t_s"] <= traffic_end]
    result: dict[str, Any] = {
        "concurrent_target": concurrent, "minutes": minutes, "hold_ms": hold_ms, "sample_s": sample_s,
        **p, "sipp": {**counts, "exit_code": res.returncode},
        "traffic_s": round(traffic_end, 1), "warmup_s": round(start_s, 1), "drain_s": drain_s,
        "steady": steady_summary(steady),
        "rss_not_judged": list(RSS_NOT_JUDGED), "rss_growth": rss, "anon_growth": anon,
        "shmem_growth": rss_growth(during, start_s, traffic_end, "shmem"),
        "redis": {"keys_before": len(before.ttls), "keys_after": len(after.ttls),
                  "persistent_before": len(before.persistent), "persistent_after": len(after.persistent),
                  "new_persistent_by_pattern": new_keys, "new_persistent_per_call": per_call_keys(new_keys),
                  "expiring_after_by_pattern": expiring,
                  "ended_call_records": {**ended_records(expiring, keys, routing.call_ttl_s), **sizes,
                                         **retained_projection(p["rate_cps"], routing.call_ttl_s,
                                                               sizes["bytes_mean"])},
                  "events_stream_bytes": events_bytes,
                  "used_memory_mb_before": samples[0]["used_memory_mb"],
                  "used_memory_mb_after": final["used_memory_mb"],
                  "events_len_max": events_max, "events_maxlen": routing.events_maxlen,
                  "active_calls_after": final["active_calls"]},
        "samples": samples,
    }
    result["redis"]["used_memory_kb_per_call"] = round(
        1024 * (final["used_memory_mb"] - samples[0]["used_memory_mb"]) / max(1, counts["successful"]), 2)
    result.update(verdict(rss=rss, calls=p["calls"], sipp=counts, persistent_before=len(before.persistent),
                          persistent_after=len(after.persistent), new_keys=new_keys,
                          active_after=final["active_calls"], events_max=events_max,
                          events_maxlen=routing.events_maxlen, anon=anon))
    result["plots"] = [str(x) for x in draw(samples, plots_dir, traffic_end)]
    return result


async def drain(redis: Redis, keys: Keys, within_s: float = 60.0) -> float:
    """Wait (bounded) until no call is active, then a few seconds for the workers' last writes."""
    t0 = time.monotonic()
    for _ in range(int(within_s * 2)):
        if not await redis.scard(keys.active_calls):
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(5)
    return round(time.monotonic() - t0, 1)


def steady_summary(steady: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the steady period: active calls, CPU, total RSS."""
    if not steady:
        return {}
    def mean(name: str) -> float:
        return round(float(sum(s[name] for s in steady)) / len(steady), 1)
    return {"samples": len(steady), "active_calls_mean": mean("active_calls"),
            "active_calls_min": min(s["active_calls"] for s in steady),
            "active_calls_max": max(s["active_calls"] for s in steady),
            "cpu_busy_pct_of_machine_mean": mean("cpu_busy_pct_of_machine"), "rss_mb_total_mean": mean("rss_mb_total")}


def ended_records(expiring: dict[str, dict[str, int]], keys: Keys, call_ttl_s: int) -> dict[str, Any]:
    """The ended call records (``<prefix>:call:*`` with a TTL) and the TTL they should carry."""
    rec = expiring.get(key_pattern(keys.call("x1")), {"count": 0})
    return {**rec, "call_ttl_s": call_ttl_s}


async def record_sizes(redis: Redis, c: Census, keys: Keys, n: int = 50) -> dict[str, Any]:
    """MEMORY USAGE of up to ``n`` ended call records (mean bytes), and of the event stream."""
    pattern = key_pattern(keys.call("x1"))
    sample = [k for k, ttl in c.ttls.items() if ttl > 0 and key_pattern(k) == pattern][:n]
    sizes = [int(await redis.memory_usage(k) or 0) for k in sample]
    return {"bytes_mean": round(sum(sizes) / len(sizes)) if sizes else 0, "bytes_sampled": len(sizes),
            "events_bytes": int(await redis.memory_usage(keys.events) or 0)}


def retained_projection(rate_cps: float, call_ttl_s: int, bytes_per_record: float) -> dict[str, float]:
    """How many ended call records, and how much Redis memory for them, a steady ``rate_cps`` keeps
    once a whole ``call_ttl_s`` of them has accumulated."""
    records = rate_cps * call_ttl_s
    return {"retained_at_this_rate": round(records),
            "retained_mb_at_this_rate": round(records * bytes_per_record / 2**20)}


def draw(samples: list[dict[str, Any]], out_dir: Path, traffic_end: float) -> list[Path]:
    """RSS per role with active calls; Redis keys (total, without TTL) with used_memory."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%S")
    minutes = [s["t_s"] / 60 for s in samples]
    roles = sorted({r for s in samples for r in s["rss_mb"]})
    rss = {role: (minutes, [s["rss_mb"].get(role, 0.0) for s in samples]) for role in roles}
    rss["total"] = (minutes, [s["rss_mb_total"] for s in samples])
    active = {"active calls": (minutes, [float(s["active_calls"]) for s in samples])}
    keys = {"keys": (minutes, [float(s["keys"]) for s in samples]),
            "keys without TTL": (minutes, [float(s["keys_no_ttl"]) for s in samples])}
    mem = {"used_memory (MB)": (minutes, [s["used_memory_mb"] for s in samples])}
    end = f"traffic ends at {traffic_end / 60:.1f} min"
    return [
        plots.line_chart(out_dir / f"{stamp}-soak-rss.png", f"Soak: RSS per role ({end})", "minutes",
                         "RSS (MB)", rss, ylabel_right="active calls", series_right=active),
        plots.line_chart(out_dir / f"{stamp}-soak-redis.png", f"Soak: Redis keys and memory ({end})", "minutes",
                         "keys", keys, ylabel_right="used_memory (MB)", series_right=mem),
    ]


# ---------------------------------------------------------------------------------------- standalone

def capacity_of(data: dict[str, Any]) -> int | None:
    """The measured concurrent-call capacity in one results file: ``max_concurrent_zero_failures`` of
    the hotline's capacity section as bench/run.py writes it (``ours.capacity``), of an older
    ``capacity`` section or at the top level; else ``capacity.peak_concurrent`` of a run without
    failed calls."""
    ours = data.get("ours")
    for section in ((ours or {}).get("capacity") if isinstance(ours, dict) else None, data.get("capacity"), data):
        if isinstance(section, dict) and isinstance(section.get("max_concurrent_zero_failures"), int):
            return int(section["max_concurrent_zero_failures"])
    cap = data.get("capacity")
    if isinstance(cap, dict) and isinstance(cap.get("peak_concurrent"), int) and cap.get("failed", 0) == 0:
        return int(cap["peak_concurrent"])
    return None


def latest_capacity(results: Path = RESULTS) -> tuple[int, Path, int | None] | None:
    """(capacity, file, workers) from the newest results file (by the date in its name) that has one."""
    found = newest_result(capacity_of, results)
    if found is None:
        return None
    cap, path, data = found
    workers = data.get("workers")
    return cap, path, workers if isinstance(workers, int) else None


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, help="worker processes (default: those of the capacity run, else 100)")
    ap.add_argument("--concurrent", type=int, help="calls up at once (default: 70%% of the newest measured capacity)")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--hold-ms", type=int, default=20000, help="how long each caller stays")
    ap.add_argument("--sample-s", type=float, default=15.0)
    args = ap.parse_args()
    source: dict[str, Any] = {}
    if args.concurrent is None or args.workers is None:
        found = latest_capacity()
        if found is None and args.concurrent is None:
            sys.exit("no measured capacity in bench/results/*.json: give --concurrent")
        if found is not None:
            cap, path, workers = found
            source = {"file": str(path.relative_to(ROOT)), "capacity": cap, "workers": workers}
            print(f"capacity {cap} concurrent calls ({workers} workers) from {path}", flush=True)
            if args.concurrent is None:
                args.concurrent = max(1, int(cap * 0.7))
            if args.workers is None:
                args.workers = workers
    args.workers = args.workers or 100
    work = Path("/tmp") / f"ivr-soak-{os.getpid()}"
    h = Hotline(work / "hotline", workers=args.workers,
                overrides={"log_level": "warning", "workers": {"drain_s": 5},
                           "edge": {"flood": {"exempt_networks": ["127.0.0.1/32"]}}})
    result: dict[str, Any] = {"at": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": {"cores": os.cpu_count()}, "workers": args.workers,
                              "concurrent_from": source or "--concurrent"}
    print(f"soak: {args.concurrent} calls held {args.hold_ms} ms for {args.minutes} min, "
          f"{args.workers} workers", flush=True)
    try:
        await h.start(timeout=600)
        result.update(await soak(h, work, concurrent=args.concurrent, minutes=args.minutes,
                                 hold_ms=args.hold_ms, sample_s=args.sample_s))
    finally:
        h.stop(timeout=60)
    save("soak", result)


if __name__ == "__main__":
    asyncio.run(main())
