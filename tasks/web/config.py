"""Settings of the HTTP layer (`HttpConfig`, validated) and its result type (`Fetched`)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Literal

Status = Literal[
    "ok", "http_error", "timeout", "too_large", "blocked", "robots_disallowed", "error"
]
"""What became of one request (`Fetched.status`)."""

MIB = 1024 * 1024
GIB = 1024 * MIB
ERROR_BODY_LIMIT = 64 * 1024
"""How much of a non-2xx body is kept in `Fetched.content` (error pages help debugging)."""

DEFAULT_RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_FILE_BYTES = 4 * GIB
"""Default cap of a file download (`HttpConfig.max_file_bytes`): IMDb's largest is ~450 MB."""


@functools.lru_cache(maxsize=1)
def _default_user_agent() -> str:
    try:
        version = metadata.version("tv100")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    return f"tv100/{version} (+https://github.com/tv100/tv100; dataset research crawler)"


@dataclass(frozen=True)
class HttpConfig:
    """Settings of the HTTP layer; validated on construction.

    Attributes:
        timeout_s: wall-clock limit for one request (connect, headers and body together), in s.
            A file download (`tv100.tasks.web.stream`) has no limit on the whole transfer:
            there it bounds each read (waiting for the headers, then every read of the body).
        connect_timeout_s: limit for DNS resolution and for opening a connection, in s.
        max_connections: requests in flight at once over all hosts (and the connection pool size).
        per_host: requests in flight at once to one host name.
        rate_per_host: requests started per second per host name; None for the polite
            default (`tv100.tasks.web.politeness.DEFAULT_RATE_PER_HOST`, slowed further by a
            robots.txt Crawl-delay). Hosts in `allow_hosts` are not rate-limited.
        retries: extra attempts after the first one (0 = no retry).
        retry_statuses: HTTP statuses that are retried (others are final).
        backoff_base_s: first backoff ceiling; attempt n waits uniform(0, base * 2**(n-1)).
        backoff_max_s: ceiling of any backoff wait.
        max_retry_after_s: a longer Retry-After is not waited for; the item fails (http_error).
        max_bytes: largest response body accepted; larger ones end as `too_large`.
        max_file_bytes: largest file a file download (`tv100.tasks.web.stream`, e.g. IMDb's
            dataset files) accepts; it is streamed to disk, so this only guards the disk.
        max_redirects: redirects followed per attempt; more ends as `http_error`.
        user_agent: the User-Agent header sent with every request.
        allow_hosts: host names or IPs, or `host:port` (`[v6]:port`), exempt from the private-
            address check (e.g. the loopback sandbox in tests).
        follow_redirects: follow 301/302/303/307/308 (each hop re-checked); if False a redirect
            is returned as `http_error` with its Location in `headers`.
        trust_env: let httpx read proxy settings from the environment (off: reproducible runs).
    """

    timeout_s: float = 20.0
    connect_timeout_s: float = 10.0
    max_connections: int = 32
    per_host: int = 4
    rate_per_host: float | None = None
    retries: int = 3
    retry_statuses: tuple[int, ...] = DEFAULT_RETRY_STATUSES
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0
    max_bytes: int = 20 * MIB
    max_file_bytes: int = MAX_FILE_BYTES
    max_redirects: int = 5
    user_agent: str = field(default_factory=_default_user_agent)
    allow_hosts: tuple[str, ...] = ()
    follow_redirects: bool = True
    trust_env: bool = False

    def __post_init__(self) -> None:
        _check_number("timeout_s", self.timeout_s, 0.0, 3600.0, low_open=True)
        _check_number("connect_timeout_s", self.connect_timeout_s, 0.0, 3600.0, low_open=True)
        _check_int("max_connections", self.max_connections, 1, 1024)
        _check_int("per_host", self.per_host, 1, self.max_connections, high_name="max_connections")
        if self.rate_per_host is not None:
            _check_number("rate_per_host", self.rate_per_host, 0.0, 10_000.0, low_open=True)
        _check_int("retries", self.retries, 0, 20)
        _check_number("backoff_base_s", self.backoff_base_s, 0.0, 3600.0)
        _check_number("backoff_max_s", self.backoff_max_s, self.backoff_base_s, 3600.0)
        _check_number("max_retry_after_s", self.max_retry_after_s, 0.0, 86_400.0)
        _check_int("max_bytes", self.max_bytes, 1, 1 << 40)
        _check_int("max_file_bytes", self.max_file_bytes, 1, 1 << 44)
        _check_int("max_redirects", self.max_redirects, 0, 50)
        object.__setattr__(self, "retry_statuses", _retry_statuses(self.retry_statuses))
        if not isinstance(self.user_agent, str) or not self.user_agent.strip():
            raise ValueError(f"user_agent must be a non-empty string, got {self.user_agent!r}")
        if any(c in self.user_agent for c in "\r\n\0"):
            raise ValueError("user_agent must be a single line (no CR, LF or NUL)")
        object.__setattr__(self, "allow_hosts", _allow_hosts(self.allow_hosts))
        for name in ("follow_redirects", "trust_env"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")


def _check_number(
    name: str, value: object, low: float, high: float, *, low_open: bool = False
) -> None:
    bad = isinstance(value, bool) or not isinstance(value, int | float) or value != value
    if not bad:
        assert isinstance(value, int | float)
        bad = value < low or value > high or (low_open and value == low)
    if bad:
        lo = f"> {low:g}" if low_open else f">= {low:g}"
        raise ValueError(f"{name} must be a number {lo} and <= {high:g}, got {value!r}")


def _check_int(
    name: str, value: object, low: int, high: int, *, high_name: str | None = None
) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        upper = f"{high_name} ({high})" if high_name else str(high)
        raise ValueError(f"{name} must be an integer in {low}..{upper}, got {value!r}")


def _retry_statuses(statuses: object) -> tuple[int, ...]:
    """Sorted, de-duplicated HTTP status codes; ValueError naming the bad value."""
    if isinstance(statuses, str | bytes) or not isinstance(statuses, Iterable):
        raise ValueError(
            f"retry_statuses must be a collection of HTTP status codes (100..599), "
            f"got {statuses!r}"
        )
    codes = tuple(statuses)
    for code in codes:
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise ValueError(
                f"retry_statuses must hold HTTP status codes in 100..599, got {code!r}"
            )
    return tuple(sorted(set(codes)))


def _allow_hosts(hosts: object) -> tuple[str, ...]:
    """Stripped, lower-cased `host` / `host:port` entries; ValueError naming the bad one."""
    if isinstance(hosts, str | bytes) or not isinstance(hosts, Iterable):
        raise ValueError(
            f"allow_hosts must be a collection of 'host' or 'host:port' strings, got {hosts!r}"
        )
    normalized: list[str] = []
    for entry in hosts:
        if (
            not isinstance(entry, str)
            or not entry.strip()
            or any(c in entry.strip() for c in "/@ \t\r\n")
        ):
            raise ValueError(
                f"allow_hosts entries must be 'host', 'host:port' or '[v6]:port' strings "
                f"(no scheme or path), got {entry!r}"
            )
        normalized.append(entry.strip().lower())
    return tuple(normalized)


@dataclass(frozen=True)
class Fetched:
    """The outcome of one `HttpClient.get`: a value, never an exception.

    Attributes:
        url: the URL asked for.
        final_url: the URL of the last hop (after redirects); equals `url` if none.
        status: `ok` (2xx, or 304 Not Modified with an empty body), `http_error` (any other
            HTTP status, too many redirects, a Retry-After too long), `timeout`, `too_large`,
            `blocked` (scheme or address refused), `robots_disallowed` (the origin's robots.txt
            disallows the URL for us, or could not be read: nothing sent), `error` (bad URL,
            DNS, connection, TLS, truncated or undecodable body).
        http_status: the last HTTP status received, if any.
        headers: the last response's headers, lower-case keys (repeated headers comma-joined).
        content: the body if `ok`; up to 64 KiB of the error page for `http_error`; else b"".
        error_message: what went wrong, for humans; None when `ok`.
        attempts: attempts really made (1 + retries used), each one pass over the redirect
            chain; 0 when refused locally before anything was sent (invalid URL, scheme or
            address blocked).
        elapsed_s: wall-clock seconds for the whole `get`, waits between retries included.
    """

    url: str
    final_url: str
    status: Status
    http_status: int | None
    headers: dict[str, str]
    content: bytes
    error_message: str | None
    attempts: int
    elapsed_s: float

    @property
    def ok(self) -> bool:
        """Whether the request succeeded (`status` is ``ok``)."""
        return self.status == "ok"

    def head(self) -> Fetched:
        """This outcome without its body and headers: what a run keeps of every URL it
        fetched until its end (a downloader's row needs neither)."""
        return replace(self, headers={}, content=b"")
