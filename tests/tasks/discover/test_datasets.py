"""The imdb-datasets source: local folders, downloads with revalidation, the series table.

Also: which failures are fixed (one `SourceError`, no retry) and which are transient, and the
bench's generated files (`bench/discover.py`, at a tiny scale) giving the series count its
generator expects.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from prefect import flow
from prefect.cache_policies import NO_CACHE

from tv100.sandbox.imdb_datasets import DatasetFolder, write_datasets
from tv100.storage.atomic import is_temp, sha256_file, temp_name
from tv100.storage.root import DataRoot
from tv100.tasks.discover import steps
from tv100.tasks.discover.config import DISCOVER, SeriesFilter
from tv100.tasks.discover.datasets import (
    DATASET_FILES,
    RAW_DIR,
    BadDatasetFile,
    MissingDatasetFiles,
    fetch_dataset_files,
    local_dataset_files,
    raw_local_dir,
    series_from_datasets,
)
from tv100.tasks.discover.fetches import now_utc
from tv100.tasks.discover.imdb_datasets import read_datasets
from tv100.tasks.web.config import HttpConfig
from tv100.tasks.web.errors import SourceError

BENCH = Path(__file__).parents[3] / "bench" / "discover.py"


def sandbox_http(sandbox, **kw) -> HttpConfig:
    return HttpConfig(allow_hosts=(sandbox.base_url.split("://", 1)[1],), backoff_base_s=0.0,
                      backoff_max_s=0.0, **kw)  # fmt: skip


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
    with pytest.raises(FileNotFoundError, match="lacks title.ratings.tsv.gz, title.akas") as e:
        fetch_dataset_files(str(tmp_path), root, HttpConfig())
    assert isinstance(e.value, SourceError) and not e.value.transient
    with pytest.raises(MissingDatasetFiles, match="neither a folder nor an http"):
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


def test_a_missing_remote_file_is_a_fixed_error_naming_it(sandbox, tmp_path):
    root = DataRoot(str(tmp_path / "data")).ensure()
    location = f"{sandbox.base_url}/datasets/no-akas/"
    with pytest.raises(SourceError) as e:
        fetch_dataset_files(location, root, sandbox_http(sandbox))
    message = str(e.value)
    assert not e.value.transient and "\n" not in message
    assert f"{location}title.akas.tsv.gz" in message and "HTTP 404" in message
    assert "expected the files title.basics.tsv.gz" in message
    raw = Path(raw_local_dir(root))  # the files before it are kept, whole
    assert sorted(n for n in os.listdir(raw) if not n.endswith(".json")) == [
        "title.basics.tsv.gz", "title.ratings.tsv.gz",
    ]  # fmt: skip


def test_a_location_without_datasets_is_a_fixed_error(sandbox, tmp_path):
    root = DataRoot(str(tmp_path / "data")).ensure()
    with pytest.raises(SourceError, match=r"title\.basics\.tsv\.gz from .*/nowhere/") as e:
        fetch_dataset_files(f"{sandbox.base_url}/nowhere/", root, sandbox_http(sandbox))
    assert not e.value.transient and "HTTP 404" in str(e.value)


def test_a_file_over_the_cap_is_a_fixed_error(sandbox, tmp_path):
    root = DataRoot(str(tmp_path / "data")).ensure()
    http = sandbox_http(sandbox, max_file_bytes=100)
    with pytest.raises(SourceError, match="exceeds max_file_bytes=100") as e:
        fetch_dataset_files(f"{sandbox.base_url}/datasets/", root, http)
    assert not e.value.transient and "raise the cap" in str(e.value)
    assert [n for n in os.listdir(raw_local_dir(root)) if not n.endswith(".json")] == []


def test_an_unreachable_server_is_a_transient_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    http = HttpConfig(allow_hosts=(f"127.0.0.1:{port}",), retries=1, backoff_base_s=0.0,
                      backoff_max_s=0.0)  # fmt: skip
    root = DataRoot(str(tmp_path / "data")).ensure()
    with pytest.raises(SourceError, match="gave up after 2 attempts") as e:
        fetch_dataset_files(f"http://127.0.0.1:{port}/", root, http)
    assert e.value.transient and "run again later" in str(e.value)


def test_cut_downloads_are_resumed(sandbox, tmp_path):
    root = DataRoot(str(tmp_path / "data")).ensure()
    location = f"{sandbox.base_url}/datasets/cut-{uuid.uuid4().hex}/"
    fetched = fetch_dataset_files(location, root, sandbox_http(sandbox, retries=1))
    assert fetched.fetches.column("http_status").to_pylist() == [206, 206, 206]
    assert fetched.fetches.column("status").to_pylist() == ["ok"] * 3
    plain = fetch_dataset_files(
        f"{sandbox.base_url}/datasets/", DataRoot(str(tmp_path / "d2")), sandbox_http(sandbox)
    )
    assert [f.sha256 for f in fetched.files] == [f.sha256 for f in plain.files]


def test_a_malformed_file_is_a_source_error(world, tmp_path):
    write_datasets(world, str(tmp_path))
    (tmp_path / "title.ratings.tsv.gz").write_bytes(b"tconst\taverageRating\tnumVotes\ntt1\n")
    with pytest.raises(BadDatasetFile, match="title.ratings.tsv.gz: line 2") as e:
        series_from_datasets(local_dataset_files(str(tmp_path)), DISCOVER.filter, now_utc())
    assert isinstance(e.value, ValueError) and not e.value.transient


@pytest.mark.parametrize(
    ("error", "calls"),
    [
        (SourceError("404", transient=False), 1),
        (SourceError("503", transient=True), 3),
        (RuntimeError("a bug"), 3),
    ],
    ids=["fixed", "transient", "other"],
)
def test_the_fetch_task_retries_only_what_can_help(
    error, calls, prefect_harness, monkeypatch, tmp_path
):
    seen: list[str] = []

    def failing(location: str, root: DataRoot, config: HttpConfig):
        seen.append(location)
        raise error

    monkeypatch.setattr(steps, "fetch_dataset_files", failing)
    task = steps.fetch_datasets_task.with_options(
        retries=2, retry_delay_seconds=0, cache_policy=NO_CACHE
    )

    @flow
    def discover_like(location: str) -> None:
        task(location, DataRoot(str(tmp_path / "data")), HttpConfig())

    with pytest.raises(type(error)):
        discover_like(str(tmp_path))
    assert len(seen) == calls


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_discover", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_files_give_the_generators_series_count(sandbox, tmp_path):
    bench = _bench_module()
    manifest = bench.generate(tmp_path / "files", 0.0005)
    assert manifest["rows"] == {"basics": 6000, "ratings": 750, "akas": 25000}
    prefix = f"/bench-{uuid.uuid4().hex}/"
    sandbox.register(prefix, DatasetFolder(tmp_path / "files", prefix).handle)
    root = DataRoot(str(tmp_path / "data")).ensure()
    fetched = fetch_dataset_files(sandbox.base_url + prefix, root, sandbox_http(sandbox))
    series = series_from_datasets(fetched.files, DISCOVER.filter, now_utc())
    assert series.num_rows == manifest["expected_series"] > 0
    assert set(series.column("kind").to_pylist()) == {"tvSeries", "tvMiniSeries"}
    assert min(series.column("start_year").to_pylist()) > DISCOVER.since
    with_countries = sum(1 for c in series.column("countries").to_pylist() if c)
    assert with_countries > 0.5 * series.num_rows  # the akas rows carrying original titles
    again = fetch_dataset_files(sandbox.base_url + prefix, root, sandbox_http(sandbox))
    assert again.fetches.column("http_status").to_pylist() == [304, 304, 304]
