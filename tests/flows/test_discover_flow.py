"""Discover end to end under the Prefect test harness: both sources find the same series."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from tv100.storage.catalog import query
from tv100.storage.schemas import SERIES
from tv100.storage.tables import read_table

pytestmark = pytest.mark.usefixtures("prefect_harness")


def expected_ids(world, since: int = 2021) -> set[str]:
    table = world.manifest_tables()["sandbox_series"]
    return {
        r["series_id"]
        for r in table.to_pylist()
        if r["expected"] and r["start_year"] is not None and r["start_year"] > since
    }


def host(sandbox) -> str:
    return sandbox.base_url.split("://", 1)[1]


@pytest.fixture(scope="module")
def datasets_build(tmp_path_factory, sandbox):
    from tv100.flows.discover import discover_flow

    data = str(tmp_path_factory.mktemp("ds") / "data")
    result = discover_flow(
        location=f"{sandbox.base_url}/datasets/",
        source="imdb-datasets",
        data=data,
        allow_hosts=[host(sandbox)],
    )
    return data, result


@pytest.fixture(scope="module")
def web_build(tmp_path_factory, sandbox):
    from tv100.flows.discover import discover_flow

    data = str(tmp_path_factory.mktemp("web") / "data")
    result = discover_flow(
        location=sandbox.base_url,
        source="imdb-web",
        data=data,
        page_size=10,
        allow_hosts=[host(sandbox)],
    )
    return data, result


def test_datasets_source_finds_exactly_the_candidates(datasets_build, world):
    from tv100.storage.root import DataRoot

    data, result = datasets_build
    series = read_table(DataRoot(data), "series")
    ids = set(series.column("series_id").to_pylist())
    assert ids == expected_ids(world)
    assert result.series == len(ids) >= 40
    assert result.kinds and set(result.kinds) <= {"tvSeries", "tvMiniSeries"}
    assert result.failed_fetches == 0 and result.fetches == 3
    assert set(series.column("source").to_pylist()) == {"imdb-datasets"}
    assert set(series.column("kind").to_pylist()) <= {"tvSeries", "tvMiniSeries"}
    assert min(series.column("start_year").to_pylist()) > 2021
    # The files were downloaded once into the data root with their validators.
    raw = os.path.join(data, "raw", "imdb-datasets")
    assert os.path.exists(os.path.join(raw, "title.basics.tsv.gz.meta.json"))


def test_web_source_finds_the_same_series(datasets_build, web_build, world):
    from tv100.storage.root import DataRoot

    ds = read_table(DataRoot(datasets_build[0]), "series").to_pylist()
    web = read_table(DataRoot(web_build[0]), "series").to_pylist()
    assert {r["series_id"] for r in web} == {r["series_id"] for r in ds} == expected_ids(world)
    by_id = {r["series_id"]: r for r in ds}
    for r in web:
        d = by_id[r["series_id"]]
        for col in ("kind", "start_year", "end_year", "countries", "languages", "num_votes",
                    "title", "original_title"):  # fmt: skip
            assert r[col] == d[col], (r["series_id"], col, r[col], d[col])
        assert r["parsed_from"] == "next_data"
    fetches = read_table(DataRoot(web_build[0]), "discover_fetches").to_pylist()
    assert {f["kind"] for f in fetches} == {"list", "title"}
    assert all(f["status"] == "ok" for f in fetches)
    # Pages of 10 until the empty page: more than one list page was really followed.
    assert sum(f["kind"] == "list" for f in fetches) >= 5


@pytest.fixture(scope="module")
def mixed_web_build(tmp_path_factory, sandbox):
    """imdb-web on the sandbox's ``/mixed`` site: every list and title layout in one crawl."""
    from tv100.flows.discover import discover_flow

    data = str(tmp_path_factory.mktemp("mixed") / "data")
    result = discover_flow(
        location=f"{sandbox.base_url}/mixed",
        source="imdb-web",
        data=data,
        page_size=10,
        allow_hosts=[host(sandbox)],
    )
    return data, result


def test_web_source_finds_the_same_series_over_every_layout(
    datasets_build, mixed_web_build, world
):
    from tv100.sandbox.imdb import title_variant
    from tv100.storage.root import DataRoot

    ds = read_table(DataRoot(datasets_build[0]), "series").to_pylist()
    web = read_table(DataRoot(mixed_web_build[0]), "series").to_pylist()
    assert {r["series_id"] for r in web} == {r["series_id"] for r in ds} == expected_ids(world)
    assert {r["parsed_from"] for r in ds} == {None}
    by_id = {r["series_id"]: r for r in ds}
    for r in web:
        d = by_id[r["series_id"]]
        layout = title_variant(world, r["series_id"])
        assert r["parsed_from"] == ("json_ld" if layout == "json_ld" else "next_data")
        # JSON-LD has the names the other way round and no year: both must still match.
        for col in ("title", "original_title", "start_year", "end_year", "num_votes"):
            assert r[col] == d[col], (r["series_id"], layout, col, r[col], d[col])
        if r["parsed_from"] == "next_data":  # JSON-LD has no countries, languages, mini-series
            for col in ("kind", "countries", "languages", "genres"):
                assert r[col] == d[col], (r["series_id"], layout, col, r[col], d[col])
        else:
            assert r["kind"] == "tvSeries" and r["countries"] == [] and r["languages"] == []
    assert {r["parsed_from"] for r in web} == {"next_data", "json_ld"}
    assert {title_variant(world, r["series_id"]) for r in web} == {"current", "earlier", "json_ld"}
    fetches = read_table(DataRoot(mixed_web_build[0]), "discover_fetches").to_pylist()
    assert all(f["status"] == "ok" for f in fetches)
    # Pages of 10: every list layout (dli, cli, older, next_data) served at least once.
    assert sum(f["kind"] == "list" for f in fetches) >= 5


def test_rerun_is_cached_and_byte_identical(datasets_build, sandbox):
    from tv100.flows.discover import discover_flow
    from tv100.storage.root import DataRoot

    data, first = datasets_build
    path = os.path.join(data, "tables", "series.parquet")
    first_log = open(os.path.join(data, "tables", "discover_fetches.parquet"), "rb").read()
    before = open(path, "rb").read()
    mtime = os.stat(path).st_mtime_ns
    second = discover_flow(
        location=f"{sandbox.base_url}/datasets/",
        source="imdb-datasets",
        data=data,
        allow_hosts=[host(sandbox)],
    )
    assert second.tables["series"] == first.tables["series"]
    assert open(path, "rb").read() == before
    assert os.stat(path).st_mtime_ns == mtime
    log = os.path.join(data, "tables", "discover_fetches.parquet")
    assert open(log, "rb").read() == first_log
    # A refresh revalidates with the ETag at once: 304s, and the same series.
    third = discover_flow(
        location=f"{sandbox.base_url}/datasets/",
        source="imdb-datasets",
        data=data,
        allow_hosts=[host(sandbox)],
        refresh=True,
    )
    assert third.tables["series"] == first.tables["series"]
    fetches = query(DataRoot(data), "select http_status from discover_fetches")
    assert fetches.column("http_status").to_pylist() == [304, 304, 304]


def test_local_folder_source_and_min_votes(tmp_path, world):
    from tv100.flows.discover import discover_flow
    from tv100.sandbox.imdb_datasets import write_datasets
    from tv100.storage.root import DataRoot

    folder = tmp_path / "imdb"
    folder.mkdir()
    write_datasets(world, str(folder))
    data = str(tmp_path / "data")
    discover_flow(location=str(folder), data=data, min_votes=1000)
    series = read_table(DataRoot(data), "series").to_pylist()
    truth = {
        r["series_id"]
        for r in world.manifest_tables()["sandbox_series"].to_pylist()
        if r["expected"] and (r["num_votes"] or 0) >= 1000
    }
    assert {r["series_id"] for r in series} == truth
    assert 0 < len(truth) < len(expected_ids(world))


def test_missing_dataset_folder_is_a_clear_error(tmp_path):
    from tv100.flows.discover import discover_flow

    with pytest.raises(FileNotFoundError, match="lacks title.basics.tsv.gz"):
        discover_flow(location=str(tmp_path), data=str(tmp_path / "data"))
    assert not (tmp_path / "data" / "tables").exists()


@pytest.mark.parametrize("site", ["waf", "captcha"])
def test_a_blocked_crawl_writes_its_fetches_and_keeps_the_series(site, sandbox, tmp_path):
    """IMDb's bot check stops imdb-web: the requests are a table, the last series stay."""
    from tv100.flows.discover import discover_flow
    from tv100.storage.root import DataRoot
    from tv100.storage.tables import write_table
    from tv100.tasks.discover.crawl import ImdbBlockedError

    data = str(tmp_path / "data")
    root = DataRoot(data).ensure()
    earlier = {"series_id": "tt0000001", "title": "From an earlier run", "source": "imdb-web"}
    write_table(root, "series", pa.Table.from_pylist([earlier], schema=SERIES))
    series_file = os.path.join(data, "tables", "series.parquet")
    before = open(series_file, "rb").read()
    with pytest.raises(ImdbBlockedError, match="use --source imdb-datasets") as info:
        discover_flow(
            location=f"{sandbox.base_url}/{site}",
            source="imdb-web",
            data=data,
            page_size=10,
            allow_hosts=[host(sandbox)],
        )
    assert not info.value.transient
    assert open(series_file, "rb").read() == before  # not rewritten, not lost
    fetches = read_table(root, "discover_fetches")
    assert fetches.equals(info.value.fetches.cast(fetches.schema))
    rows = fetches.to_pylist()
    blocked = [r for r in rows if r["status"] == "blocked"]
    assert blocked and all(r["source"] == "imdb-web" for r in rows)
    assert all(r["error_message"].startswith("bot check: ") for r in blocked)
    if site == "waf":  # the first list page was the challenge: nothing more was asked
        assert [(r["kind"], r["http_status"]) for r in rows] == [("list", 202)]
    else:  # every list page read, then the title pages' captcha
        assert {r["status"] for r in rows if r["kind"] == "list"} == {"ok"}
        assert {r["kind"] for r in blocked} == {"title"} and len(rows) > len(blocked)
