"""HostLimiter: the global and per-host bounds and the per-host rate (no network)."""

from __future__ import annotations

import asyncio

from tv100.tasks.web.config import HttpConfig
from tv100.tasks.web.politeness import HostLimiter


async def _most_in_flight(limiter: HostLimiter, hosts: list[str]) -> int:
    inflight = most = 0

    async def one(host: str) -> None:
        nonlocal inflight, most
        async with limiter.slot(host):
            inflight += 1
            most = max(most, inflight)
            for _ in range(5):  # let every other task try to get in meanwhile
                await asyncio.sleep(0)
            inflight -= 1

    await asyncio.gather(*(one(h) for h in hosts))
    return most


def test_per_host_bound():
    async def main() -> int:
        limiter = HostLimiter(HttpConfig(per_host=2, max_connections=8))
        return await _most_in_flight(limiter, ["a"] * 8)

    assert asyncio.run(main()) == 2


def test_global_bound_across_hosts():
    async def main() -> int:
        limiter = HostLimiter(HttpConfig(per_host=2, max_connections=3))
        return await _most_in_flight(limiter, ["a"] * 4 + ["b"] * 4)

    assert asyncio.run(main()) == 3


def test_rate_per_host_spaces_starts():
    """Each start is reserved 1/rate after the previous one on the same host; other hosts
    are not held back. Only lower bounds on the loop clock: a busy machine can only add."""
    rate = 50.0

    async def main() -> tuple[float, dict[str, list[float]]]:
        limiter = HostLimiter(HttpConfig(per_host=4, rate_per_host=rate))
        loop = asyncio.get_running_loop()
        starts: dict[str, list[float]] = {"a": [], "b": []}

        async def one(host: str) -> None:
            async with limiter.slot(host):
                starts[host].append(loop.time())

        t0 = loop.time()
        await asyncio.gather(*(one(h) for h in ["a"] * 5 + ["b"]))
        return t0, starts

    t0, starts = asyncio.run(main())
    a = sorted(starts["a"])
    assert len(a) == 5 and len(starts["b"]) == 1
    for i, t in enumerate(a):
        assert t - t0 >= i / rate - 1e-3
