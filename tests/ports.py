"""Loopback ports for test servers, handed out once per test session.

Ports come from a band below the kernel's ephemeral range (``ip_local_port_range``, 32768+ by
default), so no client socket of another process (sipp's media sockets, Kamailio's probes, redis
clients) can take a port between the moment it is handed out and the moment a server binds it,
and no port is handed out twice in a session. Each port is checked free for TCP and UDP.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading

LOOPBACK = "127.0.0.1"
_BAND = (12000, 19999)       # below the ephemeral range and below the workers' RTP base (20000)
_lock = threading.Lock()
_start = _BAND[0] + random.Random(os.getpid()).randrange(_BAND[1] - _BAND[0])
_next = itertools.count()


def _free(port: int, host: str) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_udp_tcp_port(host: str = LOOPBACK) -> int:
    """A port on ``host`` free for both TCP and UDP that no other caller in this session got."""
    span = _BAND[1] - _BAND[0] + 1
    with _lock:
        for _ in range(span):
            port = _BAND[0] + (_start - _BAND[0] + next(_next)) % span
            if _free(port, host):
                return port
    raise RuntimeError("no free loopback port left in the test band")
