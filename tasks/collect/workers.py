"""Running the downloader's shards on several workers: processes of our own, or Dask.

One Python process cannot keep two cores busy downloading (the event loop holds the GIL),
so the pending shards are dealt round-robin to workers, each running `download_shards`;
the politeness limits (per-host concurrency, rate, connections) are divided among them so
all workers together honour the configured ones (the default per-host rate included).
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import replace

from tv100.storage.root import DataRoot
from tv100.storage.tables import done_shards
from tv100.tasks.collect.config import DownloadConfig
from tv100.tasks.collect.shards import Hit, download_shards, split_shards
from tv100.tasks.parallel import mp_context
from tv100.tasks.progress import ProgressFn
from tv100.tasks.web.politeness import rate_per_host

PRELOAD = (__name__,)
"""Modules the forkserver imports before forking the download workers (`mp_context`): the
downloader with HTTPX, OpenCV, pyarrow, ..., which each worker would otherwise import anew
(about a second of CPU each). The workers do not import the main script again."""


def per_worker_config(config: DownloadConfig, workers: int) -> DownloadConfig:
    """One worker's settings: the politeness limits split so `workers` together honour them.

    Args:
        config: the run's settings.
        workers: how many workers share the run.

    Returns:
        The settings of one single-process worker.
    """
    http = config.http
    rate = rate_per_host(http) / workers  # the default rate too: it is per run, not per worker
    return replace(
        config,
        processes=1,
        in_flight=max(1, config.in_flight // workers),
        http=replace(
            http,
            per_host=max(1, http.per_host // workers),
            max_connections=max(1, http.max_connections // workers),
            rate_per_host=rate,
        ),
    )


def shard_groups(pending: list[Hit], shard_size: int, workers: int) -> list[list[list[Hit]]]:
    """`pending` cut into shards, dealt round-robin into at most `workers` non-empty groups."""
    shards = split_shards(pending, shard_size)
    return [shards[i::workers] for i in range(workers) if shards[i::workers]]


def _stop_pool(pool: ProcessPoolExecutor, grace_s: float = 5.0) -> None:
    """Stop a worker pool at once: queued work cancelled, running workers terminated.

    A worker killed mid-shard loses only that shard's unwritten rows (every shard is
    written whole); the rerun fetches them again.
    """
    workers = list((getattr(pool, "_processes", None) or {}).values())  # no public handle
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    deadline = time.monotonic() + grace_s
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join(1.0)


def download_in_processes(
    pending: list[Hit],
    root: DataRoot,
    config: DownloadConfig,
    total: int,
    already: int,
    progress: ProgressFn | None,
) -> int:
    """Download `pending` on `config.processes` worker processes; hits downloaded.

    Progress is read from the shards written so far (every half second). On any
    interruption (SIGTERM, Ctrl-C, an error) the workers are stopped at once: the shards
    already written are the resume point. Killed outright (SIGKILL, the OOM killer), this
    process cannot stop them: they end by themselves as it dies, and write no more shards
    (`tv100.tasks.parallel.die_with`).

    Args:
        pending: planned hits to download (`tv100.tasks.collect.shards.pending_hits`).
        root: the data root.
        config: the run's settings.
        total: hits in the whole plan (for progress).
        already: hits of the plan done before this run (for progress).
        progress: called with (hits done, total) as shards appear.
    """
    groups = shard_groups(pending, config.shard_size, config.processes)
    each = per_worker_config(config, config.processes)
    before = len(done_shards(root, "images"))
    # The forkserver imports the downloader once, so each worker starts with it loaded.
    pool = ProcessPoolExecutor(config.processes, mp_context=mp_context(preload=PRELOAD))
    try:
        futures = [pool.submit(download_shards, g, root, each) for g in groups]
        last = -1
        # Woken by the last worker's end (not a fixed sleep's): a run does not wait out
        # the poll interval after its last shard.
        while wait(futures, timeout=0.5).not_done:
            shards = len(done_shards(root, "images")) - before
            done = already + min(len(pending), shards * config.shard_size)
            if progress and done != last:
                progress(done, total)
                last = done
        fetched = sum(f.result() for f in futures)
    except BaseException:  # SIGTERM (Prefect's TerminationSignal), Ctrl-C, an error
        _stop_pool(pool)
        raise
    pool.shutdown()
    if progress:
        progress(total, total)
    return fetched
