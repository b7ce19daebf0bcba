"""Two builds on one data root (issue 14, item 4; issue 17, defect 6), on the sandbox.

A first build runs in its own process. Once it holds the data root's lock (its record in
``.tv100.lock``, an event) it is frozen with SIGSTOP, so that it keeps the lock for as long as
the test needs, on any machine. Meanwhile a second build with ``wait=False`` refuses in one
line naming it, and a second build that waits says so (a log record, an event) and does
nothing until the first one is let go and finishes. The tables then equal those of a single
build on a copy of the same root.

The builds stop after clean (``rank=False``): rank and train need a CLIP and add nothing
here, as the lock is held for the whole build.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import prefect.settings
import pytest

from tests.storage.test_lock import WaitingLog
from tests.support import builds
from tests.support.crash import REPO, build_env, comparable, finish, revalidated, wait_for
from tests.support.reliability import record
from tv100.storage.lock import RootBusyError, read_holder

#: Hang guards (not kill points) for a build to take the lock, and to run to its end.
START_S = 300.0
RUN_S = 1800.0

DRIVER = textwrap.dedent(
    """
    import json, sys

    from tv100.flows.build import build_flow

    build_flow(**json.loads(sys.argv[1])["params"])
    """
)


def _params(web: Any, data: str) -> dict[str, Any]:
    return dict(location=f"{web.base_url}/datasets/", **builds.collect_params(web, data),
                rank=False)


def _tables(data: str) -> dict[str, list[str]]:
    tables = comparable(Path(data))
    revalidated(tables)  # a 304 of a dataset file compares as its 200
    return tables


@pytest.fixture(scope="module")
def single(collected, sandbox_web, tmp_path_factory) -> str:
    """The shared collected root, copied and built once, alone: the reference."""
    from tv100.flows.build import build_flow

    data = str(tmp_path_factory.mktemp("single-build") / "data")
    shutil.copytree(collected[0], data)
    build_flow(**_params(sandbox_web, data))
    return data


def _start(script: str, params: dict[str, Any], api_url: str,
           log: Path) -> subprocess.Popen[bytes]:
    """A build in its own process group, sharing this session's Prefect API, home and
    result storage, as two builds on one machine share ``~/.prefect`` (stderr to `log`)."""
    env = build_env(Path(os.environ["PREFECT_HOME"]), api_url)
    env["PREFECT_LOCAL_STORAGE_PATH"] = os.environ["PREFECT_LOCAL_STORAGE_PATH"]
    with open(log, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-c", script, json.dumps({"params": params})], env=env,
            cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else ""


def test_a_second_build_waits_for_the_first_or_refuses(collected, single, sandbox_web,
                                                       tmp_path):
    from tv100.flows.build import build_flow

    api_url = prefect.settings.PREFECT_API_URL.value()
    assert api_url, "the Prefect test harness has no API URL"
    data = str(tmp_path / "data")
    shutil.copytree(collected[0], data)
    first = tmp_path / "first.log"
    proc = _start(DRIVER, _params(sandbox_web, data), api_url, first)
    waits = WaitingLog()
    lock_log = logging.getLogger("tv100.lock")
    lock_log.addHandler(waits)
    second: list[Any] = []
    waiter: threading.Thread | None = None
    try:
        holds = wait_for(proc, lambda: getattr(read_holder(data), "pid", None) == proc.pid,
                         START_S, "the first build")
        assert holds, f"the first build ended before it held the root: {_tail(first)}"
        os.kill(proc.pid, signal.SIGSTOP)  # it keeps the lock, frozen, until SIGCONT

        # wait=False: a one-line refusal naming the first build, at once.
        with pytest.raises(RootBusyError) as err:
            build_flow(**_params(sandbox_web, data), wait=False)
        message = str(err.value)
        assert "\n" not in message
        assert f"data root {data!r} is in use by build (pid {proc.pid}, since " in message

        # Waiting: the second build says whom it waits for, and waits. It runs in a thread
        # with this context (the Prefect harness's settings live in it).
        def run_second() -> None:
            second.append(build_flow(**_params(sandbox_web, data)))

        waiter = threading.Thread(target=contextvars.copy_context().run, args=(run_second,))
        waiter.start()
        assert waits.event.wait(START_S), "the second build never said it waits"
        assert any(f"pid {proc.pid}" in m and "waiting for it" in m for m in waits.messages)
        assert waiter.is_alive() and not second
        holder = read_holder(data)
        assert holder is not None and holder.pid == proc.pid  # still the first one's

        os.kill(proc.pid, signal.SIGCONT)
        assert finish(proc, RUN_S, "the first build") == 0, _tail(first)
        waiter.join(RUN_S)
        assert second, "the second build did not finish"
    finally:
        lock_log.removeHandler(waits)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if waiter is not None:
            waiter.join(RUN_S)
    # The second build found everything done: the tables are a single build's.
    assert second[0].collect.images.downloaded_now == 0
    got, expected = _tables(data), _tables(single)
    names = set(got) | set(expected)
    lost = sum(len(set(got.get(n, [])) ^ set(expected.get(n, []))) for n in names)
    record("crash", "a second build started on a data root a build holds",
           "waited (refused in one line with --no-wait); tables equal a single build's", lost=lost)
    assert got == expected, _differences(got, expected)


def _differences(got: dict[str, list[str]], expected: dict[str, list[str]]) -> str:
    lines = []
    for name in sorted(set(got) | set(expected)):
        a, b = set(got.get(name, [])), set(expected.get(name, []))
        if a != b:
            lines.append(f"{name}: {len(a - b)} rows only here, e.g. {sorted(a - b)[:2]}; "
                         f"{len(b - a)} only in a single build's, e.g. {sorted(b - a)[:2]}")
    return "\n".join(lines)


def test_stage_flows_and_tasks_inside_a_build_share_its_hold(prefect_harness, tmp_path):
    """What the build relies on: a subflow run by a flow that holds the root, and a task it
    submits (a worker thread of Prefect's task runner) or calls, take the hold again without
    waiting (``wait=False`` would refuse otherwise), and release nothing."""
    from prefect import flow, task

    from tv100.storage.lock import hold_root

    data = str(tmp_path / "data")

    def nested(what: str) -> int:
        with hold_root(data, wait=False, what=what) as holder:
            return holder.pid

    @task
    def a_task() -> int:
        return nested("task")

    @flow
    def a_stage() -> int:
        return nested("stage")

    @flow
    def a_build() -> tuple[int, int, int]:
        with hold_root(data, wait=False, what="build"):
            return a_stage(), a_task.submit().result(), a_task()

    assert a_build() == (os.getpid(),) * 3
    with hold_root(data, wait=False, what="after"):  # all released
        pass
