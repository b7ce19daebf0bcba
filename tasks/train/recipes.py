"""Recipes that turn a CLIP into a TV-series classifier: `run_recipe` and its task.

Four recipes, the paper's figure (d) plus the usual robust fine-tuning baseline:

- ``zeroshot``: the text tower's class weights (`tv100.tasks.rank.clip.class_weights`,
  prompt ``"a photo of the TV series {}"``) score L2-normalised image features.
- ``linear``: a logistic-regression probe on the frozen features
  (`tv100.tasks.train.probe`), its L2 penalty swept on val.
- ``finetune``: image tower and head trained end to end (`tv100.tasks.train.finetune`).
- ``wiseft``: the weight-space interpolation of zero-shot and fine-tuned model
  (`tv100.tasks.train.wiseft`), reusing the fine-tune run with the same knobs.

Long-tail knobs of the trained recipes (`TrainConfig`): ``sampling``, ``logit_adjust_tau``
and ``loss`` change training; ``posthoc_tau`` adjusts the scores of the plain model;
``crt`` re-trains the classifier of the plain model on its frozen representation with
class-balanced weights. A fine-tune run is shared by every recipe whose training knobs
match (`TrainConfig.training_config`).

A run's outcome is a `tv100.tasks.train.results.RecipeResult`, also written to
``runs/<run_id>/result.json``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tv100.storage.root import DataRoot
from tv100.tasks.rank.clip import Clip
from tv100.tasks.rank.models import ModelSpec
from tv100.tasks.train.config import EVAL_SPLITS, TrainConfig
from tv100.tasks.train.data import SplitImages, split_images
from tv100.tasks.train.finetune import (
    deterministic,
    finetune,
    predict,
    retrain_classifier,
)
from tv100.tasks.train.metrics import classification_metrics
from tv100.tasks.train.probe import frozen_features, refit_probe, sweep_probe
from tv100.tasks.train.results import (
    RecipeResult,
    run_id,
    splits_digest,
    stored_run,
    write_result,
)
from tv100.tasks.train.sampling import (
    class_balanced_weights,
    logit_offsets,
    posthoc_adjust,
    sampling_probabilities,
    train_counts_of,
)
from tv100.tasks.train.wiseft import wiseft


@dataclass(frozen=True)
class RecipeInputs:
    """What every recipe reads, checked once.

    Attributes:
        names: class names in class-index order.
        train: the training images.
        evals: the splits scored (val, test; those with images).
        train_counts: training images per class index.
        class_series: series id per class index.
        digest: `tv100.tasks.train.results.splits_digest` of the split table.
    """

    names: list[str]
    train: SplitImages
    evals: dict[str, SplitImages]
    train_counts: dict[int, int]
    class_series: dict[int, str]
    digest: str


def recipe_inputs(
    splits: pa.Table,
    classnames: Sequence[str],
    paths: Mapping[str, str] | pa.Table | None,
    recipe: str,
) -> RecipeInputs:
    """The images, labels and counts of each split.

    Raises:
        ValueError: inconsistent inputs (missing paths, class indices out of range) or no
            training images for a recipe that trains.
    """
    names = list(classnames)
    items = split_images(splits, paths, len(names))
    train = items["train"]
    if recipe != "zeroshot" and train.labels.size == 0:
        raise ValueError(f"recipe {recipe!r} needs training images; the train split is empty")
    class_series = {int(c): str(s) for c, s in zip(splits.column("class_index").to_pylist(),
                                                   splits.column("series_id").to_pylist(),
                                                   strict=True)}
    return RecipeInputs(
        names=names,
        train=train,
        evals={s: items[s] for s in EVAL_SPLITS if items[s].labels.size},
        train_counts=train_counts_of(splits),
        class_series=class_series,
        digest=splits_digest(splits),
    )


def _features(
    clip: Clip, root: DataRoot, wanted: Mapping[str, SplitImages], cfg: TrainConfig
) -> dict[str, np.ndarray]:
    """Frozen features of every split in `wanted`, embedded in one pass."""
    flat = frozen_features(
        clip, root, [i for it in wanted.values() for i in it.image_ids],
        [p for it in wanted.values() for p in it.relpaths], cfg,
    )
    feats, start = {}, 0
    for s, it in wanted.items():
        feats[s] = flat[start : start + len(it.image_ids)]
        start += len(it.image_ids)
    return feats


def _zeroshot(
    clip: Clip, root: DataRoot, inputs: RecipeInputs, cfg: TrainConfig, zs: np.ndarray,
    scale: float,
) -> dict[str, np.ndarray]:
    feats = _features(clip, root, inputs.evals, cfg)
    return {s: scale * feats[s] @ zs.T for s in inputs.evals}


def class_weights_of(inputs: RecipeInputs, cfg: TrainConfig) -> np.ndarray | None:
    """Per-class loss weights of `cfg.loss` (None: plain cross-entropy)."""
    if cfg.loss != "class_balanced":
        return None
    return class_balanced_weights(inputs.train_counts, len(inputs.names), cfg.cb_beta)


def _linear(
    clip: Clip, root: DataRoot, inputs: RecipeInputs, cfg: TrainConfig, offsets: np.ndarray,
    hyper: dict[str, Any],
) -> dict[str, np.ndarray]:
    train = inputs.train
    feats = _features(clip, root, {**inputs.evals, "train": train}, cfg)
    weights = sampling_probabilities(train.labels, cfg.sampling) * len(train.labels)
    cw = class_weights_of(inputs, cfg)
    if cw is not None:
        weights = weights * cw[train.labels]
    val = inputs.evals.get("val")
    evals = {s: feats[s] for s in inputs.evals}
    n = len(inputs.names)
    fit = sweep_probe(
        feats["train"], train.labels, evals, None if val is None else val.labels, n, offsets,
        weights, cfg, str(clip.device),
    )
    if fit.val_top1:
        hyper["val_top1_by_weight_decay"] = fit.val_top1
    hyper["weight_decay"] = fit.weight_decay
    if cfg.crt:  # stage 2: the plain probe re-fitted with class-balanced weights
        balanced = sampling_probabilities(train.labels, "balanced") * len(train.labels)
        fit = refit_probe(fit, feats["train"], train.labels, evals, n, balanced, cfg,
                          str(clip.device))
    return fit.scores


@dataclass(frozen=True)
class _Tuned:
    scores: dict[str, np.ndarray]
    history: list[dict[str, float]]
    resumed_from_epoch: int


def _tuned(
    clip: Clip, root: DataRoot, inputs: RecipeInputs, cfg: TrainConfig, zs: np.ndarray,
    scale: float, offsets: np.ndarray, hyper: dict[str, Any],
) -> _Tuned:
    """``finetune`` and ``wiseft``: both train (or reuse) the fine-tune run of these knobs."""
    tcfg = cfg.training_config()
    train_rid = run_id(clip.key, "finetune", tcfg.knobs(), inputs.digest, cfg.seed,
                       inputs.names)
    trained = finetune(clip, root, inputs.train.relpaths, inputs.train.labels, zs, offsets,
                       cfg, train_rid, class_weights_of(inputs, cfg))
    if cfg.recipe == "finetune" and (cfg.crt or cfg.posthoc_tau > 0):
        hyper["finetune_run_id"] = train_rid  # the training reused
    if cfg.recipe == "finetune" and cfg.crt:
        fit = retrain_classifier(clip, trained.visual, root, inputs.train, inputs.evals,
                                 len(inputs.names), cfg).fit
        if fit.val_top1:
            hyper["val_top1_by_weight_decay"] = fit.val_top1
        hyper["weight_decay"] = fit.weight_decay
        scores = fit.scores
    elif cfg.recipe == "finetune":
        scores = {s: predict(clip, trained.visual, trained.head, root, it.relpaths, cfg)
                  for s, it in inputs.evals.items()}
    else:
        hyper["finetune_run_id"] = train_rid
        wise = wiseft(clip, root, trained, zs, scale, inputs.evals, cfg)
        if wise.val_top1:
            hyper["val_top1_by_alpha"] = wise.val_top1
        hyper["alpha"] = wise.alpha
        scores = wise.scores
    return _Tuned(scores, trained.history, trained.resumed_from_epoch)


def run_recipe(
    root: DataRoot,
    splits: pa.Table,
    classnames: Sequence[str],
    model_spec: ModelSpec | str,
    config: TrainConfig | None = None,
    paths: Mapping[str, str] | pa.Table | None = None,
    device: str | None = None,
) -> RecipeResult:
    """Run one recipe and score val and test.

    Args:
        root: the data root (images are read from it, runs written under ``runs/``).
        splits: the `splits` table (image_id, series_id, class_index, split), optionally
            with a ``path`` column.
        classnames: the class names (series titles) in class_index order.
        model_spec: the CLIP (`tv100.tasks.rank.models.ModelSpec` or its text form).
        config: the recipe and its knobs.
        paths: image_id → image path relative to the root (a mapping, or a table with
            image_id and path such as `images`); None when `splits` has a path column.
        device: None/``"auto"`` (CUDA when available) or e.g. ``"cpu"``.

    Returns:
        A `RecipeResult`; ``result.tables()`` gives its `metrics`/`class_metrics` rows.

    Raises:
        ValueError: inconsistent inputs (missing paths, class indices out of range, no
            training images for a trained recipe).
    """
    from tv100.tasks.rank.clip import class_weights, load_clip
    from tv100.tasks.rank.models import model_key

    cfg = config or TrainConfig()
    started = time.perf_counter()
    inputs = recipe_inputs(splits, classnames, paths, cfg.recipe)
    key = model_key(model_spec)
    rid = run_id(key, cfg.recipe, cfg.knobs(), inputs.digest, cfg.seed, inputs.names)
    # A finished run of the same id (same model, recipe, knobs, splits, class names, seed)
    # is reused: a warm re-run neither builds the model nor trains nor scores again.
    shapes = {s: (len(it.image_ids), len(inputs.names)) for s, it in inputs.evals.items()}
    stored = stored_run(root, rid, shapes)
    if stored is not None:
        return _result(rid, key, cfg, inputs, stored.hyperparameters, stored.scores,
                       stored.history, len(stored.history), started, write=None)
    clip = load_clip(model_spec, device)
    hyper: dict[str, Any] = cfg.knobs()
    offsets = logit_offsets(inputs.train_counts, len(inputs.names), cfg.logit_adjust_tau)
    history: list[dict[str, float]] = []
    resumed = 0
    with deterministic(cfg.seed, cfg.threads):
        # The text tower's class weights: the zero-shot classifier and the fine-tune head's
        # initialisation (the linear probe needs none).
        zs = np.zeros((0, 0), np.float32)
        if cfg.recipe != "linear":
            zs = class_weights(clip, inputs.names, cfg.templates)
        scale = float(clip.model.logit_scale.exp())
        if cfg.recipe == "zeroshot":
            scores = _zeroshot(clip, root, inputs, cfg, zs, scale)
        elif cfg.recipe == "linear":
            scores = _linear(clip, root, inputs, cfg, offsets, hyper)
        else:
            tuned = _tuned(clip, root, inputs, cfg, zs, scale, offsets, hyper)
            scores, history, resumed = tuned.scores, tuned.history, tuned.resumed_from_epoch
    if cfg.recipe != "zeroshot" and cfg.posthoc_tau > 0:
        scores = {s: posthoc_adjust(v, inputs.train_counts, cfg.posthoc_tau)
                  for s, v in scores.items()}

    return _result(rid, clip.key, cfg, inputs, hyper, scores, history, resumed, started,
                   write=root)


def _result(
    rid: str,
    model_key: str,
    cfg: TrainConfig,
    inputs: RecipeInputs,
    hyper: dict[str, Any],
    scores: Mapping[str, np.ndarray],
    history: list[dict[str, float]],
    resumed: int,
    started: float,
    write: DataRoot | None,
) -> RecipeResult:
    """The `RecipeResult` of scores (a run's own, or a stored run's), written to `write`
    (``runs/<run_id>/``) unless None."""
    scores_by_split = {
        s: (np.asarray(scores[s], dtype=np.float32), it.labels, it.image_ids)
        for s, it in inputs.evals.items()
    }
    result = RecipeResult(
        run_id=rid,
        model_key=model_key,
        recipe=cfg.recipe,
        hyperparameters=hyper,
        scores_by_split=scores_by_split,
        metrics_by_split={s: classification_metrics(v[0], v[1], inputs.train_counts)
                          for s, v in scores_by_split.items()},
        train_counts=inputs.train_counts,
        class_series=inputs.class_series,
        history=history,
        resumed_from_epoch=resumed,
        seconds=time.perf_counter() - started,
    )
    if write is not None:
        write_result(write, result)
    return result


@task(name="run-recipe", cache_policy=NO_CACHE)
def run_recipe_task(
    root: DataRoot,
    splits: pa.Table,
    classnames: list[str],
    model: str,
    config: TrainConfig,
    paths: dict[str, str] | pa.Table | None = None,
    device: str | None = None,
) -> RecipeResult:
    """`run_recipe` (uncached: training resumes by itself), logging its test top-1."""
    result = run_recipe(root, splits, classnames, model, config, paths, device)
    get_run_logger().info("%s on %s: test %s", config.recipe, result.model_key,
                          result.metric("test", "top1"))
    return result
