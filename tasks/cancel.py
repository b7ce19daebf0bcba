"""Cancellation: SIGTERM and Ctrl-C stop a run within seconds; finished work stays.

`install` (called once, by the `tv100` console script) makes SIGINT and SIGTERM cancel the
run, three ways:

- Its handler raises `Cancelled` in the main thread, as Ctrl-C raises KeyboardInterrupt.
  `Cancelled` is a KeyboardInterrupt, so whatever already stops cleanly on Ctrl-C stops on
  it: typer's exit code 130, Prefect's crashed run, the downloader's pool shutdown, a torch
  DataLoader's workers.
- Every cancelling signal also sets one process-wide event, whoever's handler runs: a
  thread woken through `signal.set_wakeup_fd` sets it. (While a flow runs, Prefect puts its
  own SIGTERM handler in place, which raises `TerminationSignal` in the main thread and
  sends SIGTERM again once the flow has unwound.) Work running outside the main thread (a
  Prefect task in a worker thread) never sees the exception, so long loops call `check()`
  between units of work (a pre-training step, an embedding batch, a fine-tuning step, a
  hashing chunk) and stop there.
- A watchdog bounds the unwinding: `GRACE_S` after the first signal, a process still
  running (Prefect reporting the crash to an API server that the same Ctrl-C has killed,
  retrying for a minute; a thread that cannot be interrupted) says its last line, stops
  its child processes and exits with code 130.

A unit of work already written (a shard, a checkpoint) stays on disk, every write being a
temp file renamed into place, and a rerun resumes from it. A cancellation from the Prefect
UI is a SIGTERM to the run's process, so it takes the same path.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import InvalidStateError
from concurrent.futures.process import _ExecutorManagerThread
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType

#: The signals that cancel a run: Ctrl-C, and ``kill PID`` (or a Prefect cancellation).
SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: How long a cancelled run may take to unwind before the watchdog ends it (the issue's
#: bound is 5 s from the signal to the exit; the rest is the margin of a busy machine).
GRACE_S = 3.0
#: The exit code of a cancelled run (128 + SIGINT, as shells report Ctrl-C).
EXIT_CODE = 130

_event = threading.Event()
_lock = threading.RLock()  # re-entered when a signal lands while the main thread holds it
_received: list[int] = []  # the first cancelling signal
_said: list[str] = []  # the line said once cancelled (`announce`)
_installed: dict[str, object] = {}  # `install`'s line and wakeup socket pair


class Cancelled(KeyboardInterrupt):
    """The run was cancelled by a signal; raised in the main thread at once, elsewhere at a
    safe point (`check`). A KeyboardInterrupt, so code that handles Ctrl-C handles it too."""


def _mark(signum: int) -> None:
    """The first cancelling signal: set the event, start the watchdog (if installed)."""
    with _lock:
        if _event.is_set():
            return
        _received.append(signum)
        _event.set()
    if _installed:
        threading.Thread(target=_watchdog, name="tv100-cancel-watchdog", daemon=True).start()


def _handler(signum: int, frame: FrameType | None) -> None:
    """Mark the process cancelled and stop the main thread where it is."""
    del frame
    _mark(signum)
    raise Cancelled(signal.Signals(signum).name)


def _watch_wakeups(fd: int) -> None:
    """Read the signal numbers Python's C handler writes to the wakeup fd, forever."""
    while True:
        try:
            data = os.read(fd, 64)
        except InterruptedError:
            continue
        except OSError:
            return
        if not data:
            return
        for signum in data:
            if signum in SIGNALS:
                _mark(signum)


def _children() -> list[int]:
    """This process's child processes (from /proc; multiprocessing's own where none)."""
    me = os.getpid()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [p.pid for p in multiprocessing.active_children() if p.pid]
    out = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == me:  # after "pid (comm) state"
            out.append(int(entry))
    return out


def _watchdog() -> None:
    """`GRACE_S` after the first signal: end a process that is still unwinding."""
    time.sleep(GRACE_S)
    line = _installed.get("line")
    if isinstance(line, str):
        announce(line)
    for pid in _children():  # pool workers, the forkserver, Prefect's temporary server
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(EXIT_CODE)


def _quiet_pool_teardown(args: threading.ExceptHookArgs) -> None:
    """`threading.excepthook`: once the run is cancelled, a process pool's manager thread
    failing with InvalidStateError is the pool's teardown racing the signal, not an error.

    A signal to the whole group (Ctrl-C, ``timeout``) ends the pool's workers while the main
    thread, cancelled, cancels the pool's pending futures; Python 3.11's manager thread then
    sets "broken pool" on a future already cancelled and dies with a traceback on stderr.
    Every other exception goes to the hook in place before.
    """
    if (_event.is_set() and isinstance(args.exc_value, InvalidStateError)
            and isinstance(args.thread, _ExecutorManagerThread)):
        return
    _installed["excepthook"](args)  # type: ignore[operator]


def _forget_in_child() -> None:
    """After a fork: the child's signals are its own (not written to its parent's socket),
    and it has no watchdog of its parent's to start."""
    if _installed:
        _installed.clear()
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)


def install(line: str | None = None) -> None:
    """Make SIGINT and SIGTERM cancel the run (see the module docstring); once per process,
    from the main thread (elsewhere Python cannot set signal handlers: a no-op).

    Args:
        line: what a cancelled run says on stderr when the watchdog has to end it (once,
            `announce`).
    """
    if threading.current_thread() is not threading.main_thread() or _installed:
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    _installed.update(line=line, wakeup=(reader, writer),  # open for the life of the process
                      excepthook=threading.excepthook)
    threading.excepthook = _quiet_pool_teardown
    for signum in SIGNALS:
        signal.signal(signum, _handler)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    os.register_at_fork(after_in_child=_forget_in_child)
    threading.Thread(target=_watch_wakeups, args=(reader.fileno(),),
                     name="tv100-cancel-signals", daemon=True).start()


def cancelled() -> bool:
    """Whether a cancelling signal has arrived in this process."""
    return _event.is_set()


def check() -> None:
    """Raise `Cancelled` if a cancelling signal has arrived: call it between units of work.

    Raises:
        Cancelled: naming the signal.
    """
    if _event.is_set():
        raise Cancelled(signal.Signals(_received[0]).name)


def announce(line: str) -> None:
    """Write a cancelled run's last line to stderr: once per cancellation (the command
    line's own exit and the watchdog may both get there), every time without one (a
    KeyboardInterrupt that no signal caused)."""
    with _lock:
        if _event.is_set():
            if _said:
                return
            _said.append(line)
    with contextlib.suppress(Exception):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
