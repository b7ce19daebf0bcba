"""The discover stage's knobs and result: every default of the stage, defined once.

`DiscoverConfig` is what the discover flow, the build flow and the CLI expose; it validates
its values and hands each step only the knobs it uses (`SeriesFilter`, `CrawlConfig`), so a
task's cache key holds only what changes its output. `DISCOVER` is the default instance:
other modules take their defaults from it (``DISCOVER.since``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

Source = Literal["imdb-datasets", "imdb-web"]
"""Where series are listed from: IMDb's TSV dataset files, or its web pages."""
SOURCES: tuple[Source, ...] = get_args(Source)

#: Bounds of `since` (IMDb's oldest titles are from the 1870s).
MIN_SINCE, MAX_SINCE = 1870, 2100
_LOCALE_RE = re.compile(r"[a-z]{2}(?:-[a-z]{2})?")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SeriesFilter:
    """Which listed titles become `series` rows (besides being a non-adult series).

    Attributes:
        since: keep series whose start year is greater than this.
        min_votes: drop series with fewer IMDb votes (None: keep all, unrated included).
    """

    since: int
    min_votes: int | None


@dataclass(frozen=True)
class CrawlConfig:
    """What the web crawl asks IMDb's site for.

    Attributes:
        since: list series released after this year.
        max_pages: cap on advanced-search pages.
        locale: IMDb locale prefix such as ``de``; None for the English site.
        page_size: results per list page (``count=``), when the site accepts it.
    """

    since: int
    max_pages: int
    locale: str | None
    page_size: int | None


@dataclass(frozen=True)
class DiscoverConfig:
    """Settings of the discover stage; validated on construction.

    Attributes:
        source: ``imdb-datasets`` (the TSV files) or ``imdb-web`` (the site's pages).
        since: keep series whose start year is greater than this ("released after 2021").
        min_votes: optionally drop series with fewer IMDb votes.
        max_pages: cap on advanced-search pages (imdb-web).
        locale: IMDb locale prefix such as ``de`` (imdb-web); ``""`` means None.
        page_size: results per list page, when the site accepts ``count=`` (imdb-web).
    """

    source: Source = "imdb-datasets"
    since: int = 2021
    min_votes: int | None = None
    max_pages: int = 200
    locale: str | None = None
    page_size: int | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source={self.source!r}; expected one of {', '.join(SOURCES)}")
        if not _is_int(self.since) or not MIN_SINCE <= self.since <= MAX_SINCE:
            raise ValueError(
                f"since={self.since!r}; expected a year in {MIN_SINCE}..{MAX_SINCE}"
            )
        if self.min_votes is not None and (not _is_int(self.min_votes) or self.min_votes < 0):
            raise ValueError(f"min_votes={self.min_votes!r}; expected None or an integer >= 0")
        if not _is_int(self.max_pages) or not 1 <= self.max_pages <= 100_000:
            raise ValueError(f"max_pages={self.max_pages!r}; expected an integer in 1..100000")
        if self.locale == "":
            object.__setattr__(self, "locale", None)
        if self.locale is not None and (
            not isinstance(self.locale, str) or not _LOCALE_RE.fullmatch(self.locale)
        ):
            raise ValueError(
                f"locale={self.locale!r}; expected None or an IMDb locale prefix such as "
                "'de' or 'fr-ca' (lower case)"
            )
        if self.page_size is not None and (
            not _is_int(self.page_size) or not 1 <= self.page_size <= 1000
        ):
            raise ValueError(
                f"page_size={self.page_size!r}; expected None or an integer in 1..1000"
            )

    @property
    def filter(self) -> SeriesFilter:
        """The knobs of the `series` table's filter."""
        return SeriesFilter(self.since, self.min_votes)

    @property
    def crawl(self) -> CrawlConfig:
        """The knobs of the web crawl."""
        return CrawlConfig(self.since, self.max_pages, self.locale, self.page_size)


DISCOVER = DiscoverConfig()
"""The defaults, for flow parameters and CLI options."""


@dataclass(frozen=True)
class DiscoverResult:
    """What a discover run did.

    Attributes:
        series: rows of the `series` table written.
        kinds: series per IMDb titleType (``tvSeries``, ``tvMiniSeries``).
        fetches: requests made (rows of `discover_fetches`).
        failed_fetches: requests whose status is not ``ok``.
        tables: ``{table name: sha256 of its Parquet bytes}`` of the tables written.
    """

    series: int
    kinds: Mapping[str, int]
    fetches: int
    failed_fetches: int
    tables: Mapping[str, str]
