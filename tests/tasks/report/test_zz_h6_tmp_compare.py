"""TEMPORARY (helper H6): old vs new cleaned/analysis/report on the shared sandbox build."""

import subprocess


def test_h6_old_vs_new_on_sandbox_build(trained):
    out = subprocess.run(["/tmp/h6/compare_all.sh", trained[0]], capture_output=True, text=True)
    print(out.stdout, out.stderr[-3000:])
    with open("/tmp/h6/sandbox_compare.txt", "w") as f:
        f.write(out.stdout + "\n---\n" + out.stderr)
    assert out.returncode == 0
