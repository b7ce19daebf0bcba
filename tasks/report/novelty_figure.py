"""The novelty figure: which series each ranked model recognises, and what the kept ones are
mistaken for.

Drawn from the rows of two named queries (`tv100.tasks.report.named_queries`):
``novelty_matrix`` (zero-shot top-1 per series and model, with the series' consensus) and
``unseen_confusions`` (the series each kept class is predicted as). Left, a heatmap of top-1
per (series, model), the series ordered by novelty: the most models finding them unseen
first, then the lowest mean top-1; the kept classes are outlined and their names set in bold,
each row's label ending with ``unseen/models``. Right, for each kept class, the series its
images are most often mistaken for, with the share of its images, averaged over the models.

Like `tv100.tasks.report.figures`, it uses matplotlib's Agg canvas (no pyplot, no display)
and nothing in it depends on the clock: the same rows give the same PNG bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from os import PathLike
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import pyarrow as pa

from tv100.storage.atomic import write_file_atomic
from tv100.tasks.report.figures import _new_figure, figure_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Series rows the heatmap shows at most (the most novel ones).
NOVELTY_MAX_SERIES = 120
#: Mistaken-for series listed per kept class.
NOVELTY_TOP_CONFUSIONS = 2
#: Characters of a title kept in a label.
TITLE_CHARS = 32
KEPT_COLOUR = "#EF6351"
MISSING_COLOUR = "#C8C8C8"

#: Query rows: a table, or its rows as mappings (`pa.Table.to_pylist`).
Rows: TypeAlias = pa.Table | Iterable[Mapping[str, Any]]


def _rows(rows: Rows) -> list[Mapping[str, Any]]:
    return rows.to_pylist() if isinstance(rows, pa.Table) else list(rows)


def _short(text: str | None, width: int = TITLE_CHARS) -> str:
    text = text or "?"
    return text if len(text) <= width else text[: width - 1] + "…"


def novelty_order(matrix_rows: Rows) -> list[dict[str, Any]]:
    """One entry per series of the matrix, the most novel first.

    Returns:
        Dicts with series_id, title, kept, n_models, n_unseen, mean_top1 and ``top1``
        (``{model_key: top1}``), ordered by n_unseen (most first), mean top-1 (lowest
        first, unclassified last), series_id.
    """
    series: dict[str, dict[str, Any]] = {}
    for r in _rows(matrix_rows):
        s = series.setdefault(
            r["series_id"],
            {
                "series_id": r["series_id"],
                "title": r["title"],
                "kept": bool(r["kept"]),
                "n_models": int(r["n_models"] or 0),
                "n_unseen": int(r["n_unseen"] or 0),
                "mean_top1": r["mean_top1"],
                "top1": {},
            },
        )
        s["top1"][r["model_key"]] = r["top1"]

    def key(s: dict[str, Any]) -> tuple[int, bool, float, str]:
        mean = s["mean_top1"]
        return (-s["n_unseen"], mean is None, 0.0 if mean is None else mean, s["series_id"])

    return sorted(series.values(), key=key)


def mistaken_for(
    confusion_rows: Rows, top: int = NOVELTY_TOP_CONFUSIONS
) -> dict[str, list[tuple[str, float]]]:
    """Per kept class, the series its images are most often predicted as.

    A confused series' share is averaged over the models whose rows list the class (a model
    that does not list it counts 0), so one model's confusion weighs less than all models'.

    Returns:
        ``{series_id: [(confused title, mean share), ...]}``, largest share first, ties by
        title, at most `top` each.
    """
    shares: dict[str, dict[str, float]] = {}
    titles: dict[tuple[str, str], str] = {}
    models: dict[str, set[str]] = {}
    for r in _rows(confusion_rows):
        sid, other = r["series_id"], r["confused_with"]
        models.setdefault(sid, set()).add(r["model_key"])
        if other is None or r["share"] is None:
            continue
        shares.setdefault(sid, {})
        shares[sid][other] = shares[sid].get(other, 0.0) + float(r["share"])
        titles[(sid, other)] = r["confused_title"] or other
    out: dict[str, list[tuple[str, float]]] = {}
    for sid, by_other in shares.items():
        n = len(models[sid])
        # shares equal but for float rounding (0.2 + 0.4 vs 0.6) tie: by title
        ranked = sorted(
            ((titles[(sid, o)], v / n) for o, v in by_other.items()),
            key=lambda t: (-round(t[1], 9), t[0]),
        )
        out[sid] = ranked[:top]
    return out


def plot_novelty(
    matrix_rows: Rows,
    confusion_rows: Rows,
    max_series: int = NOVELTY_MAX_SERIES,
    top: int = NOVELTY_TOP_CONFUSIONS,
) -> Figure:
    """The novelty figure (see the module docstring).

    Args:
        matrix_rows: rows of the ``novelty_matrix`` query (a table or mappings).
        confusion_rows: rows of the ``unseen_confusions`` query.
        max_series: series rows shown at most (the most novel).
        top: mistaken-for series listed per kept class.

    Raises:
        ValueError: no matrix rows, or `max_series` / `top` below 1.
    """
    if max_series < 1 or top < 1:
        raise ValueError(f"max_series={max_series!r}, top={top!r}; expected 1 or more each")
    order = novelty_order(matrix_rows)
    if not order:
        raise ValueError("no novelty_matrix rows; expected zero-shot rows of a ranked root")
    shown = order[:max_series]
    models = sorted({m for s in order for m in s["top1"]})
    grid = np.full((len(shown), len(models)), np.nan)
    for i, s in enumerate(shown):
        for j, m in enumerate(models):
            v = s["top1"].get(m)
            if v is not None:
                grid[i, j] = float(v)
    confused = mistaken_for(confusion_rows, top)

    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    width, side = 4.2 + 0.9 * len(models), 1.2 + 2.2 * top
    fig = _new_figure(width + side, 1.4 + 0.24 * len(shown))
    heat, notes = fig.subplots(1, 2, width_ratios=[width, side], sharey=True)
    cmap = colormaps["viridis"].with_extremes(bad=MISSING_COLOUR)
    image = heat.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0,
                        aspect="auto", interpolation="nearest")  # fmt: skip
    fig.colorbar(image, ax=heat, label="zero-shot top-1", shrink=0.6, pad=0.02)
    heat.set_xticks(range(len(models)), labels=models, rotation=30, ha="right", fontsize=8)
    labels = [f"{_short(s['title'])}  {s['n_unseen']}/{s['n_models']}" for s in shown]
    heat.set_yticks(range(len(shown)), labels=labels, fontsize=8)
    for tick, s in zip(heat.get_yticklabels(), shown, strict=True):
        if s["kept"]:
            tick.set_fontweight("bold")
            tick.set_color(KEPT_COLOUR)
    small = len(shown) * len(models) <= 400
    for i, s in enumerate(shown):
        if s["kept"]:
            heat.add_patch(Rectangle((-0.5, i - 0.5), len(models), 1, fill=False,
                                     edgecolor=KEPT_COLOUR, linewidth=1.5))  # fmt: skip
        for j in range(len(models)):
            v = grid[i, j]
            if small and not math.isnan(v):
                heat.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=7,
                          color="white" if v < 0.6 else "black")  # fmt: skip
    kept = sum(1 for s in order if s["kept"])
    more = f", {len(shown)} most novel of {len(order)} shown" if len(shown) < len(order) else ""
    heat.set_title(
        f"Zero-shot top-1 per series and model ({kept} kept, outlined{more})", fontsize=10
    )
    heat.set_ylabel("series, most novel first (unseen by / models)", fontsize=9)
    notes.set_xlim(0, 1)
    notes.set_axis_off()
    notes.set_title("kept class mistaken for (share of its images)", fontsize=10)
    for i, s in enumerate(shown):
        if not s["kept"]:
            continue
        items = confused.get(s["series_id"], [])
        text = " · ".join(f"{_short(t, 20)} {100 * v:.0f}%" for t, v in items) or "—"
        notes.text(0.0, i, f"→ {text}", va="center", ha="left", fontsize=8)
    return fig


def draw_novelty(
    matrix_rows: Rows,
    confusion_rows: Rows,
    out_path: str | PathLike[str],
    dpi: int = 150,
    max_series: int = NOVELTY_MAX_SERIES,
) -> str:
    """Draw `plot_novelty` into a PNG file at `out_path` (written atomically).

    Args:
        matrix_rows: rows of the ``novelty_matrix`` query.
        confusion_rows: rows of the ``unseen_confusions`` query.
        out_path: a local file path (a file under a data root goes through
            `tv100.storage.root.write_bytes_atomic` instead: pass `figure_png` of
            `plot_novelty`).
        dpi: resolution.
        max_series: series rows shown at most.

    Returns:
        The path written.
    """
    fig = plot_novelty(matrix_rows, confusion_rows, max_series)
    return write_file_atomic(out_path, figure_png(fig, dpi))
