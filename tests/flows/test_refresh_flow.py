"""The snapshot-recording build, the rerank flow and ``tv100 diff`` (snapshots end to end).

The build flow runs under the session Prefect harness with its stages replaced by stubs
that write the tables a build leaves; rerank runs the tiny random open_clip model of
`tests.support.rank_fixtures`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tests.support.rank_fixtures import (
    noise_jpeg,
    tiny_arch,  # noqa: F401
)
from tests.tasks.snapshots.test_snapshots import (
    KEPT_A,
    TITLES_A,
    TOP1_A,
    classes_table,
    series_table,
    two_snapshots,  # noqa: F401  (fixture)
    write_build,
    zeroshot_table,
)
from tv100.flows.cli import app
from tv100.storage.images import ImageStore
from tv100.storage.root import DataRoot
from tv100.storage.schemas import IMAGES
from tv100.storage.tables import read_table, table_path, write_table
from tv100.tasks.snapshots.diff import diff_snapshots
from tv100.tasks.snapshots.snapshots import list_snapshots, record_snapshot

cli = CliRunner()


def test_build_flow_records_a_snapshot_and_reruns_reuse_it(data_root, prefect_harness,
                                                           monkeypatch):
    import tv100.flows.build as build

    state = {"titles": dict(TITLES_A)}

    def discover(**kw):
        write_table(DataRoot(kw["data"]), "series", series_table(state["titles"]))
        return {"series": len(state["titles"])}

    def run_flow(flow, runner, **kw):
        return {"cleaned": 0}

    def rank(**kw):
        titles = state["titles"]
        top1 = {s: 0.1 for s in titles}
        root = DataRoot(kw["data"])
        write_table(root, "zeroshot", zeroshot_table(top1, titles))
        write_table(root, "classes", classes_table({s: True for s in titles}, top1, titles))
        return {"kept": len(titles)}

    monkeypatch.setattr(build, "discover_flow", discover)
    monkeypatch.setattr(build, "run_flow", run_flow)
    monkeypatch.setattr(build, "rank_flow", rank)
    monkeypatch.setattr(build, "report_task", lambda root, config: None)
    monkeypatch.setattr(build, "check_dataset_location", lambda *args: None)
    data = data_root.url
    first = build.build_flow(location="unused", data=data, train=False, models=["A@b"])
    snap_file = Path(table_path(data_root, "snapshots"))
    before = snap_file.read_bytes()
    again = build.build_flow(location="unused", data=data, train=False, models=["A@b"])
    assert again.snapshot == first.snapshot
    assert snap_file.read_bytes() == before
    rows = list_snapshots(data_root)
    assert len(rows) == 1 and rows[0]["flow_run_id"]
    params = json.loads(rows[0]["parameters"])
    assert params["rank"]["models"] == ["A@b"] and params["build"]["train"] is False
    assert params["discover"]["location"] == "unused" and params["train"]["model"] == "A@b"
    state["titles"]["tt9"] = "Brand New"
    third = build.build_flow(location="unused", data=data, train=False, models=["A@b"])
    assert third.snapshot != first.snapshot
    diff = diff_snapshots(data_root)
    assert [r.series_id for r in diff.added] == ["tt9"] and diff.removed == ()


def test_cli_diff_outputs_and_errors(two_snapshots, data_root):  # noqa: F811
    root, a, b = two_snapshots
    res = cli.invoke(app, ["diff", "--data", root.url, "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [r["series_id"] for r in out["added"]] == ["tt5"] and out["b"]["snapshot_id"] == b
    res = cli.invoke(app, ["diff", a, b, "--data", root.url, "--threshold", "0.35"])
    assert res.exit_code == 0, res.output
    assert "tt2" in res.stdout and "Jade Lantern  40.0%" not in res.stdout

    def one_line_error(args: list[str], needle: str) -> None:
        res = cli.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert res.stdout == "" and "Traceback" not in res.output
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tv100: error:") and needle in lines[0]

    one_line_error(["diff", "nope", "--data", root.url], "unknown snapshot 'nope'")
    one_line_error(["diff", a, "2099", "--data", root.url], "unknown snapshot '2099'")
    single = DataRoot(str(Path(root.path()).parent / "single")).ensure()
    write_build(single, TITLES_A, TOP1_A, KEPT_A)
    record_snapshot(single, {})
    one_line_error(["diff", "--data", single.url], "fewer than two snapshots (found 1")
    empty = str(Path(root.path()).parent / "empty")
    one_line_error(["diff", "--data", empty], "nothing built here yet")
    one_line_error(["rerank", "--data", empty], "nothing built here yet")


def test_rerank_flow_with_a_tiny_model(data_root, prefect_harness, tiny_arch):  # noqa: F811
    from tv100.flows.refresh import rerank_flow
    from tv100.tasks.rank.clip import load_clip
    from tv100.tasks.rank.models import ModelSpec
    from tv100.tasks.rank.zeroshot import zero_shot

    titles = {"tt1": "The Jade Lantern", "tt2": "Moonlit Harbor", "tt3": "Love in Busan"}
    store = ImageStore(data_root)
    rows = []
    for i in range(18):
        sha, rel = store.put(noise_jpeg(i), "jpg")
        rows.append({"image_id": f"i{i:02d}", "series_id": f"tt{1 + i % 3}", "status": "ok",
                     "sha256": sha, "path": rel, "width": 48, "height": 40})
    write_table(data_root, "images", pa.Table.from_pylist(rows, schema=IMAGES))
    write_table(data_root, "series", series_table(titles))
    kept = {"tt1": True, "tt2": True, "tt3": False}
    old = {"tt1": 0.0, "tt2": 0.0, "tt3": 0.9}
    write_table(data_root, "classes", classes_table(kept, old, titles))
    snap = record_snapshot(data_root, {}).snapshot_id

    spec = f"{tiny_arch}@random"
    result = rerank_flow(data=data_root.url, models=[spec], threshold=0.0, workers=0,
                         device="cpu")
    table = read_table(data_root, "rerank")
    # The same numbers as a direct zero-shot run among all three candidates.
    clip = load_clip(ModelSpec.parse(spec), "cpu")
    images = pa.Table.from_pylist([{"image_id": r["image_id"], "series_id": r["series_id"]}
                                   for r in rows if r["series_id"] != "tt3"])
    direct = {r["series_id"]: r["top1"] for r in zero_shot(
        data_root, clip, images, series_table(titles).select(["series_id", "title"])).to_pylist()}
    got = {r["series_id"]: r for r in table.to_pylist()}
    assert set(got) == {"tt1", "tt2"}
    for sid, r in got.items():
        assert r["new_accuracy"] == pytest.approx(direct[sid])
        assert r["n_images"] == 6 and r["n_classes"] == 3 and r["old_accuracy"] == 0.0
        assert r["still_unseen"] is (r["new_accuracy"] <= 0.0)
    flagged = {r.series_id for r in result.no_longer_unseen}
    assert flagged == {s for s, r in got.items() if r["new_accuracy"] > 0.0}
    assert flagged  # the seeded random model gets some images right: 0% -> above 0
    assert result.kept == 2 and result.candidates == 3 and result.snapshot_id is None
    # The default threshold is twice chance among 3 candidates; a snapshot's classes too.
    again = rerank_flow(data=data_root.url, models=[spec], since=snap[:10], workers=0,
                        device="cpu")
    assert again.snapshot_id == snap
    assert set(read_table(data_root, "rerank").column("threshold").to_pylist()) == {2 / 3}
    # rerank's tables are outside the build's state: no new snapshot.
    assert record_snapshot(data_root, {}).created is False
