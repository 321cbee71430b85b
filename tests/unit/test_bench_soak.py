"""The pure pieces of the soak benchmark (bench/soak.py): role of a process, growth, key patterns,
the sipp pace, the capacity it starts from, and the verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.soak import (
    Census,
    capacity_of,
    classify,
    growth,
    key_pattern,
    latest_capacity,
    new_persistent,
    per_call_keys,
    plan,
    rss_growth,
    verdict,
    warmup_s,
)

W = "/tmp/ivr-soak-1/hotline"
PY = "/work/main/.venv/bin/python3.11"


@pytest.mark.parametrize(("cmdline", "role"), [
    (f"{PY} -m ivr.cli run --config {W}/hotline.yaml", "supervisor"),
    (f"{PY} -m ivr.cli worker --index 0 --settings {W}/var/run/settings.json", "workers"),
    (f"{PY} -m ivr.cli worker-pool --settings {W}/var/run/settings.json --fd 7", "workers"),  # and its forks
    (f"{PY} -m ivr.cli api --settings {W}/var/run/settings.json", "api"),
    (f"{PY} -m ivr.cli speech --settings {W}/var/run/settings.json", "speech"),
    (f"{PY} -m ivr.runtime.guard -- kamailio -DD -E -f {W}/var/run/kamailio/kamailio.cfg", "edge"),
    (f"kamailio -DD -E -f {W}/var/run/kamailio/kamailio.cfg -Y {W}/var/run/kamailio", "edge"),
    ("/usr/sbin/kamailio -DD -E", "edge"),
    ("redis-server 127.0.0.1:12964", "redis"),
    ("/usr/bin/redis-server 127.0.0.1:6379", "redis"),
    (f"{PY} -m ivr.cli prompts --settings {W}/var/run/settings.json", "other"),
    (f"/bin/sh -c something {W}", "other"),
])
def test_classify_roles(cmdline: str, role: str) -> None:
    assert classify(cmdline) == role


def test_classify_leaves_out_the_load_generator() -> None:
    assert classify(f"sipp 127.0.0.1:5060 -sf {W}/../soak/caller.xml") is None
    assert classify("") is None


def test_growth_compares_first_and_last_tenth_of_the_steady_period() -> None:
    ts = [float(t) for t in range(0, 101, 5)]   # 0..100 s
    vs = [100.0] * 6 + [100.0 + (t - 30) / 10 for t in ts[6:]]  # flat, then +0.1 MB/s from 30 s
    g = growth(ts, vs, start_s=20.0, end_s=100.0)  # first window 20..28 s, last 92..100 s
    assert g is not None
    assert g["first_mb"] == 100.0
    assert g["last_mb"] == pytest.approx(106.8, abs=0.05)  # mean of 106.5 (95 s) and 107 (100 s)
    assert g["growth_pct"] == pytest.approx(6.75, abs=0.01)


def test_growth_without_sample_in_a_window_takes_the_nearest() -> None:
    g = growth([0.0, 50.0, 100.0], [10.0, 10.0, 11.0], start_s=40.0, end_s=100.0)
    assert g == {"first_mb": 10.0, "last_mb": 11.0, "growth_pct": 10.0}
    assert growth([0.0, 10.0], [1.0, 1.0], start_s=20.0, end_s=30.0) is None


def test_rss_growth_per_role_and_total() -> None:
    samples = [{"t_s": float(t), "rss_mb": {"api": 50.0, "workers": 100.0 + t}, "rss_mb_total": 150.0 + t}
               for t in range(0, 101, 10)]
    out = rss_growth(samples, 0.0, 100.0)
    assert out["api"]["growth_pct"] == 0.0
    assert out["workers"]["growth_pct"] == pytest.approx(85.71, abs=0.01)  # mean(100, 110) -> mean(190, 200)
    assert set(out) == {"api", "workers", "total", "total_without_redis"}


def test_rss_growth_without_redis() -> None:
    samples = [{"t_s": float(t), "rss_mb": {"workers": 100.0, "redis": 10.0 + t}, "rss_mb_total": 110.0 + t}
               for t in range(0, 101, 10)]
    out = rss_growth(samples, 0.0, 100.0)
    assert out["total_without_redis"]["growth_pct"] == 0.0
    assert out["redis"]["growth_pct"] > 100


def test_warmup_is_three_minutes_or_a_fifth_of_a_short_run() -> None:
    assert warmup_s(1800) == 180
    assert warmup_s(360) == 72


def test_key_patterns_hide_ids() -> None:
    assert key_pattern("ivr:call:c7f3a1d2-9b1e-4c55-8a43-0d9e6b1f2a77") == "ivr:call:*"
    assert key_pattern("ivr:worker:w3:inbox") == "ivr:worker:*:inbox"
    assert key_pattern("ivr:queue:billing:interval:1763827200") == "ivr:queue:billing:interval:*"
    assert key_pattern("ivr:queues") == "ivr:queues"


def test_census_and_new_persistent_keys() -> None:
    before = Census({"ivr:agents": -1, "ivr:worker:w0:inbox": -1})
    after = Census({"ivr:agents": -1, "ivr:worker:w0:inbox": -1, "ivr:queues": -1, "ivr:call:a1": 604800,
                    "ivr:call:b2": -1, "ivr:call:c3": -1, "ivr:lease:housekeeper": 3})
    new = new_persistent(before.persistent, after.persistent)
    assert new == {"ivr:call:*": 2, "ivr:queues": 1}
    assert per_call_keys(new) == {"ivr:call:*": 2}
    assert after.by_kind() == {"ivr:agents": 1, "ivr:call": 3, "ivr:lease": 1, "ivr:queues": 1, "ivr:worker": 1}
    assert after.expiring_by_pattern()["ivr:call:*"] == {"count": 1, "ttl_min_s": 604800, "ttl_max_s": 604800}


def test_plan_keeps_about_concurrent_calls_up() -> None:
    p = plan(140, 30, 20000)
    assert p["calls"] == 12600 and p["rate_cps"] == 7.0
    assert p["sipp_args"] == ["-s", "1000", "-r", "140", "-rp", "20000", "-l", "169"]


def ok_args(**over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "rss": {"workers": {"first_mb": 300.0, "last_mb": 303.0, "growth_pct": 1.0},
                "total": {"first_mb": 500.0, "last_mb": 505.0, "growth_pct": 1.0}},
        "calls": 75, "sipp": {"successful": 75, "failed": 0}, "persistent_before": 5, "persistent_after": 7,
        "new_keys": {"ivr:queues": 1, "ivr:events": 1}, "active_after": 0, "events_max": 370,
        "events_maxlen": 100_000}
    return {**args, **over}


def test_verdict_ok() -> None:
    assert verdict(**ok_args()) == {"ok": True, "failed": []}


def test_verdict_leaves_redis_and_the_grand_total_to_the_key_checks() -> None:
    big = {"first_mb": 10.0, "last_mb": 40.0, "growth_pct": 300.0}
    assert verdict(**ok_args(rss={"redis": big, "total": big, "workers": {**big, "growth_pct": 1.0}}))["ok"]


def test_verdict_names_the_anon_growth_of_a_role_that_grew() -> None:
    out = verdict(**ok_args(rss={"edge": {"first_mb": 100.0, "last_mb": 106.0, "growth_pct": 6.0}},
                            anon={"edge": {"first_mb": 25.0, "last_mb": 25.0, "growth_pct": 0.0}}))
    assert out["failed"] == ["rss edge: +6.0% (100.0 -> 106.0 MB, RssAnon +0.0%)"]


@pytest.mark.parametrize(("over", "reason"), [
    ({"rss": {"edge": {"first_mb": 100.0, "last_mb": 106.0, "growth_pct": 6.0}}}, "rss edge"),
    ({"rss": {}}, "rss: no sample"),
    ({"sipp": {"successful": 74, "failed": 1}}, "failed calls: 1"),
    ({"sipp": {"successful": 70, "failed": 0}}, "successful calls: 70 of 75"),
    ({"new_keys": {"ivr:call:*": 75}}, "keys without TTL"),
    ({"active_after": 2}, "active calls after drain"),
    ({"events_max": 101_001}, "event stream"),
])
def test_verdict_names_what_failed(over: dict[str, Any], reason: str) -> None:
    out = verdict(**ok_args(**over))
    assert out["ok"] is False
    assert any(f.startswith(reason) for f in out["failed"]), out


def test_capacity_from_results(tmp_path: Path) -> None:
    assert capacity_of({"capacity": {"peak_concurrent": 200, "failed": 0}}) == 200
    assert capacity_of({"capacity": {"peak_concurrent": 200, "failed": 3}}) is None
    assert capacity_of({"capacity": {"peak_concurrent": 200, "max_concurrent_zero_failures": 180}}) == 180
    assert capacity_of({"speech": {}}) is None
    (tmp_path / "2026-11-22T095335.json").write_text(json.dumps(
        {"workers": 100, "capacity": {"peak_concurrent": 200, "failed": 0}}))
    (tmp_path / "pops-2026-11-22T151222.json").write_text(json.dumps({"agents": 500}))
    (tmp_path / "2026-11-22T111730.json").write_text(json.dumps({"speech": {}}))
    found = latest_capacity(tmp_path)
    assert found == (200, tmp_path / "2026-11-22T095335.json", 100)
    (tmp_path / "capacity-2026-11-23T080000.json").write_text(json.dumps({"max_concurrent_zero_failures": 150}))
    assert latest_capacity(tmp_path) == (150, tmp_path / "capacity-2026-11-23T080000.json", None)
    # what bench/run.py writes now: the hotline's figures under "ours", the sipp reference beside them
    (tmp_path / "2026-11-24T180250.json").write_text(json.dumps(
        {"workers": 200, "ours": {"capacity": {"max_concurrent_zero_failures": 400}},
         "reference": {"capacity": {"max_concurrent_zero_failures": 400}}}))
    assert latest_capacity(tmp_path) == (400, tmp_path / "2026-11-24T180250.json", 200)
