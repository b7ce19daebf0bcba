"""The interface every image search engine implements, and what engines share.

An engine (`SearchEngine`) has a **pure parser** from a saved result page (bytes) to a
`ResultPage`: its `SearchHit`s and its page class (`tv100.tasks.collect.pages`: results,
no_results, blocked or unknown_layout). The parser never raises on broken markup (missing
attributes, non-JSON data, truncated scripts, empty pages, garbage bytes, invalid UTF-8) and
returns whatever is valid. The **async fetcher** (`SearchEngine.fetch`) pages through the
results with `tv100.tasks.web.client.HttpClient` until the per-series cap, `max_pages`, a
page with no new hits, the end of the results, or a page that failed, was blocked or could
not be read.

Hits are deduplicated per query by the canonical form of their image URL
(`tv100.tasks.web.urls.canonical_url`); rows keep the URL as the engine gave it.
"""

from __future__ import annotations

import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple
from urllib.parse import urlencode

from selectolax.lexbor import LexborHTMLParser, LexborNode

from tv100.tasks.collect.pages import (
    BLOCKED,
    NO_RESULTS,
    READ_CLASSES,
    READ_STATUSES,
    PageClass,
    header_block,
)
from tv100.tasks.web.config import Fetched
from tv100.tasks.web.markup import limit_nesting
from tv100.tasks.web.urls import absolute_url, canonical_url

if TYPE_CHECKING:  # the HTTP client (httpx) loads only where a fetch runs
    from tv100.tasks.web.client import HttpClient

log = logging.getLogger("tv100.search")

_HIGHLIGHT = str.maketrans("", "", "\ue000\ue001")
SPACES = re.compile(r"\s+")
"""Runs of whitespace (collapsed to one space in titles and queries)."""


def now_utc() -> datetime:
    """The current time, timezone-aware UTC (the `fetched_at` of rows)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class SearchHit:
    """One image result as an engine lists it.

    Attributes:
        image_url: the full-size image (absolute http(s) URL).
        thumb_url: the engine's thumbnail, if given.
        page_url: the page the image is shown on, if given.
        title: the result's title (plain text), if given.
        width: the full-size width in pixels the engine reports, if any.
        height: the full-size height in pixels the engine reports, if any.
        thumbnail_only: the engine gave only a thumbnail (Google's basic-HTML layout):
            `image_url` is that thumbnail, and the full image is to be found on `page_url`
            (its ``og:image``).
    """

    image_url: str
    thumb_url: str | None = None
    page_url: str | None = None
    title: str | None = None
    width: int | None = None
    height: int | None = None
    thumbnail_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The hit as a JSON-ready dict (field order as declared)."""
        return {
            "image_url": self.image_url,
            "thumb_url": self.thumb_url,
            "page_url": self.page_url,
            "title": self.title,
            "width": self.width,
            "height": self.height,
            "thumbnail_only": self.thumbnail_only,
        }


class ResultPage(NamedTuple):
    """A parsed result page: its hits, the engine's `next` link (DuckDuckGo only; None on
    the last page), its page class and, for ``blocked`` and ``unknown_layout`` pages, why."""

    hits: list[SearchHit]
    next: str | None
    page_class: PageClass
    reason: str | None = None

    @property
    def valid(self) -> bool:
        """Whether the page is in the engine's format (``results`` or ``no_results``)."""
        return self.page_class in READ_CLASSES


# Shared parsing helpers: lenient readers of values found in pages (None when invalid).


def clean_text(value: Any) -> str | None:
    """`value` as clean one-line text (highlight marks dropped), None when empty."""
    if not isinstance(value, str):
        return None
    value = SPACES.sub(" ", value.translate(_HIGHLIGHT)).strip()
    return value or None


def pixel_size(value: Any) -> int | None:
    """A positive pixel size from an int or a digit string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 0 < value < 1_000_000:
        return value
    return None


def make_hit(
    image: Any,
    thumb: Any = None,
    page: Any = None,
    title: Any = None,
    width: Any = None,
    height: Any = None,
    thumbnail_only: bool = False,
) -> SearchHit | None:
    """A `SearchHit` from raw page values; None unless `image` is an absolute http(s) URL.

    Invalid optional values (a relative thumbnail, a size of ``"abc"``) become None.
    """
    image_url = absolute_url(image)
    if image_url is None:
        return None
    return SearchHit(
        image_url=image_url,
        thumb_url=absolute_url(thumb),
        page_url=absolute_url(page),
        title=clean_text(title),
        width=pixel_size(width),
        height=pixel_size(height),
        thumbnail_only=thumbnail_only,
    )


def unique_hits(hits: Iterable[SearchHit | None]) -> list[SearchHit]:
    """Valid hits, first occurrence of each canonical image URL, in order."""
    seen: set[str] = set()
    out: list[SearchHit] = []
    for hit in hits:
        if hit is None:
            continue
        key = canonical_url(hit.image_url)
        if key is None or key in seen:
            continue
        seen.add(key)
        out.append(hit)
    return out


def decode_page(content: bytes | str) -> str:
    """A page's text: UTF-8 with errors replaced, NULs too; "" for non-bytes."""
    if isinstance(content, str):
        return content
    if not isinstance(content, bytes | bytearray | memoryview):
        return ""
    return bytes(content).decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def parse_html(content: bytes | str) -> LexborHTMLParser | None:
    """The page's HTML tree (nesting capped), or None for an empty or unreadable page."""
    text = decode_page(content)
    if not text.strip():
        return None
    try:
        return LexborHTMLParser(limit_nesting(text))
    except Exception:  # selectolax gives up on some inputs; a page we cannot read has no hits
        return None


def json_string(raw: str | None) -> str | None:
    """The value of a JSON string literal's body (escapes decoded), or None if invalid."""
    if raw is None:
        return None
    try:
        value = json.loads('"' + raw + '"')
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def img_src(anchor: LexborNode) -> str | None:
    """The URL of the first ``<img>`` inside `anchor` (``src``, ``data-src``, ``data-iurl``)."""
    img = anchor.css_first("img")
    if img is None:
        return None
    attrs = img.attributes
    for name in ("src", "data-src", "data-iurl"):
        url = absolute_url(attrs.get(name))
        if url is not None:
            return url
    return None


def img_alt(anchor: LexborNode) -> str | None:
    """The ``alt`` text of the first ``<img>`` inside `anchor`."""
    img = anchor.css_first("img")
    return clean_text(img.attributes.get("alt")) if img is not None else None


def quote_query(params: Mapping[str, Any]) -> str:
    """A query string of `params` (commas left unescaped, as the engines write them)."""
    return urlencode({k: str(v) for k, v in params.items()}, safe=",")


# The fetch side.


@dataclass
class PageRecord:
    """One request made by a fetcher (a `search_pages` row without series and query)."""

    kind: str
    page: int
    url: str
    status: str
    http_status: int | None
    error_message: str | None
    hits: int | None
    new_hits: int | None
    fetched_at: datetime

    @classmethod
    def of(
        cls,
        kind: str,
        page: int,
        fetched: Fetched,
        *,
        status: str | None = None,
        error_message: str | None = None,
        hits: int | None = None,
        new_hits: int | None = None,
    ) -> PageRecord:
        """The record of `fetched`; `status`/`error_message` override the HTTP layer's."""
        return cls(
            kind=kind,
            page=page,
            url=fetched.url,
            status=status or fetched.status,
            http_status=fetched.http_status,
            error_message=error_message or fetched.error_message,
            hits=hits,
            new_hits=new_hits,
            fetched_at=now_utc(),
        )


@dataclass(frozen=True)
class RankedHit:
    """A hit kept by a fetcher: its 1-based rank after dedup and the page it was on."""

    rank: int
    page: int
    hit: SearchHit
    fetched_at: datetime


@dataclass
class EngineFetch:
    """What one fetch (one query on one engine) produced."""

    engine: str
    query: str
    hits: list[RankedHit] = field(default_factory=list)
    pages: list[PageRecord] = field(default_factory=list)

    @property
    def failed_pages(self) -> list[PageRecord]:
        """The records of requests that did not succeed or gave a page we could not read."""
        return [p for p in self.pages if p.status not in READ_STATUSES]


def warn_failed(engine: str, query: str, record: PageRecord) -> None:
    """Log a failed request on the ``tv100.search`` logger."""
    log.warning(
        "search %s %r: %s page %d failed: %s %s %s",
        engine,
        query,
        record.kind,
        record.page,
        record.status,
        record.http_status if record.http_status is not None else "",
        record.error_message or "",
    )


class SearchEngine(ABC):
    """One image search engine: URL scheme, parser and paging.

    Subclasses define `page_url`, `read_page` and, if needed, `prepare` (a first request
    before the result pages, e.g. DuckDuckGo's token) and `next_url`.
    """

    name: ClassVar[str]
    default_base_url: ClassVar[str]
    default_page_size: ClassVar[int]

    def parse(self, content: bytes) -> list[SearchHit]:
        """Hits of one saved result page (pure; never raises on bad content)."""
        return self.read_page(content).hits

    @abstractmethod
    def read_page(self, content: bytes) -> ResultPage:
        """Hits, next link and page class of one result page (pure; never raises)."""

    def read_fetched(self, fetched: Fetched) -> ResultPage:
        """`read_page` of a fetched page, after the blocks told by its headers (a WAF's 202)."""
        block = header_block(fetched.headers, fetched.http_status)
        if block is not None:
            return ResultPage([], None, BLOCKED, block)
        return self.read_page(fetched.content)

    @abstractmethod
    def page_url(
        self, base_url: str, query: str, offset: int, page_size: int | None, state: Any
    ) -> str:
        """The URL of the result page starting at 0-based `offset`."""

    async def prepare(
        self, client: HttpClient, base_url: str, query: str, out: EngineFetch
    ) -> tuple[bool, Any]:
        """Run requests needed before the first result page; (ok, state for page URLs)."""
        return True, None

    def headers(self, base_url: str, state: Any) -> dict[str, str] | None:
        """Extra request headers for result pages."""
        return None

    def next_url(
        self,
        base_url: str,
        query: str,
        current_url: str,
        parsed: ResultPage,
        offset: int,
        page_size: int | None,
        state: Any,
    ) -> str | None:
        """The next result page's URL, or None when the engine says there is none."""
        return self.page_url(base_url, query, offset, page_size, state)

    async def fetch(
        self,
        client: HttpClient,
        query: str,
        *,
        base_url: str | None = None,
        cap: int = 200,
        max_pages: int = 10,
        page_size: int | None = None,
    ) -> EngineFetch:
        """Page through the results of `query` and keep the first `cap` distinct images.

        Stops at `cap` hits, after `max_pages` result pages, at a page that adds no new
        image, at a ``no_results`` page, when the engine has no next page, or at a page that
        failed (the HTTP layer has already retried it), was ``blocked`` or of an
        ``unknown_layout``: recorded in `EngineFetch.pages` with its reason, and logged.

        Args:
            client: an open `HttpClient`.
            query: the search query.
            base_url: the engine's origin (default `default_base_url`).
            cap: most hits to keep.
            max_pages: most result pages to request.
            page_size: results asked per page (None: the engine's default, not sent).

        Returns:
            The ranked hits (deduplicated by `canonical_url`) and one record per request.
        """
        base = (base_url or self.default_base_url).rstrip("/")
        out = EngineFetch(self.name, query)
        ok, state = await self.prepare(client, base, query, out)
        if not ok:
            return out
        seen: set[str] = set()
        offset = 0
        url: str | None = self.page_url(base, query, offset, page_size, state)
        page = 0
        while url is not None and page < max_pages and len(out.hits) < cap:
            page += 1
            fetched = await client.get(url, headers=self.headers(base, state))
            if not fetched.ok:
                record = PageRecord.of("results", page, fetched)
                out.pages.append(record)
                warn_failed(self.name, query, record)
                break
            parsed = self.read_fetched(fetched)
            if not parsed.valid:
                record = PageRecord.of(
                    "results",
                    page,
                    fetched,
                    status=parsed.page_class,
                    error_message=parsed.reason,
                )
                out.pages.append(record)
                warn_failed(self.name, query, record)
                break
            when = now_utc()
            new = 0
            for hit in parsed.hits:
                if len(out.hits) >= cap:
                    break
                key = canonical_url(hit.image_url)
                if key is None or key in seen:
                    continue
                seen.add(key)
                new += 1
                out.hits.append(RankedHit(len(out.hits) + 1, page, hit, when))
            out.pages.append(
                PageRecord.of(
                    "results",
                    page,
                    fetched,
                    status=parsed.page_class,
                    hits=len(parsed.hits),
                    new_hits=new,
                )
            )
            if new == 0 or parsed.page_class == NO_RESULTS:
                break
            offset += len(parsed.hits)
            url = self.next_url(base, query, url, parsed, offset, page_size, state)
        return out
