"""Test session set-up: an isolated Prefect home and one session-scoped test harness.

Prefect keeps results and cache keys on disk; pointing PREFECT_HOME and the local
storage path at a temp dir *before* prefect is imported keeps runs from leaking into
each other or into the user's ~/.prefect.
"""

from __future__ import annotations

import os
import tempfile

_PREFECT_TMP = tempfile.mkdtemp(prefix="tv100-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_TMP
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = os.path.join(_PREFECT_TMP, "storage")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("TV100_DATA", None)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_harness():
    """A real Prefect API (temporary SQLite database) shared by every flow test."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def world():
    from sandbox.world import build_world

    return build_world(seed=0)


@pytest.fixture(scope="session")
def sandbox(world):
    """The sandbox web on a free loopback port for the whole session."""
    from sandbox.server import SandboxServer

    with SandboxServer(world) as server:
        yield server


@pytest.fixture
def data_root(tmp_path):
    from storage.root import DataRoot

    return DataRoot(str(tmp_path / "data")).ensure()


#: The sandbox build shared by the collect, clean and later stage tests: small (scale 0.15,
#: ~350 images) but with every plant; the slow image stalls past the image timeout.
SLOW_S = 3.0
TIMEOUT_S = 1.0


@pytest.fixture(scope="session")
def sandbox_web():
    from sandbox.web import SandboxWeb

    with SandboxWeb(scale=0.15, slow_s=SLOW_S) as web:
        web.catalog.prerender()  # as the demo does: serving must not wait on rendering
        yield web


@pytest.fixture(scope="session")
def collected(prefect_harness, sandbox_web, tmp_path_factory):
    """A data root after discover + collect on `sandbox_web`: (data, collect summary)."""
    from flows.collect import collect_flow
    from flows.discover import discover_flow
    from storage.root import DataRoot
    from storage.tables import write_table

    web = sandbox_web
    data = str(tmp_path_factory.mktemp("sandbox-build") / "data")
    root = DataRoot(data).ensure()
    for name, table in web.manifest_tables().items():
        write_table(root, name, table, schema=table.schema)
    discover_flow(location=f"{web.base_url}/datasets/", data=data, allow_hosts=[web.host_port])
    result = collect_flow(
        data=data,
        engine_urls=web.engine_urls(),
        per_series_cap=400,
        image_timeout_s=TIMEOUT_S,
        image_retries=1,
        allow_hosts=[web.host_port],
    )
    return data, result
