"""Recordings in the pages, headless Chromium against the real CTI API on a real Redis (recordings
indexed through the queue store as a worker's finisher does, files made by ffmpeg; no SIP here:
tests/e2e/test_pages_recording.py has the real calls). The desktop's list pages with next_cursor;
the player plays a real file and says so when one is gone; the recording bar follows the events."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect
from redis.asyncio import Redis

from ivr.core.config import Settings
from ivr.core.recording_store import LocalDirStore, recording_key
from ivr.queues.stats import StatsConfig
from ivr.queues.store import QueueStore
from tests.browser import open_tab
from tests.conftest import RedisServer
from tests.service.pages import desktop, page_settings, serving

PREFIX = "pagesrec"
TIMEOUT_MS = 10_000


@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer) -> Settings:
    return page_settings(tmp_path, redis_server, PREFIX)


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[str]:
    async with serving(settings) as url:
        yield url


@pytest.fixture
def store(redis: Redis) -> QueueStore:
    return QueueStore(redis, prefix=PREFIX, stats=StatsConfig(short_abandon_s=0))


async def index(store: QueueStore, settings: Settings, n: int, *, agent: str = "agent1", audio: Path | None = None,
                started_at: int | None = None) -> dict[str, Any]:
    """Recording number ``n`` of ``agent`` in the index (its file in the store when ``audio``)."""
    rid = f"R{n:020x}"
    started = started_at or 1_765_000_000_000 + n * 60_000
    key = recording_key(rid, started, "opus")
    size = 0
    if audio is not None:
        size = LocalDirStore(settings.recordings_dir).put(key, audio)
    rec = {"id": rid, "call_id": f"call{n}", "started_at": started, "ended_at": started + 2000, "duration_ms": 2000,
           "format": "opus", "channels": "caller,agent", "clock_rate": 8000, "key": key, "store": "local",
           "agents": json.dumps([agent]), "agent_id": agent, "queue": "billing", "pauses": json.dumps([[500, 900]]),
           "ivr": "", "delete_after": 2**50, "bytes": size, "sha256": "0"}
    await store.recording_saved(rec, transcribe=False)
    return rec


def opus_file(path: Path, seconds: float = 2.0) -> Path:
    """A real stereo Ogg Opus file (two tones), as the finisher writes them."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", f"sine=f=440:d={seconds}",
                    "-f", "lavfi", "-i", f"sine=f=880:d={seconds}", "-filter_complex", "[0:a][1:a]amerge=inputs=2",
                    "-c:a", "libopus", "-b:a", "24k", "-y", str(path)], check=True)
    return path


async def test_my_recordings_pages_newest_first_and_the_player_loads_or_says_why_not(
        api: str, browser: Browser, store: QueueStore, settings: Settings, tmp_path: Path) -> None:
    for n in range(24):
        await index(store, settings, n)
    await index(store, settings, 99, agent="agent2")  # someone else's: never listed for agent1
    newest = await index(store, settings, 24, audio=opus_file(tmp_path / "a.opus"))
    gone = await index(store, settings, 25, started_at=newest["started_at"] - 30_000)  # indexed, file missing

    tab = await desktop(browser, api)
    page = tab.page
    await page.click("#recordings-card summary")
    rows = page.locator("#rec-rows tr")
    await expect(rows).to_have_count(20, timeout=TIMEOUT_MS)
    ids = [await rows.nth(i).get_attribute("data-recording-id") for i in range(3)]
    assert ids == [newest["id"], gone["id"], "R" + f"{23:020x}"], ids
    await expect(page.locator("#rec-more")).to_be_visible()
    await page.click("#rec-more")
    await expect(rows).to_have_count(26, timeout=TIMEOUT_MS)
    await expect(page.locator("#rec-more")).to_be_hidden()
    await expect(page.locator("#rec-list-status")).to_have_text("26 recordings")
    assert await page.locator("#rec-rows tr[data-recording-id='R" + f"{99:020x}" + "']").count() == 0
    await expect(rows.first.locator("td").nth(3)).to_have_text("1 pause")

    # a real file: the player streams it through a play link (the link request carried the token)
    await rows.first.locator("button[data-play]").click()
    await expect(page.locator("#rec-player-box")).to_have_attribute("data-status", "ready", timeout=TIMEOUT_MS)
    await page.wait_for_function("""() => {
        const a = document.getElementById('rec-player');
        return a.readyState >= 1 && Number.isFinite(a.duration) && a.duration > 1.5
            && /[/]audio[?]play=/.test(a.currentSrc);
    }""", timeout=TIMEOUT_MS)
    await expect(page.locator("#rec-player-label")).to_contain_text("call24")
    # a file that is gone: said in the player and the message area, not a silent empty player
    await rows.nth(1).locator("button[data-play]").click()
    await expect(page.locator("#rec-player-box")).to_have_attribute("data-status", "failed", timeout=TIMEOUT_MS)
    await expect(page.locator("#error")).to_contain_text("recording.not_found")
    assert await page.evaluate("() => document.getElementById('rec-player').getAttribute('src')") is None
    await page.click("#rec-player-close")
    await expect(page.locator("#rec-player-box")).to_be_hidden()
    tab.expect_no_errors(r"status of 404")


async def test_the_recording_bar_follows_the_events_and_says_a_refusal(api: str, browser: Browser) -> None:
    """recording.js on its own (events fed by hand): the bar on a live call, its buttons per state, and
    the API's refusal kept next to the buttons."""
    tab = await open_tab(browser, f"{api}/")
    out = await tab.page.evaluate("""async () => {
        const {RecordingControls, applyRecording} = await import('/static/recording.js');
        const call = {call_id: "c1", status: "connected"};
        const errors = [];
        const controls = new RecordingControls({login: () => ({agent: "agent1", token: "nope"}), call: () => call,
                                                error: (e) => errors.push(e ? e.code : null)});
        const $ = (id) => document.getElementById(id);
        const shown = (id) => !$(id).hidden;
        const snap = () => ({bar: shown("rec-bar"), state: $("rec-bar").dataset.state,
                             text: $("rec-status").textContent, start: shown("rec-start"), pause: shown("rec-pause"),
                             resume: shown("rec-resume"), note: $("rec-note").hidden ? "" : $("rec-note").textContent});
        const out = {};
        controls.render(true); out.off = snap();
        out.started = applyRecording(call, {type: "recording.started", call_id: "c1", agent_id: "agent1",
                                            by: "policy"});
        controls.render(true); out.on = snap();
        applyRecording(call, {type: "recording.paused", call_id: "c1", agent_id: "agent1", by: "agent1"});
        controls.render(true); out.paused = snap();
        applyRecording(call, {type: "recording.resumed", call_id: "c1", agent_id: "agent1", by: "agent1"});
        controls.render(true); out.resumed = snap();
        out.other = applyRecording(call, {type: "recording.saved", call_id: "c1", recording_id: "R1"});
        controls.render(false); out.ended = snap();
        call.recording = "";
        await controls.command("start");  // a bad token: the API's 401 is shown, not swallowed
        out.errors = errors;
        return out;
    }""")
    assert out["off"] == {"bar": True, "state": "off", "text": "Not recorded", "start": True, "pause": False,
                          "resume": False, "note": ""}
    assert out["started"] is True and out["on"]["text"] == "Recorded" and out["on"]["pause"] and not out["on"]["start"]
    assert out["paused"]["text"] == "Recording paused" and out["paused"]["resume"] and not out["paused"]["pause"]
    assert out["resumed"]["state"] == "on"
    assert out["other"] is False and out["ended"]["bar"] is False
    assert out["errors"][-1] == "auth.invalid_token", out["errors"]
    tab.expect_no_errors(r"status of 401")


async def test_the_wallboard_lists_recent_recordings_and_adds_a_new_one_live(
        api: str, browser: Browser, store: QueueStore, settings: Settings) -> None:
    for n in range(22):
        await index(store, settings, n, agent="agent1" if n % 2 else "agent2")
    tab = await open_tab(browser, f"{api}/wallboard")
    page = tab.page
    await page.fill("#token", "super1-demo-token")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#conn")).to_have_attribute("data-status", "connected", timeout=TIMEOUT_MS)
    rows = page.locator("#rec-rows tr")
    await expect(rows).to_have_count(20, timeout=TIMEOUT_MS)
    await expect(page.locator("#rec-more")).to_be_hidden()  # the newest 20: no paging here
    await expect(rows.first.locator("td").nth(1)).to_have_text("agent1")  # number 21: agent1's
    fresh = await index(store, settings, 50, started_at=int(time.time() * 1000))  # recording.saved: on the floor
    await expect(rows.first).to_have_attribute("data-recording-id", fresh["id"], timeout=TIMEOUT_MS)
    await expect(rows).to_have_count(20)
    tab.expect_no_errors()
