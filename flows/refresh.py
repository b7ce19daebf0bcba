"""Re-rank old classes with a newer model: which kept series are no longer unseen?

The kept classes (the current `classes` table, or a snapshot's with `since`) are embedded
and classified again with the newer CLIP(s) among the same candidates, and the `rerank`
table compares old and new accuracy (`tv100.tasks.snapshots.rerank`). See
`tv100.tasks.snapshots.snapshots` for the snapshots themselves and `tv100 diff` for
comparing two builds.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from tv100.storage.lock import hold_root
from tv100.storage.root import resolve_root
from tv100.tasks.prerequisites import check_root, require_inputs
from tv100.tasks.rank.config import DEFAULT_TEMPLATES, EMBED, EmbedConfig, ZeroShotConfig
from tv100.tasks.rank.recorded import ranked_models
from tv100.tasks.rank.zeroshot import classify_images
from tv100.tasks.snapshots.config import RERANK_TABLE, RerankConfig, RerankResult
from tv100.tasks.snapshots.rerank import rerank_inputs_task, rerank_table, summarize_rerank
from tv100.tasks.tables import write_tables_task


@flow(name="rerank")
def rerank_flow(
    data: str | None = None,
    models: list[str] | None = None,
    since: str | None = None,
    threshold: float | None = None,
    templates: list[str] | None = None,
    batch_size: int = EMBED.batch_size,
    workers: int | None = EMBED.workers,
    device: str = EMBED.device,
    shard_size: int = EMBED.shard_size,
    wait: bool = True,
) -> RerankResult:
    """Classify the kept classes again with newer CLIPs; report those no longer unseen.

    Args:
        data: data root holding `classes` (or snapshots), `series` and the cleaned images
            (default ``$TV100_DATA``, else ``./data``).
        models: the newer CLIPs as ``ARCH@WEIGHTS`` or ``local-dir:FOLDER`` (default: the
            ones the data root was last ranked with, table `rank_models`).
        since: a snapshot id (or unique prefix) whose kept classes to re-rank (default:
            the current `classes` table).
        threshold: top-1 at or below which a class is still unseen, 0..1 (default
            ``max(2 / candidates, 0.1)``).
        templates: prompt templates with one ``{}`` (default the paper's single prompt).
        batch_size: images per forward pass.
        workers: DataLoader processes (None: the cores the torch threads leave free).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
        shard_size: images per shard of the `embeddings` table (the unit of resumption).
        wait: if another run holds the data root, wait for it (False: refuse at once).
    """
    root = check_root(resolve_root(data))
    require_inputs(root, "rerank", since)  # before the root is created
    config = RerankConfig(
        models=ranked_models(root, "rerank", models),
        since=since,
        threshold=threshold,
        embed=EmbedConfig(
            batch_size=batch_size, workers=workers, device=device, shard_size=shard_size
        ),
        zeroshot=ZeroShotConfig(
            templates=tuple(templates) if templates else DEFAULT_TEMPLATES, device=device
        ),
    )
    with hold_root(root, wait=wait, what="rerank"):  # one run per data root
        root.ensure()
        inputs = rerank_inputs_task(root, config.since)
        zeroshot = classify_images(
            root, config.models, inputs.images, inputs.candidates, config.embed, config.zeroshot
        )
        table = rerank_table(inputs.kept, zeroshot, config.threshold, inputs.snapshot_id)
        tables = write_tables_task(root, {RERANK_TABLE: table})
        result = summarize_rerank(table, inputs.snapshot_id, inputs.candidates.num_rows, tables)
        get_run_logger().info("rerank: %s", result)
        return result
