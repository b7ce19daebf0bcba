"""Experiments on a trained data root: data-efficiency curves (each recipe on 1, 2, 4, ...,
all training images per class) and long-tail methods, each with its figure in ``report/``."""

from __future__ import annotations

from dataclasses import replace

from prefect import flow

from tv100.storage.lock import hold_root
from tv100.storage.root import resolve_root
from tv100.tasks.experiments.curves import (
    CURVES_INPUTS,
    CurvesResult,
    curves_config,
    experiment_inputs_task,
    run_curves_task,
)
from tv100.tasks.experiments.curves_figure import curves_figure_task, write_report_png_task
from tv100.tasks.experiments.longtail import LongtailConfig, LongtailResult, run_longtail_task
from tv100.tasks.experiments.longtail_figure import longtail_png
from tv100.tasks.prerequisites import check_root, require_tables
from tv100.tasks.rank.recorded import ranked_models
from tv100.tasks.report.config import EXPERIMENT_FIGURES
from tv100.tasks.train.config import TRAIN

#: The long-tail figure's file under the report folder.
LONGTAIL_FIGURE = EXPERIMENT_FIGURES["longtail"]
#: The long-tail experiment's defaults.
LONGTAIL = LongtailConfig()


@flow(name="experiment-curves")
def curves_flow(
    data: str | None = None,
    model: str | None = None,
    recipes: list[str] | None = None,
    shots: list[int] | None = None,
    seeds: list[int] | None = None,
    epochs: int = TRAIN.epochs,
    batch_size: int = TRAIN.batch_size,
    lr: float = TRAIN.lr,
    weight_decay: float = TRAIN.weight_decay,
    warmup_steps: int = TRAIN.warmup_steps,
    max_warmup_share: float | None = None,
    sampling: str = TRAIN.sampling,
    logit_adjust_tau: float = TRAIN.logit_adjust_tau,
    threads: int | None = None,
    workers: int = TRAIN.workers,
    device: str | None = None,
    wait: bool = True,
) -> CurvesResult:
    """Data-efficiency curves: each recipe trained on at most k images per class.

    Args:
        data: a trained data root (its `splits`, `classes` and `images`; default
            ``$TV100_DATA``, else ``./data``).
        model: the CLIP (``ARCH@WEIGHTS`` or ``local-dir:FOLDER``); default: the first of
            the ones the data root was last ranked with (table `rank_models`).
        recipes: any of ``zeroshot, linear, finetune, wiseft`` (default linear, finetune).
        shots: training images per class of each point, 0 for all (default 1, 2, 4, 8,
            16, 32 and all).
        seeds: one run of each point per seed (default 0, 1, 2).
        epochs, batch_size, lr, weight_decay, warmup_steps: fine-tuning knobs.
        max_warmup_share: a fine-tuned point warms up for at most this share of its steps
            (default `tv100.tasks.experiments.curves.CurvesConfig.max_warmup_share`).
        sampling: ``uniform``, ``balanced`` or ``sqrt``.
        logit_adjust_tau: τ of the logit-adjusted loss (0: off).
        threads: torch threads (None: ``min(2, cpu_count)``).
        workers: DataLoader processes.
        device: None (CUDA when present) or e.g. ``cpu``.
        wait: if another run holds the data root, wait for it (False: refuse at once).

    Returns:
        The `CurvesResult`, its `figure` the path of ``report/curves.png``.
    """
    root = check_root(resolve_root(data))
    require_tables(root, "experiment curves", CURVES_INPUTS)  # before the root is created
    config = curves_config(
        recipes=recipes, shots=shots, seeds=seeds, max_warmup_share=max_warmup_share,
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
        warmup_steps=warmup_steps, sampling=sampling, logit_adjust_tau=logit_adjust_tau,
        threads=threads, workers=workers,
    )
    spec = model or ranked_models(root, "experiment curves", None)[0]
    with hold_root(root, wait=wait, what="experiment curves"):  # one run per data root
        root.ensure()
        inputs = experiment_inputs_task(root)
        result = run_curves_task(root, spec, config, device, inputs)
        figure = curves_figure_task(root, result.model_key)
        return replace(result, figure=figure)


@flow(name="experiment-longtail")
def longtail_flow(
    data: str | None = None,
    model: str | None = None,
    recipe: str = LONGTAIL.recipe,
    methods: list[str] | None = None,
    seeds: list[int] | None = None,
    threads: int | None = None,
    device: str | None = None,
    wait: bool = True,
) -> LongtailResult:
    """Long-tail methods compared on the train stage's split, drawn in ``report/longtail.png``.

    Args:
        data: a trained data root (default ``$TV100_DATA``, else ``./data``).
        model: the CLIP; default: the first the data root was last ranked with.
        recipe: ``linear`` or ``finetune``.
        methods: which of `LONGTAIL_METHODS` (default all).
        seeds: one run of each method per seed (default `LongtailConfig`'s).
        threads: torch threads (None: ``min(2, cpu_count)``).
        device: None (CUDA when present) or e.g. ``cpu``.
        wait: if another run holds the data root, wait for it (False: refuse at once).

    Returns:
        The `LongtailResult` (its runs are rows of `metrics` and `class_metrics`).
    """
    root = check_root(resolve_root(data))
    require_tables(root, "experiment longtail", CURVES_INPUTS)  # before the root is created
    config = LongtailConfig(
        recipe=recipe,
        methods=LONGTAIL.methods if methods is None else tuple(methods),
        seeds=LONGTAIL.seeds if seeds is None else tuple(seeds),
        train=replace(LONGTAIL.train, threads=threads),
    )
    spec = model or ranked_models(root, "experiment longtail", None)[0]
    with hold_root(root, wait=wait, what="experiment longtail"):  # one run per data root
        root.ensure()
        result = run_longtail_task(root, spec, config, device)
        write_report_png_task(root, LONGTAIL_FIGURE, longtail_png(result.rows()))
        return result
