"""Complaint cases against a real Redis: opening, the status machine and its counters, the due index,
the deadline scan driven by a controlled clock, the first-contact report, notes, linked calls, the
list and its cursors, races between status changes, hostile input, and the events on the stream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from ivr.core import event_catalogue as cat
from ivr.core.case_states import CASE_TIERS, CASE_TRANSITIONS, CaseStatus
from ivr.core.config import Settings
from ivr.core.errors import BadRequest, Conflict, NotFound
from ivr.queues import store as store_module
from ivr.queues.store import QueueStore
from ivr.runtime.worker import CASE_DEADLINE_BATCH, Worker
from tests.conftest import RedisServer

HOUR = 3_600_000
T0 = (int(time.time() * 1000) // 1000) * 1000  # the controlled clock starts near the server's


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix="cst")


async def open_case(store: QueueStore, *, tier: str = "urgent", at: int = T0, due_in: int = HOUR,
                    owner: str = "", **kw: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"reason": "no water since Monday", "customer": "+4930123456", "opened_by": "ivr:demo"}
    fields.update(kw)
    return await store.open_case(tier=tier, owner=owner, due_at_ms=at + due_in, now_ms=at, **fields)


async def events(store: QueueStore, *types: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type, e.data) for e in await store.read_events("0-0") if not types or e.type in types]


async def due_index(store: QueueStore) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in await store.redis.zrange(store.keys.cases_due, 0, -1, withscores=True)}


def counts(status: dict[str, int] | None = None, open_: dict[str, int] | None = None, overdue: int = 0,
           due_soon: int = 0) -> dict[str, Any]:
    return {"status": {s.value: (status or {}).get(s.value, 0) for s in CaseStatus},
            "open": {t: (open_ or {}).get(t, 0) for t in CASE_TIERS}, "overdue": overdue, "due_soon": due_soon}


async def test_a_case_opens_with_its_fields_an_event_and_a_readable_id(store: QueueStore) -> None:
    case = await open_case(store, tier="important", owner="ada", hotline="demo", crm_id="crm-7",
                           customer_name="Zoë Ångström")
    assert case["id"] == "CS1" and (await open_case(store))["id"] == "CS2"
    assert case == await store.get_case("CS1")
    assert case["status"] == "open" and case["tier"] == "important" and case["owner"] == "ada"
    assert case["reason"] == "no water since Monday" and case["customer"] == "+4930123456"
    assert case["customer_name"] == "Zoë Ångström" and case["crm_id"] == "crm-7" and case["hotline"] == "demo"
    assert case["opened_by"] == "ivr:demo" and case["opened_at"] == T0 and case["due_at"] == T0 + HOUR
    assert case["updated_at"] == T0 and case["contacted_at"] is None and case["resolved_at"] is None
    assert case["closed_at"] is None and case["first_contact_ms"] is None and case["first_contact_met"] is None
    assert case["calls"] == [] and case["overdue"] is False and case["reopened"] == 0 and case["version"] == 1
    assert await store.get_case("CS3") is None
    opened = await events(store, "case.opened")
    assert opened[0][1] | {"v": 0} == {
        "case_id": "CS1", "tier": "important", "status": "open", "reason": "no water since Monday",
        "customer": "+4930123456", "agent_id": "ada", "due_at": T0 + HOUR, "opened_by": "ivr:demo",
        "call_id": "", "hotline": "demo", "ts": T0, "v": 0}
    assert isinstance(cat.parse("case.opened", opened[0][1]), cat.CaseOpened)
    # the owner's index and the list hold it
    assert [c["id"] for c in (await store.list_cases(owner="ada"))[0]] == ["CS1"]


async def test_opening_from_a_call_links_it_and_the_call_record_names_the_case(store: QueueStore) -> None:
    await store.call_start("call-1", "w0", ani="+4930123456", dnis="1000", hotline="demo", language="en",
                           plan_version="v1")
    case = await open_case(store, call_id="call-1")
    assert case["calls"] == ["call-1"]
    call = await store.get_call("call-1")
    assert call is not None and call["case_id"] == "CS1"
    # a call with no record (expired, or from elsewhere) is still linked on the case
    other = await open_case(store, call_id="gone-call")
    assert other["calls"] == ["gone-call"] and not await store.redis.exists(store.keys.call("gone-call"))
    assert [d["call_id"] for _, d in await events(store, "case.opened")] == ["call-1", "gone-call"]


async def test_linking_calls_keeps_the_newest_fifty_once_each_and_moves_the_calls_case(store: QueueStore) -> None:
    first, second = await open_case(store), await open_case(store)
    await store.call_start("c0", "w0", ani="1", dnis="1000", hotline="demo", language="en", plan_version="v1")
    linked = await store.link_case_call(first["id"], "c0", by="ada")
    assert linked["calls"] == ["c0"] and linked["version"] == 2
    again = await store.link_case_call(first["id"], "c0", by="ada")  # the last linked already: no change
    assert again["version"] == 2
    for i in range(1, 55):
        await store.link_case_call(first["id"], f"c{i}", by="ada")
    case = await store.get_case(first["id"])
    assert case is not None and case["calls"] == [f"c{i}" for i in range(5, 55)]
    relinked = await store.link_case_call(first["id"], "c10", by="bob")  # moves to the end, once
    assert relinked["calls"][-1] == "c10" and relinked["calls"].count("c10") == 1 and len(relinked["calls"]) == 50
    # a call names the last case it was linked to
    call = await store.get_call("c0")
    assert call is not None and call["case_id"] == first["id"]
    await store.link_case_call(second["id"], "c0", by="ada")
    call = await store.get_call("c0")
    assert call is not None and call["case_id"] == second["id"]
    linked_events = await events(store, "case.call_linked")
    assert len(linked_events) == 1 + 54 + 1 + 1
    assert linked_events[0][1] | {"ts": 0} == {"case_id": "CS1", "call_id": "c0", "agent_id": "", "by": "ada",
                                               "ts": 0, "v": 2}


async def _case_in(store: QueueStore, status: CaseStatus) -> str:
    """A new case brought to ``status`` by allowed moves."""
    path = {CaseStatus.OPEN: [], CaseStatus.CONTACTED: ["contacted"], CaseStatus.RESOLVED: ["resolved"],
            CaseStatus.CLOSED: ["closed"], CaseStatus.REOPENED: ["closed", "reopened"]}[status]
    case = await open_case(store)
    for step in path:
        due = T0 + 2 * HOUR if step == "reopened" else None
        case = await store.set_case_status(case["id"], step, by="ada", due_at_ms=due, now_ms=T0 + 1000)
    assert case["status"] == status
    return str(case["id"])


async def test_every_allowed_move_is_made_and_every_other_refused(store: QueueStore) -> None:
    made = refused = 0
    for start in CaseStatus:
        for target in CaseStatus:
            case_id = await _case_in(store, start)
            before = await store.get_case(case_id)
            due = T0 + 3 * HOUR if target is CaseStatus.REOPENED else None
            if target in CASE_TRANSITIONS[start]:
                case = await store.set_case_status(case_id, target.value, by="bob", due_at_ms=due, now_ms=T0 + 5000)
                assert case["status"] == target and before is not None and case["version"] == before["version"] + 1
                made += 1
            else:
                with pytest.raises(Conflict) as err:
                    await store.set_case_status(case_id, target.value, by="bob", due_at_ms=due, now_ms=T0 + 5000)
                assert err.value.code == "case.bad_transition"
                assert await store.get_case(case_id) == before  # nothing written
                refused += 1
    assert made == sum(len(t) for t in CASE_TRANSITIONS.values()) == 11 and refused == 25 - 11
    # the counters agree with the cases, whatever happened
    cases, _ = await store.list_cases(limit=200)
    by_status = {s.value: sum(c["status"] == s for c in cases) for s in CaseStatus}
    pending = sum(c["status"] in ("open", "reopened") for c in cases)
    assert await store.case_counts(now_ms=T0) == counts(by_status, {"urgent": pending}, due_soon=0)
    assert len(await due_index(store)) == pending


async def test_the_counters_follow_every_change(store: QueueStore) -> None:
    assert await store.case_counts(now_ms=T0) == counts()
    a = await open_case(store, tier="urgent")
    b = await open_case(store, tier="normal", due_in=4 * HOUR)
    assert await store.case_counts(now_ms=T0) == counts({"open": 2}, {"urgent": 1, "normal": 1})
    await store.set_case_status(a["id"], "contacted", by="ada", now_ms=T0 + 60_000)
    assert await store.case_counts(now_ms=T0) == counts({"open": 1, "contacted": 1}, {"normal": 1})
    await store.set_case_status(a["id"], "resolved", by="ada", now_ms=T0 + 120_000)
    await store.update_case(b["id"], by="sup", tier="important")
    assert await store.case_counts(now_ms=T0) == counts({"open": 1, "resolved": 1}, {"important": 1})
    await store.set_case_status(a["id"], "reopened", by="ada", due_at_ms=T0 + 5 * HOUR, now_ms=T0 + HOUR)
    assert await store.case_counts(now_ms=T0) == counts({"open": 1, "reopened": 1}, {"important": 1, "urgent": 1})
    # due soon / overdue at a later time (b due at T0 + 4 h, a at T0 + 5 h)
    at = T0 + 4 * HOUR - 60_000
    assert await store.case_counts(now_ms=at, soon_ms=120_000) == counts(
        {"open": 1, "reopened": 1}, {"important": 1, "urgent": 1}, due_soon=1)
    assert await store.case_counts(now_ms=T0 + 4 * HOUR + 1) == counts(
        {"open": 1, "reopened": 1}, {"important": 1, "urgent": 1}, overdue=1)
    await store.set_case_status(b["id"], "closed", by="sup", now_ms=T0 + 4 * HOUR + 2)
    await store.set_case_status(a["id"], "closed", by="sup", now_ms=T0 + 4 * HOUR + 3)
    assert await store.case_counts(now_ms=T0 + 9 * HOUR) == counts({"closed": 2})


async def test_the_due_index_holds_exactly_the_cases_waiting_for_contact(store: QueueStore) -> None:
    a = await open_case(store, due_in=HOUR)
    b = await open_case(store, due_in=2 * HOUR)
    assert await due_index(store) == {a["id"]: T0 + HOUR, b["id"]: T0 + 2 * HOUR}
    await store.set_case_status(a["id"], "contacted", by="ada", now_ms=T0 + 10)
    await store.set_case_status(b["id"], "closed", by="ada", now_ms=T0 + 20)
    assert await due_index(store) == {}
    await store.set_case_status(b["id"], "reopened", by="ada", due_at_ms=T0 + 7 * HOUR, now_ms=T0 + 30)
    assert await due_index(store) == {b["id"]: T0 + 7 * HOUR}
    reopened = await store.get_case(b["id"])
    assert reopened is not None and reopened["due_at"] == T0 + 7 * HOUR and reopened["reopened"] == 1
    # a new due time moves it; a contacted case's due time is not in the index
    await store.update_case(b["id"], by="sup", due_at_ms=T0 + 8 * HOUR)
    await store.update_case(a["id"], by="sup", due_at_ms=T0 + 9 * HOUR)
    assert await due_index(store) == {b["id"]: T0 + 8 * HOUR}
    status = [d for _, d in await events(store, "case.status")]
    assert status[-1]["status"] == "reopened" and status[-1]["previous"] == "closed"
    assert status[-1]["due_at"] == T0 + 7 * HOUR


async def test_a_deadline_passes_once_with_a_controlled_clock(store: QueueStore) -> None:
    a = await open_case(store, tier="urgent", due_in=HOUR, owner="ada", customer="+4930999")
    await open_case(store, tier="normal", due_in=4 * HOUR)
    assert await store.case_deadlines(now_ms=T0 + HOUR - 1) == 0
    assert await store.case_deadlines(now_ms=T0 + HOUR) == 0  # due at, not yet past
    assert await events(store, "case.overdue") == []
    assert await store.case_deadlines(now_ms=T0 + HOUR + 1) == 1
    assert await store.case_deadlines(now_ms=T0 + HOUR + 2) == 0  # once
    assert await store.case_deadlines(now_ms=T0 + 2 * HOUR) == 0
    overdue = await events(store, "case.overdue")
    assert [d for _, d in overdue] == [{"case_id": a["id"], "tier": "urgent", "agent_id": "ada", "due_at": T0 + HOUR,
                                        "customer": "+4930999", "ts": T0 + HOUR + 1, "v": 2}]
    case = await store.get_case(a["id"])
    assert case is not None and case["overdue"] is True and case["version"] == 2
    assert (await store.redis.hget(store.keys.cases_counts, "overdue")) == b"1"
    assert (await store.list_cases(due="overdue", now_ms=T0 + 2 * HOUR))[0] == [case]
    # contacted late: the first contact missed its due time; no longer overdue in the counters
    late = await store.set_case_status(a["id"], "contacted", by="ada", now_ms=T0 + 2 * HOUR)
    assert late["first_contact_ms"] == 2 * HOUR and late["first_contact_met"] is False
    assert late["contacted_at"] == T0 + 2 * HOUR and late["overdue"] is True  # it was overdue: the record says so
    assert (await store.redis.hget(store.keys.cases_counts, "overdue")) == b"0"
    assert (await store.case_counts(now_ms=T0 + 2 * HOUR))["overdue"] == 0
    # the normal case passes later, and a batch limit is respected
    assert await store.case_deadlines(now_ms=T0 + 5 * HOUR) == 1
    assert len(await events(store, "case.overdue")) == 2


async def test_the_deadline_scan_goes_in_bounded_batches_earliest_first(store: QueueStore) -> None:
    ids = [(await open_case(store, due_in=HOUR + i))["id"] for i in range(7)]
    assert await store.case_deadlines(now_ms=T0 + 2 * HOUR, limit=3) == 3
    assert await store.case_deadlines(now_ms=T0 + 2 * HOUR, limit=3) == 3
    assert await store.case_deadlines(now_ms=T0 + 2 * HOUR, limit=3) == 1
    assert await store.case_deadlines(now_ms=T0 + 2 * HOUR, limit=3) == 0
    assert [d["case_id"] for _, d in await events(store, "case.overdue")] == ids
    assert await store.case_counts(now_ms=T0 + 2 * HOUR) == counts({"open": 7}, {"urgent": 7}, overdue=7)
    for bad in (0, 1001):
        with pytest.raises(BadRequest):
            await store.case_deadlines(limit=bad)


async def test_a_reopened_or_rescheduled_case_gets_a_new_deadline(store: QueueStore) -> None:
    a = await open_case(store, due_in=HOUR)
    assert await store.case_deadlines(now_ms=T0 + HOUR + 1) == 1
    # a later due time: no longer overdue, and it may be missed again
    moved = await store.update_case(a["id"], by="sup", due_at_ms=T0 + 3 * HOUR)
    assert moved["overdue"] is False and moved["due_at"] == T0 + 3 * HOUR
    assert (await store.redis.hget(store.keys.cases_counts, "overdue")) == b"0"
    assert await store.case_deadlines(now_ms=T0 + 2 * HOUR) == 0
    assert await store.case_deadlines(now_ms=T0 + 3 * HOUR + 1) == 1
    # resolved, then reopened with a new due time
    await store.set_case_status(a["id"], "resolved", by="ada", now_ms=T0 + 4 * HOUR)
    assert (await store.redis.hget(store.keys.cases_counts, "overdue")) == b"0"
    assert await store.case_deadlines(now_ms=T0 + 9 * HOUR) == 0
    reopened = await store.set_case_status(a["id"], "reopened", by="ada", due_at_ms=T0 + 10 * HOUR,
                                           now_ms=T0 + 9 * HOUR)
    assert reopened["overdue"] is False and reopened["resolved_at"] == T0 + 4 * HOUR
    assert await store.case_deadlines(now_ms=T0 + 10 * HOUR + 1) == 1
    assert [d["due_at"] for _, d in await events(store, "case.overdue")] == [T0 + HOUR, T0 + 3 * HOUR, T0 + 10 * HOUR]
    # never contacted before: this is its first contact, late against the due time it had then
    contacted = await store.set_case_status(a["id"], "contacted", by="ada", now_ms=T0 + 11 * HOUR)
    assert contacted["first_contact_ms"] == 11 * HOUR and contacted["first_contact_met"] is False


async def test_the_first_contact_is_measured_once(store: QueueStore) -> None:
    a = await open_case(store, due_in=HOUR)
    first = await store.set_case_status(a["id"], "contacted", by="ada", now_ms=T0 + 600_000)
    assert first["first_contact_ms"] == 600_000 and first["first_contact_met"] is True
    await store.set_case_status(a["id"], "resolved", by="ada", now_ms=T0 + HOUR)
    await store.set_case_status(a["id"], "reopened", by="ada", due_at_ms=T0 + 3 * HOUR, now_ms=T0 + 2 * HOUR)
    again = await store.set_case_status(a["id"], "contacted", by="ada", now_ms=T0 + 5 * HOUR)
    assert again["contacted_at"] == T0 + 600_000 and again["first_contact_ms"] == 600_000
    assert again["first_contact_met"] is True


async def test_the_first_contact_report_per_tier(store: QueueStore) -> None:
    u = [await open_case(store, tier="urgent", at=T0 + i, due_in=HOUR) for i in range(5)]
    n = await open_case(store, tier="normal", at=T0 + 10, due_in=4 * HOUR)
    await open_case(store, tier="normal", at=T0 + 20, due_in=4 * HOUR)  # still in time: not judged
    await open_case(store, tier="urgent", at=T0 + 1000, due_in=HOUR)    # opened at `until`: outside
    await open_case(store, tier="urgent", at=T0 - 1, due_in=HOUR)       # before `since`: outside
    await store.set_case_status(u[0]["id"], "contacted", by="ada", now_ms=T0 + 600_000)      # 10 min, met
    await store.set_case_status(u[1]["id"], "contacted", by="ada", now_ms=T0 + 1 + 1_800_000)  # 30 min, met
    await store.set_case_status(u[2]["id"], "contacted", by="ada", now_ms=T0 + 2 + 2 * HOUR)   # late
    await store.set_case_status(u[4]["id"], "closed", by="ada", now_ms=T0 + 60_000)  # closed unreached: not judged
    await store.set_case_status(n["id"], "contacted", by="ada", now_ms=T0 + 10 + HOUR)
    assert await store.case_deadlines(now_ms=T0 + 3 * HOUR) == 3  # u[3] and the two urgent ones outside
    report = await store.case_first_contact(since_ms=T0, until_ms=T0 + 1000)
    assert report["urgent"] == {"opened": 5, "contacted": 3, "within_due": 2, "overdue_waiting": 1, "met": 0.5,
                                "avg_first_contact_s": (600 + 1800 + 7200) / 3}
    assert report["normal"] == {"opened": 2, "contacted": 1, "within_due": 1, "overdue_waiting": 0, "met": 1.0,
                                "avg_first_contact_s": 3600.0}
    assert report["important"] == {"opened": 0, "contacted": 0, "within_due": 0, "overdue_waiting": 0, "met": None,
                                   "avg_first_contact_s": None}
    empty = await store.case_first_contact(since_ms=T0 + 5000, until_ms=T0 + 5000)
    assert all(r["opened"] == 0 and r["met"] is None for r in empty.values())


async def test_the_first_contact_report_reads_in_batches(store: QueueStore, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(25):
        c = await open_case(store, tier="important", at=T0 + i)
        if i % 5:
            await store.set_case_status(c["id"], "contacted", by="ada", now_ms=T0 + i + 60_000)
    runs = 0
    real = store._scripts.run

    async def counting(name: str, *args: Any) -> Any:
        nonlocal runs
        runs += name == "case_first_contact"
        if name == "case_first_contact":
            args = (*args[:3], 7)  # batches of 7 cases
        return await real(name, *args)

    monkeypatch.setattr(store._scripts, "run", counting)
    report = await store.case_first_contact(since_ms=T0, until_ms=T0 + 25)
    assert report["important"]["opened"] == 25 and report["important"]["contacted"] == 20
    assert report["important"]["met"] == 1.0 and report["important"]["avg_first_contact_s"] == 60.0
    assert runs == 4


async def test_notes_are_newest_first_capped_and_their_event_tells_only_the_length(store: QueueStore) -> None:
    case = await open_case(store, owner="ada")
    note = await store.add_case_note(case["id"], by="ada", text="Called back.\nNo answer — will retry ☎",
                                     now_ms=T0 + 5)
    assert note == {"at": T0 + 5, "by": "ada", "text": "Called back.\nNo answer — will retry ☎"}
    assert await store.case_notes(case["id"]) == [note]
    for i in range(205):
        await store.add_case_note(case["id"], by="bob", text=f"note {i}", now_ms=T0 + 10 + i)
    notes = await store.case_notes(case["id"], limit=1000)
    assert len(notes) == 200 and notes[0]["text"] == "note 204" and notes[-1]["text"] == "note 5"
    assert len(await store.case_notes(case["id"], limit=3)) == 3
    assert await store.redis.llen(store.keys.case_notes(case["id"])) == 200
    assert await store.case_notes("CS99") == []
    first = (await events(store, "case.note"))[0][1]
    assert first == {"case_id": case["id"], "agent_id": "ada", "by": "ada", "length": 37, "ts": T0 + 5, "v": 2}
    assert "text" not in first
    updated = await store.get_case(case["id"])
    assert updated is not None and updated["version"] == 1 + 206 and updated["updated_at"] == T0 + 10 + 204


async def test_updates_change_tier_owner_reason_and_name_what_changed(store: QueueStore) -> None:
    case = await open_case(store, tier="normal", owner="ada")
    same = await store.update_case(case["id"], by="sup", tier="normal", owner="ada", reason=case["reason"])
    assert same["version"] == 1 and await events(store, "case.updated") == []
    updated = await store.update_case(case["id"], by="sup", tier="urgent", owner="bob", reason="leak, kitchen")
    assert updated["tier"] == "urgent" and updated["owner"] == "bob" and updated["reason"] == "leak, kitchen"
    assert updated["version"] == 2
    assert [c["id"] for c in (await store.list_cases(owner="bob"))[0]] == [case["id"]]
    assert (await store.list_cases(owner="ada"))[0] == []
    assert await store.case_counts(now_ms=T0) == counts({"open": 1}, {"urgent": 1})
    ev = (await events(store, "case.updated"))[0][1]
    assert ev["changed"] == ["tier", "owner", "reason"] and ev["agent_id"] == "bob" and ev["agents"] == ["ada", "bob"]
    assert ev["tier"] == "urgent" and ev["by"] == "sup" and ev["due_at"] == T0 + HOUR
    assert isinstance(cat.parse("case.updated", ev), cat.CaseUpdated)
    unowned = await store.update_case(case["id"], by="sup", owner="")
    assert unowned["owner"] == "" and (await store.list_cases(owner="bob"))[0] == []
    assert (await events(store, "case.updated"))[-1][1]["agents"] == ["bob"]


async def test_the_list_filters_and_pages_newest_first(store: QueueStore) -> None:
    made = []
    for i, (tier, owner) in enumerate([("urgent", "ada"), ("normal", "bob"), ("urgent", "bob"), ("important", ""),
                                       ("urgent", "ada"), ("normal", "ada"), ("urgent", "")]):
        made.append(await open_case(store, tier=tier, owner=owner, at=T0 + i * 1000, due_in=HOUR * (i + 1)))
    ids = [c["id"] for c in made]
    await store.set_case_status(ids[1], "contacted", by="bob", now_ms=T0 + 10_000)
    await store.set_case_status(ids[4], "closed", by="ada", now_ms=T0 + 10_000)

    async def listed(**kw: Any) -> list[str]:
        cases, more = await store.list_cases(**kw)
        assert more is None
        return [c["id"] for c in cases]

    assert await listed() == ids[::-1]
    assert await listed(status="open") == [ids[6], ids[5], ids[3], ids[2], ids[0]]
    assert await listed(status="contacted") == [ids[1]] and await listed(status="reopened") == []
    assert await listed(owner="ada") == [ids[5], ids[4], ids[0]]
    assert await listed(tier="urgent") == [ids[6], ids[4], ids[2], ids[0]]
    assert await listed(owner="ada", tier="urgent", status="open") == [ids[0]]
    # due: soon = pending with due_at in [now, now + soon]; overdue = pending with due_at < now
    # (dues: case i at T0 + i s + (i + 1) h; ids[1] contacted and ids[4] closed are not pending)
    now = T0 + 3 * HOUR + 2500
    assert await listed(due="overdue", now_ms=now) == [ids[2], ids[0]]
    assert await listed(due="soon", now_ms=now, soon_ms=3 * HOUR + 2500) == [ids[5], ids[3]]  # both ends in
    assert await listed(due="soon", now_ms=T0 + 4 * HOUR + 3000, soon_ms=0) == [ids[3]]  # due exactly now
    assert await listed(due="overdue", owner="ada", now_ms=now) == [ids[0]]
    assert await listed(due="overdue", tier="normal", now_ms=now) == []
    # pages: newest first, no case twice, none left out
    pages, before = [], None
    for _ in range(10):
        page, before = await store.list_cases(limit=3, before=before)
        pages.append([c["id"] for c in page])
        if before is None:
            break
    assert pages == [ids[6:3:-1], ids[3:0:-1], ids[0:1]]
    page, nxt = await store.list_cases(status="open", limit=2)
    assert [c["id"] for c in page] == [ids[6], ids[5]] and nxt == (T0 + 5000, ids[5])
    page, nxt = await store.list_cases(status="open", limit=2, before=nxt)
    assert [c["id"] for c in page] == [ids[3], ids[2]] and nxt is not None
    page, nxt = await store.list_cases(status="open", limit=2, before=nxt)
    assert [c["id"] for c in page] == [ids[0]] and nxt is None
    page, nxt = await store.list_cases(due="overdue", now_ms=now, limit=1)
    assert [c["id"] for c in page] == [ids[2]] and nxt == (T0 + 2000, ids[2])
    page, nxt = await store.list_cases(due="overdue", now_ms=now, limit=1, before=nxt)
    assert [c["id"] for c in page] == [ids[0]] and nxt is None


async def test_pages_of_cases_opened_in_one_millisecond_and_of_a_large_due_range(
        store: QueueStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [(await open_case(store, at=T0, due_in=HOUR + i))["id"] for i in range(12)]
    expected = sorted(ids, key=lambda i: i.encode(), reverse=True)  # ties: by id, bytes descending
    for path_budget in (2000, 5):  # 5: the due range holds more than the budget, the index is walked
        monkeypatch.setattr(store_module, "CASE_LIST_BUDGET", path_budget)
        for kw in ({}, {"due": "soon", "now_ms": T0, "soon_ms": 2 * HOUR}, {"owner": None}):
            seen: list[str] = []
            before = None
            for _ in range(30):
                page, before = await store.list_cases(limit=4, before=before, **kw)  # type: ignore[arg-type]
                seen += [c["id"] for c in page]
                if before is None:
                    break
            assert seen == expected, (path_budget, kw)
    # a cursor whose case left the owner's index still goes on from where it was
    monkeypatch.setattr(store_module, "CASE_LIST_BUDGET", 2000)
    for case_id in ids:
        await store.update_case(case_id, by="sup", owner="ada")
    page, nxt = await store.list_cases(owner="ada", limit=3)
    assert nxt is not None and [c["id"] for c in page] == expected[:3]
    await store.update_case(nxt[1], by="sup", owner="bob")
    rest, _ = await store.list_cases(owner="ada", limit=50, before=nxt)
    assert [c["id"] for c in rest] == expected[3:]


async def test_racing_status_changes_one_wins_and_nothing_is_counted_twice(
        store: QueueStore, redis_server: RedisServer) -> None:
    """Two API instances (two clients) contact the same cases at once: one wins each, the other gets
    case.bad_transition; then resolve and close race (both orders are allowed or refused cleanly)."""
    other_client = Redis.from_url(redis_server.url)
    try:
        other = QueueStore(other_client, prefix="cst")
        ids = [(await open_case(store))["id"] for _ in range(20)]
        results = await asyncio.gather(*(s.set_case_status(case_id, "contacted", by=who, now_ms=T0 + 1)
                                         for case_id in ids for s, who in ((store, "ada"), (other, "bob"))),
                                       return_exceptions=True)
        won = [r for r in results if isinstance(r, dict)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 20 and len(lost) == 20 and {c["id"] for c in won} == set(ids)
        assert all(isinstance(e, Conflict) and e.code == "case.bad_transition" for e in lost)
        assert await store.case_counts(now_ms=T0) == counts({"contacted": 20})
        assert len(await events(store, "case.status")) == 20 and await due_index(store) == {}
        assert all(c["version"] == 2 for c in (await store.list_cases(limit=50))[0])
        # resolved and closed at once: resolved then closed both succeed; closed first refuses resolved
        results = await asyncio.gather(*(s.set_case_status(case_id, status, by="sup", now_ms=T0 + 2)
                                         for case_id in ids for s, status in ((store, "resolved"), (other, "closed"))),
                                       return_exceptions=True)
        made = [r for r in results if isinstance(r, dict)]
        assert all(isinstance(r, dict) or (isinstance(r, Conflict) and r.code == "case.bad_transition")
                   for r in results)
        assert {c["status"] for c in (await store.list_cases(limit=50))[0]} == {"closed"}
        assert await store.case_counts(now_ms=T0) == counts({"closed": 20})
        assert len(await events(store, "case.status")) == 20 + len(made)
    finally:
        await other_client.aclose()


async def test_hostile_input_gets_clear_errors(store: QueueStore) -> None:
    case = await open_case(store)
    bad_opens: list[dict[str, Any]] = [
        {"reason": "x" * 201}, {"reason": "two\nlines"}, {"reason": ""}, {"reason": "nul\x00"}, {"tier": "URGENT"},
        {"tier": "critical"}, {"customer": "+49 30 1234"}, {"customer": "a" * 5}, {"customer": "1" * 33},
        {"customer_name": "n" * 101}, {"crm_id": "c" * 65}, {"owner": "ada:x"}, {"owner": "../x"},
        {"opened_by": ""}, {"opened_by": "a b"}, {"call_id": "c" * 65}, {"call_id": "call\n1"},
        {"hotline": "h" * 121}, {"due_at_ms": -1}, {"due_at_ms": 10**15}, {"now_ms": -5},
    ]
    for bad in bad_opens:
        fields: dict[str, Any] = {"tier": "urgent", "reason": "r", "customer": "", "opened_by": "ivr:demo",
                                  "due_at_ms": T0 + HOUR} | bad
        with pytest.raises(BadRequest) as err:
            await store.open_case(**fields)
        assert err.value.code == "case.invalid", bad
    calls: list[Any] = [
        lambda: store.set_case_status(case["id"], "done", by="ada"),
        lambda: store.set_case_status(case["id"], "contacted", by="bad by"),
        lambda: store.set_case_status(case["id"], "contacted", by="ada", due_at_ms=T0),
        lambda: store.set_case_status(case["id"], "reopened", by="ada"),
        lambda: store.set_case_status("CS1;FLUSHALL", "contacted", by="ada"),
        lambda: store.set_case_status("case:CS1", "contacted", by="ada"),
        lambda: store.get_case("CS" + "9" * 13), lambda: store.get_case("*"),
        lambda: store.update_case(case["id"], by="ada", reason="r" * 201),
        lambda: store.update_case(case["id"], by="ada", tier="low"),
        lambda: store.update_case(case["id"], by="ada", owner="x" * 65),
        lambda: store.add_case_note(case["id"], by="ada", text="t" * 2001),
        lambda: store.add_case_note(case["id"], by="ada", text="   "),
        lambda: store.add_case_note(case["id"], by="ada", text="esc \x1b[2J"),
        lambda: store.link_case_call(case["id"], "", by="ada"),
        lambda: store.link_case_call(case["id"], "a b", by="ada"),
        lambda: store.list_cases(status="done"), lambda: store.list_cases(tier="low"),
        lambda: store.list_cases(due="later"),  # type: ignore[arg-type]
        lambda: store.list_cases(limit=0), lambda: store.list_cases(limit=201),
        lambda: store.list_cases(before=(T0, "x")), lambda: store.list_cases(before=(-1, "CS1")),
        lambda: store.list_cases(owner="a:b"), lambda: store.list_cases(soon_ms=-1),
        lambda: store.case_counts(soon_ms=-1), lambda: store.case_first_contact(since_ms=-1, until_ms=0),
    ]
    for call in calls:
        with pytest.raises(BadRequest) as err:
            await call()
        assert err.value.code == "case.invalid"
    # a reason of 200 characters of any script is fine
    assert (await open_case(store, reason="漢" * 200))["reason"] == "漢" * 200
    for unknown in (lambda: store.set_case_status("CS404", "contacted", by="ada"),
                    lambda: store.update_case("CS404", by="ada", tier="normal"),
                    lambda: store.add_case_note("CS404", by="ada", text="hi"),
                    lambda: store.link_case_call("CS404", "c1", by="ada")):
        with pytest.raises(NotFound) as nf:
            await unknown()
        assert nf.value.code == "case.not_found"
    assert await store.get_case("CS404") is None
    unchanged = await store.get_case(case["id"])
    assert unchanged is not None and unchanged["version"] == 1


async def test_the_scripts_check_again_whatever_reaches_them(store: QueueStore) -> None:
    """Values that skip the store's checks are still refused by the scripts (case.invalid), never a
    Lua runtime error."""
    case = await open_case(store)
    raw = [
        ("case_open", "critical", "r", "", "", "", "", "", "ivr:x", "", T0, ""),
        ("case_open", "urgent", "r" * 801, "", "", "", "", "", "ivr:x", "", T0, ""),
        ("case_open", "urgent", "r", "", "", "", "", "a:b:c\n", "ivr:x", "", T0, ""),
        ("case_open", "urgent", "r", "", "", "", "", "", "", "", T0, ""),
        ("case_open", "urgent", "r", "", "", "", "", "", "ivr:x", "", "soon", ""),
        ("case_open", "urgent", "r", "", "", "", "", "", "ivr:x", "", T0, "-1"),
        ("case_status", "CS1'..", "contacted", "ada", "", ""),
        ("case_status", case["id"], "done", "ada", "", ""),
        ("case_status", case["id"], "contacted", "ada", "x", ""),
        ("case_update", case["id"], "ada", "[1, 2"),
        ("case_update", case["id"], "ada", '{"tier": "low"}'),
        ("case_update", case["id"], "ada", '{"owner": "a b"}'),
        ("case_update", case["id"], "ada", '{"due_at": "tomorrow"}'),
        ("case_note", case["id"], "ada", "", ""),
        ("case_link_call", case["id"], "", "ada"),
        ("case_list", "", "x:y z", "", "", 0, 10, "", "", "", 100),
        ("case_list", "", "", "", "later", 0, 10, "", "", "", 100),
        ("case_list", "", "", "", "", 0, 0, "", "", "", 100),
        ("case_list", "", "", "", "", 0, 10, "", "", "", 10**6),
        ("case_deadlines", 0, ""), ("case_deadlines", "all", ""),
        ("case_first_contact", 0, 1, "", 0),
    ]
    for name, *args in raw:
        with pytest.raises(BadRequest) as err:
            await store._run(name, *args)
        assert err.value.code == "case.invalid", (name, args)
    unchanged = await store.get_case(case["id"])
    assert unchanged is not None and unchanged["version"] == 1
    assert await store.case_counts(now_ms=T0) == counts({"open": 1}, {"urgent": 1})


async def test_every_case_event_is_on_the_stream_as_the_catalogue_says(store: QueueStore) -> None:
    case = await open_case(store, owner="ada")
    await store.set_case_status(case["id"], "contacted", by="ada", now_ms=T0 + 1)
    await store.update_case(case["id"], by="sup", tier="normal")
    await store.add_case_note(case["id"], by="ada", text="ok")
    await store.link_case_call(case["id"], "c1", by="ada")
    other = await open_case(store, owner="bob")
    await store.case_deadlines(now_ms=T0 + 2 * HOUR)
    seen = await events(store)
    assert [t for t, _ in seen] == ["case.opened", "case.status", "case.updated", "case.note", "case.call_linked",
                                    "case.opened", "case.overdue"]
    for etype, data in seen:
        parsed = cat.parse(etype, data)
        assert cat.AGENT in parsed.audience and cat.FLOOR in parsed.audience
        assert data["agent_id"] == (other if data["case_id"] == other["id"] else case)["owner"]
    status = seen[1][1]
    assert status | {"ts": 0} == {"case_id": case["id"], "status": "contacted", "previous": "open", "tier": "urgent",
                                  "agent_id": "ada", "by": "ada", "due_at": T0 + HOUR, "ts": 0, "v": 2}


async def test_the_workers_housekeeping_leader_marks_overdue_cases(store: QueueStore) -> None:
    """The housekeeping loop of a worker (the lease holder) runs the deadline scan every tick, by the
    server's clock, in batches until none is left."""
    now = int(time.time() * 1000)
    late = [(await store.open_case(tier="urgent", reason="r", customer="", opened_by="ada", due_at_ms=now - 60_000 + i,
                                   now_ms=now - 2 * HOUR))["id"] for i in range(CASE_DEADLINE_BATCH + 3)]
    in_time = await store.open_case(tier="normal", reason="r", customer="", opened_by="ada", due_at_ms=now + HOUR)
    worker = Worker(Settings(), 0, name="hk-test")
    task = asyncio.create_task(worker._housekeeping(store), name="test.housekeeping")
    try:
        marked: list[str] = []
        for _ in range(100):  # the first tick marks them all (two batches); wait for it, 10 s at most
            marked = [d["case_id"] for _, d in await events(store, "case.overdue")]
            if len(marked) >= len(late):
                break
            await asyncio.sleep(0.1)
        assert marked == late
        assert (await store.case_counts())["overdue"] == len(late)
        case = await store.get_case(in_time["id"])
        assert case is not None and not case["overdue"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
