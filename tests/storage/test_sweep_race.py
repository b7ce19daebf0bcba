"""The temp sweep under the data root's lock (issue 17, defect 6).

The sweep (`tv100.storage.root.remove_temp_files`) runs only while holding the lock, removes
only temp entries older than the holder's start, tolerates entries renamed away under it
(a build's sweep raised `FileNotFoundError` in 7 of 182 runs next to another build), and
removes temp folders, on any filesystem. Every wait is on an event (a line on a pipe, a log
record), never on time.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import uuid

import pytest

from tests.storage.test_lock import START_S, HolderProcess, WaitingLog
from tests.support.reliability import record
from tv100.storage.atomic import is_temp, temp_name
from tv100.storage.lock import hold_root
from tv100.storage.root import DataRoot, remove_temp_files

#: Stale temp files a killed run left, for the writer to rename while the sweeps run.
N_OLD = 300
#: Sweeps run while the writer renames (at least).
N_SWEEPS = 60

WRITER = textwrap.dedent(
    """
    import json, os, select, sys

    from tv100.storage.atomic import atomic_path, is_temp

    tables = os.path.join(sys.argv[1], "tables")
    old = sorted(n for n in os.listdir(tables) if is_temp(n))
    renamed = lost = written = failed = 0
    print("ready", flush=True)
    i = 0
    while i < len(old) or not select.select([sys.stdin], [], [], 0)[0]:
        if i < len(old):  # a stale temp, renamed into place as its build would
            try:
                os.replace(os.path.join(tables, old[i]), os.path.join(tables, f"old-{i}"))
                renamed += 1
            except FileNotFoundError:  # the sweep took it first: it was stale
                lost += 1
        try:  # a temp of our own, made after the sweeper's hold began: never swept
            with atomic_path(os.path.join(tables, f"new-{i % 20}.parquet")) as tmp:
                with open(tmp, "wb") as f:
                    f.write(b"x" * 4096)
            with atomic_path(os.path.join(sys.argv[1], "models", f"m-{i % 5}"),
                             replace_dir=True) as tmp:
                os.mkdir(tmp)
                with open(os.path.join(tmp, "weights"), "wb") as f:
                    f.write(b"w" * 4096)
            written += 1
        except FileNotFoundError as err:
            failed += 1
            print(f"lost a new temp: {err}", file=sys.stderr, flush=True)
        i += 1
    print(json.dumps({"renamed": renamed, "lost": lost, "written": written,
                      "failed": failed}), flush=True)
    """
)


def _stale(root: DataRoot) -> list[str]:
    """Temp files of a killed run under ``tables/``, made before any hold of the test."""
    tables = root.path("tables")
    os.makedirs(tables, exist_ok=True)
    names = [temp_name(f"t{i}.parquet") for i in range(N_OLD)]
    for name in names:
        with open(os.path.join(tables, name), "wb") as f:
            f.write(b"stale")
    return names


def _temps(folder: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), folder)
                  for d, dirs, files in os.walk(folder) for n in [*dirs, *files] if is_temp(n))


def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], START_S)
    assert ready, "the writer said nothing"
    return proc.stdout.readline()


def test_a_sweep_racing_a_renaming_writer_never_raises_nor_takes_a_new_temp(tmp_path):
    root = DataRoot(str(tmp_path / "data")).ensure()
    _stale(root)
    removed: list[int] = []
    with hold_root(root, what="build"):
        # The writer starts inside the hold: its own temps are newer than it.
        writer = subprocess.Popen([sys.executable, "-c", WRITER, root.base],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert _line(writer) == "ready\n"
            for _ in range(N_SWEEPS):  # racing the writer's renames: none may raise
                removed.append(remove_temp_files(root))
            assert writer.stdin is not None
            writer.stdin.close()
            report = json.loads(_line(writer))
            assert writer.wait(START_S) == 0
        finally:
            writer.kill()
            writer.wait(START_S)
    record("crash", f"the temp sweep racing a process that renames temps ({N_SWEEPS} sweeps)",
           "no sweep raised" if report["failed"] == 0 else "a newer temp swept",
           cases=N_SWEEPS, lost=report["failed"])
    assert report["failed"] == 0  # no temp of the writer was swept
    assert report["written"] >= 1
    # Every stale temp was either renamed by the writer or removed by a sweep, never both.
    assert report["renamed"] + report["lost"] == N_OLD
    assert sum(removed) == report["lost"]
    assert len([n for n in os.listdir(root.path("tables")) if n.startswith("old-")]) == (
        report["renamed"])
    assert _temps(root.base) == []


def test_an_entry_renamed_just_before_the_sweep_removes_it_is_skipped(tmp_path, monkeypatch):
    """The race, made certain: the writer renames each temp into place right between the
    sweep's look at it and its removal (`os.remove`, as the sweep's removal calls it)."""
    root = DataRoot(str(tmp_path / "data")).ensure()
    names = _stale(root)[:5]
    real_remove = os.remove

    def renamed_first(path: str, *args: object, **kwargs: object) -> None:
        name = os.path.basename(path)
        if is_temp(name):  # the writer wins: its rename comes first
            os.rename(path, os.path.join(os.path.dirname(path), _placed(name)))
        real_remove(path, *args, **kwargs)

    monkeypatch.setattr(os, "remove", renamed_first)
    assert remove_temp_files(root) == 0  # nothing raised, and nothing of ours removed
    monkeypatch.undo()
    placed = [n for n in os.listdir(root.path("tables")) if n.startswith("placed-")]
    assert len(placed) == N_OLD and _temps(root.base) == []
    assert {_placed(n) for n in names} <= set(placed)


def _placed(temp: str) -> str:
    return f"placed-{temp.removeprefix('.tmp-')}"


def test_only_temps_older_than_the_holders_start_are_swept(tmp_path):
    root = DataRoot(str(tmp_path / "data")).ensure()
    models = root.path("models")
    os.makedirs(os.path.join(models, "model"))
    stale_file = root.path("tables", temp_name("series.parquet"))
    stale_dir = os.path.join(models, temp_name("model"))
    os.makedirs(os.path.dirname(stale_file))
    open(stale_file, "wb").close()
    os.makedirs(stale_dir)
    open(os.path.join(stale_dir, "weights"), "wb").close()
    with hold_root(root, what="build"):
        # Made by a run that began after this hold (one that ignores the lock: a user's
        # script, an older tv100): a temp file, a temp folder and an old folder that a
        # replacement has just moved aside (its mtime is old, its rename is new).
        new_file = root.path("tables", temp_name("images.parquet"))
        open(new_file, "wb").close()
        new_dir = os.path.join(models, temp_name("other"))
        os.makedirs(new_dir)
        aside = os.path.join(models, f".tmp-{uuid.uuid4().hex}~model")
        os.rename(os.path.join(models, "model"), aside)
        assert remove_temp_files(root) == 2
        assert not os.path.exists(stale_file) and not os.path.exists(stale_dir)
        assert os.path.exists(new_file) and os.path.isdir(new_dir) and os.path.isdir(aside)
        assert not os.path.exists(os.path.join(models, "model"))  # left to its writer


def test_the_sweep_runs_only_while_holding_the_lock(tmp_path):
    root = DataRoot(str(tmp_path / "data")).ensure()
    _stale(root)
    waiting = WaitingLog()
    logger = logging.getLogger("tv100.lock")
    logger.addHandler(waiting)
    try:
        with HolderProcess(root.base) as holder:  # another build runs
            swept: list[int] = []
            sweeper = threading.Thread(target=lambda: swept.append(remove_temp_files(root)))
            sweeper.start()
            assert waiting.event.wait(START_S), "the sweep did not wait for the lock"
            assert len(_temps(root.base)) == N_OLD  # nothing swept under another's hold
            holder.release()
            sweeper.join(START_S)
    finally:
        logger.removeHandler(waiting)
    assert swept == [N_OLD] and _temps(root.base) == []


MODEL_SAVE = textwrap.dedent(
    """
    import os, sys

    from tv100.storage.atomic import atomic_path

    with atomic_path(sys.argv[1], replace_dir=True) as tmp:  # as tasks/rank/clip.py saves
        os.mkdir(tmp)
        with open(os.path.join(tmp, "open_clip_model.safetensors"), "wb") as f:
            f.write(b"w" * 65536)
        print("inside", flush=True)  # the kill point
        sys.stdin.read()
    """
)


def test_a_killed_model_save_leaves_a_temp_folder_that_the_sweep_removes(tmp_path):
    root = DataRoot(str(tmp_path / "data")).ensure()
    target = root.path("models", "sandbox-clip-abc")
    save = subprocess.Popen([sys.executable, "-c", MODEL_SAVE, target],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert _line(save) == "inside\n"
    finally:
        save.send_signal(signal.SIGKILL)
        save.wait(START_S)
    (left,) = _temps(root.base)
    assert left.startswith("models/.tmp-") and left.endswith("-sandbox-clip-abc")
    assert remove_temp_files(root) == 1
    assert _temps(root.base) == [] and os.listdir(root.path("models")) == []


@pytest.mark.parametrize("name", ["file", "folder"])
def test_a_remote_root_sweeps_temp_files_and_folders(name):
    root = DataRoot(f"memory://sweep-test/{name}")
    fs = root.fs
    stale = root.path("models", temp_name("sandbox-clip"))
    if name == "folder":  # an upload of a model folder cut short
        fs.pipe(f"{stale}/open_clip_model.safetensors", b"w")
        fs.pipe(f"{stale}/open_clip_config.json", b"{}")
    else:
        fs.pipe(stale, b"w")
    fs.pipe(root.path("tables", "series.parquet"), b"kept")
    with hold_root(root, what="build"):
        fresh = root.path("tables", temp_name("images.parquet"))
        fs.pipe(fresh, b"new")
        assert remove_temp_files(root) == 1
        assert not fs.exists(stale) and not fs.find(stale)
        assert fs.exists(fresh) and fs.exists(root.path("tables", "series.parquet"))
