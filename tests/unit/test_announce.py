"""The announcement loop with a fake leg, store and prompt library (one module, fakes only)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ivr.calls.announce import QueueAnnouncer
from ivr.dialplan.ports import QueueTarget
from ivr.queues.estimate import WaitEstimate


class FakeLeg:
    def __init__(self) -> None:
        self.started: list[tuple[str, bool]] = []
        self.stopped: list[int] = []
        self.playing: asyncio.Future[None] | None = None
        self.is_ended = False
        self.begun = asyncio.Event()

    async def start_playback(self, path: str, loop: bool = False, solo: bool = False) -> tuple[int, Any]:
        self.started.append((path, solo))
        self.playing = asyncio.get_running_loop().create_future()  # never ends by itself
        self.begun.set()
        return len(self.started), self.playing

    async def stop_playback(self, player_id: int) -> None:
        self.stopped.append(player_id)

    async def until(self, aw: asyncio.Future[Any], timeout: float | None) -> bool:
        await aw
        return True


class FakeStore:
    def __init__(self) -> None:
        self.status: WaitEstimate | None = WaitEstimate(2, 3, 200.0, "departures")
        self.asked = 0
        self.remembered: WaitEstimate | None = None

    async def wait_estimate(self, call_id: str) -> WaitEstimate | None:
        self.asked += 1
        return self.status

    async def remember_estimate(self, call_id: str, estimate: WaitEstimate) -> None:
        self.remembered = estimate

    async def asked_more(self, n: int) -> None:
        """Until ``n`` more turns of the loop asked for the estimate (bounded)."""
        target = self.asked + n
        for _ in range(500):
            if self.asked >= target:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the announcer asked {self.asked} times, expected {target}")


class FakePrompts:
    def __init__(self) -> None:
        self.texts: list[tuple[str | None, str]] = []

    def resolve(self, spec: Any, language: str) -> Path:
        self.texts.append((spec.text, language))
        return Path(f"/cache/{len(self.texts)}.wav")

    async def resolve_async(self, spec: Any, language: str) -> Path:
        return self.resolve(spec, language)


def announcer(leg: FakeLeg, store: FakeStore, prompts: FakePrompts, *, every_s: float | None = 0.01,
              language: str = "ko") -> QueueAnnouncer:
    target = QueueTarget("billing", ("billing",), "en", 0, announce_every_s=every_s, announce_position=True,
                         announce_wait=True)
    return QueueAnnouncer(leg=leg, store=store, prompts=prompts, call_id="c1", target=target,  # type: ignore[arg-type]
                          language=language)


async def test_announcement_is_said_solo_in_the_call_language() -> None:
    leg, store, prompts = FakeLeg(), FakeStore(), FakePrompts()
    a = announcer(leg, store, prompts).start()
    await asyncio.wait_for(leg.begun.wait(), 5)
    assert prompts.texts == [("대기 순번은 2번입니다. 예상 대기 시간은 약 3분입니다.", "ko")]
    assert leg.started == [("/cache/1.wav", True)]
    assert store.remembered == store.status  # kept on the call for the pop (ewt_s)
    await a.close()
    assert leg.stopped == [1]  # closing stops it (and so resumes the music)


async def test_an_offer_stops_the_announcement_at_once() -> None:
    leg, store, prompts = FakeLeg(), FakeStore(), FakePrompts()
    a = announcer(leg, store, prompts).start()
    await asyncio.wait_for(leg.begun.wait(), 5)
    store.status = None  # the offer took the call out of the queue
    a.interrupt()
    for _ in range(100):
        if leg.stopped:
            break
        await asyncio.sleep(0)
    assert leg.stopped == [1]
    await store.asked_more(3)  # later turns find the call not waiting: nothing more is said
    assert len(leg.started) == 1
    await a.close()


async def test_nothing_happens_without_announcements_or_while_not_waiting() -> None:
    leg, store, prompts = FakeLeg(), FakeStore(), FakePrompts()
    off = announcer(leg, store, prompts, every_s=None).start()
    off.interrupt()
    await off.close()
    store.status = None
    a = announcer(leg, store, prompts).start()
    await store.asked_more(3)
    await a.close()
    assert leg.started == [] and prompts.texts == []
