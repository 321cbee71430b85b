"""The pure pieces of bench/call_control.py: telling one 20 ms RTP frame's content apart (the agent's
tone, music on hold, silence), finding the first changed frame after a command, the leg budget's
callers per worker, and the projection of callers per core from a capacity run's costs."""

from __future__ import annotations

import math

import pytest

from bench.call_control import classify_frame, consult_capacity, first_change, projection, success_rate
from tests.call_audio import AGENT_HZ
from tests.rtp_pcap import alaw_encode

RATE = 8000


def frame(*freqs: float, level: float = 0.3, n: int = 160) -> bytes:
    samples = [int(level * 32767 / len(freqs) * sum(math.sin(2 * math.pi * f * i / RATE) for f in freqs))
               for i in range(n)]
    return alaw_encode(samples)


def test_a_frame_of_the_agent_tone_music_or_silence_is_told_apart() -> None:
    assert classify_frame(frame(AGENT_HZ)) == "tone"
    assert classify_frame(frame(440.0, 660.0)) == "music"  # notes below 900 Hz, as ivr/prompts/moh.py
    assert classify_frame(bytes([0xD5]) * 160) == "silence"  # A-law zero
    assert classify_frame(frame(3500.0)) == "other"  # another party's tone, neither music nor the agent
    assert classify_frame(b"") == "other"  # too short to say


def test_the_first_change_after_a_command_is_found_and_older_frames_are_ignored() -> None:
    frames = [(1.00, "tone"), (1.02, "music"), (1.04, "tone"), (1.06, "tone"), (1.08, "music"), (1.10, "music")]
    assert first_change(frames, 1.03, away_from="tone") == 1.08  # the music at 1.02 came before the command
    assert first_change(frames, 1.09, to="tone") is None
    assert first_change(frames, 1.01, to="tone") == 1.04
    assert first_change([], 0.0, to="tone") is None


@pytest.mark.parametrize(("spare", "callers"), [(0, 2), (1, 1), (2, 1), (4, 0)])
def test_callers_per_worker_follow_the_spare_legs(spare: int, callers: int) -> None:
    assert consult_capacity(4, spare) == callers


def test_success_rate() -> None:
    assert success_rate({"accepted": 3, "call.no_leg": 1}) == 0.75
    assert success_rate({"call.no_leg": 2}) == 0.0
    assert success_rate({}) is None


def test_projection_adds_a_share_of_an_idle_worker_to_each_callers_own_cost() -> None:
    previous = {"server_cpu_pct_per_call": 0.1, "idle_cpu_pct_of_machine_per_worker": 0.1,
                "server_rss_mb_per_call": 1.0, "rss_mb_per_worker": 80.0}
    two, one = projection(previous, 2), projection(previous, 1)
    assert two is not None and one is not None
    assert two["cpu_pct_of_machine_per_caller"] == pytest.approx(0.15)
    assert one["cpu_pct_of_machine_per_caller"] == pytest.approx(0.2)
    assert two["rss_mb_per_caller"] == 41.0 and one["rss_mb_per_caller"] == 81.0
    assert two["callers_per_core"] > one["callers_per_core"]
    assert projection({**previous, "rss_mb_per_worker": None}, 2) is None
