"""What every benchmark shares: a private redis-server, where a run on its own writes its figures
(``bench/results/<name>-<date>.json``) and how a later one finds them, and sipp's screen counters."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import wait_port
from tests.ports import free_udp_tcp_port

RESULTS = Path(__file__).resolve().parent / "results"
DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{6})")
T = TypeVar("T")

#: sipp's screen counters: the cumulative column of its statistics, the peak of calls up at once,
#: and how many 503 replies a scenario that expects them received (its message table)
SIPP_SCREEN = {
    "placed": r"Outgoing calls created\s*\|\s*\d+\s*\|\s*(\d+)",
    "successful": r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)",
    "failed": r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)",
    "sipp_peak_calls": r"Peak was (\d+) calls",
    "refused_503": r"^\s*503 <-+\s+(\d+)",
}


def sipp_counts(screen: str, names: Sequence[str] = ("successful", "failed"), *, missing: int = -1) -> dict[str, int]:
    """The ``names`` counters (keys of :data:`SIPP_SCREEN`) from sipp's output: the last screen
    printed wins; ``missing`` when sipp printed none (e.g. killed at start)."""
    def last(pattern: str) -> int:
        found = re.findall(pattern, screen, re.M)
        return int(found[-1]) if found else missing
    return {name: last(SIPP_SCREEN[name]) for name in names}


def newest_result(extract: Callable[[dict[str, Any]], T | None],
                  results: Path = RESULTS) -> tuple[T, Path, dict[str, Any]] | None:
    """``(value, file, data)`` of the newest results file (by the date in its name) for which
    ``extract(data)`` gives a value; files that are not a JSON object are skipped."""
    files = sorted(results.glob("*.json"), key=lambda f: (m.group(1) if (m := DATE_IN_NAME.search(f.name))
                                                          else "", f.name), reverse=True)
    for f in files:
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        value = extract(data) if isinstance(data, dict) else None
        if value:
            return value, f, data
    return None


def latency_plots(result: Any, stem: str, where: str = "") -> list[str]:
    """Draw every ``_samples_ms`` found in ``result`` (a list, or a dict of named lists, of
    latencies in ms that a section kept for this) as a histogram ``bench/results/<stem>-<where>.png``,
    and take the samples out of ``result``: the JSON keeps percentiles, the PNG the distribution.
    Returns the PNG files written (relative to the repository)."""
    from bench.plots import histogram  # matplotlib is only needed when there is something to draw

    written: list[str] = []
    items = result.items() if isinstance(result, dict) else enumerate(result) if isinstance(result, list) else []
    for key, value in list(items):
        if key == "_samples_ms" and isinstance(result, dict):
            samples = result.pop(key)
            named = samples if isinstance(samples, dict) else {where or stem: samples}
            if any(named.values()):
                png = RESULTS / f"{stem}-{(where or 'latency').replace('.', '-')}.png"
                histogram(png, f"{where or stem}: latency", "ms", named, log_y=True)
                written.append(str(png.relative_to(RESULTS.parent.parent)))
        elif isinstance(value, dict | list):
            written += latency_plots(value, stem, f"{where}.{key}" if where else str(key))
    return written


def save(name: str, result: dict[str, Any]) -> Path:
    """Write ``result`` as JSON (its latency samples drawn as histograms, see :func:`latency_plots`),
    print it, and return the file."""
    stamp = datetime.now(UTC).strftime('%Y-%m-%dT%H%M%S')
    plots = latency_plots(result, f"{name}-{stamp}")
    if plots:
        result.setdefault("plots", []).extend(plots)
    out = RESULTS / f"{name}-{stamp}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"written {out}")
    return out


@contextlib.contextmanager
def private_redis(*, appendonly: bool = False) -> Iterator[str]:
    """A private redis-server on a free loopback port, no snapshots; with ``appendonly`` its
    append-only file is written (fsync every second), as in production. Yields its URL."""
    port = free_udp_tcp_port()
    aof = ["--appendonly", "yes", "--appendfsync", "everysec"] if appendonly else ["--appendonly", "no"]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
                                 "--save", "", *aof], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, 10, proc)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(5)
