"""The smoke version of every fault scenario of the bench (bench/faults.py): the whole hotline with
two agents (sipp phones, reconnecting desktops) and a real CRM server, callers through the edge,
one fault injected half way; then every call, pop and webhook is accounted for.

One rig serves the module's tests, in order; each test accounts only for its own traffic."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from bench.faults import (
    SMOKE,
    Rig,
    api_restart,
    broken_plan,
    crm_down,
    dangerous_packets,
    fuzz_packets,
    kill_worker,
    redis_restart,
    sip_flood,
    sip_fuzz,
)

# faults under traffic are judged by every call placed: run alone (make test's last phase)
pytestmark = [pytest.mark.e2e, pytest.mark.serial, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    r = Rig(tmp_path_factory.mktemp("faults"), SMOKE)
    try:
        await r.start()
        yield r
    finally:
        await r.stop()


def nothing_lost(report: dict[str, Any]) -> None:
    assert report["ok"], report["problems"]
    assert report["traffic"]["placed"] > 0 and report["calls"]["recorded"] > 0, report
    assert report["webhooks"]["events"] > 0 and report["webhooks"]["dead_letters"] == 0, report["webhooks"]


async def test_a_killed_worker_loses_only_its_own_calls_and_records_them_lost(rig: Rig) -> None:
    report = await kill_worker(rig)
    nothing_lost(report)
    lost = report["calls"]["lost"]
    assert lost and report["fault"]["calls_on_it"] == len(lost), report  # the fault did hit live calls
    assert report["traffic"]["failed"] == len(lost)
    assert report["fault"]["restarted_in_s"] < 10, report["fault"]


async def test_a_redis_restart_under_traffic_loses_nothing(rig: Rig) -> None:
    report = await redis_restart(rig)
    nothing_lost(report)
    assert report["fault"]["back_in_s"] is not None, report["fault"]
    assert report["calls"]["lost"] == []


async def test_an_api_restart_with_agents_connected_loses_no_pop_and_no_webhook(rig: Rig) -> None:
    report = await api_restart(rig)
    nothing_lost(report)
    assert report["fault"]["back_in_s"] is not None, report["fault"]
    assert report["pops"]["reconnects"] >= len(rig.agents), report["pops"]  # every desktop came back
    assert report["pops"]["offered"] > 0 and report["pops"]["missing"] == []


async def test_a_crm_that_is_down_then_back_loses_no_pop_and_no_webhook(rig: Rig) -> None:
    report = await crm_down(rig)
    nothing_lost(report)
    by_status = report["fault"]["pops_by_crm_status"]
    assert by_status.get("error", 0) > 0, by_status  # pops during the outage went out, flagged
    assert by_status.get("matched", 0) > 0, by_status  # and the CRM record is back after it


async def test_a_broken_plan_saved_mid_traffic_loses_no_call(rig: Rig) -> None:
    report = await broken_plan(rig)
    nothing_lost(report)
    assert report["fault"]["error_shown"], report["fault"]  # the admin sees why the file was refused


async def test_a_flood_at_3x_the_rated_rate_is_served_or_refused_never_half_served(rig: Rig) -> None:
    report = await sip_flood(rig)
    nothing_lost(report)
    traffic = report["traffic"]
    assert traffic["refused_503"] > 0 and traffic["failed"] == 0, traffic  # it was an overload
    assert report["calls"]["outcomes"], report["calls"]


async def test_malformed_sip_to_the_edge_under_traffic_breaks_nothing(rig: Rig) -> None:
    report = await sip_fuzz(rig)
    nothing_lost(report)
    assert report["fault"]["workers_restarted"] == [] and not report["fault"]["edge_restarted"]


async def test_the_fuzz_is_malformed_and_reproducible() -> None:
    packets = fuzz_packets(64)
    assert packets == fuzz_packets(64) and len(set(packets)) == 64
    assert b"Content-Type" not in packets[0] and b"v=0" in packets[0]  # the one that aborts a bare worker
    # the dangerous ones are well framed, so they test what the edge really forwards (a wrong
    # Content-Length made the edge drop them for that reason alone, over UDP)
    for transport in ("UDP", "TCP"):
        dangerous = dangerous_packets("t", transport)
        assert len(dangerous) >= 8
        for pkt in dangerous:
            head, _, body = pkt.partition(b"\r\n\r\n")
            length = re.search(rb"^Content-Length: (\d+)$", head, re.M)
            assert length is not None and int(length.group(1)) == len(body), head[-200:]
    assert packets[:len(dangerous)] == dangerous_packets("7ct")
