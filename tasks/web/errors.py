"""Failures inside the HTTP layer; `HttpClient` turns each one into a `Fetched` status.

None of these leave `tv100.tasks.web`: per-URL problems are values, never exceptions.
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
