"""`bench/gpu.py` on a machine without CUDA: it still runs both CPU sides, reports the CUDA
side as unavailable, finds every planted near copy, and ends with its JSON line (no timing
is asserted)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.bench import load_bench


def test_planted_copies_are_near_and_counted():
    bench = load_bench("gpu")
    x = bench.planted_vectors(4000, seed=3)
    assert x.shape == (4000, bench.DIM)
    found = bench.search_rate(x, False, 0.95)
    assert len(found["pairs"]) == 4000 // 200  # every planted copy, nothing else


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA report")
def test_a_run_without_cuda_reports_the_cpu_sides(capsys, monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # leave the test's threads
    bench = load_bench("gpu")
    result = bench.main(["--n-embed-cpu", "4", "--batch", "4", "--repeat", "1",
                         "--n-vectors", "2000"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == result and summary["bench"] == "gpu" and summary["cuda"] is None
    assert summary["embed"]["cpu"]["images"] == 4 and summary["embed"]["cuda"] is None
    assert summary["embed"]["cpu"]["dtype"] == "float32" and summary["embed"]["ratio"] is None
    assert summary["search"]["pairs"] == 2000 // 200 and summary["search"]["cuda"] is None
