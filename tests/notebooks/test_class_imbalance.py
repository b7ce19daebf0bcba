"""notebooks/class_imbalance.ipynb: stored without outputs, and runs on real data roots.

Executed with nbclient in a fresh kernel (the data root passed through ``TV100_DATA``),
once on the synthetic root of every stage and once on a small sandbox build made by the
demo flow (series and images only: the later figures must be skipped, not crash).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tasks.report.test_analysis import write_synthetic_root
from tv100.storage.catalog import connect, query
from tv100.storage.root import DataRoot
from tv100.tasks.clean.cleaned import cleaned_images
from tv100.tasks.report import analysis
from tv100.tasks.report.config import FIGURES
from tv100.tasks.report.report import write_report

#: The shared full build (sandbox CLIP pre-training, collect, clean, rank, train) is set up
#: inside the first test that uses it.
pytestmark = pytest.mark.timeout(1800)

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "class_imbalance.ipynb"


def _execute(data: str, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("TV100_DATA", data)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    ).execute()
    return nb


def _outputs(nb) -> tuple[int, str]:
    """Number of PNG outputs and all text shown, from the executed notebook."""
    pngs, text = 0, []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            pngs += "image/png" in data
            text.append(out.get("text", "") + data.get("text/markdown", ""))
    return pngs, "\n".join(text)


def test_notebook_is_stored_without_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    source = "\n".join(c.source for c in code)
    # only queries and plots: no pipeline stage is run from the notebook
    for forbidden in ("flows.", "write_table", "write_report", "demo_flow"):
        assert forbidden not in source
    assert "TV100_DATA" in source and "connect(root)" in source


def test_notebook_runs_on_a_root_with_every_table(tmp_path, monkeypatch):
    root = write_synthetic_root(str(tmp_path / "data"))
    nb = _execute(root.url, monkeypatch)
    pngs, text = _outputs(nb)
    assert pngs == 3  # figures (b), (c), (d)
    assert "Gini after cleaning: 0.438, imbalance ratio: 13.5" in text
    assert "| quality | blank | 5 | 1 |" in text
    assert "| RN50 | finetune | 0.4308 |" in text


@pytest.fixture(scope="module")
def sandbox_build(trained) -> DataRoot:
    """A small real build of the sandbox through every stage (tests/conftest.py)."""
    return DataRoot(trained[0])


def test_notebook_runs_on_a_sandbox_build(sandbox_build, monkeypatch):
    nb = _execute(sandbox_build.url, monkeypatch)
    pngs, text = _outputs(nb)
    ok = query(sandbox_build, "select count(*) as n from images where status = 'ok'")
    n_ok = ok.column("n")[0].as_py()
    assert n_ok > 0
    assert pngs >= 3  # (b), (c) and (d): the build ran every stage
    assert f"| images | {n_ok} |" in text
    assert "no accuracy yet" not in text


def test_report_on_a_sandbox_build(sandbox_build):
    result = write_report(sandbox_build)
    for key in ("country_distribution", "instance_distribution"):
        assert os.path.getsize(result.files[key]) > 10_000
    n = query(sandbox_build, "select count(*) as n from series").column("n")[0].as_py()
    with open(result.files["card"], encoding="utf-8") as f:
        card = f.read()
    assert f"| series discovered | {n} |" in card
    assert set(result.skipped) <= set(FIGURES)
    # "after cleaning" agrees with what the clean stage hands to the later stages
    con = connect(sandbox_build)
    try:
        analysis.prepare(con)
        fate = con.sql(
            "select image_id from image_fate where stage is null "
            "or stage in ('relevance', 'classes') "
            "order by image_id"
        ).fetchall()
        n_clean = analysis.dataset_facts(con).n_images_clean
    finally:
        con.close()
    cleaned = cleaned_images(sandbox_build)
    assert [r[0] for r in fate] == cleaned.column("image_id").to_pylist()
    assert 0 < n_clean <= cleaned.num_rows
    assert f"| images after cleaning | {n_clean} |" in card
