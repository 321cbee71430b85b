"""The desktop's follow-up task card in headless Chromium, against the real CTI API (with its CRM
connector asking a real HTTP server standing in for the CRM) on a real Redis; the task offered by the
store's housekeeping scan (no SIP here: a worker is only registered, so the accepted call waits in its
inbox). The card shows the case, the customer's CRM record and the offer's countdown; "Dial" and "Skip"
call the task routes; the card goes when the task is accepted, declined or taken back."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from redis.asyncio import Redis

from ivr.core.events import AgentState
from ivr.queues.store import QueueStore
from tests.conftest import RedisServer
from tests.service.pages import desktop, page_settings, serving
from tests.service.test_crm import FakeCrm, by_phone

PREFIX = "taskpages"
KNOWN = "+15550001"  # the fake CRM's Ada Kim
TIMEOUT_MS = 10_000
HOUR_MS = 3_600_000


@pytest.fixture
async def crm() -> AsyncIterator[FakeCrm]:
    server = FakeCrm()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def api(tmp_path: Path, redis_server: RedisServer, redis: Redis, crm: FakeCrm) -> AsyncIterator[str]:
    await redis.flushdb()
    (tmp_path / "dialplans").mkdir()
    settings = page_settings(tmp_path, redis_server, PREFIX, dialplans_dir=tmp_path / "dialplans",
                             calls={"outbound_allow": ["+1555*"], "caller_id": "+8215880000"},
                             crm={"lookups": [by_phone(crm.base)]})
    async with serving(settings) as url:
        yield url


@pytest.fixture
def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX)


async def offer(store: QueueStore, reason: str, customer: str = KNOWN, owner: str = "agent1",
                timeout_ms: int = 60_000) -> str:
    case = await store.open_case(tier="urgent", reason=reason, customer=customer, opened_by="super1", owner=owner,
                                 customer_name="Ada", due_at_ms=int(time.time() * 1000) + 20 * 60_000)
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    assert await store.case_offer_tasks(before_ms=HOUR_MS, skill="complaints", timeout_ms=timeout_ms) == 1
    return str(case["id"])


async def test_the_task_card_shows_the_case_and_its_crm_record_and_dials_or_skips(
        api: str, browser: Browser, store: QueueStore, redis: Redis) -> None:
    await store.register_worker("w0", "host:1", ttl_s=30, slots=2)
    tab = await desktop(browser, api)
    page = tab.page
    card = page.locator("#task")
    await expect(card).to_be_hidden()

    case_id = await offer(store, "billed twice <img src=x onerror=alert(1)>")
    await expect(card).to_be_visible(timeout=TIMEOUT_MS)
    await expect(card).to_have_attribute("data-case-id", case_id)
    await expect(page.locator("#task-title")).to_have_text(f"Follow-up: {case_id}")
    await expect(page.locator("#task-tier")).to_have_text("urgent")
    await expect(page.locator("#task-due")).to_contain_text("due in 19:")
    await expect(page.locator("#task-reason")).to_have_text("billed twice <img src=x onerror=alert(1)>")
    await expect(page.locator("#task-customer")).to_have_text(f"Ada · {KNOWN}")
    await expect(page.locator("#state-hint")).to_have_text("A follow-up task is offered to you: Dial or Skip it.")
    assert await card.locator("img").count() == 0, "a case's reason must never become markup"
    # the customer's CRM record, looked up by the connector as for a screen-pop
    await expect(card.locator(".crm")).to_have_attribute("data-crm", "matched")
    await expect(card.locator(".crm-link")).to_have_text("Ada Kim")
    await expect(card.locator(".crm-link")).to_have_attribute("href", "https://crm.example.com/contacts/C-1")
    # a countdown to the end of the offer (task_expires of the case, 60 s after the offer)
    await expect(page.locator("#task-left")).to_have_text(re.compile(r"^[01]:[0-5][0-9]$"), timeout=TIMEOUT_MS)
    await tab.screenshot("desktop-task.png")

    await page.click("#task-dial")
    await expect(card).to_be_hidden(timeout=TIMEOUT_MS)
    [msg] = [json.loads(m) for m in await redis.lrange(f"{PREFIX}:worker:w0:inbox", 0, -1)]
    assert (msg["kind"], msg["agent_id"], msg["number"]) == ("outbound", "agent1", KNOWN), msg
    call = await store.get_call(msg["call_id"]) or {}
    assert call.get("case_id") == case_id, call
    await expect(page.locator("#pop")).to_be_visible(timeout=TIMEOUT_MS)  # the call pops as any click-to-dial
    await expect(page.locator("#activity li[data-type='case.task_accepted']")).to_have_count(1)
    # the customer did not answer: the agent is free again, the case still waits for its first contact
    await store.originate_failed(msg["call_id"], msg["offer_id"], outcome="no_answer", reason="no_answer",
                                 agent_state="available", ttl_s=60)
    await store.set_case_status(case_id, "resolved", by="agent1")  # (else it would be offered again first)

    # the next task: "Skip" gives it back, and the agent is available again
    skipped = await offer(store, "wrong plan", customer="+15550002")
    await expect(card).to_have_attribute("data-case-id", skipped, timeout=TIMEOUT_MS)
    await expect(card.locator(".crm")).to_have_attribute("data-crm", "multiple")
    await page.click("#task-skip")
    await expect(card).to_be_hidden(timeout=TIMEOUT_MS)
    assert (await store.get_agent("agent1") or {})["state"] == "available"
    assert not (await store.get_case(skipped) or {}).get("task_agent")
    await expect(page.locator("#activity li[data-type='case.task_declined']")).to_have_count(1, timeout=TIMEOUT_MS)

    # a task nobody answers: the card goes when the offer ends (the server gives it back on its next scan)
    short = await offer(store, "no answer", customer="", timeout_ms=2000)
    await expect(card).to_have_attribute("data-case-id", short, timeout=TIMEOUT_MS)
    await expect(page.locator("#task-customer")).to_have_text("Ada · no number")
    await expect(card.locator(".crm")).to_have_attribute("data-crm", "none")
    await expect(card).to_be_hidden(timeout=TIMEOUT_MS)
    tab.expect_no_errors()


async def test_a_follow_up_task_of_a_closed_case_says_what_it_is(
        api: str, browser: Browser, store: QueueStore) -> None:
    from ivr.queues.store import FollowUp
    tab = await desktop(browser, api)
    page = tab.page
    case = await store.open_case(tier="normal", reason="refund missing", customer=KNOWN, opened_by="super1",
                                 owner="agent1", customer_name="Ada", due_at_ms=int(time.time() * 1000) + HOUR_MS)
    case_id = str(case["id"])
    await store.set_case_status(case_id, "closed", by="agent1", follow_up=FollowUp(
        mode="task", at_ms=int(time.time() * 1000)))
    await store.set_agent_state("agent1", AgentState.AVAILABLE)
    assert await store.case_followups(caller_id="+8215880000", skill="complaints", task_timeout_ms=60_000) == 1
    card = page.locator("#task")
    await expect(card).to_have_attribute("data-case-id", case_id, timeout=TIMEOUT_MS)
    await expect(card).to_have_attribute("data-kind", "followup")
    await expect(page.locator("#task-title")).to_have_text(f"Follow-up call (回访): {case_id}")
    await expect(page.locator("#task-due")).to_have_text("case closed: ask how it went")
    await expect(page.locator("#activity li[data-type='case.followup_scheduled']")).to_have_count(1)
    # skipped, it is offered again at once (to someone else; agent1 is kept from it for a while)
    await page.click("#task-skip")
    await expect(card).to_be_hidden(timeout=TIMEOUT_MS)
    assert (await store.get_case(case_id) or {})["followup_state"] == "scheduled"
    tab.expect_no_errors()
