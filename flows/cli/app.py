"""The `tv100` typer app: option types, input checks, one-line errors, plug-in commands, main().

Every error in the command line (a bad option value, a missing or unknown option), every
data root that cannot be used and every source that cannot be used (a `SourceError` raised
anywhere in a flow: a missing dataset folder, a 404, a file over its cap) is ONE line
``tv100: error: ...`` on stderr, exit code 2, with no traceback (not even in Prefect's log of
the failed task); a source failing transiently (timeouts, 5xx after the retries) is one line,
exit code 1. Ctrl-C (or SIGTERM) is ``tv100: interrupted; ...``, exit code 130. Commands need
nothing special for it: plain ``typer.Option(min=..., max=...)``, and `fail` for their own
checks.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence
from enum import StrEnum
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from types import FrameType

from tv100.storage.root import DataRoot
from tv100.tasks.discover.config import SOURCES
from tv100.tasks.web.errors import SourceError

INTERRUPTED = "interrupted; finished rows are kept, rerun to resume"
PLUGIN_GROUP = "tv100.cli"
#: Prefect's loggers that report a failed task or flow run with its traceback.
RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")


def _exit_with(message: str, code: int) -> NoReturn:
    typer.echo(f"tv100: {message}", err=True)
    sys.exit(code)


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


class SourceErrorTraceback(logging.Filter):
    """Drops the traceback from Prefect's log of a run that failed with a `SourceError`.

    The error's message says everything (the CLI prints it as its one error line); the
    record itself stays, so the Prefect UI still shows which task failed and why.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record; strip the traceback of a `SourceError`."""
        if record.exc_info and isinstance(record.exc_info[1], SourceError):
            record.exc_info = None
            record.exc_text = None
        return True


_SOURCE_ERROR_FILTER = SourceErrorTraceback()


def quiet_source_errors() -> None:
    """Install `SourceErrorTraceback` on Prefect's run loggers (idempotent)."""
    for name in RUN_LOGGERS:
        logging.getLogger(name).addFilter(_SOURCE_ERROR_FILTER)


def source_error_exit(err: SourceError) -> NoReturn:
    """A source that cannot be used: one line, exit 2 (fixed) or 1 (transient)."""
    _exit_with(f"error: {' '.join(str(err).split())}", 1 if err.transient else 2)


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
        from tv100.storage.root import DataRootError

        quiet_source_errors()
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except typer.TyperException as err:  # click's ClickException: a bad command line
            _exit_with(f"error: {error_line(err)}", getattr(err, "exit_code", 2))
        except typer.Abort:  # end of input at a prompt
            _exit_with("aborted", 1)
        except DataRootError as err:  # wherever a command meets it
            _exit_with(f"error: {' '.join(str(err).split())}", 2)
        except SourceError as err:  # wherever a flow meets it
            source_error_exit(err)
        if code == 130:  # typer's exit code for Ctrl-C
            _exit_with(INTERRUPTED, 130)
        sys.exit(code if isinstance(code, int) else 0)


def show_help_if_bare(ctx: typer.Context) -> None:
    """A command group run without a command prints its help and exits 2."""
    if ctx.invoked_subcommand is None:
        text = ctx.get_help()  # typer's rich help prints itself and returns ""
        if text:
            typer.echo(text)
        raise typer.Exit(2)


app = typer.Typer(
    name="tv100",
    help="Build, refresh and benchmark image datasets of classes a pre-trained CLIP has not "
    "seen (TV100, arXiv 2404.12407).",
    invoke_without_command=True,
    callback=show_help_if_bare,
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
        "repeat for several.",
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
    """The data root (--data, else $TV100_DATA, else ./data), created if new.

    A root that cannot be used is a one-line error.
    """
    from tv100.storage.root import DataRootError, resolve_root

    root = resolve_root(data)
    try:
        root.ensure()
    except DataRootError as err:
        fail(str(err))
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


def _terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (`kill PID`) ends a run as Ctrl-C does.

    While a flow runs, Prefect's own handler turns it into `TerminationSignal` (the flow and
    its tasks unwind: the downloader stops its worker processes), then signals again here.
    """
    raise KeyboardInterrupt


def main() -> None:
    """The `tv100` console script."""
    # Offline by default: no telemetry from the ephemeral Prefect server.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        signal.signal(signal.SIGTERM, _terminated)
        app()
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM) outside a command's own handling
        _exit_with(INTERRUPTED, 130)
