"""tasks/rank/relevance.py: irrelevant images found against planted ground truth, the config's
checks, the `relevance` table and its determinism."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tv100.sandbox.labelnoise import OFFTOPIC, OTHER_SERIES, class_sizes, noisy_embeddings
from tv100.storage.root import DataRoot
from tv100.storage.schemas import EMBEDDINGS, RELEVANCE
from tv100.storage.tables import read_table, write_table
from tv100.tasks.rank import relevance as rel
from tv100.tasks.rank.config import RankConfig, RelevanceConfig
from tv100.tasks.rank.relevance import (
    KEEP,
    relevance_table,
    relevant_images,
    score_relevance,
    stratified_folds,
)

#: Measured on seeds 0-4 with the defaults (20,000 images, 100 series, 5-35% noise per
#: series, half of it off-topic): worst precision / recall per kind over the seeds was
#: other_series 0.999 / 0.956, offtopic 0.983 / 0.948 (seed 3 for the recalls; both kinds
#: together 1.000 / 0.957). The defaults were measured on the sandbox demo's real pipeline
#: and these vectors (see `RelevanceConfig`); the scores are deterministic; asserted a
#: little below the worst seed.
BOUND = 0.93


#: Relevance scoring on (the rank stage's default).
ON = RelevanceConfig(enabled=True)

def _precision_recall(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    tp = int((pred & true).sum())
    return tp / max(1, int(pred.sum())), tp / max(1, int(true.sum()))


@pytest.mark.parametrize("seed", range(5), ids=lambda s: f"seed{s}")
def test_planted_noise_is_found_per_kind(seed: int) -> None:
    data = noisy_embeddings(n=20_000, dim=512, n_classes=100, seed=seed)
    scores = score_relevance(data.vectors, data.labels, 100)
    for kind, code in (("other_series", OTHER_SERIES), ("offtopic", OFFTOPIC)):
        precision, recall = _precision_recall(scores.decision == code, data.kind == code)
        assert precision >= BOUND and recall >= BOUND, (kind, precision, recall)
    other = (scores.decision == OTHER_SERIES) & (data.kind == OTHER_SERIES)
    # the suspected series is the true one
    assert (scores.suspected[other] == data.truth[other]).mean() >= 0.99


def test_noise_rates_are_long_tailed_between_the_bounds() -> None:
    data = noisy_embeddings(n=20_000, n_classes=100, seed=0)
    assert 0.05 <= data.noise_rate.min() and data.noise_rate.max() <= 0.35
    assert np.median(data.noise_rate) < 0.5 * (0.05 + 0.35)  # most series are cleaner
    sizes = class_sizes(20_000, 100)
    assert sizes.sum() == 20_000 and 9 <= sizes[0] / sizes[-1] <= 13


def test_batched_cleanlab_agrees_with_find_label_issues() -> None:
    from cleanlab.filter import find_label_issues

    data = noisy_embeddings(n=4_000, dim=64, n_classes=20, seed=3)
    cfg = RelevanceConfig(chunk=500)
    _, _, issue = rel.label_issues(data.vectors, data.labels, 20, cfg)
    fold = stratified_folds(data.labels, cfg.folds, cfg.seed)
    cent = rel.fold_centroids(data.vectors, data.labels, fold, 20, cfg.folds, cfg.chunk)
    probs = rel.fold_probabilities(data.vectors, fold, cent, cfg.logit_scale)
    whole = find_label_issues(data.labels, probs, filter_by="low_normalized_margin", n_jobs=1)
    assert abs(int(issue.sum()) - int(whole.sum())) <= 2
    assert (issue != whole).sum() <= 4


def test_folds_are_stratified_and_seeded() -> None:
    labels = np.repeat(np.arange(3), [10, 7, 5]).astype(np.int32)
    folds = stratified_folds(labels, 5, 0)
    for c in range(3):
        counts = np.bincount(folds[labels == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert np.array_equal(folds, stratified_folds(labels, 5, 0))
    assert not np.array_equal(folds, stratified_folds(labels, 5, 1))


def test_tiny_and_empty_inputs_keep_everything() -> None:
    empty = score_relevance(np.zeros((0, 8), np.float32), np.zeros(0, np.int32), 3)
    assert len(empty.decision) == 0
    one = score_relevance(np.eye(8, dtype=np.float32)[:1], np.zeros(1, np.int32), 1)
    assert one.decision.tolist() == [KEEP]


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="labels outside 0..1"):
        score_relevance(np.eye(3, dtype=np.float32), np.array([0, 1, 2]), 2)
    with pytest.raises(ValueError, match="expected \\(n, dim\\) and \\(n,\\)"):
        score_relevance(np.eye(3, dtype=np.float32), np.array([0, 1]), 2)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("folds", 1, "RelevanceConfig.folds=1; expected 2..20"),
        ("logit_scale", 0.5, "RelevanceConfig.logit_scale=0.5; expected 1.0..1000.0"),
        ("neighbours", 0, "RelevanceConfig.neighbours=0; expected 1..1000"),
        ("outlier_z", 0.1, "RelevanceConfig.outlier_z=0.1; expected 0.5..100.0"),
        ("fit_z", -1.0, "RelevanceConfig.fit_z=-1.0; expected 0.0..100.0"),
        ("chunk", 0, "RelevanceConfig.chunk=0; expected 1..1000000"),
        ("min_series_images", 1, "RelevanceConfig.min_series_images=1; expected 2..1000000"),
        ("seed", -1, "RelevanceConfig.seed=-1; expected 0..4294967295"),
        ("folds", 2.5, "RelevanceConfig.folds=2.5; expected an integer"),
        ("enabled", "yes", "RelevanceConfig.enabled='yes'; expected True or False"),
    ],
    ids=lambda v: str(v) if not isinstance(v, str) or len(v) < 20 else "msg",
)
def test_config_is_validated_with_one_line(field: str, value: object, expected: str) -> None:
    with pytest.raises(ValueError) as err:
        RelevanceConfig(**{field: value})  # type: ignore[arg-type]
    assert str(err.value) == expected and "\n" not in str(err.value)


def test_rank_config_holds_relevance_on_by_default() -> None:
    assert RankConfig().relevance.enabled is True
    assert RankConfig(relevance=RelevanceConfig(enabled=False)).relevance.enabled is False


def _root_with_embeddings(tmp_path, model_key: str = "m") -> tuple[DataRoot, pa.Table, pa.Table]:
    root = DataRoot(str(tmp_path / "data"))
    root.ensure()
    data = noisy_embeddings(n=3_000, dim=32, n_classes=12, seed=1)
    ids = [f"img{i:05d}" for i in range(len(data.labels))]
    series = [f"tt{c:03d}" for c in range(12)]
    rows = [
        {"image_id": i, "model_key": model_key, "vector": v.tolist(), "status": "ok",
         "error_message": None}
        for i, v in zip(ids, data.vectors, strict=True)
    ]
    rows.append({"image_id": "img_broken", "model_key": model_key, "vector": None,
                 "status": "decode_error", "error_message": "bad"})
    write_table(root, "embeddings", pa.Table.from_pylist(rows, schema=EMBEDDINGS))
    images = pa.table({
        "image_id": ids + ["img_broken"],
        "series_id": [series[c] for c in data.labels] + [series[0]],
    })
    candidates = pa.table({"series_id": series + ["tt999"], "title": series + ["never found"]})
    return root, images, candidates


def test_table_schema_rows_and_reasons(tmp_path) -> None:
    root, images, candidates = _root_with_embeddings(tmp_path)
    table = relevance_table(root, "m", images, candidates, ON)
    assert table.schema.equals(RELEVANCE)
    assert table.num_rows == images.num_rows
    assert table.column("image_id").to_pylist() == sorted(images.column("image_id").to_pylist())
    rows = {r["image_id"]: r for r in table.to_pylist()}
    assert rows["img_broken"]["decision"] == "keep" and rows["img_broken"]["score"] is None
    assert {r["method"] for r in rows.values()} == {"cleanlab+knn:m"}
    for r in rows.values():
        assert r["decision"] in ("keep", "irrelevant")
        assert (r["reason"] is None) == (r["decision"] == "keep")
        assert r["reason"] in (None, "other_series", "offtopic")
        if r["reason"] == "other_series":
            assert r["suspected_series_id"] not in (None, r["series_id"])
    irrelevant = sum(r["decision"] == "irrelevant" for r in rows.values())
    assert 0 < irrelevant < table.num_rows // 2
    kept = relevant_images(images, table)
    assert kept.num_rows == images.num_rows - irrelevant


def test_table_is_byte_identical_when_scored_again(tmp_path) -> None:
    root, images, candidates = _root_with_embeddings(tmp_path)
    first = write_table(root, "relevance", relevance_table(root, "m", images, candidates, ON))
    again = relevance_table(
        root, "m", images.take(np.arange(images.num_rows)[::-1]), candidates, ON
    )
    assert write_table(root, "relevance", again) == first
    assert read_table(root, "relevance").equals(again)


def test_disabled_keeps_every_image_unscored(tmp_path) -> None:
    root, images, candidates = _root_with_embeddings(tmp_path)
    table = relevance_table(root, "m", images, candidates, RelevanceConfig(enabled=False))
    assert table.schema.equals(RELEVANCE)
    assert set(table.column("decision").to_pylist()) == {"keep"}
    assert set(table.column("method").to_pylist()) == {"off"}
    assert table.column("score").null_count == table.num_rows


def test_an_image_of_no_candidate_series_is_refused(tmp_path) -> None:
    root, images, candidates = _root_with_embeddings(tmp_path)
    with pytest.raises(ValueError, match="not candidates"):
        relevance_table(root, "m", images, candidates.slice(1), ON)


def test_small_series_are_not_judged() -> None:
    data = noisy_embeddings(n=2_000, dim=64, n_classes=40, seed=2)  # 15 to 100 per series
    sizes = np.bincount(data.labels)
    scores = score_relevance(data.vectors, data.labels, 40, RelevanceConfig(min_series_images=40))
    small = sizes[data.labels] < 40
    assert small.any() and (scores.decision[small] == KEEP).all()
    moved = scores.decision == rel.OTHER_SERIES
    assert (sizes[scores.suspected[moved]] >= 40).all()
