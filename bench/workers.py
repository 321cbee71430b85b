"""What a worker costs: start, idle memory and CPU, stop (issue 23).

For each way of starting workers (``workers.fork`` true: forked from one pre-imported parent,
ivr/runtime/forkserver.py; false: each a program of its own) and each pool size: ``ivr run`` with
that many workers (no speech service), then

- start: from ``ivr run``'s start to its banner (every worker alive in Redis, the edge up), and from
  the first worker's ``process.started`` to the last ``worker.ready`` in the log;
- idle memory: PSS and RSS of the workers (and the parent they were forked from), per worker;
- idle CPU: the workers' CPU time over ``idle_s`` seconds, as a share of the whole machine, per worker;
- stop: SIGTERM to ``ivr run`` until it exited, and how many workers were killed (``process.kill``)
  rather than exiting by themselves.

    .venv/bin/python bench/workers.py --counts 50 200 --modes fork exec --idle-s 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.capacity import make_hotline  # noqa: E402
from bench.harness import save  # noqa: E402
from bench.procfs import CLK_TCK, cpu_ticks, pids_matching, pss_mb, rss_mb  # noqa: E402

CORES = os.cpu_count() or 1


def _times(records: list[dict[str, Any]], event: str, **match: Any) -> list[float]:
    out = []
    for r in records:
        if r.get("event") == event and all(r.get(k) == v for k, v in match.items()) and "timestamp" in r:
            out.append(datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")).timestamp())
    return out


async def measure(workdir: Path, count: int, fork: bool, idle_s: float) -> dict[str, Any]:
    h = make_hotline(workdir, count, {"workers": {"fork": fork, "drain_s": 30, "start_stall_s": 120}})
    t0 = time.monotonic()
    await h.start(timeout=600)
    started_s = time.monotonic() - t0
    try:
        records = h.log_records()
        first = min(_times(records, "process.started", process="worker-0"))
        ready = _times(records, "worker.ready")
        workers = pids_matching(str(h.workdir), also="worker")  # the workers (and their parent, forked)
        await asyncio.sleep(2)  # the start's last log lines and first heartbeats settle
        c0, w0 = cpu_ticks(workers), time.monotonic()
        await asyncio.sleep(idle_s)
        c1, w1 = cpu_ticks(workers), time.monotonic()
        pss, rss = pss_mb(workers), rss_mb(workers)
    finally:
        t1 = time.monotonic()
        code = h.stop(timeout=120)
        stop_s = time.monotonic() - t1
    kills = sum(1 for r in h.log_records() if r.get("event") == "process.kill")
    cpu_share = (c1 - c0) / CLK_TCK / (w1 - w0) / CORES
    return {
        "workers": count, "fork": fork, "processes": len(workers),
        "start_s": round(started_s, 2),
        "workers_ready_span_s": round(max(ready) - first, 2) if ready else None,
        "idle_pss_mb_per_worker": round(pss / count, 2), "idle_rss_mb_per_worker": round(rss / count, 2),
        "idle_pss_mb_total": pss,
        "idle_cpu_pct_of_machine_per_worker": round(100 * cpu_share / count, 4),
        "stop_s": round(stop_s, 2), "stop_exit_code": code, "workers_killed_at_stop": kills,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[50, 200])
    ap.add_argument("--modes", nargs="+", choices=["fork", "exec"], default=["fork", "exec"])
    ap.add_argument("--idle-s", type=float, default=10.0)
    args = ap.parse_args()
    runs = []
    for count in args.counts:
        for mode in args.modes:
            with tempfile.TemporaryDirectory(prefix="bench-wk-") as tmp:
                run = await measure(Path(tmp) / "h", count, mode == "fork", args.idle_s)
            print(json.dumps(run), flush=True)
            runs.append(run)
    save("workers", {"runs": runs, "cores": CORES})


if __name__ == "__main__":
    asyncio.run(main())
