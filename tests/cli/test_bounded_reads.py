"""`tv100 dedupe`, `inspect` and `clean --exclusions` on files that are not regular files.

A FIFO named ``.jpg`` used to block `dedupe` and `inspect` for ever, and ``/dev/zero``
(behind a symlink) was read until memory ran out. Each case here runs the real command
line in its own process session, with a memory cap and a time limit, so a regression
fails (killed, with its worker processes) instead of hanging or eating the machine.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.reliability import record
from tests.tasks.clean.test_folder import SPECIAL_FILES, special_files_folder
from tv100.flows.cli.commands import PAGE_MAX_BYTES
from tv100.tasks.localfiles import size_text

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero and FIFOs"),
]

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
#: Address space for the command: ample for it, far less than reading /dev/zero would take.
MEMORY_CAP = 2 << 30
TIME_LIMIT_S = 120


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def tv100(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``tv100 ARGS`` (this checkout's code) capped; a hang kills its whole session."""
    code = "from tv100.flows.cli import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_cap_memory,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        out, err = proc.communicate(timeout=TIME_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"tv100 {' '.join(args)} still running after {TIME_LIMIT_S} s")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_one_line_error(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tv100: error: "), res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("workers", ["1", "2"], ids=["in-process", "worker-pool"])
def test_dedupe_finishes_and_reports_special_files(tmp_path, workers):
    top = special_files_folder(tmp_path / "photos")
    out = tmp_path / "dedupe.parquet"
    res = tv100("dedupe", str(top), "--workers", workers, "--out", str(out))
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines()]
    unreadable = {os.path.basename(r["unreadable"]): r["reason"] for r in records
                  if "unreadable" in r}
    assert set(unreadable) == set(SPECIAL_FILES), res.stdout
    for name, needle in SPECIAL_FILES.items():
        assert needle in unreadable[name], (name, unreadable[name])
    (group,) = [r for r in records if "group" in r]
    assert os.path.basename(group["kept"]) == "orig.jpg"
    assert out.is_file()
    for what in ("a FIFO", "a symlink to /dev/zero", "an over-cap file"):
        record("cli", f"dedupe: {what} named as an image in the folder", "reported, exit 0")


def _oversized(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(PAGE_MAX_BYTES + 1)  # sparse: refused by its size, never read


INSPECT_CASES = {
    "fifo": (os.mkfifo, ("FIFO", "expected a regular file")),
    "dev-zero-symlink": (lambda p: p.symlink_to("/dev/zero"), ("character device",)),
    "folder": (lambda p: p.mkdir(), ("a folder", "expected a regular file")),
    "over-cap": (
        _oversized, (f"{PAGE_MAX_BYTES + 1} bytes", f"expected at most {size_text(PAGE_MAX_BYTES)}")
    ),
}


@pytest.mark.parametrize("case", list(INSPECT_CASES))
def test_inspect_refuses_what_is_not_a_saved_page(tmp_path, case):
    make, needles = INSPECT_CASES[case]
    page = tmp_path / "page.html"
    make(page)
    res = tv100("inspect", "imdb-title", str(page))
    assert_one_line_error(res, repr(str(page)), *needles)
    record("cli", f"inspect: {case} as the saved page", f"exit {res.returncode}")


def test_inspect_refuses_dev_zero_itself():
    res = tv100("inspect", "bing", "/dev/zero")
    assert_one_line_error(res, "'/dev/zero'", "character device")
    record("cli", "inspect: /dev/zero as the saved page", f"exit {res.returncode}")


def test_inspect_still_reads_a_page_through_a_symlink(tmp_path):
    link = tmp_path / "results.html"
    link.symlink_to(FIXTURES / "search" / "bing_results.html")
    res = tv100("inspect", "bing", str(link))
    assert res.returncode == 0, res.stderr
    hits = [json.loads(line) for line in res.stdout.splitlines()]
    assert hits and all(h["image_url"].startswith("http") for h in hits)


def test_clean_refuses_a_fifo_as_exclusion_list(tmp_path):
    fifo = tmp_path / "exclude.csv"
    os.mkfifo(fifo)
    data = tmp_path / "data"
    res = tv100("clean", "--exclusions", str(fifo), "--data", str(data))
    assert_one_line_error(res, "--exclusions", "FIFO", "expected a regular file")
    assert not data.exists(), "refused before the data root is touched"
    record("cli", "clean --exclusions is a FIFO", f"exit {res.returncode}")
