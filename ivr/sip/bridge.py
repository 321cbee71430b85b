"""The one crossing between the SIP thread and asyncio.

pjsua2 is only ever touched from one dedicated thread: it pumps ``libHandleEvents`` and runs the
commands posted to it. Everything the library reports goes back to the event loop with
``call_soon_threadsafe``. The one other crossing is audio: :class:`FrameSink` takes the caller's
frames from the media clock thread (bounded, never blocking it) while a dial-plan node listens.
Nothing else in the product crosses threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import queue
import socket
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from ivr.core.errors import Unavailable
from ivr.core.logging import get_logger
from ivr.sip.engine import EngineConfig, SipEngine, SipFailed
from ivr.sip.events import SipEvent

log = get_logger(__name__)
_Command = tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]
FRAMES_MAX = 100  # 2 s of 20 ms frames waiting for the event loop; beyond that frames are dropped


class FrameSink:
    """Audio frames from the media clock thread to asyncio: bounded, drop-and-count, never blocking.

    ``push`` (clock thread) appends a copy under a short lock and wakes the event loop only when the
    buffer goes from empty to non-empty (one ``call_soon_threadsafe`` per batch, not per frame). When
    the loop falls more than ``max_frames`` behind, new frames are dropped and counted (``dropped``).
    The asyncio side iterates over ``chunks()``; ``close()`` ends the iteration.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_frames: int = FRAMES_MAX) -> None:
        self._loop = loop
        self._max = max_frames
        self._lock = threading.Lock()
        self._frames: list[bytes] = []
        self._wake_pending = False
        self._ready = asyncio.Event()
        self.closed = False
        self.frames = 0          # frames accepted
        self.dropped = 0         # frames dropped because the loop fell behind
        self.frame_bytes = 0     # size of the first frame (the format the bridge really delivers)

    def push(self, pcm: bytes) -> None:  # media clock thread
        if self.closed or not pcm:
            return
        with self._lock:
            if len(self._frames) >= self._max:
                self.dropped += 1
                return
            self._frames.append(pcm)
            self.frames += 1
            if not self.frame_bytes:
                self.frame_bytes = len(pcm)
            wake, self._wake_pending = not self._wake_pending, True
        if wake and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing
                self._loop.call_soon_threadsafe(self._ready.set)

    def _take(self) -> list[bytes]:
        with self._lock:
            frames, self._frames = self._frames, []
            self._wake_pending = False
        return frames

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def chunks(self) -> AsyncIterator[bytes]:
        """Every frame batch as one bytes chunk, until ``close()``."""
        while not self.closed:
            await self._ready.wait()
            self._ready.clear()
            frames = self._take()
            if frames and not self.closed:
                yield b"".join(frames)


class SipThread:
    def __init__(self, cfg: EngineConfig, on_event: Callable[[SipEvent], None], *, poll_ms: int,
                 new_leg_id: Callable[[], str], profile_to: str | None = None) -> None:
        self._cfg = cfg
        self._profile_to = profile_to  # a benchmark's: the SIP thread's CPU profile written here at its end
        self._on_event = on_event
        self._poll_ms = poll_ms
        self._new_leg_id = new_leg_id
        self._commands: queue.SimpleQueue[_Command | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready: asyncio.Future[None] | None = None
        self._context: contextvars.Context | None = None
        # A CRLF keep-alive to our own SIP port ends the SIP thread's poll at once (pjsip ignores it),
        # so the poll can be long (no idle wake-ups) and commands still run without delay.
        self._waker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._waker.setblocking(False)
        self.engine: SipEngine | None = None

    def _emit(self, event: SipEvent) -> None:  # any thread
        assert self._loop is not None
        if not self._loop.is_closed():
            # run in the asyncio side's context (log bindings), not the SIP thread's empty one
            self._loop.call_soon_threadsafe(self._on_event, event, context=self._context)

    def _resolve(self, fut: asyncio.Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
        def settle() -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(settle)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._context = contextvars.copy_context()
        self._ready = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name="sip", daemon=True)
        self._thread.start()
        await self._ready

    def _run(self) -> None:
        if not self._profile_to:
            self._serve()
            return
        import cProfile  # bench/setup_profile.py's tool, never on in production
        import time

        profiler = cProfile.Profile(time.thread_time)  # this thread's CPU, not the wall clock
        profiler.enable()
        try:
            self._serve()
        finally:
            profiler.disable()
            profiler.dump_stats(self._profile_to)

    def _serve(self) -> None:
        assert self._ready is not None
        engine = SipEngine(self._cfg, self._emit, self._new_leg_id)
        try:
            engine.start()
        except Exception as exc:
            # Destroy the library here: a pjsua2 object collected on another thread aborts the process.
            reason = exc.info() if hasattr(exc, "info") else repr(exc)
            del exc
            engine.shutdown()
            del engine
            gc.collect()
            self._resolve(self._ready, exc=Unavailable(f"SIP endpoint failed to start: {reason}",
                                                       code="sip.start_failed"))
            return
        self.engine = engine
        self._resolve(self._ready)
        running = True
        while running:
            engine.poll(self._poll_ms)
            while True:
                try:
                    cmd = self._commands.get_nowait()
                except queue.Empty:
                    break
                if cmd is None:
                    running = False
                    break
                fn, args, fut = cmd
                try:
                    self._resolve(fut, fn(engine, *args))
                except Exception as exc:
                    # The traceback's frames (and any pjsua2 object in them) must die here, on the
                    # SIP thread: freed on the asyncio side, a pjsua2 destructor asserts (seen: a
                    # worker aborted with "Calling pjlib from unknown/external thread").
                    pj_error = exc.info() if hasattr(exc, "info") else None  # pj.Error: str() is empty
                    log.info("sip.command_failed", command=getattr(fn, "__name__", "?"),
                             error=pj_error or repr(exc))
                    self._resolve(fut, exc=SipFailed(pj_error) if pj_error else exc.with_traceback(None))
                    del exc
        engine.shutdown()
        self.engine = None

    async def set_draining(self, on: bool) -> None:
        """Answer every new INVITE 503 + Retry-After (calls in progress go on), or stop doing so."""
        await self.call(SipEngine.set_draining, on)

    async def relink(self, on: list[tuple[str, str]], off: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Change who hears whom between legs in one go; the ``on`` pairs made (see SipEngine.relink)."""
        made: list[tuple[str, str]] = await self.call(SipEngine.relink, on, off)
        return made

    async def start_call_recording(self, paths: list[str], silence_wav: str) -> int:
        """Two-channel recording on the bridge (see SipEngine.start_call_recording); its id."""
        rec_id: int = await self.call(SipEngine.start_call_recording, paths, silence_wav)
        return rec_id

    async def record_sources(self, rec_id: int, on: list[tuple[str, int]],
                             off: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Connect / disconnect ``(leg, channel)`` pairs of a recording; the ``on`` pairs made."""
        made: list[tuple[str, int]] = await self.call(SipEngine.record_sources, rec_id, on, off)
        return made

    async def stop_call_recording(self, rec_id: int) -> None:
        await self.call(SipEngine.stop_call_recording, rec_id)

    async def grants_extra_leg(self) -> bool:
        """Whether the leg budget grants an extra leg (a consult or conference target) now."""
        return bool(await self.call(_grants_extra))

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(engine, *args)`` on the SIP thread and return its result."""
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._commands.put((fn, args, fut))
        self._wake()
        return await fut

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._waker.sendto(b"\r\n\r\n", (self._cfg.host, self._cfg.sip_port))

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._commands.put(None)
        self._wake()
        await asyncio.to_thread(self._thread.join, 15)
        self._thread = None
        self._waker.close()


def _grants_extra(engine: SipEngine) -> bool:
    return engine.grants_extra()
