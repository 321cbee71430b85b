"""The pure pieces of bench/capacity.py, on text captured from sipp 3.6.1 (tests/unit/data/bench_capacity/):
screens of a run against the hotline, against the reference UAS and against a closed port, and
``-trace_rtt -rtt_freq 1`` files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.capacity import (
    SCREEN_COUNTS,
    achieved_rate,
    default_levels,
    latency_summary,
    parse_rtt_csv,
    percentile,
    ratio,
    sliding_port_range,
)
from bench.harness import sipp_counts
from tests import ports

DATA = Path(__file__).parent / "data" / "bench_capacity"


def text(name: str) -> str:
    return (DATA / name).read_text()


def screen_counts(name: str) -> dict[str, int]:
    return sipp_counts(text(name), SCREEN_COUNTS)


def test_screen_counts_of_a_clean_run() -> None:
    assert screen_counts("sipp_ours_screen.txt") == {"successful": 10, "failed": 0, "sipp_peak_calls": 10}
    assert screen_counts("sipp_reference_screen.txt") == {"successful": 6, "failed": 0, "sipp_peak_calls": 6}


def test_screen_counts_of_calls_nobody_answered() -> None:
    assert screen_counts("sipp_failed_screen.txt") == {"successful": 0, "failed": 3, "sipp_peak_calls": 3}


def test_screen_counts_without_a_screen() -> None:
    assert sipp_counts("", SCREEN_COUNTS) == {"successful": -1, "failed": -1, "sipp_peak_calls": -1}


def test_rtt_csv_rows() -> None:
    rows = parse_rtt_csv(text("sipp_rtt.csv"))
    assert rows == [(336.001, 0.0), (668.001, 0.0), (1008.0, 4.0), (1336.0, 0.0), (1668.0, 0.0), (2008.0, 4.0)]


def test_rtt_csv_skips_header_torn_lines_and_other_timers() -> None:
    rows = parse_rtt_csv("Date_ms;response_time_ms;rtd_no\n10;4;1\n20;7;2\n30;4")
    assert rows == [(10.0, 4.0)]


def test_achieved_rate_from_when_the_invites_went_out() -> None:
    rows = parse_rtt_csv(text("sipp_rtt_rate10.csv"))
    assert len(rows) == 50
    assert achieved_rate(rows) == pytest.approx(10.0, abs=0.3)
    assert achieved_rate(rows[:1]) is None


def test_nearest_rank_percentiles() -> None:
    samples = [float(x) for x in range(1, 101)]
    assert [percentile(samples, p) for p in (50, 95, 99)] == [50.0, 95.0, 99.0]
    assert percentile([4.0], 99) == 4.0
    assert percentile([], 50) is None
    summary = latency_summary([0.0, 4.0, 4.0, 8.0])
    assert summary == {"n": 4, "p50": 4.0, "p95": 8.0, "p99": 8.0, "max": 8.0}
    assert latency_summary([])["p99"] is None


def test_ratios_never_divide_by_an_unknown_or_zero_reference() -> None:
    assert ratio(400, 200) == 2.0
    assert ratio(4.0, 0.0) is None
    assert ratio(None, 3) is None
    assert ratio(3, None) is None


def test_default_levels_end_at_the_pool() -> None:
    assert default_levels(400) == [100, 200, 300, 400]
    assert default_levels(250) == [100, 200, 250]
    assert default_levels(20) == [5, 10, 15, 20]
    assert default_levels(2) == [1, 2]


def test_sliding_port_range_steps_past_a_busy_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """A port held inside the band pushes the range past it (tests.ports.free_port_range would only
    try bases one range-size apart). Which ports are free is decided here, not by the machine."""
    band = (40_000, 40_000 + 16 * ports.STRIDE)
    busy = band[0] + 3 * ports.STRIDE
    monkeypatch.setattr(ports, "_free", lambda port, host: port != busy)
    base = sliding_port_range(8 * ports.STRIDE, band)
    assert base == busy + ports.STRIDE
    assert band[0] <= base and base + 8 * ports.STRIDE - 1 <= band[1]
    with pytest.raises(RuntimeError):
        sliding_port_range(8 * ports.STRIDE, (busy - ports.STRIDE, busy + 8 * ports.STRIDE))
