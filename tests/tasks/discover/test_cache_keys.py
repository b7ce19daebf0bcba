"""The dataset fetch's cache is keyed on a local folder's files, and never hides a failure.

Before the fix the fetch was keyed on the folder's name: files replaced under the same names
still gave the old series (for up to 20 hours), and a deleted folder gave them too, exit 0.
"""

from __future__ import annotations

import os
import shutil

import pytest
from typer.testing import CliRunner

from tests.support.cli import follow_stderr
from tests.support.reliability import record
from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table
from tv100.tasks.discover.datasets import DATASET_FILES, local_files_stamp

pytestmark = pytest.mark.usefixtures("prefect_harness")


def expected_ids(world) -> set[str]:
    return {
        r["series_id"]
        for r in world.manifest_tables()["sandbox_series"].to_pylist()
        if r["expected"] and r["start_year"] is not None and r["start_year"] > 2021
    }


def series_ids(data: str) -> set[str]:
    return set(read_table(DataRoot(data), "series").column("series_id").to_pylist())


def test_local_files_stamp_sees_a_replaced_file(tmp_path):
    for name in DATASET_FILES:
        (tmp_path / name).write_bytes(b"first")
    first = local_files_stamp(str(tmp_path))
    assert first is not None and [s[0] for s in first] == list(DATASET_FILES)
    assert local_files_stamp(str(tmp_path)) == first  # nothing read, nothing changed
    # Same name, same size, same modification time: another file all the same.
    path = tmp_path / DATASET_FILES[1]
    st = os.stat(path)
    (tmp_path / "new").write_bytes(b"other")
    os.utime(tmp_path / "new", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp_path / "new", path)
    assert local_files_stamp(str(tmp_path)) != first
    path.unlink()
    assert local_files_stamp(str(tmp_path)) is None
    assert local_files_stamp(str(tmp_path / "gone")) is None


def test_replaced_dataset_files_are_read_again(tmp_path, world):
    from tv100.flows.discover import discover_flow
    from tv100.sandbox.imdb_datasets import write_datasets
    from tv100.sandbox.world import build_world

    folder = tmp_path / "imdb"
    data = str(tmp_path / "data")
    write_datasets(world, folder)
    discover_flow(location=str(folder), data=data)
    assert series_ids(data) == expected_ids(world)

    # The same folder and names, other files: the next run reads them.
    other = build_world(seed=7, n_series=12)
    write_datasets(other, folder)
    discover_flow(location=str(folder), data=data)
    assert series_ids(data) == expected_ids(other) != expected_ids(world)
    record("cache", "local IMDb dataset files replaced under the same names",
           "cache miss: the new files were read")

    # Unchanged files: a cache hit, and the series table is not rewritten.
    table = os.path.join(data, "tables", "series.parquet")
    mtime = os.stat(table).st_mtime_ns
    discover_flow(location=str(folder), data=data)
    assert os.stat(table).st_mtime_ns == mtime


def test_a_deleted_folder_is_an_error_not_the_cached_series(tmp_path, world):
    from tv100.flows.cli import app
    from tv100.sandbox.imdb_datasets import write_datasets

    follow_stderr()
    runner = CliRunner()
    folder = tmp_path / "imdb"
    data = str(tmp_path / "data")
    write_datasets(world, folder)
    args = ["discover", "--location", str(folder), "--data", data]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    table = os.path.join(data, "tables", "series.parquet")
    before = open(table, "rb").read()

    shutil.rmtree(folder)
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("tv100: error:")]
    assert len(errors) == 1 and str(folder) in errors[0], res.stderr
    assert "Traceback" not in res.output
    assert open(table, "rb").read() == before  # what was written is kept
    record("cache", "local IMDb dataset folder deleted after a run", "refused: exit 2")

    # One file gone: the same.
    write_datasets(world, folder)
    (folder / DATASET_FILES[2]).unlink()
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert DATASET_FILES[2] in res.stderr
    record("cache", "one local IMDb dataset file deleted after a run", "refused: exit 2")


def test_a_crawl_with_failed_pages_is_crawled_again(tmp_path, world):
    from tv100.flows.discover import discover_flow
    from tv100.sandbox.server import Response, SandboxServer

    series_id = sorted(expected_ids(world))[0]
    title = f"/title/{series_id}/"
    data = str(tmp_path / "data")
    with SandboxServer(world) as server:
        host = server.base_url.split("://", 1)[1]

        def crawl():  # the same inputs every time: only the site's answers differ
            return discover_flow(location=server.base_url, source="imdb-web", data=data,
                                 page_size=25, allow_hosts=[host])  # fmt: skip

        server.register(title, lambda request: Response.text("try later\n", status=503))
        down = crawl()
        assert down.failed_fetches == 1
        assert series_id not in series_ids(data)

        server.register(title, server.imdb.handle)  # the title page is back
        asked = sum(title in line for line in server.request_log)
        up = crawl()
        assert sum(title in line for line in server.request_log) > asked, "replayed from cache"
        assert up.failed_fetches == 0
        assert series_ids(data) == expected_ids(world)
        record("cache", "IMDb title page down (HTTP 503) for a crawl, then up",
               "not cached: the next run crawled again and found the series")

        # A crawl without failures is cached: no request at all the next time.
        asked = len(server.request_log)
        crawl()
        assert len(server.request_log) == asked
        assert server.errors == []


def test_deleted_downloads_are_downloaded_again(tmp_path, sandbox):
    from tv100.flows.discover import discover_flow
    from tv100.storage.catalog import query

    data = str(tmp_path / "data")
    host = sandbox.base_url.split("://", 1)[1]
    args = dict(location=f"{sandbox.base_url}/datasets/", data=data, allow_hosts=[host])
    first = discover_flow(**args)
    raw = os.path.join(data, "raw", "imdb-datasets")
    shutil.rmtree(raw)  # the cached fetch names files that are gone
    again = discover_flow(**args)
    assert again.tables["series"] == first.tables["series"]
    assert all(os.path.isfile(os.path.join(raw, name)) for name in DATASET_FILES)
    fetches = query(DataRoot(data), "select http_status from discover_fetches")
    assert fetches.column("http_status").to_pylist() == [200, 200, 200]
    record("cache", "downloaded IMDb dataset files deleted after a run",
           "downloaded again, same series")
