"""A call's recording on the worker: two channels on the conference bridge, paused without a gap,
compressed and stored after the call.

- **Channels:** channel 0 (left) hears the caller's leg, channel 1 (right) the agent side: the
  agent's leg and a consult or conference target's. Each is a pjmedia WAV recorder on the worker's
  bridge (no call leg is spent, see :mod:`ivr.core.leg_budget`), both created in one SIP-thread
  command so their samples line up (``start_call_recording`` of the SIP thread).
- **Pause:** every source is disconnected; the bridge's silent *keeper* still feeds both files, so
  the pause is silence of the right length and is listed in ``pauses`` (ms offsets). A sensitive
  ``collect`` pauses it the same way: its keys and words never reach the file.
- **After the call** (:class:`RecordingFinisher`, one at a time per worker, ffmpeg niced): the two
  WAVs become one stereo Opus (or MP3) file, its SHA-256 and duration go to the index
  (:meth:`ivr.queues.store.QueueStore.recording_saved`) and the file to the store
  (:mod:`ivr.core.recording_store`). The raw WAVs and a ``meta.json`` wait in the worker's spool until
  then: a worker that dies leaves them, and its successor finishes them (:meth:`RecordingFinisher.recover`).

Who hears what is decided by :class:`ivr.calls.agent_call.AgentCall` (after each change of the call's
media it calls :meth:`CallRecording.follow`); this object only connects what it is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import time
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ivr.core.config import Settings
from ivr.core.logging import get_logger
from ivr.core.recording_store import BadKey, RecordingStore, recording_key
from ivr.queues.store import QueueStore
from ivr.sip.bridge import SipThread

log = get_logger(__name__)
CALLER, AGENT_SIDE = 0, 1
Source = tuple[str, int]  # (leg id, channel)
SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
FFMPEG_TIMEOUT_S = 600.0
CLOSE_WAIT_S = 2.0  # how long the finisher waits for the bridge to close a recorder's file


def policy_for(settings: Settings, queue: str, override: str | None = None) -> str:
    """The recording policy of a call answered from ``queue``: the plan's queue node (``override``),
    else the queue's settings, else ``recording.policy``; ``never`` when recording is off."""
    if not settings.recording.enabled:
        return "never"
    if override:
        return override
    qs = settings.routing.queues.get(queue)
    if qs is not None and qs.recording is not None:
        return qs.recording
    return settings.recording.policy


def retention_days(settings: Settings, queue: str) -> int:
    qs = settings.routing.queues.get(queue)
    if qs is not None and qs.recording_retention_days is not None:
        return qs.recording_retention_days
    return settings.recording.retention_days


def silence_wav(spool: Path, rate: int) -> Path:
    """A second of silence at the bridge clock (the keeper loops it), written once per spool."""
    path = spool / f"silence-{rate}.wav"
    if not path.exists():
        spool.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(bytes(2 * rate))
        os.replace(tmp, path)
    return path


class CallRecording:
    """The recording of one call while it runs (see the module's text)."""

    def __init__(self, sip: SipThread, store: QueueStore, settings: Settings, *, worker: str, call_id: str,
                 ivr: bool = False) -> None:
        self.sip, self.store, self.settings = sip, store, settings
        self.call_id = call_id
        self.recording_id = "R" + secrets.token_hex(10)
        self.dir = settings.recording_spool / worker / self.recording_id
        self.ivr = ivr
        self.queue = ""
        self.agents: list[str] = []
        self.pauses: list[list[int]] = []
        self.pause_reasons: set[str] = set()  # paused while any: "agent", "sensitive", "policy"
        self._rec: int | None = None
        self._t0 = 0.0
        self._started_ms = 0
        self._paused_at: float | None = None
        self._want: set[Source] = set()
        self._have: set[Source] = set()
        self._lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self._rec is not None

    @property
    def paused(self) -> bool:
        return bool(self.pause_reasons)

    def _ms(self) -> int:
        return round((time.monotonic() - self._t0) * 1000)

    async def start(self, *, by: str, paused_for: str = "") -> None:
        """Start both channels (paused for ``paused_for`` when given: the file runs silent until a
        resume) and write ``meta.json`` so a successor can finish it if this worker dies."""
        rate = self.settings.workers.clock_rate
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        keeper = silence_wav(self.settings.recording_spool, rate)
        paths = [str(self.dir / "caller.wav"), str(self.dir / "agent.wav")]
        self._rec = await self.sip.start_call_recording(paths, str(keeper))
        self._t0 = time.monotonic()
        self._started_ms = int(time.time() * 1000)
        if paused_for:
            self.pause_reasons.add(paused_for)
            self._paused_at = self._t0
        self._write_meta()
        await self.store.recording_state(self.call_id, "started", by=by)
        if paused_for:
            await self.store.recording_state(self.call_id, "paused", by=paused_for)
        log.info("recording.started", recording_id=self.recording_id, by=by, ivr=self.ivr, paused=bool(paused_for))

    def _write_meta(self, **extra: Any) -> None:
        meta = {"recording_id": self.recording_id, "call_id": self.call_id, "started_at": self._started_ms,
                "clock_rate": self.settings.workers.clock_rate, "queue": self.queue, "agents": self.agents,
                "pauses": self.pauses, "ivr": self.ivr, **extra}
        tmp = self.dir / "meta.json.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.dir / "meta.json")

    async def follow(self, caller: str | None, agent_side: list[str], *, agents: Sequence[str] = ()) -> None:
        """What each channel hears from now on: the caller's leg, and the legs of the agent side
        (``agents``: who is on it, remembered for access and the index)."""
        async with self._lock:
            new = [a for a in agents if a not in self.agents]
            if new:
                self.agents.extend(new)
                self._write_meta()
            self._want = ({(caller, CALLER)} if caller else set()) | {(leg, AGENT_SIDE) for leg in agent_side}
            await self._apply()

    async def _apply(self) -> None:
        if self._rec is None:
            return
        target = set() if self.paused else self._want
        on, off = sorted(target - self._have), sorted(self._have - target)
        if not on and not off:
            return
        made = await self.sip.record_sources(self._rec, on, off)
        self._have = (self._have - set(off)) | {(str(m[0]), int(m[1])) for m in made}

    async def pause(self, reason: str, *, by: str) -> bool:
        """Pause for ``reason`` (each reason is lifted by its own resume). False when it already was
        paused for that reason or is not running."""
        async with self._lock:
            if self._rec is None or reason in self.pause_reasons:
                return False
            first = not self.pause_reasons
            self.pause_reasons.add(reason)
            if first:
                self._paused_at = time.monotonic()
                await self._apply()
                await self.store.recording_state(self.call_id, "paused", by=by)
                log.info("recording.paused", recording_id=self.recording_id, reason=reason)
            return True

    async def resume(self, reason: str, *, by: str) -> bool:
        async with self._lock:
            if self._rec is None or reason not in self.pause_reasons:
                return False
            self.pause_reasons.discard(reason)
            if not self.pause_reasons:
                self._close_pause()
                await self._apply()
                await self.store.recording_state(self.call_id, "resumed", by=by)
                log.info("recording.resumed", recording_id=self.recording_id, reason=reason)
            return True

    def _close_pause(self) -> None:
        if self._paused_at is not None:
            start = round((self._paused_at - self._t0) * 1000)
            self.pauses.append([start, self._ms()])
            self._paused_at = None
            self._write_meta()

    async def stop(self) -> dict[str, Any] | None:
        """Close both files; the job for :class:`RecordingFinisher` (None when it never started)."""
        async with self._lock:
            if self._rec is None:
                return None
            rec, self._rec = self._rec, None
            if self.pause_reasons:
                self._close_pause()
            await self.sip.stop_call_recording(rec)
            self._write_meta(ended_at=int(time.time() * 1000))
            log.info("recording.stopped", recording_id=self.recording_id, seconds=round(self._ms() / 1000, 1))
            return json.loads((self.dir / "meta.json").read_text())  # type: ignore[no-any-return]


class RecordingFinisher:
    """Compresses, checks and stores finished recordings, one at a time (a call's end never waits
    for it). Jobs are spool directories with a ``meta.json``; see the module's text."""

    def __init__(self, settings: Settings, store: QueueStore, media: RecordingStore, *, worker: str) -> None:
        self.settings, self.store, self.media = settings, store, media
        self.spool = settings.recording_spool / worker
        self._sem = asyncio.Semaphore(1)
        self._pending: set[asyncio.Task[str | None]] = set()
        self.done = 0
        self.failed = 0

    def submit(self, job_dir: Path, *, leftover: bool = False) -> None:
        """Finish ``job_dir`` in the background (one at a time; :meth:`finish` logs what fails)."""
        task = asyncio.get_running_loop().create_task(self.finish(job_dir, leftover=leftover),
                                                      name=f"recording:{job_dir.name}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for the recordings being finished (a worker stopping); how many
        are left (they stay in the spool: the next start finishes them)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout_s)
        left = len(self._pending)
        for task in list(self._pending):
            task.cancel()
        return left

    async def recover(self) -> int:
        """Finish what a previous process of this worker left in its spool; how many were found."""
        jobs = await asyncio.to_thread(self.leftovers)
        for job in jobs:
            log.warning("recording.recovering", job=job.name)
            self.submit(job, leftover=True)
        return len(jobs)

    async def finish(self, job_dir: Path, *, leftover: bool = False) -> str | None:
        """Finish one recording: its id once stored and indexed, None when it failed (the spool
        directory stays, renamed ``*.failed``, for an operator: nothing is deleted that was not stored)."""
        async with self._sem:
            try:
                rid = await self._finish(job_dir, leftover=leftover)
            except Exception as exc:
                self.failed += 1
                # the message may quote ffmpeg, which names files: only the job's id leaves the worker
                detail = str(exc).replace(str(job_dir), "<job>")[:300]
                log.error("recording.finish_failed", job=job_dir.name, error=type(exc).__name__, detail=detail)
                await asyncio.to_thread(_set_aside, job_dir)
                return None
            self.done += 1
            return rid

    async def _finish(self, job_dir: Path, *, leftover: bool) -> str:
        # a leftover's writer is dead: nothing will close its files, no wait for it
        meta, duration_ms = await asyncio.to_thread(_read_job, job_dir, self.settings.workers.clock_rate,
                                                    0.0 if leftover else CLOSE_WAIT_S)
        rid = str(meta["recording_id"])
        if not SAFE.match(rid) or not SAFE.match(str(meta.get("call_id", ""))):
            raise ValueError("meta.json names a bad id")
        rate = int(meta.get("clock_rate") or self.settings.workers.clock_rate)
        cfg = self.settings.recording
        ext = "opus" if cfg.format == "opus" else "mp3"
        out = job_dir / f"out.{ext}"
        caller, agent = job_dir / "caller.wav", job_dir / "agent.wav"
        codec = (["-c:a", "libopus", "-application", "voip"] if ext == "opus" else ["-c:a", "libmp3lame"])
        argv = ["nice", "-n", str(cfg.compress_nice), "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
                "-y", "-i", str(caller), "-i", str(agent), "-filter_complex",
                "[0:a][1:a]join=inputs=2:channel_layout=stereo[a]", "-map", "[a]", *codec,
                "-b:a", f"{cfg.bitrate_kbps}k", str(out)]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), FFMPEG_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError("ffmpeg took too long") from None
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {err.decode(errors='replace')[-300:]}")
        digest = await asyncio.to_thread(_sha256, out)
        started = int(meta["started_at"])
        key = recording_key(rid, started, ext)
        size = await asyncio.to_thread(self.media.put, key, out)
        queue = str(meta.get("queue") or "")
        agents = [str(a) for a in meta.get("agents") or []]
        days = retention_days(self.settings, queue)
        await self.store.recording_saved({
            "id": rid, "call_id": meta["call_id"], "started_at": started,
            "ended_at": int(meta.get("ended_at") or started + duration_ms), "duration_ms": duration_ms,
            "format": ext, "channels": "caller,agent", "clock_rate": rate, "bytes": size, "sha256": digest,
            "key": key, "store": self.media.name, "agents": json.dumps(agents),
            "agent_id": agents[0] if agents else "", "queue": queue,
            "pauses": json.dumps(meta.get("pauses") or []), "ivr": "1" if meta.get("ivr") else "",
            "delete_after": started + days * 86_400_000,
        }, transcribe=self.transcribe)
        await asyncio.to_thread(shutil.rmtree, job_dir, True)
        log.info("recording.saved", recording_id=rid, duration_ms=duration_ms, bytes=size)
        return rid

    @property
    def transcribe(self) -> bool:
        """Queue each stored recording for the transcriber (``quality.transcribe``, docs/quality.md)."""
        return self.settings.quality.transcribe

    def leftovers(self) -> list[Path]:
        """Spool directories a previous process of this worker left (it died mid-call or before
        finishing): each has a ``meta.json``."""
        if not self.spool.is_dir():
            return []
        return sorted(d for d in self.spool.iterdir() if d.is_dir() and (d / "meta.json").is_file()
                      and not d.name.endswith(".failed"))


def _set_aside(job_dir: Path) -> None:
    with contextlib.suppress(OSError):
        job_dir.rename(job_dir.with_name(job_dir.name + ".failed"))


def _read_job(job_dir: Path, rate: int, close_wait_s: float) -> tuple[dict[str, Any], int]:
    """The job's meta.json and its length in ms, the WAV headers made right first."""
    meta = json.loads((job_dir / "meta.json").read_text())
    if not isinstance(meta, dict):
        raise ValueError("meta.json is not an object")
    for wav in ("caller.wav", "agent.wav"):
        _wait_closed(job_dir / wav, close_wait_s)
        _fix_header(job_dir / wav)
    rate = int(meta.get("clock_rate") or rate)
    # the stereo file is as long as the shorter channel (ffmpeg's join): so is the record's duration
    return meta, min(_wav_ms(job_dir / wav, rate) for wav in ("caller.wav", "agent.wav"))


def _wait_closed(path: Path, timeout_s: float) -> bool:
    """Wait until the recorder closed ``path``: its header's data size is the file's. pjmedia removes
    a port from the conference bridge asynchronously (on the clock thread, after the SIP thread's
    command returned), and the writer flushes its buffer and writes the header only then. False
    after ``timeout_s`` (a recorder whose process died: :func:`_fix_header` rebuilds the header)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            size = path.stat().st_size
            with path.open("rb") as f:
                head = f.read(44)
        except OSError:
            return False
        if len(head) == 44 and int.from_bytes(head[40:44], "little") == size - 44 and size > 44:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _fix_header(path: Path) -> None:
    """Make the RIFF and data sizes of a recorder's 44-byte WAV header match the file (a recorder
    destroyed normally wrote them; one whose process died did not)."""
    size = path.stat().st_size
    if size < 44:
        raise ValueError(f"{path.name} is not a recording ({size} bytes)")
    with path.open("r+b") as f:
        head = f.read(44)
        if head[:4] != b"RIFF" or head[36:40] != b"data":
            return  # not the plain header pjmedia writes: leave it to ffmpeg
        f.seek(4)
        f.write((size - 8).to_bytes(4, "little"))
        f.seek(40)
        f.write((size - 44).to_bytes(4, "little"))


def _wav_ms(path: Path, rate: int) -> int:
    """Length of a recorder's WAV in ms (from its size: a WAV whose writer died has no length in
    its header)."""
    return max(0, (path.stat().st_size - 44) // 2 * 1000 // rate)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


async def delete_expired(store: QueueStore, media: RecordingStore, *, limit: int = 100,
                         now_ms: int | None = None) -> int:
    """Delete the recordings past their ``delete_after``: the file first, then the index entries
    (``recording.deleted``, reason retention). A file already gone is fine; a key that is not one of
    ours is never touched on disk (its index entry goes). Returns how many were looked at."""
    due = await store.recordings_expired(now_ms=now_ms, limit=limit)
    for rid, key in due:
        try:
            removed = await asyncio.to_thread(media.delete, key) if key else False
        except BadKey:
            removed = False
            log.error("recording.bad_key", recording_id=rid)
        except OSError as exc:
            log.error("recording.delete_failed", recording_id=rid, error=type(exc).__name__)
            continue  # the index keeps it: tried again next time
        await store.recording_deleted(rid, reason="retention", by="retention")
        log.info("recording.expired", recording_id=rid, file_removed=removed)
    return len(due)
