"""Re-rank old classes with a newer model: which kept series are no longer unseen?

A dataset of classes "CLIP has not seen" ages: newer models are trained on newer web data.
The rerank flow takes the kept classes (the current `classes` table, or a snapshot's with
`since`), embeds their cleaned images with the newer model(s), classifies them zero-shot
among the same candidates the rank stage chose among (every row of that `classes`
table, so the new top-1 is comparable with the old accuracy) and writes the `rerank`
table: old and new accuracy per (model, kept series) and whether the class is still
unseen (new top-1 at most the threshold; default twice chance, at least 10%:
`tv100.tasks.snapshots.snapshots.default_threshold`). See `tv100.tasks.snapshots.snapshots` for the snapshots themselves
and `tv100 diff` for comparing two builds.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from prefect import flow, get_run_logger

from tv100.flows.rank import classify_images
from tv100.storage.root import resolve_root
from tv100.tasks.clean.cleaned import cleaned_images
from tv100.tasks.snapshots.snapshots import (
    RERANK_TABLE,
    old_classes,
    rerank_table,
    summarize_rerank,
)
from tv100.tasks.tables import write_tables_task


@flow(name="rerank")
def rerank_flow(
    data: str = "./data",
    models: list[str] | None = None,
    since: str | None = None,
    threshold: float | None = None,
    templates: list[str] | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Classify the kept classes again with newer CLIPs; report those no longer unseen.

    Args:
        data: data root holding `classes` (or snapshots), `series` and the cleaned images.
        models: the newer CLIPs as ``ARCH@WEIGHTS`` or ``local-dir:FOLDER`` (required).
        since: a snapshot id (or unique prefix) whose kept classes to re-rank (default:
            the current `classes` table).
        threshold: top-1 at or below which a class is still unseen, 0..1 (default
            ``max(2 / candidates, 0.1)``).
        templates: prompt templates with one ``{}`` (default the paper's single prompt).
        batch_size: images per forward pass.
        workers: DataLoader processes (None: the cores the torch threads leave free).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.

    Returns:
        `tv100.tasks.snapshots.snapshots.summarize_rerank`'s summary plus ``snapshot_id``, ``candidates``
        and ``tables``.
    """
    logger = get_run_logger()
    specs = list(models or [])
    if not specs:
        raise ValueError("no models to re-rank with; expected one or more newer CLIPs")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold!r}; expected a top-1 accuracy in 0..1")
    root = resolve_root(data).ensure()
    classes, snapshot_id = old_classes(root, since)
    kept = classes.filter(pc.field("kept"))
    if kept.num_rows == 0:
        raise ValueError(
            f"no kept classes to re-rank under {data!r}"
            + (f" in snapshot {snapshot_id!r}" if snapshot_id else "")
            + "; expected a build whose rank stage kept some"
        )
    candidates = classes.select(["series_id", "title"]).sort_by("series_id")
    kept_ids = pa.array(sorted(kept.column("series_id").to_pylist()), pa.string())
    images = cleaned_images(root).select(["image_id", "series_id", "path"])
    images = images.filter(pc.is_in(images.column("series_id"), value_set=kept_ids))
    zeroshot = classify_images(data, specs, images, candidates, templates, batch_size, workers,
                               device)
    table = rerank_table(kept, zeroshot, threshold, snapshot_id)
    tables = write_tables_task(data, {RERANK_TABLE: table})
    result = summarize_rerank(table)
    result.update(snapshot_id=snapshot_id, candidates=candidates.num_rows, tables=tables)
    logger.info("rerank: %s", result)
    return result
