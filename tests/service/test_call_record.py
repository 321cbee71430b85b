"""The call record against a real Redis and the real CTI API: survey score, voicemail, variables,
callbacks that keep the caller's place, and who may read them."""

from __future__ import annotations

import asyncio
import json
import time
import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from ivr.calls.call_record import CallRecord
from ivr.core.config import DEMO_USERS, Settings
from ivr.core.errors import BadRequest, Conflict, NotFound
from ivr.core.events import AgentState, EventType
from ivr.cti.app import init_app
from ivr.dialplan.journey import Journey
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer, free_port

PREFIX = "rec"
SUPER = {"Authorization": "Bearer super1-demo-token"}
ADMIN = {"Authorization": "Bearer admin-demo-token"}
AGENT1 = {"Authorization": "Bearer agent1-demo-token"}
AGENT2 = {"Authorization": "Bearer agent2-demo-token"}


def write_wav(path: Path, frames: int = 1600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(range(256)) * (frames * 2 // 256))
    return path


@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    port = free_port()
    return Settings(users=DEMO_USERS, var_dir=tmp_path / "var", redis={"url": redis_server.url, "prefix": PREFIX},
                    api={"host": "127.0.0.1", "port": port})


@pytest.fixture
async def store(redis: Redis, settings: Settings) -> QueueStore:
    s = QueueStore(redis, prefix=PREFIX)
    await s.register_agent("agent1", name="A1", skills={"billing": 3}, sip_uri="sip:a1@127.0.0.1:5999",
                           languages=["en"])
    return s


async def start(store: QueueStore, cid: str) -> None:
    await store.call_start(cid, "w0", ani="+15550001", dnis="1000", hotline="demo", language="en",
                           plan_version="v1")


async def connected(store: QueueStore, cid: str) -> None:
    """A call answered by agent1 in queue billing."""
    await start(store, cid)
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    offer = await store.enqueue(cid, queue="billing", skill="billing", priority=0, journey={"steps": []})
    assert offer is not None
    await store.offer_answered(cid, offer.offer_id)


def journey() -> Journey:
    j = Journey(plan="main", plan_version="v1", language="en")
    j.step("offer", "callback", digit="1")
    return j


async def events_of(store: QueueStore, type_: str) -> list[dict[str, Any]]:
    return [e.data for e in await store.read_events("0-0") if e.type == type_]


# --- the store and CallRecord --------------------------------------------------------------------

async def test_csat_is_stored_on_the_call_with_an_event_naming_queue_and_agent(
        store: QueueStore, settings: Settings) -> None:
    await connected(store, "c1")
    await CallRecord(store, "c1", settings=settings).save({"csat": 4})
    call = await store.get_call("c1")
    assert call is not None and call["csat"] == 4
    [ev] = await events_of(store, EventType.CALL_CSAT)
    assert ev["call_id"] == "c1" and ev["csat"] == 4 and ev["queue"] == "billing" and ev["agent_id"] == "agent1"


async def test_a_case_from_the_korean_example_plan_is_due_in_its_business_hours(
        store: QueueStore, settings: Settings) -> None:
    """The example plan: a Korean name (kept as the case's hotline; who opened it is the plan's id),
    hours mon-fri 09:00-18:00 and sat 09:00-13:00 in Asia/Seoul and a holiday calendar. An anonymous
    caller's case has no number."""
    from ivr.dialplan.hours import case_due
    from ivr.dialplan.loader import load_plan

    plan = load_plan(Path(__file__).parents[2] / "dialplans" / "examples" / "korean-telecom.yaml")
    await start(store, "c1")
    rec = CallRecord(store, "c1", settings=settings, plan=plan)
    ref = await rec.open_case(tier="important", reason="요금 이중 청구", customer="+821012345678")
    case_id = ref.case_id
    assert not ref.existing
    case = await store.get_case(case_id)
    assert case is not None
    assert (case["tier"], case["reason"], case["customer"], case["hotline"], case["opened_by"], case["calls"]) == (
        "important", "요금 이중 청구", "+821012345678", plan.plan.name, "ivr:korean-telecom", ["c1"])
    opened = datetime.fromtimestamp(case["opened_at"] / 1000, UTC)
    assert case["due_at"] == int(case_due(opened, "important", settings.cases, plan).timestamp() * 1000)
    assert case["due_at"] - case["opened_at"] >= 2 * 3600 * 1000  # business time: never sooner than 2 h
    call = await store.get_call("c1")
    assert call is not None and call["case_id"] == case_id
    await start(store, "c2")
    anonymous = (await CallRecord(store, "c2", settings=settings, plan=plan).open_case(
        tier="normal", reason="", customer="anonymous")).case_id
    later = await store.get_case(anonymous)
    assert later is not None and (later["customer"], later["reason"], later["calls"]) == (
        "", "complaint from the IVR", ["c2"])


async def test_a_repeat_caller_joins_the_open_case_and_its_variables_seed_the_plan(
        store: QueueStore, settings: Settings) -> None:
    """The caller's unfinished case: found at the call's start (case.* variables, the call linked to
    it), and a case node on the second call takes it instead of opening another. Resolved: gone."""
    await start(store, "c1")
    first = await CallRecord(store, "c1", settings=settings).open_case(tier="urgent", reason="no line",
                                                                       customer="+15550001")
    await start(store, "c2")
    rec = CallRecord(store, "c2", settings=settings)
    found = await rec.repeat_caller("+15550001")
    assert found == {"case.id": first.case_id, "case.tier": "urgent", "case.status": "open",
                     "case.overdue": "false", "case.count": "1"}
    call = await store.get_call("c2")
    assert call is not None and call["case_id"] == first.case_id
    again = await rec.open_case(tier="normal", reason="still no line", customer="+15550001")
    assert again.case_id == first.case_id and again.existing
    case = await store.get_case(first.case_id)
    assert case is not None and case["calls"] == ["c1", "c2"] and case["tier"] == "urgent"
    assert [e["call_id"] for e in await events_of(store, "case.call_linked")] == ["c2"]  # linked once
    assert await rec.repeat_caller("anonymous") == {} and await rec.repeat_caller("") == {}
    await store.set_case_status(first.case_id, "resolved", by="agent1")
    assert await rec.repeat_caller("+15550001") == {}


async def test_the_case_lookup_of_a_call_start_gives_up_quietly(settings: Settings) -> None:
    """Redis unreachable: the look-up is bounded and means no case (the call goes on)."""
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    try:
        rec = CallRecord(QueueStore(dead, prefix=PREFIX), "c9", settings=settings)
        assert await rec.repeat_caller("+15550001", timeout_s=2.0) == {}
    finally:
        await dead.aclose()


async def test_a_bad_field_writes_nothing(store: QueueStore, settings: Settings) -> None:
    await start(store, "c1")
    rec = CallRecord(store, "c1", settings=settings)
    for fields in ({"csat": 9}, {"csat": 3, "mood": "ok"}, {"csat": 3, "variables": {"a b": "x"}}):
        with pytest.raises(BadRequest):
            await rec.save(fields)
    call = await store.get_call("c1")
    assert call is not None and "csat" not in call and "variables" not in call
    assert await events_of(store, EventType.CALL_CSAT) == []
    with pytest.raises(NotFound):
        await CallRecord(store, "nope", settings=settings).save({"csat": 3})


async def test_voicemail_is_attached_listed_newest_first_and_capped(store: QueueStore, settings: Settings) -> None:
    base = settings.var_dir / "voicemail" / "sales"
    for cid in ("c1", "c2", "c3"):
        await start(store, cid)
        await CallRecord(store, cid, settings=settings).save({"voicemail": {
            "mailbox": "sales", "path": str(write_wav(base / f"{cid}.wav")), "seconds": 2.0,
            "ended_by": "terminator"}})
    call = await store.get_call("c2")
    assert call is not None
    assert call["voicemail"]["path"] == str((base / "c2.wav").resolve())
    assert call["voicemail"]["mailbox"] == "sales" and call["voicemail"]["seconds"] == 2
    assert [e["call_id"] for e in await store.voicemails("sales")] == ["c3", "c2", "c1"]
    assert [e["call_id"] for e in await store.voicemails("sales", limit=2)] == ["c3", "c2"]
    events = await events_of(store, EventType.VOICEMAIL_NEW)
    assert [e["call_id"] for e in events] == ["c1", "c2", "c3"] and events[0]["mailbox"] == "sales"
    assert "path" not in events[0]
    # the same call recording again replaces its entry; a small cap keeps the newest
    await store.record_voicemail("c1", {"mailbox": "sales", "path": str(base / "c1.wav"), "seconds": 5.0,
                                        "ended_by": "hangup"}, keep=2)
    assert [(e["call_id"], e["seconds"]) for e in await store.voicemails("sales")] == [("c1", 5), ("c3", 2)]
    assert await store.redis.exists(store.keys.mailbox("sales"))


async def test_voicemail_path_outside_the_voicemail_dir_is_refused(
        store: QueueStore, settings: Settings, tmp_path: Path) -> None:
    await start(store, "c1")
    write_wav(tmp_path / "secret.wav")
    sneaky = settings.var_dir / "voicemail" / ".." / ".." / "secret.wav"
    with pytest.raises(BadRequest) as exc:
        await CallRecord(store, "c1", settings=settings).save({"voicemail": {
            "mailbox": "sales", "path": str(sneaky), "seconds": 1.0, "ended_by": "hangup"}})
    assert exc.value.code == "record.voicemail_path"
    call = await store.get_call("c1")
    assert call is not None and "voicemail" not in call
    assert await store.voicemails("sales") == [] and await events_of(store, EventType.VOICEMAIL_NEW) == []


async def test_variables_merge_and_their_size_is_capped_in_redis(store: QueueStore, settings: Settings) -> None:
    await start(store, "c1")
    rec = CallRecord(store, "c1", settings=settings)
    await rec.save({"variables": {"order": "77", "tier": "gold"}, "disposition": "resolved"})
    await rec.save({"variables": {"tier": "silver"}})
    call = await store.get_call("c1")
    assert call is not None and call["variables"] == {"order": "77", "tier": "silver"}
    assert call["disposition"] == "resolved"
    with pytest.raises(BadRequest) as exc:
        await store.record_variables("c1", {"big": "x" * 100}, max_bytes=64)
    assert exc.value.code == "record.too_large"
    call = await store.get_call("c1")
    assert call is not None and call["variables"] == {"order": "77", "tier": "silver"}


async def test_a_queued_caller_books_a_callback_that_keeps_its_place(store: QueueStore, settings: Settings) -> None:
    for cid, prio in (("c1", 5), ("c2", 0)):
        await start(store, cid)
        await store.enqueue(cid, queue="billing", skill="billing", priority=prio, journey={})
    place = await store.redis.zscore(store.keys.waiting("billing"), "c2")
    assert place is not None
    cb = await CallRecord(store, "c2", settings=settings).request_callback(
        queue="billing", number="+1 555 0100", journey=journey())
    assert await store.waiting("billing") == ["c1"]  # it waits no more: the callback holds its place
    [pending] = await store.list_callbacks("billing")
    assert pending["id"] == cb and pending["place"] == int(place) and pending["state"] == "pending"
    assert pending["number"] == "+15550100" and pending["call_id"] == "c2" and pending["queue"] == "billing"
    assert pending["journey"]["steps"][0]["digit"] == "1"
    call = await store.get_call("c2")
    assert call is not None and call["callback_id"] == cb and call["state"] == "ivr"
    [ev] = await events_of(store, EventType.CALLBACK_REQUESTED)
    assert ev["callback_id"] == cb and ev["place"] == int(place) and "number" not in ev
    # booking again returns the same pending callback
    again = await CallRecord(store, "c2", settings=settings).request_callback(
        queue="billing", number="+15550100", journey=journey())
    assert again == cb and len(await store.list_callbacks("billing")) == 1


async def test_an_unqueued_caller_gets_the_place_it_would_have_had(store: QueueStore, settings: Settings) -> None:
    await start(store, "c1")
    await store.enqueue("c1", queue="billing", skill="billing", priority=0, journey={})
    await asyncio.sleep(0.002)  # a later millisecond: the same one would tie the two places
    await start(store, "c2")
    await asyncio.sleep(0.01)  # places are in milliseconds: c2's "now" must be later than c1's enqueue
    before = int(time.time() * 1000)
    late = await CallRecord(store, "c2", settings=settings).request_callback(
        queue="billing", number="5550100", journey=journey())
    early = await CallRecord(store, "c1", settings=settings).request_callback(
        queue="billing", number="5550101", journey=journey())
    cbs = await store.list_callbacks("billing")
    assert [c["id"] for c in cbs] == [early, late]
    assert cbs[1]["place"] >= 9 * 10**13 + before - 1000


async def test_callbacks_are_cancelled_once_and_bad_numbers_store_nothing(
        store: QueueStore, settings: Settings) -> None:
    await start(store, "c1")
    rec = CallRecord(store, "c1", settings=settings)
    with pytest.raises(BadRequest) as exc:
        await rec.request_callback(queue="billing", number="123;user=phone", journey=journey())
    assert exc.value.code == "callback.number_invalid"
    assert await store.list_callbacks("billing") == []
    cb = await rec.request_callback(queue="billing", number="5550100", journey=journey())
    await store.cancel_callback(cb, by="super1")
    assert await store.list_callbacks("billing") == []
    got = await store.get_callback(cb)
    assert got is not None and got["state"] == "cancelled" and got["cancelled_by"] == "super1"
    assert await store.redis.ttl(store.keys.callback(cb)) > 0
    with pytest.raises(Conflict):
        await store.cancel_callback(cb)
    with pytest.raises(NotFound):
        await store.cancel_callback("nope")
    [ev] = await events_of(store, EventType.CALLBACK_CANCELLED)
    assert ev["callback_id"] == cb
    # a new one may be booked after the first was cancelled
    assert await rec.request_callback(queue="billing", number="5550100", journey=journey()) != cb
    with pytest.raises(NotFound):
        await CallRecord(store, "gone", settings=settings).request_callback(
            queue="billing", number="5550100", journey=journey())


# --- the API ---------------------------------------------------------------------------------

@pytest.fixture
async def api(settings: Settings, store: QueueStore) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    runner = web.AppRunner(init_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", settings.api.port)
    await site.start()
    async with aiohttp.ClientSession() as http:
        yield f"http://127.0.0.1:{settings.api.port}", http
    await runner.cleanup()


async def error_code(resp: aiohttp.ClientResponse) -> str:
    code: str = (await resp.json())["error"]["code"]
    return code


async def test_the_call_record_shows_csat_voicemail_variables_and_callback(
        api: tuple[str, aiohttp.ClientSession], store: QueueStore, settings: Settings) -> None:
    url, http = api
    await connected(store, "c1")
    rec = CallRecord(store, "c1", settings=settings)
    f = write_wav(settings.var_dir / "voicemail" / "sales" / "c1.wav")
    await rec.save({"csat": 5, "variables": {"order": "77"},
                    "voicemail": {"mailbox": "sales", "path": str(f), "seconds": 1.5, "ended_by": "silence"}})
    cb = await rec.request_callback(queue="billing", number="5550100", journey=journey())
    async with http.get(f"{url}/api/v1/calls/c1", headers=SUPER) as resp:
        assert resp.status == 200
        call = await resp.json()
    assert call["csat"] == 5 and call["variables"] == {"order": "77"} and call["journey"] == {"steps": []}
    assert call["voicemail"]["url"] == "/api/v1/calls/c1/voicemail" and "path" not in call["voicemail"]
    assert call["callback"]["id"] == cb and call["callback"]["state"] == "pending"
    async with http.get(f"{url}/api/v1/calls/c1", headers=AGENT1) as resp:
        assert resp.status == 200  # the call's own agent
    async with http.get(f"{url}/api/v1/calls/c1", headers=AGENT2) as resp:
        assert resp.status == 403 and await error_code(resp) == "auth.forbidden"
    async with http.get(f"{url}/api/v1/calls/nope", headers=SUPER) as resp:
        assert resp.status == 404 and await error_code(resp) == "call.not_found"
    async with http.get(f"{url}/api/v1/calls/c1") as resp:
        assert resp.status == 401


async def test_voicemail_downloads_as_wav_only_from_inside_the_voicemail_dir(
        api: tuple[str, aiohttp.ClientSession], store: QueueStore, settings: Settings, tmp_path: Path) -> None:
    url, http = api
    await start(store, "c1")
    f = write_wav(settings.var_dir / "voicemail" / "sales" / "c1.wav")
    await CallRecord(store, "c1", settings=settings).save(
        {"voicemail": {"mailbox": "sales", "path": str(f), "seconds": 0.2, "ended_by": "terminator"}})
    async with http.get(f"{url}/api/v1/calls/c1/voicemail", headers=ADMIN) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "audio/wav"
        assert await resp.read() == f.read_bytes()
    async with http.get(f"{url}/api/v1/calls/c1/voicemail", headers=AGENT1) as resp:
        assert resp.status == 403
    await start(store, "c2")
    async with http.get(f"{url}/api/v1/calls/c2/voicemail", headers=SUPER) as resp:
        assert resp.status == 404 and await error_code(resp) == "voicemail.not_found"
    async with http.get(f"{url}/api/v1/calls/c9/voicemail", headers=SUPER) as resp:
        assert resp.status == 404 and await error_code(resp) == "call.not_found"
    # a record tampered with in Redis cannot make the API serve a file outside the voicemail dir
    write_wav(tmp_path / "secret.wav")
    sneaky = settings.var_dir / "voicemail" / ".." / ".." / "secret.wav"
    await store.redis.hset(store.keys.call("c2"), "voicemail",
                           json.dumps({"mailbox": "sales", "path": str(sneaky), "seconds": 1,
                                       "ended_by": "hangup"}))
    async with http.get(f"{url}/api/v1/calls/c2/voicemail", headers=SUPER) as resp:
        assert resp.status == 404 and await error_code(resp) == "voicemail.not_found"


async def test_mailbox_listing(api: tuple[str, aiohttp.ClientSession], store: QueueStore,
                               settings: Settings) -> None:
    url, http = api
    for cid in ("c1", "c2"):
        await start(store, cid)
        f = write_wav(settings.var_dir / "voicemail" / "sales" / f"{cid}.wav")
        await CallRecord(store, cid, settings=settings).save(
            {"voicemail": {"mailbox": "sales", "path": str(f), "seconds": 1.0, "ended_by": "hangup"}})
    async with http.get(f"{url}/api/v1/voicemail", params={"mailbox": "sales"}, headers=SUPER) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert [v["call_id"] for v in body["voicemail"]] == ["c2", "c1"]
    assert all("path" not in v and v["url"].endswith("/voicemail") for v in body["voicemail"])
    async with http.get(f"{url}/api/v1/voicemail", params={"mailbox": "sales", "limit": "1"},
                        headers=SUPER) as resp:
        assert len((await resp.json())["voicemail"]) == 1
    for params in ({}, {"mailbox": "../x"}, {"mailbox": "sales", "limit": "0"}):
        async with http.get(f"{url}/api/v1/voicemail", params=params, headers=SUPER) as resp:
            assert resp.status == 400 and await error_code(resp) == "request.invalid"
    async with http.get(f"{url}/api/v1/voicemail", params={"mailbox": "sales"}, headers=AGENT1) as resp:
        assert resp.status == 403


async def test_callbacks_are_listed_and_cancelled_by_supervisors_only(
        api: tuple[str, aiohttp.ClientSession], store: QueueStore, settings: Settings) -> None:
    url, http = api
    await start(store, "c1")
    cb = await CallRecord(store, "c1", settings=settings).request_callback(
        queue="billing", number="5550100", journey=journey())
    async with http.get(f"{url}/api/v1/callbacks", params={"queue": "billing"}, headers=SUPER) as resp:
        assert resp.status == 200
        [listed] = (await resp.json())["callbacks"]
    assert listed["id"] == cb and listed["number"] == "5550100" and listed["state"] == "pending"
    async with http.get(f"{url}/api/v1/callbacks", params={"queue": "billing"}, headers=AGENT1) as resp:
        assert resp.status == 403
    async with http.delete(f"{url}/api/v1/callbacks/{cb}", headers=AGENT1) as resp:
        assert resp.status == 403
    assert len(await store.list_callbacks("billing")) == 1
    async with http.delete(f"{url}/api/v1/callbacks/{cb}", headers=SUPER) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["state"] == "cancelled" and body["cancelled_by"] == "super1"
    async with http.delete(f"{url}/api/v1/callbacks/{cb}", headers=ADMIN) as resp:
        assert resp.status == 409 and await error_code(resp) == "callback.not_pending"
    async with http.delete(f"{url}/api/v1/callbacks/nope", headers=ADMIN) as resp:
        assert resp.status == 404 and await error_code(resp) == "callback.not_found"
    async with http.get(f"{url}/api/v1/callbacks", params={"queue": "billing"}, headers=SUPER) as resp:
        assert (await resp.json())["callbacks"] == []
    async with http.get(f"{url}/api/v1/callbacks", headers=SUPER) as resp:
        assert resp.status == 400


async def test_the_call_start_brings_the_callers_cases_in_the_same_round_trip(
        store: QueueStore, settings: Settings) -> None:
    """A worker's call start asks for the caller's unfinished cases with it: the same cases as
    ``open_cases_for``, and repeat_caller then links the call without looking again."""
    await start(store, "c1")
    first = await CallRecord(store, "c1", settings=settings).open_case(tier="important", reason="late refund",
                                                                       customer="+15550001")
    cases = await store.call_start("c2", "w0", ani="+15550001", dnis="1000", hotline="demo", language="en",
                                   plan_version="v1", cases_for=20)
    assert cases == await store.open_cases_for("+15550001", limit=20) and [c["id"] for c in cases] == [first.case_id]
    looked: list[str] = []
    original = store.open_cases_for

    async def counting(customer: str, limit: int = 5) -> list[dict[str, Any]]:
        looked.append(customer)
        return await original(customer, limit)

    store.open_cases_for = counting  # type: ignore[method-assign]
    found = await CallRecord(store, "c2", settings=settings).repeat_caller("+15550001", cases=cases)
    assert found["case.id"] == first.case_id and looked == []
    call = await store.get_call("c2")
    assert call is not None and call["case_id"] == first.case_id
    # not asked, or not a number cases hold: nothing looked up, None (the worker looks itself)
    assert await store.call_start("c3", "w0", ani="+15550001", dnis="1000", hotline="demo", language="en",
                                  plan_version="v1") is None
    assert await store.call_start("c4", "w0", ani="anonymous", dnis="1000", hotline="demo", language="en",
                                  plan_version="v1", cases_for=20) is None
    assert await store.call_start("c5", "w0", ani="+15550009", dnis="1000", hotline="demo", language="en",
                                  plan_version="v1", cases_for=20) == []
