"""Call recording in the pages, headless Chromium against the whole hotline (the rig of
tests/e2e/test_call_control.py: a sipp caller through the edge, sipp phones for agent1 and agent2,
real workers, ffmpeg). tests/e2e/test_recording.py checks what is in the file; here: what the agent's
desktop and the supervisors' wallboard show and do (docs/recording.md "Playback in the pages").

The hotline records every call (policy ``always``, no notice) but the support queue's (``never``).
agent1 takes a billing call: its desktop says it is recorded, Pause and Resume change the call
record's ``recording``. agent2 takes a support call at the same time: Start recording is refused
with the API's reason on the page. After the calls, agent1's "My recordings" lists its call and the
player streams the audio through a play link and seeks in it with a Range request (206); the
wallboard's Play on agent1's row and its "Recent recordings" do the same for the supervisor, and
both plays are in the audit trail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Locator, Page, Response, expect

from tests.browser import chromium
from tests.e2e.test_call_control import call_in, rig
from tests.e2e.test_pages_call_control import desktop, row, wallboard
from tests.e2e.test_recording import wait_saved
from tests.ports import free_udp_tcp_port

pytestmark = pytest.mark.e2e
UI_MS = 10_000
CALL_MS = 30_000
SAVED_MS = 40_000  # the worker compresses after the call; the desktop reads its list again meanwhile
# wrap-up long enough that agent1 still holds its call on the wallboard when the recording is stored
OVERRIDES = {"recording": {"policy": "always", "announce": False},
             "routing": {"wrapup_s": 60, "queues": {"support": {"recording": "never"}}}}


async def player_loaded(page: Page, play: Locator) -> dict[str, float]:
    """Click ``play``, wait until the page's player has the audio (metadata at least, a finite length)
    from a play link, seek to its middle and wait for the seek to land; its figures, with the partial
    (206) responses the player got for the link."""
    ranged: list[int] = []

    def on_response(response: Response) -> None:
        if "/audio?play=" in response.url and response.status == 206:
            ranged.append(response.status)

    page.on("response", on_response)
    try:
        await play.click()
        await expect(page.locator("#rec-player-box")).to_have_attribute("data-status", "ready", timeout=UI_MS)
        await page.wait_for_function("""() => {
            const a = document.getElementById('rec-player');
            return a.readyState >= 1 && Number.isFinite(a.duration) && a.duration > 0;
        }""", timeout=UI_MS)
        await page.evaluate("""() => {
            const a = document.getElementById('rec-player');
            a.pause();
            a.currentTime = a.duration / 2;
        }""")
        await page.wait_for_function("""() => {
            const a = document.getElementById('rec-player');
            return !a.seeking && a.currentTime > 0;
        }""", timeout=UI_MS)
        figures: dict[str, float] = await page.evaluate("""() => {
            const a = document.getElementById('rec-player');
            return {ready: a.readyState, duration: a.duration, at: a.currentTime, error: a.error ? a.error.code : 0,
                    link: /[/]audio[?]play=/.test(a.currentSrc) ? 1 : 0};
        }""")
    finally:
        page.remove_listener("response", on_response)
    assert figures["error"] == 0 and figures["link"] == 1, figures
    assert ranged, "the player streamed the link with Range requests (206)"
    figures["ranged"] = len(ranged)
    return figures


async def test_the_desktop_and_the_wallboard_show_pause_refuse_and_play_recordings(tmp_path: Path) -> None:
    async with rig(tmp_path, overrides=OVERRIDES) as r, chromium() as browser:
        h = r.hotline
        one, two = await desktop(browser, h, "agent1"), await desktop(browser, h, "agent2")
        board = await wallboard(browser, h)
        p1, p2 = one.page, two.page
        caller, cid = await call_in(r)  # billing: agent1, recorded
        caller2, cid2 = await call_in(r, digit=3, tag="caller2", media_port=free_udp_tcp_port(),
                                      known=frozenset({cid}))  # support: agent2, never recorded

        # agent1: recorded from the answer; Pause and Resume (the call record says so at each step)
        await expect(p1.locator("#rec-status")).to_have_text("Recorded", timeout=CALL_MS)
        await expect(p1.locator("#rec-start")).to_be_hidden()
        assert (await r.record(cid))["recording"] == "on"
        await expect(row(board.page, "agent1").locator("td.call .pill.rec")).to_have_text("recorded", timeout=UI_MS)
        await one.screenshot("desktop-recorded.png")
        await p1.click("#rec-pause")
        await expect(p1.locator("#rec-status")).to_have_text("Recording paused", timeout=UI_MS)
        await expect(p1.locator("#rec-pause")).to_be_hidden()
        assert (await r.record(cid))["recording"] == "paused"
        await expect(row(board.page, "agent1").locator("td.call .pill.rec")).to_have_text("recording paused",
                                                                                         timeout=UI_MS)
        await one.screenshot("desktop-recording-paused.png")
        await p1.click("#rec-resume")
        await expect(p1.locator("#rec-status")).to_have_text("Recorded", timeout=UI_MS)
        await expect(p1.locator("#rec-resume")).to_be_hidden()
        assert (await r.record(cid))["recording"] == "on"
        await expect(row(board.page, "agent1").locator("td.call .pill.rec")).to_have_text("recorded", timeout=UI_MS)
        for kind in ("started", "paused", "resumed"):
            await expect(p1.locator(f"#activity li[data-type='recording.{kind}']")).to_have_count(1)

        # agent2: a support call is never recorded; Start recording is refused, and the page says why
        await expect(p2.locator("#rec-status")).to_have_text("Not recorded", timeout=CALL_MS)
        await p2.click("#rec-start")
        await expect(p2.locator("#rec-note")).to_contain_text("recording.not_allowed", timeout=UI_MS)
        await expect(p2.locator("#error")).to_contain_text("never recorded")
        await expect(p2.locator("#rec-start")).to_be_disabled()
        assert "recording" not in await r.record(cid2)
        await two.screenshot("desktop-recording-refused.png")

        await p2.click("#call-hangup")
        await p1.click("#call-hangup")
        for task in (caller, caller2):
            result = await task
            assert result.ok, result.describe()
        rec_id = (await wait_saved(r, cid))["recording_id"]
        meta = await r.get("agent1", f"/api/v1/recordings/{rec_id}")

        # agent1's "My recordings": its call (found once the worker stored it), the player loads and seeks
        await p1.click("#recordings-card summary")
        mine = p1.locator(f"#rec-rows tr[data-call-id='{cid}']")
        await expect(mine).to_have_count(1, timeout=SAVED_MS)
        await expect(mine.locator("td").nth(3)).to_have_text("1 pause")
        heard = await player_loaded(p1, mine.locator("button[data-play]"))
        assert abs(heard["duration"] * 1000 - meta["duration_ms"]) < 500, (heard, meta["duration_ms"])
        await one.screenshot("desktop-my-recordings.png")
        # agent2 was heard on no recording
        await p2.click("#recordings-card summary")
        await expect(p2.locator("#rec-list-status")).to_have_text("No recordings yet.", timeout=UI_MS)

        # the wallboard: Play on agent1's row (still in wrap-up with the call) and the recent list
        play = row(board.page, "agent1").locator(f"td.call button[data-play='{rec_id}']")
        await expect(play).to_have_count(1, timeout=UI_MS)
        await player_loaded(board.page, play)
        recent = board.page.locator("#recordings-card #rec-rows tr")
        await expect(recent).to_have_count(1, timeout=UI_MS)
        await expect(recent.first).to_have_attribute("data-call-id", cid)
        await board.screenshot("wallboard-recording.png")
        await player_loaded(board.page, recent.first.locator("button[data-play]"))

        audit = (await r.get("admin1", f"/api/v1/audit?target={rec_id}&action=recording.play"))["entries"]
        assert {e["by"] for e in audit} == {"agent1", "super1"}, audit
        one.expect_no_errors()
        two.expect_no_errors(r"status of 403")  # the refused Start recording
        board.expect_no_errors()
