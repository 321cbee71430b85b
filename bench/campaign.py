"""An outbound campaign at scale: ``--records`` (10,000) customers dialled at ``--rate`` calls a second.

``python bench/campaign.py`` (``make bench-campaign``; 10,000 records at 25/s: about 7 minutes plus
start-up). The real ``ivr run`` (tests.e2e.conftest.Hotline, ``--workers`` pjsua2 workers, speech
off) runs a campaign made through the API; one sipp UAS plays every customer's phone (answers after
100 ms); the plan hangs up at once. Measured:

- **achieved rate** against the configured one, from the ``campaign.record`` events (state
  ``dialing``: the moment the dialler placed the call, Redis time);
- **pacing**: the most calls placed in any 1 s window against the token bucket's bound (max(1, rate)
  saved up + rate), the
  per-second counts (mean, stdev, min, max over the steady part), and the pacing error
  ``achieved / configured - 1``;
- **CPU** of the hotline's processes and of the whole machine (the machine is shared: the load
  average is recorded at both ends);
- every record final (done), none dialled twice (one ``dialing`` event per record; sipp's screen is kept).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import yaml  # noqa: E402

from bench.capacity import Snapshot, cpu_between, log_problems, make_hotline  # noqa: E402
from bench.harness import save  # noqa: E402
from bench.procfs import descendants, pids_matching  # noqa: E402
from tests.ports import free_udp_tcp_port  # noqa: E402
from tests.scenarios import render_scenario  # noqa: E402
from tests.sipp_helpers import SippServer  # noqa: E402

EVENT_PT = 101


def plan() -> dict[str, Any]:
    return {"name": "Campaign bench", "numbers": ["9100"], "language": "en", "start": "bye",
            "nodes": {"bye": {"type": "hangup"}}}


async def api(session: aiohttp.ClientSession, base: str, token: str, method: str, path: str, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
    async with session.request(method, base + path, headers=headers, **kw) as r:
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {await r.text()}")
        return await r.json() if r.content_type == "application/json" else None


def pacing(ts_ms: list[int], rate: float) -> dict[str, Any]:
    """Achieved rate and pacing accuracy of the placing times (ms)."""
    ts = sorted(ts_ms)
    if len(ts) < 2:
        return {"calls": len(ts)}
    span_s = (ts[-1] - ts[0]) / 1000
    achieved = (len(ts) - 1) / span_s if span_s > 0 else float("inf")
    # most calls in any 1 s window (two pointers)
    most, j = 0, 0
    for i in range(len(ts)):
        while ts[i] - ts[j] >= 1000:
            j += 1
        most = max(most, i - j + 1)
    # per-second counts over the steady part (the first and last seconds dropped)
    start = ts[0]
    seconds = [0] * (int(span_s) + 1)
    for t in ts:
        seconds[int((t - start) / 1000)] += 1
    steady = seconds[1:-1] or seconds
    return {"calls": len(ts), "span_s": round(span_s, 2), "configured_per_s": rate,
            "achieved_per_s": round(achieved, 3), "pacing_error_pct": round(100 * (achieved / rate - 1), 2),
            # the token bucket holds max(1, rate): in any second at most that many saved up plus the rate
            "most_in_any_1s": most, "bound_1s": max(1.0, rate) + rate, "bound_kept": most <= max(1.0, rate) + rate,
            "per_second": {"mean": round(statistics.fmean(steady), 2),
                           "stdev": round(statistics.pstdev(steady), 2), "min": min(steady), "max": max(steady)}}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir or f"/tmp/bench-campaign-{os.getpid()}")
    plans = workdir / "dialplans"
    plans.mkdir(parents=True, exist_ok=True)
    (plans / "bench.yaml").write_text(yaml.safe_dump(plan()))
    customer_port = free_udp_tcp_port()
    h = make_hotline(workdir / "hotline", args.workers, {
        "dialplans_dir": str(plans), "calls": {"outbound_allow": ["+82*"]},
        "routing": {"events_maxlen": max(100_000, args.records * 8)},
        "callbacks": {"dial_uri": f"sip:{{number}}@127.0.0.1:{customer_port}", "ring_timeout_s": 10}})
    phone_sf = render_scenario("customer_phone.xml", workdir / "phone", keep="remote-hangs-up",
                               drop="customer-hangs-up", ring_ms=100, talk_ms=10_000, event_pt=EVENT_PT,
                               actions="")
    phone = SippServer(phone_sf, workdir=workdir / "phone", tag="phone", port=customer_port,
                       max_runtime=args.records / args.rate * 3 + 300, trace_messages=False,
                       extra=["-mp", str(free_udp_tcp_port())])
    result: dict[str, Any] = {"records": args.records, "rate_per_s": args.rate, "workers": args.workers,
                              "max_concurrent": args.concurrent,
                              "load_avg_start": os.getloadavg()}
    await h.start()
    try:
        await phone.start()
        token = h.tokens["super1"]
        async with aiohttp.ClientSession() as s:
            c = await api(s, h.api, token, "POST", "/api/v1/campaigns", json={
                "name": "bench", "plan": "bench", "ring_s": 10,
                "pacing": {"rate_per_s": args.rate, "max_concurrent": args.concurrent},
                "retries": {"max_attempts": 1}})
            cid = c["id"]
            for start in range(0, args.records, 10_000):
                rows = "number\n" + "".join(f"+8210{i:08d}\n" for i in range(start, min(args.records, start + 10_000)))
                up = await api(s, h.api, token, "POST", f"/api/v1/campaigns/{cid}/records", data=rows.encode(),
                               headers={"Content-Type": "text/csv"})
                assert up["skipped"] == 0, up
            root = h.proc.pid if h.proc else 0
            pids = sorted(set(descendants(root)) | set(pids_matching(str(h.workdir))))
            before = Snapshot.take(pids)
            t0 = time.monotonic()
            await api(s, h.api, token, "POST", f"/api/v1/campaigns/{cid}/start")
            deadline = t0 + args.records / args.rate * 3 + 120
            while True:
                c = await api(s, h.api, token, "GET", f"/api/v1/campaigns/{cid}")
                if c["state"] == "finished" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1)
            after = Snapshot.take(pids)
            wall = time.monotonic() - t0
        result["finished"] = c["state"] == "finished"
        result["counts"] = c["counts"]
        result["wall_s"] = round(wall, 1)
        result["cpu"] = {**cpu_between(before, after), "server_pids": len(pids)}
        redis = h.redis()
        try:
            placed: list[int] = []
            ids: list[str] = []
            last = "-"
            while True:
                batch: Any = await redis.xrange(h.store(redis).keys.events, min=last, count=5000)
                if last != "-":
                    batch = batch[1:]
                if not batch:
                    break
                for _sid, fields in batch:
                    if fields[b"type"] == b"campaign.record":
                        d = json.loads(fields[b"data"])
                        if d.get("state") == "dialing" and d.get("campaign_id") == cid:
                            placed.append(int(d["ts"]))
                            ids.append(str(d["record_id"]))
                last = batch[-1][0].decode()
        finally:
            await redis.aclose()
        result["pacing"] = pacing(placed, args.rate)
        result["sipp_screen_tail"] = phone.screen()[-800:]
        result["records_dialled"] = len(set(ids))
        result["dialled_twice"] = len(ids) - len(set(ids))
        result["problems"] = log_problems(h)
    finally:
        await phone.stop()
        h.stop()
    result["load_avg_end"] = os.getloadavg()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=25.0)
    p.add_argument("--concurrent", type=int, default=40)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--workdir", default="")
    p.add_argument("--no-save", action="store_true", help="print only (a smoke run)")
    args = p.parse_args()
    result = asyncio.run(run(args))
    if args.no_save:
        print(json.dumps(result, indent=2))
    else:
        save("campaign", result)


if __name__ == "__main__":
    main()
