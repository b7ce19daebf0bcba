"""The train stage: split the selected series, check the splits for leakage, export them,
and score CLIP recipes (zero-shot, linear probe, fine-tune, WiSE-FT) on them."""

from __future__ import annotations

from prefect import flow

from tv100.storage.lock import hold_root
from tv100.storage.root import resolve_root
from tv100.tasks.buildconfig import train_config
from tv100.tasks.prerequisites import check_root, require_inputs
from tv100.tasks.rank.recorded import ranked_models
from tv100.tasks.tables import write_tables_task
from tv100.tasks.train.config import EXPORT_SPLITS, LEAKAGE, SPLIT, TRAIN, TrainResult
from tv100.tasks.train.export import export_splits_task
from tv100.tasks.train.inputs import (
    leakage_candidates_task,
    rank_embeddings_task,
    selected_items_task,
)
from tv100.tasks.train.recipes import run_recipe_task
from tv100.tasks.train.results import append_metrics_task, publish_metrics_task, train_result
from tv100.tasks.train.splits import split_tables_task, splits_task


@flow(name="train")
def train_flow(
    data: str | None = None,
    model: str | None = None,
    recipes: list[str] | None = None,
    test_ratio: float = SPLIT.test_ratio,
    val_ratio: float = SPLIT.val_ratio,
    split_seed: int = SPLIT.seed,
    phash_threshold: int = LEAKAGE.phash_threshold,
    clip_threshold: float | None = None,
    leakage_action: str = LEAKAGE.leakage_action,
    export: bool = EXPORT_SPLITS,
    epochs: int = TRAIN.epochs,
    batch_size: int = TRAIN.batch_size,
    lr: float = TRAIN.lr,
    weight_decay: float = TRAIN.weight_decay,
    warmup_steps: int = TRAIN.warmup_steps,
    sampling: str = TRAIN.sampling,
    logit_adjust_tau: float = TRAIN.logit_adjust_tau,
    seed: int = TRAIN.seed,
    workers: int = TRAIN.workers,
    device: str | None = None,
    wait: bool = True,
) -> TrainResult:
    """Split the kept series, export the splits, and run each recipe on them.

    Args:
        data: data root holding `classes` (rank stage) and the cleaned images (default
            ``$TV100_DATA``, else ``./data``).
        model: the CLIP (``ARCH@WEIGHTS`` or ``local-dir:FOLDER``); default: the first
            of the ones the data root was last ranked with (table `rank_models`).
        recipes: any of ``zeroshot, linear, finetune, wiseft`` (default `DEFAULT_RECIPES`).
        test_ratio: share of each series held out for test (each keeps at least one).
        val_ratio: share carved from the rest for validation (sweeps, model selection).
        split_seed: which images land in which split.
        phash_threshold: pHash distance that counts a test image as leaking from train.
        clip_threshold: CLIP cosine similarity (rank stage's embeddings, first model) above
            which a held-out image leaks too (flips, crops pHash misses; 0.95 suits real
            CLIPs); None (default): pHash/dHash only. Check first that distinct images of
            one series stay below it: a small model (the sandbox's) puts them above 0.95.
        leakage_action: ``move_to_train`` or ``drop`` for a leaking held-out image.
        export: write ``<data>/export/{train,val,test}/<class>/`` and open_clip CSVs.
        epochs, batch_size, lr, weight_decay, warmup_steps: fine-tuning knobs.
        sampling: ``uniform``, ``balanced`` or ``sqrt`` (long-tail option).
        logit_adjust_tau: τ of the logit-adjusted loss (0: off).
        seed: seeds initialisation, data order and augmentation.
        workers: DataLoader processes (keep threads + workers within the free cores).
        device: None (CUDA when present) or e.g. ``cpu``.
        wait: if another run holds the data root, wait for it (False: refuse at once).
    """
    root = check_root(resolve_root(data))
    require_inputs(root, "train")  # before the root is created
    config = train_config(
        model=model or ranked_models(root, "train", None)[0], recipes=recipes,
        test_ratio=test_ratio, val_ratio=val_ratio, split_seed=split_seed,
        phash_threshold=phash_threshold, clip_threshold=clip_threshold,
        leakage_action=leakage_action, export=export, epochs=epochs, batch_size=batch_size,
        lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, sampling=sampling,
        logit_adjust_tau=logit_adjust_tau, seed=seed, workers=workers, device=device,
    )
    with hold_root(root, wait=wait, what="train"):  # one run per data root
        root.ensure()
        selected = selected_items_task(root)
        candidates = leakage_candidates_task(root)
        vectors = rank_embeddings_task(root, selected.image_ids) if config.clip_leakage else None
        splits, cross = splits_task(selected.labelled, candidates, config.split, config.leakage,
                                    vectors)
        tables = write_tables_task(root, split_tables_task(root, splits, cross))
        exported = (export_splits_task(root, splits, selected.items, list(selected.names))
                    if config.export else None)
        runs = []
        for cfg in config.recipe_configs():
            result = run_recipe_task(root, splits, list(selected.names), config.model, cfg,
                                     selected.paths, config.device)
            tables.update(append_metrics_task(root, result))
            runs.append(result)
        publish_metrics_task(root)
        return train_result(selected.names, splits, cross, exported, runs, tables)
