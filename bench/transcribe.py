"""Transcription throughput (``make bench-transcribe``, about 10 minutes with the defaults).

Recordings made as the recorder makes them (stereo Opus 24 kb/s at 16 kHz, caller left, agent
right) of espeak-ng's Korean voice taking turns with pauses, decoded by the real transcriber
(:class:`ivr.quality.transcriber.Transcriber`: ffmpeg per channel, the Korean Vosk model, the
quality rules, Redis) on a private redis-server.

- ``serial``: one call decoded on its own: real-time factor (decode wall time / call duration,
  both channels) and CPU per call-second (the process and its ffmpeg children), hence the
  call-hours one core transcribes per hour.
- ``backlog_w<N>``: ``--calls`` recordings saved at once (a busy hour's end), drained by a
  transcriber process with N decodes at once, niced as ``ivr transcriber`` is (``quality.nice``):
  time to drain, call-hours per wall hour and per core-hour, and each job's lag (call end ->
  transcript stored) p50/p95/max. Meanwhile a nice-0 busy loop stands for the live calls: its
  rate while the backlog drains over its rate alone (``live_share``, 1.0 = untouched) shows
  whether transcription takes CPU from them. The machine's other load is not controlled.
- ``under_load`` (``--load-calls`` > 0): a real hotline (``ivr run`` via bench/call_control.py's rig,
  ``--load-workers`` pjsua2 workers) with recording always on and ``quality.transcribe``, so ``ivr
  run`` starts the transcriber; a backlog of ``--calls`` recordings is queued, then ``--load-calls``
  callers talk to agents for ``--load-talk-s`` while it drains. Reported: calls still up at the end
  (none may drop), the workers' and the transcriber's CPU during the talk, the call-hours
  transcribed per hour meanwhile, and once the calls end the lag until the hotline's own
  recordings are transcribed.

Writes bench/results/transcribe-<time>.json and prints it. ``--quick``: 3 calls of 40 s, one worker
count, no hotline section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis.asyncio import Redis  # noqa: E402

from bench.harness import private_redis, save  # noqa: E402
from ivr.core.config import Settings  # noqa: E402
from ivr.core.logging import configure  # noqa: E402
from ivr.core.recording_store import open_store, recording_key  # noqa: E402
from ivr.quality.transcriber import Decoder, Transcriber, default_model_dir  # noqa: E402
from ivr.queues.quality import QualityStore  # noqa: E402
from ivr.queues.store import QueueStore  # noqa: E402

RATE = 16000
PREFIX = "bench"
PHRASES = ["여보세요", "라디오", "아버지", "요금 문의", "상담원 연결", "감사합니다", "예", "아니요", "환불", "안내"]


@cache
def synth(text: str) -> array[int]:
    wav = subprocess.run(["espeak-ng", "-v", "ko", "--stdout", text], check=True, capture_output=True).stdout
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-ar", str(RATE), "-ac", "1", "-f", "s16le",
                          "pipe:1"], input=wav, check=True, capture_output=True).stdout
    return array("h", pcm)


def make_call(path: Path, seconds: float, seed: int) -> None:
    """Turns: one side says one to three phrases, a pause of 0.5-3 s, the other side answers."""
    rnd = random.Random(seed)
    n = int(seconds * RATE)
    sides = [array("h", bytes(2 * n)), array("h", bytes(2 * n))]
    at, side = 1.0, 1
    while at < seconds - 3:
        for _ in range(rnd.randint(1, 3)):
            pcm = synth(rnd.choice(PHRASES))
            o = int(at * RATE)
            if o + len(pcm) >= n:
                break
            sides[side][o:o + len(pcm)] = pcm
            at += len(pcm) / RATE + rnd.uniform(0.2, 0.6)
        at += rnd.uniform(0.5, 3.0)
        side = 1 - side
    both = array("h", bytes(4 * n))
    both[0::2], both[1::2] = sides
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "s16le", "-ar", str(RATE), "-ac", "2", "-i", "pipe:0",
                    "-c:a", "libopus", "-b:a", "24k", str(path)], input=both.tobytes(), check=True)


def cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def serial(decoder: Decoder, path: Path, seconds: float) -> dict[str, Any]:
    decoder.decode(path)  # warm the model's pages
    c0, t0 = cpu_s(), time.monotonic()
    d = decoder.decode(path)
    wall, cpu = time.monotonic() - t0, cpu_s() - c0
    return {"call_s": seconds, "decode_wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "real_time_factor": round(wall / seconds, 3), "cpu_per_call_s": round(cpu / seconds, 3),
            "call_hours_per_core_hour": round(seconds / cpu, 2),
            "words": len(d.caller) + len(d.agent)}


def settings_for(redis_url: str, var: Path, workers: int) -> Settings:
    return Settings(var_dir=var, redis={"url": redis_url, "prefix": PREFIX},
                    quality={"transcribe": True, "workers": workers})


async def queue_backlog(settings: Settings, files: list[Path], seconds: float) -> list[str]:
    redis = Redis.from_url(settings.redis.dsn)
    await redis.flushdb()
    store, ids = QueueStore(redis, PREFIX), []
    now = int(time.time() * 1000)
    for i, src in enumerate(files):
        rid = "R" + os.urandom(10).hex()
        key = recording_key(rid, now, "opus")
        tmp = src.with_name(f"{rid}.opus")
        tmp.write_bytes(src.read_bytes())
        size = open_store(settings).put(key, tmp)
        await store.recording_saved({
            "id": rid, "call_id": f"bench-{i}", "started_at": now - int(seconds * 1000), "ended_at": now,
            "duration_ms": int(seconds * 1000), "format": "opus", "channels": "caller,agent", "clock_rate": RATE,
            "bytes": size, "sha256": "", "key": key, "store": "local", "agents": json.dumps([f"a{i % 5}"]),
            "agent_id": f"a{i % 5}", "queue": "billing", "pauses": "[]", "ivr": "0",
            "delete_after": now + 86_400_000}, transcribe=True)
        ids.append(rid)
    await redis.aclose()
    return ids


def drain(redis_url: str, var: str, workers: int, nice: int, count: int, out: Any) -> None:
    """The transcriber process: niced first (its threads and ffmpeg children inherit it)."""
    os.nice(nice)
    configure("warning", "console", role="transcriber")
    settings = settings_for(redis_url, Path(var), workers)

    async def run() -> dict[str, Any]:
        redis = Redis.from_url(redis_url)
        store = QueueStore(redis, PREFIX)
        decoder = Decoder(default_model_dir(settings))
        await asyncio.to_thread(decoder.load)
        q = QualityStore(store)
        c0, t0 = cpu_s(), time.monotonic()
        stop = asyncio.Event()
        task = asyncio.create_task(Transcriber(settings, store, open_store(settings), decoder,
                                               consumer="bench").run(stop, poll_s=0.2))
        for _ in range(36000):  # an hour at most
            stats = await q.stats()
            if stats.get("done", 0) + stats.get("failed", 0) >= count or task.done():
                break
            await asyncio.sleep(0.1)
        wall, cpu = time.monotonic() - t0, cpu_s() - c0
        stop.set()
        await task
        stats = await q.stats()
        await redis.aclose()
        return {"wall_s": wall, "cpu_s": cpu, "stats": stats}

    out.send(asyncio.run(run()))


def busy_rate(seconds: float) -> float:
    """Loop iterations per second of a nice-0 busy loop: the live calls' stand-in."""
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(10_000):
            n += 1
    return n / seconds


def backlog(redis_url: str, var: Path, files: list[Path], seconds: float, workers: int, nice: int) -> dict[str, Any]:
    settings = settings_for(redis_url, var, workers)
    ids = asyncio.run(queue_backlog(settings, files, seconds))
    alone = busy_rate(3.0)
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=drain, args=(redis_url, str(var), workers, nice, len(ids), send))
    proc.start()
    time.sleep(3.0)  # the model loads
    rates = []
    while proc.is_alive() and not recv.poll():
        rates.append(busy_rate(2.0))
    got: dict[str, Any] = recv.recv()
    proc.join(30)
    lags = asyncio.run(job_lags(redis_url, ids))
    call_s = seconds * len(ids)
    return {
        "workers": workers, "nice": nice, "calls": len(ids), "call_s_total": call_s,
        "drain_wall_s": round(got["wall_s"], 1), "cpu_s": round(got["cpu_s"], 1),
        "call_hours_per_wall_hour": round(call_s / got["wall_s"], 2),
        "call_hours_per_core_hour": round(call_s / got["cpu_s"], 2) if got["cpu_s"] else None,
        "lag_s": {"p50": round(statistics.median(lags), 1), "p95": round(_pct(lags, 95), 1),
                  "max": round(max(lags), 1)} if lags else None,
        "done": got["stats"].get("done", 0), "failed": got["stats"].get("failed", 0),
        "live_share": round(statistics.median(rates) / alone, 3) if rates else None,
    }


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def job_lags(redis_url: str, ids: list[str]) -> list[float]:
    redis = Redis.from_url(redis_url)
    q = QualityStore(QueueStore(redis, PREFIX))
    out = []
    for rid in ids:
        t = await q.get_transcript(rid)
        rec = await q.store.get_recording(rid)
        if t and rec and t.get("status") == "done":
            out.append((t["decoded_at"] - rec["ended_at"]) / 1000)
    await redis.aclose()
    return out


async def under_load(args: argparse.Namespace, files: list[Path], work: Path) -> dict[str, Any]:
    from bench.call_control import rig
    from bench.procfs import pids_matching
    from bench.recording import cpu, worker_pids
    from ivr.core.recording_store import LocalDirStore

    agents = {f"a{i}": {"billing": 3} for i in range(args.load_calls)}
    overrides = {"recording": {"policy": "always", "announce": False},
                 "quality": {"transcribe": True, "workers": 1, "nice": args.nice}}
    async with rig(work / "hotline-rig", args.load_workers, agents, overrides) as r:
        for agent in agents:
            await r.login(agent)
        redis = r.h.redis()
        try:
            store = r.h.store(redis)
            q = QualityStore(store)
            recordings = LocalDirStore(r.h.var / "recordings")
            now = int(time.time() * 1000)
            for i, src in enumerate(files[i % len(files)] for i in range(args.calls)):
                rid = "R" + os.urandom(10).hex()
                key = recording_key(rid, now, "opus")
                tmp = work / f"{rid}.opus"
                tmp.write_bytes(src.read_bytes())
                size = recordings.put(key, tmp)
                await store.recording_saved({
                    "id": rid, "call_id": f"backlog-{i}", "started_at": now - int(args.call_s * 1000), "ended_at": now,
                    "duration_ms": int(args.call_s * 1000), "format": "opus", "channels": "caller,agent",
                    "clock_rate": RATE, "bytes": size, "sha256": "", "key": key, "store": "local",
                    "agents": json.dumps(["a0"]), "agent_id": "a0", "queue": "billing", "pauses": "[]", "ivr": "0",
                    "delete_after": now + 86_400_000}, transcribe=True)
            r.call_in(2, calls=args.load_calls, tag="tx-load")
            await r.wait_connected(args.load_calls, timeout=90)
            await asyncio.sleep(1.0)
            workers = worker_pids(r.h.workdir)
            tx = [p for p in pids_matching(str(r.h.workdir)) if " transcriber " in f" {_cmd(p)} "]
            s0, (w0, _), t_0 = await q.stats(), cpu(workers), cpu(tx)
            t0 = time.monotonic()
            await asyncio.sleep(args.load_talk_s)
            talk_s = time.monotonic() - t0
            s1, (w1, _), t_1 = await q.stats(), cpu(workers), cpu(tx)
            up = len(await store.active_calls())
            ended = int(time.time() * 1000)
            await r.hang_up_all()
            lags: list[float] = []
            deadline = time.monotonic() + args.calls * args.call_s + 300
            while time.monotonic() < deadline:
                recs, _ = await store.list_recordings(from_ms=ended - int(args.load_talk_s * 1000) - 120_000, limit=200)
                mine = [rec for rec in recs if not str(rec.get("call_id", "")).startswith("backlog-")]
                done = [await q.get_transcript(str(rec["id"])) for rec in mine]
                if len(mine) >= args.load_calls and all(t is not None for t in done):
                    lags = [(t["decoded_at"] - rec["ended_at"]) / 1000 for t, rec in zip(done, mine, strict=True)
                            if t is not None]
                    break
                await asyncio.sleep(1.0)
            audio_s = (s1.get("audio_ms", 0) - s0.get("audio_ms", 0)) / 1000
            tx_cpu = (t_1[0] + t_1[1]) - (t_0[0] + t_0[1])
            return {
                "hotline_workers": len(workers), "calls": args.load_calls, "talk_s": round(talk_s, 1),
                "calls_up_at_end": up, "backlog": args.calls,
                "worker_cpu_share_of_a_core": round((w1 - w0) / talk_s, 3),
                "transcriber_cpu_share_of_a_core": round(tx_cpu / talk_s, 3) if tx else None,
                "transcribed_call_s_during_talk": round(audio_s, 1),  # audio_ms: each call's length
                "call_hours_per_hour_under_load": round(audio_s / talk_s, 2),
                "own_recordings_lag_s": {"p50": round(statistics.median(lags), 1), "max": round(max(lags), 1)}
                if lags else None,
            }
        finally:
            await redis.aclose()


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--calls", type=int, default=8, help="recordings in the backlog")
    ap.add_argument("--call-s", type=float, default=90.0, help="length of each recording")
    ap.add_argument("--workers", default="1,2", help="decodes at once, one backlog run each")
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="3 calls of 40 s, one worker")
    ap.add_argument("--load-calls", type=int, default=8, help="callers talking while the backlog drains (0: no "
                    "hotline section)")
    ap.add_argument("--load-workers", type=int, default=4, help="the hotline's pjsua2 workers")
    ap.add_argument("--load-talk-s", type=float, default=60.0)
    ap.add_argument("--only-load", action="store_true", help="only the hotline section")
    args = ap.parse_args()
    if args.quick:
        args.calls, args.call_s, args.workers, args.load_calls = 3, 40.0, "1", 0
    configure("warning", "console", role="bench")
    result: dict[str, Any] = {"cores": os.cpu_count(), "load_before": os.getloadavg()[0],
                              "model": default_model_dir(Settings()).name, "format": "opus 24 kb/s stereo 16 kHz"}
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(tmp) / f"call-{i}.opus" for i in range(3)]
        for i, f in enumerate(files):
            make_call(f, args.call_s, seed=i)
        if not args.only_load:
            decoder = Decoder(default_model_dir(Settings()))
            decoder.load()
            print("serial: one call decoded alone", flush=True)
            result["serial"] = serial(decoder, files[0], args.call_s)
            del decoder
        with private_redis() as url:
            for w in ([] if args.only_load else [int(x) for x in args.workers.split(",")]):
                print(f"backlog: {args.calls} calls of {args.call_s:.0f} s, {w} decode(s) at once", flush=True)
                var = Path(tmp) / f"var-{w}"
                result[f"backlog_w{w}"] = backlog(url, var, [files[i % 3] for i in range(args.calls)], args.call_s,
                                                  w, args.nice)
        if args.load_calls:
            print(f"under load: {args.load_calls} calls on a hotline while {args.calls} recordings drain", flush=True)
            result["under_load"] = asyncio.run(under_load(args, files, Path(tmp)))
    save("transcribe", result)


if __name__ == "__main__":
    main()
