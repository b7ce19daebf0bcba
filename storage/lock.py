"""The data-root lock: one build, refresh or stage run writes a data root at a time.

A local root is locked by an exclusive ``fcntl.flock`` on ``<root>/.tv100.lock``. The file
stays; the lock is the kernel's and dies with the process that holds it, so a killed build
never leaves a stale lock (the next run takes it at once). The holder writes who it is into
the file (pid, host, what it runs, its command line and start time), only for the message a
second run prints: ``data root './data' is in use by build (pid 1234, since 08:12:03, ...)``.
The descriptor is opened close-on-exec, and worker pools start from a forkserver
(`tv100.tasks.parallel`), so no child process inherits the lock.

A root on another filesystem (``s3://``, ``memory://``, ...) gets a best-effort lease: the
lock file holds the holder's record with a random token and an expiry, renewed by a thread
while the lock is held, and the holder reads its token back after writing it. Limits:
object stores offer fsspec no compare-and-swap, so two runs that start within the same
moment can both win; the expiry is on the holders' wall clocks, so their skew counts; and a
killed holder blocks the root until its lease (`LEASE_S`) runs out.

The lock is re-entrant: a build holds it and runs the stage flows, which take it again. A
nested `hold_root` in the same thread, or in a thread whose context was copied from the
holder's (Prefect's task runner copies it), shares the outer hold; any other thread or
process waits for it, or with ``wait=False`` gets a one-line `RootBusyError`.

Beside the file lock, an outermost hold takes every guard added with `add_guard`, after it:
`tv100.tasks` adds the Prefect global concurrency limit keyed by the root
(`tv100.tasks.rootlimit`), which serialises runs on several machines reporting to one
Prefect server.

The holder's `Holder.stamp` (the lock file's own time after the holder wrote it) is when its
run began on the data root's clock: `tv100.storage.root.remove_temp_files` sweeps only the
temp entries older than that.
"""

from __future__ import annotations

import contextvars
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime

from tv100.storage.root import DataRoot, DataRootError, modified_time, resolve_root

LOCK_FILE = ".tv100.lock"
#: How long a non-local root's lease lasts unless renewed (renewed every third of it).
LEASE_S = 120.0
#: How often a waiter looks again where it cannot block on the lock itself (a timeout, a
#: non-local root).
POLL_S = 0.5
#: Longest wait for the filesystem's clock to tick past the lock file's time (`_tick`).
_TICK_WAIT_S = 2.0
#: Longest command line kept in the lock file (the message quotes it).
_COMMAND_CHARS = 80

log = logging.getLogger("tv100.lock")


class RootBusyError(DataRootError):
    """The data root is locked by another run (the message names it, in one line)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a data root's lock: the record in its lock file.

    Attributes:
        pid: the holder's process id.
        host: the holder's host name.
        what: what it runs (``build``, ``discover``, ...).
        command: its command line, shortened.
        started: when it took the lock (wall clock, seconds since the epoch).
        stamp: the same moment on the data root's own clock (the lock file's modification
            time after the record was written, past the clock's next tick), which temp
            entries' times are compared with: every entry older than the hold is older.
        token: a random id of this hold (the lease's owner, on non-local roots).
        expires: the end of the lease (non-local roots only), wall clock.
    """

    pid: int
    host: str
    what: str
    command: str
    started: float
    stamp: float
    token: str = ""
    expires: float | None = None

    def describe(self) -> str:
        """``build (pid 1234, since 08:12:03, `tv100 build ...`)``: for messages."""
        at = datetime.fromtimestamp(self.started)
        since = f"{at:%H:%M:%S}" if at.date() == datetime.now().date() else f"{at:%Y-%m-%d %H:%M}"
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        command = f", `{self.command}`" if self.command else ""
        return f"{self.what} (pid {self.pid}{where}, since {since}{command})"

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, content: bytes) -> Holder | None:
        """The record in a lock file; None when it is empty or unreadable (being written)."""
        try:
            data = json.loads(content)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError, KeyError):
            return None


@dataclass
class _Held:
    """A hold of this process: its record, how to release it, and how many nest in it."""

    holder: Holder
    release: Callable[[], None]
    thread: int
    depth: int = 1


#: Holds of this process, by lock path.
_HELD: dict[str, _Held] = {}
_HELD_LOCK = threading.Lock()
#: Lock paths held by this context (copied into Prefect's task threads and nested flows).
_IN_CONTEXT: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "tv100_roots_held", default=frozenset()
)


def _command() -> str:
    argv = [os.path.basename(sys.argv[0]), *sys.argv[1:]] if sys.argv else []
    text = shlex.join(argv)
    if argv[:1] == ["-c"]:  # python -c '...'
        text = f"python {text}"
    return text if len(text) <= _COMMAND_CHARS else text[: _COMMAND_CHARS - 1] + "…"


def _new_holder(what: str) -> Holder:
    now = time.time()
    return Holder(pid=os.getpid(), host=socket.gethostname(), what=what, command=_command(),
                  started=now, stamp=now, token=uuid.uuid4().hex)


def read_holder(root: DataRoot | str | None) -> Holder | None:
    """Who holds (or last held) the lock of `root`, as its lock file says; None if nobody.

    For messages only: a local root's record is cleared when its lock is released, but a
    killed holder's stays until the next one overwrites it; whether the lock is held is the
    kernel's to say (`hold_root`).
    """
    droot = resolve_root(root)
    try:
        with droot.fs.open(droot.path(LOCK_FILE), "rb") as f:
            return Holder.from_bytes(f.read())
    except (FileNotFoundError, OSError):
        return None


def _busy(root: DataRoot, holder: Holder | None, waited_s: float | None) -> RootBusyError:
    who = holder.describe() if holder else "another run"
    if waited_s is None:
        fix = "rerun when it has finished, or without --no-wait to wait for it"
        return RootBusyError(f"data root {root.url!r} is in use by {who}; {fix}")
    return RootBusyError(
        f"data root {root.url!r} is still in use by {who} after waiting {waited_s:g} s; "
        "rerun when it has finished"
    )


def _announce(root: DataRoot) -> None:
    holder = read_holder(root)
    log.warning("data root %r is in use by %s; waiting for it to finish", root.url,
                holder.describe() if holder else "another run")


# --- local roots: flock -------------------------------------------------------------------


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _flock_file(root: DataRoot, wait: bool, timeout_s: float | None) -> int:
    """An open descriptor of the root's lock file, exclusively locked; RootBusyError if not."""
    path = root.path(LOCK_FILE)
    os.makedirs(root.base, exist_ok=True)
    begun = time.monotonic()
    announced = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if not _try_flock(fd):
                if not wait:
                    raise _busy(root, read_holder(root), None)
                if not announced:
                    _announce(root)
                    announced = True
                if timeout_s is None:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # until the holder releases it or dies
                else:
                    while not _try_flock(fd):
                        if time.monotonic() - begun >= timeout_s:
                            raise _busy(root, read_holder(root), timeout_s)
                        time.sleep(POLL_S)
            # Locked: but if the file was deleted and made again meanwhile, lock that one.
            if os.path.exists(path) and os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _write_record(fd: int, holder: Holder) -> None:
    content = holder.to_bytes()
    os.pwrite(fd, content, 0)
    os.ftruncate(fd, len(content))


def _tick(fd: int) -> float:
    """Touch the lock file until the filesystem's clock has moved on; its new mtime.

    File times come from a coarse clock (a 4 ms tick here, a server's clock on NFS), so a
    temp written just before the hold can carry the lock file's first time. After the tick,
    every entry from before the hold is older than the returned time and every later one is
    at least as new.
    """
    first = os.fstat(fd).st_mtime_ns
    give_up = time.monotonic() + _TICK_WAIT_S  # a clock stepped back: do not spin on it
    while True:
        os.utime(fd)  # to now, on the filesystem's clock
        st = os.fstat(fd)
        if st.st_mtime_ns > first or time.monotonic() > give_up:
            return st.st_mtime
        time.sleep(0.001)


def _hold_local(root: DataRoot, what: str, wait: bool, timeout_s: float | None) -> _Held:
    fd = _flock_file(root, wait, timeout_s)
    try:
        holder = _new_holder(what)
        _write_record(fd, holder)
        holder = replace(holder, stamp=_tick(fd))
        _write_record(fd, holder)
    except BaseException:
        os.close(fd)
        raise

    def release() -> None:
        try:
            os.ftruncate(fd, 0)  # nobody holds it now: no record to quote
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    return _Held(holder, release, threading.get_ident())


# --- other filesystems: a lease -------------------------------------------------------------


def _write_lease(root: DataRoot, holder: Holder) -> Holder:
    leased = replace(holder, expires=time.time() + LEASE_S)
    root.fs.pipe(root.path(LOCK_FILE), leased.to_bytes())
    return leased


def _hold_lease(root: DataRoot, what: str, wait: bool, timeout_s: float | None) -> _Held:
    ours = _new_holder(what)
    begun = time.monotonic()
    announced = False
    root.fs.makedirs(root.base, exist_ok=True)
    while True:
        current = read_holder(root)
        if current is None or (current.expires or 0.0) <= time.time():
            leased = _write_lease(root, ours)
            mine = read_holder(root)
            if mine is not None and mine.token == ours.token:  # nobody wrote after us
                break
            continue
        if not wait:
            raise _busy(root, current, None)
        if timeout_s is not None and time.monotonic() - begun >= timeout_s:
            raise _busy(root, current, timeout_s)
        if not announced:
            _announce(root)
            announced = True
        time.sleep(POLL_S)
    stamp = modified_time(root, root.path(LOCK_FILE))
    holder = _write_lease(root, replace(leased, stamp=leased.started if stamp is None else stamp))
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE_S / 3):
            current = read_holder(root)
            if current is None or current.token != holder.token:
                log.warning("lost the lease on data root %r to %s", root.url,
                            current.describe() if current else "nobody")
                return
            _write_lease(root, holder)

    renewer = threading.Thread(target=renew, name="tv100-root-lease", daemon=True)
    renewer.start()

    def release() -> None:
        stop.set()
        renewer.join()
        current = read_holder(root)
        if current is not None and current.token == holder.token:
            root.fs.rm(root.path(LOCK_FILE))

    return _Held(holder, release, threading.get_ident())


# --- guards: locks a hold takes beside the file lock ------------------------------------------

#: A guard: ``guard(root, what, wait, timeout_s)`` returns a context manager that holds some
#: other lock on the root for the block (raising `RootBusyError` when it cannot), e.g. a
#: Prefect global concurrency limit for runs on several machines (`tv100.tasks.rootlimit`).
Guard = Callable[[DataRoot, str, bool, "float | None"], AbstractContextManager[object]]
_GUARDS: list[Guard] = []


def add_guard(guard: Guard) -> None:
    """Make every outermost `hold_root` also hold `guard`, after the file lock (idempotent).

    Every run takes the file lock first and the guards next, in the order they were added,
    so two runs never wait for each other in a cycle.
    """
    if guard not in _GUARDS:
        _GUARDS.append(guard)


def _with_guards(root: DataRoot, what: str, wait: bool, timeout_s: float | None,
                 held: _Held) -> _Held:
    """`held` extended with every guard's hold; released (file lock too) if one fails."""
    stack = ExitStack()
    try:
        for guard in _GUARDS:
            stack.enter_context(guard(root, what, wait, timeout_s))
    except BaseException:
        stack.close()
        held.release()
        raise
    release_file = held.release

    def release() -> None:
        try:
            stack.close()
        finally:
            release_file()

    held.release = release
    return held


# --- the lock ---------------------------------------------------------------------------------


def _nested(key: str) -> _Held | None:
    """This process's hold of `key` if the caller is inside it (same thread or context)."""
    with _HELD_LOCK:
        held = _HELD.get(key)
        if held is None or (key not in _IN_CONTEXT.get() and held.thread != threading.get_ident()):
            return None
        held.depth += 1
        return held


@contextmanager
def hold_root(
    root: DataRoot | str | None,
    *,
    wait: bool = True,
    timeout_s: float | None = None,
    what: str,
) -> Iterator[Holder]:
    """Hold the data root's lock for the block: one writing run per data root.

    Args:
        root: the data root (a `DataRoot`, a path or an fsspec URL; None: the default,
            `tv100.storage.root.resolve_root`).
        wait: wait while another run holds it (logging once who that is); False: raise
            `RootBusyError` at once.
        timeout_s: with `wait`, give up after this long (`RootBusyError`); None: no limit.
        what: what the caller runs, for the message another run prints (``build``, ...).

    Yields:
        The holder: this hold's record, or the outer one's when the caller already holds
        the lock (a nested hold waits for nothing and releases nothing).

    Raises:
        RootBusyError: another run holds the lock (``wait=False``, or after `timeout_s`).
    """
    droot = resolve_root(root)
    key = droot.uri(LOCK_FILE)
    held = _nested(key)
    if held is None:
        hold = _hold_local if droot.is_local else _hold_lease
        held = _with_guards(droot, what, wait, timeout_s, hold(droot, what, wait, timeout_s))
        with _HELD_LOCK:
            _HELD[key] = held
    token = _IN_CONTEXT.set(_IN_CONTEXT.get() | {key})
    try:
        yield held.holder
    finally:
        try:
            _IN_CONTEXT.reset(token)
        except ValueError:  # left in another context than it was entered: that copy ends
            pass
        with _HELD_LOCK:
            held.depth -= 1
            last = held.depth == 0
            if last:
                del _HELD[key]
        if last:
            held.release()
