"""The downloader's unit of work: a plan of hits, cut into shards, downloaded in one process.

Every hit ends as exactly one `images` row whose `status` says what happened. Output is
sharded (data first, done-marker last) so a killed run resumes where it stopped; stored
files are content-addressed, so a rerun never duplicates them. `download_shards` is one
process's share (its own event loop, HTTP client and decode threads); the pool and the
Dask tasks that run several shares are in `tv100.tasks.collect.workers` and
`tv100.tasks.collect.download`.

A thumbnail-only hit (Google's basic-HTML layout: `image_url` is Google's thumbnail, the
image is on `page_url`) is downloaded through its source page: the page is fetched (robots.txt
and the rate limit apply as to any request), a page that opts out of AI use
(`tv100.tasks.collect.optout.page_opt_out`) ends the row as ``opted_out``, and the image the
page names (`tv100.tasks.collect.source_page.page_image`) is stored instead of the thumbnail.
When the page cannot be read, names no image, or its image cannot be stored, the thumbnail
is stored instead. The row's `source` says which (`SOURCES`); its `url` stays the hit's
URL (its `image_id` too, so a rerun finds it) and its `final_url` is the URL of what was
stored (or of the response that decided the status).

A failure that may pass (`is_transient`: a timeout, 429, a 5xx, a connection error) is not
final: `pending_hits` gives the hit again to a later run once the row's backoff has passed
(`DownloadConfig.retry_delay_s`), until it has been tried `DownloadConfig.max_attempts`
times. The new row (`attempts` one more) replaces the old one (`latest_rows`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from tv100.storage.images import ImageStore
from tv100.storage.root import DataRoot
from tv100.storage.schemas import IMAGES
from tv100.storage.tables import read_table, table_exists, write_shard
from tv100.tasks.collect.config import DownloadConfig
from tv100.tasks.collect.normalise import normalise, opted_out
from tv100.tasks.collect.source_page import SourcePage, read_source_page
from tv100.tasks.parallel import exit_if_orphaned
from tv100.tasks.progress import ProgressFn
from tv100.tasks.web.client import HttpClient
from tv100.tasks.web.config import DEFAULT_RETRY_STATUSES, Fetched
from tv100.tasks.web.urls import canonical_url

log = logging.getLogger("tv100.download")

SORT_KEYS = ["series_id", "engine", "rank", "image_id"]
"""The order of the compacted `images` table."""

Hit = dict[str, Any]
"""One planned download: series_id, engine, rank, image_url, page_url, thumbnail_only and
image_id; a pending one (`pending_hits`) also `attempts`, the tries of earlier runs."""

IMAGE_URL, OG_IMAGE, THUMBNAIL, SOURCE_PAGE = "image_url", "og_image", "thumbnail", "source_page"
SOURCES = (IMAGE_URL, OG_IMAGE, THUMBNAIL, SOURCE_PAGE)
"""The `source` values of the `images` table: what the row's outcome is about.

``image_url``: the hit's own URL (every hit but the thumbnail-only ones); ``og_image``: the
image the thumbnail's source page names (stored, or the image's own opt-out); ``thumbnail``:
the thumbnail, stored when the page's image could not be (or the hit has no page);
``source_page``: the page itself, which opted out of AI use (nothing was downloaded).
"""


def image_id_for(series_id: str, url: str) -> str:
    """A stable id per (series, image URL): the same pair always gives the same id."""
    return hashlib.sha256(f"{series_id}\x00{url}".encode()).hexdigest()[:20]


def plan_hits(hits: pa.Table) -> list[Hit]:
    """One download per distinct image URL per series, in a deterministic order.

    Engines overlap: a URL found by several engines for one series becomes one `images`
    row carrying the best-ranked hit (ties broken by engine name); every hit maps to its
    row by (series_id, canonical URL). The same URL under two series stays two rows —
    the clean stage needs both to see the ambiguous label.

    Each planned hit carries the hit's `page_url` and `thumbnail_only` flag (None and False
    for a table written before those columns); its `image_id` derives from the series and
    the canonical `image_url` alone, so a rerun finds the rows of earlier runs.

    Args:
        hits: the `search_hits` table (series_id, engine, rank, image_url at least).

    Returns:
        The planned downloads sorted by `SORT_KEYS`.
    """
    best: dict[tuple[str, str], Hit] = {}
    columns = ["series_id", "engine", "rank", "image_url"]
    optional = [c for c in ("page_url", "thumbnail_only") if c in hits.column_names]
    for r in hits.select(columns + optional).to_pylist():
        r["page_url"] = r.get("page_url")
        r["thumbnail_only"] = bool(r.get("thumbnail_only"))
        canon = canonical_url(r["image_url"]) or r["image_url"]
        key = (r["series_id"], canon)
        cur = best.get(key)
        if cur is None or (r["rank"], r["engine"]) < (cur["rank"], cur["engine"]):
            best[key] = {**r, "image_id": image_id_for(r["series_id"], canon)}
    return sorted(
        best.values(), key=lambda r: (r["series_id"], r["engine"], r["rank"], r["image_id"])
    )


def shard_id(image_ids: list[str]) -> str:
    """Content-derived: the same pending hits always form the same shard."""
    return hashlib.sha256("\n".join(image_ids).encode()).hexdigest()[:16]


def _shard_key(hit: Hit) -> str:
    """A hit's part of its shard's id: its image id, and its try when it is a retry (a
    retried shard is a new shard, never one that compaction has already absorbed)."""
    tried = hit.get("attempts") or 0
    return hit["image_id"] if not tried else f"{hit['image_id']}#{tried + 1}"


def is_transient(
    status: str | None,
    http_status: int | None,
    retry_statuses: Collection[int] = DEFAULT_RETRY_STATUSES,
) -> bool:
    """Whether a download that ended with `status` may succeed if tried again later.

    The HTTP layer's rule (`tv100.tasks.web.retry`), one level up: a ``timeout``, and an
    ``http_error`` with a 5xx or a status the HTTP layer retries (429), or with no HTTP
    status at all (the HTTP layer's ``error``: connection refused or reset, a truncated
    body, DNS), are transient. Everything else is final: ``ok``, other HTTP statuses (404,
    410, 403, a redirect loop), ``not_image``, ``decode_error``, ``too_large``,
    ``opted_out``, ``blocked``, ``robots_disallowed``.

    Args:
        status: the `images` row's status.
        http_status: its HTTP status (None when no response was received).
        retry_statuses: HTTP statuses the HTTP layer retries (`HttpConfig.retry_statuses`).
    """
    if status == "timeout":
        return True
    if status != "http_error":
        return False
    return http_status is None or http_status >= 500 or http_status in retry_statuses


@dataclass(frozen=True)
class LastTry:
    """What an image's current `images` row says about retrying it.

    Attributes:
        attempts: runs that have tried it (1 for rows written before the column).
        transient: its failure may pass (`is_transient`); False when it is ``ok``.
        at: when it was tried (`downloaded_at`; None if unknown).
    """

    attempts: int
    transient: bool
    at: datetime | None

    def due(self, config: DownloadConfig, now: datetime) -> bool:
        """Whether a run at `now` tries the image again: a transient failure, tried fewer
        than `config.max_attempts` times, last `config.retry_delay_s(attempts)` ago or more."""
        if not self.transient or self.attempts >= config.max_attempts:
            return False
        wait = timedelta(seconds=config.retry_delay_s(self.attempts))
        return self.at is None or now - self.at >= wait


def _column(table: pa.Table, name: str) -> list[Any]:
    """A column as a list; all None for a table written before the column existed."""
    if name in table.column_names:
        return table.column(name).to_pylist()
    return [None] * table.num_rows


def latest_rows(images: pa.Table) -> pa.Table:
    """`images` with one row per `image_id`, its latest try: the most `attempts` (null: 1),
    then the latest `downloaded_at`, then the later row. Rows keep their order.

    A retried image has a row per try until this drops the older ones (`download_hits`
    does after compacting).
    """
    ids = images.column("image_id").to_pylist()
    tries = [a or 1 for a in _column(images, "attempts")]
    at = [t.timestamp() if t else float("-inf") for t in _column(images, "downloaded_at")]
    best: dict[str, int] = {}
    for i, image_id in enumerate(ids):
        j = best.get(image_id)
        if j is None or (tries[i], at[i]) >= (tries[j], at[j]):
            best[image_id] = i
    if len(best) == len(ids):
        return images
    return images.take(sorted(best.values()))


def last_tries(images: pa.Table, config: DownloadConfig) -> dict[str, LastTry]:
    """Per image id, its latest row (`latest_rows`) as a `LastTry`.

    A row written before `is_transient` existed is judged by `is_transient` now.
    """
    images = latest_rows(images)
    rows = zip(
        images.column("image_id").to_pylist(),
        _column(images, "status"),
        _column(images, "http_status"),
        _column(images, "attempts"),
        _column(images, "downloaded_at"),
        _column(images, "is_transient"),
        strict=True,
    )
    statuses = config.http.retry_statuses
    return {
        image_id: LastTry(
            tries or 1,
            bool(is_transient(status, http, statuses) if flag is None else flag),
            at,
        )
        for image_id, status, http, tries, at, flag in rows
    }


def pending_hits(
    plan: list[Hit],
    root: DataRoot,
    config: DownloadConfig | None = None,
    now: datetime | None = None,
) -> list[Hit]:
    """The planned hits to download now, in plan order, each with its `attempts` so far.

    Those without an `images` row yet (`attempts` 0), and those whose row failed
    transiently and is due to be tried again (`LastTry.due`). Every other row is final.

    Args:
        plan: the planned hits (`plan_hits`).
        root: the data root.
        config: the downloader's settings (`max_attempts`, `retry_backoff_s`).
        now: the time retries are due by (default now, UTC).
    """
    config = config or DownloadConfig()
    now = now or datetime.now(UTC)
    tried = last_tries(read_table(root, "images"), config) if table_exists(root, "images") else {}
    pending = []
    for hit in plan:
        last = tried.get(hit["image_id"])
        if last is None:
            pending.append({**hit, "attempts": 0})
        elif last.due(config, now):
            pending.append({**hit, "attempts": last.attempts})
    return pending


def to_retry(images: pa.Table, config: DownloadConfig) -> int:
    """Images a later run will try again: transient failures in `images` not yet tried
    `config.max_attempts` times (due now or once their backoff has passed)."""
    return sum(
        1
        for last in last_tries(images, config).values()
        if last.transient and last.attempts < config.max_attempts
    )


def split_shards(pending: list[Hit], size: int) -> list[list[Hit]]:
    """`pending` cut into consecutive shards of `size` hits (the last may be shorter)."""
    return [pending[i : i + size] for i in range(0, len(pending), size)]


_HTTP_STATUS_MAP = {
    "http_error": "http_error",
    "timeout": "timeout",
    "too_large": "too_large",
    "blocked": "blocked",
    "robots_disallowed": "robots_disallowed",
    "error": "http_error",
}


@dataclass
class _Outcome:
    """What happened to one URL (shared by every hit that names it), or to one hit.

    `fetched` is the response that decided it, without its body.
    """

    fetched: Fetched | None
    status: str
    error_message: str | None
    source_sha256: str | None = None
    sha256: str | None = None
    nbytes: int | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    path: str | None = None
    source: str = IMAGE_URL


def _store(content: bytes, store: ImageStore, config: DownloadConfig) -> _Outcome:
    norm = normalise(content, config)
    source_sha = hashlib.sha256(content).hexdigest()
    if norm.status != "ok":
        return _Outcome(None, norm.status, norm.error_message, source_sha, format=norm.format)
    sha, rel = store.put(norm.data, "jpg", sync=False)  # synced with its shard
    return _Outcome(
        None,
        "ok",
        None,
        source_sha,
        sha,
        len(norm.data),
        norm.width,
        norm.height,
        norm.format,
        rel,
    )


def _write_durably(store: ImageStore, paths: list[str], shard: str, rows: pa.Table) -> None:
    """Sync the shard's images (stored unsynced, `_store`), then write its rows.

    One batch of fsyncs per shard instead of one per image between downloads; a row is
    written only once its file is durable.
    """
    store.sync(paths)
    write_shard(store.root, "images", shard, rows)


async def _fetch_one(
    url: str,
    client: HttpClient,
    pool: ThreadPoolExecutor,
    store: ImageStore,
    config: DownloadConfig,
) -> _Outcome:
    fetched = await client.get(url)
    head = fetched.head()  # outcomes are kept all run long: not their bodies or headers
    if fetched.status != "ok":
        return _Outcome(
            head, _HTTP_STATUS_MAP.get(fetched.status, "http_error"), fetched.error_message
        )
    if config.honour_opt_out:
        directive = opted_out(fetched.headers, config.opt_out_directives)
        if directive:
            return _Outcome(head, "opted_out", f"X-Robots-Tag: {directive}")
    loop = asyncio.get_running_loop()
    out = await loop.run_in_executor(pool, _store, fetched.content, store, config)
    out.fetched = head
    return out


async def _through_page(
    hit: Hit,
    page: Callable[[str], asyncio.Future[SourcePage]],
    image: Callable[[str], asyncio.Future[_Outcome]],
) -> _Outcome:
    """A thumbnail-only hit: the image its source page names, else the thumbnail.

    The page's opt-out, and the named image's own (X-Robots-Tag), end the row as
    ``opted_out``: the thumbnail is a copy of that image. Any other failure of the page or
    of its image falls back to the thumbnail; the reason is then in `error_message` only
    if the thumbnail fails too (an ``ok`` row has none), and logged at debug level.
    """
    reason = "no source page"
    page_url = hit.get("page_url")
    if page_url:
        seen = await page(page_url)
        if seen.opt_out:
            return _Outcome(
                seen.fetched, "opted_out", f"source page: {seen.opt_out}", source=SOURCE_PAGE
            )
        reason = f"source page: {seen.reason}"
        if seen.image is not None:
            out = await image(seen.image.url)
            if out.status in ("ok", "opted_out"):
                return replace(out, source=OG_IMAGE)
            reason = f"{seen.image.meta} {seen.image.url}: {out.status}: {out.error_message}"
    thumb = await image(hit["image_url"])
    log.debug("%s: the thumbnail instead of the page's image (%s)", hit["image_url"], reason)
    if thumb.status == "ok":
        return replace(thumb, source=THUMBNAIL)
    message = f"{thumb.error_message} (thumbnail; the page's image was not used: {reason})"
    return replace(thumb, source=THUMBNAIL, error_message=message)


def _row(hit: Hit, out: _Outcome, retry_statuses: Collection[int]) -> dict[str, Any]:
    f = out.fetched
    http_status = f.http_status if f else None
    return {
        "image_id": hit["image_id"],
        "series_id": hit["series_id"],
        "engine": hit["engine"],
        "rank": hit["rank"],
        "url": hit["image_url"],
        "final_url": f.final_url if f else None,
        "source": out.source,
        "status": out.status,
        "http_status": http_status,
        "error_message": out.error_message,
        "source_sha256": out.source_sha256,
        "sha256": out.sha256,
        "bytes": out.nbytes,
        "width": out.width,
        "height": out.height,
        "format": out.format,
        "path": out.path,
        "downloaded_at": datetime.now(UTC),
        "attempts": (hit.get("attempts") or 0) + 1,
        "is_transient": is_transient(out.status, http_status, retry_statuses),
    }


async def download_pending(
    pending: list[Hit],
    root: DataRoot,
    config: DownloadConfig,
    total: int,
    already: int,
    progress: ProgressFn | None,
) -> int:
    """Download `pending` in this process, one `images` shard per `config.shard_size` hits.

    Shards run concurrently (downloads interleave) but each is written whole; a URL named
    by several hits (as an image, a thumbnail or a page's image) is fetched once, and so is
    a source page.

    Args:
        pending: planned hits to download (`pending_hits`).
        root: the data root (image store and tables).
        config: the downloader's settings (`processes` is ignored).
        total: hits in the whole plan (for progress).
        already: hits of the plan done before this run (for progress).
        progress: called with (hits done, total) after every shard.

    Returns:
        The number of hits downloaded.
    """
    store = ImageStore(root)
    sem = asyncio.Semaphore(config.in_flight)
    outcomes: dict[str, asyncio.Future[_Outcome]] = {}
    pages: dict[str, asyncio.Future[SourcePage]] = {}
    via_pages: dict[tuple[str, str | None], asyncio.Future[_Outcome]] = {}
    done = already
    started = time.monotonic()

    with ThreadPoolExecutor(config.decode_workers, thread_name_prefix="tv100-decode") as pool:
        async with HttpClient(config.http) as client:
            loop = asyncio.get_running_loop()

            async def by_url(url: str) -> _Outcome:
                async with sem:
                    return await _fetch_one(url, client, pool, store, config)

            def image(url: str) -> asyncio.Future[_Outcome]:
                # One download per URL per run, however many hits name it.
                if url not in outcomes:
                    outcomes[url] = asyncio.ensure_future(by_url(url))
                return outcomes[url]

            async def by_page(url: str) -> SourcePage:
                async with sem:  # released before the page's image is fetched
                    fetched = await client.get(url)
                return await loop.run_in_executor(pool, read_source_page, fetched, config)

            def page(url: str) -> asyncio.Future[SourcePage]:
                if url not in pages:
                    pages[url] = asyncio.ensure_future(by_page(url))
                return pages[url]

            def outcome(hit: Hit) -> asyncio.Future[_Outcome]:
                if not hit.get("thumbnail_only"):
                    return image(hit["image_url"])
                key = (hit["image_url"], hit.get("page_url"))
                if key not in via_pages:
                    via_pages[key] = asyncio.ensure_future(_through_page(hit, page, image))
                return via_pages[key]

            async def shard(chunk: list[Hit]) -> None:
                nonlocal done
                results = await asyncio.gather(*(outcome(h) for h in chunk))
                statuses = config.http.retry_statuses
                rows = [_row(h, o, statuses) for h, o in zip(chunk, results, strict=True)]
                # A worker whose main process was killed writes nothing more (its watch
                # thread ends it; this closes the gap until it is scheduled).
                exit_if_orphaned()
                await asyncio.get_running_loop().run_in_executor(
                    None,
                    _write_durably,
                    store,
                    [o.path for o in results if o.path],
                    shard_id([_shard_key(h) for h in chunk]),
                    pa.Table.from_pylist(rows, schema=IMAGES),
                )
                before, done = done, done + len(chunk)
                if progress:
                    progress(done, total)
                if done // config.progress_every != before // config.progress_every:
                    rate = (done - already) / max(time.monotonic() - started, 1e-9)
                    log.info("downloaded %d/%d hits (%.1f/s)", done, total, rate)

            await asyncio.gather(*(shard(c) for c in split_shards(pending, config.shard_size)))
    return done - already


def download_shards(shards: list[list[Hit]], root: DataRoot, config: DownloadConfig) -> int:
    """One worker's share: its own event loop, HTTP client and decode threads.

    Args:
        shards: groups of pending hits (each the size the plan was cut to).
        root: the data root.
        config: the worker's settings (politeness limits already divided among workers).

    Returns:
        The number of hits downloaded.
    """
    pending = [h for c in shards for h in c]
    return asyncio.run(download_pending(pending, root, config, len(pending), 0, None))
