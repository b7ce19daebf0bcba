"""The long-tail knobs of the trained recipes: class-balanced weights, post-hoc logit
adjustment, the class-balanced loss, cRT and the val choice by balanced accuracy; run ids
of configs without them unchanged; and a synthetic long-tailed problem on frozen features
where the methods beat plain cross-entropy on the few-shot classes."""

from __future__ import annotations

import functools
import hashlib
import math

import numpy as np
import pytest

from tests.tasks.train.recipe_data import FT, NAMES, PROBE, SPEC, THREADS

DECAYS: tuple[float, ...] = PROBE["probe_weight_decays"]  # type: ignore[assignment]

# ---- pure functions, by hand ---------------------------------------------------------------


def test_class_balanced_weights_by_hand():
    from tv100.tasks.train.sampling import class_balanced_weights

    # β = 0.5: effective numbers (1 - 0.5^n) / 0.5 = 1, 1.5, 1.875 for n = 1, 2, 4;
    # weights 1, 2/3, 8/15 (sum 2.2), rescaled to sum to 3.
    w = class_balanced_weights({0: 1, 1: 2, 2: 4}, 3, 0.5)
    assert w == pytest.approx([3 / 2.2, 2 / 2.2, 1.6 / 2.2])
    assert w.sum() == pytest.approx(3.0)
    assert class_balanced_weights({0: 5, 1: 50}, 2, 0.0) == pytest.approx([1.0, 1.0])
    # β → 1: inverse frequency (here 1/10 : 1/40 = 4 : 1).
    assert class_balanced_weights({0: 10, 1: 40}, 2, 0.999999) == pytest.approx(
        [1.6, 0.4], rel=1e-4)
    # A class without training images counts as one image.
    assert class_balanced_weights({0: 1}, 2, 0.5) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="beta=1.0; expected 0.0 <= beta < 1.0"):
        class_balanced_weights({0: 1}, 1, 1.0)


def test_posthoc_adjust_by_hand():
    from tv100.tasks.train.sampling import posthoc_adjust

    counts = {0: 3, 1: 1}  # prior 0.75, 0.25
    got = posthoc_adjust(np.zeros((1, 2)), counts, 1.0)
    assert got.dtype == np.float32
    assert got[0] == pytest.approx([-math.log(0.75), -math.log(0.25)], rel=1e-6)
    assert posthoc_adjust(np.array([[2.0, 0.0]]), counts, 2.0)[0] == pytest.approx(
        [2 - 2 * math.log(0.75), -2 * math.log(0.25)], rel=1e-6)
    # The head class's win by 1.0 turns into the tail class's (1.287 < 1.386).
    assert posthoc_adjust(np.array([[1.0, 0.0]]), counts, 1.0).argmax() == 1
    same = np.array([[1.0, 0.0]], np.float32)
    assert np.array_equal(posthoc_adjust(same, counts, 0.0), same)


def test_choose_by_balanced_accuracy_by_hand():
    from tv100.tasks.train.probe import balanced_top1, choose

    labels = np.array([0, 0, 0, 1])
    head = np.array([[1, 0], [1, 0], [1, 0], [1, 0]], float)  # top-1 0.75, balanced 0.5
    fair = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], float)  # top-1 0.75, balanced 0.833
    tail = np.array([[0, 1], [0, 1], [1, 0], [0, 1]], float)  # top-1 0.50, balanced 0.667
    assert balanced_top1(fair, labels) == pytest.approx((2 / 3 + 1) / 2)
    assert choose([tail, fair, head], labels, "balanced_accuracy") == 1
    assert choose([tail, head], labels, "top1") == 1
    assert choose([tail, head], labels, "balanced_accuracy") == 0
    with pytest.raises(ValueError, match="metric='f1'; expected one of"):
        choose([head], labels, "f1")


# ---- the knobs: validation, run ids -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss": "focal"}, "TrainConfig.loss='focal'; expected one of ('ce', 'class_balanced')"),
        ({"cb_beta": 1.0}, "TrainConfig.cb_beta=1.0; expected 0.0 <= x < 1.0"),
        ({"cb_beta": -0.1}, "TrainConfig.cb_beta=-0.1; expected"),
        ({"posthoc_tau": -1.0}, "TrainConfig.posthoc_tau=-1.0; expected 0.0 <= x <= 10.0"),
        ({"posthoc_tau": math.nan}, "TrainConfig.posthoc_tau=nan"),
        ({"crt": 1}, "TrainConfig.crt=1; expected True or False"),
        ({"crt": True, "sampling": "balanced"}, "TrainConfig.crt=True with sampling='balanced'"),
        ({"crt": True, "logit_adjust_tau": 1.0}, "expected sampling='uniform', logit_adjust"),
        ({"crt": True, "loss": "class_balanced"}, "loss='class_balanced'; expected"),
        ({"select_by": "f1"}, "TrainConfig.select_by='f1'; expected one of"),
    ],
)
def test_new_knobs_are_validated(kwargs, message):
    from tv100.tasks.train.config import TrainConfig

    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**kwargs)


#: Run ids computed with the train stage before the long-tail knobs existed
#: (model "m@w", split digest "d"*64, class names A, B).
GOLDEN_IDS = [
    ({"recipe": "zeroshot"}, "zeroshot-2343cdfb92775ee8"),
    ({"recipe": "linear"}, "linear-e89a4e88a08da426"),
    ({"recipe": "finetune"}, "finetune-7cb4ad7be3126645"),
    ({"recipe": "wiseft"}, "wiseft-11eceb5d53e7a196"),
    ({"recipe": "finetune", "sampling": "balanced", "logit_adjust_tau": 1.0, "epochs": 3,
      "seed": 2}, "finetune-58187295b6a6fe37"),
    ({"recipe": "linear", "sampling": "sqrt", "probe_weight_decays": (1e-3,), "seed": 5},
     "linear-f8f067c83cfa6c38"),
    ({"recipe": "wiseft", "wiseft_alphas": (0.5, 1.0)}, "wiseft-3d6fba38121f83e6"),
]


@pytest.mark.parametrize(("kwargs", "expected"), GOLDEN_IDS)
def test_run_ids_of_configs_without_the_new_knobs_do_not_change(kwargs, expected):
    from tv100.tasks.train.config import TrainConfig
    from tv100.tasks.train.results import run_id

    cfg = TrainConfig(**kwargs)
    assert run_id("m@w", cfg.recipe, cfg.knobs(), "d" * 64, cfg.seed, ["A", "B"]) == expected


def test_knobs_enter_only_for_the_recipes_that_use_them():
    from tv100.tasks.train.config import TrainConfig

    cb = TrainConfig(loss="class_balanced", cb_beta=0.99)
    for r in ("linear", "finetune", "wiseft"):
        k = cb.with_recipe(r).knobs()
        assert k["loss"] == "class_balanced" and k["cb_beta"] == 0.99
    assert "loss" not in cb.with_recipe("zeroshot").knobs()
    ph = TrainConfig(posthoc_tau=1.5)
    assert ph.with_recipe("wiseft").knobs()["posthoc_tau"] == 1.5
    assert "posthoc_tau" not in ph.with_recipe("zeroshot").knobs()
    crt = TrainConfig(crt=True, select_by="balanced_accuracy")
    assert crt.with_recipe("linear").knobs()["crt"] is True
    ft = crt.with_recipe("finetune").knobs()
    assert ft["crt"] is True and ft["select_by"] == "balanced_accuracy"
    assert ft["probe_weight_decays"] == list(TrainConfig().probe_weight_decays)
    assert "crt" not in crt.with_recipe("wiseft").knobs()
    # select_by acts on the probe sweeps only: a plain fine-tune ignores it.
    assert "select_by" not in TrainConfig(select_by="balanced_accuracy").knobs()
    # Post-hoc adjustment and cRT reuse the plain fine-tune run; the loss does not.
    plain = TrainConfig().training_config().knobs()
    assert ph.training_config().knobs() == plain == crt.training_config().knobs()
    assert cb.training_config().knobs() != plain


# ---- a synthetic long-tailed problem on frozen features ---------------------------------------


def _problem(seed: int, n_classes: int = 12, dim: int = 16):
    """Unit-length features around one random direction per class; train counts from 150
    down to 4 (geometric), val a tenth of them (at least one), test 40 per class."""
    rng = np.random.default_rng([seed, 16])
    mu = rng.normal(size=(n_classes, dim))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    counts = np.round(150 * (4 / 150) ** (np.arange(n_classes) / (n_classes - 1))).astype(int)

    def draw(ns):  # type: ignore[no-untyped-def]
        y = np.repeat(np.arange(n_classes), ns)
        x = mu[y] + 2.4 * rng.normal(size=(len(y), dim)) / np.sqrt(dim)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y

    return (draw(counts), draw(np.maximum(1, counts // 10)), draw(np.full(n_classes, 40)),
            {c: int(n) for c, n in enumerate(counts)})


@functools.cache
def _method_scores(seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, dict[int, int]]:
    from tv100.tasks.train.config import TrainConfig
    from tv100.tasks.train.probe import refit_probe, sweep_probe
    from tv100.tasks.train.sampling import (
        class_balanced_weights,
        logit_offsets,
        posthoc_adjust,
        sampling_probabilities,
    )

    (x, y), (xv, yv), (xt, yt), counts = _problem(seed)
    c, n = len(counts), len(y)
    cfg = TrainConfig(recipe="linear", probe_weight_decays=(1e-4, 1e-3), probe_max_iter=100,
                      select_by="balanced_accuracy")
    evals, zero, ones = {"val": xv, "test": xt}, np.zeros(c), np.ones(n)
    balanced = sampling_probabilities(y, "balanced") * n

    def fit(offsets, weights):  # type: ignore[no-untyped-def]
        return sweep_probe(x, y, evals, yv, c, offsets, weights, cfg)

    ce = fit(zero, ones)
    scores = {
        "ce": ce.scores["test"],
        "balanced_sampling": fit(zero, balanced).scores["test"],
        "logit_adjust_posthoc": posthoc_adjust(ce.scores["test"], counts, 1.0),
        "logit_adjust_loss": fit(logit_offsets(counts, c, 1.0), ones).scores["test"],
        "class_balanced_loss": fit(zero, class_balanced_weights(counts, c, 0.999)[y]).scores[
            "test"],
        "crt": refit_probe(ce, x, y, evals, c, balanced, cfg).scores["test"],
    }
    return scores, yt, counts


def test_the_methods_beat_plain_cross_entropy_on_the_few_shot_classes():
    import torch

    from tv100.tasks.train.metrics import classification_metrics

    torch.set_num_threads(THREADS)
    gains: dict[str, list[float]] = {}
    for seed in range(4):
        scores, labels, counts = _method_scores(seed)
        few = {m: classification_metrics(s, labels, counts)["few"] for m, s in scores.items()}
        for m, f in few.items():
            gains.setdefault(m, []).append(f - few["ce"])
    # Few-shot (< 20 training images) gain over plain CE, seeds 0..5: balanced sampling
    # +0.213 (min +0.145), post hoc +0.243 (min +0.200), loss +0.237 (min +0.195),
    # class-balanced loss +0.205 (min +0.145), cRT +0.203 (min +0.130); CE's few-shot 0.0-0.11.
    for m, g in gains.items():
        if m != "ce":
            assert min(g) >= 0.05, (m, g)
    assert max(np.mean(g) for g in gains.values()) >= 0.15, gains


def test_posthoc_adjustment_moves_predictions_to_the_tail():
    from tv100.tasks.train.sampling import posthoc_adjust

    scores, labels, counts = _method_scores(0)
    tail = [c for c, n in counts.items() if n < 20]
    shares = [float(np.isin(posthoc_adjust(scores["ce"], counts, t).argmax(1), tail).mean())
              for t in (0.0, 0.5, 1.0, 2.0)]
    assert shares == sorted(shares) and shares[-1] >= shares[0] + 0.2, shares
    assert shares[2] == pytest.approx(float(np.isin(
        scores["logit_adjust_posthoc"].argmax(1), tail).mean()))


# ---- the recipes with the new knobs on the tiny recipe dataset ---------------------------------


def _sha(root, rel: str) -> str:  # type: ignore[no-untyped-def]
    with root.fs.open(root.path(rel), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_crt_finetune_retrains_only_the_head(arch, dataset):
    import copy

    import torch

    from tv100.tasks.rank.clip import load_clip
    from tv100.tasks.train.config import TrainConfig
    from tv100.tasks.train.finetune import CHECKPOINT_NAME, predict, retrain_classifier
    from tv100.tasks.train.recipes import recipe_inputs, run_recipe

    root, splits, paths = dataset
    ft_cfg = TrainConfig(recipe="finetune", **FT)
    ft = run_recipe(root, splits, NAMES, SPEC, ft_cfg, paths=paths)
    ckpt = f"runs/{ft.run_id}/{CHECKPOINT_NAME}"
    before = _sha(root, ckpt)
    crt = run_recipe(root, splits, NAMES, SPEC,
                     TrainConfig(recipe="finetune", crt=True, **FT, probe_max_iter=100,
                                 probe_weight_decays=DECAYS),
                     paths=paths)
    # Stage 1 is the plain fine-tune run, reused as it was.
    assert crt.hyperparameters["finetune_run_id"] == ft.run_id != crt.run_id
    assert crt.resumed_from_epoch == FT["epochs"] and _sha(root, ckpt) == before
    assert crt.hyperparameters["weight_decay"] in DECAYS
    assert crt.metric("test", "top1") >= 0.5  # easy classes; the CE run scores ~0.99

    # Stage 2 on the tuned tower: the tower's weights stay as they were, the new head
    # gives the recipe's scores.
    clip = load_clip(SPEC, "cpu")
    state = torch.load(root.path(ckpt), map_location="cpu", weights_only=True)
    visual = copy.deepcopy(clip.model.visual)
    visual.load_state_dict(state["visual"])
    frozen = {k: v.clone() for k, v in visual.state_dict().items()}
    inputs = recipe_inputs(splits, NAMES, paths, "finetune")
    cfg = TrainConfig(recipe="finetune", crt=True, **FT, probe_max_iter=100,
                      probe_weight_decays=DECAYS)
    out = retrain_classifier(clip, visual, root, inputs.train, inputs.evals, len(NAMES), cfg)
    assert all(torch.equal(frozen[k], v) for k, v in visual.state_dict().items())
    assert not torch.equal(out.head.weight.detach(), state["head"]["weight"])
    got = predict(clip, visual, out.head, root, inputs.evals["test"].relpaths, cfg)
    assert got == pytest.approx(out.fit.scores["test"], abs=1e-4)
    assert np.array_equal(out.fit.scores["test"].argmax(1),
                          crt.scores_by_split["test"][0].argmax(1))


def test_linear_with_the_new_knobs(arch, dataset):
    from tv100.tasks.train.config import TrainConfig
    from tv100.tasks.train.recipes import run_recipe

    root, splits, paths = dataset
    base = TrainConfig(recipe="linear", **PROBE)
    plain = run_recipe(root, splits, NAMES, SPEC, base, paths=paths)
    ph = run_recipe(root, splits, NAMES, SPEC, TrainConfig(recipe="linear", posthoc_tau=1.0,
                                                           **PROBE), paths=paths)
    # Balanced classes (15 training images each): the prior is flat and the adjustment
    # shifts every score by the same amount.
    s0, s1 = plain.scores_by_split["test"][0], ph.scores_by_split["test"][0]
    assert s1 - s0 == pytest.approx(np.full_like(s0, math.log(len(NAMES))), abs=1e-5)
    assert ph.run_id != plain.run_id and ph.hyperparameters["posthoc_tau"] == 1.0
    cb = run_recipe(root, splits, NAMES, SPEC, TrainConfig(recipe="linear",
                    loss="class_balanced", **PROBE), paths=paths)
    crt = run_recipe(root, splits, NAMES, SPEC, TrainConfig(recipe="linear", crt=True,
                                                            **PROBE), paths=paths)
    # Equal class weights: both are the plain probe again.
    for r in (cb, crt):
        assert r.metric("test", "top1") == pytest.approx(plain.metric("test", "top1"), abs=0.02)
        assert r.hyperparameters["weight_decay"] == plain.hyperparameters["weight_decay"]
