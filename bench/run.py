"""`make bench`: capacity and call-setup figures of the real stack on this machine.

Starts `ivr run` (Redis, Kamailio edge, N pjsua2 workers, API) on loopback, drives it with sipp
callers through the edge, and writes bench/results/<date>.json.

- capacity: callers press 2 and wait in the billing queue (music on hold) with no agent logged in;
  calls are placed until the pool's caller capacity is reached and held; reported: peak concurrent
  calls seen in Redis, failed calls (sipp), CPU and RSS.
- setup rate: short calls (answer, greeting, DTMF, queue, hang up) at increasing rates; reported:
  the highest rate sustained with zero failed calls.
- speech (bench/speech.py, about 1-2 minutes, run first and on its own): concurrent real-time
  recognitions against the speech service; end-of-speech -> result latency p50/p95 per level,
  CPU, and the model's RSS counted once. ``--no-speech`` skips it, ``--speech-only`` runs only it.
- routing (bench/routing.py, about 25 s, on a private redis-server): enqueue / agent-available
  decision latency p50/p99 and operations/s with 1,000 agents, 50 skills and 5,000 waiting callers,
  and concurrent callers' lifecycles per second. ``--no-routing`` skips it.
- estimate (bench/estimate.py, about 100 s, on a private redis-server): the error of the callers'
  wait estimates against their real waits in a simulated queue day. ``--no-estimate`` skips it.
- pops (bench/pops.py, about 30 s, private redis-server + a real ``ivr api`` process): offer ->
  desktop WebSocket latency p50/p95/p99 with 500 agents connected, pops lost, API CPU and RSS.
  ``--no-pops`` skips it.
- webhooks (bench/webhooks.py, about 15-30 s, on a private redis-server with an append-only file):
  events through the webhook outbox to a receiver on loopback; deliveries/s in strict order and with
  8 in flight, end-to-end latency p50/p95/p99 at a steady rate. ``--no-webhooks`` skips it
  (``python bench/webhooks.py`` runs only it).
``--queues-only`` runs only the routing and estimate sections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.estimate import estimate_bench  # noqa: E402
from bench.pops import pops_bench  # noqa: E402
from bench.routing import routing_bench  # noqa: E402
from bench.speech import speech_bench  # noqa: E402
from bench.webhooks import webhooks_bench  # noqa: E402
from tests.e2e.conftest import Hotline  # noqa: E402
from tests.scenarios import render_scenario  # noqa: E402
from tests.sipp_helpers import run_sipp  # noqa: E402


def cpu_jiffies() -> tuple[int, int]:
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(parts) - parts[3] - parts[4], sum(parts)


def rss_mb(pattern: str) -> float:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False).stdout.split()
    total = 0
    for pid in out:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return round(total / 1024, 1)


def sipp_counts(screen: str) -> dict[str, int]:
    def last(name: str) -> int:
        found = re.findall(rf"{name}\s*\|\s*\d+\s*\|\s*(\d+)", screen)
        return int(found[-1]) if found else -1
    return {"successful": last("Successful call"), "failed": last("Failed call")}


async def sample_active(h: Hotline, stop: asyncio.Event, peaks: dict[str, int]) -> None:
    redis = h.redis()
    try:
        while not stop.is_set():
            peaks["active"] = max(peaks.get("active", 0), int(await redis.scard("ivr:calls:active")))
            await asyncio.sleep(0.2)
    finally:
        await redis.aclose()


async def capacity(h: Hotline, work: Path, calls: int, rate: int, hold_ms: int) -> dict[str, object]:
    sf = render_scenario("caller.xml", work / "cap", keep="caller-hangs-up", drop="remote-hangs-up",
                         digit=2, dtmf_at_ms=300, talk_ms=hold_ms)
    stop, peaks = asyncio.Event(), {}
    sampler = asyncio.ensure_future(sample_active(h, stop, peaks))
    busy0, total0 = cpu_jiffies()
    t0 = time.monotonic()
    res = await run_sipp(sf, ("127.0.0.1", h.edge_port), workdir=work, tag="capacity", calls=calls,
                         limit_s=hold_ms / 1000 + calls / rate + 60,
                         extra=["-s", "1000", "-r", str(rate), "-l", str(calls)])
    busy1, total1 = cpu_jiffies()
    rss = rss_mb(str(h.workdir))
    stop.set()
    await sampler
    counts = sipp_counts(res.output)
    return {"calls": calls, "rate_cps": rate, "hold_ms": hold_ms, "peak_concurrent": peaks.get("active", 0),
            **counts, "seconds": round(time.monotonic() - t0, 1),
            "cpu_busy_pct_of_machine": round(100 * (busy1 - busy0) / max(1, total1 - total0), 1),
            "rss_mb_all_roles": rss}


async def setup_rate(h: Hotline, work: Path, rates: list[int], seconds: int) -> list[dict[str, object]]:
    sf = render_scenario("caller.xml", work / "rate", keep="caller-hangs-up", drop="remote-hangs-up",
                         digit=2, dtmf_at_ms=300, talk_ms=200)
    out = []
    for rate in rates:
        res = await run_sipp(sf, ("127.0.0.1", h.edge_port), workdir=work, tag=f"rate{rate}",
                             calls=rate * seconds, limit_s=seconds + 60,
                             extra=["-s", "1000", "-r", str(rate), "-l", str(rate * 3)])
        counts = sipp_counts(res.output)
        out.append({"rate_cps": rate, "calls": rate * seconds, **counts})
        print(f"  setup {rate} cps: {counts}", flush=True)
        if counts["failed"] != 0:
            break
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=100)
    ap.add_argument("--hold-ms", type=int, default=20000)
    ap.add_argument("--rates", default="10,20,30,40")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    speech = ap.add_mutually_exclusive_group()
    speech.add_argument("--no-speech", action="store_true", help="skip the speech service benchmark")
    speech.add_argument("--speech-only", action="store_true", help="run only the speech service benchmark")
    speech.add_argument("--queues-only", action="store_true", help="run only the routing and estimate benchmarks")
    ap.add_argument("--no-routing", action="store_true", help="skip the routing benchmark")
    ap.add_argument("--no-estimate", action="store_true", help="skip the wait-estimate benchmark")
    ap.add_argument("--no-pops", action="store_true", help="skip the screen-pop latency benchmark")
    ap.add_argument("--no-webhooks", action="store_true", help="skip the webhook outbox benchmark")
    ap.add_argument("--speech-threads", type=int, default=2, help="recognition threads of the speech service")
    args = ap.parse_args()
    result: dict[str, object] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                                 "machine": {"cores": os.cpu_count()}}
    if not args.no_speech and not args.queues_only:
        print("speech: concurrent real-time recognitions", flush=True)
        result["speech"] = await speech_bench(threads=args.speech_threads)
    if not args.no_routing and not args.speech_only:
        print("routing: decision latency, 1,000 agents, 50 skills, 5,000 waiting callers", flush=True)
        result["routing"] = await routing_bench()
    if not args.no_estimate and not args.speech_only:
        print("estimate: wait-estimate error in a simulated queue day (about 100 s)", flush=True)
        result["estimate"] = await estimate_bench()
    if not args.no_pops and not args.speech_only and not args.queues_only:
        print("pops: offer -> desktop WebSocket latency, 500 agents connected, 100 calls/s", flush=True)
        result["pops"] = await pops_bench()
    if not args.no_webhooks and not args.speech_only and not args.queues_only:
        print("webhooks: events through the outbox to a receiver on loopback (about 20 s)", flush=True)
        result["webhooks"] = await webhooks_bench()
    if not args.speech_only and not args.queues_only:
        await hotline_sections(args, result)
    out = Path(args.out) / f"{datetime.now(UTC):%Y-%m-%dT%H%M%S}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"written {out}")


async def hotline_sections(args: argparse.Namespace, result: dict[str, object]) -> None:
    work = Path("/tmp") / f"ivr-bench-{os.getpid()}"
    # All load comes from one sipp on 127.0.0.1, as from a carrier's SBC: exempt it from the edge's
    # per-source flood limit (which would otherwise ban it, as it should ban a single flooding source).
    h = Hotline(work / "hotline", workers=args.workers,
                overrides={"log_level": "warning", "workers": {"drain_s": 5},
                           "edge": {"flood": {"exempt_networks": ["127.0.0.1/32"]}}})
    result.update({"workers": args.workers, "caller_capacity": args.workers * 2})
    t0 = time.monotonic()
    await h.start(timeout=600)
    result["startup_s"] = round(time.monotonic() - t0, 1)
    busy0, total0 = cpu_jiffies()
    await asyncio.sleep(10)
    busy1, total1 = cpu_jiffies()
    result["idle"] = {"cpu_busy_pct_of_machine": round(100 * (busy1 - busy0) / max(1, total1 - total0), 2),
                      "rss_mb_all_roles": rss_mb(str(h.workdir)),
                      "rss_mb_per_worker": round(rss_mb(f"worker.*{h.workdir}") / args.workers, 1)}
    try:
        print(f"capacity: {args.workers * 2} callers held {args.hold_ms} ms", flush=True)
        result["capacity"] = await capacity(h, work, calls=args.workers * 2, rate=20, hold_ms=args.hold_ms)
        print(f"  {result['capacity']}", flush=True)
        await asyncio.sleep(3)
        result["setup_rate"] = await setup_rate(h, work, [int(r) for r in args.rates.split(",")], seconds=20)
    finally:
        h.stop(timeout=60)


if __name__ == "__main__":
    asyncio.run(main())
