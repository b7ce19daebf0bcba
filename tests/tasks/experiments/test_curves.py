"""Data-efficiency curves: the nested few-shot draw, the config's checks, the `curves` table
(rows, merging, byte-identical reruns), its SQL and its figure, on the tiny recipe dataset
of the train-stage tests (6 easy classes, a random-init tiny open_clip)."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections import Counter
from importlib.resources import files
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.tasks.train.recipe_data import NAMES, PROBE, SPEC, build_dataset, register_arch
from tv100.storage.catalog import query
from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table, table_path, write_table
from tv100.tasks.experiments.curves import (
    ALL_SHOTS,
    CURVES,
    CURVES_TABLE,
    CurvesConfig,
    curve_summary,
    curves_config,
    experiment_inputs,
    few_shot_splits,
    run_curves,
)
from tv100.tasks.experiments.curves_figure import draw_curves, write_curves_figure
from tv100.tasks.report.named_queries import parse_query
from tv100.tasks.train.config import TrainConfig

#: Train images per class of the recipe dataset (25 images, 0.2 test, 0.2 val).
TRAIN_PER_CLASS = 15
PROBE_CFG = TrainConfig(recipe="linear", **PROBE)
_LOCK = threading.Lock()
_MEMO: dict[str, Path] = {}


def _build_root(data_dir: Path) -> Path:
    """The recipe dataset as a trained data root: `images`, `classes` and `splits`."""
    from tv100.storage.schemas import CLASSES, IMAGES

    root, splits, paths = build_dataset(data_dir)
    empty = {f.name: None for f in IMAGES}
    images = [{**empty, "image_id": i, "series_id": s, "status": "ok", "path": paths[i],
               "sha256": hashlib.sha256(i.encode()).hexdigest(), "width": 64, "height": 64}
              for i, s in zip(splits.column("image_id").to_pylist(),
                              splits.column("series_id").to_pylist(), strict=True)]
    write_table(root, "images", pa.Table.from_pylist(images, IMAGES))
    classes = [{"series_id": f"tt{9000 + c}", "title": n, "class_index": c, "kept": True,
                "reason": "hardest", "rank": c + 1, "accuracy": 0.1, "n_images": 25,
                "aggregate": "max", "models": [SPEC]} for c, n in enumerate(NAMES)]
    write_table(root, "classes", pa.Table.from_pylist(classes, CLASSES))
    write_table(root, "splits", splits)
    return data_dir


def trained_root(factory: pytest.TempPathFactory, dest: Path) -> DataRoot:
    """A fresh copy, at `dest`, of the recipe dataset as a trained data root (`images`,
    `classes`, `splits`); the images are stored once per test session."""
    with _LOCK:
        if "template" not in _MEMO:
            _MEMO["template"] = _build_root(factory.mktemp("curves-template") / "data")
    shutil.copytree(_MEMO["template"], dest)
    return DataRoot(str(dest))


@pytest.fixture(scope="module")
def arch(tmp_path_factory):
    return register_arch(tmp_path_factory.mktemp("oc-config"))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return trained_root(tmp_path_factory, tmp_path_factory.mktemp("curves") / "data")


@pytest.fixture(scope="module")
def curves(arch, root):
    """Linear probe curves: shots 1, 4 and all, seeds 0 and 1 (6 runs, ~5 s)."""
    config = CurvesConfig(recipes=("linear",), shots=(ALL_SHOTS, 1, 4), seeds=(0, 1),
                          train=PROBE_CFG)
    return run_curves(root, SPEC, config, "cpu")


# ---- the few-shot draw ---------------------------------------------------------------


def _splits(per_class: dict[int, int], held_out: int = 3) -> pa.Table:
    rows = []
    for c, n in per_class.items():
        rows += [{"image_id": f"c{c}-t{i:03d}", "series_id": f"tt{c}", "class_index": c,
                  "split": "train"} for i in range(n)]
        rows += [{"image_id": f"c{c}-{s}{i}", "series_id": f"tt{c}", "class_index": c,
                  "split": s} for s in ("val", "test") for i in range(held_out)]
    return pa.Table.from_pylist(rows)


def _train_ids(t: pa.Table) -> set[str]:
    return {r["image_id"] for r in t.to_pylist() if r["split"] == "train"}


def test_few_shot_draws_are_nested_seeded_and_leave_val_and_test_alone():
    splits = _splits({0: 40, 1: 20, 2: 3})
    held_out = [r for r in splits.to_pylist() if r["split"] != "train"]
    for seed in (0, 1, 7):
        previous: set[str] = set()
        for shots in (1, 2, 4, 8, 16, 32):
            few = few_shot_splits(splits, shots, seed)
            assert few.schema == splits.schema
            assert [r for r in few.to_pylist() if r["split"] != "train"] == held_out
            counts = Counter(r["class_index"] for r in few.to_pylist() if r["split"] == "train")
            # a class with fewer train images than `shots` keeps all it has
            assert counts == {0: min(shots, 40), 1: min(shots, 20), 2: min(shots, 3)}
            ids = _train_ids(few)
            assert previous <= ids, (seed, shots)  # nested: the smaller set is inside
            previous = ids
            assert few_shot_splits(splits, shots, seed).equals(few)  # deterministic
        assert few_shot_splits(splits, ALL_SHOTS, seed).equals(splits)
    # another seed draws other images; the row order of the input does not matter
    assert _train_ids(few_shot_splits(splits, 4, 0)) != _train_ids(few_shot_splits(splits, 4, 1))
    shuffled = splits.take(list(range(splits.num_rows))[::-1])
    assert _train_ids(few_shot_splits(shuffled, 4, 3)) == _train_ids(few_shot_splits(splits, 4, 3))


@pytest.mark.parametrize(
    ("shots", "seed", "match"),
    [(-1, 0, r"shots=-1; expected an integer in 0\.\.1000000 \(0: all\)"),
     (1.5, 0, "shots=1.5"), (True, 0, "shots=True"), (1, -3, r"seed=-3; expected an integer")],
)
def test_few_shot_refuses_bad_shots_and_seeds(shots, seed, match):
    with pytest.raises(ValueError, match=match):
        few_shot_splits(_splits({0: 3}), shots, seed)
    with pytest.raises(ValueError, match="lacks column 'split'"):
        few_shot_splits(_splits({0: 3}).drop_columns(["split"]), 1, 0)


# ---- the config ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"recipes": ()}, r"CurvesConfig.recipes=\(\); expected a non-empty tuple"),
        ({"recipes": ("linear", "linear")}, "CurvesConfig.recipes="),
        ({"recipes": ("bogus",)}, "recipe 'bogus' is unknown; expected one of"),
        ({"shots": (1, 1)}, r"CurvesConfig.shots=\(1, 1\); expected a non-empty tuple of "
                            r"distinct integers in 0\.\.1000000 \(0: all\)"),
        ({"shots": (1, -2)}, "CurvesConfig.shots="),
        ({"shots": [1, 2]}, "CurvesConfig.shots="),
        ({"seeds": ()}, r"CurvesConfig.seeds=\(\); expected a non-empty tuple"),
        ({"seeds": (0, "1")}, "CurvesConfig.seeds="),
        ({"train": {"epochs": 3}}, "CurvesConfig.train=.*expected a TrainConfig"),
        ({"max_warmup_share": 1.5}, r"max_warmup_share=1.5; expected a number in 0\.\.1"),
        ({"max_warmup_share": float("nan")}, "max_warmup_share=nan"),
    ],
)
def test_config_refuses_bad_values_with_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        CurvesConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_config_defaults_order_and_options():
    c = CurvesConfig()
    assert c.recipes == ("linear", "finetune") and len(c.seeds) == 3
    assert c.ordered_shots() == (1, 2, 4, 8, 16, 32, ALL_SHOTS)
    assert CurvesConfig(shots=(0, 8, 2)).ordered_shots() == (2, 8, 0)
    assert len(c.points()) == 2 * 7 * 3
    built = curves_config(recipes=["linear"], shots=[4, 0], seeds=[5], epochs=3, lr=None)
    assert built.train.epochs == 3 and built.train.lr == TrainConfig().lr
    assert built.shots == (4, 0) and built.seeds == (5,)
    with pytest.raises(ValueError, match="curves option 'epoch' is not a training knob"):
        curves_config(epoch=3)
    with pytest.raises(ValueError, match="TrainConfig.epochs=0"):
        curves_config(epochs=0)


def test_point_config_caps_the_warm_up_of_short_fine_tunes():
    c = CurvesConfig(train=TrainConfig(epochs=10, batch_size=8, warmup_steps=500))
    one_shot = c.point_config("finetune", 4, n_train=6)  # 10 steps: warm-up 1
    assert (one_shot.recipe, one_shot.seed, one_shot.warmup_steps) == ("finetune", 4, 1)
    assert c.point_config("finetune", 0, n_train=80_000).warmup_steps == 500
    assert c.point_config("linear", 0, n_train=6).warmup_steps == 500  # not its knob
    kept = CurvesConfig(train=c.train, max_warmup_share=1.0)
    assert kept.point_config("finetune", 0, n_train=6).warmup_steps == 10


# ---- the runs and the table ----------------------------------------------------------


def test_curves_rows_and_the_same_test_split_for_every_point(curves, root):
    table = read_table(root, CURVES_TABLE)
    assert table.schema.names == CURVES.names
    rows = table.to_pylist()
    assert len(rows) == 3 * 2 * 2 * 3  # points x (val, test) x metrics
    assert {(r["shots"], r["seed"]) for r in rows} == {(k, s) for k in (1, 4, 0) for s in (0, 1)}
    assert {r["metric"] for r in rows} == {"top1", "top5", "balanced_accuracy"}
    assert {r["split"] for r in rows} == {"val", "test"}
    assert {r["shots"]: r["mean_shots"] for r in rows} == {1: 1.0, 4: 4.0, 0: TRAIN_PER_CLASS}
    assert all(r["recipe"] == "linear" and r["model_key"] == curves.model_key for r in rows)
    assert [(p.shots, p.seed) for p in curves.points] == [(1, 0), (1, 1), (4, 0), (4, 1),
                                                          (0, 0), (0, 1)]
    assert [p.n_train for p in curves.points] == [6, 6, 24, 24, 90, 90]
    # every point was scored on the whole, same test split
    test_n = sum(1 for r in read_table(root, "splits").to_pylist() if r["split"] == "test")
    for p in curves.points:
        with root.fs.open(root.path(f"runs/{p.run_id}/result.json")) as f:
            assert json.load(f)["n"]["test"] == test_n
    # each seed is its own run, "all" included (the seed also seeds the training)
    assert len({p.run_id for p in curves.points}) == 6


def test_curves_rise_with_shots(curves):
    """Measured over seeds 0..4 (linear, this dataset): test top-1 0.88 (sd 0.087) at 1
    shot, 0.987 (0.018) at 4, 1.0 (0) with all 15."""
    mean = {r["shots"]: r["mean"] for r in curves.summary if r["metric"] == "top1"}
    assert mean[ALL_SHOTS] >= 0.9
    assert mean[1] <= mean[4] + 0.05 and mean[1] <= mean[ALL_SHOTS]
    assert mean[1] >= 0.4  # far above chance (1/6) even with one image per class


def test_rerun_is_byte_identical_and_other_points_merge(curves, root):
    path = table_path(root, CURVES_TABLE)
    before = Path(path).read_bytes()
    again = run_curves(root, SPEC, CurvesConfig(recipes=("linear",), shots=(1, 4, ALL_SHOTS),
                                                seeds=(0, 1), train=PROBE_CFG), "cpu")
    assert Path(path).read_bytes() == before and again.table == curves.table
    # a new seed appends its rows; the earlier points stay as they were
    run_curves(root, SPEC, CurvesConfig(recipes=("linear",), shots=(1,), seeds=(2,),
                                        train=PROBE_CFG), "cpu")
    rows = read_table(root, CURVES_TABLE).to_pylist()
    assert len(rows) == 36 + 6
    assert [r for r in rows if r["seed"] != 2] == pq.read_table(pa.BufferReader(before)).to_pylist()


def test_summary_matches_the_named_query(curves, root):
    text = files("tv100.tasks.report").joinpath("queries", "curves.sql").read_text()
    q = parse_query("curves", text)
    assert q.tables == ("curves",) and not q.params
    got = query(root, q.sql).to_pylist()
    want = curve_summary(read_table(root, CURVES_TABLE), split=None)
    assert [(r["recipe"], r["shots"], r["split"], r["metric"], r["n_seeds"]) for r in got] == [
        (r["recipe"], r["shots"], r["split"], r["metric"], r["n_seeds"]) for r in want]
    for a, b in zip(got, want, strict=True):
        assert a["mean"] == pytest.approx(b["mean"]) and a["mean_shots"] == b["mean_shots"]
        assert (a["std"] is None) == (b["std"] is None)
        if b["std"] is not None:
            assert a["std"] == pytest.approx(b["std"], abs=1e-12)


def test_inputs_refuse_a_split_older_than_its_classes(tmp_path_factory, tmp_path):
    from tv100.storage.schemas import CLASSES

    root = trained_root(tmp_path_factory, tmp_path / "data")
    assert experiment_inputs(root).names == tuple(NAMES)
    original = read_table(root, "classes")
    classes = original.to_pylist()
    classes[0]["series_id"], classes[1]["series_id"] = classes[1]["series_id"], "tt-other"
    write_table(root, "classes", pa.Table.from_pylist(classes, CLASSES))
    with pytest.raises(ValueError, match="`splits` table .* is older than its `classes`"):
        experiment_inputs(root)
    write_table(root, "classes", original)
    images = read_table(root, "images")
    write_table(root, "images", images.slice(1))
    lost = images.column("image_id")[0].as_py()
    with pytest.raises(ValueError, match=f"1 images of the `splits` table have no stored file "
                                         f"in `images`, e.g. '{lost}'"):
        experiment_inputs(root)


# ---- the figure ----------------------------------------------------------------------


def test_figure_is_drawn_and_redrawn_identically(curves, root, tmp_path):
    table = read_table(root, CURVES_TABLE)
    out = draw_curves(table, tmp_path / "fig" / "curves.png")
    data = Path(out).read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000
    assert Path(draw_curves(table, tmp_path / "again.png")).read_bytes() == data
    written = write_curves_figure(root, table)
    assert written == root.path("report", "curves.png") and Path(written).read_bytes() == data
    mtime = Path(written).stat().st_mtime_ns
    write_curves_figure(root, table)
    assert Path(written).stat().st_mtime_ns == mtime  # equal bytes: not written again
    with pytest.raises(ValueError, match="no test rows in the curves table"):
        draw_curves(table.filter(pc.equal(table.column("split"), "val")),
                    tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
