"""The one HTTP client every tv100 stage uses (IMDb pages, dataset files, image engines, images).

Why one client: crawling is where a pipeline like this goes wrong quietly, so the rules live in
one place and every stage gets them for free:

- **Timeouts.** Every request has a connect timeout and a *total* wall-clock limit (connect,
  headers and body together); a server that trickles bytes cannot hold a worker forever.
- **Retries, only where they can help** (`tv100.tasks.web.retry`).
- **A size cap and bounded decoding** (`tv100.tasks.web.decoding`). Response headers are
  bounded by httpcore (100 KiB) and, like a trickled body, by `timeout_s`.
- **Outbound safety** (`tv100.tasks.web.guard`): every hop's target is checked before the
  request and again at connect time. Only http(s).
- **Politeness** (`tv100.tasks.web.politeness`): one shared keep-alive `httpx.AsyncClient`, a
  global connection bound, a small per-host concurrency bound and a per-host rate (on by
  default, slowed further by a robots.txt Crawl-delay).
- **robots.txt** (`tv100.tasks.web.robots`): on by default, asked before every hop, once per
  origin; a disallowed URL is never requested. Clients of search engines' result pages turn
  it off (``robots=None``): it is honoured for IMDb pages and image hosts.

Per-URL problems never raise: `HttpClient.get` returns a `Fetched` whose `status` says what
happened (`ok`, `http_error`, `timeout`, `too_large`, `blocked`, `robots_disallowed`,
`error`). Only programming or configuration errors raise.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

import httpx

from tv100.tasks.web.config import ERROR_BODY_LIMIT, Fetched, HttpConfig, Status
from tv100.tasks.web.decoding import ACCEPT_ENCODING, bound_decoding, read_capped, read_prefix
from tv100.tasks.web.errors import FetchFailure, TooLarge, describe
from tv100.tasks.web.guard import GuardedTransport, OutboundGuard
from tv100.tasks.web.politeness import HostLimiter
from tv100.tasks.web.responses import redirect_location, response_headers
from tv100.tasks.web.retry import is_retryable_connection_error, retrying, status_retry
from tv100.tasks.web.robots import ROBOTS, RobotsCache, RobotsPolicy, check_robots, origin_of

_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

Consume = Callable[[httpx.Response], Awaitable[bytes]]
"""Reads a 2xx response body. Returns the bytes kept in `Fetched.content` (a future streaming
downloader can write to a temp file and return b""); raises `TooLarge` past the cap."""


@dataclass
class _Attempt:
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
    """State of one `get` across attempts; `robots` False for a robots.txt request itself."""

    url: str
    attempts: int = 0
    robots: bool = True


class _Cookies(httpx.Cookies):
    """httpx's cookie jar, which skips responses that set no cookie.

    httpx hands every response to `http.cookiejar` (a mock request, a mock response and the
    jar's policy), which cost about a tenth of the event loop's CPU per downloaded image;
    most responses, images above all, set no cookie and leave the jar as it was.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        """Store the cookies of a response that sets any."""
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


def _skip_cookieless_responses(client: httpx.AsyncClient) -> None:
    """Give `client` a `_Cookies` jar (httpx copies any jar passed in into a plain one)."""
    if not isinstance(getattr(client, "_cookies", None), httpx.Cookies):
        raise RuntimeError(
            "this httpx version keeps its cookie jar differently; tv100.tasks.web.client "
            "cannot install its cookie-jar shortcut"
        )
    jar = _Cookies()
    jar.jar = client._cookies.jar
    client._cookies = jar


class HttpClient:
    """Async HTTP client with tv100's rules; use as `async with HttpClient(config) as c:`.

    One instance owns one `httpx.AsyncClient` (keep-alive pool), its `OutboundGuard`, its
    `HostLimiter` (global and per-host bounds, per-host rate) and its `RobotsCache`.

    Args:
        config: the HTTP settings (default `HttpConfig()`).
        robots: how robots.txt is honoured (default `ROBOTS`); None to not consult it, for
            search engines' result pages only.
    """

    def __init__(
        self, config: HttpConfig | None = None, *, robots: RobotsPolicy | None = ROBOTS
    ) -> None:
        self.config = config or HttpConfig()
        self.robots_policy = robots
        self._client: httpx.AsyncClient | None = None
        self._limiter: HostLimiter | None = None
        self._robots: RobotsCache | None = None
        self._guard = OutboundGuard(self.config.allow_hosts, self.config.connect_timeout_s)

    @property
    def limiter(self) -> HostLimiter | None:
        """The open client's per-host limits (None when closed)."""
        return self._limiter

    @property
    def robots(self) -> RobotsCache | None:
        """The open client's robots.txt rules (None when closed or robots are off)."""
        return self._robots

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
            transport=GuardedTransport(self._guard, limits, cfg.trust_env),
        )
        _skip_cookieless_responses(self._client)
        self._limiter = HostLimiter(cfg)
        if self.robots_policy is not None:
            self._robots = RobotsCache(self.robots_policy, cfg.user_agent, self._get_robots)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        robots, self._robots = self._robots, None
        self._limiter = None
        if robots is not None:
            await robots.aclose()
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
        consume = functools.partial(read_capped, limit=self.config.max_bytes)
        return await self._get(url, headers, consume)

    async def _get_robots(self, url: str) -> Fetched:
        """GET a robots.txt: its first `RobotsPolicy.max_bytes`, without asking robots.txt."""
        assert self.robots_policy is not None
        consume = functools.partial(_read_head, limit=self.robots_policy.max_bytes)
        return await self._get(url, None, consume, robots=False)

    async def _get(
        self,
        url: str,
        headers: Mapping[str, str] | None,
        consume: Consume,
        *,
        robots: bool = True,
    ) -> Fetched:
        if self._client is None:
            raise RuntimeError("HttpClient is not open; use `async with HttpClient(config)`")
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}")
        started = time.monotonic()
        call = _Call(url, robots=robots)
        hop_headers = dict(headers or {})
        result = await self._attempt(call, hop_headers, consume)
        if result.retry_reason is not None and self.config.retries > 0:
            # Only an attempt that may be retried pays for tenacity's machinery (about a
            # tenth of the event loop's CPU per image when every request went through it);
            # its first call is the attempt just made.
            made = [result]

            async def attempt() -> _Attempt:
                return made.pop() if made else await self._attempt(call, hop_headers, consume)

            result = await retrying(self.config, url)(attempt)
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

    async def _attempt(self, call: _Call, headers: dict[str, str], consume: Consume) -> _Attempt:
        """One attempt: the whole redirect chain; every failure becomes an `_Attempt`."""
        try:
            first = httpx.URL(call.url)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            return _Attempt("error", call.url, error_message=f"invalid URL: {describe(exc)}")
        final = [str(first)]
        try:
            return await self._fetch_once(first, headers, consume, call, final)
        except FetchFailure as f:
            return _Attempt(
                f.status, final[0], error_message=f.message, retry_reason=f.retry_reason
            )
        except TooLarge as exc:
            return _Attempt("too_large", final[0], error_message=str(exc))
        except (TimeoutError, httpx.TimeoutException) as exc:
            if isinstance(exc, httpx.TimeoutException):
                message = f"timed out ({describe(exc)})"
            else:
                message = f"timed out after {self.config.timeout_s:g} s (timeout_s)"
            return _Attempt("timeout", final[0], error_message=message, retry_reason="timeout")
        except httpx.UnsupportedProtocol as exc:
            return _Attempt("blocked", final[0], error_message=describe(exc))
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            retry = is_retryable_connection_error(exc)
            return _Attempt(
                "error",
                final[0],
                error_message=f"connection error: {describe(exc)}",
                retry_reason="connection error" if retry else None,
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return _Attempt("error", final[0], error_message=describe(exc))

    async def _fetch_once(
        self,
        url: httpx.URL,
        headers: dict[str, str],
        consume: Consume,
        call: _Call,
        final: list[str],
    ) -> _Attempt:
        """Follow the redirect chain from `url`; `final[0]` tracks the current hop's URL."""
        assert self._client is not None and self._limiter is not None
        counted = False
        redirects = 0
        hop_headers = dict(headers)
        while True:
            final[0] = str(url)
            try:
                host = await self._guard.check_target(url)
                if call.robots and self._robots is not None:
                    await check_robots(self._robots, self._limiter, url, host)
            except FetchFailure as f:
                if not counted and not f.local:  # DNS was tried: a real attempt
                    call.attempts += 1
                raise
            if not counted:  # refused locally does not count; from here on it does
                call.attempts += 1
                counted = True
            async with self._limiter.slot(host):
                # The transport re-checks the addresses it connects to (`GuardedBackend`).
                async with asyncio.timeout(self.config.timeout_s):
                    request = self._client.build_request("GET", url, headers=hop_headers)
                    response = await self._client.send(request, stream=True)
                    try:
                        location = redirect_location(response)
                        if location is None:
                            return await self._finish(response, consume)
                        await read_prefix(response, ERROR_BODY_LIMIT)
                    finally:
                        await response.aclose()
            status = response.status_code
            if not self.config.follow_redirects:
                return _Attempt(
                    "http_error",
                    str(url),
                    http_status=status,
                    headers=response_headers(response),
                    error_message=f"HTTP {status} redirect to {location} not followed "
                    "(follow_redirects=False)",
                )
            redirects += 1
            if redirects > self.config.max_redirects:
                return _Attempt(
                    "http_error",
                    str(url),
                    http_status=status,
                    headers=response_headers(response),
                    error_message=f"too many redirects: more than max_redirects="
                    f"{self.config.max_redirects} (redirect loop?); last Location {location}",
                )
            try:
                next_url = url.join(location)
            except (httpx.InvalidURL, ValueError) as exc:
                return _Attempt(
                    "error",
                    str(url),
                    http_status=status,
                    error_message=f"bad redirect Location {location!r}: {describe(exc)}",
                )
            if origin_of(next_url) != origin_of(url):
                hop_headers = {
                    k: v for k, v in hop_headers.items() if k.lower() not in _CREDENTIAL_HEADERS
                }
            url = next_url

    async def _finish(self, response: httpx.Response, consume: Consume) -> _Attempt:
        status = response.status_code
        url = str(response.url)
        if 200 <= status < 300 or status == 304:
            if status != 304:
                bound_decoding(response, self.config.max_bytes)
            content = await consume(response) if status != 304 else b""
            return _Attempt(
                "ok", url, http_status=status, headers=response_headers(response), content=content
            )
        body = await read_prefix(response, ERROR_BODY_LIMIT)
        message = f"HTTP {status} {response.reason_phrase}".rstrip()
        retry = status_retry(self.config, status, response.headers.get("retry-after"))
        if retry.refused_wait is not None:
            message = f"{message}: {retry.refused_wait}"
        return _Attempt(
            "http_error",
            url,
            http_status=status,
            headers=response_headers(response),
            content=body,
            error_message=message,
            retry_reason=retry.reason,
            retry_after=retry.after if retry.reason is not None else None,
        )


async def _read_head(response: httpx.Response, limit: int) -> bytes:
    """The first `limit` bytes of a body, the rest left unread (a robots.txt, RFC 9309 2.5).

    Unlike `read_prefix`, a transfer that breaks raises: a robots.txt cut short must not
    pass for a whole one.
    """
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk[: limit - total])
        total += len(chunk)
        if total >= limit:
            break
    return b"".join(chunks)


async def _fetch_all(
    urls: list[str],
    config: HttpConfig,
    headers: Mapping[str, str] | None,
    robots: RobotsPolicy | None,
) -> list[Fetched]:
    results: list[Fetched | None] = [None] * len(urls)
    next_index = 0

    async with HttpClient(config, robots=robots) as client:

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
    robots: RobotsPolicy | None = ROBOTS,
) -> list[Fetched]:
    """Fetch many URLs concurrently (bounded by the config) from synchronous code.

    Args:
        urls: http(s) URLs; duplicates are fetched once each time they appear.
        config: the HTTP settings (default `HttpConfig()`).
        headers: extra headers for every request.
        robots: how robots.txt is honoured (None: not consulted).

    Returns:
        One `Fetched` per URL, in input order.

    Raises:
        RuntimeError: when called from a running event loop (use `HttpClient` there).
    """
    url_list = list(urls)
    if not url_list:
        return []
    return asyncio.run(_fetch_all(url_list, config or HttpConfig(), headers, robots))
