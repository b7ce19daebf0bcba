"""The `tv100` typer app: option types, input checks, one-line errors, plug-in commands, main().

Every error in the command line (a bad option value, a missing or unknown option), every
data root that cannot be used and every source that cannot be used (a `SourceError` raised
anywhere in a flow: a missing dataset folder, a 404, a file over its cap) is ONE line
``tv100: error: ...`` on stderr, exit code 2; a source failing transiently (timeouts, 5xx
after the retries) is one line, exit code 1. So is a runtime fault of the machine, found
wherever it was raised (a task's exception re-raised by Prefect, or chained under another):
a full disk or a file-size limit, a permission denied or a read-only file system, a missing
input (`runtime_error_line`): the line names the path and the fix, exit code 2.

No traceback, neither from the command nor in Prefect's console log of the failed task and
flow runs (`QuietConsole`; the Prefect API and UI keep them), unless ``tv100 --debug`` (or
``TV100_DEBUG=1``) asks for them; nor Prefect's INFO lines ("Beginning flow run", "Finished
in state ...") unless ``tv100 --verbose`` (``TV100_VERBOSE=1``): the console shows warnings,
errors, and tv100's progress display and summary lines (`tv100.tasks.progress`). Ctrl-C or
SIGTERM (`tv100.tasks.cancel`) is ``tv100: cancelled; ...``, exit code 130. Commands need
nothing special for any of it: plain ``typer.Option(min=..., max=...)``, and `fail` for their
own checks.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from importlib.metadata import entry_points
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from tv100.storage.atomic import TEMP_PREFIX
from tv100.storage.root import DataRoot, DataRootError
from tv100.tasks import cancel
from tv100.tasks.discover.config import SOURCES
from tv100.tasks.progress import CONSOLE_ATTR
from tv100.tasks.web.errors import SourceError

INTERRUPTED = "cancelled; finished work is kept, rerun to resume"
PLUGIN_GROUP = "tv100.cli"
#: Prefect's loggers that report a failed task or flow run with its traceback.
RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")
#: ``tv100 --debug`` (or this environment variable): tracebacks on the console.
DEBUG_ENV = "TV100_DEBUG"
#: ``tv100 --verbose`` (or this environment variable): Prefect's INFO lines on the console.
VERBOSE_ENV = "TV100_VERBOSE"
#: Loggers `QuietConsole` is installed on: the run loggers, and Prefect's own (the
#: temporary server's "Starting temporary server ..." comes before any run's first line).
QUIET_LOGGERS = (*RUN_LOGGERS, "prefect")
#: Prefect settings the command line defaults (before Prefect loads them): tv100's loggers
#: reach the Prefect API (`tv100.tasks.progress`); a tv100 line logged outside any run
#: (the CLI's own) is simply not sent, instead of warning that it cannot be.
PREFECT_DEFAULTS = {
    "PREFECT_LOGGING_EXTRA_LOGGERS": "tv100",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}
#: What this run of the command line knows: ``--debug``, ``--verbose``, the data root in use.
_state: dict[str, Any] = {"debug": False, "verbose": False, "root": None}


def _exit_with(message: str, code: int) -> NoReturn:
    typer.echo(f"tv100: {message}", err=True)
    sys.exit(code)


def cancelled_exit() -> NoReturn:
    """A cancelled run's one line (once, though the watchdog may also get there), exit 130."""
    cancel.announce(f"tv100: {INTERRUPTED}")
    sys.exit(cancel.EXIT_CODE)


def fail(message: str) -> NoReturn:
    """One-line error on stderr, exit code 2 (bad input; nothing written)."""
    typer.echo(f"tv100: error: {message}", err=True)
    raise typer.Exit(code=2)


_PARSED_AS = {"int_parsing": "a whole number", "float_parsing": "a number"}
_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _expected(error: dict[str, Any]) -> str:
    """What a value pydantic refused should have been (typer checks option values with it)."""
    ctx = error.get("ctx") or {}
    if error["type"] in _PARSED_AS:
        return f"expected {_PARSED_AS[error['type']]}"
    for key, op in _BOUNDS.items():
        if key in ctx:
            return f"expected a value {op} {ctx[key]:g}"
    if "error" in ctx:  # a ValueError of typer's own, e.g. a choice not offered
        return str(ctx["error"]).rstrip(".")
    return str(error["msg"]).replace("Input should be", "expected")


def error_line(err: typer.TyperException) -> str:
    """One line for a command-line error; a bad value names the option, value and expectation."""
    from pydantic import ValidationError

    cause = err.__cause__
    if isinstance(err, typer.BadParameter) and err.param and isinstance(cause, ValidationError):
        error = cause.errors(include_url=False)[0]
        name = "/".join(getattr(err.param, "opts", None) or [str(err.param.name)])
        return f"invalid value {str(error['input'])!r} for {name}: {_expected(dict(error))}"
    return " ".join(err.format_message().split())


def debugging() -> bool:
    """Whether this run shows tracebacks (``tv100 --debug`` or ``TV100_DEBUG=1``)."""
    return bool(_state["debug"]) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def verbose() -> bool:
    """Whether Prefect's INFO lines reach the console (``tv100 --verbose``,
    ``TV100_VERBOSE=1``, or ``--debug``)."""
    return (
        bool(_state["verbose"])
        or os.environ.get(VERBOSE_ENV, "") not in ("", "0")
        or debugging()
    )


#: Prefect's message for a run's final state when it failed (the flow's is logged at INFO).
_FAILED_STATES = ("Finished in state Failed", "Finished in state Crashed")


class QuietConsole(logging.Filter):
    """Keeps failures, tracebacks and INFO lines off Prefect's console, not its API.

    Prefect logs a failed task or flow run with its traceback, once per run the error
    passes through (a full disk in a build: 15 tracebacks, 680 lines), then each run's
    failed state with the error's message again. The CLI prints the one line that matters
    instead. On the console, without ``--debug``: a run's records at ERROR and its failed
    or crashed final state are left out, and no record shows a traceback.

    Nor, without ``--verbose``, records below WARNING ("Beginning flow run", "Finished in
    state Completed", "Starting temporary server ..."), except tv100's own summary lines
    (flagged `tv100.tasks.progress.CONSOLE_ATTR`); the progress display is not a log
    record. Warnings stay, and so does everything in the Prefect API and UI.

    Installed as a filter on `QUIET_LOGGERS` (before Prefect sets its logging up, which
    keeps existing filters), it hands every record on, and puts `QuietConsole.console` on
    the root logger's console handlers. Those run after the run loggers' own API handler,
    which has already sent the record, traceback and all, to the Prefect API.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record; make sure the console handlers filter with `console`."""
        from prefect.logging.handlers import PrefectConsoleHandler

        for handler in logging.getLogger().handlers:
            if isinstance(handler, PrefectConsoleHandler) and _CONSOLE not in handler.filters:
                handler.addFilter(_CONSOLE)
        return True

    @staticmethod
    def console(record: logging.LogRecord) -> bool:
        """A console handler's filter: see the class docstring."""
        if debugging():
            return True
        if (
            record.levelno < logging.WARNING
            and not verbose()
            and not getattr(record, CONSOLE_ATTR, False)
        ):
            return False
        if record.name.startswith(RUN_LOGGERS) and (
            record.levelno >= logging.ERROR or record.getMessage().startswith(_FAILED_STATES)
        ):
            return False
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


_QUIET = QuietConsole()
_CONSOLE = QuietConsole.console


def quiet_console() -> None:
    """Install `QuietConsole` on `QUIET_LOGGERS`, and default `PREFECT_DEFAULTS` (idempotent)."""
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).addFilter(_QUIET)


#: errno values that are faults of the machine, not of tv100: ``(what, fix)``.
_FULL = ("no space left on device writing", "free space and rerun: finished work is kept")
_RUNTIME_ERRNOS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: _FULL,
    errno.EDQUOT: ("disk quota exceeded writing", _FULL[1]),
    errno.EFBIG: (
        "file size limit reached writing",
        "raise the limit (ulimit -f) and rerun: finished work is kept",
    ),
    errno.EACCES: (
        "permission denied:",
        "give this user access to it (or use another --data) and rerun: finished work is kept",
    ),
    errno.EROFS: (
        "read-only file system:",
        "use a writable --data (or remount it read-write) and rerun: finished work is kept",
    ),
    errno.ENOENT: ("missing input:", "check the path, or run the stage that writes it first"),
    errno.ENOTDIR: ("not a folder:", "check the path"),
    errno.EISDIR: ("a folder, not a file:", "check the path"),
    errno.EIO: ("I/O error on", "check the disk, then rerun: finished work is kept"),
}
_RUNTIME_ERRNOS[errno.EPERM] = _RUNTIME_ERRNOS[errno.EACCES]


def causes(err: BaseException) -> Iterator[BaseException]:
    """`err` and every exception behind it: its cause and context, and the members of
    exception groups, each once, nearest first."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)


#: A temp file of `tv100.storage.atomic`: its `TEMP_PREFIX`, 32 hex digits, ``-`` or ``~``,
#: then the name of the file it becomes.
_TEMP_RE = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{32}[-~]")


def _target(path: str) -> str:
    """`path`, or the file it was about to become when it is an atomic write's temp file."""
    head, name = os.path.split(path)
    return os.path.join(head, _TEMP_RE.sub("", name, count=1)) if _TEMP_RE.match(name) else path


def _where(err: OSError) -> str:
    """The path(s) an OSError names, else the data root in use, else nothing."""
    paths = list(dict.fromkeys(  # a rename's temp file and target are one file to the user
        _target(os.fsdecode(p) if isinstance(p, str | bytes | os.PathLike) else str(p))
        for p in (err.filename, err.filename2) if p not in (None, "")))
    if paths:
        return " -> ".join(paths)
    root = _state["root"]
    return f"under the data root {root}" if root else ""


def runtime_error_line(err: BaseException) -> str | None:
    """The one line for a runtime fault behind `err`, or None when there is none.

    A fault is an OSError of the machine (`_RUNTIME_ERRNOS`: disk full, file-size limit,
    permission denied, read-only file system, a missing input, an I/O error) or a missing
    table (a FileNotFoundError without an errno, naming the table). The line names the path
    (the data root when the error names none: a write to a file already open) and the fix.
    """
    for e in causes(err):
        if isinstance(e, OSError) and e.errno in _RUNTIME_ERRNOS:
            what, fix = _RUNTIME_ERRNOS[e.errno]
            where = _where(e)
            return f"{what} {where}; {fix}" if where else f"{what.rstrip(':')}; {fix}"
        if isinstance(e, FileNotFoundError) and e.errno is None and str(e):
            return f"missing input: {' '.join(str(e).split())}; {_RUNTIME_ERRNOS[errno.ENOENT][1]}"
    return None


def _explain(err: BaseException) -> None:
    """Exit with the one line for `err` (exit 2; 1 for a transient source), the traceback
    first under --debug; return when `err` is none of the errors the CLI explains.

    A data root or a source that cannot be used (`DataRootError`, `SourceError`) is
    explained by its own message; a runtime fault by `runtime_error_line`.
    """
    known: str | None = None
    code = 2
    for e in causes(err):
        if isinstance(e, DataRootError | SourceError):
            known = f"error: {' '.join(str(e).split())}"
            code = 1 if isinstance(e, SourceError) and e.transient else 2
            break
    if known is None:
        line = runtime_error_line(err)
        known = f"error: {line}" if line else None
    if known is None:
        return None
    if debugging():
        traceback.print_exception(err)
    _exit_with(known, code)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Run a command's body: the errors the CLI explains end the process with their one
    line (see the module docstring), a cancellation with exit code 130; anything else (a
    bug) propagates with its traceback."""
    try:
        yield
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM (`tv100.tasks.cancel.Cancelled`)
        if debugging():
            traceback.print_exc()
        cancelled_exit()
    except Exception as err:
        _explain(err)
        raise


class Tv100Group(TyperGroup):
    """The `tv100` command group: errors as one line on stderr (see the module docstring)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        quiet_console()
        with one_line_errors():
            try:
                code = super().main(args, prog_name, complete_var, False, **extra)
            except typer.TyperException as err:  # click's ClickException: a bad command line
                _exit_with(f"error: {error_line(err)}", getattr(err, "exit_code", 2))
            except typer.Abort:  # end of input at a prompt
                _exit_with("aborted", 1)
        if code == 130:  # typer's exit code for Ctrl-C (and `Cancelled`)
            cancelled_exit()
        sys.exit(code if isinstance(code, int) else 0)


def show_help_if_bare(ctx: typer.Context) -> None:
    """A command group run without a command prints its help and exits 2."""
    if ctx.invoked_subcommand is None:
        text = ctx.get_help()  # typer's rich help prints itself and returns ""
        if text:
            typer.echo(text)
        raise typer.Exit(2)


def root_options(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar=DEBUG_ENV,
            help="Show the traceback of an error (the command's and Prefect's log's).",
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            envvar=VERBOSE_ENV,
            help="Show Prefect's INFO log lines (run started, finished, ...) on the console.",
        ),
    ] = False,
) -> None:
    """Options of `tv100` itself, before the command (``tv100 --debug build ...``)."""
    _state.update(debug=debug, verbose=verbose, root=None)
    show_help_if_bare(ctx)


app = typer.Typer(
    name="tv100",
    help="Build, refresh and benchmark image datasets of classes a pre-trained CLIP has not "
    "seen (TV100, arXiv 2404.12407).",
    invoke_without_command=True,
    callback=root_options,
    add_completion=False,
    cls=Tv100Group,
    pretty_exceptions_enable=False,
)


def add_plugins(target: typer.Typer) -> None:
    """Add the commands installed packages offer in the ``tv100.cli`` entry point group.

    Each entry point names a ``register(app: typer.Typer) -> None`` function that adds
    commands or groups to `target` (the offline demo's ``tv100 demo`` comes this way), so
    the product never imports the packages offering them.
    """
    for entry in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        entry.load()(target)


DataOpt = Annotated[
    str | None,
    typer.Option("--data", help="Data root (path or fsspec URL); default $TV100_DATA or ./data."),
]

RunnerOpt = Annotated[
    str,
    typer.Option(
        "--runner",
        help="Where tasks run: threads, dask (a local Dask cluster, a worker process per "
        "core) or tcp://HOST:PORT (an existing Dask scheduler).",
    ),
]

ModelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        help="CLIP as ARCH@WEIGHTS (pretrained tag or checkpoint file) or local-dir:FOLDER; "
        "repeat for several. Default: the model(s) the data root was last ranked with.",
    ),
]


#: The discover sources as a CLI choice (members named like ``imdb_datasets``).
SourceName = StrEnum("SourceName", {s.replace("-", "_"): s for s in SOURCES})  # type: ignore[misc]


class OutFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class DiffFormat(StrEnum):
    table = "table"
    json = "json"


class InspectKind(StrEnum):
    imdb_list = "imdb-list"
    imdb_title = "imdb-title"
    bing = "bing"
    google = "google"
    duckduckgo = "duckduckgo"


def data_root(data: str | None) -> DataRoot:
    """The data root (--data, else $TV100_DATA, else ./data), checked but not created.

    A root that cannot be used is a one-line error. Nothing is created here: a command
    creates the root only when it is about to write (the flows, after their input checks:
    `tv100.tasks.prerequisites`), so a command that fails its checks leaves no folder.
    """
    from tv100.storage.root import resolve_root
    from tv100.tasks.prerequisites import check_root

    try:
        root = check_root(resolve_root(data))
    except DataRootError as err:
        fail(str(err))
    _state["root"] = root.url  # named by a runtime error that names no file
    return root


def data_url(data: str | None) -> str:
    """The data root's URL (see `data_root`), for a flow's ``data`` parameter."""
    return data_root(data).url


def runner_name(runner: str) -> str:
    """The --runner value checked; a bad one is a one-line error."""
    from tv100.flows.runners import check_runner

    try:
        return check_runner(runner)
    except ValueError as err:
        fail(f"--runner: {err}")


def model_specs(models: list[str] | None) -> list[str] | None:
    """Parse each --model now, so a bad one is a one-line error before anything runs."""
    from tv100.tasks.rank.models import ModelSpec

    for m in models or []:
        try:
            ModelSpec.parse(m)
        except ValueError as err:
            fail(f"--model {m!r}: {err}")
    return models


#: Seconds a command waits for its temporary Prefect server to answer (Prefect's default 20
#: is too short next to another busy process; a user's own setting wins).
EPHEMERAL_STARTUP_TIMEOUT_S = 180


def run_command(body: Callable[[], object]) -> None:
    """Run `body` as the console script runs a command: SIGINT and SIGTERM cancel it
    (`tv100.tasks.cancel`), and the errors the CLI explains end in one line
    (`one_line_errors`)."""
    # Offline by default: no telemetry from the ephemeral Prefect server.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A temporary server takes well over Prefect's default 20 s to answer on a busy machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
                          str(EPHEMERAL_STARTUP_TIMEOUT_S))
    # Before Prefect reads its settings: report to `tv100 server` when it is up, and run on
    # a temporary server when the configured one does not answer.
    from tv100.flows.cli.server import prefect_environment

    prefect_environment()
    cancel.install(line=f"tv100: {INTERRUPTED}")
    with one_line_errors():  # what escapes the command group (a signal between commands)
        body()


def main() -> None:
    """The `tv100` console script."""
    run_command(app)
