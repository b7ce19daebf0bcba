"""storage/lock.py: one run per data root (issue 14, item 4; issue 17, defect 6).

The holder of a local root is a real second process (`HolderProcess`): it takes the lock, says so
on its stdout, and keeps it until its stdin closes, or it is killed. Every wait is on such an
event (a line on a pipe, a log record), with a generous hang guard, never on time.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

from tv100.storage import lock
from tv100.storage.lock import LOCK_FILE, Holder, RootBusyError, hold_root, read_holder
from tv100.storage.root import DataRoot, DataRootError

#: Hang guard for a holder process to start (a busy machine imports slowly), in seconds.
START_S = 120.0

HOLDER = textwrap.dedent(
    """
    import sys

    from tv100.storage.lock import RootBusyError, hold_root

    try:
        with hold_root(sys.argv[1], wait=sys.argv[3] == "wait", what=sys.argv[2]):
            print("held", flush=True)
            sys.stdin.read()  # until the test closes it (or kills this process)
    except RootBusyError as err:
        print(f"busy: {err}", flush=True)
    """
)


class HolderProcess:
    """A process holding the lock of `data` (``what``) until `release` or `kill`."""

    def __init__(self, data: str, what: str = "build", wait: bool = True) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, data, what, "wait" if wait else "no-wait"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_S)
        line = self.proc.stdout.readline() if ready else ""
        if line.startswith("busy: "):
            self.kill()
            raise RootBusyError(line.removeprefix("busy: ").strip())
        if line != "held\n":
            self.kill()
            raise AssertionError(f"the holder did not take the lock: {line!r}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(START_S) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(START_S)  # reaped: its descriptors are closed

    def __enter__(self) -> HolderProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()


@pytest.fixture
def data(tmp_path) -> str:
    return str(tmp_path / "data")


class WaitingLog(logging.Handler):
    """Sets `event` when `tv100.lock` logs that it waits for the lock."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.event = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if "waiting for it" in record.getMessage():
            self.event.set()


@pytest.fixture
def waiting():
    handler = WaitingLog()
    logger = logging.getLogger("tv100.lock")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.WARNING)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_a_second_run_refuses_in_one_line_naming_the_holder(data):
    with HolderProcess(data, "build") as holder:
        with pytest.raises(RootBusyError) as err:
            with hold_root(data, wait=False, what="discover"):
                pass
    message = str(err.value)
    assert "\n" not in message
    assert f"data root {data!r} is in use by build (pid {holder.pid}, since " in message
    assert "without --no-wait" in message
    assert isinstance(err.value, DataRootError)  # the CLI prints these as one line, exit 2


def test_a_second_run_waits_for_the_first(data, waiting):
    got: list[Holder] = []
    with HolderProcess(data) as holder:
        waiter = threading.Thread(target=lambda: got.append(_hold_once(data)))
        waiter.start()
        assert waiting.event.wait(START_S), "the second run never said it waits"
        assert not got  # it waits
        assert f"pid {holder.pid}" in waiting.messages[0]
        holder.release()
        waiter.join(START_S)
    assert got and got[0].pid == os.getpid()


def _hold_once(data: str) -> Holder:
    with hold_root(data, what="second") as holder:
        return holder


def test_waiting_gives_up_after_its_timeout(data):
    with HolderProcess(data) as holder, pytest.raises(RootBusyError) as err:
        with hold_root(data, timeout_s=0.2, what="second"):
            pass
    assert f"still in use by build (pid {holder.pid}" in str(err.value)
    assert "after waiting 0.2 s" in str(err.value)


def test_a_killed_holder_frees_the_lock_at_once(data):
    holder = HolderProcess(data)
    holder.proc.send_signal(signal.SIGKILL)
    holder.kill()  # reaped
    killed = read_holder(data)
    assert killed is not None and killed.pid == holder.pid  # its record stays ...
    with hold_root(data, wait=False, what="next") as ours:  # ... but not its lock
        assert ours.pid == os.getpid()
        assert read_holder(data) == ours


def test_the_lock_file_says_who_holds_it_and_stays(data):
    os.makedirs(data)
    before = os.path.join(data, "before")
    open(before, "wb").close()
    with hold_root(data, what="build") as holder:
        assert read_holder(data) == holder
        assert holder.what == "build" and holder.pid == os.getpid() and holder.token
        assert holder.command  # this process's command line, for the message
        with open(os.path.join(data, LOCK_FILE)) as f:
            assert json.load(f)["pid"] == os.getpid()
        # The stamp is on the data root's clock: a file from just before the hold is older,
        # even with the filesystem's coarse clock; one from within it is not.
        after = os.path.join(data, "after")
        open(after, "wb").close()
        assert os.stat(before).st_ctime < holder.stamp <= os.stat(after).st_ctime
    assert read_holder(data) is None  # released: no holder to name
    assert os.path.exists(os.path.join(data, LOCK_FILE))  # the file stays


def test_the_lock_is_reentrant_in_its_thread_and_its_context(data):
    with hold_root(data, what="build") as outer:
        with hold_root(DataRoot(data), wait=False, what="discover") as inner:
            assert inner is outer  # a stage flow run by the build shares its hold
        # A Prefect task thread runs in a copy of the flow's context: it shares the hold.
        ctx = contextvars.copy_context()
        shared: list[Holder] = []
        task = threading.Thread(target=ctx.run, args=(lambda: shared.append(_try(data)),))
        task.start()
        task.join(START_S)
        assert shared == [outer]
        # An unrelated thread does not.
        other: list[object] = []
        thread = threading.Thread(target=lambda: other.append(_try(data)))
        thread.start()
        thread.join(START_S)
        assert isinstance(other[0], RootBusyError)
        # The nested holds released nothing.
        with pytest.raises(RootBusyError, match=f"pid {os.getpid()}"):
            HolderProcess(data, wait=False)
    with HolderProcess(data, wait=False):  # released at the end of the outer hold
        pass


def _try(data: str) -> Holder | RootBusyError:
    try:
        with hold_root(data, wait=False, what="nested") as holder:
            return holder
    except RootBusyError as err:
        return err


def test_the_same_folder_by_two_names_is_one_lock(data, monkeypatch, tmp_path):
    os.makedirs(data)
    monkeypatch.chdir(tmp_path)
    with HolderProcess(data), pytest.raises(RootBusyError):
        with hold_root("./data", wait=False, what="relative"):
            pass


def test_a_lock_file_deleted_while_waiting_is_not_a_second_lock(data, waiting):
    """Whoever deletes the lock file cannot let two runs in: a waiter that wakes up on the
    deleted file locks the new one."""
    with HolderProcess(data) as holder:
        got: list[Holder] = []
        waiter = threading.Thread(target=lambda: got.append(_hold_once(data)))
        waiter.start()
        assert waiting.event.wait(START_S)
        os.remove(os.path.join(data, LOCK_FILE))
        with hold_root(data, wait=False, what="third"):  # takes the new file's lock
            holder.release()  # the waiter wakes up on the old file ...
            assert not got  # ... and waits again, on the new one
        waiter.join(START_S)
    assert got and got[0].what == "second"


# -- other filesystems: a lease -------------------------------------------------------------


def test_a_remote_root_has_a_lease(monkeypatch):
    data = "memory://lease-test/data"
    root = DataRoot(data)
    with hold_root(data, what="build") as holder:
        record = read_holder(data)
        assert record is not None and record.token == holder.token
        assert record.expires is not None and record.expires > time.time()
        other: list[object] = []
        thread = threading.Thread(target=lambda: other.append(_try(data)))
        thread.start()
        thread.join(START_S)
        assert isinstance(other[0], RootBusyError)
        assert f"pid {os.getpid()}" in str(other[0])
    assert not root.fs.exists(root.path(LOCK_FILE))  # released


def test_an_expired_lease_is_taken_over():
    data = "memory://lease-test/expired"
    root = DataRoot(data)
    stale = Holder(pid=1, host="elsewhere", what="build", command="tv100 build", started=0.0,
                   stamp=0.0, token="stale", expires=time.time() - 1)
    root.fs.pipe(root.path(LOCK_FILE), stale.to_bytes())
    with hold_root(data, wait=False, what="next") as holder:
        assert read_holder(data) is not None and read_holder(data).token == holder.token


def test_the_lease_is_renewed_while_held(monkeypatch):
    data = "memory://lease-test/renewed"
    monkeypatch.setattr(lock, "LEASE_S", 0.3)  # renewed every 0.1 s
    with hold_root(data, what="build") as holder:
        first = read_holder(data)
        assert first is not None
        deadline = time.monotonic() + START_S
        while (read_holder(data) or first).expires == first.expires:  # the renewal, an event
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.01)
        renewed = read_holder(data)
        assert renewed is not None and renewed.token == holder.token
