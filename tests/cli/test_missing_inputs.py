"""A command whose inputs are missing: one line, exit 2, no traceback, and nothing created
under the data root (not even its folder); `tv100 sql`'s whole DuckDB message.

Issue 14: `tv100 discover --location /nonexist --data d1`, `tv100 rank --data d3` and
`tv100 collect --data d4` each created their d* folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tests.support.cli import follow_stderr
from tv100.flows.cli import app
from tv100.storage.root import DataRoot
from tv100.storage.schemas import SERIES
from tv100.storage.tables import write_table

TV100 = os.path.join(os.path.dirname(sys.executable), "tv100")

#: Commands on a data root with nothing in it, and what the one line must say.
COMMANDS = {
    "collect": (["collect"], "collect reads its `series` table"),
    "clean": (["clean"], "clean reads its `images` table"),
    "rank": (["rank"], "rank reads its `series` table"),
    "train": (["train"], "train reads its `classes` table"),
    "rerank": (["rerank"], "rerank reads its `series` table"),
    "report": (["report"], "nothing built here yet"),
    "sql": (["sql", "select * from series"], "nothing built here yet"),
    "diff": (["diff"], "nothing built here yet"),
}


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_nothing_built_is_one_line_and_creates_nothing(name: str, tmp_path: Path):
    args, needle = COMMANDS[name]
    data = tmp_path / "d"
    follow_stderr()
    res = CliRunner().invoke(app, [*args, "--data", str(data)])
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    line = one_line(res.output)
    assert line.startswith("tv100: error:") and needle in line, line
    assert "nothing built here yet" in line and "tv100 build" in line, line
    assert not data.exists()


@pytest.mark.parametrize("command", ["discover", "build"])
def test_missing_dataset_folder_creates_no_root(command: str, tmp_path: Path):
    data = tmp_path / "d1"
    res = CliRunner().invoke(
        app, [command, "--location", str(tmp_path / "nonexist"), "--data", str(data)]
    )
    assert res.exit_code == 2, res.output
    line = one_line(res.output)
    assert "neither a folder nor an http(s) URL" in line, line
    assert not data.exists()


def test_missing_table_names_the_command_and_leaves_the_root_as_it_was(tmp_path: Path):
    root = DataRoot(str(tmp_path / "d")).ensure()
    write_table(root, "series", pa.Table.from_pylist([{"series_id": "tt1"}], schema=SERIES))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for args, needle in [
        (["clean"], "clean reads the `images` table, which is not under"),
        (["rank"], "rank reads the `images` table"),
        (["train"], "train reads the `classes` table"),
        (["rerank", "--since", "2024"], "rerank reads the `images` table"),
    ]:
        res = CliRunner().invoke(app, [*args, "--data", root.url])
        assert res.exit_code == 2, (args, res.output)
        line = one_line(res.output)
        assert needle in line and "first" in line, (args, line)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_stage_flow_refuses_before_creating_the_root(tmp_path: Path, prefect_harness):
    """Deployments run the flows directly: they check their inputs before the lock too."""
    from tv100.flows.collect import collect_flow
    from tv100.flows.rank import rank_flow
    from tv100.tasks.prerequisites import MissingInputError

    for flow, kwargs in [(collect_flow, {}), (rank_flow, {"models": ["RN50@openai"]})]:
        data = tmp_path / flow.name
        with pytest.raises(MissingInputError, match="nothing built here yet"):
            flow(data=str(data), **kwargs)
        assert not data.exists()


def test_sql_shows_duckdbs_whole_message(tmp_path: Path):
    root = DataRoot(str(tmp_path / "d")).ensure()
    write_table(root, "series", pa.Table.from_pylist([{"series_id": "tt1"}], schema=SERIES))
    res = CliRunner().invoke(app, ["sql", "select * from seriess", "--data", root.url])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("tv100: error: query failed: Catalog Error:"), res.output
    assert 'Did you mean "series"' in res.output, res.output  # DuckDB's hint, on its own line
    res = CliRunner().invoke(app, ["sql", "select * from classes", "--data", root.url])
    assert res.exit_code == 2
    assert "table `classes` is not built yet" in one_line(res.output)
    assert "tv100 rank" in res.output
    res = CliRunner().invoke(app, ["sql", "selec 1", "--data", root.url])
    assert res.exit_code == 2 and "LINE 1: selec 1" in res.output, res.output


def test_console_script_rank_on_nothing_creates_nothing(tmp_path: Path):
    """The issue's own check: `cd /tmp/x && tv100 rank --data d3; ls`."""
    env = {k: v for k, v in os.environ.items() if k != "TV100_DATA"}
    out = subprocess.run([TV100, "rank", "--data", "d3"], capture_output=True, text=True,
                         timeout=180, cwd=tmp_path, env=env)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    errors = [line for line in out.stderr.splitlines() if line.startswith("tv100:")]
    assert len(errors) == 1 and "nothing built here yet under 'd3'" in errors[0], out.stderr
    assert list(tmp_path.iterdir()) == []
