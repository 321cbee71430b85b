"""PNG charts of the benchmark figures, written next to the results JSON
(``bench/results/<date>-<name>.png``).

A small API every section can use: :func:`line_chart` (one or two y axes), :func:`histogram`
(latency samples side by side), and :func:`latency_histogram` for a section that kept its raw
latency samples. matplotlib is an optional extra (``pip install '.[bench]'``, done by ``make bench``)
and draws with the Agg backend: no display is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
DPI = 110
SIZE = (8.0, 4.8)


def line_chart(path: Path, title: str, xlabel: str, ylabel: str,
               series: dict[str, tuple[list[float], list[float]]], *, ylabel_right: str | None = None,
               series_right: dict[str, tuple[list[float], list[float]]] | None = None) -> Path:
    """Lines with markers, one per ``series`` entry (name -> (xs, ys)); ``series_right`` is drawn
    dashed against a second y axis labelled ``ylabel_right``. Returns ``path``."""
    fig, ax = plt.subplots(figsize=SIZE)
    try:
        for name, (xs, ys) in series.items():
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if series_right:
            right = ax.twinx()
            for name, (xs, ys) in series_right.items():
                right.plot(xs, ys, marker="s", linestyle="--", label=name)
            right.set_ylabel(ylabel_right or "")
            more_handles, more_labels = right.get_legend_handles_labels()
            handles, labels = handles + more_handles, labels + more_labels
        if handles:
            ax.legend(handles, labels, loc="best", fontsize="small")
        return _save(fig, path)
    finally:
        plt.close(fig)


def histogram(path: Path, title: str, xlabel: str, samples: dict[str, list[float]], *, bins: int = 50,
              log_y: bool = False) -> Path:
    """Overlaid histograms (same bin edges for every named sample set, so they compare); empty sets
    are left out of the chart but named in the legend as "(no samples)". Returns ``path``."""
    fig, ax = plt.subplots(figsize=SIZE)
    try:
        values = [v for vs in samples.values() for v in vs]
        edges = _edges(values, bins)
        for name, vs in samples.items():
            if vs:
                ax.hist(vs, bins=edges, alpha=0.55, label=f"{name} (n={len(vs)})")
            else:
                ax.plot([], [], label=f"{name} (no samples)")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("samples")
        if log_y:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        return _save(fig, path)
    finally:
        plt.close(fig)


def latency_histogram(stem: Path, section: str, samples: dict[str, list[float]], *,
                      what: str = "latency") -> Path | None:
    """For any section with raw samples in ms: ``<stem>-<section>-latency-histogram.png`` (log y, as latency
    tails are long), or None when no set has a sample (sections that keep only percentiles)."""
    if not any(samples.values()):
        return None
    return histogram(stem.with_name(f"{stem.name}-{section}-latency-histogram.png"), f"{section}: {what}",
                     f"{what} (ms)", samples, log_y=True)


def relative(path: Path) -> str:
    """How the results JSON names a chart: relative to the repository root when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _edges(values: list[float], bins: int) -> list[float]:
    """``bins`` equal bins over the values' range (one unit wide at least, so a set of equal values
    still shows as one bar)."""
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    hi = max(hi, lo + 1.0)
    step = (hi - lo) / max(1, bins)
    return [lo + i * step for i in range(bins + 1)]


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path
