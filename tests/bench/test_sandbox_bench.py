"""`bench/sandbox.py`: one tiny run (8 series, two small scales) and its JSON line's shape."""

from __future__ import annotations

import pytest

from tests.bench import load_bench


def test_a_tiny_run_reports_both_sizes_and_exponents():
    bench = load_bench("sandbox")
    summary = bench.main(["--images", "60", "240", "--n-series", "8"])
    small, large = summary["sizes"]
    assert 0 < small["images"] < large["images"]
    assert set(summary["exponents"]) == {"build_s", "manifest_s", "peak_rss_mb"}
    assert all(s["peak_rss_mb"] > 0 and s["manifest_s"] > 0 for s in summary["sizes"])


def test_sizes_must_increase():
    with pytest.raises(SystemExit):
        load_bench("sandbox").main(["--images", "400", "100"])
