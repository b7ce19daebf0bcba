"""Crash-resume machinery shared by tests/crash/: builds in their own process group, killed at
events, and the comparison of their tables with an uninterrupted build's.

Kill points fire on events, never on time: `RenameKill` makes a build SIGKILL its whole
process group on the N-th rename whose root-relative target matches a pattern, just before
it or right after it (`killhook/sitecustomize.py`, installed through PYTHONPATH in every
process of the build, counts them). Every write of the product is a temp file renamed into
place, so the renames are exactly the points where a crash can leave a different state.
`wait_for` watches files from the test process, for signals sent from outside (SIGTERM,
SIGINT). The same events happen on an idle or a loaded machine; only their timing changes.
"""

from __future__ import annotations

import contextlib
import fnmatch
import inspect
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from tv100.storage.atomic import is_temp
from tv100.storage.root import DataRoot
from tv100.storage.tables import list_tables, read_table

#: The folder whose sitecustomize.py installs the rename hook.
KILLHOOK_DIR = Path(__file__).resolve().parent / "killhook"
#: The repository root (the build subprocesses' working directory).
REPO = Path(__file__).resolve().parents[2]


# -- kill points ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RenameKill:
    """Signal the build at the `n`-th rename (1-based) matching `pattern`.

    Attributes:
        pattern: `fnmatch` pattern on the target's path relative to the data root (``*``
            matches ``/`` too), e.g. ``tables/embeddings/_done/*``, ``runs/*/ckpt-last.pt``.
        n: which matching rename, counted across every process of the build.
        when: ``before`` the rename (temp written, target untouched) or ``after`` it.
        signal: ``SIGKILL`` the whole process group (a machine dying), ``SIGTERM`` its
            leader (``kill PID``) or ``SIGINT`` the group (Ctrl-C in a terminal).
        main_only: with ``SIGKILL``, kill the group's leader only (the build's main
            process, as the OOM killer does), not its workers.
    """

    pattern: str
    n: int
    when: str = "before"
    signal: str = "SIGKILL"
    main_only: bool = False

    def __post_init__(self) -> None:
        if self.when not in ("before", "after"):
            raise ValueError(f"RenameKill.when={self.when!r}; expected 'before' or 'after'")
        if self.n < 1:
            raise ValueError(f"RenameKill.n={self.n!r}; expected >= 1")
        if self.signal not in ("SIGKILL", "SIGTERM", "SIGINT"):
            raise ValueError(
                f"RenameKill.signal={self.signal!r}; expected SIGKILL, SIGTERM or SIGINT")
        if self.main_only and self.signal != "SIGKILL":
            raise ValueError(f"RenameKill.main_only is for SIGKILL, not {self.signal}")

    @property
    def name(self) -> str:
        what = "SIGKILL of the main process" if self.main_only else self.signal
        return f"{what} {self.when} rename {self.n} of {self.pattern}"


def matching(renames: Iterable[str], pattern: str) -> list[str]:
    """The renames (root-relative targets, in order) that `pattern` matches."""
    return [r for r in renames if fnmatch.fnmatchcase(r, pattern)]


def kind_pattern(rel: str) -> str:
    """The pattern of the kind of file `rel` (root-relative) is: one image, table shard or
    done-marker is like any other of its table (their names come from their contents, which
    a resumed run may chunk differently); any other file stands for itself."""
    parts = rel.split("/")
    if parts[0] == "images":
        return "images/*"
    if len(parts) == 3 and parts[0] == "tables" and parts[2].startswith("part-"):
        return f"tables/{parts[1]}/part-*"
    if len(parts) == 4 and parts[0] == "tables" and parts[2] == "_done":
        return f"tables/{parts[1]}/_done/*"
    return rel


def kill_at(renames: list[str], i: int, when: str) -> RenameKill:
    """The kill at the baseline's `i`-th rename (0-based): the N-th rename of its kind."""
    pattern = kind_pattern(renames[i])
    return RenameKill(pattern, len(matching(renames[: i + 1], pattern)), when)


def seeded_n(pick: float, count: int) -> int:
    """The N (1..count) a seeded fraction `pick` in [0, 1) stands for among `count` events."""
    if count < 1:
        raise ValueError(f"no event to pick from (count={count})")
    return min(count, int(pick * count) + 1)


# -- running builds ---------------------------------------------------------------------------


def build_env(home: Path, api_url: str, hook: dict[str, Any] | None = None) -> dict[str, str]:
    """This process's environment for a build: its own PREFECT_HOME on the shared API, and
    the rename hook (`hook`, the ``TV100_KILL_SPEC``) when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.pop("TV100_DATA", None)
    env.pop("TV100_KILL_SPEC", None)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"),
        PREFECT_API_URL=api_url,
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_TO_API_ENABLED="false",
    )
    if hook is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(KILLHOOK_DIR), os.environ.get("PYTHONPATH", "")) if p)
        env["TV100_KILL_SPEC"] = json.dumps(hook)
    return env


@dataclass
class Build:
    """One build subprocess: its data root, PREFECT_HOME and event files."""

    data: Path
    home: Path

    @property
    def log(self) -> Path:
        return self.home / "renames.log"

    @property
    def fired(self) -> Path:
        return self.home / "kill-fired"

    def renames(self) -> list[str]:
        """Root-relative targets of the renames logged so far, in order."""
        return self.log.read_text().splitlines() if self.log.exists() else []

    def hook(self, kill: RenameKill | None, log: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {"data": str(self.data)}
        if log:
            spec["log"] = str(self.log)
        if kill is not None:
            counter = self.home / "kill-counter"
            counter.unlink(missing_ok=True)
            self.fired.unlink(missing_ok=True)
            spec["kill"] = {"pattern": kill.pattern, "n": kill.n, "when": kill.when,
                            "counter": str(counter), "fired": str(self.fired),
                            "signal": kill.signal, "main_only": kill.main_only}
        return spec

    def start(self, script: str, spec: dict[str, Any], api_url: str,
              kill: RenameKill | None = None, log: bool = False) -> subprocess.Popen[bytes]:
        """Start ``python -c script JSON(spec)`` in its own process group (stderr to a file:
        a full pipe would block the build)."""
        hook = self.hook(kill, log) if (kill is not None or log) else None
        with open(self.home / "stderr.log", "ab") as err:
            return subprocess.Popen(
                [sys.executable, "-c", script, json.dumps(spec)],
                env=build_env(self.home, api_url, hook), cwd=str(REPO),
                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, killed as a whole
            )

    def stderr(self, n: int = 4000) -> str:
        path = self.home / "stderr.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""


@contextlib.contextmanager
def prerendered_web(slow_s: float) -> Iterator[Any]:
    """The sandbox web of a crash module (`tests.support.builds.SCALE`, its slow image
    stalling `slow_s`), prerendered: serving never waits on rendering."""
    from tests.support import builds
    from tv100.sandbox.web import SandboxWeb

    with SandboxWeb(scale=builds.SCALE, slow_s=slow_s) as web:
        web.catalog.prerender()
        yield web


#: A build subprocess: `tv100.flows.build.build_flow` with the parameters in argv[1]'s JSON.
BUILD_DRIVER = textwrap.dedent(
    """
    import json, sys

    from tv100.flows.build import build_flow

    build_flow(**json.loads(sys.argv[1])["params"])
    """
)


class Harness:
    """The sandbox builds of one crash module: the same parameters for every build (the
    sandbox `web`, small download shards, stop after clean), each build in its own folder
    under `root`, all on the Prefect API at `api_url`.

    Args:
        web: the sandbox web (`tv100.sandbox.web.SandboxWeb`), serving in the test process.
        api_url: the Prefect API every build reports to.
        root: where the builds' folders go.
        shard_size: the downloader's resume unit (small: several shards in a sandbox build).
        image_timeout_s: the builds' image timeout.
        run_timeout_s: a hang guard per build, not a kill point.
    """

    def __init__(self, web: Any, api_url: str, root: Path, shard_size: int,
                 image_timeout_s: float, run_timeout_s: float = 1800.0) -> None:
        import pytest

        from tests.support import builds
        from tv100.flows.build import build_flow

        self.api_url = api_url
        self.root = root
        self.run_timeout_s = run_timeout_s
        self.params: dict[str, Any] = dict(
            location=f"{web.base_url}/datasets/",
            **builds.collect_params(web, "", image_timeout_s=image_timeout_s),
            rank=False,  # stops after clean (rank needs CLIP weights)
        )
        # Several download shards in the small sandbox build: a flow parameter.
        if "download_shard_size" not in inspect.signature(build_flow.fn).parameters:
            pytest.fail("build_flow has no download_shard_size parameter (collect_flow's, "
                        "forwarded): the crash suite needs small download shards")
        self.params["download_shard_size"] = shard_size

    def new_build(self, name: str) -> Build:
        build = Build(self.root / name / "data", self.root / name / "prefect")
        build.home.mkdir(parents=True)
        return build

    def start(self, build: Build, kill: RenameKill | None = None,
              log: bool = False) -> subprocess.Popen[bytes]:
        spec = {"params": {**self.params, "data": str(build.data)}}
        return build.start(BUILD_DRIVER, spec, self.api_url, kill=kill, log=log)

    def complete(self, build: Build, log: bool = False) -> None:
        """Run `build` to its end (exit 0, or the test fails with its stderr)."""
        code = finish(self.start(build, log=log), self.run_timeout_s, f"{build.data}")
        assert code == 0, build.stderr()


def group_members(pgid: int) -> list[int]:
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


def reap_group(pgid: int, timeout: float = 60.0) -> int:
    """Wait up to `timeout` for the group to end, then SIGKILL what is left; how many were."""
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = len(group_members(pgid))
    if left:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while group_members(pgid) and time.monotonic() < deadline + 30:
            time.sleep(0.05)
    return left


def survivors(pgid: int, timeout: float) -> list[str]:
    """The processes of group `pgid` still alive `timeout` seconds from now ("pid command
    line" each), then killed; [] as soon as the group is empty (polled, not slept out)."""
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = []
    for pid in group_members(pgid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # ended meanwhile
        left.append(f"{pid} {command[:200]}")
    reap_group(pgid, timeout=0)
    return left


def wait_for(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float,
             what: str) -> bool:
    """Poll `ready()` until it holds (True) or the process ends (False).

    `timeout` is a hang guard, not a kill point: past it the group is killed and the test
    fails naming `what`.
    """
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if ready():
            return True
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"{what}: the build ran past {timeout:.0f} s")
        time.sleep(0.02)
    return ready()


def finish(proc: subprocess.Popen[bytes], timeout: float, what: str) -> int:
    """Wait for the build to end (a hang guard of `timeout`) and reap its group; its code."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"{what}: the build ran past {timeout:.0f} s") from None
    reap_group(proc.pid)
    return proc.returncode


# -- comparing builds -----------------------------------------------------------------------


def comparable(data: Path) -> dict[str, list[str]]:
    """Every table as sorted JSON rows, timestamp columns dropped.

    Three documented leniencies: `snapshots` rows are compared on their counts only (the
    rest names the run: its time, flow run, data root and table hashes). `discover_fetches`
    is a log of the requests a run made, and a run resumed after a kill mid-download
    revalidates the dataset files it already has (If-None-Match): its row says 304 where the
    uninterrupted run's says 200. Both mean "this file, current"; the 304 is counted
    (`revalidated`) and compared as 200. `images.attempts` counts the runs that tried an
    image, and depends on when they ran: a run resumed more than the backoff
    (`DownloadConfig.retry_backoff_s`) after a transient failure (the sandbox's always-5xx,
    slow and truncated images) tries it again, where the uninterrupted build did not; it is
    not compared (the row's status, error and bytes are).
    """
    root = DataRoot(str(data))
    out = {}
    for name in list_tables(root):
        table = read_table(root, name)
        keep = [f.name for f in table.schema if not pa.types.is_timestamp(f.type)]
        if name == "snapshots":  # one row per build, named by its time, run and data root:
            keep = [k for k in keep if k.startswith("n_")]  # compared on what it counts
        if name == "images":
            keep = [k for k in keep if k != "attempts"]
        rows = table.select(keep).to_pylist()
        if name == "discover_fetches":
            for r in rows:
                if r["kind"] == "dataset" and r["status"] == "ok" and r["http_status"] == 304:
                    r["http_status"] = 200
                    out["_revalidated"] = [*out.get("_revalidated", []), r["url"]]
        out[name] = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
    return out


def revalidated(tables: dict[str, list[str]]) -> int:
    """Pop the count of 304-revalidated dataset files `comparable` noted."""
    return len(tables.pop("_revalidated", []))


def lost_rows(expected: dict[str, list[str]], got: dict[str, list[str]]) -> int:
    """Rows missing plus rows extra (duplicated or changed), over all tables."""
    n = 0
    for name in set(expected) | set(got):
        a, b = Counter(expected.get(name, [])), Counter(got.get(name, []))
        n += sum((a - b).values()) + sum((b - a).values())
    return n


def orphan_images(data: Path) -> list[str]:
    """Image files under a data root that no ``ok`` row of `images` names."""
    root = DataRoot(str(data))
    referenced = {r["path"] for r in read_table(root, "images").to_pylist()
                  if r["status"] == "ok"}
    stored = {os.path.relpath(os.path.join(d, f), data)
              for d, _, fs in os.walk(data / "images") for f in fs if not is_temp(f)}
    return sorted(stored - referenced)


def temp_files(data: Path) -> list[str]:
    """Temp files and folders (`tv100.storage.atomic.temp_name`) left under a data root."""
    out = []
    for d, dirs, fs in os.walk(data):
        out += [os.path.relpath(os.path.join(d, f), data) for f in [*dirs, *fs] if is_temp(f)]
    return sorted(out)


def all_files(data: Path) -> set[str]:
    """Every file under a data root that is not a temp file, relative to it."""
    return {os.path.relpath(os.path.join(d, f), data)
            for d, _, fs in os.walk(data) for f in fs if not is_temp(f)
            and not any(is_temp(part) for part in Path(d).relative_to(data).parts)}
