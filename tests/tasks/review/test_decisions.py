"""tasks/review/decisions.py: the append-only `reviews` table and how stages honour it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from tv100.storage.root import DataRoot
from tv100.storage.schemas import RELEVANCE
from tv100.storage.tables import done_shards
from tv100.tasks.review.decisions import (
    REVIEWS_TABLE,
    all_reviews,
    apply_reviews,
    latest_reviews,
    record_review,
    reviewed_images,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def root(tmp_path):
    return DataRoot(str(tmp_path / "data")).ensure()


def _relevance(rows):
    cols = {f.name: [] for f in RELEVANCE}
    for image_id, decision, reason in rows:
        cols["image_id"].append(image_id)
        cols["series_id"].append("tt1")
        cols["score"].append(0.5)
        cols["outlier_score"].append(0.0)
        cols["suspected_series_id"].append(None)
        cols["decision"].append(decision)
        cols["reason"].append(reason)
        cols["method"].append("cleanlab+knn:m")
        cols["auto_decision"].append(None)
        cols["auto_reason"].append(None)
    return pa.table(cols, schema=RELEVANCE)


def test_each_decision_is_its_own_shard_and_the_latest_wins(root):
    record_review(root, ["a", "b"], "reject", "ann", now=T0)
    record_review(root, ["a"], "accept", "bob", now=T0 + timedelta(seconds=1))
    record_review(root, ["c"], "accept", "ann", now=T0 + timedelta(seconds=2))
    assert len(done_shards(root, REVIEWS_TABLE)) == 3  # appended, never rewritten
    assert all_reviews(root).num_rows == 4
    latest = {r["image_id"]: (r["decision"], r["reviewer"])
              for r in latest_reviews(root).to_pylist()}
    assert latest == {"a": ("accept", "bob"), "b": ("reject", "ann"), "c": ("accept", "ann")}


def test_same_instant_ties_go_to_the_later_write(root):
    record_review(root, ["a"], "reject", "ann", now=T0)
    record_review(root, ["a"], "accept", "ann", now=T0)
    assert latest_reviews(root).column("decision").to_pylist() == ["accept"]


def test_no_reviews_is_an_empty_table(root):
    assert latest_reviews(root).num_rows == 0
    assert all_reviews(root).schema.names == ["image_id", "decision", "reviewer", "decided_at"]


@pytest.mark.parametrize(
    ("ids", "decision", "reviewer", "match"),
    [(["a"], "maybe", "ann", "decision"), ([], "accept", "ann", "image"),
     (["a"], "accept", "  ", "reviewer")],
)
def test_bad_decisions_are_refused_and_nothing_is_written(root, ids, decision, reviewer, match):
    with pytest.raises(ValueError, match=match):
        record_review(root, ids, decision, reviewer)
    assert all_reviews(root).num_rows == 0


def test_humans_override_the_scorer_and_applying_twice_changes_nothing(root):
    relevance = _relevance([
        ("keep_ok", "keep", None), ("keep_rejected", "keep", None),
        ("irr_accepted", "irrelevant", "offtopic"), ("irr_rejected", "irrelevant", "other_series"),
        ("irr", "irrelevant", "offtopic"),
    ])
    record_review(root, ["keep_rejected", "irr_rejected"], "reject", "ann", now=T0)
    record_review(root, ["irr_accepted", "keep_ok"], "accept", "ann", now=T0)
    out = apply_reviews(relevance, latest_reviews(root))
    got = {r["image_id"]: (r["decision"], r["reason"], r["auto_decision"], r["auto_reason"])
           for r in out.to_pylist()}
    assert got == {
        "keep_ok": ("keep", None, "keep", None),
        "keep_rejected": ("irrelevant", "review", "keep", None),
        "irr_accepted": ("keep", "review", "irrelevant", "offtopic"),
        "irr_rejected": ("irrelevant", "review", "irrelevant", "other_series"),
        "irr": ("irrelevant", "offtopic", "irrelevant", "offtopic"),
    }
    assert apply_reviews(out, latest_reviews(root)).equals(out)
    # a human changing their mind is honoured from the scorer's decision, not the last one
    record_review(root, ["irr_accepted"], "reject", "ann", now=T0 + timedelta(seconds=5))
    again = {r["image_id"]: r["decision"] for r in
             apply_reviews(out, latest_reviews(root)).to_pylist()}
    assert again["irr_accepted"] == "irrelevant"


def test_reviewed_images_leaves_out_the_rejected_with_or_without_scores(root):
    images = pa.table({"image_id": ["a", "b", "c"], "series_id": ["tt1"] * 3})
    relevance = _relevance([("a", "keep", None), ("b", "irrelevant", "offtopic"),
                            ("c", "keep", None)])
    assert reviewed_images(root, images, relevance).column("image_id").to_pylist() == ["a", "c"]
    record_review(root, ["c"], "reject", "ann", now=T0)
    record_review(root, ["b"], "accept", "ann", now=T0)
    assert reviewed_images(root, images, relevance).column("image_id").to_pylist() == ["a", "b"]
    assert reviewed_images(root, images, None).column("image_id").to_pylist() == ["a", "b"]
