"""`bench/refresh.py`: its ratios and the shape of its JSON line (a run takes minutes: the
incremental work itself is tested in tests/flows/test_incremental.py)."""

from __future__ import annotations

import json

import pytest

from tests.bench import load_bench


def test_the_summary_has_every_stage_and_ratio(capsys):
    bench = load_bench("refresh")
    cold = {"discover": 10.0, "collect": 40.0, "clean": 30.0, "rank": 50.0, "train": 70.0}
    warm = {"discover": 2.0, "collect": 4.0, "clean": 3.0, "rank": 6.0, "train": 5.0}
    summary = bench.report(cold, warm, {"clean": 2.0, "rank": 4.0}, added=120, n=2300)
    assert summary["warm_ratio"]["clean"] == pytest.approx(0.1)
    assert summary["warm_ratio"]["total"] == pytest.approx(20.0 / 200.0)
    assert summary["refresh_ratio"] == {"clean": pytest.approx(2 / 30, abs=1e-3),
                                        "rank": pytest.approx(0.08),
                                        "total": pytest.approx(6 / 80, abs=1e-3)}
    assert summary["added"] == 120 and summary["images"] == 2300
    json.dumps(summary)  # the script's last line
    table = capsys.readouterr().out
    assert "rank" in table and "!" in table  # warm rank 6/50 = 0.12 > 0.10 is marked


def test_it_refuses_a_tiny_size():
    bench = load_bench("refresh")
    with pytest.raises(SystemExit):
        bench.main(["--images", "10"])
