"""Where a call's setup goes (issue 23): CPU per role and the workers' own profile at a fixed rate.

``ivr run`` with ``--workers`` workers, each run under cProfile (``IVR_PROFILE_DIR``: a worker writes
``<dir>/<worker>-<pid>-<thread>.pstats`` when it stops, its event loop's and its SIP thread's, each
on that thread's CPU time); sipp callers through the edge at ``--rate`` calls/s
for ``--seconds`` (the capacity benchmark's short call: answer, greeting, DTMF 2, the billing queue,
hang up 200 ms later). Recorded:

- CPU seconds per role (edge = Kamailio, workers, Redis, API, supervisor) over the load, and per call;
- per thread (event loop, SIP thread), the functions with the most own and cumulative CPU (workers merged);
- INVITE -> 200 latency and sipp's counts.

    .venv/bin/python bench/setup_profile.py --rate 60 --seconds 20 --workers 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.capacity import (  # noqa: E402
    SCREEN_COUNTS,
    caller_scenario,
    client_options,
    latency_summary,
    make_hotline,
    read_rtt,
)
from bench.harness import save, sipp_counts  # noqa: E402
from bench.procfs import CLK_TCK, cmdline, cpu_ticks, descendants, pids_matching  # noqa: E402
from bench.soak import classify  # noqa: E402
from tests.sipp_helpers import run_sipp  # noqa: E402


def by_role(pids: list[int]) -> dict[str, int]:
    """CPU ticks per hotline role of these processes."""
    out: dict[str, int] = {}
    for pid in pids:
        role = classify(cmdline(pid)) or "other"
        out[role] = out.get(role, 0) + cpu_ticks([pid])
    return out


def worker_threads(pids: list[int]) -> dict[str, int]:
    """CPU ticks of the workers' threads by kind: the event loop's (the process's main thread), the
    SIP thread and pjlib's own (by their names)."""
    out: dict[str, int] = {}
    for pid in pids:
        if classify(cmdline(pid)) != "workers":
            continue
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                tid = int(task.name)
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (task / "stat").read_text()
                    name = "event loop (main)" if tid == pid else stat[stat.index("(") + 1:stat.rindex(")")]
                    fields = stat.rsplit(")", 1)[1].split()
                    out[name] = out.get(name, 0) + int(fields[11]) + int(fields[12])
    return out


def top(stats: pstats.Stats, key: str, n: int) -> list[dict[str, Any]]:
    stats.sort_stats(key)
    rows = []
    for func in stats.fcn_list[:n]:  # type: ignore[attr-defined]
        _cc, nc, tt, ct, _ = stats.stats[func]  # type: ignore[attr-defined]
        file, line, name = func
        rows.append({"function": f"{Path(file).name}:{line}:{name}", "calls": nc, "own_s": round(tt, 3),
                     "cumulative_s": round(ct, 3)})
    return rows


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=20)
    ap.add_argument("--rate", type=int, default=60)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--no-profile", action="store_true", help="CPU by role and thread only (no cProfile overhead)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-setup-") as tmp:
        work = Path(tmp)
        profiles = work / "profiles"
        profiles.mkdir()
        if not args.no_profile:
            os.environ["IVR_PROFILE_DIR"] = str(profiles)
        h = make_hotline(work / "h", args.workers, {"log_level": "warning",  # one sipp source: as a carrier SBC
                                                     "edge": {"flood": {"exempt_networks": ["127.0.0.1/32"]}}})
        await h.start(timeout=300)
        try:
            assert h.proc is not None
            root = h.proc.pid

            def pids() -> list[int]:
                return sorted(set(descendants(root)) | set(pids_matching(str(h.workdir))))
            await asyncio.sleep(3)
            before, threads_before, t0 = by_role(pids()), worker_threads(pids()), time.monotonic()
            tag = f"rate{args.rate}"
            sf = caller_scenario(work / "sipp", tag, talk_ms=200)
            calls = args.rate * args.seconds
            res = await run_sipp(sf, ("127.0.0.1", h.edge_port), workdir=work / "sipp", tag=tag, calls=calls,
                                 limit_s=args.seconds + 60, trace_messages=False,
                                 extra=[*client_options(), "-r", str(args.rate), "-l", str(args.rate * 3)])
            after, threads_after, wall = by_role(pids()), worker_threads(pids()), time.monotonic() - t0
        finally:
            h.stop(timeout=60)
        counts = sipp_counts(res.output, SCREEN_COUNTS)
        cpu = {role: round((after.get(role, 0) - before.get(role, 0)) / CLK_TCK, 2) for role in after}
        done = max(1, counts["successful"])
        files = {thread: sorted(profiles.glob(f"*-{thread}.pstats")) for thread in ("loop", "sip")}
        stats = {thread: pstats.Stats(*map(str, found), stream=io.StringIO()) for thread, found in files.items()
                 if found}
        result = {
            "workers": args.workers, "rate_cps": args.rate, "profiled": not args.no_profile, "seconds": args.seconds,
            "wall_s": round(wall, 1),
            **counts, "invite_to_200_ms": latency_summary([rtt for _, rtt in read_rtt(work / "sipp", tag)]),
            "cpu_s_by_role": cpu, "cpu_ms_per_call_by_role": {r: round(1000 * s / done, 2) for r, s in cpu.items()},
            "workers_cpu_s_by_thread": {n: round((t - threads_before.get(n, 0)) / CLK_TCK, 2)
                                        for n, t in threads_after.items() if t - threads_before.get(n, 0) > 0},
            "profiles": {thread: len(found) for thread, found in files.items()},
            # CPU time of each thread (cProfile on time.thread_time), merged over the workers
            **{f"workers_{thread}_top_own_cpu": top(st, "tottime", args.top) for thread, st in stats.items()},
            **{f"workers_{thread}_top_cumulative_cpu": top(st, "cumulative", args.top) for thread, st in stats.items()},
        }
    save("setup-profile", result)


if __name__ == "__main__":
    asyncio.run(main())
