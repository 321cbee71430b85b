"""Forecast and staffing over the real CTI API on a real Redis (docs/planning.md): a queue's interval
history written where the Lua scripts keep it, agents signed in through the store, holidays from a dial
plan's calendars; JSON, CSV, roles and bad parameters; ``staffing_now`` for the alerts; and the
wallboard's forecast card in headless Chromium."""

from __future__ import annotations

import asyncio
import csv
import io
import math
import re
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, expect
from redis.asyncio import Redis

from ivr.core.config import DEMO_USERS, Settings
from ivr.core.events import AgentState
from ivr.cti.planning import FORECAST_CSV, STAFFING_CSV
from ivr.planning.erlang import required_agents
from ivr.planning.forecast import build_history
from ivr.planning.service import clear_cache, local_midnight, read_history, read_intervals, staffing_now
from ivr.queues.store import QueueStore
from tests.browser import open_tab
from tests.conftest import RedisServer, free_port
from tests.service.pages import serving

PREFIX = "planapi"
SUPER = {"Authorization": "Bearer super1-demo-token"}
AGENT1 = {"Authorization": "Bearer agent1-demo-token"}
TIMEOUT_MS = 10_000
PER_15_MIN = 20  # calls in every 15-minute interval of the history, day and night
AHT_S = 200
TODAY = date.today()  # set again by _dates for each test (a run that crossed midnight after collection)
TOMORROW, AFTER = TODAY + timedelta(days=1), TODAY + timedelta(days=2)
SEEDED_AT = 0  # when the store fixture wrote today's quarter hours (those starting by then)


@pytest.fixture(autouse=True)
def _dates() -> None:
    """Today, tomorrow and the day after as of this test's start, not of the collection minutes
    earlier: a make test that crossed midnight compared the server's today with yesterday's."""
    global TODAY, TOMORROW, AFTER
    TODAY = date.today()
    TOMORROW, AFTER = TODAY + timedelta(days=1), TODAY + timedelta(days=2)


def plan_text() -> str:
    return f"""
name: Billing line
numbers: ["2000"]
timezone: UTC
calendars:
  public: [{TOMORROW.isoformat()}]
  events: [{AFTER.isoformat()}]
hours:
  open: [{{days: [mon-sun], from: "00:00", to: "23:59"}}]
  holidays: public
start: q
nodes:
  q:
    type: queue
    queue: billing
"""


@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    plans = tmp_path / "dialplans"
    plans.mkdir()
    (plans / "billing.yaml").write_text(plan_text())
    return Settings(users=DEMO_USERS, var_dir=tmp_path / "var", dialplans_dir=plans,
                    redis={"url": redis_server.url, "prefix": PREFIX},
                    api={"host": "127.0.0.1", "port": free_port()},
                    routing={"stats_keep_days": 60, "queues": {"sales": {}}}, planning={"history_weeks": 4})


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[str]:
    clear_cache()
    async with serving(settings) as url:
        yield url


@pytest.fixture
async def store(redis: Redis) -> QueueStore:
    """billing: four weeks of history (PER_15_MIN calls in every quarter hour, AHT_S each), today's
    intervals up to now with half as many; two agents of the queue available, one on a break."""
    s = QueueStore(redis, prefix=PREFIX)
    global SEEDED_AT
    first = local_midnight(TODAY - timedelta(days=28))
    now = SEEDED_AT = int(time.time())
    async with redis.pipeline(transaction=False) as pipe:
        start = first
        while start <= now:
            n = PER_15_MIN if start < local_midnight(TODAY) else PER_15_MIN // 2
            pipe.hset(s.keys.queue_interval("billing", start), mapping={
                "start": start, "length_s": 900, "offered": n, "answered": n, "handled": n,
                "handle_ms": n * AHT_S * 1000})
            pipe.zadd(s.keys.queue_intervals("billing"), {str(start): start})
            start += 900
        await pipe.execute()
    for i, state in enumerate((AgentState.AVAILABLE, AgentState.AVAILABLE, AgentState.BREAK)):
        await s.register_agent(f"b{i}", name="", skills={"billing": 3}, sip_uri=None, languages=["en"])
        await s.set_agent_state(f"b{i}", state)
    await s.call_start("k1", "w1", ani="", dnis="", hotline="", language="en", plan_version="v1")
    await s.enqueue("k1", queue="billing", skill="billing", priority=0, journey={})
    await s.end_call("k1", reason="caller_hangup", wrapup_s=0, ttl_s=60)
    return s


async def get(api: str, path: str, headers: dict[str, str] = SUPER, **params: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{api}{path}", headers=headers, params=params) as r:
        body = await (r.json() if r.content_type == "application/json" else r.text())
        return r.status, body


def _required(settings: Settings, offered: float, aht: float) -> int:
    share, threshold = settings.routing.target("billing")
    return required_agents(offered / 1800, aht, target=share, threshold_s=threshold,
                           max_occupancy=settings.planning.max_occupancy).agents


async def test_the_forecast_learns_the_history_and_shows_todays_actuals(api: str, store: QueueStore) -> None:
    status, fc = await get(api, "/api/v1/queues/billing/forecast")
    assert status == 200, fc
    assert fc["queue"] == "billing" and fc["date"] == TODAY.isoformat() and fc["interval_s"] == 1800
    assert fc["method"] in ("seasonal", "holt_winters") and fc["chosen_by"] == "backtest"
    errs = fc["backtest"]["errors"]
    assert set(errs) == {"seasonal", "holt_winters"}
    assert errs[fc["method"]]["wape"] < 0.01  # a flat history is forecast exactly
    assert fc["aht_s"] == pytest.approx(AHT_S)
    rows = fc["intervals"]
    assert len(rows) == 48  # 30-minute intervals (15-minute stats folded)
    assert all(r["offered"] == pytest.approx(2 * PER_15_MIN, abs=0.5) for r in rows)
    assert all(r["aht_s"] == pytest.approx(AHT_S, abs=0.5) for r in rows)
    now = time.time()
    past = [r for r in rows if r["start_s"] <= now]
    assert past and all(r["actual"] is not None for r in past)
    assert all(r["actual"] is None for r in rows if r["start_s"] > now)
    # today's first half hour: its quarter hours seeded half full (those begun by the seeding), and
    # the store fixture's own call k1 when it fell in it (the first half hour of the day)
    t0 = past[0]["start_s"]
    seeded = sum(PER_15_MIN // 2 for q in (t0, t0 + 900) if q <= SEEDED_AT)
    assert past[0]["actual"]["offered"] == seeded + (1 if t0 <= SEEDED_AT < t0 + 1800 else 0)
    assert not any(r["holiday"] for r in rows)

    status, week = await get(api, "/api/v1/queues/billing/forecast", days="3")
    assert status == 200 and len(week["intervals"]) == 3 * 48

    status, text = await get(api, "/api/v1/queues/billing/forecast", format="csv")
    assert status == 200
    table = list(csv.reader(io.StringIO(text)))
    assert tuple(table[0]) == FORECAST_CSV and len(table) == 49
    assert float(table[1][1]) == pytest.approx(2 * PER_15_MIN, abs=0.5)
    async with aiohttp.ClientSession() as http, http.get(f"{api}/api/v1/queues/billing/forecast",
                                                         headers={**SUPER, "Accept": "text/csv"}) as r:
        assert r.status == 200 and r.content_type == "text/csv"


async def test_holidays_come_from_the_plans_calendars(api: str, store: QueueStore) -> None:
    status, fc = await get(api, "/api/v1/queues/billing/forecast", date=TOMORROW.isoformat(), days="2")
    assert status == 200, fc
    closed = [r for r in fc["intervals"] if r["start"].startswith(TOMORROW.isoformat())]
    other = [r for r in fc["intervals"] if r["start"].startswith(AFTER.isoformat())]
    assert closed and all(r["holiday"] and r["closed"] and r["offered"] == 0 for r in closed)
    # a holiday the plan stays open on, with no past holiday to learn from: the ordinary forecast
    assert other and all(r["holiday"] and not r["closed"] and r["offered"] > 30 for r in other)
    assert fc["holiday_basis"] == "regular"


async def test_staffing_per_interval_and_the_shortfall_now(api: str, store: QueueStore, settings: Settings) -> None:
    status, st = await get(api, "/api/v1/queues/billing/staffing")
    assert status == 200, st
    need = _required(settings, 2 * PER_15_MIN, AHT_S)
    assert need > 2
    assert st["target"] == {"share": 0.9, "threshold_s": 10}
    assert st["signed_in_now"] == 2  # two available; the one on a break is not on the phones
    rows = st["intervals"]
    assert all(r["required"] == need for r in rows)
    assert all(r["scheduled"] == math.ceil(need / (1 - settings.planning.shrinkage)) for r in rows)
    assert all(r["expected_sl"] >= 0.9 and r["expected_occupancy"] <= settings.planning.max_occupancy for r in rows)
    now = time.time()
    current = next(r for r in rows if r["start_s"] <= now < r["start_s"] + 1800)
    assert current["signed_in"] == 2 and current["short_by"] == need - 2
    assert st["short"]["by"] == need - 2
    at = datetime.fromtimestamp(current["start_s"]).strftime("%H:%M")
    assert st["short"]["text"] == f"short by {need - 2} at {at}"
    assert all(r["signed_in"] is None for r in rows if r["start_s"] > now + 5 * 1800)

    status, later = await get(api, "/api/v1/queues/billing/staffing", date=TOMORROW.isoformat())
    assert status == 200 and later["short"]["by"] is None  # the floor now says nothing about tomorrow
    assert all(r["signed_in"] is None and r["short_by"] is None for r in later["intervals"])
    assert all(r["required"] == 0 for r in later["intervals"])  # closed tomorrow (the plan's holiday)

    status, text = await get(api, "/api/v1/queues/billing/staffing", format="csv")
    table = list(csv.reader(io.StringIO(text)))
    assert status == 200 and tuple(table[0]) == STAFFING_CSV and len(table) == 49

    status, every = await get(api, "/api/v1/staffing")
    assert status == 200
    (billing,) = [q for q in every["queues"] if q["queue"] == "billing"]
    assert billing["text"] == f"short by {need - 2} at {at}" and billing["signed_in"] == 2
    assert len(billing["intervals"]) == 5 and billing["intervals"][0]["required"] == need

    # a configured queue with no call yet: listed, nothing forecast, nobody counted
    (sales,) = [q for q in every["queues"] if q["queue"] == "sales"]
    assert sales["method"] is None and sales["signed_in"] is None and sales["text"] is None
    assert all(i["required"] == 0 for i in sales["intervals"])
    status, sales_fc = await get(api, "/api/v1/queues/sales/forecast")
    assert status == 200 and sales_fc["method"] is None and sales_fc["chosen_by"] == "default"

    # the alerts' view: the agents needed on the phones in the interval holding now
    now_need = await staffing_now(store, settings, "billing", now)
    assert now_need is not None and now_need.required == need and now_need.interval_start_s == current["start_s"]
    assert await staffing_now(store, settings, "nohistory", now) is None


async def test_roles_unknown_queues_and_bad_parameters(api: str, store: QueueStore) -> None:
    for path in ("/api/v1/queues/billing/forecast", "/api/v1/queues/billing/staffing", "/api/v1/staffing"):
        status, body = await get(api, path, headers=AGENT1)
        assert status == 403 and body["error"]["code"] == "auth.forbidden", path
    for path in ("/api/v1/queues/nosuch/forecast", "/api/v1/queues/nosuch/staffing",
                 "/api/v1/queues/bad%20name/forecast"):
        status, body = await get(api, path)
        assert status == 404 and body["error"]["code"] == "queue.not_found", path
    bad = [{"date": "2026-13-01"}, {"date": "2026-02-30"}, {"date": "tomorrow"}, {"date": "1900-01-01"},
           {"date": "2026-01-01T00:00"}, {"days": "0"}, {"days": "15"}, {"days": "x"}, {"days": "-1"},
           {"format": "xml"}]
    for params in bad:
        status, body = await get(api, "/api/v1/queues/billing/forecast", **params)
        assert status == 400 and body["error"]["code"] == "request.invalid", params
    status, _ = await get(api, "/api/v1/queues/billing/staffing", date="2026-02-30")
    assert status == 400
    # a day long past: nothing to learn from, nothing forecast
    status, old = await get(api, "/api/v1/queues/billing/forecast", date="1999-01-01")
    assert status == 200 and old["method"] is None and all(r["offered"] == 0 for r in old["intervals"])


async def test_the_wallboard_charts_forecast_and_actual_and_the_shortfall(
        api: str, store: QueueStore, browser: Browser, settings: Settings) -> None:
    tab = await open_tab(browser, f"{api}/wallboard")
    page = tab.page
    await page.fill("#token", "super1-demo-token")
    await page.click("#login-form button[type=submit]")
    card = page.locator("#forecast-card")
    await expect(card).to_be_visible(timeout=TIMEOUT_MS)
    await expect(card.locator("#forecast-queue")).to_have_value("billing", timeout=TIMEOUT_MS)
    chart = card.locator("svg.forecast-chart")
    await expect(chart.locator("[data-series=forecast]")).to_have_attribute("data-points", "48", timeout=TIMEOUT_MS)
    past = sum(1 for i in range(48) if local_midnight(TODAY) + i * 1800 <= time.time())
    await expect(chart.locator("[data-series=actual]")).to_have_attribute("data-points", str(past))
    await expect(chart.locator("[data-series=required]")).to_have_attribute("data-points", "48")
    # signed in now: drawn over the current interval and the next ones (fewer near midnight)
    await expect(chart.locator("[data-series=signed-in]")).to_have_attribute("data-points", re.compile("^[1-5]$"))
    need = _required(settings, 2 * PER_15_MIN, AHT_S)
    await expect(card.locator("#forecast-short")).to_contain_text(f"short by {need - 2} at")
    await expect(card.locator("#forecast-short")).to_have_attribute("data-short", "true")
    await expect(card.locator("#forecast-meta")).to_contain_text("WAPE")
    # a new caller of the queue shows in the actual series a few seconds later (the floor feed)
    await expect(page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=TIMEOUT_MS)
    label = await chart.get_attribute("aria-label")
    so_far = int(re.search(r"actual (\d+) so far", label or "").group(1))  # type: ignore[union-attr]
    await store.call_start("k2", "w1", ani="", dnis="", hotline="", language="en", plan_version="v1")
    await store.enqueue("k2", queue="billing", skill="billing", priority=0, journey={})
    await expect(card.locator("svg.forecast-chart")).to_have_attribute(
        "aria-label", re.compile(f"actual {so_far + 1} so far"), timeout=TIMEOUT_MS)
    async with page.expect_download() as got:
        await card.locator("button[data-csv=forecast]").click()
    download = await got.value
    text = await asyncio.to_thread(Path(await download.path()).read_text)
    assert text.splitlines()[0] == ",".join(FORECAST_CSV)
    await tab.screenshot("wallboard-forecast.png")
    tab.expect_no_errors()


async def test_the_history_script_reads_what_the_store_reads(store: QueueStore, redis: Redis) -> None:
    """read_history (one string per slice of 1,000 intervals) folds the same figures as the store's
    own interval reader; an index entry whose hash expired is skipped."""
    lo, hi = local_midnight(TODAY - timedelta(days=28)), local_midnight(TODAY)
    gone = lo + 3 * 86400 + 450  # in the index, no hash (expired)
    await redis.zadd(store.keys.queue_intervals("billing"), {str(gone): gone})
    fast = await read_history(store, "billing", lo, hi, 1800)
    slow = build_history(await read_intervals(store, "billing", lo, hi), 1800)
    assert len(fast.days) == len(slow.days) == 28
    assert fast.days == slow.days
    assert sum(d.total for d in fast.days.values()) == 28 * 96 * PER_15_MIN
