"""Offline measurement: one decode against several decodes at small time shifts that vote.

Decodes each utterance of a small generated set (espeak-ng Korean voice variants, speeds, pitches,
with and without continuous noise; menu phrases and out-of-grammar sentences) with the Korean Vosk
model and a menu grammar, once per leading shift in ``SHIFTS_MS`` (the first ``shift`` ms of the
utterance dropped), and records each decode's text, phrase and confidence. ``--analyse`` then
compares a single decode (shift 0) with votes over subsets of the shifts.

``--service`` streams the same set through the real speech service (in this process) once with
``decodes=1`` and once with ``decodes=5`` and counts right / wrong / no-match / false accepts under
the dial plan's rule (take when agreement >= 0.6, optionally also confidence >= 0.96).

This is a small check of the voting design in :mod:`ivr.speech.server`, not the accuracy
benchmark (that one runs real SIP calls). Run: ``.venv/bin/python bench/speech_votes.py`` (writes
``/tmp/speech-votes.json``), then ``--analyse``; or ``--service``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ivr.speech.grammar import build_grammar, match_phrase, strip_unknown  # noqa: E402
from ivr.speech.server import Engine, default_model_dir  # noqa: E402

RATE = 8000
MENU = ["요금 문의", "상담원 연결", "해지", "카드 분실", "잔액 조회", "납부", "환불", "안내"]
OUT = ["날씨가 좋네요", "여보세요 잠깐만요", "오늘 저녁 뭐 먹을까", "그런 건 모르겠어요", "지금 운전 중이에요",
       "택배가 안 왔어요"]
VOICES = ["ko", "ko+f2", "ko+m3", "ko+klatt"]
SPEEDS = [150, 190]
NOISES = [None, 15.0]  # SNR dB of continuous white noise over the whole utterance
SHIFTS_MS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 5, 15, 100, 120, 140, 160]
OUT_FILE = Path("/tmp/speech-votes.json")


def synth(text: str, voice: str, speed: int, pitch: int) -> array[int]:
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                         check=True, capture_output=True, timeout=30).stdout
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-ar", str(RATE), "-ac", "1", "-f", "s16le",
                          "-acodec", "pcm_s16le", "pipe:1"], input=wav, check=True, capture_output=True,
                         timeout=30).stdout
    return array("h", pcm)


def with_noise(speech: array[int], snr_db: float | None, seed: int) -> bytes:
    pcm = array("h", bytes(RATE * 2 * 300 // 1000)) + speech + array("h", bytes(RATE * 2 * 400 // 1000))
    if snr_db is None:
        return pcm.tobytes()
    loud = [s for s in speech if abs(s) > 300]
    power = sum(s * s for s in loud) / max(1, len(loud))
    sigma = (power / 10 ** (snr_db / 10)) ** 0.5
    rng = random.Random(seed)
    return array("h", (max(-32768, min(32767, int(s + rng.gauss(0, sigma)))) for s in pcm)).tobytes()


def decode(model: Any, grammar: str, pcm: bytes) -> tuple[dict[str, Any], float]:
    import vosk

    started = time.thread_time()
    rec = vosk.KaldiRecognizer(model, RATE, grammar)
    rec.SetWords(True)
    step = RATE * 2 // 10
    for off in range(0, len(pcm), step):
        rec.AcceptWaveform(pcm[off:off + step])
    result = json.loads(rec.FinalResult())
    return result, time.thread_time() - started


def utterances() -> Iterator[tuple[dict[str, Any], bytes]]:
    """The set: (what it is, its audio) for each phrase and sentence, voice, and noise."""
    seed = 0
    said = [("in", t) for t in MENU] + [("out", t) for t in OUT]
    said = [said[i] for i in sorted(range(len(said)), key=lambda i: (i * 7) % len(said))]  # in and out mixed
    for n, (kind, text) in enumerate(said):
        for vi, voice in enumerate(VOICES):
            speed = SPEEDS[(vi + n * len(VOICES) * len(NOISES)) % len(SPEEDS)]
            pitch = 35 + 10 * (vi % 3)
            speech = synth(text, voice, speed, pitch)
            for snr in NOISES:
                seed += 1
                yield ({"kind": kind, "said": text, "voice": voice, "speed": speed, "pitch": pitch, "snr": snr},
                       with_noise(speech, snr, seed))


def collect(shifts: list[int]) -> None:
    model, unk = Engine._load_model(default_model_dir())
    grammar = build_grammar(MENU, unk=unk)
    rows: list[dict[str, Any]] = []
    for what, pcm in utterances():
        decodes = []
        for shift in shifts:
            result, cpu = decode(model, grammar, pcm[RATE * 2 * shift // 1000:])
            words = [w for w in result.get("result", []) if w.get("word") != unk]
            decodes.append({"shift": shift, "text": strip_unknown(result.get("text", "")),
                            "raw": result.get("text", ""),
                            "conf": sum(w["conf"] for w in words) / len(words) if words else 0.0,
                            "cpu": round(cpu, 4)})
        rows.append({**what, "audio_s": len(pcm) / (2 * RATE), "decodes": decodes})
        print(what, [d["text"] for d in decodes[:5]], file=sys.stderr)
        OUT_FILE.write_text(json.dumps(rows, ensure_ascii=False))


def vote(texts: list[str], menu: list[str], mapper: Any) -> tuple[str | None, float]:
    phrases = [mapper(t, menu) for t in texts]
    counts = Counter(p for p in phrases if p is not None)
    if not counts:
        return None, 0.0
    best = max(counts.values())
    winner = next(p for p in phrases if p is not None and counts[p] == best)  # ties: earliest decode
    return winner, best / len(texts)


def analyse() -> None:
    from ivr.speech.grammar import near_phrase

    rows = json.loads(OUT_FILE.read_text())
    plans = {"1": [0], "3x10": [0, 10, 20], "5x10": [0, 10, 20, 30, 40], "5x5": [0, 5, 10, 15, 20],
             "5x15": [0, 15, 30, 45, 60], "7x10": [0, 10, 20, 30, 40, 50, 60],
             "9x10": [0, 10, 20, 30, 40, 50, 60, 70, 80], "5x7": [0, 5, 15, 20, 35], "8x10": list(range(0, 80, 10))}
    for mapname, mapper in (("exact", match_phrase), ("near", near_phrase)):
        for name, shifts in plans.items():
            for need in ((0.0,) if name == "1" else (0.5, 0.6, 0.8)):
                tally: Counter[str] = Counter()
                for row in rows:
                    texts = [d["text"] for d in row["decodes"] if d["shift"] in shifts]
                    phrase, agreement = vote(texts, MENU, mapper)
                    taken = phrase if phrase is not None and agreement > need else None
                    if row["kind"] == "in":
                        tally["in"] += 1
                        tally["right" if taken == row["said"] else "no_match" if taken is None else "wrong"] += 1
                    else:
                        tally["out"] += 1
                        tally["false_accept" if taken is not None else "rejected"] += 1
                n_in, n_out = tally["in"], tally["out"]
                print(f"{mapname:5} {name:5} agree>{need:.1f}: right {tally['right'] / n_in:.1%} "
                      f"wrong {tally['wrong'] / n_in:.1%} no_match {tally['no_match'] / n_in:.1%} "
                      f"false_accept {tally['false_accept'] / n_out:.1%} (in {n_in}, out {n_out})")
    cpu = [d["cpu"] / r["audio_s"] for r in rows for d in r["decodes"]]
    print(f"CPU per decode: {sum(cpu) / len(cpu):.3f} s per s of audio; "
          f"mean utterance {sum(r['audio_s'] for r in rows) / len(rows):.2f} s")
    odd: Counter[str] = Counter()
    for row in rows:
        for d in row["decodes"]:
            if d["text"] and match_phrase(d["text"], MENU) is None:
                near = near_phrase(d["text"], MENU)
                key = "near-right" if near == row["said"] else "near-wrong" if near else "other"
                odd[f"{row['kind']}:{key}"] += 1
    print("non-phrase outputs:", dict(odd))


async def through_service() -> None:
    from ivr.core.config import SpeechSettings
    from ivr.speech.client import SpeechClient
    from tests.service.test_speech import start_server, wait_loaded

    async def chunks(pcm: bytes) -> AsyncIterator[bytes]:
        for off in range(0, len(pcm), 3200):
            yield pcm[off:off + 3200]

    runner, port = await start_server(SpeechSettings(host="127.0.0.1", port=0, threads=2))
    tally: dict[str, Counter[str]] = {}
    try:
        await wait_loaded(port)
        async with SpeechClient("127.0.0.1", port) as client:
            for what, pcm in utterances():
                pcm += bytes(RATE * 2)  # a second more of quiet (noise stops): Vosk's endpoint
                for decodes in (1, 5):
                    result = await client.recognize(chunks(pcm), sample_rate=RATE, phrases=MENU, decodes=decodes,
                                                    max_speech_ms=20_000)
                    for rule, conf in (("agree>=0.6", 0.0), ("agree>=0.6,conf>=0.96", 0.96)):
                        taken = (result.phrase if result.phrase is not None and result.agreement >= 0.6
                                 and result.confidence >= conf else None)
                        t = tally.setdefault(f"decodes={decodes} {rule}", Counter())
                        t[what["kind"]] += 1
                        if what["kind"] == "in":
                            t["right" if taken == what["said"] else "no_match" if taken is None else "wrong"] += 1
                        else:
                            t["false_accept" if taken is not None else "rejected"] += 1
    finally:
        await runner.cleanup()
    for name, t in tally.items():
        print(f"{name:32} right {t['right'] / t['in']:.1%} wrong {t['wrong'] / t['in']:.1%} no_match "
              f"{t['no_match'] / t['in']:.1%}   out-of-grammar false accepts {t['false_accept'] / t['out']:.1%}"
              f"   (in-grammar {t['in']}, out {t['out']})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--analyse", action="store_true")
    parser.add_argument("--service", action="store_true", help="through the speech service, decodes 1 and 5")
    parser.add_argument("--shifts", help="comma-separated shifts in ms (default: all of SHIFTS_MS)")
    parser.add_argument("--out", type=Path, default=OUT_FILE)
    args = parser.parse_args()
    OUT_FILE = args.out
    if args.service:
        asyncio.run(through_service())
        sys.exit(0)
    analyse() if args.analyse else collect([int(x) for x in args.shifts.split(",")] if args.shifts else SHIFTS_MS)
