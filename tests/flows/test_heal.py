"""A build heals corrupt tables (issue 17, defect 4), on the sandbox: with ``images``
(fetched from the web) and ``quality`` (derived by clean) truncated to half, the next build
moves ``images`` aside with a warning and downloads every image again, rebuilds
``quality``, and ends with the tables of an uninterrupted build.

The builds stop after clean (``rank=False``): rank and train need a CLIP and add nothing
here, as every stage reads its tables through the same `tv100.storage.tables`.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
from typing import Any

import pytest

from tests.support import builds
from tests.support.crash import comparable, lost_rows, revalidated
from tests.support.reliability import record
from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table


def _params(web: Any, data: str) -> dict[str, Any]:
    return dict(location=f"{web.base_url}/datasets/", **builds.collect_params(web, data),
                rank=False)


def _tables(data: str) -> dict[str, list[str]]:
    """Every table's rows (timestamps dropped); `snapshots` aside: a healed build records
    a snapshot of its own, as any build whose tables changed does."""
    tables = comparable(data)  # type: ignore[arg-type]
    revalidated(tables)
    tables.pop("snapshots", None)
    return tables


@pytest.fixture(scope="module")
def uninterrupted(collected, sandbox_web, tmp_path_factory) -> str:
    """The shared collected root, copied and built to the end of clean: the reference."""
    from tv100.flows.build import build_flow

    data = str(tmp_path_factory.mktemp("heal-reference") / "data")
    shutil.copytree(collected[0], data)
    result = build_flow(**_params(sandbox_web, data))
    assert result.healed == ()
    return data


def _truncate(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    return data[: len(data) // 2]


def test_a_build_heals_a_corrupt_source_and_a_corrupt_derived_table(
    uninterrupted, sandbox_web, tmp_path, caplog
):
    from tv100.flows.build import build_flow

    data = str(tmp_path / "data")
    shutil.copytree(uninterrupted, data)
    root = DataRoot(data)
    images, quality = (root.path("tables", f"{t}.parquet") for t in ("images", "quality"))
    n_images = read_table(root, "images").num_rows
    truncated = _truncate(images)
    _truncate(quality)

    with caplog.at_level(logging.WARNING):
        result = build_flow(**_params(sandbox_web, data))
    lost = lost_rows(_tables(uninterrupted), _tables(data))
    record("crash", "images.parquet and quality.parquet truncated to half, then a build",
           "images moved aside and fetched again, quality rebuilt, tables equal"
           if not lost else "tables differ", lost=lost)

    # images: moved aside, byte for byte, with a warning naming both files; fetched again.
    (aside,) = glob.glob(f"{images}.corrupt-*")
    with open(aside, "rb") as f:
        assert f.read() == truncated
    assert result.collect.images.downloaded_now == n_images > 0
    # quality: removed and rebuilt by clean, nothing kept aside.
    assert not glob.glob(f"{quality}.corrupt-*")
    assert os.path.exists(quality)
    assert len(result.healed) == 2
    moved = next(line for line in result.healed if "'images'" in line)
    removed = next(line for line in result.healed if "'quality'" in line)
    assert images in moved and aside in moved and "fetched again" in moved
    assert quality in removed and "rebuilds" in removed
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert moved in warnings and removed in warnings
    # The tables equal those of the build that was never corrupted.
    assert _tables(data) == _tables(uninterrupted)
