"""The Hugging Face export, loaded with the real ``datasets`` library, offline."""

from __future__ import annotations

import pytest

from tests.tasks.exports.tiny_root import COUNTS, DIRNAMES, KEPT, SERIES_ROWS, K
from tv100.tasks.exports.common import export_items
from tv100.tasks.exports.config import ExportConfig
from tv100.tasks.exports.hf import export_hf, size_category


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return datasets


def test_loads_with_the_card_as_features(tiny, offline, tmp_path):
    root, labels = tiny
    result = export_hf(root, export_items(root), ExportConfig())
    assert result.counts == {"train": COUNTS["train"], "validation": COUNTS["val"],
                             "test": COUNTS["test"]}
    ds = offline.load_dataset(root.path("export/hf"), cache_dir=str(tmp_path / "cache"))
    assert {s: ds[s].num_rows for s in ds} == result.counts
    assert ds["train"].features["label"].names == DIRNAMES
    meta = {sid: (year, countries) for sid, _, year, countries in SERIES_ROWS}
    seen = []
    for split in ds:
        rows = ds[split].remove_columns("image").to_list()
        for r in rows:
            assert labels[r["image_id"]] == r["label"]
            assert r["series_id"] == KEPT[r["label"]]
            assert (r["start_year"], r["countries"]) == meta[r["series_id"]]
        seen += [r["image_id"] for r in rows]
    assert sorted(seen) == sorted(labels)  # every split image once, nothing else
    titles = set(ds["test"]["title"])
    assert "Café: Nights!" in titles  # unicode and punctuation kept in the metadata
    image = ds["test"][0]["image"]
    assert image.size == (32, 24)


def test_loads_with_the_imagefolder_builder(tiny, offline, tmp_path):
    root, labels = tiny
    export_hf(root, export_items(root), ExportConfig())
    ds = offline.load_dataset("imagefolder", data_dir=root.path("export/hf"),
                              cache_dir=str(tmp_path / "cache"))
    assert set(ds) == {"train", "validation", "test"}
    assert sum(ds[s].num_rows for s in ds) == len(labels)
    rows = ds["validation"].remove_columns("image").to_list()
    assert all(labels[r["image_id"]] == r["label"] for r in rows)
    assert {r["label"] for r in ds["train"].remove_columns("image").to_list()} == set(range(K))


def test_card_header():
    assert size_category(35) == "n<1K" and size_category(10_000) == "10K<n<100K"
