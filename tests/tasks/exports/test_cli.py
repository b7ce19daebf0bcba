"""`tv100 export` and the export flow: bad input is one line before anything runs; a real
run writes each kind, and a second one reports every kind unchanged."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

import tv100.flows.cli.exports  # noqa: F401  (registers `tv100 export` on the app)
from tests.support.cli import follow_stderr
from tests.tasks.exports.tiny_root import COUNTS, write_tiny_root
from tv100.flows.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _prefect_logs_follow_stderr() -> None:
    follow_stderr()


def _one_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize(("args", "needle"), [
    (["--kind", "zip"], "tv100: error: --kind: unknown kind 'zip'; expected any of pycil, ncd"),
    (["--seed", "-3"], "invalid value '-3' for --seed: expected a value >= 0"),
    (["--seed", "5", "--seed", "5"], "--seed=(5, 5); expected each seed once"),
    (["--labelled-ratio", "1"], "--labelled-ratio=1.0; expected a number with 0 < r < 1"),
    (["--shard-size", "0"], "invalid value '0' for --shard-size"),
])
def test_bad_options_are_one_line(args, needle, tmp_path):
    out = runner.invoke(app, ["export", "--data", str(tmp_path / "d"), *args])
    assert out.exit_code == 2, out.output
    assert needle in _one_line(out.output)
    assert not (tmp_path / "d").exists()


def test_a_root_without_splits_is_one_line_and_left_as_it_was(tmp_path):
    root, _ = write_tiny_root(tmp_path / "d")
    os.remove(root.path("tables/splits.parquet"))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = runner.invoke(app, ["export", "--data", root.url])
    assert out.exit_code == 2, out.output
    line = _one_line(out.output)
    assert "export reads the `splits` table" in line and "tv100 train" in line
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_export_runs_the_flow_and_a_rerun_changes_nothing(tmp_path, prefect_harness):
    root, _ = write_tiny_root(tmp_path / "d")
    args = ["export", "--data", root.url, "--kind", "pycil", "--kind", "wds", "--seed", "7",
            "--shard-size", "10"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "tv100 export finished" in out.output
    lines = {ln.split()[0]: ln for ln in out.output.splitlines()[1:] if ln.strip()}
    assert set(lines) == {"pycil", "wds"}
    assert f"train {COUNTS['train']}, val {COUNTS['val']}" in lines["wds"]
    assert "written" in lines["pycil"] and os.path.isdir(root.path("export/pycil/train"))
    assert sorted(os.listdir(root.path("export"))) == ["pycil", "wds"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert out.output.count("unchanged") == 2, out.output


def test_the_flow_refuses_an_unknown_kind_before_touching_the_root(tmp_path, prefect_harness):
    from tv100.flows.export import export_flow

    with pytest.raises(ValueError, match="unknown kind 'zip'"):
        export_flow(data=str(tmp_path / "d"), kinds=["zip"])
    assert not (tmp_path / "d").exists()
