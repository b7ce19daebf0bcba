"""`tv100.tasks.parallel`: the shared start method, ordered map and core count, and workers
that die with the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.support.crash import REPO, group_members, survivors, wait_for
from tv100.tasks.parallel import creator_alive, local_cores, map_ordered, mp_context

#: Hang guards, not kill points: a start-up or a death taking longer fails the test.
START_TIMEOUT_S = 120.0
GONE_TIMEOUT_S = 30.0


def _pid(_: int) -> int:
    return os.getpid()


def _square(x: int) -> int:
    return x * x


def _die_on_three(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def test_map_ordered_really_uses_worker_processes():
    pids = map_ordered(_pid, list(range(8)), workers=2, chunksize=1)
    assert len(pids) == 8
    assert os.getpid() not in pids
    assert 1 <= len(set(pids)) <= 2
    with pytest.raises(ValueError, match="workers"):
        map_ordered(_pid, [1, 2], workers=0)


def test_map_ordered_keeps_input_order_and_runs_in_process_for_one_worker():
    items = [5, 1, 4, 2, 3]
    assert map_ordered(_square, items, workers=2, chunksize=1) == [25, 1, 16, 4, 9]
    assert map_ordered(_pid, [0, 1], workers=1) == [os.getpid()] * 2


def test_a_dead_worker_becomes_rows_through_on_crash():
    out = map_ordered(
        _die_on_three, [0, 1, 2, 3, 4, 5], workers=2, chunksize=1,
        on_crash=lambda x, err: -x,
    )
    assert len(out) == 6
    assert out[3] == -3  # the item that killed its worker is never a result
    assert all(v in (x, -x) for x, v in zip(range(6), out, strict=True))


def test_the_start_method_never_forks_and_cores_are_the_affinity():
    assert mp_context().get_start_method() in ("forkserver", "spawn")
    assert 1 <= local_cores() <= (os.cpu_count() or 1)


def _block(path: str) -> None:
    """A worker that says it runs (its pid in `path`, renamed into place) and never ends."""
    Path(path + ".tmp").write_text(str(os.getpid()))
    os.replace(path + ".tmp", path)
    threading.Event().wait()


# A main process with both kinds of worker mp_context starts: a process of its own (as a
# torch DataLoader starts them) and the workers of a process pool. Then it waits forever.
_MAIN = textwrap.dedent(
    """
    import sys
    from concurrent.futures import ProcessPoolExecutor

    from tests.tasks.test_parallel import _block
    from tv100.tasks.parallel import mp_context

    out = sys.argv[1]
    ctx = mp_context()
    ctx.Process(target=_block, args=(out + "/process",), daemon=True).start()
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        list(pool.map(_block, [out + "/pool-0", out + "/pool-1"]))
    """
)

# A process that dies with another (argv[1]) where there is no pidfd: the polling fallback.
_WATCHER = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path

    import tv100.tasks.parallel as parallel

    parallel._pidfd_open = lambda pid: None  # as on a system without pidfd_open
    parallel.WATCH_INTERVAL_S = 0.05
    parallel.die_with(int(sys.argv[1]))
    Path(sys.argv[2]).write_text(str(parallel.creator_alive()))
    threading.Event().wait()
    """
)


def _start(script: str, *args: str) -> subprocess.Popen[bytes]:
    """`script` in a process group of its own, seeing this checkout's `tv100` and tests."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=str(REPO), start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    )


def test_workers_die_when_the_main_process_is_killed(tmp_path):
    """SIGKILL of the main process only (the OOM killer's way): its forkserver, its pool
    workers and a process it started itself all end, though nothing stopped them."""
    main = _start(_MAIN, str(tmp_path))
    names = ["process", "pool-0", "pool-1"]
    started = wait_for(main, lambda: all((tmp_path / n).exists() for n in names),
                       START_TIMEOUT_S, "starting the workers")
    assert started, f"the main process ended first (code {main.returncode})"
    workers = [int((tmp_path / n).read_text()) for n in names]
    assert len(set(workers) | {main.pid}) == 4
    in_group = set(group_members(main.pid))
    assert set(workers) <= in_group and len(in_group) >= 5  # + forkserver, resource tracker
    os.kill(main.pid, signal.SIGKILL)  # the main process only, not its group
    main.wait()
    assert survivors(main.pid, GONE_TIMEOUT_S) == []


def test_a_watched_process_without_pidfd_polls_its_creator(tmp_path):
    creator = _start("import threading; threading.Event().wait()")
    said = tmp_path / "alive"
    watcher = _start(_WATCHER, str(creator.pid), str(said))
    try:
        assert wait_for(watcher, said.exists, START_TIMEOUT_S, "starting the watcher")
        assert said.read_text() == "True"
        assert watcher.poll() is None
    finally:
        creator.kill()
        creator.wait()
    assert survivors(watcher.pid, GONE_TIMEOUT_S) == []
    assert watcher.wait() == -signal.SIGKILL


def test_a_process_that_watches_nothing_has_its_creator_alive():
    assert creator_alive()  # the test process: started by no mp_context


MAIN_SCRIPT = textwrap.dedent(
    """
    import os
    import sys

    # Imported again in a worker, the script leaves a mark (as __mp_main__).
    if __name__ != "__main__":
        with open(os.environ["MARKS"], "a") as f:
            f.write(f"imported as {__name__} in {os.getpid()}\\n")


    def own(x):
        return -x


    if __name__ == "__main__":
        from tv100.tasks.parallel import map_ordered

        others = map_ordered(abs, [-1, -2, -3, -4], workers=2, chunksize=1)
        print("others", others, flush=True)
        with open(os.environ["MARKS"], "a") as f:
            f.write("--\\n")
        mine = map_ordered(own, [1, 2, 3, 4], workers=2, chunksize=1)
        print("mine", mine, flush=True)
    """
)


def test_workers_import_the_main_script_only_for_its_own_functions(tmp_path):
    """A pool running importable functions does not make its workers run the main script
    again (CPython's forkserver would: the whole CLI for `tv100`); one running a function
    of the script itself still works, its workers importing the script."""
    script, marks = tmp_path / "script.py", tmp_path / "marks.txt"
    script.write_text(MAIN_SCRIPT)
    env = {**os.environ, "MARKS": str(marks), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True,
        timeout=START_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "others [1, 2, 3, 4]" in proc.stdout and "mine [-1, -2, -3, -4]" in proc.stdout
    before, after = marks.read_text().split("--\n")
    assert before == ""  # the first pool's workers never ran the script
    assert after.count("imported as __mp_main__") >= 1, after
