"""Progress of long work: a live display on a terminal, a progress artifact in the Prefect
UI, and one summary line when it is done; and tv100's logs in the Prefect API.

Every long stage (search, download, hashing, quality, embedding, the sandbox CLIP's
pre-training, fine-tuning) wraps its loop in `track`::

    with track("hash", total=len(items), unit="images", key="clean-hash-progress") as t:
        rows = map_ordered(fn, items, progress=t)   # or t.advance() per item

A `Tracker` is a ``(done, total)`` callback (`ProgressFn`), called in the process that runs
the loop: for a pool of worker processes, where the ordered map hands their results back
(`tv100.tasks.parallel.map_ordered`), never in a worker. It drives three things:

- on a terminal (stderr is a tty, or ``TV100_PROGRESS=1``; ``0`` turns it off), a row of
  one rich display shared by everything tracked in this process at once: count, rate, ETA
  and the caller's note (a loss). The display prints through the console of Prefect's log
  handler, so log lines appear above it rather than through it. Worker processes never
  draw one.
- inside a Prefect flow or task run, a progress artifact under `key` (the run's
  "Artifacts" tab), updated at most every `ARTIFACT_INTERVAL_S`, and at the end. With no
  run context (a plain function call) there is none, and nothing fails; neither does the
  stage when the API refuses an artifact (one warning, then no more tries).
- when the work ends normally, one summary line on the ``tv100.progress`` logger, flagged
  `CONSOLE_ATTR` so the command line prints it without ``--verbose``.

Logs: tv100's loggers (``tv100.*``) reach the Prefect API as Prefect's "extra loggers"
(``PREFECT_LOGGING_EXTRA_LOGGERS=tv100``, the default the command line sets). `route_logs`
does the same in a process whose Prefect logging was set up without it (a flow run started
by a worker), and gives them Prefect's log level, so INFO lines (a fine-tune's
``epoch E/N: loss L lr R``) are sent too. Every `track` calls it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

    from rich.console import Console
    from rich.progress import Progress, TaskID

log = logging.getLogger("tv100.progress")

ProgressFn = Callable[[int, int], None]
"""A progress callback: ``(done, total)``."""

#: ``1``: draw the display even when stderr is not a terminal; ``0``: never draw it.
DISPLAY_ENV = "TV100_PROGRESS"
#: A log record with this attribute set is printed on the console without ``--verbose``.
CONSOLE_ATTR = "tv100_console"
#: The least time between two updates of a progress artifact (the last one always goes).
ARTIFACT_INTERVAL_S = 1.5
#: The root of tv100's loggers, registered as a Prefect extra logger.
LOGGER = "tv100"
#: Prefect's setting (an environment variable) naming its extra loggers.
EXTRA_LOGGERS_ENV = "PREFECT_LOGGING_EXTRA_LOGGERS"


# --- logs --------------------------------------------------------------------------------------


def route_logs() -> None:
    """tv100's loggers at Prefect's log level, and sent to the Prefect API (idempotent).

    Prefect adds its API handler to its extra loggers when it sets its logging up, which a
    flow run started by a worker does before it imports tv100; this adds one afterwards,
    unless ``PREFECT_LOGGING_EXTRA_LOGGERS`` was set without ``tv100``, that sends the
    records of flow and task runs and drops the others. Processes started from here inherit
    the setting. Does nothing before Prefect is imported (no run to send logs to).
    """
    os.environ.setdefault(EXTRA_LOGGERS_ENV, LOGGER)
    if "prefect.logging.handlers" not in sys.modules:
        return
    from prefect.logging.handlers import APILogHandler

    logger = logging.getLogger(LOGGER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.getLogger("prefect").getEffectiveLevel())
    wanted = [n.strip() for n in os.environ[EXTRA_LOGGERS_ENV].split(",")]
    if LOGGER not in wanted or any(isinstance(h, APILogHandler) for h in logger.handlers):
        return
    handler = APILogHandler()
    # Outside a run (a plain function call) there is no run to send to: drop the record
    # quietly, where Prefect's own handler would warn about each one.
    handler.addFilter(lambda r: bool(getattr(r, "flow_run_id", None)) or in_prefect_run())
    logger.addHandler(handler)


# --- text --------------------------------------------------------------------------------------


def format_seconds(seconds: float) -> str:
    """``0.4 s``, ``12 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def rate_text(count: float, seconds: float, unit: str) -> str:
    """How fast: ``12.5 images/s``, or per item when slower than one a second
    (``4.2 s each``); empty when there is nothing to measure."""
    if count <= 0 or seconds <= 0:
        return ""
    per_s = count / seconds
    return f"{per_s:,.1f} {unit}/s" if per_s >= 1 else f"{seconds / count:,.1f} s each"


def summary_line(
    label: str,
    done: int,
    total: int,
    unit: str,
    seconds: float,
    before: int = 0,
    note: str = "",
) -> str:
    """The line a tracked stage ends with.

    Args:
        label: what was done (``"download"``).
        done: items done, `before` included.
        total: items in all.
        unit: what an item is, plural (``"images"``).
        seconds: how long this run took.
        before: items done by an earlier run (resumed work), not timed now.
        note: the caller's last note (a loss), appended.

    Returns:
        e.g. ``download: 400/400 images in 12 s (25.0 images/s; 100 done before)``.
    """
    head = f"{label}: {done:,}/{total:,} {unit}"
    if done > before:
        how = [rate_text(done - before, seconds, unit)]
        if before:
            how.append(f"{before:,} done before")
        text = f"{head} in {format_seconds(seconds)} ({'; '.join(h for h in how if h)})"
    else:
        text = f"{head}, all done before" if before else head
    return f"{text}; {note}" if note else text


# --- the terminal display ------------------------------------------------------------------


def display_wanted() -> bool:
    """Whether this process draws the progress display: ``TV100_PROGRESS`` (1/0) if set,
    else whether stderr is a terminal; never in a worker process."""
    if multiprocessing.parent_process() is not None:
        return False
    forced = os.environ.get(DISPLAY_ENV, "")
    if forced:
        return forced not in ("0", "false", "no")
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def _prefect_console() -> Console | None:
    """The console of Prefect's log handler, when it writes to a terminal: the display
    draws on it, so that log lines are printed above the display, not through it."""
    if "prefect.logging.handlers" not in sys.modules:
        return None
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and handler.console.is_terminal:
            return handler.console
    return None


def _columns() -> list[Any]:
    """label, bar, count, rate, eta, note: one line of 80 columns (the note is cut first)."""
    from rich.progress import (
        BarColumn,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second (or seconds per item), in the row's own unit; shown after a
        second, when there is something to measure."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            if not speed or (task.elapsed or 0.0) < 1.0:
                return Text("")
            return Text(rate_text(speed, 1.0, task.fields.get("unit", "")), style="cyan")

    class CountColumn(ProgressColumn):
        """``120/400 images`` (``?`` for a total not known yet)."""

        def render(self, task: Task) -> Text:
            total = "?" if task.total is None else f"{task.total:,.0f}"
            return Text(f"{task.completed:,.0f}/{total} {task.fields.get('unit', '')}")

    def fixed() -> Column:
        return Column(no_wrap=True)

    return [
        TextColumn("[bold]{task.description}", table_column=fixed()),
        BarColumn(bar_width=20),
        CountColumn(table_column=fixed()),
        RateColumn(table_column=fixed()),
        TextColumn("eta", table_column=fixed()),
        TimeRemainingColumn(compact=True, table_column=fixed()),
        TextColumn("{task.fields[note]}",
                   table_column=Column(no_wrap=True, overflow="ellipsis", min_width=4)),
    ]


class Display:
    """One rich display of every tracked row of this process; live while any row is.

    Drawing never fails a stage: an error of the display is one warning, and the display
    stays off in this process afterwards.

    Args:
        console: where to draw (default: Prefect's console handler's when it is on a
            terminal, else a console on stderr).
    """

    def __init__(self, console: Console | None = None) -> None:
        self._console = console
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._themed: Console | None = None  # Prefect's console, given rich's styles
        self._rows = 0
        self._broken = False

    def _start(self) -> Progress:
        from rich.console import Console
        from rich.progress import Progress
        from rich.theme import Theme

        console = self._console or _prefect_console()
        if console is not None and self._console is None:
            # Prefect's theme holds its log styles only; the bar needs rich's too.
            console.push_theme(Theme())
            self._themed = console
        progress = Progress(
            *_columns(), console=console or Console(stderr=True, force_terminal=True),
            transient=True, refresh_per_second=4, redirect_stdout=False, redirect_stderr=True,
        )
        progress.start()
        return progress

    def _stop(self) -> None:
        progress, self._progress, self._rows = self._progress, None, 0
        try:
            if progress is not None:
                progress.stop()
        finally:
            if self._themed is not None:
                self._themed.pop_theme()
                self._themed = None

    def _off(self, err: Exception) -> None:
        """An error while drawing: stop, say so once, and draw no more."""
        self._broken = True
        try:
            self._stop()
        except Exception:  # already failing: the warning below is what matters
            pass
        log.warning("progress display off: %s: %s", type(err).__name__, err)

    def add(self, label: str, total: int | None, done: int, unit: str) -> TaskID | None:
        """A new row (None when the display is off); starts the display if it was not live."""
        with self._lock:
            if self._broken:
                return None
            try:
                if self._progress is None:
                    self._progress = self._start()
                self._rows += 1
                return self._progress.add_task(label, total=total, completed=done, unit=unit,
                                               note="")
            except Exception as err:
                self._off(err)
                return None

    def update(self, row: TaskID | None, done: int, total: int, note: str) -> None:
        """Move a row."""
        self._call(row, "update", completed=done, total=total, note=note)

    def restart(self, row: TaskID | None, done: int, total: int) -> None:
        """Restart a row's clock at `done` (what was done before is not part of its rate)."""
        self._call(row, "reset", total=total, completed=done)

    def _call(self, row: TaskID | None, method: str, **kwargs: Any) -> None:
        with self._lock:
            if self._progress is None or row is None:
                return
            try:
                getattr(self._progress, method)(row, **kwargs)
            except Exception as err:
                self._off(err)

    def refresh(self) -> None:
        """Draw now (the display also redraws itself a few times a second)."""
        with self._lock:
            if self._progress is not None:
                try:
                    self._progress.refresh()
                except Exception as err:
                    self._off(err)

    def remove(self, row: TaskID | None) -> None:
        """Drop a row; the display stops (and clears) with its last row."""
        with self._lock:
            if self._progress is None or row is None:
                return
            try:
                self._progress.remove_task(row)
                self._rows -= 1
                if self._rows <= 0:
                    self._stop()
            except Exception as err:
                self._off(err)

    @property
    def live(self) -> bool:
        """Whether the display is drawn now."""
        return self._progress is not None


_DISPLAY = Display()


# --- the Prefect progress artifact ---------------------------------------------------------


def in_prefect_run() -> bool:
    """Whether this thread runs inside a Prefect flow or task run."""
    if "prefect.context" not in sys.modules:
        return False
    from prefect.context import get_run_context
    from prefect.exceptions import MissingContextError

    try:
        get_run_context()
    except MissingContextError:
        return False
    return True


class ArtifactProgress:
    """A Prefect progress artifact moved by ``(done, total)`` calls (a `ProgressFn`).

    Created at 0 % when built inside a flow or task run (otherwise it does nothing);
    updated when the whole percentage changed and `interval_s` has passed since the last
    update, and always at 100 %. A failure of the API is logged once as a warning and the
    artifact is left alone afterwards: publishing never fails a stage.

    Args:
        key: the artifact's key (lowercase letters, digits and dashes).
        description: what is counted (``"images downloaded"``).
        interval_s: the least time between two updates.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        key: str,
        description: str | None = None,
        interval_s: float = ARTIFACT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self.description = description
        self.interval_s = interval_s
        self._clock = clock
        self.artifact_id: Any = None
        self.sent = -1.0  # the percentage last published
        self._at = 0.0
        if in_prefect_run():
            self._create()

    def _failed(self, what: str, err: Exception) -> None:
        log.warning("could not %s progress %r: %s: %s", what, self.key, type(err).__name__, err)
        self.artifact_id = None

    def _create(self) -> None:
        from prefect.artifacts import create_progress_artifact

        try:
            self.artifact_id = create_progress_artifact(  # type: ignore[call-arg]
                progress=0.0, key=self.key, description=self.description, _sync=True
            )
        except Exception as err:
            self._failed("publish", err)
            return
        self.sent, self._at = 0.0, self._clock()

    def __call__(self, done: int, total: int) -> None:
        """Publish ``done / total`` if it is time to (see the class docstring)."""
        if self.artifact_id is None:
            return
        pct = 100.0 * min(max(done, 0), total) / total if total > 0 else 100.0
        now = self._clock()
        if pct >= 100.0:
            if self.sent >= 100.0:
                return
        elif int(pct) == int(self.sent) or now - self._at < self.interval_s:
            return
        from prefect.artifacts import update_progress_artifact

        text = f"{self.description}: {done:,} of {total:,}" if self.description else None
        try:
            update_progress_artifact(  # type: ignore[call-arg]
                self.artifact_id, progress=pct, description=text, _sync=True
            )
        except Exception as err:
            self._failed("update", err)
            return
        self.sent, self._at = pct, now


# --- trackers ----------------------------------------------------------------------------------


class Tracker:
    """The progress of one long loop: display row, artifact, summary line (see the module
    docstring). Call it with ``(done, total)``, or `advance` it; end it with `close` (or
    use it as a context manager: an exception ends it without a summary).

    Args:
        label: what is done (``"search google"``), the row's and the summary's first word.
        total: items in all. None: not known yet; the first call gives it, and its count
            is what was done before (by an earlier run: not timed). When nothing is left
            to do (`done` at least `total`), nothing is shown: no row, no summary.
        unit: what an item is, plural.
        key: the progress artifact's key (None: no artifact).
        done: items already done (by an earlier run) when it starts.
        display: the display to draw on (default: this process's, when `display_wanted`).
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        label: str,
        total: int | None,
        unit: str,
        key: str | None = None,
        done: int = 0,
        *,
        display: Display | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.unit = label, unit
        self._first = total is None  # the first call gives the total and `before`
        self.total = 0 if total is None else int(total)
        self.done = self.before = int(done)
        self.note = ""
        self.summary: str | None = None
        self._clock = clock
        self._started = clock()
        self._closed = total is not None and self.done >= self.total
        self._display: Display | None = None
        self._row: Any = None
        self.artifact: ArtifactProgress | None = None
        if self._closed:
            return
        route_logs()
        if key:
            self.artifact = ArtifactProgress(key, f"{label} ({unit})", clock=clock)
        self._display = display if display is not None else (
            _DISPLAY if display_wanted() else None
        )
        if self._display is not None:
            self._row = self._display.add(label, total, self.done, unit)

    def __call__(self, done: int, total: int | None = None) -> None:
        """Set the count done (and the total, when it changed)."""
        if self._closed:
            return
        self.done = int(done)
        if total is not None:
            self.total = int(total)
        if self._first:
            self._first = False
            self.before = self.done
            self._started = self._clock()
            if self.done >= self.total:  # nothing left to do
                self._close(summary=False)
                return
            if self._display is not None:
                self._display.restart(self._row, self.done, self.total)
        if self._display is not None:
            self._display.update(self._row, self.done, self.total, self.note)
        if self.artifact is not None:
            self.artifact(self.done, self.total)

    def advance(self, n: int = 1) -> None:
        """`n` more items done."""
        self(self.done + n)

    def set_note(self, note: str) -> None:
        """Text shown after the row (a loss) and at the end of the summary line."""
        self.note = note
        if not self._closed and self._display is not None:
            self._display.update(self._row, self.done, self.total, note)

    def close(self, ok: bool = True) -> str | None:
        """End it: the row goes; when `ok`, the artifact gets its last value and the
        summary line is logged (and returned). Idempotent."""
        if self._closed:
            return self.summary
        self._close(summary=ok)
        return self.summary

    def _close(self, summary: bool) -> None:
        self._closed = True
        if self._display is not None:
            self._display.remove(self._row)
        if self.artifact is not None and (summary or self.done >= self.total):
            self.artifact.interval_s = 0.0
            self.artifact(self.done, self.total)
        if not summary or self._first:  # never told how much there was: nothing to say
            return
        self.summary = summary_line(self.label, self.done, self.total, self.unit,
                                    self._clock() - self._started, self.before, self.note)
        log.info("%s", self.summary, extra={CONSOLE_ATTR: True})

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(ok=exc_type is None)


def track(
    label: str, total: int | None, unit: str, key: str | None = None, done: int = 0
) -> Tracker:
    """A `Tracker` on this process's display (see `Tracker` for the arguments)."""
    return Tracker(label, total, unit, key, done)


def artifact_key(*parts: str) -> str:
    """An artifact key from free-form parts: lowercase, runs of anything else as one dash."""
    import re

    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
