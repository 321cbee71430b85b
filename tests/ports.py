"""Loopback ports for test servers, handed out once per test session, unique across processes.

Ports come from a band below the kernel's ephemeral range (``ip_local_port_range``, 32768+ by
default), so no client socket of another process (sipp's media sockets, Kamailio's probes, redis
clients) can take a port between the moment it is handed out and the moment a server binds it,
and no port is handed out twice in a session. Each port is checked free for TCP and UDP.

Ports come in blocks of ``STRIDE``: a port used as a media port (sipp ``-mp``, a worker's RTP)
takes its neighbours too (RTCP on port+1, sipp's video on port+2/+3), so the next port handed out
is never one of them.

Several test processes at once (pytest-xdist workers, two phases of ``make test`` side by side,
another checkout's run on the same machine): each band is cut into chunks, and a process hands out
ports only from chunks it has claimed with an exclusive ``flock`` on a file named after the chunk
(``$TMPDIR/ivr-test-ports-<uid>/``). The lock lives as long as the process (the kernel drops it when
the process dies, so a crashed run leaves nothing stale), so two live processes never hand out the
same port, even before either has bound it. A process holding its share of chunks (or finding every
chunk claimed) hands out its own chunks again, still checking each port free; if it has none it
falls back to the bind check alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import tempfile
import threading
from pathlib import Path

LOOPBACK = "127.0.0.1"
_BAND = (12000, 19999)       # below the ephemeral range and below the workers' RTP base (20000)
STRIDE = 4
_RANGE_BAND = (20000, 32767)  # contiguous ranges (a pool's SIP and RTP ports), still below the ephemeral range
_lock = threading.Lock()
_LOCK_DIR = Path(tempfile.gettempdir()) / f"ivr-test-ports-{os.getuid()}"


def _free(port: int, host: str) -> bool:
    for p in range(port, port + STRIDE):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                try:
                    s.bind((host, p))
                except OSError:
                    return False
    return True


class _Band:
    """One band of ports, cut into chunks this process claims one (or a run of several) at a time."""

    def __init__(self, band: tuple[int, int], chunk: int, seed: int) -> None:
        self.low, self.chunk = band[0], chunk
        self.count = (band[1] - band[0] + 1) // chunk
        self.start = random.Random(seed).randrange(self.count)  # spread processes over the band
        self.held: dict[int, int] = {}  # chunk index -> the open, flock'ed file descriptor
        self.pos = self.end = 0  # the part of a claimed run not handed out yet: [pos, end)
        self._reuse = 0

    def _claim(self, index: int) -> bool:
        if index in self.held:
            return False
        _LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(_LOCK_DIR / f"{self.low + index * self.chunk}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.held[index] = fd
        return True

    def _release(self, index: int) -> None:
        fd = self.held.pop(index)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def next_run(self, size: int) -> bool:
        """Move [pos, end) to a run of claimed chunks holding at least ``size`` ports: a fresh one while
        this process holds less than half the band (room for a second xdist worker), else one it
        already holds, in turn (its ports are bind-checked again), else a fresh one after all. False if
        there is none."""
        need = -(-size // self.chunk)
        if len(self.held) + need <= max(1, self.count // 2) and self._claim_run(need):
            return True
        return self._reuse_run(need) or self._claim_run(need)

    def _claim_run(self, need: int) -> bool:
        for step in range(self.count):
            first = (self.start + step) % self.count
            if first + need > self.count:
                continue
            got = []
            for index in range(first, first + need):
                if not self._claim(index):
                    break
                got.append(index)
            if len(got) == need:
                self.start = (first + need) % self.count
                self._set(first, need)
                return True
            for index in got:
                self._release(index)
        return False

    def _reuse_run(self, need: int) -> bool:
        runs = sorted(self.held)
        for _ in range(len(runs)):
            first = runs[self._reuse % len(runs)]
            self._reuse += 1
            if all(first + i in self.held for i in range(need)):
                self._set(first, need)
                return True
        return False

    def _set(self, first: int, need: int) -> None:
        self.pos, self.end = self.low + first * self.chunk, self.low + (first + need) * self.chunk

    def take(self, size: int, host: str) -> int | None:
        """A base port such that base..base+size-1 lie in claimed chunks and are free (bind-checked)."""
        for _ in range(self.count * self.chunk // STRIDE):
            if self.pos + size > self.end and not self.next_run(size):
                return None
            base = self.pos
            self.pos += size
            if all(_free(p, host) for p in range(base, base + size, STRIDE)):
                return base
        return None


_ports = _Band(_BAND, 256, os.getpid())
_ranges = _Band((_RANGE_BAND[0], _RANGE_BAND[1]), 1024, os.getpid() + 1)


def _unclaimed(band: tuple[int, int], size: int, host: str) -> int:
    """The fallback with no chunk to be had: any free run in the band, checked by binding only."""
    rng = random.Random()
    for _ in range((band[1] - band[0]) // STRIDE):
        base = band[0] + STRIDE * rng.randrange((band[1] - band[0] + 1 - size) // STRIDE)
        if all(_free(p, host) for p in range(base, base + size, STRIDE)):
            return base
    raise RuntimeError(f"no free range of {size} loopback ports left in {band}")


def free_udp_tcp_port(host: str = LOOPBACK) -> int:
    """A port on ``host`` free for both TCP and UDP that no other caller (in any test process) got."""
    with _lock:
        port = _ports.take(STRIDE, host)
        return port if port is not None else _unclaimed(_BAND, STRIDE, host)


def free_port_range(count: int, host: str = LOOPBACK) -> int:
    """A base port such that base..base+count-1 are free for TCP and UDP, handed out once per session."""
    size = -(-count // STRIDE) * STRIDE
    with _lock:
        base = _ranges.take(size, host)
        return base if base is not None else _unclaimed(_RANGE_BAND, size, host)
