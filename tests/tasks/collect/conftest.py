"""Fixtures of the collect task tests: a sandbox server with its image host and engines."""

from __future__ import annotations

import pytest

from tv100.sandbox.engines import register_engines
from tv100.sandbox.server import SandboxServer


@pytest.fixture(scope="module")
def catalog(world):
    from tv100.sandbox.imagehost import build_catalog

    return build_catalog(world, scale=0.5)


@pytest.fixture(scope="module")
def engines(world, catalog):
    """A sandbox server with the image host and the three engines: (server, site)."""
    with SandboxServer(world) as server:
        catalog.register(server)
        site = register_engines(server, world, catalog)
        yield server, site
        assert server.errors == []
