"""`tv100 sql` is read-only by default: SELECTs over files under the data root, nothing else.

Before, `read_csv('/etc/passwd')`, `COPY ... TO`, `ATTACH` and a `COPY` over
`tables/series.parquet` (which replaced the series table) all ran. Each refused case here
checks exit 2, one line naming what was refused and `--unsafe`, and that nothing changed:
the table's bytes and the folder outside the root. `--unsafe` runs them as before.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import fsspec
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tests.support.reliability import record
from tv100.flows.cli import app
from tv100.storage.root import DataRoot
from tv100.storage.schemas import SERIES
from tv100.storage.tables import write_table

runner = CliRunner()


def _write_series(root: DataRoot) -> None:
    rows = [
        {
            "series_id": f"tt90000{i}",
            "title": title,
            "original_title": title,
            "kind": "tvSeries",
            "start_year": 2022 + i,
            "end_year": None,
            "genres": ["Comedy"],
            "countries": ["KR"],
            "languages": ["ko"],
            "rating": 7.5,
            "num_votes": 100 * (i + 1),
            "source": "imdb-datasets",
            "discovered_at": datetime(2026, 2, 1, tzinfo=UTC),
        }
        for i, title in enumerate(["Moving", "Daily Dose of Sunshine"])
    ]
    write_table(root, "series", pa.Table.from_pylist(rows, schema=SERIES))


@pytest.fixture
def world(tmp_path):
    """A data root with a series table, and a folder outside it with a CSV in it."""
    root = DataRoot(str(tmp_path / "data")).ensure()
    _write_series(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("user,token\nalice,s3cr3t\n")
    return root, outside


def _snapshot(path) -> dict[str, str]:
    """Every file under `path` and the sha256 of its bytes."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*")) if p.is_file()
    }


def sql(root: DataRoot, query: str, *extra: str):
    return runner.invoke(app, ["sql", query, "--data", root.url, *extra])


REFUSED = {
    "read_csv /etc/passwd": ("select * from read_csv('/etc/passwd')", "/etc/passwd"),
    "read_csv outside the root": (
        "select * from read_csv('{outside}/secret.csv')", "secret.csv"),
    "glob outside the root": ("select * from glob('{outside}/*')", "Permission"),
    "COPY TO outside": ("copy (select 1 as a) to '{outside}/x.csv'", "COPY"),
    "COPY over series.parquet": (
        "copy (select 'foreign' as series_id) to '{root}/tables/series.parquet'", "COPY"),
    "ATTACH": ("attach '{outside}/other.duckdb' as other", "ATTACH"),
    "EXPORT DATABASE": ("export database '{outside}/dump'", "EXPORT"),
    "SET lock_configuration=false": ("set lock_configuration = false", "SET"),
    "SET enable_external_access": ("set enable_external_access = true", "SET"),
    "INSTALL": ("install httpfs", "LOAD"),
    "LOAD": ("load httpfs", "LOAD"),
    "CREATE TABLE": ("create table t as select * from series", "CREATE"),
    "PRAGMA": ("pragma version", "PRAGMA"),
    "CALL": ("call pragma_version()", "CALL"),
    "COPY after a SELECT": (
        "select 1; copy (select 1 as a) to '{outside}/y.csv'", "COPY"),
    "EXPLAIN ANALYZE COPY": (
        "explain analyze copy (select 1 as a) to '{outside}/z.csv'", "EXPLAIN"),
    "UPDATE EXTENSIONS (a type the binding cannot name)": ("update extensions", "unknown"),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_refused_by_default_with_one_line_and_no_side_effect(world, case):
    root, outside = world
    query, needle = REFUSED[case]
    before_root, before_outside = _snapshot(outside.parent / "data"), _snapshot(outside)
    res = sql(root, query.format(root=root.base, outside=outside))
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tv100: error: sql: refused"), res.output
    assert needle in lines[0] and "--unsafe" in lines[0], lines[0]
    assert "s3cr3t" not in res.output
    assert _snapshot(outside.parent / "data") == before_root, "the data root is unchanged"
    assert _snapshot(outside) == before_outside, "nothing written outside"
    record("cli", f"sql (read-only): {case}", f"exit {res.exit_code}")


def test_the_series_table_survives_a_copy_over_it(world):
    root, _ = world
    query = f"copy (select 'foreign' as series_id) to '{root.base}/tables/series.parquet'"
    assert sql(root, query).exit_code == 2
    res = sql(root, "select series_id from series order by 1", "--format", "csv")
    assert res.exit_code == 0 and res.output == "series_id\ntt900000\ntt900001\n"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("select count(*) as n from series", [{"n": 2}]),
        ("from series select title where start_year = 2023", [{"title": "Daily Dose of Sunshine"}]),
        ("with t as (select num_votes from series) select sum(num_votes)::bigint as v from t",
         [{"v": 300}]),
        ("select count(*) as n from read_parquet('{root}/tables/series.parquet')", [{"n": 2}]),
        ("select count(*) > 0 as ok from glob('{root}/tables/*')", [{"ok": True}]),
    ],
    ids=["count", "from-first", "cte", "read_parquet-in-root", "glob-in-root"],
)
def test_selects_over_the_views_and_files_in_the_root_still_work(world, query, expected):
    root, _ = world
    res = sql(root, query.format(root=root.base), "--format", "json")
    assert res.exit_code == 0, res.output
    assert [json.loads(line) for line in res.output.splitlines()] == expected


@pytest.mark.parametrize(
    "query", ["describe series", "show tables", "summarize series", "explain select 1",
              "explain analyze select count(*) from series", "/* why */ explain select 1"],
)
def test_describe_show_summarize_and_explain_still_work(world, query):
    root, _ = world
    res = sql(root, query)
    assert res.exit_code == 0, res.output


def test_unsafe_reads_and_writes_outside_the_root(world):
    root, outside = world
    query = f"select token from read_csv('{outside}/secret.csv')"
    assert sql(root, query).exit_code == 2
    res = sql(root, query, "--unsafe", "--format", "csv")
    assert res.exit_code == 0, res.output
    assert res.output == "token\ns3cr3t\n"
    res = sql(root, f"copy (select 1 as a) to '{outside}/x.csv'", "--unsafe")
    assert res.exit_code == 0, res.output
    assert (outside / "x.csv").read_text().splitlines() == ["a", "1"]


def test_help_documents_unsafe_as_local_only():
    res = runner.invoke(app, ["sql", "--help"], terminal_width=200)
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    assert "--unsafe" in text and "read-only" in text and "your own machine" in text


def test_a_remote_root_is_read_only_too(tmp_path):
    """An fsspec root (memory://): its views work, another path on the same filesystem not."""
    root = DataRoot(f"memory://tv100-sql-{tmp_path.name}/data").ensure()
    _write_series(root)
    fs = fsspec.filesystem("memory")
    other = f"/tv100-sql-{tmp_path.name}/other/series.parquet"
    fs.pipe(other, fs.cat(root.path("tables", "series.parquet")))
    res = sql(root, "select count(*) as n from series", "--format", "csv")
    assert res.exit_code == 0 and res.output == "n\n2\n", res.output
    res = sql(root, f"select count(*) from read_parquet('memory://{other.lstrip('/')}')")
    assert res.exit_code == 2 and "refused" in res.output and "--unsafe" in res.output
