"""`make bench`: capacity and call-setup figures of the real stack on this machine.

Starts `ivr run` (Redis, Kamailio edge, N pjsua2 workers, API) on loopback, drives it with sipp
callers through the edge, does the same against sipp's own UAS as the C reference, and writes
bench/results/<date>.json plus PNG charts bench/results/<date>-*.png (listed under "plots").

- capacity (bench/capacity.py, about 11 minutes with the defaults, 200 workers): callers press 2
  and wait in the billing queue (music on hold) with no agent logged in. A ramp of levels (100, 200,
  ... up to the pool's caller capacity = 2 x workers) on one started hotline: each level's calls
  are placed and held until all are up at once; reported per level: peak concurrent calls (Redis and
  sipp), successful / failed calls, CPU (machine and server processes) and RSS on the plateau,
  INVITE -> 200 OK p50/p95/p99; the ramp stops at the first level with failures
  (``max_concurrent_zero_failures`` and whether the pool or failures bound it). Idle CPU and RSS
  (per pjsua2 worker too), and per call = (level - idle) / calls.
- setup rate (same hotline): short calls (answer, greeting, DTMF, queue, hang up) at increasing
  rates until one has failures or is not sustained; the highest rate with zero failures, and
  INVITE -> 200 OK percentiles per rate.
- reference (after the hotline has stopped): tests/sipp/reference_uas.xml run by sipp on loopback
  gets the same levels and rates from the same callers; ``ours_vs_reference`` has the ratios.
  Flags: ``--workers`` (200), ``--levels`` (e.g. ``100,200``; default 100s up to 2 x workers),
  ``--fill-rate`` (calls/s while a level fills, 25), ``--plateau-s`` (6), ``--rates``
  (``25,50,75,100,150,200``), ``--rate-seconds`` (15), ``--idle-s`` (10), ``--rtp-ports-per-worker``
  (default: the configured 40, or 20 when no gap that big is free), ``--no-reference``.
  ``ours.log_problems`` lists what the hotline logged as warnings, errors or crashes while loaded.
  A quick run: ``--no-speech --no-routing --no-estimate --no-pops --no-webhooks --workers 10``.
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
- call control (bench/call_control.py, about 5 minutes, its own hotlines): request -> 202 of each
  call-control command p50/p99 with 200 calls up (and request -> changed RTP at the caller for hold
  and resume), callers per worker with ``workers.spare_legs`` 0 and 1, consult success as load
  rises, against the newest capacity figures. ``--no-call-control`` skips it (``make
  bench-call-control`` runs only it); its flags are ``--cc-*``.
- speech accuracy (bench/speech_accuracy.py, about 25 minutes, ``--sa-quick`` about 5): a Korean phrase
  set with many espeak-ng voices, noise types and SNRs, codecs, barge-in and after the prompt,
  out-of-grammar sentences and spoken digits, through raw Vosk and through real SIP calls to its own
  hotline; right / confirmed / wrong / no-match / false-accept rates per slice, digit accuracy and
  end-of-speech -> result latency. Also written on its own as bench/results/speech-accuracy-<date>.json.
  ``--no-speech-accuracy`` skips it (``make bench-speech-accuracy`` runs only it); its flags are ``--sa-*``.
- speech offline (bench/speech_endpoint.py and bench/phrase_confusion.py, about 5 minutes): the
  speech service's end-of-utterance rules on the accuracy corpus in audio time (written on its own as
  bench/results/speech-endpoint-<date>.json), and how often the model takes one phrase for another by
  how alike they sound (the thresholds of ``ivr dialplan check``). ``--no-speech-offline`` skips them.
``--queues-only`` runs only the routing and estimate sections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.call_control import add_arguments as add_call_control_arguments  # noqa: E402
from bench.call_control import call_control_bench  # noqa: E402
from bench.capacity import add_arguments as add_capacity_arguments  # noqa: E402
from bench.capacity import capacity_sections  # noqa: E402
from bench.estimate import estimate_bench  # noqa: E402
from bench.harness import latency_plots, save  # noqa: E402
from bench.phrase_confusion import main as phrase_confusion  # noqa: E402
from bench.pops import pops_bench  # noqa: E402
from bench.routing import routing_bench  # noqa: E402
from bench.speech import speech_bench  # noqa: E402
from bench.speech_accuracy import add_arguments as add_speech_accuracy_arguments  # noqa: E402
from bench.speech_accuracy import speech_accuracy_bench  # noqa: E402
from bench.speech_endpoint import speech_endpoint_bench  # noqa: E402
from bench.webhooks import webhooks_bench  # noqa: E402


async def main() -> None:
    ap = argparse.ArgumentParser()
    add_capacity_arguments(ap)
    add_call_control_arguments(ap)
    add_speech_accuracy_arguments(ap, prefix="sa-")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    speech = ap.add_mutually_exclusive_group()
    speech.add_argument("--no-speech", action="store_true", help="skip the speech service benchmark")
    speech.add_argument("--speech-only", action="store_true", help="run only the speech service benchmark")
    speech.add_argument("--queues-only", action="store_true", help="run only the routing and estimate benchmarks")
    ap.add_argument("--no-routing", action="store_true", help="skip the routing benchmark")
    ap.add_argument("--no-estimate", action="store_true", help="skip the wait-estimate benchmark")
    ap.add_argument("--no-pops", action="store_true", help="skip the screen-pop latency benchmark")
    ap.add_argument("--no-webhooks", action="store_true", help="skip the webhook outbox benchmark")
    ap.add_argument("--no-call-control", action="store_true", help="skip the call-control benchmark")
    ap.add_argument("--no-speech-accuracy", action="store_true", help="skip the speech accuracy benchmark")
    ap.add_argument("--no-speech-offline", action="store_true",
                    help="skip the offline speech sections (end of utterance, phrase confusion)")
    ap.add_argument("--speech-threads", type=int, default=2, help="recognition threads of the speech service")
    args = ap.parse_args()
    stamp = f"{datetime.now(UTC):%Y-%m-%dT%H%M%S}"
    result: dict[str, object] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                                 "machine": {"cores": os.cpu_count()}}
    if not args.no_speech and not args.queues_only:
        print("speech: concurrent real-time recognitions", flush=True)
        result["speech"] = await speech_bench(threads=args.speech_threads)
    if not args.no_speech_accuracy and not args.queues_only:
        print("speech accuracy: raw Vosk and SIP calls on the same Korean corpus", flush=True)
        section = await speech_accuracy_bench(args.sa_quick, args.sa_seed, concurrency=args.sa_concurrency,
                                              workers=args.sa_workers)
        save("speech-accuracy", dict(section))
        section.pop("utterances", None)  # per utterance: in speech-accuracy-<date>.json only
        result["speech_accuracy"] = section
    if not args.no_speech_offline and not args.queues_only:
        print("speech offline: end of utterance on the accuracy corpus, phrase confusion", flush=True)
        section = speech_endpoint_bench(args.sa_quick, args.sa_seed)
        save("speech-endpoint", dict(section))
        section.pop("utterances", None)  # per utterance: in speech-endpoint-<date>.json only
        result["speech_endpoint"] = section
        result["phrase_confusion"] = phrase_confusion()
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
    if not args.no_call_control and not args.speech_only and not args.queues_only:
        print("call control: command latency with 200 calls up, the leg policy (about 5 min)", flush=True)
        result["call_control"] = await call_control_bench(args)
    if not args.speech_only and not args.queues_only:
        await capacity_sections(args, result, Path(args.out) / stamp)
    # the other sections' raw latency samples become histograms (bench/results/<stamp>-<section>.png)
    drawn = latency_plots(result, stamp)
    if drawn:
        result.setdefault("plots", []).extend(drawn)  # type: ignore[attr-defined]
    out = Path(args.out) / f"{stamp}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"written {out}")


if __name__ == "__main__":
    asyncio.run(main())
