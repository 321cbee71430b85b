"""One turn of waiting for the caller on a SIP leg: prompts, keys, speech, barge-in, timeouts.

``run_ask`` implements ``CallPort.ask`` for :mod:`ivr.calls.session`:

- the prompts play in order; with ``barge_in`` a key or the start of speech stops them at once;
- keys (RFC 2833 or SIP INFO, already ``Dtmf`` events on the leg) end the turn at ``max_digits``,
  at the ``terminator`` or ``inter_digit_s`` after the last key;
- when the node listens (``phrases`` or ``spoken_digits``) and the speech service is configured, the
  caller's audio is tapped (``Leg.start_listen``) and streamed to the service with the node's
  grammar, only for the duration of the turn;
- no-input: ``timeout_s`` after the last prompt ends with no key and no speech; an utterance that
  has begun gets up to ``max_speech_s`` (the service cuts it and returns what it heard).

Barge-in on speech uses the recogniser's own partial results (a non-empty partial: words of the
grammar were heard), not an energy detector in the worker: it needs no level threshold to tune
against line noise and hold-music echo, coughs and clicks that the garbage model swallows do not
stop the prompt, and it costs nothing more (the audio goes to the service anyway). Any partial, even
one made only of garbage words, still holds the no-input timer so a caller is not cut mid-sentence.

If the speech service cannot be reached or fails, the turn goes on with keys only (logged once).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import wave
from collections.abc import Sequence
from typing import Any

from ivr.core.errors import IvrError
from ivr.core.logging import get_logger
from ivr.dialplan.journey import mask_digits
from ivr.dialplan.ports import Answer, Ask
from ivr.sip.legs import Leg, LegEnded
from ivr.speech.client import RecognitionResult, SpeechClient
from ivr.speech.grammar import DIGIT_LANGUAGES, digit_words, spoken_digits

log = get_logger(__name__)
SPEECH_TAIL_S = 3.0      # after max_speech_s: the service's endpointing and decoding lag
SPEECH_NO_INPUT_PAD_MS = 2000  # the service's own no-input comes after the worker's (the worker decides)


def wav_seconds(path: str) -> float:
    try:
        with wave.open(path) as w:
            frames: int = w.getnframes()
            rate: int = w.getframerate()
            return frames / rate
    except (OSError, wave.Error, EOFError):
        return 0.0


def grammar_of(ask: Ask) -> list[str]:
    """The recognition grammar of a turn: the node's phrases and, for spoken digits, the digit words."""
    words = list(ask.phrases)
    if ask.spoken_digits and ask.language.split("-")[0].lower() in DIGIT_LANGUAGES:
        words += digit_words(ask.language)
    return words


def speech_answer(result: RecognitionResult, ask: Ask) -> Answer | None:
    """What a recognition result means for the turn; None when nothing was said (no-input)."""
    if not result.text:
        return None
    heard = Answer("speech", text=result.text, confidence=result.confidence, agreement=result.agreement,
                   decodes=result.decodes)
    if result.phrase is not None and result.phrase in ask.phrases:
        return dataclasses.replace(heard, phrase=result.phrase)
    if ask.spoken_digits:
        digits = result.digits   # the recogniser's digit string (its decodes voted on it), else the words
        if digits is None:
            with contextlib.suppress(ValueError):
                digits = spoken_digits(result.text, ask.language)
        if digits:
            return dataclasses.replace(heard, digits=digits[:ask.max_digits])
    return heard  # heard, but no match


#: A spoken number is a run of one-word phrases ("일 이 삼 사"); callers pause between digits, so
#: the speech service waits longer after a digit than after a menu phrase before ending the turn.
DIGITS_END_QUIET_MS = 800

class DigitEntry:
    """Keys of one turn: complete at ``max_digits`` or at the terminator (not kept)."""

    def __init__(self, ask: Ask) -> None:
        self.max_digits = ask.max_digits
        self.terminator = ask.terminator
        self.keys = ""
        self.done = False

    def add(self, key: str) -> None:
        if self.done:
            return
        if self.terminator is not None and key == self.terminator:
            self.done = True  # the entry ends here; the terminator itself is not part of it
            return
        self.keys += key
        if len(self.keys) >= self.max_digits:
            self.done = True

    def answer(self) -> Answer:
        return Answer("digits", digits=self.keys) if self.keys else Answer.none()


class Listener:
    """The caller's audio streamed to the speech service for one turn."""

    def __init__(self, leg: Leg, speech: SpeechClient, ask: Ask, sample_rate: int) -> None:
        self.leg = leg
        self.speech = speech
        self.ask = ask
        self.sample_rate = sample_rate
        self.heard = asyncio.Event()       # any partial: the recogniser hears speech
        self.barge = asyncio.Event()       # a non-empty partial: words of the grammar
        self.changed = asyncio.Event()     # heard, barge or the final: wake the turn
        self.heard_at: float | None = None
        self.started_at = time.monotonic()
        self.last_partial_at: float | None = None
        self.task: asyncio.Task[RecognitionResult] | None = None
        self._tap: Any = None

    async def start(self, no_input_ms: int) -> None:
        tap_id, sink = await self.leg.start_listen()
        self._tap = (tap_id, sink)
        grammar = grammar_of(self.ask)
        self.task = asyncio.create_task(self.speech.recognize(
            sink.chunks(), sample_rate=self.sample_rate, phrases=grammar,
            no_input_ms=max(100, min(no_input_ms, 120_000)),
            max_speech_ms=max(500, min(int(self.ask.max_speech_s * 1000), 120_000)),
            end_quiet_ms=DIGITS_END_QUIET_MS if self.ask.spoken_digits else None,
            on_partial=self._partial), name="speech.recognize")
        self.task.add_done_callback(lambda _t: self.changed.set())
        log.info("speech.listen", tap=tap_id, phrases=len(self.ask.phrases), digits=self.ask.spoken_digits)

    def _partial(self, text: str) -> None:
        now = time.monotonic()
        self.last_partial_at = now
        if not self.heard.is_set():
            self.heard_at = now
            self.heard.set()
            self.changed.set()
        if text and not self.barge.is_set():
            self.barge.set()
            self.changed.set()

    @property
    def finished(self) -> bool:
        return self.task is not None and self.task.done()

    def result(self) -> RecognitionResult | None:
        """The final result, or None when the service failed (logged; the turn goes on with keys)."""
        assert self.task is not None and self.task.done()
        if self.task.cancelled():
            return None
        exc = self.task.exception()
        if exc is not None:
            code = exc.code if isinstance(exc, IvrError) else type(exc).__name__
            log.warning("speech.unavailable", code=code, error=str(exc))
            return None
        result = self.task.result()
        now = time.monotonic()
        log.info("speech.result", reason=result.reason, phrase=result.phrase,
                 confidence=round(result.confidence, 3), agreement=round(result.agreement, 3),
                 decodes=result.decodes, words=len(result.text.split()),
                 latency_ms=round((now - (self.last_partial_at or now)) * 1000),
                 listened_ms=round((now - self.started_at) * 1000))
        return result

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.task is not None:
            await asyncio.wait([self.task])
            if not self.task.cancelled():
                self.task.exception()  # retrieved (logged by result() when it mattered)
        if self._tap is not None:
            tap_id, sink = self._tap
            self._tap = None
            with contextlib.suppress(Exception):
                await self.leg.stop_listen(tap_id, sink)
            log.info("speech.listen_ended", tap=tap_id, frames=sink.frames, dropped=sink.dropped,
                     frame_bytes=sink.frame_bytes)


async def _wait(waits: set[asyncio.Future[Any]], timeout: float | None) -> set[asyncio.Future[Any]]:
    done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    return done


class Turn:
    def __init__(self, leg: Leg, ask: Ask, speech: SpeechClient | None, sample_rate: int) -> None:
        self.leg = leg
        self.ask = ask
        self.speech = speech if (ask.phrases or ask.spoken_digits) else None
        self.sample_rate = sample_rate
        self.entry = DigitEntry(ask)
        self.listener: Listener | None = None
        self.speech_answer: Answer | None = None

    def _key(self, key: str, method: str) -> None:
        if self.ask.max_digits == 1:
            log.info("call.dtmf", digit=key, method=method)
        else:
            log.info("call.dtmf", method=method, keys=len(self.entry.keys) + 1)
        self.entry.add(key)

    async def _listen(self, no_input_ms: int) -> None:
        if self.speech is None or self.listener is not None or self.entry.keys:
            return  # keys replace speech: once a key is in, the turn listens no more
        listener = Listener(self.leg, self.speech, self.ask, self.sample_rate)
        self.listener = listener
        try:
            await listener.start(no_input_ms)
        except LegEnded:
            raise
        except Exception as exc:  # the tap could not be set up: keys only
            log.warning("speech.listen_failed", error=str(exc))
            await self._stop_listening()

    async def _stop_listening(self) -> None:
        if self.listener is not None:
            listener, self.listener = self.listener, None
            await listener.close()

    def _take_final(self) -> bool:
        """The recogniser finished: keep its answer (True) or go on with keys only (False)."""
        assert self.listener is not None
        result = self.listener.result()
        if result is None:
            self.speech = None  # failed: no more listening in this turn
            return False
        self.speech_answer = speech_answer(result, self.ask)
        return self.speech_answer is not None or result.reason == "no_input"

    async def run(self, prompts: Sequence[str]) -> Answer:
        try:
            prompt_s = sum(wav_seconds(p) for p in prompts)
            if self.ask.barge_in:
                await self._listen(int((prompt_s + self.ask.timeout_s) * 1000) + SPEECH_NO_INPUT_PAD_MS)
            for path in prompts:
                if await self._play(path):
                    break
            if self.entry.done:
                return self.entry.answer()
            if self.speech_answer is not None:
                return self.speech_answer
            await self._listen(int(self.ask.timeout_s * 1000) + SPEECH_NO_INPUT_PAD_MS)
            return await self._collect()
        finally:
            await self._stop_listening()

    async def _play(self, path: str) -> bool:
        """Play one prompt; True when the caller interrupted it (key, speech) and the turn moves on."""
        player_id, done = await self.leg.start_playback(path)
        getter: asyncio.Future[Any] | None = None
        try:
            while True:
                waits: set[asyncio.Future[Any]] = {done, self.leg.ended}
                if self.ask.barge_in:
                    getter = getter or asyncio.ensure_future(self.leg.digits.get())
                    waits.add(getter)
                listener = self.listener
                changed: asyncio.Future[Any] | None = None
                if listener is not None and self.ask.barge_in:
                    listener.changed.clear()
                    if listener.barge.is_set() or listener.finished:
                        changed = asyncio.get_running_loop().create_future()
                        changed.set_result(None)
                    else:
                        changed = asyncio.ensure_future(listener.changed.wait())
                    waits.add(changed)
                finished = await _wait(waits, None)
                if changed is not None and not changed.done():
                    changed.cancel()
                if self.leg.ended in finished:
                    raise LegEnded(self.leg.leg_id)
                if getter is not None and getter in finished:
                    dtmf = getter.result()
                    getter = None
                    self._key(dtmf.digit, dtmf.method)
                    await self._stop_listening()  # keys win over speech
                    log.info("call.barge_in", by="dtmf")
                    return True
                if listener is not None and listener.finished:
                    if self._take_final() and self.speech_answer is not None:
                        log.info("call.barge_in", by="speech_final")
                        return True
                    await self._stop_listening()
                    continue
                if listener is not None and listener.barge.is_set():
                    log.info("call.barge_in", by="speech", after_ms=round(
                        (time.monotonic() - listener.started_at) * 1000))
                    return True
                if done in finished:
                    return False
        finally:
            if getter is not None and not getter.done():
                getter.cancel()
            if not self.leg.is_ended:
                await self.leg.stop_playback(player_id)

    async def _collect(self) -> Answer:
        loop = asyncio.get_running_loop()
        ask = self.ask
        deadline = loop.time() + (ask.inter_digit_s if self.entry.keys else ask.timeout_s)
        while True:
            if self.entry.done:
                return self.entry.answer()
            listener = self.listener
            if listener is not None and listener.finished:
                if self._take_final() and not self.entry.keys:
                    return self.speech_answer or Answer.none()
                await self._stop_listening()
                continue
            if listener is not None and listener.heard.is_set() and not self.entry.keys:
                # the caller is speaking: hold the no-input timer while partials keep coming, up to
                # max_speech_s (the service cuts the utterance there and sends what it heard)
                assert listener.heard_at is not None and listener.last_partial_at is not None
                until = min(listener.last_partial_at, listener.heard_at + ask.max_speech_s) + SPEECH_TAIL_S
                deadline = max(deadline, loop.time() + until - time.monotonic())
            remaining = deadline - loop.time()
            if remaining <= 0:
                return self.entry.answer()
            getter = asyncio.ensure_future(self.leg.digits.get())
            waits: set[asyncio.Future[Any]] = {getter, self.leg.ended}
            changed: asyncio.Future[Any] | None = None
            if listener is not None:
                listener.changed.clear()
                changed = asyncio.ensure_future(listener.changed.wait())
                waits.add(changed)
            try:
                finished = await _wait(waits, remaining)
            finally:
                for fut in (getter, changed):
                    if fut is not None and not fut.done():
                        fut.cancel()
            if getter in finished:
                dtmf = getter.result()
                self._key(dtmf.digit, dtmf.method)
                await self._stop_listening()
                deadline = loop.time() + ask.inter_digit_s
            if self.leg.ended in finished:
                raise LegEnded(self.leg.leg_id)


async def run_ask(leg: Leg, ask: Ask, prompts: Sequence[str], speech: SpeechClient | None,
                  *, sample_rate: int) -> Answer:
    answer = await Turn(leg, ask, speech, sample_rate).run(prompts)
    if answer.kind == "digits" and ask.max_digits > 1:
        log.info("call.digits", digits=mask_digits(answer.digits), count=len(answer.digits))
    elif answer.kind == "speech" and answer.digits:
        log.info("call.digits", digits=mask_digits(answer.digits), count=len(answer.digits), spoken=True)
    return answer
