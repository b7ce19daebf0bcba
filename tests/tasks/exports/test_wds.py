"""The WebDataset export, read with the real ``webdataset`` library; deterministic tars."""

from __future__ import annotations

import glob
import io
import os

import pytest

from tests.tasks.exports.tiny_root import COUNTS, KEPT, K
from tv100.tasks.exports.common import export_items
from tv100.tasks.exports.config import ExportConfig
from tv100.tasks.exports.wds import export_wds


@pytest.mark.parametrize("shard_size", [7, 1000])
def test_read_back_with_webdataset(tiny, shard_size):
    import webdataset as wds
    from PIL import Image

    root, labels = tiny
    result = export_wds(root, export_items(root), ExportConfig(shard_size=shard_size))
    assert result.counts == COUNTS
    out = root.path("export/wds")
    for split, n in COUNTS.items():
        urls = sorted(glob.glob(f"{out}/{split}-*.tar"))
        assert len(urls) == -(-n // shard_size)
        assert [os.path.basename(u) for u in urls] == [
            f"{split}-{i:06d}.tar" for i in range(len(urls))]
        ds = wds.WebDataset(urls, shardshuffle=False).decode()
        samples = list(ds)
        assert len(samples) == n
        keys = [s["__key__"] for s in samples]
        assert keys == sorted(keys) and len(set(keys)) == n
        for s in samples:
            assert s["cls"] == labels[s["__key__"]]
            meta = s["json"]
            assert meta["image_id"] == s["__key__"] and meta["class_index"] == s["cls"]
            assert meta["series_id"] == KEPT[s["cls"]] and meta["title"]
            assert Image.open(io.BytesIO(s["jpg"])).size == (32, 24)
    assert {s for s in os.listdir(out) if not s.endswith(".tar")} == {"README.md"}
    assert f"{K} classes" in open(f"{out}/README.md").read()


def test_the_same_rows_give_the_same_bytes_on_another_root(tiny, tmp_path):
    from tests.tasks.exports.tiny_root import write_tiny_root

    root, _ = tiny
    other, _ = write_tiny_root(tmp_path / "other")
    export_wds(root, export_items(root), ExportConfig(shard_size=10))
    export_wds(other, export_items(other), ExportConfig(shard_size=10))
    names = sorted(os.listdir(root.path("export/wds")))
    assert names == sorted(os.listdir(other.path("export/wds")))
    for name in names:
        with open(root.path("export/wds", name), "rb") as a, \
                open(other.path("export/wds", name), "rb") as b:
            assert a.read() == b.read(), name


def test_members_have_fixed_headers(tiny):
    import tarfile

    root, _ = tiny
    export_wds(root, export_items(root), ExportConfig())
    with tarfile.open(root.path("export/wds/test-000000.tar")) as tar:
        members = tar.getmembers()
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
        (946_684_800, 0, 0, "", "", 0o644)}
    names = [m.name for m in members]
    assert [n.rsplit(".", 1)[1] for n in names[:3]] == ["cls", "jpg", "json"]
