"""Politeness: a global bound on requests in flight, a per-host bound and a per-host rate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tv100.tasks.web.config import HttpConfig


class HostLimiter:
    """The concurrency and rate limits of one `HttpClient`; create it inside the event loop.

    Args:
        config: `max_connections` (global bound), `per_host` and `rate_per_host`.
    """

    def __init__(self, config: HttpConfig) -> None:
        self._config = config
        self._global = asyncio.Semaphore(config.max_connections)
        self._host_sems: dict[str, asyncio.Semaphore] = {}
        self._next_start: dict[str, float] = {}

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        """Per-host semaphore, then the per-host rate limit, then the global semaphore."""
        sem = self._host_sems.get(host)
        if sem is None:
            sem = self._host_sems[host] = asyncio.Semaphore(self._config.per_host)
        async with sem:
            await self._rate_wait(host)
            async with self._global:
                yield

    async def _rate_wait(self, host: str) -> None:
        rate = self._config.rate_per_host
        if rate is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Reserve the next start slot without an await in between: atomic under asyncio.
        start = max(now, self._next_start.get(host, now))
        self._next_start[host] = start + 1.0 / rate
        if start > now:
            await asyncio.sleep(start - now)
