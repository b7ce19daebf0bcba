"""The report's SQL, one file per query in ``queries/<name>.sql``, loaded by name.

Each file starts with its metadata as comments, then the query::

    -- description: one line saying what a row of the result is (continued on
    --   lines indented by three spaces).
    -- tables: series, images
    select ...

``$name`` in the query marks a parameter. The registry below says what kind each query is:

- `HELPER_VIEWS`: views `tv100.tasks.report.analysis.prepare` creates, in dependency order;
- `ANALYSIS_QUERIES`: read the helper views and may take parameters;
- `EXAMPLE_QUERIES`: documented for users: they read only the pipeline's own tables, take
  no parameters and run as they are with ``tv100 sql``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

#: Views `tv100.tasks.report.analysis.prepare` creates, in dependency order.
HELPER_VIEWS = ("image_fate", "clean_images", "dataset_series", "series_counts")
ANALYSIS_QUERIES = (
    "images_per_series",
    "class_distribution",
    "removals",
    "countries",
    "start_years",
    "model_accuracy",
    "dataset_facts",
    "sources",
    "relevance_per_class",
    "curves",
    "longtail_tiers",
)
#: The dataset card's datasheet (`tv100.tasks.report.datasheet.read_datasheet`).
CARD_QUERIES = (
    "card_classes",
    "card_countries",
    "card_engines",
    "card_timeline",
    "card_funnel",
    "card_rank",
    "card_optouts",
    "card_reviews",
    "card_popularity",
    "card_noise",
    "card_snapshots",
    "card_formats",
)
#: In README order.
EXAMPLE_QUERIES = (
    "series_per_country",
    "series_per_start_year",
    "download_outcomes",
    "images_found_per_series",
    "junk_by_reason",
    "duplicates_by_kind",
    "clean_images_per_series",
    "long_tail_tiers",
    "least_recognised_zero_shot",
    "kept_classes",
    "novelty_matrix",
    "unseen_confusions",
    "zero_shot_vs_fine_tuned",
    "split_sizes",
    "human_overrules",
)

_PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_KEY_RE = re.compile(r"--\s(description|tables):\s*(.*)")
_MORE = "--   "


@dataclass(frozen=True)
class NamedQuery:
    """One named SQL query (``queries/<name>.sql``).

    Attributes:
        name: identifier (lower_snake_case), the file's stem.
        description: one line saying what a row of the result is.
        sql: the query, without its metadata comments; ``$name`` marks a parameter.
        tables: the pipeline tables it reads (helper views excluded).
        example: documented for users: reads only real tables, takes no parameters and
            runs with ``tv100 sql``.
    """

    name: str
    description: str
    sql: str
    tables: tuple[str, ...]
    example: bool = False

    @property
    def params(self) -> frozenset[str]:
        """The ``$name`` parameters the query takes."""
        return frozenset(_PARAM_RE.findall(self.sql))


def parse_query(name: str, text: str, example: bool = False) -> NamedQuery:
    """A `NamedQuery` from the text of its ``.sql`` file.

    Raises:
        ValueError: the file lacks a description, its tables or a query.
    """
    meta: dict[str, str] = {}
    lines = text.splitlines()
    key, i = None, 0
    while i < len(lines) and lines[i].startswith("--"):
        line = lines[i]
        m = _KEY_RE.fullmatch(line.rstrip())
        if m:
            key = m.group(1)
            meta[key] = m.group(2).strip()
        elif key is not None and line.startswith(_MORE):
            meta[key] += " " + line[len(_MORE) :].strip()
        else:
            key = None  # a plain comment: ends a key's continuation lines
        i += 1
    sql = "\n".join(lines[i:]).strip()
    missing = [k for k in ("description", "tables") if not meta.get(k)] + ([] if sql else ["sql"])
    if missing:
        raise ValueError(f"query file {name}.sql lacks {', '.join(missing)}")
    tables = tuple(t.strip() for t in meta["tables"].split(","))
    return NamedQuery(name, meta["description"], sql, tables, example)


def query_names() -> tuple[str, ...]:
    """Every registered query, helper views first."""
    return HELPER_VIEWS + ANALYSIS_QUERIES + CARD_QUERIES + EXAMPLE_QUERIES


def query_files() -> list[str]:
    """Stems of the ``.sql`` files shipped in ``queries/`` (sorted)."""
    folder = files("tv100.tasks.report").joinpath("queries")
    return sorted(p.name[: -len(".sql")] for p in folder.iterdir() if p.name.endswith(".sql"))


@cache
def load_query(name: str) -> NamedQuery:
    """The registered query `name`, read from ``queries/<name>.sql``.

    Raises:
        KeyError: an unknown query name.
    """
    if name not in query_names():
        raise KeyError(
            f"unknown query {name!r}; expected one of: {', '.join(query_names())}"
        )
    path = files("tv100.tasks.report").joinpath("queries", f"{name}.sql")
    return parse_query(name, path.read_text(encoding="utf-8"), name in EXAMPLE_QUERIES)


def example_queries() -> list[NamedQuery]:
    """The documented example queries, in README order (each runs with ``tv100 sql``)."""
    return [load_query(n) for n in EXAMPLE_QUERIES]
