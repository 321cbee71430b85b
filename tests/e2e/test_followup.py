"""The follow-up (回访) of a closed complaint case end to end: the real ``ivr run`` hotline (edge, one
worker, Redis, API; speech off) with the shipped example plan ``dialplans/examples/followup-survey.yaml``
as its survey, and sipp UASs as the customer's phone. Each test closes a case with a follow-up due now
(the store's controllable clock: ``at_ms``); the worker's housekeeping places the call.

- ``test_an_unsolved_answer_reopens_the_case_with_the_answers_on_case_and_call``: the phone answers,
  presses 2 (not solved) and later 4 (the score); the case is reopened, its answers and the call
  record's are {solved: no, csat: 4}, the call's csat is 4, ``case.followup_done`` says reopened.
- ``test_a_customer_who_hangs_up_mid_survey_keeps_the_answers_given``: 1 (solved), then the customer
  hangs up during the score question: the follow-up is done with {solved: yes}, the case stays closed.
- ``test_a_busy_customer_is_tried_again_later``: 486: ``case.followup_retry`` (busy, attempt 1) and the
  follow-up is scheduled again.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.conftest import ROOT, Hotline
from tests.e2e.outbound import customers_hotline
from tests.e2e.test_callbacks import EVENT_PT, key_as, wait_for
from tests.e2e.test_dialout import call_record
from tests.e2e.test_dialplan_calls import new_media_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CALLER_ID = "+8215880000"
SIPP = Path(__file__).parents[1] / "sipp"


class Rig:
    def __init__(self, hotline: Hotline, customer_port: int) -> None:
        self.hotline = hotline
        self.customer_port = customer_port

    async def closed_case(self, number: str) -> str:
        """A case of ``number``, contacted, resolved and closed with a follow-up call due now."""
        from ivr.queues.store import FollowUp  # the store's API, as the CTI API calls it
        redis = self.hotline.redis()
        try:
            store = self.hotline.store(redis)
            now = int(time.time() * 1000)
            case = await store.open_case(tier="important", reason="refund missing", customer=number,
                                         customer_name="김민수", hotline="demo", opened_by="super1",
                                         due_at_ms=now + 7_200_000)
            cid = str(case["id"])
            await store.set_case_status(cid, "contacted", by="super1")
            await store.set_case_status(cid, "resolved", by="super1")
            await store.set_case_status(cid, "closed", by="super1", follow_up=FollowUp(
                mode="call", at_ms=now, plan="followup-survey", attempts=2, retry_after_ms=600_000, ring_s=10))
        finally:
            await redis.aclose()
        return cid

    async def case(self, cid: str) -> dict[str, Any]:
        redis = self.hotline.redis()
        try:
            case = await self.hotline.store(redis).get_case(cid)
        finally:
            await redis.aclose()
        assert case is not None
        return case

    async def call(self, call_id: str) -> dict[str, Any]:
        return await call_record(self.hotline, call_id)

    async def event(self, etype: str, cid: str, timeout: float = 60) -> dict[str, Any]:
        events = await wait_for(self.hotline, f"{etype} of {cid}", lambda ev: any(
            t == etype and d.get("case_id") == cid for t, d in ev), timeout=timeout)
        return [d for t, d in events if t == etype and d.get("case_id") == cid][-1]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    root = tmp_path_factory.mktemp("followup")
    plans = root / "dialplans"
    plans.mkdir()
    shutil.copy(ROOT / "dialplans" / "examples" / "followup-survey.yaml", plans / "followup-survey.yaml")
    async with customers_hotline(root, plans, outbound_allow=["+8210*"], caller_id=CALLER_ID) as (h, port):
        yield Rig(h, port)


def phone(rig: Rig, tmp_path: Path, keys: list[tuple[str, int]], *, hangs_up_ms: int = 0) -> SippServer:
    """The customer's phone: answers, presses ``keys`` (each after its pause, ms), then waits for the
    hotline's BYE, or hangs up itself ``hangs_up_ms`` after the last key."""
    actions = "".join(f'  <pause milliseconds="{ms}"/>\n'
                      f'  <nop><action><exec play_pcap_audio="{key_as(EVENT_PT, k, tmp_path)}"/></action></nop>\n'
                      for k, ms in keys)
    keep, drop = ("customer-hangs-up", "remote-hangs-up") if hangs_up_ms else ("remote-hangs-up", "customer-hangs-up")
    sf = render_scenario("customer_phone.xml", tmp_path / "customer", keep=keep, drop=drop, ring_ms=200,
                         talk_ms=hangs_up_ms or 60_000, event_pt=EVENT_PT, actions=actions)
    return SippServer(sf, workdir=tmp_path / "customer", tag="customer", port=rig.customer_port,
                      extra=["-m", "1", "-mp", str(new_media_port())])


async def test_an_unsolved_answer_reopens_the_case_with_the_answers_on_case_and_call(
        rig: Rig, tmp_path: Path) -> None:
    number = "+821055502001"
    async with phone(rig, tmp_path, [("2", 2500), ("4", 8000)]) as customer:
        cid = await rig.closed_case(number)
        started = await rig.event("case.followup_started", cid)
        done = await rig.event("case.followup_done", cid, timeout=90)
        assert customer.received("INVITE") == 1
        assert f"sip:{CALLER_ID}@" in customer.messages(), "the hotline's caller ID in From"
    assert (started["mode"], started["attempt"]) == ("call", 1)
    assert (done["call_id"], done["outcome"], done["reopened"]) == (started["call_id"], "completed", True), done
    assert done["answers"] == {"solved": "no", "csat": "4"}, done
    case = await rig.case(cid)
    assert (case["status"], case["followup_state"]) == ("reopened", "done"), case
    assert case["followup_answers"] == {"solved": "no", "csat": "4"}
    assert started["call_id"] in case["calls"]
    record = await rig.call(started["call_id"])
    assert (record["kind"], record["purpose"], record["case_id"], record["csat"]) == (
        "dialout", "followup", cid, 4), record
    assert json.loads(record["answers"]) == {"solved": "no", "csat": "4"}
    steps = [s["node"] for s in record["journey"]["steps"]]
    assert steps[:4] == ["solved", "not_solved", "sorry", "rate"], steps


async def test_a_customer_who_hangs_up_mid_survey_keeps_the_answers_given(rig: Rig, tmp_path: Path) -> None:
    number = "+821055502002"
    async with phone(rig, tmp_path, [("1", 2500)], hangs_up_ms=1500):
        cid = await rig.closed_case(number)
        done = await rig.event("case.followup_done", cid, timeout=90)
    assert (done["outcome"], done["reopened"], done["answers"]) == ("completed", False, {"solved": "yes"}), done
    case = await rig.case(cid)
    assert (case["status"], case["followup_state"], case["followup_answers"]) == ("closed", "done",
                                                                                  {"solved": "yes"})
    record = await rig.call(done["call_id"])
    assert record["end_reason"] == "caller_hangup" and "csat" not in record


async def test_a_busy_customer_is_tried_again_later(rig: Rig, tmp_path: Path) -> None:
    busy = SippServer(str(SIPP / "customer_busy.xml"), workdir=tmp_path / "busy", tag="busy",
                      port=rig.customer_port, extra=["-mp", str(new_media_port())])
    async with busy:
        cid = await rig.closed_case("+821055502003")
        retry = await rig.event("case.followup_retry", cid)
        assert busy.received("INVITE") == 1
    assert (retry["outcome"], retry["reason"], retry["attempt"], retry["retry_in_s"]) == (
        "busy", "customer_busy", 1, 600.0), retry
    case = await rig.case(cid)
    assert (case["followup_state"], case["followup_attempts"], case["status"]) == ("scheduled", 1, "closed")
