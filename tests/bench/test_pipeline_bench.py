"""`bench/pipeline.py`: its plan checks, its growth exponent, and one tiny run of its main.

The run stops after discover (two tiny sandbox sizes, one real Prefect server, the real
``tv100 discover`` command per size) and checks the JSON line's shape, never its times.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.bench import load_bench


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("pipeline")


def test_growth_exponent(bench: ModuleType) -> None:
    assert bench.growth_exponent(10.0, 100.0, 1000, 10000) == pytest.approx(1.0)
    assert bench.growth_exponent(10.0, 10.0, 1000, 10000) == pytest.approx(0.0)
    assert bench.growth_exponent(1.0, 4.0, 100, 200) == pytest.approx(2.0)
    assert bench.growth_exponent(0.0, 4.0, 100, 200) is None
    assert bench.growth_exponent(1.0, 4.0, 100, 100) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images": (1000,)}, "expected two sizes or more"),
        ({"images": (4000, 1000)}, "expected increasing sizes"),
        ({"images": (1000, 4000), "until": "report"}, "BenchPlan.until='report'"),
        ({"images": (1000, 4000), "pretrain_steps": 0}, "BenchPlan.pretrain_steps=0"),
    ],
)
def test_plan_rejects_bad_input(bench: ModuleType, kwargs: dict[str, object],
                                message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        bench.BenchPlan(**kwargs)


def test_plan_stages_and_scale(bench: ModuleType) -> None:
    plan = bench.BenchPlan(images=(2673, 26730), until="clean")
    assert plan.stages == ("discover", "collect", "clean")
    assert plan.scale(2673) == pytest.approx(1.0)
    assert plan.scale(26730) == pytest.approx(10.0)


def test_quick_and_large_sizes(bench: ModuleType) -> None:
    assert bench.parse(["--quick"])[0].images == bench.SIZES_QUICK
    assert bench.parse(["--large"])[0].images == (*bench.SIZES_DEFAULT, bench.SIZE_LARGE)


def test_main_prints_one_json_line_last(bench: ModuleType, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    summary = bench.main(["--images", "250", "500", "--until", "discover",
                          "--work", str(tmp_path / "work")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == summary
    assert summary["bench"] == "pipeline"
    n1, n2 = summary["sizes"]
    assert 0 < n1 < n2
    rows = {"sandbox", "discover", "total"}
    assert set(summary["exponents"]) == rows
    assert all(e is None or math.isfinite(e) for e in summary["exponents"].values())
    for key in ("seconds", "peak_rss_mb", "cpu_seconds", "images_per_s"):
        assert set(summary[key]) == {str(n1), str(n2)}, key
        for size in summary[key].values():
            assert set(size) == rows, key
    assert all(v > 0 for size in summary["peak_rss_mb"].values() for v in size.values())
    assert (tmp_path / "work" / "size-250" / "data").is_dir()  # --work keeps the folder


def test_tree_rss_counts_workers_the_command_never_reaps(bench: ModuleType, tmp_path):
    """A stage's pool workers hold memory the command's rusage never sees: the sampled tree
    does (a child that starts a grandchild holding 64 MiB)."""
    import subprocess
    import time

    ready = tmp_path / "ready"
    grandchild = ("import pathlib, sys, time; b = bytearray(64 * 2**20); b[::4096] = b'x' * "
                  f"len(b[::4096]); pathlib.Path({str(ready)!r}).touch(); time.sleep(120)")
    child = subprocess.Popen([sys.executable, "-c",
                              "import subprocess, sys, time; "
                              f"subprocess.Popen([sys.executable, '-c', {grandchild!r}]); "
                              "time.sleep(120)"])
    try:
        deadline = time.monotonic() + 120  # a bound for a stuck child, not a measurement
        while not ready.exists():
            assert time.monotonic() < deadline, "the grandchild never started"
            time.sleep(0.05)
        assert bench.tree_rss_mb(child.pid) >= 64
    finally:
        subprocess.run(["pkill", "-KILL", "-P", str(child.pid)], check=False)
        child.kill()
        child.wait()
