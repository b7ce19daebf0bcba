"""Runtime faults of the machine end in one line: disk full, a read-only folder, a missing or
corrupt input. Exit code 2, one ``tv100: error:`` line naming the path and the fix, no
traceback (not even in Prefect's console log of the failed runs), unless ``tv100 --debug``.

The faults are real, on the real console script's code in a subprocess:

- disk full: the data root on a 1 MiB tmpfs, filled up to a few KiB (``mount`` needs root
  and CAP_SYS_ADMIN). Where that is not allowed, a file-size limit (``RLIMIT_FSIZE``, with
  SIGXFSZ ignored: a write past it fails with EFBIG) stands in for it;
- a read-only ``tables/``: ``chmod 0555`` (EACCES), or, for root (whom permissions do not
  stop), a read-only bind mount of the folder onto itself (EROFS); skipped where neither
  works;
- a missing input table, and a corrupt one (half a Parquet file), read inside a flow's task.

Before this, the same disk-full run of ``tv100 discover`` printed 184 lines with 3 tracebacks
and exited 1 (a whole build: 680 lines, 15 tracebacks).
"""

from __future__ import annotations

import errno
import importlib
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.reliability import record
from tv100.flows.cli.app import runtime_error_line

#: A hang guard per run, not a timing assertion.
RUN_TIMEOUT_S = 300
MIB = 1024 * 1024


# -- running the console script -----------------------------------------------------------------


def tv100(args: list[str], home: Path, fsize: int | None = None) -> subprocess.CompletedProcess:
    """Run the console script's code on the session's Prefect API (`fsize`: a file-size
    limit, in bytes, with SIGXFSZ ignored)."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TV100_"))}
    env.update(PREFECT_HOME=str(home), PREFECT_API_URL=PREFECT_API_URL.value(),
               PREFECT_LOGGING_LEVEL="INFO", PREFECT_SERVER_ANALYTICS_ENABLED="false")

    def limit() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-c", "from tv100.flows.cli import main; main()", *args],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env, preexec_fn=limit,
    )


def one_error_line(out: subprocess.CompletedProcess, path: str, *needles: str) -> str:
    """Exit 2, no traceback, and one stderr line naming `path`: ``tv100: error: ...``."""
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    naming = [line for line in out.stderr.splitlines() if path in line]
    assert len(naming) == 1, out.stderr[-3000:]
    assert naming[0].startswith("tv100: error: "), naming
    for needle in needles:
        assert needle in naming[0], (needle, naming[0])
    return naming[0]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sandbox's IMDb dataset files in a local folder (`discover --location`)."""
    from tv100.sandbox.imdb_datasets import write_datasets
    from tv100.sandbox.world import build_world

    folder = tmp_path_factory.mktemp("datasets")
    write_datasets(build_world(seed=0), str(folder))
    return folder


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 1 MiB tmpfs (None where mounting is not allowed), unmounted afterwards."""
    where = tmp_path / "disk"
    where.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)):
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(disk: Path, leave: int) -> Path:
    """Fill `disk` up to `leave` bytes free; the filler file."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


# -- the faults -----------------------------------------------------------------------------------


def test_disk_full_is_one_line_and_the_rerun_resumes(prefect_harness, datasets: Path,
                                                     small_disk: Path | None, tmp_path: Path):
    home = tmp_path / "prefect"
    if small_disk is not None:
        data = small_disk / "data"
        filler = _fill(small_disk, leave=12 * 1024)
        args = ["discover", "--location", str(datasets), "--data", str(data)]
        out = tv100(args, home)
        line = one_error_line(out, str(data), "no space left on device writing",
                              "free space and rerun: finished work is kept")
        how = "disk full (1 MiB tmpfs) during discover"
    else:  # no mount here: a file-size limit stands in for the full disk
        data = tmp_path / "data"
        args = ["discover", "--location", str(datasets), "--data", str(data)]
        out = tv100(args, home, fsize=4096)
        line = one_error_line(out, str(tmp_path), "file size limit reached writing")
        how = "file-size limit (RLIMIT_FSIZE, EFBIG) during discover"
        filler = None
    record("cli", how, f"exit {out.returncode}")
    assert line.count("tv100:") == 1
    debug = tv100(["--debug", *args], home, fsize=None if filler else 4096)
    assert debug.returncode == 2 and "Traceback" in debug.stderr, debug.stderr[-3000:]
    assert debug.stderr.strip().splitlines()[-1].startswith("tv100: error: "), debug.stderr
    if filler is not None:
        filler.unlink()  # free space and rerun
        again = tv100(args, home)
        assert again.returncode == 0, again.stderr[-3000:]
        assert (data / "tables" / "series.parquet").is_file()


def _read_only(folder: Path) -> str | None:
    """Make `folder` read-only for this process; the errno name it will meet, or None."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return "EACCES"
    if _mount("--bind", "-o", "ro", str(folder), str(folder)):
        return "EROFS"
    return None


def test_read_only_tables_folder_is_one_line(prefect_harness, datasets: Path, tmp_path: Path):
    data = tmp_path / "data"
    tables = data / "tables"
    tables.mkdir(parents=True)
    kind = _read_only(tables)
    if kind is None:
        pytest.skip("running as root, and a read-only bind mount is not permitted here")
    try:
        out = tv100(["discover", "--location", str(datasets), "--data", str(data)],
                    tmp_path / "prefect")
    finally:
        if kind == "EROFS":
            subprocess.run(["umount", "-l", str(tables)], capture_output=True)
        else:
            tables.chmod(0o755)
    what = {"EROFS": "read-only file system:", "EACCES": "permission denied:"}[kind]
    line = one_error_line(out, str(tables), what, "and rerun: finished work is kept")
    # The file it failed to write, not the temp file it was writing first.
    assert f"{tables}/" in line and "/.tmp-" not in line, line
    record("cli", f"read-only tables/ folder ({kind}) during discover", f"exit {out.returncode}")


def test_missing_input_table_is_one_line(prefect_harness, tmp_path: Path):
    data = tmp_path / "data"
    out = tv100(["clean", "--data", str(data)], tmp_path / "prefect")
    # Checked before anything runs (tv100.tasks.prerequisites): nothing is created.
    one_error_line(out, str(data), "nothing built here yet",
                   "clean reads its `images` table", "run `tv100 build ...`")
    assert not data.exists()
    record("cli", "missing input table (clean before collect)", f"exit {out.returncode}")


def test_corrupt_input_table_is_one_line(prefect_harness, tmp_path: Path):
    from tv100.storage.root import DataRoot
    from tv100.storage.schemas import IMAGES
    from tv100.storage.tables import write_table

    data = tmp_path / "data"
    write_table(DataRoot(str(data)).ensure(), "images", IMAGES.empty_table(), schema=IMAGES)
    table = data / "tables" / "images.parquet"
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    out = tv100(["clean", "--data", str(data)], tmp_path / "prefect")
    one_error_line(out, str(table), "table 'images' is corrupt")
    record("cli", "corrupt input table (half a Parquet file) in a flow's task",
           f"exit {out.returncode}")


# -- the error lines (no subprocess) --------------------------------------------------------------


def _raised_in_a_chain(err: BaseException) -> BaseException:
    """`err` under two layers, as Prefect or a stage may wrap it."""
    try:
        try:
            raise err
        except OSError as inner:
            raise RuntimeError("task failed") from inner
    except RuntimeError as outer:
        return ExceptionGroup("runs", [ValueError("other"), outer])


@pytest.mark.parametrize(
    ("code", "start"),
    [
        (errno.ENOSPC, "no space left on device writing /d/tables/x.parquet; free space"),
        (errno.EDQUOT, "disk quota exceeded writing /d/tables/x.parquet; free space"),
        (errno.EFBIG, "file size limit reached writing /d/tables/x.parquet; raise the limit"),
        (errno.EACCES, "permission denied: /d/tables/x.parquet; give this user access"),
        (errno.EPERM, "permission denied: /d/tables/x.parquet; give this user access"),
        (errno.EROFS, "read-only file system: /d/tables/x.parquet; use a writable --data"),
        (errno.ENOENT, "missing input: /d/tables/x.parquet; check the path"),
    ],
)
def test_runtime_error_line_finds_the_fault_and_the_file(code: int, start: str):
    # Raised on the temp file an atomic write was filling: the line names the target.
    temp = "/d/tables/.tmp-0123456789abcdef0123456789abcdef-x.parquet"
    line = runtime_error_line(_raised_in_a_chain(OSError(code, os.strerror(code), temp)))
    assert line is not None and line.startswith(start), line


def test_runtime_error_line_names_the_root_when_the_error_names_no_file(monkeypatch):
    app_module = importlib.import_module("tv100.flows.cli.app")  # `cli.app` is the typer app
    full = OSError(errno.ENOSPC, "No space left on device")  # a write to an open file
    monkeypatch.setitem(app_module._state, "root", "/data/root")
    assert runtime_error_line(full) == (
        "no space left on device writing under the data root /data/root; free space and "
        "rerun: finished work is kept")
    monkeypatch.setitem(app_module._state, "root", None)
    assert runtime_error_line(full) == (
        "no space left on device writing; free space and rerun: finished work is kept")


def test_other_errors_are_not_runtime_faults():
    assert runtime_error_line(ValueError("a bug")) is None
    assert runtime_error_line(OSError(errno.ECONNREFUSED, "Connection refused")) is None
    assert runtime_error_line(shutil.Error("x")) is None
