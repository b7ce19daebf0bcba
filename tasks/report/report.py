"""The report: the paper's figures (b), (c), (d), ``metrics.csv`` and a dataset card.

`write_report` reads the tables through `tv100.tasks.report.analysis` and writes under
``<data>/report/``:

- ``fig_b_country_distribution.png``: the dataset's classes per country (pie);
- ``fig_c_instance_distribution.png``: images per class after cleaning, sorted
  descending (long-tail bars with the tier thresholds);
- ``fig_d_zeroshot_vs_finetuned.png``: accuracy per model, zero-shot vs trained recipes;
- ``metrics.csv``: every number the card states, one per row (section, key, metric, value);
- ``DATASET_CARD.md``: sources, dates, filters, counts, removals by reason, imbalance,
  licence notes.

A figure whose tables are missing or empty is skipped, its stale file removed and the
reason noted in the card; nothing here raises for a build that stopped early. Files are
rewritten only when their bytes change, and nothing in them depends on the clock, so a
rerun on unchanged tables changes no file. Figures use matplotlib's Agg canvas directly
(no pyplot, no display needed).
"""

from __future__ import annotations

import csv
import io
import math
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from prefect import task

from tv100.storage.catalog import connect
from tv100.storage.root import DataRoot, resolve_root, write_bytes_atomic
from tv100.tasks.report import analysis
from tv100.tasks.report.analysis import Tiers

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

REPORT_DIR = "report"
CARD = "DATASET_CARD.md"
METRICS_CSV = "metrics.csv"
FIGURES = {
    "country_distribution": "fig_b_country_distribution.png",
    "instance_distribution": "fig_c_instance_distribution.png",
    "performance": "fig_d_zeroshot_vs_finetuned.png",
}

#: Display names of ISO 3166 codes (the paper's labels for its five countries).
COUNTRY_NAMES = {
    "CN": "China",
    "JP": "Japan",
    "KR": "Korea",
    "TH": "Thailand",
    "US": "USA",
    "TW": "Taiwan",
    "HK": "Hong Kong",
    "GB": "UK",
    "IN": "India",
    "FR": "France",
    "DE": "Germany",
    "ES": "Spain",
    "IT": "Italy",
    "BR": "Brazil",
    "MX": "Mexico",
    "CA": "Canada",
    "AU": "Australia",
    "PH": "Philippines",
    "ID": "Indonesia",
    "VN": "Vietnam",
    "TR": "Turkey",
    "RU": "Russia",
    "SE": "Sweden",
    "NO": "Norway",
    "DK": "Denmark",
    "NL": "Netherlands",
    "BE": "Belgium",
    "PL": "Poland",
    "AR": "Argentina",
    "CO": "Colombia",
    "NG": "Nigeria",
    "ZA": "South Africa",
    "EG": "Egypt",
    "IL": "Israel",
    "SG": "Singapore",
    "MY": "Malaysia",
    "unknown": "Unknown",
}
RECIPE_LABELS = {
    "zeroshot": "Zero-Shot",
    "linear": "Linear probe",
    "finetune": "Fine-tuned",
    "wiseft": "WiSE-FT",
}
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

#: What a missing table means for the card.
MISSING_NOTES = {
    "series": "No `series` table: the discover stage has not run.",
    "images": "No `images` table: the collect stage has not run; there are no image counts.",
    "quality": "No `quality` table: junk filters not applied to the counts.",
    "duplicates": "No `duplicates` table: duplicates not removed from the counts.",
    "zeroshot": "No `zeroshot` table: CLIP zero-shot ranking not run.",
    "classes": "No `classes` table: no class selection; every series with a clean image "
    "counts as a class.",
    "splits": "No `splits` table: no train/val/test split yet.",
    "metrics": "No `metrics` table: no trained or evaluated model yet.",
}


@dataclass(frozen=True)
class ReportConfig:
    """What the report shows.

    Attributes:
        tiers: long-tail thresholds (many-shot above, few-shot below).
        metric: the `metrics.metric` plotted in figure (d), e.g. ``top1``.
        split: the `metrics.split` plotted in figure (d), e.g. ``test``.
        dpi: resolution of the PNG figures (50..600).
        max_countries: pie slices before the rest are merged into "Other" (1..20).
    """

    tiers: Tiers = field(default_factory=Tiers)
    metric: str = "top1"
    split: str = "test"
    dpi: int = 150
    max_countries: int = 7

    def __post_init__(self) -> None:
        if not 50 <= self.dpi <= 600:
            raise ValueError(f"ReportConfig.dpi={self.dpi!r}; expected 50..600")
        if not 1 <= self.max_countries <= 20:
            raise ValueError(f"ReportConfig.max_countries={self.max_countries!r}; expected 1..20")


# ---- figures ----------------------------------------------------------------------------


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
    tier_n = analysis.tier_counts(counts, tiers)
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
    known = [r for r in analysis.RECIPES if any(x["recipe"] == r for x in rows)]
    recipes = known + sorted({r["recipe"] for r in rows} - set(known))
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


# ---- card and metrics ------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf"
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.6g}"
    if isinstance(v, datetime):
        return v.isoformat(timespec="seconds")
    return str(v)


def _pct(v: float | None) -> str:
    return "–" if v is None or math.isnan(v) else f"{100 * v:.2f}%"


def _stat(key: str, v: Any) -> str:
    if key == "head_share_20":
        return _pct(v)
    if isinstance(v, float) and math.isfinite(v) and not v.is_integer():
        return f"{v:.4g}"
    return _fmt(v)


def _md(s: Any) -> str:
    return _fmt(s).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; cells are formatted like the card's (pipes escaped)."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def arrow_markdown(table: pa.Table, limit: int | None = None) -> str:
    """An Arrow table as Markdown, the first `limit` rows, with a count of the rest."""
    rows = [list(r.values()) for r in table.to_pylist()[:limit]]
    text = markdown_table(table.column_names, rows)
    if limit is not None and table.num_rows > limit:
        text += f"\n\n({table.num_rows - limit} more rows)"
    return text


def imbalance_table(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """`analysis.imbalance_summary` as a Markdown table: statistic, before, after cleaning."""
    return markdown_table(
        ["statistic", "before cleaning", "after cleaning"],
        [
            (label, _stat(k, summary["before"][k]), _stat(k, summary["after"][k]))
            for k, label in STAT_LABELS
        ],
    )


STAT_LABELS = [
    ("classes", "classes with images"),
    ("empty", "classes with no image"),
    ("images", "images"),
    ("max", "largest class"),
    ("min", "smallest class"),
    ("median", "median class"),
    ("mean", "mean class"),
    ("imbalance_ratio", "imbalance ratio (max/min)"),
    ("gini", "Gini coefficient"),
    ("many", "many-shot classes"),
    ("medium", "medium-shot classes"),
    ("few", "few-shot classes"),
    ("head_share_20", "share of images in the top 20% of classes"),
]


def metrics_rows(
    facts: Mapping[str, Any],
    summary: Mapping[str, Mapping[str, Any]],
    removed: Mapping[str, int],
    countries: pa.Table,
    accuracy: pa.Table,
    splits: pa.Table,
    config: ReportConfig,
) -> list[tuple[str, str, str, Any]]:
    """Every number of the card as ``(section, key, metric, value)`` rows."""
    rows: list[tuple[str, str, str, Any]] = []
    for k in (
        "n_series",
        "n_images_found",
        "n_images_downloaded",
        "n_images_clean",
        "n_classes",
        "n_image_hosts",
        "min_start_year",
        "max_start_year",
    ):
        rows.append(("dataset", "", k.removeprefix("n_"), facts.get(k)))
    for stage in ("before", "after"):
        for k, _ in STAT_LABELS:
            rows.append(("imbalance", f"{stage}_cleaning", k, summary[stage][k]))
    rows.append(("imbalance", "tiers", "many", config.tiers.many))
    rows.append(("imbalance", "tiers", "few", config.tiers.few))
    for stage, n in removed.items():
        rows.append(("removals", stage, "images", n))
    for r in countries.to_pylist():
        rows.append(("countries", r["country"], "classes", r["n_series"]))
    for r in splits.to_pylist():
        rows.append(("splits", r["split"], "images", r["n_images"]))
        rows.append(("splits", r["split"], "classes", r["n_classes"]))
    for r in accuracy.to_pylist():
        rows.append(
            (
                "accuracy",
                r["model_key"],
                f"{r['recipe']}_{config.metric}_{config.split}",
                r["value"],
            )
        )
    return rows


def _csv_bytes(rows: Sequence[tuple[str, str, str, Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "key", "metric", "value"])
    w.writerows([(s, k, m, _fmt(v)) for s, k, m, v in rows])
    return buf.getvalue().encode()


def render_card(ctx: Mapping[str, Any]) -> str:
    """The dataset card (Markdown) from the context `write_report` collects."""
    facts, present, cfg = ctx["facts"], ctx["present"], ctx["config"]
    summary, figures, skipped = ctx["summary"], ctx["figures"], ctx["skipped"]
    lines = [
        "# Dataset card",
        "",
        f"Data root: `{ctx['root_url']}`. Classes are TV series a pre-trained CLIP is expected "
        "not to know, collected the way TV100 was (Zhou et al., arXiv 2404.12407): series "
        "listed from IMDb, images found with image search, junk and duplicates removed, the "
        "series CLIP recognises worst zero-shot kept. Generated by `tv100 report` from the "
        "tables; every number is also in `metrics.csv`.",
        "",
        "## Counts",
        "",
        markdown_table(
            ["what", "count"],
            [
                ("series discovered", facts["n_series"]),
                ("image rows found by search", facts["n_images_found"]),
                ("images downloaded (status ok)", facts["n_images_downloaded"]),
                ("images after cleaning", facts["n_images_clean"]),
                ("classes in the dataset", facts["n_classes"]),
            ],
        ),
        "",
    ]
    splits = ctx["splits"].to_pylist()
    if splits:
        lines += [
            "Splits: "
            + ", ".join(
                f"{r['split']} {r['n_images']} images ({r['n_classes']} classes)" for r in splits
            )
            + ".",
            "",
        ]
    lines += [
        "## Sources",
        "",
    ]
    src = ctx["sources"].to_pylist()
    series_src = [f"{r['source']} ({r['n']})" for r in src if r["what"] == "series"]
    image_src = [f"{r['source']} ({r['n']})" for r in src if r["what"] == "images"]
    lines += [
        f"- Series listed from: {', '.join(series_src) or 'none yet'}.",
        f"- Image search engines (image rows): {', '.join(image_src) or 'none yet'}; "
        f"downloaded images come from {facts['n_image_hosts']} host(s).",
        "",
        "## Dates",
        "",
        f"- Series discovered: {_fmt(facts['first_discovered_at']) or '–'} to "
        f"{_fmt(facts['last_discovered_at']) or '–'}.",
        f"- Images downloaded: {_fmt(facts['first_downloaded_at']) or '–'} to "
        f"{_fmt(facts['last_downloaded_at']) or '–'}.",
        f"- Series start years: {_fmt(facts['min_start_year']) or '–'} to "
        f"{_fmt(facts['max_start_year']) or '–'}.",
        "",
        "## Filters",
        "",
        "- Discover: TV series and mini-series that started after the build's `--since` year "
        "(see the build's logged parameters; start years above).",
        "- Download: only images with status `ok` are used.",
    ]
    stage_lines = {
        "quality": "- Junk filters (`quality`): images with `is_junk` removed.",
        "duplicates": "- Duplicates (`duplicates`): exact and near duplicates with action "
        "`drop` removed; `move_to_train` rows stay in the dataset.",
        "classes": "- Class selection (`classes`): only kept classes are counted.",
    }
    for t, text in stage_lines.items():
        lines.append(text if t in present else f"- {MISSING_NOTES[t]}")
    lines += [
        "",
        "## Removals by reason",
        "",
        "Each image is counted once, at the first stage that removed it.",
        "",
    ]
    rem = ctx["removals"].to_pylist()
    if rem:
        lines.append(
            markdown_table(
                ["stage", "reason", "images", "series"],
                [(r["stage"], r["reason"], r["n_images"], r["n_series"]) for r in rem],
            )
        )
    else:
        lines.append("No image was removed.")
    lines += [
        "",
        "## Class imbalance",
        "",
        f"Before cleaning: downloaded images of every series that has any. After cleaning: "
        f"clean images of the dataset's classes. Tiers: many-shot > {cfg.tiers.many} "
        f"images, medium-shot {cfg.tiers.few}–{cfg.tiers.many}, few-shot "
        f"< {cfg.tiers.few}.",
        "",
        imbalance_table(summary),
        "",
        "## Countries and start years",
        "",
    ]
    crow = ctx["countries"].to_pylist()
    if crow:
        lines.append(
            markdown_table(
                ["country", "classes", "share"],
                [
                    (
                        f"{COUNTRY_NAMES.get(r['country'], r['country'])} ({r['country']})",
                        r["n_series"],
                        _pct(r["share"]),
                    )
                    for r in crow
                ],
            )
        )
        lines.append("")
        years = ctx["start_years"].to_pylist()
        lines.append(
            "Start years: "
            + ", ".join(f"{_fmt(r['start_year']) or 'unknown'}: {r['n_series']}" for r in years)
            + "."
        )
    else:
        lines.append("No classes yet.")
    lines += ["", f"## Zero-shot vs fine-tuned ({cfg.metric}, {cfg.split} split)", ""]
    acc = ctx["accuracy"].to_pylist()
    if acc:
        recipes = [r for r in analysis.RECIPES if any(a["recipe"] == r for a in acc)]
        recipes += sorted({a["recipe"] for a in acc} - set(recipes))
        by = {(a["model_key"], a["recipe"]): a["value"] for a in acc}
        models = list(dict.fromkeys(a["model_key"] for a in acc))
        lines.append(
            markdown_table(
                ["model", *[RECIPE_LABELS.get(r, r) for r in recipes]],
                [(m, *[_pct(by.get((m, r))) for r in recipes]) for m in models],
            )
        )
        if any(a["source"] == "zeroshot" for a in acc):
            lines += [
                "",
                "Zero-shot values without a `metrics` row are the image-weighted "
                "mean top-1 of the `zeroshot` table over the dataset's classes.",
            ]
        lines += ["", "With several runs of a model and recipe, the run best on `val` is shown."]
    else:
        lines.append("No accuracy yet.")
    lines += ["", "## Figures", ""]
    captions = {
        "country_distribution": "(b) Country distribution",
        "instance_distribution": "(c) Instance distribution",
        "performance": "(d) Zero-shot vs fine-tuned",
    }
    for key, fname in FIGURES.items():
        if key in figures:
            lines.append(f"![{captions[key]}]({fname})")
            lines.append("")
    notes = [f"- Figure {captions[k]} skipped: {v}" for k, v in skipped.items()]
    notes += [f"- {MISSING_NOTES[t]}" for t in analysis.TABLE_COLUMNS if t not in present]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    lines += [
        "## Licence and use",
        "",
        "- The images remain the copyright of their owners. They were collected from public "
        "web pages for non-commercial research use only (evaluating how models learn classes "
        "they have not seen); do not redistribute the images themselves: share the tables "
        "(URLs, hashes) instead.",
        "- Series metadata comes from IMDb (non-commercial datasets or public pages) and is "
        "subject to IMDb's terms for personal and non-commercial use.",
        "- To take an image out, add its id or URL to the junk filters' exclusion list and "
        "rebuild; the card and figures follow the tables.",
        "",
    ]
    return "\n".join(lines)


# ---- the report ------------------------------------------------------------------------


def _put(root: DataRoot, name: str, data: bytes) -> str:
    """Write ``report/<name>`` unless it already holds exactly these bytes."""
    rel = posixpath.join(REPORT_DIR, name)
    path = root.path(rel)
    if root.fs.exists(path):
        with root.fs.open(path, "rb") as f:
            if f.read() == data:
                return str(path)
    return write_bytes_atomic(root, rel, data)


def write_report(root: DataRoot | str, config: ReportConfig | None = None) -> dict[str, Any]:
    """Write the figures, ``metrics.csv`` and ``DATASET_CARD.md`` under ``<root>/report/``.

    Args:
        root: the data root (a `DataRoot`, or a path or URL).
        config: thresholds and what figure (d) shows.

    Returns:
        ``report_dir``; ``files`` (name -> path written); ``skipped`` (figure -> why);
        ``tables_present``; ``imbalance`` (`analysis.imbalance_summary`); ``removals``
        (images per stage).
    """
    config = config or ReportConfig()
    root = resolve_root(root) if isinstance(root, str) else root
    root.ensure()
    con = connect(root)
    try:
        present = analysis.prepare(con)
        ctx: dict[str, Any] = {
            "root_url": root.url,
            "config": config,
            "present": present,
            "facts": analysis.dataset_facts(con),
            "sources": analysis.sources(con),
            "summary": analysis.imbalance_summary(con, config.tiers),
            "removals": analysis.removals(con),
            "removed": analysis.removals_by_stage(con),
            "countries": analysis.countries(con),
            "start_years": analysis.start_years(con),
            "distribution": analysis.class_distribution(con, "after", config.tiers),
            "accuracy": analysis.model_accuracy(con, config.metric, config.split),
            "splits": analysis.split_sizes(con),
        }
    finally:
        con.close()

    figures: dict[str, Figure] = {}
    skipped: dict[str, str] = {}
    if "series" not in present:
        skipped["country_distribution"] = "the `series` table is missing."
    elif ctx["countries"].num_rows == 0:
        skipped["country_distribution"] = "the dataset has no classes yet."
    else:
        figures["country_distribution"] = plot_country_distribution(
            ctx["countries"], config.max_countries
        )
    if "images" not in present:
        skipped["instance_distribution"] = "the `images` table is missing."
    elif sum(ctx["distribution"].column("n_images").to_pylist()) == 0:
        skipped["instance_distribution"] = "no image is left after cleaning."
    else:
        figures["instance_distribution"] = plot_instance_distribution(
            ctx["distribution"], config.tiers
        )
    if not {"metrics", "zeroshot"} & present:
        skipped["performance"] = "neither a `metrics` nor a `zeroshot` table exists yet."
    elif ctx["accuracy"].num_rows == 0:
        skipped["performance"] = (
            f"no `{config.metric}` on the `{config.split}` split for any model yet."
        )
    else:
        n_classes = ctx["facts"]["n_classes"]
        figures["performance"] = plot_performance(
            ctx["accuracy"], chance=1 / n_classes if n_classes else None
        )
    ctx["figures"], ctx["skipped"] = figures, skipped

    files: dict[str, str] = {}
    for key, fname in FIGURES.items():
        if key in figures:
            files[key] = _put(root, fname, figure_png(figures[key], config.dpi))
        else:
            stale = root.path(REPORT_DIR, fname)
            if root.fs.exists(stale):
                root.fs.rm(stale)
    rows = metrics_rows(
        ctx["facts"],
        ctx["summary"],
        ctx["removed"],
        ctx["countries"],
        ctx["accuracy"],
        ctx["splits"],
        config,
    )
    files["metrics"] = _put(root, METRICS_CSV, _csv_bytes(rows))
    files["card"] = _put(root, CARD, render_card(ctx).encode())
    return {
        "report_dir": root.path(REPORT_DIR),
        "files": files,
        "skipped": skipped,
        "tables_present": sorted(present),
        "imbalance": ctx["summary"],
        "removals": ctx["removed"],
    }


@task(name="write-report")
def report_task(data: str, many: int = 100, few: int = 20) -> dict[str, Any]:
    """Prefect wrapper of `write_report` (uncached: it reads whatever the tables hold now)."""
    return write_report(resolve_root(data), ReportConfig(tiers=Tiers(many=many, few=few)))
