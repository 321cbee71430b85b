"""Dial-plan hot reload on the real hotline (`ivr run`: Kamailio, pjsua2 workers, Redis, API, sipp).

(a) The plan file is edited while a call sits in the menu: that call finishes on the version it
    started with (digit 2 -> billing), a call placed after the reload follows the new one
    (digit 2 -> support). (b) A broken save leaves the running version and the API shows the error.
(c) `ivr dialplan rollback` puts the previous version back on every worker.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr.dialplan.registry import content_version
from tests.e2e.conftest import ROOT, Hotline
from tests.ports import free_udp_tcp_port
from tests.scenarios import render_scenario
from tests.sipp_helpers import SippResult, run_sipp

pytestmark = pytest.mark.e2e
OLD_OPTION = '{digit: "2", say: [billing, invoice], goto: billing}'
NEW_OPTION = '{digit: "2", say: [billing, invoice], goto: support}'
# Digits 2 and 3 swap targets: a new version must keep every node reachable (unreachable = error).
OLD_OPTION_3 = '{digit: "3", say: [support], goto: support}'
NEW_OPTION_3 = '{digit: "3", say: [support], goto: billing}'


@pytest.fixture
async def hotline(tmp_path: Path) -> AsyncIterator[Hotline]:
    """The hotline on a copy of the demo dial plans, looking for edits every 0.2 s."""
    plans = tmp_path / "dialplans"
    plans.mkdir()
    shutil.copy(ROOT / "dialplans" / "hotline.yaml", plans / "hotline.yaml")
    h = Hotline(tmp_path / "hotline", overrides={"dialplans_dir": str(plans), "dialplan": {"reload_poll_s": 0.2}})
    try:
        await h.start()
        yield h
    finally:
        h.stop()


async def dialplans(http: aiohttp.ClientSession, hotline: Hotline) -> dict[str, Any]:
    async with http.get(f"{hotline.api}/api/v1/dialplans",
                        headers={"Authorization": f"Bearer {hotline.tokens['super1']}"}) as r:
        assert r.status == 200, await r.text()
        return {p["plan"]: p for p in (await r.json())["dialplans"]}


async def wait_plan(http: aiohttp.ClientSession, hotline: Hotline, ok: Callable[[dict[str, Any]], bool],
                    timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    plan: dict[str, Any] = {}
    while time.monotonic() < deadline:
        plan = (await dialplans(http, hotline)).get("hotline", {})
        if ok(plan):
            return plan
        await asyncio.sleep(0.1)
    raise AssertionError(f"dial plan status: {plan}\n{hotline.log_tail()}")


def on_every_worker(version: str) -> Callable[[dict[str, Any]], bool]:
    return lambda p: p.get("workers") == {"w0": version, "w1": version}


async def wait_call(hotline: Hotline, ok: Callable[[dict[str, Any]], bool], skip: set[str],
                    timeout: float = 20) -> dict[str, Any]:
    """The first call record (not in ``skip``) that satisfies ``ok``."""
    redis = hotline.redis()
    try:
        store = hotline.store(redis)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async for key in redis.scan_iter(match="ivr:call:*"):
                call_id = key.decode().rsplit(":", 1)[1]
                call = await store.get_call(call_id) if call_id not in skip else None
                if call and ok(call):
                    return call
            await asyncio.sleep(0.1)
        raise AssertionError(f"no such call\n{hotline.log_tail()}")
    finally:
        await redis.aclose()


def caller(hotline: Hotline, workdir: Path, tag: str, dtmf_at_ms: int, number: str = "1000",
           ) -> asyncio.Task[SippResult]:
    """A caller who presses 2 ``dtmf_at_ms`` after the answer, waits in the queue, then hangs up."""
    sf = render_scenario("caller.xml", workdir, keep="caller-hangs-up", drop="remote-hangs-up",
                         digit=2, dtmf_at_ms=dtmf_at_ms, talk_ms=3000)
    return asyncio.create_task(run_sipp(
        sf, ("127.0.0.1", hotline.edge_port), workdir=workdir, tag=tag, port=free_udp_tcp_port(),
        limit_s=45, extra=["-s", number, "-mp", str(free_udp_tcp_port())]))


async def ivr_cli(hotline: Hotline, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr.cli", "dialplan", *args, "--config", str(hotline.workdir / "hotline.yaml"),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_edit_break_and_roll_back_a_plan_while_calls_run(hotline: Hotline, tmp_path: Path) -> None:
    plan_file = Path(hotline.config()["dialplans_dir"]) / "hotline.yaml"
    old_text = plan_file.read_text()
    assert OLD_OPTION in old_text
    v1 = content_version(old_text.encode())
    new_text = old_text.replace(OLD_OPTION, NEW_OPTION).replace(OLD_OPTION_3, NEW_OPTION_3)
    v2 = content_version(new_text.encode())

    async with aiohttp.ClientSession() as http:
        status = await wait_plan(http, hotline, on_every_worker(v1))
        assert status["active"] == v1 and status["numbers"] == ["1000", "+15550100"]

        # --- (a) call A is in the menu when the plan changes; call B starts after -----------------
        call_a = caller(hotline, tmp_path / "a", "caller-a", dtmf_at_ms=9000)
        try:
            a = await wait_call(hotline, lambda c: True, skip=set())
            assert a["plan_version"] == v1 and a["state"] == "ivr"
            plan_file.write_text(new_text)
            await wait_plan(http, hotline, on_every_worker(v2))
            redis = hotline.redis()
            try:
                a_now = await hotline.store(redis).get_call(a["call_id"])
            finally:
                await redis.aclose()
            assert a_now is not None and a_now["state"] == "ivr", "call A left the menu before the reload"
            call_b = caller(hotline, tmp_path / "b", "caller-b", dtmf_at_ms=1000)
            result_b = await call_b
        finally:
            result_a = await call_a
        assert result_a.ok, result_a.describe() + "\n" + hotline.log_tail()
        assert result_b.ok, result_b.describe() + "\n" + hotline.log_tail()

        a = await wait_call(hotline, lambda c: c["call_id"] == a["call_id"] and c["state"] == "ended", skip=set())
        assert (a["plan_version"], a["queue"]) == (v1, "billing"), a
        b = await wait_call(hotline, lambda c: c["state"] == "ended", skip={a["call_id"]})
        assert (b["plan_version"], b["queue"]) == (v2, "support"), b
        assert b["journey"]["steps"][-1]["node"] == "support"

        # --- (b) a broken save: v2 keeps running, the API says what is wrong where -----------------
        plan_file.write_text(new_text.replace("type: queue", "type: queue\n    bogus: [1", 1))
        status = await wait_plan(http, hotline, lambda p: set(p.get("errors", {})) == {"w0", "w1"})
        assert status["active"] == v2 and status["workers"] == {"w0": v2, "w1": v2}
        err = status["last_error"]
        assert err["code"] == "dialplan.yaml" and err["running"] == v2 and err["file"] == "hotline.yaml"
        assert err["message"].startswith(f"{plan_file}:"), err["message"]

        # --- (c) roll back with the CLI: the previous valid version (v1) runs again everywhere ----
        code, out = await ivr_cli(hotline, "rollback", "hotline")
        assert code == 0, out
        assert plan_file.read_text() == old_text
        status = await wait_plan(http, hotline, lambda p: on_every_worker(v1)(p) and not p["errors"])
        assert status["active"] == v1 and status["last_error"] is None
        code, out = await ivr_cli(hotline, "versions", "hotline")
        assert code == 0, out
        rows = [line.split() for line in out.splitlines()[1:]]
        assert (rows[0][0], rows[0][1], rows[0][3]) == ("*", v1, "rollback"), out
        assert [(r[0], r[2]) for r in rows[1:]] == [(v2, "file"), (v1, "file")], out

    records = hotline.log_records()
    reloaded = [r for r in records if r.get("event") == "dialplans.reloaded" and r.get("role") == "worker"]
    assert {(r["worker"], r["old_version"], r["version"]) for r in reloaded} >= {
        ("w0", v1, v2), ("w1", v1, v2), ("w0", v2, v1), ("w1", v2, v1)}
    failed = [r for r in records if r.get("event") == "dialplans.reload_failed" and r.get("role") == "worker"]
    assert {r["worker"] for r in failed} == {"w0", "w1"} and all(r["running"] == v2 for r in failed)


async def test_a_new_plan_file_brings_its_number_to_the_edge(hotline: Hotline, tmp_path: Path) -> None:
    """The edge refuses numbers no plan answers (no open relay); a plan saved for a new number makes
    the edge accept it without a restart, and its calls run on the new plan."""
    refused = await caller(hotline, tmp_path / "before", "before", dtmf_at_ms=500, number="7777")
    assert refused.returncode != 0 and "SIP/2.0 404" in refused.messages, refused.output
    src = (ROOT / "dialplans" / "hotline.yaml").read_text()
    new = src.replace('name: Demo hotline', 'name: Second line').replace(
        'numbers: ["1000", "+15550100"]', 'numbers: ["7777"]')
    assert new != src and "7777" in new
    def updates() -> int:
        return len([r for r in hotline.log_records() if r.get("event") == "edge.numbers"])

    seen = updates()
    (hotline.workdir.parent / "dialplans" / "second.yaml").write_text(new)
    deadline = time.monotonic() + 20
    while updates() == seen:
        assert time.monotonic() < deadline, hotline.log_tail()
        await asyncio.sleep(0.1)
    answered = await caller(hotline, tmp_path / "after", "after", dtmf_at_ms=500, number="7777")
    assert answered.ok, answered.output
    call = await wait_call(hotline, lambda c: c.get("dnis") == "7777", set())
    assert call["hotline"] == "Second line" and call["queue"] == "billing", call
