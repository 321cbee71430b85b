"""Above the rate the edge admits, calls are refused at once, and no admitted call fails (issue 23).

``ivr run`` with the edge's admission rate (``edge.max_calls_per_s``, default 25 per core); sipp
callers (tests/sipp/overload_caller.xml: a 503 with Retry-After ends the call as refused, a 200 is
served: DTMF 2, the billing queue, ``--hold-ms``, hang up) offered at each ``--offered`` multiple of
that rate for ``--seconds``. Recorded per level: placed, served, refused with 503, failed (anything
else: a call admitted that did not complete, or an answer that is neither), and INVITE -> 200 of
the calls served.

    .venv/bin/python bench/admission.py --workers 100 --offered 1.5 2 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.capacity import client_options, latency_summary, make_hotline, read_rtt  # noqa: E402
from bench.harness import save, sipp_counts  # noqa: E402
from tests.ports import free_udp_tcp_port  # noqa: E402
from tests.sipp_helpers import run_sipp, scenario  # noqa: E402


async def level(h: Any, work: Path, cps: int, seconds: int, hold_ms: int) -> dict[str, Any]:
    tag = f"offered{cps}"
    calls = cps * seconds
    res = await run_sipp(scenario("overload_caller.xml"), ("127.0.0.1", h.edge_port), workdir=work, tag=tag,
                         calls=calls, limit_s=seconds + hold_ms / 1000 + 60, trace_messages=False,
                         extra=[*client_options(), "-r", str(cps), "-l", str(calls), "-d", str(hold_ms),
                                "-mp", str(free_udp_tcp_port())])
    counts = sipp_counts(res.output, ("placed", "successful", "failed", "refused_503"), missing=0)
    return {"offered_cps": cps, "calls": calls, **counts, "served": counts["successful"] - counts["refused_503"],
            "invite_to_200_ms": latency_summary([rtt for _, rtt in read_rtt(work, tag)]),
            "failed_why": failure_kinds(work / f"{tag}.errors.log")}


def failure_kinds(errors_log: Path, top: int = 6) -> dict[str, int]:
    """What sipp's error log says went wrong, by kind: the unexpected reply's status line, a receive
    timeout, a dead call (a reply to a call sipp had already given up)."""
    kinds: Counter[str] = Counter()
    try:
        text = errors_log.read_text(errors="replace")
    except OSError:
        return {}
    for line in text.splitlines():
        if "unexpected message" in line or "Dead call" in line:
            m = re.search(r"received '(SIP/2\.0 \d{3}[^\r\n']*|[A-Z]+ )", line)
            kinds[("dead call: " if "Dead call" in line else "unexpected: ") + (m.group(1).strip() if m else "?")] += 1
        elif "timeout" in line.lower():
            kinds["receive timeout"] += 1
    return dict(kinds.most_common(top))


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=100)
    ap.add_argument("--offered", type=float, nargs="+", default=[1.5, 2.0], help="multiples of the admission rate")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--hold-ms", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=None, help="edge.max_calls_per_s (default: the edge's own)")
    args = ap.parse_args()
    levels = []
    with tempfile.TemporaryDirectory(prefix="bench-admission-") as tmp:
        work = Path(tmp)
        edge: dict[str, Any] = {"flood": {"exempt_networks": ["127.0.0.1/32"]}}
        if args.rate:
            edge["max_calls_per_s"] = args.rate
        h = make_hotline(work / "h", args.workers, {"log_level": "warning", "edge": edge})
        await h.start(timeout=300)
        try:
            from ivr.core.config import EdgeSettings

            rate = args.rate or EdgeSettings().admission_rate
            for multiple in args.offered:
                lv = await level(h, work / "sipp", round(rate * multiple), args.seconds, args.hold_ms)
                print(lv, flush=True)
                levels.append({"multiple": multiple, **lv})
                await asyncio.sleep(args.hold_ms / 1000 + 3)
        finally:
            h.stop(timeout=60)
    save("admission", {"workers": args.workers, "admission_cps": rate, "levels": levels,
                       "zero_failed": all(lv["failed"] == 0 for lv in levels)})


if __name__ == "__main__":
    asyncio.run(main())
