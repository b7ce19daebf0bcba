"""`tv100.tasks.parallel`: the shared start method, ordered map and core count."""

from __future__ import annotations

import os
import signal

import pytest

from tv100.tasks.parallel import local_cores, map_ordered, mp_context


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
