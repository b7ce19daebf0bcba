"""Where a flow's tasks run: threads in this process, or the processes of a Dask cluster.

A runner is named by a string (the CLI's ``--runner``):

- ``threads`` (the default): Prefect's `ThreadPoolTaskRunner`. The heavy tasks bring their
  own process pools (the downloader, hashing and the quality checks: 2 processes each, one
  such task at a time), so one machine's cores are used without Dask.
- ``dask``: a temporary `distributed.LocalCluster` for the run, one single-threaded worker
  process per core this process may use (2 cores → 2 workers × 1 thread).
- ``tcp://HOST:PORT``: an existing Dask scheduler (``dask scheduler`` plus ``dask worker``
  on as many machines as wanted; every worker needs this package installed and the data
  root and Prefect's result storage reachable under the same path or URL).

On Dask the stage flows split their work into mapped tasks instead (search per engine,
download per group of shards, hashing and quality per chunk of images), each running in
one worker process without a pool of its own, so the cluster's size is the parallelism;
the tables come out identical to the thread runner's (tests/test_dask.py).

Task runs are reported to the Prefect API by the worker processes themselves, so they
need an API server they can all reach. `run_flow` uses ``PREFECT_API_URL`` when it is
set; otherwise it starts Prefect's local (ephemeral) server once in this process and hands
its URL to the workers, because a worker left to itself would start its own ephemeral
server on the same SQLite file ("database is locked"). Workers on other machines need
``PREFECT_API_URL`` set to a server they can reach.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from prefect import Flow
from prefect.context import FlowRunContext
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from tv100.tasks.parallel import local_cores

R = TypeVar("R")

RUNNERS_HELP = "'threads', 'dask' (a local Dask cluster) or 'tcp://HOST:PORT' (a Dask scheduler)"
_ADDRESS = re.compile(r"^tcp://(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})$")


def check_runner(spec: str) -> str:
    """The runner name, stripped; ValueError naming the value and what was expected."""
    value = spec.strip() if isinstance(spec, str) else spec
    if value in ("threads", "dask"):
        return value
    if isinstance(value, str):
        m = _ADDRESS.match(value)
        if m and 1 <= int(m.group("port")) <= 65535:
            return value
    raise ValueError(f"runner {spec!r} is invalid; expected {RUNNERS_HELP}")


def make_task_runner(spec: str) -> TaskRunner[Any]:
    """The Prefect task runner a runner name stands for (see the module docstring).

    Raises:
        ValueError: naming the value when it is none of ``threads``, ``dask`` or
            ``tcp://HOST:PORT``; or when ``prefect-dask`` is not installed for a Dask one.
    """
    name = check_runner(spec)
    if name == "threads":
        return ThreadPoolTaskRunner()
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as err:  # pragma: no cover - prefect-dask is a dev/dask extra
        raise ValueError(
            f"runner {spec!r} needs prefect-dask; install it with `pip install 'tv100[dask]'`"
        ) from err
    if name == "dask":
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": local_cores(),
                "threads_per_worker": 1,
                "processes": True,
            }
        )
    return DaskTaskRunner(address=name)


def _is_dask(runner: object) -> bool:
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:  # pragma: no cover
        return False
    return isinstance(runner, DaskTaskRunner)


def dask_threads() -> int:
    """Worker threads of the Dask cluster the running flow submits to; 0 when not on Dask.

    The stage flows ask this to decide how to split their work: on Dask into mapped tasks
    without process pools of their own, otherwise as single tasks with their own pools.
    """
    ctx = FlowRunContext.get()
    runner = ctx.task_runner if ctx is not None else None
    if not _is_dask(runner):
        return 0
    nthreads = runner.client.nthreads()  # type: ignore[union-attr]
    return max(1, sum(nthreads.values()))


def _quiet_dask() -> None:
    """Dask's scheduler, nannies and workers log every start and stop at INFO: warnings only.

    The workers are spawned later and read the level from the environment.
    """
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logger = logging.getLogger("distributed")
    if logger.getEffectiveLevel() < logging.WARNING:
        logger.setLevel(logging.WARNING)


@contextmanager
def _shared_api(spec: str) -> Iterator[None]:
    """Point Dask workers at one API server: PREFECT_API_URL, or this process's local one."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        temporary_settings,
    )

    if check_runner(spec) == "threads" or PREFECT_API_URL.value():
        yield
        return
    if not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        raise ValueError(
            f"runner {spec!r} needs a Prefect API its Dask workers can reach; set "
            "PREFECT_API_URL (e.g. to a `prefect server start`)"
        )
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # one per process; the one Prefect itself would use
    server.start()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield


def run_flow(flow: Flow[..., R], runner: str = "threads", /, **parameters: Any) -> R:
    """Run `flow` with the named task runner: ``flow.with_options(task_runner=...)(**params)``.

    Works for a top-level run and for a subflow called from another flow alike.

    Raises:
        ValueError: for an invalid runner name (nothing runs then).
    """
    task_runner = make_task_runner(runner)
    configured = flow.with_options(task_runner=task_runner)
    if _is_dask(task_runner):
        _quiet_dask()
    with _shared_api(runner):
        return configured(**parameters)
