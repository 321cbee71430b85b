"""Complaint cases over the CTI API (docs/cti-api.md, "Complaint cases") on a real Redis through a real API server:
every route, who may do what (agent, supervisor, admin; an agent and another agent's case), due
times from the plan's business hours, cursor pages, counts, the case opened with a disposition, the
case events on the desktop's and the wallboard's feeds, and hostile bodies and parameters (4xx with a
code, never a 500)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings
from ivr.core.events import AgentState
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer
from tests.ports import free_udp_tcp_port
from tests.service.test_cti_api import Api, Feed, code_of
from tests.service.test_webhooks import Receiver, hook_settings, until

PREFIX = "cases"
SUPER = {"Authorization": "Bearer super1-demo-token"}
ADMIN = {"Authorization": "Bearer admin-demo-token"}
AGENT1 = {"Authorization": "Bearer agent1-demo-token"}
AGENT2 = {"Authorization": "Bearer agent2-demo-token"}
HOUR_MS = 3_600_000
PLAN_NAME = "Care line"


def holiday_plan(first: date) -> str:
    """A plan answering every number, open all day every day, but closed on three holidays from
    ``first``: a case opened on them is due from the midnight after them (UTC)."""
    days = ", ".join(str(first + timedelta(days=i)) for i in range(3))
    return f"""\
name: {PLAN_NAME}
numbers: ["*"]
language: en
timezone: UTC
calendars:
  public: [{days}]
hours:
  open: [{{days: [mon-sun], from: "00:00", to: "23:59"}}]
  holidays: public
start: bye
nodes:
  bye: {{type: hangup}}
"""


def after_holidays_ms(first: date, seconds: int) -> int:
    """The due time of a case opened during the holidays: ``seconds`` of open time from their end."""
    return int(datetime.combine(first + timedelta(days=3), datetime.min.time(), UTC).timestamp() * 1000) \
        + seconds * 1000


def settings_for(tmp_path: Path, redis_server: RedisServer, webhooks: dict[str, Any] | None = None,
                 **cases: Any) -> Settings:
    return Settings(users=DEMO_USERS, var_dir=tmp_path / "var", dialplans_dir=tmp_path / "dialplans",
                    redis={"url": redis_server.url, "prefix": PREFIX}, cases=cases, webhooks=webhooks or {},
                    api={"host": "127.0.0.1", "port": free_udp_tcp_port()}, calls={"outbound_allow": ["+1555*"]})


@pytest.fixture
def first_holiday(tmp_path: Path) -> date:
    """Today (UTC) and the next two days are holidays of the plan in ``<tmp>/dialplans``."""
    today = datetime.now(UTC).date()
    (tmp_path / "dialplans").mkdir()
    (tmp_path / "dialplans" / "care.yaml").write_text(holiday_plan(today))
    return today


@pytest.fixture
async def api(tmp_path: Path, redis_server: RedisServer, redis: Redis, first_holiday: date) -> AsyncIterator[Api]:
    a = Api(settings_for(tmp_path, redis_server))
    await a.start()
    yield a
    await a.stop()


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX)


Call = Callable[..., Awaitable[tuple[int, Any]]]


@pytest.fixture
def call(api: Api, http: aiohttp.ClientSession) -> Call:
    """``await call(method, path, headers, json=...)`` -> (status, JSON reply)."""
    async def send(method: str, path: str, headers: dict[str, str], **kw: Any) -> tuple[int, Any]:
        async with http.request(method, f"{api.url}{path}", headers=headers, **kw) as r:
            return r.status, await r.json()
    return send


async def answered(store: QueueStore, cid: str, agent: str, *, ani: str = "+15550001") -> None:
    """Call ``cid`` from ``ani`` to the care line, answered by ``agent``."""
    await store.call_start(cid, "w0", ani=ani, dnis="1000", hotline=PLAN_NAME, language="en", plan_version="v1")
    for other in ("agent1", "agent2"):
        await store.set_agent_state(other, AgentState.AVAILABLE if other == agent else AgentState.BREAK)
    offer = await store.enqueue(cid, queue="billing", skill="billing", priority=0, journey={"steps": []})
    assert offer is not None and offer.agent_id == agent
    await store.offer_answered(cid, offer.offer_id)


async def opened(call: Call, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    status, case = await call("POST", "/api/v1/cases", headers, json={"tier": "normal", "reason": "late parcel",
                                                                      **body})
    assert status == 201, case
    return case  # type: ignore[no-any-return]


# --- opening --------------------------------------------------------------------------------------

async def test_an_agent_opens_its_own_case_due_after_the_plans_holidays(
        call: Call, first_holiday: date) -> None:
    status, case = await call("POST", "/api/v1/cases", AGENT1,
                              json={"tier": "urgent", "reason": "billed twice", "customer": "+8210555",
                                    "customer_name": "Kim", "crm_id": "crm-7"})
    assert status == 201, case
    assert case["id"].startswith("CS") and case["status"] == "open" and case["tier"] == "urgent"
    assert case["owner"] == "agent1" and case["opened_by"] == "agent1" and case["customer"] == "+8210555"
    assert case["customer_name"] == "Kim" and case["crm_id"] == "crm-7" and case["hotline"] == PLAN_NAME
    # opened on a holiday of the plan: one hour of open time from the midnight after the holidays
    assert case["due_at"] == after_holidays_ms(first_holiday, 3600)
    assert case["calls"] == [] and case["overdue"] is False and case["version"] >= 1
    status, err = await call("POST", "/api/v1/cases", AGENT1,
                             json={"tier": "normal", "reason": "x", "owner": "agent2"})
    assert status == 403 and err["error"]["code"] == "auth.forbidden"


async def test_without_business_hours_a_case_is_due_on_the_wall_clock(
        tmp_path: Path, redis_server: RedisServer, redis: Redis, first_holiday: date,
        http: aiohttp.ClientSession) -> None:
    a = Api(settings_for(tmp_path, redis_server, business_hours=False,
                         due_s={"urgent": 600, "important": 1200, "normal": 2400}))
    await a.start()
    try:
        for tier, seconds in (("urgent", 600), ("normal", 2400)):
            async with http.post(f"{a.url}/api/v1/cases", headers=AGENT1,
                                 json={"tier": tier, "reason": "r"}) as r:
                assert r.status == 201
                case = await r.json()
            # the API's clock gives the due time, Redis's the opening time: the same host
            assert abs(case["due_at"] - case["opened_at"] - seconds * 1000) < 2000, case
    finally:
        await a.stop()


MAIN_PLAN = """\
name: Main line
numbers: ["*"]
language: en
start: bye
nodes:
  bye: {type: hangup}
"""


async def test_the_plan_whose_hours_count_is_the_calls_else_cases_hours_plan_else_the_catch_all(
        tmp_path: Path, redis_server: RedisServer, redis: Redis, first_holiday: date, store: QueueStore,
        http: aiohttp.ClientSession) -> None:
    plans = tmp_path / "dialplans"
    (plans / "care.yaml").write_text(holiday_plan(first_holiday).replace('numbers: ["*"]', 'numbers: ["2000"]'))
    (plans / "main.yaml").write_text(MAIN_PLAN)  # no hours: wall time

    async def new_case(api: Api, **body: Any) -> dict[str, Any]:
        async with http.post(f"{api.url}/api/v1/cases", headers=SUPER,
                             json={"tier": "urgent", "reason": "r", **body}) as r:
            assert r.status == 201, await r.text()
            case: dict[str, Any] = await r.json()
            return case

    a = Api(settings_for(tmp_path, redis_server))
    await a.start()
    try:
        await answered(store, "c1", "agent1")  # a call of the care line
        plain = await new_case(a)
        assert plain["hotline"] == "Main line"
        assert abs(plain["due_at"] - plain["opened_at"] - HOUR_MS) < 2000
        of_call = await new_case(a, call_id="c1")
        assert of_call["hotline"] == PLAN_NAME and of_call["due_at"] == after_holidays_ms(first_holiday, 3600)
        # a plan file that changes is read again: the main line gets the holidays too
        (plans / "main.yaml").write_text(holiday_plan(first_holiday).replace(PLAN_NAME, "Main line"))
        again = await new_case(a)
        assert again["hotline"] == "Main line" and again["due_at"] == after_holidays_ms(first_holiday, 3600)
    finally:
        await a.stop()
    (plans / "main.yaml").write_text(MAIN_PLAN)
    b = Api(settings_for(tmp_path, redis_server, hours_plan="care"))
    await b.start()
    try:
        chosen = await new_case(b)
        assert chosen["hotline"] == PLAN_NAME and chosen["due_at"] == after_holidays_ms(first_holiday, 3600)
    finally:
        await b.stop()


async def test_staff_open_cases_for_any_agent_or_none_and_unknown_owners_are_404(call: Call) -> None:
    case = await opened(call, SUPER, owner="agent2", tier="important")
    assert case["owner"] == "agent2" and case["opened_by"] == "super1"
    unowned = await opened(call, ADMIN)
    assert unowned["owner"] == "" and unowned["opened_by"] == "admin"
    status, err = await call("POST", "/api/v1/cases", SUPER, json={"tier": "normal", "reason": "x", "owner": "ghost"})
    assert status == 404 and err["error"]["code"] == "agent.not_found"


async def test_a_case_opened_for_a_call_takes_its_customer_and_is_linked_to_it(
        call: Call, store: QueueStore, first_holiday: date) -> None:
    await answered(store, "c1", "agent1", ani="+15550009")
    case = await opened(call, AGENT1, call_id="c1", tier="important")
    assert case["customer"] == "+15550009" and case["hotline"] == PLAN_NAME and case["calls"] == ["c1"]
    assert case["due_at"] == after_holidays_ms(first_holiday, 7200)
    status, rec = await call("GET", "/api/v1/calls/c1", SUPER)
    assert status == 200 and rec["case_id"] == case["id"]
    # another agent may not open a case on a call it did not take; an unknown call is 404
    status, err = await call("POST", "/api/v1/cases", AGENT2, json={"tier": "normal", "reason": "x", "call_id": "c1"})
    assert status == 403 and err["error"]["code"] == "auth.forbidden"
    status, err = await call("POST", "/api/v1/cases", SUPER, json={"tier": "normal", "reason": "x", "call_id": "c9"})
    assert status == 404 and err["error"]["code"] == "call.not_found"
    # a customer given wins over the call's
    other = await opened(call, SUPER, call_id="c1", customer="+4420")
    assert other["customer"] == "+4420"


# --- reading and listing ----------------------------------------------------------------------------

async def test_an_agent_reads_its_own_cases_only_and_staff_read_all(call: Call) -> None:
    mine = await opened(call, AGENT1)
    theirs = await opened(call, AGENT2)
    status, got = await call("GET", f"/api/v1/cases/{mine['id']}", AGENT1)
    assert status == 200 and got["id"] == mine["id"] and got["notes"] == []
    status, err = await call("GET", f"/api/v1/cases/{theirs['id']}", AGENT1)
    assert status == 403 and err["error"]["code"] == "auth.forbidden"
    for who in (SUPER, ADMIN):
        status, got = await call("GET", f"/api/v1/cases/{theirs['id']}", who)
        assert status == 200 and got["owner"] == "agent2"
    for missing in ("CS999999", "CS0000000000000", "cs1", "XX1", "CS1%0A"):
        status, err = await call("GET", f"/api/v1/cases/{missing}", SUPER)
        assert status == 404 and err["error"]["code"] == "case.not_found", missing


async def test_the_list_gives_an_agent_its_own_cases_and_staff_every_case_with_filters(
        call: Call, store: QueueStore) -> None:
    a1 = await opened(call, AGENT1, tier="urgent")
    a2 = await opened(call, AGENT2, tier="normal")
    none = await opened(call, SUPER, tier="important")
    status, page = await call("GET", "/api/v1/cases", AGENT1)
    assert status == 200 and [c["id"] for c in page["cases"]] == [a1["id"]] and page["next_cursor"] is None
    assert page["due_soon_s"] == 900  # cases.due_soon_s: the desktop marks "due soon" with it
    for query in ("owner=me", "owner=agent1"):
        status, page = await call("GET", f"/api/v1/cases?{query}", AGENT1)
        assert status == 200 and [c["id"] for c in page["cases"]] == [a1["id"]]
    status, err = await call("GET", "/api/v1/cases?owner=agent2", AGENT1)
    assert status == 403 and err["error"]["code"] == "auth.forbidden"
    status, page = await call("GET", "/api/v1/cases", SUPER)
    assert [c["id"] for c in page["cases"]] == [none["id"], a2["id"], a1["id"]]  # newest first
    status, page = await call("GET", "/api/v1/cases?owner=agent2", ADMIN)
    assert [c["id"] for c in page["cases"]] == [a2["id"]]
    status, page = await call("GET", "/api/v1/cases?owner=me", SUPER)
    assert page["cases"] == []
    status, page = await call("GET", "/api/v1/cases?tier=urgent", SUPER)
    assert [c["id"] for c in page["cases"]] == [a1["id"]]
    await call("PATCH", f"/api/v1/cases/{a2['id']}", SUPER, json={"status": "contacted"})
    status, page = await call("GET", "/api/v1/cases?status=contacted", SUPER)
    assert [c["id"] for c in page["cases"]] == [a2["id"]]
    # due soon and overdue, with times the store takes from the test
    now = int(time.time() * 1000)
    late = await store.open_case(tier="urgent", reason="late", customer="", opened_by="super1", owner="agent1",
                                 due_at_ms=now - 60_000)
    soon = await store.open_case(tier="urgent", reason="soon", customer="", opened_by="super1", owner="agent1",
                                 due_at_ms=now + 60_000)
    status, page = await call("GET", "/api/v1/cases?due=overdue", AGENT1)
    assert [c["id"] for c in page["cases"]] == [late["id"]]
    status, page = await call("GET", "/api/v1/cases?due=soon", SUPER)
    assert [c["id"] for c in page["cases"]] == [soon["id"]]


async def test_cursor_pages_walk_every_case_once_and_a_cursor_is_bound_to_its_filters(call: Call) -> None:
    ids = [(await opened(call, AGENT1 if i % 2 else SUPER, owner=None if i % 2 else "agent1"))["id"]
           for i in range(7)]
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, page = await call("GET", f"/api/v1/cases?{query}", AGENT1)
        assert status == 200 and len(page["cases"]) <= 3
        seen += [c["id"] for c in page["cases"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    status, first = await call("GET", "/api/v1/cases?limit=3", SUPER)
    token = first["next_cursor"]
    assert token
    for other in (f"limit=3&tier=urgent&cursor={token}", f"limit=3&owner=agent1&cursor={token}"):
        status, err = await call("GET", f"/api/v1/cases?{other}", SUPER)
        assert status == 400 and err["error"]["code"] == "request.invalid", other
    # the agent's cursor (owner forced to itself) is not a supervisor's
    status, mine = await call("GET", "/api/v1/cases?limit=3", AGENT1)
    status, err = await call("GET", f"/api/v1/cases?limit=3&cursor={mine['next_cursor']}", SUPER)
    assert status == 400


# --- changing ---------------------------------------------------------------------------------------

async def test_an_agent_moves_its_case_through_the_status_machine_and_a_refused_move_is_409(
        call: Call) -> None:
    case = await opened(call, AGENT1)
    status, got = await call("PATCH", f"/api/v1/cases/{case['id']}", AGENT1, json={"status": "contacted"})
    assert status == 200 and got["status"] == "contacted" and got["contacted_at"] is not None
    assert got["first_contact_ms"] is not None and got["version"] > case["version"]
    status, err = await call("PATCH", f"/api/v1/cases/{case['id']}", AGENT1, json={"status": "open"})
    assert status == 409 and err["error"]["code"] == "case.bad_transition"
    status, err = await call("PATCH", f"/api/v1/cases/{case['id']}", AGENT1, json={"status": "reopened"})
    assert status == 409 and err["error"]["code"] == "case.bad_transition"
    status, got = await call("PATCH", f"/api/v1/cases/{case['id']}", AGENT1,
                             json={"status": "resolved", "reason": "refunded twice"})
    assert status == 200 and got["status"] == "resolved" and got["reason"] == "refunded twice"
    status, got = await call("PATCH", f"/api/v1/cases/{case['id']}", AGENT1, json={})
    assert status == 200 and got["status"] == "resolved"  # an empty body changes nothing


async def test_an_agent_may_not_change_tier_owner_or_another_agents_case_but_may_claim_an_unowned_one(
        call: Call) -> None:
    mine = await opened(call, AGENT1)
    theirs = await opened(call, AGENT2)
    unowned = await opened(call, SUPER)
    for body in ({"tier": "urgent"}, {"owner": "agent2"}, {"owner": ""}):
        status, err = await call("PATCH", f"/api/v1/cases/{mine['id']}", AGENT1, json=body)
        assert status == 403 and err["error"]["code"] == "auth.forbidden", body
    for body in ({"status": "contacted"}, {"owner": "agent1"}, {"reason": "mine now"}):
        status, err = await call("PATCH", f"/api/v1/cases/{theirs['id']}", AGENT1, json=body)
        assert status == 403 and err["error"]["code"] == "auth.forbidden", body
    status, err = await call("PATCH", f"/api/v1/cases/{unowned['id']}", AGENT1, json={"status": "contacted"})
    assert status == 403
    status, got = await call("PATCH", f"/api/v1/cases/{unowned['id']}", AGENT1,
                             json={"owner": "agent1", "status": "contacted"})
    assert status == 200 and got["owner"] == "agent1" and got["status"] == "contacted"
    status, got = await call("GET", "/api/v1/cases/" + unowned["id"], AGENT1)
    assert status == 200
    status, err = await call("PATCH", "/api/v1/cases/CS99999", AGENT1, json={"status": "contacted"})
    assert status == 404 and err["error"]["code"] == "case.not_found"


async def test_staff_change_tier_and_owner_and_due_times_follow(call: Call, first_holiday: date) -> None:
    case = await opened(call, SUPER, tier="normal", owner="agent1")
    assert case["due_at"] == after_holidays_ms(first_holiday, 14400)
    status, got = await call("PATCH", f"/api/v1/cases/{case['id']}", SUPER, json={"tier": "urgent", "owner": "agent2"})
    assert status == 200 and got["tier"] == "urgent" and got["owner"] == "agent2"
    assert got["due_at"] == after_holidays_ms(first_holiday, 3600)  # from its opening, in the new tier's time
    status, err = await call("PATCH", f"/api/v1/cases/{case['id']}", ADMIN, json={"owner": "ghost"})
    assert status == 404 and err["error"]["code"] == "agent.not_found"
    status, got = await call("PATCH", f"/api/v1/cases/{case['id']}", ADMIN, json={"owner": ""})
    assert status == 200 and got["owner"] == ""
    # resolved, then reopened in another tier: due from now in that tier's time
    status, got = await call("PATCH", f"/api/v1/cases/{case['id']}", SUPER, json={"status": "resolved"})
    assert status == 200 and got["resolved_at"] is not None
    status, got = await call("PATCH", f"/api/v1/cases/{case['id']}", SUPER,
                             json={"status": "reopened", "tier": "important"})
    assert status == 200 and got["status"] == "reopened" and got["tier"] == "important" and got["reopened"] == 1
    assert got["due_at"] == after_holidays_ms(first_holiday, 7200)
    status, got = await call("PATCH", f"/api/v1/cases/{case['id']}", SUPER, json={"status": "closed"})
    assert status == 200 and got["closed_at"] is not None


# --- notes and calls ----------------------------------------------------------------------------------

async def test_notes_are_added_by_the_owner_or_staff_and_read_newest_first(call: Call) -> None:
    case = await opened(call, AGENT1)
    status, note = await call("POST", f"/api/v1/cases/{case['id']}/notes", AGENT1,
                              json={"text": "called, no answer\nwill retry"})
    assert status == 201 and note["by"] == "agent1" and note["text"] == "called, no answer\nwill retry"
    assert isinstance(note["at"], int)
    status, note = await call("POST", f"/api/v1/cases/{case['id']}/notes", SUPER, json={"text": "escalate"})
    assert status == 201
    status, got = await call("GET", f"/api/v1/cases/{case['id']}", AGENT1)
    assert [n["text"] for n in got["notes"]] == ["escalate", "called, no answer\nwill retry"]
    status, err = await call("POST", f"/api/v1/cases/{case['id']}/notes", AGENT2, json={"text": "mine?"})
    assert status == 403 and err["error"]["code"] == "auth.forbidden"
    for text in ("", "   ", "\n\n", "a\x00b", "tab\there", "x" * 2001):
        status, err = await call("POST", f"/api/v1/cases/{case['id']}/notes", AGENT1, json={"text": text})
        assert status == 400 and err["error"]["code"] == "request.invalid", repr(text)
    status, err = await call("POST", "/api/v1/cases/CS424242/notes", SUPER, json={"text": "x"})
    assert status == 404 and err["error"]["code"] == "case.not_found"


async def test_calls_are_linked_by_the_owner_for_calls_it_took_or_by_staff(call: Call, store: QueueStore) -> None:
    await answered(store, "c1", "agent1")
    await store.end_call("c1", reason="hangup", wrapup_s=0, ttl_s=3600)
    await answered(store, "c2", "agent2")
    case = await opened(call, AGENT1)
    status, got = await call("POST", f"/api/v1/cases/{case['id']}/calls", AGENT1, json={"call_id": "c1"})
    assert status == 200 and got["calls"] == ["c1"]
    status, err = await call("POST", f"/api/v1/cases/{case['id']}/calls", AGENT1, json={"call_id": "c2"})
    assert status == 403 and err["error"]["code"] == "auth.forbidden"
    status, got = await call("POST", f"/api/v1/cases/{case['id']}/calls", SUPER, json={"call_id": "c2"})
    assert status == 200 and got["calls"] == ["c1", "c2"]
    status, rec = await call("GET", "/api/v1/calls/c2", SUPER)
    assert rec["case_id"] == case["id"]
    status, err = await call("POST", f"/api/v1/cases/{case['id']}/calls", SUPER, json={"call_id": "nope"})
    assert status == 404 and err["error"]["code"] == "call.not_found"


# --- counts -------------------------------------------------------------------------------------------

async def test_counts_for_staff_per_tier_status_overdue_due_soon_and_first_contact(
        call: Call, store: QueueStore) -> None:
    urgent = await opened(call, AGENT1, tier="urgent")
    await opened(call, AGENT1, tier="urgent")
    await opened(call, AGENT2, tier="normal")
    now = int(time.time() * 1000)
    await store.open_case(tier="important", reason="late", customer="", opened_by="super1", due_at_ms=now - 1000)
    await store.open_case(tier="important", reason="soon", customer="", opened_by="super1", due_at_ms=now + 60_000)
    await call("PATCH", f"/api/v1/cases/{urgent['id']}", AGENT1, json={"status": "contacted"})
    status, counts = await call("GET", "/api/v1/cases/counts", SUPER)
    assert status == 200, counts
    assert counts["open"] == {"urgent": 1, "important": 2, "normal": 1}
    assert counts["status"]["open"] == 4 and counts["status"]["contacted"] == 1
    assert counts["overdue"] == 1 and counts["due_soon"] == 1
    first = counts["first_contact"]["urgent"]
    assert first["contacted"] == 1 and first["within_due"] == 1 and first["met"] == 1.0
    status, counts = await call("GET", "/api/v1/cases/counts", ADMIN)
    assert status == 200
    status, err = await call("GET", "/api/v1/cases/counts", AGENT1)
    assert status == 403 and err["error"]["code"] == "auth.forbidden"


# --- the disposition that opens a case ----------------------------------------------------------------

async def test_a_disposition_with_a_case_opens_one_linked_to_the_call_once(
        call: Call, store: QueueStore, first_holiday: date) -> None:
    await answered(store, "c1", "agent1", ani="+15550042")
    status, rec = await call("POST", "/api/v1/calls/c1/disposition", AGENT1,
                             json={"disposition": "follow_up", "notes": "angry",
                                   "case": {"tier": "urgent", "reason": "no refund yet"}})
    assert status == 200, rec
    assert rec["disposition"] == "follow_up" and rec["case_id"].startswith("CS")
    status, case = await call("GET", f"/api/v1/cases/{rec['case_id']}", AGENT1)
    assert case["owner"] == "agent1" and case["customer"] == "+15550042" and case["calls"] == ["c1"]
    assert case["reason"] == "no refund yet" and case["due_at"] == after_holidays_ms(first_holiday, 3600)
    # saved again (notes edited): the call keeps its case
    status, again = await call("POST", "/api/v1/calls/c1/disposition", AGENT1,
                               json={"disposition": "follow_up", "notes": "calmer",
                                     "case": {"tier": "urgent", "reason": "no refund yet"}})
    assert status == 200 and again["case_id"] == rec["case_id"]
    status, page = await call("GET", "/api/v1/cases", SUPER)
    assert len(page["cases"]) == 1
    # without a case: no case_id in the reply of a call without one
    await store.end_call("c1", reason="hangup", wrapup_s=0, ttl_s=3600)
    await answered(store, "c2", "agent1")
    status, plain = await call("POST", "/api/v1/calls/c2/disposition", AGENT1, json={"disposition": "resolved"})
    assert status == 200 and "case_id" not in plain
    for bad in ({"tier": "critical", "reason": "x"}, {"tier": "urgent"}, {"tier": "urgent", "reason": "a\nb"},
                {"tier": "urgent", "reason": "x", "owner": "agent2"}, "urgent"):
        status, err = await call("POST", "/api/v1/calls/c2/disposition", AGENT1,
                                 json={"disposition": "resolved", "case": bad})
        assert status == 400 and err["error"]["code"] == "request.invalid", bad
    # another agent may not dispose of (or open a case on) agent1's call
    status, err = await call("POST", "/api/v1/calls/c2/disposition", AGENT2,
                             json={"disposition": "resolved", "case": {"tier": "normal", "reason": "x"}})
    assert status == 403


async def test_a_supervisors_disposition_case_is_owned_by_the_calls_agent(call: Call, store: QueueStore) -> None:
    await answered(store, "c1", "agent2")
    status, rec = await call("POST", "/api/v1/calls/c1/disposition", SUPER,
                             json={"disposition": "escalated", "case": {"tier": "important", "reason": "legal"}})
    assert status == 200
    status, case = await call("GET", f"/api/v1/cases/{rec['case_id']}", AGENT2)
    assert status == 200 and case["owner"] == "agent2" and case["opened_by"] == "super1"


# --- live events --------------------------------------------------------------------------------------

async def test_case_events_reach_the_owners_desktop_and_the_wallboard(
        api: Api, call: Call, http: aiohttp.ClientSession) -> None:
    desk = Feed(http, f"{api.url}/api/v1/agents/agent1/events", "agent1-demo-token")
    floor = Feed(http, f"{api.url}/api/v1/events", "super1-demo-token")
    other = Feed(http, f"{api.url}/api/v1/agents/agent2/events", "agent2-demo-token")
    for feed in (desk, floor, other):
        await feed.open()
    try:
        case = await opened(call, AGENT1, tier="urgent")
        await call("PATCH", f"/api/v1/cases/{case['id']}", AGENT1, json={"status": "contacted"})
        await call("POST", f"/api/v1/cases/{case['id']}/notes", AGENT1, json={"text": "secret words"})
        ev = await desk.wait(lambda m: m.get("type") == "case.opened" and m.get("case_id") == case["id"])
        assert ev["agent_id"] == "agent1" and ev["tier"] == "urgent"
        ev = await desk.wait(lambda m: m.get("type") == "case.status" and m.get("case_id") == case["id"])
        assert ev["status"] == "contacted" and ev["previous"] == "open"
        note = await desk.wait(lambda m: m.get("type") == "case.note")
        assert "secret words" not in json.dumps(note) and note["length"] == len("secret words")
        await floor.wait(lambda m: m.get("type") == "case.status" and m.get("case_id") == case["id"])
        assert not [m for m in other.messages if str(m.get("type", "")).startswith("case.")]
    finally:
        for feed in (desk, floor, other):
            await feed.close()


async def test_every_case_change_reaches_the_crms_webhook_signed_and_without_the_notes_text(
        tmp_path: Path, redis_server: RedisServer, redis: Redis, first_holiday: date, store: QueueStore,
        http: aiohttp.ClientSession) -> None:
    receiver = Receiver()
    await receiver.start()
    hooks = hook_settings(receiver.url, endpoint={"events": ["case.*"]}).model_dump(mode="python")
    a = Api(settings_for(tmp_path, redis_server, webhooks=hooks))
    await a.start()
    try:
        await answered(store, "c1", "agent1")
        async with http.post(f"{a.url}/api/v1/cases", headers=AGENT1,
                             json={"tier": "urgent", "reason": "billed twice", "call_id": "c1"}) as r:
            assert r.status == 201
            case = await r.json()
        path = f"{a.url}/api/v1/cases/{case['id']}"
        async with http.patch(path, headers=SUPER, json={"tier": "important"}) as r:
            assert r.status == 200
        async with http.patch(path, headers=AGENT1, json={"status": "contacted"}) as r:
            assert r.status == 200
        async with http.post(f"{path}/notes", headers=AGENT1, json={"text": "private words"}) as r:
            assert r.status == 201
        types = ["case.opened", "case.updated", "case.status", "case.note"]
        await until(lambda: len(receiver.accepted) >= len(types), what="the case events delivered")
        got = [{"type": x["event"]["type"], **x["event"]["data"]} for x in receiver.attempts]
        assert [e["type"] for e in got] == types and all(x["verified"] for x in receiver.attempts)
        assert {e["case_id"] for e in got} == {case["id"]}
        assert got[0]["call_id"] == "c1" and got[0]["agent_id"] == "agent1"
        assert set(got[1]["changed"]) == {"tier", "due_at"} and got[1]["by"] == "super1"
        assert got[2]["status"] == "contacted" and got[3]["length"] == len("private words")
        assert "private words" not in json.dumps(got)
    finally:
        await a.stop()
        await receiver.stop()


# --- hostile input ------------------------------------------------------------------------------------

HOSTILE_BODIES: list[Any] = [
    {}, [], "text", 1, None, {"tier": "urgent"}, {"reason": "x"},
    {"tier": "critical", "reason": "x"}, {"tier": "URGENT", "reason": "x"}, {"tier": ["urgent"], "reason": "x"},
    {"tier": "urgent", "reason": ""}, {"tier": "urgent", "reason": "   "}, {"tier": "urgent", "reason": "a\nb"},
    {"tier": "urgent", "reason": "x" * 201}, {"tier": "urgent", "reason": 5},
    {"tier": "urgent", "reason": "x", "customer": "12ab"},
    {"tier": "urgent", "reason": "x", "customer": "+" + "1" * 33},
    {"tier": "urgent", "reason": "x", "owner": "../etc"}, {"tier": "urgent", "reason": "x", "owner": "a" * 65},
    {"tier": "urgent", "reason": "x", "call_id": "c 1"}, {"tier": "urgent", "reason": "x", "call_id": "c\x001"},
    {"tier": "urgent", "reason": "x", "crm_id": "c" * 65}, {"tier": "urgent", "reason": "x", "customer_name": "n\r"},
    {"tier": "urgent", "reason": "x", "status": "open"}, {"tier": "urgent", "reason": "x", "__proto__": {}},
]


async def test_hostile_bodies_get_a_400_with_a_code_never_a_500(call: Call, api: Api,
                                                                http: aiohttp.ClientSession) -> None:
    case = await opened(call, SUPER, owner="agent1")
    for bad in HOSTILE_BODIES:
        status, err = await call("POST", "/api/v1/cases", SUPER, json=bad)
        assert status == 400 and err["error"]["code"] == "request.invalid", bad
    for bad in ({"status": "done"}, {"tier": "x"}, {"owner": "a b"}, {"reason": "\u2028"}, {"reason": ""},
                {"status": None, "extra": 1}, {"owner": 7}, []):
        status, err = await call("PATCH", f"/api/v1/cases/{case['id']}", SUPER, json=bad)
        assert status == 400 and err["error"]["code"] == "request.invalid", bad
    for bad in ({}, {"call_id": ""}, {"call_id": "x" * 65}, {"call_id": "c1", "more": 1}):
        status, err = await call("POST", f"/api/v1/cases/{case['id']}/calls", SUPER, json=bad)
        assert status == 400 and err["error"]["code"] == "request.invalid", bad
    for raw in (b"{", b"\xff\xfe", b'{"tier": "urgent", "reason": "x"', b"null"):
        async with http.post(f"{api.url}/api/v1/cases", headers=SUPER, data=raw) as r:
            assert r.status == 400, raw
            assert (await code_of(r)).startswith("request."), raw
    async with http.post(f"{api.url}/api/v1/cases", headers=SUPER,
                         data=json.dumps({"tier": "urgent", "reason": "x" * 100_000})) as r:
        assert r.status == 413 and await code_of(r) == "request.too_large"


async def test_hostile_parameters_get_a_400_with_a_code_never_a_500(call: Call) -> None:
    for query in ("status=bogus", "status=", "tier=URGENT", "due=later", "owner=a%20b", "owner=", "limit=0",
                  "limit=201", "limit=abc", "limit=%C2%B2", "cursor=", "cursor=!!", "cursor=" + "a" * 401,
                  "cursor=eyJzIjoxLCJjIjoiQ1MxIiwicSI6IngifQ"):
        status, err = await call("GET", f"/api/v1/cases?{query}", SUPER)
        assert status == 400 and err["error"]["code"] == "request.invalid", query


async def test_every_case_route_wants_a_token(call: Call) -> None:
    for method, path in (("POST", "/api/v1/cases"), ("GET", "/api/v1/cases"), ("GET", "/api/v1/cases/counts"),
                         ("GET", "/api/v1/cases/CS1"), ("PATCH", "/api/v1/cases/CS1"),
                         ("POST", "/api/v1/cases/CS1/notes"), ("POST", "/api/v1/cases/CS1/calls")):
        status, err = await call(method, path, {}, json={})
        assert status == 401 and err["error"]["code"] == "auth.missing_token", (method, path)


# --- the follow-up (回访) a close schedules ---------------------------------------------------------

async def test_closing_schedules_the_follow_up_asked_for_and_reopening_cancels_it(
        call: Call, store: QueueStore, tmp_path: Path) -> None:
    # a case without a number, or with one calls.outbound_allow refuses, cannot be followed up
    for customer, code, http in (("", "case.no_number", 409), ("+8210555", "number.not_allowed", 403)):
        other = await opened(call, AGENT1, customer=customer) if customer else await opened(call, AGENT1)
        status, err = await call("PATCH", f"/api/v1/cases/{other['id']}", AGENT1, json={
            "status": "closed", "follow_up": {"mode": "task"}})
        assert (status, err["error"]["code"]) == (http, code), err
        assert (await store.get_case(other["id"]))["status"] == "open"
    case = await opened(call, AGENT1, customer="+15550042")
    path = f"/api/v1/cases/{case['id']}"
    await call("PATCH", path, AGENT1, json={"status": "resolved"})
    # a call needs a plan that exists; follow_up only goes with a close
    status, err = await call("PATCH", path, AGENT1, json={"status": "closed", "follow_up": {"mode": "call",
                                                                                            "plan": "nope"}})
    assert status == 400 and err["error"]["code"] == "case.follow_up_plan"
    status, err = await call("PATCH", path, AGENT1, json={"status": "closed", "follow_up": {"mode": "call"}})
    assert status == 400 and err["error"]["code"] == "case.follow_up_plan"  # cases.follow_up.plan is unset
    status, err = await call("PATCH", path, AGENT1, json={"reason": "x", "follow_up": {"mode": "task"}})
    assert status == 400 and err["error"]["code"] == "request.invalid"
    for hostile in ({"mode": "sms"}, {"after_s": 1}, {"plan": "../etc/passwd"}, {"mode": "call", "extra": 1}):
        status, err = await call("PATCH", path, AGENT1, json={"status": "closed", "follow_up": hostile})
        assert status == 400, (hostile, err)
    assert (await store.get_case(case["id"]))["status"] == "resolved"  # nothing changed
    before = int(time.time() * 1000)
    status, got = await call("PATCH", path, AGENT1, json={"status": "closed", "follow_up": {
        "mode": "call", "plan": "care", "after_s": 86_400}})
    assert status == 200 and got["status"] == "closed"
    assert (got["followup"], got["followup_state"], got["followup_plan"]) == ("call", "scheduled", "care")
    assert before + 86_400_000 <= got["followup_at"] <= int(time.time() * 1000) + 86_400_000
    assert got["followup_answers"] == {} and got["followup_attempts"] == 0
    status, got = await call("PATCH", path, SUPER, json={"status": "reopened"})
    assert status == 200 and got["followup_state"] == "cancelled"
    events = [e.type for e in await store.events_after("0-0", 1000)]
    assert "case.followup_scheduled" in events and "case.followup_cancelled" in events


async def test_closing_without_follow_up_takes_the_settings_default_none(call: Call, store: QueueStore) -> None:
    case = await opened(call, AGENT1, customer="+15550043")
    status, got = await call("PATCH", f"/api/v1/cases/{case['id']}", AGENT1, json={"status": "closed"})
    assert status == 200 and got["status"] == "closed" and got.get("followup", "") == ""
    status, got = await call("PATCH", f"/api/v1/cases/{case['id']}", SUPER, json={"status": "reopened"})
    status, got = await call("PATCH", f"/api/v1/cases/{case['id']}", AGENT1, json={
        "status": "closed", "follow_up": {"mode": "task", "after_s": 60}})
    assert status == 200 and (got["followup"], got["followup_state"]) == ("task", "scheduled")
