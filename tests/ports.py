"""Loopback ports for test servers, handed out once per test session.

Ports come from a band below the kernel's ephemeral range (``ip_local_port_range``, 32768+ by
default), so no client socket of another process (sipp's media sockets, Kamailio's probes, redis
clients) can take a port between the moment it is handed out and the moment a server binds it,
and no port is handed out twice in a session. Each port is checked free for TCP and UDP.

Ports come in blocks of ``STRIDE``: a port used as a media port (sipp ``-mp``, a worker's RTP)
takes its neighbours too (RTCP on port+1, sipp's video on port+2/+3), so the next port handed out
is never one of them.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading

LOOPBACK = "127.0.0.1"
_BAND = (12000, 19999)       # below the ephemeral range and below the workers' RTP base (20000)
STRIDE = 4
_lock = threading.Lock()
_BLOCKS = (_BAND[1] - _BAND[0] + 1) // STRIDE
_start = random.Random(os.getpid()).randrange(_BLOCKS)
_next = itertools.count()


def _free(port: int, host: str) -> bool:
    for p in range(port, port + STRIDE):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                try:
                    s.bind((host, p))
                except OSError:
                    return False
    return True


def free_udp_tcp_port(host: str = LOOPBACK) -> int:
    """A port on ``host`` free for both TCP and UDP that no other caller in this session got."""
    with _lock:
        for _ in range(_BLOCKS):
            port = _BAND[0] + STRIDE * ((_start + next(_next)) % _BLOCKS)
            if _free(port, host):
                return port
    raise RuntimeError("no free loopback port left in the test band")


_RANGE_BAND = (20000, 32767)  # contiguous ranges (a pool's SIP and RTP ports), still below the ephemeral range
_range_next = _RANGE_BAND[0] + STRIDE * random.Random(os.getpid() + 1).randrange(
    (_RANGE_BAND[1] - _RANGE_BAND[0]) // (2 * STRIDE))


def free_port_range(count: int, host: str = LOOPBACK) -> int:
    """A base port such that base..base+count-1 are free for TCP and UDP, handed out once per session."""
    global _range_next
    size = -(-count // STRIDE) * STRIDE
    with _lock:
        for _ in range((_RANGE_BAND[1] - _RANGE_BAND[0]) // STRIDE):
            if _range_next + size > _RANGE_BAND[1]:
                _range_next = _RANGE_BAND[0]
            base, _range_next = _range_next, _range_next + size
            if all(_free(p, host) for p in range(base, base + size, STRIDE)):
                return base
    raise RuntimeError(f"no free range of {count} loopback ports left")
