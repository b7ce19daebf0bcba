"""The imdb-datasets source: local copies of IMDb's TSV files, then the `series` table.

The files come from a local folder or are downloaded from a base URL (such as
``https://datasets.imdbws.com/``) through `tv100.tasks.web.stream.FileDownloader`: streamed to
disk (the real files are 8 MB to 450 MB), resumed after a cut, revalidated with ETag /
Last-Modified, moved into place whole. Every request is a `discover_fetches` row. DuckDB reads
the local files (`tv100.tasks.discover.imdb_datasets`).

A source that cannot be used is a `SourceError` naming the folder, file or URL and what was
expected: fixed (a missing folder or file, a 404, a file over `HttpConfig.max_file_bytes`) or
transient (timeouts and 5xx after the HTTP layer's retries).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from tv100.storage.atomic import sweep_temp
from tv100.storage.root import DataRoot
from tv100.storage.schemas import SERIES
from tv100.tasks.discover.config import SeriesFilter
from tv100.tasks.discover.fetches import FetchLog, is_url
from tv100.tasks.discover.imdb_datasets import read_datasets
from tv100.tasks.localfiles import LocalFileError, open_local_file
from tv100.tasks.web.config import MIB, HttpConfig
from tv100.tasks.web.errors import SourceError
from tv100.tasks.web.stream import Downloaded, FileDownloader

DATASET_FILES = ("title.basics.tsv.gz", "title.ratings.tsv.gz", "title.akas.tsv.gz")
RAW_DIR = "raw/imdb-datasets"
"""Where downloaded dataset files live under a local data root."""
STALE_TEMP_S = 3600.0
"""Temp files in the raw-file folder older than this are left by a killed run: swept
(partial downloads included: a run within the hour resumes them)."""
DATASET_MAX_BYTES = 16 * 1024 * MIB
"""The largest local dataset file read (IMDb's largest, ``title.akas.tsv.gz``, is ~0.5 GB)."""
IMDB_DATASETS_URL = "https://datasets.imdbws.com/"


def expected_files(where: str) -> str:
    """What a dataset location must hold, for error messages."""
    return f"expected the files {', '.join(DATASET_FILES)} {where}, as at {IMDB_DATASETS_URL}"


class MissingDatasetFiles(SourceError, FileNotFoundError):
    """A dataset folder that does not exist or lacks a file (a fixed error)."""


class BadDatasetFile(SourceError, ValueError):
    """A dataset file that is not in IMDb's format: the file, the line, what was expected."""


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
        MissingDatasetFiles: (a FileNotFoundError) naming the folder and the missing files.
        LocalFileError: naming a file that is not a regular file, or over `DATASET_MAX_BYTES`.
    """
    missing = [n for n in DATASET_FILES if not os.path.exists(os.path.join(directory, n))]
    if missing:
        raise MissingDatasetFiles(
            f"IMDb dataset folder {directory!r} lacks {', '.join(missing)}; "
            f"{expected_files('in it')}"
        )
    return tuple(_local_dataset_file(directory, n) for n in DATASET_FILES)


FileStamp = tuple[str, int, int, int, int]
"""A local file's name, size, modification and status-change times (ns) and inode."""


def local_files_stamp(directory: str) -> tuple[FileStamp, ...] | None:
    """What tells whether a folder's dataset files changed, without reading them.

    Per file (symlinks followed): its size, modification and status-change times in
    nanoseconds and its inode. A file replaced by another (renamed over, copied over in place,
    a symlink pointed elsewhere) changes at least one of them, even with the same name, size
    and modification time; the content hash is then computed again by `local_dataset_files`.

    Args:
        directory: a local folder of IMDb dataset files.

    Returns:
        One stamp per name of `DATASET_FILES`, or None when the folder or a file is missing or
        cannot be stat'ed (then nothing may be taken from a cache: reading it fails).
    """
    stamps: list[FileStamp] = []
    for name in DATASET_FILES:
        try:
            st = os.stat(os.path.join(directory, name))
        except OSError:
            return None
        stamps.append((name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return tuple(stamps)


def missing_files(files: Iterable[DatasetFile]) -> list[str]:
    """The paths of `files` that are no longer there (a cached fetch's downloads deleted)."""
    return [f.path for f in files if not os.path.isfile(f.path)]


def raw_local_dir(root: DataRoot) -> str:
    """Where raw files live on local disk (DuckDB reads them); a cache for remote roots."""
    if root.is_local:
        return root.path(RAW_DIR)
    key = hashlib.sha256(root.url.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), "tv100-raw", key)


def download_error(base_url: str, name: str, downloaded: Downloaded) -> SourceError:
    """One line for the user: the file's URL, what happened and what was expected."""
    f = downloaded.fetched
    what = f.error_message or f.status
    if f.status == "too_large":
        hint = "expected a smaller file, or raise the cap (--max-file-bytes)"
    elif f.status == "robots_disallowed" and not downloaded.transient:
        hint = (
            "the site's robots.txt keeps tv100 off this file; download the files yourself "
            "and pass their folder as --location"
        )
    elif downloaded.transient:
        hint = "a temporary failure; run again later (the download resumes)"
    else:
        hint = expected_files(f"under {base_url!r}")
    return SourceError(
        f"IMDb dataset {name} from {f.url}: {what}; {hint}", transient=downloaded.transient
    )


async def _download_datasets(
    base_url: str, local_dir: str, config: HttpConfig, log: FetchLog
) -> tuple[DatasetFile, ...]:
    """Download each file once (streamed); revalidate with ETag / Last-Modified afterwards.

    Raises:
        SourceError: at the first file that cannot be had (the ones before it are kept).
    """
    os.makedirs(local_dir, exist_ok=True)
    # Another process may be writing into a shared cache right now: only old temps go.
    # (Under a local data root the build's start sweeps them too.)
    sweep_temp(local_dir, older_than_s=STALE_TEMP_S)
    out: list[DatasetFile] = []
    async with FileDownloader(config) as downloader:
        for name in DATASET_FILES:
            url = base_url.rstrip("/") + "/" + name
            downloaded = await downloader.fetch(url, os.path.join(local_dir, name))
            log.add("imdb-datasets", "dataset", downloaded.fetched, None)
            if not downloaded.ok or downloaded.path is None or downloaded.sha256 is None:
                raise download_error(base_url, name, downloaded)
            out.append(DatasetFile(name, downloaded.path, downloaded.sha256))
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
        MissingDatasetFiles: a folder that does not exist or lacks a file.
        LocalFileError: a file in the folder is not a regular file, or is too large.
        SourceError: a download failed (`transient` says whether a later run may succeed).
    """
    log = FetchLog()
    if is_url(location):
        files = asyncio.run(_download_datasets(location, raw_local_dir(root), config, log))
    else:
        if not os.path.isdir(location):
            raise MissingDatasetFiles(
                f"IMDb dataset location {location!r} is neither a folder nor an http(s) URL; "
                f"{expected_files('in a folder or under an http(s) base URL')}"
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

    Raises:
        BadDatasetFile: (a ValueError) a file is malformed; names the file and the line.
    """
    by_name = {f.name: f.path for f in files}
    try:
        table = read_datasets(
            by_name["title.basics.tsv.gz"],
            by_name["title.ratings.tsv.gz"],
            by_name["title.akas.tsv.gz"],
            since=keep.since,
            min_votes=keep.min_votes,
            discovered_at=discovered_at,
        )
    except ValueError as err:
        raise BadDatasetFile(f"IMDb dataset file {err}") from err
    return table.cast(SERIES)
