"""The long-tail figure: per method, grouped bars of test accuracy per tier (many, medium,
few, balanced), mean over seeds with the sample std as error bars.

Drawn on matplotlib's Agg canvas directly (no pyplot, no display), like
`tv100.tasks.report.figures`; nothing depends on the clock, so the same rows give the same
PNG bytes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tv100.storage.atomic import write_file_atomic
from tv100.tasks.report.figures import _darkgrid, _new_figure, figure_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The tiers drawn, left to right within a method's group: (tier, legend, colour).
FIGURE_TIERS = (
    ("many", "many-shot", "#2E4756"),
    ("medium", "medium-shot", "#7FA7C9"),
    ("few", "few-shot", "#ECC46B"),
    ("balanced", "balanced accuracy", "#D9826B"),
)
#: Display names of the methods.
METHOD_LABELS = {
    "ce": "CE",
    "balanced_sampling": "balanced\nsampling",
    "logit_adjust_posthoc": "logit adj.\npost hoc",
    "logit_adjust_loss": "logit adj.\nloss",
    "class_balanced_loss": "class-bal.\nloss",
    "crt": "cRT",
}


def _number(v: Any) -> float:
    return math.nan if v is None else float(v)


def longtail_figure(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> Figure:
    """Grouped bars: one group per method (in the rows' order), one bar per tier of
    `FIGURE_TIERS`, height the mean accuracy (%), error bar the std over seeds.

    Args:
        rows: ``{method, tier, mean, std, n_seeds}`` (`LongtailResult.rows` or the
            `longtail_tiers` query of one model, recipe and setting per method); other
            tiers and keys are ignored; a missing mean leaves its bar out.
        title: the figure's title (default: the seeds counted).

    Raises:
        ValueError: no rows, or a method and tier given twice.
    """
    if not rows:
        raise ValueError("rows is empty; expected {method, tier, mean, std, n_seeds} rows")
    cell: dict[tuple[str, str], Mapping[str, Any]] = {}
    for r in rows:
        key = (str(r["method"]), str(r["tier"]))
        if key in cell:
            raise ValueError(f"method {key[0]!r} tier {key[1]!r} given twice; expected the "
                             "rows of one model, recipe and setting per method")
        cell[key] = r
    methods = list(dict.fromkeys(str(r["method"]) for r in rows))
    seeds = sorted({int(r.get("n_seeds") or 0) for r in rows if r.get("mean") is not None})
    fig = _new_figure(max(5.0, 1.25 * len(methods) + 1.8), 3.9)
    ax = fig.add_subplot()
    _darkgrid(ax)
    width = 0.8 / len(FIGURE_TIERS)
    for j, (tier, label, colour) in enumerate(FIGURE_TIERS):
        xs = [i + (j - (len(FIGURE_TIERS) - 1) / 2) * width for i in range(len(methods))]
        got = [cell.get((m, tier), {}) for m in methods]
        ys = [100.0 * _number(g.get("mean")) for g in got]
        errs = [0.0 if g.get("std") is None else 100.0 * float(g["std"]) for g in got]
        ax.bar(xs, ys, width=width * 0.95, color=colour, label=label, yerr=errs,
               error_kw={"elinewidth": 0.9, "capsize": 2.0, "ecolor": "#222222"})
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels([METHOD_LABELS.get(m, m) for m in methods], fontsize=9)
    ax.set_ylim(0, 118)  # room for the legend above 100%
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("Test accuracy (%)", fontsize=11)
    ax.legend(loc="upper center", fontsize=8, framealpha=0.9, ncols=len(FIGURE_TIERS))
    runs = "/".join(str(s) for s in seeds) or "0"
    ax.set_title(title or f"Long-tail methods: mean ± std over {runs} seed(s)", fontsize=10)
    return fig


def longtail_png(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> bytes:
    """`longtail_figure` as PNG bytes (write them under a data root with
    `tv100.storage.root.write_bytes_atomic`)."""
    return figure_png(longtail_figure(rows, title))


def draw_longtail(
    rows: Sequence[Mapping[str, Any]], out_path: str | os.PathLike[str],
    title: str | None = None,
) -> str:
    """Draw `longtail_figure` to the local PNG file `out_path` (atomically); its path."""
    return write_file_atomic(out_path, longtail_png(rows, title))
