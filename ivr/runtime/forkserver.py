"""The parent ``ivr run`` forks its workers from (``ivr worker-pool``, internal).

A worker started as a program of its own imports about 1.6 s of Python (aiohttp, redis, structlog,
pydantic, the dial-plan model, pjsua2) into memory of its own: ~50 MB of PSS per worker, and 200
workers took 90 s to start. This process imports all of that once, freezes it for the garbage
collector (``gc.freeze``: the children's collections never write to the inherited objects, so the
pages stay shared), and then forks one child per worker on request. Nothing here starts a thread or
an event loop, and pjsua2 is initialised only in the child, after the fork.

It speaks JSON lines on the socket it inherited (``--fd``) from the supervisor
(:mod:`ivr.runtime.forked`):

- ``{"spawn": <index>}`` → ``{"spawned": <index>, "pid": <pid>}`` (or ``{"spawned": <index or
  null>, "error": "..."}``), one reply per request, in order; a line that is no request at all gets
  ``{"error": "..."}``;
- whenever a child exits: ``{"exited": <pid>, "code": <returncode>}`` (negative: the signal).

It ignores SIGTERM and SIGINT (``systemctl stop`` and Ctrl-C reach every process of the group: the
workers drain, this process must outlive them) and exits when the supervisor closes the socket or
dies. Each child gets its own process group (the supervisor signals its group, as for any child) and
``PR_SET_PDEATHSIG``: it dies with this process, which dies with the supervisor.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path

from ivr.core.config import Settings, load_settings
from ivr.core.errors import ConfigError
from ivr.core.logging import configure, get_logger
from ivr.core.process import die_with_parent
from ivr.dialplan.loader import parse_file, plan_files, validate
from ivr.queues.connection import connect
from ivr.queues.store import QueueStore
from ivr.runtime import worker

log = get_logger(__name__)
MAX_LINE = 4096  # a request is a few bytes; a longer line is a broken peer


def rehearse(settings: Settings) -> None:
    """Do once, here, what every worker does first and has no side effect: load the plans (their
    lazy imports, the validators' and the interpreter's first-run work) and make a queue store (the
    Lua scripts' text, ~9 M characters, cached per process). What the children then only read stays
    shared: this cut an idle forked worker's private memory from 31 MB to 12 MB."""
    import ivr.dialplan.checks  # noqa: F401 - imported by the plan loader on first use

    for path in plan_files(settings.dialplans_dir):
        with contextlib.suppress(Exception):  # a broken plan is the workers' to report, as ever
            validate(parse_file(path))
    QueueStore(connect(settings.redis), settings.redis.prefix)  # no connection is made until a command


def _run_child(settings: Settings, index: int, server_pid: int) -> int:
    """In the forked child: become a worker process of its own, run the worker, return its exit code."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    os.setpgid(0, 0)
    die_with_parent()
    if os.getppid() != server_pid:  # the server died before the line above took effect
        return 1
    worker.main(settings, index)
    return 0


class Server:
    def __init__(self, settings: Settings, sock: socket.socket) -> None:
        self.settings = settings
        self.sock = sock
        self.children: set[int] = set()
        self.buffer = b""
        self.wake_fds: tuple[int, int] = (-1, -1)

    def serve(self) -> None:
        self.wake_fds = wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the wake-up fd
        signal.set_wakeup_fd(wake_w)
        rehearse(self.settings)
        if threading.active_count() != 1:  # a thread would not survive the fork, its locks might
            raise RuntimeError(f"the worker pool's parent has {threading.active_count()} threads")
        gc.collect()
        gc.freeze()
        log.info("worker_pool.ready", pid=os.getpid())
        try:
            while True:  # ends when the supervisor closes the socket (or dies: PR_SET_PDEATHSIG)
                try:
                    ready, _, _ = select.select([self.sock.fileno(), wake_r], [], [])
                except InterruptedError:
                    continue
                if wake_r in ready:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(wake_r, 512):
                            pass
                    self._reap()
                if self.sock.fileno() in ready and not self._read():
                    return
        finally:
            log.info("worker_pool.stopped", children=len(self.children))

    def _read(self) -> bool:
        """Serve the requests that arrived; False when the supervisor has gone."""
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self._request(line)
        if len(self.buffer) > MAX_LINE:
            log.error("worker_pool.bad_request", error="line too long")
            return False
        return True

    def _request(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
            index = msg["spawn"]
        except (ValueError, KeyError, TypeError) as exc:  # no request at all: nothing to reply to in order
            log.error("worker_pool.bad_request", error=repr(exc))
            self._send({"error": f"not a request: {exc!r}"})
            return
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < self.settings.workers.maximum:
            log.error("worker_pool.bad_request", error=f"no worker index {index!r}")
            self._send({"spawned": None, "error": f"no worker index {index!r}"})
            return
        try:
            pid = self._fork(index)
        except OSError as exc:
            self._send({"spawned": index, "error": str(exc)})
            return
        self.children.add(pid)
        self._send({"spawned": index, "pid": pid})

    def _fork(self, index: int) -> int:
        server_pid = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:  # the child never returns from here
            signal.set_wakeup_fd(-1)  # before its pipe is closed: a signal must not write to a reused fd
            self.sock.close()
            for fd in self.wake_fds:
                os.close(fd)
            code = _run_child(self.settings, index, server_pid)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            # no interpreter shutdown: it would walk (and write to) every object shared with the parent
            os._exit(code)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self._send({"exited": pid, "code": os.waitstatus_to_exitcode(status)})  # as Popen.returncode

    def _send(self, msg: dict[str, object]) -> None:
        self.sock.sendall(json.dumps(msg).encode() + b"\n")


def main(settings_file: Path, fd: int) -> int:
    settings = load_settings(settings_file)
    configure(settings.log_level, settings.log_format, role="worker")
    try:
        sock = socket.socket(fileno=fd)
        sock.setblocking(True)
    except OSError as exc:
        raise ConfigError(f"--fd {fd} is not the socket `ivr run` passes ({exc.strerror})",
                          code="worker_pool.no_socket") from None
    try:
        Server(settings, sock).serve()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the supervisor has gone: the children die with this process
    return 0
