"""Test audio for sipp: speech rendered to G.711 / G.722 and written as an RTP pcap, plus G.711 tables.

sipp's ``play_pcap_audio`` replays the UDP payloads of an Ethernet/IPv4/UDP capture at the pace of the
capture's timestamps, rewriting addresses and ports to the call's media; the RTP header (payload type,
sequence numbers, timestamps, SSRC) goes out as written here. sipp cannot take variables in pcap
paths, so the files are made at test time in a temp dir and the scenario is rendered with their path
(``tests/scenarios.render_scenario``).

- :func:`speech_wav`: espeak-ng says a sentence, ffmpeg resamples it to mono 16-bit at a given rate.
- :func:`encode`: ffmpeg encodes PCM to ``pcmu`` / ``pcma`` / ``g722`` (an implementation other than
  the one under test); :func:`g722_decode` decodes G.722 back with ffmpeg.
- :func:`rtp_packets` / :func:`write_pcap`: 20 ms RTP packets with the right payload type and clock
  (G.722 samples at 16 kHz but its RTP clock is 8000, RFC 3551), written as a classic libpcap file.
- :func:`read_pcap_rtp`: the RTP packets of a pcap, to check what was written.
- :func:`ulaw_decode` / :func:`alaw_decode` / :func:`alaw_encode` / :func:`ulaw_encode`: ITU G.711;
  :func:`g711_agreement` compares a received G.711 stream with a reference, one level of rounding apart.
"""

from __future__ import annotations

import array
import math
import random
import shutil
import struct
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: payload type, RTP clock rate, PCM sample rate, encoded bytes per 20 ms
CODECS: dict[str, tuple[int, int, int, int]] = {
    "pcmu": (0, 8000, 8000, 160),
    "pcma": (8, 8000, 8000, 160),
    "g722": (9, 8000, 16000, 160),
}
_FFMPEG_FORMAT = {"pcmu": ("pcm_mulaw", "mulaw"), "pcma": ("pcm_alaw", "alaw"), "g722": ("g722", "g722")}
PTIME_MS = 20
TIMEOUT_S = 30.0


# --- G.711 (ITU-T G.711, the classic segment/quantisation algorithm) ---------------------------------
def _ulaw_to_linear(u: int) -> int:
    u = ~u & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return (0x84 - t) if u & 0x80 else (t - 0x84)


def _alaw_to_linear(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


_SEG_END = (0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF)


def _linear_to_alaw(pcm: int) -> int:
    pcm >>= 3  # 13-bit magnitude
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = next((i for i, end in enumerate((0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)) if pcm <= end), 8)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm >> 1) & 0x0F if seg < 2 else (pcm >> seg) & 0x0F
    return aval ^ mask


def _linear_to_ulaw(pcm: int) -> int:
    pcm >>= 2  # 14-bit
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, 8159) + 0x21
    seg = next((i for i, end in enumerate((0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)) if pcm <= end), 8)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0x0F)) ^ mask


ULAW_TO_LINEAR = tuple(_ulaw_to_linear(i) for i in range(256))
ALAW_TO_LINEAR = tuple(_alaw_to_linear(i) for i in range(256))
_ALAW_ENC = bytes(_linear_to_alaw(v) for v in range(-32768, 32768))
_ULAW_ENC = bytes(_linear_to_ulaw(v) for v in range(-32768, 32768))


def _ranks(table: Sequence[int]) -> tuple[int, ...]:
    values = sorted(set(table))
    return tuple(values.index(v) for v in table)


#: each code's place on its codec's scale of output levels (mu-law's two zeros share one)
G711_RANK = {"pcmu": _ranks(ULAW_TO_LINEAR), "pcma": _ranks(ALAW_TO_LINEAR)}


def g711_agreement(codec: str, received: bytes, reference: bytes) -> int:
    """How many leading samples of ``received`` are ``reference`` within one quantisation step.

    G.711 encoders differ in how they round near a level boundary: pjmedia 2.15's A-law encoder puts
    some negative samples one level further from zero than Sun's reference code (used here and by
    CPython's audioop) does, e.g. -31 -> -40 instead of -24. The same PCM may therefore come out one
    level apart; anything more is a different signal.
    """
    rank = G711_RANK[codec]
    n = 0
    for a, b in zip(received, reference, strict=False):
        if abs(rank[a] - rank[b]) > 1:
            break
        n += 1
    return n


def ulaw_decode(data: bytes) -> array.array[int]:
    return array.array("h", (ULAW_TO_LINEAR[b] for b in data))


def alaw_decode(data: bytes) -> array.array[int]:
    return array.array("h", (ALAW_TO_LINEAR[b] for b in data))


def alaw_encode(samples: Iterable[int]) -> bytes:
    return bytes(_ALAW_ENC[s + 32768] for s in samples)


def ulaw_encode(samples: Iterable[int]) -> bytes:
    return bytes(_ULAW_ENC[s + 32768] for s in samples)


def decode(codec: str, data: bytes) -> array.array[int]:
    """PCM samples of ``data`` (8 kHz for G.711, 16 kHz for G.722)."""
    if codec == "pcmu":
        return ulaw_decode(data)
    if codec == "pcma":
        return alaw_decode(data)
    if codec == "g722":
        return g722_decode(data)
    raise ValueError(codec)


# --- audio making (espeak-ng, ffmpeg) -----------------------------------------------------------------
def _run(argv: list[str]) -> bytes:
    assert shutil.which(argv[0]), f"{argv[0]} is installed by `make test`"
    done = subprocess.run(argv, capture_output=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, f"{argv[0]} failed: {done.stderr.decode(errors='replace')[-1500:]}"
    return done.stdout


def speech_wav(text: str, out: Path, rate: int, voice: str = "en-us") -> Path:
    """``text`` spoken by espeak-ng as a mono 16-bit WAV at ``rate`` Hz."""
    raw = out.with_suffix(".espeak.wav")
    _run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text])
    _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(raw), "-ac", "1", "-ar", str(rate),
          "-acodec", "pcm_s16le", str(out)])
    raw.unlink()
    return out


def pcm_of_wav(path: Path, rate: int) -> array.array[int]:
    """Mono 16-bit samples of any audio file at ``rate`` Hz (through ffmpeg)."""
    raw = _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-ac", "1", "-ar", str(rate),
                "-f", "s16le", "-"])
    samples = array.array("h")
    samples.frombytes(raw)
    return samples


def encode(codec: str, wav: Path) -> bytes:
    """The encoded bit stream of ``wav`` (which must already be at the codec's sample rate)."""
    acodec, fmt = _FFMPEG_FORMAT[codec]
    rate = CODECS[codec][2]
    return _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(wav), "-ac", "1", "-ar", str(rate),
                 "-acodec", acodec, "-f", fmt, "-"])


def g722_decode(data: bytes) -> array.array[int]:
    """16 kHz PCM of a raw G.722 bit stream (ffmpeg's decoder)."""
    proc = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "g722", "-i", "pipe:0",
                           "-f", "s16le", "-ar", "16000", "pipe:1"],
                          input=data, capture_output=True, timeout=TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    samples = array.array("h")
    samples.frombytes(proc.stdout)
    return samples


def rms(samples: Sequence[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def dbfs(samples: Sequence[int]) -> float:
    level = rms(samples)
    return 20 * math.log10(level / 32768) if level else -120.0


# --- RTP and pcap -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RtpPacket:
    at: float  # seconds from the first packet
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def encode(self) -> bytes:
        b1 = (0x80 if self.marker else 0) | self.payload_type
        return struct.pack("!BBHII", 0x80, b1, self.seq & 0xFFFF, self.timestamp & 0xFFFFFFFF,
                           self.ssrc) + self.payload

    @classmethod
    def parse(cls, at: float, data: bytes) -> RtpPacket:
        b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
        assert b0 >> 6 == 2, "not RTP version 2"
        return cls(at, b1 & 0x7F, seq, ts, ssrc, data[12 + 4 * (b0 & 0x0F):], bool(b1 & 0x80))


def rtp_packets(codec: str, encoded: bytes, *, seq0: int | None = None, ts0: int | None = None,
                ssrc: int | None = None) -> list[RtpPacket]:
    """``encoded`` cut into 20 ms RTP packets (the last one padded with the codec's silence)."""
    pt, clock, _, frame_bytes = CODECS[codec]
    rnd = random.Random(len(encoded))
    seq = rnd.randrange(1 << 15) if seq0 is None else seq0
    ts = rnd.randrange(1 << 30) if ts0 is None else ts0
    ssrc = rnd.randrange(1, 1 << 31) if ssrc is None else ssrc
    filler = {"pcmu": b"\xff", "pcma": b"\xd5", "g722": b"\xfa"}[codec]  # near silence in each coding
    step = clock * PTIME_MS // 1000
    out = []
    for i in range(0, len(encoded), frame_bytes):
        chunk = encoded[i:i + frame_bytes]
        chunk += filler * (frame_bytes - len(chunk))
        n = i // frame_bytes
        out.append(RtpPacket(n * PTIME_MS / 1000, pt, seq + n, ts + n * step, ssrc, chunk, marker=n == 0))
    return out


def _ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_pcap(path: Path, packets: Sequence[RtpPacket], *, src: tuple[str, int] = ("127.0.0.1", 6000),
               dst: tuple[str, int] = ("127.0.0.1", 7000), start: float = 1_700_000_000.0) -> Path:
    """A libpcap file (Ethernet, IPv4, UDP) carrying ``packets`` at their ``at`` offsets."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # LINKTYPE_ETHERNET
    src_ip, dst_ip = (bytes(int(x) for x in a[0].split(".")) for a in (src, dst))
    for ident, pkt in enumerate(packets):
        rtp = pkt.encode()
        udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(rtp), 0) + rtp  # checksum 0: none (IPv4)
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0x4000, 64, 17, 0,
                                   src_ip, dst_ip))
        ip[10:12] = struct.pack("!H", _ip_checksum(bytes(ip)))
        frame = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00" + bytes(ip) + udp
        t = start + pkt.at
        sec = int(t)
        usec = round((t - sec) * 1_000_000)
        if usec == 1_000_000:
            sec, usec = sec + 1, 0
        out += struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))
    return path


def read_pcap_rtp(path: Path) -> list[RtpPacket]:
    """The RTP packets of an Ethernet/IPv4/UDP pcap (what :func:`write_pcap` writes, or sipp's pcaps)."""
    data = path.read_bytes()
    magic, _, _, _, _, _, link = struct.unpack("<IHHiIII", data[:24])
    assert magic == 0xA1B2C3D4 and link == 1, "only little-endian microsecond Ethernet pcaps"
    out: list[RtpPacket] = []
    off, first = 24, None
    while off + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack("<IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        t = sec + usec / 1e6
        first = t if first is None else first
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        _, _, length, _ = struct.unpack("!HHHH", ip[ihl:ihl + 8])
        out.append(RtpPacket.parse(t - first, ip[ihl + 8:ihl + length]))
    return out


def speech_pcap(codec: str, text: str, workdir: Path, *, repeat: int = 1) -> tuple[Path, array.array[int]]:
    """A pcap of ``text`` spoken in ``codec`` (``repeat`` times back to back) and the PCM it encodes."""
    rate = CODECS[codec][2]
    wav = speech_wav(text, workdir / f"speech-{codec}.wav", rate)
    pcm = pcm_of_wav(wav, rate)
    pcm = pcm * repeat
    looped = workdir / f"speech-{codec}-x{repeat}.wav"
    _write_wav(looped, pcm, rate)
    packets = rtp_packets(codec, encode(codec, looped))
    return write_pcap(workdir / f"speech-{codec}.pcap", packets), pcm


def _write_wav(path: Path, pcm: array.array[int], rate: int) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
