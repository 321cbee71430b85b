"""A loopback packet capture for tests (AF_PACKET, needs root as `make test` runs here).

Records every UDP datagram (and, for ordering checks, every TCP segment's payload) on ``lo`` in the
kernel's delivery order with a wall-clock stamp, so a test can check what really went over the wire
(SIP requests, RTP payloads, a WebSocket frame) independently of the code under test.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33     # <asm-generic/socket.h>: as root, past net.core.rmem_max
SOL_PACKET = 263
PACKET_STATISTICS = 6   # struct tpacket_stats {tp_packets, tp_drops}: read (and reset) by getsockopt
RCVBUF = 32 * 1024 * 1024


class RtpView:
    """RTP fields of a captured UDP payload."""

    payload: bytes

    @property
    def is_rtp(self) -> bool:
        return len(self.payload) >= 12 and self.payload[0] >> 6 == 2 and not self.payload[:3].isalpha()

    @property
    def rtp_payload_type(self) -> int:
        return self.payload[1] & 0x7F

    @property
    def rtp_payload(self) -> bytes:
        cc = self.payload[0] & 0x0F
        return self.payload[12 + 4 * cc:]


@dataclass(frozen=True)
class Datagram(RtpView):
    ts: float
    src: int
    dst: int
    payload: bytes
    proto: int = 17  # 17 UDP, 6 TCP


class LoopbackSniffer:
    def __init__(self, ports: set[int] | None = None, max_seconds: float = 120.0) -> None:
        self.ports = ports
        self.max_seconds = max_seconds
        self.packets: list[Datagram] = []
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        # every packet on lo comes here (other tests' RTP and Redis too) and one Python thread reads
        # them: a loaded machine must not make the kernel drop what the test judges (an RTP "gap"
        # that was only the capture's); 32 MB holds several seconds of the busiest suite's traffic
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except PermissionError:  # without CAP_NET_ADMIN: as much as net.core.rmem_max allows
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, name="sniffer", daemon=True)

    def __enter__(self) -> LoopbackSniffer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._count_drops()
        self._sock.close()

    drops = 0  # packets the kernel dropped because the capture fell behind (known once stopped)

    def _count_drops(self) -> None:
        try:
            _packets, dropped = struct.unpack("II", self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        except OSError:
            return
        self.drops += dropped

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                frame, addr = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING:  # loopback shows every packet twice: keep the delivery
                continue
            ts = time.time()
            if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] not in (6, 17):
                continue
            src, dst = struct.unpack("!HH", ip[ihl:ihl + 4])
            if self.ports is not None and src not in self.ports and dst not in self.ports:
                continue
            if ip[9] == 17:
                length = struct.unpack("!H", ip[ihl + 4:ihl + 6])[0]
                self.packets.append(Datagram(ts, src, dst, bytes(ip[ihl + 8:ihl + length])))
            else:
                total, data_at = struct.unpack("!H", ip[2:4])[0], ihl + (ip[ihl + 12] >> 4) * 4
                if total > data_at:
                    self.packets.append(Datagram(ts, src, dst, bytes(ip[data_at:total]), proto=6))

    def sip_requests(self, method: str, dst: int) -> list[Datagram]:
        return [p for p in self.packets
                if p.proto == 17 and p.dst == dst and p.payload.startswith(method.encode() + b" ")]

    def tcp_containing(self, data: bytes, src: int) -> list[tuple[int, Datagram]]:
        """TCP segments from port ``src`` whose payload contains ``data``, with their capture index."""
        return [(i, p) for i, p in enumerate(self.packets) if p.proto == 6 and p.src == src and data in p.payload]

    def rtp(self, *, src: int | None = None, dst: int | None = None, after: float = 0.0) -> list[Datagram]:
        return [p for p in self.packets if p.proto == 17 and p.is_rtp and p.ts >= after
                and (src is None or p.src == src) and (dst is None or p.dst == dst)]
