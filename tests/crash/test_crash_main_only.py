"""Crash-resume when only the main process dies: SIGKILL of the build's main process, not of
its process group, during the download, as the OOM killer does it (it kills one process).

Nothing can stop the workers then: the main process gets no chance to. Every process the
build starts through `tv100.tasks.parallel.mp_context` (download workers, and the forkserver
they come from) must end by itself within `GONE_TIMEOUT_S`, write no more shards, and the
rerun must end with the tables of an uninterrupted build.

The sandbox web (`main_only_web`, this module's) runs in THIS process and survives the kill,
as a real web would. Each build (`tests.support.crash.Harness`) runs in its own process
group, so every process of the build can be found by its group after the main process is
gone. The kill fires on an event, never on time (`tests.support.crash.RenameKill`): the
download worker that renames the first done-marker of an `images` shard SIGKILLs the main
process right after it, and goes on. The baseline and the killed build run at once.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.support.crash import (
    Build,
    Harness,
    RenameKill,
    comparable,
    lost_rows,
    orphan_images,
    prerendered_web,
    revalidated,
    survivors,
    temp_files,
)
from tests.support.reliability import record
from tv100.storage.root import DataRoot
from tv100.storage.tables import done_shards
from tv100.tasks.collect.config import DOWNLOAD

pytestmark = pytest.mark.timeout(5400)  # a hang guard for the module on a busy machine

SHARD_SIZE = 64  # the downloader's resume unit: several shards in the sandbox build
SLOW_S = 12.0  # the sandbox's slow image: past the image timeout, however busy the machine
IMAGE_TIMEOUT_S = 5.0
RUN_TIMEOUT_S = 1800  # a hang guard per build, not a kill point
#: How long the build's other processes may take to end after its main process died.
GONE_TIMEOUT_S = 30.0
#: The download's worker processes in a build (`DownloadConfig.processes`).
PROCESSES = DOWNLOAD.processes
#: Right after the first `images` shard is marked done (by a download worker): SIGKILL of
#: the main process only.
KILL = RenameKill("tables/images/_done/*", 1, "after", main_only=True)


@dataclass
class Outcome:
    """What the killed build left, and what its rerun made of it."""

    expected: dict[str, list[str]]
    total_shards: int
    returncode: int | None
    fired: str
    at_death: set[str]  # done shards when the main process had died
    after: set[str]  # done shards once every process of the build had ended
    compacted: bool  # the `images` table was written: the download had finished
    left: list[str]  # processes of the build alive GONE_TIMEOUT_S after the main died
    tables: dict[str, list[str]]
    lost: int
    orphans: list[str]
    temp_after_rerun: list[str]


@pytest.fixture(scope="module")
def main_only_web():
    """The sandbox web of this module (`SLOW_S`), prerendered."""
    with prerendered_web(SLOW_S) as web:
        yield web


def _baseline(h: Harness) -> Build:
    build = h.new_build("baseline")
    h.complete(build)
    return build


def _kill(h: Harness) -> tuple[Build, subprocess.Popen[bytes]]:
    """Start the build that kills its main process; return once that process has ended."""
    build = h.new_build("main-only")
    proc = h.start(build, kill=KILL)
    try:
        proc.wait(RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        survivors(proc.pid, 0)
        proc.wait()
        raise AssertionError(f"the build ran past {RUN_TIMEOUT_S} s") from None
    return build, proc


@pytest.fixture(scope="module")
def outcome(prefect_harness, main_only_web, tmp_path_factory) -> Outcome:
    import prefect.settings

    api_url = prefect.settings.PREFECT_API_URL.value()
    assert api_url, "the Prefect test harness has no API URL"
    h = Harness(main_only_web, api_url, tmp_path_factory.mktemp("crash-main-only"),
                SHARD_SIZE, IMAGE_TIMEOUT_S, RUN_TIMEOUT_S)
    with ThreadPoolExecutor(1) as pool:
        baseline_run = pool.submit(_baseline, h)  # meanwhile, the killed build here
        build, proc = _kill(h)
        # The main process is dead (and reaped): what the rest of its group does now is
        # what the OOM killer would leave behind.
        root = DataRoot(str(build.data))
        at_death = done_shards(root, "images")
        left = survivors(proc.pid, GONE_TIMEOUT_S)
        after = done_shards(root, "images")
        compacted = (build.data / "tables" / "images.parquet").exists()
        fired = build.fired.read_text() if build.fired.exists() else ""
        h.complete(build)  # the rerun: same data root and PREFECT_HOME
        tables = comparable(build.data)
        expected = comparable(baseline_run.result().data)
    assert revalidated(expected) == 0
    n_revalidated = revalidated(tables)  # dataset files the rerun revalidated (304)
    out = Outcome(
        expected=expected,
        total_shards=-(-len(expected["images"]) // SHARD_SIZE),
        returncode=proc.returncode,
        fired=fired,
        at_death=at_death,
        after=after,
        compacted=compacted,
        left=left,
        tables=tables,
        lost=lost_rows(expected, tables),
        orphans=orphan_images(build.data),
        temp_after_rerun=temp_files(build.data),
    )
    if out.left:
        result = f"{len(out.left)} processes left running"
    elif out.lost:
        result = "tables differ"
    else:
        result = (f"workers and forkserver ended by themselves (done shards: "
                  f"{len(at_death)} at the kill, {len(after)} after), resumed, tables equal")
    if n_revalidated:
        result += f" ({n_revalidated} dataset file revalidated: 304 logged)"
    record("crash", "SIGKILL of the main process only, during download (the OOM killer)",
           result, lost=out.lost)
    return out


def test_the_kill_hit_the_main_process_during_the_download(outcome: Outcome):
    assert outcome.fired.startswith("tables/images/_done/"), outcome.fired
    assert outcome.returncode == -signal.SIGKILL
    assert not outcome.compacted, "the download had finished: the kill came too late"
    assert outcome.total_shards > PROCESSES, "too few shards to see a worker go on"


def test_no_process_of_the_build_outlives_its_main_process(outcome: Outcome):
    """The forkserver and the download workers end by themselves (nothing killed them)."""
    assert outcome.left == [], f"still running {GONE_TIMEOUT_S:.0f} s after the main died"


def test_no_shard_is_done_after_the_main_process_died(outcome: Outcome):
    # The worker that fired the kill had just marked its shard done; another worker may
    # have been renaming the marker of a shard it had finished as the kill landed. Before
    # this fix the workers downloaded every remaining shard.
    assert len(outcome.at_death) <= PROCESSES, sorted(outcome.at_death)
    assert len(outcome.after - outcome.at_death) <= PROCESSES - 1, sorted(outcome.after)
    assert len(outcome.after) < outcome.total_shards


def test_the_rerun_equals_an_uninterrupted_build(outcome: Outcome):
    ok = Counter(json.loads(r)["status"] for r in outcome.tables["images"])
    expected_ok = Counter(json.loads(r)["status"] for r in outcome.expected["images"])
    assert ok["ok"] == expected_ok["ok"] > 100
    assert outcome.lost == 0, {
        t: (len(outcome.expected.get(t, [])), len(outcome.tables.get(t, [])))
        for t in set(outcome.expected) | set(outcome.tables)
        if outcome.expected.get(t) != outcome.tables.get(t)
    }
    assert outcome.tables == outcome.expected
    assert outcome.orphans == [] and outcome.temp_after_rerun == []

