"""`bench/gpu.py` on a machine without CUDA: it still runs both CPU sides, reports the CUDA
side as unavailable, finds every planted near copy, and ends with its JSON line (no timing
is asserted)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCH = Path(__file__).parents[2] / "bench" / "gpu.py"


def _bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_planted_copies_are_near_and_counted():
    bench = _bench_module()
    x = bench.planted_vectors(4000, seed=3)
    assert x.shape == (4000, bench.DIM)
    found = bench.search_rate(x, False, 0.95)
    assert len(found["pairs"]) == 4000 // 200  # every planted copy, nothing else


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA report")
def test_a_run_without_cuda_reports_the_cpu_sides(capsys, monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # leave the test's threads
    bench = _bench_module()
    result = bench.main(["--n-embed-cpu", "4", "--batch", "4", "--repeat", "1",
                         "--n-vectors", "2000"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == result and summary["bench"] == "gpu" and summary["cuda"] is None
    assert summary["embed"]["cpu"]["images"] == 4 and summary["embed"]["cuda"] is None
    assert summary["embed"]["cpu"]["dtype"] == "float32" and summary["embed"]["ratio"] is None
    assert summary["search"]["pairs"] == 2000 // 200 and summary["search"]["cuda"] is None
