"""`bench/embed.py`: each section once on a tiny CLIP and a few images (shape, never speed)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.bench import load_bench
from tests.support.rank_fixtures import tiny_arch  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("embed")


def test_raw_and_tv100_sides(bench: ModuleType, tiny_arch: str, tmp_path: Path) -> None:  # noqa: F811
    row = bench.bench_model(f"{tiny_arch}@random", 8, 4, 1, str(tmp_path), None, None)
    assert row["n"] == 8 and row["raw_per_s"] > 0 and row["tv100_per_s"] > 0
    assert row["ratio"] > 0 and row["tv100_workers"] == 0


def test_precision_modes_against_fp32(bench: ModuleType, tiny_arch: str, tmp_path: Path) -> None:  # noqa: F811
    out = bench.bench_precision(f"{tiny_arch}@random", 6, 4, 1, str(tmp_path), classes=5)
    assert out["n"] == 6 and out["classes"] == 5
    assert out["fp32"]["top1_agreement"] == 1.0 and out["fp32"]["speedup"] == 1.0
    for mode in bench.PRECISION_MODES:
        row = out[mode]
        assert row["per_s"] > 0 and 0.0 <= row["top1_agreement"] <= 1.0
        assert row["exact_enough"] == (row["top1_agreement"] >= bench.MIN_AGREEMENT)
        assert 0.9 < row["min_cosine"] <= 1.0 + 1e-6  # bf16 is close, whatever its speed


def test_main_prints_one_json_line_last(bench: ModuleType,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = bench.main(["--models", "sandbox", "--n-sandbox", "8", "--batch", "4", "--repeat", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == out
    assert out["bench"] == "embed" and out["sandbox"]["n"] == 8
    with pytest.raises(SystemExit, match="unknown model"):
        bench.main(["--models", "nope"])
