"""The clean stage: junk filters, exact and near-duplicate removal, all explained in tables."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger, unmapped

from tv100.flows.runners import dask_threads
from tv100.storage.root import resolve_root
from tv100.tasks.clean.cleaned import (
    chunked,
    clean_summary,
    cleaned_images,
    downloaded_items,
    duplicate_candidates,
    duplicates_task,
    file_sha256,
    hash_task,
    quality_task,
)
from tv100.tasks.clean.hashing import HashConfig
from tv100.tasks.clean.neardup import NearDupConfig
from tv100.tasks.clean.quality import QualityConfig
from tv100.tasks.report.artifacts import publish_clean_artifacts
from tv100.tasks.tables import write_tables_task


@flow(name="clean")
def clean_flow(
    data: str = "./data",
    phash_threshold: int = 10,
    dhash_threshold: int | None = 8,
    drop_cross_series: bool = True,
    min_side: int = 100,
    max_aspect: float = 3.0,
    min_std: float = 5.0,
    min_entropy: float = 3.0,
    exclusions: str | None = None,
    workers: int = 2,
) -> dict[str, Any]:
    """Flag junk and drop duplicates among the downloaded images.

    Args:
        data: data root holding the `images` table.
        phash_threshold: pHash Hamming distance (≤) that makes two images near duplicates.
        dhash_threshold: dHash distance confirming pairs a little beyond the pHash one.
        drop_cross_series: drop every copy of an image found under several series.
        min_side: images whose shorter side is below this are junk.
        max_aspect: images longer than this ratio are junk.
        min_std: near-uniform images (pixel std below this) are junk.
        min_entropy: low-information images (grey-level entropy in bits) are junk.
        exclusions: CSV/Parquet of ``image_id_or_url,reason`` the user wants excluded.
        workers: processes for hashing and for the quality checks (threads runner; on
            Dask every worker process takes chunks of images instead).
    """
    logger = get_run_logger()
    root = resolve_root(data)
    items = downloaded_items(root)
    quality_config = QualityConfig(
        min_side=min_side, max_aspect=max_aspect, min_std=min_std, min_entropy=min_entropy
    )
    exclusions_sha256 = file_sha256(exclusions)
    if dask_threads():
        # On Dask: chunks of images as mapped tasks, one worker process each (no pools
        # inside a worker); concatenated in chunk order, the tables equal the ones below.
        chunks = chunked(items)
        hash_parts = hash_task.map(unmapped(data), chunks, unmapped(HashConfig(workers=1)))
        quality_parts = quality_task.map(
            unmapped(data),
            chunks,
            unmapped(quality_config),
            unmapped(exclusions),
            unmapped(exclusions_sha256),
            workers=unmapped(1),
        )
        hashes = pa.concat_tables([f.result() for f in hash_parts])
        quality = pa.concat_tables([f.result() for f in quality_parts])
    else:
        # Threads: one task after the other, each with its own pool of `workers` processes
        # (never two pools side by side).
        hashes = hash_task(data, items, HashConfig(workers=workers))
        quality = quality_task(
            data, items, quality_config, exclusions, exclusions_sha256, workers=workers
        )
    config = NearDupConfig(
        phash_threshold=phash_threshold,
        dhash_threshold=dhash_threshold,
        drop_cross_series=drop_cross_series,
    )
    duplicates = duplicates_task(duplicate_candidates(root, hashes), config)
    tables = write_tables_task(
        data, {"hashes": hashes, "quality": quality, "duplicates": duplicates}
    )
    summary = clean_summary(quality, duplicates, len(items))
    summary["cleaned"] = cleaned_images(root).num_rows
    summary["tables"] = tables
    logger.info("clean: %s", summary)
    publish_clean_artifacts(quality, duplicates, images=len(items), cleaned=summary["cleaned"])
    return summary
