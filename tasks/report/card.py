"""The dataset card (``DATASET_CARD.md``, a Jinja2 template) and ``metrics.csv``.

`render_card` fills ``templates/dataset_card.md.j2`` from a `CardData`; `metrics_rows`
lists every number the card states. Values are formatted the same way in both (`fmt`).

The card follows "Datasheets for Datasets" (Gebru et al., 2021): motivation, composition,
collection process, preprocessing, uses, distribution, known biases, maintenance; under a
YAML header with the Hugging Face dataset card fields (`yaml_header`). Its figures come
from the analysis functions and the ``card_*`` named queries (`read_datasheet`); a section
whose tables are missing says so in a line.
"""

from __future__ import annotations

import csv
import io
import math
import shlex
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import jinja2
import pyarrow as pa

from tv100.storage.schemas import ANALYSIS_TABLES
from tv100.tasks.report.analysis import DatasetFacts, RelevanceTotals, relevance_totals
from tv100.tasks.report.config import (
    CAPTIONS,
    EXPERIMENT_CAPTIONS,
    EXPERIMENT_FIGURES,
    FIGURES,
    ReportConfig,
)
from tv100.tasks.report.datasheet import (
    FUNNEL_LABELS,
    Datasheet,
    datasheet_rows,
    empty_datasheet,
    to_yaml,
    tv100_version,
    yaml_header,
)
from tv100.tasks.report.imbalance import ImbalanceSummary
from tv100.tasks.report.labels import COUNTRY_NAMES, RECIPE_LABELS, recipe_order
from tv100.tasks.report.named_queries import load_query

TEMPLATE = "dataset_card.md.j2"
#: Classes the card's relevance table lists (the noisiest); the rest are counted.
RELEVANCE_ROWS = 20
#: The example query listing the images a human overruled, shown in the card.
OVERRULES_QUERY = "human_overrules"

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


def fmt(v: Any) -> str:
    """A value as the card and ``metrics.csv`` write it (floats to 6 significant digits)."""
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


def pct(v: float | None) -> str:
    """A fraction as a percentage with two decimals; ``–`` when unknown."""
    return "–" if v is None or math.isnan(v) else f"{100 * v:.2f}%"


def _stat(key: str, v: Any) -> str:
    if key == "head_share_20":
        return pct(v)
    if isinstance(v, float) and math.isfinite(v) and not v.is_integer():
        return f"{v:.4g}"
    return fmt(v)


def _md(s: Any) -> str:
    return fmt(s).replace("|", "\\|").replace("\n", " ")


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


def imbalance_table(summary: ImbalanceSummary) -> str:
    """`analysis.imbalance_summary` as a Markdown table: statistic, before, after cleaning."""
    return markdown_table(
        ["statistic", "before cleaning", "after cleaning"],
        [
            (
                label,
                _stat(k, getattr(summary.before, k)),
                _stat(k, getattr(summary.after, k)),
            )
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


#: The relevance totals the card and ``metrics.csv`` state: `RelevanceTotals` field, label.
RELEVANCE_LABELS = [
    ("classes", "classes of the dataset"),
    ("images", "images judged for relevance"),
    ("scored", "scored by the relevance scorer"),
    ("other_series", "flagged by the scorer: another series (`other_series`)"),
    ("offtopic", "flagged by the scorer: off-topic (`offtopic`)"),
    ("human_rejects", "rejected by a human"),
    ("human_removed", "removed by a human (the scorer kept them)"),
    ("human_overruled", "overruled by a human (accepted though flagged)"),
    ("irrelevant", "irrelevant in the end"),
    ("kept", "kept in the end"),
]


def metrics_rows(
    facts: DatasetFacts,
    summary: ImbalanceSummary,
    removed: Mapping[str, int],
    countries: pa.Table,
    accuracy: pa.Table,
    splits: pa.Table,
    config: ReportConfig,
    relevance: RelevanceTotals | None = None,
    datasheet: Datasheet | None = None,
) -> list[tuple[str, str, str, Any]]:
    """Every number of the card as ``(section, key, metric, value)`` rows (the relevance
    totals only when given: a root with a `relevance` table; the datasheet's numbers,
    `datasheet_rows`, when given)."""
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
        rows.append(("dataset", "", k.removeprefix("n_"), getattr(facts, k)))
    for stage in ("before", "after"):
        for k, _ in STAT_LABELS:
            value = getattr(getattr(summary, stage), k)
            rows.append(("imbalance", f"{stage}_cleaning", k, value))
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
    if relevance is not None:
        for key, _ in RELEVANCE_LABELS:
            rows.append(("relevance", "total", key, getattr(relevance, key)))
        rows.append(("relevance", "total", "irrelevant_share", relevance.irrelevant_share))
    if datasheet is not None:
        rows += datasheet_rows(datasheet)
    return rows


def relevance_class_table(per_class: pa.Table, limit: int | None = RELEVANCE_ROWS) -> str:
    """`analysis.relevance_per_class` as the card's Markdown table (the noisiest `limit`)."""
    rows = per_class.to_pylist()
    shown = pa.table({
        "series": [
            f"{r['title']} ({r['series_id']})" if r["title"] else r["series_id"] for r in rows
        ],
        "images": [r["n_images"] for r in rows],
        "other series": [r["n_other_series"] for r in rows],
        "off-topic": [r["n_offtopic"] for r in rows],
        "removed by a human": [r["n_human_removed"] for r in rows],
        "overruled by a human": [r["n_human_overruled"] for r in rows],
        "irrelevant": [r["n_irrelevant"] for r in rows],
        "kept": [r["n_kept"] for r in rows],
        "noise share": [pct(r["noise_share"]) for r in rows],
    })
    return arrow_markdown(shown, limit)


def csv_bytes(rows: Sequence[tuple[str, str, str, Any]]) -> bytes:
    """``metrics.csv``: a header, then `metrics_rows` with values as `fmt` writes them."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "key", "metric", "value"])
    w.writerows([(s, k, m, fmt(v)) for s, k, m, v in rows])
    return buf.getvalue().encode()


@dataclass(frozen=True)
class CardData:
    """What the dataset card states: the analysis results `write_report` collects.

    Attributes:
        root_url: the data root.
        config: the report's knobs (tiers, the metric and split of figure (d)).
        present: the analysis tables that exist.
        facts, sources, summary, removals, countries, start_years, accuracy, splits:
            the `tv100.tasks.report.analysis` results of the same names.
        figures: keys of the figures drawn (`FIGURES`).
        skipped: figure key -> why it was not drawn.
        relevance: `analysis.relevance_per_class`; None without a `relevance` table.
        datasheet: `tv100.tasks.report.datasheet.read_datasheet`'s figures; None: the card
            states those of an empty data root.
    """

    root_url: str
    config: ReportConfig
    present: frozenset[str]
    facts: DatasetFacts
    sources: pa.Table
    summary: ImbalanceSummary
    removals: pa.Table
    countries: pa.Table
    start_years: pa.Table
    accuracy: pa.Table
    splits: pa.Table
    figures: Collection[str]
    skipped: Mapping[str, str]
    relevance: pa.Table | None = None
    datasheet: Datasheet | None = None

    @property
    def relevance_totals(self) -> RelevanceTotals | None:
        """The relevance counts over the dataset's classes; None without `relevance`."""
        return None if self.relevance is None else relevance_totals(self.relevance)


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tv100.tasks.report", "templates"),
        autoescape=False,  # Markdown, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["fmt"] = fmt
    env.filters["pct"] = pct
    return env


def _accuracy_table(acc: list[dict[str, Any]]) -> str:
    recipes = recipe_order(a["recipe"] for a in acc)
    by = {(a["model_key"], a["recipe"]): a["value"] for a in acc}
    models = list(dict.fromkeys(a["model_key"] for a in acc))
    return markdown_table(
        ["model", *[RECIPE_LABELS.get(r, r) for r in recipes]],
        [(m, *[pct(by.get((m, r))) for r in recipes]) for m in models],
    )


def render_card(data: CardData) -> str:
    """The dataset card (Markdown): ``templates/dataset_card.md.j2`` filled from `data`."""
    facts, src, rem = data.facts, data.sources.to_pylist(), data.removals.to_pylist()
    acc = data.accuracy.to_pylist()
    counts = [
        ("series discovered", facts.n_series),
        ("image rows found by search", facts.n_images_found),
        ("images downloaded (status ok)", facts.n_images_downloaded),
        ("images after cleaning", facts.n_images_clean),
        ("classes in the dataset", facts.n_classes),
    ]
    totals = data.relevance_totals
    notes = [f"Figure {CAPTIONS[k]} skipped: {v}" for k, v in data.skipped.items()]
    notes += [MISSING_NOTES[t] for t in ANALYSIS_TABLES if t not in data.present]
    context = {
        "root_url": data.root_url,
        "facts": facts,
        "tiers": data.config.tiers,
        "metric": data.config.metric,
        "split": data.config.split,
        "present": data.present,
        "missing_notes": MISSING_NOTES,
        "counts_table": markdown_table(["what", "count"], counts),
        "splits": data.splits.to_pylist(),
        "series_sources": [f"{r['source']} ({r['n']})" for r in src if r["what"] == "series"],
        "image_sources": [f"{r['source']} ({r['n']})" for r in src if r["what"] == "images"],
        "removals_table": markdown_table(
            ["stage", "reason", "images", "series"],
            [(r["stage"], r["reason"], r["n_images"], r["n_series"]) for r in rem],
        )
        if rem
        else None,
        "imbalance_table": imbalance_table(data.summary),
        "start_years": data.start_years.to_pylist(),
        "accuracy_table": _accuracy_table(acc) if acc else None,
        "zeroshot_fallback": any(a["source"] == "zeroshot" for a in acc),
        "figures": [(CAPTIONS[k], f) for k, f in FIGURES.items() if k in data.figures]
        + [(EXPERIMENT_CAPTIONS[k], f) for k, f in EXPERIMENT_FIGURES.items()
           if k in data.figures],
        "notes": notes,
        "relevance": _relevance_context(data, totals) if totals is not None else None,
        "ds": _datasheet_context(data, data.datasheet or empty_datasheet(data.config)),
    }
    return _environment().get_template(TEMPLATE).render(context)


def _relevance_context(data: CardData, totals: RelevanceTotals) -> dict[str, Any]:
    """The template's ``relevance`` section: totals, the per-class table, the figure and the
    command listing the human overrules."""
    counts: list[tuple[str, Any]] = [  # the classes are in the section's first sentence
        (label, getattr(totals, key)) for key, label in RELEVANCE_LABELS if key != "classes"
    ]
    counts.append(("irrelevant share in the end", pct(totals.irrelevant_share)))
    sql = load_query(OVERRULES_QUERY).sql
    return {
        "totals": totals,
        "totals_table": markdown_table(["what", "images"], counts),
        "class_table": relevance_class_table(data.relevance)
        if data.relevance is not None
        else None,
        "figure": FIGURES["relevance"] if "relevance" in data.figures else None,
        "caption": CAPTIONS["relevance"],
        # the query holds no ", $ or backquote (tested), so it goes in double quotes as it is
        "overrules_command": f"tv100 sql --data {shlex.quote(data.root_url)} \"\n{sql}\n\"",
    }


#: What a missing datasheet table means for the card (one line each, in its section).
DATASHEET_NOTES = {
    "search": "No `search_pages` or `search_hits` table: no search recorded; the engines "
    "below are those of the `images` rows.",
    "reviews": "No review was made (no `reviews` table).",
    "relevance": "No `relevance` table: relevance was not scored, so the search noise is not "
    "measured.",
    "snapshots": "No snapshot yet (no `snapshots` table): a finished `tv100 build` records one.",
    "discover_fetches": "No `discover_fetches` table: the discover requests are not known.",
}


def _country(code: str) -> str:
    return f"{COUNTRY_NAMES.get(code, code)} ({code})"


def _row_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, Any]) -> str | None:
    """A Markdown table of `rows` (None when there are none); `columns` maps each header to
    a row's key or to a function of the row."""
    if not rows:
        return None
    cells = [
        [get(r) if callable(get) else r[get] for get in columns.values()] for r in rows
    ]
    return markdown_table(list(columns), cells)


def _datasheet_context(data: CardData, ds: Datasheet) -> dict[str, Any]:
    """The template's ``ds``: the datasheet's sections as Markdown tables and values."""
    countries = [r for r in ds.countries.to_pylist() if r["n_series"]]
    candidates = sorted(ds.countries.to_pylist(), key=lambda r: -r["n_candidates"])
    noise = ds.noise.to_pylist()
    optouts = ds.optouts.to_pylist()
    dups = ds.duplicates.to_pylist()
    popularity = {r["series_group"]: r for r in ds.popularity.to_pylist()}
    timeline = ds.timeline.to_pylist()
    search = {"search_pages", "search_hits"} & ds.present
    notes = {k: v for k, v in DATASHEET_NOTES.items() if k not in ds.present}
    if search:
        del notes["search"]
    return {
        "version": tv100_version(),
        "data_arg": shlex.quote(data.root_url),
        "yaml": "\n".join(to_yaml(yaml_header(data.facts, data.splits, ds))),
        "notes": notes,
        "classes_table": _row_table(ds.classes.to_pylist(), {
            "class": lambda r: "–" if r["class_index"] is None else r["class_index"],
            "series": "series_id", "title": "title", "year": "start_year",
            "countries": "countries", "train": "n_train", "val": "n_val", "test": "n_test",
            "images": "n_images", "tier": "tier"}),
        "countries_table": _row_table(countries, {
            "country": lambda r: _country(r["country"]), "classes": "n_series",
            "share": lambda r: pct(r["series_share"]), "images": "n_images",
            "image share": lambda r: pct(r["image_share"]),
            "candidate series": "n_candidates"}),
        "top_country": countries[0] if countries else None,
        "top_candidate": candidates[0] if candidates and candidates[0]["n_candidates"] else None,
        "country_name": _country,
        "engines_table": _row_table(ds.engines.to_pylist(), {
            "engine": "engine",
            **({"series searched": "n_series", "requests": "n_requests",
                "result pages": "n_result_pages", "no results": "n_no_results",
                "blocked": "n_blocked", "failed": "n_failed",
                "first request": "first_fetched_at", "last request": "last_fetched_at",
                "hits": "n_hits"} if search else {}),
            "image rows": "n_images", "downloaded": "n_downloaded"}),
        "timeline_table": _row_table([r for r in timeline if r["n"]], {
            "step": "step", "rows": "n", "first": "first_at", "last": "last_at"}),
        "timeline_empty": [r["step"] for r in timeline if not r["n"]],
        "funnel_table": _row_table(ds.funnel.to_pylist(), {
            "filter": lambda r: FUNNEL_LABELS.get(r["step"], r["step"]),
            "images removed": lambda r: "–" if r["step"] == "found" else r["n_removed"],
            "images left": "n_left"}) if data.facts.n_images_found else None,
        "selection_table": _row_table(ds.selection.to_pylist(), {
            "kept": "kept", "reason": "reason", "classes": "n_classes",
            "mean accuracy": lambda r: pct(r["mean_accuracy"])}),
        "rank": ds.rank,
        "moved_to_train": sum(r["n"] for r in dups if r["action"] == "move_to_train"),
        "duplicates_table": _row_table(dups, {
            "signal": "kind", "scope": "scope", "action": "action", "images": "n"}),
        "reviews": ds.reviews if "reviews" in ds.present else None,
        "optouts_table": _row_table(optouts, {
            "step": "step", "refused by": "directive", "requests or images": "n"}),
        "robots_total": sum(r["n"] for r in optouts if r["status"] == "robots_disallowed"),
        "optout_total": sum(r["n"] for r in optouts if r["status"] == "opted_out"),
        "popularity_table": _row_table(list(popularity.values()), {
            "series": "series_group", "count": "n_series", "with votes": "n_with_votes",
            "min": "min_votes", "Q1": "q1_votes", "median": "median_votes",
            "Q3": "q3_votes", "max": "max_votes", "mean": "mean_votes"}),
        "popularity": popularity,
        "noise_table": _row_table(noise, {
            "engine": lambda r: r["engine"] or "all engines", "judged": "n_judged",
            "scored": "n_scored", "flagged by the scorer": "n_flagged",
            "irrelevant in the end": "n_irrelevant",
            "irrelevant share": lambda r: pct(r["irrelevant_share"])}),
        "noise_total": next((r for r in noise if r["engine"] is None and r["n_judged"]), None),
        "snapshots_table": _row_table(ds.snapshots.to_pylist(), {
            "snapshot": "snapshot_id", "created": "created_at", "series": "n_series",
            "images ok": "n_images_ok", "cleaned": "n_cleaned", "kept classes": "n_kept"}),
        "latest_snapshot": ds.snapshots.to_pylist()[-1] if ds.snapshots.num_rows else None,
        "formats": ", ".join(f"{r['format']} ({r['n_images']})" for r in ds.formats.to_pylist()),
        "max_side": max((r["max_side"] or 0 for r in ds.formats.to_pylist()), default=None),
    }
