"""Recipes on a tiny offline dataset: 6 easy classes of synthetic images and a tiny
random-init open_clip (so zero-shot is at chance and training has to do the work).

The module fixture runs every recipe once on one data root; the resume test kills a
fine-tuning subprocess after its first epoch checkpoint, resumes it on a second root and
compares with that uninterrupted run bit for bit.
"""

from __future__ import annotations

import colorsys
import io
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
ARCH = "tv100-test-tiny"
SPEC = f"{ARCH}@random"
#: ViT 64 px, patch 16, width 64, 2 layers; a one-layer text tower (random: zero-shot at
#: chance). ~150 k image-tower parameters.
MODEL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32,
                   "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 1,
                 "layers": 1},
}
NAMES = ["The Jade Lantern", "Salt Harbour", "Nine Winters", "Copper Sky", "Quiet Orchard",
         "Glass Tide"]
PER_CLASS = 25
THREADS = 1
FT = {"epochs": 4, "batch_size": 16, "lr": 2e-3, "weight_decay": 0.05, "warmup_steps": 5,
      "threads": THREADS}
PROBE = {"probe_weight_decays": (1e-3, 1e-2, 1e-1), "probe_max_iter": 100,
         "threads": THREADS}


def render(c: int, i: int) -> bytes:
    """Image `i` of class `c`: the class's hue and stripe pattern, with jittered hue,
    saturation, brightness and phase, pixel noise and a random distractor square."""
    from PIL import Image

    rng = np.random.default_rng([c, i, 7])
    h = (c / len(NAMES) + rng.uniform(-0.03, 0.03)) % 1
    rgb = np.array(colorsys.hsv_to_rgb(h, rng.uniform(0.6, 0.9), rng.uniform(0.75, 1.0))) * 255
    yy, xx = np.mgrid[0:64, 0:64]
    coord = [yy, xx, xx + yy][c % 3]
    period = 8 + 6 * (c // 3)
    mask = ((coord + rng.integers(period)) % period) < period / 2
    img = np.where(mask[..., None], rgb * 0.55, rgb) + rng.normal(0, 12, (64, 64, 3))
    s = int(rng.integers(8, 18))
    x0, y0 = rng.integers(0, 64 - s, 2)
    img[y0 : y0 + s, x0 : x0 + s] = rng.uniform(0, 255, 3)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def build_dataset(data_dir: Path) -> tuple[str, pa.Table, dict[str, str]]:
    """Store the images under a data root; return (root, splits, image_id -> path)."""
    from tv100.storage.images import ImageStore
    from tv100.storage.root import DataRoot
    from tv100.tasks.train.splits import SplitConfig, make_splits

    root = DataRoot(str(data_dir)).ensure()
    store = ImageStore(root)
    rows, paths = [], {}
    for c in range(len(NAMES)):
        for i in range(PER_CLASS):
            sha, rel = store.put(render(c, i), "jpg")
            rows.append({"image_id": sha[:16], "series_id": f"tt{9000 + c}", "class_index": c})
            paths[sha[:16]] = rel
    splits = make_splits(pa.Table.from_pylist(rows), SplitConfig(test_ratio=0.2, val_ratio=0.2))
    return str(data_dir), splits, paths


@pytest.fixture(scope="module")
def arch(tmp_path_factory):
    import open_clip

    path = tmp_path_factory.mktemp("oc-config") / f"{ARCH}.json"
    path.write_text(json.dumps(MODEL_CFG))
    open_clip.add_model_config(path)
    return str(path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("ft") / "data")


@pytest.fixture(scope="module")
def results(arch, dataset):
    from tv100.tasks.train.finetune import TrainConfig, run_recipe

    root, splits, paths = dataset
    configs = {
        "zeroshot": TrainConfig(recipe="zeroshot", threads=THREADS),
        "linear": TrainConfig(recipe="linear", **PROBE),
        "finetune": TrainConfig(recipe="finetune", **FT),
        "wiseft": TrainConfig(recipe="wiseft", **FT),
    }
    return {r: run_recipe(root, splits, NAMES, SPEC, c, paths=paths) for r, c in configs.items()}


def top1(result, split="test"):
    return result.metrics_by_split[split]["top1"]


# --------------------------------------------------------------------------- recipes


def test_recipes_accuracy_and_outputs(results, dataset):
    _, splits, _ = dataset
    zs, lin, ft = results["zeroshot"], results["linear"], results["finetune"]
    # A random text tower knows none of the classes: chance is 1/6.
    assert top1(zs) <= 0.4 and top1(zs, "val") <= 0.4
    assert top1(lin) >= 0.8
    assert top1(ft) >= 0.8
    assert ft.history[-1]["loss"] < ft.history[0]["loss"]
    test_ids = sorted(r["image_id"] for r in splits.to_pylist() if r["split"] == "test")
    for r in results.values():
        assert set(r.scores_by_split) == {"val", "test"}
        scores, labels, ids = r.scores_by_split["test"]
        assert scores.shape == (len(test_ids), len(NAMES)) and scores.dtype == np.float32
        assert ids == test_ids and labels.dtype == np.int64
        m = r.metrics_by_split["test"]
        assert {"top1", "top5", "balanced_accuracy", "many", "medium", "few"} <= set(m)
        assert r.train_counts == {c: 15 for c in range(len(NAMES))}
        assert r.run_id.startswith(r.recipe + "-") and r.model_key == f"{ARCH}@random-0"
        summary = json.loads(
            (Path(dataset[0]) / "runs" / r.run_id / "result.json").read_text()
        )
        assert summary["metrics"]["test"]["top1"] == pytest.approx(top1(r))


def test_linear_probe_sweep_chooses_on_val(results):
    hp = results["linear"].hyperparameters
    by_wd = hp["val_top1_by_weight_decay"]
    assert set(by_wd) == {repr(v) for v in PROBE["probe_weight_decays"]}
    assert by_wd[repr(hp["weight_decay"])] == max(by_wd.values())
    assert top1(results["linear"], "val") == max(by_wd.values())


def test_wiseft_chooses_alpha_on_val_between_endpoints(results):
    zs, ft, w = results["zeroshot"], results["finetune"], results["wiseft"]
    hp = w.hyperparameters
    by_alpha = hp["val_top1_by_alpha"]
    assert set(by_alpha) == {"0.0", "0.25", "0.5", "0.75", "1.0"}
    # The endpoints are the zero-shot and the fine-tuned model themselves.
    assert by_alpha["0.0"] == pytest.approx(top1(zs, "val"))
    assert by_alpha["1.0"] == pytest.approx(top1(ft, "val"))
    assert by_alpha[repr(hp["alpha"])] == max(by_alpha.values()) == top1(w, "val")
    assert top1(w, "val") >= max(top1(zs, "val"), top1(ft, "val"))
    # On test: far above zero-shot, close to (or above) fine-tuning.
    assert top1(w) >= top1(zs) + 0.5
    assert top1(w) >= top1(ft) - 0.15
    # WiSE-FT reused the fine-tune run instead of training again.
    assert hp["finetune_run_id"] == ft.run_id
    assert w.resumed_from_epoch == FT["epochs"] and w.history == ft.history
    assert w.run_id != ft.run_id


def test_interpolate_state():
    import torch

    from tv100.tasks.train.finetune import interpolate_state

    zero = {"w": torch.zeros(2, 2), "n": torch.tensor([1])}
    tuned = {"w": torch.full((2, 2), 4.0), "n": torch.tensor([7])}
    assert torch.equal(interpolate_state(zero, tuned, 0.0)["w"], zero["w"])
    assert torch.equal(interpolate_state(zero, tuned, 1.0)["w"], tuned["w"])
    mid = interpolate_state(zero, tuned, 0.25)
    assert torch.allclose(mid["w"], torch.full((2, 2), 1.0))
    assert mid["n"].item() == 7  # integer buffers are not averaged


# --------------------------------------------------------------------------- long tail


def test_sampler_class_frequencies():
    from tv100.tasks.train.finetune import epoch_order, sampling_probabilities

    counts = np.array([100, 25, 4])
    labels = np.repeat(np.arange(3), counts)
    order = epoch_order(labels, seed=3, epoch=0, sampling="uniform")
    assert sorted(order.tolist()) == list(range(len(labels)))  # a permutation
    draws = {s: np.concatenate([labels[epoch_order(labels, 3, e, s)] for e in range(40)])
             for s in ("balanced", "sqrt")}
    freq = {s: np.bincount(d, minlength=3) / d.size for s, d in draws.items()}
    np.testing.assert_allclose(freq["balanced"], [1 / 3] * 3, atol=0.03)
    np.testing.assert_allclose(freq["sqrt"], np.sqrt(counts) / np.sqrt(counts).sum(), atol=0.03)
    p = sampling_probabilities(labels, "balanced")
    assert p.sum() == pytest.approx(1.0)
    assert p[labels == 2].sum() == pytest.approx(1 / 3)
    # The order is a function of (seed, epoch) only.
    a = epoch_order(labels, 3, 5, "balanced")
    assert np.array_equal(a, epoch_order(labels, 3, 5, "balanced"))
    assert not np.array_equal(a, epoch_order(labels, 3, 6, "balanced"))
    assert not np.array_equal(a, epoch_order(labels, 4, 5, "balanced"))


def test_logit_offsets_math():
    from tv100.tasks.train.finetune import logit_offsets

    off = logit_offsets({0: 60, 1: 30, 2: 10}, 4, tau=1.5)
    # A class with no training image counts as one: finite offsets.
    np.testing.assert_allclose(off, 1.5 * np.log(np.array([60, 30, 10, 1]) / 101))
    assert np.all(logit_offsets({0: 5, 1: 50}, 2, tau=0.0) == 0)
    # Equal counts: equal offsets (softmax-invariant).
    assert np.ptp(logit_offsets({0: 7, 1: 7, 2: 7}, 3, tau=1.0)) == 0


def test_logit_adjusted_probe_shifts_scores_by_prior():
    """Trained with offsets τ·log π in the loss, the optimum's scores are the plain
    optimum's minus τ·log π (bias unpenalised, so the shift is exactly representable)."""
    from tv100.tasks.train.finetune import fit_logistic, logit_offsets, sampling_probabilities

    rng = np.random.default_rng(0)
    counts = [120, 40, 10]
    centres = rng.normal(size=(3, 8))
    x = np.concatenate([centres[c] + rng.normal(size=(n, 8)) for c, n in enumerate(counts)])
    y = np.repeat(np.arange(3), counts)
    off = logit_offsets(dict(enumerate(counts)), 3, tau=1.0)
    W0, b0 = fit_logistic(x, y, 3, 1e-2, max_iter=500)
    W1, b1 = fit_logistic(x, y, 3, 1e-2, offsets=off, max_iter=500)
    np.testing.assert_allclose(W1, W0, atol=2e-3)
    shift = (b1 - b0) + off
    assert np.ptp(shift) < 5e-3  # b1 = b0 - τ log π + const
    assert np.ptp(off) > 2  # ...and the offsets are far from constant
    # Class-balanced weighting moves the minority class's bias up relative to the majority.
    wts = sampling_probabilities(y, "balanced") * len(y)
    _, b2 = fit_logistic(x, y, 3, 1e-2, sample_weights=wts, max_iter=500)
    assert (b2[2] - b2[0]) > (b0[2] - b0[0]) + 0.5


def test_training_options_change_training_and_workers_do_not(arch, dataset):
    from tv100.tasks.train.finetune import TrainConfig, run_recipe

    root, splits, paths = dataset
    one = {**FT, "epochs": 1}
    runs = {
        name: run_recipe(root, splits, NAMES, SPEC, TrainConfig(**one, **kw), paths=paths)
        for name, kw in {
            "base": {},
            "balanced": {"sampling": "balanced"},
            "adjusted": {"logit_adjust_tau": 1.0},
        }.items()
    }
    base = runs["base"]
    assert base.resumed_from_epoch == 0
    # Augmentation is seeded per (seed, epoch, position), so loading in a worker process
    # changes nothing. Same knobs, same run: drop its checkpoint to train it again.
    (Path(root) / "runs" / base.run_id / "ckpt-last.pt").unlink()
    again = run_recipe(root, splits, NAMES, SPEC, TrainConfig(**one, workers=1), paths=paths)
    assert again.run_id == base.run_id and again.resumed_from_epoch == 0
    assert again.history == base.history
    assert np.array_equal(again.scores_by_split["test"][0], base.scores_by_split["test"][0])
    for name in ("balanced", "adjusted"):
        r = runs[name]
        assert r.run_id != base.run_id
        assert r.history[0]["loss"] != base.history[0]["loss"]
        assert not np.array_equal(r.scores_by_split["val"][0], base.scores_by_split["val"][0])


def test_lr_schedule():
    from tv100.tasks.train.finetune import lr_factor

    assert [lr_factor(s, 4, 20) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 20) == 1.0
    assert lr_factor(12, 4, 20) == pytest.approx(0.5)
    assert lr_factor(20, 4, 20) == pytest.approx(0.0, abs=1e-12)
    vals = [lr_factor(s, 4, 20) for s in range(4, 21)]
    assert all(a >= b for a, b in zip(vals, vals[1:], strict=False))


# --------------------------------------------------------------------------- resume


RESUME_SCRIPT = """
import json, sys
import open_clip
import pyarrow.parquet as pq
open_clip.add_model_config(sys.argv[1])
from tv100.tasks.train.finetune import TrainConfig, run_recipe
args = json.loads(sys.argv[2])
splits = pq.read_table(args["splits"])
paths = json.loads(open(args["paths"]).read())
run_recipe(args["root"], splits, args["names"], args["spec"], TrainConfig(**args["config"]),
           paths=paths)
"""


def test_resume_after_kill_matches_uninterrupted_run(arch, results, tmp_path):
    import torch

    from tv100.tasks.train.finetune import TrainConfig, run_recipe

    reference = results["finetune"]
    root, splits, paths = build_dataset(tmp_path / "data")
    pq.write_table(splits, tmp_path / "splits.parquet")
    (tmp_path / "paths.json").write_text(json.dumps(paths))
    args = {"root": root, "splits": str(tmp_path / "splits.parquet"),
            "paths": str(tmp_path / "paths.json"), "names": NAMES, "spec": SPEC,
            "config": {"recipe": "finetune", **FT}}
    ckpt = Path(root) / "runs" / reference.run_id / "ckpt-last.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(RESUME_SCRIPT), arch, json.dumps(args)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not ckpt.exists():
            if proc.poll() is not None:
                pytest.fail(f"training exited early ({proc.returncode}): "
                            f"{proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint after 240 s")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    state = torch.load(ckpt, weights_only=True)
    done = state["epoch"]
    assert 1 <= done < FT["epochs"], "killed too late: the run had finished"
    assert {"visual", "head", "optimizer", "scheduler", "scaler", "rng", "step", "history",
            "sampler"} <= set(state)
    assert {"torch", "numpy", "python"} <= set(state["rng"])
    assert state["step"] == done * math.ceil(90 / FT["batch_size"])
    assert not (ckpt.parent / "result.json").exists()

    resumed = run_recipe(root, splits, NAMES, SPEC, TrainConfig(recipe="finetune", **FT),
                         paths=paths)
    assert resumed.run_id == reference.run_id
    assert resumed.resumed_from_epoch == done
    assert resumed.history == reference.history
    for split in ("val", "test"):
        assert np.array_equal(resumed.scores_by_split[split][0],
                              reference.scores_by_split[split][0])
        assert resumed.metrics_by_split[split] == reference.metrics_by_split[split]


# --------------------------------------------------------------------------- ids, tables


def test_run_id_distinct_per_knob_and_stable_otherwise(dataset):
    from tv100.tasks.train.finetune import TrainConfig, run_id, splits_digest

    _, splits, _ = dataset
    digest = splits_digest(splits)

    def rid(cfg, key="m@x", dig=digest):
        return run_id(key, cfg.recipe, cfg.knobs(), dig, cfg.seed, NAMES)

    base = TrainConfig(recipe="finetune", **FT)
    ids = {
        rid(base),
        rid(replace(base, lr=1e-3)),
        rid(replace(base, epochs=5)),
        rid(replace(base, sampling="sqrt")),
        rid(replace(base, logit_adjust_tau=0.5)),
        rid(replace(base, seed=1)),
        rid(replace(base, recipe="wiseft")),
        rid(base, key="m@y"),
        rid(base, dig=splits_digest(splits.slice(1))),
    }
    assert len(ids) == 9
    # Threads and workers do not change the numbers, so not the id either.
    assert rid(replace(base, threads=2, workers=1)) == rid(base)
    # Row order of the split table does not matter; zero-shot ignores training knobs.
    assert splits_digest(splits.take(np.arange(splits.num_rows)[::-1])) == digest
    zs = TrainConfig(recipe="zeroshot")
    assert rid(zs) == rid(replace(zs, lr=0.5, epochs=3))
    assert rid(zs) != rid(replace(zs, templates=("a still from {}",)))


def test_metrics_tables_and_append(results, tmp_path):
    from tv100.storage.root import DataRoot
    from tv100.storage.tables import read_table
    from tv100.tasks.train.finetune import CLASS_METRICS, METRICS, append_metrics

    when = datetime(2024, 5, 1, tzinfo=UTC)
    ft = results["finetune"]
    metrics, per_class = ft.tables(created_at=when)
    assert metrics.schema.equals(METRICS) and per_class.schema.equals(CLASS_METRICS)
    rows = metrics.to_pylist()
    assert {r["split"] for r in rows} == {"val", "test"}
    test = {r["metric"]: r["value"] for r in rows if r["split"] == "test"}
    assert test["top1"] == top1(ft)
    assert set(test) == {"top1", "top5", "balanced_accuracy", "few"}  # 15 train: few
    assert all(json.loads(r["hyperparameters"]) == ft.hyperparameters for r in rows)
    assert per_class.num_rows == 2 * len(NAMES)
    first = per_class.to_pylist()[0]
    assert first["series_id"] == f"tt{9000 + first['class_index']}"
    assert (first["train_count"], first["tier"]) == (15, "few")
    assert first["n"] == 5

    root = DataRoot(str(tmp_path / "data")).ensure()
    digests = append_metrics(root, metrics, per_class)
    lin = results["linear"].tables(created_at=when)
    append_metrics(root, *lin)
    table = read_table(root, "metrics")
    assert set(table.column("run_id").to_pylist()) == {ft.run_id, results["linear"].run_id}
    assert table.num_rows == metrics.num_rows + lin[0].num_rows
    assert read_table(root, "class_metrics").num_rows == 4 * len(NAMES)
    # Appending a run again replaces its rows (keeping their timestamp): nothing changes.
    later = ft.tables(created_at=datetime(2025, 1, 1, tzinfo=UTC))
    again = append_metrics(root, *later)
    assert read_table(root, "metrics").num_rows == table.num_rows
    append_metrics(root, *lin)
    assert append_metrics(root, *later) == again
    assert digests.keys() == again.keys()


def test_config_validation_and_inputs(arch, dataset):
    from tv100.tasks.train.finetune import TrainConfig, run_recipe

    for kwargs, field in [
        ({"recipe": "mixup"}, "recipe"),
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"sampling": "oversample"}, "sampling"),
        ({"wiseft_alphas": (0.5, 1.5)}, "wiseft_alphas"),
        ({"probe_weight_decays": ()}, "probe_weight_decays"),
        ({"hflip": 2.0}, "hflip"),
        ({"threads": 0}, "threads"),
        ({"workers": -1}, "workers"),
    ]:
        with pytest.raises(ValueError, match=f"TrainConfig.{field}="):
            TrainConfig(**kwargs)
    with pytest.raises(ValueError, match="placeholder"):
        TrainConfig(templates=("no placeholder",))
    root, splits, paths = dataset
    with pytest.raises(ValueError, match="no image paths"):
        run_recipe(root, splits, NAMES, SPEC, TrainConfig(recipe="zeroshot"))
    with pytest.raises(ValueError, match="class_index out of range"):
        run_recipe(root, splits, NAMES[:3], SPEC, TrainConfig(recipe="zeroshot"), paths=paths)
    only_test = splits.filter(pc.equal(splits.column("split"), "test"))
    with pytest.raises(ValueError, match="train split is empty"):
        run_recipe(root, only_test, NAMES, SPEC, TrainConfig(recipe="linear"), paths=paths)
