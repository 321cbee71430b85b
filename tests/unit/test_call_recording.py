"""ivr.calls.recording.CallRecording with a fake SIP thread and store: which legs it connects to which
channel, and how pause reasons stack (an agent's pause and a sensitive collect each lift only their
own), what the record says about the pauses, and that nothing happens once it is stopped."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from ivr.calls.recording import AGENT_SIDE, CALLER, CallRecording
from ivr.core.config import Settings


class FakeSip:
    def __init__(self) -> None:
        self.links: set[tuple[str, int]] = set()
        self.started: list[list[str]] = []
        self.stopped: list[int] = []

    async def start_call_recording(self, paths: list[str], silence_wav: str) -> int:
        self.started.append(paths)
        return 7

    async def record_sources(self, rec_id: int, on: list[tuple[str, int]],
                             off: list[tuple[str, int]]) -> list[tuple[str, int]]:
        assert rec_id == 7
        self.links -= set(off)
        self.links |= set(on)
        return on

    async def stop_call_recording(self, rec_id: int) -> None:
        self.stopped.append(rec_id)


class FakeStore:
    def __init__(self) -> None:
        self.states: list[tuple[str, str]] = []

    async def recording_state(self, call_id: str, what: str, *, by: str) -> None:
        self.states.append((what, by))


def recording(tmp_path: Path) -> tuple[CallRecording, FakeSip, FakeStore]:
    sip, store = FakeSip(), FakeStore()
    rec = CallRecording(sip, store, Settings(var_dir=tmp_path), worker="w0", call_id="c1")  # type: ignore[arg-type]
    return rec, sip, store


async def test_channels_follow_the_legs_and_pauses_stack(tmp_path: Path) -> None:
    rec, sip, store = recording(tmp_path)
    await rec.start(by="policy")
    assert rec.recording_id.startswith("R") and len(rec.recording_id) == 21
    assert sip.started == [[str(rec.dir / "caller.wav"), str(rec.dir / "agent.wav")]]
    await rec.follow("caller", ["agent"], agents=["a1"])
    assert sip.links == {("caller", CALLER), ("agent", AGENT_SIDE)}
    await rec.follow("caller", ["agent", "target"], agents=["a1", "a2"])  # a conference
    assert sip.links == {("caller", CALLER), ("agent", AGENT_SIDE), ("target", AGENT_SIDE)}
    assert rec.agents == ["a1", "a2"]

    assert await rec.pause("agent", by="a1")
    assert sip.links == set(), "paused: nothing reaches the files (the keeper writes silence)"
    assert not await rec.pause("agent", by="a1"), "a second pause for the same reason changes nothing"
    assert await rec.pause("sensitive", by="sensitive")
    await rec.follow("caller", ["agent"])          # legs change while paused: still nothing connected
    assert sip.links == set()
    assert await rec.resume("agent", by="a1")
    assert sip.links == set() and rec.paused, "the sensitive collect still holds it"
    await asyncio.sleep(0.02)
    assert await rec.resume("sensitive", by="sensitive")
    assert sip.links == {("caller", CALLER), ("agent", AGENT_SIDE)}
    assert not await rec.resume("sensitive", by="sensitive")
    assert [w for w, _ in store.states] == ["started", "paused", "resumed"], "one pause, however many reasons"
    assert len(rec.pauses) == 1 and rec.pauses[0][1] >= rec.pauses[0][0] + 20

    job = await rec.stop()
    assert job is not None and sip.stopped == [7]
    meta: dict[str, Any] = json.loads((rec.dir / "meta.json").read_text())
    assert meta["pauses"] == rec.pauses and meta["agents"] == ["a1", "a2"] and meta["ended_at"] >= meta["started_at"]
    assert await rec.stop() is None
    assert not await rec.pause("agent", by="a1")


async def test_started_paused_for_the_policy_until_the_agent_starts_it(tmp_path: Path) -> None:
    rec, sip, store = recording(tmp_path)
    await rec.start(by="policy", paused_for="policy")
    await rec.follow("caller", ["agent"])
    assert sip.links == set() and rec.paused
    assert await rec.resume("policy", by="a1")
    assert sip.links == {("caller", CALLER), ("agent", AGENT_SIDE)}
    assert store.states == [("started", "policy"), ("paused", "policy"), ("resumed", "a1")]
    await rec.stop()
    assert len(rec.pauses) == 1 and rec.pauses[0][0] == 0
