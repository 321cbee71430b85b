"""What recording costs: CPU and disk per recorded call-hour, on the real stack.

``python bench/recording.py`` (``make bench-recording``, about 4 minutes; part of ``make bench``).
``ivr run`` (tests.e2e.conftest.Hotline via bench/call_control.py's rig) with ``--workers`` (4) pjsua2
workers; ``--calls`` (8: two per worker, the workers' full caller load) callers, each sending a
2300 Hz tone, connected to agents whose sipp phone sends 2700 Hz, talk ``--talk-s`` (60) seconds;
then the hotline hangs them up. Twice: recording off (``policy: never``), then on (``always``).

Measured for each run:
- the workers' CPU (user + system of the worker processes) during the talk: the difference between
  the two runs is what recording adds on the conference bridge (two recorders and the keeper per
  call), per recorded call-hour;
- after the calls, the compression: the CPU of the ffmpeg children (``cutime + cstime`` the
  workers gain once the finishers are done), per recorded call-hour, and how long the last one took;
- disk: the raw spool per call-hour (two 16-bit channels at the bridge clock: 32 kB/s at 8 kHz),
  and the stored file per call-hour (``bytes`` / ``duration_ms`` of the index).

The load average is recorded at the start and end: the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.call_control import rig  # noqa: E402
from bench.harness import save  # noqa: E402
from bench.procfs import CLK_TCK, _stat_fields, pids_matching  # noqa: E402


def worker_pids(work: Path) -> list[int]:
    return [p for p in pids_matching(str(work)) if " worker " in f" {_cmd(p)} "]


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu(pids: list[int]) -> tuple[float, float]:
    """(own, children's) CPU seconds of the processes."""
    own = kids = 0
    for pid in pids:
        try:
            f = _stat_fields(pid)
        except (OSError, IndexError):
            continue
        own += int(f[11]) + int(f[12])
        kids += int(f[13]) + int(f[14])
    return own / CLK_TCK, kids / CLK_TCK


def spool_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.wav") if not p.name.startswith("silence-"))


async def one_run(work: Path, args: argparse.Namespace, policy: str) -> dict[str, Any]:
    agents = {f"a{i}": {"billing": 3} for i in range(args.calls)}
    overrides = {"recording": {"policy": policy, "announce": False}}
    async with rig(work / policy, args.workers, agents, overrides) as r:
        for agent in agents:
            await r.login(agent)
        workers = worker_pids(r.h.workdir)
        r.call_in(2, calls=args.calls, tag=f"rec-{policy}")
        await r.wait_connected(args.calls, timeout=60)
        await asyncio.sleep(1.0)  # every bridge settled
        t0, (c0, _) = time.monotonic(), cpu(workers)
        spool = r.h.var / "recording-spool"
        peak_spool = 0
        while time.monotonic() - t0 < args.talk_s:
            await asyncio.sleep(1.0)
            if policy != "never":
                peak_spool = max(peak_spool, await asyncio.to_thread(spool_bytes, spool))
        t1, (c1, k1) = time.monotonic(), cpu(workers)
        talk_s = t1 - t0
        ended = time.monotonic()
        await r.hang_up_all()
        saved: list[dict[str, Any]] = []
        if policy != "never":
            redis = r.h.redis()
            try:
                store = r.h.store(redis)
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    saved, _ = await store.list_recordings(limit=args.calls + 5)
                    if len(saved) >= args.calls:
                        break
                    await asyncio.sleep(0.2)
            finally:
                await redis.aclose()
        finished_after = time.monotonic() - ended
        await asyncio.sleep(0.5)
        _, k2 = cpu(workers)
        call_hours = args.calls * talk_s / 3600
        recorded_hours = sum(int(s["duration_ms"]) for s in saved) / 3_600_000
        stored = sum(int(s["bytes"]) for s in saved)
        return {
            "policy": policy, "calls": args.calls, "talk_s": round(talk_s, 1), "workers": len(workers),
            "worker_cpu_s": round(c1 - c0, 2), "worker_cpu_per_call_hour_s": round((c1 - c0) / call_hours, 1),
            "recordings_saved": len(saved), "recorded_hours": round(recorded_hours, 4),
            "compress_cpu_s": round(k2 - k1, 2),
            "compress_cpu_per_call_hour_s": round((k2 - k1) / recorded_hours, 1) if recorded_hours else None,
            "all_stored_after_s": round(finished_after, 1) if saved else None,
            "spool_peak_mb": round(peak_spool / 1e6, 2),
            "spool_mb_per_call_hour": round(peak_spool / 1e6 / call_hours, 1) if peak_spool else None,
            "stored_mb": round(stored / 1e6, 3),
            "stored_mb_per_call_hour": round(stored / 1e6 / recorded_hours, 2) if recorded_hours else None,
            "durations_ms": sorted(int(s["duration_ms"]) for s in saved),
        }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    result: dict[str, Any] = {"bench": "recording", "load_start": os.getloadavg(), "cores": os.cpu_count(),
                              "settings": {"workers": args.workers, "calls": args.calls, "talk_s": args.talk_s}}
    off = await one_run(work, args, "never")
    on = await one_run(work, args, "always")
    extra = on["worker_cpu_s"] - off["worker_cpu_s"]
    call_hours = on["calls"] * on["talk_s"] / 3600
    result.update({
        "off": off, "on": on,
        "recording_adds_worker_cpu_per_call_hour_s": round(extra / call_hours, 1),
        "recording_adds_worker_cpu_share_of_a_core_per_call": round(extra / on["talk_s"] / on["calls"], 5),
        "cpu_per_recorded_call_hour_s": round(extra / call_hours + (on["compress_cpu_per_call_hour_s"] or 0), 1),
        "load_end": os.getloadavg(),
    })
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--calls", type=int, default=8)
    ap.add_argument("--talk-s", type=float, default=60.0)
    ap.add_argument("--work", default="/tmp/bench-recording")
    save("recording", asyncio.run(main(ap.parse_args())))
