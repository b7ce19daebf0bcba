"""Retries, only where they can help: what is retried, and how long to wait before it.

Timeouts, connection errors (refused, reset, truncated bodies) and the statuses in
`HttpConfig.retry_statuses` (429, 500, 502, 503, 504) are retried with exponential backoff and
full jitter, or after exactly the server's `Retry-After` (seconds or an HTTP date) when it
sends one. A `Retry-After` longer than `HttpConfig.max_retry_after_s` is not waited for: the
item fails at once. Other 4xx (403, 404, 410, ...), TLS certificate errors, blocked or
oversized responses are final on the first attempt.

The same rule one level up: `retry_if_transient` is the Prefect ``retry_condition_fn`` of
tasks that raise `SourceError`, so a fixed error (404, a missing file, too large) fails the
task at once and a transient one keeps the task's retries.
"""

from __future__ import annotations

import functools
import logging
import random
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt

from tv100.tasks.web.config import HttpConfig
from tv100.tasks.web.errors import SourceError

if TYPE_CHECKING:
    from prefect import Task
    from prefect.client.schemas.objects import TaskRun
    from prefect.states import State

log = logging.getLogger("tv100.http")


class Retryable(Protocol):
    """An attempt's outcome as the retry policy sees it."""

    @property
    def retry_reason(self) -> str | None:
        """Why another attempt may help; None when the outcome is final."""

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait (Retry-After); None for the backoff."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header value.

    Args:
        value: delta-seconds (`"120"`) or an HTTP date (`"Wed, 21 Oct 2015 07:28:00 GMT"`).
        now: the current time for HTTP dates (default: now, UTC).

    Returns:
        Seconds (>= 0; a date in the past gives 0), or None if absent or unparseable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" zone: RFC 5322 says UTC
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, delta)


def is_retryable_connection_error(exc: BaseException) -> bool:
    """Connection problems worth another try; TLS/certificate failures are not."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError | ssl.CertificateError):
            return False
        cur = cur.__cause__ or cur.__context__
    return True


@dataclass(frozen=True)
class StatusRetry:
    """Whether an HTTP error status is retried (`status_retry`).

    Attributes:
        reason: why it is retried (``HTTP 503``); None when final.
        after: the server's Retry-After in seconds, if it sent one.
        refused_wait: set when the Retry-After is too long to wait for (then `reason` is
            None): the sentence to add to the error message.
    """

    reason: str | None
    after: float | None = None
    refused_wait: str | None = None


def status_retry(config: HttpConfig, status: int, retry_after: str | None) -> StatusRetry:
    """Whether a response with HTTP `status` and this Retry-After header value is retried."""
    if status not in config.retry_statuses:
        return StatusRetry(None)
    after = parse_retry_after(retry_after)
    if after is not None and after > config.max_retry_after_s:
        return StatusRetry(
            None,
            after,
            f"server asked to Retry-After {after:.0f} s, more than "
            f"max_retry_after_s={config.max_retry_after_s:g}; not waiting",
        )
    return StatusRetry(f"HTTP {status}", after)


def retrying(config: HttpConfig, url: str) -> AsyncRetrying:
    """The tenacity policy for one GET of `url`: retries outcomes with a `retry_reason`.

    Attempts return `Retryable` values (they never raise); after the last attempt the last
    outcome is returned as it is.
    """
    return AsyncRetrying(
        stop=stop_after_attempt(config.retries + 1),
        retry=retry_if_result(_should_retry),
        wait=functools.partial(_wait, config),
        before_sleep=functools.partial(_log_retry, config, url),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        reraise=True,
    )


def _should_retry(result: Retryable) -> bool:
    return result.retry_reason is not None


def _last_result(state: RetryCallState) -> Any:
    return state.outcome.result() if state.outcome and not state.outcome.failed else None


def _wait(config: HttpConfig, state: RetryCallState) -> float:
    """Retry-After when the server sent one, else full-jitter exponential backoff."""
    after = getattr(_last_result(state), "retry_after", None)
    if after is not None:
        return float(after)
    ceiling = min(config.backoff_max_s, config.backoff_base_s * 2 ** (state.attempt_number - 1))
    return random.uniform(0.0, ceiling)


def _log_retry(config: HttpConfig, url: str, state: RetryCallState) -> None:
    result = _last_result(state)
    reason = getattr(result, "retry_reason", None) or "unknown"
    how = "Retry-After" if getattr(result, "retry_after", None) is not None else "backoff"
    wait = state.next_action.sleep if state.next_action else 0.0
    log.debug(
        "retry %d/%d of %s after %s; waiting %.2f s (%s)",
        state.attempt_number,
        config.retries,
        url,
        reason,
        wait,
        how,
    )


def retry_if_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry a failed task unless it raised a fixed error.

    A plain module-level function, as every retry condition of the project must be (a
    `functools.partial` in its place has silently disabled retries).

    Returns:
        False for a `SourceError` that is not `transient` (retrying cannot help), True for
        a transient one and for any other exception (the task's retries as before).
    """
    try:
        state.result()
    except SourceError as err:
        return err.transient
    except Exception:  # noqa: BLE001 - anything else keeps the task's retries
        return True
    return True
