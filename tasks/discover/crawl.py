"""The imdb-web source: crawl IMDb's advanced search and title pages, then the `series` table.

Fetching and parsing are separate: the parsers in `tv100.tasks.discover.imdb_pages` are pure
functions on bytes; this module does the I/O through `tv100.tasks.web.client.HttpClient` and
turns parsed records into the `series` table. Every request is a `discover_fetches` row.

IMDb's firewall answers crawlers with bot checks (`tv100.tasks.discover.imdb_pages.waf_action`,
`is_challenge_page`). The first one stops the crawl: no further page is asked of the host, the
answers are ``blocked`` rows, and `ImdbBlockedError` tells the user to read the datasets instead.
So does a list page IMDb's robots.txt disallows (a ``robots_disallowed`` row, never requested).
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
    WAF_HEADER,
    ListedTitle,
    TitlePage,
    classify_imdb_page,
    is_challenge_page,
    list_page_url,
    parse_list_page,
    parse_title_page,
    title_page_url,
    waf_action,
)
from tv100.tasks.web.client import HttpClient
from tv100.tasks.web.config import DEFAULT_RETRY_STATUSES, Fetched, HttpConfig
from tv100.tasks.web.errors import SourceError
from tv100.tasks.web.robots import ROBOTS_DISALLOWED

SOURCE = "imdb-web"
#: The genre IMDb gives every adult title: the adult filter where a page has no adult flag.
ADULT_GENRE = "Adult"


class ImdbBlockedError(SourceError):
    """IMDb keeps the crawler off: the crawl stopped (fixed, never retried).

    Its firewall answered with a bot check, or its robots.txt disallows the list pages.

    Attributes:
        fetches: the `discover_fetches` rows of the requests made, the blocked ones included.
    """

    def __init__(self, message: str, fetches: pa.Table | None = None) -> None:
        super().__init__(message, transient=False)
        self.fetches = fetches if fetches is not None else FetchLog().table()

    def __reduce__(self) -> tuple[Any, ...]:  # keep `fetches` across pickling (Prefect states)
        return type(self), (str(self), self.fetches)


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


def bot_check(fetched: Fetched, parsed: bool) -> str | None:
    """Why an answer is a bot check rather than the page; None when it is not one.

    Args:
        fetched: the answer.
        parsed: whether the page's parser found what it looks for (a page it can read is
            never taken for a challenge, whatever scripts it loads).
    """
    action = waf_action(fetched.headers)
    if action is not None:
        return f"bot check: HTTP {fetched.http_status}, {WAF_HEADER}: {action}"
    if not parsed and is_challenge_page(fetched.content):
        return f"bot check: a challenge page (HTTP {fetched.http_status})"
    return None


def _blocked(url: str, reason: str, log: FetchLog) -> ImdbBlockedError:
    return ImdbBlockedError(
        f"IMDb blocked the crawl: {url} answered with a {reason}; "
        "use --source imdb-datasets (IMDb's dataset files) instead",
        log.table(),
    )


def _failed(url: str, fetched: Fetched, log: FetchLog) -> SourceError:
    """A failed list page: transient when waiting may help (a timeout, 429, 5xx).

    A page robots.txt disallows is an `ImdbBlockedError` carrying the `discover_fetches`
    rows so far: the dataset files are then the way to read IMDb.
    """
    if fetched.status == ROBOTS_DISALLOWED:
        return ImdbBlockedError(
            f"IMDb's robots.txt disallows {url} for this crawler; use --source imdb-datasets",
            log.table(),
        )
    transient = fetched.status == "timeout" or fetched.http_status in DEFAULT_RETRY_STATUSES
    what = " ".join(f"{fetched.http_status or ''} {fetched.error_message or ''}".split())
    return SourceError(
        f"IMDb list page {url} failed: {fetched.status} {what}".rstrip(), transient=transient
    )


async def _list_pages(
    client: HttpClient, base_url: str, crawl: CrawlConfig, log: FetchLog
) -> list[ListedTitle]:
    """Page through advanced search until a page adds nothing or `max_pages`."""
    listed: list[ListedTitle] = []
    seen: set[str] = set()
    start = 1
    for _ in range(crawl.max_pages):
        url = list_page_url(
            base_url, crawl.since, start, locale=crawl.locale, count=crawl.page_size or None
        )
        fetched = await client.get(url)
        records = parse_list_page(fetched.content) if fetched.ok else []
        reason = bot_check(fetched, bool(records))
        if reason is not None:
            log.add(SOURCE, "list", fetched, 0, status="blocked", error_message=reason)
            raise _blocked(url, reason, log)
        if fetched.ok and not records and classify_imdb_page(fetched.content, "list") != "list":
            message = "not an IMDb list page (unknown layout)"
            log.add(SOURCE, "list", fetched, 0, status="unknown_layout", error_message=message)
            raise SourceError(f"IMDb list page {url} is {message}")
        log.add(SOURCE, "list", fetched, len(records))
        if not fetched.ok:
            raise _failed(url, fetched, log)
        new = [r for r in records if r.series_id not in seen]
        if not new:
            break
        seen.update(r.series_id for r in new)
        listed.extend(new)
        start += len(records)
    return listed


async def _title_pages(
    client: HttpClient,
    base_url: str,
    crawl: CrawlConfig,
    series_ids: list[str],
    workers: int,
    log: FetchLog,
) -> dict[str, TitlePage]:
    """Every title page, `workers` at a time; none is asked once one was a bot check."""
    answers: list[tuple[Fetched, TitlePage | None, str | None] | None] = [None] * len(series_ids)
    blocked: list[tuple[str, str]] = []
    todo = iter(enumerate(series_ids))

    async def worker() -> None:
        for i, series_id in todo:  # one shared iterator: each id is taken once
            if blocked:
                return
            url = title_page_url(base_url, series_id, crawl.locale)
            fetched = await client.get(url)
            page = parse_title_page(fetched.content) if fetched.ok else None
            reason = bot_check(fetched, page is not None)
            if reason is not None:
                blocked.append((url, reason))
            answers[i] = (fetched, page, reason)

    await asyncio.gather(*(worker() for _ in range(max(1, workers))))
    titles: dict[str, TitlePage] = {}
    for series_id, answer in zip(series_ids, answers, strict=True):  # rows in list order
        if answer is None:
            continue
        fetched, page, reason = answer
        if reason is not None:
            log.add(SOURCE, "title", fetched, 0, status="blocked", error_message=reason)
        elif fetched.ok and page is None:
            log.add(
                SOURCE,
                "title",
                fetched,
                0,
                status="unknown_layout",
                error_message="not an IMDb title page (unknown layout)",
            )
        else:
            log.add(SOURCE, "title", fetched, 1 if page else 0)
        if page is not None and reason is None:
            titles[series_id] = page
    if blocked:
        raise _blocked(*blocked[0], log)
    return titles


async def _crawl_web(base_url: str, crawl: CrawlConfig, config: HttpConfig) -> WebCrawl:
    log = FetchLog()
    async with HttpClient(config) as client:
        listed = await _list_pages(client, base_url, crawl, log)
        ids = [r.series_id for r in listed]
        titles = await _title_pages(client, base_url, crawl, ids, config.per_host, log)
    return WebCrawl(tuple(listed), titles, log.table())


def crawl_web(base_url: str, crawl: CrawlConfig, config: HttpConfig) -> WebCrawl:
    """Page through advanced search until an empty page or `max_pages`, then every title.

    Args:
        base_url: the site root, e.g. ``https://www.imdb.com``.
        crawl: since, max_pages, locale and page size.
        config: the HTTP settings (title pages are asked `per_host` at a time).

    Raises:
        ValueError: `base_url` is not an http(s) URL.
        ImdbBlockedError: IMDb answered a page with a bot check, or its robots.txt disallows
            a list page (the crawl stopped there).
        SourceError: a list page failed or is not a list page (a failed title page only
            leaves its title out; its failure is a `discover_fetches` row).
    """
    if not is_url(base_url):
        raise ValueError(f"IMDb web location {base_url!r} is not an http(s) URL")
    return asyncio.run(_crawl_web(base_url, crawl, config))


def _is_adult(page: TitlePage) -> bool:
    if page.is_adult is not None:
        return page.is_adult
    return ADULT_GENRE in page.genres  # JSON-LD has no adult flag, but adult titles this genre


def series_from_web(crawl: WebCrawl, keep: SeriesFilter, discovered_at: datetime) -> pa.Table:
    """Keep listed titles whose title page says: a series, not adult, started after `since`.

    The list page's year and type label are localized and the site's release-date filter
    is per-country, so the title page is the authority; a title whose page failed is left
    out (its failure is a `discover_fetches` row). A page without an adult flag (JSON-LD)
    counts as adult when it lists IMDb's ``Adult`` genre.

    Args:
        crawl: what `crawl_web` found.
        keep: start year and vote filters.
        discovered_at: the value of the ``discovered_at`` column.

    Returns:
        The `series` table, sorted by series_id; ``parsed_from`` says which part of the title
        page each row was read from.
    """
    rows: list[dict[str, Any]] = []
    for item in crawl.listed:
        page = crawl.titles.get(item.series_id)
        if page is None or page.kind not in SERIES_KINDS or _is_adult(page):
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
                "source": SOURCE,
                "parsed_from": page.parsed_from,
                "discovered_at": discovered_at,
            }
        )
    rows.sort(key=lambda r: r["series_id"])
    return pa.Table.from_pylist(rows, schema=SERIES)
