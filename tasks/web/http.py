"""The one HTTP layer every tv100 stage uses (IMDb pages, dataset files, image engines, images).

Why one layer: crawling is where a pipeline like this goes wrong quietly, so the rules live in one
place and every stage gets them for free:

- **Timeouts.** Every request has a connect timeout and a *total* wall-clock limit (connect,
  headers and body together); a server that trickles bytes cannot hold a worker forever.
- **Retries, only where they can help.** Timeouts, connection errors (refused, reset, truncated
  bodies) and the statuses in `HttpConfig.retry_statuses` (429, 500, 502, 503, 504) are retried
  with exponential backoff and full jitter, or after exactly the server's `Retry-After` (seconds
  or an HTTP date) when it sends one. A `Retry-After` longer than `max_retry_after_s` is not
  waited for: the item fails at once. Other 4xx (403, 404, 410, ...), TLS certificate errors,
  blocked or oversized responses are final on the first attempt.
- **A size cap.** Bodies are streamed and counted; a response over `max_bytes` is abandoned as
  soon as it crosses the limit (or before reading anything, when its Content-Length says so).
- **Outbound safety.** Before every request *and every redirect hop* the host is resolved and the
  request is refused (`blocked`) if any address is private, loopback, link-local (cloud metadata
  169.254.169.254 included), multicast, reserved or unspecified, unless the host is listed in
  `allow_hosts` (the test sandbox on 127.0.0.1 is allow-listed by its callers). Only http(s).
  The check is made again *at connect time*: the client's transport resolves the name itself,
  checks every address and connects to the checked IP (TLS still verifies the host name), so a
  name that re-resolves to a private address between the check and the connection (DNS
  rebinding) is refused too, and nothing is sent to it.
- **Bounded decoding.** Only ``gzip, deflate`` are asked for, and a compressed body is inflated
  layer by layer with an output cap (`max_bytes` for bodies, 64 KiB for error pages): a small
  gzip bomb (``Content-Encoding: gzip`` or stacked ``gzip, gzip``) ends as `too_large` without
  ever holding more than the cap in memory. Response headers are bounded by httpcore (100 KiB)
  and, like a trickled body, by `timeout_s`.
- **Politeness.** One shared keep-alive `httpx.AsyncClient`, a global connection bound, a small
  per-host concurrency bound and an optional per-host request rate.

Per-URL problems never raise: `HttpClient.get` returns a `Fetched` whose `status` says what
happened (`ok`, `http_error`, `timeout`, `too_large`, `blocked`, `error`). Only programming or
configuration errors raise.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import random
import re
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib import metadata
from types import TracebackType
from typing import Any, Literal

import httpcore
import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt

log = logging.getLogger("tv100.http")

Status = Literal["ok", "http_error", "timeout", "too_large", "blocked", "error"]

MIB = 1024 * 1024
ERROR_BODY_LIMIT = 64 * 1024
"""How much of a non-2xx body is kept in `Fetched.content` (error pages help debugging)."""

DEFAULT_RETRY_STATUSES = (429, 500, 502, 503, 504)
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ALLOWED_SCHEMES = frozenset({"http", "https"})
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
ACCEPT_ENCODING = "gzip, deflate"
"""The only content codings asked for: the ones `_BoundedDecoder` inflates with a cap."""
_INFLATE_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": 0}
MAX_CONTENT_CODINGS = 4
"""More stacked codings than this (``gzip, gzip, gzip, ...``) are refused as an `error`."""
_HOSTNAME = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*"
)

Consume = Callable[[httpx.Response], Awaitable[bytes]]
"""Reads a 2xx response body. Returns the bytes kept in `Fetched.content` (a future streaming
downloader can write to a temp file and return b""); raises `_TooLarge` past the cap."""


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
        connect_timeout_s: limit for DNS resolution and for opening a connection, in s.
        max_connections: requests in flight at once over all hosts (and the connection pool size).
        per_host: requests in flight at once to one host name.
        rate_per_host: requests started per second per host name; None for no limit.
        retries: extra attempts after the first one (0 = no retry).
        retry_statuses: HTTP statuses that are retried (others are final).
        backoff_base_s: first backoff ceiling; attempt n waits uniform(0, base * 2**(n-1)).
        backoff_max_s: ceiling of any backoff wait.
        max_retry_after_s: a longer Retry-After is not waited for; the item fails (http_error).
        max_bytes: largest response body accepted; larger ones end as `too_large`.
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
        _check_int("max_redirects", self.max_redirects, 0, 50)

        statuses = self.retry_statuses
        if isinstance(statuses, str | bytes) or not isinstance(statuses, Iterable):
            raise ValueError(
                f"retry_statuses must be a collection of HTTP status codes (100..599), "
                f"got {statuses!r}"
            )
        statuses = tuple(statuses)
        for code in statuses:
            if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                raise ValueError(
                    f"retry_statuses must hold HTTP status codes in 100..599, got {code!r}"
                )
        object.__setattr__(self, "retry_statuses", tuple(sorted(set(statuses))))

        if not isinstance(self.user_agent, str) or not self.user_agent.strip():
            raise ValueError(f"user_agent must be a non-empty string, got {self.user_agent!r}")
        if any(c in self.user_agent for c in "\r\n\0"):
            raise ValueError("user_agent must be a single line (no CR, LF or NUL)")

        hosts = self.allow_hosts
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
        object.__setattr__(self, "allow_hosts", tuple(normalized))
        for name in ("follow_redirects", "trust_env"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")


def _check_number(
    name: str, value: Any, low: float, high: float, *, low_open: bool = False
) -> None:
    bad = isinstance(value, bool) or not isinstance(value, int | float) or value != value
    if not bad:
        bad = value < low or value > high or (low_open and value == low)
    if bad:
        lo = f"> {low:g}" if low_open else f">= {low:g}"
        raise ValueError(f"{name} must be a number {lo} and <= {high:g}, got {value!r}")


def _check_int(name: str, value: Any, low: int, high: int, *, high_name: str | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        upper = f"{high_name} ({high})" if high_name else str(high)
        raise ValueError(f"{name} must be an integer in {low}..{upper}, got {value!r}")


@dataclass
class Fetched:
    """The outcome of one `HttpClient.get`: a value, never an exception.

    Attributes:
        url: the URL asked for.
        final_url: the URL of the last hop (after redirects); equals `url` if none.
        status: `ok` (2xx, or 304 Not Modified with an empty body), `http_error` (any other
            HTTP status, too many redirects, a Retry-After too long), `timeout`, `too_large`,
            `blocked` (scheme or address refused), `error` (bad URL, DNS, connection, TLS,
            truncated or undecodable body).
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
        return self.status == "ok"


class _TooLarge(Exception):
    """Raised by a consumer when the body exceeds `max_bytes`."""


class _Fail(Exception):
    """A per-hop failure decided before or without a response (blocked, DNS...)."""

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
        self.local = local  # decided without any network traffic (not an attempt on hop 1)


@dataclass
class _Result:
    """One attempt's outcome; `retry_reason` set means the attempt may be retried."""

    status: Status
    final_url: str
    http_status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""
    error_message: str | None = None
    retry_reason: str | None = None
    retry_after: float | None = None


@dataclass
class _Call:
    """State of one `get` across attempts."""

    url: str
    attempts: int = 0


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


def address_problem(address: str) -> str | None:
    """Why an IP address must not be fetched, or None if it is a public unicast address.

    Args:
        address: an IPv4 or IPv6 address (an IPv6 zone id `%eth0` is ignored).

    Returns:
        e.g. "private", "loopback", "link-local", ... or None.
    """
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
            address.split("%", 1)[0]
        )
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            inner = address_problem(str(mapped))
            return f"IPv4-mapped {inner}" if inner else None
        if ip.sixtofour is not None and address_problem(str(ip.sixtofour)):
            return "6to4 wrapping a non-public address"
        if ip.is_site_local:
            return "site-local"
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("not globally routable", not ip.is_global),
    )
    for name, hit in checks:
        if hit:
            return name
    return None


def _default_port(url: httpx.URL) -> int:
    if url.port is not None:
        return url.port
    return 443 if url.scheme == "https" else 80


def _host_of(url: httpx.URL) -> str:
    """ASCII (IDNA) host name, lower-case, IPv6 without brackets."""
    return url.raw_host.decode("ascii", "replace").lower().rstrip(".")


def _is_retryable_connection_error(exc: BaseException) -> bool:
    """Connection problems worth another try; TLS/certificate failures are not."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError | ssl.CertificateError):
            return False
        cur = cur.__cause__ or cur.__context__
    return True


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Inflater:
    """One gzip/deflate layer, inflated with a cap on its total output."""

    def __init__(self, coding: str, cap: int, limit: int) -> None:
        self.coding = coding
        self._wbits = _INFLATE_WBITS[coding]
        self._obj = zlib.decompressobj(self._wbits or zlib.MAX_WBITS)
        self._started = False  # deflate: zlib-wrapped first, raw deflate if that fails
        self._cap = cap
        self._limit = limit
        self._out = 0

    def _too_large(self) -> _TooLarge:
        return _TooLarge(
            f"body exceeds max_bytes={self._limit} once decoded (Content-Encoding "
            f"{self.coding}); stopped reading"
        )

    def feed(self, data: bytes) -> bytes:
        if not data or self._obj.eof:
            return b""  # like httpx: bytes after the end of the stream are ignored
        left = self._cap - self._out
        try:
            out = self._obj.decompress(data, left + 1)
        except zlib.error:
            if self.coding != "deflate" or self._started:
                raise
            self._obj = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as httpx does
            out = self._obj.decompress(data, left + 1)
        self._started = True
        if len(out) > left:
            raise self._too_large()
        self._out += len(out)
        return out

    def flush(self) -> bytes:
        out = self._obj.flush() if not self._obj.eof else b""
        if self._out + len(out) > self._cap:
            raise self._too_large()
        self._out += len(out)
        return out


class _BoundedDecoder:
    """Drop-in for httpx's content decoder that never inflates past a cap.

    httpx inflates each network chunk in one call, so 64 KiB of ``gzip`` can become 64 MiB
    and of ``gzip, gzip`` many GiB before any size check runs. Here every layer's output is
    capped: the last layer at `limit` (more raises `_TooLarge`), inner layers a little above
    it (compressed data is never much larger than what it decodes to). Codings other than
    gzip/deflate (never asked for) are passed through undecoded, as httpx does.
    """

    def __init__(self, codings: list[str], limit: int) -> None:
        inflating = [c for c in codings if c in _INFLATE_WBITS]
        inner_cap = limit + limit // 64 + 4096
        # The header lists codings in the order they were applied: decode in reverse.
        order = list(reversed(inflating))
        self._layers = [
            _Inflater(c, limit if i == len(order) - 1 else inner_cap, limit)
            for i, c in enumerate(order)
        ]

    def decode(self, data: bytes) -> bytes:
        try:
            for layer in self._layers:
                data = layer.feed(data)
        except zlib.error as exc:
            raise httpx.DecodingError(f"cannot decode body: {exc}") from exc
        return data

    def flush(self) -> bytes:
        data = b""
        try:
            for layer in self._layers:
                data = layer.feed(data) + layer.flush()
        except zlib.error as exc:
            raise httpx.DecodingError(f"cannot decode body: {exc}") from exc
        return data


def _content_codings(response: httpx.Response) -> list[str]:
    values = response.headers.get_list("content-encoding", split_commas=True)
    return [v.strip().lower() for v in values if v.strip() and v.strip().lower() != "identity"]


def _bound_decoding(response: httpx.Response, limit: int) -> None:
    """Make `response.aiter_bytes()` inflate through `_BoundedDecoder` capped at `limit`.

    Raises:
        _Fail: (`error`) for more than `MAX_CONTENT_CODINGS` stacked codings.
    """
    codings = _content_codings(response)
    if len(codings) > MAX_CONTENT_CODINGS:
        raise _Fail(
            "error",
            f"{len(codings)} stacked Content-Encodings refused (at most {MAX_CONTENT_CODINGS})",
        )
    # httpx caches its decoder in this attribute the first time the body is read; setting
    # it first swaps in ours (checked by tests/test_hostile_http.py against gzip bombs).
    response.__dict__["_decoder"] = _BoundedDecoder(codings, limit)


class _ConnectBlocked(_Fail):
    """Raised by the network backend: a connect-time address check refused the target."""

    def __init__(self, message: str) -> None:
        super().__init__("blocked", message)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend that checks the addresses it really connects to.

    `connect_tcp` resolves the host itself (through `HttpClient._getaddrinfo`), refuses the
    connection if any address is not public (`address_problem`), and connects to the
    checked IP, never to the name, so the name cannot re-resolve elsewhere in between.
    Hosts in `allow_hosts` are connected to as given. Unix sockets are refused.
    """

    def __init__(self, client: HttpClient) -> None:
        self._client = client
        self._inner = httpcore.AnyIOBackend()

    async def _resolve(self, host: str, port: int, timeout: float | None) -> list[str]:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._client._getaddrinfo(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"DNS resolution of {host!r} timed out") from None
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(
                f"DNS resolution of {host!r} failed: {_describe(exc)}"
            ) from None
        if not addresses:
            raise httpcore.ConnectError(f"DNS resolution of {host!r} returned no address")
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        name = host.lower().strip("[]").rstrip(".")
        if self._client._is_allowed(name, port):
            return await self._inner.connect_tcp(
                host, port, timeout=timeout, local_address=local_address,
                socket_options=socket_options,
            )
        addresses = _literal_address(name) or await self._resolve(host, port, timeout)
        for address in addresses:
            problem = address_problem(address)
            if problem:
                via = "" if address == name else f" (resolved from {name!r} at connect time)"
                raise _ConnectBlocked(
                    f"refusing {problem} address {address}{via}; add the host to "
                    "HttpConfig.allow_hosts if this is intended"
                )
        error: Exception | None = None
        for address in dict.fromkeys(addresses):
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise _ConnectBlocked(f"refusing Unix socket {path!r}")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pool built on `_GuardedBackend`."""

    def __init__(self, client: HttpClient, limits: httpx.Limits, trust_env: bool) -> None:
        super().__init__(limits=limits, trust_env=trust_env)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError(
                "this httpx version builds its transport differently; tv100.tasks.web.http cannot "
                "install the connect-time address check"
            )
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=trust_env),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(client),
        )


class HttpClient:
    """Async HTTP client with tv100's rules; use as `async with HttpClient(config) as c:`.

    One instance owns one `httpx.AsyncClient` (keep-alive pool), a global semaphore of
    `max_connections`, a semaphore of `per_host` per host name and the per-host rate limiter.
    """

    def __init__(self, config: HttpConfig | None = None) -> None:
        self.config = config or HttpConfig()
        self._client: httpx.AsyncClient | None = None
        self._global: asyncio.Semaphore | None = None
        self._host_sems: dict[str, asyncio.Semaphore] = {}
        self._next_start: dict[str, float] = {}
        self._allow = frozenset(self.config.allow_hosts)

    async def __aenter__(self) -> HttpClient:
        if self._client is not None:
            raise RuntimeError("HttpClient is already open; use one `async with` per instance")
        cfg = self.config
        limits = httpx.Limits(
            max_connections=cfg.max_connections,
            max_keepalive_connections=cfg.max_connections,
        )
        self._client = httpx.AsyncClient(
            headers={"User-Agent": cfg.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
            timeout=httpx.Timeout(
                cfg.timeout_s, connect=cfg.connect_timeout_s, pool=cfg.connect_timeout_s
            ),
            limits=limits,
            follow_redirects=False,  # followed by hand: every hop is checked and counted
            trust_env=cfg.trust_env,
            # Connect-time address check (DNS rebinding); env proxies (trust_env) bypass it.
            transport=_GuardedTransport(self, limits, cfg.trust_env),
        )
        self._global = asyncio.Semaphore(cfg.max_connections)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        self._host_sems.clear()
        self._next_start.clear()
        if client is not None:
            await client.aclose()

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> Fetched:
        """GET one URL with retries, redirects, size cap and outbound checks.

        Args:
            url: an http(s) URL.
            headers: extra request headers (e.g. If-None-Match); they override the defaults.
                Authorization and Cookie are dropped when a redirect leaves the origin.

        Returns:
            A `Fetched`; per-URL problems are in its `status`, never raised.

        Raises:
            RuntimeError: if the client is not open (`async with` missing).
        """
        return await self._get(url, headers, self._read_capped)

    async def _get(self, url: str, headers: Mapping[str, str] | None, consume: Consume) -> Fetched:
        if self._client is None:
            raise RuntimeError("HttpClient is not open; use `async with HttpClient(config)`")
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}")
        started = time.monotonic()
        call = _Call(url)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.retries + 1),
            retry=retry_if_result(lambda r: r.retry_reason is not None),
            wait=self._wait,
            before_sleep=functools.partial(self._log_retry, call),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            reraise=True,
        )
        result: _Result = await retrying(self._attempt, call, dict(headers or {}), consume)
        message = result.error_message
        if result.retry_reason is not None and call.attempts > 1:
            message = f"{message} (gave up after {call.attempts} attempts)"
        return Fetched(
            url=url,
            final_url=result.final_url,
            status=result.status,
            http_status=result.http_status,
            headers=result.headers,
            content=result.content,
            error_message=message,
            attempts=call.attempts,
            elapsed_s=time.monotonic() - started,
        )

    # -- retries -----------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        result = state.outcome.result() if state.outcome and not state.outcome.failed else None
        if isinstance(result, _Result) and result.retry_after is not None:
            return result.retry_after
        cfg = self.config
        ceiling = min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** (state.attempt_number - 1))
        return random.uniform(0.0, ceiling)

    def _log_retry(self, call: _Call, state: RetryCallState) -> None:
        result = state.outcome.result() if state.outcome and not state.outcome.failed else None
        reason = result.retry_reason if isinstance(result, _Result) else "unknown"
        how = (
            "Retry-After"
            if isinstance(result, _Result) and result.retry_after is not None
            else "backoff"
        )
        wait = state.next_action.sleep if state.next_action else 0.0
        log.debug(
            "retry %d/%d of %s after %s; waiting %.2f s (%s)",
            state.attempt_number,
            self.config.retries,
            call.url,
            reason,
            wait,
            how,
        )

    async def _attempt(self, call: _Call, headers: dict[str, str], consume: Consume) -> _Result:
        """One attempt: the whole redirect chain; every failure becomes a `_Result`."""
        try:
            first = httpx.URL(call.url)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            return _Result("error", call.url, error_message=f"invalid URL: {_describe(exc)}")
        final = [str(first)]
        try:
            return await self._fetch_once(first, headers, consume, call, final)
        except _Fail as f:
            return _Result(f.status, final[0], error_message=f.message, retry_reason=f.retry_reason)
        except _TooLarge as exc:
            return _Result("too_large", final[0], error_message=str(exc))
        except (TimeoutError, httpx.TimeoutException) as exc:
            if isinstance(exc, httpx.TimeoutException):
                message = f"timed out ({_describe(exc)})"
            else:
                message = f"timed out after {self.config.timeout_s:g} s (timeout_s)"
            return _Result("timeout", final[0], error_message=message, retry_reason="timeout")
        except httpx.UnsupportedProtocol as exc:
            return _Result("blocked", final[0], error_message=_describe(exc))
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            retry = _is_retryable_connection_error(exc)
            return _Result(
                "error",
                final[0],
                error_message=f"connection error: {_describe(exc)}",
                retry_reason="connection error" if retry else None,
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return _Result("error", final[0], error_message=_describe(exc))

    # -- one attempt -------------------------------------------------------------------------

    async def _fetch_once(
        self,
        url: httpx.URL,
        headers: dict[str, str],
        consume: Consume,
        call: _Call,
        final: list[str],
    ) -> _Result:
        """Follow the redirect chain from `url`; `final[0]` tracks the current hop's URL."""
        assert self._client is not None
        counted = False
        redirects = 0
        hop_headers = dict(headers)
        while True:
            final[0] = str(url)
            try:
                host = await self._check_target(url)
            except _Fail as f:
                if not counted and not f.local:  # DNS was tried: a real attempt
                    call.attempts += 1
                raise
            if not counted:  # refused locally does not count; from here on it does
                call.attempts += 1
                counted = True
            async with self._slot(host):
                # The transport re-checks the addresses it connects to (`_GuardedBackend`).
                async with asyncio.timeout(self.config.timeout_s):
                    request = self._client.build_request("GET", url, headers=hop_headers)
                    response = await self._client.send(request, stream=True)
                    try:
                        location = self._redirect_location(response)
                        if location is None:
                            return await self._finish(response, consume)
                        await self._read_prefix(response, ERROR_BODY_LIMIT)
                    finally:
                        await response.aclose()
            status = response.status_code
            if not self.config.follow_redirects:
                return _Result(
                    "http_error",
                    str(url),
                    http_status=status,
                    headers=_headers(response),
                    error_message=f"HTTP {status} redirect to {location} not followed "
                    "(follow_redirects=False)",
                )
            redirects += 1
            if redirects > self.config.max_redirects:
                return _Result(
                    "http_error",
                    str(url),
                    http_status=status,
                    headers=_headers(response),
                    error_message=f"too many redirects: more than max_redirects="
                    f"{self.config.max_redirects} (redirect loop?); last Location {location}",
                )
            try:
                next_url = url.join(location)
            except (httpx.InvalidURL, ValueError) as exc:
                return _Result(
                    "error",
                    str(url),
                    http_status=status,
                    error_message=f"bad redirect Location {location!r}: {_describe(exc)}",
                )
            if (next_url.scheme, _host_of(next_url), _default_port(next_url)) != (
                url.scheme,
                _host_of(url),
                _default_port(url),
            ):
                hop_headers = {
                    k: v for k, v in hop_headers.items() if k.lower() not in _CREDENTIAL_HEADERS
                }
            url = next_url

    def _redirect_location(self, response: httpx.Response) -> str | None:
        if response.status_code in _REDIRECT_STATUSES:
            location = response.headers.get("location")
            if location:
                return location
        return None

    async def _finish(self, response: httpx.Response, consume: Consume) -> _Result:
        status = response.status_code
        url = str(response.url)
        if 200 <= status < 300 or status == 304:
            if status != 304:
                _bound_decoding(response, self.config.max_bytes)
            content = await consume(response) if status != 304 else b""
            return _Result(
                "ok", url, http_status=status, headers=_headers(response), content=content
            )
        body = await self._read_prefix(response, ERROR_BODY_LIMIT)
        message = f"HTTP {status} {response.reason_phrase}".rstrip()
        result = _Result(
            "http_error",
            url,
            http_status=status,
            headers=_headers(response),
            content=body,
            error_message=message,
        )
        if status in self.config.retry_statuses:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is not None and retry_after > self.config.max_retry_after_s:
                result.error_message = (
                    f"{message}: server asked to Retry-After {retry_after:.0f} s, more than "
                    f"max_retry_after_s={self.config.max_retry_after_s:g}; not waiting"
                )
                return result
            result.retry_reason = f"HTTP {status}"
            result.retry_after = retry_after
        return result

    async def _read_capped(self, response: httpx.Response) -> bytes:
        """The whole body, refusing more than `max_bytes` (Content-Length first, then counting)."""
        limit = self.config.max_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise _TooLarge(
                f"Content-Length {int(declared)} exceeds max_bytes={limit}; body not read"
            )
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > limit:
                # No byte count in the message: where the read stops depends on chunking,
                # and outcome rows must be the same on every run.
                raise _TooLarge(f"body exceeds max_bytes={limit}; stopped reading")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    async def _read_prefix(response: httpx.Response, limit: int) -> bytes:
        """Up to `limit` bytes of the body (error pages, redirect bodies); never fails."""
        chunks: list[bytes] = []
        total = 0
        try:
            _bound_decoding(response, limit)
            async for chunk in response.aiter_bytes():
                chunks.append(chunk[: limit - total])
                total += len(chunk)
                if total >= limit:
                    break
        except (httpx.HTTPError, httpx.StreamError, _TooLarge, _Fail):
            pass  # the status already says what matters; a broken error page is no news
        return b"".join(chunks)

    # -- outbound safety and concurrency -----------------------------------------------------

    def _is_allowed(self, host: str, port: int) -> bool:
        if not self._allow:
            return False
        bracketed = f"[{host}]" if ":" in host else host
        return bool({host, bracketed, f"{bracketed}:{port}", f"{host}:{port}"} & self._allow)

    async def _getaddrinfo(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]

    async def _check_target(self, url: httpx.URL) -> str:
        """Refuse non-http(s) and non-public targets; returns the host name (semaphore key)."""
        if url.scheme not in _ALLOWED_SCHEMES:
            raise _Fail(
                "blocked",
                f"scheme {url.scheme or '(none)'!r} is not allowed (http/https)",
                local=True,
            )
        host = _host_of(url)
        if not host:
            raise _Fail("error", f"invalid URL {str(url)!r}: no host", local=True)
        port = _default_port(url)
        if self._is_allowed(host, port):
            return host
        addresses = _literal_address(host)
        if addresses is None:
            if len(host) > 253 or not _HOSTNAME.fullmatch(host):
                raise _Fail("error", f"invalid host name {host!r} in {str(url)!r}", local=True)
            try:
                async with asyncio.timeout(self.config.connect_timeout_s):
                    addresses = await self._getaddrinfo(host, port)
            except TimeoutError:
                raise _Fail(
                    "timeout", f"DNS resolution of {host!r} timed out", retry_reason="DNS timeout"
                ) from None
            except (OSError, UnicodeError) as exc:
                transient = isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_AGAIN
                raise _Fail(
                    "error",
                    f"DNS resolution of {host!r} failed: {_describe(exc)}",
                    retry_reason="DNS temporary failure" if transient else None,
                ) from None
            if not addresses:
                raise _Fail("error", f"DNS resolution of {host!r} returned no address")
        for address in addresses:
            problem = address_problem(address)
            if problem:
                via = "" if address == host else f" (resolved from {host!r})"
                raise _Fail(
                    "blocked",
                    f"refusing {problem} address {address}{via}; add the host to "
                    "HttpConfig.allow_hosts if this is intended",
                    local=True,
                )
        return host

    @asynccontextmanager
    async def _slot(self, host: str) -> AsyncIterator[None]:
        """Per-host semaphore, then the per-host rate limit, then the global semaphore."""
        assert self._global is not None
        sem = self._host_sems.get(host)
        if sem is None:
            sem = self._host_sems[host] = asyncio.Semaphore(self.config.per_host)
        async with sem:
            await self._rate_wait(host)
            async with self._global:
                yield

    async def _rate_wait(self, host: str) -> None:
        rate = self.config.rate_per_host
        if rate is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Reserve the next start slot without an await in between: atomic under asyncio.
        start = max(now, self._next_start.get(host, now))
        self._next_start[host] = start + 1.0 / rate
        if start > now:
            await asyncio.sleep(start - now)


def _literal_address(host: str) -> list[str] | None:
    """[host] if it is an IP literal (no DNS needed), else None."""
    try:
        return [str(ipaddress.ip_address(host.split("%", 1)[0]))]
    except ValueError:
        return None


def _headers(response: httpx.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items()}


async def _fetch_all(
    urls: list[str], config: HttpConfig, headers: Mapping[str, str] | None
) -> list[Fetched]:
    results: list[Fetched | None] = [None] * len(urls)
    next_index = 0

    async with HttpClient(config) as client:

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(urls):
                i = next_index
                next_index += 1
                results[i] = await client.get(urls[i], headers=headers)

        workers = min(len(urls), config.max_connections)
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())
    done = [r for r in results if r is not None]
    assert len(done) == len(urls)
    return done


def fetch_all(
    urls: Iterable[str],
    config: HttpConfig | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> list[Fetched]:
    """Fetch many URLs concurrently (bounded by the config) from synchronous code.

    Args:
        urls: http(s) URLs; duplicates are fetched once each time they appear.
        config: the HTTP settings (default `HttpConfig()`).
        headers: extra headers for every request.

    Returns:
        One `Fetched` per URL, in input order.

    Raises:
        RuntimeError: when called from a running event loop (use `HttpClient` there).
    """
    url_list = list(urls)
    if not url_list:
        return []
    return asyncio.run(_fetch_all(url_list, config or HttpConfig(), headers))
