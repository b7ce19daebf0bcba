"""The report's figures computed from the tables: named SQL run on a catalog connection.

Every query lives in ``queries/<name>.sql`` (`tv100.tasks.report.named_queries`). `prepare`
makes a connection from `tv100.storage.catalog.connect` safe to analyse whatever stage the
build reached: each table of `tv100.storage.schemas.ANALYSIS_TABLES` gets every column of
its schema (`tv100.storage.catalog.complete_tables`: an empty view when not written yet,
NULLs for a column it lacks). It then adds the clean stage's verdict ``image_cleaning``
(`tv100.tasks.clean.cleaned`, the one definition of "cleaned") and the helper views:

- ``image_fate``: one row per `images` row with the first stage that removed it
  (``download``: status not ``ok``; ``quality``: junk; ``duplicates``: a dropped
  duplicate; ``relevance``: irrelevant to its series, found by the rank stage or rejected
  by a human; ``classes``: its series is not a kept class) and why, or NULLs when the
  image is in the cleaned dataset. Duplicates with ``action = 'move_to_train'`` stay in.
- ``clean_images``: the images "after cleaning" (``stage IS NULL``).
- ``series_counts``: per series, images found, downloaded and after cleaning, and
  ``in_dataset`` (see ``dataset_series``).
- ``dataset_series``: the dataset's classes: the kept classes when `classes` exists,
  else the series with at least one clean image, else (no `images` yet) every series.

The tables of `REVIEW_TABLES` (relevance scores and human reviews) are completed the same
way; the report shows them only where the `relevance` table exists. The pure imbalance
metrics are in `tv100.tasks.report.imbalance`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from tv100.storage.catalog import complete_tables
from tv100.storage.schemas import ANALYSIS_TABLES
from tv100.tasks.clean.cleaned import add_cleaning_view
from tv100.tasks.report.imbalance import ImbalanceSummary, imbalance_stats
from tv100.tasks.report.named_queries import HELPER_VIEWS, load_query
from tv100.tasks.train.config import RECIPES
from tv100.tasks.train.metrics import Tiers

#: The stages `image_fate` names, in pipeline order.
STAGES = ("download", "quality", "duplicates", "relevance", "classes")
#: Tables read besides `ANALYSIS_TABLES`: relevance scores and human reviews (`reviews` may
#: never be written: a build nobody reviewed).
REVIEW_TABLES = ("relevance", "reviews")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def prepare(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """Make a catalog connection ready for the analysis queries (idempotent).

    Args:
        con: a connection from `tv100.storage.catalog.connect`.

    Returns:
        the tables of `ANALYSIS_TABLES` and `REVIEW_TABLES` that really exist under the root.
    """
    present = complete_tables(con, ANALYSIS_TABLES + REVIEW_TABLES)
    add_cleaning_view(con)
    # Computed once per connection (temp tables, not views): the card's queries read
    # `image_fate` and its dependants many times over, and at a million images each pass
    # costs about a second (bench/analysis.py). A connection sees the tables as they were
    # when it was prepared.
    for view in HELPER_VIEWS:
        con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_ident(view)} AS {load_query(view).sql}")
    return present


def run_query(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> pa.Table:
    """Run the named query (after `prepare`) and return its full result as Arrow.

    Raises:
        KeyError: an unknown query name.
        TypeError: a parameter the query needs is missing.
    """
    q = load_query(name)
    prepare(con)
    missing = q.params - set(params)
    if missing:
        raise TypeError(f"query {name!r} needs parameters {sorted(missing)}")
    if name in HELPER_VIEWS:  # already computed by `prepare`: read it, do not compute again
        helper: pa.Table = con.sql(f"select * from {_ident(name)}").to_arrow_table()
        return helper
    rel = con.sql(q.sql, params={k: v for k, v in params.items() if k in q.params} or None)
    result: pa.Table = rel.to_arrow_table()
    return result


def images_per_series(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Per series: ``n_found``, ``n_downloaded`` (before cleaning), ``n_clean``, ``in_dataset``."""
    return run_query(con, "images_per_series")


def class_distribution(
    con: duckdb.DuckDBPyConnection, stage: str = "after", tiers: Tiers | None = None
) -> pa.Table:
    """Classes sorted by images, descending: rank, series_id, title, n_images, share,
    cumulative_share, tier.

    Args:
        con: a catalog connection.
        stage: ``before`` (downloaded images of every series that has any) or ``after``
            (clean images of the dataset's classes, empty classes included).
        tiers: long-tail thresholds.
    """
    if stage not in ("before", "after"):
        raise ValueError(f"stage={stage!r}; expected 'before' or 'after'")
    tiers = tiers or Tiers()
    return run_query(con, "class_distribution", stage=stage, many=tiers.many, few=tiers.few)


def imbalance_summary(
    con: duckdb.DuckDBPyConnection, tiers: Tiers | None = None
) -> ImbalanceSummary:
    """`imbalance_stats` of images per class before and after cleaning."""
    before, after = (
        imbalance_stats(
            class_distribution(con, stage, tiers).column("n_images").to_pylist(), tiers
        )
        for stage in ("before", "after")
    )
    return ImbalanceSummary(before=before, after=after)


def removals(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Images removed per stage and reason: stage, reason, n_images, n_series."""
    return run_query(con, "removals")


def removals_by_stage(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Images removed per stage, every stage of `STAGES` listed (0 when none)."""
    out = dict.fromkeys(STAGES, 0)
    for row in removals(con).to_pylist():
        out[row["stage"]] += row["n_images"]
    return out


def countries(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Dataset classes per country (first listed; ``unknown`` when none): country,
    n_series, share."""
    return run_query(con, "countries")


def start_years(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Dataset classes per start year: start_year, n_series."""
    return run_query(con, "start_years")


#: The novelty figure's queries and the tables they read.
NOVELTY_QUERIES = ("novelty_matrix", "unseen_confusions")
NOVELTY_TABLES = frozenset({"zeroshot", "classes"})


def novelty(
    con: duckdb.DuckDBPyConnection, present: frozenset[str]
) -> tuple[pa.Table, pa.Table] | None:
    """The rows of the novelty figure (`NOVELTY_QUERIES`), or None without the rank stage's
    tables (`NOVELTY_TABLES`). Tables from before the seen thresholds and confusions were
    recorded read with those columns null (`prepare`)."""
    if not NOVELTY_TABLES <= present:
        return None
    matrix, confusions = (run_query(con, name) for name in NOVELTY_QUERIES)
    return matrix, confusions


def model_accuracy(
    con: duckdb.DuckDBPyConnection, metric: str = "top1", split: str = "test"
) -> pa.Table:
    """Accuracy per model and recipe (zero-shot vs fine-tuned), long format.

    Among several runs of one model and recipe, the one best on ``val`` is reported
    (its `split` value). A model with no zero-shot row in `metrics` gets one from the
    `zeroshot` table: the image-weighted mean over the dataset's classes
    (``source = 'zeroshot'``). Values are fractions (0..1), as the tables store them.
    Rows are sorted by model, then recipe in the train stage's `RECIPES` order.

    Returns:
        model_key, recipe, value, run_id, n_runs, source.
    """
    return run_query(con, "model_accuracy", metric=metric, split=split, recipes=list(RECIPES))


def split_sizes(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Images and classes per split (train, val, test): split, n_images, n_classes."""
    return run_query(con, "split_sizes")


@dataclass(frozen=True)
class DatasetFacts:
    """Counts and date ranges for the dataset card (the ``dataset_facts`` query's row).

    Counts are 0 and dates/years None for the tables not written yet.
    """

    n_series: int
    min_start_year: int | None
    max_start_year: int | None
    first_discovered_at: datetime | None
    last_discovered_at: datetime | None
    n_images_found: int
    n_images_downloaded: int
    first_downloaded_at: datetime | None
    last_downloaded_at: datetime | None
    n_image_hosts: int
    n_images_clean: int
    n_classes: int


def dataset_facts(con: duckdb.DuckDBPyConnection) -> DatasetFacts:
    """Counts and date ranges for the dataset card."""
    return DatasetFacts(**run_query(con, "dataset_facts").to_pylist()[0])


def sources(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Series per listing source and images per search engine: what, source, n."""
    return run_query(con, "sources")


def relevance_per_class(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Relevance and review per class of the dataset, noisiest first (``relevance_per_class``).

    The human decision on an image is its latest review, applied over the scorer's as the
    rank and train stages apply it (`tv100.tasks.review.decisions.apply_reviews`): a reject
    makes it irrelevant, an accept keeps it.

    Returns:
        series_id, title, n_images (judged), n_scored, n_other_series and n_offtopic
        (flagged by the scorer), n_human_rejects, n_human_removed (rejected though the
        scorer kept them), n_human_overruled (accepted though flagged),
        n_found_other_series and n_found_offtopic (flagged and irrelevant in the end),
        n_irrelevant, n_kept (final), noise_share (n_irrelevant / n_images; None for a
        class with no judged image).
    """
    return run_query(con, "relevance_per_class")


@dataclass(frozen=True)
class RelevanceTotals:
    """The `relevance_per_class` counts summed over the dataset's classes.

    Attributes:
        classes: classes of the dataset.
        images: images judged for relevance.
        scored: images the scorer scored (0: scoring was off).
        other_series: flagged by the scorer as images of another series.
        offtopic: flagged by the scorer as images of no series.
        human_rejects: rejected by a human (the scorer's flags confirmed included).
        human_removed: rejected by a human though the scorer kept them.
        human_overruled: accepted by a human though the scorer flagged them.
        irrelevant: irrelevant in the end.
        kept: kept in the end.
    """

    classes: int
    images: int
    scored: int
    other_series: int
    offtopic: int
    human_rejects: int
    human_removed: int
    human_overruled: int
    irrelevant: int
    kept: int

    @property
    def irrelevant_share(self) -> float | None:
        """The share of the judged images irrelevant in the end; None when none was judged."""
        return self.irrelevant / self.images if self.images else None


def relevance_totals(per_class: pa.Table) -> RelevanceTotals:
    """`RelevanceTotals` of a `relevance_per_class` table."""
    def total(column: str) -> int:
        return int(sum(per_class.column(column).to_pylist()))

    return RelevanceTotals(
        classes=per_class.num_rows,
        images=total("n_images"),
        scored=total("n_scored"),
        other_series=total("n_other_series"),
        offtopic=total("n_offtopic"),
        human_rejects=total("n_human_rejects"),
        human_removed=total("n_human_removed"),
        human_overruled=total("n_human_overruled"),
        irrelevant=total("n_irrelevant"),
        kept=total("n_kept"),
    )
