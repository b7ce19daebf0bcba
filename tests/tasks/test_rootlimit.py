"""tasks/rootlimit.py: one run per data root through a Prefect global concurrency limit.

On the session's Prefect server (the harness's). The limit is isolated from the file lock by
holding only the limit in a thread (as a run on another machine would: its file lock is
not this machine's), then asking for the root with `hold_root`, which takes the file lock
(free) and then the limit.
"""

from __future__ import annotations

import contextvars
import threading

import pytest

from tests.storage.test_lock import waiting  # noqa: F401  (fixture)
from tv100.storage.lock import RootBusyError, hold_root
from tv100.storage.root import DataRoot
from tv100.tasks import rootlimit

#: Hang guard for a thread to reach a point (not a measured duration).
HANG_S = 120.0


@pytest.fixture
def limit_on(prefect_harness, monkeypatch):
    monkeypatch.setenv(rootlimit.MODE_ENV, "auto")
    assert rootlimit.applies(), "the harness has a Prefect API URL"


class OtherRun:
    """The root's limit held by a thread until `release` (a run elsewhere holding it)."""

    def __init__(self, root: DataRoot) -> None:
        self.root = root
        self.holding = threading.Event()
        self.done = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._run,), daemon=True
        )

    def _run(self) -> None:
        try:
            with rootlimit.prefect_root_limit(self.root, "build", True, None):
                self.holding.set()
                self.done.wait(HANG_S)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.errors.append(err)
            self.holding.set()

    def __enter__(self) -> OtherRun:
        self.thread.start()
        assert self.holding.wait(HANG_S) and not self.errors, self.errors
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(HANG_S)


def test_limit_name_is_keyed_by_the_root(tmp_path):
    a, b = DataRoot(str(tmp_path / "a")), DataRoot(str(tmp_path / "b"))
    assert rootlimit.limit_name(a) == rootlimit.limit_name(DataRoot(str(tmp_path / "a")))
    assert rootlimit.limit_name(a) != rootlimit.limit_name(b)
    assert rootlimit.limit_name(a).startswith("tv100-data-root-")


def test_no_wait_refuses_in_one_line_while_another_run_holds_the_limit(limit_on, tmp_path):
    root = DataRoot(str(tmp_path / "data")).ensure()
    other = tmp_path / "other"  # another root: its own limit, free
    with OtherRun(root):
        with pytest.raises(RootBusyError) as err:
            with hold_root(root, wait=False, what="build"):
                pass
        message = str(err.value)
        assert "\n" not in message
        assert f"data root {root.url!r} is in use by another run (Prefect global " in message
        assert rootlimit.limit_name(root) in message and "--no-wait" in message
        with hold_root(str(other), wait=False, what="build"):  # not blocked
            pass
    # The refusal released the file lock it had taken, and the limit is free again.
    with hold_root(root, wait=False, what="build"):
        pass


def test_a_second_run_waits_for_the_limit(limit_on, tmp_path, waiting):  # noqa: F811
    root = DataRoot(str(tmp_path / "data")).ensure()
    got: list[str] = []

    def second() -> None:
        with hold_root(root, what="build"):
            got.append("held")

    with OtherRun(root) as other:
        waiter = threading.Thread(target=contextvars.copy_context().run, args=(second,))
        waiter.start()
        assert waiting.event.wait(HANG_S), "the second run never said it waits"
        assert any(rootlimit.limit_name(root) in m for m in waiting.messages)
        assert waiter.is_alive() and got == []
        other.done.set()
    waiter.join(HANG_S)
    assert got == ["held"]


def test_off_and_without_a_server_the_file_lock_alone(prefect_harness, monkeypatch, tmp_path):
    monkeypatch.setenv(rootlimit.MODE_ENV, "off")
    assert not rootlimit.applies()
    monkeypatch.setenv(rootlimit.MODE_ENV, "sometimes")
    with pytest.raises(ValueError, match="TV100_ROOT_LIMIT='sometimes'; expected one of"):
        rootlimit.applies()
