"""Failures inside the HTTP layer, and `SourceError`: a whole source that cannot be used.

`TooLarge` and `FetchFailure` never leave `tv100.tasks.web`: per-URL problems are values
(`Fetched.status`), never exceptions. `SourceError` is the one that does: a stage raises it
when a source the user named cannot be used at all (a missing folder or file, a 404, a file
over its cap, a blocked site). It says whether waiting could help (`transient`): Prefect
retries only those (`tv100.tasks.web.retry.retry_if_transient`), and the command line prints
its message as one line (exit 2 when fixed, 1 when transient).
"""

from __future__ import annotations

from tv100.tasks.web.config import Status


class TooLarge(Exception):
    """A body (or its decoded form) exceeds the cap; ends as `too_large`."""


class FetchFailure(Exception):
    """A per-hop failure decided before or without a response (blocked, DNS, ...).

    Attributes:
        status: the `Fetched.status` it ends as.
        message: the `Fetched.error_message`.
        retry_reason: why another attempt may help (None: final).
        local: decided without any network traffic (does not count as an attempt).
    """

    def __init__(
        self,
        status: Status,
        message: str,
        retry_reason: str | None = None,
        *,
        local: bool = False,
    ) -> None:
        super().__init__(message)
        self.status: Status = status
        self.message = message
        self.retry_reason = retry_reason
        self.local = local


class ConnectBlocked(FetchFailure):
    """Raised by the network backend: a connect-time address check refused the target."""

    def __init__(self, message: str) -> None:
        super().__init__("blocked", message)


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception (just the type when the message is empty)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class SourceError(Exception):
    """A source named by the user cannot be used; the message is one line for the user.

    The message names the source (folder, file or URL) and what was expected. Raised by
    stages, never inside `HttpClient` (where failures are `Fetched` values).

    Attributes:
        transient: True when trying again later may help (timeouts, 5xx, 429 after the
            HTTP layer's own retries); False for fixed errors (404 and other 4xx, a missing
            folder or file, a file over its cap, a blocked address), never retried.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
