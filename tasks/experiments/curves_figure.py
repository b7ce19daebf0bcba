"""The data-efficiency figure: top-1 and balanced accuracy against training images per class.

Two panels, one line per recipe (per model and recipe when the table holds several models):
the mean over seeds, with a band from the lowest to the highest seed. The x axis is log2 of
the shots, the whole train split ("all") at its right end. Drawn on matplotlib's Agg canvas
(no pyplot, no display), with nothing from the clock: the same rows give the same PNG bytes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from tv100.storage.atomic import write_file_atomic
from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table
from tv100.tasks.experiments.curves import (
    ALL_SHOTS,
    CURVES_TABLE,
    curve_summary,
    shots_label,
    shots_order,
)
from tv100.tasks.report.config import EXPERIMENT_FIGURES
from tv100.tasks.report.figures import RECIPE_COLOURS, _darkgrid, _new_figure, figure_png
from tv100.tasks.report.labels import RECIPE_LABELS
from tv100.tasks.report.report import write_report_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The figure's file under the report folder.
CURVES_FIGURE = EXPERIMENT_FIGURES["curves"]
#: The panels: (metric, axis label).
PANELS = (("top1", "Top-1 accuracy (%)"), ("balanced_accuracy", "Balanced accuracy (%)"))
OTHER_COLOURS = ("#6C8EBF", "#B85450", "#82B366", "#9673A6", "#D6B656", "#666666")
DPI = 150


def _positions(shots: Iterable[int]) -> dict[int, float]:
    """x of each shots value: log2(shots), and "all" one step right of the largest."""
    finite = sorted(k for k in set(shots) if k != ALL_SHOTS)
    x = {k: math.log2(k) for k in finite}
    x[ALL_SHOTS] = (x[finite[-1]] if finite else 0.0) + 1.0
    return x


def _tick(shots: int, summary: list[dict[str, Any]]) -> str:
    """A shots value's label; "all" with its mean training images per class below."""
    if shots != ALL_SHOTS:
        return shots_label(shots)
    per_class = [r["mean_shots"] for r in summary if r["shots"] == ALL_SHOTS]
    return f"all\n({max(per_class):.0f})" if per_class else "all"


def curves_figure(table: pa.Table | Iterable[Mapping[str, Any]], split: str = "test") -> Figure:
    """The figure of `CURVES` rows (`split`'s only).

    Raises:
        ValueError: no row of `split` with a value to draw.
    """
    summary = curve_summary(table, split)
    if not summary:
        raise ValueError(f"no {split} rows in the curves table to draw")
    x = _positions(r["shots"] for r in summary)
    models = sorted({r["model_key"] for r in summary})
    lines = list(dict.fromkeys((r["model_key"], r["recipe"]) for r in summary))
    fig = _new_figure(9.0, 3.8)
    axes = fig.subplots(1, len(PANELS), sharex=True)
    for ax, (metric, label) in zip(axes, PANELS, strict=True):
        _darkgrid(ax)
        for i, (model, recipe) in enumerate(lines):
            pts = sorted((r for r in summary if (r["model_key"], r["recipe"]) == (model, recipe)
                          and r["metric"] == metric), key=lambda r: shots_order(r["shots"]))
            if not pts:
                continue
            colour = (RECIPE_COLOURS.get(recipe, OTHER_COLOURS[i % len(OTHER_COLOURS)])
                      if len(models) == 1 else OTHER_COLOURS[i % len(OTHER_COLOURS)])
            name = RECIPE_LABELS.get(recipe, recipe)
            xs = [x[r["shots"]] for r in pts]
            ax.fill_between(xs, [100 * r["min"] for r in pts], [100 * r["max"] for r in pts],
                            color=colour, alpha=0.25, linewidth=0)
            ax.plot(xs, [100 * r["mean"] for r in pts], color=colour, marker="o",
                    markersize=4, linewidth=1.6,
                    label=name if len(models) == 1 else f"{name} ({model})")
        ticks = sorted(x, key=shots_order)
        ax.set_xticks([x[k] for k in ticks], [_tick(k, summary) for k in ticks])
        ax.set_xlabel("Training images per class", fontsize=10)
        ax.set_ylabel(label, fontsize=10)
        ax.set_ylim(0, 100)
    seeds = max(r["n_seeds"] for r in summary)
    axes[0].legend(loc="upper left", fontsize=8, framealpha=0.9)
    fig.suptitle(f"Data efficiency on {split} (mean of {seeds} seed{'s' if seeds != 1 else ''},"
                 " band: min to max)", fontsize=11)
    return fig


def curves_png(table: pa.Table | Iterable[Mapping[str, Any]], split: str = "test") -> bytes:
    """`curves_figure` as PNG bytes."""
    return figure_png(curves_figure(table, split), DPI)


def draw_curves(
    table: pa.Table | Iterable[Mapping[str, Any]], out_path: str | os.PathLike[str]
) -> str:
    """Draw the test split's curves of `table` into the local file `out_path` (atomically:
    the old file or the new, never half of one); return its path.

    Raises:
        ValueError: nothing to draw.
    """
    return write_file_atomic(out_path, curves_png(table))


def write_curves_figure(root: DataRoot, table: pa.Table) -> str:
    """Draw `table`'s test curves into ``report/curves.png`` under the root; its path
    (`write_report_file`: equal bytes are not written again).

    Raises:
        ValueError: nothing to draw.
    """
    return write_report_file(root, CURVES_FIGURE, curves_png(table))


@task(name="curves-figure", cache_policy=NO_CACHE)
def curves_figure_task(root: DataRoot, model_key: str) -> str:
    """`write_curves_figure` of the `curves` table's rows of `model_key`."""
    table = read_table(root, CURVES_TABLE)
    return write_curves_figure(root, table.filter(pc.equal(table.column("model_key"), model_key)))


@task(name="write-report-png", cache_policy=NO_CACHE)
def write_report_png_task(root: DataRoot, name: str, data: bytes) -> str:
    """`write_report_file` (an experiment's figure, drawn elsewhere)."""
    return write_report_file(root, name, data)
