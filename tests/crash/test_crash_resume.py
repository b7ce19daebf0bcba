"""Crash-resume anywhere: kill the sandbox build at seeded events in every stage, rerun it,
and compare every table with an uninterrupted build's.

The sandbox web (`crash_web`, this module's) runs in THIS process, so it survives the kills
and every run sees the same URLs; each build runs `tv100.flows.build.build_flow`
(`tests.support.crash.Harness`) in its own process group against the session's Prefect API,
with its own PREFECT_HOME — the same one for a killed run and its rerun, so Prefect's result
cache carries over as it would on a real machine.

Kill points fire on events, never after a delay (`tests.support.crash.RenameKill`): the
build SIGKILLs its whole process group (main process, forkserver and pool workers: a
machine dying) just before, or right after, the N-th rename of a given kind of file under
the data root. Every write of the product is a temp file renamed into place, so a rename is
exactly where a crash changes what is on disk. The points, seeded by `SEED` (`plan()`):

- ``stage``: in each stage (between the previous stage's output table and its own,
  `STAGES`), a seeded kind of file the uninterrupted baseline renamed there (an image, a
  shard, a done-marker, a table, a raw download) and a seeded one of those renames, before
  or after it;
- ``event``: right after the first stored image, right after the second done shard of
  `images` (both written by download workers);
- ``anywhere``: before one of the whole files (tables, raw downloads, report files) the
  baseline renamed, other than those the points above already kill at.

After each kill the build is rerun to completion, then: every table equals the baseline's
(timestamp columns dropped, rows sorted), no row lost or doubled, no image file that no ok
row names, no temp file left. SIGTERM (to the main process, like `kill PID`) and SIGINT (to
the group, like Ctrl-C), sent by the build itself right after its first `images` shard is
marked done (the same rename hook), must end the run, keep
the shards already done, leave no process behind, and the rerun must complete.

To cover a new stage (rank, train, ...): `build_flow` runs it already; append its output
table to `STAGES` and give it points in `STAGE_POINTS`.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.crash import (
    Build,
    Harness,
    RenameKill,
    comparable,
    finish,
    kill_at,
    kind_pattern,
    lost_rows,
    orphan_images,
    prerendered_web,
    reap_group,
    revalidated,
    seeded_n,
    temp_files,
    wait_for,
)
from tests.support.reliability import record
from tv100.storage.root import DataRoot
from tv100.storage.tables import done_shards

pytestmark = pytest.mark.timeout(10800)  # a hang guard for the whole module on a busy machine

#: The done-marker of an `images` shard (root-relative, `RenameKill` pattern).
DONE_SHARD = "tables/images/_done/*"

SEED = 20240417
#: (stage, the table whose file marks that the stage has finished), in pipeline order.
STAGES: list[tuple[str, str]] = [
    ("discover", "tables/series.parquet"),
    ("collect: search", "tables/search_hits.parquet"),
    ("collect: download", "tables/images.parquet"),
    ("clean", "tables/duplicates.parquet"),
]
#: Seeded kill points among each stage's renames.
STAGE_POINTS = {"discover": 2, "collect: search": 2, "collect: download": 3, "clean": 2}
#: Kill points at named events of the download workers.
EVENT_POINTS = [
    ("after the first stored image", RenameKill("images/*", 1, "after")),
    ("after the second done shard of images", RenameKill(DONE_SHARD, 2, "after")),
]
ANYWHERE_POINTS = 2
SHARD_SIZE = 64  # the downloader's resume unit, small so the sandbox build has several
PARALLEL = 3  # scenarios run at once (each mostly waits on timeouts and process start-up)
#: This module's sandbox web stalls its slow image `SLOW_S`, and builds give up on an image
#: after `IMAGE_TIMEOUT_S`: the stall always ends as a timeout, and an ordinary image has
#: seconds to spare however busy the machine is (a timeout there would change a table).
SLOW_S = 12.0
IMAGE_TIMEOUT_S = 5.0
#: Hang guards, not kill points: a build (or a stop after a signal) taking longer fails.
RUN_TIMEOUT_S = 1800
STOP_TIMEOUT_S = 300


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One seeded interruption, resolved into a `RenameKill` once the baseline has run."""

    kind: str  # stage | event | anywhere | sigterm | sigint
    stage: str = ""  # stage: which
    kind_pick: float = 0.0  # stage: which kind of file renamed in it (`kind_pattern`)
    pick: float = 0.0  # stage / anywhere: which of those renames (a fraction)
    when: str = "before"  # stage: before or after that rename
    event: str = ""  # event: its name (EVENT_POINTS)

    @property
    def name(self) -> str:
        if self.kind == "stage":
            return (f"SIGKILL {self.when} a {self.stage} rename (kind {self.kind_pick:.0%}, "
                    f"{self.pick:.0%} through)")
        if self.kind == "event":
            return f"SIGKILL {self.event}"
        if self.kind == "anywhere":
            return f"SIGKILL before a whole-file rename ({self.pick:.0%} through)"
        return f"{self.kind.upper()} after the first done shard"


def plan(seed: int = SEED) -> list[Point]:
    rng = random.Random(seed)
    points = []
    for stage, n in STAGE_POINTS.items():
        # One pick per equal slice of the kinds of files the stage renames (images, shards,
        # done-markers, tables, raw files), so the points spread over them.
        # Before and after in turn; `pick` stays clear of the last renames of a kind, whose
        # count can differ by one between runs (two workers storing the same image).
        points += [Point("stage", stage, kind_pick=round(rng.uniform(i / n, (i + 1) / n), 3),
                         pick=round(rng.uniform(0.02, 0.9), 3), when=("before", "after")[i % 2])
                   for i in range(n)]
    points += [Point("event", event=name) for name, _ in EVENT_POINTS]
    points += [Point("anywhere", pick=round(rng.uniform(i / ANYWHERE_POINTS,
                                                        (i + 1) / ANYWHERE_POINTS), 3))
               for i in range(ANYWHERE_POINTS)]
    points += [Point("sigterm"), Point("sigint")]
    return points


PLAN = plan()
KILLS = [p for p in PLAN if p.kind not in ("sigterm", "sigint")]
assert len(KILLS) >= 10


def stage_windows(renames: list[str], when: str) -> dict[str, range]:
    """Per stage, the indexes of the renames a kill `when` (before / after) lands in that
    stage at: those after the previous stage's marker up to its own marker, which counts
    only before its rename (after it, the next stage has begun)."""
    out, start = {}, 0
    for stage, marker in STAGES:
        end = renames.index(marker)
        out[stage] = range(start, end + 1 if when == "before" else end)
        start = end + 1
    return out


def whole_files(renames: list[str]) -> list[int]:
    """Indexes of the renames of whole files (tables, raw downloads; not images or shards):
    a temp file of theirs is never removed by a later step (shards' are, by compaction)."""
    return [i for i, r in enumerate(renames) if kind_pattern(r) == r]


def resolve(point: Point, renames: list[str], taken: set[RenameKill]) -> RenameKill:
    """The kill of `point` in terms of the baseline's renames; an ``anywhere`` point skips
    the kills in `taken` (those of the points resolved before it)."""
    if point.kind == "event":
        return dict(EVENT_POINTS)[point.event]
    if point.kind == "stage":
        window = stage_windows(renames, point.when)[point.stage]
        assert len(window), f"the baseline renamed nothing in {point.stage}"
        kinds = list(dict.fromkeys(kind_pattern(renames[i]) for i in window))  # in order
        kind = kinds[seeded_n(point.kind_pick, len(kinds)) - 1]
        of_kind = [i for i in window if kind_pattern(renames[i]) == kind]
        return kill_at(renames, of_kind[seeded_n(point.pick, len(of_kind)) - 1], point.when)
    candidates = [i for i in whole_files(renames) if kill_at(renames, i, "before") not in taken]
    return kill_at(renames, candidates[seeded_n(point.pick, len(candidates)) - 1], "before")


# -- running builds -----------------------------------------------------------------------------


def _seen(data: Path) -> set[str]:
    """Which stage markers exist now under a data root."""
    return {rel for _, rel in STAGES if (data / rel).exists()}


def _stage_of(seen: set[str]) -> str:
    for stage, marker in STAGES:
        if marker not in seen:
            return stage
    return "finished"


@dataclass
class Run:
    """What one scenario saw."""

    build: Build
    kill: RenameKill | None = None
    fired: str = ""  # the rename the kill fired at
    returncode: int | None = None
    stage_at_kill: str = ""
    seconds_to_stop: float | None = None
    done_shards_at_signal: int = 0
    done_shards_after: int = 0
    leftover_processes: int = 0


# -- the scenarios ------------------------------------------------------------------------------


@dataclass
class Outcome:
    point: Point
    run: Run
    tables: dict[str, list[str]]
    temp_after_kill: list[str]
    temp_after_rerun: list[str]
    orphans: list[str]
    lost: int
    revalidated: int = 0


def _rerun(h: Harness, point: Point, run: Run, expected: dict[str, list[str]]) -> Outcome:
    temp_after_kill = temp_files(run.build.data)
    h.complete(run.build)  # the rerun, same data root and PREFECT_HOME
    tables = comparable(run.build.data)
    n = revalidated(tables)
    return Outcome(point, run, tables, temp_after_kill, temp_files(run.build.data),
                   orphan_images(run.build.data), lost_rows(expected, tables), n)


def _kill_scenario(h: Harness, i: int, point: Point, kill: RenameKill,
                   expected: dict[str, list[str]]) -> Outcome:
    run = Run(h.new_build(f"kill-{i:02d}"), kill)
    proc = h.start(run.build, kill=kill)
    run.returncode = finish(proc, RUN_TIMEOUT_S, point.name)
    assert run.build.fired.exists(), (
        f"{point.name}: the build ended (code {run.returncode}) without reaching "
        f"{kill.name}\n{run.build.stderr()}")
    assert run.returncode == -signal.SIGKILL, run.returncode
    run.fired = run.build.fired.read_text()
    run.stage_at_kill = _stage_of(_seen(run.build.data))  # the kill froze the data root
    return _rerun(h, point, run, expected)


def _signal_scenario(h: Harness, i: int, point: Point,
                     expected: dict[str, list[str]]) -> Outcome:
    run = Run(h.new_build(f"{point.kind}-{i:02d}"))
    # The build signals itself right after its first `images` shard is marked done (the
    # rename hook, in whichever process renames it): an event, so the signal lands while
    # the download runs however loaded the machine is. SIGTERM goes to the main process
    # (`kill PID`); SIGINT to the whole group, as a terminal's Ctrl-C does.
    stop = RenameKill(DONE_SHARD, 1, "after", signal=point.kind.upper())
    proc = h.start(run.build, kill=stop)
    data = run.build.data
    assert wait_for(proc, run.build.fired.exists, RUN_TIMEOUT_S, point.name), (
        f"{point.name}: the build ended before a shard was done")
    signalled = time.monotonic()
    run.stage_at_kill = _stage_of(_seen(data))
    run.done_shards_at_signal = stop.n
    try:
        proc.wait(STOP_TIMEOUT_S)
        run.seconds_to_stop = time.monotonic() - signalled
    except subprocess.TimeoutExpired:
        pass
    run.returncode = proc.poll()
    # Workers still alive this long after the build ended were left behind.
    run.leftover_processes = reap_group(proc.pid, timeout=30)
    images_table = data / "tables" / "images.parquet"
    run.done_shards_after = (len(done_shards(DataRoot(str(data)), "images"))
                             if not images_table.exists() else -1)
    return _rerun(h, point, run, expected)


@dataclass
class Results:
    baseline: Build
    renames: list[str]
    expected: dict[str, list[str]]
    outcomes: list[Outcome]


@pytest.fixture(scope="module")
def crash_web():
    """The sandbox web of this module (`SLOW_S`), prerendered."""
    with prerendered_web(SLOW_S) as web:
        yield web


@pytest.fixture(scope="module")
def results(prefect_harness, crash_web, tmp_path_factory) -> Results:
    import prefect.settings

    api_url = prefect.settings.PREFECT_API_URL.value()
    assert api_url, "the Prefect test harness has no API URL"
    h = Harness(crash_web, api_url, tmp_path_factory.mktemp("crash-resume"), SHARD_SIZE,
                IMAGE_TIMEOUT_S, RUN_TIMEOUT_S)
    baseline = h.new_build("baseline")
    h.complete(baseline, log=True)
    renames = baseline.renames()
    missing = [m for _, m in STAGES if m not in renames]
    assert not missing, f"the baseline never wrote {missing}"
    expected = comparable(baseline.data)
    assert revalidated(expected) == 0
    kills: dict[str, RenameKill] = {}
    for p in KILLS:  # in plan order: stage and event points first, then anywhere
        kills[p.name] = resolve(p, renames, set(kills.values()))

    def one(i: int, point: Point) -> Outcome:
        if point.kind in ("sigterm", "sigint"):
            return _signal_scenario(h, i, point, expected)
        return _kill_scenario(h, i, point, kills[point.name], expected)

    with ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = list(pool.map(one, range(len(PLAN)), PLAN))
    for o in outcomes:
        outcome = f"killed in {o.run.stage_at_kill}, resumed, tables equal"
        if o.run.seconds_to_stop is not None:
            after = ("all, compacted" if o.run.done_shards_after < 0
                     else str(o.run.done_shards_after))
            outcome = (f"stopped in {o.run.stage_at_kill} (done shards: "
                       f"{o.run.done_shards_at_signal} at the signal, {after} at exit), "
                       f"resumed, tables equal")
        if o.revalidated:
            outcome += f" ({o.revalidated} dataset file revalidated: 304 logged)"
        record("crash", o.point.name, outcome if not o.lost else "tables differ", lost=o.lost)
    return Results(baseline, renames, expected, outcomes)


def _outcome(results: Results, name: str) -> Outcome:
    return next(o for o in results.outcomes if o.point.name == name)


# -- tests --------------------------------------------------------------------------------------


def test_baseline_covers_every_stage(results: Results):
    assert set(results.expected) >= {"series", "discover_fetches", "search_hits", "search_pages",
                                      "images", "hashes", "quality", "duplicates"}
    statuses = Counter(json.loads(r)["status"] for r in results.expected["images"])
    assert statuses["ok"] > 100 and len(statuses) >= 5, statuses
    assert statuses["timeout"] >= 1, "the slow image must time out"
    b = results.baseline.data
    assert not temp_files(b) and not orphan_images(b)


def test_kill_points_land_in_every_stage(results: Results):
    landed = Counter(o.run.stage_at_kill for o in results.outcomes if o.point.kind not in
                     ("sigterm", "sigint"))
    assert {s for s, _ in STAGES} <= set(landed), landed


@pytest.mark.parametrize("name", [p.name for p in KILLS])
def test_resumed_build_equals_uninterrupted(name: str, results: Results):
    o = _outcome(results, name)
    assert o.lost == 0, {
        t: (len(results.expected.get(t, [])), len(o.tables.get(t, [])))
        for t in set(results.expected) | set(o.tables)
        if results.expected.get(t) != o.tables.get(t)
    }
    assert o.tables == results.expected


@pytest.mark.parametrize("name", [p.name for p in KILLS])
def test_no_orphan_images_after_resume(name: str, results: Results):
    assert _outcome(results, name).orphans == []


def test_no_temp_files_left_after_resume(results: Results):
    # Every temp file is named .tmp-* (tv100.storage.atomic.temp_name) and build_flow sweeps
    # them (remove_temp_files) before anything runs.
    left = {o.point.name: o.temp_after_rerun for o in results.outcomes if o.temp_after_rerun}
    record("crash", "temp files left after kill + resume", f"{len(left)} runs with leftovers")
    assert not left, left


@pytest.mark.parametrize("kind", ["sigterm", "sigint"])
def test_signals_stop_the_run_and_keep_done_shards(kind: str, results: Results):
    o = next(o for o in results.outcomes if o.point.kind == kind)
    assert o.run.seconds_to_stop is not None, f"{kind}: still running {STOP_TIMEOUT_S} s later"
    assert o.run.stage_at_kill == "collect: download"
    assert o.run.done_shards_at_signal >= 1
    # Done shards stay (or were compacted into the table, if the download had finished).
    assert o.run.done_shards_after == -1 or (
        o.run.done_shards_after >= o.run.done_shards_at_signal)
    # ... and the download stops there: the worker pool is stopped at once (queued shards
    # cancelled, workers terminated), not left to fetch everything first.
    shards = -(-len(results.expected["images"]) // SHARD_SIZE)
    assert 0 <= o.run.done_shards_after < shards, (o.run.done_shards_after, shards)
    assert o.lost == 0 and o.tables == results.expected
    assert o.orphans == []


@pytest.mark.parametrize("kind", ["sigterm", "sigint"])
def test_signals_leave_no_process_running(kind: str, results: Results):
    o = next(o for o in results.outcomes if o.point.kind == kind)
    assert o.run.leftover_processes == 0, f"{kind}: download workers outlived the build"


def test_report_kill_points(results: Results):
    """Not a check: prints where each point landed (visible with -s / in the junit log)."""
    print(f"\nbaseline: {len(results.renames)} renames; per stage (before):",
          {k: len(v) for k, v in stage_windows(results.renames, "before").items()})
    for o in results.outcomes:
        at = f"{o.run.kill.name} (at {o.run.fired})" if o.run.kill else "signal"
        print(f"  {o.point.name:55} {at}\n      landed in {o.run.stage_at_kill:18} "
              f"temp after kill {len(o.temp_after_kill)}, after rerun "
              f"{len(o.temp_after_rerun)}, lost {o.lost}, revalidated {o.revalidated}, "
              f"stop {o.run.seconds_to_stop}, shards {o.run.done_shards_at_signal}->"
              f"{o.run.done_shards_after}")
        for path in o.temp_after_rerun:
            print(f"      left: {path}")
