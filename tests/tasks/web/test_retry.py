"""What the HTTP layer retries, and how long it waits (no network)."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx

from tv100.tasks.web.config import HttpConfig
from tv100.tasks.web.retry import (
    StatusRetry,
    is_retryable_connection_error,
    parse_retry_after,
    status_retry,
)


def test_parse_retry_after():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
    assert parse_retry_after(None) is None


def test_status_retry():
    config = HttpConfig(max_retry_after_s=60)
    assert status_retry(config, 503, None) == StatusRetry("HTTP 503")
    assert status_retry(config, 429, "5") == StatusRetry("HTTP 429", 5.0)
    assert status_retry(config, 404, "5") == StatusRetry(None)
    too_long = status_retry(config, 429, "600")
    assert too_long.reason is None and too_long.refused_wait is not None
    assert "max_retry_after_s=60" in too_long.refused_wait
    assert status_retry(HttpConfig(retry_statuses=(429,)), 503, None).reason is None


def test_tls_errors_are_final_other_connection_errors_are_not():
    assert is_retryable_connection_error(httpx.ConnectError("connection refused"))
    try:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed")
        except ssl.SSLError as inner:
            raise httpx.ConnectError("TLS handshake failed") from inner
    except httpx.ConnectError as exc:
        assert not is_retryable_connection_error(exc)


def test_retry_if_transient_on_prefect_states():
    from prefect.states import Completed, Failed

    from tv100.tasks.web.errors import SourceError
    from tv100.tasks.web.retry import retry_if_transient

    def retried(exc: BaseException) -> bool:
        state = Failed(data=exc, message=repr(exc))
        return retry_if_transient(None, None, state)  # type: ignore[arg-type]

    assert not retried(SourceError("HTTP 404"))
    assert retried(SourceError("HTTP 503", transient=True))
    assert retried(RuntimeError("a bug"))
    assert retry_if_transient(None, None, Completed(data=1))  # type: ignore[arg-type]
