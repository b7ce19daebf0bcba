"""The downloader's unit of work: a plan of hits, cut into shards, downloaded in one process.

Every hit ends as exactly one `images` row whose `status` says what happened. Output is
sharded (data first, done-marker last) so a killed run resumes where it stopped; stored
files are content-addressed, so a rerun never duplicates them. `download_shards` is one
process's share (its own event loop, HTTP client and decode threads); the pool and the
Dask tasks that run several shares are in `tv100.tasks.collect.workers` and
`tv100.tasks.collect.download`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from tv100.storage.images import ImageStore
from tv100.storage.root import DataRoot
from tv100.storage.schemas import IMAGES
from tv100.storage.tables import read_table, table_exists, write_shard
from tv100.tasks.collect.config import DownloadConfig
from tv100.tasks.collect.normalise import normalise, opted_out
from tv100.tasks.web.client import HttpClient
from tv100.tasks.web.config import Fetched
from tv100.tasks.web.urls import canonical_url

log = logging.getLogger("tv100.download")

SORT_KEYS = ["series_id", "engine", "rank", "image_id"]
"""The order of the compacted `images` table."""

ProgressFn = Callable[[int, int], None]
"""Called with (hits done, hits total) as shards complete."""

Hit = dict[str, Any]
"""One planned download: series_id, engine, rank, image_url and image_id."""


def image_id_for(series_id: str, url: str) -> str:
    """A stable id per (series, image URL): the same pair always gives the same id."""
    return hashlib.sha256(f"{series_id}\x00{url}".encode()).hexdigest()[:20]


def plan_hits(hits: pa.Table) -> list[Hit]:
    """One download per distinct image URL per series, in a deterministic order.

    Engines overlap: a URL found by several engines for one series becomes one `images`
    row carrying the best-ranked hit (ties broken by engine name); every hit maps to its
    row by (series_id, canonical URL). The same URL under two series stays two rows —
    the clean stage needs both to see the ambiguous label.

    Args:
        hits: the `search_hits` table (series_id, engine, rank, image_url at least).

    Returns:
        The planned downloads sorted by `SORT_KEYS`.
    """
    best: dict[tuple[str, str], Hit] = {}
    for r in hits.select(["series_id", "engine", "rank", "image_url"]).to_pylist():
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


def done_image_ids(root: DataRoot) -> set[str]:
    """The image ids the compacted `images` table already has rows for."""
    if not table_exists(root, "images"):
        return set()
    return set(read_table(root, "images").column("image_id").to_pylist())


def pending_hits(plan: list[Hit], root: DataRoot) -> list[Hit]:
    """The planned hits without an `images` row yet, in plan order."""
    finished = done_image_ids(root)
    return [h for h in plan if h["image_id"] not in finished]


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
    """What happened to one URL; shared by every hit that names it."""

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


def _store(content: bytes, store: ImageStore, config: DownloadConfig) -> _Outcome:
    norm = normalise(content, config)
    source_sha = hashlib.sha256(content).hexdigest()
    if norm.status != "ok":
        return _Outcome(None, norm.status, norm.error_message, source_sha, format=norm.format)
    sha, rel = store.put(norm.data, "jpg")
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


async def _fetch_one(
    url: str,
    client: HttpClient,
    pool: ThreadPoolExecutor,
    store: ImageStore,
    config: DownloadConfig,
) -> _Outcome:
    fetched = await client.get(url)
    if fetched.status != "ok":
        return _Outcome(
            fetched, _HTTP_STATUS_MAP.get(fetched.status, "http_error"), fetched.error_message
        )
    if config.honour_opt_out:
        directive = opted_out(fetched.headers, config.opt_out_directives)
        if directive:
            return _Outcome(fetched, "opted_out", f"X-Robots-Tag: {directive}")
    loop = asyncio.get_running_loop()
    out = await loop.run_in_executor(pool, _store, fetched.content, store, config)
    out.fetched = fetched
    return out


def _row(hit: Hit, out: _Outcome) -> dict[str, Any]:
    f = out.fetched
    return {
        "image_id": hit["image_id"],
        "series_id": hit["series_id"],
        "engine": hit["engine"],
        "rank": hit["rank"],
        "url": hit["image_url"],
        "final_url": f.final_url if f else None,
        "status": out.status,
        "http_status": f.http_status if f else None,
        "error_message": out.error_message,
        "source_sha256": out.source_sha256,
        "sha256": out.sha256,
        "bytes": out.nbytes,
        "width": out.width,
        "height": out.height,
        "format": out.format,
        "path": out.path,
        "downloaded_at": datetime.now(UTC),
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
    by several hits is fetched once.

    Args:
        pending: planned hits without a row yet.
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
    done = already
    started = time.monotonic()

    with ThreadPoolExecutor(config.decode_workers, thread_name_prefix="tv100-decode") as pool:
        async with HttpClient(config.http) as client:

            async def by_url(url: str) -> _Outcome:
                async with sem:
                    return await _fetch_one(url, client, pool, store, config)

            def outcome(url: str) -> asyncio.Future[_Outcome]:
                # One download per URL per run, however many hits name it.
                if url not in outcomes:
                    outcomes[url] = asyncio.ensure_future(by_url(url))
                return outcomes[url]

            async def shard(chunk: list[Hit]) -> None:
                nonlocal done
                results = await asyncio.gather(*(outcome(h["image_url"]) for h in chunk))
                rows = [_row(h, o) for h, o in zip(chunk, results, strict=True)]
                ids = [h["image_id"] for h in chunk]
                await asyncio.get_running_loop().run_in_executor(
                    None,
                    write_shard,
                    root,
                    "images",
                    shard_id(ids),
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
