"""Snapshots of builds, `tv100 diff` and `tv100 rerank` (issue "Operate", refresh and snapshots).

Synthetic tables written with `write_table` stand in for a build; the build flow itself
runs under the session Prefect harness with its stages replaced by stubs that write those
tables, and rerank runs the tiny random open_clip model of `tests.rank_fixtures`.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.rank_fixtures import tiny_arch  # noqa: F401
from tv100.flows.cli import app
from tv100.storage.images import ImageStore
from tv100.storage.root import DataRoot
from tv100.storage.schemas import CLASSES, EMBEDDINGS, IMAGES, RERANK, SERIES, ZEROSHOT
from tv100.storage.tables import read_table, table_path, write_table
from tv100.tasks.snapshots.snapshots import (
    SnapshotError,
    choose_pair,
    default_threshold,
    diff_snapshots,
    format_diff,
    list_snapshots,
    record_snapshot,
    rerank_table,
    snapshot_path,
    table_hashes,
)

cli = CliRunner()
T0 = datetime(2025, 1, 6, 3, 0, tzinfo=UTC)
MODEL = "ViT-X@test"


def _series(ids_titles: dict[str, str]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"series_id": s, "title": t, "kind": "tvSeries", "start_year": 2023}
         for s, t in sorted(ids_titles.items())],
        schema=SERIES,
    )


def _zeroshot(top1: dict[str, float | None], titles: dict[str, str]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"model_key": MODEL, "series_id": s, "title": titles[s],
             "n_images": 0 if v is None else 10, "top1": v, "n_classes": len(top1),
             "templates": ["a photo of the TV series {}"]}
            for s, v in sorted(top1.items())
        ],
        schema=ZEROSHOT,
    )


def _classes(kept: dict[str, bool], acc: dict[str, float | None],
             titles: dict[str, str]) -> pa.Table:
    kept_ids = sorted(s for s, k in kept.items() if k)
    return pa.Table.from_pylist(
        [
            {"series_id": s, "title": titles[s],
             "class_index": kept_ids.index(s) if k else None, "kept": k,
             "reason": "hardest" if k else "too_easy", "accuracy": acc[s],
             "n_images": 10, "aggregate": "max", "models": [MODEL]}
            for s, k in sorted(kept.items())
        ],
        schema=CLASSES,
    )


def write_build(root: DataRoot, titles: dict[str, str], top1: dict[str, float | None],
                kept: dict[str, bool]) -> None:
    """The tables a finished build leaves (the ones snapshots read)."""
    write_table(root, "series", _series(titles))
    write_table(root, "zeroshot", _zeroshot(top1, {s: titles[s] for s in top1}))
    write_table(root, "classes", _classes(kept, top1, {s: titles[s] for s in kept}))


TITLES_A = {"tt1": "Jade Lantern", "tt2": "Moonlit Harbor", "tt3": "Love in Busan",
            "tt4": "Old Show"}
TOP1_A = {"tt1": 0.10, "tt2": 0.50, "tt3": 0.20, "tt4": 0.30}
KEPT_A = {"tt1": True, "tt2": False, "tt3": True, "tt4": False}
# B: tt4 gone, tt5 new; tt2 -0.40 (moved), tt3 +0.02 (not moved), tt1 +0.30 (moved) and no
# longer kept, tt2 kept now, tt5 kept.
TITLES_B = {"tt1": "Jade Lantern", "tt2": "Moonlit Harbor", "tt3": "Love in Busan",
            "tt5": "New Show"}
TOP1_B = {"tt1": 0.40, "tt2": 0.10, "tt3": 0.22, "tt5": 0.05}
KEPT_B = {"tt1": False, "tt2": True, "tt3": True, "tt5": True}


@pytest.fixture
def two_snapshots(data_root):
    write_build(data_root, TITLES_A, TOP1_A, KEPT_A)
    a = record_snapshot(data_root, {"since": 2021}, now=T0)
    write_build(data_root, TITLES_B, TOP1_B, KEPT_B)
    b = record_snapshot(data_root, {"since": 2021}, now=T0 + timedelta(days=7))
    return data_root, a["snapshot_id"], b["snapshot_id"]


# ============================================================================ recording


def test_snapshot_recorded_once_per_state(data_root):
    write_build(data_root, TITLES_A, TOP1_A, KEPT_A)
    first = record_snapshot(data_root, {"since": 2021, "k": 2}, flow_run_id="run-1", now=T0)
    assert first["created"] and first["previous"] is None
    sid = first["snapshot_id"]
    assert sid == f"20250106T030000Z-{first['state_sha256'][:8]}"
    snap_file = Path(table_path(data_root, "snapshots"))
    before = snap_file.read_bytes()
    # Unchanged tables: same snapshot, nothing written (the table stays byte-identical).
    again = record_snapshot(data_root, {"since": 2021, "k": 2}, now=T0 + timedelta(hours=1))
    assert (again["snapshot_id"], again["created"]) == (sid, False)
    assert snap_file.read_bytes() == before
    # Tables outside the build's state (rerank, embeddings) do not make a new snapshot.
    write_table(data_root, "rerank",
                pa.Table.from_pylist([{"model_key": "m", "series_id": "tt1"}], schema=RERANK))
    write_table(data_root, "embeddings", pa.Table.from_pylist(
        [{"image_id": "i1", "model_key": "m", "status": "ok"}], schema=EMBEDDINGS))
    assert record_snapshot(data_root, {})["created"] is False
    row = list_snapshots(data_root)[0]
    assert json.loads(row["parameters"]) == {"k": 2, "since": 2021}
    assert (row["n_series"], row["n_kept"], row["n_images_ok"], row["flow_run_id"]) == (
        4, 2, None, "run-1")
    hashes = json.loads(row["table_hashes"])
    assert set(hashes) == {"series", "zeroshot", "classes"} == set(table_hashes(data_root))
    for name in ("series", "zeroshot", "classes"):  # frozen byte copies
        frozen = Path(snapshot_path(data_root, sid, name)).read_bytes()
        assert hashlib.sha256(frozen).hexdigest() == hashes[name]
    # A changed table: a new snapshot after the first; the first's copies stay as they were.
    write_build(data_root, TITLES_B, TOP1_B, KEPT_B)
    second = record_snapshot(data_root, {"since": 2021}, now=T0 + timedelta(days=1))
    assert second["created"] and second["previous"] == sid and second["snapshot_id"] > sid
    assert [r["snapshot_id"] for r in list_snapshots(data_root)] == [sid, second["snapshot_id"]]
    assert hashlib.sha256(
        Path(snapshot_path(data_root, sid, "series")).read_bytes()
    ).hexdigest() == hashes["series"]
    # Back to the first state: a new snapshot (the revert is a change against the latest).
    write_build(data_root, TITLES_A, TOP1_A, KEPT_A)
    third = record_snapshot(data_root, {}, now=T0 + timedelta(days=2))
    assert third["created"] and third["snapshot_id"].endswith(sid.split("-")[1])


def test_build_flow_records_a_snapshot_and_reruns_reuse_it(data_root, prefect_harness,
                                                           monkeypatch):
    import tv100.flows.build as build

    state = {"titles": dict(TITLES_A)}

    def discover(**kw):
        write_table(DataRoot(kw["data"]), "series", _series(state["titles"]))
        return {"series": len(state["titles"])}

    def run_flow(flow, runner, **kw):
        return {"cleaned": 0}

    def rank(**kw):
        titles = state["titles"]
        top1 = {s: 0.1 for s in titles}
        root = DataRoot(kw["data"])
        write_table(root, "zeroshot", _zeroshot(top1, titles))
        write_table(root, "classes", _classes({s: True for s in titles}, top1, titles))
        return {"kept": len(titles)}

    monkeypatch.setattr(build, "discover_flow", discover)
    monkeypatch.setattr(build, "run_flow", run_flow)
    monkeypatch.setattr(build, "rank_flow", rank)
    monkeypatch.setattr(build, "report_task", lambda data: {"files": {}})
    data = data_root.url
    first = build.build_flow(location="unused", data=data, train=False, models=["A@b"])
    snap_file = Path(table_path(data_root, "snapshots"))
    before = snap_file.read_bytes()
    again = build.build_flow(location="unused", data=data, train=False, models=["A@b"])
    assert again["snapshot"] == first["snapshot"]
    assert snap_file.read_bytes() == before
    rows = list_snapshots(data_root)
    assert len(rows) == 1 and rows[0]["flow_run_id"]
    params = json.loads(rows[0]["parameters"])
    assert params["models"] == ["A@b"] and params["train"] is False
    assert params["location"] == "unused" and params["train_model"] == "A@b"
    state["titles"]["tt9"] = "Brand New"
    third = build.build_flow(location="unused", data=data, train=False, models=["A@b"])
    assert third["snapshot"] != first["snapshot"]
    diff = diff_snapshots(data)
    assert [r["series_id"] for r in diff["added"]] == ["tt9"] and diff["removed"] == []


# ============================================================================ diff


def test_diff_lists_added_removed_moved_and_kept_changes(two_snapshots):
    root, a, b = two_snapshots
    diff = diff_snapshots(root)  # defaults: latest and the one before
    assert (diff["a"]["snapshot_id"], diff["b"]["snapshot_id"]) == (a, b)
    assert diff["added"] == [{"series_id": "tt5", "title": "New Show"}]
    assert diff["removed"] == [{"series_id": "tt4", "title": "Old Show"}]
    moved = {(r["model_key"], r["series_id"]): round(r["delta"], 6) for r in diff["moved"]}
    assert moved == {(MODEL, "tt2"): -0.4, (MODEL, "tt1"): 0.3}  # tt3 moved 0.02 only
    assert [r["series_id"] for r in diff["moved"]] == ["tt2", "tt1"]  # largest first
    changed = {r["series_id"]: (r["kept_a"], r["kept_b"]) for r in diff["classes"]}
    assert changed == {"tt1": (True, False), "tt2": (False, True), "tt5": (None, True)}
    # A higher threshold hides both moves; explicit ids and unique prefixes work.
    assert diff_snapshots(root, a, b, threshold=0.5)["moved"] == []
    assert diff_snapshots(root, a[:17], b)["a"]["snapshot_id"] == a
    reverse = diff_snapshots(root, b, a)
    assert reverse["added"] == diff["removed"] and reverse["removed"] == diff["added"]
    text = format_diff(diff)
    assert "series added (1):" in text and "tt5  New Show" in text
    assert "tt2  Moonlit Harbor  50.0% -> 10.0% (-40.0)" in text
    assert "tt1  Jade Lantern  kept -> too_easy" in text


def test_choose_pair_errors():
    rows = [{"snapshot_id": "20250101T000000Z-aaaa0000"},
            {"snapshot_id": "20250102T000000Z-bbbb0000"}]
    with pytest.raises(SnapshotError, match="fewer than two snapshots"):
        choose_pair([])
    with pytest.raises(SnapshotError, match="fewer than two snapshots"):
        choose_pair(rows[:1])
    with pytest.raises(SnapshotError, match="unknown snapshot 'nope'"):
        choose_pair(rows, "nope")
    with pytest.raises(SnapshotError, match="ambiguous"):
        choose_pair(rows, "2025")
    with pytest.raises(SnapshotError, match="the first"):
        choose_pair(rows, None, rows[0]["snapshot_id"])
    a, b = choose_pair(rows, None, "20250102")
    assert (a["snapshot_id"], b["snapshot_id"]) == (rows[0]["snapshot_id"], rows[1]["snapshot_id"])


def test_cli_diff_outputs_and_errors(two_snapshots, data_root):
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
    one_line_error(["diff", "--data", empty], "fewer than two snapshots (found 0)")
    one_line_error(["rerank", "--data", empty], "--model is required")


# ============================================================================ rerank


def test_rerank_flags_a_class_whose_accuracy_rose_above_the_threshold():
    kept = pa.table({"series_id": ["tt1", "tt2", "tt3"], "title": ["A", "B", "C"],
                     "accuracy": [0.05, 0.0, 0.1]})
    titles = {"tt1": "A", "tt2": "B", "tt3": "C", "tt4": "D", "tt5": "E"}
    new = _zeroshot({"tt1": 0.6, "tt2": 0.1, "tt3": None, "tt4": 0.9, "tt5": 0.0}, titles)
    assert default_threshold(5) == pytest.approx(0.4) and default_threshold(100) == 0.1
    rows = {r["series_id"]: r for r in rerank_table(kept, new, snapshot_id="s1").to_pylist()}
    assert set(rows) == {"tt1", "tt2", "tt3"}  # kept classes only
    assert rows["tt1"]["still_unseen"] is False  # 5% -> 60% > 40% (twice chance of 5)
    assert rows["tt2"]["still_unseen"] is True and rows["tt3"]["still_unseen"] is None
    assert rows["tt1"]["old_accuracy"] == 0.05 and rows["tt1"]["new_accuracy"] == 0.6
    assert rows["tt1"]["threshold"] == pytest.approx(0.4) and rows["tt1"]["snapshot_id"] == "s1"
    strict = {r["series_id"]: r["still_unseen"] for r in rerank_table(kept, new, 0.05).to_pylist()}
    assert strict == {"tt1": False, "tt2": False, "tt3": None}


def _jpeg(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG")
    return buf.getvalue()


def test_rerank_flow_with_a_tiny_model(data_root, prefect_harness, tiny_arch):  # noqa: F811
    from tv100.flows.refresh import rerank_flow
    from tv100.tasks.rank.clip import ModelSpec, load_clip
    from tv100.tasks.rank.zeroshot import zero_shot

    titles = {"tt1": "The Jade Lantern", "tt2": "Moonlit Harbor", "tt3": "Love in Busan"}
    store = ImageStore(data_root)
    rows = []
    for i in range(18):
        sha, rel = store.put(_jpeg(i), "jpg")
        rows.append({"image_id": f"i{i:02d}", "series_id": f"tt{1 + i % 3}", "status": "ok",
                     "sha256": sha, "path": rel, "width": 48, "height": 40})
    write_table(data_root, "images", pa.Table.from_pylist(rows, schema=IMAGES))
    write_table(data_root, "series", _series(titles))
    kept = {"tt1": True, "tt2": True, "tt3": False}
    old = {"tt1": 0.0, "tt2": 0.0, "tt3": 0.9}
    write_table(data_root, "classes", _classes(kept, old, titles))
    snap = record_snapshot(data_root, {})["snapshot_id"]

    spec = f"{tiny_arch}@random"
    result = rerank_flow(data=data_root.url, models=[spec], threshold=0.0, workers=0,
                         device="cpu")
    table = read_table(data_root, "rerank")
    # The same numbers as a direct zero-shot run among all three candidates.
    clip = load_clip(ModelSpec.parse(spec), "cpu")
    images = pa.Table.from_pylist([{"image_id": r["image_id"], "series_id": r["series_id"]}
                                   for r in rows if r["series_id"] != "tt3"])
    direct = {r["series_id"]: r["top1"] for r in zero_shot(
        data_root, clip, images, _series(titles).select(["series_id", "title"])).to_pylist()}
    got = {r["series_id"]: r for r in table.to_pylist()}
    assert set(got) == {"tt1", "tt2"}
    for sid, r in got.items():
        assert r["new_accuracy"] == pytest.approx(direct[sid])
        assert r["n_images"] == 6 and r["n_classes"] == 3 and r["old_accuracy"] == 0.0
        assert r["still_unseen"] is (r["new_accuracy"] <= 0.0)
    flagged = {r["series_id"] for r in result["no_longer_unseen"]}
    assert flagged == {s for s, r in got.items() if r["new_accuracy"] > 0.0}
    assert flagged  # the seeded random model gets some images right: 0% -> above 0
    assert result["kept"] == 2 and result["candidates"] == 3 and result["snapshot_id"] is None
    # The default threshold is twice chance among 3 candidates; a snapshot's classes too.
    again = rerank_flow(data=data_root.url, models=[spec], since=snap[:10], workers=0,
                        device="cpu")
    assert again["snapshot_id"] == snap
    assert set(read_table(data_root, "rerank").column("threshold").to_pylist()) == {2 / 3}
    # rerank's tables are outside the build's state: no new snapshot.
    assert record_snapshot(data_root, {})["created"] is False
