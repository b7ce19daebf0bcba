"""The collect stage's settings and result: one frozen, validated config per part.

`SEARCH`, `DOWNLOAD` and `COLLECT` are the defaults; the collect flow's parameters and the
CLI's options take their defaults from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from string import Formatter
from typing import Any
from urllib.parse import urlsplit

from tv100.tasks.collect.bing import BingEngine
from tv100.tasks.collect.duckduckgo import DuckDuckGoEngine
from tv100.tasks.collect.engine import SPACES
from tv100.tasks.collect.engines import ENGINE_NAMES, check_engines
from tv100.tasks.collect.google import GoogleEngine
from tv100.tasks.web.config import HttpConfig

DEFAULT_QUERY_TEMPLATE = "{title} TV Series"
"""The query of the TV100 paper: the series' English title followed by "TV Series"."""

TEMPLATE_FIELDS = ("title", "original_title", "year", "series_id")
"""Placeholders a query template may use (`year` is the start year, empty when unknown)."""

STATUSES = (
    "ok",
    "http_error",
    "timeout",
    "too_large",
    "not_image",
    "decode_error",
    "opted_out",
    "blocked",
    "robots_disallowed",
)
"""The `status` values of the `images` table."""

MAX_RETRY_BACKOFF_S = 30 * 86_400
"""The longest `DownloadConfig.retry_backoff_s`: 30 days."""

OPT_OUT_DIRECTIVES = ("noai", "noimageai", "noindex", "noimageindex")
"""img2dataset's defaults: directives in X-Robots-Tag that opt an image out of AI datasets."""


def _check_base_url(name: str, value: Any) -> str:
    problem = None
    if not isinstance(value, str) or not value.strip():
        problem = "a non-empty string"
    else:
        try:
            parts = urlsplit(value.strip())
            _ = parts.port
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.query
            or parts.fragment
        ):
            problem = "an http(s) URL without query or fragment"
    if problem:
        raise ValueError(f"{name} must be {problem} (e.g. 'https://www.bing.com'), got {value!r}")
    return str(value).strip().rstrip("/")


def _check_count(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")


@dataclass(frozen=True)
class SearchConfig:
    """Settings of a search run; validated on construction.

    Attributes:
        query_template: the query, with placeholders from `TEMPLATE_FIELDS` (``{title}`` or
            ``{original_title}`` required); default the paper's ``"{title} TV Series"``.
        per_series_cap: most hits kept per series and engine.
        max_pages: most result pages requested per series and engine.
        page_size: results asked per page (Bing ``count``, Google ``num``, stand-in DuckDuckGo
            ``n``); None sends nothing and lets each engine use its own size.
        bing_url: Bing's origin.
        google_url: Google's origin.
        duckduckgo_url: DuckDuckGo's origin.
    """

    query_template: str = DEFAULT_QUERY_TEMPLATE
    per_series_cap: int = 200
    max_pages: int = 10
    page_size: int | None = None
    bing_url: str = BingEngine.default_base_url
    google_url: str = GoogleEngine.default_base_url
    duckduckgo_url: str = DuckDuckGoEngine.default_base_url

    def __post_init__(self) -> None:
        template = self.query_template
        if not isinstance(template, str) or not template.strip():
            raise ValueError(
                f"query_template must be a non-empty string like {DEFAULT_QUERY_TEMPLATE!r}, "
                f"got {template!r}"
            )
        try:
            used = {f for _, f, _, _ in Formatter().parse(template) if f is not None}
            template.format(**{f: "x" for f in TEMPLATE_FIELDS})
        except (ValueError, KeyError, IndexError, AttributeError) as exc:
            raise ValueError(
                f"query_template {template!r} is not a valid template: {exc!s}; "
                f"placeholders allowed: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
            ) from None
        if not used & {"title", "original_title"}:
            raise ValueError(
                f"query_template {template!r} must contain {{title}} or {{original_title}}"
            )
        _check_count("per_series_cap", self.per_series_cap, 1, 100_000)
        _check_count("max_pages", self.max_pages, 1, 1_000)
        if self.page_size is not None:
            _check_count("page_size", self.page_size, 1, 1_000)
        for name in ENGINE_NAMES:
            attr = f"{name}_url"
            object.__setattr__(self, attr, _check_base_url(attr, getattr(self, attr)))

    @classmethod
    def from_engine_urls(
        cls, engine_urls: Mapping[str, str] | None = None, **settings: Any
    ) -> SearchConfig:
        """A config whose engines live at `engine_urls` (the others at their defaults).

        Args:
            engine_urls: engine name → origin (e.g. a stand-in server's).
            **settings: the other fields.

        Raises:
            ValueError: for an unknown engine name or an invalid setting.
        """
        urls = {f"{name}_url": origin for name, origin in (engine_urls or {}).items()}
        check_engines(engine_urls or ENGINE_NAMES)
        return cls(**{**settings, **urls})

    def base_url(self, engine: str) -> str:
        """The origin configured for `engine`."""
        (name,) = check_engines([engine])
        return str(getattr(self, f"{name}_url"))

    def query(self, series: Mapping[str, Any]) -> str:
        """The query for one series (whitespace collapsed)."""
        title = series.get("title") or ""
        year = series.get("start_year")
        values = {
            "title": title,
            "original_title": series.get("original_title") or title,
            "year": "" if year is None else str(year),
            "series_id": series.get("series_id") or "",
        }
        return SPACES.sub(" ", self.query_template.format(**values)).strip()


SEARCH = SearchConfig()
"""The default search settings."""


@dataclass(frozen=True)
class DownloadConfig:
    """Knobs of the downloader; validated on construction.

    Args:
        max_side: the stored image's longer side is at most this (pixels).
        jpeg_quality: quality of the stored JPEG.
        max_pixels: larger source images are refused as decompression bombs.
        honour_opt_out: skip images whose X-Robots-Tag carries an opt-out directive.
        opt_out_directives: the directives that count as opting out.
        shard_size: hits per output shard (the unit of resume).
        processes: worker processes, each with its own event loop and decode threads (one
            Python process cannot keep two cores busy: the event loop holds the GIL); the
            per-host concurrency and rate limits are divided among them.
        decode_workers: threads decoding, resizing and storing per process (Pillow releases
            the GIL there). Two: storing waits on the file's fsync, and meanwhile the other
            thread decodes (with one, that wait left the core idle).
        in_flight: downloads in flight at once (bounded further per host by `http`).
        progress_every: log a progress line every this many hits.
        max_attempts: runs that may try one image: an image whose last try failed
            transiently (`tv100.tasks.collect.shards.is_transient`) is tried again by a later
            run until it has been tried this many times (1: never).
        retry_backoff_s: a transiently failed image is tried again no sooner than
            ``retry_backoff_s * 2 ** (attempts - 1)`` seconds after its last try
            (`retry_delay_s`): 10 min, then 20, 40.
        http: the HTTP layer's configuration (its retries are within one try).
    """

    max_side: int = 512
    jpeg_quality: int = 90
    max_pixels: int = 64_000_000
    honour_opt_out: bool = True
    opt_out_directives: tuple[str, ...] = OPT_OUT_DIRECTIVES
    shard_size: int = 256
    processes: int = 2
    decode_workers: int = 2
    in_flight: int = 32
    progress_every: int = 500
    max_attempts: int = 4
    retry_backoff_s: float = 600.0
    http: HttpConfig = field(default_factory=lambda: HttpConfig(timeout_s=15.0, retries=2))

    def __post_init__(self) -> None:
        checks = {
            "max_side": (self.max_side, 16, 16384),
            "jpeg_quality": (self.jpeg_quality, 1, 100),
            "max_pixels": (self.max_pixels, 1, 10**10),
            "shard_size": (self.shard_size, 1, 1_000_000),
            "processes": (self.processes, 1, 256),
            "decode_workers": (self.decode_workers, 1, 256),
            "in_flight": (self.in_flight, 1, 10_000),
            "progress_every": (self.progress_every, 1, 10**9),
            "max_attempts": (self.max_attempts, 1, 100),
        }
        for name, (value, low, high) in checks.items():
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(
                    f"DownloadConfig.{name}={value!r} is invalid; expected an integer in "
                    f"[{low}, {high}]"
                )
        backoff = self.retry_backoff_s
        if (
            isinstance(backoff, bool)
            or not isinstance(backoff, int | float)
            or not 0 <= backoff <= MAX_RETRY_BACKOFF_S
        ):
            raise ValueError(
                f"DownloadConfig.retry_backoff_s={backoff!r} is invalid; expected a number of "
                f"seconds in [0, {MAX_RETRY_BACKOFF_S}]"
            )
        object.__setattr__(
            self, "opt_out_directives", tuple(d.lower() for d in self.opt_out_directives)
        )

    def retry_delay_s(self, attempts: int) -> float:
        """Seconds after its last try before an image tried `attempts` times is tried again."""
        return float(self.retry_backoff_s * 2 ** max(0, attempts - 1))


DOWNLOAD = DownloadConfig()
"""The default downloader settings."""


@dataclass(frozen=True)
class CollectConfig:
    """The collect stage's whole configuration; validated on construction.

    Attributes:
        engines: engine names searched, in order (default every engine).
        search: the search settings.
        search_http: the HTTP layer's settings for result pages.
        download: the downloader's settings (its own `http` for images).
    """

    engines: tuple[str, ...] = ENGINE_NAMES
    search: SearchConfig = field(default_factory=SearchConfig)
    search_http: HttpConfig = field(default_factory=HttpConfig)
    download: DownloadConfig = field(default_factory=DownloadConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "engines", check_engines(self.engines))
        for name, kind in (
            ("search", SearchConfig),
            ("search_http", HttpConfig),
            ("download", DownloadConfig),
        ):
            if not isinstance(getattr(self, name), kind):
                raise ValueError(
                    f"CollectConfig.{name} must be a {kind.__name__}, got {getattr(self, name)!r}"
                )

    @classmethod
    def from_options(
        cls,
        *,
        engines: Iterable[str] | None = None,
        engine_urls: Mapping[str, str] | None = None,
        query_template: str = SEARCH.query_template,
        per_series_cap: int = SEARCH.per_series_cap,
        max_pages: int = SEARCH.max_pages,
        max_side: int = DOWNLOAD.max_side,
        image_timeout_s: float = DOWNLOAD.http.timeout_s,
        image_retries: int = DOWNLOAD.http.retries,
        download_shard_size: int = DOWNLOAD.shard_size,
        allow_hosts: Iterable[str] | None = None,
        download_max_attempts: int = DOWNLOAD.max_attempts,
        download_retry_backoff_s: float = DOWNLOAD.retry_backoff_s,
    ) -> CollectConfig:
        """The config from the collect flow's parameters (as primitives).

        Args:
            engines: engine names; None for every engine.
            engine_urls: engine name → origin, to point engines elsewhere.
            query_template: the query per series.
            per_series_cap: most hits kept per series and engine.
            max_pages: most result pages per series and engine.
            max_side: the stored images' longer side, at most.
            image_timeout_s: per-request time limit for image downloads.
            image_retries: extra attempts for transient image-download failures.
            download_shard_size: hits per download shard (the unit of resume).
            allow_hosts: hosts admitted despite resolving to private addresses.
            download_max_attempts: runs that may try one image (transient failures).
            download_retry_backoff_s: first wait before a transiently failed image is tried
                again by a later run (doubling with each try).

        Raises:
            ValueError: naming the first invalid value and what was expected.
        """
        hosts = tuple(allow_hosts or ())
        return cls(
            engines=tuple(engines) if engines else ENGINE_NAMES,
            search=SearchConfig.from_engine_urls(
                engine_urls,
                query_template=query_template,
                per_series_cap=per_series_cap,
                max_pages=max_pages,
            ),
            search_http=HttpConfig(allow_hosts=hosts),
            download=DownloadConfig(
                max_side=max_side,
                shard_size=download_shard_size,
                max_attempts=download_max_attempts,
                retry_backoff_s=download_retry_backoff_s,
                http=HttpConfig(
                    timeout_s=image_timeout_s, retries=image_retries, allow_hosts=hosts
                ),
            ),
        )


COLLECT = CollectConfig()
"""The default collect settings."""


@dataclass(frozen=True)
class DownloadSummary:
    """What a download run did.

    Attributes:
        hits: distinct images planned (one per series and canonical image URL).
        downloaded_now: images fetched by this run (0 when everything was already done).
        status_counts: `images` rows per status, over the whole table.
        retried: images of `downloaded_now` tried again after a transient failure.
        to_retry: images whose last try failed transiently that a later run tries again
            (once their backoff has passed); they count in `status_counts` as failed.
    """

    hits: int
    downloaded_now: int
    status_counts: Mapping[str, int]
    retried: int = 0
    to_retry: int = 0


@dataclass(frozen=True)
class CollectResult:
    """What the collect flow did.

    Attributes:
        hits: rows of `search_hits`.
        search_pages: rows of `search_pages` (requests made).
        failed_search_pages: requests that failed.
        images: the download's summary.
        tables: sha256 of each table written by the search (`search_hits`, `search_pages`).
        engine_warnings: one line per engine none of whose pages could be read because they
            were blocked or of an unknown layout, naming what it saw and the hits kept from
            the other engines (`tv100.tasks.collect.summary.engine_warnings`).
    """

    hits: int
    search_pages: int
    failed_search_pages: int
    images: DownloadSummary
    tables: Mapping[str, str]
    engine_warnings: tuple[str, ...] = ()
