"""Outbound campaigns end to end: the real ``ivr run`` hotline (edge, one worker, Redis, API; speech
off) runs a campaign made and started through the API; its dialler (the worker holding the
housekeeping lease) places the calls, and sipp UASs play the customers' phones.

- ``test_answered_records_are_dialled_once_at_the_pace``: six customers answer; each number gets
  exactly one INVITE, every record ends ``done`` (completed), the campaign ``finished``; measured from
  sipp's message log, never more calls at once than ``max_concurrent`` and never more call starts in
  any window than the token bucket allows (one saved-up call plus the rate; one call and 250 ms of
  slack for the delivery jitter of a loaded machine: the exact figure is the service test's).
- ``test_busy_and_do_not_call``: a number put on the do-not-call list after the upload is never
  dialled (sipp never sees it); busy phones fail at the cap of one attempt.
- ``test_a_phone_nobody_answers``: after ``ring_s`` the call is cancelled, the record fails no_answer.
- ``test_an_api_restart_and_a_worker_kill_lose_no_record_and_dial_nobody_twice``: mid-campaign the
  API process is terminated (the supervisor starts it again) and then the worker is killed with calls
  up: records ringing then are retried later (``worker_lost``), answered ones end ``done`` (lost) and
  are never dialled again, the others are dialled by the restarted worker; sipp sees each number at most
  once (the retries are an hour away).
- ``test_the_surveys_answer_is_the_records_result``: the customer presses 4 in the plan's survey: the
  record's result (and the export) has csat 4.
- ``test_a_closed_calling_window_holds_the_calls``: a window closed today (a holiday) keeps every record
  pending; the window opened (the worker works out which zones are open), they are dialled.
- ``test_the_wallboard_tile_shows_live_progress``: Chromium on the wallboard: the Campaigns tile shows
  a running campaign, its busy record waiting for a retry (live from ``campaign.progress``), paused,
  and it leaves the tile when stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from playwright.async_api import expect

from tests.browser import chromium, open_tab
from tests.e2e.conftest import Hotline
from tests.e2e.outbound import customers_hotline
from tests.e2e.test_callbacks import EVENT_PT, key_as
from tests.e2e.test_dialplan_calls import new_media_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SIPP = Path(__file__).parents[1] / "sipp"
CALLER_ID = "+8215880000"
#: delivery jitter allowed between the dialler placing a call and its INVITE reaching sipp (a loaded machine)
JITTER_S = 0.25


def message_plan() -> dict[str, Any]:
    return {"name": "Care message", "numbers": ["9002"], "language": "en", "start": "bye", "nodes": {
        "bye": {"type": "hangup", "prompt": {"text": "Hello ${campaign.name}. This is a courtesy call. Goodbye."}}}}


class Rig:
    def __init__(self, hotline: Hotline, customer_port: int) -> None:
        self.hotline = hotline
        self.customer_port = customer_port
        self.headers = {"Authorization": f"Bearer {hotline.tokens['super1']}"}

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        async with aiohttp.ClientSession() as s, s.request(method, self.hotline.api + path, headers={
                **self.headers, **kw.pop("headers", {})}, **kw) as r:
            assert r.status < 300, (r.status, await r.text())
            return await r.json() if r.content_type == "application/json" else None

    async def campaign(self, numbers: list[str], **spec: Any) -> str:
        c = await self.call("POST", "/api/v1/campaigns", json={"name": "Care", "plan": "care", **spec})
        rows = "number,name\n" + "".join(f"{n},Kim {i}\n" for i, n in enumerate(numbers))
        up = await self.call("POST", f"/api/v1/campaigns/{c['id']}/records", data=rows.encode(),
                             headers={"Content-Type": "text/csv"})
        assert up["added"] == len(numbers), up
        return str(c["id"])

    async def finished(self, cid: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            c = await self.call("GET", f"/api/v1/campaigns/{cid}")
            if c["state"] == "finished":
                return dict(c)
            assert time.monotonic() < deadline, (c, self.hotline.log_tail())
            await asyncio.sleep(0.3)

    async def records(self, cid: str) -> list[dict[str, Any]]:
        return list((await self.call("GET", f"/api/v1/campaigns/{cid}/records?limit=100"))["records"])


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    root = tmp_path_factory.mktemp("campaigns")
    plans = root / "dialplans"
    plans.mkdir()
    (plans / "care.yaml").write_text(yaml.safe_dump(message_plan(), allow_unicode=True))
    long = {**message_plan(), "numbers": ["9003"]}
    long["nodes"]["bye"]["prompt"]["text"] = ("Hello. This is a longer courtesy call from the hotline, about your "
                                             "account and the services you use. Thank you for listening. Goodbye.")
    (plans / "care_long.yaml").write_text(yaml.safe_dump(long, allow_unicode=True))
    survey = {"name": "Care survey", "numbers": ["9004"], "language": "en", "start": "rate", "nodes": {
        "rate": {"type": "survey", "timeout_s": 5, "prompt": {"text": "Please rate us from 1 to 5."}, "next": "bye"},
        "bye": {"type": "hangup", "prompt": {"text": "Thank you."}}}}
    (plans / "care_survey.yaml").write_text(yaml.safe_dump(survey, allow_unicode=True))
    async with customers_hotline(root, plans, outbound_allow=["+82*"], caller_id=CALLER_ID) as (h, port):
        yield Rig(h, port)


_BLOCK = re.compile(r"^-{20,} (\S+)\s+(\d\d:\d\d:\d\d\.\d+)\n(.*?)(?=^-{20,} |\Z)", re.M | re.S)


def sipp_calls(log: str) -> dict[str, tuple[float, float | None, str]]:
    """Per Call-ID, from sipp's message log: when its INVITE arrived, when its BYE went either way
    (None: not yet), and the number the INVITE was for."""
    calls: dict[str, list[Any]] = {}
    for day, clock, text in _BLOCK.findall(log):
        at = datetime.fromisoformat(f"{day} {clock}").timestamp()
        call_id = re.search(r"^Call-ID:\s*(\S+)", text, re.M | re.I)
        first = re.search(r"^(INVITE|BYE|CANCEL) sip:([^@;>\s]+)", text, re.M)
        if not call_id or not first:
            continue
        c = calls.setdefault(call_id.group(1), [None, None, ""])
        if first.group(1) == "INVITE" and c[0] is None:
            c[0], c[2] = at, first.group(2)
        elif first.group(1) in ("BYE", "CANCEL") and c[1] is None:
            c[1] = at
    return {k: (v[0], v[1], v[2]) for k, v in calls.items() if v[0] is not None}


def most_at_once(calls: dict[str, tuple[float, float | None, str]]) -> int:
    edges = sorted([(s, 1) for s, _e, _n in calls.values()] +
                   [(e, -1) for _s, e, _n in calls.values() if e is not None])  # an end sorts before a start
    live = peak = 0
    for _, d in edges:
        live += d
        peak = max(peak, live)
    return peak


async def test_answered_records_are_dialled_once_at_the_pace(rig: Rig, tmp_path: Path) -> None:
    numbers = [f"+82105550{2000 + i}" for i in range(6)]
    phone_sf = render_scenario("customer_phone.xml", tmp_path / "customer", keep="remote-hangs-up",
                               drop="customer-hangs-up", ring_ms=300, talk_ms=30000, event_pt=EVENT_PT, actions="")
    phone = SippServer(phone_sf, workdir=tmp_path / "customer", tag="customer", port=rig.customer_port,
                       extra=["-mp", str(new_media_port())])
    rate, conc = 2.0, 2
    async with phone:
        cid = await rig.campaign(numbers, pacing={"rate_per_s": rate, "max_concurrent": conc}, caller_id=CALLER_ID)
        await rig.call("POST", f"/api/v1/campaigns/{cid}/start")
        c = await rig.finished(cid)
        log = phone.messages()
    calls = sipp_calls(log)
    assert sorted(n for _s, _e, n in calls.values()) == sorted(numbers), "each number dialled exactly once"
    assert all(e is not None for _s, e, _n in calls.values())
    assert most_at_once(calls) <= conc, calls
    starts = sorted(s for s, _e, _n in calls.values())
    for a in range(len(starts)):
        for b in range(a, len(starts)):
            assert b - a + 1 <= 1 + rate * (starts[b] - starts[a] + JITTER_S) + 1, (a, b, starts)
    assert c["counts"]["done"] == 6 and c["counts"]["pending"] == 0
    recs = await rig.records(cid)
    assert {r["state"] for r in recs} == {"done"} and {r["attempts"] for r in recs} == {1}
    assert {r["result"]["outcome"] for r in recs} == {"completed"}
    assert all(r["number"].startswith("*") for r in recs), "numbers masked for a supervisor"


async def test_busy_and_do_not_call(rig: Rig, tmp_path: Path) -> None:
    numbers = [f"+82105550{3000 + i}" for i in range(3)]
    phone = SippServer(str(SIPP / "customer_busy.xml"), workdir=tmp_path / "customer", tag="customer",
                       port=rig.customer_port, extra=["-mp", str(new_media_port())])
    async with phone:
        cid = await rig.campaign(numbers, pacing={"rate_per_s": 5, "max_concurrent": 3},
                                 retries={"max_attempts": 1})
        await rig.call("POST", "/api/v1/dnc", json={"numbers": [numbers[1]]})  # after the upload
        await rig.call("POST", f"/api/v1/campaigns/{cid}/start")
        c = await rig.finished(cid)
        log = phone.messages()
    dialled = sorted(n for _s, _e, n in sipp_calls(log).values())
    assert dialled == [numbers[0], numbers[2]], dialled
    recs = await rig.records(cid)
    assert [(r["state"], r["last_outcome"]) for r in recs] == [("failed", "busy"), ("dnc", ""), ("failed", "busy")]
    assert c["counts"]["failed"] == 2 and c["counts"]["dnc"] == 1


async def test_a_phone_nobody_answers(rig: Rig, tmp_path: Path) -> None:
    phone = SippServer(str(SIPP / "customer_no_answer.xml"), workdir=tmp_path / "customer", tag="customer",
                       port=rig.customer_port, extra=["-mp", str(new_media_port())])
    async with phone:
        cid = await rig.campaign(["+821055504000"], ring_s=10, retries={"max_attempts": 1})
        await rig.call("POST", f"/api/v1/campaigns/{cid}/start")
        await rig.finished(cid, timeout=40)
        assert phone.received("CANCEL") == 1
    [rec] = await rig.records(cid)
    assert (rec["state"], rec["last_outcome"], rec["attempts"]) == ("failed", "no_answer", 1)


async def test_the_surveys_answer_is_the_records_result(rig: Rig, tmp_path: Path) -> None:
    phone_sf = render_scenario(
        "customer_phone.xml", tmp_path / "customer", keep="remote-hangs-up", drop="customer-hangs-up",
        ring_ms=200, talk_ms=20000, event_pt=EVENT_PT,
        actions=(f'  <pause milliseconds="2500"/>\n'
                 f'  <nop><action><exec play_pcap_audio="{key_as(EVENT_PT, "4", tmp_path)}"/></action></nop>\n'))
    phone = SippServer(phone_sf, workdir=tmp_path / "customer", tag="customer", port=rig.customer_port,
                       extra=["-m", "1", "-mp", str(new_media_port())])
    async with phone:
        cid = await rig.campaign(["+821055507000"], plan="care_survey")
        await rig.call("POST", f"/api/v1/campaigns/{cid}/start")
        await rig.finished(cid, timeout=40)
    [rec] = await rig.records(cid)
    assert rec["state"] == "done" and rec["result"]["outcome"] == "completed", rec
    assert rec["result"]["csat"] == 4, rec
    async with aiohttp.ClientSession() as s, s.get(f"{rig.hotline.api}/api/v1/campaigns/{cid}/export",
                                                   headers=rig.headers) as r:
        rows = list(csv.reader(io.StringIO((await r.read()).decode("utf-8-sig"))))
    assert rows[1][rows[0].index("csat")] == "4" and rows[1][rows[0].index("result_outcome")] == "completed"


async def test_a_closed_calling_window_holds_the_calls(rig: Rig, tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    window = {"timezone": "UTC", "open": [{"days": ["mon-sun"], "from": "00:00", "to": "23:59"}],
              "holidays": [str(today), str(today + timedelta(days=1))]}
    phone_sf = render_scenario("customer_phone.xml", tmp_path / "customer", keep="remote-hangs-up",
                               drop="customer-hangs-up", ring_ms=200, talk_ms=20000, event_pt=EVENT_PT, actions="")
    phone = SippServer(phone_sf, workdir=tmp_path / "customer", tag="customer", port=rig.customer_port,
                       extra=["-mp", str(new_media_port())])
    async with phone:
        cid = await rig.campaign(["+821055508000", "+821055508001"], window=window,
                                 pacing={"rate_per_s": 10, "max_concurrent": 2})
        await rig.call("POST", f"/api/v1/campaigns/{cid}/start")
        for _ in range(30):  # 3 s: thirty ticks of the dialler, the windows re-read three times
            await asyncio.sleep(0.1)
            c = await rig.call("GET", f"/api/v1/campaigns/{cid}")
            assert c["counts"]["pending"] == 2, c
        assert phone.received("INVITE") == 0
        # open all day: only the worker's answer (which zones are open) lets the tick dial them
        await rig.call("PATCH", f"/api/v1/campaigns/{cid}", json={"window": {"timezone": "UTC",
                                                                            "open": [{"days": ["mon-sun"]}]}})
        c = await rig.finished(cid)
        assert phone.received("INVITE") == 2
    assert c["counts"]["done"] == 2


def hotline_pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


async def test_an_api_restart_and_a_worker_kill_lose_no_record_and_dial_nobody_twice(
        rig: Rig, tmp_path: Path) -> None:
    h = rig.hotline
    numbers = [f"+82105550{6000 + i}" for i in range(8)]
    phone_sf = render_scenario("customer_phone.xml", tmp_path / "customer", keep="remote-hangs-up",
                               drop="customer-hangs-up", ring_ms=300, talk_ms=8000, event_pt=EVENT_PT, actions="")
    phone = SippServer(phone_sf, workdir=tmp_path / "customer", tag="customer", port=rig.customer_port,
                       extra=["-mp", str(new_media_port())])
    async with phone:
        cid = await rig.campaign(numbers, plan="care_long", pacing={"rate_per_s": 1, "max_concurrent": 3},
                                 retries={"max_attempts": 3, "backoff_s": {"failed": 3600}})
        await rig.call("POST", f"/api/v1/campaigns/{cid}/start")
        [api_pid] = hotline_pids(f"ivr.cli api.*{h.workdir}")
        os.kill(api_pid, signal.SIGTERM)
        for _ in range(300):  # the supervisor starts the API again (bounded)
            new = hotline_pids(f"ivr.cli api.*{h.workdir}")
            if new and new != [api_pid]:
                with contextlib.suppress(aiohttp.ClientError, AssertionError):
                    if (await rig.call("GET", f"/api/v1/campaigns/{cid}"))["state"] == "running":
                        break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the API did not come back\n" + h.log_tail())
        redis = h.redis()
        try:
            store = h.store(redis)
            for _ in range(200):  # calls up on the worker: some answered, maybe one ringing
                c = await store.get_campaign(cid)
                assert c is not None
                if c["counts"]["answered"] >= 2:
                    break
                await asyncio.sleep(0.1)
            worker_pid = (await h.worker_pids()).get("w0")
            assert worker_pid, "the worker has no heartbeat"
            at_kill = {r["id"]: r["state"] for r in (await store.campaign_records(cid, limit=100))[0]}
            os.kill(worker_pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while True:  # the restarted worker reaps its predecessor's calls and dials the rest
                c = await store.get_campaign(cid)
                assert c is not None
                n = c["counts"]
                if n["pending"] == 0 and n["dialing"] == 0 and n["answered"] == 0:
                    break
                assert time.monotonic() < deadline, (n, h.log_tail())
                await asyncio.sleep(0.3)
            recs = (await store.campaign_records(cid, limit=100))[0]
        finally:
            await redis.aclose()
        await rig.call("POST", f"/api/v1/campaigns/{cid}/stop")
        log = phone.messages()
    states = {r["id"]: r for r in recs}
    assert len(states) == 8 and all(r["state"] in ("done", "retry") for r in recs), recs
    for rid, before in at_kill.items():
        if before == "answered":
            assert (states[rid]["state"], states[rid]["last_outcome"]) == ("done", "lost"), states[rid]
        if before == "dialing":
            assert (states[rid]["state"], states[rid]["last_reason"]) == ("retry", "worker_lost"), states[rid]
    assert "answered" in at_kill.values(), recs
    dialled = [n for _s, _e, n in sipp_calls(log).values()]
    assert sorted(dialled) == sorted(set(dialled)), "nobody dialled twice"
    by_number = {r["number"]: r for r in recs}
    assert set(dialled) <= set(numbers)
    for number in set(numbers) - set(dialled):  # its INVITE never left the worker (killed, or full): retried
        assert by_number[number]["state"] == "retry", by_number[number]
        assert by_number[number]["last_reason"] in ("worker_lost", "worker_full"), by_number[number]
    assert all(by_number[n]["state"] in ("done", "retry") for n in dialled)


async def test_the_wallboard_tile_shows_live_progress(rig: Rig, tmp_path: Path) -> None:
    ui_ms = 10_000
    phone = SippServer(str(SIPP / "customer_busy.xml"), workdir=tmp_path / "customer", tag="customer",
                       port=rig.customer_port, extra=["-mp", str(new_media_port())])
    async with chromium() as browser, phone:
        board = await open_tab(browser, f"{rig.hotline.api}/wallboard")
        await board.page.fill("#token", rig.hotline.tokens["super1"])
        await board.page.click("#login-form button[type=submit]")
        await expect(board.page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=ui_ms)
        cid = await rig.campaign([f"+82105550{5000 + i}" for i in range(3)], name="Winter <b>care</b>",
                                 pacing={"rate_per_s": 0.01, "max_concurrent": 1})
        await rig.call("POST", f"/api/v1/campaigns/{cid}/start")
        row = board.page.locator(f"#campaigns [data-campaign-id={cid}]")
        await expect(row).to_be_visible(timeout=ui_ms)
        await expect(row.locator("h3")).to_have_text("Winter <b>care</b> (running)")
        # one call at once (one token), busy: its record waits for a retry, the others pending
        await expect(row.locator("[data-figure=retry] .value")).to_have_text("1", timeout=ui_ms)
        await expect(row.locator("[data-figure=progress] .value")).to_have_text("0/3")
        await rig.call("POST", f"/api/v1/campaigns/{cid}/pause")
        await expect(row).to_have_attribute("data-state", "paused", timeout=ui_ms)
        await board.screenshot("wallboard-campaigns.png")
        await rig.call("POST", f"/api/v1/campaigns/{cid}/stop")
        await expect(board.page.locator("#campaigns")).to_be_hidden(timeout=ui_ms)
        board.expect_no_errors()
        await board.page.context.close()
