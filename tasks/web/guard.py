"""Outbound safety: only public http(s) targets are fetched (SSRF and DNS-rebinding guard).

Before every request *and every redirect hop* `OutboundGuard.check_target` resolves the host
and refuses (`blocked`) if any address is private, loopback, link-local (cloud metadata
169.254.169.254 included), multicast, reserved or unspecified, unless the host is listed in
`HttpConfig.allow_hosts` (the test sandbox on 127.0.0.1 is allow-listed by its callers).

The check is made again *at connect time*: `GuardedTransport` builds httpx's connection pool on
`GuardedBackend`, which resolves the name itself, checks every address and connects to the
checked IP (TLS still verifies the host name), so a name that re-resolves to a private address
between the check and the connection is refused too, and nothing is sent to it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from tv100.tasks.web.aiostream import AsyncioBackend
from tv100.tasks.web.errors import ConnectBlocked, FetchFailure, describe

ALLOWED_SCHEMES = frozenset({"http", "https"})
_HOSTNAME = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*"
)


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


def default_port(url: httpx.URL) -> int:
    """The URL's port, or the scheme's default (443 for https, else 80)."""
    if url.port is not None:
        return url.port
    return 443 if url.scheme == "https" else 80


def host_of(url: httpx.URL) -> str:
    """ASCII (IDNA) host name, lower-case, IPv6 without brackets."""
    return url.raw_host.decode("ascii", "replace").lower().rstrip(".")


def literal_address(host: str) -> list[str] | None:
    """[host] if it is an IP literal (no DNS needed), else None."""
    try:
        return [str(ipaddress.ip_address(host.split("%", 1)[0]))]
    except ValueError:
        return None


def _refusal(problem: str, address: str, via: str) -> str:
    return (
        f"refusing {problem} address {address}{via}; add the host to "
        "HttpConfig.allow_hosts if this is intended"
    )


class OutboundGuard:
    """The address policy of one `HttpClient`: its allow-list and its resolver.

    Args:
        allow_hosts: `HttpConfig.allow_hosts` (normalised entries).
        connect_timeout_s: limit for one DNS resolution of the pre-check.
    """

    def __init__(self, allow_hosts: Iterable[str], connect_timeout_s: float) -> None:
        self._allow = frozenset(allow_hosts)
        self._connect_timeout_s = connect_timeout_s

    def is_allowed(self, host: str, port: int) -> bool:
        """Whether `host` (or `host:port`) is allow-listed, so exempt from the address check."""
        if not self._allow:
            return False
        bracketed = f"[{host}]" if ":" in host else host
        return bool({host, bracketed, f"{bracketed}:{port}", f"{host}:{port}"} & self._allow)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses `host` resolves to (the one DNS lookup both checks go through)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]

    async def check_target(self, url: httpx.URL) -> str:
        """Refuse non-http(s) and non-public targets.

        Returns:
            The host name (the key of the per-host limits).

        Raises:
            FetchFailure: `blocked` (scheme or address refused), `error` (bad host, DNS
                failure) or `timeout` (DNS too slow); `local` when nothing was sent.
        """
        if url.scheme not in ALLOWED_SCHEMES:
            raise FetchFailure(
                "blocked",
                f"scheme {url.scheme or '(none)'!r} is not allowed (http/https)",
                local=True,
            )
        host = host_of(url)
        if not host:
            raise FetchFailure("error", f"invalid URL {str(url)!r}: no host", local=True)
        port = default_port(url)
        if self.is_allowed(host, port):
            return host
        addresses = literal_address(host)
        if addresses is None:
            if len(host) > 253 or not _HOSTNAME.fullmatch(host):
                raise FetchFailure(
                    "error", f"invalid host name {host!r} in {str(url)!r}", local=True
                )
            addresses = await self._resolve_checked(host, port)
        for address in addresses:
            problem = address_problem(address)
            if problem:
                via = "" if address == host else f" (resolved from {host!r})"
                raise FetchFailure("blocked", _refusal(problem, address, via), local=True)
        return host

    async def _resolve_checked(self, host: str, port: int) -> list[str]:
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                addresses = await self.resolve(host, port)
        except TimeoutError:
            raise FetchFailure(
                "timeout", f"DNS resolution of {host!r} timed out", retry_reason="DNS timeout"
            ) from None
        except (OSError, UnicodeError) as exc:
            transient = isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_AGAIN
            raise FetchFailure(
                "error",
                f"DNS resolution of {host!r} failed: {describe(exc)}",
                retry_reason="DNS temporary failure" if transient else None,
            ) from None
        if not addresses:
            raise FetchFailure("error", f"DNS resolution of {host!r} returned no address")
        return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend that checks the addresses it really connects to.

    `connect_tcp` resolves the host itself (through `OutboundGuard.resolve`), refuses the
    connection if any address is not public (`address_problem`), and connects to the
    checked IP, never to the name, so the name cannot re-resolve elsewhere in between.
    Hosts in `allow_hosts` are connected to as given. Unix sockets are refused.
    """

    def __init__(self, guard: OutboundGuard) -> None:
        self._guard = guard
        self._inner = AsyncioBackend()

    async def _resolve(self, host: str, port: int, timeout: float | None) -> list[str]:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._guard.resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"DNS resolution of {host!r} timed out") from None
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(
                f"DNS resolution of {host!r} failed: {describe(exc)}"
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
        """Connect to a checked address of `host` (or to `host` itself if allow-listed)."""
        name = host.lower().strip("[]").rstrip(".")
        if self._guard.is_allowed(name, port):
            return await self._inner.connect_tcp(
                host, port, timeout=timeout, local_address=local_address,
                socket_options=socket_options,
            )
        addresses = literal_address(name) or await self._resolve(host, port, timeout)
        for address in addresses:
            problem = address_problem(address)
            if problem:
                via = "" if address == name else f" (resolved from {name!r} at connect time)"
                raise ConnectBlocked(_refusal(problem, address, via))
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
        """Always refused: a page must not make the crawler talk to a local socket."""
        raise ConnectBlocked(f"refusing Unix socket {path!r}")

    async def sleep(self, seconds: float) -> None:
        """Delegates to the AnyIO backend."""
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pool built on `GuardedBackend`."""

    def __init__(self, guard: OutboundGuard, limits: httpx.Limits, trust_env: bool) -> None:
        super().__init__(limits=limits, trust_env=trust_env)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError(
                "this httpx version builds its transport differently; tv100.tasks.web.guard "
                "cannot install the connect-time address check"
            )
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=trust_env),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(guard),
        )
