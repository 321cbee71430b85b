"""Automated outbound calls end to end: the real ``ivr run`` hotline (edge, one worker, Redis, API; speech
off) places a call through ``QueueStore.dialout_start`` (as a follow-up or a campaign does), and sipp
UASs play the customer's phone.

- ``test_an_answered_call_runs_its_plan_with_the_seeded_variables``: the customer's phone gets the
  INVITE with the hotline's caller ID, answers and presses 2 (RFC 2833); the seeded variable took the
  plan's branch to the question, its menu hears the key, the plan hangs up; the record is an outbound
  ``dialout`` call that was ``dialing``, then in its plan, then ended completed with the survey's journey.
- ``test_a_customer_who_hangs_up_mid_survey_ends_the_call_completed``: the phone hangs up while the
  menu still asks: the call ends completed (it was answered), reason caller_hangup.
- ``test_a_busy_phone_and_a_phone_nobody_answers_end_not_reached``: 486 gives outcome busy; a phone
  that only rings is cancelled after ``ring_s`` and gives no_answer. Neither record runs the plan.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from tests.e2e.conftest import Hotline
from tests.e2e.outbound import customers_hotline
from tests.e2e.test_callbacks import EVENT_PT, key_as, wait_for
from tests.e2e.test_dialplan_calls import new_media_port, steps_of
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CALLER_ID = "+8215880000"
NUMBER = "+821055501111"
SIPP = Path(__file__).parents[1] / "sipp"


def survey() -> dict[str, Any]:
    return {"name": "Follow-up survey", "numbers": ["9001"], "language": "en", "start": "known", "nodes": {
        "known": {"type": "branch", "rules": [{"if": {"var": "customer.name", "equals": "Kim"}, "goto": "ask"}],
                  "default": "bye"},
        "ask": {"type": "menu", "timeout_s": 4, "retries": 1, "on_failure": "bye",
                "prompt": {"text": "Hello ${customer.name}. Was your problem solved? Press 1 for yes, 2 for no."},
                "options": [{"digit": "1", "goto": "solved"}, {"digit": "2", "goto": "unsolved"}]},
        "solved": {"type": "set", "variables": {"solved": "yes"}, "next": "bye"},
        "unsolved": {"type": "set", "variables": {"solved": "no"}, "next": "bye"},
        "bye": {"type": "hangup", "prompt": {"text": "Thank you. Goodbye."}}}}


async def call_record(hotline: Hotline, cid: str) -> dict[str, Any]:
    """Call ``cid``'s record (it must exist)."""
    redis = hotline.redis()
    try:
        record = await hotline.store(redis).get_call(cid)
    finally:
        await redis.aclose()
    assert record is not None, cid
    return record


class Rig:
    def __init__(self, hotline: Hotline, customer_port: int) -> None:
        self.hotline = hotline
        self.customer_port = customer_port

    async def dial(self, *, ring_s: float = 10) -> str:
        cid = uuid.uuid4().hex[:16]
        redis = self.hotline.redis()
        try:
            await self.hotline.store(redis).dialout_start(
                cid, number=NUMBER, plan="survey", purpose="test", caller_id=CALLER_ID, hotline="Follow-ups",
                variables={"customer.name": "Kim"}, ring_s=ring_s)
        finally:
            await redis.aclose()
        return cid

    async def record(self, cid: str) -> dict[str, Any]:
        return await call_record(self.hotline, cid)

    async def ended(self, cid: str) -> list[tuple[str, dict[str, Any]]]:
        events = await wait_for(self.hotline, f"dialout {cid} did not end", lambda ev: any(
            t == "call.ended" and d.get("call_id") == cid for t, d in ev))
        return [(t, d) for t, d in events if d.get("call_id") == cid]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    root = tmp_path_factory.mktemp("dialout")
    plans = root / "dialplans"
    plans.mkdir()
    (plans / "survey.yaml").write_text(yaml.safe_dump(survey(), allow_unicode=True))
    async with customers_hotline(root, plans) as (h, customer_port):
        yield Rig(h, customer_port)


async def test_an_answered_call_runs_its_plan_with_the_seeded_variables(rig: Rig, tmp_path: Path) -> None:
    phone_sf = render_scenario(
        "customer_phone.xml", tmp_path / "customer", keep="remote-hangs-up", drop="customer-hangs-up",
        ring_ms=200, talk_ms=30000, event_pt=EVENT_PT,
        actions=(f'  <pause milliseconds="1500"/>\n'
                 f'  <nop><action><exec play_pcap_audio="{key_as(EVENT_PT, "2", tmp_path)}"/></action></nop>\n'))
    phone = SippServer(phone_sf, workdir=tmp_path / "customer", tag="customer", port=rig.customer_port,
                       extra=["-m", "1", "-mp", str(new_media_port())])
    async with phone:
        cid = await rig.dial()
        mine = await rig.ended(cid)
        assert phone.received("INVITE") == 1 and phone.received("BYE") == 1
        assert f"sip:{CALLER_ID}@" in phone.messages(), "the INVITE's From carries the caller ID"
    assert [t for t, _ in mine] == ["call.started", "call.answered", "call.ended"], mine
    ended = mine[-1][1]
    assert (ended["outcome"], ended["reason"]) == ("completed", "ivr_hangup"), ended
    record = await rig.record(cid)
    assert (record["kind"], record["direction"], record["number"], record["plan"]) == (
        "dialout", "outbound", NUMBER, "survey"), record
    # the seeded variable took the branch to the question; the key 2 chose "unsolved"
    assert [n for n, _ in steps_of(record)] == ["known", "ask", "unsolved", "bye"], steps_of(record)
    assert steps_of(record)[1] == ("ask", "unsolved")
    assert [s.get("digit") for s in record["journey"]["steps"] if s["node"] == "ask"] == ["2"]
    logs = rig.hotline.log_path.read_text(errors="replace")
    dialout_lines = "".join(line for line in logs.splitlines() if "dialout" in line)
    assert dialout_lines and NUMBER.lstrip("+") not in dialout_lines, "no number in the logs"


async def test_a_customer_who_hangs_up_mid_survey_ends_the_call_completed(rig: Rig, tmp_path: Path) -> None:
    phone_sf = render_scenario("customer_phone.xml", tmp_path / "customer", keep="customer-hangs-up",
                               drop="remote-hangs-up", ring_ms=200, talk_ms=1200, event_pt=EVENT_PT, actions="")
    phone = SippServer(phone_sf, workdir=tmp_path / "customer", tag="customer", port=rig.customer_port,
                       extra=["-m", "1", "-mp", str(new_media_port())])
    async with phone:
        cid = await rig.dial()
        mine = await rig.ended(cid)
    ended = mine[-1][1]
    assert (ended["outcome"], ended["reason"]) == ("completed", "caller_hangup"), ended
    record = await rig.record(cid)
    assert "unsolved" not in [n for n, _ in steps_of(record)], steps_of(record)


@pytest.mark.parametrize(("scenario", "outcome", "reason"), [
    ("customer_busy.xml", "busy", "customer_busy"),
    ("customer_no_answer.xml", "no_answer", "customer_no_answer"),
])
async def test_a_busy_phone_and_a_phone_nobody_answers_end_not_reached(
        rig: Rig, tmp_path: Path, scenario: str, outcome: str, reason: str) -> None:
    phone = SippServer(str(SIPP / scenario), workdir=tmp_path / "customer", tag="customer",
                       port=rig.customer_port, extra=["-mp", str(new_media_port())])
    async with phone:
        cid = await rig.dial(ring_s=2)
        mine = await rig.ended(cid)
        assert phone.received("INVITE") == 1
        if outcome == "no_answer":
            assert phone.received("CANCEL") == 1
    assert [t for t, _ in mine] == ["call.started", "call.ended"], mine
    assert (mine[-1][1]["outcome"], mine[-1][1]["reason"]) == (outcome, reason), mine
    record = await rig.record(cid)
    assert (record["state"], record["outcome"]) == ("ended", outcome)
    assert "answered_at" not in record
