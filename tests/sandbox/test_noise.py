"""sandbox/noise.py: planted label noise against the relevance table, on hand-made tables."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tv100.sandbox.imagehost import MANIFEST_SCHEMA
from tv100.sandbox.noise import format_noise, ground_truth, noise_figures
from tv100.storage.root import DataRoot
from tv100.storage.schemas import IMAGES, RELEVANCE
from tv100.storage.tables import write_table

#: url -> (series, plant, scorer's decision, reason; None: not scored).
ROWS = {
    "/a0": ("tt1", None, "keep", None),
    "/a1": ("tt1", None, "irrelevant", "offtopic"),  # a false flag
    "/a2": ("tt1", "irrelevant_offtopic", "irrelevant", "offtopic"),
    "/a3": ("tt1", "irrelevant_other_series", "irrelevant", "offtopic"),  # found, wrong kind
    "/b0": ("tt2", None, "keep", None),
    "/b1": ("tt2", "irrelevant_other_series", "irrelevant", "other_series"),
    "/b2": ("tt2", "irrelevant_other_series", "keep", None),  # missed
    "/b3": ("tt2", "irrelevant_offtopic", None, None),  # dropped by clean: not scored
}


def _root(tmp_path, relevance: bool = True) -> DataRoot:
    root = DataRoot(str(tmp_path / "data")).ensure()
    n = len(ROWS)
    write_table(root, "sandbox_images", pa.table({
        "url": list(ROWS), "series_id": [r[0] for r in ROWS.values()],
        "plant": [r[1] for r in ROWS.values()], "original_url": [None] * n,
        "expected_status": ["ok"] * n, "width": [640] * n, "height": [480] * n,
        "sha256": [None] * n, "signature": [None] * n, "page_plant": [None] * n,
        "true_series_id": [None] * n,
    }, schema=MANIFEST_SCHEMA), schema=MANIFEST_SCHEMA)
    write_table(root, "images", pa.Table.from_pylist([
        {"image_id": f"i{u[1:]}", "series_id": s, "url": u, "status": "ok"}
        for u, (s, *_rest) in ROWS.items()
    ], schema=IMAGES))
    if relevance:
        scored = [(u, r) for u, r in ROWS.items() if r[2] is not None]
        write_table(root, "relevance", pa.Table.from_pylist([
            {"image_id": f"i{u[1:]}", "series_id": r[0], "score": 0.5, "outlier_score": 1.0,
             "decision": r[2], "reason": r[3], "method": "cleanlab+knn:m",
             "auto_decision": r[2], "auto_reason": r[3]}
            for u, r in scored
        ], schema=RELEVANCE))
    return root


def test_planted_noise_and_its_detection_per_kind(tmp_path):
    f = noise_figures(_root(tmp_path))
    assert f is not None
    assert f.listed == 8 and f.planted == {"irrelevant_other_series": 3, "irrelevant_offtopic": 2}
    assert f.rate == pytest.approx(5 / 8)
    assert f.min_rate == pytest.approx(0.5) and f.max_rate == pytest.approx(0.75)
    kinds = {k.kind: k for k in f.kinds}
    other, off = kinds["irrelevant_other_series"], kinds["irrelevant_offtopic"]
    assert (other.planted, other.found, other.recall) == (3, 2, pytest.approx(2 / 3, abs=1e-4))
    assert (other.flagged, other.precision, other.agreement) == (1, 1.0, 1.0)
    assert (off.planted, off.found, off.recall) == (1, 1, 1.0)  # b3 was never scored
    # flagged offtopic: a1 (relevant), a2 (offtopic), a3 (other series)
    assert off.flagged == 3 and off.precision == pytest.approx(2 / 3, abs=1e-4)
    assert off.agreement == pytest.approx(1 / 3, abs=1e-4)
    assert f.recall == pytest.approx(3 / 4) and f.precision == pytest.approx(3 / 4)
    assert f.false_flags == 1
    lines = format_noise(f)
    assert lines[0].startswith("  label noise   5 irrelevant of 8 listed images (62.5%")
    assert "found 2 of 3 (recall 0.667)" in lines[1]
    assert lines[-1].endswith("recall 0.750, precision 0.750, 1 relevant images flagged")


def test_without_a_relevance_table_only_the_planted_noise(tmp_path):
    f = noise_figures(_root(tmp_path, relevance=False))
    assert f is not None and f.kinds == () and f.precision is None
    assert len(format_noise(f)) == 1


def test_a_root_without_sandbox_truth_has_no_figures(tmp_path):
    assert noise_figures(DataRoot(str(tmp_path / "empty")).ensure()) is None


def test_ground_truth_counts_against_the_whole_manifest(tmp_path):
    """The demo's ground-truth line: an image planted but never collected is missing, not
    left out of the count."""
    root = _root(tmp_path, relevance=False)
    assert ground_truth(root) == {"agree": 8, "collected": 8, "planted": 8}
    images = pa.Table.from_pylist([
        {"image_id": f"i{u[1:]}", "series_id": s, "url": u,
         "status": "ok" if u != "/a0" else "http_error"}
        for u, (s, *_rest) in list(ROWS.items())[:5]  # the last 3 never searched
    ], schema=IMAGES)
    write_table(root, "images", images)
    assert ground_truth(root) == {"agree": 4, "collected": 5, "planted": 8}
