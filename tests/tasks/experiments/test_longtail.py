"""Long-tail methods side by side: the config's checks, every method through `run_recipe`
with a tiny open_clip on a small long-tailed data root (rows in `metrics` tagged with the
method, byte-identical reruns, shared fine-tune runs), the `longtail_tiers` SQL and the
figure."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pyarrow as pa
import pytest

from tests.support.rank_fixtures import TINY_ARCH, tiny_arch  # noqa: F401  (fixture)
from tests.tasks.train.recipe_data import render
from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table, write_table
from tv100.tasks.experiments.longtail import (
    LONGTAIL_METHODS,
    LongtailConfig,
    longtail_tiers,
    method_knobs,
    run_longtail,
    setting_of,
)
from tv100.tasks.experiments.longtail_figure import draw_longtail, longtail_png
from tv100.tasks.train.config import TrainConfig

SPEC = f"{TINY_ARCH}@random"
#: Images per class: a small long tail (train ~36, 18, 7, 5 after a 0.2/0.2 split).
COUNTS = (60, 30, 12, 8)
TITLES = ("Amber Coast", "Iron Lantern", "Paper Moon", "Cedar Falls")
BASE = TrainConfig(probe_weight_decays=(1e-3, 1e-1), probe_max_iter=50, threads=1)


def _root(data_dir: Path) -> DataRoot:
    """A trained data root: `images` (stored), `classes` and `splits` of `COUNTS`."""
    from tv100.storage.images import ImageStore
    from tv100.storage.schemas import CLASSES, IMAGES
    from tv100.tasks.train.config import SplitConfig
    from tv100.tasks.train.splits import make_splits

    root = DataRoot(str(data_dir)).ensure()
    store = ImageStore(root)
    empty = {f.name: None for f in IMAGES}
    images, labelled = [], []
    for c, n in enumerate(COUNTS):
        for i in range(n):
            sha, rel = store.put(render(c, i), "jpg")
            images.append({**empty, "image_id": sha[:16], "series_id": f"tt{8000 + c}",
                           "status": "ok", "path": rel, "sha256": sha, "width": 64,
                           "height": 64})
            labelled.append({"image_id": sha[:16], "series_id": f"tt{8000 + c}",
                             "class_index": c})
    write_table(root, "images", pa.Table.from_pylist(images, IMAGES))
    classes = [{"series_id": f"tt{8000 + c}", "title": t, "class_index": c, "kept": True,
                "reason": "hardest", "rank": c + 1, "accuracy": 0.1, "n_images": n,
                "aggregate": "max", "models": [SPEC]}
               for c, (t, n) in enumerate(zip(TITLES, COUNTS, strict=True))]
    write_table(root, "classes", pa.Table.from_pylist(classes, CLASSES))
    splits = make_splits(pa.Table.from_pylist(labelled),
                         SplitConfig(test_ratio=0.2, val_ratio=0.2))
    write_table(root, "splits", splits)
    return root


def _hashes(root: DataRoot) -> dict[str, str]:
    out = {}
    for name in ("metrics", "class_metrics"):
        with root.fs.open(root.path(f"tables/{name}.parquet"), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_arch):  # noqa: F811
    return _root(tmp_path_factory.mktemp("longtail") / "data")


# ---- the config --------------------------------------------------------------------------


def test_method_knobs_are_one_change_from_cross_entropy():
    assert LONGTAIL_METHODS == ("ce", "balanced_sampling", "logit_adjust_posthoc",
                                "logit_adjust_loss", "class_balanced_loss", "crt")
    assert method_knobs("ce") == {}
    assert method_knobs("logit_adjust_posthoc", tau=2.0) == {"posthoc_tau": 2.0}
    assert method_knobs("class_balanced_loss", cb_beta=0.99) == {"loss": "class_balanced",
                                                                 "cb_beta": 0.99}
    with pytest.raises(ValueError, match="long-tail method 'focal' is unknown"):
        method_knobs("focal")
    # The base's own long-tail knobs are reset: every method is one change from plain CE.
    cfg = LongtailConfig(recipe="linear", train=TrainConfig(sampling="sqrt",
                                                            logit_adjust_tau=0.5))
    for method, _seed, tc in cfg.runs():
        assert tc.recipe == "linear" and tc.select_by == "balanced_accuracy"
        on = {k for k, v in (("sampling", tc.sampling != "uniform"),
                             ("logit_adjust_tau", tc.logit_adjust_tau > 0),
                             ("loss", tc.loss != "ce"), ("posthoc_tau", tc.posthoc_tau > 0),
                             ("crt", tc.crt)) if v}
        assert len(on) == (method != "ce"), (method, on)
    assert len(cfg.runs()) == 6 * 3
    ft = LongtailConfig().train_config("crt", 4)
    assert (ft.recipe, ft.seed, ft.epochs, ft.lr, ft.crt) == ("finetune", 4, 6, 5e-4, True)
    # A setting names the knobs, not the seed.
    assert setting_of(cfg.train_config("ce", 0)) == setting_of(cfg.train_config("ce", 1))
    assert setting_of(cfg.train_config("ce", 0)) != setting_of(cfg.train_config("crt", 0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"recipe": "wiseft"}, "LongtailConfig.recipe='wiseft'; expected one of"),
        ({"methods": ()}, r"LongtailConfig.methods=\(\); expected a non-empty tuple"),
        ({"methods": ("ce", "ce")}, "expected a non-empty tuple of distinct names"),
        ({"methods": ("ce", "focal")}, "long-tail method 'focal' is unknown"),
        ({"methods": ["ce"]}, r"LongtailConfig.methods=\['ce'\]"),
        ({"seeds": (0, 0)}, r"LongtailConfig.seeds=\(0, 0\); expected a non-empty tuple"),
        ({"seeds": (-1,)}, r"LongtailConfig.seeds=-1; expected an integer in 0..\d+"),
        ({"epochs": 0}, r"LongtailConfig.epochs=0; expected an integer in 1..10000"),
        ({"lr": 0.0}, r"LongtailConfig.lr=0.0; expected x in \(0, 1\]"),
        ({"tau": 0}, r"LongtailConfig.tau=0; expected x in \(0, 10\]"),
        ({"cb_beta": 1.0}, r"LongtailConfig.cb_beta=1.0; expected x in \(0, 1\)"),
        ({"tau": math.inf}, "LongtailConfig.tau=inf"),
        ({"select_by": "f1"}, "LongtailConfig.select_by='f1'; expected one of"),
        ({"train": {}}, "LongtailConfig.train={}; expected a TrainConfig"),
    ],
)
def test_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LongtailConfig(**kwargs)


def test_run_longtail_needs_the_train_stage(tmp_path):
    with pytest.raises(ValueError, match="no `splits` table under .*expected the train stage"):
        run_longtail(DataRoot(str(tmp_path)), SPEC, LongtailConfig(recipe="linear"))


# ---- every method through run_recipe ----------------------------------------------------------


def test_linear_methods_land_in_metrics_and_rerun_changes_nothing(root):
    cfg = LongtailConfig(recipe="linear", seeds=(0, 1), train=BASE)
    result = run_longtail(root, SPEC, cfg, device="cpu")
    assert [m.method for m in result.methods] == list(LONGTAIL_METHODS)
    assert result.recipe == "linear" and result.model_key == f"{TINY_ARCH}@random-0"
    metrics = read_table(root, "metrics").to_pylist()
    tagged: dict[str, set[str]] = {}
    for r in metrics:
        hp = json.loads(r["hyperparameters"])
        if "longtail_method" in hp:
            assert r["recipe"] == "linear"
            tagged.setdefault(hp["longtail_method"], set()).add(r["run_id"])
    assert tagged == {m.method: set(m.run_ids) for m in result.methods}
    for m in result.methods:
        assert len(m.run_ids) == 2 and m.top1.n == 2 and m.top1.mean is not None
        assert m.few.n == 2 and m.many.n == 0 and m.many.mean is None
        # The probe does not depend on the seed: the std over seeds is 0.
        assert m.top1.std == pytest.approx(0.0)
    class_runs = {r["run_id"] for r in read_table(root, "class_metrics").to_pylist()}
    assert class_runs >= {i for m in result.methods for i in m.run_ids}

    # The named query summarises the same rows.
    q = longtail_tiers(root).to_pylist()
    got = {(r["method"], r["tier"]): r for r in q}
    for row in result.rows():
        if row["mean"] is None:
            assert (row["method"], row["tier"]) not in got
            continue
        sql = got[(row["method"], row["tier"])]
        assert sql["mean"] == pytest.approx(row["mean"]) and sql["n_seeds"] == row["n_seeds"]
        assert sql["recipe"] == "linear" and sql["std"] == pytest.approx(row["std"], abs=1e-9)
    assert list(dict.fromkeys(r["method"] for r in q)) == list(LONGTAIL_METHODS)

    before = _hashes(root)
    again = run_longtail(root, SPEC, cfg, device="cpu")
    assert _hashes(root) == before
    assert again.rows() == result.rows()


def test_finetune_methods_share_the_plain_training(root):
    cfg = LongtailConfig(recipe="finetune", seeds=(0,), epochs=1, batch_size=16,
                         warmup_steps=1, lr=1e-3, train=BASE)
    result = run_longtail(root, SPEC, cfg, device="cpu")
    rows = read_table(root, "metrics").to_pylist()
    hp = {}
    for r in rows:
        h = json.loads(r["hyperparameters"])
        if h.get("longtail_method") and r["recipe"] == "finetune":
            hp[h["longtail_method"]] = h
    assert set(hp) == set(LONGTAIL_METHODS)
    ce_run = result.method("ce").run_ids[0]
    # Post-hoc adjustment and cRT reuse the CE fine-tune; the other three train their own.
    assert hp["logit_adjust_posthoc"]["finetune_run_id"] == ce_run
    assert hp["crt"]["finetune_run_id"] == ce_run
    assert hp["class_balanced_loss"]["loss"] == "class_balanced"
    assert hp["class_balanced_loss"]["cb_beta"] == 0.999
    trained = sorted(p.rsplit("/", 1)[-1] for p in root.fs.ls(root.path("runs"))
                     if root.fs.exists(p + "/ckpt-last.pt"))
    assert len([t for t in trained if t.startswith("finetune-")]) == 4
    for m in result.methods:
        assert m.top1.n == 1 and m.top1.std is None
    with pytest.raises(KeyError, match="method 'x' did not run"):
        result.method("x")

    before = _hashes(root)
    again = run_longtail(root, SPEC, cfg, device="cpu")
    assert _hashes(root) == before and again.rows() == result.rows()


# ---- the figure --------------------------------------------------------------------------


def test_figure_is_deterministic_and_refuses_mixed_rows(tmp_path):
    rows = [{"method": m, "tier": t, "mean": 0.1 * (i + 1) + 0.02 * j, "std": 0.01,
             "n_seeds": 3}
            for i, m in enumerate(LONGTAIL_METHODS)
            for j, t in enumerate(("top1", "balanced", "many", "medium", "few"))]
    rows[-1] = {**rows[-1], "mean": None, "std": None, "n_seeds": 0}  # an empty tier
    out = draw_longtail(rows, tmp_path / "longtail.png")
    data = Path(out).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data == longtail_png(rows)
    with pytest.raises(ValueError, match="method 'ce' tier 'top1' given twice"):
        longtail_png(rows + rows[:1])
    with pytest.raises(ValueError, match="rows is empty"):
        longtail_png([])
