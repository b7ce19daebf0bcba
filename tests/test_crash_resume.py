"""Crash-resume anywhere: kill the sandbox build at seeded points in every stage, rerun it,
and compare every table with an uninterrupted build's.

The sandbox web (`sandbox_web`, session fixture) runs in THIS process, so it survives the
kills and every run sees the same URLs; each build runs `tv100.flows.build.build_flow` in its own
process group (`DRIVER`) against the session's Prefect API, with its own PREFECT_HOME —
the same one for a killed run and its rerun, so Prefect's result cache carries over as it
would on a real machine.

Kill points (seeded by `SEED`, see `plan()`), each on a fresh data root:

- ``delay``: the stage's start marker appears (the previous stage's output table; the
  process start for the first stage), then a seeded fraction of that stage's duration as
  measured by the uninterrupted baseline passes, then SIGKILL to the whole process group
  (main process, forkserver and pool workers: a machine dying);
- ``marker``: SIGKILL the moment a finer marker appears (the first stored image, the
  second done shard of `images`);
- ``rename``: the driver SIGKILLs its group just before its N-th atomic rename (temp file
  written, not yet renamed), N seeded among the renames the baseline made of whole files.

After each kill the build is rerun to completion, then: every table equals the baseline's
(timestamp columns dropped, rows sorted), no row lost or doubled, no image file that no ok
row names, no temp file left. SIGTERM (to the main process, like `kill PID`) and SIGINT (to
the group, like Ctrl-C) must end the run within a bound, keep the shards already done, and
the rerun must complete.

To cover a new stage (rank, train, ...): `build_flow` runs it already; append its output
table to `STAGES` (the marker that it has finished) and, if you like, give it kill points in
`DELAY_POINTS`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.conftest import TIMEOUT_S
from tests.reliability import record
from tv100.storage.root import DataRoot
from tv100.storage.tables import done_shards, list_tables, read_table

pytestmark = pytest.mark.timeout(1500)

SEED = 20240417
#: (stage, the table whose file marks that the stage has finished), in pipeline order.
STAGES: list[tuple[str, str]] = [
    ("discover", "tables/series.parquet"),
    ("collect: search", "tables/search_hits.parquet"),
    ("collect: download", "tables/images.parquet"),
    ("clean", "tables/duplicates.parquet"),
]
#: Seeded delay kill points per stage.
DELAY_POINTS = {"discover": 2, "collect: search": 1, "collect: download": 3, "clean": 2}
MARKER_POINTS = ["first stored image", "second done shard of images"]
RENAME_POINTS = 2
SHARD_SIZE = 64  # the downloader's resume unit, small so the sandbox build has several
PARALLEL = 3  # scenarios run at once (each mostly waits on timeouts and process start-up)
RUN_TIMEOUT_S = 300
STOP_BOUND_S = 60  # SIGTERM / SIGINT must end the run within this

DRIVER = textwrap.dedent(
    """
    import functools, json, os, signal, sys

    spec = json.loads(sys.argv[1])
    data = spec["params"]["data"]
    renames = []  # whole files under the data root: tables, raw downloads (not images/shards)
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        path = os.fspath(dst)
        if path.startswith(data + os.sep) and "/images/" not in path[len(data):]:
            renames.append(path[len(data) + 1:])
            if spec.get("crash_at_rename") == len(renames):
                os.killpg(os.getpgid(0), signal.SIGKILL)
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace
    import tv100.flows.collect
    import tv100.tasks.collect.download
    from tv100.flows.build import build_flow

    # Smaller download shards than the default so the sandbox build has several.
    tv100.flows.collect.DownloadConfig = functools.partial(
        tv100.tasks.collect.download.DownloadConfig, shard_size=spec["shard_size"])
    build_flow(**spec["params"])
    if spec.get("rename_log"):
        with open(spec["rename_log"], "w") as f:
            json.dump(renames, f)
    """
)


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One seeded interruption."""

    kind: str  # delay | marker | rename | sigterm | sigint
    stage: str = ""
    fraction: float = 0.0  # delay: of the stage's measured duration
    marker: str = ""
    rename_pick: float = 0.0  # rename: which of the baseline's whole-file renames

    @property
    def name(self) -> str:
        if self.kind == "delay":
            return f"SIGKILL {self.stage} +{self.fraction:.0%}"
        if self.kind == "marker":
            return f"SIGKILL at {self.marker}"
        if self.kind == "rename":
            return f"SIGKILL before a rename ({self.rename_pick:.0%} through)"
        return f"{self.kind.upper()} after the first done shard"


def plan(seed: int = SEED) -> list[Point]:
    rng = random.Random(seed)
    points = []
    for stage, n in DELAY_POINTS.items():
        # One fraction per equal slice of the stage, so the points spread over it.
        points += [Point("delay", stage, round(rng.uniform(i / n, (i + 1) / n) * 0.9 + 0.05, 3))
                   for i in range(n)]
    points += [Point("marker", marker=m) for m in MARKER_POINTS]
    points += [Point("rename", rename_pick=round(rng.uniform(i / RENAME_POINTS,
                                                              (i + 1) / RENAME_POINTS), 3))
               for i in range(RENAME_POINTS)]
    points += [Point("sigterm"), Point("sigint")]
    return points


PLAN = plan()
KILLS = [p for p in PLAN if p.kind not in ("sigterm", "sigint")]
assert len(KILLS) >= 10


# -- running builds -----------------------------------------------------------------------------


@dataclass
class Run:
    """One build process: its data root, PREFECT_HOME and what was seen while it ran."""

    data: Path
    home: Path
    markers: dict[str, float] = field(default_factory=dict)  # marker -> seconds after start
    returncode: int | None = None
    stderr: str = ""
    stage_at_kill: str = ""
    seconds_to_stop: float | None = None
    done_shards_at_signal: int = 0
    done_shards_after: int = 0
    leftover_processes: int = 0


def _env(home: Path, api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.pop("TV100_DATA", None)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"),
        PREFECT_API_URL=api_url,
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_TO_API_ENABLED="false",
    )
    return env


def _seen(data: Path) -> set[str]:
    """Which markers exist now under a data root."""
    out = {rel for _, rel in STAGES if (data / rel).exists()}
    images = data / "images"
    if images.exists() and any(f for _, _, fs in os.walk(images) for f in fs
                               if not f.startswith(".tmp-")):
        out.add("first stored image")
    shards = data / "tables" / "images" / "_done"
    if shards.exists() and len([f for f in os.listdir(shards)
                                if not f.startswith(".tmp-")]) >= 2:
        out.add("second done shard of images")
    if shards.exists() and [f for f in os.listdir(shards) if not f.startswith(".tmp-")]:
        out.add("first done shard")
    return out


def _stage_of(seen: set[str]) -> str:
    for stage, marker in STAGES:
        if marker not in seen:
            return stage
    return "finished"


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry))
    return members


def _reap_group(pgid: int, timeout: float = 20.0) -> None:
    """Wait for the group to end; SIGKILL what is left after `timeout`."""
    deadline = time.monotonic() + timeout
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.5)


class Harness:
    def __init__(self, web: Any, api_url: str, root: Path) -> None:
        self.web = web
        self.api_url = api_url
        self.root = root
        self.params = dict(
            location=f"{web.base_url}/datasets/",
            data="",
            engine_urls=web.engine_urls(),
            per_series_cap=400,
            image_timeout_s=TIMEOUT_S,
            image_retries=1,
            allow_hosts=[web.host_port],
            rank=False,  # stops after clean: the stages in STAGES (rank needs CLIP weights)
        )

    def new_run(self, name: str) -> Run:
        run = Run(self.root / name / "data", self.root / name / "prefect")
        run.home.mkdir(parents=True)
        return run

    def start(self, run: Run, **extra: Any) -> subprocess.Popen[str]:
        spec = {"params": {**self.params, "data": str(run.data)}, "shard_size": SHARD_SIZE,
                **extra}
        return subprocess.Popen(
            [sys.executable, "-c", DRIVER, json.dumps(spec)],
            env=_env(run.home, self.api_url),
            cwd=str(Path(__file__).parent.parent),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, killed as a whole
        )

    def watch(self, run: Run, proc: subprocess.Popen[str], stop: Any = None) -> None:
        """Poll markers until the process ends (or `stop(seen, elapsed)` says so)."""
        started = time.monotonic()
        stderr: list[str] = []
        reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True)
        reader.start()
        while proc.poll() is None:
            elapsed = time.monotonic() - started
            seen = _seen(run.data)
            for m in seen:
                run.markers.setdefault(m, elapsed)
            if stop is not None and stop(seen, elapsed):
                return
            if elapsed > RUN_TIMEOUT_S:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise AssertionError(f"build did not finish in {RUN_TIMEOUT_S} s")
            time.sleep(0.02)
        reader.join(10)
        run.returncode = proc.returncode
        run.stderr = "".join(stderr)[-4000:]

    def complete(self, run: Run, **extra: Any) -> Run:
        proc = self.start(run, **extra)
        self.watch(run, proc)
        _reap_group(proc.pid)
        assert run.returncode == 0, run.stderr
        return run


# -- comparing tables ---------------------------------------------------------------------------


def comparable(data: Path) -> dict[str, list[str]]:
    """Every table as sorted JSON rows, timestamp columns dropped.

    Two documented leniencies: `snapshots` rows are compared on their counts only (the rest
    names the run: its time, flow run, data root and table hashes). `discover_fetches` is a
    log of the requests a run made, and a run resumed after a kill mid-download revalidates
    the dataset files it already has (If-None-Match): its row says 304 where the
    uninterrupted run's says 200. Both mean
    "this file, current"; the 304 is counted (`revalidated`) and compared as 200.
    """
    root = DataRoot(str(data))
    out = {}
    for name in list_tables(root):
        table = read_table(root, name)
        keep = [f.name for f in table.schema if not pa.types.is_timestamp(f.type)]
        if name == "snapshots":  # one row per build, named by its time, run and data root:
            keep = [k for k in keep if k.startswith("n_")]  # compared on what it counts
        rows = table.select(keep).to_pylist()
        if name == "discover_fetches":
            for r in rows:
                if r["kind"] == "dataset" and r["status"] == "ok" and r["http_status"] == 304:
                    r["http_status"] = 200
                    out["_revalidated"] = [*out.get("_revalidated", []), r["url"]]
        out[name] = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
    return out


def revalidated(tables: dict[str, list[str]]) -> int:
    return len(tables.pop("_revalidated", []))


def lost_rows(expected: dict[str, list[str]], got: dict[str, list[str]]) -> int:
    """Rows missing plus rows extra (duplicated or changed), over all tables."""
    n = 0
    for name in set(expected) | set(got):
        a, b = Counter(expected.get(name, [])), Counter(got.get(name, []))
        n += sum((a - b).values()) + sum((b - a).values())
    return n


def temp_files(data: Path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), data)
                  for d, _, fs in os.walk(data) for f in fs if ".tmp-" in f)


def orphan_images(data: Path) -> list[str]:
    root = DataRoot(str(data))
    referenced = {r["path"] for r in read_table(root, "images").to_pylist()
                  if r["status"] == "ok"}
    stored = {os.path.relpath(os.path.join(d, f), data)
              for d, _, fs in os.walk(data / "images") for f in fs if ".tmp-" not in f}
    return sorted(stored - referenced)


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


def _kill_scenario(h: Harness, i: int, point: Point, baseline: Run,
                   whole_file_renames: list[str], expected: dict[str, list[str]]) -> Outcome:
    run = h.new_run(f"kill-{i:02d}")
    extra: dict[str, Any] = {}
    if point.kind == "rename":
        n = len(whole_file_renames)
        extra["crash_at_rename"] = min(n, int(point.rename_pick * n) + 1)
        run.stage_at_kill = whole_file_renames[extra["crash_at_rename"] - 1]  # for the report
    proc = h.start(run, **extra)
    order = [s for s, _ in STAGES]
    windows = stage_windows(baseline)

    def stop(seen: set[str], elapsed: float) -> bool:
        if point.kind == "marker":
            hit = point.marker in seen
        elif point.kind == "delay":
            k = order.index(point.stage)
            anchor = 0.0 if k == 0 else run.markers.get(STAGES[k - 1][1])
            start, end = windows[point.stage]
            hit = anchor is not None and elapsed >= anchor + point.fraction * (end - start)
        else:
            return False  # the driver kills itself
        if hit:
            run.stage_at_kill = _stage_of(seen)
            os.killpg(proc.pid, signal.SIGKILL)
        return hit

    h.watch(run, proc, stop)
    proc.wait()
    _reap_group(proc.pid)
    if point.kind == "rename":
        renamed = run.stage_at_kill
        run.stage_at_kill = _stage_of(_seen(run.data))
        print(f"  {point.name}: killed before renaming {renamed}")
    assert proc.returncode != 0, f"{point.name}: the build finished before it was killed"
    temp_after_kill = temp_files(run.data)
    h.complete(run)  # the rerun, same data root and PREFECT_HOME
    tables = comparable(run.data)
    n = revalidated(tables)
    return Outcome(point, run, tables, temp_after_kill, temp_files(run.data),
                   orphan_images(run.data), lost_rows(expected, tables), n)


def _signal_scenario(h: Harness, i: int, point: Point,
                     expected: dict[str, list[str]]) -> Outcome:
    run = h.new_run(f"{point.kind}-{i:02d}")
    proc = h.start(run)
    signalled = [0.0]

    def stop(seen: set[str], elapsed: float) -> bool:
        if "first done shard" not in seen:
            return False
        run.stage_at_kill = _stage_of(seen)
        run.done_shards_at_signal = len(done_shards(DataRoot(str(run.data)), "images"))
        signalled[0] = time.monotonic()
        if point.kind == "sigterm":
            os.kill(proc.pid, signal.SIGTERM)  # `kill PID`
        else:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the group
        return True

    h.watch(run, proc, stop)
    try:
        proc.wait(STOP_BOUND_S)
    except subprocess.TimeoutExpired:
        pass
    run.seconds_to_stop = time.monotonic() - signalled[0] if proc.poll() is not None else None
    time.sleep(1.0)  # workers left behind would still be running now
    run.leftover_processes = len(_group_members(proc.pid))
    _reap_group(proc.pid, timeout=0.1)
    root = DataRoot(str(run.data))
    images_table = run.data / "tables" / "images.parquet"
    run.done_shards_after = (len(done_shards(root, "images"))
                             if not images_table.exists() else -1)
    temp_after_kill = temp_files(run.data)
    h.complete(run)
    tables = comparable(run.data)
    n = revalidated(tables)
    return Outcome(point, run, tables, temp_after_kill, temp_files(run.data),
                   orphan_images(run.data), lost_rows(expected, tables), n)


def stage_windows(baseline: Run) -> dict[str, tuple[float, float]]:
    out, start = {}, 0.0
    for stage, marker in STAGES:
        end = baseline.markers[marker]
        out[stage] = (start, end)
        start = end
    return out


@dataclass
class Results:
    baseline: Run
    expected: dict[str, list[str]]
    outcomes: list[Outcome]


@pytest.fixture(scope="module")
def results(prefect_harness, sandbox_web, tmp_path_factory) -> Results:
    import prefect.settings

    api_url = prefect.settings.PREFECT_API_URL.value()
    assert api_url, "the Prefect test harness has no API URL"
    h = Harness(sandbox_web, api_url, tmp_path_factory.mktemp("crash-resume"))
    baseline = h.new_run("baseline")
    rename_log = h.root / "renames.json"
    h.complete(baseline, rename_log=str(rename_log))
    missing = [m for _, m in STAGES if m not in baseline.markers]
    assert not missing, f"the baseline never wrote {missing}"
    expected = comparable(baseline.data)
    assert revalidated(expected) == 0
    # Whole files (tables, raw downloads) the baseline renamed into place, in order: a temp
    # file of theirs is never removed by a later step (shards' are, by compaction).
    whole = json.loads(rename_log.read_text())
    assert whole

    def one(i: int, point: Point) -> Outcome:
        if point.kind in ("sigterm", "sigint"):
            return _signal_scenario(h, i, point, expected)
        return _kill_scenario(h, i, point, baseline, whole, expected)

    with ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = list(pool.map(one, range(len(PLAN)), PLAN))
    for o in outcomes:
        outcome = f"killed in {o.run.stage_at_kill}, resumed, tables equal"
        if o.run.seconds_to_stop is not None:
            after = ("all, compacted" if o.run.done_shards_after < 0
                     else str(o.run.done_shards_after))
            outcome = (f"stopped {o.run.seconds_to_stop:.0f} s after the signal in "
                       f"{o.run.stage_at_kill} (done shards: {o.run.done_shards_at_signal} at "
                       f"the signal, {after} at exit), resumed, tables equal")
        if o.revalidated:
            outcome += f" ({o.revalidated} dataset file revalidated: 304 logged)"
        record("crash", o.point.name, outcome if not o.lost else "tables differ", lost=o.lost)
    return Results(baseline, expected, outcomes)


def _outcome(results: Results, name: str) -> Outcome:
    return next(o for o in results.outcomes if o.point.name == name)


# -- tests --------------------------------------------------------------------------------------


def test_baseline_covers_every_stage(results: Results):
    b = results.baseline
    assert set(results.expected) >= {"series", "discover_fetches", "search_hits", "search_pages",
                                      "images", "hashes", "quality", "duplicates"}
    statuses = Counter(json.loads(r)["status"] for r in results.expected["images"])
    assert statuses["ok"] > 100 and len(statuses) >= 5, statuses
    assert not temp_files(b.data) and not orphan_images(b.data)


def test_kill_points_land_in_every_stage(results: Results):
    landed = Counter(o.run.stage_at_kill for o in results.outcomes if o.point.kind not in
                     ("sigterm", "sigint"))
    assert len([p for p in PLAN if p.kind not in ("sigterm", "sigint")]) >= 10
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
    # Every temp file is named .tmp-* (tv100.storage.root.temp_path) and build_flow sweeps them
    # (remove_temp_files) before anything runs.
    left = {o.point.name: o.temp_after_rerun for o in results.outcomes if o.temp_after_rerun}
    record("crash", "temp files left after kill + resume", f"{len(left)} runs with leftovers")
    assert not left, left


@pytest.mark.parametrize("kind", ["sigterm", "sigint"])
def test_signals_stop_the_run_and_keep_done_shards(kind: str, results: Results):
    o = next(o for o in results.outcomes if o.point.kind == kind)
    assert o.run.seconds_to_stop is not None, f"{kind}: still running after {STOP_BOUND_S} s"
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
    windows = stage_windows(results.baseline)
    print("\nbaseline stage windows (s):",
          {k: (round(a, 1), round(b, 1)) for k, (a, b) in windows.items()})
    for o in results.outcomes:
        print(f"  {o.point.name:55} landed in {o.run.stage_at_kill:18} "
              f"temp after kill {len(o.temp_after_kill)}, after rerun "
              f"{len(o.temp_after_rerun)}, lost {o.lost}, revalidated {o.revalidated}, "
              f"stop {o.run.seconds_to_stop}, shards {o.run.done_shards_at_signal}->"
              f"{o.run.done_shards_after}")
        for path in o.temp_after_rerun:
            print(f"      left: {path}")
