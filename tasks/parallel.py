"""Process pools shared by every stage: one start method, one ordered map, one core count.

``fork`` is unsafe in a process that already runs threads (Prefect's, DuckDB's, OpenMP's):
a child can inherit a held lock and hang. Workers start from a ``forkserver`` instead
(``spawn`` where there is none); modules named in `preload` are imported once in the
server, so a worker starts in milliseconds rather than importing torch again.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def local_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def mp_context(preload: Sequence[str] = ()) -> BaseContext:
    """The multiprocessing context for worker pools: forkserver (else spawn).

    Args:
        preload: modules the forkserver imports once for all its workers (no effect when
            the server already runs: its first user chose).
    """
    methods = multiprocessing.get_all_start_methods()
    name = "forkserver" if "forkserver" in methods else "spawn"
    ctx = multiprocessing.get_context(name)
    if name == "forkserver" and preload:
        ctx.set_forkserver_preload(list(preload))  # type: ignore[attr-defined]
    return ctx


def map_ordered(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int = 2,
    chunksize: int = 8,
    on_crash: Callable[[T, BaseException], R] | None = None,
) -> list[R]:
    """``[fn(x) for x in items]`` on a pool of at most `workers` processes, in input order.

    Args:
        fn: a module-level (picklable) function that does not raise.
        items: its arguments.
        workers: pool size; 1 runs in this process, which is also what 0 or 1 items do.
        chunksize: items per task sent to a worker.
        on_crash: result for an item left unfinished when a worker process died (a native
            crash in a decoder); without it the `BrokenProcessPool` propagates.
    """
    if workers < 1:
        raise ValueError(f"workers={workers!r}; expected >= 1")
    if workers == 1 or len(items) <= 1:
        return [fn(x) for x in items]
    out: list[R] = []
    with ProcessPoolExecutor(
        max_workers=min(workers, len(items)), mp_context=mp_context()
    ) as pool:
        try:
            for result in pool.map(fn, items, chunksize=chunksize):
                out.append(result)
        except BrokenProcessPool as err:
            if on_crash is None:
                raise
            out.extend(on_crash(x, err) for x in items[len(out) :])
    return out
