"""Politeness: a global bound on requests in flight, a per-host bound and a per-host rate.

The rate is on by default: a host that did not ask for more gets at most
`DEFAULT_RATE_PER_HOST` request starts per second (`HttpConfig.rate_per_host` overrides it),
spaced evenly (an aiolimiter leaky bucket of capacity one, so no burst), and never faster
than its robots.txt ``Crawl-delay`` (`HostLimiter.set_min_interval`). Every request of one
client to that host shares it; the downloader's worker processes divide it among themselves
(`tv100.tasks.collect.workers.per_worker_config`).

Hosts in `HttpConfig.allow_hosts` are servers of your own (the loopback sandbox, a local
mirror): no rate applies to them, only their robots.txt's Crawl-delay. The concurrency
bounds apply to every host.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiolimiter import AsyncLimiter

from tv100.tasks.web.config import HttpConfig

DEFAULT_RATE_PER_HOST = 4.0
"""Request starts per second per host when `HttpConfig.rate_per_host` is None: a few."""


def rate_per_host(config: HttpConfig) -> float:
    """The requests per second per host a config asks for (the default when it names none)."""
    return config.rate_per_host if config.rate_per_host is not None else DEFAULT_RATE_PER_HOST


def own_hosts(config: HttpConfig) -> frozenset[str]:
    """Host names of `allow_hosts` entries (``host``, ``host:port``, ``[v6]:port``)."""
    hosts = set()
    for entry in config.allow_hosts:
        if entry.startswith("["):
            hosts.add(entry[1:].split("]", 1)[0])
        elif entry.count(":") == 1:
            hosts.add(entry.split(":", 1)[0])
        else:  # a bare name, or a bare IPv6 address
            hosts.add(entry)
    return frozenset(hosts)


class HostLimiter:
    """The concurrency and rate limits of one client; create it inside the event loop.

    Args:
        config: `max_connections` (global bound), `per_host`, `rate_per_host` (None: the
            default rate) and `allow_hosts` (hosts without a rate).
    """

    def __init__(self, config: HttpConfig) -> None:
        self._config = config
        self._global = asyncio.Semaphore(config.max_connections)
        self._host_sems: dict[str, asyncio.Semaphore] = {}
        self._own = own_hosts(config)
        self._interval = 1.0 / rate_per_host(config)
        self._rates: dict[str, AsyncLimiter | None] = {}

    def interval(self, host: str) -> float:
        """Seconds between two request starts to `host` (0 for a host without a rate)."""
        limiter = self._limiter(host)
        return 0.0 if limiter is None else limiter.time_period

    def set_min_interval(self, host: str, seconds: float | None) -> None:
        """Space request starts to `host` at least `seconds` apart (a robots.txt Crawl-delay).

        Only ever slows a host down; None or a shorter interval than the current one is a
        no-op, so calling it on every request is cheap.
        """
        if seconds is None or seconds <= 0 or seconds <= self.interval(host):
            return
        self._rates[host] = AsyncLimiter(1, seconds)

    def _limiter(self, host: str) -> AsyncLimiter | None:
        if host not in self._rates:
            own = host in self._own
            self._rates[host] = None if own else AsyncLimiter(1, self._interval)
        return self._rates[host]

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        """Per-host semaphore, then the per-host rate, then the global semaphore."""
        sem = self._host_sems.get(host)
        if sem is None:
            sem = self._host_sems[host] = asyncio.Semaphore(self._config.per_host)
        async with sem:
            limiter = self._limiter(host)
            if limiter is not None:
                await limiter.acquire()
            async with self._global:
                yield
