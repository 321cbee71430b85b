"""Prompt library and music on hold, against the real espeak-ng and ffmpeg (no mocks).

Source recordings are generated in ``tmp_path`` with pydub's generators and ffmpeg; nothing binary
is kept in the repository.
"""

from __future__ import annotations

import random
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydub import AudioSegment
from pydub.generators import Sine

from ivr.core.errors import PromptError
from ivr.prompts import PromptLibrary, PromptSpec, music_on_hold
from ivr.prompts.library import PEAK_CEILING_DBFS, TARGET_DBFS
from ivr.prompts.moh import MOH_TARGET_DBFS

RATE = 8000


class CountingLibrary(PromptLibrary):
    """Counts the expensive steps through the library's override points."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.synth_calls = 0
        self.decode_calls = 0

    def _synthesise(self, text: str, voice: str) -> Any:
        self.synth_calls += 1
        return super()._synthesise(text, voice)

    def _decode(self, data: bytes, label: str) -> Any:
        self.decode_calls += 1
        return super()._decode(data, label)


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    path = tmp_path / "prompts"
    (path / "en").mkdir(parents=True)
    return path


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def library(source_dir: Path, cache_dir: Path) -> CountingLibrary:
    return CountingLibrary(source_dir, cache_dir, RATE, {"en": "en-us", "ko": "ko"})


def tone(freq: float = 440.0, ms: int = 1000, volume: float = -20.0, rate: int = 44100,
         channels: int = 1) -> Any:
    return Sine(freq, sample_rate=rate).to_audio_segment(duration=ms, volume=volume).set_channels(channels)


def write_audio(segment: Any, path: Path, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:  # a file object: pydub leaves a path it opened unclosed
        segment.export(fh, format=fmt)
    return path


def assert_telephone_wav(path: Path, rate: int = RATE) -> int:
    """Check the format with the stdlib; return the number of frames."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, rate)
        assert wav.getcomptype() == "NONE"
        return wav.getnframes()


def load(path: Path) -> Any:
    with path.open("rb") as fh:
        return AudioSegment.from_wav(fh)


def cache_files(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir()) if cache_dir.exists() else []


# text prompts ---------------------------------------------------------------------------------


def test_text_prompt_is_synthesised_to_a_telephone_wav(library: CountingLibrary, cache_dir: Path) -> None:
    path = library.resolve(PromptSpec(text="Welcome to the hotline. Please hold."), "en")

    assert path.parent == cache_dir
    frames = assert_telephone_wav(path)
    assert frames > RATE  # over a second of speech
    assert library.duration_ms(path) == round(frames * 1000 / RATE)
    audio = load(path)
    assert audio.max_dBFS <= PEAK_CEILING_DBFS + 0.1
    assert -26.0 < audio.dBFS < -15.0
    assert cache_files(cache_dir) == [path.name]  # no temporary file left behind


def test_second_resolve_hits_the_cache(library: CountingLibrary, source_dir: Path, cache_dir: Path) -> None:
    spec = PromptSpec(text="Your call is important to us.")
    first = library.resolve(spec, "en")
    mtime = first.stat().st_mtime_ns

    second = library.resolve(spec, "en")
    # another process (a new library on the same cache) also finds it
    other = CountingLibrary(source_dir, cache_dir, RATE, {"en": "en-us"})
    third = other.resolve(PromptSpec(text="  Your call is important to us.\n"), "en")

    assert first == second == third
    assert first.stat().st_mtime_ns == mtime
    assert library.synth_calls == 1
    assert other.synth_calls == 0


def test_concurrent_resolves_of_one_entry_all_see_a_complete_file(source_dir: Path, cache_dir: Path) -> None:
    spec = PromptSpec(text="Thank you for waiting, an agent will be with you shortly.")
    libraries = [PromptLibrary(source_dir, cache_dir, RATE) for _ in range(4)]  # as if four processes

    with ThreadPoolExecutor(max_workers=4) as pool:
        paths = list(pool.map(lambda lib: lib.resolve(spec, "en"), libraries))

    assert len(set(paths)) == 1
    assert assert_telephone_wav(paths[0]) > RATE
    assert cache_files(cache_dir) == [paths[0].name]  # every temporary file renamed or removed


def test_changing_the_text_makes_a_new_entry(library: CountingLibrary) -> None:
    a = library.resolve(PromptSpec(text="Press one for billing."), "en")
    b = library.resolve(PromptSpec(text="Press two for billing."), "en")

    assert a != b
    assert a.is_file() and b.is_file()
    assert library.synth_calls == 2


def test_voice_is_part_of_the_key(source_dir: Path, cache_dir: Path) -> None:
    spec = PromptSpec(text="Hello")
    us = PromptLibrary(source_dir, cache_dir, RATE, {"en": "en-us"}).resolve(spec, "en")
    gb = PromptLibrary(source_dir, cache_dir, RATE, {"en": "en-gb"}).resolve(spec, "en")
    assert us != gb


def test_sample_rate_is_part_of_the_key(source_dir: Path, cache_dir: Path) -> None:
    spec = PromptSpec(text="Hello")
    narrow = PromptLibrary(source_dir, cache_dir, 8000).resolve(spec)
    wide = PromptLibrary(source_dir, cache_dir, 16000).resolve(spec)

    assert narrow != wide
    assert_telephone_wav(wide, rate=16000)


def test_korean_text_is_synthesised_with_the_korean_voice(library: CountingLibrary) -> None:
    path = library.resolve(PromptSpec(text="안녕하세요. 고객센터입니다."), "ko")

    assert assert_telephone_wav(path) > RATE // 2
    assert library.synth_calls == 1


def test_text_that_looks_like_an_option_is_spoken(library: CountingLibrary) -> None:
    path = library.resolve(PromptSpec(text="--help"), "en")  # as an option espeak would write no file

    assert assert_telephone_wav(path) > RATE // 10


def test_unknown_voice_fails_with_espeaks_message(source_dir: Path, cache_dir: Path) -> None:
    lib = PromptLibrary(source_dir, cache_dir, RATE, {"xx": "xx-bogus"})

    with pytest.raises(PromptError) as err:
        lib.resolve(PromptSpec(text="hello"), "xx")

    assert err.value.code == "prompt.tts_failed"
    assert "does not exist" in err.value.message
    assert cache_files(cache_dir) == []


def test_missing_engine_is_tts_failed(source_dir: Path, cache_dir: Path) -> None:
    lib = PromptLibrary(source_dir, cache_dir, RATE, espeak="/nonexistent/espeak-ng")

    with pytest.raises(PromptError) as err:
        lib.resolve(PromptSpec(text="hello"))
    assert err.value.code == "prompt.tts_failed"


# recorded prompts -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["mp3", "ogg", "flac"])
def test_compressed_sources_are_normalised(library: CountingLibrary, source_dir: Path, fmt: str) -> None:
    write_audio(tone(ms=1500, volume=-30.0, channels=2), source_dir / "en" / f"hold.{fmt}", fmt)

    path = library.resolve(PromptSpec(file=f"hold.{fmt}"), "en")

    assert_telephone_wav(path)
    assert abs(library.duration_ms(path) - 1500) < 80  # codec padding aside
    audio = load(path)
    assert abs(audio.dBFS - TARGET_DBFS) < 1.0


def test_stereo_44k_wav_is_normalised(library: CountingLibrary, source_dir: Path) -> None:
    source = write_audio(tone(ms=2000, volume=-33.0, channels=2), source_dir / "en" / "menu.wav", "wav")
    with wave.open(str(source), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 44100)

    path = library.resolve(PromptSpec(file="menu.wav"), "en")

    assert assert_telephone_wav(path) == 2 * RATE
    audio = load(path)
    assert abs(audio.dBFS - TARGET_DBFS) < 0.5  # a quiet recording is brought up to the target
    assert audio.max_dBFS <= PEAK_CEILING_DBFS + 0.1


def test_name_without_extension_finds_any_supported_format(
    library: CountingLibrary, source_dir: Path
) -> None:
    write_audio(tone(ms=800), source_dir / "en" / "menus" / "main.ogg", "ogg")

    path = library.resolve(PromptSpec(file="menus/main"), "en")

    assert_telephone_wav(path)


def test_an_operator_path_is_read_where_it_is(library: CountingLibrary, tmp_path: Path) -> None:
    source = write_audio(tone(ms=500, rate=16000), tmp_path / "elsewhere" / "beep.wav", "wav")

    path = library.resolve(PromptSpec(path=source), "ko")

    assert abs(library.duration_ms(path) - 500) <= 1


def test_loud_peaky_source_is_not_clipped(library: CountingLibrary, source_dir: Path) -> None:
    burst = tone(ms=50, volume=0.0) + tone(ms=2000, volume=-50.0)  # full-scale peak, very low RMS
    write_audio(burst, source_dir / "en" / "burst.wav", "wav")

    audio = load(library.resolve(PromptSpec(file="burst"), "en"))

    assert audio.max_dBFS <= PEAK_CEILING_DBFS + 0.1
    assert max(abs(s) for s in audio.get_array_of_samples()) < 32767


def test_near_silent_source_is_not_boosted_into_noise(library: CountingLibrary, source_dir: Path) -> None:
    write_audio(tone(ms=1000, volume=-60.0), source_dir / "en" / "hiss.wav", "wav")

    audio = load(library.resolve(PromptSpec(file="hiss"), "en"))

    assert audio.dBFS < TARGET_DBFS - 15  # gain is capped (at +24 dB)


def test_identical_content_is_rendered_once(library: CountingLibrary, source_dir: Path) -> None:
    one = write_audio(tone(ms=700), source_dir / "en" / "one.wav", "wav")
    (source_dir / "en" / "two.wav").write_bytes(one.read_bytes())

    assert library.resolve(PromptSpec(file="one.wav")) == library.resolve(PromptSpec(file="two.wav"))
    assert library.decode_calls == 1


def test_editing_a_source_file_makes_a_new_entry(library: CountingLibrary, source_dir: Path) -> None:
    source = source_dir / "en" / "greeting.wav"
    write_audio(tone(440.0, ms=700), source, "wav")
    before = library.resolve(PromptSpec(file="greeting.wav"))

    write_audio(tone(660.0, ms=900), source, "wav")
    after = library.resolve(PromptSpec(file="greeting.wav"))

    assert before != after
    assert library.duration_ms(after) == 900


def test_corrupt_file_is_reported(library: CountingLibrary, source_dir: Path, cache_dir: Path) -> None:
    (source_dir / "en" / "welcome.wav").write_bytes(random.Random(7).randbytes(4096))
    spec = PromptSpec(file="welcome.wav")

    with pytest.raises(PromptError) as err:
        library.resolve(spec, "en")
    assert err.value.code == "prompt.corrupt"
    assert "welcome.wav" in err.value.message

    with pytest.raises(PromptError) as err:
        library.check(spec, "en")
    assert err.value.code == "prompt.corrupt"
    assert cache_files(cache_dir) == []


def test_text_file_named_mp3_is_corrupt(library: CountingLibrary, source_dir: Path) -> None:
    (source_dir / "en" / "notes.mp3").write_text("this is not audio\n" * 200)

    with pytest.raises(PromptError) as err:
        library.resolve(PromptSpec(file="notes"), "en")
    assert err.value.code == "prompt.corrupt"
    assert "notes.mp3" in err.value.message


def test_missing_file_is_reported_even_with_a_text(library: CountingLibrary) -> None:
    spec = PromptSpec(file="does-not-exist.wav", text="fallback is not used")

    with pytest.raises(PromptError) as err:
        library.resolve(spec, "en")
    assert err.value.code == "prompt.missing"
    assert "does-not-exist.wav" in err.value.message

    with pytest.raises(PromptError) as err:
        library.check(PromptSpec(file="nothing-here"), "en")
    assert err.value.code == "prompt.missing"
    assert library.synth_calls == 0


def test_prompt_files_are_per_language(library: CountingLibrary, source_dir: Path) -> None:
    write_audio(tone(ms=300), source_dir / "en" / "bye.wav", "wav")

    library.resolve(PromptSpec(file="bye"), "en")
    with pytest.raises(PromptError) as err:
        library.resolve(PromptSpec(file="bye"), "ko")
    assert err.value.code == "prompt.missing"


@pytest.mark.parametrize("kwargs", [{}, {"text": ""}, {"text": "   \n"}, {"file": ""}])
def test_spec_needs_a_file_or_a_text(kwargs: dict[str, str]) -> None:
    with pytest.raises(PromptError) as err:
        PromptSpec(**kwargs)
    assert err.value.code == "prompt.invalid"


@pytest.mark.parametrize("language", ["../en", "en/../../etc", ""])
def test_language_must_be_a_language_tag(library: CountingLibrary, language: str) -> None:
    with pytest.raises(PromptError) as err:
        library.resolve(PromptSpec(file="welcome"), language)
    assert err.value.code == "prompt.invalid"


# check, build_all, duration -------------------------------------------------------------------


def test_check_validates_without_writing_the_cache(
    library: CountingLibrary, source_dir: Path, cache_dir: Path
) -> None:
    write_audio(tone(ms=400), source_dir / "en" / "ok.flac", "flac")

    library.check(PromptSpec(file="ok"), "en")
    library.check(PromptSpec(text="All agents are busy."), "en")

    assert cache_files(cache_dir) == []


def test_build_all_returns_paths_in_order(library: CountingLibrary, source_dir: Path) -> None:
    write_audio(tone(ms=400), source_dir / "en" / "a.wav", "wav")
    specs = [
        (PromptSpec(file="a"), "en"),
        (PromptSpec(text="Goodbye."), "en"),
        (PromptSpec(text="안녕히 계세요."), "ko"),
        (PromptSpec(file="a.wav"), "en"),
    ]

    paths = library.build_all(specs)

    assert len(paths) == 4
    assert paths[0] == paths[3]
    assert len(set(paths)) == 3
    assert all(p.is_file() for p in paths)


def test_duration_of_a_non_wav_is_corrupt(library: CountingLibrary, tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....nope")

    with pytest.raises(PromptError) as err:
        library.duration_ms(junk)
    assert err.value.code == "prompt.corrupt"


# music on hold ---------------------------------------------------------------------------------


def test_default_music_on_hold_is_generated_once_and_loops_cleanly(cache_dir: Path) -> None:
    path = music_on_hold(cache_dir, RATE)

    frames = assert_telephone_wav(path)
    assert 20 * RATE <= frames <= 30 * RATE
    audio = load(path)
    assert abs(audio.dBFS - MOH_TARGET_DBFS) < 1.0
    assert audio.max_dBFS <= PEAK_CEILING_DBFS + 0.1
    samples = audio.get_array_of_samples()
    # the loop point: both ends are (near) silent, so end -> start has no step
    assert max(abs(s) for s in samples[:8]) < 100
    assert max(abs(s) for s in samples[-8:]) < 100
    # and it is music, not silence, throughout
    assert all(seg.dBFS > -40 for seg in audio[500:-500][::2000])

    mtime = path.stat().st_mtime_ns
    assert music_on_hold(cache_dir, RATE) == path
    assert path.stat().st_mtime_ns == mtime
    assert cache_files(cache_dir) == [path.name]


def test_music_on_hold_from_a_source_file(cache_dir: Path, tmp_path: Path) -> None:
    source = write_audio(tone(330.0, ms=3000, volume=-35.0, channels=2), tmp_path / "music.mp3", "mp3")

    path = music_on_hold(cache_dir, RATE, source)

    assert_telephone_wav(path)
    assert abs(PromptLibrary(tmp_path, cache_dir).duration_ms(path) - 3000) < 80


def test_music_on_hold_missing_source(cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PromptError) as err:
        music_on_hold(cache_dir, RATE, tmp_path / "nope.mp3")
    assert err.value.code == "prompt.missing"


async def test_resolve_async_answers_a_known_text_prompt_without_a_thread_or_a_read(
        library: CountingLibrary, source_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = PromptSpec(text="Your call is important to us.")
    first = await library.resolve_async(spec, "en")
    assert library.synth_calls == 1 and first.is_file()
    resolved: list[PromptSpec] = []
    original = library.resolve

    def counting(s: PromptSpec, lang: str = "en") -> Path:
        resolved.append(s)
        return original(s, lang)

    monkeypatch.setattr(library, "resolve", counting)
    assert await library.resolve_async(spec, "en") == first and resolved == []  # from memory
    assert await library.resolve_async(PromptSpec(text="Something else."), "en") != first
    assert len(resolved) == 1  # a new text goes through resolve (a thread)
    first.unlink()  # the cache entry removed under us: rendered again, never a path to nothing
    again = await library.resolve_async(spec, "en")
    assert again.is_file() and library.synth_calls == 3 and len(resolved) == 2
    # a recording may be replaced in place: it is always resolved (its content is the key)
    write_audio(tone(), source_dir / "en" / "hold.wav", "wav")
    recording = PromptSpec(file="hold.wav")
    await library.resolve_async(recording, "en")
    await library.resolve_async(recording, "en")
    assert resolved[-2:] == [recording, recording]
