"""The train stage: split the selected series, check the splits for leakage, export them,
and score CLIP recipes (zero-shot, linear probe, fine-tune, WiSE-FT) on them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import flow, get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from tv100.storage.root import resolve_root
from tv100.storage.schemas import DUPLICATES
from tv100.storage.tables import read_table, table_exists
from tv100.tasks.clean.cleaned import cleaned_images, duplicate_candidates
from tv100.tasks.clean.neardup import NearDupConfig
from tv100.tasks.rank.embed import load_embeddings
from tv100.tasks.report.artifacts import publish_metrics_artifact
from tv100.tasks.tables import write_tables_task
from tv100.tasks.train.finetune import (
    METRICS_TABLE,
    RECIPES,
    TrainConfig,
    append_metrics_task,
    run_recipe_task,
)
from tv100.tasks.train.splits import SplitConfig, check_leakage, export_imagefolder, make_splits

#: Recipes the build runs by default: the paper's figure (d) plus the cheap probe.
DEFAULT_RECIPES = ("zeroshot", "linear", "finetune")
#: Where the ImageFolder/CSV export goes, inside the data root.
EXPORT_DIR = "export"
SPLIT_METRICS = ("top1", "top5", "balanced_accuracy", "many", "medium", "few")


def selected_items(data: str) -> tuple[pa.Table, list[str]]:
    """Cleaned images of the kept series with their class index, and the class names.

    Returns:
        ``(items, classnames)``: items has image_id, series_id, class_index, path (sorted by
        image_id); classnames[i] is the title of class i.

    Raises:
        ValueError: no `classes` table (run the rank stage first) or no kept series.
    """
    root = resolve_root(data)
    if not table_exists(root, "classes"):
        raise ValueError(
            f"no `classes` table under {data!r}; expected the rank stage to have run "
            "(tv100 rank)"
        )
    classes = read_table(root, "classes").filter(pc.field("kept"))
    if classes.num_rows == 0:
        raise ValueError(f"the `classes` table under {data!r} keeps no series; nothing to train")
    kept = sorted(
        zip(classes.column("class_index").to_pylist(), classes.column("series_id").to_pylist(),
            classes.column("title").to_pylist(), strict=True)
    )
    index = {sid: i for i, sid, _ in kept}
    names = [title for _, _, title in kept]
    images = cleaned_images(root)
    images = images.filter(pc.is_in(images.column("series_id"), pa.array(list(index))))
    items = images.select(["image_id", "series_id", "path"])
    items = items.append_column(
        "class_index",
        pa.array([index[s] for s in items.column("series_id").to_pylist()], pa.int32()),
    )
    return items, names


def merge_cross_split(duplicates: pa.Table | None, cross_split: pa.Table) -> pa.Table:
    """The clean stage's duplicate rows followed by this split's ``cross_split`` rows.

    Earlier ``cross_split`` rows (of an earlier split) are replaced, so writing the result
    again with the same split changes nothing.
    """
    rows = duplicates.cast(DUPLICATES) if duplicates is not None else DUPLICATES.empty_table()
    rows = rows.filter(pc.not_equal(rows.column("scope"), "cross_split"))
    return pa.concat_tables([rows, cross_split.cast(DUPLICATES).sort_by("image_id")])


@task(name="make-splits", cache_policy=INPUTS + TASK_SOURCE)
def splits_task(
    items: pa.Table,
    candidates: pa.Table,
    config: SplitConfig,
    neardup: NearDupConfig,
    embeddings: tuple[list[str], np.ndarray] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Stratified splits, then the leakage fix-up: ``(splits, cross_split duplicate rows)``."""
    return check_leakage(make_splits(items, config), candidates, neardup, embeddings)


def rank_embeddings(data: str, image_ids: list[str]) -> tuple[list[str], np.ndarray] | None:
    """The rank stage's vectors of `image_ids` (its first model), for the CLIP leakage
    signal; None when the rank stage left none."""
    root = resolve_root(data)
    if not table_exists(root, "zeroshot"):
        return None
    keys = sorted(set(read_table(root, "zeroshot").column("model_key").to_pylist()))
    if not keys:
        return None
    ids, vectors = load_embeddings(root, keys[0], image_ids)
    return (ids, vectors) if ids else None


def _metric(result: Any, split: str, name: str) -> float | None:
    value = result.metrics_by_split.get(split, {}).get(name)
    return None if value is None else float(value)


@flow(name="train")
def train_flow(
    data: str = "./data",
    model: str | None = None,
    recipes: list[str] | None = None,
    test_ratio: float = 0.2,
    val_ratio: float = 0.1,
    split_seed: int = 0,
    phash_threshold: int = 10,
    clip_threshold: float | None = None,
    leakage_action: str = "move_to_train",
    export: bool = True,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-5,
    weight_decay: float = 0.1,
    warmup_steps: int = 500,
    sampling: str = "uniform",
    logit_adjust_tau: float = 0.0,
    seed: int = 0,
    workers: int = 0,
    device: str | None = None,
) -> dict[str, Any]:
    """Split the kept series, export the splits, and run each recipe on them.

    Args:
        data: data root holding `classes` (rank stage) and the cleaned images.
        model: the CLIP (``ARCH@WEIGHTS`` or ``local-dir:FOLDER``); default: the first
            model of the rank stage's default list.
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
    """
    from tv100.flows.rank import DEFAULT_MODELS

    logger = get_run_logger()
    spec = model or DEFAULT_MODELS[0]
    chosen = list(recipes or DEFAULT_RECIPES)
    bad = [r for r in chosen if r not in RECIPES]
    if bad:
        raise ValueError(f"recipe {bad[0]!r} is unknown; expected one of {RECIPES}")
    configs = [
        TrainConfig(
            recipe=r, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
            warmup_steps=warmup_steps, sampling=sampling, logit_adjust_tau=logit_adjust_tau,
            seed=seed, workers=workers,
        )
        for r in chosen
    ]
    split_config = SplitConfig(test_ratio=test_ratio, val_ratio=val_ratio, seed=split_seed)
    neardup = NearDupConfig(
        phash_threshold=phash_threshold, leakage_action=leakage_action,
        clip_threshold=clip_threshold or NearDupConfig().clip_threshold,
    )
    root = resolve_root(data)

    items, names = selected_items(data)
    candidates = duplicate_candidates(root, read_table(root, "hashes"))
    vectors = None
    if clip_threshold is not None:
        vectors = rank_embeddings(data, items.column("image_id").to_pylist())
    splits, cross = splits_task(items.drop_columns(["path"]), candidates, split_config, neardup,
                                vectors)
    existing = read_table(root, "duplicates") if table_exists(root, "duplicates") else None
    written = write_tables_task(
        data, {"splits": splits, "duplicates": merge_cross_split(existing, cross)}
    )
    counts = dict(zip(*pc.value_counts(splits.column("split")).flatten(), strict=True))
    logger.info(
        "splits: %s; %d held-out images near a train image (%s)",
        {str(k): int(v) for k, v in counts.items()}, cross.num_rows, leakage_action,
    )
    exported = None
    if export and root.is_local:
        titles = dict(zip(items.column("series_id").to_pylist(),
                          [names[c] for c in items.column("class_index").to_pylist()],
                          strict=True))
        exported = export_imagefolder(
            root.path(), splits, items, titles, root.path(EXPORT_DIR)
        )

    paths = items.select(["image_id", "path"])
    runs = []
    for cfg in configs:
        result = run_recipe_task(data, splits, names, spec, cfg, paths, device)
        written.update(append_metrics_task(data, result))
        logger.info("%s on %s: test %s", cfg.recipe, result.model_key,
                    result.metrics_by_split.get("test", {}).get("top1"))
        runs.append({
            "recipe": cfg.recipe,
            "run_id": result.run_id,
            "model_key": result.model_key,
            "resumed_from_epoch": result.resumed_from_epoch,
            **{f"test_{m}": _metric(result, "test", m) for m in SPLIT_METRICS},
            "val_top1": _metric(result, "val", "top1"),
        })
    publish_metrics_artifact(read_table(root, METRICS_TABLE))
    return {
        "classes": len(names),
        "chance": 1.0 / len(names),
        "splits": {str(k): int(v) for k, v in counts.items()},
        "leakage": cross.num_rows,
        "exported": exported,
        "runs": runs,
        "tables": written,
    }
