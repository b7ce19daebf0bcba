"""The `tv100` command line: sql formats, inspect, clear errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pyarrow as pa
from typer.testing import CliRunner

from tv100.flows.cli import app
from tv100.storage.schemas import SERIES
from tv100.storage.tables import write_table

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


def test_sql_error_is_one_line_exit_2(data_root):
    out = runner.invoke(app, ["sql", "select * from no_such_table", "--data", data_root.url])
    assert out.exit_code == 2
    assert "query failed" in out.output and "no_such_table" in out.output


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
