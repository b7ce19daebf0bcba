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

from tests.rank_fixtures import sandbox_clip  # noqa: E402,F401  (session fixture)


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


#: The sandbox build shared by the collect, clean and later stage tests: small (scale 0.15,
#: ~350 images) but with every plant; the slow image stalls past the image timeout.
SLOW_S = 3.0
TIMEOUT_S = 1.0


@pytest.fixture(scope="session")
def sandbox_web():
    from tv100.sandbox.web import SandboxWeb

    with SandboxWeb(scale=0.15, slow_s=SLOW_S) as web:
        web.catalog.prerender()  # as the demo does: serving must not wait on rendering
        yield web


@pytest.fixture(scope="session")
def collected(prefect_harness, sandbox_web, tmp_path_factory):
    """A data root after discover + collect on `sandbox_web`: (data, collect summary)."""
    from tv100.flows.collect import collect_flow
    from tv100.flows.discover import discover_flow
    from tv100.storage.root import DataRoot
    from tv100.storage.tables import write_table

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


#: Fine-tuning knobs for the sandbox CLIP on the small shared build.
FAST_TRAIN = {"epochs": 4, "lr": 5e-4, "batch_size": 32, "warmup_steps": 5,
              "sampling": "balanced"}


@pytest.fixture(scope="session")
def trained(collected, sandbox_clip, tmp_path_factory):  # noqa: F811
    """A copy of the shared sandbox build, cleaned, ranked with the sandbox CLIP and trained:
    (data, rank summary, train summary, number of unknown series)."""
    import shutil

    from tv100.flows.clean import clean_flow
    from tv100.flows.rank import rank_flow
    from tv100.flows.train import train_flow
    from tv100.storage.catalog import query
    from tv100.storage.root import DataRoot

    src, _ = collected
    data = str(tmp_path_factory.mktemp("rank-train") / "data")
    shutil.copytree(src, data)
    clean_flow(data=data)
    root = DataRoot(data)
    n_unknown = query(root, "select count(*) as n from sandbox_series where not known "
                      "and expected").to_pylist()[0]["n"]
    ranked = rank_flow(data=data, models=[sandbox_clip.spec], k=n_unknown, min_images=3)
    result = train_flow(data=data, model=sandbox_clip.spec,
                        recipes=["zeroshot", "linear", "finetune"], test_ratio=0.3,
                        **FAST_TRAIN)
    return data, ranked, result, n_unknown


@pytest.fixture
def body_bytes_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the decoded body chunks the client pulled from any response."""
    sizes: list[int] = []
    import httpx

    original = httpx.Response.aiter_bytes

    async def spy(self: httpx.Response, chunk_size: int | None = None):  # type: ignore[no-untyped-def]
        async for chunk in original(self, chunk_size):
            sizes.append(len(chunk))
            yield chunk

    monkeypatch.setattr(httpx.Response, "aiter_bytes", spy)
    return sizes
