"""Class-imbalance and accuracy figures computed from the tables, SQL kept in one place.

Every query lives in `QUERIES` (name, description, SQL, tables read). Those marked
``example`` read only the pipeline's own tables, take no parameters and run as they are
with ``tv100 sql``; the others read the helper views that `prepare` adds to a catalog
connection and may take ``$few``/``$many``/``$metric``/``$split`` parameters.

`prepare` makes a connection from `tv100.storage.catalog.connect` safe to analyse whatever
stage the build reached: a table not written yet becomes an empty view with the columns
the queries read, and a table lacking one of those columns gets it as NULLs. It then adds:

- ``image_fate``: one row per `images` row with the first stage that removed it
  (``download``: status not ``ok``; ``quality``: junk; ``duplicates``: a dropped
  duplicate; ``classes``: its series is not a kept class) and why, or NULLs when the
  image is in the cleaned dataset. Duplicates with ``action = 'move_to_train'`` stay in.
- ``clean_images``: the images "after cleaning" (``stage IS NULL``).
- ``series_counts``: per series, images found, downloaded and after cleaning, and
  ``in_dataset`` (see ``dataset_series``).
- ``dataset_series``: the dataset's classes: the kept classes when `classes` exists,
  else the series with at least one clean image, else (no `images` yet) every series.

Long-tail tiers follow the paper's convention of many-shot (> 100 images), medium-shot
(20-100) and few-shot (< 20), configurable through `Tiers` (shared with
`tv100.tasks.train.metrics`, whose tiers count training images).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from tv100.tasks.train.metrics import Tiers


@dataclass(frozen=True)
class NamedQuery:
    """One named SQL query.

    Attributes:
        name: identifier (lower_snake_case).
        description: one line saying what a row of the result is.
        sql: the query; ``$name`` marks a parameter.
        tables: the pipeline tables it reads (helper views excluded).
        example: documented for users: reads only real tables, takes no parameters and
            runs with ``tv100 sql``.
    """

    name: str
    description: str
    sql: str
    tables: tuple[str, ...]
    example: bool = False


#: Columns the queries read, per table, with the DuckDB type of a stand-in NULL column.
TABLE_COLUMNS: dict[str, dict[str, str]] = {
    "series": {
        "series_id": "VARCHAR",
        "title": "VARCHAR",
        "original_title": "VARCHAR",
        "kind": "VARCHAR",
        "start_year": "INTEGER",
        "countries": "VARCHAR[]",
        "source": "VARCHAR",
        "discovered_at": "TIMESTAMPTZ",
    },
    "images": {
        "image_id": "VARCHAR",
        "series_id": "VARCHAR",
        "engine": "VARCHAR",
        "url": "VARCHAR",
        "final_url": "VARCHAR",
        "status": "VARCHAR",
        "downloaded_at": "TIMESTAMPTZ",
    },
    "quality": {"image_id": "VARCHAR", "is_junk": "BOOLEAN", "reason": "VARCHAR"},
    "duplicates": {
        "image_id": "VARCHAR",
        "kept_id": "VARCHAR",
        "kind": "VARCHAR",
        "scope": "VARCHAR",
        "action": "VARCHAR",
    },
    "zeroshot": {
        "series_id": "VARCHAR",
        "model_key": "VARCHAR",
        "n_images": "BIGINT",
        "top1": "DOUBLE",
        "top5": "DOUBLE",
    },
    "classes": {
        "series_id": "VARCHAR",
        "title": "VARCHAR",
        "class_index": "INTEGER",
        "kept": "BOOLEAN",
        "reason": "VARCHAR",
        "accuracy": "DOUBLE",
    },
    "splits": {
        "image_id": "VARCHAR",
        "series_id": "VARCHAR",
        "class_index": "INTEGER",
        "split": "VARCHAR",
    },
    "metrics": {
        "run_id": "VARCHAR",
        "model_key": "VARCHAR",
        "recipe": "VARCHAR",
        "hyperparameters": "VARCHAR",
        "split": "VARCHAR",
        "metric": "VARCHAR",
        "value": "DOUBLE",
    },
}

PRESENT_TABLE = "_tables_present"
#: Helper views `prepare` creates, in dependency order.
HELPER_VIEWS = ("image_fate", "clean_images", "dataset_series", "series_counts")
#: Recipes in the order figures and tables show them.
RECIPES = ("zeroshot", "linear", "finetune", "wiseft")
STAGES = ("download", "quality", "duplicates", "classes")


def _q(
    name: str, description: str, tables: Sequence[str], sql: str, example: bool = False
) -> NamedQuery:
    return NamedQuery(name, description, sql.strip(), tuple(tables), example)


_QUERY_LIST = [
    # ---- helper views (created by `prepare`) -------------------------------------------
    _q(
        "image_fate",
        "Per image: the first cleaning stage that removed it and why (NULL: kept).",
        ["images", "quality", "duplicates", "classes"],
        """
        select i.image_id, i.series_id,
          case
            when i.status is distinct from 'ok' then 'download'
            when q.is_junk then 'quality'
            when d.image_id is not null then 'duplicates'
            when f.has_classes and c.kept is not true then 'classes'
          end as stage,
          case
            when i.status is distinct from 'ok' then coalesce(i.status, 'no status')
            when q.is_junk then coalesce(q.reason, 'junk')
            when d.image_id is not null
              then coalesce(d.kind, '?') || ' duplicate, ' || coalesce(d.scope, '?')
            when f.has_classes and c.kept is not true
              then coalesce(c.reason, case when c.series_id is null
                                           then 'not ranked' else 'class not kept' end)
          end as reason
        from images i
        cross join (select exists (select 1 from _tables_present where name = 'classes')
                    as has_classes) f
        left join (select image_id, bool_or(is_junk) as is_junk,
                          min(reason) filter (where is_junk) as reason
                   from quality group by image_id) q on q.image_id = i.image_id
        left join (select image_id, min(kind) as kind, min(scope) as scope
                   from duplicates where coalesce(action, 'drop') = 'drop'
                   group by image_id) d on d.image_id = i.image_id
        left join (select series_id, bool_or(kept) as kept, min(reason) as reason
                   from classes group by series_id) c on c.series_id = i.series_id
        """,
    ),
    _q(
        "clean_images",
        "Images after cleaning: downloaded, not junk, not a dropped duplicate, kept class.",
        ["images", "quality", "duplicates", "classes"],
        "select image_id, series_id from image_fate where stage is null",
    ),
    _q(
        "dataset_series",
        "The dataset's classes: kept classes, else series with clean images, else all.",
        ["series", "images", "classes"],
        """
        select s.* from series s
        where case
          when exists (select 1 from _tables_present where name = 'classes')
            then s.series_id in (select series_id from classes where kept)
          when exists (select 1 from _tables_present where name = 'images')
            then s.series_id in (select series_id from clean_images)
          else true
        end
        """,
    ),
    _q(
        "series_counts",
        "Per series: images found, downloaded (before cleaning), after cleaning.",
        ["series", "images", "quality", "duplicates", "classes"],
        """
        with counts as (
          select series_id,
                 count(*) as n_found,
                 count(*) filter (where stage is distinct from 'download') as n_downloaded,
                 count(*) filter (where stage is null) as n_clean
          from image_fate group by series_id
        ), ids as (
          select series_id, title from series
          union all
          select distinct series_id, null from images
          where series_id not in (select series_id from series)
        )
        select ids.series_id, ids.title,
               coalesce(c.n_found, 0) as n_found,
               coalesce(c.n_downloaded, 0) as n_downloaded,
               coalesce(c.n_clean, 0) as n_clean,
               ids.series_id in (select series_id from dataset_series) as in_dataset
        from ids left join counts c using (series_id)
        """,
    ),
    # ---- analysis queries (read the helper views) --------------------------------------
    _q(
        "images_per_series",
        "Images per series before and after cleaning, most after cleaning first.",
        ["series", "images", "quality", "duplicates", "classes"],
        """
        select series_id, title, n_found, n_downloaded, n_clean, in_dataset
        from series_counts
        order by n_clean desc, n_downloaded desc, series_id
        """,
    ),
    _q(
        "class_distribution",
        "Classes sorted by images (descending) with share, cumulative share and tier.",
        ["series", "images", "quality", "duplicates", "classes"],
        """
        with d as (
          select series_id, title,
                 case when $stage = 'before' then n_downloaded else n_clean end as n_images
          from series_counts
          where case when $stage = 'before' then n_downloaded > 0 else in_dataset end
        )
        select row_number() over w as rank, series_id, title, n_images,
               n_images / nullif(sum(n_images) over (), 0) as share,
               sum(n_images) over w / nullif(sum(n_images) over (), 0) as cumulative_share,
               case when n_images > $many then 'many'
                    when n_images < $few then 'few' else 'medium' end as tier
        from d
        window w as (order by n_images desc, series_id)
        order by rank
        """,
    ),
    _q(
        "removals",
        "Images removed by cleaning, per stage and reason (each image counted once).",
        ["images", "quality", "duplicates", "classes"],
        """
        select stage, reason, count(*) as n_images, count(distinct series_id) as n_series
        from image_fate where stage is not null
        group by stage, reason
        order by list_position(['download', 'quality', 'duplicates', 'classes'], stage),
                 n_images desc, reason
        """,
    ),
    _q(
        "countries",
        "Dataset classes per country of origin (first listed country), largest first.",
        ["series", "images", "classes"],
        """
        select coalesce(countries[1], 'unknown') as country, count(*) as n_series,
               count(*) / sum(count(*)) over () as share
        from dataset_series group by 1 order by n_series desc, country
        """,
    ),
    _q(
        "start_years",
        "Dataset classes per start year.",
        ["series", "images", "classes"],
        """
        select start_year, count(*) as n_series
        from dataset_series group by 1 order by start_year nulls last
        """,
    ),
    _q(
        "model_accuracy",
        "Per model and recipe: the $metric on $split of the run best on val (zero-shot "
        "falls back to the zeroshot table over dataset classes).",
        ["metrics", "zeroshot", "series", "images", "classes"],
        """
        with t as (
          select run_id, model_key, recipe, value from metrics
          where metric = $metric and split = $split and value is not null
        ), v as (
          select run_id, max(value) as val from metrics
          where metric = $metric and split = 'val' group by run_id
        ), ranked as (
          select t.*, count(*) over (partition by model_key, recipe) as n_runs,
                 row_number() over (partition by model_key, recipe
                                    order by coalesce(v.val, t.value) desc, t.value desc,
                                             t.run_id) as rn
          from t left join v using (run_id)
        ), from_metrics as (
          select model_key, recipe, value, run_id, n_runs, 'metrics' as source
          from ranked where rn = 1
        ), from_zeroshot as (
          select model_key, 'zeroshot' as recipe,
                 sum(case when $metric = 'top5' then top5 else top1 end * n_images)
                   / nullif(sum(n_images), 0) as value,
                 null as run_id, 0 as n_runs, 'zeroshot' as source
          from zeroshot
          where $metric in ('top1', 'top5')
            and series_id in (select series_id from dataset_series)
            and model_key not in (select model_key from from_metrics where recipe = 'zeroshot')
          group by model_key
          having sum(n_images) > 0
        )
        select * from (select * from from_metrics union all select * from from_zeroshot)
        order by model_key,
                 coalesce(list_position(['zeroshot', 'linear', 'finetune', 'wiseft'], recipe),
                          99),
                 recipe
        """,
    ),
    _q(
        "dataset_facts",
        "One row of dates and counts for the dataset card.",
        ["series", "images"],
        """
        select
          (select count(*) from series) as n_series,
          (select min(start_year) from series) as min_start_year,
          (select max(start_year) from series) as max_start_year,
          (select min(discovered_at) from series) as first_discovered_at,
          (select max(discovered_at) from series) as last_discovered_at,
          (select count(*) from images) as n_images_found,
          (select count(*) from images where status = 'ok') as n_images_downloaded,
          (select min(downloaded_at) from images) as first_downloaded_at,
          (select max(downloaded_at) from images) as last_downloaded_at,
          (select count(distinct regexp_extract(coalesce(final_url, url),
                                                '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]+)', 1))
           from images where status = 'ok') as n_image_hosts,
          (select count(*) from clean_images) as n_images_clean,
          (select count(*) from dataset_series) as n_classes
        """,
    ),
    _q(
        "sources",
        "Where the rows came from: series per listing source, images per search engine.",
        ["series", "images"],
        """
        select 'series' as what, coalesce(source, 'unknown') as source, count(*) as n
        from series group by all
        union all
        select 'images', coalesce(engine, 'unknown'), count(*) from images group by all
        order by what desc, n desc, source
        """,
    ),
    # ---- documented examples: real tables only, runnable with `tv100 sql` --------------
    _q(
        "series_per_country",
        "Series per country of origin (first listed country).",
        ["series"],
        """
        select coalesce(countries[1], 'unknown') as country, count(*) as n
        from series group by 1 order by n desc, country
        """,
        example=True,
    ),
    _q(
        "series_per_start_year",
        "Series per start year and kind.",
        ["series"],
        "select start_year, kind, count(*) as n from series group by all order by all",
        example=True,
    ),
    _q(
        "download_outcomes",
        "Image rows per download status (ok, http_error, timeout, not_image, ...).",
        ["images"],
        "select status, count(*) as n from images group by status order by n desc, status",
        example=True,
    ),
    _q(
        "images_found_per_series",
        "Images found and downloaded per series, most downloaded first.",
        ["series", "images"],
        """
        select s.series_id, s.title, count(i.image_id) as found,
               count(i.image_id) filter (where i.status = 'ok') as downloaded
        from series s left join images i using (series_id)
        group by all order by downloaded desc, s.series_id
        """,
        example=True,
    ),
    _q(
        "junk_by_reason",
        "Images the junk filters flagged, per reason (comma-joined failed checks).",
        ["quality"],
        """
        select reason, count(*) as n from quality where is_junk
        group by reason order by n desc, reason
        """,
        example=True,
    ),
    _q(
        "duplicates_by_kind",
        "Duplicate rows per signal (exact, phash, dhash, clip), scope and action.",
        ["duplicates"],
        """
        select kind, scope, action, count(*) as n from duplicates
        group by all order by n desc, kind, scope, action
        """,
        example=True,
    ),
    _q(
        "clean_images_per_series",
        "Images per series after cleaning: downloaded, not junk, not a dropped duplicate.",
        ["images", "quality", "duplicates"],
        """
        select i.series_id, count(*) as n_clean from images i
        where i.status = 'ok'
          and not exists (select 1 from quality q where q.image_id = i.image_id and q.is_junk)
          and not exists (select 1 from duplicates d where d.image_id = i.image_id
                            and coalesce(d.action, 'drop') = 'drop')
        group by i.series_id order by n_clean desc, i.series_id
        """,
        example=True,
    ),
    _q(
        "long_tail_tiers",
        "Kept classes per tier after cleaning: many (> 100), medium (20-100), few (< 20).",
        ["images", "quality", "duplicates", "classes"],
        """
        with n as (
          select c.series_id, count(i.image_id) as n_images
          from classes c left join images i on i.series_id = c.series_id
            and i.status = 'ok'
            and not exists (select 1 from quality q where q.image_id = i.image_id and q.is_junk)
            and not exists (select 1 from duplicates d where d.image_id = i.image_id
                              and coalesce(d.action, 'drop') = 'drop')
          where c.kept group by c.series_id
        )
        select case when n_images > 100 then 'many' when n_images >= 20 then 'medium'
                    else 'few' end as tier,
               count(*) as n_classes, sum(n_images) as n_images
        from n group by 1 order by list_position(['many', 'medium', 'few'], tier)
        """,
        example=True,
    ),
    _q(
        "least_recognised_zero_shot",
        "Series CLIP recognises worst zero-shot, per model (top-1, then mean true prob).",
        ["zeroshot", "series"],
        """
        select z.model_key, z.series_id, s.title, z.n_images, z.top1, z.top5,
               z.mean_true_prob, z.confused_with, z.confused_title
        from zeroshot z left join series s using (series_id)
        order by z.model_key, z.top1, z.mean_true_prob, z.series_id
        """,
        example=True,
    ),
    _q(
        "kept_classes",
        "Classes kept for the dataset, and why the others were not.",
        ["classes"],
        """
        select kept, coalesce(reason, '') as reason, count(*) as n_classes,
               round(avg(accuracy), 4) as mean_accuracy
        from classes group by all order by kept desc, n_classes desc, reason
        """,
        example=True,
    ),
    _q(
        "zero_shot_vs_fine_tuned",
        "Test top-1 per model and recipe (zeroshot, linear, finetune, wiseft), best of runs.",
        ["metrics"],
        """
        pivot (select model_key, recipe, value from metrics
               where split = 'test' and metric = 'top1')
        on recipe in ('zeroshot', 'linear', 'finetune', 'wiseft') using max(value)
        group by model_key order by model_key
        """,
        example=True,
    ),
    _q(
        "split_sizes",
        "Images and classes per split (train, val, test).",
        ["splits"],
        """
        select split, count(*) as n_images, count(distinct series_id) as n_classes
        from splits group by split
        order by list_position(['train', 'val', 'test'], split), split
        """,
        example=True,
    ),
]

#: Every query by name.
QUERIES: dict[str, NamedQuery] = {q.name: q for q in _QUERY_LIST}

_PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def example_queries() -> list[NamedQuery]:
    """The documented example queries, in README order (each runs with ``tv100 sql``)."""
    return [q for q in QUERIES.values() if q.example]


# ---- pure statistics ------------------------------------------------------------------


def _check_counts(counts: Iterable[int | float]) -> list[float]:
    values = [float(c) for c in counts]
    bad = [c for c in values if c < 0 or math.isnan(c)]
    if bad:
        raise ValueError(f"class counts must be >= 0; got {bad[:5]}")
    return values


def gini(counts: Iterable[int | float]) -> float:
    """Gini coefficient of images per class: 0 when balanced, toward 1 when one class has all.

    ``G = sum_i (2i - n - 1) x_i / (n sum x)`` over counts sorted ascending (i from 1).

    Returns:
        NaN for no classes or no images.

    Raises:
        ValueError: on a negative count.
    """
    values = sorted(_check_counts(counts))
    n, total = len(values), sum(values)
    if n == 0 or total == 0:
        return math.nan
    weighted = sum((2 * i - n - 1) * x for i, x in enumerate(values, start=1))
    return weighted / (n * total)


def imbalance_ratio(counts: Iterable[int | float]) -> float:
    """Largest class over smallest class (1 when balanced).

    Returns:
        NaN for no classes, infinity when a class has no images.
    """
    values = _check_counts(counts)
    if not values:
        return math.nan
    lo, hi = min(values), max(values)
    if lo == 0:
        return math.inf if hi > 0 else math.nan
    return hi / lo


def tier_counts(counts: Iterable[int], tiers: Tiers | None = None) -> dict[str, int]:
    """Classes per long-tail tier: ``{"many": .., "medium": .., "few": ..}``."""
    tiers = tiers or Tiers()
    out = {"many": 0, "medium": 0, "few": 0}
    for c in counts:
        out[tiers.tier(int(c))] += 1
    return out


def cumulative_share(counts: Iterable[int | float]) -> list[float]:
    """Share of all images held by the k largest classes, for k = 1..n (ends at 1.0)."""
    values = sorted(_check_counts(counts), reverse=True)
    total = sum(values)
    out, running = [], 0.0
    for v in values:
        running += v
        out.append(running / total if total else math.nan)
    return out


def imbalance_stats(counts: Sequence[int], tiers: Tiers | None = None) -> dict[str, Any]:
    """Summary of a class-size distribution.

    Classes with no images are counted in ``empty`` and left out of the other figures
    (their imbalance ratio would be infinite).

    Returns:
        classes, empty, images, max, min, median, mean, imbalance_ratio, gini, many,
        medium, few, and head_share_20 (share of images in the largest 20% of classes).
    """
    tiers = tiers or Tiers()
    values = sorted((int(c) for c in counts), reverse=True)
    nonzero = [v for v in values if v > 0]
    n = len(nonzero)
    if n:
        mid = n // 2
        median = float(nonzero[mid]) if n % 2 else (nonzero[mid - 1] + nonzero[mid]) / 2
        head = cumulative_share(nonzero)[max(1, math.ceil(0.2 * n)) - 1]
    else:
        median, head = math.nan, math.nan
    return {
        "classes": n,
        "empty": len(values) - n,
        "images": sum(nonzero),
        "max": nonzero[0] if n else 0,
        "min": nonzero[-1] if n else 0,
        "median": median,
        "mean": sum(nonzero) / n if n else math.nan,
        "imbalance_ratio": imbalance_ratio(nonzero),
        "gini": gini(nonzero),
        **tier_counts(nonzero, tiers),
        "head_share_20": head,
    }


# ---- the catalog ----------------------------------------------------------------------


def _views(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.sql(
        "select view_name from duckdb_views() where not internal "
        "union select table_name from duckdb_tables()"
    ).fetchall()
    return {r[0] for r in rows}


def _columns(con: duckdb.DuckDBPyConnection, name: str) -> set[str]:
    rows = con.sql(
        "select column_name from information_schema.columns where table_name = $t",
        params={"t": name},
    ).fetchall()
    return {r[0] for r in rows}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def prepare(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """Make a catalog connection ready for the analysis queries (idempotent).

    Adds empty stand-ins for the tables not written yet, NULL columns for the ones a
    table lacks, the ``_tables_present`` list and the helper views (module docstring).

    Args:
        con: a connection from `tv100.storage.catalog.connect`.

    Returns:
        the pipeline tables (of `TABLE_COLUMNS`) that really exist under the root.
    """
    existing = _views(con)
    if PRESENT_TABLE in existing:
        rows = con.sql(f"select name from {PRESENT_TABLE}").fetchall()
        return frozenset(r[0] for r in rows)
    present = sorted(t for t in TABLE_COLUMNS if t in existing)
    for table, cols in TABLE_COLUMNS.items():
        if table in existing:
            missing = {c: t for c, t in cols.items() if c not in _columns(con, table)}
            if not missing:
                continue
            raw = f"_raw_{table}"
            con.execute(f"ALTER VIEW {_ident(table)} RENAME TO {_ident(raw)}")
            extra = ", ".join(f"CAST(NULL AS {t}) AS {_ident(c)}" for c, t in missing.items())
            con.execute(f"CREATE VIEW {_ident(table)} AS SELECT *, {extra} FROM {_ident(raw)}")
        else:
            nulls = ", ".join(f"CAST(NULL AS {t}) AS {_ident(c)}" for c, t in cols.items())
            con.execute(f"CREATE VIEW {_ident(table)} AS SELECT {nulls} WHERE false")
    con.execute(f"CREATE TABLE {PRESENT_TABLE} (name VARCHAR)")
    if present:
        con.executemany(f"INSERT INTO {PRESENT_TABLE} VALUES (?)", [[t] for t in present])
    for view in HELPER_VIEWS:
        con.execute(f"CREATE VIEW {_ident(view)} AS {QUERIES[view].sql}")
    return frozenset(present)


def run_query(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> pa.Table:
    """Run the named query (after `prepare`) and return its full result as Arrow.

    Raises:
        KeyError: an unknown query name.
        TypeError: a parameter the query needs is missing.
    """
    try:
        q = QUERIES[name]
    except KeyError as err:
        raise KeyError(f"unknown query {name!r}; expected one of: {', '.join(QUERIES)}") from err
    prepare(con)
    needed = set(_PARAM_RE.findall(q.sql))
    missing = needed - set(params)
    if missing:
        raise TypeError(f"query {name!r} needs parameters {sorted(missing)}")
    rel = con.sql(q.sql, params={k: v for k, v in params.items() if k in needed} or None)
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
) -> dict[str, dict[str, Any]]:
    """`imbalance_stats` of images per class ``before`` and ``after`` cleaning."""
    return {
        stage: imbalance_stats(
            class_distribution(con, stage, tiers).column("n_images").to_pylist(), tiers
        )
        for stage in ("before", "after")
    }


def removals(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Images removed per stage and reason: stage, reason, n_images, n_series."""
    return run_query(con, "removals")


def removals_by_stage(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Images removed per stage, every stage listed (0 when none)."""
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


def model_accuracy(
    con: duckdb.DuckDBPyConnection, metric: str = "top1", split: str = "test"
) -> pa.Table:
    """Accuracy per model and recipe (zero-shot vs fine-tuned), long format.

    Among several runs of one model and recipe, the one best on ``val`` is reported
    (its `split` value). A model with no zero-shot row in `metrics` gets one from the
    `zeroshot` table: the image-weighted mean over the dataset's classes
    (``source = 'zeroshot'``). Values are fractions (0..1), as the tables store them.

    Returns:
        model_key, recipe, value, run_id, n_runs, source.
    """
    return run_query(con, "model_accuracy", metric=metric, split=split)


def split_sizes(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Images and classes per split (train, val, test): split, n_images, n_classes."""
    return run_query(con, "split_sizes")


def dataset_facts(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Counts and date ranges for the dataset card (one dict)."""
    rows = run_query(con, "dataset_facts").to_pylist()
    return rows[0]


def sources(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Series per listing source and images per search engine: what, source, n."""
    return run_query(con, "sources")
