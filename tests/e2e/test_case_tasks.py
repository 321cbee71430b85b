"""A complaint case's follow-up task end to end: the real ``ivr run`` hotline (edge, one worker, Redis,
API; speech off), a sipp UAS as agent1's phone and one as the customer's phone (the click-to-dial set-up
of tests/e2e/test_originate.py).

- ``test_a_case_near_its_deadline_is_offered_dialled_and_contacted``: a case opened over the API for
  agent1 with the customer's number, `cases.offer_before_s` larger than its due time so it is due for a
  follow-up at once; the worker's housekeeping offers it to agent1 (``case.task_offered`` on agent1's
  desktop feed); agent1 accepts over the API; its phone rings and answers, then the customer's; the case
  becomes contacted with its first contact measured, the call record and the case link each other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.desktop import AgentDesktop
from tests.e2e.conftest import Hotline
from tests.e2e.test_callbacks import wait_for
from tests.e2e.test_dialplan_calls import new_media_port
from tests.e2e.test_walking_skeleton import login
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CALLER_ID = "+8215880000"
NUMBER = "+821055507777"
EVENT_PT = 120  # the worker's telephone-event type: the customer's answer keeps it


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def hotline(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Hotline, int]]:
    root = tmp_path_factory.mktemp("case-tasks")
    customer_port = free_udp_tcp_port()
    h = Hotline(root / "hotline", workers=1, wrapup_s=1.0, overrides={
        "calls": {"outbound_allow": ["+8210*"], "caller_id": CALLER_ID},
        "callbacks": {"dial_uri": f"sip:{{number}}@127.0.0.1:{customer_port}", "ring_timeout_s": 10},
        "cases": {"offer_before_s": 7200, "task_timeout_s": 60}})  # urgent: due in 1 h, offered at once
    try:
        await h.start()
        yield h, customer_port
    finally:
        h.stop()


async def test_a_case_near_its_deadline_is_offered_dialled_and_contacted(
        hotline: tuple[Hotline, int], tmp_path: Path) -> None:
    h, customer_port = hotline
    customer_sf = render_scenario("customer_phone.xml", tmp_path / "customer", keep="customer-hangs-up",
                                  drop="remote-hangs-up", ring_ms=200, talk_ms=1500, event_pt=EVENT_PT, actions="")
    phone_sf = render_scenario("agent_phone.xml", tmp_path / "agent", keep="remote-hangs-up", drop="agent-hangs-up",
                               ring_ms=200, talk_ms=30000)
    customer = SippServer(customer_sf, workdir=tmp_path / "customer", tag="customer", port=customer_port,
                          extra=["-m", "1", "-mp", str(new_media_port())])
    phone = SippServer(phone_sf, workdir=tmp_path / "agent", tag="agent", port=h.agent_sip_port,
                       extra=["-m", "1", "-mp", str(new_media_port())])
    auth = {"Authorization": f"Bearer {h.tokens['agent1']}"}
    desktop = AgentDesktop(h.api, "agent1", h.tokens["agent1"])
    async with aiohttp.ClientSession() as http, customer, phone:
        await desktop.start(http)
        try:
            async with http.post(f"{h.api}/api/v1/cases", headers=auth, json={
                    "tier": "urgent", "reason": "refund missing", "customer": NUMBER}) as r:
                assert r.status == 201, await r.text()
                case_id = (await r.json())["id"]
            await login(http, h, "agent1")  # available: the housekeeping offers the task to the owner
            _, offered = await desktop.wait_for("case.task_offered")
            assert (offered["case_id"], offered["agent_id"], offered["customer"], offered["overdue"]) == (
                case_id, "agent1", NUMBER, False), offered
            async with http.post(f"{h.api}/api/v1/cases/{case_id}/task/accept", headers=auth) as r:
                assert r.status == 202, await r.text()
                reply = await r.json()
            cid = reply["call_id"]
            assert (reply["case_id"], reply["status"]) == (case_id, "dialing")
            events = await wait_for(h, "the follow-up call did not end", lambda ev: any(
                t == "call.ended" and d.get("call_id") == cid for t, d in ev))
        finally:
            await desktop.stop()
        assert phone.received("INVITE") == 1 and customer.received("INVITE") == 1
    mine = [t for t, d in events if d.get("call_id") == cid or (d.get("case_id") == case_id and t.startswith("case."))]
    assert mine.index("case.task_offered") < mine.index("case.task_accepted") < mine.index("call.answered") \
        < mine.index("call.ended"), mine
    assert mine.index("case.task_accepted") < mine.index("case.status"), mine  # open -> contacted
    redis = h.redis()
    try:
        store = h.store(redis)
        case = await store.get_case(case_id)
        record = await store.get_call(cid)
    finally:
        await redis.aclose()
    assert case is not None and record is not None
    assert case["status"] == "contacted" and case["first_contact_ms"] is not None and case["contacted_at"], case
    assert case["calls"] == [cid] and not case.get("task_agent"), case
    assert (record["case_id"], record["direction"], record["agent_id"], record["outcome"], record["ani"]) == (
        case_id, "outbound", "agent1", "completed", NUMBER), record
