"""PNG charts of benchmark figures (matplotlib, Agg backend: no display needed).

A minimal stand-in written with the soak benchmark; the shared version replaces it with the
same two signatures.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

Series = dict[str, tuple[list[float], list[float]]]


def line_chart(path: Path, title: str, xlabel: str, ylabel: str, series: Series, *,
               ylabel_right: str | None = None, series_right: Series | None = None) -> Path:
    """Lines of (x, y) series on one axis, optionally more series on a right-hand axis (dashed)."""
    fig, ax = plt.subplots(figsize=(10, 5))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, label=name)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if series_right:
        right = ax.twinx()
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (name, (xs, ys)) in enumerate(series_right.items(), start=len(series)):
            right.plot(xs, ys, linestyle="--", label=name, color=colours[i % len(colours)])
        right.set_ylabel(ylabel_right or "")
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if handles:
        ax.legend(handles, labels, loc="best", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def histogram(path: Path, title: str, xlabel: str, samples: dict[str, list[float]], *, bins: int = 50,
              log_y: bool = False) -> Path:
    """Overlaid histograms of named samples."""
    fig, ax = plt.subplots(figsize=(10, 5))
    for name, values in samples.items():
        if values:
            ax.hist(values, bins=bins, alpha=0.5, label=name)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    if samples:
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
