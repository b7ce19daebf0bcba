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
