"""Who hears whom on a call, checked on the wire: every party sends its own tone, and what reaches
each party's RTP port is taken apart by frequency.

- :func:`tone_pcap`: a G.711 A-law RTP pcap of a steady tone, for sipp's ``play_pcap_audio``.
- :func:`heard`: what reached a media port between two moments, as the share of the energy of each
  party's tone, of the music-on-hold band, and the level (silence is below ``SILENCE_DBFS``).

The party tones sit above 2 kHz, where the generated music on hold (an arpeggio of notes below 900 Hz
with a second harmonic: ivr/prompts/moh.py) has nothing, so each is told apart from the others and
from the music in a plain spectrum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.rtp_pcap import alaw_decode, alaw_encode, rtp_packets, write_pcap
from tests.sniffer import LoopbackSniffer

RATE = 8000
CALLER_HZ, AGENT_HZ, TARGET_HZ = 2300.0, 2700.0, 3100.0
SUPERVISOR_HZ = 2500.0  # live supervision: the supervisor's phone (clear of the codecs' upper edge)
TONES = {"caller": CALLER_HZ, "agent": AGENT_HZ, "target": TARGET_HZ, "supervisor": SUPERVISOR_HZ}
MOH_BAND = (200.0, 1900.0)
SILENCE_DBFS = -50.0
BAND_HZ = 40.0


def tone_pcap(freq: float, seconds: float, out: Path, *, level: float = 0.3) -> Path:
    n = int(seconds * RATE)
    samples = [int(level * 32767 * math.sin(2 * math.pi * freq * i / RATE)) for i in range(n)]
    write_pcap(out, rtp_packets("pcma", alaw_encode(samples)))
    return out


@dataclass(frozen=True)
class Heard:
    dbfs: float
    share: dict[str, float]  # party name -> share of the energy at its tone; "moh" -> the music band
    packets: int

    @property
    def silent(self) -> bool:
        return self.dbfs < SILENCE_DBFS

    def only(self, *names: str, at_least: float = 0.2, at_most: float = 0.05) -> bool:
        """Each of ``names`` has at least ``at_least`` of the energy, every other party at most
        ``at_most`` (the music counts as a party named "moh")."""
        return (all(self.share[n] >= at_least for n in names)
                and all(v <= at_most for k, v in self.share.items() if k not in names))

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in self.share.items())
        return f"{self.dbfs:.1f} dBFS over {self.packets} packets ({parts})"


def heard(sniffer: LoopbackSniffer, port: int, t0: float, t1: float) -> Heard:
    """What reached media port ``port`` between ``t0`` and ``t1`` (time.time() stamps)."""
    packets = [p for p in sniffer.rtp(dst=port, after=t0) if p.ts <= t1 and p.rtp_payload_type == 8]
    pcm = np.array(alaw_decode(b"".join(p.rtp_payload for p in packets)), dtype=np.float64)
    return analyse(pcm, len(packets))


def analyse(pcm: np.ndarray, packets: int = 0) -> Heard:
    """The tones and level of 8 kHz PCM samples (a channel of a recording, or what reached a port)."""
    pcm = np.asarray(pcm, dtype=np.float64)
    if len(pcm) < RATE // 10:
        return Heard(-120.0, dict.fromkeys([*TONES, "moh"], 0.0), packets)
    rms = math.sqrt(float(np.mean(pcm ** 2)))
    dbfs = 20 * math.log10(max(rms, 1e-9) / 32768)
    power = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / RATE)
    total = float(power.sum()) or 1.0
    share = {name: float(power[np.abs(freqs - hz) <= BAND_HZ].sum()) / total for name, hz in TONES.items()}
    share["moh"] = float(power[(freqs >= MOH_BAND[0]) & (freqs <= MOH_BAND[1])].sum()) / total
    return Heard(dbfs, share, packets)
