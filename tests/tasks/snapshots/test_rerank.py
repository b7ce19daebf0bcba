"""tasks/snapshots/rerank.py: which kept classes a newer model recognises, and its inputs."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tests.tasks.snapshots.test_snapshots import (
    KEPT_A,
    T0,
    TITLES_A,
    TOP1_A,
    classes_table,
    write_build,
    zeroshot_table,
)
from tv100.storage.schemas import IMAGES
from tv100.storage.tables import write_table
from tv100.tasks.snapshots.config import NoLongerUnseen, RerankConfig
from tv100.tasks.snapshots.rerank import (
    default_threshold,
    format_rerank,
    rerank_inputs,
    rerank_table,
    summarize_rerank,
)
from tv100.tasks.snapshots.snapshots import SnapshotError, record_snapshot


def test_rerank_flags_a_class_whose_accuracy_rose_above_the_threshold():
    kept = pa.table({"series_id": ["tt1", "tt2", "tt3"], "title": ["A", "B", "C"],
                     "accuracy": [0.05, 0.0, 0.1]})
    titles = {"tt1": "A", "tt2": "B", "tt3": "C", "tt4": "D", "tt5": "E"}
    new = zeroshot_table({"tt1": 0.6, "tt2": 0.1, "tt3": None, "tt4": 0.9, "tt5": 0.0}, titles)
    assert default_threshold(5) == pytest.approx(0.4) and default_threshold(100) == 0.1
    rows = {r["series_id"]: r for r in rerank_table(kept, new, snapshot_id="s1").to_pylist()}
    assert set(rows) == {"tt1", "tt2", "tt3"}  # kept classes only
    assert rows["tt1"]["still_unseen"] is False  # 5% -> 60% > 40% (twice chance of 5)
    assert rows["tt2"]["still_unseen"] is True and rows["tt3"]["still_unseen"] is None
    assert rows["tt1"]["old_accuracy"] == 0.05 and rows["tt1"]["new_accuracy"] == 0.6
    assert rows["tt1"]["threshold"] == pytest.approx(0.4) and rows["tt1"]["snapshot_id"] == "s1"
    strict = {r["series_id"]: r["still_unseen"] for r in rerank_table(kept, new, 0.05).to_pylist()}
    assert strict == {"tt1": False, "tt2": False, "tt3": None}


    result = summarize_rerank(rerank_table(kept, new), "s1", 5, {"rerank": "h"})
    assert result.no_longer_unseen == (NoLongerUnseen("ViT-X@test", "tt1", "A", 0.05, 0.6, 0.4),)
    assert (result.kept, result.still_unseen, result.no_images) == (3, 1, 1)
    assert (result.snapshot_id, result.candidates, result.tables) == ("s1", 5, {"rerank": "h"})
    text = format_rerank(result)
    assert "3 kept classes re-ranked with ViT-X@test (old classes of snapshot s1)" in text
    assert "tt1  A  top-1 5.0% -> 60.0% (threshold 40.0%)" in text
    assert "1 (model, class) pairs had no cleaned images" in text


def test_rerank_config_is_checked():
    with pytest.raises(ValueError, match="no models to re-rank"):
        RerankConfig(models=())
    with pytest.raises(ValueError, match="threshold"):
        RerankConfig(models=("A@b",), threshold=2.0)
    with pytest.raises(ValueError, match="ARCH@WEIGHTS"):
        RerankConfig(models=("no-weights",))


def test_rerank_inputs_current_or_a_snapshots_classes(data_root):
    rows = [{"image_id": f"i{n}", "series_id": sid, "status": "ok", "sha256": f"{n:064x}",
             "path": f"images/{n}.jpg", "width": 8, "height": 8}
            for n, sid in enumerate(["tt1", "tt2", "tt3", "tt1"])]
    write_table(data_root, "images", pa.Table.from_pylist(rows, schema=IMAGES))
    write_build(data_root, TITLES_A, TOP1_A, KEPT_A)
    snap = record_snapshot(data_root, {}, now=T0).snapshot_id
    now = rerank_inputs(data_root)
    assert now.snapshot_id is None and now.candidates.num_rows == 4
    assert now.kept.column("series_id").to_pylist() == ["tt1", "tt3"]
    assert sorted(now.images.column("image_id").to_pylist()) == ["i0", "i2", "i3"]
    # Nothing kept any more; the snapshot still has its kept classes.
    write_table(data_root, "classes", classes_table(
        {s: False for s in TITLES_A}, TOP1_A, TITLES_A))
    with pytest.raises(ValueError, match="no kept classes"):
        rerank_inputs(data_root)
    assert rerank_inputs(data_root, snap[:12]).snapshot_id == snap
    with pytest.raises(SnapshotError, match="unknown snapshot"):
        rerank_inputs(data_root, "nope")
