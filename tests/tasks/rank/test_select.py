"""tasks/rank/select.py: novelty across models, the K hardest series, the rank summary."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tv100.storage.schemas import CLASSES, ZEROSHOT
from tv100.tasks.rank.config import DEFAULT_TEMPLATES, SelectConfig, SeriesAccuracy
from tv100.tasks.rank.select import (
    image_counts,
    novelty,
    rank_result,
    select_classes,
    summarize,
)


def _zs(model: str, acc: dict[str, float | None], n: dict[str, int] | None = None) -> pa.Table:
    rows = []
    for sid, a in acc.items():
        k = (n or {}).get(sid, 100 if a is not None else 0)
        rows.append(
            {"model_key": model, "series_id": sid, "title": sid.upper(), "n_images": k,
             "top1": a, "top5": a, "mean_true_prob": a, "confused_with": None,
             "confused_title": None, "confused_share": None, "n_classes": len(acc),
             "templates": list(DEFAULT_TEMPLATES)}  # fmt: skip
        )
    return pa.Table.from_pylist(rows, schema=ZEROSHOT)


def test_select_keeps_the_k_hardest_ties_by_series_id():
    zs = _zs("m", {"s5": 0.1, "s1": 0.5, "s3": 0.1, "s2": 0.9, "s4": 0.1, "s6": 0.0},
             n={"s6": 3})  # fmt: skip
    classes = select_classes(zs, SelectConfig(k=3, min_images=10))
    assert classes.schema.equals(CLASSES)
    rows = {r["series_id"]: r for r in classes.to_pylist()}
    assert classes.column("series_id").to_pylist() == ["s1", "s2", "s3", "s4", "s5", "s6"]
    # s3, s4, s5 tie at 0.1: all three fit; s6 is hardest but has too few images
    assert {s for s, r in rows.items() if r["kept"]} == {"s3", "s4", "s5"}
    assert [rows[s]["class_index"] for s in ("s3", "s4", "s5")] == [0, 1, 2]
    assert rows["s6"]["reason"] == "too_few_images" and rows["s6"]["rank"] is None
    assert rows["s1"]["reason"] == rows["s2"]["reason"] == "too_easy"
    assert [rows[s]["rank"] for s in ("s3", "s4", "s5", "s1", "s2")] == [1, 2, 3, 4, 5]
    # k=2 among a three-way tie: the lower series ids win
    two = {r["series_id"] for r in select_classes(zs, SelectConfig(k=2, min_images=10))
           .to_pylist() if r["kept"]}  # fmt: skip
    assert two == {"s3", "s4"}


def test_class_index_is_by_series_id_not_by_rank():
    zs = _zs("m", {"b": 0.3, "a": 0.2, "c": 0.1})
    rows = {r["series_id"]: r for r in select_classes(zs, SelectConfig(k=3)).to_pylist()}
    assert [rows[s]["class_index"] for s in "abc"] == [0, 1, 2]
    assert [rows[s]["rank"] for s in "abc"] == [2, 3, 1]


def test_novelty_is_judged_by_the_best_model_or_the_mean():
    zs = pa.concat_tables(
        [_zs("m1", {"x": 0.1, "y": 0.4, "z": None}), _zs("m2", {"x": 0.7, "y": 0.5, "z": None})]
    )
    best = {r.series_id: r.accuracy for r in novelty(zs, "max")}
    mean = {r.series_id: r.accuracy for r in novelty(zs, "mean")}
    assert best == {"x": 0.7, "y": 0.5, "z": None}
    assert mean["x"] == pytest.approx(0.4) and mean["y"] == pytest.approx(0.45)
    by_max = select_classes(zs, SelectConfig(k=1, min_images=1, aggregate="max"))
    by_mean = select_classes(zs, SelectConfig(k=1, min_images=1, aggregate="mean"))
    assert [r["series_id"] for r in by_max.to_pylist() if r["kept"]] == ["y"]
    assert [r["series_id"] for r in by_mean.to_pylist() if r["kept"]] == ["x"]
    assert by_max.column("models").to_pylist()[0] == ["m1", "m2"]


def test_image_counts_override_and_summary():
    zs = _zs("m", {"a": 0.0, "b": 0.25, "c": 1.0, "d": 0.5})
    counts = {"a": 10, "b": 60, "c": 60, "d": 60}  # missing from the counts: 0 images
    classes = select_classes(zs, SelectConfig(k=2, min_images=50), image_counts=counts)
    rows = {r["series_id"]: r for r in classes.to_pylist()}
    assert rows["a"]["reason"] == "too_few_images" and rows["a"]["n_images"] == 10
    assert rows["b"]["kept"] and rows["d"]["kept"] and not rows["c"]["kept"]
    summary = summarize(classes, n=2)
    assert (summary.chance, summary.candidates, summary.kept) == (0.25, 4, 2)
    assert [h.series_id for h in summary.hardest] == ["a", "b"]
    assert [e.series_id for e in summary.easiest] == ["c", "d"]
    assert summary.kept_mean_accuracy == pytest.approx(0.375)
    assert summary.hardest[0] == SeriesAccuracy("a", "A", 0.0, False, "too_few_images")


def test_rank_result_and_image_counts():
    zs = pa.concat_tables([_zs("m1", {"a": 0.0, "b": 0.5}), _zs("m2", {"a": 0.25, "b": 1.0})])
    classes = select_classes(zs, SelectConfig(k=1, min_images=1))
    result = rank_result(classes, zs, {"classes": "abc"})
    assert result.overall_top1 == {"m1": 0.25, "m2": 0.625}
    assert result.selection == summarize(classes) and result.tables == {"classes": "abc"}
    images = pa.table({"series_id": ["b", "a", "b"]})
    assert list(image_counts(images).items()) == [("a", 1), ("b", 2)]


def test_a_series_left_with_too_few_relevant_images_drops_out():
    # zero-shot counted only the relevant images; cleaned counts say which had enough before
    zs = _zs("m", {"a": 0.1, "b": 0.2, "c": None}, n={"a": 4, "b": 20, "c": 0})
    cleaned = {"a": 30, "b": 25, "c": 5}
    rows = {r["series_id"]: r for r in select_classes(
        zs, SelectConfig(k=3, min_images=10), {"a": 4, "b": 20, "c": 0}, cleaned).to_pylist()}
    assert rows["a"]["reason"] == "too_few_relevant" and not rows["a"]["kept"]
    assert rows["b"]["reason"] == "hardest"
    assert rows["c"]["reason"] == "too_few_images"  # too few even before relevance
