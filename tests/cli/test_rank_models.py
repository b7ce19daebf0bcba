"""`rank`, `train` and `rerank` without --model use the model(s) the data root was last
ranked with (table `rank_models`), not the default ViT-B-16@openai (a download).

A small root (three candidate series, 24 random images) is ranked with a tiny random CLIP
through the real command line and a real Prefect API; the next commands name no model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tests.support.cli import follow_stderr
from tests.support.rank_fixtures import (
    noise_jpeg,
    tiny_arch,  # noqa: F401  (fixture)
)
from tv100.storage.images import ImageStore
from tv100.storage.root import DataRoot
from tv100.storage.schemas import HASHES, IMAGES, SERIES
from tv100.storage.tables import read_table, write_table

pytestmark = pytest.mark.timeout(600)

FAST = ["--device", "cpu", "--batch-size", "8"]


@pytest.fixture
def small_root(tmp_path: Path) -> DataRoot:
    root = DataRoot(str(tmp_path / "data")).ensure()
    store = ImageStore(root)
    titles = ["The Jade Lantern", "Moonlit Harbor", "Love in Busan"]
    write_table(root, "series", pa.Table.from_pylist(
        [{"series_id": f"tt{i + 1}", "title": t} for i, t in enumerate(titles)], schema=SERIES))
    rows = []
    for i in range(24):
        _, rel = store.put(noise_jpeg(i), "jpg")
        rows.append({"image_id": f"i{i:02d}", "series_id": f"tt{1 + i % 2}", "path": rel,
                     "status": "ok", "width": 48, "height": 40})
    write_table(root, "images", pa.Table.from_pylist(rows, schema=IMAGES))
    rng = np.random.default_rng(0)  # random 64-bit hashes: no two images near duplicates
    write_table(root, "hashes", pa.Table.from_pylist(
        [{"image_id": r["image_id"], "phash": f"{int(rng.integers(2**63)):016x}",
          "dhash": f"{int(rng.integers(2**63)):016x}", "status": "ok"} for r in rows],
        schema=HASHES))
    return root


def invoke(*args: str):
    from tv100.flows.cli import app

    follow_stderr()
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res


def test_train_and_rerank_default_to_the_ranked_model(
    small_root: DataRoot, tiny_arch: str, prefect_harness  # noqa: F811
):
    data = small_root.url
    spec = f"{tiny_arch}@random"
    invoke("rank", "--data", data, "--model", spec, "--k", "2", "--min-images", "1", *FAST)
    recorded = read_table(small_root, "rank_models").to_pylist()
    assert recorded == [{"position": 0, "model": spec, "model_key": f"{tiny_arch}@random-0"}]
    before = {p.name: p.read_bytes() for p in Path(data, "tables").glob("*.parquet")}

    # rank again without --model: the recorded model, so every table stays as it was
    invoke("rank", "--data", data, "--k", "2", "--min-images", "1", *FAST)
    after = {p.name: p.read_bytes() for p in Path(data, "tables").glob("*.parquet")}
    assert after == before

    invoke("train", "--data", data, "--recipe", "zeroshot", "--test-ratio", "0.3",
           "--device", "cpu", "--no-export")
    keys = set(read_table(small_root, "metrics").column("model_key").to_pylist())
    assert keys == {f"{tiny_arch}@random-0"}

    invoke("rerank", "--data", data, *FAST)
    rerank = read_table(small_root, "rerank")
    assert set(rerank.column("model_key").to_pylist()) == {f"{tiny_arch}@random-0"}


def test_no_record_is_one_line_for_train(small_root: DataRoot, prefect_harness):
    """A root ranked before `rank_models` existed: train asks for --model, in one line."""
    from tv100.flows.cli import app
    from tv100.storage.schemas import CLASSES

    write_table(small_root, "classes", pa.Table.from_pylist(
        [{"series_id": "tt1", "kept": True, "reason": "hardest", "n_images": 12,
          "aggregate": "max", "models": ["X@y"], "class_index": 0}], schema=CLASSES))
    follow_stderr()
    res = CliRunner().invoke(app, ["train", "--data", small_root.url, "--device", "cpu"])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("tv100:")]
    assert len(lines) == 1 and "train needs --model" in lines[0], res.output
    assert "Traceback" not in res.output
