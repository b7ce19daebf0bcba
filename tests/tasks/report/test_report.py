"""The report: figures (b), (c), (d), metrics.csv and the dataset card, on synthetic roots."""

from __future__ import annotations

import csv
import io
import os

import numpy as np
import pytest
from PIL import Image

from tests.support.synthetic_root import write_synthetic_root
from tv100.storage.root import DataRoot
from tv100.tasks.report import report
from tv100.tasks.report.config import (
    CARD,
    EXPERIMENT_CAPTIONS,
    EXPERIMENT_FIGURES,
    FIGURES,
    METRICS_CSV,
    OPTIONAL_FIGURES,
    ReportConfig,
    ReportResult,
)
from tv100.tasks.report.report import write_report
from tv100.tasks.train.metrics import Tiers

#: The figures drawn whenever their tables allow. The synthetic root has no `relevance` table,
#: so the optional relevance figure is left out (see test_relevance_report.py).
ALWAYS = {k: v for k, v in FIGURES.items() if k not in OPTIONAL_FIGURES}


def _png(path: str) -> Image.Image:
    with open(path, "rb") as f:
        data = f.read()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), path
    img = Image.open(io.BytesIO(data))
    img.load()  # decodes the whole image: a truncated file fails here
    return img


def _metrics(path: str) -> dict[tuple[str, str, str], str]:
    with open(path, newline="") as f:
        return {(r["section"], r["key"], r["metric"]): r["value"] for r in csv.DictReader(f)}


def _card(root: DataRoot) -> str:
    with open(root.path("report", CARD), encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = write_synthetic_root(str(tmp_path_factory.mktemp("report") / "data"))
    return root, write_report(root)


def test_full_report_writes_every_file(full):
    root, result = full
    assert result.skipped == {}
    assert set(result.files) == {*ALWAYS, "metrics", "card"}
    assert result.report_dir == root.path("report")
    for key in ALWAYS:
        path = result.files[key]
        assert path == root.path("report", FIGURES[key])
        img = _png(path)
        assert img.width >= 500 and img.height >= 400
        # something is drawn: not one flat colour
        assert np.asarray(img.convert("L")).std() > 20


def test_metrics_csv_holds_the_card_numbers(full):
    root, result = full
    m = _metrics(result.files["metrics"])
    assert m[("dataset", "", "images_clean")] == "231"
    assert m[("dataset", "", "classes")] == "4"
    assert float(m[("imbalance", "after_cleaning", "gini")]) == pytest.approx(405 / 924, abs=1e-6)
    assert m[("imbalance", "after_cleaning", "imbalance_ratio")] == "13.5"
    assert m[("imbalance", "before_cleaning", "imbalance_ratio")] == "30"
    assert [m[("imbalance", "after_cleaning", t)] for t in ("many", "medium", "few")] == [
        "1",
        "2",
        "1",
    ]
    assert m[("removals", "duplicates", "images")] == "12"
    assert m[("countries", "CN", "classes")] == "2"
    assert m[("accuracy", "RN50", "finetune_top1_test")] == "0.4308"
    assert m[("splits", "test", "images")] == "58"


def test_card_states_counts_removals_and_licence(full):
    root, _ = full
    card = _card(root)
    assert "| images after cleaning | 231 |" in card
    assert "| images downloaded (status ok) | 255 |" in card
    assert "| classes in the dataset | 4 |" in card
    assert "| quality | low_entropy,too_small | 2 | 1 |" in card
    assert "| classes | too_easy | 5 | 1 |" in card
    assert "| imbalance ratio (max/min) | 30 | 13.5 |" in card
    assert "| Gini coefficient | 0.5333 | 0.4383 |" in card
    assert "| RN50 | 2.08% | – | 43.08% |" in card
    assert "imdb-datasets (6)" in card and "2022 to 2024" in card
    assert (
        "Splits: train 116 images (4 classes), val 56 images (4 classes), "
        "test 58 images (4 classes)." in card
    )
    assert "copyright of their owners" in card and "research" in card
    for fname in ALWAYS.values():
        assert f"]({fname})" in card
    assert "## Notes" not in card


def test_rerun_changes_no_file(full):
    root, result = full
    before = {}
    for path in result.files.values():
        with open(path, "rb") as f:
            before[path] = (f.read(), os.stat(path).st_mtime_ns)
    again = write_report(root)
    assert again.files == result.files
    for path, (data, mtime) in before.items():
        with open(path, "rb") as f:
            assert f.read() == data, path
        assert os.stat(path).st_mtime_ns == mtime, f"{path} rewritten"


def test_tiers_are_configurable_in_the_report(tmp_path):
    root = write_synthetic_root(str(tmp_path / "data"))
    write_report(root, ReportConfig(tiers=Tiers(many=50, few=30)))
    m = _metrics(root.path("report", METRICS_CSV))
    assert [m[("imbalance", "after_cleaning", t)] for t in ("many", "medium", "few")] == [
        "2",
        "0",
        "2",
    ]
    assert "many-shot > 50 images" in _card(root)


def test_report_on_a_root_without_later_stage_tables_skips_with_notes(tmp_path):
    root = write_synthetic_root(str(tmp_path / "data"), tables=("series", "images"))
    result = write_report(root)
    assert set(result.skipped) == {"performance", "novelty"}
    assert not os.path.exists(root.path("report", FIGURES["performance"]))
    for key in ("country_distribution", "instance_distribution"):
        _png(result.files[key])
    card = _card(root)
    assert "## Notes" in card
    assert "(d) Zero-shot vs fine-tuned skipped" in card
    assert "Figure Novelty: top-1 per series and model; what kept classes are mistaken for " \
        "skipped: the `zeroshot` and `classes` tables (the rank stage) are missing." in card
    for note in (
        "No `quality` table",
        "No `duplicates` table",
        "No `classes` table",
        "No `metrics` table",
    ):
        assert note in card
    # without cleaning tables, after cleaning = downloaded
    assert "| images after cleaning | 255 |" in card
    m = _metrics(result.files["metrics"])
    removed = {k[1]: m[k] for k in m if k[0] == "removals"}
    assert removed == {"download": "4", "quality": "0", "duplicates": "0", "relevance": "0",
                       "classes": "0"}


def test_report_on_an_empty_root_skips_every_figure(tmp_path):
    root = DataRoot(str(tmp_path / "data")).ensure()
    result = write_report(root)
    assert set(result.skipped) == set(ALWAYS)
    assert set(result.files) == {"metrics", "card"}
    card = _card(root)
    assert "No `series` table" in card and "No `images` table" in card
    assert "| series discovered | 0 |" in card


def test_report_removes_a_figure_whose_tables_are_gone(tmp_path):
    root = write_synthetic_root(str(tmp_path / "data"))
    fig_d = root.path("report", FIGURES["performance"])
    write_report(root)
    assert os.path.exists(fig_d)
    for name in ("metrics", "zeroshot"):
        os.remove(root.path("tables", f"{name}.parquet"))
    result = write_report(root)
    assert "performance" in result.skipped
    assert not os.path.exists(fig_d)
    assert FIGURES["performance"] not in _card(root)


def test_zeroshot_table_alone_still_draws_figure_d(tmp_path):
    root = write_synthetic_root(
        str(tmp_path / "data"), tables=("series", "images", "zeroshot", "classes")
    )
    result = write_report(root)
    assert "performance" in result.files
    m = _metrics(result.files["metrics"])
    assert {k[1] for k in m if k[0] == "accuracy"} == {"RN50", "ViT-B-16"}
    assert "image-weighted mean top-1" in _card(root)


@pytest.mark.parametrize(
    "kwargs", [pytest.param({"dpi": 10}, id="dpi"), pytest.param({"max_countries": 0}, id="pie")]
)
def test_report_config_validates(kwargs):
    with pytest.raises(ValueError, match="ReportConfig"):
        ReportConfig(**kwargs)


def test_report_task_wraps_write_report(tmp_path):
    root = write_synthetic_root(str(tmp_path / "data"), tables=("series", "images"))
    result = report.report_task.fn(root, ReportConfig(tiers=Tiers(many=5, few=2)))
    assert isinstance(result, ReportResult)
    m = _metrics(result.files["metrics"])
    assert m[("imbalance", "tiers", "many")] == "5"


def test_card_sections_in_order(full):
    root, _ = full
    card = _card(root)
    headings = [line for line in card.splitlines() if line.startswith("#")]
    assert headings == [
        "# Dataset card",
        "## Counts",
        "## Motivation",
        "## Composition",
        "### Splits",
        "### Classes",
        "### Countries",
        "### Start years",
        "### Class imbalance",
        "## Collection process",
        "### Sources",
        "### Dates",
        "### Filters",
        "### Class selection (rank)",
        "### Human review",
        "## Preprocessing, cleaning and labelling",
        "### Removals by reason",
        "## Uses",
        "### Intended uses",
        "### Out-of-scope uses",
        "### Zero-shot vs fine-tuned (top1, test split)",
        "## Figures",
        "## Distribution and licences",
        "## Known biases and limitations",
        "## Maintenance",
    ]
    assert card.startswith("---\n") and "the card and figures follow the tables.\n" in card
    assert card.endswith("`tv100 rerank --data " + root.url + " --model ARCH@WEIGHTS`.\n")
    assert "\n\n\n" not in card


def test_card_lists_every_imbalance_statistic():
    from dataclasses import fields

    from tv100.tasks.report.card import STAT_LABELS
    from tv100.tasks.report.imbalance import ImbalanceStats

    assert [k for k, _ in STAT_LABELS] == [f.name for f in fields(ImbalanceStats)]


def test_card_links_the_experiment_figures_that_exist(tmp_path):
    root = write_synthetic_root(str(tmp_path / "data"))
    write_report(root)
    assert "curves.png" not in _card(root) and "longtail.png" not in _card(root)
    curves = root.path("report", EXPERIMENT_FIGURES["curves"])
    with open(curves, "wb") as f:
        f.write(b"drawn by tv100 experiment curves")
    result = write_report(root)
    card = _card(root)
    assert f"![{EXPERIMENT_CAPTIONS['curves']}](curves.png)" in card
    assert "longtail.png" not in card and "curves" not in result.files
    with open(curves, "rb") as f:  # the report neither redraws nor removes it
        assert f.read() == b"drawn by tv100 experiment curves"
