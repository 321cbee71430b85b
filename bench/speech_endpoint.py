"""End of utterance, offline: the speech service's own decoder on the accuracy corpus, in audio time.

``python bench/speech_endpoint.py [--quick] [--voters N]`` (``make bench-speech-endpoint``). Every
utterance of bench/speech_corpus.py (the same seeded corpus as bench/speech_accuracy.py), through
its codec to the 8 kHz PCM a worker hands the recogniser, is fed to ``ivr.speech.server._Decoder``
-- the class the service runs, with the settings a call's menu or digit collection sends -- in
20 ms chunks as a call's tap delivers them, after 0.5 s of silence (the prompt) and followed by
silence once the clip (and its noise) ends. Reported: the time from the end of speech to the end of
the utterance (audio time: what the service waits for, without the network and the vote), p50 / p95
/ max for clean speech and continuous noise, the reasons utterances ended, and what the vote of
``1 + voters`` decodes made of them (right / wrong / no match in grammar, accepted out of grammar).

This is the quick loop for tuning the end-of-utterance rules; bench/speech_accuracy.py measures the
same thing through real calls (adding ~100 ms of network, jitter buffer and vote).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import save  # noqa: E402
from bench.speech_corpus import PHRASES, Item, corpus, render, through_codec  # noqa: E402
from ivr.calls.ask import DIGITS_END_QUIET_MS  # noqa: E402
from ivr.dialplan.engine import decide  # noqa: E402
from ivr.dialplan.model import Listen  # noqa: E402
from ivr.speech.grammar import build_grammar, digit_words  # noqa: E402

RATE = 8000
CHUNK_MS = 20       # a tap's frame
LEAD_MS = 500       # silence before the clip (the prompt playing, or its end)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q, method="higher")) if values else float("nan")


def run(items: list[Item], voters: int) -> list[dict[str, Any]]:
    import vosk

    from ivr.core.config import SpeechSettings
    from ivr.speech.server import END_QUIET_MS, _Decoder, decode_of, default_model_dir, to_result

    vosk.SetLogLevel(-1)
    model = vosk.Model(str(default_model_dir()))
    unk = next((w for w in ("[unk]", "<UNK>", "<unk>") if model.vosk_model_find_word(w) >= 0), None)
    menus = {False: PHRASES, True: digit_words("ko")}
    grammars = {k: build_grammar(v, unk=unk) for k, v in menus.items()}

    def recognizer(digits: bool) -> Any:
        rec = vosk.KaldiRecognizer(model, RATE, grammars[digits])
        rec.SetWords(True)
        return rec

    chunk = RATE * 2 * CHUNK_MS // 1000
    rows = []
    for item in items:
        audio = render(item)
        pcm = through_codec(audio.pcm16k, item.codec)[1].astype(np.int16).tobytes()
        lead = b"\0" * (RATE * 2 * LEAD_MS // 1000)
        stream = lead + pcm + b"\0" * (RATE * 2 * 10)
        digits = item.kind.startswith("digits")
        phrases = menus[digits]
        decoder = _Decoder(recognizer(digits), RATE, no_input_ms=5000, max_speech_ms=8000, phrases=phrases,
                           end_quiet_ms=DIGITS_END_QUIET_MS if digits else END_QUIET_MS,
                           stable_end_ms=SpeechSettings().stable_ms, voters=voters,
                           new_rec=functools.partial(recognizer, digits))
        final = None
        for off in range(0, len(stream), chunk):
            step = decoder.feed(stream[off:off + chunk])
            if step.final is not None:
                final = step.final
                break
        if final is None:
            final = decoder.finish("eof")
        reason, res = final
        primary = decode_of(res)
        decodes = [primary, *(v.final() for v in decoder.take_voters())] if primary.text else [primary]
        result = to_result(reason, decodes, phrases)
        speech_end_ms = LEAD_MS + audio.speech_end_s * 1000
        clip_end_ms = LEAD_MS + len(pcm) * 1000 / (2 * RATE)
        if digits:
            outcome = ("no_input" if not result.text else "right" if result.digits == item.expect
                       else "wrong" if result.digits else "no_match")
        elif result.phrase is None:
            outcome = "no_input" if not result.text else "no_match"
        else:
            verdict = decide(result.confidence, result.agreement, Listen(), result.decodes)
            outcome = {"take": "", "confirm": "confirmed_", "no_match": "low_"}[verdict] + (
                "right" if result.phrase == item.expect else "wrong")
        rows.append({"id": item.id, "kind": item.kind, "noise": item.noise, "snr_db": item.snr_db,
                     "codec": item.codec, "reason": reason, "outcome": outcome, "phrase": result.phrase,
                     "agreement": round(result.agreement, 2), "text": result.text,
                     "end_ms": round(decoder.audio_ms - speech_end_ms),
                     "after_clip": decoder.audio_ms > clip_end_ms})
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    groups = {"menu": ("in_grammar", "out_of_grammar"), "digits": ("digits_1", "digits_4")}
    for group, kinds in groups.items():
        for line, noisy in (("clean", False), ("continuous_noise", True)):
            sel = [r for r in rows if r["kind"] in kinds and (r["noise"] != "clean") == noisy]
            ends = [r["end_ms"] for r in sel if r["reason"] != "no_input"]
            out.setdefault(group, {})[line] = {
                "n": len(ends), "p50_ms": percentile(ends, 50), "p95_ms": percentile(ends, 95),
                "max_ms": max(ends, default=None), "ended_after_noise": sum(1 for r in sel if r["after_clip"])}
    for kind in ("in_grammar", "out_of_grammar", "digits_1", "digits_4"):
        sel = [r for r in rows if r["kind"] == kind]
        if sel:
            counts = Counter(r["outcome"] for r in sel)
            out[kind] = {"n": len(sel), **{k: round(v / len(sel), 3) for k, v in counts.items()}}
    out["reasons"] = dict(Counter(r["reason"] for r in rows))
    return out


def speech_endpoint_bench(quick: bool = False, seed: int = 18, voters: int = 4) -> dict[str, Any]:
    """The run as a bench section (bench/run.py): summary and every utterance."""
    started = time.monotonic()
    rows = run(corpus(quick, seed), voters)
    return {"mode": "quick" if quick else "full", "seed": seed, "voters": voters, "summary": summarise(rows),
            "utterances": rows, "seconds": round(time.monotonic() - started, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the 40-utterance corpus")
    ap.add_argument("--voters", type=int, default=4, help="decodes besides the streaming one (service: 4)")
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--rows", action="store_true", help="print every utterance, by end time")
    ap.add_argument("--save", action="store_true", help="write bench/results/speech-endpoint-*.json")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a constant of ivr.speech.server for this run (e.g. OTHER_END_STABLE_MS=800)")
    args = ap.parse_args()
    import ivr.speech.server as server
    for setting in args.set:
        name, _, value = setting.partition("=")
        if not name.isupper() or not isinstance(getattr(server, name, None), int | float):
            ap.error(f"ivr.speech.server has no numeric constant {name}")
        setattr(server, name, type(getattr(server, name))(value))
    result = speech_endpoint_bench(args.quick, args.seed, args.voters)
    if args.rows:
        for r in sorted(result["utterances"], key=lambda r: r["end_ms"]):
            print(r["id"], r["kind"], r["noise"], r["snr_db"], r["codec"], r["reason"], r["outcome"],
                  repr(r["text"]), r["end_ms"])
    if args.save:
        save("speech-endpoint", result)
    else:
        print(json.dumps(result["summary"], ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
