"""The record side of live supervision (lua/scripts/call_control.lua, monitor_*) on a real Redis: the
``monitored`` flag beside the state, the ``call.monitor`` events and who sees them, refusals that
change nothing. The media side runs in tests/e2e/test_supervision.py."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from ivr.core.errors import BadRequest, Conflict
from ivr.cti.hub import agents_named
from ivr.queues.store import QueueStore, StreamEvent
from tests.service.test_call_control_state import PREFIX, connected, events, state


@pytest.fixture
def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX)


async def monitor_events(store: QueueStore) -> list[dict[str, object]]:
    return [d for _, d in await events(store, "call.monitor")]


async def test_start_answer_change_stop_keep_the_flag_and_tell_the_agent_only_what_it_may_know(
        store: QueueStore) -> None:
    await connected(store)
    assert (await store.call_control("c1", "monitor_start", by="super1", a1="listen"))["changed"] is True
    call = await store.get_call("c1")
    assert call and call["monitored"] == "listen" and call["state"] == "connected"
    assert await monitor_events(store) == []  # nothing until the supervisor's phone answers
    await store.call_control("c1", "monitor_answered", by="super1")
    await store.call_control("c1", "monitor_change", by="super1", a1="whisper")
    assert (await store.call_control("c1", "monitor_change", by="super1", a1="whisper"))["changed"] is False
    await store.call_control("c1", "monitor_change", by="super1", a1="barge")
    await store.call_control("c1", "monitor_change", by="super1", a1="listen")
    res = await store.call_control("c1", "monitor_stop", by="super1", a1="requested")
    assert res == {"changed": True, "supervisor": "super1", "talked": True}
    assert (await store.call_control("c1", "monitor_stop", by="super1", a1="requested"))["changed"] is False
    call = await store.get_call("c1")
    assert call and "monitored" not in call and "monitor" not in call and call["state"] == "connected"
    seen = [(e["mode"], e["notice"], e["agent_sees"]) for e in await monitor_events(store)]
    # a listen is not shown (supervision.notify_agent_on_listen off); the listen after a barge is seen
    # once, so that the desktop clears its notice
    assert seen == [("listen", "", False), ("whisper", "coached", True), ("barge", "barged", True),
                    ("listen", "", True), ("stopped", "", False)]
    evs = await monitor_events(store)
    assert {(e["agent_id"], e["supervisor"]) for e in evs} == {("a1", "super1")}
    assert evs[-1]["reason"] == "requested"
    named = [agents_named(StreamEvent("1-0", "call.monitor", dict(e))) for e in evs]
    assert named == [set(), {"a1"}, {"a1"}, {"a1"}, set()]


async def test_a_listen_the_agent_is_told_of(store: QueueStore) -> None:
    await connected(store)
    await store.call_control("c1", "monitor_start", by="super1", a1="listen", a2="1")
    await store.call_control("c1", "monitor_answered", by="super1")
    await store.call_control("c1", "monitor_stop", by="super1", a1="supervisor_hangup")
    seen = [(e["mode"], e["notice"], e["agent_sees"], e["reason"]) for e in await monitor_events(store)]
    assert seen == [("listen", "listened", True, ""), ("stopped", "", True, "supervisor_hangup")]


async def test_refusals_change_nothing(store: QueueStore) -> None:
    await connected(store)
    with pytest.raises(BadRequest):
        await store.call_control("c1", "monitor_start", by="super1", a1="spy")
    with pytest.raises(Conflict) as none:
        await store.call_control("c1", "monitor_change", by="super1", a1="barge")
    assert none.value.code == "monitor.none"
    await store.call_control("c1", "monitor_start", by="super1", a1="barge")
    before = await store.get_call("c1")
    with pytest.raises(Conflict) as busy:
        await store.call_control("c1", "monitor_start", by="super2", a1="listen")
    assert busy.value.code == "monitor.active"
    assert await store.get_call("c1") == before
    assert json.loads(str(before and before["monitor"]))["by"] == "super1"


async def test_only_a_call_with_an_agent_can_be_supervised(store: QueueStore) -> None:
    await connected(store)
    await store.call_control("c1", "transfer", by="a1", a1="queue", a2="support")
    with pytest.raises(Conflict) as wrong:
        await store.call_control("c1", "monitor_start", by="super1", a1="listen")
    assert wrong.value.code == "call.wrong_state"
    assert await state(store) == "transferring"
