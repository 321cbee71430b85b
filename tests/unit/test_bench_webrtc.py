"""The pure pieces of bench/webrtc.py: RTP keys that SRTP leaves in clear, the delay rtpengine adds
between a packet in and the same packet out, a worker's offer and its 180/200 from a capture, ng
control round trips, agents per core and the slope of CPU over agents."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from bench.webrtc import (
    Packet,
    agents_per_core,
    forwarding_delays,
    ng_times,
    offer_times,
    rtp_key,
    setup_figures,
    sine_wav,
    slope,
)

ENGINE = range(42000, 42100)
WORKERS_RTP = range(20000, 20080)
WORKERS_SIP = range(21000, 21002)


def rtp(seq: int, ts: int, pt: int = 0, extra: bytes = b"\x00" * 160) -> bytes:
    return bytes([0x80, pt]) + seq.to_bytes(2, "big") + ts.to_bytes(4, "big") + b"\x12\x34\x56\x78" + extra


def test_rtp_key_reads_sequence_and_timestamp_and_skips_rtcp_stun_and_dtls() -> None:
    assert rtp_key(rtp(7, 160)) == (7, 160)
    assert rtp_key(bytes([0x80, 200]) + b"\x00" * 10) is None          # RTCP sender report (rtcp-mux)
    assert rtp_key(b"\x00\x01\x00\x00" + b"\x21\x12\xa4\x42" + b"\x00" * 12) is None  # STUN binding request
    assert rtp_key(b"\x16\xfe\xfd" + b"\x00" * 20) is None             # DTLS handshake
    assert rtp_key(b"\x80\x00") is None


def test_forwarding_delay_pairs_a_packet_into_rtpengine_with_the_same_packet_out_per_direction() -> None:
    packets = [
        Packet(10.000, 20002, 42010, rtp(1, 160)),                 # worker -> rtpengine (plain)
        Packet(10.0004, 42012, 55555, rtp(1, 160, extra=b"x" * 170)),  # rtpengine -> browser (SRTP: longer)
        Packet(10.010, 55555, 42012, rtp(900, 48000)),             # browser -> rtpengine
        Packet(10.0112, 42010, 20002, rtp(900, 48000)),            # rtpengine -> worker
        Packet(10.020, 20002, 42010, rtp(2, 320)),                 # never seen leaving: no sample
        Packet(10.030, 42012, 55555, rtp(3, 480)),                 # never seen entering: no sample
        Packet(10.040, 42012, 55555, bytes([0x80, 200]) + b"\x00" * 20),  # RTCP: ignored
    ]
    delays = forwarding_delays(packets, ENGINE, WORKERS_RTP)
    assert delays["to_browser"] == [pytest.approx(0.4)]
    assert delays["to_worker"] == [pytest.approx(1.2)]


def sip(first: str, call_id: str, cseq: str = "1 INVITE") -> bytes:
    return f"{first}\r\nVia: SIP/2.0/UDP x\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n".encode()


def test_offer_times_take_the_workers_invite_to_an_agent_and_its_first_180_and_200() -> None:
    packets = [
        Packet(1.000, 5060, 21000, sip("INVITE sip:sales@127.0.0.1 SIP/2.0", "caller-1")),  # a caller: not an offer
        Packet(2.000, 21000, 5060, sip("INVITE sip:b01@127.0.0.1 SIP/2.0", "offer-1")),
        Packet(2.001, 5060, 21000, sip("SIP/2.0 100 Trying", "offer-1")),
        Packet(2.050, 5060, 21000, sip("SIP/2.0 180 Ringing", "offer-1")),
        Packet(2.060, 5060, 21000, sip("SIP/2.0 180 Ringing", "offer-1")),  # a retransmission: the first counts
        Packet(2.400, 5060, 21000, sip("SIP/2.0 200 OK", "offer-1")),
        Packet(2.500, 5060, 21000, sip("SIP/2.0 200 OK", "offer-1", "2 BYE")),  # not the INVITE's
        Packet(3.000, 21001, 5060, sip("INVITE sip:x99@127.0.0.1 SIP/2.0", "other")),  # not one of ours
    ]
    calls = offer_times(packets, WORKERS_SIP, {"b01", "b02"})
    assert calls == {"offer-1": {"invite": 2.0, "ringing": 2.05, "ok": 2.4}}
    figures = setup_figures(calls, {"offer-1": {"invite_at": 2030.0, "ring_at": 2032.0}})
    assert figures["invite_to_180_ms"]["p50"] == pytest.approx(50.0)
    assert figures["invite_to_200_ms"]["p50"] == pytest.approx(400.0)
    assert figures["invite_to_page_invite_ms"]["p50"] == pytest.approx(30.0)
    assert figures["invite_to_page_ringing_ms"]["p50"] == pytest.approx(32.0)


def test_ng_times_match_a_request_and_its_reply_by_cookie() -> None:
    packets = [
        Packet(1.000, 6000, 5062, b"abc d7:command5:offer3:sdp3:v=0e"),
        Packet(1.002, 6000, 5062, b"def d7:command6:deletee"),
        Packet(1.003, 5062, 6000, b"abc d6:result2:ok3:sdp3:v=0e"),
        Packet(1.0025, 5062, 6000, b"def d6:result2:oke"),
        Packet(1.010, 5062, 6000, b"zzz d6:result2:oke"),  # no request seen
    ]
    assert {k: [round(x, 3) for x in v] for k, v in ng_times(packets, 5062).items()} == {"offer": [3.0],
                                                                                          "delete": [0.5]}


def test_agents_per_core_and_the_slope_of_cpu_over_agents() -> None:
    assert agents_per_core(12.5) == 8.0
    assert agents_per_core(0.0) is None
    assert agents_per_core(None) is None
    assert slope([(2, 30.0), (4, 50.0), (8, 90.0)]) == pytest.approx(10.0)
    assert slope([(4, 30.0), (4, 50.0)]) is None


def test_the_browsers_microphone_is_a_sine_wav(tmp_path: Path) -> None:
    path = sine_wav(tmp_path / "tone.wav", seconds=0.1, rate=8000)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 8000, 800)
        frames = w.readframes(800)
    samples = [int.from_bytes(frames[i:i + 2], "little", signed=True) for i in range(0, len(frames), 2)]
    assert max(samples) > 9000 and min(samples) < -9000  # 0.3 of full scale
    assert samples[8] == pytest.approx(0, abs=1)  # 1 kHz at 8 kHz: a zero every 4 samples
