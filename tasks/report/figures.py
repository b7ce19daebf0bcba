"""The report's figures: the paper's panels (b), (c) and (d), and the relevance and review
per class, drawn from analysis tables.

Figures use matplotlib's Agg canvas directly (no pyplot, no display needed); nothing in them
depends on the clock, so the same tables give the same PNG bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pyarrow as pa

from tv100.tasks.report.imbalance import tier_counts
from tv100.tasks.report.labels import COUNTRY_NAMES, RECIPE_LABELS, recipe_order
from tv100.tasks.train.metrics import Tiers

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PIE_COLOURS = (
    "#EF6351",
    "#5CCF8F",
    "#FAD56F",
    "#F7A08A",
    "#B3EFA0",
    "#8FB8DE",
    "#C9A7EB",
    "#F4B6C2",
)
OTHER_COLOUR = "#C8C8C8"
SMALL_SLICE = 0.05  # pie slices thinner than this get their percentage outside
RECIPE_COLOURS = {
    "zeroshot": "#2E4756",
    "linear": "#7FA7C9",
    "finetune": "#ECC46B",
    "wiseft": "#D9826B",
}
BAR_COLOUR = "#4565D6"
PANEL_BG = "#EAEAF2"  # seaborn's darkgrid, as in the paper's panels (c) and (d)
#: The relevance figure's segments, left to right: `relevance_per_class` column -> (legend,
#: colour). The first three are the images irrelevant in the end (together the noise share);
#: ``kept`` is ``n_kept`` less the overruled ones.
RELEVANCE_SEGMENTS = {
    "n_found_other_series": ("found by the scorer: other series", "#EF6351"),
    "n_found_offtopic": ("found by the scorer: off-topic", "#F7A08A"),
    "n_human_removed": ("removed by a human", "#9B59B6"),
    "n_human_overruled": ("overruled by a human (accepted though flagged)", "#FAD56F"),
    "kept": ("kept", "#5CCF8F"),
}
#: Classes the relevance figure shows at most (the noisiest).
RELEVANCE_MAX_CLASSES = 40


def _new_figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the report needs matplotlib: pip install 'matplotlib>=3.8'") from err
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _darkgrid(ax: Axes) -> None:
    ax.set_facecolor(PANEL_BG)
    ax.grid(True, color="white", linewidth=1.0)
    ax.set_axisbelow(True)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(length=0)


def figure_png(fig: Figure, dpi: int = 150) -> bytes:
    """Render a figure to PNG bytes (Agg)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def plot_country_distribution(
    countries: pa.Table, max_slices: int = 7, names: Mapping[str, str] | None = None
) -> Figure:
    """Figure (b): a pie of the dataset's classes per country, the largest slice pulled out.

    Args:
        countries: `analysis.countries` (country, n_series), largest first.
        max_slices: countries shown before the rest become "Other".
        names: display names of the country codes (default `COUNTRY_NAMES`).
    """
    names = COUNTRY_NAMES if names is None else names
    rows = sorted(countries.to_pylist(), key=lambda r: (-r["n_series"], r["country"]))
    shown = rows if len(rows) <= max_slices + 1 else rows[:max_slices]  # no 'Other (1)'
    rest = rows[len(shown) :]
    labels = [names.get(r["country"], r["country"]) for r in shown]
    sizes = [r["n_series"] for r in shown]
    colours = [PIE_COLOURS[i % len(PIE_COLOURS)] for i in range(len(shown))]
    if rest:
        labels.append(f"Other ({len(rest)})")
        sizes.append(sum(r["n_series"] for r in rest))
        colours.append(OTHER_COLOUR)
    total = sum(sizes)
    # thin slices carry their share in the outside label: inside it would overlap
    labels = [
        lab if n / total >= SMALL_SLICE else f"{lab} {100 * n / total:.0f}%"
        for lab, n in zip(labels, sizes, strict=True)
    ]
    fig = _new_figure(4.6, 4.0)
    ax = fig.add_subplot()
    explode = [0.12 if i == 0 and len(sizes) > 1 else 0.0 for i in range(len(sizes))]
    ax.pie(
        sizes,
        labels=labels,
        colors=colours,
        explode=explode,
        startangle=40,
        autopct=lambda p: f"{p:.0f}%" if p >= 100 * SMALL_SLICE else "",
        pctdistance=0.68,
        labeldistance=1.08,
        textprops={"fontsize": 11},
        wedgeprops={"linewidth": 0.8, "edgecolor": "white"},
    )
    ax.set_aspect("equal")
    ax.set_title(f"Country distribution ({total} classes)", fontsize=11)
    return fig


def plot_instance_distribution(distribution: pa.Table, tiers: Tiers | None = None) -> Figure:
    """Figure (c): images per class, sorted descending, with the tier thresholds.

    Args:
        distribution: `analysis.class_distribution` (rank, n_images, tier ...), sorted.
        tiers: the thresholds drawn and counted in the legend.
    """
    from matplotlib.ticker import MaxNLocator

    tiers = tiers or Tiers()
    counts = distribution.column("n_images").to_pylist()
    tier_n = tier_counts(counts, tiers)
    fig = _new_figure(4.8, 3.8)
    ax = fig.add_subplot()
    _darkgrid(ax)
    x = list(range(len(counts)))
    ax.bar(x, counts, width=1.0 if len(counts) > 40 else 0.8, color=BAR_COLOUR, linewidth=0)
    top = max(counts, default=1) * 1.08 or 1
    drawn = False
    for level, text, style in (
        (tiers.many, f"many-shot > {tiers.many}", "--"),
        (tiers.few, f"few-shot < {tiers.few}", ":"),
    ):
        if level < top:
            ax.axhline(level, color="#333333", linestyle=style, linewidth=1.0, label=text)
            drawn = True
    if drawn:
        ax.legend(loc="upper right", fontsize=9, framealpha=0.9)
    ax.set_ylim(0, top)
    ax.set_xlim(-0.6, len(counts) - 0.4)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Class (sorted by number of images)", fontsize=11)
    ax.set_ylabel("Number of images", fontsize=11)
    ax.set_title(
        f"Instance distribution: {len(counts)} classes, {sum(counts)} images\n"
        f"many {tier_n['many']} · medium {tier_n['medium']} · few {tier_n['few']}",
        fontsize=10,
    )
    return fig


def plot_performance(accuracy: pa.Table, chance: float | None = None) -> Figure:
    """Figure (d): accuracy (%) per model, one bar per recipe, values on the bars.

    Args:
        accuracy: `analysis.model_accuracy` (model_key, recipe, value as a fraction).
        chance: accuracy of guessing (1 / classes, a fraction), drawn as a line.
    """
    rows = accuracy.to_pylist()
    models = list(dict.fromkeys(r["model_key"] for r in rows))
    recipes = recipe_order(r["recipe"] for r in rows)
    value = {(r["model_key"], r["recipe"]): 100.0 * r["value"] for r in rows}
    fig = _new_figure(max(4.4, 1.5 * len(models) + 1.6), 3.8)
    ax = fig.add_subplot()
    _darkgrid(ax)
    width = 0.8 / max(1, len(recipes))
    for j, recipe in enumerate(recipes):
        xs = [i + (j - (len(recipes) - 1) / 2) * width for i in range(len(models))]
        ys = [value.get((m, recipe), math.nan) for m in models]
        bars = ax.bar(
            xs,
            ys,
            width=width * 0.95,
            color=RECIPE_COLOURS.get(recipe, "#999999"),
            label=RECIPE_LABELS.get(recipe, recipe),
        )
        ax.bar_label(
            bars, labels=["" if math.isnan(y) else f"{y:.2f}" for y in ys], padding=2, fontsize=8
        )
    if chance is not None and 0 < chance < 1:
        ax.axhline(
            100 * chance,
            color="#B03A2E",
            linestyle=":",
            linewidth=1.0,
            label=f"chance ({100 * chance:.1f}%)",
        )
    peak = max(value.values(), default=0.0)
    ax.set_ylim(0, min(100.0, max(10.0, math.ceil((peak + 8) / 10) * 10)))
    ax.set_xticks(range(len(models)), models, fontsize=10)
    ax.set_ylabel("Accuracy (%)", fontsize=11)
    ax.legend(loc="upper left", fontsize=9, framealpha=0.9)
    ax.set_title("Zero-shot vs fine-tuned", fontsize=11)
    return fig


def _drawable(text: str) -> bool:
    """Whether matplotlib's default font has a glyph for every character of `text`."""
    from matplotlib.font_manager import FontProperties, findfont, get_font

    font = get_font(findfont(FontProperties()))
    return all(font.get_char_index(ord(c)) for c in text if not c.isspace())


def _class_label(title: str | None, series_id: str, width: int = 28) -> str:
    """A class's axis label: its title (shortened) when the font can draw it, else its id."""
    if not title or not _drawable(title):
        return series_id
    return title if len(title) <= width else title[: width - 1] + "…"


def plot_relevance(per_class: pa.Table, max_classes: int = RELEVANCE_MAX_CLASSES) -> Figure:
    """Relevance and review per class: one horizontal bar per class, noisiest at the top,
    split into the shares of its judged images found irrelevant by the scorer (per reason),
    removed by a human, overruled by a human and kept.

    Args:
        per_class: `analysis.relevance_per_class` (noisiest first).
        max_classes: classes shown at most (the noisiest).
    """
    rows = [r for r in per_class.to_pylist() if r["n_images"]][:max_classes]
    n_all = sum(1 for n in per_class.column("n_images").to_pylist() if n)
    fig = _new_figure(7.2, 1.6 + 0.24 * max(len(rows), 1))
    ax = fig.add_subplot()
    _darkgrid(ax)
    ys = list(range(len(rows)))
    left = [0.0] * len(rows)
    for key, (label, colour) in RELEVANCE_SEGMENTS.items():
        counts = [
            r["n_kept"] - r["n_human_overruled"] if key == "kept" else r[key] for r in rows
        ]
        shares = [100 * c / r["n_images"] for c, r in zip(counts, rows, strict=True)]
        ax.barh(ys, shares, left=left, height=0.75, color=colour, label=label, linewidth=0)
        left = [a + b for a, b in zip(left, shares, strict=True)]
    for y, r in zip(ys, rows, strict=True):
        ax.text(101, y, f"{100 * r['noise_share']:.0f}% ({r['n_irrelevant']}/{r['n_images']})",
                va="center", fontsize=7)
    ax.set_yticks(ys, [_class_label(r["title"], r["series_id"]) for r in rows], fontsize=8)
    ax.invert_yaxis()  # noisiest at the top
    ax.set_xlim(0, 118)
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("Share of the class's images (%)", fontsize=10)
    fig.legend(loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    shown = f"{len(rows)} noisiest of {n_all} classes" if n_all > len(rows) else (
        f"{len(rows)} classes"
    )
    irrelevant = sum(r["n_irrelevant"] for r in per_class.to_pylist())
    judged = sum(per_class.column("n_images").to_pylist())
    ax.set_title(
        f"Relevance and review per class ({shown})\n"
        f"irrelevant in the end: {irrelevant} of {judged} images",
        fontsize=10,
    )
    return fig
