"""Collect on the sandbox, then stored files deleted and changed: the rerun downloads exactly
those again, and the `images` table is the same as before (download times aside).

Before the fix the rerun exited 0 with the rows still ``ok`` and nothing downloaded, and the
clean stage found ``decode_error`` files.
"""

from __future__ import annotations

import hashlib
import logging
import os

import pytest

from tests.support.builds import collect_params, seed_series
from tests.support.reliability import record
from tv100.flows.collect import collect_flow
from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table

pytestmark = pytest.mark.usefixtures("prefect_harness")
# (collect_flow is imported above, not in the test: the first import of a flow sets Prefect's
# logging up, which inside the test would replace the root handlers, caplog's among them.)


def tables_bytes(data: str) -> dict[str, bytes]:
    folder = os.path.join(data, "tables")
    return {
        n: open(os.path.join(folder, n), "rb").read()
        for n in sorted(os.listdir(folder))
        if n.endswith(".parquet")
    }


def test_deleted_and_changed_files_are_downloaded_again(sandbox_web, tmp_path, caplog):
    web = sandbox_web
    clean = [  # series whose every image downloads: no transient failure to retry later
        t for t in web.world.titles
        if len(web.catalog.for_series(t.series_id)) >= 6
        and all(i.expected_status == "ok" for i in web.catalog.for_series(t.series_id))
    ][:4]  # fmt: skip
    assert len(clean) == 4
    data = str(tmp_path / "data")
    seed_series(data, clean)
    params = collect_params(web, data)
    first = collect_flow(**params)
    root = DataRoot(data)
    images = read_table(root, "images")
    ok = [r for r in images.to_pylist() if r["status"] == "ok"]
    assert first.images.downloaded_now == images.num_rows == len(ok) >= 24

    # Five files deleted, one changed in place (same size, other bytes).
    paths = sorted({r["path"] for r in ok})
    deleted, changed = paths[:5], paths[5]
    for p in deleted:
        os.remove(root.path(p))
    data_bytes = bytearray(open(root.path(changed), "rb").read())
    data_bytes[-10] ^= 0xFF
    open(root.path(changed), "wb").write(bytes(data_bytes))
    affected = {r["image_id"] for r in ok if r["path"] in {*deleted, changed}}

    with caplog.at_level(logging.WARNING):
        second = collect_flow(**params)
    assert second.images.downloaded_now == len(affected)
    after = read_table(root, "images")
    ids = (set(after.column("image_id").to_pylist()), set(images.column("image_id").to_pylist()))
    record("crash", "5 stored image files deleted and 1 changed after a collect, then a collect",
           f"{second.images.downloaded_now} rows downloaded again", lost=len(ids[0] ^ ids[1]))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    line = (
        f"images: 5 stored files missing and 1 changed (of {len(paths)}; changed ones removed); "
        f"their {len(affected)} rows were dropped and are downloaded again"
    )
    assert line in warnings
    assert after.drop_columns(["downloaded_at"]).equals(images.drop_columns(["downloaded_at"]))
    newer = {
        r["image_id"]
        for r, old in zip(after.to_pylist(), images.to_pylist(), strict=True)
        if r["downloaded_at"] != old["downloaded_at"]
    }
    assert newer == affected  # exactly those were downloaded again
    for r in after.to_pylist():  # and every file is back, with its bytes
        assert hashlib.sha256(open(root.path(r["path"]), "rb").read()).hexdigest() == r["sha256"]

    # Nothing missing: a rerun downloads nothing and leaves every table byte-identical.
    before = tables_bytes(data)
    third = collect_flow(**params)
    assert third.images.downloaded_now == 0
    assert tables_bytes(data) == before
