"""`bench/download.py`: one tiny run of its main, checking the JSON line's shape (never its
figures). img2dataset runs only where its venv is (`make bench-env`); else its keys are None.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from types import ModuleType

import pytest

from tests.bench import load_bench


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("download")


def test_main_prints_one_json_line_last(bench: ModuleType, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    img2dataset = Path(bench.ROOT) / ".venv-bench" / "bin" / "img2dataset"
    summary = bench.main(["--n", "24", "--repeat", "2", "--profile", "16",
                          "--cache", str(tmp_path / "photos"), "--img2dataset", str(img2dataset)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == summary
    assert summary["bench"] == "download"
    assert summary["n"] == 24
    assert summary["repeat"] == 2 and len(summary["rounds"]) == 2
    assert all(r["tv100_per_s"] > 0 and r["floor_per_s"] > 0 for r in summary["rounds"])
    # Ratios are medians of the within-round ratios, not ratios of medians.
    assert summary["ratio_vs_floor"] == round(statistics.median(
        r["tv100_per_s"] / r["floor_per_s"] for r in summary["rounds"]), 3)
    assert summary["tv100_per_s"] > 0 and summary["floor_per_s"] > 0
    assert summary["ratio_vs_floor"] > 0
    assert summary["own_floor_per_s"] > 0 and summary["ratio_vs_own_floor"] > 0
    if img2dataset.exists():
        assert summary["img2dataset_per_s"] > 0 and summary["ratio_vs_img2dataset"] > 0
    else:
        assert summary["img2dataset_per_s"] is None and summary["ratio_vs_img2dataset"] is None
    parts = summary["cpu_ms_per_image"]
    assert tuple(parts) == bench.PARTS == ("http", "decode", "resize", "encode", "hash",
                                           "write")
    assert all(v >= 0 for v in parts.values())
    assert parts["http"] > 0 and parts["decode"] > 0 and parts["write"] > 0


def test_profile_can_be_skipped(bench: ModuleType, tmp_path: Path) -> None:
    summary = bench.main(["--n", "8", "--repeat", "1", "--profile", "0",
                          "--cache", str(tmp_path / "photos"),
                          "--img2dataset", str(tmp_path / "missing")])
    assert summary["cpu_ms_per_image"] is None
    assert summary["img2dataset_per_s"] is None
