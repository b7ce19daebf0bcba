"""The imdb-datasets source: local copies of IMDb's TSV files, then the `series` table.

The files come from a local folder or are downloaded from a base URL (such as
``https://datasets.imdbws.com/``) through `tv100.tasks.web.client.HttpClient`: once, then
revalidated with ETag / Last-Modified. Every request is a `discover_fetches` row. DuckDB reads
the local files (`tv100.tasks.discover.imdb_datasets`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from tv100.storage.atomic import sweep_temp, write_file_atomic
from tv100.storage.root import DataRoot
from tv100.storage.schemas import SERIES
from tv100.tasks.discover.config import SeriesFilter
from tv100.tasks.discover.fetches import FetchLog, is_url
from tv100.tasks.discover.imdb_datasets import read_datasets
from tv100.tasks.localfiles import LocalFileError, open_local_file
from tv100.tasks.web.client import HttpClient
from tv100.tasks.web.config import MIB, HttpConfig

DATASET_FILES = ("title.basics.tsv.gz", "title.ratings.tsv.gz", "title.akas.tsv.gz")
RAW_DIR = "raw/imdb-datasets"
"""Where downloaded dataset files live under a local data root."""
STALE_TEMP_S = 3600.0
"""Temp files in the raw-file folder older than this are left by a killed run: swept."""
DATASET_MAX_BYTES = 16 * 1024 * MIB
"""The largest local dataset file read (IMDb's largest, ``title.akas.tsv.gz``, is ~0.5 GB)."""


@dataclass(frozen=True)
class DatasetFile:
    """A local copy of one IMDb dataset file and the hash of its bytes."""

    name: str
    path: str
    sha256: str


@dataclass(frozen=True)
class DatasetFetch:
    """The local dataset files and the `discover_fetches` rows of the requests made."""

    files: tuple[DatasetFile, ...]
    fetches: pa.Table


def _local_dataset_file(directory: str, name: str) -> DatasetFile:
    """One dataset file of a local folder and its content hash, read as a checked regular file."""
    path = os.path.abspath(os.path.join(directory, name))
    try:
        with open_local_file(path, DATASET_MAX_BYTES) as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except LocalFileError as err:
        raise LocalFileError(f"IMDb dataset file {err}") from err
    return DatasetFile(name, path, digest)


def local_dataset_files(directory: str) -> tuple[DatasetFile, ...]:
    """The three dataset files in a local folder, with their content hashes.

    Only regular files are read (symlinks to them are followed): a FIFO or a device under a
    dataset file's name is refused before anything waits on it (`tv100.tasks.localfiles`).

    Raises:
        FileNotFoundError: naming the folder and the missing files.
        LocalFileError: naming a file that is not a regular file, or over `DATASET_MAX_BYTES`.
    """
    missing = [n for n in DATASET_FILES if not os.path.exists(os.path.join(directory, n))]
    if missing:
        raise FileNotFoundError(
            f"IMDb dataset folder {directory!r} lacks {', '.join(missing)}; expected the files "
            f"{', '.join(DATASET_FILES)} from https://datasets.imdbws.com/"
        )
    return tuple(_local_dataset_file(directory, n) for n in DATASET_FILES)


def raw_local_dir(root: DataRoot) -> str:
    """Where raw files live on local disk (DuckDB reads them); a cache for remote roots."""
    if root.is_local:
        return root.path(RAW_DIR)
    key = hashlib.sha256(root.url.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), "tv100-raw", key)


def _read_meta(path: str, meta_path: str) -> dict[str, Any]:
    if os.path.exists(path) and os.path.exists(meta_path):
        with open(meta_path) as f:
            meta: dict[str, Any] = json.load(f)
            return meta
    return {}


async def _download_datasets(
    base_url: str, local_dir: str, config: HttpConfig, log: FetchLog
) -> tuple[DatasetFile, ...]:
    """Download each file once; revalidate with ETag / Last-Modified afterwards."""
    os.makedirs(local_dir, exist_ok=True)
    # Another process may be writing into a shared cache right now: only old temps go.
    # (Under a local data root the build's start sweeps them too.)
    sweep_temp(local_dir, older_than_s=STALE_TEMP_S)
    out: list[DatasetFile] = []
    async with HttpClient(config) as client:
        for name in DATASET_FILES:
            url = base_url.rstrip("/") + "/" + name
            path = os.path.join(local_dir, name)
            meta_path = path + ".meta.json"
            meta = _read_meta(path, meta_path)
            headers = {}
            if meta.get("url") == url and meta.get("etag"):
                headers["If-None-Match"] = meta["etag"]
            if meta.get("url") == url and meta.get("last_modified"):
                headers["If-Modified-Since"] = meta["last_modified"]
            fetched = await client.get(url, headers=headers or None)
            log.add("imdb-datasets", "dataset", fetched, None)
            if fetched.http_status == 304 and meta:
                out.append(DatasetFile(name, path, meta["sha256"]))
                continue
            if fetched.status != "ok":
                raise RuntimeError(
                    f"could not download IMDb dataset {url}: {fetched.status} "
                    f"{fetched.http_status or ''} {fetched.error_message or ''}".rstrip()
                )
            sha = hashlib.sha256(fetched.content).hexdigest()
            write_file_atomic(path, fetched.content)
            new_meta = {
                "url": url,
                "etag": fetched.headers.get("etag"),
                "last_modified": fetched.headers.get("last-modified"),
                "sha256": sha,
            }
            write_file_atomic(meta_path, json.dumps(new_meta).encode())
            out.append(DatasetFile(name, path, sha))
    return tuple(out)


def fetch_dataset_files(location: str, root: DataRoot, config: HttpConfig) -> DatasetFetch:
    """Resolve `location` (folder or base URL) to local dataset files with content hashes.

    Args:
        location: a local folder holding the three files, or the base URL they are under.
        root: the data root (downloads go to its `RAW_DIR`, or a local cache if remote).
        config: the HTTP settings of the downloads.

    Returns:
        The files and the `discover_fetches` rows of the requests made (none for a folder).

    Raises:
        FileNotFoundError: a folder that does not exist or lacks a file.
        LocalFileError: a file in the folder is not a regular file, or is too large.
        RuntimeError: a download failed.
    """
    log = FetchLog()
    if is_url(location):
        files = asyncio.run(_download_datasets(location, raw_local_dir(root), config, log))
    else:
        if not os.path.isdir(location):
            raise FileNotFoundError(
                f"IMDb dataset location {location!r} is neither a folder nor an http(s) URL"
            )
        files = local_dataset_files(location)
    return DatasetFetch(files, log.table())


def series_from_datasets(
    files: Iterable[DatasetFile], keep: SeriesFilter, discovered_at: datetime
) -> pa.Table:
    """The `series` table from local dataset files (DuckDB, streaming, no pandas).

    Args:
        files: the three dataset files (`fetch_dataset_files`).
        keep: start year and vote filters.
        discovered_at: the value of the ``discovered_at`` column.
    """
    by_name = {f.name: f.path for f in files}
    return read_datasets(
        by_name["title.basics.tsv.gz"],
        by_name["title.ratings.tsv.gz"],
        by_name["title.akas.tsv.gz"],
        since=keep.since,
        min_votes=keep.min_votes,
        discovered_at=discovered_at,
    ).cast(SERIES)
