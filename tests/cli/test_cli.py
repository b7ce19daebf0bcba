"""The `tv100` command line: sql formats, inspect, clear errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tv100.flows.cli import app
from tv100.storage.root import DataRoot
from tv100.storage.schemas import SERIES
from tv100.storage.tables import read_table, write_table

runner = CliRunner()


def _series(root) -> None:
    rows = [
        {
            "series_id": f"tt000000{i}",
            "title": t,
            "original_title": t,
            "kind": k,
            "start_year": 2023,
            "end_year": None,
            "genres": ["Drama"],
            "countries": ["JP"],
            "languages": ["ja"],
            "rating": 8.0,
            "num_votes": 10,
            "source": "imdb-datasets",
            "discovered_at": datetime(2026, 1, 1, tzinfo=UTC),
        }
        for i, (t, k) in enumerate([('A "quoted" show', "tvSeries"), ("B", "tvMiniSeries"),
                                    ("C", "tvSeries")])
    ]
    write_table(root, "series", pa.Table.from_pylist(rows, schema=SERIES))


def test_sql_formats(data_root):
    _series(data_root)
    q = "select kind, count(*) as n from series group by 1 order by 1"
    out = runner.invoke(app, ["sql", q, "--data", data_root.url])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split() == ["kind", "n"]
    assert lines[2].split() == ["tvMiniSeries", "1"]
    assert lines[-1] == "(2 rows)"
    out = runner.invoke(app, ["sql", q, "--data", data_root.url, "--format", "csv"])
    assert out.output == "kind,n\ntvMiniSeries,1\ntvSeries,2\n"
    out = runner.invoke(
        app, ["sql", "select title from series order by 1", "--data", data_root.url,
              "--format", "json"]
    )
    assert json.loads(out.output.splitlines()[0]) == {"title": 'A "quoted" show'}


def test_sql_error_is_duckdbs_message_exit_2(data_root):
    write_table(data_root, "series", pa.Table.from_pylist([{"series_id": "tt1"}], schema=SERIES))
    out = runner.invoke(app, ["sql", "select * from no_such_table", "--data", data_root.url])
    assert out.exit_code == 2
    assert out.output.startswith("tv100: error: query failed: Catalog Error:"), out.output
    assert "no_such_table" in out.output


def test_sql_on_an_empty_root_says_nothing_is_built(data_root):
    out = runner.invoke(app, ["sql", "select * from no_such_table", "--data", data_root.url])
    assert out.exit_code == 2
    assert out.output.strip() == (f"tv100: error: nothing built here yet under {data_root.url!r}"
                                  ": run `tv100 build ...` (or `tv100 demo`) first"), out.output


def test_bad_option_types_exit_2(tmp_path):
    out = runner.invoke(app, ["discover", "--location", "x", "--since", "soon",
                              "--data", str(tmp_path)])
    assert out.exit_code == 2
    out = runner.invoke(app, ["discover", "--location", "x", "--source", "altavista",
                              "--data", str(tmp_path)])
    assert out.exit_code == 2 and "altavista" in out.output
    assert not (tmp_path / "tables").exists()


def test_inspect_prints_json_lines(tmp_path, sandbox):
    import httpx

    page = httpx.get(f"{sandbox.base_url}/search/title/?title_type=tv_series,tv_miniseries"
                     "&release_date=2022-01-01,&start=1").content
    f = tmp_path / "list.html"
    f.write_bytes(page)
    out = runner.invoke(app, ["inspect", "imdb-list", str(f)])
    assert out.exit_code == 0, out.output
    records = [json.loads(line) for line in out.output.splitlines()]
    assert records and all(r["series_id"].startswith("tt") for r in records)
    sid = records[0]["series_id"]
    f2 = tmp_path / "title.html"
    f2.write_bytes(httpx.get(f"{sandbox.base_url}/title/{sid}/").content)
    out = runner.invoke(app, ["inspect", "imdb-title", str(f2)])
    (rec,) = [json.loads(line) for line in out.output.splitlines()]
    assert rec["series_id"] == sid
    out = runner.invoke(app, ["inspect", "imdb-title", str(tmp_path / "missing.html")])
    assert out.exit_code == 2 and "cannot read" in out.output


def test_console_script_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "tv100")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for cmd in ("demo", "build", "discover", "sql", "inspect", "sandbox"):
        assert cmd in out.stdout


def test_dedupe_command(tmp_path):
    from tv100.sandbox.imagegen import make_photo

    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    im = make_photo(3, 320, 240)
    im.save(folder / "a.jpg", quality=90)
    im.resize((160, 120)).save(folder / "sub" / "a-small.jpg", quality=60)
    make_photo(4, 320, 240).save(folder / "b.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"junk" * 10)
    out = tmp_path / "groups.parquet"
    res = runner.invoke(app, ["dedupe", str(folder), "--out", str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.output.splitlines()]
    unreadable = [r for r in records if "unreadable" in r]
    groups = [r for r in records if "group" in r]
    assert [os.path.basename(r["unreadable"]) for r in unreadable] == ["broken.jpg"]
    assert len(groups) == 1 and groups[0]["kept"].endswith("a.jpg")
    assert [os.path.basename(d["path"]) for d in groups[0]["duplicates"]] == ["a-small.jpg"]
    assert out.exists()
    res = runner.invoke(app, ["dedupe", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "not a folder" in res.output


# -- --max-file-bytes (discover, build) -------------------------------------------------------


@pytest.mark.parametrize("command", ["discover", "build"])
@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("0", "expected a value >= 1"),
        ("-5", "expected a value >= 1"),
        ("lots", "expected a whole number"),
        (str((1 << 44) + 1), "max_file_bytes must be an integer in 1.."),
    ],
)
def test_bad_max_file_bytes_is_one_line_exit_2(command: str, value: str, needle: str, tmp_path):
    data = tmp_path / "data"
    res = runner.invoke(app, [command, "--location", "x", "--max-file-bytes", value,
                              "--data", str(data)])  # fmt: skip
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tv100: error:"), res.stderr
    assert "--max-file-bytes" in lines[0] and needle in lines[0], lines[0]
    assert "Traceback" not in res.output and not (data / "tables").exists()


def test_max_file_bytes_reaches_the_dataset_download(sandbox, prefect_harness, tmp_path):
    """A cap below the sandbox's files: the first one is refused as too large, one line."""
    host = sandbox.base_url.split("://", 1)[1]
    location = f"{sandbox.base_url}/datasets/"
    res = runner.invoke(app, ["discover", "--location", location, "--allow-host", host,
                              "--max-file-bytes", "1000",
                              "--data", str(tmp_path / "data")])  # fmt: skip
    assert res.exit_code == 2, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("tv100: error:")]
    assert len(errors) == 1, res.stderr
    assert "max_file_bytes=1000" in errors[0] and location in errors[0], errors[0]
    assert "Traceback" not in res.output, res.output


# -- collect: an engine that answers only bot checks ----------------------------------------


def test_collect_prints_the_blocked_engine_line_and_keeps_the_others(
    sandbox_web, prefect_harness, tmp_path
):
    from tests.support.builds import TIMEOUT_S, seed_series
    from tv100.sandbox.engines import engine_urls

    web = sandbox_web
    data = str(tmp_path / "data")
    seed_series(data, [t for t in web.world.titles if web.catalog.for_series(t.series_id)][:3])
    urls = engine_urls(web.base_url, {"google": "blocked"})
    args = ["collect", "--data", data, "--per-series-cap", "5", "--image-timeout", str(TIMEOUT_S),
            "--allow-host", web.host_port]
    for name, origin in urls.items():
        args += ["--engine-url", f"{name}={origin}"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)  # stdout holds the result only: the line goes to stderr
    hits = read_table(DataRoot(data), "search_hits")
    # The other engines' hits are kept (and the result on stdout says so).
    assert set(hits.column("engine").to_pylist()) == {"bing", "duckduckgo"}
    assert result["hits"] == hits.num_rows > 0
    # The line on stderr names the engine and what it saw, after the run.
    line = (
        "google: all 3 result pages were blocked (JavaScript challenge); "
        f"kept {hits.num_rows:,} hits from bing, duckduckgo"
    )
    assert result["engine_warnings"] == [line]
    assert f"tv100: warning: {line}" in res.stderr.splitlines(), res.stderr
