"""Every recipe on the tiny recipe dataset (run once per package by the `results` fixture):
accuracy, outputs, the choices made on val, and the inputs `run_recipe` refuses."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.compute as pc
import pytest

from tests.tasks.train.recipe_data import ARCH, FT, NAMES, PROBE, SPEC, top1


def test_recipes_accuracy_and_outputs(results, dataset):
    root, splits, _ = dataset
    zs, lin, ft = results["zeroshot"], results["linear"], results["finetune"]
    # Margins: measured over split + training seeds 0..4 (mean, sample sd), each bar at
    # least 3 sd away from the mean.
    # A random text tower knows none of the classes: chance is 1/6 (0.167, sd 0, test and val).
    assert top1(zs) <= 0.4 and top1(zs, "val") <= 0.4
    assert top1(lin) >= 0.8  # 0.987, sd 0.018
    assert top1(ft) >= 0.8  # 0.987, sd 0.030
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
        with root.fs.open(root.path(f"runs/{r.run_id}/result.json")) as f:
            summary = json.load(f)
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
    # On test: far above zero-shot, close to (or above) fine-tuning (seeds 0..4: w - zs
    # 0.807, sd 0.037; w - ft -0.013, sd 0.030).
    assert top1(w) >= top1(zs) + 0.5
    assert top1(w) >= top1(ft) - 0.15
    # WiSE-FT reused the fine-tune run instead of training again.
    assert hp["finetune_run_id"] == ft.run_id
    assert w.resumed_from_epoch == FT["epochs"] and w.history == ft.history
    assert w.run_id != ft.run_id


def test_run_recipe_refuses_inconsistent_inputs(arch, dataset):
    from tv100.tasks.train.config import TrainConfig
    from tv100.tasks.train.recipes import run_recipe

    root, splits, paths = dataset
    with pytest.raises(ValueError, match="no image paths"):
        run_recipe(root, splits, NAMES, SPEC, TrainConfig(recipe="zeroshot"))
    with pytest.raises(ValueError, match="class_index out of range"):
        run_recipe(root, splits, NAMES[:3], SPEC, TrainConfig(recipe="zeroshot"), paths=paths)
    only_test = splits.filter(pc.equal(splits.column("split"), "test"))
    with pytest.raises(ValueError, match="train split is empty"):
        run_recipe(root, only_test, NAMES, SPEC, TrainConfig(recipe="linear"), paths=paths)


def test_a_finished_run_is_reused_not_run_again(results, dataset, monkeypatch):
    # A warm re-run of a build: the same run id finds its scores and result and returns
    # them without training or scoring (nothing of the recipe runs), with equal metrics.
    import tv100.tasks.train.recipes as recipes
    from tv100.tasks.train.config import TrainConfig

    root, splits, paths = dataset
    ft = results["finetune"]
    files = {p: root.fs.cat_file(p) for p in root.fs.find(root.path(f"runs/{ft.run_id}"))}

    def refuse(*_args, **_kwargs):
        raise AssertionError("a finished run ran again")

    for name in ("_zeroshot", "_linear", "_tuned"):
        monkeypatch.setattr(recipes, name, refuse)
    # nor is the model built: its key (a hash of the weights) names the run
    monkeypatch.setattr("tv100.tasks.rank.clip.load_clip", refuse)
    again = recipes.run_recipe(root, splits, NAMES, SPEC, TrainConfig(recipe="finetune", **FT),
                               paths=paths)
    assert again.run_id == ft.run_id and again.resumed_from_epoch == FT["epochs"]
    assert again.metrics_by_split == ft.metrics_by_split and again.history == ft.history
    assert again.hyperparameters == json.loads(json.dumps(ft.hyperparameters))
    for split, (scores, labels, ids) in ft.scores_by_split.items():
        assert np.array_equal(again.scores_by_split[split][0], scores)
        assert np.array_equal(again.scores_by_split[split][1], labels)
        assert again.scores_by_split[split][2] == ids
    # nothing under the run's folder was written again
    assert {p: root.fs.cat_file(p) for p in root.fs.find(root.path(f"runs/{ft.run_id}"))} == files
