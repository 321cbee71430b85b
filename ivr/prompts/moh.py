"""Generated audio: music on hold (a configured recording, or a short loopable melody generated
once and cached) and the voicemail beep.

The generated tune is a 24 s arpeggio over C - Am - F - G (80 bpm, 32 beats) with a soft lead and a
bass line, built from pydub's sine generators with a little second harmonic so it carries through
the 300-3400 Hz telephone band. Every note fades out completely before the end of the loop and the
whole loop has short fades at both ends, so playing it back to back never clicks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydub import AudioSegment
from pydub.generators import Sine

from ivr.core.logging import get_logger
from ivr.prompts.library import (
    PEAK_CEILING_DBFS,
    SAMPLE_WIDTH,
    PromptLibrary,
    PromptSpec,
    apply_loudness,
    content_key,
    write_wav_atomic,
)

#: Bump when the tune or its rendering changes (it is part of the cache key).
MOH_VERSION = 1
MOH_TARGET_DBFS = -20.0
LOOP_FADE_MS = 20
BEAT_MS = 750  # 80 bpm; a multiple of 1 ms at every supported rate
BEATS_PER_CHORD = 8

# (bass, arpeggio voicing, lead line as (note, beats)) per chord; MIDI note numbers (60 = middle C)
_TUNE: tuple[tuple[int, tuple[int, ...], tuple[tuple[int, int], ...]], ...] = (
    (48, (60, 64, 67, 72), ((76, 2), (79, 2), (76, 1), (74, 1), (72, 2))),  # C
    (45, (57, 60, 64, 69), ((72, 2), (76, 2), (74, 1), (72, 1), (69, 2))),  # Am
    (41, (53, 57, 60, 65), ((69, 2), (72, 2), (77, 2), (76, 2))),  # F
    (43, (55, 59, 62, 67), ((74, 2), (71, 2), (74, 1), (76, 1), (74, 2))),  # G
)
_ARPEGGIO = (0, 1, 2, 3, 2, 3, 2, 1)  # voicing indexes, one per eighth note of a bar


def music_on_hold(cache_dir: Path, sample_rate: int, source: Path | None = None) -> Path:
    """Return the path of a mono 16-bit WAV at ``sample_rate`` to loop while a caller waits.

    With ``source`` the recording is normalised like a prompt (errors are :class:`PromptError` with
    ``prompt.missing`` / ``prompt.corrupt``); without it the default tune is generated once per
    rate and cached.
    """
    if source is not None:
        source = Path(source).absolute()
        library = PromptLibrary(source.parent, cache_dir, sample_rate)
        return library.resolve(PromptSpec(path=source))
    key = content_key({
        "kind": "moh", "version": MOH_VERSION, "rate": sample_rate, "width": SAMPLE_WIDTH,
        "target_dbfs": MOH_TARGET_DBFS, "peak_dbfs": PEAK_CEILING_DBFS, "fade_ms": LOOP_FADE_MS,
    })
    path = Path(cache_dir) / f"moh-{key}.wav"
    if path.is_file():
        return path
    started = time.monotonic()
    tune = generate_tune(sample_rate)
    write_wav_atomic(tune, path)
    get_logger(__name__).info(
        "moh.generated", path=str(path), duration_ms=len(tune),
        took_ms=round((time.monotonic() - started) * 1000),
    )
    return path


BEEP_HZ, BEEP_MS, BEEP_DBFS = 1000, 400, -9.0


def voicemail_beep(cache_dir: Path, sample_rate: int) -> Path:
    """The voicemail beep: a 1 kHz tone with 10 ms fades (no click), generated once per rate."""
    path = Path(cache_dir) / f"beep-{BEEP_HZ}hz-{sample_rate}.wav"
    if not path.is_file():
        tone = Sine(BEEP_HZ, sample_rate=sample_rate).to_audio_segment(duration=BEEP_MS, volume=BEEP_DBFS)
        write_wav_atomic(tone.set_sample_width(SAMPLE_WIDTH).fade_in(10).fade_out(10), path)
    return path


def generate_tune(sample_rate: int) -> Any:
    """The default hold music as an AudioSegment (mono, 16-bit, ``sample_rate`` Hz)."""
    total_ms = len(_TUNE) * BEATS_PER_CHORD * BEAT_MS
    eighth = BEAT_MS // 2
    mix = AudioSegment.silent(duration=total_ms, frame_rate=sample_rate).set_sample_width(SAMPLE_WIDTH)

    def place(midi: int, at_ms: int, length_ms: int, volume_db: float, overtone_db: float) -> None:
        nonlocal mix
        length_ms = min(length_ms, total_ms - at_ms)  # decays to silence inside the loop
        mix = mix.overlay(_note(midi, length_ms, volume_db, overtone_db, sample_rate), position=at_ms)

    for index, (bass, voicing, lead) in enumerate(_TUNE):
        start = index * BEATS_PER_CHORD * BEAT_MS
        for bar in range(BEATS_PER_CHORD // 4):
            bar_start = start + bar * 4 * BEAT_MS
            place(bass, bar_start, 4 * BEAT_MS, -15.0, -6.0)
            for step, voice in enumerate(_ARPEGGIO):
                place(voicing[voice], bar_start + step * eighth, 2 * eighth, -19.0, -12.0)
        at = start
        for midi, beats in lead:
            place(midi, at, beats * BEAT_MS + eighth, -13.0, -14.0)
            at += beats * BEAT_MS

    mix = apply_loudness(mix, MOH_TARGET_DBFS, PEAK_CEILING_DBFS)
    return mix.fade_in(LOOP_FADE_MS).fade_out(LOOP_FADE_MS)


def _note(midi: int, length_ms: int, volume_db: float, overtone_db: float, sample_rate: int) -> Any:
    """A soft bell-like tone: quick attack, then a linear decay to silence over the whole note."""
    freq = 440.0 * 2 ** ((midi - 69) / 12)
    tone = Sine(freq, sample_rate=sample_rate).to_audio_segment(duration=length_ms, volume=volume_db)
    if 2 * freq < 0.45 * sample_rate:  # keep the harmonic well under Nyquist
        harmonic = Sine(2 * freq, sample_rate=sample_rate).to_audio_segment(
            duration=length_ms, volume=volume_db + overtone_db
        )
        tone = tone.overlay(harmonic)
    attack = min(15, len(tone) // 4)
    return tone.fade_in(attack).fade(to_gain=-120, start=attack, end=len(tone))
