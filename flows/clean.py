"""The clean stage: junk filters, exact and near-duplicate removal, all explained in tables."""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa
from prefect import flow, get_run_logger, unmapped

from tv100.flows.runners import dask_threads
from tv100.storage.atomic import sha256_file
from tv100.storage.lock import hold_root
from tv100.storage.root import resolve_root
from tv100.tasks.buildconfig import clean_config
from tv100.tasks.clean.config import CLEAN, CleanResult
from tv100.tasks.clean.reuse import fingerprint, merged
from tv100.tasks.clean.steps import (
    candidates_task,
    chunked,
    downloaded_task,
    duplicates_task,
    hash_task,
    quality_task,
    result_task,
    reuse_task,
)
from tv100.tasks.prerequisites import check_root, require_inputs
from tv100.tasks.report.artifacts import publish_clean_artifacts
from tv100.tasks.tables import write_tables_task


@flow(name="clean")
def clean_flow(
    data: str | None = None,
    phash_threshold: int = CLEAN.phash_threshold,
    dhash_threshold: int | None = CLEAN.dhash_threshold,
    drop_cross_series: bool = CLEAN.drop_cross_series,
    min_side: int = CLEAN.min_side,
    max_aspect: float = CLEAN.max_aspect,
    min_std: float = CLEAN.min_std,
    min_entropy: float = CLEAN.min_entropy,
    exclusions: str | None = CLEAN.exclusions,
    workers: int = CLEAN.workers,
    wait: bool = True,
) -> CleanResult:
    """Flag junk and drop duplicates among the downloaded images.

    Args:
        data: data root holding the `images` table (default ``$TV100_DATA``, else ./data).
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
        wait: if another run holds the data root, wait for it (False: refuse at once).
    """
    config = clean_config(
        phash_threshold=phash_threshold,
        dhash_threshold=dhash_threshold,
        drop_cross_series=drop_cross_series,
        min_side=min_side,
        max_aspect=max_aspect,
        min_std=min_std,
        min_entropy=min_entropy,
        exclusions=exclusions,
        workers=workers,
    )
    root = check_root(resolve_root(data))
    require_inputs(root, "clean")  # before the root is created
    with hold_root(root, wait=wait, what="clean"):  # one run per data root
        root.ensure()
        items = downloaded_task(root)
        # The list's content, not its path, goes into the quality task's cache key.
        exclusions_sha256 = sha256_file(config.exclusions) if config.exclusions else None
        # Per image: rows of images the last run already checked are reused, so a refresh
        # hashes and assesses only the new ones (tv100.tasks.clean.reuse).
        reuse = reuse_task(
            root, items, fingerprint(config.hashing, config.quality, exclusions_sha256)
        )
        todo = reuse.todo
        if dask_threads():
            # On Dask: chunks of images as mapped tasks, one worker process each (no pools
            # inside a worker); concatenated in chunk order, the tables equal the ones below.
            chunks = chunked(todo)
            hash_parts = hash_task.map(
                unmapped(root), chunks, unmapped(replace(config.hashing, workers=1))
            )
            quality_parts = quality_task.map(
                unmapped(root),
                chunks,
                unmapped(config.quality),
                unmapped(config.exclusions),
                unmapped(exclusions_sha256),
                workers=unmapped(1),
            )
            new_hashes = pa.concat_tables([f.result() for f in hash_parts])
            new_quality = pa.concat_tables([f.result() for f in quality_parts])
        else:
            # Threads: one task after the other, each with its own pool of `workers` processes
            # (never two pools side by side).
            new_hashes = hash_task(root, todo, config.hashing)
            new_quality = quality_task(
                root, todo, config.quality, config.exclusions, exclusions_sha256,
                workers=config.workers,
            )
        hashes = merged(reuse.hashes, new_hashes, reuse.notes)
        quality = merged(reuse.quality, new_quality, reuse.notes)
        # The last run's near-duplicate pairs (by code value) are reused: only new codes are
        # searched (tv100.tasks.clean.pairstore).
        duplicates = duplicates_task(candidates_task(root, hashes, quality), config.neardup, root)
        tables = write_tables_task(
            root, {"hashes": hashes, "quality": quality, "duplicates": duplicates}
        )
        result = result_task(root, quality, duplicates, len(items), tables, len(todo))
        get_run_logger().info("clean: %s", result)
        publish_clean_artifacts(quality, duplicates, images=result.images, cleaned=result.cleaned)
        return result
