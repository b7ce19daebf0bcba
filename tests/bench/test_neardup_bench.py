"""`bench/neardup.py`: its refresh part on a few codes (a full run takes minutes)."""

from __future__ import annotations

import json

from tests.bench import load_bench


def test_the_refresh_part_finds_the_same_pairs_and_reports_its_ratio(capsys):
    bench = load_bench("neardup")
    codes, _, _ = bench.make_codes(3_000, 300, seed=0)
    result = bench.refresh(codes, 0.05, threshold=10, seed=0)
    assert result["same_pairs"] is True
    assert result["added"] == 165
    assert result["ratio"] >= 0 and result["full_s"] >= 0
    assert result["store_s"] >= 0 and result["store_wrote"] is True  # new pairs: new bytes
    json.dumps(result)
    assert "same pairs: True" in capsys.readouterr().out
