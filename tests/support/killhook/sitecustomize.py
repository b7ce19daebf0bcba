"""Kill a crash-test build at an event: the N-th rename of a matching file under its data root.

Not imported by tests: `tests.support.crash` puts this folder on the PYTHONPATH of a build
subprocess, so Python imports it at start-up in every process of the build (the driver,
its forkserver and every pool worker) and each one wraps `os.replace`. Every write the
product makes lands through a temp file and `os.replace` (`tv100.storage.atomic`), so
the renames are the build's events, in the order they happen, whatever the machine's load.

Configured by the environment variable ``TV100_KILL_SPEC`` (JSON; absent: nothing is
wrapped):

- ``data``: the data root; only renames onto paths under it count.
- ``log``: optional file; every rename under the root appends its root-relative target
  (one line, after the rename; ``O_APPEND`` writes of one short line do not interleave).
- ``kill``: optional ``{"pattern", "n", "when", "counter", "fired", "signal"}``: on the
  `n`-th rename (counted across all processes in the file `counter`, under an flock) whose
  relative target matches the `fnmatch` `pattern` (``*`` also matches ``/``), signal the
  build ``before`` the rename (the temp file is written, the target not yet replaced) or
  ``after`` it; the target is first written to the file `fired`. `signal` (default
  ``SIGKILL``): ``SIGKILL`` kills the whole process group (a machine dying), or with
  ``"main_only": true`` the group leader only (the build's main process, as the OOM killer
  kills one process: the others of the group live on); ``SIGTERM`` goes to the group leader
  only, as ``kill PID`` does; ``SIGINT`` goes to the whole group, as a terminal's Ctrl-C
  does. After SIGTERM, SIGINT or a main-only SIGKILL from another process, the rename goes
  on as usual.

A build whose parent ignores SIGINT (any command started with ``&`` from a non-interactive
shell inherits SIGINT ignored, and Python then keeps it ignored) would never see Ctrl-C;
a program run in a terminal always starts with SIGINT at its default. So every process of
the build starts from that default here, as it would under a terminal.
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal


def _install(spec: dict) -> None:  # type: ignore[type-arg]
    data = os.path.abspath(spec["data"]) + os.sep
    log = spec.get("log")
    kill = spec.get("kill")
    real_replace = os.replace

    def die(rel: str) -> None:
        with open(kill["fired"], "w") as f:
            f.write(rel)
        how = kill.get("signal", "SIGKILL")
        group = os.getpgid(0)
        if how == "SIGTERM":
            os.kill(group, signal.SIGTERM)  # the leader: the build's main process
            return
        if how == "SIGINT":
            os.killpg(group, signal.SIGINT)
            return
        if kill.get("main_only"):
            os.kill(group, signal.SIGKILL)  # the leader: the build's main process
            return
        os.killpg(group, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)  # not reached: the group includes this process

    def replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        path = os.path.abspath(os.fspath(dst))
        if not path.startswith(data):
            return real_replace(src, dst, *args, **kwargs)
        rel = path[len(data):]
        hit = bool(kill) and fnmatch.fnmatchcase(rel, kill["pattern"]) and (
            callsignal.count(kill["counter"]) == kill["n"])
        if hit and kill["when"] == "before":
            die(rel)
        out = real_replace(src, dst, *args, **kwargs)
        if log:
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (rel + "\n").encode())
            finally:
                os.close(fd)
        if hit:
            die(rel)
        return out

    os.replace = replace


_SPEC = os.environ.get("TV100_KILL_SPEC")
if _SPEC:
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _install(json.loads(_SPEC))
import callsignal  # noqa: E402  (signals at the N-th call of a function; its `count` is shared)
