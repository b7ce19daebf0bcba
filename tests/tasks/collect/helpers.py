"""Helpers of the search tests: saved result pages, and fetching from the sandbox engines."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tv100.sandbox.server import SandboxServer
from tv100.tasks.collect.engine import EngineFetch, SearchHit
from tv100.tasks.collect.engines import ENGINES
from tv100.tasks.web.client import HttpClient
from tv100.tasks.web.config import HttpConfig

FIXTURES = Path(__file__).parents[2] / "fixtures" / "search"
"""Saved result pages of the real engines (and hand-made broken ones)."""


def fixture(name: str) -> bytes:
    """The bytes of the saved page `name`."""
    return (FIXTURES / name).read_bytes()


def urls(hits: list[SearchHit]) -> list[str]:
    """The hits' image URLs, in order."""
    return [h.image_url for h in hits]


def http_for(server: SandboxServer, **kw: Any) -> HttpConfig:
    """An HTTP config admitting the loopback `server`."""
    return HttpConfig(allow_hosts=(f"127.0.0.1:{server.port}",), **kw)


def fetch(server: SandboxServer, engine: str, query: str, **kw: Any) -> EngineFetch:
    """`ENGINES[engine].fetch(query, **kw)` over a fresh client without retries."""

    async def go() -> EngineFetch:
        async with HttpClient(http_for(server, retries=0)) as client:
            return await ENGINES[engine].fetch(client, query, **kw)

    return asyncio.run(go())


def series_with_images(world: Any, catalog: Any, least: int) -> list[Any]:
    """The sandbox titles with at least `least` images."""
    out = [t for t in world.titles if len(catalog.for_series(t.series_id)) >= least]
    assert out, f"no sandbox series with {least}+ images"
    return out
