"""Speech service benchmark: concurrent real-time recognitions, end-of-speech -> result latency.

Starts the real speech service (``python -m ivr.cli speech``: the Korean Vosk model, ``--threads``
recognition threads) on a free loopback port and streams Korean menu phrases spoken by espeak-ng
(8 kHz, 16-bit mono) to it as a call would: 20 ms frames paced by the clock, 300 ms of silence
before the phrase and silence after it until the result comes (at most ``TAIL_MAX_MS``).

*End of speech* is the end of the last 20 ms frame of the synthesised phrase whose level is above
``SPEECH_DBFS`` (espeak-ng's own trailing silence is not speech); the latency of an utterance is
the wall time from sending that frame to receiving the final result. It includes the silence
Vosk's endpointer waits for (about 0.5 s) as well as decoding delay.

Concurrency is ramped 1, 2, 4, 8, ... streams (started spread over one utterance so they do not
all end at once) until the p95 latency exceeds ``GOAL_P95_MS``, a recognition fails, or
``--max-streams``. Reported per level: latency p50/p95/max, accuracy, CPU of the speech process
(cores busy) and its RSS. The model's RSS is counted once per host: the idle RSS after loading is
reported on its own, and the RSS under load shows what each stream adds.

The load generator runs on the same machine: ``bench_client_cpu_cores`` and ``machine_busy_pct``
show when it, rather than the service, is the limit.

Run alone: ``.venv/bin/python bench/speech.py`` (prints JSON); ``bench/run.py`` includes it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.procfs import cpu_seconds, machine_jiffies, rss_mb  # noqa: E402
from ivr.speech.client import SpeechClient  # noqa: E402

RATE = 8000
FRAME_MS = 20
FRAME = RATE * 2 * FRAME_MS // 1000
LEAD_MS = 300
TAIL_MAX_MS = 4000
SPEECH_DBFS = -40.0
GOAL_P95_MS = 600.0
#: Latency "degrades" when p95 exceeds the one-stream p95 by this much (or the goal, if higher).
DEGRADE_MS = 200.0
SLICE_MS = 100  # what the service hands Vosk per call (ivr.speech.server.SLICE_MS)
#: Phrases the model recognises reliably from espeak-ng's Korean voice (see tests/service/test_speech.py).
PHRASES = ["요금 문의", "상담원 연결", "해지", "환불", "안내"]
GRAMMAR = PHRASES


def synth(text: str) -> bytes:
    """``text`` spoken by espeak-ng's Korean voice as raw 16-bit mono PCM at 8 kHz."""
    wav = subprocess.run(["espeak-ng", "-v", "ko", "--stdout", text], check=True, capture_output=True,
                         timeout=30).stdout
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "pipe:0", "-ar", str(RATE), "-ac", "1", "-f", "s16le",
         "-acodec", "pcm_s16le", "pipe:1"], input=wav, check=True, capture_output=True, timeout=30).stdout


def speech_end_ms(pcm: bytes) -> float:
    """End of the last frame above ``SPEECH_DBFS`` (RMS), in ms from the start of ``pcm``."""
    threshold = 32768 * 10 ** (SPEECH_DBFS / 20)
    last = 0
    for index in range(0, len(pcm) // FRAME):
        frame = memoryview(pcm)[index * FRAME:(index + 1) * FRAME].cast("h")
        if math.sqrt(sum(s * s for s in frame) / len(frame)) > threshold:
            last = index + 1
    return last * FRAME_MS


@dataclass
class Utterance:
    phrase: str
    pcm: bytes  # lead silence + the phrase
    speech_end_ms: float


@dataclass
class Outcome:
    phrase: str
    latency_ms: float | None = None
    recognised: str | None = None
    confidence: float = 0.0
    reason: str = ""
    error: str | None = None


class _Paced:
    """A call's audio: 20 ms frames on the clock; marks when the end-of-speech frame went out."""

    def __init__(self, utt: Utterance) -> None:
        self.utt = utt
        self.eos_sent_at: float | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        start = time.monotonic()
        total_ms = len(self.utt.pcm) * 1000 / (RATE * 2) + TAIL_MAX_MS
        sent_ms = 0.0
        while sent_ms < total_ms:
            offset = int(sent_ms * RATE * 2 / 1000)
            chunk = self.utt.pcm[offset:offset + FRAME]
            chunk = chunk + bytes(FRAME - len(chunk))
            await asyncio.sleep(max(0.0, start + sent_ms / 1000 - time.monotonic()))
            yield chunk
            sent_ms += FRAME_MS
            if self.eos_sent_at is None and sent_ms >= self.utt.speech_end_ms:
                self.eos_sent_at = time.monotonic()


async def recognise_one(client: SpeechClient, utt: Utterance) -> Outcome:
    stream = _Paced(utt)
    try:
        result = await client.recognize(aiter(stream), sample_rate=RATE, phrases=GRAMMAR,
                                        no_input_ms=5000, max_speech_ms=8000)
    except Exception as exc:
        return Outcome(utt.phrase, error=f"{type(exc).__name__}: {exc}")
    done = time.monotonic()
    latency = None if stream.eos_sent_at is None else (done - stream.eos_sent_at) * 1000
    return Outcome(utt.phrase, latency, result.phrase, result.confidence, result.reason)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Level:
    streams: int
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    cpu_cores: float = 0.0
    machine_busy_pct: float = 0.0
    client_cpu_cores: float = 0.0
    rss_mb_max: float = 0.0
    sessions: list[int] = field(default_factory=list)  # the service's open sessions, sampled

    def summary(self) -> dict[str, Any]:
        lat = [o.latency_ms for o in self.outcomes if o.latency_ms is not None and o.error is None]
        errors = [o.error for o in self.outcomes if o.error]
        correct = sum(1 for o in self.outcomes if o.recognised == o.phrase)
        out: dict[str, Any] = {
            "streams": self.streams, "utterances": len(self.outcomes), "errors": len(errors),
            "accuracy": round(correct / max(1, len(self.outcomes)), 3),
            "speech_process_cpu_cores": round(self.cpu_cores, 2),
            "machine_busy_pct": round(self.machine_busy_pct, 1),
            "bench_client_cpu_cores": round(self.client_cpu_cores, 2),
            "sessions_mean": round(statistics.mean(self.sessions), 1) if self.sessions else None,
            "sessions_max": max(self.sessions, default=None),
            "speech_rss_mb_max": self.rss_mb_max, "seconds": round(self.seconds, 1),
        }
        if lat:
            out.update({"latency_p50_ms": round(statistics.median(lat)),
                        "latency_p95_ms": round(percentile(lat, 0.95)),
                        "latency_p99_ms": round(percentile(lat, 0.99)), "latency_max_ms": round(max(lat)),
                        "_samples_ms": lat})
        if errors:
            out["first_error"] = errors[0]
        wrong = [(o.phrase, o.recognised, o.reason) for o in self.outcomes if o.recognised != o.phrase]
        if wrong:
            out["misrecognised"] = wrong[:5]
        return out

    def within(self, limit_ms: float) -> bool:
        s = self.summary()
        return not s["errors"] and s.get("latency_p95_ms", math.inf) <= limit_ms


async def run_level(client: SpeechClient, pid: int, port: int, utterances: list[Utterance], streams: int,
                    samples: int) -> Level:
    """``streams`` concurrent callers, each saying phrases back to back until ``samples`` in all.

    With several streams, each caller's first utterance (while the others are still starting) is
    not counted, so the figures are those of ``streams`` recognitions running at once.
    """
    warmup = 1 if streams > 1 else 0
    rounds = max(2, math.ceil(samples / streams)) + warmup
    level = Level(streams)
    spread_s = len(utterances[0].pcm) / (RATE * 2) + 0.5
    rng = random.Random(streams)
    stop_rss = asyncio.Event()

    async def caller(index: int) -> None:
        await asyncio.sleep(rng.uniform(0, spread_s))
        for r in range(rounds):
            outcome = await recognise_one(client, utterances[(index + r) % len(utterances)])
            if r >= warmup or outcome.error:
                level.outcomes.append(outcome)

    async def watch_rss() -> None:
        async with aiohttp.ClientSession() as http:
            while not stop_rss.is_set():
                level.rss_mb_max = max(level.rss_mb_max, rss_mb([pid]))
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    level.sessions.append(int((await resp.json())["sessions"]))
                try:
                    await asyncio.wait_for(stop_rss.wait(), 0.25)
                except TimeoutError:
                    pass

    watcher = asyncio.create_task(watch_rss())
    cpu0, (busy0, total0), t0 = cpu_seconds(pid), machine_jiffies(), time.monotonic()
    own0 = cpu_seconds(os.getpid())
    await asyncio.gather(*(caller(i) for i in range(streams)))
    level.seconds = time.monotonic() - t0
    level.cpu_cores = (cpu_seconds(pid) - cpu0) / level.seconds
    level.client_cpu_cores = (cpu_seconds(os.getpid()) - own0) / level.seconds
    busy1, total1 = machine_jiffies()
    level.machine_busy_pct = 100 * (busy1 - busy0) / max(1, total1 - total0)
    stop_rss.set()
    await watcher
    return level


def endpoint_delays_ms(utterances: list[Utterance]) -> dict[str, float]:
    """Audio time from end of speech to Vosk's endpoint, per phrase, decoded offline in this process.

    This is the part of the latency no server speed removes: the trailing silence the model's
    endpoint rules (``model/conf/model.conf``) wait for, at the service's 100 ms slice granularity.
    """
    import vosk

    from ivr.speech.grammar import build_grammar
    from ivr.speech.server import default_model_dir

    vosk.SetLogLevel(-1)
    model = vosk.Model(str(default_model_dir()))
    grammar = build_grammar(GRAMMAR, unk="[unk]" if model.vosk_model_find_word("[unk]") >= 0 else None)
    out: dict[str, float] = {}
    step = RATE * 2 * SLICE_MS // 1000
    for utt in utterances:
        rec = vosk.KaldiRecognizer(model, RATE, grammar)
        audio = utt.pcm + bytes(RATE * 2 * TAIL_MAX_MS // 1000)
        for offset in range(0, len(audio), step):
            if rec.AcceptWaveform(audio[offset:offset + step]) and json.loads(rec.Result()).get("text"):
                out[utt.phrase] = (offset + step) * 1000 / (RATE * 2) - utt.speech_end_ms
                break
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_healthy(port: int, proc: asyncio.subprocess.Process, timeout_s: float = 180) -> float:
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        while time.monotonic() - started < timeout_s:
            if proc.returncode is not None:
                raise RuntimeError(f"speech service exited with {proc.returncode}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("speech model not loaded in time")


async def speech_bench(threads: int = 2, max_streams: int = 128, samples: int = 12,
                       budget_s: float = 200.0) -> dict[str, Any]:
    """Run the whole speech benchmark; returns the JSON section."""
    t_start = time.monotonic()
    utterances = []
    for phrase in PHRASES:
        pcm = bytes(RATE * 2 * LEAD_MS // 1000) + synth(phrase)
        utterances.append(Utterance(phrase, pcm, speech_end_ms(pcm)))
    port = free_port()
    env = {**os.environ, "IVR_SPEECH__PORT": str(port), "IVR_SPEECH__HOST": "127.0.0.1",
           "IVR_SPEECH__THREADS": str(threads), "IVR_LOG_LEVEL": "warning"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "ivr.cli", "speech", cwd=ROOT, env=env,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result: dict[str, Any] = {
        "method": "real-time 20 ms frames, 8 kHz; latency = end of speech (last frame above "
                  f"{SPEECH_DBFS:g} dBFS) -> final result, includes Vosk's endpoint silence",
        "phrases": PHRASES, "grammar_size": len(GRAMMAR), "recognition_threads": threads,
        "cores": os.cpu_count(), "goal_p95_ms": GOAL_P95_MS, "load_avg_before": os.getloadavg(),
        "speech_end_ms": {u.phrase: u.speech_end_ms for u in utterances},
    }
    levels: list[dict[str, Any]] = []
    try:
        result["model_load_s"] = round(await wait_healthy(port, proc), 1)
        result["speech_rss_mb_idle_model_loaded"] = rss_mb([proc.pid])
        async with SpeechClient("127.0.0.1", port) as client:
            await recognise_one(client, utterances[0])  # warm-up, not counted
            streams = 1
            limit_ms = math.inf
            while streams <= max_streams:
                level = await run_level(client, proc.pid, port, utterances, streams, samples)
                summary = level.summary()
                levels.append(summary)
                print(f"  speech {streams} streams: { {k: v for k, v in summary.items() if k[0] != '_'} }",
                      flush=True)
                if streams == 1:
                    limit_ms = max(GOAL_P95_MS, summary.get("latency_p95_ms", math.inf) + DEGRADE_MS)
                    result["degradation_limit_p95_ms"] = limit_ms
                if not level.within(limit_ms) or time.monotonic() - t_start > budget_s:
                    break
                streams *= 2
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    result["levels"] = levels
    # one histogram for every level: end of speech -> result, by concurrent streams
    result["_samples_ms"] = {f"{lv['streams']} streams": lv.pop("_samples_ms", []) for lv in levels}
    cores = os.cpu_count() or 1
    for key, limit in (("within_goal", GOAL_P95_MS),
                       ("before_degradation", result.get("degradation_limit_p95_ms", GOAL_P95_MS))):
        good = [lv["streams"] for lv in levels if not lv["errors"] and lv.get("latency_p95_ms", 1e9) <= limit]
        result[f"max_streams_{key}"] = max(good) if good else 0
        result[f"streams_per_core_{key}"] = round(result[f"max_streams_{key}"] / cores, 1)
    idle = result.get("speech_rss_mb_idle_model_loaded")
    if idle and levels:
        top = levels[-1]
        result["speech_rss_mb_added_per_stream"] = round((top["speech_rss_mb_max"] - idle) / top["streams"], 2)
    result["endpoint_delay_ms_offline"] = await asyncio.to_thread(endpoint_delays_ms, utterances)
    result["seconds"] = round(time.monotonic() - t_start, 1)
    return result


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="recognition threads of the speech service")
    ap.add_argument("--max-streams", type=int, default=128)
    ap.add_argument("--samples", type=int, default=12, help="utterances per concurrency level (at least)")
    a = ap.parse_args()
    print(json.dumps(asyncio.run(speech_bench(a.threads, a.max_streams, a.samples)), indent=2,
                     ensure_ascii=False))
