"""storage/root.py: the data root (local or any fsspec URL), its version marker, atomic
files under it, and the sweep of what a killed run left."""

from __future__ import annotations

import hashlib
import json
import os
import pickle

import pytest

from tv100.storage.atomic import temp_name
from tv100.storage.root import (
    DataRoot,
    DataRootError,
    default_data,
    file_sha256,
    open_atomic,
    remove_temp_files,
    resolve_root,
    write_bytes_atomic,
)
from tv100.storage.schemas import SCHEMA_VERSION


def test_resolve_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("TV100_DATA", raising=False)
    assert resolve_root(None).path() == os.path.abspath("./data")
    monkeypatch.setenv("TV100_DATA", str(tmp_path / "env"))
    assert resolve_root(None).path() == str(tmp_path / "env")
    assert resolve_root(str(tmp_path / "flag")).path() == str(tmp_path / "flag")


def test_remove_temp_files(data_root):
    os.makedirs(data_root.path("tables"), exist_ok=True)
    open(data_root.path("tables", ".tmp-abc-series.parquet"), "wb").close()
    assert remove_temp_files(data_root) == 1
    assert remove_temp_files(data_root) == 0


def test_newer_schema_version_refused(tmp_path):
    root = DataRoot(str(tmp_path / "d")).ensure()
    with open(root.path("tv100.json"), "w") as f:
        json.dump({"schema_version": SCHEMA_VERSION + 1}, f)
    with pytest.raises(DataRootError, match="upgrade tv100"):
        DataRoot(str(tmp_path / "d")).ensure()


def test_default_data_is_the_env_var_else_dot_data(monkeypatch):
    monkeypatch.delenv("TV100_DATA", raising=False)
    assert default_data() == "./data"
    monkeypatch.setenv("TV100_DATA", "/somewhere")
    assert default_data() == "/somewhere"
    root = DataRoot("/x")
    assert resolve_root(root) is root


def test_data_root_is_its_url(tmp_path):
    a, b = DataRoot(str(tmp_path)), DataRoot(str(tmp_path))
    assert a == b and hash(a) == hash(b) and a != DataRoot(str(tmp_path / "other"))
    back = pickle.loads(pickle.dumps(a))
    assert back == a and back.base == a.base and back.is_local
    with pytest.raises(DataRootError, match="empty"):
        DataRoot("")
    with pytest.raises(DataRootError, match="not usable"):
        DataRoot("nosuchprotocol://x")


@pytest.mark.parametrize("url", ["local", "memory://tv100-test-open-atomic"])
def test_open_atomic_writes_whole_files_or_nothing(url, tmp_path):
    root = DataRoot(str(tmp_path / "d") if url == "local" else url).ensure()
    assert os.path.basename(write_bytes_atomic(root, "raw/a.bin", b"one")) == "a.bin"
    with pytest.raises(RuntimeError), open_atomic(root, "raw/a.bin") as f:
        f.write(b"half")
        raise RuntimeError("killed mid-write")
    with root.fs.open(root.path("raw/a.bin"), "rb") as f:
        assert f.read() == b"one", "a failed write leaves the old file"
    assert root.fs.ls(root.path("raw"), detail=False) == [root.path("raw/a.bin")]
    assert file_sha256(root, root.path("raw/a.bin")) == hashlib.sha256(b"one").hexdigest()


def test_remove_temp_files_also_removes_temp_folders(data_root):
    folder = data_root.path("runs", temp_name("model"))
    os.makedirs(os.path.join(folder, "inner"))
    open(os.path.join(folder, "inner", "w.bin"), "wb").close()
    open(data_root.path("runs", "kept.json"), "wb").close()
    assert remove_temp_files(data_root, "runs") == 1
    assert os.listdir(data_root.path("runs")) == ["kept.json"]


def test_corrupt_marker_refused(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "tv100.json").write_text("[1, 2]")
    with pytest.raises(DataRootError, match="unreadable tv100.json"):
        DataRoot(str(tmp_path / "d")).ensure()
    (tmp_path / "d" / "tv100.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION}))
    DataRoot(str(tmp_path / "d")).ensure()
