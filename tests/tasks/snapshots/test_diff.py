"""tasks/snapshots/diff.py: what changed between two snapshots, as data and as text."""

from __future__ import annotations

import pytest

from tests.tasks.snapshots.test_snapshots import MODEL, two_snapshots  # noqa: F401  (fixture)
from tv100.tasks.snapshots.config import SeriesRef
from tv100.tasks.snapshots.diff import diff_snapshots, format_diff


def test_diff_lists_added_removed_moved_and_kept_changes(two_snapshots):  # noqa: F811
    root, a, b = two_snapshots
    diff = diff_snapshots(root)  # defaults: latest and the one before
    assert (diff.a.snapshot_id, diff.b.snapshot_id) == (a, b)
    assert diff.added == (SeriesRef("tt5", "New Show"),)
    assert diff.removed == (SeriesRef("tt4", "Old Show"),)
    moved = {(r.model_key, r.series_id): round(r.delta, 6) for r in diff.moved}
    assert moved == {(MODEL, "tt2"): -0.4, (MODEL, "tt1"): 0.3}  # tt3 moved 0.02 only
    assert [r.series_id for r in diff.moved] == ["tt2", "tt1"]  # largest first
    changed = {r.series_id: (r.kept_a, r.kept_b) for r in diff.classes}
    assert changed == {"tt1": (True, False), "tt2": (False, True), "tt5": (None, True)}
    # A higher threshold hides both moves; explicit ids and unique prefixes work.
    assert diff_snapshots(root, a, b, threshold=0.5).moved == ()
    assert diff_snapshots(root, a[:17], b).a.snapshot_id == a
    reverse = diff_snapshots(root, b, a)
    assert reverse.added == diff.removed and reverse.removed == diff.added
    text = format_diff(diff)
    assert "series added (1):" in text and "tt5  New Show" in text
    assert "tt2  Moonlit Harbor  50.0% -> 10.0% (-40.0)" in text
    assert "tt1  Jade Lantern  kept -> too_easy" in text


def test_diff_threshold_is_checked(two_snapshots):  # noqa: F811
    root, _, _ = two_snapshots
    with pytest.raises(ValueError, match="threshold"):
        diff_snapshots(root, threshold=1.5)
