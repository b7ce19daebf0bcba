"""Pipeline benchmark: the whole build at two sizes ~10x apart, and how each stage grows.

For each size the script serves a sandbox web (`tv100.sandbox.web.SandboxWeb`, 48 series,
its image count set by ``scale``: the same series and the same CLIP at every size, only more
images per series) and runs the build's stages one after the other, each as its own process
of the real command line into a fresh data root::

    tv100 discover --location <sandbox>/datasets/ ...
    tv100 collect  --engine-url NAME=<sandbox engine> --per-series-cap <above the largest> ...
    tv100 clean
    tv100 rank     --model local-dir:<sandbox CLIP> --k <unseen series> --min-images 5
    tv100 train    --recipe linear --recipe finetune --epochs 1 (a short setting)

Each child is reaped with ``os.wait4``: its wall time and its peak RSS (``ru_maxrss``: the
largest single process among the command and the workers it waited for, not a sum). The
sandbox runs in a process of its own too; its row is the catalog's generation and the
server's start (seconds) and its peak RSS while serving the whole size. One ``prefect server
start`` serves every command (so no stage pays for a temporary server's start-up), and each
size gets a fresh PREFECT_HOME and result storage (no cache of another size is reused).

Printed: per stage and size, seconds, images/s and peak RSS (MiB), and the growth exponent
``log(t2/t1) / log(n2/n1)`` with n = rows of `images` after collect (every stage's images/s
uses the same n; the images listed when ``--until discover`` stops before collect). Goal
(issue 15): every exponent <= 1.1 and peak RSS flat in images; rows above 1.1 are marked
``!``. Nothing is asserted. The last line is one JSON object.

The sandbox CLIP is pre-trained once (not timed, not a stage) with few steps: only speed
matters here, not its accuracy.

    .venv/bin/python bench/pipeline.py            # ~2,300 and ~23,000 listed images
    .venv/bin/python bench/pipeline.py --quick    # ~1,000 and ~4,000 (minutes)
    .venv/bin/python bench/pipeline.py --large    # adds ~100,000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAGES = ("discover", "collect", "clean", "rank", "train")
#: The sandbox's own row: catalog generation and server start.
SANDBOX = "sandbox"
#: Stages summed into the ``total`` row (the sandbox is not part of a build).
TOTAL = "total"
#: Images the sandbox lists per unit of `scale` with 48 series (seed 0: 2,673 at scale 1).
LISTED_PER_SCALE = 2673
N_SERIES = 48
SIZES_DEFAULT = (2300, 23000)
SIZES_QUICK = (1000, 4000)
SIZE_LARGE = 100_000
#: An exponent above this is marked (the issue's goal: every stage <= 1.1).
GOAL_EXPONENT = 1.1
#: The planted slow image stalls past the image timeout, as in the demo.
IMAGE_TIMEOUT_S = 4.0
SLOW_S = 6.0
#: Collect's per-series cap: at least this, and above the sandbox's largest series.
MIN_PER_SERIES_CAP = 400
MIN_IMAGES = 5
#: The train stage's short setting (the demo's knobs, one epoch, two recipes).
TRAIN_ARGS = ("--recipe", "linear", "--recipe", "finetune", "--epochs", "1", "--lr", "5e-4",
              "--batch-size", "32", "--warmup-steps", "20", "--sampling", "balanced")
PRETRAIN_STEPS = 40
PRETRAIN_RENDERS = 32
SERVER_STARTUP_S = 240.0


@dataclass(frozen=True)
class BenchPlan:
    """What one invocation measures.

    Attributes:
        images: target listed images per size, increasing (at least two sizes).
        until: the last stage run (a prefix of `STAGES`).
        seed: the sandbox world's seed.
        n_series: candidate series of the sandbox world (4..100000).
        pretrain_steps: optimiser steps of the sandbox CLIP (1..1000000).
        pretrain_renders: training images per known series of the sandbox CLIP (1..10000).
        server: one Prefect server for every command (False: each its temporary one).
        work: folder for data roots, logs and Prefect homes (None: a temporary one).
        keep: keep `work` afterwards.
    """

    images: tuple[int, ...]
    until: str = STAGES[-1]
    seed: int = 0
    n_series: int = N_SERIES
    pretrain_steps: int = PRETRAIN_STEPS
    pretrain_renders: int = PRETRAIN_RENDERS
    server: bool = True
    work: str | None = None
    keep: bool = False
    stages: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if len(self.images) < 2:
            raise ValueError(f"BenchPlan.images={self.images!r}; expected two sizes or more")
        if any(b <= a for a, b in zip(self.images, self.images[1:], strict=False)):
            raise ValueError(f"BenchPlan.images={self.images!r}; expected increasing sizes")
        if self.images[0] < 1:
            raise ValueError(f"BenchPlan.images={self.images!r}; expected sizes >= 1")
        if self.until not in STAGES:
            raise ValueError(f"BenchPlan.until={self.until!r}; expected one of {', '.join(STAGES)}")
        for name, value, lo, hi in (("n_series", self.n_series, 4, 100_000),
                                    ("pretrain_steps", self.pretrain_steps, 1, 1_000_000),
                                    ("pretrain_renders", self.pretrain_renders, 1, 10_000)):
            if not lo <= value <= hi:
                raise ValueError(f"BenchPlan.{name}={value!r}; expected {lo}..{hi}")
        object.__setattr__(self, "stages", STAGES[: STAGES.index(self.until) + 1])

    def scale(self, images: int) -> float:
        """The sandbox `scale` that lists about `images` images (48 series; others pro rata)."""
        per_scale = LISTED_PER_SCALE * self.n_series / N_SERIES
        return round(max(0.01, images / per_scale), 4)


@dataclass(frozen=True)
class Measure:
    """One child process: wall seconds, peak RSS (MiB: its rusage's or its sampled process
    tree's, the larger) and CPU seconds (user + system, the workers it waited for included)."""

    seconds: float
    peak_rss_mb: float
    cpu_s: float


def growth_exponent(t1: float, t2: float, n1: int, n2: int) -> float | None:
    """``log(t2/t1) / log(n2/n1)``: 1 is linear; None when undefined (a zero or equal n)."""
    if t1 <= 0 or t2 <= 0 or n1 <= 0 or n2 <= 0 or n1 == n2:
        return None
    return math.log(t2 / t1) / math.log(n2 / n1)


def reap(proc: subprocess.Popen[Any]) -> tuple[int, float, float]:
    """Wait for `proc` with ``os.wait4``: its exit code, peak RSS in MiB (``ru_maxrss`` is
    KiB on Linux) and CPU seconds."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def tv100_command() -> list[str]:
    """The ``tv100`` console script of this environment."""
    script = Path(sys.executable).with_name("tv100")
    if script.is_file():
        return [str(script)]
    found = shutil.which("tv100")
    if found is None:
        raise SystemExit("tv100 is not installed in this environment (make install)")
    return [found]


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def tree_rss_mb(root_pid: int) -> float:
    """Resident MiB of `root_pid` and every process below it, now (Linux ``/proc``; 0 where
    it cannot be read). Pool workers a command never reaps count here, not in its rusage."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, todo = {root_pid}, [root_pid]
    while todo:
        pid = todo.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                todo.append(child)
    total = 0
    for pid in tree:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            continue
    return total / 2**20


class TreeSampler(threading.Thread):
    """Samples `tree_rss_mb` of a process every `every_s` until stopped; keeps the peak."""

    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak_mb = pid, every_s, 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_mb = max(self.peak_mb, tree_rss_mb(self.pid))
            self._stop_event.wait(self.every_s)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak_mb


def run_stage(args: Sequence[str], env: Mapping[str, str], log: Path) -> Measure:
    """Run one command to completion: stdout to `log` with suffix ``.out``, stderr to `log`;
    exit with its log's tail if it fails. Peak RSS is the larger of the rusage's (the
    command and the workers it reaped) and the sampled process tree's (all its workers
    together, sampled every 0.25 s)."""
    with open(log.with_suffix(".out"), "wb") as out, open(log, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(args), env=dict(env), stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        try:
            rc, rss, cpu = reap(proc)
        finally:
            tree = sampler.stop()
        seconds = time.perf_counter() - t0
    if rc != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"`{' '.join(args)}` exited {rc}; log {log}:\n{tail}")
    return Measure(seconds, max(rss, tree), cpu)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This process's environment without Prefect or tv100 settings, threads sized to the
    machine, Hugging Face offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TV100_"))}
    cores = str(os.cpu_count() or 1)
    env.update(OMP_NUM_THREADS=cores, MKL_NUM_THREADS=cores, HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PYTHONUNBUFFERED="1", COLUMNS="200")
    return env


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """``prefect server start`` on a free loopback port; yields its API URL."""
    from tv100.flows.cli.server import healthy

    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = clean_env() | {"PREFECT_HOME": str(home), "PREFECT_SERVER_API_HOST": "127.0.0.1",
                         "PREFECT_SERVER_API_PORT": str(port)}
    log = home / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_STARTUP_S
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"prefect server exited {proc.returncode}; log {log}")
            if healthy(api):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"prefect server did not answer in {SERVER_STARTUP_S:.0f} s")
            time.sleep(0.5)
        yield api
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen[Any]) -> None:
    """Stop a process this script started in its own session, and what it started."""
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def serve_sandbox(seed: int, n_series: int, scale: float) -> None:
    """Child mode: build and start the sandbox, print its addresses as one JSON line, serve
    until stdin closes."""
    from tv100.sandbox.web import SandboxWeb

    t0 = time.perf_counter()
    web = SandboxWeb(seed=seed, n_series=n_series, scale=scale, port=0, slow_s=SLOW_S).start()
    seconds = time.perf_counter() - t0
    catalog = web.catalog  # not manifest_table(): it renders every image first
    info = {
        "base_url": web.base_url, "host_port": web.host_port, "engine_urls": web.engine_urls(),
        "k": sum(1 for t in web.world.titles if t.expected and not t.known),
        "listed": len(catalog.images),
        "largest_series": max(len(catalog.for_series(s)) for s in catalog.series_ids),
        "seconds": seconds,
    }
    print(json.dumps(info), flush=True)
    try:
        sys.stdin.read()
    finally:
        web.stop()


@dataclass
class Sandbox:
    """The sandbox served by a child process of this script (`serve_sandbox`)."""

    proc: subprocess.Popen[str]
    info: dict[str, Any]

    @classmethod
    def start(cls, plan: BenchPlan, scale: float, log: Path) -> Sandbox:
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve-sandbox", str(plan.seed), str(plan.n_series),
                 str(scale)],
                env=clean_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                text=True,
            )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            reap(proc)
            raise SystemExit(f"the sandbox exited {proc.returncode}; log {log}")
        return cls(proc, json.loads(line))

    def stop(self) -> tuple[float, float]:
        """Close its stdin, reap it; its peak RSS in MiB and CPU seconds (serving included)."""
        if self.proc.returncode is not None:
            return 0.0, 0.0
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        _, rss, cpu = reap(self.proc)
        return rss, cpu


def pretrain_clip(plan: BenchPlan, folder: Path) -> str:
    """The sandbox CLIP with the bench's short training, once; its ``local-dir:`` spec."""
    import tv100.tasks  # noqa: F401  (OMP_WAIT_POLICY before torch loads)
    from tv100.sandbox.pretrain import PretrainConfig, pretrain

    steps = plan.pretrain_steps
    config = PretrainConfig(world_seed=plan.seed, n_series=plan.n_series, steps=steps,
                            warmup_steps=min(steps, round(steps / 10)),
                            renders_per_series=plan.pretrain_renders,
                            threads=os.cpu_count() or 1)
    folder.mkdir(parents=True, exist_ok=True)
    result = pretrain(str(folder), config)
    print(f"sandbox CLIP: {steps} steps, {plan.pretrain_renders} renders per known series "
          f"({result.seconds:.0f} s; not timed, not a stage): {result.spec}", flush=True)
    return result.spec


def pretrain_child(plan: BenchPlan, folder: Path) -> str:
    """`pretrain_clip` in a child process (torch would make this one large: see
    `floor_rss_mb`); its spec."""
    args = [sys.executable, __file__, "--pretrain-into", str(folder), "--seed", str(plan.seed),
            "--n-series", str(plan.n_series), "--pretrain-steps", str(plan.pretrain_steps),
            "--pretrain-renders", str(plan.pretrain_renders)]
    done = subprocess.run(args, env=clean_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"pre-training exited {done.returncode}:\n{done.stderr[-3000:]}")
    line = done.stdout.strip().splitlines()[-1]
    print(line, flush=True)
    return line.rsplit(": ", 1)[1]


def collected_images(out: Path) -> int:
    """Rows of the `images` table after collect (its statuses' counts, from the JSON that
    ``tv100 collect`` prints): the n of every growth exponent. Read from the command's
    output rather than the table so this process stays small (see `floor_rss_mb`)."""
    result = json.loads(out.read_text())
    return sum(int(v) for v in result["images"]["status_counts"].values())


def floor_rss_mb() -> float:
    """This process's peak RSS in MiB: a floor under every child's ``ru_maxrss``, which on
    Linux starts from its parent's RSS at the fork (or vfork) before its exec."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_args(stage: str, data: Path, web: Mapping[str, Any], spec: str | None) -> list[str]:
    """The ``tv100`` arguments of one stage against the sandbox `web` (its info line)."""
    root = ["--data", str(data)]
    allow = ["--allow-host", str(web["host_port"])]
    if stage == "discover":
        return ["discover", "--location", f"{web['base_url']}/datasets/", *allow, *root]
    if stage == "collect":
        cap = max(MIN_PER_SERIES_CAP, math.ceil(1.25 * int(web["largest_series"])))
        urls = [a for name, url in web["engine_urls"].items()
                for a in ("--engine-url", f"{name}={url}")]
        return ["collect", *root, *urls, *allow, "--per-series-cap", str(cap),
                "--image-timeout", str(IMAGE_TIMEOUT_S)]
    if stage == "clean":
        return ["clean", *root]
    assert spec is not None
    if stage == "rank":
        return ["rank", *root, "--model", spec, "--k", str(web["k"]),
                "--min-images", str(MIN_IMAGES)]
    return ["train", *root, "--model", spec, *TRAIN_ARGS]


def run_size(plan: BenchPlan, target: int, folder: Path, api: str | None,
             spec: str | None) -> dict[str, Any]:
    """Every stage of `plan` at one size; ``{"n", "listed", "scale", "stages": {..}}``."""
    folder.mkdir(parents=True)
    data, logs, home = folder / "data", folder / "logs", folder / "prefect"
    logs.mkdir()
    env = clean_env() | {"PREFECT_HOME": str(home),
                         "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage")}
    if api:
        env["PREFECT_API_URL"] = api
    scale = plan.scale(target)
    print(f"size ~{target:,}: sandbox scale {scale} ({plan.n_series} series) ...", flush=True)
    sandbox = Sandbox.start(plan, scale, logs / "sandbox.log")
    stages: dict[str, Measure] = {}
    n = 0
    try:
        web = sandbox.info
        for stage in plan.stages:
            stages[stage] = run_stage([*tv100_command(), *stage_args(stage, data, web, spec)],
                                      env, logs / f"{stage}.log")
            m = stages[stage]
            print(f"  {stage:9s} {m.seconds:8.1f} s {m.cpu_s:8.1f} CPU s "
                  f"{m.peak_rss_mb:8.0f} MiB", flush=True)
            if stage == "collect":
                n = collected_images(logs / "collect.out")
    finally:
        rss, cpu = sandbox.stop()
    measures = {SANDBOX: Measure(float(sandbox.info["seconds"]), rss, cpu), **stages}
    measures[TOTAL] = Measure(sum(m.seconds for m in stages.values()),
                              max(m.peak_rss_mb for m in stages.values()),
                              sum(m.cpu_s for m in stages.values()))
    listed = int(sandbox.info["listed"])
    return {"target": target, "scale": scale, "listed": listed,
            "n": n if "collect" in stages else listed, "stages": measures}


def report(plan: BenchPlan, sizes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Print the table; return the JSON summary (exponents of the two largest sizes)."""
    rows = [SANDBOX, *plan.stages, TOTAL]
    ns = [int(s["n"]) for s in sizes]
    keys = [str(n) for n in ns]
    pairs: dict[str, dict[str, float | None]] = {}
    for a, b in zip(sizes, sizes[1:], strict=False):
        pairs[f"{a['n']}-{b['n']}"] = {
            r: _round(growth_exponent(a["stages"][r].seconds, b["stages"][r].seconds,
                                      int(a["n"]), int(b["n"])), 3)
            for r in rows
        }
    exponents = list(pairs.values())[-1]
    print()
    for s in sizes:
        print(f"size ~{s['target']:,}: scale {s['scale']}, {s['listed']:,} images listed, "
              f"{s['n']:,} collected (n)")
    head = f"{'stage':9s}" + "".join(f"{'s @' + format(n, ','):>13s}" for n in ns)
    head += "".join(f"{'img/s @' + format(n, ','):>15s}" for n in ns)
    head += "".join(f"{'MiB @' + format(n, ','):>13s}" for n in ns)
    head += "".join(f"{'CPU s @' + format(n, ','):>15s}" for n in ns) + f"{'exponent':>10s}"
    print(head)
    for r in rows:
        ms = [s["stages"][r] for s in sizes]
        line = f"{r:9s}" + "".join(f"{m.seconds:13.1f}" for m in ms)
        line += "".join(f"{(n / m.seconds if m.seconds > 0 else 0):15.1f}"
                        for n, m in zip(ns, ms, strict=True))
        line += "".join(f"{m.peak_rss_mb:13.0f}" for m in ms)
        line += "".join(f"{m.cpu_s:15.1f}" for m in ms)
        e = exponents[r]
        line += f"{'-' if e is None else format(e, '.2f'):>10s}"
        print(line + (" !" if e is not None and e > GOAL_EXPONENT else ""))
    print(f"exponent = log(t2/t1)/log(n2/n1) over the two largest sizes; ! marks > "
          f"{GOAL_EXPONENT}.\nPeak RSS: a stage's process tree (sampled) or its largest "
          "process, whichever is larger. Sandbox: "
          "seconds to generate and start; RSS and CPU s over the whole size (it renders "
          "each image on request while collect runs, on the same cores).\n"
          f"Train: {' '.join(TRAIN_ARGS)}. Cores: {os.cpu_count()}. RSS floor (this "
          f"process, inherited by each child): {floor_rss_mb():.0f} MiB.")
    return {
        "bench": "pipeline",
        "sizes": ns,
        "listed": [int(s["listed"]) for s in sizes],
        "scales": [s["scale"] for s in sizes],
        "exponents": exponents,
        "exponent_pairs": pairs,
        "over_goal": sorted(r for r, e in exponents.items() if e is not None
                            and e > GOAL_EXPONENT),
        "seconds": {k: {r: round(s["stages"][r].seconds, 2) for r in rows}
                    for k, s in zip(keys, sizes, strict=True)},
        "images_per_s": {k: {r: round(int(s["n"]) / s["stages"][r].seconds, 1)
                             if s["stages"][r].seconds > 0 else None for r in rows}
                         for k, s in zip(keys, sizes, strict=True)},
        "peak_rss_mb": {k: {r: round(s["stages"][r].peak_rss_mb, 1) for r in rows}
                        for k, s in zip(keys, sizes, strict=True)},
        "cpu_seconds": {k: {r: round(s["stages"][r].cpu_s, 2) for r in rows}
                        for k, s in zip(keys, sizes, strict=True)},
        "train": " ".join(TRAIN_ARGS),
        "pretrain": {"steps": plan.pretrain_steps, "renders": plan.pretrain_renders},
        "prefect": "one server" if plan.server else "a temporary server per command",
        "cores": os.cpu_count(),
    }


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def parse(argv: Sequence[str] | None) -> tuple[BenchPlan | tuple[int, int, float], str | None]:
    """The plan from the command line (or the sandbox child's arguments), and the folder of
    the pre-training child mode (None: not that mode)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true",
                       help=f"two small sizes, {SIZES_QUICK[0]:,} and {SIZES_QUICK[1]:,} images")
    sizes.add_argument("--images", type=int, nargs="+", metavar="N",
                       help="listed images per size, increasing (default "
                            f"{SIZES_DEFAULT[0]:,} {SIZES_DEFAULT[1]:,})")
    parser.add_argument("--large", action="store_true", help=f"add {SIZE_LARGE:,} images")
    parser.add_argument("--until", choices=STAGES, default=STAGES[-1], help="last stage run")
    parser.add_argument("--seed", type=int, default=0, help="sandbox seed")
    parser.add_argument("--n-series", type=int, default=N_SERIES, help="sandbox series")
    parser.add_argument("--pretrain-steps", type=int, default=PRETRAIN_STEPS,
                        help="sandbox CLIP training steps (speed only matters here)")
    parser.add_argument("--pretrain-renders", type=int, default=PRETRAIN_RENDERS,
                        help="sandbox CLIP training images per known series")
    parser.add_argument("--no-server", action="store_true",
                        help="no shared Prefect server: each command starts a temporary one")
    parser.add_argument("--work", help="folder for data roots and logs (default: a temp one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--serve-sandbox", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--pretrain-into", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_sandbox:
        seed, n_series, scale = args.serve_sandbox
        return (int(seed), int(n_series), float(scale)), None
    images = tuple(args.images or (SIZES_QUICK if args.quick else SIZES_DEFAULT))
    if args.large:
        images = (*images, SIZE_LARGE)
    try:
        plan = BenchPlan(images=images, until=args.until, seed=args.seed,
                         n_series=args.n_series, pretrain_steps=args.pretrain_steps,
                         pretrain_renders=args.pretrain_renders, server=not args.no_server,
                         work=args.work, keep=args.keep or args.work is not None)
        return plan, args.pretrain_into
    except ValueError as err:
        parser.error(str(err))


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Run the bench; return the JSON summary it printed last."""
    plan, pretrain_into = parse(argv)
    if isinstance(plan, tuple):
        serve_sandbox(*plan)
        return None
    if pretrain_into:
        pretrain_clip(plan, Path(pretrain_into))
        return None
    work = Path(plan.work or tempfile.mkdtemp(prefix="tv100-bench-pipeline-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"pipeline bench in {work}: sizes {', '.join(f'{n:,}' for n in plan.images)}, "
          f"stages {', '.join(plan.stages)}, {os.cpu_count()} cores", flush=True)
    try:
        spec = pretrain_child(plan, work / "clip") if "rank" in plan.stages else None
        with _server(plan, work / "server") as api:
            sizes = [run_size(plan, n, work / f"size-{n}", api, spec) for n in plan.images]
        summary = report(plan, sizes)
        summary["floor_rss_mb"] = round(floor_rss_mb(), 1)
    finally:
        if not plan.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary))
    return summary


@contextmanager
def _server(plan: BenchPlan, home: Path) -> Iterator[str | None]:
    if not plan.server:
        yield None
        return
    with prefect_server(home) as api:
        yield api


if __name__ == "__main__":
    main()
