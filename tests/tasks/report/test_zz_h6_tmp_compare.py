"""TEMPORARY (helper H6): old vs new cleaned/analysis/report on the shared sandbox builds."""

import shutil
import subprocess


def _compare(data: str, tag: str) -> None:
    out = subprocess.run(["/tmp/h6/compare_all.sh", data], capture_output=True, text=True)
    print(out.stdout, out.stderr[-3000:])
    with open(f"/tmp/h6/sandbox_compare_{tag}.txt", "w") as f:
        f.write(out.stdout + "\n---\n" + out.stderr)
    assert out.returncode == 0


def test_h6_old_vs_new_after_clean(collected, tmp_path):
    from tv100.flows.clean import clean_flow

    data = str(tmp_path / "data")
    shutil.copytree(collected[0], data)
    _compare(data, "collected")
    clean_flow(data=data)
    _compare(data, "cleaned")


def test_h6_old_vs_new_on_trained_build(trained):
    _compare(trained[0], "trained")
