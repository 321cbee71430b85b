"""Position and estimated-wait announcements to callers waiting in a queue, end to end.

Two sipp callers wait in `billing` (agent1 stays offline) on a plan announcing every 10 s. The
worker's logs say which announcement each caller got and when: the first comes 10 s after the caller
was queued (not right after the queue prompt), the first caller is number 1, the second number 2,
and once the first hung up the second is number 1. With nobody logged in and no history the estimate
is the default handle time per position ("about 3 minutes" for number 1). On the wire, the first
caller received the synthesised announcement sample for sample, and the hold music paused for it and
resumed where it stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ivr.prompts.library import PromptLibrary, PromptSpec
from tests import rtp_pcap
from tests.e2e.conftest import ROOT, Hotline
from tests.e2e.test_media import FRAME, locate, moh_wav, wav_pcm
from tests.ports import free_port_range, free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import run_sipp
from tests.sniffer import LoopbackSniffer

pytestmark = pytest.mark.e2e

PLAN = """
name: Announcements
numbers: ["1000"]
language: en
start: billing
nodes:
  billing:
    type: queue
    queue: billing
    prompt: {text: "Please hold."}
    announce: {every_s: 10}
"""
FIRST = "You are number 1 in the queue. The estimated wait is about 3 minutes."
SECOND = "You are number 2 in the queue. The estimated wait is about 6 minutes."


@pytest.fixture
async def hotline(tmp_path: Path) -> AsyncIterator[Hotline]:
    """One worker on a plan that only queues, with announcements every 10 s (speech off)."""
    plans = tmp_path / "dialplans"
    plans.mkdir()
    (plans / "announce.yaml").write_text(PLAN)
    h = Hotline(tmp_path / "hotline", workers=1, overrides={"dialplans_dir": str(plans)})
    try:
        await h.start()
        yield h
    finally:
        h.stop()


def at(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()


async def test_waiting_callers_hear_their_position_and_wait(hotline: Hotline, tmp_path: Path) -> None:
    # (SIP, media) per caller; sipp's media takes 4 ports (audio and video, RTP and RTCP)
    media0, media1 = free_port_range(4), free_port_range(4)  # blocks of 4: RTP, RTCP and sipp's video
    ports = [(free_udp_tcp_port(), media0), (free_udp_tcp_port(), media1)]
    sniffed = {hotline.edge_port, *[m for _, m in ports]}
    sniffed |= set(range(hotline.rtp_base, hotline.rtp_base + hotline.workers * 40))

    async def caller(n: int, talk_ms: int) -> None:
        sf = render_scenario("caller.xml", tmp_path / f"c{n}", keep="caller-hangs-up", drop="remote-hangs-up",
                             digit=1, dtmf_at_ms=500, talk_ms=talk_ms)
        sip, media = ports[n]
        result = await run_sipp(sf, ("127.0.0.1", hotline.edge_port), workdir=tmp_path / f"c{n}", tag=f"caller{n}",
                                port=sip, limit_s=45, extra=["-s", "1000", "-mp", str(media)])
        assert result.ok, result.describe() + "\n" + hotline.log_tail()

    with LoopbackSniffer(sniffed) as sniff:
        first = asyncio.create_task(caller(0, 17000))  # one announcement (at ~10 s), then hangs up
        await asyncio.sleep(3)
        await asyncio.gather(first, caller(1, 26000))  # two: at ~13 s (number 2) and ~23 s (number 1)
        await asyncio.sleep(0.3)

    # --- the logs: which announcement each call got, and when
    records = hotline.log_records()
    queued = [r for r in records if r.get("event") == "call.queued"]
    assert len(queued) == 2, hotline.log_tail()
    said: dict[str, list[dict[str, Any]]] = {r["call_id"]: [] for r in queued}
    for r in records:
        if r.get("event") == "queue.announcement":
            said[r["call_id"]].append(r)
    one, two = (said[r["call_id"]] for r in queued)
    print("announcements:", [[(a["position"], a["text"]) for a in s] for s in (one, two)])
    assert [(a["position"], a["waiting"], a["text"]) for a in one] == [(1, 2, FIRST)]
    assert [(a["position"], a["text"]) for a in two] == [(2, SECOND), (1, FIRST)]
    assert all(a["basis"] == "default" and a["language"] == "en" for a in one + two)
    for q, anns in zip(queued, (one, two), strict=True):
        for n, a in enumerate(anns, 1):
            after = at(a) - at(q)
            assert after >= n * 10 - 0.5, f"announcement {n} came {after:.1f} s after queueing"
    assert not [r for r in records if r.get("event") == "queue.announcement_failed"]

    # --- the wire: the first caller received the announcement, then the music where it paused
    rtp = [rtp_pcap.RtpPacket.parse(p.ts, p.payload) for p in sniff.packets if p.dst == ports[0][1] and p.is_rtp]
    stream = b"".join(p.payload for p in rtp if p.payload_type == 8)
    library = PromptLibrary(ROOT / "prompts", hotline.workdir.parent / "prompt-cache", 8000, {"en": "en-us"})
    announcement = rtp_pcap.alaw_encode(wav_pcm(library.resolve(PromptSpec(text=FIRST), "en")))
    start = locate("pcma", stream, announcement)
    assert start is not None, "the caller did not receive the announcement"
    intact = rtp_pcap.g711_agreement("pcma", stream[start:], announcement)
    assert intact == len(announcement), f"the announcement broke after {intact} of {len(announcement)} samples"
    moh = rtp_pcap.alaw_encode(wav_pcm(moh_wav(hotline)))
    before = stream[start - 8000:start]  # the last second of music before the announcement
    paused_at = next((pos + len(before) for pos in range(0, len(moh) - len(before), FRAME)
                      if rtp_pcap.g711_agreement("pcma", before, moh[pos:]) == len(before)), None)
    assert paused_at is not None, "no hold music right before the announcement"
    end = start + len(announcement)
    resumed = next((end + gap for gap in range(0, 4 * FRAME, 8)
                    if rtp_pcap.g711_agreement("pcma", stream[end + gap:end + gap + 8000],
                                               moh[paused_at:]) == 8000), None)
    assert resumed is not None, "the hold music did not resume where it paused"
    print(f"announce: {len(announcement) / 8000:.2f} s announcement intact; music resumed "
          f"{(resumed - end) / 8:.0f} ms after it, at {paused_at / 8000:.2f} s into the file")
