"""Call recording through the whole system (docs/recording.md): a sipp caller through the Kamailio
edge, a sipp phone for the agent, real workers, the API, ffmpeg.

Every party sends its own tone (tests/call_audio.py). The plan asks for a PIN first (a sensitive
collect) and the hotline records the IVR part too (``recording.include_ivr``), then the billing
queue records everything (``always``). The stored file is decoded and taken apart: the caller's tone
on the left channel only, the agent's on the right only, silence wherever the record lists a pause
(the PIN, and the agent's pause), and the caller's tone again after each.

Then access: the agent on the call plays it (with HTTP Range), another agent is refused, and both
are in the audit trail; an admin deletes it and the file and index are gone.
"""

from __future__ import annotations

import array
import asyncio
import hashlib
import subprocess
import time
import wave
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests import rtp_pcap
from tests.call_audio import analyse
from tests.e2e.conftest import Hotline
from tests.e2e.test_call_control import Rig, call_in, rig
from tests.e2e.test_walking_skeleton import login
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippServer, run_sipp

pytestmark = pytest.mark.e2e

PLAN = """\
name: Recorded hotline
numbers: ["1000"]
language: en
start: pin
nodes:
  pin:
    type: collect
    variable: pin
    sensitive: true
    max_digits: 1
    timeout_s: 8
    prompt: {text: "PIN"}
    next: billing
  billing:
    type: queue
    queue: billing
"""
RATE = 8000
PIN_AT_MS = 2500  # the caller presses its key this long after the answer: the PIN takes that long


def decode(path: Path) -> np.ndarray:
    """The recording as (samples, 2) int16 at 8 kHz."""
    raw = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-f", "s16le",
                          "-ac", "2", "-ar", str(RATE), "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype="<i2").reshape(-1, 2)


def span(stereo: np.ndarray, channel: int, start_ms: int, end_ms: int) -> np.ndarray:
    return stereo[start_ms * RATE // 1000:end_ms * RATE // 1000, channel]


async def wait_saved(r: Rig, call_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = await r.record(call_id)
        if rec.get("recording_id"):
            return rec
        await asyncio.sleep(0.2)
    raise AssertionError(f"no recording was saved for {call_id}:\n{r.hotline.log_tail(40)}")


async def test_two_channels_pauses_sensitive_access_audit_and_delete(tmp_path: Path) -> None:
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "recorded.yaml").write_text(PLAN)
    overrides = {"dialplans_dir": str(plans),
                 "recording": {"include_ivr": True, "policy": "always", "announce": False}}
    async with rig(tmp_path, overrides=overrides, phones=("agent",)) as r:
        await login(r.http, r.hotline, "agent1")
        caller, cid = await call_in_pin(r)
        base = f"/api/v1/calls/{cid}"
        await asyncio.sleep(1.5)                       # talk
        await r.post("agent1", f"{base}/recording/pause")
        await r.post("agent1", f"{base}/recording/pause")  # idempotent
        assert (await r.record(cid)).get("recording") == "paused"
        await asyncio.sleep(1.5)                       # the customer reads a card number
        await r.post("agent1", f"{base}/recording/resume")
        await asyncio.sleep(1.5)                       # talk again
        await r.post("super1", f"{base}/hangup")
        await caller

        call = await wait_saved(r, cid)
        rec_id = call["recording_id"]
        meta = await r.get("agent1", f"/api/v1/recordings/{rec_id}")
        assert str(call["recording_ms"]) == str(meta["duration_ms"]) and call["recording_sha256"] == meta["sha256"]
        assert "key" not in meta and "path" not in str(meta), meta
        assert meta["call_id"] == cid and meta["agents"] == ["agent1"] and meta["queue"] == "billing", meta
        assert meta["ivr"] is True and meta["format"] == "opus" and meta["channels"] == "caller,agent", meta
        pauses = meta["pauses"]
        assert len(pauses) == 2, f"the PIN and the agent's pause: {pauses}"

        # the file: what the record says, and each party on its own channel
        audio = tmp_path / "rec.opus"
        async with r.http.get(f"{r.hotline.api}{meta['audio_url']}", headers=r.auth("agent1")) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "audio/ogg", resp.status
            audio.write_bytes(await resp.read())
        assert hashlib.sha256(audio.read_bytes()).hexdigest() == meta["sha256"]
        assert audio.stat().st_size == meta["bytes"]
        async with r.http.get(f"{r.hotline.api}{meta['audio_url']}",
                              headers={**r.auth("agent1"), "Range": "bytes=100-199"}) as resp:
            assert resp.status == 206 and len(await resp.read()) == 100
            assert resp.headers["Content-Range"].startswith("bytes 100-199/")
        # a play link (what the pages' <audio> plays): no token, Range works, only this recording, not forever
        link = await r.post("agent1", f"/api/v1/recordings/{rec_id}/play", expect=200)
        assert link["url"].startswith(f"{meta['audio_url']}?play=") and link["expires_at"] > time.time() * 1000
        async with r.http.get(f"{r.hotline.api}{link['url']}", headers={"Range": "bytes=0-9"}) as resp:
            assert resp.status == 206 and await resp.read() == audio.read_bytes()[:10]
        expires, who, sig = link["url"].split("?play=")[1].split(".")
        flipped = sig[:-1] + ("B" if sig.endswith("A") else "A")
        stale = int(time.time() * 1000) - 1
        for bad in (f"{int(expires) + 1}.{who}.{sig}", f"{expires}.agent2.{sig}", f"{expires}.{who}.{flipped}",
                    f"{stale}.{who}.{sig}", "x", ""):
            async with r.http.get(f"{r.hotline.api}{meta['audio_url']}?play={bad}") as resp:
                assert resp.status == 401, (bad, resp.status)
        other = meta["audio_url"].replace(rec_id, "R" + "0" * 20)
        async with r.http.get(f"{r.hotline.api}{other}?play={expires}.{who}.{sig}") as resp:
            assert resp.status == 401, resp.status
        stereo = decode(audio)
        assert abs(len(stereo) * 1000 // RATE - meta["duration_ms"]) < 200, (len(stereo), meta["duration_ms"])

        (pin_from, pin_to), (hold_from, hold_to) = pauses
        assert pin_to - pin_from >= PIN_AT_MS - 1500, pauses
        assert hold_to - hold_from >= 1200, pauses
        # the PIN: nothing of the caller (its tone never stopped); right after it, the caller again
        pin = analyse(span(stereo, 0, pin_from + 100, pin_to - 100))
        assert pin.silent, f"the sensitive collect reached the recording: {pin}"
        after_pin = analyse(span(stereo, 0, pin_to + 100, pin_to + 600))
        assert after_pin.only("caller"), f"the caller after the PIN: {after_pin}"
        # talking: the caller on the left only, the agent on the right only
        talk_left = analyse(span(stereo, 0, hold_from - 1200, hold_from - 100))
        talk_right = analyse(span(stereo, 1, hold_from - 1200, hold_from - 100))
        assert talk_left.only("caller"), f"left channel: {talk_left}"
        assert talk_right.only("agent"), f"right channel: {talk_right}"
        # the agent's pause: silence on both channels, for as long as it lasted; then both again
        for ch in (0, 1):
            gap = analyse(span(stereo, ch, hold_from + 100, hold_to - 100))
            assert gap.silent, f"channel {ch} during the pause: {gap}"
        assert analyse(span(stereo, 0, hold_to + 100, hold_to + 900)).only("caller")
        assert analyse(span(stereo, 1, hold_to + 100, hold_to + 900)).only("agent")

        # access: another agent is refused; the supervisor may; both in the audit trail (admins only)
        await r.get("agent2", f"/api/v1/recordings/{rec_id}", expect=403)
        await r.get("agent2", f"{meta['audio_url']}", expect=403)
        listed = await r.get("agent2", "/api/v1/recordings")
        assert listed["recordings"] == [], "an agent lists only the recordings it is heard on"
        mine = await r.get("agent1", "/api/v1/recordings")
        assert [x["id"] for x in mine["recordings"]] == [rec_id]
        await r.get("super1", f"/api/v1/recordings/{rec_id}")
        await r.get("super1", "/api/v1/audit", expect=403)
        audit = (await r.get("admin1", f"/api/v1/audit?target={rec_id}"))["entries"]
        seen = [(e["action"], e["by"]) for e in audit]
        assert ("recording.play", "agent1") in seen and ("recording.denied", "agent2") in seen, seen
        assert seen.count(("recording.play", "agent1")) == 2, \
            f"one play by URL, one by link; a Range request in the middle of a play is not a new play: {seen}"

        # delete (admins): file and index gone
        stored = list((r.hotline.var / "recordings").rglob(f"{rec_id}.opus"))
        assert len(stored) == 1, stored
        await r.delete("agent1", f"/api/v1/recordings/{rec_id}", expect=403)
        await r.delete("admin1", f"/api/v1/recordings/{rec_id}")
        assert not stored[0].exists()
        await r.get("admin1", f"/api/v1/recordings/{rec_id}", expect=404)
        gone = await r.record(cid)
        assert not {"recording_id", "recording_ms", "recording_sha256"} & set(gone), gone
        assert ("recording.deleted", "admin1") in [
            (e["action"], e["by"]) for e in (await r.get("admin1", "/api/v1/audit?action=recording.*"))["entries"]]


async def call_in_pin(r: Rig) -> tuple[asyncio.Task[Any], str]:
    return await call_in(r, dtmf_at_ms=PIN_AT_MS)


PHRASE = "라디오"  # one of the words the Korean model hears reliably from espeak-ng (tests/service/test_quality.py)


def korean_g722_pcap(workdir: Path) -> Path:
    """G.722 RTP of espeak-ng saying PHRASE four times, each after 1.5 s of quiet."""
    wav = rtp_pcap.speech_wav(PHRASE, workdir / "phrase.wav", 16000, voice="ko")
    phrase = rtp_pcap.pcm_of_wav(wav, 16000)
    quiet = array.array("h", bytes(2 * 24000))
    pcm = array.array("h")
    for _ in range(4):
        pcm.extend(quiet)
        pcm.extend(phrase)
    pcm.extend(array.array("h", bytes(2 * 16000)))
    looped = workdir / "phrases.wav"
    with wave.open(str(looped), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    return rtp_pcap.write_pcap(workdir / "phrases.pcap",
                               rtp_pcap.rtp_packets("g722", rtp_pcap.encode("g722", looped)))


async def test_a_wideband_call_is_recorded_and_its_transcript_has_what_the_caller_said(tmp_path: Path) -> None:
    """The whole chain on a real call: a G.722 caller (the bridge at 16 kHz) says a Korean word to an
    agent; the recording is stored, queued, transcribed by the hotline's own transcriber (the real
    Korean model), and the API's transcript has the word on the caller's channel."""
    h = Hotline(tmp_path / "hotline", workers=1, overrides={
        "workers": {"clock_rate": 16000},
        "recording": {"policy": "always", "announce": False},
        "quality": {"transcribe": True}})
    pcap = await asyncio.to_thread(korean_g722_pcap, tmp_path)
    caller_sf = render_scenario("media_caller.xml", tmp_path, keep="dtmf-rfc2833", drop="dtmf-info",
                                formats="9", rtpmaps="a=rtpmap:9 G722/8000", digit="2", dtmf_at_ms=500,
                                info_type="none", info_body="none", audio_pcap=pcap, talk_ms=8000)
    agent_sf = render_scenario("agent_phone.xml", tmp_path, keep="remote-hangs-up", drop="agent-hangs-up",
                               ring_ms=100, talk_ms=30000)
    try:
        await h.start()
        async with SippServer(agent_sf, workdir=tmp_path, tag="agent", port=h.agent_sip_port,
                              extra=["-m", "1", "-mp", str(free_udp_tcp_port())]), \
                aiohttp.ClientSession() as http:
            await login(http, h, "agent1")
            result = await run_sipp(caller_sf, ("127.0.0.1", h.edge_port), workdir=tmp_path, tag="caller",
                                    limit_s=45, extra=["-s", "1000", "-mp", str(free_udp_tcp_port())])
            assert result.ok, result.describe() + "\n" + h.log_tail()
            auth = {"Authorization": f"Bearer {h.tokens['super1']}"}
            deadline = time.monotonic() + 90
            transcript: dict[str, Any] = {}
            while time.monotonic() < deadline:
                async with http.get(f"{h.api}/api/v1/recordings?limit=1", headers=auth) as r:
                    recs = (await r.json())["recordings"]
                if recs:
                    async with http.get(f"{h.api}/api/v1/recordings/{recs[0]['id']}/transcript", headers=auth) as r:
                        transcript = await r.json() if r.status == 200 else {}
                    if transcript.get("status") in ("done", "failed"):
                        break
                await asyncio.sleep(0.5)
            assert transcript.get("status") == "done", f"{transcript}\n{h.log_tail(40)}"
            assert recs[0]["clock_rate"] == 16000, recs[0]
            caller_text = transcript["channels"]["caller"]["text"]
            assert PHRASE in caller_text, f"the caller said {PHRASE} four times; the transcript: {caller_text!r}"
            words = [w for w in transcript["channels"]["caller"]["words"] if w.get("word") == PHRASE]
            assert words and all(0 <= w["start"] < w["end"] <= recs[0]["duration_ms"] / 1000 + 0.5 for w in words)
    finally:
        h.stop()
