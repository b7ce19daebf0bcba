"""Discover: list TV series from IMDb's datasets or its web pages.

Fetching and parsing are separate: the parsers in `tv100.tasks.discover.imdb` are pure functions on bytes;
this module does the I/O (through `tv100.tasks.web.http`, the one HTTP layer) and turns parsed
records into the `series` table. Every fetch is recorded as a `discover_fetches` row.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from tv100.storage.root import TEMP_PREFIX, DataRoot, resolve_root, temp_path
from tv100.storage.schemas import DISCOVER_FETCHES, SERIES
from tv100.tasks.discover import imdb
from tv100.tasks.web.http import Fetched, HttpClient, HttpConfig

DATASET_FILES = ("title.basics.tsv.gz", "title.ratings.tsv.gz", "title.akas.tsv.gz")
SERIES_KINDS = ("tvSeries", "tvMiniSeries")
RAW_DIR = "raw/imdb-datasets"
SOURCES = ("imdb-datasets", "imdb-web")


def now_utc() -> datetime:
    return datetime.now(UTC)


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


@dataclass(frozen=True)
class DatasetFile:
    """A local copy of one IMDb dataset file and the hash of its bytes."""

    name: str
    path: str
    sha256: str


@dataclass
class FetchLog:
    """Rows of the `discover_fetches` table, one per request made."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, source: str, kind: str, f: Fetched, records: int | None) -> None:
        self.rows.append(
            {
                "source": source,
                "kind": kind,
                "url": f.url,
                "status": f.status,
                "http_status": f.http_status,
                "error_message": f.error_message,
                "records": records,
                "fetched_at": now_utc(),
            }
        )

    def table(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows, schema=DISCOVER_FETCHES)


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def local_dataset_files(directory: str) -> list[DatasetFile]:
    """The three dataset files in a local folder.

    Raises:
        FileNotFoundError: naming the folder and the missing files.
    """
    missing = [n for n in DATASET_FILES if not os.path.isfile(os.path.join(directory, n))]
    if missing:
        raise FileNotFoundError(
            f"IMDb dataset folder {directory!r} lacks {', '.join(missing)}; expected the files "
            f"{', '.join(DATASET_FILES)} from https://datasets.imdbws.com/"
        )
    return [
        DatasetFile(n, os.path.abspath(os.path.join(directory, n)), _sha256_file(
            os.path.join(directory, n)))
        for n in DATASET_FILES
    ]


def _raw_local_dir(root: DataRoot) -> str:
    """Where raw files live on local disk (DuckDB reads them); a cache for remote roots."""
    if root.is_local:
        return root.path(RAW_DIR)
    key = hashlib.sha256(root.url.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), "tv100-raw", key)


def _write_atomic(path: str, content: bytes) -> None:
    """Write a local file via a temp file and a rename (temp named as `remove_temp_files`
    expects: one a kill leaves behind is swept at the next build's start)."""
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _remove_stale_temps(folder: str, older_than_s: float = 3600.0) -> None:
    """Temp files a killed run left in a raw-file cache outside the data root."""
    cutoff = time.time() - older_than_s
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        try:
            if name.startswith(TEMP_PREFIX) and os.path.getmtime(path) < cutoff:
                os.remove(path)
        except OSError:  # gone meanwhile
            pass


async def _download_datasets(
    base_url: str, local_dir: str, config: HttpConfig, log: FetchLog
) -> list[DatasetFile]:
    """Download each file once; revalidate with ETag / Last-Modified afterwards."""
    os.makedirs(local_dir, exist_ok=True)
    _remove_stale_temps(local_dir)  # (under a local data root, the build sweeps them too)
    out: list[DatasetFile] = []
    async with HttpClient(config) as client:
        for name in DATASET_FILES:
            url = base_url.rstrip("/") + "/" + name
            path = os.path.join(local_dir, name)
            meta_path = path + ".meta.json"
            meta: dict[str, Any] = {}
            if os.path.exists(path) and os.path.exists(meta_path):
                with open(meta_path) as f:
                    meta = json.load(f)
            headers = {}
            if meta.get("url") == url and meta.get("etag"):
                headers["If-None-Match"] = meta["etag"]
            if meta.get("url") == url and meta.get("last_modified"):
                headers["If-Modified-Since"] = meta["last_modified"]
            fetched = await client.get(url, headers=headers or None)
            if fetched.http_status == 304 and meta:
                log.add("imdb-datasets", "dataset", fetched, None)
                out.append(DatasetFile(name, path, meta["sha256"]))
                continue
            if fetched.status != "ok":
                log.add("imdb-datasets", "dataset", fetched, None)
                raise RuntimeError(
                    f"could not download IMDb dataset {url}: {fetched.status} "
                    f"{fetched.http_status or ''} {fetched.error_message or ''}".rstrip()
                )
            log.add("imdb-datasets", "dataset", fetched, None)
            sha = hashlib.sha256(fetched.content).hexdigest()
            _write_atomic(path, fetched.content)
            new_meta = {
                "url": url,
                "etag": fetched.headers.get("etag"),
                "last_modified": fetched.headers.get("last-modified"),
                "sha256": sha,
            }
            _write_atomic(meta_path, json.dumps(new_meta).encode())
            out.append(DatasetFile(name, path, sha))
    return out


def fetch_dataset_files(
    location: str, root: DataRoot, config: HttpConfig
) -> tuple[list[DatasetFile], pa.Table]:
    """Resolve `location` (folder or base URL) to local dataset files with content hashes.

    Returns:
        the files and the `discover_fetches` rows for the requests made (none for a folder).
    """
    log = FetchLog()
    if is_url(location):
        files = asyncio.run(_download_datasets(location, _raw_local_dir(root), config, log))
    else:
        if not os.path.isdir(location):
            raise FileNotFoundError(
                f"IMDb dataset location {location!r} is neither a folder nor an http(s) URL"
            )
        files = local_dataset_files(location)
    return files, log.table()


def series_from_datasets(
    files: Iterable[DatasetFile],
    since: int,
    min_votes: int | None,
    discovered_at: datetime,
) -> pa.Table:
    """The `series` table from local dataset files (DuckDB, streaming, no pandas)."""
    by_name = {f.name: f.path for f in files}
    return imdb.read_datasets(
        by_name["title.basics.tsv.gz"],
        by_name["title.ratings.tsv.gz"],
        by_name["title.akas.tsv.gz"],
        since=since,
        min_votes=min_votes,
        discovered_at=discovered_at,
    ).cast(SERIES)


@dataclass(frozen=True)
class WebCrawl:
    """What a crawl of IMDb's advanced search and title pages found."""

    listed: list[dict[str, Any]]
    titles: dict[str, dict[str, Any]]
    fetches: pa.Table


async def _crawl_web(
    base_url: str,
    since: int,
    max_pages: int,
    locale: str | None,
    page_size: int | None,
    config: HttpConfig,
) -> WebCrawl:
    log = FetchLog()
    listed: list[dict[str, Any]] = []
    seen: set[str] = set()
    async with HttpClient(config) as client:
        start = 1
        for _ in range(max_pages):
            url = imdb.list_page_url(base_url, since, start, locale=locale)
            if page_size:
                url += f"&count={page_size}"
            fetched = await client.get(url)
            records = imdb.parse_list_page(fetched.content) if fetched.status == "ok" else []
            log.add("imdb-web", "list", fetched, len(records))
            if fetched.status != "ok":
                raise RuntimeError(
                    f"IMDb list page {url} failed: {fetched.status} "
                    f"{fetched.http_status or ''} {fetched.error_message or ''}".rstrip()
                )
            new = [r for r in records if r["series_id"] not in seen]
            if not new:
                break
            for r in new:
                seen.add(r["series_id"])
            listed.extend(new)
            start += len(records)

        async def one(series_id: str) -> tuple[str, dict[str, Any] | None]:
            prefix = f"/{locale}" if locale else ""
            url = f"{base_url.rstrip('/')}{prefix}/title/{series_id}/"
            fetched = await client.get(url)
            rec = imdb.parse_title_page(fetched.content) if fetched.status == "ok" else None
            log.add("imdb-web", "title", fetched, 1 if rec else 0)
            return series_id, rec

        pairs = await asyncio.gather(*(one(r["series_id"]) for r in listed))
    titles = {sid: rec for sid, rec in pairs if rec is not None}
    return WebCrawl(listed, titles, log.table())


def crawl_web(
    base_url: str,
    since: int,
    config: HttpConfig,
    max_pages: int = 200,
    locale: str | None = None,
    page_size: int | None = None,
) -> WebCrawl:
    """Page through advanced search until an empty page or `max_pages`, then every title."""
    if not is_url(base_url):
        raise ValueError(f"IMDb web location {base_url!r} is not an http(s) URL")
    return asyncio.run(_crawl_web(base_url, since, max_pages, locale, page_size, config))


def series_from_web(
    crawl: WebCrawl, since: int, min_votes: int | None, discovered_at: datetime
) -> pa.Table:
    """Keep listed titles whose title page says: a series, not adult, started after `since`.

    The list page's year and type label are localized and the site's release-date filter
    is per-country, so the title page is the authority; a title whose page failed is left
    out (its failure is a `discover_fetches` row).
    """
    rows = []
    for item in crawl.listed:
        sid = item["series_id"]
        page = crawl.titles.get(sid)
        if page is None:
            continue
        start = page.get("start_year")
        votes = page.get("num_votes")
        if votes is None:
            votes = item.get("num_votes")
        if page.get("kind") not in SERIES_KINDS or page.get("is_adult"):
            continue
        if start is None or start <= since:
            continue
        if min_votes is not None and (votes or 0) < min_votes:
            continue
        rating = page.get("rating")
        rows.append(
            {
                "series_id": sid,
                "title": page.get("title") or item.get("title"),
                "original_title": page.get("original_title") or page.get("title"),
                "kind": page["kind"],
                "start_year": start,
                "end_year": page.get("end_year"),
                "genres": list(page.get("genres") or []),
                "countries": list(page.get("countries") or []),
                "languages": list(page.get("languages") or []),
                "rating": rating if rating is not None else item.get("rating"),
                "num_votes": votes,
                "source": "imdb-web",
                "discovered_at": discovered_at,
            }
        )
    rows.sort(key=lambda r: r["series_id"])
    return pa.Table.from_pylist(rows, schema=SERIES)


# --- Prefect tasks: thin wrappers over the functions above -------------------------------

SERIES_CACHE = INPUTS + TASK_SOURCE


@task(
    name="fetch-imdb-datasets",
    retries=1,
    retry_delay_seconds=5,
    cache_policy=SERIES_CACHE,
    cache_expiration=timedelta(hours=20),
)
def fetch_datasets_task(
    location: str, data: str, config: HttpConfig
) -> tuple[list[DatasetFile], pa.Table]:
    """Local copies of the dataset files, revalidated (ETag) at most once a day.

    IMDb refreshes the files daily; a rerun within the day is a cache hit, and a
    `refresh` run revalidates at once (a 304 when nothing changed).
    """
    return fetch_dataset_files(location, resolve_root(data), config)


@task(name="series-from-datasets", cache_policy=SERIES_CACHE)
def series_from_datasets_task(
    files: list[DatasetFile], since: int, min_votes: int | None
) -> pa.Table:
    """Cached on the files' content hashes, so unchanged datasets are a cache hit."""
    return series_from_datasets(files, since, min_votes, now_utc())


@task(name="crawl-imdb-web", cache_policy=SERIES_CACHE, cache_expiration=timedelta(days=6))
def crawl_web_task(
    base_url: str,
    since: int,
    config: HttpConfig,
    max_pages: int,
    locale: str | None,
    page_size: int | None,
) -> WebCrawl:
    """Cached for six days, so a weekly schedule re-crawls and a rerun the same day doesn't."""
    return crawl_web(base_url, since, config, max_pages, locale, page_size)


@task(name="series-from-web", cache_policy=SERIES_CACHE)
def series_from_web_task(crawl: WebCrawl, since: int, min_votes: int | None) -> pa.Table:
    return series_from_web(crawl, since, min_votes, now_utc())
