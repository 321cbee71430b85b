"""The automated call's worker session (ivr/calls/dialout.py) alone, with the scripted SIP thread and
the recording store of test_originate_session: the customer dialled with the caller ID on a caller
slot; every way of not reaching them ends the record once with the right outcome and reason and no
leg left up; a stale answer hangs up without touching the record. Through real SIP and a real plan:
tests/e2e/test_dialout.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from ivr.calls.dialout import DialoutSession
from ivr.core.config import Settings
from ivr.queues.store import Offer
from tests.unit.test_originate_session import RecordingStore, ScriptedSip, leg_maker

NUMBER = "+821055501234"


def session(tmp_path: Path, script: dict[str, str], *, plan: str = "survey", ring_s: float = 0,
            ring_timeout_s: float = 0.3) -> tuple[DialoutSession, ScriptedSip, RecordingStore]:
    settings = Settings(var_dir=tmp_path, callbacks={"dial_uri": "sip:{number}@127.0.0.1:5099",
                                                     "ring_timeout_s": ring_timeout_s})
    sip, store = ScriptedSip(script), RecordingStore()
    loaded = SimpleNamespace(plan=SimpleNamespace(language="ko"))
    plans = SimpleNamespace(for_id=lambda pid: loaded if pid == "survey" else None)
    ctx = SimpleNamespace(settings=settings, store=store, new_leg=leg_maker(sip), plans=plans, moh_path="")
    offer = Offer("d1.d", "d1", "", "", "", kind="dialout", dial=True, number=NUMBER, hotline="demo",
                  caller_id="+8215880000", plan=plan, variables={"case.id": "CS7"}, ring_s=ring_s)
    return DialoutSession(ctx, offer), sip, store  # type: ignore[arg-type]


async def run(s: DialoutSession) -> None:
    await asyncio.wait_for(s.run(), 10)


@pytest.mark.parametrize(("what", "outcome", "reason"), [
    ("busy", "busy", "customer_busy"),
    ("ring", "no_answer", "customer_no_answer"),
    ("full", "failed", "worker_full"),
])
async def test_not_reached_ends_the_record_once_with_why(tmp_path: Path, what: str, outcome: str, reason: str) -> None:
    s, sip, store = session(tmp_path, {f"sip:{NUMBER}": what})
    await run(s)
    [(uri, _leg, customer, from_uri, _slot)] = sip.dials
    assert (uri, customer, from_uri) == (f"sip:{NUMBER}@127.0.0.1:5099", True, "sip:+8215880000@127.0.0.1")
    assert store.names() == ["dialout_failed"]
    kw = store.kwargs("dialout_failed")
    assert (kw["outcome"], kw["reason"]) == (outcome, reason)
    if what == "ring":
        assert sip.hangups, "a phone still ringing is cancelled"


async def test_the_offer_rings_as_long_as_it_says(tmp_path: Path) -> None:
    # callbacks.ring_timeout_s is 2 minutes: only the offer's ring_s ends the ringing within the bound of run()
    s, _sip, store = session(tmp_path, {f"sip:{NUMBER}": "ring"}, ring_s=0.05, ring_timeout_s=120)
    await run(s)
    assert store.kwargs("dialout_failed")["outcome"] == "no_answer"


async def test_a_plan_that_is_gone_dials_nobody(tmp_path: Path) -> None:
    s, sip, store = session(tmp_path, {f"sip:{NUMBER}": "answer"}, plan="removed")
    await run(s)
    assert sip.dials == []
    assert store.names() == ["dialout_failed"]
    assert (store.kwargs("dialout_failed")["outcome"], store.kwargs("dialout_failed")["reason"]) == (
        "failed", "plan_not_found")


async def test_a_stale_answer_hangs_up_and_leaves_the_record_alone(tmp_path: Path) -> None:
    s, sip, store = session(tmp_path, {f"sip:{NUMBER}": "answer"})  # dialout_answered -> None: stale
    await run(s)
    assert store.names() == ["dialout_answered"]
    [(_, leg_id, _, _, _)] = sip.dials
    assert leg_id in sip.hangups
