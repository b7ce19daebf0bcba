"""HostLimiter: the global and per-host bounds and the per-host rate (no network).

The rate tests run on `_VirtualClockLoop`, an event loop whose clock is virtual: when every
task waits on a timer, the clock jumps (just past) the next timer instead of sleeping. Request start
times are then exact numbers (0, 0.25, 0.5 …) whatever the machine's load, and a test that
waits "minutes" takes milliseconds.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any

import pytest

from tv100.tasks.web.config import HttpConfig
from tv100.tasks.web.politeness import (
    DEFAULT_RATE_PER_HOST,
    HostLimiter,
    own_hosts,
    rate_per_host,
)


class _VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose `time()` advances only when it would otherwise sleep."""

    def __init__(self) -> None:
        super().__init__(selectors.DefaultSelector())
        self.now = 0.0
        select = self._selector.select  # type: ignore[attr-defined]

        def virtual_select(timeout: float | None = None) -> list[Any]:
            events = select(0)
            if not events and timeout is not None and timeout > 0:
                # Nothing ready: jump just past the next timer, as a real clock would move on
                # (landing exactly on it can leave aiolimiter a rounding error short, forever).
                self.now += timeout + 1e-9
            return events

        self._selector.select = virtual_select  # type: ignore[attr-defined]

    def time(self) -> float:
        return self.now


def run_virtual(main: Coroutine[Any, Any, Any]) -> Any:
    """Run `main` on a fresh `_VirtualClockLoop`."""
    with asyncio.Runner(loop_factory=_VirtualClockLoop) as runner:
        return runner.run(main)


async def _starts(limiter: HostLimiter, hosts: list[str]) -> dict[str, list[float]]:
    """Virtual times at which each request (one per entry of `hosts`) got its slot."""
    loop = asyncio.get_running_loop()
    starts: dict[str, list[float]] = {h: [] for h in hosts}

    async def one(host: str) -> None:
        async with limiter.slot(host):
            starts[host].append(round(loop.time(), 6))

    await asyncio.gather(*(one(h) for h in hosts))
    return starts


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


def test_the_virtual_clock_does_not_sleep():
    async def main() -> float:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(3600)
        return loop.time()

    assert run_virtual(main()) == pytest.approx(3600)


def test_per_host_bound():
    async def main() -> int:  # own hosts: no rate, so only the bounds hold requests back
        limiter = HostLimiter(HttpConfig(per_host=2, max_connections=8, allow_hosts=("a",)))
        return await _most_in_flight(limiter, ["a"] * 8)

    assert run_virtual(main()) == 2


def test_global_bound_across_hosts():
    async def main() -> int:
        config = HttpConfig(per_host=2, max_connections=3, allow_hosts=("a", "b"))
        limiter = HostLimiter(config)
        return await _most_in_flight(limiter, ["a"] * 4 + ["b"] * 4)

    assert run_virtual(main()) == 3


def test_default_rate_spaces_request_starts_to_one_host():
    """No rate configured: a few requests per second per host, evenly spaced, no burst."""

    async def main() -> dict[str, list[float]]:
        limiter = HostLimiter(HttpConfig(per_host=4))
        return await _starts(limiter, ["img.example.org"] * 6)

    step = 1 / DEFAULT_RATE_PER_HOST
    assert 1 <= DEFAULT_RATE_PER_HOST <= 10
    assert run_virtual(main())["img.example.org"] == [round(i * step, 6) for i in range(6)]


def test_configured_rate_and_other_hosts_are_not_held_back():
    async def main() -> dict[str, list[float]]:
        limiter = HostLimiter(HttpConfig(per_host=4, rate_per_host=2.0))
        return await _starts(limiter, ["a"] * 4 + ["b"] * 2)

    starts = run_virtual(main())
    assert starts["a"] == [0.0, 0.5, 1.0, 1.5]
    assert starts["b"] == [0.0, 0.5]


def test_one_rate_for_every_request_to_a_host_however_many_wait():
    """More waiting requests than the per-host bound still start one interval apart."""

    async def main() -> dict[str, list[float]]:
        limiter = HostLimiter(HttpConfig(per_host=1, rate_per_host=10.0))
        return await _starts(limiter, ["a"] * 20)

    assert run_virtual(main())["a"] == [round(i * 0.1, 6) for i in range(20)]


def test_own_hosts_have_no_rate():
    """Hosts of `allow_hosts` (the loopback sandbox) are not rate-limited, even when a rate is
    set: politeness protects other people's servers."""

    async def main() -> dict[str, list[float]]:
        config = HttpConfig(per_host=8, rate_per_host=1.0, allow_hosts=("127.0.0.1:8080",))
        limiter = HostLimiter(config)
        assert limiter.interval("127.0.0.1") == 0.0 and limiter.interval("a") == 1.0
        return await _starts(limiter, ["127.0.0.1"] * 5)

    assert run_virtual(main())["127.0.0.1"] == [0.0] * 5


def test_crawl_delay_sets_a_longer_minimum_interval_only():
    async def main() -> tuple[dict[str, list[float]], list[float]]:
        config = HttpConfig(per_host=4, rate_per_host=4.0, allow_hosts=("own.test",))
        limiter = HostLimiter(config)
        limiter.set_min_interval("slow.example", 1.5)
        limiter.set_min_interval("slow.example", 0.1)  # shorter: ignored
        limiter.set_min_interval("slow.example", None)
        limiter.set_min_interval("own.test", 2.0)  # an own host's Crawl-delay is honoured too
        intervals = [limiter.interval(h) for h in ("slow.example", "own.test", "fast.example")]
        starts = await _starts(limiter, ["slow.example"] * 3 + ["own.test"] * 2)
        return starts, intervals

    starts, intervals = run_virtual(main())
    assert intervals == [1.5, 2.0, 0.25]
    assert starts["slow.example"] == [0.0, 1.5, 3.0]
    assert starts["own.test"] == [0.0, 2.0]


@pytest.mark.parametrize(
    ("allow", "expected"),
    [
        (("127.0.0.1:8080",), {"127.0.0.1"}),
        (("localhost",), {"localhost"}),
        (("[::1]:9000",), {"::1"}),
        (("::1",), {"::1"}),
        (("a.test", "b.test:81"), {"a.test", "b.test"}),
    ],
    ids=["ip-port", "name", "v6-port", "v6-bare", "two"],
)
def test_own_hosts_of_allow_hosts(allow, expected):
    assert own_hosts(HttpConfig(allow_hosts=allow)) == expected


def test_rate_per_host_default_and_override():
    assert rate_per_host(HttpConfig()) == DEFAULT_RATE_PER_HOST
    assert rate_per_host(HttpConfig(rate_per_host=0.5)) == 0.5
