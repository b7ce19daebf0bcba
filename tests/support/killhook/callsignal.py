"""Signal a run at an event: the N-th call of a named function, in whichever process calls it.

The companion of the rename hook in `sitecustomize.py` (which imports this module), for
stages whose events are not renames: a pre-training step, a hashing worker's image, an
embedding batch. Python imports it at start-up in every process of the run (the main
process, its forkserver and every pool or DataLoader worker), because `tests.support.cancel`
puts this folder on the PYTHONPATH.

Configured by the environment variable ``TV100_SIGNAL_SPEC`` (JSON; absent: nothing is
wrapped):

- ``call``: ``"package.module:function"`` (or ``module:Class.method``): the function is
  wrapped as soon as its module is imported (an import hook), in every process.
- ``n``: on the `n`-th call, counted across all processes in the file ``counter`` (under an
  flock), once the call has returned, the run is signalled: ``signal`` ``SIGTERM`` goes to
  the group leader only, as ``kill PID`` does, or with ``"group": true`` to the whole group,
  as ``timeout`` and ``kill -- -PGID`` do; ``SIGINT`` to the whole group, as a terminal's
  Ctrl-C does. Just before, the file ``fired`` gets one JSON line
  ``{"monotonic", "pid"}`` (CLOCK_MONOTONIC is one clock for every process of a machine).
- ``exit``: the group leader (the run's main process) writes ``{"monotonic", "cpu"}`` there
  when it ends: at exit (its exit code set, every thread joined), from an `atexit` callback
  registered here, first, so it runs after all the others (Prefect's server shutdown
  included); or at an ``os._exit`` (a watchdog's). A process killed by a signal writes
  nothing.

So the run measures its own stop, from the signal to its end, on one clock, whatever the
test process is doing meanwhile.
"""

from __future__ import annotations

import atexit
import fcntl
import functools
import importlib.abc
import importlib.util
import json
import os
import signal
import sys
import time
from typing import Any


def count(counter: str) -> int:
    """Add one to the cross-process counter in file `counter`, under its lock; the new value."""
    fd = os.open(counter, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        n = int(os.read(fd, 32) or b"0") + 1
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, str(n).encode())
        return n
    finally:
        os.close(fd)  # releases the lock


def _fire(spec: dict[str, Any]) -> None:
    with open(spec["fired"], "w") as f:
        f.write(json.dumps({"monotonic": time.monotonic(), "pid": os.getpid()}))
    group = os.getpgid(0)
    if spec.get("signal", "SIGTERM") == "SIGINT":
        os.killpg(group, signal.SIGINT)
    elif spec.get("group"):
        os.killpg(group, signal.SIGTERM)
    else:
        os.kill(group, signal.SIGTERM)  # the leader: the run's main process


def _wrap(module: Any, spec: dict[str, Any]) -> None:
    owner = module
    *path, name = spec["call"].split(":", 1)[1].split(".")
    for part in path:
        owner = getattr(owner, part)
    real = getattr(owner, name)

    @functools.wraps(real)
    def counted(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        if count(spec["counter"]) == spec["n"]:
            _fire(spec)
        return out

    setattr(owner, name, counted)


class _WrapOnImport(importlib.abc.MetaPathFinder):
    """Wraps the function once its module has been executed (in this process)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.module = spec["call"].split(":", 1)[0]

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.module:
            return None
        sys.meta_path.remove(self)  # find the real spec without coming back here
        try:
            found = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if found is None or found.loader is None:
            return None
        loader = found.loader
        execute = loader.exec_module  # type: ignore[union-attr]

        def exec_module(module: Any) -> None:
            execute(module)
            _wrap(module, self.spec)
            sys.meta_path.remove(self)  # once per process

        loader.exec_module = exec_module  # type: ignore[union-attr]
        return found


def _record_exit(path: str) -> None:
    with open(path, "w") as f:
        f.write(json.dumps({"monotonic": time.monotonic(), "cpu": time.process_time()}))


def _record_exits(path: str) -> None:
    """In the group leader: note its end, at exit or at `os._exit` (a watchdog's)."""
    atexit.register(_record_exit, path)
    real_exit, leader = os._exit, os.getpid()

    def exit_now(code: int) -> Any:
        if os.getpid() == leader:
            _record_exit(path)
        real_exit(code)

    os._exit = exit_now


def install(spec: dict[str, Any]) -> None:
    """Install the hook `spec` describes (see the module docstring) in this process."""
    if spec.get("exit") and os.getpid() == os.getpgid(0):
        _record_exits(spec["exit"])
    if spec.get("call"):
        module = spec["call"].split(":", 1)[0]
        if module in sys.modules:
            _wrap(sys.modules[module], spec)
        else:
            sys.meta_path.insert(0, _WrapOnImport(spec))


_SPEC = os.environ.get("TV100_SIGNAL_SPEC")
if _SPEC:
    # As in sitecustomize.py: a run started from a non-interactive shell's ``&`` inherits
    # SIGINT ignored; a terminal's Ctrl-C would reach it at its default.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    install(json.loads(_SPEC))
