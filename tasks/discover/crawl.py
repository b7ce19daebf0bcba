"""The imdb-web source: crawl IMDb's advanced search and title pages, then the `series` table.

Fetching and parsing are separate: the parsers in `tv100.tasks.discover.imdb_pages` are pure
functions on bytes; this module does the I/O through `tv100.tasks.web.client.HttpClient` and
turns parsed records into the `series` table. Every request is a `discover_fetches` row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from tv100.storage.schemas import SERIES
from tv100.tasks.discover.config import CrawlConfig, SeriesFilter
from tv100.tasks.discover.fetches import FetchLog, is_url
from tv100.tasks.discover.imdb_codes import SERIES_KINDS
from tv100.tasks.discover.imdb_pages import (
    ListedTitle,
    TitlePage,
    list_page_url,
    parse_list_page,
    parse_title_page,
    title_page_url,
)
from tv100.tasks.web.client import HttpClient
from tv100.tasks.web.config import HttpConfig


@dataclass(frozen=True)
class WebCrawl:
    """What a crawl of IMDb's advanced search and title pages found.

    Attributes:
        listed: the list pages' titles, first seen first.
        titles: the parsed title page of each listed title whose page was usable.
        fetches: the `discover_fetches` rows of the requests made.
    """

    listed: tuple[ListedTitle, ...]
    titles: Mapping[str, TitlePage]
    fetches: pa.Table


async def _crawl_web(base_url: str, crawl: CrawlConfig, config: HttpConfig) -> WebCrawl:
    log = FetchLog()
    listed: list[ListedTitle] = []
    seen: set[str] = set()
    async with HttpClient(config) as client:
        start = 1
        for _ in range(crawl.max_pages):
            url = list_page_url(
                base_url, crawl.since, start, locale=crawl.locale, count=crawl.page_size or None
            )
            fetched = await client.get(url)
            records = parse_list_page(fetched.content) if fetched.status == "ok" else []
            log.add("imdb-web", "list", fetched, len(records))
            if fetched.status != "ok":
                raise RuntimeError(
                    f"IMDb list page {url} failed: {fetched.status} "
                    f"{fetched.http_status or ''} {fetched.error_message or ''}".rstrip()
                )
            new = [r for r in records if r.series_id not in seen]
            if not new:
                break
            seen.update(r.series_id for r in new)
            listed.extend(new)
            start += len(records)

        async def one(series_id: str) -> tuple[str, TitlePage | None]:
            fetched = await client.get(title_page_url(base_url, series_id, crawl.locale))
            page = parse_title_page(fetched.content) if fetched.status == "ok" else None
            log.add("imdb-web", "title", fetched, 1 if page else 0)
            return series_id, page

        pairs = await asyncio.gather(*(one(r.series_id) for r in listed))
    titles = {sid: page for sid, page in pairs if page is not None}
    return WebCrawl(tuple(listed), titles, log.table())


def crawl_web(base_url: str, crawl: CrawlConfig, config: HttpConfig) -> WebCrawl:
    """Page through advanced search until an empty page or `max_pages`, then every title.

    Args:
        base_url: the site root, e.g. ``https://www.imdb.com``.
        crawl: since, max_pages, locale and page size.
        config: the HTTP settings.

    Raises:
        ValueError: `base_url` is not an http(s) URL.
        RuntimeError: a list page failed (a failed title page only leaves its title out).
    """
    if not is_url(base_url):
        raise ValueError(f"IMDb web location {base_url!r} is not an http(s) URL")
    return asyncio.run(_crawl_web(base_url, crawl, config))


def series_from_web(crawl: WebCrawl, keep: SeriesFilter, discovered_at: datetime) -> pa.Table:
    """Keep listed titles whose title page says: a series, not adult, started after `since`.

    The list page's year and type label are localized and the site's release-date filter
    is per-country, so the title page is the authority; a title whose page failed is left
    out (its failure is a `discover_fetches` row).

    Args:
        crawl: what `crawl_web` found.
        keep: start year and vote filters.
        discovered_at: the value of the ``discovered_at`` column.

    Returns:
        The `series` table, sorted by series_id.
    """
    rows: list[dict[str, Any]] = []
    for item in crawl.listed:
        page = crawl.titles.get(item.series_id)
        if page is None or page.kind not in SERIES_KINDS or page.is_adult:
            continue
        start = page.start_year
        if start is None or start <= keep.since:
            continue
        votes = page.num_votes if page.num_votes is not None else item.num_votes
        if keep.min_votes is not None and (votes or 0) < keep.min_votes:
            continue
        rows.append(
            {
                "series_id": item.series_id,
                "title": page.title or item.title,
                "original_title": page.original_title or page.title,
                "kind": page.kind,
                "start_year": start,
                "end_year": page.end_year,
                "genres": list(page.genres),
                "countries": list(page.countries),
                "languages": list(page.languages),
                "rating": page.rating if page.rating is not None else item.rating,
                "num_votes": votes,
                "source": "imdb-web",
                "discovered_at": discovered_at,
            }
        )
    rows.sort(key=lambda r: r["series_id"])
    return pa.Table.from_pylist(rows, schema=SERIES)
