"""The pop hub with a desktop that stops reading: it is dropped without holding anyone else."""

from __future__ import annotations

import asyncio

import pytest

import ivr.cti.hub
from ivr.cti.hub import PopHub
from ivr.queues.store import StreamEvent


class StuckSocket:
    """A WebSocket whose peer stopped reading: sends and the close handshake never finish."""

    def __init__(self) -> None:
        self.closed = False
        self.close_code: int | None = None
        self.sent: list[str] = []

    async def send_str(self, data: str) -> None:
        self.sent.append(data)
        await asyncio.Event().wait()

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        self.close_code = code
        await asyncio.Event().wait()
        return True


class Sink:
    def __init__(self) -> None:
        self.closed = False
        self.sent: list[str] = []

    async def send_str(self, data: str) -> None:
        self.sent.append(data)


def state(n: int, agent: str) -> StreamEvent:
    return StreamEvent(f"{1000 + n}-0", "agent.state", {"agent_id": agent, "state": "break", "ts": 1})


async def test_a_desktop_that_stops_reading_is_dropped_and_the_others_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ivr.cti.hub, "QUEUE_MAX", 2)
    hub = PopHub(store=None)  # type: ignore[arg-type]  # no offer here: the store is never used
    stuck, fine = StuckSocket(), Sink()
    slow = hub.add("agent1", stuck)  # type: ignore[arg-type]
    ok = hub.add("agent2", fine)  # type: ignore[arg-type]
    writers = [asyncio.create_task(hub.serve(slow, None)), asyncio.create_task(hub.serve(ok, None))]
    try:
        for n in range(6):  # the stuck writer holds one, its queue takes two, the next one overflows
            await asyncio.wait_for(hub.dispatch(state(n, "agent1")), 1.0)
            await asyncio.wait_for(hub.dispatch(state(n, "agent2")), 1.0)
            await asyncio.sleep(0.01)
        assert not hub.connected("agent1") and hub.connected("agent2")
        for _ in range(100):
            if stuck.close_code is not None and len(fine.sent) == 6:
                break
            await asyncio.sleep(0.01)
        assert stuck.close_code == 1013  # closed (in the background): reconnect with the last id
        assert len(fine.sent) == 6
    finally:
        for w in writers:
            w.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
        await hub.close()


async def test_call_control_events_reach_every_agent_they_name() -> None:
    """The consulted agent's desktop gets its consult pop (an agent-only event), the consult's progress
    (``target_agent_id``) and the conference (``agents``); a third agent gets none of them."""
    hub = PopHub(store=None)  # type: ignore[arg-type]
    sinks = {a: Sink() for a in ("agent1", "agent2", "agent3", "*")}
    desks = {a: hub.add(a, s) for a, s in sinks.items()}  # type: ignore[arg-type]
    events = [
        StreamEvent("1-0", "call.consult_offered", {"call_id": "c", "agent_id": "agent2", "from_agent": "agent1",
                                                    "ani": "+1", "queue": "q"}),
        StreamEvent("2-0", "call.consult_answered", {"call_id": "c", "agent_id": "agent1",
                                                     "target_agent_id": "agent2"}),
        StreamEvent("3-0", "call.conferenced", {"call_id": "c", "agent_id": "agent1", "agents": ["agent1", "agent2"]}),
        StreamEvent("4-0", "call.held", {"call_id": "c", "agent_id": "agent1", "by": "agent1"}),
    ]
    for ev in events:
        await hub.dispatch(ev)
    got = {a: [d.queue.get_nowait().type for _ in range(d.queue.qsize())] for a, d in desks.items()}
    assert got["agent1"] == ["call.consult_answered", "call.conferenced", "call.held"]
    assert got["agent2"] == ["call.consult_offered", "call.consult_answered", "call.conferenced"]
    assert got["agent3"] == []
    assert got["*"] == ["call.consult_answered", "call.conferenced", "call.held"]  # the pop is not the floor's
    await hub.close()
