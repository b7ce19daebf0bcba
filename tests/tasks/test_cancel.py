"""`tv100.tasks.cancel`: SIGTERM and Ctrl-C reach the main thread, every worker thread's next
safe point and, past the grace period, a watchdog that ends the process with exit code 130.

Signals are real: each case runs in a subprocess of its own, which signals itself when it
is ready (an event), never after a delay. The stage-level cases (a real stage of the
pipeline, signalled mid-run) are in tests/cli/test_cancel_stages.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from tv100.tasks import cancel

#: A hang guard per subprocess, not a timing assertion.
RUN_TIMEOUT_S = 120


def run(script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` (after `PRELUDE`) in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, start_new_session=True,
    )


PRELUDE = textwrap.dedent(
    """
    import json, os, signal, sys, threading, time
    from tv100.tasks import cancel

    def out(**kw):
        print(json.dumps(kw), flush=True)
    """
)


def results(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for line in proc.stdout.splitlines():
        out.update(json.loads(line))
    return out


def test_without_a_signal_nothing_is_cancelled():
    assert not cancel.cancelled()
    cancel.check()  # no exception
    assert issubclass(cancel.Cancelled, KeyboardInterrupt)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_main_thread_and_every_worker_at_its_next_check(sig: str):
    proc = run(f"""
        cancel.install()
        ready, stopped = threading.Event(), []

        def work():
            ready.set()
            try:
                while True:  # units of work, each followed by a check
                    time.sleep(0.01)
                    cancel.check()
            except cancel.Cancelled as err:
                stopped.append(str(err))

        worker = threading.Thread(target=work)
        worker.start()
        ready.wait()
        try:
            os.kill(os.getpid(), signal.{sig})
            time.sleep(60)  # not reached: the handler raises at once
            out(main="not interrupted")
        except cancel.Cancelled as err:
            out(main=str(err), cancelled=cancel.cancelled())
        worker.join()
        out(worker=stopped)
    """)
    assert proc.returncode == 0, proc.stderr
    assert results(proc) == {"main": sig, "cancelled": True, "worker": [sig]}


def test_workers_stop_though_another_handler_owns_sigterm():
    """While a flow runs, Prefect's own SIGTERM handler raises its `TerminationSignal` in the
    main thread instead of ours: the process is still marked cancelled (through the wakeup
    fd), so worker threads stop at their next check."""
    proc = run("""
        class TerminationSignal(BaseException):
            pass

        def prefect_like(signum, frame):
            raise TerminationSignal(signum)

        cancel.install()
        previous = signal.signal(signal.SIGTERM, prefect_like)
        ready, stopped = threading.Event(), []

        def work():
            ready.set()
            try:
                while True:
                    time.sleep(0.01)
                    cancel.check()
            except cancel.Cancelled as err:
                stopped.append(str(err))

        worker = threading.Thread(target=work)
        worker.start()
        ready.wait()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(60)
        except TerminationSignal:
            signal.signal(signal.SIGTERM, previous)
        worker.join()
        out(worker=stopped, cancelled=cancel.cancelled())
    """)
    assert proc.returncode == 0, proc.stderr
    assert results(proc) == {"worker": ["SIGTERM"], "cancelled": True}


def test_the_watchdog_ends_a_run_that_does_not_unwind():
    """A run whose main thread swallows the interrupt (as Prefect does while it reports the
    crash to an API server the same Ctrl-C has stopped) is ended `GRACE_S` after the signal:
    its one line, its child processes stopped, exit code 130."""
    proc = run("""
        import subprocess
        cancel.install(line="tv100: cancelled (test)")
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        out(child=child.pid)
        signalled = False
        while True:
            try:
                if not signalled:
                    signalled = True
                    os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
            except KeyboardInterrupt:
                pass  # and go on, as if stuck
    """)
    assert proc.returncode == cancel.EXIT_CODE, (proc.returncode, proc.stderr)
    assert proc.stderr.strip().splitlines() == ["tv100: cancelled (test)"], proc.stderr
    child = int(results(proc)["child"])  # type: ignore[call-overload]
    deadline = time.monotonic() + 30  # a hang guard: the child was sent SIGTERM
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child), "the watchdog left a child process running"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_announce_says_the_line_once_per_cancellation():
    """The command line's exit and the watchdog may both get there: one line. Without a
    cancellation (a KeyboardInterrupt no signal caused), every call says it."""
    proc = run("""
        cancel.announce("tv100: no signal")
        cancel.announce("tv100: no signal")
        cancel.install()
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(60)
        except cancel.Cancelled:
            cancel.announce("tv100: cancelled")
            cancel.announce("tv100: cancelled")
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines == ["tv100: no signal", "tv100: no signal", "tv100: cancelled"], lines


def test_a_pool_torn_down_by_the_signal_leaves_no_traceback():
    """Python 3.11's process pool, broken by a group signal while the cancelled main thread
    cancels its futures, fails in its manager thread (InvalidStateError, a traceback on
    stderr). Once cancelled, that one is quiet; any other thread error is still shown."""
    proc = run("""
        from concurrent.futures import InvalidStateError
        from concurrent.futures.process import _ExecutorManagerThread

        class Manager(_ExecutorManagerThread):
            def __init__(self, error):
                threading.Thread.__init__(self)
                self.error = error

            def run(self):
                raise self.error

        def thread_error(error, thread_class=Manager):
            t = thread_class(error)
            t.start()
            t.join()

        cancel.install()
        thread_error(InvalidStateError("before the signal"))
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(60)
        except cancel.Cancelled:
            pass
        thread_error(InvalidStateError("pool teardown"))
        thread_error(ValueError("another error"))
    """)
    assert proc.returncode == 0, proc.stderr
    assert "before the signal" in proc.stderr and "another error" in proc.stderr
    assert "pool teardown" not in proc.stderr, proc.stderr


def test_install_outside_the_main_thread_is_a_no_op():
    proc = run("""
        import threading
        t = threading.Thread(target=cancel.install)
        t.start(); t.join()
        out(handler=signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    """)
    assert proc.returncode == 0, proc.stderr
    assert results(proc) == {"handler": True}
