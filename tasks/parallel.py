"""Process pools shared by every stage: one start method, one ordered map, one core count.

``fork`` is unsafe in a process that already runs threads (Prefect's, DuckDB's, OpenMP's):
a child can inherit a held lock and hang. Workers start from a ``forkserver`` instead
(``spawn`` where there is none); modules named in `preload` are imported once in the
server, so a worker starts in milliseconds rather than importing torch again; nor does it
import the main script again (the whole CLI for ``tv100``; `_PopenWithoutMain`).

Every process started through `mp_context` (pool workers, torch DataLoader workers) dies
with the process that started it (`die_with`). Killed with SIGKILL, as the OOM killer does,
the main process gets no chance to stop its workers; and a forkserver's worker cannot rely on
the parent-death signal (``PR_SET_PDEATHSIG``) or on torch's ``getppid()`` check: its parent
is the forkserver, which outlives the main process as long as any worker lives (each holds
its "alive" pipe). The parent-death signal also fires when the *thread* that started a
process ends (a Prefect task thread), killing healthy workers. So a worker watches the
process that created it, by pid: a pidfd (Linux 5.3+) that wakes when that process exits,
else a check every `WATCH_INTERVAL_S`. Once the workers are gone, the forkserver sees its
"alive" pipe closed and exits too.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import popen_forkserver, spawn
from multiprocessing.context import (
    BaseContext,
    ForkServerContext,
    ForkServerProcess,
    SpawnContext,
    SpawnProcess,
)
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

WATCH_INTERVAL_S = 1.0
"""Where there is no pidfd: how often a worker checks that the process that started it lives."""

_watched: dict[str, Any] = {}
"""In a watched process: the ``pid`` of the process it dies with and its ``pidfd`` (or None)."""


def local_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user (its pid was reused)
        return False
    return True


def _pidfd_open(pid: int) -> int | None:
    """A pidfd of `pid`, or None where the platform has none (not Linux 5.3+).

    Raises:
        ProcessLookupError: `pid` has already ended.
    """
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError) as err:
        if isinstance(err, ProcessLookupError):
            raise
        return None


def _exited(pidfd: int, timeout_ms: int | None) -> bool:
    """Whether the process of `pidfd` has exited (its pidfd is readable), waiting up to
    `timeout_ms` (None: until it has). ``poll``, not ``select``: any fd number works."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(timeout_ms))


def die_with(pid: int) -> None:
    """End this process (SIGKILL) as soon as process `pid` ends; at once if it has ended.

    Called first thing in every process `mp_context` starts, with the pid of the process
    that started it. A daemon thread waits on a pidfd of `pid` (no polling), or checks
    every `WATCH_INTERVAL_S` where there is none. Every write of the project is atomic
    (temp file + rename), so being killed anywhere loses only unfinished work.

    Args:
        pid: the process to die with (a running process; a worker's creator).
    """
    try:
        fd = _pidfd_open(pid)
    except ProcessLookupError:
        _die()
        return
    _watched.update(pid=pid, pidfd=fd)

    def watch() -> None:
        if fd is not None:
            _exited(fd, None)  # blocks until `pid` has exited
        else:
            while _alive(pid):
                time.sleep(WATCH_INTERVAL_S)
        _die()

    threading.Thread(target=watch, name="tv100-die-with-parent", daemon=True).start()


def creator_alive() -> bool:
    """Whether the process this one dies with (`die_with`) still runs; True if none.

    The per-item check of loops that must write nothing once the main process is gone:
    the watch thread of `die_with` may need a few milliseconds to be scheduled.
    """
    if "pid" not in _watched:
        return True
    fd = _watched["pidfd"]
    if fd is not None:
        return not _exited(fd, 0)
    return _alive(_watched["pid"])


def exit_if_orphaned() -> None:
    """End this process (SIGKILL) now if the process it dies with (`die_with`) has ended."""
    if not creator_alive():
        _die()


class _DiesWithCreator(multiprocessing.process.BaseProcess):
    """A process that dies with the process that created its object (`die_with`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tv100_creator = os.getpid()  # pickled with the object into the new process

    def run(self) -> None:
        die_with(self._tv100_creator)
        # A Ctrl-C reaches the whole process group: a worker ends at once and silently, as
        # on SIGTERM, instead of printing a KeyboardInterrupt traceback from wherever it
        # waits; the main process cancels the run (`tv100.tasks.cancel`).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        super().run()


_LAUNCH = threading.Lock()


def _without_main(prepare: Callable[[str], dict[str, Any]], name: str) -> dict[str, Any]:
    data = prepare(name)
    data.pop("init_main_from_path", None)
    data.pop("init_main_from_name", None)
    return data


class _PopenWithoutMain(popen_forkserver.Popen):
    """A forkserver start whose new process does not import the main script again.

    CPython (3.11 to 3.13) has every forkserver child import the parent's main script or
    module: the forkserver's own preload of ``__main__`` never happens (it looks for a
    ``main_path`` key that the preparation data calls ``init_main_from_path``). For the
    ``tv100`` command that is the whole CLI (`tv100.flows.cli`): about 0.7 s of CPU per
    worker of every pool here. The preparation data is made without the main module
    (under a lock, the module function swapped for the launch only); the rest
    (``sys.path``, the working folder, ...) goes as before.
    """

    def _launch(self, process_obj: Any) -> None:
        with _LAUNCH:
            prepare = spawn.get_preparation_data
            spawn.get_preparation_data = functools.partial(_without_main, prepare)
            try:
                super()._launch(process_obj)  # type: ignore[misc]  # not in the stubs
            finally:
                spawn.get_preparation_data = prepare


class _ForkServerProcess(_DiesWithCreator, ForkServerProcess):
    pass


class _ForkServerProcessWithoutMain(_ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _PopenWithoutMain(process_obj)


class _SpawnProcess(_DiesWithCreator, SpawnProcess):
    pass


class _ForkServerContext(ForkServerContext):
    Process = _ForkServerProcess


class _ForkServerContextWithoutMain(ForkServerContext):
    Process = _ForkServerProcessWithoutMain


class _SpawnContext(SpawnContext):
    Process = _SpawnProcess


_CONTEXTS: dict[str, BaseContext] = {
    "forkserver": _ForkServerContextWithoutMain(),
    "forkserver+main": _ForkServerContext(),
    "spawn": _SpawnContext(),
}


def mp_context(preload: Sequence[str] = (), *, main: bool = False) -> BaseContext:
    """The multiprocessing context for worker pools: forkserver (else spawn).

    Its processes die with the process that starts them (`die_with`). Under forkserver
    they do not import the main script or module again (`_PopenWithoutMain`) unless `main`
    is True: what they run must then live in an importable module, as every pool of
    tv100's does.

    Args:
        preload: modules the forkserver imports once for all its workers (no effect when
            the server already runs: its first user chose).
        main: the workers import the main module (a function of ``__main__`` runs there).
    """
    methods = multiprocessing.get_all_start_methods()
    name = "forkserver" if "forkserver" in methods else "spawn"
    ctx = _CONTEXTS[name + "+main" if name == "forkserver" and main else name]
    if name == "forkserver" and preload:
        ctx.set_forkserver_preload(list(preload))  # type: ignore[attr-defined]
    return ctx


def map_ordered(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int = 2,
    chunksize: int = 8,
    on_crash: Callable[[T, BaseException], R] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[R]:
    """``[fn(x) for x in items]`` on a pool of at most `workers` processes, in input order.

    Args:
        fn: a module-level (picklable) function that does not raise.
        items: its arguments.
        workers: pool size; 1 runs in this process, which is also what 0 or 1 items do.
        chunksize: items per task sent to a worker.
        on_crash: result for an item left unfinished when a worker process died (a native
            crash in a decoder); without it the `BrokenProcessPool` propagates.
        progress: called in this process with ``(results so far, len(items))`` as results
            arrive (a `tv100.tasks.progress.Tracker`); never in a worker.
    """
    if workers < 1:
        raise ValueError(f"workers={workers!r}; expected >= 1")
    out: list[R] = []
    if workers == 1 or len(items) <= 1:
        for x in items:
            out.append(fn(x))
            if progress:
                progress(len(out), len(items))
        return out
    in_main = getattr(fn, "__module__", None) == "__main__"  # a script's own function
    with ProcessPoolExecutor(
        max_workers=min(workers, len(items)), mp_context=mp_context(main=in_main)
    ) as pool:
        try:
            for result in pool.map(fn, items, chunksize=chunksize):
                out.append(result)
                if progress:
                    progress(len(out), len(items))
        except BrokenProcessPool as err:
            if on_crash is None:
                raise
            out.extend(on_crash(x, err) for x in items[len(out) :])
            if progress:
                progress(len(out), len(items))
    return out
