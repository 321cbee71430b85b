"""The pure pieces of bench/speech_accuracy.py and bench/speech_corpus.py: how an utterance's outcome
is read from raw Vosk's text and from a call's journey (old and new result fields), the rates and
percentiles, sipp's ACK stamp, the corpus (deterministic, every menu word in the model's vocabulary,
the asked SNR), and the codecs' round trip."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.speech_accuracy import ack_time, classify_raw, classify_sip, latency, plans, rates, scenario, summarise
from bench.speech_corpus import (
    MENU,
    OUT_OF_GRAMMAR,
    RATE,
    Item,
    Voice,
    _active_frames,
    corpus,
    noise,
    through_codec,
)
from ivr.dialplan.model import Plan


def item(kind: str = "in_grammar", expect: str | None = "해지") -> Item:
    return Item("001", kind, expect or "바나나 우유 주세요", expect, Voice())  # type: ignore[arg-type]


def record(*steps: dict[str, Any], data: dict[str, str] | None = None) -> dict[str, Any]:
    return {"journey": {"steps": list(steps), "data": data or {}}}


def test_raw_vosk_takes_any_whole_phrase_and_any_digit_string() -> None:
    assert classify_raw(item(), "[unk] 해지") == ("right", "해지")
    assert classify_raw(item(), "환불") == ("wrong", "환불")
    assert classify_raw(item(), "해지 환불") == ("no_match", None)  # two phrases are no phrase
    assert classify_raw(item(), "[unk]") == ("no_input", None)
    assert classify_raw(item("out_of_grammar", None), "상담원 연결") == ("false_accept", "상담원 연결")
    assert classify_raw(item("out_of_grammar", None), "상담원") == ("no_match", None)
    assert classify_raw(item("digits_4", "1234"), "일 이 삼 사") == ("right", "1234")
    assert classify_raw(item("digits_4", "1234"), "일 이 삼") == ("wrong", "123")
    assert classify_raw(item("digits_1", "3"), "해지") == ("no_match", None)


def test_a_menu_journey_gives_taken_confirmed_and_missing_answers() -> None:
    taken = {"node": "main", "type": "menu", "phrase": "해지", "confidence": 0.97, "outcome": "opt2", "attempt": 1}
    assert classify_sip(item(), record(taken))[0] == "right"
    assert classify_sip(item(), record({**taken, "outcome": "ok", "agreement": 1.0}))[0] == "right"  # new engine
    assert classify_sip(item(), record({**taken, "phrase": "환불"}))[0] == "wrong"
    asked = {**taken, "outcome": "rejected"}  # the caller pressed "no" to the confirmation
    assert classify_sip(item(), record(asked))[0] == "confirmed"
    assert classify_sip(item(), record({**asked, "phrase": "환불"}))[0] == "confirmed_wrong"
    assert classify_sip(item("out_of_grammar", None), record(taken))[0] == "false_accept"
    assert classify_sip(item("out_of_grammar", None), record(asked))[0] == "confirmed_wrong"
    assert classify_sip(item(), record({"node": "main", "outcome": "no_input", "attempt": 1}))[0] == "no_input"
    # only the first attempt counts; a key before any decision on the speech is late
    later = {**taken, "attempt": 2}
    first = {"node": "main", "type": "menu", "outcome": "no_match", "phrase": "해지 해지", "confidence": 0.5,
             "attempt": 1}
    assert classify_sip(item(), record(first, later))[0] == "no_match"
    assert classify_sip(item(), record({"node": "main", "digit": "2", "outcome": "opt1", "attempt": 1}))[0] == "late"
    assert classify_sip(item(), None)[0] == "error"


def test_spoken_digits_are_read_from_the_journey_data() -> None:
    step = {"node": "account", "type": "collect", "digit": "****", "confidence": 0.9, "outcome": "ok", "attempt": 1}
    assert classify_sip(item("digits_4", "1234"), record(step, data={"account": "1234"}))[:2] == ("right", "1234")
    assert classify_sip(item("digits_4", "1234"), record(step, data={"account": "1284"}))[0] == "wrong"
    confirmed = {**step, "outcome": "confirmed"}
    assert classify_sip(item("digits_4", "1234"), record(confirmed, data={"account": "1234"}))[0] == "confirmed"
    assert classify_sip(item("digits_4", "1234"), record(confirmed, data={"account": "4"}))[0] == "confirmed_wrong"
    keys = {"node": "account", "type": "collect", "digit": "*", "outcome": "ok", "attempt": 1}
    assert classify_sip(item("digits_1", "3"), record(keys, data={"account": "1"}))[0] == "late"


def test_rates_and_percentiles() -> None:
    out = rates(["right", "right", "confirmed", "wrong"])
    assert out == {"n": 4, "right": 0.5, "confirmed": 0.25, "wrong": 0.25, "right_or_confirmed": 0.75}
    assert latency([100.0] * 19 + [900.0]) == {"n": 20, "p50_ms": 100, "p95_ms": 100, "max_ms": 900}
    assert latency([]) == {"n": 0}


def test_summary_slices_count_in_grammar_utterances_and_digits_exactly() -> None:
    items = [Item("0", "in_grammar", "해지", "해지", Voice(), codec="g722"),
             Item("1", "in_grammar", "환불", "환불", Voice(), noise="white", snr_db=5.0, codec="g722"),
             Item("2", "out_of_grammar", "여보세요", None, Voice(), codec="g722"),
             Item("3", "digits_4", "일 이 삼 사", "1234", Voice(), codec="pcma")]
    rows = {"0": {"outcome": "right", "latency_ms": 300}, "1": {"outcome": "wrong", "latency_ms": 4000},
            "2": {"outcome": "false_accept"}, "3": {"outcome": "confirmed", "latency_ms": 900}}
    out = summarise(items, rows)
    assert out["slices"]["codec"] == {"g722": {"n": 2, "right": 0.5, "wrong": 0.5, "right_or_confirmed": 0.5}}
    assert set(out["slices"]["kind"]) == {"in_grammar", "out_of_grammar", "digits_4"}
    assert out["in_grammar_wrong_without_confirmation"] == 0.5 and out["out_of_grammar_false_accept"] == 1.0
    assert out["digit_accuracy"] == 1.0
    lat = out["latency_end_of_speech_to_result"]
    assert lat["continuous_noise"]["p95_ms"] == 4000
    assert lat["clean"]["n"] == 2 and lat["menu"]["clean"] == {"n": 1, "p50_ms": 300, "p95_ms": 300, "max_ms": 300}
    assert lat["digits"]["clean"]["p50_ms"] == 900 and lat["digits"]["continuous_noise"] == {"n": 0}


def test_the_caller_offers_the_items_codec(tmp_path: Path) -> None:
    xml = Path(scenario(tmp_path, Item("7", "in_grammar", "해지", "해지", Voice(), codec="g722"), "+15550001",
                        [(tmp_path / "a.pcap", 1500), (tmp_path / "b.pcap", 6000)], 9000)).read_text()
    assert "m=audio [auto_media_port] RTP/AVP 9 101" in xml and "a=rtpmap:9 G722/8000" in xml
    assert xml.index('milliseconds="1500"') < xml.index("a.pcap") < xml.index('milliseconds="4500"')
    assert 'milliseconds="3000"' in xml and "+15550001" in xml


def test_sipp_message_log_gives_the_ack_time() -> None:
    log = ("----------------------------------------------- 2026-12-07\t02:30:13.250000\n"
           "UDP message received [511] bytes :\n\nSIP/2.0 200 OK\n\n"
           "----------------------------------------------- 2026-12-07\t02:30:13.251500\n"
           "UDP message sent (390 bytes):\n\nACK sip:3001@127.0.0.1:5060 SIP/2.0\n")
    assert ack_time(log) == datetime(2026, 12, 7, 2, 30, 13, 251500).timestamp()
    assert ack_time("nothing") is None


def test_the_corpus_is_seeded_and_covers_every_condition() -> None:
    quick = corpus(True)
    assert quick == corpus(True) and quick != corpus(True, seed=19)
    kinds = {it.kind for it in quick}
    assert kinds == {"in_grammar", "out_of_grammar", "digits_1", "digits_4"}
    clean = [it for it in quick if it.kind == "in_grammar" and it.noise == "clean"]
    assert {(it.codec, it.timing) for it in clean} == {(c, t) for c in ("pcma", "pcmu", "g722")
                                                      for t in ("barge_in", "after_prompt")}
    full = corpus(False)
    assert {it.noise for it in full} == {"clean", "white", "pink", "babble", "hum"}
    assert len({it.voice.name for it in full}) >= 10
    assert all(len(it.expect or "") == 4 for it in full if it.kind == "digits_4")


def test_menu_words_are_in_the_model_vocabulary_and_the_plans_load() -> None:
    from ivr.speech.server import default_model_dir
    from ivr.speech.vocabulary import model_words

    words = model_words(default_model_dir())
    assert words is not None
    assert {w for phrase, _ in MENU for w in phrase.split()} <= words
    assert not {phrase for phrase, _ in MENU} & set(OUT_OF_GRAMMAR)
    for plan in plans().values():
        Plan.model_validate(plan)


@pytest.mark.parametrize("kind", ["white", "pink", "hum"])
def test_noise_is_unit_rms(kind: str) -> None:
    x = noise(kind, RATE, np.random.default_rng(1))
    assert np.sqrt(np.mean(x ** 2)) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("codec", ["pcma", "pcmu", "g722"])
def test_a_codec_round_trip_keeps_a_tone(codec: str) -> None:
    t = np.arange(RATE) / RATE
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    encoded, decoded = through_codec(pcm, codec)
    assert len(encoded) == 8000  # 64 kbit/s for 1 s, every one of the three
    level = np.sqrt(np.mean(decoded[800:-800].astype(np.float64) ** 2))
    assert level == pytest.approx(8000 / np.sqrt(2), rel=0.1)
    assert _active_frames(decoded.astype(np.float64), 8000).all()
