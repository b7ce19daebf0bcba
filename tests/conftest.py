"""Test session set-up: an isolated Prefect home and the session-scoped fixtures.

Prefect keeps results and cache keys on disk; pointing PREFECT_HOME and the local
storage path at a temp dir *before* prefect is imported keeps runs from leaking into
each other or into the user's ~/.prefect. The fixtures only wire: what they build lives
in `tests.support` (plain functions other test helpers can call too).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_PREFECT_TMP = tempfile.mkdtemp(prefix="tv100-prefect-")
# Removed when the session's process exits (each run left 2-3 MB behind in the temp folder).
atexit.register(shutil.rmtree, _PREFECT_TMP, ignore_errors=True)
os.environ["PREFECT_HOME"] = _PREFECT_TMP
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = os.path.join(_PREFECT_TMP, "storage")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.pop("PREFECT_API_URL", None)
# The file lock alone: kill tests would otherwise wait out the Prefect slot leases of the
# runs they kill (tests/tasks/test_rootlimit.py turns the limit on).
os.environ["TV100_ROOT_LIMIT"] = "off"
os.environ.pop("TV100_DATA", None)

import pytest  # noqa: E402

import tv100.tasks  # noqa: E402,F401  (sets OMP_WAIT_POLICY before any torch import)
from tests.support import builds  # noqa: E402
from tests.support.http_spy import spy_body_chunks  # noqa: E402
from tests.support.rank_fixtures import sandbox_clip  # noqa: E402,F401  (session fixture)


@pytest.fixture(scope="session")
def prefect_harness():
    """A real Prefect API (temporary SQLite database) shared by every flow test."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def world():
    from tv100.sandbox.world import build_world

    return build_world(seed=0)


@pytest.fixture(scope="session")
def sandbox(world):
    """The sandbox web on a free loopback port for the whole session."""
    from tv100.sandbox.server import SandboxServer

    with SandboxServer(world) as server:
        yield server


@pytest.fixture
def data_root(tmp_path):
    from tv100.storage.root import DataRoot

    return DataRoot(str(tmp_path / "data")).ensure()


@pytest.fixture(scope="session")
def sandbox_web():
    """The sandbox build shared by the collect, clean and later stage tests (`builds.SCALE`,
    every plant but the label noise; the slow image stalls `builds.SLOW_S`, past every image
    timeout). Without noise: at this scale most series have fewer images than relevance
    scoring judges (`RelevanceConfig.min_series_images`), so their noise would stay, and the
    train stage's accuracy bars were measured on clean classes (0.69 linear-probe top-1 with
    it). The noise is measured on the full-size demo (`bench/relevance_demo.py`), and the
    crash builds keep it."""
    from tv100.sandbox.web import SandboxWeb

    with SandboxWeb(scale=builds.SCALE, slow_s=builds.SLOW_S, noise=False) as web:
        web.catalog.prerender()  # as the demo does: serving must not wait on rendering
        yield web


@pytest.fixture(scope="session")
def collected(prefect_harness, sandbox_web, tmp_path_factory):
    """A data root after discover + collect on `sandbox_web`: (data, collect result)."""
    data = str(tmp_path_factory.mktemp("sandbox-build") / "data")
    return data, builds.collect_build(sandbox_web, data)


@pytest.fixture(scope="session")
def trained(collected, sandbox_clip, tmp_path_factory):  # noqa: F811
    """A copy of the shared sandbox build, cleaned, ranked with the sandbox CLIP and trained:
    (data, rank result, train result, number of unknown series)."""
    data = str(tmp_path_factory.mktemp("rank-train") / "data")
    return builds.train_build(collected[0], data, sandbox_clip.spec)


@pytest.fixture
def body_bytes_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the decoded body chunks the client pulled from any response."""
    return spy_body_chunks(monkeypatch)
