"""The one crossing between the SIP thread and asyncio.

pjsua2 is only ever touched from one dedicated thread: it pumps ``libHandleEvents`` and runs the
commands posted to it. Everything the library reports goes back to the event loop with
``call_soon_threadsafe``. Nothing else in the product crosses threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

from ivr.core.errors import Unavailable
from ivr.core.logging import get_logger
from ivr.sip.engine import EngineConfig, SipEngine
from ivr.sip.events import SipEvent

log = get_logger(__name__)
_Command = tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]


class SipThread:
    def __init__(self, cfg: EngineConfig, on_event: Callable[[SipEvent], None], *, poll_ms: int,
                 new_leg_id: Callable[[], str]) -> None:
        self._cfg = cfg
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
                    self._resolve(fut, exc=exc)
        engine.shutdown()
        self.engine = None

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
