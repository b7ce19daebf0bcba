"""``tv100 sql`` over a data root with a corrupt table (issue 17, defect 4): queries of the
other tables answer; a query of the corrupt one is one line naming the file and the fix,
exit 2, no traceback; read-only or ``--unsafe`` alike."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.support.reliability import record
from tests.support.synthetic_root import write_synthetic_root
from tv100.flows.cli import app

runner = CliRunner()


@pytest.fixture
def corrupt_images(tmp_path) -> tuple[str, str]:
    """A synthetic data root whose `images` table is truncated to half: (root, its file)."""
    root = write_synthetic_root(str(tmp_path / "data"))
    path = root.path("tables", "images.parquet")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    return root.url, path


@pytest.mark.parametrize("unsafe", [[], ["--unsafe"]], ids=["read-only", "unsafe"])
def test_sql_on_another_table_answers(corrupt_images, unsafe):
    data, _ = corrupt_images
    res = runner.invoke(app, ["sql", "select count(*) as n from series", "--data", data,
                              "--format", "csv", *unsafe])
    record("cli", "truncated table: tv100 sql on another table", f"exit {res.exit_code}")
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == ["n", "6"]


@pytest.mark.parametrize("unsafe", [[], ["--unsafe"]], ids=["read-only", "unsafe"])
@pytest.mark.parametrize("sql", [
    "select count(*) from images",
    "select s.title, count(*) from series s join images i using (series_id) group by 1",
])
def test_sql_on_the_corrupt_table_is_one_line(corrupt_images, sql, unsafe):
    data, path = corrupt_images
    res = runner.invoke(app, ["sql", sql, "--data", data, *unsafe])
    record("cli", "truncated table: tv100 sql on it", f"exit {res.exit_code}")
    assert not (res.exception and not isinstance(res.exception, SystemExit)), repr(res.exception)
    assert res.exit_code == 2, res.output
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("tv100: error: ")
    for needle in ("'images'", path, "tv100 build"):
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in res.output
