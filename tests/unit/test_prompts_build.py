"""Building the prompts of dial plans, the committed recordings, and damaged sources.

Real espeak-ng and ffmpeg throughout; the recordings under ``prompts/`` are the repository's own.
"""

from __future__ import annotations

import shutil
import wave
from pathlib import Path
from typing import Any

import pytest
from pydub import AudioSegment

from ivr.core.config import Settings
from ivr.core.errors import PromptError
from ivr.dialplan.loader import LoadedPlan, PlanRegistry
from ivr.dialplan.model import Plan, Prompt
from ivr.dialplan.prompt_build import (
    build_plan_prompts,
    build_prompts,
    check_prompt,
    is_template,
    sample_text,
    spec_for,
)
from ivr.prompts.library import PEAK_CEILING_DBFS, PromptLibrary, PromptSpec
from ivr.runtime import supervisor

REPO_PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
COMMITTED = sorted(p.relative_to(REPO_PROMPTS) for p in REPO_PROMPTS.glob("*/*.*") if p.suffix != ".md")


class CountingLibrary(PromptLibrary):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.renders = 0

    def _render(self, source: Any) -> Any:
        self.renders += 1
        return super()._render(source)


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    path = tmp_path / "prompts"
    shutil.copytree(REPO_PROMPTS, path)
    return path


@pytest.fixture
def library(source_dir: Path, tmp_path: Path) -> CountingLibrary:
    return CountingLibrary(source_dir, tmp_path / "cache", 8000, {"en": "en-us", "ko": "ko"})


def read_wav(path: Path) -> tuple[tuple[int, int, int], bytes]:
    with wave.open(str(path), "rb") as wav:
        fmt = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
        return fmt, wav.readframes(wav.getnframes())


def plan(**overrides: Any) -> Plan:
    """English by default, Korean after the ``ko`` node; prompts of every kind."""
    data: dict[str, Any] = {
        "name": "test", "numbers": ["1000"], "language": "en", "start": "hello",
        "nodes": {
            "hello": {"type": "play", "prompt": {"text": {"en": "Hello.", "ko": "안녕하세요."}}, "next": "hold"},
            "hold": {"type": "play", "prompt": {"file": "hold"}, "next": "ko"},
            "ko": {"type": "language", "language": "ko", "next": "account"},
            "account": {"type": "play", "prompt": "Your account is {account}.", "next": "bye"},
            "bye": {"type": "hangup", "prompt": {"file": "goodbye"}},
        },
    }
    data["nodes"].update(overrides)
    return Plan.model_validate(data)


# the committed recordings ----------------------------------------------------------------------


def test_the_repository_has_a_recording_in_every_format() -> None:
    assert {p.suffix for p in COMMITTED} == {".wav", ".mp3", ".ogg", ".flac"}
    assert {p.parts[0] for p in COMMITTED} >= {"en", "ko"}


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("name", COMMITTED, ids=str)
def test_committed_recordings_become_mono_16_bit_at_the_clock_rate(
    name: Path, rate: int, tmp_path: Path
) -> None:
    lib = PromptLibrary(REPO_PROMPTS, tmp_path / "cache", rate)
    with (REPO_PROMPTS / name).open("rb") as fh:  # a file object: pydub leaks a path it opens
        source = AudioSegment.from_file(fh)

    path = lib.resolve(PromptSpec(file=name.name), name.parts[0])

    fmt, frames = read_wav(path)
    assert fmt == (1, 2, rate)
    assert abs(len(frames) / 2 / rate * 1000 - len(source)) < 40  # the whole recording, nothing cut
    audio = AudioSegment(frames, sample_width=2, frame_rate=rate, channels=1)
    assert -24.0 < audio.dBFS < -14.0  # brought near the -18 dBFS target (the peak ceiling limits some)
    assert audio.max_dBFS <= PEAK_CEILING_DBFS + 0.1


# spec_for and templates ------------------------------------------------------------------------


def test_spec_for_picks_the_text_of_the_language() -> None:
    prompt = Prompt.model_validate({"text": {"en": "Hello", "ko": "안녕하세요"}})

    assert spec_for(prompt, "ko", "en") == PromptSpec(text="안녕하세요", fallback_language="en")
    assert spec_for(prompt, "en", "en") == PromptSpec(text="Hello")
    assert spec_for(prompt, "fr", "en").text == "Hello"  # no French text: the default language's


def test_templates_are_recognised() -> None:
    assert is_template("Your account is {account}.")
    assert is_template("{crm.tier} customer")
    assert not is_template("Hello.")
    assert not is_template("braces {{like this}} are literal")
    assert sample_text("Account {account}, tier {crm.tier}.") == "Account 1234, tier 1234."
    # the grammar of calls (ivr.dialplan.templates): what a call leaves as it is, the build speaks as it is
    assert not is_template("{not a name}") and sample_text("{not a name} {{x}}") == "{not a name} {x}"


# building plans --------------------------------------------------------------------------------


def test_build_renders_every_prompt_in_every_language_then_hits_the_cache(library: CountingLibrary) -> None:
    report = build_plan_prompts(library, [("test.yaml", plan())])

    assert report.ok, report.issues
    assert report.warnings == []
    # 4 prompts x 2 languages, the template once per language
    assert (report.rendered, report.cached, report.templates) == (6, 0, 2)
    first_renders = library.renders

    again = build_plan_prompts(library, [("test.yaml", plan())])

    assert (again.rendered, again.cached, again.templates) == (0, 6, 2)
    assert library.renders == first_renders  # nothing rendered the second time


def test_a_recording_missing_in_a_language_falls_back_with_a_warning(
    library: CountingLibrary, source_dir: Path
) -> None:
    (source_dir / "ko" / "hold.flac").unlink()

    report = build_plan_prompts(library, [("test.yaml", plan())])

    assert report.ok
    [warning] = report.warnings
    assert (warning.node, warning.field, warning.language, warning.code) == (
        "hold", "prompt", "ko", "prompt.language_fallback")
    assert "hold" in warning.message and "'en'" in warning.message
    # and the call in Korean plays the English recording rather than failing
    en = library.resolve(spec_for(Prompt(file="hold"), "en", "en"), "en")
    assert library.resolve(spec_for(Prompt(file="hold"), "ko", "en"), "ko") == en


def test_a_recording_missing_in_the_default_language_is_an_error(library: CountingLibrary) -> None:
    report = build_plan_prompts(library, [("test.yaml", plan(
        bye={"type": "hangup", "prompt": {"file": "farewell"}}))])

    assert not report.ok
    assert {(e.plan, e.node, e.field, e.language, e.code) for e in report.errors} == {
        ("test.yaml", "bye", "prompt", "en", "prompt.missing"),
        ("test.yaml", "bye", "prompt", "ko", "prompt.missing"),
    }
    assert all("farewell" in e.message for e in report.errors)
    assert "test.yaml: bye.prompt [en]: prompt.missing" in str(report.errors[0])


def test_a_language_without_a_voice_is_an_error_naming_the_configured_voices(
    source_dir: Path, tmp_path: Path
) -> None:
    lib = PromptLibrary(source_dir, tmp_path / "cache", 8000, {"en": "en-us"})

    report = build_plan_prompts(lib, [("test.yaml", plan())])

    codes = {(e.node, e.language, e.code) for e in report.errors}
    assert codes == {("hello", "ko", "prompt.no_voice"), ("account", "ko", "prompt.no_voice")}
    assert "en=en-us" in report.errors[0].message


def test_suggested_options_and_read_back_digits_are_built_before_any_call(library: CountingLibrary) -> None:
    nodes = {"menu": {"type": "menu", "prompt": "Billing 1.",
                      "options": [{"digit": "1", "say": ["billing"], "goto": "acct"}]},
             "acct": {"type": "collect", "prompt": "Account?", "variable": "account", "next": "bye"}}
    report = build_plan_prompts(library, [("test.yaml", plan(**nodes))])

    assert report.ok, report.issues
    # 4 plan prompts + the collect's + the menu's in en and ko, the template twice; generated: the
    # suggestion (en, ko) and 12 read-back prompts in English ("I heard", ten digits, the question),
    # 11 in Korean (no text before {digits})
    assert (report.rendered, report.templates) == (10 + 2 + 12 + 11, 2)
    for text, language in [("You can say billing, or press 1.", "en"), ("nine", "en"), ("구", "ko")]:
        assert library.ensure(PromptSpec(text=text), language)[1] is False, text  # in the cache already
    again = build_plan_prompts(library, [("test.yaml", plan(**nodes))])
    assert again.rendered == 0


def test_a_plan_of_recordings_gets_no_made_up_prompt_and_needs_no_voice(source_dir: Path, tmp_path: Path) -> None:
    lib = CountingLibrary(source_dir, tmp_path / "cache", 8000, {})
    recorded = Plan.model_validate({"name": "r", "numbers": ["1"], "start": "m", "nodes": {
        "m": {"type": "menu", "prompt": {"file": "hold"}, "options": [{"digit": "1", "say": ["x"], "goto": "b"}]},
        "b": {"type": "hangup", "prompt": {"file": "goodbye"}}}})

    report = build_plan_prompts(lib, [("r.yaml", recorded)])

    assert report.ok, report.issues
    assert report.rendered == 2


def test_a_template_is_spoken_with_sample_values_not_its_braces(library: CountingLibrary) -> None:
    rendered, warning = check_prompt(library, Prompt(text="Your balance is {balance}."), "en", "en")

    assert rendered and warning is None
    sample = library.resolve(PromptSpec(text="Your balance is 1234."), "en")
    assert library.renders == 1  # the sample entry is the one check_prompt rendered
    assert read_wav(sample)[0] == (1, 2, 8000)


# damaged sources -------------------------------------------------------------------------------


def _garbage_wav(data: bytes) -> bytes:
    return b"RIFF\x24\x08\x00\x00WAVEfmt " + bytes(range(200))


@pytest.mark.parametrize("name, damage", [
    ("goodbye.wav", _garbage_wav),
    ("goodbye.wav", lambda data: data[: len(data) // 2]),
    ("hold.mp3", lambda data: data[: len(data) // 2]),
    ("hold.mp3", lambda data: b""),
    ("hold.flac", lambda data: data[: len(data) - 9]),
    ("hold.flac", lambda data: data[:100]),
    ("goodbye.ogg", lambda data: data[: len(data) // 2]),
], ids=["garbage-wav", "truncated-wav", "truncated-mp3", "empty-mp3", "truncated-flac", "flac-header-only",
        "truncated-ogg"])
def test_damaged_recordings_are_errors_naming_the_file(
    library: CountingLibrary, source_dir: Path, name: str, damage: Any
) -> None:
    [path] = [p for p in source_dir.glob(f"*/{name}")]
    path.write_bytes(damage(path.read_bytes()))
    language = path.parent.name

    with pytest.raises(PromptError) as err:
        library.resolve(PromptSpec(file=name), language)
    assert err.value.code == "prompt.corrupt"
    assert name in err.value.message

    report = build_plan_prompts(library, [("test.yaml", plan())])
    assert any(e.code == "prompt.corrupt" and name in e.message and e.language == language
               for e in report.errors)
    assert not (library.cache_dir.exists() and any(
        p.name.endswith(".tmp") for p in library.cache_dir.iterdir()))


def test_a_damaged_cache_entry_is_rendered_again_not_played(library: CountingLibrary) -> None:
    path = library.resolve(PromptSpec(text="Thank you."), "en")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # the header still claims the full length

    again, rendered = library.ensure(PromptSpec(text="Thank you."), "en")

    assert again == path and rendered
    assert again.read_bytes() == data


# the start of ivr run --------------------------------------------------------------------------


def _settings(tmp_path: Path, source_dir: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var", dialplans_dir=tmp_path / "dialplans",
                    prompts={"dir": source_dir, "voices": {"en": "en-us", "ko": "ko"}})


def test_build_prompts_also_makes_the_music_on_hold(tmp_path: Path, source_dir: Path) -> None:
    settings = _settings(tmp_path, source_dir)

    report = build_prompts(settings, [("test.yaml", plan())])

    assert report.ok
    assert [p.name for p in settings.prompt_cache.glob("moh-*.wav")]


def test_the_supervisor_refuses_to_start_with_a_broken_prompt(tmp_path: Path, source_dir: Path) -> None:
    settings = _settings(tmp_path, source_dir)
    registry = PlanRegistry([LoadedPlan(plan(), tmp_path / "test.yaml", "v1")])
    assert supervisor.build_prompts(settings, registry) == 8

    (source_dir / "en" / "goodbye.wav").write_bytes(b"")

    with pytest.raises(PromptError) as err:
        supervisor.build_prompts(settings, registry)
    assert err.value.code == "prompt.corrupt"
    assert "goodbye.wav" in err.value.message
