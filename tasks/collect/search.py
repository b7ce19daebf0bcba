"""Collect, first half: search every series on every engine; the `search_*` tables.

`search_series` runs every (series, engine) pair concurrently over one `HttpClient` and
returns the `search_hits` table (`SEARCH_HITS`); `search_series_tables` also returns the
`search_pages` table (`SEARCH_PAGES`): one row per request made, failed ones included, which
are also logged as warnings on the ``tv100.search`` logger. Rows are sorted (hits by
series_id, engine, rank; pages by series_id, engine, page) so reruns give identical tables
except for ``fetched_at``. The engines themselves are in `tv100.tasks.collect.engines`.
`search_task` caches a search for six days, unless it holds failed requests. A search shows
its progress (`tv100.tasks.progress`; artifact ``collect-search-<engine>-progress``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, NamedTuple

import pyarrow as pa
from prefect import task, unmapped
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

from tv100.storage.root import DataRoot
from tv100.storage.schemas import SEARCH_HITS, SEARCH_PAGES
from tv100.storage.tables import read_table
from tv100.tasks.caching import refuse_cache
from tv100.tasks.collect.config import SearchConfig
from tv100.tasks.collect.engine import EngineFetch
from tv100.tasks.collect.engines import ENGINES, check_engines
from tv100.tasks.collect.pages import READ_STATUSES
from tv100.tasks.progress import ProgressFn, artifact_key, track
from tv100.tasks.web.client import HttpClient
from tv100.tasks.web.config import HttpConfig

log = logging.getLogger("tv100.search")

SERIES_COLUMNS = ["series_id", "title", "original_title", "start_year"]
"""The `series` columns a search reads (the query template's fields)."""


class SearchTables(NamedTuple):
    """The tables of one search run: `search_hits` and `search_pages`."""

    hits: pa.Table
    pages: pa.Table

    @property
    def failed_pages(self) -> int:
        """Requests that failed or gave a blocked or unreadable page (`search_pages` rows
        whose status is not in `tv100.tasks.collect.pages.READ_STATUSES`)."""
        return sum(1 for s in self.pages.column("status").to_pylist() if s not in READ_STATUSES)


def read_series(root: DataRoot) -> list[dict[str, Any]]:
    """The discovered series as search input: `SERIES_COLUMNS` of the `series` table.

    Args:
        root: the data root holding the `series` table.

    Returns:
        One mapping per series, in table order.
    """
    return read_table(root, "series").select(SERIES_COLUMNS).to_pylist()


@task(name="read-series", cache_policy=NO_CACHE)
def read_series_task(root: DataRoot) -> list[dict[str, Any]]:
    """Uncached: the `series` table is rewritten by every discover run."""
    return read_series(root)


def _check_series(series: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(series):
        if not isinstance(item, Mapping):
            raise ValueError(f"series[{i}] must be a mapping with series_id and title")
        sid, title = item.get("series_id"), item.get("title")
        if not isinstance(sid, str) or not sid:
            raise ValueError(f"series[{i}] needs a non-empty string series_id, got {sid!r}")
        if not isinstance(title, str) or not title.strip():
            raise ValueError(f"series[{i}] ({sid}) needs a non-empty string title, got {title!r}")
        if sid in seen:
            raise ValueError(f"series[{i}]: series_id {sid} is listed twice")
        seen.add(sid)
        out.append(item)
    return out


def _tables(results: list[tuple[str, EngineFetch]]) -> SearchTables:
    hit_rows: list[dict[str, Any]] = []
    page_rows: list[dict[str, Any]] = []
    for sid, res in results:
        for r in res.hits:
            hit_rows.append(
                {
                    "series_id": sid,
                    "engine": res.engine,
                    "query": res.query,
                    "page": r.page,
                    "rank": r.rank,
                    **r.hit.to_dict(),
                    "fetched_at": r.fetched_at,
                }
            )
        for p in res.pages:
            page_rows.append(
                {
                    "series_id": sid,
                    "engine": res.engine,
                    "query": res.query,
                    "kind": p.kind,
                    "page": p.page,
                    "url": p.url,
                    "status": p.status,
                    "http_status": p.http_status,
                    "error_message": p.error_message,
                    "hits": p.hits,
                    "new_hits": p.new_hits,
                    "fetched_at": p.fetched_at,
                }
            )
    hit_rows.sort(key=lambda r: (r["series_id"], r["engine"], r["rank"]))
    page_rows.sort(key=lambda r: (r["series_id"], r["engine"], r["page"]))
    return SearchTables(
        pa.Table.from_pylist(hit_rows, schema=SEARCH_HITS),
        pa.Table.from_pylist(page_rows, schema=SEARCH_PAGES),
    )


async def search_series_async(
    series: Iterable[Mapping[str, Any]],
    engines: Iterable[str],
    config: SearchConfig,
    client: HttpClient,
    progress: ProgressFn | None = None,
) -> SearchTables:
    """Search every series on every engine over an open client (see `search_series`);
    `progress` is called with ``(searches done, searches in all)`` as each one ends."""
    names = check_engines(engines)
    items = _check_series(series)
    done = 0

    async def one(item: Mapping[str, Any], name: str) -> tuple[str, EngineFetch]:
        result = await ENGINES[name].fetch(
            client,
            config.query(item),
            base_url=config.base_url(name),
            cap=config.per_series_cap,
            max_pages=config.max_pages,
            page_size=config.page_size,
        )
        nonlocal done
        done += 1
        if progress:
            progress(done, len(items) * len(names))
        return str(item["series_id"]), result

    results = await asyncio.gather(*(one(item, name) for item in items for name in names))
    tables = _tables(list(results))
    failed = sum(1 for _, r in results for _p in r.failed_pages)
    if failed:
        log.warning("search: %d of %d requests failed", failed, tables.pages.num_rows)
    return tables


def search_series_tables(
    series: Iterable[Mapping[str, Any]],
    engines: Iterable[str],
    config: SearchConfig,
    http: HttpConfig,
) -> SearchTables:
    """Search every series on every engine; return `search_hits` and `search_pages`.

    Args:
        series: mappings with ``series_id`` and ``title`` (and optionally
            ``original_title`` and ``start_year`` for the query template).
        engines: engine names from `tv100.tasks.collect.engines.ENGINE_NAMES`.
        config: the search settings.
        http: the HTTP layer's settings (allow-list a loopback stand-in's ``host:port``).

    Returns:
        `SearchTables`: hits sorted by (series_id, engine, rank), pages by
        (series_id, engine, page).

    Raises:
        ValueError: for unknown engines or malformed series (nothing is fetched then).
    """
    names = check_engines(engines)
    items = _check_series(series)

    async def run(progress: ProgressFn) -> SearchTables:
        async with HttpClient(http, robots=None) as client:  # engines' result pages: no robots.txt
            return await search_series_async(items, names, config, client, progress)

    label = f"search {', '.join(names)}"
    key = artifact_key("collect-search", *names, "progress")
    unit = "series" if len(names) == 1 else "searches"  # one per series and engine
    with track(label, len(items) * len(names), unit, key) as tracker:
        return asyncio.run(run(tracker))


def search_series(
    series: Iterable[Mapping[str, Any]],
    engines: Iterable[str],
    config: SearchConfig,
    http: HttpConfig,
) -> pa.Table:
    """Search every series on every engine; return the `search_hits` table.

    Failed pages are logged on the ``tv100.search`` logger; use `search_series_tables` to
    get them as the `search_pages` table as well.

    Args:
        series: mappings with ``series_id`` and ``title``.
        engines: engine names from `tv100.tasks.collect.engines.ENGINE_NAMES`.
        config: the search settings.
        http: the HTTP layer's settings.

    Returns:
        The `search_hits` table (`SEARCH_HITS`), sorted by (series_id, engine, rank).
    """
    return search_series_tables(series, engines, config, http).hits


@task(
    name="search-images",
    cache_policy=INPUTS + TASK_SOURCE,
    cache_expiration=timedelta(days=6),
)
def search_task(
    series: list[dict[str, Any]], engines: list[str], config: SearchConfig, http: HttpConfig
) -> SearchTables:
    """Search results change slowly: cached six days, so a weekly run searches again.

    The collect flow maps it over the engines (one task each, each engine one host); their
    parts are put together by `merge_search_tables`. Pages carry their page class
    (`tv100.tasks.collect.pages`) and hits their ``thumbnail_only`` flag: results cached
    before either existed are not reused (this docstring is part of the cache key).

    A result with failed requests (`SearchTables.failed_pages`: an engine down, a timeout,
    a block, a layout not understood) is used by this run but not cached
    (`tv100.tasks.caching.refuse_cache`), so the next run searches again instead of
    replaying the failure for six days.
    """
    tables = search_series_tables(series, engines, config, http)
    if tables.failed_pages:
        refuse_cache(f"{tables.failed_pages} of {tables.pages.num_rows} search requests failed")
    return tables


def merge_search_tables(parts: Sequence[SearchTables]) -> SearchTables:
    """One run's `SearchTables` from parts searched separately (per engine or per batch).

    Ordered as `search_series_tables` orders a single run over everything: hits by
    (series_id, engine, rank), pages by (series_id, engine, page). The sort is stable and
    each (series, engine) pair comes from one part, so the rows equal a single run's.
    """
    if not parts:
        return SearchTables(SEARCH_HITS.empty_table(), SEARCH_PAGES.empty_table())
    hits = pa.concat_tables([p.hits for p in parts])
    pages = pa.concat_tables([p.pages for p in parts])
    by = [("series_id", "ascending"), ("engine", "ascending")]
    return SearchTables(
        hits.sort_by([*by, ("rank", "ascending")]),
        pages.sort_by([*by, ("page", "ascending")]),
    )


def search_each_engine(
    series: list[dict[str, Any]],
    engines: Sequence[str],
    config: SearchConfig,
    http: HttpConfig,
    refresh: bool = False,
) -> SearchTables:
    """Search every series with one `search_task` per engine; call it from a flow.

    Each engine is one host with its own politeness limits, so the engines run as separate
    tasks; their parts put together equal a single search over every engine.

    Args:
        series: the series (see `read_series`).
        engines: engine names.
        config: the search settings.
        http: the HTTP layer's settings.
        refresh: search again now instead of using this week's cached results.
    """
    searching = search_task.with_options(refresh_cache=True) if refresh else search_task
    searches = searching.map(
        unmapped(series),
        [[name] for name in engines],
        unmapped(config),
        unmapped(http),
    )
    return merge_search_tables([f.result() for f in searches])
