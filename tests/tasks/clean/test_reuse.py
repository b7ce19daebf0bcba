"""Per-image reuse of the clean stage's rows (`tv100.tasks.clean.reuse`): what is reused,
what is computed again, and that stored notes survive `write_table`."""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa
import pytest

from tv100.sandbox.refresh import week_earlier
from tv100.storage.schemas import HASHES, IMAGES, QUALITY
from tv100.storage.tables import table_metadata, write_table
from tv100.tasks.clean.config import HashConfig, QualityConfig
from tv100.tasks.clean.reuse import (
    FINGERPRINT_KEY,
    ITEMS_KEY,
    fingerprint,
    items_digest,
    merged,
    plan_reuse,
    with_notes,
)

FP = fingerprint(HashConfig(), QualityConfig(), None)


def _items(n: int, changed: frozenset[int] = frozenset()) -> list[tuple[str, str, str]]:
    return [(f"img{i:03d}", f"images/{i}.jpg", f"sha{i}{'x' if i in changed else ''}")
            for i in range(n)]


def _hashes(items, failed: frozenset[int] = frozenset()) -> pa.Table:
    rows = [{"image_id": i, "sha256": s, "phash": "0" * 16, "dhash": "f" * 16, "width": 10,
             "height": 10, "status": "decode_error" if k in failed else "ok",
             "error_message": "bad" if k in failed else None}
            for k, (i, _, s) in enumerate(items)]
    return pa.Table.from_pylist(rows, schema=HASHES)


def _quality(items) -> pa.Table:
    rows = [{"image_id": i, "width": 10, "height": 10, "is_junk": False, "status": "ok"}
            for i, _, _ in items]
    return pa.Table.from_pylist(rows, schema=QUALITY)


def _store(root, items, fp=FP, quality_items=None, failed=frozenset()) -> None:
    notes = {FINGERPRINT_KEY: fp, ITEMS_KEY: items_digest(items)}
    q_notes = dict(notes, **{ITEMS_KEY: items_digest(quality_items or items)})
    write_table(root, "hashes", with_notes(_hashes(items, failed), notes))
    write_table(root, "quality", with_notes(_quality(quality_items or items), q_notes))


def test_notes_survive_write_table_and_nothing_else_does(data_root):
    table = _hashes(_items(2)).replace_schema_metadata({b"tv100.x": b"1", b"pandas": b"{}"})
    write_table(data_root, "hashes", table)
    assert table_metadata(data_root, "hashes") == {"tv100.x": "1"}
    assert table_metadata(data_root, "quality") == {}  # no such table: no notes


def test_the_fingerprint_follows_settings_not_worker_counts():
    assert fingerprint(HashConfig(workers=1, chunksize=3), QualityConfig(), None) == FP
    assert fingerprint(HashConfig(draft_size=64), QualityConfig(), None) != FP
    assert fingerprint(HashConfig(), replace(QualityConfig(), min_side=7), None) != FP
    assert fingerprint(HashConfig(), QualityConfig(), "abc") != FP


def test_a_first_run_computes_everything(data_root):
    reuse = plan_reuse(data_root, _items(5), FP)
    assert reuse.reused == 0 and len(reuse.todo) == 5


def test_a_refresh_computes_new_changed_and_failed_images_only(data_root):
    _store(data_root, _items(10), failed=frozenset({3}))
    now = _items(12, changed=frozenset({5}))  # two new images, one file fetched anew
    reuse = plan_reuse(data_root, now, FP)
    assert [i for i, _, _ in reuse.todo] == ["img003", "img005", "img010", "img011"]
    assert reuse.reused == 8
    assert sorted(reuse.quality.column("image_id").to_pylist()) == sorted(
        reuse.hashes.column("image_id").to_pylist())


def test_other_settings_or_tables_of_two_runs_reuse_nothing(data_root):
    _store(data_root, _items(4), fp="other")
    assert plan_reuse(data_root, _items(4), FP).reused == 0
    # hashes of one run, quality of another (stopped between the two writes)
    _store(data_root, _items(4), quality_items=_items(4, changed=frozenset({1})))
    assert plan_reuse(data_root, _items(4), FP).reused == 0


def test_merged_rows_are_in_a_cold_runs_order_with_the_notes(data_root):
    items = _items(6)
    cold = _hashes(items)
    reused, computed = cold.take([4, 0, 2]), cold.take([1, 3, 5])
    out = merged(reused, computed, {FINGERPRINT_KEY: FP})
    assert out.replace_schema_metadata(None).equals(cold)
    assert out.schema.metadata == {FINGERPRINT_KEY.encode(): FP.encode()}
    assert merged(None, cold, {}).replace_schema_metadata(None).equals(cold)


def _images(series: int, per: int) -> pa.Table:
    rows = [{"image_id": f"s{s}-{r}", "series_id": f"tt{s:03d}", "rank": r,
             "status": "ok" if r % 5 else "http_error"}
            for s in range(series) for r in range(per)]
    return pa.Table.from_pylist(rows).cast(
        pa.schema([IMAGES.field(n) for n in ("image_id", "series_id", "rank", "status")]))


def test_a_week_earlier_lacks_new_series_and_the_best_images_of_grown_ones():
    images = _images(40, 10)
    older, added = week_earlier(images)
    series = set(older.column("series_id").to_pylist())
    assert series == {f"tt{s:03d}" for s in range(38)}  # 5% of 40: the last two are new
    # every 20th old series (tt000, tt020) lacks its two best-ranked ok images (ranks 1, 2)
    gone = set(images.column("image_id").to_pylist()) - set(older.column("image_id").to_pylist())
    assert {"s0-1", "s0-2", "s20-1", "s20-2"} <= gone and "s0-0" not in gone
    assert added == 2 * 8 + 2 * 2  # ok images of the new series and of the grown ones
    assert older.num_rows == images.num_rows - 2 * 10 - 4


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"new_series": 0.0}, "new_series=0.0; expected a share in (0, 1)"),
    ({"grown_series": 1.0}, "grown_series=1.0; expected a share in (0, 1)"),
    ({"per_grown": 0}, "per_grown=0; expected >= 1"),
])
def test_a_week_earlier_refuses_bad_shares(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        week_earlier(_images(4, 2), **kwargs)
