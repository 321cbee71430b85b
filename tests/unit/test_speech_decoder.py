"""The speech service's end-of-utterance rules and voter audio, with a scripted recogniser.

The real model is in tests/service/test_speech.py; here a fake recogniser says, slice by slice
(100 ms), what partial result it has, so the rules can be checked at exact audio times.
"""

from __future__ import annotations

import json
from array import array
from typing import Any

from ivr.speech.server import (
    FLOOR_AFTER_MS,
    OTHER_END_QUIET_MS,
    OTHER_END_STABLE_MS,
    PREROLL_MS,
    SHIFT_MS,
    SLICE_MS,
    _Decoder,
)

RATE = 8000
MENU = ["요금 문의", "상담원 연결", "해지"]


def loud(ms: int) -> bytes:
    return array("h", [1000, -1000] * (RATE * ms // 2000)).tobytes()


def quiet(ms: int) -> bytes:
    return bytes(RATE * 2 * ms // 1000)


def level(rms: int, ms: int) -> bytes:
    return array("h", [rms, -rms] * (RATE * ms // 2000)).tobytes()


def changing(slices: int) -> list[str]:
    """Partials that change every slice (words still coming): no stable-phrase rule can end them."""
    return ["상담원" if i % 2 else "요금" for i in range(slices)]


def voices(ms: int, low: int = 1000, high: int = 3000) -> bytes:
    """A line loud the way speech is: the level changes slice by slice (other voices behind the
    caller, or the caller), so neither a noise floor nor a drop from the caller's level makes it quiet."""
    return b"".join(level(high if i % 2 else low, SLICE_MS) for i in range(ms // SLICE_MS))


class ScriptedRecognizer:
    """Partial results from a script, one per slice; the last one once the script runs out."""

    def __init__(self, partials: list[str]) -> None:
        self.partials = partials
        self.slices = 0
        self.fed = 0

    def AcceptWaveform(self, pcm: bytes) -> bool:  # Vosk's method names
        self.slices += 1
        self.fed += len(pcm)
        return False

    def PartialResult(self) -> str:
        return json.dumps({"partial": self._now()})

    def FinalResult(self) -> str:
        text = self._now()
        return json.dumps({"text": text, "result": [{"word": w, "conf": 1.0} for w in text.split()]})

    def _now(self) -> str:
        return self.partials[min(self.slices, len(self.partials)) - 1] if self.slices else ""


def run(decoder: _Decoder, audio: bytes) -> tuple[str | None, float]:
    """Feed ``audio`` slice by slice: (the final's reason or None, audio ms when it ended)."""
    step = RATE * 2 * SLICE_MS // 1000
    for off in range(0, len(audio), step):
        got = decoder.feed(audio[off:off + step])
        if got.final is not None:
            return got.final[0], decoder.audio_ms
    return None, decoder.audio_ms


def decoder(partials: list[str], **kw: Any) -> _Decoder:
    return _Decoder(ScriptedRecognizer(partials), RATE, no_input_ms=5000, max_speech_ms=20_000, phrases=MENU, **kw)


def test_a_whole_phrase_stable_on_a_loud_line_ends_at_stable_ms() -> None:
    # speech 0.3-1.0 s, then noise that never stops; the partial is the whole phrase from 0.8 s on
    partials = ["", "", "", "상담원", "상담원", "상담원", "상담원", "상담원 연결"]
    reason, at = run(decoder(partials, stable_end_ms=500), voices(5000))
    assert (reason, at) == ("speech", 1300.0)


def test_garbage_words_in_the_partial_do_not_reset_the_stable_time() -> None:
    partials = ["", "상담원 연결", "상담원 연결 [unk]", "[unk] 상담원 연결 [unk]", "상담원 연결 <UNK>"]
    assert run(decoder(partials, stable_end_ms=500), voices(5000)) == ("speech", 700.0)


def test_a_partial_that_keeps_changing_on_a_loud_line_does_not_end() -> None:
    partials = ["해지", "상담원 연결", "요금 문의", "해지"] * 20
    assert run(decoder(partials, stable_end_ms=500), voices(5000)) == (None, 5000.0)


def test_a_fragment_stable_on_a_loud_line_ends_later_than_a_whole_phrase() -> None:
    """Words that are no phrase (a misheard phrase): once they stayed the same OTHER_END_STABLE_MS
    the utterance is over; Vosk's own endpoint never comes while the line is loud."""
    reason, at = run(decoder(["상담원"], stable_end_ms=500), voices(3000))
    assert (reason, at) == ("speech", 100.0 + OTHER_END_STABLE_MS)


def test_a_fragment_ends_on_quiet_without_waiting_for_vosks_endpoint() -> None:
    assert run(decoder(["", "상담원"]), loud(300) + quiet(2000)) == ("speech", 300.0 + OTHER_END_QUIET_MS)


def test_stationary_noise_is_quiet_once_its_floor_is_known() -> None:
    """Noise of one level from the start (a fan, hiss): no digital silence for FLOOR_AFTER_MS, so
    the floor is known; speech at 3x the noise (not loud enough for the drop rule to call the noise
    quiet) ends when it stops, not when the noise does."""
    partials = ["", "", "", *changing(12), "해지"]
    audio = level(1000, 300) + level(3000, 1200) + level(1000, 5000)
    reason, at = run(decoder(partials), audio)
    # the 200 ms level is quiet from the second noise-only slice on (1.7 s): 300 ms later
    assert (reason, at) == ("speech", 1700.0 + 200.0)


def test_the_same_level_after_digital_silence_is_not_yet_noise() -> None:
    """A line that carried digital silence FLOOR_AFTER_MS ago has no noise floor yet: a steady loud
    sound then is speech until it stops."""
    partials = ["", "", "", *changing(9), "해지"]
    audio = quiet(300) + level(3000, FLOOR_AFTER_MS - 100) + quiet(1000)
    assert run(decoder(partials), audio) == ("speech", 300.0 + FLOOR_AFTER_MS - 100 + 300)


def test_a_drop_well_below_the_callers_level_is_quiet() -> None:
    """Other voices behind the caller (their level changes: no floor makes them quiet) are far below
    the caller's: when the caller stops, the utterance ends as it would on a quiet line. The partial
    shows the words only 300 ms after they began: the caller's level is taken from before it too."""
    partials = ["", "", "", "", "", "상담원", "상담원", "상담원 연결"]
    audio = voices(200, 300, 900) + level(8000, 800) + voices(5000, 300, 900)
    reason, at = run(decoder(partials), audio)
    # the 200 ms level drops below SPEECH_DROP x 8000 with the second slice after the speech (1.2 s)
    assert (reason, at) == ("speech", 1100.0 + 300.0)


def test_speech_whose_level_changes_is_never_its_own_noise_floor() -> None:
    """Loud and soft syllables for 2 s on a line that was silent: neither rule makes the soft ones quiet."""
    partials = ["", "", "", *changing(20), "해지"]
    audio = quiet(300) + voices(2000, 700, 3000) + quiet(1000)
    assert run(decoder(partials), audio) == ("speech", 2300.0 + 300.0)

def test_sound_after_a_quiet_pause_gets_the_whole_stable_time_again() -> None:
    """Digits: "삼", 500 ms pause, then "오" whose partial shows up only 400 ms into it. The partial
    "삼" was unchanged for 900 ms by then, but the line has been loud for 400 ms only."""
    digits = ["삼", "오", *MENU]
    partials = ["삼"] * 13 + ["삼 오"]
    audio = loud(300) + quiet(500) + voices(2000)
    d = decoder(partials, stable_end_ms=500, end_quiet_ms=800)
    d.phrases = digits
    reason, at = run(d, audio)
    assert (reason, at) == ("speech", 1400.0 + 800.0)  # "삼 오" from 1.4 s, stable 800 ms (end_quiet_ms)


def test_quiet_after_a_whole_phrase_still_ends_at_end_quiet_ms() -> None:
    partials = ["", "해지"]
    assert run(decoder(partials), loud(300) + quiet(2000)) == ("speech", 600.0)


def test_voters_start_at_the_first_partial_with_the_preroll_each_shifted() -> None:
    recs: list[ScriptedRecognizer] = []

    def new_rec() -> ScriptedRecognizer:
        recs.append(ScriptedRecognizer(["해지"]))
        return recs[-1]

    partials = [""] * 14 + ["해지"]  # speech heard at 1.5 s
    d = decoder(partials, voters=2, new_rec=new_rec)
    reason, at = run(d, quiet(1000) + loud(500) + quiet(2000))
    assert (reason, at) == ("speech", 1800.0)
    assert len(recs) == 2
    assert [v.text for v in (voter.decode() for voter in d.take_voters())] == ["해지", "해지"]
    # from PREROLL_MS before the first partial to the end, less k * SHIFT_MS, in SLICE_MS slices
    ms = [r.fed * 1000 / (2 * RATE) for r in recs]
    assert ms == [PREROLL_MS + 300 - SHIFT_MS, PREROLL_MS + 300 - 2 * SHIFT_MS]
    assert [r.slices for r in recs] == [11, 11]  # ten whole slices and the rest


def test_no_voters_without_speech() -> None:
    made: list[object] = []
    d = decoder([""], voters=4, new_rec=lambda: made.append(1))
    assert run(d, quiet(6000))[0] == "no_input"
    assert made == [] and d.take_voters() == []
    assert len(d.segment) <= RATE * 2 * PREROLL_MS // 1000


def test_a_phrase_said_twice_ends_like_the_phrase() -> None:
    partials = ["", "상담원", "상담원 상담원 연결"]
    assert run(decoder(partials), loud(300) + quiet(2000)) == ("speech", 600.0)
