"""Running the `tv100` app in-process with typer's CliRunner, with Prefect's logs readable.

Prefect sets its console log handler up once, on the `sys.stderr` of that moment. Inside a
`runner.invoke` that is CliRunner's stand-in stream, closed when the invoke returns: every
later log line would then be a "--- Logging error ---" traceback in another invoke's output.
`follow_stderr` points the handler at whichever stderr is current at each write.
"""

from __future__ import annotations

import io
import logging
import sys


class _CurrentStderr(io.TextIOBase):
    """Writes to whatever `sys.stderr` is at the time (each `runner.invoke` swaps it)."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def follow_stderr() -> None:
    """Load Prefect's logging now, then point its console handler at the current stderr.

    (Not `setStream`: it flushes the old stream, which may be closed by then.)
    """
    from prefect import flow  # noqa: F401  (sets the console handler up, once)
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not isinstance(
            handler.stream, _CurrentStderr
        ):
            handler.stream = handler.console.file = _CurrentStderr()
