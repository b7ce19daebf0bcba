"""The rank stage: embed the cleaned images, leave out the irrelevant ones (relevance, then the
human reviews), classify the rest zero-shot among every candidate series with one or more
CLIPs, and keep the K series the models know worst (by the best or mean top-1, or by how many
models find a series unseen: ``aggregate`` ``all`` / ``vote``)."""

from __future__ import annotations

from prefect import flow, get_run_logger

from tv100.storage.lock import hold_root
from tv100.storage.root import resolve_root
from tv100.tasks.buildconfig import rank_config
from tv100.tasks.prerequisites import check_root, require_inputs
from tv100.tasks.rank.config import EMBED, RELEVANCE, SELECT, RankResult
from tv100.tasks.rank.inputs import rank_inputs_task
from tv100.tasks.rank.recorded import RANK_MODELS_TABLE, default_models, rank_models_task
from tv100.tasks.rank.relevance import relevance_task, relevant_images
from tv100.tasks.rank.select import image_counts, rank_result, select_task
from tv100.tasks.rank.zeroshot import embed_models, embeddings_digest, zeroshot_task
from tv100.tasks.report.artifacts import publish_rank_artifacts
from tv100.tasks.review.decisions import apply_reviews, latest_reviews
from tv100.tasks.tables import write_tables_task


@flow(name="rank")
def rank_flow(
    data: str | None = None,
    models: list[str] | None = None,
    k: int = SELECT.k,
    min_images: int = SELECT.min_images,
    aggregate: str = SELECT.aggregate,
    min_unseen: int | None = SELECT.min_unseen,
    seen_threshold: float | None = SELECT.seen_threshold,
    templates: list[str] | None = None,
    batch_size: int = EMBED.batch_size,
    workers: int | None = EMBED.workers,
    device: str = EMBED.device,
    shard_size: int = EMBED.shard_size,
    relevance: bool = RELEVANCE.enabled,
    wait: bool = True,
) -> RankResult:
    """Rank every candidate series by zero-shot accuracy and keep the `k` hardest.

    Args:
        data: data root holding `series` and the cleaned `images` (default ``$TV100_DATA``,
            else ``./data``).
        models: CLIPs as ``ARCH@WEIGHTS`` (a pretrained tag or a checkpoint file) or
            ``local-dir:FOLDER`` (default: the ones the data root was last ranked with,
            table `rank_models`; never ranked: `tv100.tasks.rank.config.DEFAULT_MODELS`).
        k: series to keep (the paper keeps 100).
        min_images: fewest cleaned images a kept series needs.
        aggregate: how several models judge a series (`tv100.tasks.rank.select`): ``max``
            (ranked on the best top-1: novel = unseen by every model) or ``mean`` top-1;
            ``all`` keeps only series every model finds unseen (top-1 at or below
            `seen_threshold`), ``vote`` those at least `min_unseen` models find unseen, each
            ranked by how many models find it unseen, then by mean top-1.
        min_unseen: with ``vote``, the fewest models that must find a kept series unseen
            (at most the number of models; default a strict majority).
        seen_threshold: with ``all``/``vote``, the top-1 above which a model has seen a
            series (0..1; default ``max(2 / candidates, 0.1)``, as the rerank flow judges
            "still unseen").
        templates: prompt templates with one ``{}`` (default the paper's single prompt).
        batch_size: images per forward pass.
        workers: DataLoader processes decoding images while the model runs (None: the
            cores the torch threads leave free).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
        shard_size: images per shard of the `embeddings` table (the unit of resumption).
        relevance: score relevance on the first model's vectors (table `relevance`) and
            rank only the relevant images; False ranks every cleaned image (to compare).
        wait: if another run holds the data root, wait for it (False: refuse at once).
    """
    root = check_root(resolve_root(data))
    require_inputs(root, "rank")  # before the root is created
    config = rank_config(
        models=default_models(root, models), k=k, min_images=min_images, aggregate=aggregate,
        min_unseen=min_unseen, seen_threshold=seen_threshold, templates=templates,
        batch_size=batch_size, workers=workers, device=device, shard_size=shard_size,
        relevance=relevance,
    )
    config.select.votes_needed(len(config.models))  # min_unseen above the models: refused now
    with hold_root(root, wait=wait, what="rank"):  # one run per data root
        root.ensure()
        inputs = rank_inputs_task(root)
        embedded = embed_models(root, config.models, inputs.images, config.embed)
        digest = embeddings_digest(embedded)
        labelled = inputs.images.select(["image_id", "series_id"])
        relevance_rows = relevance_task(
            root, embedded[0].model_key, labelled, inputs.series, digest, config.relevance
        )
        relevance_rows = apply_reviews(relevance_rows, latest_reviews(root))
        relevant = relevant_images(labelled, relevance_rows)
        zeroshot = zeroshot_task(
            root, list(config.models), relevant, inputs.series, digest, config.zeroshot
        )
        cleaned = image_counts(inputs.images) if config.relevance.enabled else None
        classes = select_task(zeroshot, config.select, image_counts(relevant), cleaned)
        tables = write_tables_task(root, {
            "relevance": relevance_rows, "zeroshot": zeroshot, "classes": classes,
            RANK_MODELS_TABLE: rank_models_task(config.models),
        })
        result = rank_result(
            classes, zeroshot, tables, {s.model_key: s.embedded_now for s in embedded}
        )
        get_run_logger().info("rank: %s", result)
        publish_rank_artifacts(zeroshot, inputs.series)
        return result
