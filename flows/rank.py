"""The rank stage: embed the cleaned images, classify them zero-shot among every candidate
series with one or more CLIPs, and keep the K series the models know worst."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger

from tv100.storage.root import resolve_root
from tv100.storage.tables import read_table
from tv100.tasks.clean.cleaned import cleaned_images
from tv100.tasks.rank.clip import DEFAULT_TEMPLATES
from tv100.tasks.rank.embed import EmbedConfig, embed_task
from tv100.tasks.rank.zeroshot import (
    SelectConfig,
    ZeroShotConfig,
    overall_top1,
    select_task,
    summarize,
    zeroshot_task,
)
from tv100.tasks.report.artifacts import publish_rank_artifacts
from tv100.tasks.tables import write_tables_task

#: The paper's models are OpenAI's RN50, ViT-B/16 and ViT-L/14; one keeps a weekly CPU
#: build affordable. Pass ``--model`` several times for the "unseen by all" ranking.
DEFAULT_MODELS = ("ViT-B-16@openai",)


def rank_inputs(data: str) -> tuple[pa.Table, pa.Table]:
    """``(cleaned images, candidate series)`` of a data root, as the rank stage reads them."""
    root = resolve_root(data)
    images = cleaned_images(root).select(["image_id", "series_id", "path"])
    series = read_table(root, "series").select(["series_id", "title"]).sort_by("series_id")
    candidates = set(series.column("series_id").to_pylist())
    strays = {s for s in images.column("series_id").to_pylist() if s not in candidates}
    if strays:
        raise ValueError(
            f"{len(strays)} series have cleaned images but no row in `series` under {data!r} "
            f"(e.g. {sorted(strays)[0]!r}); expected the discover stage's table to list them"
        )
    return images, series


def classify_images(
    data: str,
    models: list[str],
    images: pa.Table,
    candidates: pa.Table,
    templates: list[str] | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
) -> pa.Table:
    """Embed `images` (image_id, series_id, path) with each model, then classify them
    zero-shot among `candidates` (series_id, title): the `zeroshot` rows (call from a flow).
    """
    logger = get_run_logger()
    zs_config = ZeroShotConfig(
        templates=tuple(templates) if templates else DEFAULT_TEMPLATES, device=device
    )
    embed = EmbedConfig(batch_size=batch_size, workers=workers, device=device)
    digests = []
    for spec in models:
        summary = embed_task(data, images.select(["image_id", "path"]), spec, embed)
        logger.info("embeddings: %s", summary)
        digests.append(summary["table_sha256"])
    return zeroshot_task(
        data, models, images.select(["image_id", "series_id"]), candidates,
        ",".join(map(str, digests)), zs_config,
    )


@flow(name="rank")
def rank_flow(
    data: str = "./data",
    models: list[str] | None = None,
    k: int = 100,
    min_images: int = 100,
    aggregate: str = "max",
    templates: list[str] | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Rank every candidate series by zero-shot accuracy and keep the `k` hardest.

    Args:
        data: data root holding `series` and the cleaned `images`.
        models: CLIPs as ``ARCH@WEIGHTS`` (a pretrained tag or a checkpoint file) or
            ``local-dir:FOLDER`` (default `DEFAULT_MODELS`).
        k: series to keep (the paper keeps 100).
        min_images: fewest cleaned images a kept series needs.
        aggregate: ``max`` (novel = unseen by every model) or ``mean`` over the models.
        templates: prompt templates with one ``{}`` (default the paper's single prompt).
        batch_size: images per forward pass.
        workers: DataLoader processes decoding images while the model runs (None: the
            cores the torch threads leave free).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
    """
    logger = get_run_logger()
    specs = list(models or DEFAULT_MODELS)
    select = SelectConfig(k=k, min_images=min_images, aggregate=aggregate)
    images, series = rank_inputs(data)
    zeroshot = classify_images(data, specs, images, series, templates, batch_size, workers,
                               device)
    counts = Counter(images.column("series_id").to_pylist())
    classes = select_task(zeroshot, select, dict(sorted(counts.items())))
    tables = write_tables_task(data, {"zeroshot": zeroshot, "classes": classes})
    result = summarize(classes)
    result["overall_top1"] = {
        key: overall_top1(zeroshot, key)
        for key in sorted(set(zeroshot.column("model_key").to_pylist()))
    }
    result["tables"] = tables
    logger.info("rank: %s", result)
    publish_rank_artifacts(zeroshot, series)
    return result
