"""The report image: one panel per metric, a bar per facet value, over the band where the
metric reads as balanced (PNG, matplotlib's Agg canvas; no pyplot state).

The band is a reading aid, not a Clarify rule: DI within [0.8, 1.25] (the four-fifths rule),
a signed difference within ±0.1, a divergence or distance (KL, JS, LP, TVD, KS, GE) below 0.1.
"""
from __future__ import annotations

import math
from pathlib import Path

from mljobs.bias.report import Metric

NON_NEGATIVE = {"KL", "JS", "LP", "TVD", "KS", "GE"}
BAND = 0.1


def band(metric: str) -> tuple[float, float]:
    """The balanced interval of a metric's value."""
    if metric == "DI":
        return 0.8, 1.25
    return (0.0, BAND) if metric in NON_NEGATIVE else (-BAND, BAND)


def _panel(ax, name: str, title: str, rows: list[Metric]) -> None:
    lo, hi = band(name)
    ax.axvspan(lo, hi, color="#cfe8cf", zorder=0)
    ax.axvline(1.0 if name == "DI" else 0.0, color="#555555", lw=0.8)
    labels = [m.value_or_threshold for m in rows]
    finite = [m.value if m.value is not None and math.isfinite(m.value) else 0.0 for m in rows]
    colors = ["#4c72b0" if lo <= v <= hi else "#dd8452" for v in finite]
    ax.barh(range(len(rows)), finite, color=colors, zorder=2)
    for i, m in enumerate(rows):
        if m.value is None or not math.isfinite(m.value):
            ax.text(0, i, " n/a" if m.value is None else f" {m.value:+}", va="center", fontsize=7, zorder=3)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelsize=7)


def report_image(results: list[Metric], facet: str, path: str | Path) -> str:
    """``path``: every metric of ``results`` (both stages), a panel each; returns its name."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(dict.fromkeys((m.stage, m.name) for m in results))
    values = len({m.value_or_threshold for m in results})
    cols = min(4, max(1, len(names)))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(3.2 * cols, rows * (0.6 + 0.22 * values) + 0.6))
    FigureCanvasAgg(fig)
    for i, (stage, name) in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        _panel(ax, name, f"{name} ({stage})", [m for m in results if m.stage == stage and m.name == name])
    fig.suptitle(f"bias metrics of {facet} (green band: balanced; orange bars: outside it; n/a: undefined)", fontsize=10)
    fig.tight_layout()
    fig.savefig(str(path), dpi=90)
    return str(path)
