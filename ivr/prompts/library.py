"""The prompt library: dial-plan prompts turned into telephone-ready WAV files.

A prompt is either a recorded file under ``<source_dir>/<language>/`` (WAV, MP3, OGG or FLAC at any
rate, width and channel count) or a text that espeak-ng speaks. Either way the result is a mono,
16-bit PCM WAV at the call's clock rate, brought to a common loudness, stored in a content-addressed
cache:

* the cache key is the SHA-256 of the *source content* (the file's bytes, or the text, the voice and
  the speech engine's version) plus the *target format* (rate, channels, width, loudness, pipeline
  version). Editing a recording or a text makes a new entry; identical content - the same recording
  under two names, or the same text in two dial plans - is rendered once;
* entries are written to a temporary file in the cache directory and renamed into place with
  :func:`os.replace`, so another process never sees half a file, and two processes rendering the same
  entry at once both end with a complete, identical file;
* nothing is held in module globals; all work is synchronous and CPU bound, so async callers run it
  in a thread (``asyncio.to_thread``).

Old entries are never deleted here; the cache directory can be wiped at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydub import AudioSegment

from ivr.core.errors import PromptError
from ivr.core.logging import get_logger
from ivr.prompts.paths import inside, prompt_name_problem

#: Bump when the rendering below changes, so existing cache entries are not reused.
PIPELINE_VERSION = 1
#: Extensions tried, in this order, for a prompt file named without one.
AUDIO_EXTENSIONS = (".wav", ".mp3", ".ogg", ".flac")
#: Loudness of a normalised prompt: RMS target, a peak ceiling that is never exceeded, and a limit on
#: how much a (near-)silent recording is amplified.
TARGET_DBFS = -18.0
PEAK_CEILING_DBFS = -3.0
MAX_GAIN_DB = 24.0
#: Fade at both ends of every prompt so playback never starts or stops with a click.
EDGE_FADE_MS = 5
SAMPLE_WIDTH = 2  # bytes: 16-bit PCM
ESPEAK = "espeak-ng"
TTS_TIMEOUT_S = 30.0
KNOWN_MAX = 4096  # text prompts remembered per library (resolve_async)

_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")


@dataclass(frozen=True)
class PromptSpec:
    """What a dial plan says about a prompt.

    ``file`` is relative to ``<source_dir>/<language>/`` (``"welcome.wav"``, or ``"welcome"`` for the
    first of ``.wav/.mp3/.ogg/.flac`` that exists) and never leaves it (:mod:`ivr.prompts.paths`:
    ``prompt.outside`` otherwise). ``path`` is a file the operator configured (music on hold), read
    as it is. ``text`` is spoken by the speech
    engine when there is no ``file``. When ``file`` is given it wins, and a missing file is an error
    (``text`` is not a fallback: a typo in a file name must not silently turn into robot speech).

    ``fallback_language``: when ``file`` is not under ``<source_dir>/<language>/``, look under
    ``<source_dir>/<fallback_language>/`` (the plan's default language) before giving up. Build it
    from a dial-plan prompt with :func:`ivr.dialplan.prompt_build.spec_for`.
    """

    file: str | None = None
    text: str | None = None
    fallback_language: str | None = None
    path: Path | None = None  # an operator's file anywhere (music on hold); never from a dial plan

    def __post_init__(self) -> None:
        if not self.file and not self.path and not (self.text and self.text.strip()):
            raise PromptError("a prompt needs a file or a non-empty text", file=self.file, text=self.text)


@dataclass(frozen=True)
class _Source:
    """A located prompt source and its cache key."""

    kind: Literal["file", "tts"]
    key: str
    label: str  # for messages and logs: the file path, or the text
    data: bytes = b""  # file content (read once, hashed and decoded from the same bytes)
    text: str = ""
    voice: str = ""


class PromptLibrary:
    """Resolves :class:`PromptSpec` values to normalised WAV files in ``cache_dir``.

    ``voices`` maps a language to an espeak-ng voice (``{"en": "en-us", "ko": "ko"}``); a language
    that is not in the mapping is passed to espeak-ng as the voice name.
    """

    def __init__(
        self,
        source_dir: Path,
        cache_dir: Path,
        sample_rate: int = 8000,
        voices: dict[str, str] | None = None,
        *,
        espeak: str = ESPEAK,
        tts_timeout_s: float = TTS_TIMEOUT_S,
    ) -> None:
        if sample_rate < 8000 or sample_rate > 48000:
            raise PromptError(f"unsupported sample rate {sample_rate}", sample_rate=sample_rate)
        self.source_dir = Path(source_dir)
        self.cache_dir = Path(cache_dir)
        self.sample_rate = sample_rate
        self.voices = dict(voices) if voices is not None else {"en": "en-us"}
        self.espeak = espeak
        self.tts_timeout_s = tts_timeout_s
        self._engine_version: str | None = None
        self._log = get_logger(__name__)
        # text prompts already resolved: (spec, language) -> cached WAV (the cache is content-addressed,
        # so the same text and voice is always the same file); bounded, oldest forgotten first
        self._known: dict[tuple[PromptSpec, str], Path] = {}
        self._known_lock = threading.Lock()  # written from resolve's threads, read on the event loop

    # public API -------------------------------------------------------------------------------

    def resolve(self, spec: PromptSpec, language: str = "en") -> Path:
        """Return the cached, normalised WAV for ``spec`` in ``language``, rendering it if needed.

        Never returns silence for a prompt that cannot be played: raises :class:`PromptError` with
        code ``prompt.missing``, ``prompt.corrupt``, ``prompt.tts_failed`` or ``prompt.no_voice``
        (``prompt.invalid`` for a bad language tag).
        """
        return self.ensure(spec, language)[0]

    async def resolve_async(self, spec: PromptSpec, language: str = "en") -> Path:
        """:meth:`resolve` for the event loop: a text prompt resolved before (its WAV still there) is
        answered at once; anything else (a first time, a recording, which may have been replaced) is
        resolved in a thread. Every play of a call used to hop to a thread, hash the text and read the
        whole cached WAV again to check it."""
        if not spec.file and spec.path is None:
            known = self._known.get((spec, language))
            if known is not None and known.is_file():
                return known
        return await asyncio.to_thread(self.resolve, spec, language)

    def ensure(self, spec: PromptSpec, language: str = "en") -> tuple[Path, bool]:
        """Like :meth:`resolve`, and say whether the entry had to be rendered (False: cache hit).

        A cache entry that is not a complete WAV (a disk that filled up, a hand-edited cache) is
        rendered again rather than played.
        """
        source = self._locate(spec, language)
        path = self._cache_path(source.key)
        if path.is_file():
            if wav_is_complete(path):
                self._remember(spec, language, source, path)
                return path, False
            self._log.warning("prompt.cache_entry_damaged", path=str(path), source=source.label)
        started = time.monotonic()
        segment = self._render(source)
        write_wav_atomic(segment, path)
        self._remember(spec, language, source, path)
        self._log.info(
            "prompt.rendered", kind=source.kind, source=source.label, key=source.key[:16],
            duration_ms=len(segment), took_ms=round((time.monotonic() - started) * 1000),
        )
        return path, True

    def _remember(self, spec: PromptSpec, language: str, source: _Source, path: Path) -> None:
        if source.kind != "tts":
            return
        with self._known_lock:
            if len(self._known) >= KNOWN_MAX:  # templated texts (a position, a wait) are many: keep the newest
                del self._known[next(iter(self._known))]
            self._known[(spec, language)] = path

    def source_file(self, spec: PromptSpec, language: str = "en") -> Path | None:
        """The recording ``spec`` plays in ``language`` (after any language fallback); None for a text.

        Raises ``prompt.missing`` like :meth:`resolve`.
        """
        if spec.path is not None:
            return Path(spec.path)
        if not spec.file:
            return None
        _check_language(language)
        return self._find_file(spec.file, language, spec.fallback_language)

    def check(self, spec: PromptSpec, language: str = "en") -> None:
        """Raise :class:`PromptError` if ``spec`` cannot be rendered; never writes the cache.

        A spec whose entry is already cached passes without further work; otherwise the file is
        decoded or the text synthesised (and the result discarded).
        """
        source = self._locate(spec, language)
        if not self._cache_path(source.key).is_file():
            self._render(source)

    def build_all(self, specs: Iterable[tuple[PromptSpec, str]]) -> list[Path]:
        """Resolve every ``(spec, language)``; returns the paths in the same order.

        Stops at the first prompt that fails (its error names it).
        """
        return [self.resolve(spec, language) for spec, language in specs]

    def duration_ms(self, path: Path) -> int:
        """Length of a WAV file (as returned by :meth:`resolve`) in milliseconds."""
        try:
            with wave.open(str(path), "rb") as wav:
                return round(wav.getnframes() * 1000 / wav.getframerate())
        except FileNotFoundError as exc:
            raise PromptError(
                f"prompt file not found: {path}", code="prompt.missing", file=str(path)
            ) from exc
        except (wave.Error, EOFError, OSError, ZeroDivisionError) as exc:
            raise PromptError(
                f"not a readable WAV file: {path}: {exc}", code="prompt.corrupt", file=str(path)
            ) from exc

    def voice_for(self, language: str) -> str:
        """The espeak-ng voice of ``language``; ``prompt.no_voice`` when none is configured."""
        try:
            return self.voices[language]
        except KeyError:
            configured = ", ".join(f"{lang}={voice}" for lang, voice in sorted(self.voices.items()))
            raise PromptError(
                f"no speech voice configured for language {language!r} "
                f"(prompts.voices has: {configured or 'nothing'})",
                code="prompt.no_voice", language=language, voices=sorted(self.voices),
            ) from None

    # locating and keying ----------------------------------------------------------------------

    def _target(self) -> dict[str, Any]:
        return {
            "pipeline": PIPELINE_VERSION, "rate": self.sample_rate, "channels": 1, "width": SAMPLE_WIDTH,
            "target_dbfs": TARGET_DBFS, "peak_dbfs": PEAK_CEILING_DBFS, "max_gain_db": MAX_GAIN_DB,
            "fade_ms": EDGE_FADE_MS,
        }

    def _locate(self, spec: PromptSpec, language: str) -> _Source:
        _check_language(language)
        if spec.file or spec.path is not None:
            path = Path(spec.path) if spec.path is not None else self._find_file(
                spec.file or "", language, spec.fallback_language)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise PromptError(
                    f"prompt file {path} cannot be read: {exc.strerror or exc}",
                    code="prompt.missing", file=str(path),
                ) from exc
            key = content_key({"kind": "file", **self._target()}, data)
            return _Source("file", key, str(path), data=data)
        text = (spec.text or "").strip()
        if not text:  # PromptSpec refuses this, but a spec may come from elsewhere
            raise PromptError("a prompt needs a file or a non-empty text", file=spec.file, text=spec.text)
        voice = self.voice_for(language)
        meta = {"kind": "tts", "text": text, "voice": voice, "engine": self._engine(), **self._target()}
        return _Source("tts", content_key(meta), repr(text[:60]), text=text, voice=voice)

    def _find_file(self, name: str, language: str, fallback_language: str | None = None) -> Path:
        problem = prompt_name_problem(name)
        if problem is not None:
            raise PromptError(f"prompt file {name[:80]!r}: {problem}", code="prompt.outside", file=name[:80])
        given = Path(name)
        languages = [language]
        if fallback_language and fallback_language != language:
            _check_language(fallback_language)
            languages.append(fallback_language)
        candidates: list[tuple[Path, Path]] = []
        for lang in languages:
            folder = self.source_dir / lang
            base = folder / given
            if base.suffix.lower() in AUDIO_EXTENSIONS:
                candidates.append((folder, base))
            else:
                candidates.extend((folder, base.with_name(base.name + ext)) for ext in AUDIO_EXTENSIONS)
        for folder, candidate in candidates:
            if candidate.is_file():
                if not inside(folder, candidate):  # a symbolic link out of prompts/<language>/
                    raise PromptError(f"prompt file {name!r} leads outside {folder}", code="prompt.outside",
                                      file=name)
                return candidate
        candidates_shown = [c for _, c in candidates]
        tried = ", ".join(str(c) for c in candidates_shown)
        raise PromptError(
            f"prompt file {name!r} not found for language {language!r} (tried {tried})",
            code="prompt.missing", file=name, language=language,
        )

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / f"{key}.wav"

    def _engine(self) -> str:
        """The speech engine's version line: part of every TTS cache key."""
        if self._engine_version is None:
            out = self._run_espeak(["--version"], "espeak-ng --version")
            self._engine_version = out.stdout.decode(errors="replace").strip() or "unknown"
        return self._engine_version

    # rendering --------------------------------------------------------------------------------

    def _render(self, source: _Source) -> Any:
        if source.kind == "file":
            segment = self._decode(source.data, source.label)
            code = "prompt.corrupt"
        else:
            segment = self._synthesise(source.text, source.voice)
            code = "prompt.tts_failed"
        try:
            return normalise(segment, self.sample_rate)
        except Exception as exc:  # ffmpeg failing on audio it has just decoded: report it on the prompt
            raise PromptError(
                f"cannot convert {source.label}: {exc}", code=code, source=source.label
            ) from exc

    def _decode(self, data: bytes, label: str) -> Any:
        """Decode a recording (any format ffmpeg reads) to an AudioSegment. Override point for tests."""
        return decode_audio(data, label)

    def _synthesise(self, text: str, voice: str) -> Any:
        """Speak ``text`` with espeak-ng and return the raw AudioSegment. Override point for tests."""
        with tempfile.TemporaryDirectory(prefix="ivr-tts-") as tmp:
            out = Path(tmp) / "tts.wav"
            # argv, never a shell; "--" so a text starting with "-" is not taken for an option
            self._run_espeak(["-v", voice, "-w", str(out), "--", text], f"espeak-ng voice {voice!r}")
            try:
                # a file object, not a path: pydub leaks the handle it opens for a WAV path
                with out.open("rb") as fh:
                    segment = AudioSegment.from_wav(fh)
            except Exception as exc:
                raise PromptError(
                    f"espeak-ng (voice {voice!r}) wrote no usable audio: {exc}",
                    code="prompt.tts_failed", voice=voice,
                ) from exc
        if segment.frame_count() == 0:
            raise PromptError(
                f"espeak-ng (voice {voice!r}) produced no audio for {text[:60]!r}",
                code="prompt.tts_failed", voice=voice,
            )
        return segment

    def _run_espeak(self, args: list[str], what: str) -> subprocess.CompletedProcess[bytes]:
        try:
            result = subprocess.run(
                [self.espeak, *args], capture_output=True, timeout=self.tts_timeout_s, check=False,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise PromptError(f"{self.espeak} is not installed", code="prompt.tts_failed") from exc
        except subprocess.TimeoutExpired as exc:
            raise PromptError(
                f"{what} timed out after {self.tts_timeout_s:g} s", code="prompt.tts_failed"
            ) from exc
        except OSError as exc:
            raise PromptError(f"{what} could not run: {exc}", code="prompt.tts_failed") from exc
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace").strip()
            raise PromptError(
                f"{what} failed (exit {result.returncode}): {stderr or 'no error output'}",
                code="prompt.tts_failed", stderr=stderr, returncode=result.returncode,
            )
        return result


# helpers shared with moh.py -------------------------------------------------------------------


def _check_language(language: str) -> None:
    if not _LANGUAGE.match(language):
        raise PromptError(f"invalid language tag {language!r}", language=language)


def wav_is_complete(path: Path) -> bool:
    """True when ``path`` is a PCM WAV whose header matches its size and that holds some audio."""
    try:
        with wave.open(str(path), "rb") as wav:
            frames = wav.getnframes()
            data = wav.readframes(frames)
            return frames > 0 and len(data) == frames * wav.getsampwidth() * wav.getnchannels()
    except (wave.Error, EOFError, OSError):
        return False


def content_key(meta: dict[str, Any], data: bytes = b"") -> str:
    """SHA-256 over a canonical JSON line of ``meta`` (JSON escapes newlines) followed by ``data``."""
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True, ensure_ascii=False).encode())
    digest.update(b"\n")
    digest.update(data)
    return digest.hexdigest()


def decode_audio(data: bytes, label: str) -> Any:
    """Decode WAV/MP3/OGG/FLAC bytes with pydub (ffmpeg); undecodable or empty -> ``prompt.corrupt``."""
    fmt = "wav" if label.lower().endswith(".wav") else None  # pure-Python WAV reader first, ffmpeg after
    try:
        segment = AudioSegment.from_file(io.BytesIO(data), format=fmt)
    except Exception as exc:  # pydub raises CouldntDecodeError, but also KeyError/IndexError on junk
        detail = str(exc).strip().splitlines()
        reason = detail[-1].removeprefix("cache:pipe:0: ") if detail else type(exc).__name__
        raise PromptError(
            f"prompt file {label} is not decodable audio: {reason}", code="prompt.corrupt", file=label
        ) from exc
    if not (1 <= segment.channels <= 8 and segment.sample_width in (1, 2, 3, 4) and segment.frame_rate >= 1):
        raise PromptError(f"prompt file {label} declares an impossible format ({segment.channels} channels, "
                          f"{segment.sample_width * 8}-bit, {segment.frame_rate} Hz)", code="prompt.corrupt",
                          file=label)
    if segment.frame_count() == 0:
        raise PromptError(f"prompt file {label} contains no audio", code="prompt.corrupt", file=label)
    verify_integrity(data, label, len(segment))
    return segment


def verify_integrity(data: bytes, label: str, decoded_ms: int) -> None:
    """Refuse a recording that only decodes in part: a truncated or damaged file plays cut short.

    Decoders are lenient and return whatever they could read, so two more checks run on the bytes:
    ffmpeg decoding with ``-xerror`` (stops with an error on the first damaged packet: a cut WAV,
    FLAC or Ogg file), and the duration the container declares (an MP3's Xing/Info header, a WAV
    header) against the audio that actually decoded (a cut MP3).
    """
    suffix = Path(label).suffix.lower() if Path(label).suffix.lower() in AUDIO_EXTENSIONS else ""
    with tempfile.NamedTemporaryFile(prefix="ivr-prompt-", suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        decode = _run_tool(["ffmpeg", "-nostdin", "-v", "error", "-xerror", "-i", tmp.name, "-f", "null", "-"])
        if decode.returncode != 0 or decode.stderr.strip():
            reason = decode.stderr.decode(errors="replace").strip().splitlines()
            detail = reason[-1].replace(tmp.name, "file") if reason else f"ffmpeg exit {decode.returncode}"
            raise PromptError(f"prompt file {label} is damaged or truncated: {detail}",
                              code="prompt.corrupt", file=label)
        probe = _run_tool(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                           tmp.name])
    try:
        declared_ms = float(probe.stdout.decode().strip()) * 1000
    except ValueError:  # N/A: the container does not say
        return
    if declared_ms > decoded_ms * 1.05 + 100:
        raise PromptError(
            f"prompt file {label} is truncated: it declares {declared_ms / 1000:.2f} s of audio "
            f"but holds {decoded_ms / 1000:.2f} s", code="prompt.corrupt", file=label)


def _run_tool(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(argv, capture_output=True, timeout=TTS_TIMEOUT_S, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PromptError(f"{argv[0]} could not check the prompt: {exc}", code="prompt.corrupt") from exc


def normalise(
    segment: Any,
    sample_rate: int,
    *,
    target_dbfs: float = TARGET_DBFS,
    peak_dbfs: float = PEAK_CEILING_DBFS,
    fade_ms: int = EDGE_FADE_MS,
) -> Any:
    """Mono, 16-bit, ``sample_rate`` Hz, RMS near ``target_dbfs`` and peaks at most ``peak_dbfs``.

    Rate and channel changes go through ffmpeg (its resampler filters out what would alias above the
    new Nyquist frequency; ``audioop.ratecv`` would not).
    """
    if segment.channels != 1 or segment.frame_rate != sample_rate or segment.sample_width != SAMPLE_WIDTH:
        converted = segment.export(
            io.BytesIO(), format="wav", codec="pcm_s16le", parameters=["-ac", "1", "-ar", str(sample_rate)]
        )
        segment = AudioSegment.from_wav(converted)
    segment = segment.set_channels(1).set_frame_rate(sample_rate).set_sample_width(SAMPLE_WIDTH)
    segment = apply_loudness(segment, target_dbfs, peak_dbfs)
    if fade_ms and len(segment) > 4 * fade_ms:
        segment = segment.fade_in(fade_ms).fade_out(fade_ms)
    return segment


def apply_loudness(
    segment: Any, target_dbfs: float, peak_dbfs: float, max_gain_db: float = MAX_GAIN_DB
) -> Any:
    """Gain towards ``target_dbfs`` RMS, limited so the peak stays at or below ``peak_dbfs``."""
    if segment.rms == 0:  # digital silence: nothing to scale
        return segment
    gain = min(target_dbfs - segment.dBFS, peak_dbfs - segment.max_dBFS, max_gain_db)
    return segment.apply_gain(gain) if abs(gain) >= 0.05 else segment


def write_wav_atomic(segment: Any, path: Path) -> None:
    """Write ``segment`` as a PCM WAV at ``path``: temporary file in the same directory, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem[:16]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            with wave.open(fh, "wb") as wav:
                wav.setnchannels(segment.channels)
                wav.setsampwidth(segment.sample_width)
                wav.setframerate(segment.frame_rate)
                wav.writeframes(segment.raw_data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the workers reading the cache may be other users
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
