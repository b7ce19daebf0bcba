"""The report: the paper's figures (b), (c), (d), ``metrics.csv`` and a dataset card.

`write_report` reads the tables through `tv100.tasks.report.analysis` and writes under
``<data>/report/`` (names in `tv100.tasks.report.config`):

- ``fig_b_country_distribution.png``: the dataset's classes per country (pie);
- ``fig_c_instance_distribution.png``: images per class after cleaning, sorted
  descending (long-tail bars with the tier thresholds);
- ``fig_d_zeroshot_vs_finetuned.png``: accuracy per model, zero-shot vs trained recipes;
- ``relevance.png``: per class, the images found irrelevant by the scorer, removed or
  overruled by a human, and kept (only where the `relevance` table exists);
- ``novelty.png``: zero-shot top-1 per candidate series and ranking model, and what each
  kept class is mistaken for (`tv100.tasks.report.novelty_figure`);
- the card also links ``curves.png`` and ``longtail.png`` where `tv100 experiment` wrote
  them (`tv100.tasks.report.config.EXPERIMENT_FIGURES`);
- ``metrics.csv``: every number the card states, one per row (section, key, metric, value);
- ``DATASET_CARD.md``: sources, dates, filters, counts, removals by reason, relevance and
  review, imbalance, licence notes.

A figure whose tables are missing or empty is skipped, its stale file removed and the
reason noted in the card; one of `tv100.tasks.report.config.OPTIONAL_FIGURES` whose table
is missing (a build from before that table) is left out without a note. Nothing here
raises for a build that stopped early. Files are rewritten only when their bytes change,
and nothing in them depends on the clock, so a rerun on unchanged tables changes no file.
"""

from __future__ import annotations

import posixpath
from dataclasses import replace
from typing import TYPE_CHECKING

import pyarrow as pa
from prefect import task

from tv100.storage.catalog import connect
from tv100.storage.root import DataRoot, write_bytes_atomic
from tv100.tasks.report import analysis
from tv100.tasks.report.card import CardData, csv_bytes, metrics_rows, render_card
from tv100.tasks.report.config import (
    CARD,
    EXPERIMENT_FIGURES,
    FIGURES,
    METRICS_CSV,
    REPORT_DIR,
    ReportConfig,
    ReportResult,
)
from tv100.tasks.report.datasheet import read_datasheet
from tv100.tasks.report.figures import (
    figure_png,
    plot_country_distribution,
    plot_instance_distribution,
    plot_performance,
    plot_relevance,
)
from tv100.tasks.report.novelty_figure import plot_novelty

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def write_report_file(root: DataRoot, name: str, data: bytes) -> str:
    """Write ``report/<name>`` unless it already holds exactly these bytes."""
    rel = posixpath.join(REPORT_DIR, name)
    path = root.path(rel)
    if root.fs.exists(path):
        with root.fs.open(path, "rb") as f:
            if f.read() == data:
                return str(path)
    return write_bytes_atomic(root, rel, data)


def _figures(
    data: CardData,
    distribution: pa.Table,
    config: ReportConfig,
    novelty: tuple[pa.Table, pa.Table] | None = None,
) -> tuple[dict[str, Figure], dict[str, str]]:
    """The figures the tables allow, and why each other one is skipped."""
    figures: dict[str, Figure] = {}
    skipped: dict[str, str] = {}
    if novelty is None:
        skipped["novelty"] = "the `zeroshot` and `classes` tables (the rank stage) are missing."
    else:
        matrix, confusions = novelty
        if matrix.num_rows == 0:
            skipped["novelty"] = "no series was classified zero-shot yet."
        else:
            figures["novelty"] = plot_novelty(matrix, confusions)
    if "series" not in data.present:
        skipped["country_distribution"] = "the `series` table is missing."
    elif data.countries.num_rows == 0:
        skipped["country_distribution"] = "the dataset has no classes yet."
    else:
        figures["country_distribution"] = plot_country_distribution(
            data.countries, config.max_countries
        )
    if "images" not in data.present:
        skipped["instance_distribution"] = "the `images` table is missing."
    elif sum(distribution.column("n_images").to_pylist()) == 0:
        skipped["instance_distribution"] = "no image is left after cleaning."
    else:
        figures["instance_distribution"] = plot_instance_distribution(distribution, config.tiers)
    if not {"metrics", "zeroshot"} & data.present:
        skipped["performance"] = "neither a `metrics` nor a `zeroshot` table exists yet."
    elif data.accuracy.num_rows == 0:
        skipped["performance"] = (
            f"no `{config.metric}` on the `{config.split}` split for any model yet."
        )
    else:
        n_classes = data.facts.n_classes
        figures["performance"] = plot_performance(
            data.accuracy, chance=1 / n_classes if n_classes else None
        )
    totals = data.relevance_totals
    if data.relevance is None or totals is None:  # no `relevance` table: left out unnoted
        return figures, skipped
    if totals.images == 0:
        skipped["relevance"] = "no image of the dataset's classes was judged for relevance."
    elif totals.scored == 0 and totals.human_rejects + totals.human_overruled == 0:
        skipped["relevance"] = (
            "relevance scoring was off (`--no-relevance`) and no human has reviewed an image."
        )
    else:
        figures["relevance"] = plot_relevance(data.relevance)
    return figures, skipped


def write_report(root: DataRoot, config: ReportConfig | None = None) -> ReportResult:
    """Write the figures, ``metrics.csv`` and ``DATASET_CARD.md`` under ``<root>/report/``.

    Args:
        root: the data root.
        config: thresholds and what figure (d) shows.

    Returns:
        the report folder, the files written and the figures skipped (with why).
    """
    config = config or ReportConfig()
    root.ensure()
    con = connect(root)
    try:
        present = analysis.prepare(con)
        data = CardData(
            root_url=root.url,
            config=config,
            present=present,
            facts=analysis.dataset_facts(con),
            sources=analysis.sources(con),
            summary=analysis.imbalance_summary(con, config.tiers),
            removals=analysis.removals(con),
            countries=analysis.countries(con),
            start_years=analysis.start_years(con),
            accuracy=analysis.model_accuracy(con, config.metric, config.split),
            splits=analysis.split_sizes(con),
            figures=(),
            skipped={},
            relevance=(
                analysis.relevance_per_class(con) if "relevance" in present else None
            ),
            datasheet=read_datasheet(con, config),
        )
        removed = analysis.removals_by_stage(con)
        distribution = analysis.class_distribution(con, "after", config.tiers)
        novelty = analysis.novelty(con, present)
    finally:
        con.close()

    figures, skipped = _figures(data, distribution, config, novelty)
    files: dict[str, str] = {}
    for key, fname in FIGURES.items():
        if key in figures:
            files[key] = write_report_file(root, fname, figure_png(figures[key], config.dpi))
        else:
            stale = root.path(REPORT_DIR, fname)
            if root.fs.exists(stale):
                root.fs.rm(stale)
    rows = metrics_rows(
        data.facts, data.summary, removed, data.countries, data.accuracy, data.splits, config,
        relevance=data.relevance_totals, datasheet=data.datasheet,
    )
    files["metrics"] = write_report_file(root, METRICS_CSV, csv_bytes(rows))
    experiments = {k for k, f in EXPERIMENT_FIGURES.items()
                   if root.fs.exists(root.path(REPORT_DIR, f))}
    card = render_card(replace(data, figures=frozenset(figures) | experiments, skipped=skipped))
    files["card"] = write_report_file(root, CARD, card.encode())
    return ReportResult(report_dir=root.path(REPORT_DIR), files=files, skipped=skipped)


@task(name="write-report")
def report_task(root: DataRoot, config: ReportConfig) -> ReportResult:
    """Prefect wrapper of `write_report` (uncached: it reads whatever the tables hold now)."""
    return write_report(root, config)
