"""The imdb-datasets source: local folders, downloads with revalidation, the series table."""

from __future__ import annotations

import json
import os
import tempfile
import time

import pytest

from tv100.sandbox.imdb_datasets import write_datasets
from tv100.storage.atomic import is_temp, sha256_file, temp_name
from tv100.storage.root import DataRoot
from tv100.tasks.discover.config import SeriesFilter
from tv100.tasks.discover.datasets import (
    DATASET_FILES,
    RAW_DIR,
    fetch_dataset_files,
    local_dataset_files,
    raw_local_dir,
    series_from_datasets,
)
from tv100.tasks.discover.fetches import now_utc
from tv100.tasks.discover.imdb_datasets import read_datasets
from tv100.tasks.web.config import HttpConfig


def test_local_folder(world, tmp_path):
    folder = tmp_path / "imdb"
    folder.mkdir()
    write_datasets(world, str(folder))
    fetched = fetch_dataset_files(str(folder), DataRoot(str(tmp_path / "data")), HttpConfig())
    assert [f.name for f in fetched.files] == list(DATASET_FILES)
    for f in fetched.files:
        assert os.path.isabs(f.path) and f.sha256 == sha256_file(f.path)
    assert fetched.fetches.num_rows == 0
    assert fetched.files == local_dataset_files(str(folder))


def test_missing_files_and_bad_locations(tmp_path):
    root = DataRoot(str(tmp_path / "data"))
    (tmp_path / "title.basics.tsv.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="lacks title.ratings.tsv.gz, title.akas"):
        fetch_dataset_files(str(tmp_path), root, HttpConfig())
    with pytest.raises(FileNotFoundError, match="neither a folder nor an http"):
        fetch_dataset_files(str(tmp_path / "nowhere"), root, HttpConfig())


def test_download_then_revalidate(sandbox, tmp_path):
    root = DataRoot(str(tmp_path / "data")).ensure()
    http = HttpConfig(allow_hosts=(sandbox.base_url.split("://", 1)[1],))
    url = f"{sandbox.base_url}/datasets/"
    first = fetch_dataset_files(url, root, http)
    raw = tmp_path / "data" / RAW_DIR
    assert raw_local_dir(root) == str(raw)
    assert [f.path for f in first.files] == [str(raw / n) for n in DATASET_FILES]
    for f in first.files:
        assert sha256_file(f.path) == f.sha256
        meta = json.loads((raw / f"{f.name}.meta.json").read_text())
        assert meta["sha256"] == f.sha256 and meta["url"] == url + f.name and meta["etag"]
    assert first.fetches.column("http_status").to_pylist() == [200, 200, 200]
    assert not any(is_temp(n) for n in os.listdir(raw))

    # A killed run's old temp file is swept; a fresh one (another writer's) is left alone.
    stale, fresh = raw / temp_name("title.basics.tsv.gz"), raw / temp_name("x")
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    second = fetch_dataset_files(url, root, http)
    assert second.fetches.column("http_status").to_pylist() == [304, 304, 304]
    assert second.files == first.files
    assert not stale.exists() and fresh.exists()


def test_remote_roots_download_to_a_local_cache():
    folder = raw_local_dir(DataRoot("memory://tv100-test-root"))
    assert folder.startswith(os.path.join(tempfile.gettempdir(), "tv100-raw"))
    assert folder == raw_local_dir(DataRoot("memory://tv100-test-root"))


def test_series_from_datasets_is_the_reader_with_the_filter(world, tmp_path):
    paths = write_datasets(world, str(tmp_path))
    files = local_dataset_files(str(tmp_path))
    when = now_utc()
    table = series_from_datasets(files, SeriesFilter(2022, 100), when)
    expected = read_datasets(
        paths["title.basics.tsv.gz"],
        paths["title.ratings.tsv.gz"],
        paths["title.akas.tsv.gz"],
        since=2022,
        min_votes=100,
        discovered_at=when,
    )
    assert table.equals(expected) and table.num_rows > 0
