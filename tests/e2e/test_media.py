"""Media end to end: codecs, DTMF methods and gapless playback, checked on the wire.

Every call goes sipp caller -> Kamailio edge -> pjsua2 worker, started by the real `ivr run`
(``hotline`` fixture). The audio sipp sends is made at test time (espeak-ng speech encoded by ffmpeg,
written as an RTP pcap by ``tests/rtp_pcap.py``); what the worker sends back is captured on the
loopback with kernel timestamps and compared with the prompt and music-on-hold files the worker
plays, sample for sample where the codec allows it.

- ``test_codec_end_to_end``: a caller offering only PCMU, only PCMA or only G.722 gets that codec in
  the 200 OK, hears the greeting in it, its RFC 2833 key press routes the call into the billing
  queue, and after the agent (an A-law phone) answers, speech crosses the bridge both ways through
  the transcoding.
- ``test_caller_codec_preference_is_honoured_within_the_supported_set`` /
  ``test_caller_offering_no_supported_codec_is_refused``: the worker takes the caller's first choice
  among PCMU, PCMA and G.722 and never one of the other codecs the library has (GSM, speex, iLBC);
  an offer with none of the three is refused 488 by the worker before any call starts.
- ``test_dtmf_method``: a key sent as SIP INFO (``application/dtmf-relay``, in-dialog through the
  edge's Record-Route) or as RFC 2833 picks the menu option of that key; the INFO gets a 200.
  ``application/dtmf`` is not understood by pjsua 2.15 (expected failure until the edge rewrites it).
- ``test_prompt_then_music_on_hold_is_gapless``: the RTP sent while a prompt plays and then hold
  music loops is one unbroken stream (sequence, timestamps, pacing) whose samples are exactly the
  prompt's followed, within a frame or two, by exactly the music's.
  ``test_music_on_hold_loops_sample_exactly``: the same with a short configured
  recording that wraps around (mid-frame) while the caller listens: the file is played whole each
  time with nothing inserted at the wraps (the engine loops a playlist of copies; pjmedia 2.15's own
  looping player would insert one 20 ms frame of silence at every wrap).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import re
import socket
import statistics
import struct
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from ivr.prompts.library import PromptLibrary, PromptSpec
from ivr.prompts.moh import generate_tune, music_on_hold
from tests import rtp_pcap
from tests.e2e.conftest import ROOT, Hotline
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippResult, SippServer, run_sipp
from tests.sniffer import PACKET_OUTGOING, Datagram, LoopbackSniffer

# serial: these tests judge the media itself (pacing, sequence, what the caller hears against the
# greeting); run beside another hotline's calls on 2 cores they failed on load (twice in two make test
# runs of 2026-12-07: an RTP sequence step the capture lost, a greeting correlation of 0.70)
pytestmark = [pytest.mark.e2e, pytest.mark.serial,
              pytest.mark.shared_hotline]  # the tests on `hotline`; short_moh_hotline is its own

FRAME = 160  # samples per 20 ms at 8 kHz, and RTP timestamp units per packet for all three codecs
SENTENCE = "Hello, I am calling about the invoice I received last week. Could you help me with it?"
RTPMAP = {"pcmu": "PCMU/8000", "pcma": "PCMA/8000", "g722": "G722/8000"}
CALLER_ANI = "+15550002"
GREETING_MAX_LEAD = 10  # frames of the first packets before the greeting starts: 200 ms at most
SO_TIMESTAMPNS = 35  # Linux; not exported by the socket module


# --- capture with kernel timestamps ----------------------------------------------------------------
class StampedSniffer(LoopbackSniffer):
    """``LoopbackSniffer`` stamping each datagram with the kernel's receive time (SO_TIMESTAMPNS), so
    packet pacing is measured where the packets were sent, not when this process got to read them."""

    def __init__(self, ports: set[int]) -> None:
        super().__init__(ports)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                frame, anc, _, addr = self._sock.recvmsg(65535, 64)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            ts = time.time()
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", data[:16])
                    ts = sec + nsec / 1e9
            if len(frame) < 42 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] != 17:
                continue
            src, dst, length = struct.unpack("!HHH", ip[ihl:ihl + 6])
            if self.ports is not None and src not in self.ports and dst not in self.ports:
                continue
            self.packets.append(Datagram(ts, src, dst, bytes(ip[ihl + 8:ihl + length])))


# --- audio helpers ---------------------------------------------------------------------------------
def envelope(pcm: Sequence[int], step: int = FRAME) -> list[float]:
    """RMS of each ``step`` samples: what speech looks like at 20 ms resolution."""
    return [rtp_pcap.rms(pcm[i:i + step]) for i in range(0, len(pcm) - step + 1, step)]


def best_alignment(received: Sequence[float], sent: Sequence[float], max_lag: int,
                   max_lead: int = 0) -> tuple[float, int]:
    """Highest Pearson correlation of ``received`` against ``sent`` shifted by -max_lead..max_lag
    frames: a lag of k > 0 means ``received`` starts k frames into ``sent``, k < 0 that ``received``
    has -k frames (silence, say) before ``sent`` starts."""
    best = (-1.0, 0)
    for lag in range(-max_lead, max_lag + 1):
        got = received[max(0, -lag):]
        ref = sent[max(0, lag):max(0, lag) + len(got)]
        if len(ref) < len(got) or len(got) < 2 or statistics.pstdev(ref) == 0 or statistics.pstdev(got) == 0:
            if lag > 0:
                break
            continue
        best = max(best, (statistics.correlation(got, ref), lag))
    return best


def to_8k(codec: str, payload: bytes) -> array.array[int]:
    """Decode, and bring G.722's 16 kHz down to 8 kHz (every other sample: enough for envelopes)."""
    pcm = rtp_pcap.decode(codec, payload)
    return pcm[::2] if codec == "g722" else pcm


def wav_pcm(path: Path) -> array.array[int]:
    import wave

    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000), path
        return array.array("h", w.readframes(w.getnframes()))


def g711_encode(codec: str, pcm: Sequence[int]) -> bytes:
    return rtp_pcap.ulaw_encode(pcm) if codec == "pcmu" else rtp_pcap.alaw_encode(pcm)


def locate(codec: str, stream: bytes, reference: bytes) -> int | None:
    """Where in ``stream`` (bytes = samples for G.711) a playback of ``reference`` starts.

    The bridge reads a player in whole 20 ms frames from the file's start, so a playback begins on a
    frame boundary of the stream; it is the first boundary from which two seconds (or all) of the
    reference follow within one quantisation step (see ``rtp_pcap.g711_agreement``)."""
    want = min(len(reference), 2 * 8000)
    for pos in range(0, len(stream) - FRAME, FRAME):
        if rtp_pcap.g711_agreement(codec, stream[pos:pos + want], reference[:want]) == want:
            return pos
    return None


# --- what the worker plays ---------------------------------------------------------------------------
def plan_text(node: str, field: str = "prompt") -> str:
    plan = yaml.safe_load((ROOT / "dialplans" / "hotline.yaml").read_text())
    text: str = plan["nodes"][node][field]["text"]
    return text


def prompt_wav(hotline: Hotline, node: str) -> Path:
    """The cached WAV the worker plays for ``node``'s prompt (the same content key, so the same file)."""
    library = PromptLibrary(ROOT / "prompts", hotline.workdir.parent / "prompt-cache", 8000, {"en": "en-us"})
    return library.resolve(PromptSpec(text=plan_text(node)), "en")


def moh_wav(hotline: Hotline) -> Path:
    return music_on_hold(hotline.workdir.parent / "prompt-cache", 8000)


# --- one call ----------------------------------------------------------------------------------------
@dataclass
class Call:
    pcap: Path
    result: SippResult
    packets: list[Datagram]
    caller_port: int
    caller_media: int
    agent_media: int
    capture_drops: int = 0  # packets the capture lost (the kernel's count): 0, or the test cannot judge gaps

    def answer_sdp(self) -> tuple[list[int], dict[int, str]]:
        """Payload types of the 200 OK's m=audio line and its rtpmaps."""
        for p in self.packets:
            if p.dst == self.caller_port and p.payload.startswith(b"SIP/2.0 200") and b"INVITE" in p.payload:
                sdp = p.payload.split(b"\r\n\r\n", 1)[1].decode()
                m = re.search(r"^m=audio \d+ RTP/AVP ([\d ]+)\r?$", sdp, re.M)
                assert m, sdp
                maps = {int(pt): name for pt, name in re.findall(r"^a=rtpmap:(\d+) (\S+)\r?$", sdp, re.M)}
                return [int(x) for x in m.group(1).split()], maps
        raise AssertionError("no 200 OK for the INVITE reached the caller")

    def rtp(self, *, src: int | None = None, dst: int | None = None,
            after: float = 0.0) -> list[rtp_pcap.RtpPacket]:
        return [rtp_pcap.RtpPacket.parse(p.ts, p.payload) for p in self.packets
                if p.is_rtp and p.ts >= after and (src is None or p.src == src) and (dst is None or p.dst == dst)]

    def sip(self, start: bytes, *, src: int | None = None, dst: int | None = None) -> list[Datagram]:
        return [p for p in self.packets if p.payload.startswith(start)
                and (src is None or p.src == src) and (dst is None or p.dst == dst)]


def sdp_offer(offer: Sequence[tuple[int, str]]) -> dict[str, str]:
    return {"formats": " ".join(str(pt) for pt, _ in offer),
            "rtpmaps": "\n".join(f"a=rtpmap:{pt} {name}" for pt, name in offer)}


def sip_ports(hotline: Hotline, *extra: int) -> set[int]:
    ports = {hotline.edge_port, hotline.agent_sip_port, *extra}
    ports |= set(range(hotline.rtp_base, hotline.rtp_base + hotline.workers * 40))
    return ports | set(range(hotline.sip_base, hotline.sip_base + hotline.workers))


async def place_call(hotline: Hotline, tmp_path: Path, *, codec: str, dtmf: str = "rfc2833", digit: str = "2",
                     talk_ms: int = 6000, agent_answers: bool = False, speech_repeat: int = 2,
                     offer: Sequence[tuple[int, str]] | None = None) -> Call:
    """One caller through the edge offering ``offer`` (default: only ``codec``) and sending speech in
    ``codec``; with ``agent_answers`` agent1 is available and its phone answers."""
    pcap, _ = await asyncio.to_thread(rtp_pcap.speech_pcap, codec, SENTENCE, tmp_path, repeat=speech_repeat)
    offer = offer or [(rtp_pcap.CODECS[codec][0], RTPMAP[codec])]
    info_type, info_body = {"info": ("application/dtmf-relay", f"Signal={digit}\nDuration=160"),
                            "info-dtmf": ("application/dtmf", digit),
                            "rfc2833": ("none", "none")}[dtmf]
    keep, drop = ("dtmf-rfc2833", "dtmf-info") if dtmf == "rfc2833" else ("dtmf-info", "dtmf-rfc2833")
    caller_sf = render_scenario("media_caller.xml", tmp_path, keep=keep, drop=drop, **sdp_offer(offer),
                                digit=digit, dtmf_at_ms=1000, info_type=info_type, info_body=info_body,
                                audio_pcap=pcap, talk_ms=talk_ms)
    caller_port, caller_media, agent_media = free_udp_tcp_port(), free_udp_tcp_port(), free_udp_tcp_port()
    ports = sip_ports(hotline, caller_port, caller_media, agent_media)
    async with contextlib.AsyncExitStack() as stack:
        if agent_answers:
            agent_sf = render_scenario("agent_phone.xml", tmp_path, keep="remote-hangs-up", drop="agent-hangs-up",
                                       ring_ms=300, talk_ms=30000)
            phone = SippServer(agent_sf, workdir=tmp_path, tag="agent", port=hotline.agent_sip_port,
                               extra=["-m", "1", "-mp", str(agent_media)])
            await stack.enter_async_context(phone)
            async with aiohttp.ClientSession() as http, http.post(
                    f"{hotline.api}/api/v1/agents/agent1/state", json={"state": "available"},
                    headers={"Authorization": f"Bearer {hotline.tokens['agent1']}"}) as r:
                assert r.status == 200, await r.text()
        sniff = stack.enter_context(StampedSniffer(ports))
        result = await run_sipp(caller_sf, ("127.0.0.1", hotline.edge_port), workdir=tmp_path, tag="caller",
                                port=caller_port, limit_s=45, extra=["-s", "1000", "-mp", str(caller_media)])
        await asyncio.sleep(0.3)  # the last BYE/200 and RTCP
    assert result.ok, result.describe() + "\n" + hotline.log_tail()
    return Call(pcap, result, list(sniff.packets), caller_port, caller_media, agent_media, sniff.drops)


async def call_record(hotline: Hotline) -> tuple[str, dict[str, Any], list[str]]:
    """The caller's call id, its record in Redis (``ivr:call:<id>``) and the types of its events."""
    redis = hotline.redis()
    try:
        store = hotline.store(redis)
        deadline = time.monotonic() + 10
        while True:
            events = await store.read_events("0-0")
            started = [e for e in events if e.type == "call.started" and e.data.get("ani") == CALLER_ANI]
            if started:
                call_id = started[-1].data["call_id"]
                types = [e.type for e in events if e.data.get("call_id") == call_id]
                if "call.ended" in types or time.monotonic() > deadline:
                    break
            assert time.monotonic() < deadline, f"no call.started for {CALLER_ANI}: {[e.type for e in events]}"
            await asyncio.sleep(0.2)
        record = await store.get_call(call_id)
        assert record is not None
        queued = [e.data for e in events if e.type == "call.queued" and e.data.get("call_id") == call_id]
        if queued:
            record["queued_event"] = queued[0]
        return call_id, record, types
    finally:
        await redis.aclose()


def dtmf_logs(hotline: Hotline, call_id: str) -> list[dict[str, Any]]:
    return [r for r in hotline.log_records() if r.get("event") == "call.dtmf" and r.get("call_id") == call_id]


# --- tests -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["pcmu", "pcma", "g722"])
async def test_codec_end_to_end(hotline: Hotline, tmp_path: Path, codec: str) -> None:
    pt = rtp_pcap.CODECS[codec][0]
    call = await place_call(hotline, tmp_path, codec=codec, talk_ms=9000, agent_answers=True, speech_repeat=3)

    # --- sipp replayed the generated pcap as written: headers, payloads and 20 ms pacing
    sent = [p for p in call.rtp(src=call.caller_media) if p.payload_type == pt]
    written = rtp_pcap.read_pcap_rtp(call.pcap)[:len(sent)]
    assert len(sent) > 300
    assert [(p.seq, p.timestamp, p.ssrc, p.payload) for p in sent] == [
        (p.seq, p.timestamp, p.ssrc, p.payload) for p in written]
    pace = [(b.at - a.at) * 1000 for a, b in pairwise(sent)]
    print(f"media[{codec}]: sipp sent {len(sent)} packets, inter-arrival {min(pace):.1f}..{max(pace):.1f} ms")
    assert 19 < statistics.mean(pace) < 21

    # --- the worker answered with the one codec offered (plus telephone-event for RFC 2833)
    pts, maps = call.answer_sdp()
    assert pts[0] == pt and set(pts) <= {pt, 101}, (pts, maps)
    assert maps.get(pt, "").upper() == RTPMAP[codec].upper(), maps
    assert maps.get(101, "").startswith("telephone-event/8000"), maps

    # --- the greeting came back in that payload type, every packet, and it is the greeting
    to_caller = call.rtp(dst=call.caller_media)
    assert len(to_caller) > 200, f"{len(to_caller)} RTP packets reached the caller"
    assert {p.payload_type for p in to_caller} == {pt}
    greeting = wav_pcm(prompt_wav(hotline, "welcome"))
    # The caller presses its key 1 s after the answer (barge-in). The greeting starts a frame or
    # two after the first packet (the player joins once the media is up; more under load: three
    # frames of silence first were seen in make test), within MAX_LEAD frames or the caller waits.
    first_second = to_caller[:45]
    heard = to_8k(codec, b"".join(p.payload for p in first_second))
    assert rtp_pcap.dbfs(heard) > -40, f"greeting level {rtp_pcap.dbfs(heard):.1f} dBFS: silence?"
    corr, lag = best_alignment(envelope(heard), envelope(greeting), 8, max_lead=GREETING_MAX_LEAD)
    print(f"media[{codec}]: greeting heard at {rtp_pcap.dbfs(heard):.1f} dBFS "
          f"(file {rtp_pcap.dbfs(greeting[:len(heard)]):.1f}), from frame {max(0, -lag)} of the first "
          f"packets, envelope r={corr:.3f}")
    assert corr > 0.85, f"what the caller heard does not follow the greeting (r={corr:.2f}, lag {lag})"
    if codec != "g722":  # G.711: the greeting's own samples, encoded (within one quantisation step)
        got = b"".join(p.payload for p in first_second)
        reference = g711_encode(codec, greeting)
        start = next((pos for pos in range(0, (GREETING_MAX_LEAD + 1) * FRAME, FRAME)
                      if rtp_pcap.g711_agreement(codec, got[pos:], reference) >= 25 * FRAME), None)
        assert start is not None, "the greeting's samples did not arrive intact"

    # --- the caller's key (RFC 2833 alongside this codec) routed the call into billing
    call_id, record, types = await call_record(hotline)
    steps = record["journey"]["steps"]
    assert steps[0]["node"] == "welcome" and steps[0]["digit"] == "2" and steps[0]["outcome"] == "billing", steps
    assert record["queued_event"]["queue"] == "billing"
    assert [d["method"] for d in dtmf_logs(hotline, call_id)] == ["rfc2833"]
    assert "call.answered" in types, types

    # --- bridged to agent1's A-law phone: speech crosses the transcoding both ways
    agent_sent = call.rtp(src=call.agent_media)
    assert agent_sent, "the agent's phone never sent audio"
    bridged_at = agent_sent[0].at + 0.3
    to_agent = [p for p in call.rtp(dst=call.agent_media, after=bridged_at) if p.payload_type == 8]
    from_caller = b"".join(p.payload for p in call.rtp(src=call.caller_media) if p.payload_type == pt)
    heard_by_agent = rtp_pcap.alaw_decode(b"".join(p.payload for p in to_agent))
    caller_env = envelope(to_8k(codec, from_caller))
    agent_env = envelope(heard_by_agent)[:150]
    assert len(agent_env) >= 100, f"agent heard only {len(agent_env)} frames"
    corr, _ = best_alignment(agent_env, caller_env, len(caller_env) - len(agent_env))
    print(f"media[{codec}]: caller speech sent at {rtp_pcap.dbfs(to_8k(codec, from_caller)):.1f} dBFS, "
          f"agent heard it at {rtp_pcap.dbfs(heard_by_agent):.1f} dBFS, envelope r={corr:.3f}")
    assert corr > 0.8, f"the agent did not hear the caller's {codec} speech (r={corr:.2f})"
    assert rtp_pcap.dbfs(heard_by_agent) > -40

    to_caller_bridged = b"".join(p.payload for p in call.rtp(dst=call.caller_media, after=bridged_at))
    from_agent = b"".join(p.payload for p in agent_sent if p.payload_type == 8)
    agent_src_env = envelope(rtp_pcap.alaw_decode(from_agent))
    caller_heard_env = envelope(to_8k(codec, to_caller_bridged))[:150]
    corr, _ = best_alignment(caller_heard_env, agent_src_env, len(agent_src_env) - len(caller_heard_env))
    print(f"media[{codec}]: agent speech heard by the caller, envelope r={corr:.3f}")
    assert corr > 0.8, f"the caller did not hear the agent in {codec} (r={corr:.2f})"
    if codec == "pcmu":  # A-law -> linear -> mu-law is a table lookup each way: check it bit for bit
        expected = rtp_pcap.ulaw_encode(rtp_pcap.alaw_decode(from_agent))
        frames = [to_caller_bridged[i:i + FRAME] for i in range(0, len(to_caller_bridged) - FRAME, FRAME)]
        voiced = [f for f in frames if rtp_pcap.rms(rtp_pcap.ulaw_decode(f)) > 300]
        assert voiced and sum(f in expected for f in voiced) > 0.8 * len(voiced)


def test_speech_pcap_is_20ms_rtp_in_each_codec(tmp_path: Path) -> None:
    """The pcap writer itself: what sipp will replay (payload type, clock, pacing, content)."""
    for codec, (pt, _clock, rate, frame_bytes) in rtp_pcap.CODECS.items():
        pcap, pcm = rtp_pcap.speech_pcap(codec, "Testing one two three.", tmp_path)
        packets = rtp_pcap.read_pcap_rtp(pcap)
        assert len(packets) == -(-len(pcm) // (rate // 50)), codec  # one packet per 20 ms, rounded up
        assert {p.payload_type for p in packets} == {pt} and {len(p.payload) for p in packets} == {frame_bytes}
        assert {b.seq - a.seq for a, b in pairwise(packets)} == {1}
        assert {b.timestamp - a.timestamp for a, b in pairwise(packets)} == {160}, "RTP clock 8000 for all three"
        assert {round((b.at - a.at) * 1000, 3) for a, b in pairwise(packets)} == {20.0}
        decoded = rtp_pcap.decode(codec, b"".join(p.payload for p in packets))
        corr, _ = best_alignment(envelope(decoded, rate // 50)[:60], envelope(pcm, rate // 50), 3)
        assert corr > 0.95, (codec, corr)
    # sipp's own A-law pcap parses the same way (30 ms packets there)
    own = rtp_pcap.read_pcap_rtp(Path("/usr/share/sip-tester/g711a.pcap"))
    assert {p.payload_type for p in own} == {8} and {b.timestamp - a.timestamp for a, b in pairwise(own)} == {240}


async def test_caller_codec_preference_is_honoured_within_the_supported_set(
        hotline: Hotline, tmp_path: Path) -> None:
    # GSM and speex first (the wheel has them, the hotline does not use them), then G.722 before
    # G.711: the answer is G.722 although the worker itself ranks PCMU higher.
    offer = [(3, "GSM/8000"), (97, "speex/8000"), (9, "G722/8000"), (0, "PCMU/8000"), (8, "PCMA/8000")]
    call = await place_call(hotline, tmp_path, codec="g722", offer=offer, talk_ms=1500)
    pts, maps = call.answer_sdp()
    assert pts[0] == 9 and set(pts) <= {9, 101}, (pts, maps)
    assert {p.payload_type for p in call.rtp(dst=call.caller_media)} == {9}


async def test_caller_offering_no_supported_codec_is_refused(hotline: Hotline, tmp_path: Path) -> None:
    offer = [(3, "GSM/8000"), (97, "speex/8000"), (98, "iLBC/8000")]
    scenario = render_scenario("media_caller_rejected.xml", tmp_path, keep="refused", drop="none",
                               **sdp_offer(offer), code=488)
    caller_port = free_udp_tcp_port()
    with StampedSniffer(sip_ports(hotline, caller_port)) as sniff:
        result = await run_sipp(scenario, ("127.0.0.1", hotline.edge_port), workdir=tmp_path, tag="caller",
                                port=caller_port, limit_s=20, extra=["-s", "1000"])
    assert result.ok, result.describe() + "\n" + hotline.log_tail()
    workers = range(hotline.sip_base, hotline.sip_base + hotline.workers)
    refusals = [p for p in sniff.packets if p.src in workers and p.payload.startswith(b"SIP/2.0 488")]
    assert refusals, "the 488 did not come from a worker"
    assert not [r for r in hotline.log_records() if r.get("event") == "call.incoming"]


@pytest.mark.parametrize(("method", "digit", "queue"), [
    ("info", "3", "support"),
    ("rfc2833", "1", "sales"),
    # pjsua 2.15 answers application/dtmf with 500; the edge rewrites it to application/dtmf-relay
    ("info-dtmf", "3", "support"),
])
async def test_dtmf_method(hotline: Hotline, tmp_path: Path, method: str, digit: str, queue: str) -> None:
    call = await place_call(hotline, tmp_path, codec="pcma", dtmf=method, digit=digit, talk_ms=4000)
    call_id, record, _ = await call_record(hotline)
    steps = record["journey"]["steps"]
    assert steps[0]["digit"] == digit and steps[0]["outcome"] == queue, steps
    assert record["queued_event"]["queue"] == queue
    assert [d["method"] for d in dtmf_logs(hotline, call_id)] == ["rfc2833" if method == "rfc2833" else "info"]
    if method != "rfc2833":
        # in the dialog, through the edge (Record-Route), to the worker, and answered 200 back
        assert call.sip(b"INFO ", src=call.caller_port, dst=hotline.edge_port), "no INFO to the edge"
        workers = range(hotline.sip_base, hotline.sip_base + hotline.workers)
        assert [p for p in call.sip(b"INFO ") if p.dst in workers], "the INFO did not reach the worker"
        ok = [p for p in call.sip(b"SIP/2.0 200", dst=call.caller_port) if b"CSeq: 2 INFO" in p.payload]
        assert ok, "the INFO was not answered 200"
        assert not any(p.payload_type == 101 for p in call.rtp(src=call.caller_media))


async def assert_prompt_then_music_is_gapless(hotline: Hotline, tmp_path: Path,
                                             moh_file: Path) -> tuple[int, list[int]]:
    """Place a call that gets queued; check what it heard; return how many times the hold music
    wrapped around and the silence inserted at the wraps that inserted any."""
    # agent1 stays offline, so after the key the caller hears the queue prompt and then hold music
    call = await place_call(hotline, tmp_path, codec="pcma", talk_ms=8000)
    to_caller = call.rtp(dst=call.caller_media)
    assert len(to_caller) > 300

    # --- one unbroken stream: one SSRC, contiguous sequence, one frame of timestamp per packet
    assert len({p.ssrc for p in to_caller}) == 1
    seq_steps = {(b.seq - a.seq) % 65536 for a, b in pairwise(to_caller)}
    ts_steps = {(b.timestamp - a.timestamp) % 2**32 for a, b in pairwise(to_caller)}
    assert call.capture_drops == 0, f"the capture lost {call.capture_drops} packets: nothing to judge by"
    assert seq_steps == {1}, f"sequence steps {seq_steps}"
    assert ts_steps == {FRAME}, f"timestamp steps {ts_steps}"
    gaps_ms = [(b.at - a.at) * 1000 for a, b in pairwise(to_caller)]
    span_ms = (to_caller[-1].at - to_caller[0].at) * 1000
    print(f"media[gapless]: {len(to_caller)} packets over {span_ms / 1000:.2f} s, inter-arrival max "
          f"{max(gaps_ms):.1f} ms, p99 {sorted(gaps_ms)[int(0.99 * len(gaps_ms))]:.1f} ms, "
          f"mean {statistics.mean(gaps_ms):.2f} ms")
    # The arrival gaps are printed, not asserted: on a loaded machine a packet can be late without
    # any being lost (the sequence and timestamps above prove none is); jitter is a benchmark figure.
    # Over the whole call the pace is real time (no burst, no stall), which load does not change.
    assert abs(span_ms - 20 * (len(to_caller) - 1)) < 100, f"{len(to_caller)} packets over {span_ms:.0f} ms"

    # --- the samples: the queue prompt, complete, then within a frame or two the hold music
    stream = b"".join(p.payload for p in to_caller)
    prompt = rtp_pcap.alaw_encode(wav_pcm(prompt_wav(hotline, "billing")))
    moh = rtp_pcap.alaw_encode(wav_pcm(moh_file))
    p_start, m_start = locate("pcma", stream, prompt), locate("pcma", stream, moh)
    assert p_start is not None and m_start is not None, (p_start, m_start)
    intact = rtp_pcap.g711_agreement("pcma", stream[p_start:], prompt)
    assert intact == len(prompt), f"the queue prompt broke after {intact} of {len(prompt)} samples"
    p_end = p_start + len(prompt)
    padding = -p_end % FRAME  # the prompt's last frame is filled up with silence
    inserted = m_start - p_end - padding
    played = stream[m_start:]
    print(f"media[gapless]: prompt {len(prompt) / 8:.0f} ms intact, then {padding} samples of padding and "
          f"{inserted / 8:.0f} ms inserted before the music; {len(played) / 8000:.2f} s of music "
          f"({len(played) / len(moh):.1f} times the {len(moh) / 8000:.2f} s file)")
    assert 0 <= inserted <= 2 * FRAME, f"{inserted / 8:.0f} ms of silence between the prompt and the music"
    assert len(played) > 4 * 8000, f"only {len(played) / 8000:.1f} s of hold music"
    music, wraps = follow_loop(played, moh)
    print(f"media[gapless]: the music wrapped around {len(wraps)} times, inserting {wraps} samples")
    # pjmedia 2.15's looping file player returns one empty frame at each wrap while it posts the
    # end-of-file callback; the engine loops through a playlist of copies, which switches
    # sample-exactly, so at most one frame every MOH_LOOP_COPIES wraps, no sample lost or repeated.
    assert all(0 <= w <= FRAME for w in wraps), f"samples inserted at the loop point: {wraps}"
    # the music itself has no silent stretch (a lost frame would show as one)
    levels = [rtp_pcap.dbfs(rtp_pcap.alaw_decode(music[i:i + FRAME])) for i in range(0, len(music), FRAME)]
    quiet = [i for i, level in enumerate(levels[3:], 3) if level < -50]
    assert not quiet, f"silent hold-music frames at {quiet[:10]}"
    return len(music) // len(moh), wraps


def follow_loop(played: bytes, moh: bytes) -> tuple[bytes, list[int]]:
    """``played`` (starting on a packet boundary) as ``moh`` over and over, one 20 ms packet at a time:
    the music with anything inserted around the loop points taken out, and how many samples each
    wrap inserted. Only whole packets of digital silence within a frame after a wrap may be inserted;
    every other packet must be the next 20 ms of the file."""
    silence = {rtp_pcap.alaw_encode([0])[0], rtp_pcap.alaw_encode([-1])[0]}
    looped = moh * (len(played) // len(moh) + 2)
    ref, music = 0, bytearray()
    wraps: list[int] = []
    for pos in range(0, len(played), FRAME):
        packet = played[pos:pos + FRAME]
        if rtp_pcap.g711_agreement("pcma", packet, looped[ref:ref + len(packet)]) == len(packet):
            music += packet
            ref += len(packet)
            continue
        since_wrap = ref % len(moh)
        assert ref >= len(moh) and since_wrap < FRAME, (
            f"hold music broken {since_wrap / 8000:.3f} s into the file ({pos / 8000:.3f} s after it started)")
        assert set(packet) <= silence, f"a wrap of the hold music inserted sound at {pos / 8000:.3f} s"
        if len(wraps) < ref // len(moh):
            wraps.append(0)
        wraps[-1] += len(packet)
    return bytes(music), wraps


async def test_prompt_then_music_on_hold_is_gapless(hotline: Hotline, tmp_path: Path) -> None:
    """The default hold music (the generated 24 s tune; it does not wrap around during the test)."""
    assert await assert_prompt_then_music_is_gapless(hotline, tmp_path, moh_wav(hotline)) == (0, [])


class ShortMohHotline(Hotline):
    """The hotline with a configured hold-music recording (``prompts.moh``)."""

    moh_source: Path | None = None

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg["prompts"]["moh"] = str(self.moh_source)
        return cfg


@pytest.fixture
async def short_moh_hotline(tmp_path: Path) -> AsyncIterator[ShortMohHotline]:
    """A 2.5 s excerpt of the tune as the configured recording, with a length that is no whole number
    of 20 ms frames, so the player wraps around mid-frame twice while the test listens."""
    source = tmp_path / "hold.wav"
    tune = generate_tune(8000)
    tune[1000:3507].export(str(source), format="wav").close()
    h = ShortMohHotline(tmp_path / "hotline")
    h.moh_source = source
    try:
        await h.start()
        yield h
    finally:
        h.stop()


async def test_music_on_hold_loops_sample_exactly(
        short_moh_hotline: ShortMohHotline, tmp_path: Path) -> None:
    h = short_moh_hotline
    assert h.moh_source is not None
    moh_file = music_on_hold(h.workdir.parent / "prompt-cache", 8000, h.moh_source)
    assert len(wav_pcm(moh_file)) % FRAME, "the recording should end mid-frame"
    loops, wraps = await assert_prompt_then_music_is_gapless(h, tmp_path, moh_file)
    assert loops >= 2, f"the hold music should have wrapped around at least twice, not {loops}"
    assert wraps == [], f"a wrap inside the playlist inserted {wraps} samples"
