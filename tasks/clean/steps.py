"""The clean stage's Prefect tasks: which images to check, hashing, junk, duplicates, summary.

The checks themselves live in `tv100.tasks.clean.quality` (junk), `tv100.tasks.clean.hashing`
(encode) and `tv100.tasks.clean.groups` (search and grouping); this module feeds them the
downloaded images of a data root. What is left afterwards is defined by
`tv100.tasks.clean.cleaned`.

The checking tasks are cached on content (image ids and file hashes, the step's config,
the exclusion list's hash), not on paths; the tasks reading tables are not cached, so they
always see the tables as they are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

from tv100.storage.root import DataRoot
from tv100.storage.tables import read_table
from tv100.tasks import cancel
from tv100.tasks.clean.cleaned import cleaned_images
from tv100.tasks.clean.config import CleanResult, HashConfig, NearDupConfig, QualityConfig
from tv100.tasks.clean.groups import find_duplicates
from tv100.tasks.clean.hashing import hash_files
from tv100.tasks.clean.pairstore import read_pairs, write_pairs
from tv100.tasks.clean.quality import assess_images
from tv100.tasks.clean.reuse import Item, Reuse, plan_reuse

CLEAN_CACHE = INPUTS + TASK_SOURCE

#: Images per mapped hashing / quality task when the flow runs on Dask. Fixed (not sized to
#: the cluster) so a chunk's cache key does not depend on how many machines there are.
CHUNK_SIZE = 256


def downloaded_items(root: DataRoot) -> list[Item]:
    """``(image_id, relative path, sha256)`` of every image stored with status ok."""
    images = read_table(root, "images").filter(pc.equal(pc.field("status"), "ok"))
    rows = images.select(["image_id", "path", "sha256"]).to_pylist()
    return sorted((r["image_id"], r["path"], r["sha256"]) for r in rows)


def _local(root: DataRoot, items: list[Item]) -> list[tuple[str, str]]:
    if not root.is_local:
        raise ValueError(
            f"the clean stage reads image files directly; data root {root.url!r} is not local"
        )
    return [(image_id, os.path.join(root.base, rel)) for image_id, rel, _ in items]


def duplicate_candidates(
    root: DataRoot, hashes: pa.Table, quality: pa.Table | None = None
) -> pa.Table:
    """`hashes` joined with each image's series and search rank, and with `quality`'s
    ``chroma_score`` when given (a group keeps a colour member over a grayscale copy), as
    `find_duplicates` wants."""
    images = read_table(root, "images").select(["image_id", "series_id", "rank"])
    out = hashes.join(images, "image_id", join_type="left outer")
    if quality is not None and "chroma_score" in quality.column_names:
        out = out.join(quality.select(["image_id", "chroma_score"]), "image_id",
                       join_type="left outer")
    return out.sort_by("image_id")


def chunked(items: list[Item], size: int = CHUNK_SIZE) -> list[list[Item]]:
    """`items` in consecutive chunks of `size` (one empty chunk when there are none).

    Every per-image result depends on its image alone, so the tables of the chunks,
    concatenated in this order, equal the table of all items at once.
    """
    if size < 1:
        raise ValueError(f"chunk size {size!r} is invalid; expected >= 1")
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def count_junk(quality: pa.Table) -> dict[str, int]:
    """Junk images per failed check (an image with several reasons counts for each)."""
    junk: dict[str, int] = {}
    for r in quality.filter(pc.field("is_junk")).column("reason").to_pylist():
        for reason in (r or "unknown").split(","):
            junk[reason] = junk.get(reason, 0) + 1
    return junk


def count_duplicates(duplicates: pa.Table) -> dict[str, int]:
    """`duplicates` rows per ``"<kind>/<scope>"``."""
    dup: dict[str, int] = {}
    for kind, scope in zip(
        duplicates.column("kind").to_pylist(), duplicates.column("scope").to_pylist(), strict=True
    ):
        dup[f"{kind}/{scope}"] = dup.get(f"{kind}/{scope}", 0) + 1
    return dup


@task(name="downloaded-images", cache_policy=NO_CACHE)
def downloaded_task(root: DataRoot) -> list[Item]:
    """`downloaded_items`: the images the stage checks."""
    return downloaded_items(root)


@task(name="reusable-rows", cache_policy=NO_CACHE)
def reuse_task(root: DataRoot, items: list[Item], fingerprint: str) -> Reuse:
    """`plan_reuse`: the last run's rows still valid, and the images left to compute."""
    return plan_reuse(root, items, fingerprint)


@task(name="hash-images", cache_policy=CLEAN_CACHE)
def hash_task(root: DataRoot, items: list[Item], config: HashConfig) -> pa.Table:
    """sha256, pHash and dHash of downloaded images (a process pool of `config.workers`)."""
    return hash_files(_local(root, items), config)


@task(name="assess-quality", cache_policy=CLEAN_CACHE)
def quality_task(
    root: DataRoot,
    items: list[Item],
    config: QualityConfig,
    exclusions: str | None,
    exclusions_sha256: str | None,
    workers: int = HashConfig.workers,
) -> pa.Table:
    """Junk scores and flags; `exclusions_sha256` puts the list's content in the cache key.

    `workers`: processes (1 = in the task's own process, as on a Dask worker).
    """
    images = read_table(root, "images").select(["image_id", "url"]).to_pylist()
    urls = {r["image_id"]: r["url"] for r in images}
    quality = assess_images(_local(root, items), config, exclusions, urls=urls, workers=workers)
    cancel.check()  # a pool ended by the signal leaves rows that must not be cached
    return quality


@task(name="duplicate-candidates", cache_policy=NO_CACHE)
def candidates_task(root: DataRoot, hashes: pa.Table, quality: pa.Table | None = None) -> pa.Table:
    """`duplicate_candidates`: the hashes with each image's series, rank and chroma."""
    return duplicate_candidates(root, hashes, quality)


def find_root_duplicates(
    candidates: pa.Table, config: NearDupConfig, root: DataRoot | None = None
) -> pa.Table:
    """`find_duplicates`; with `root`, through the pair cache the last run left there
    (`tv100.tasks.clean.pairstore`: only new codes are searched), which it then updates."""
    if root is None:
        return find_duplicates(candidates, config)
    cache = read_pairs(root)
    duplicates = find_duplicates(candidates, config, cache=cache)
    write_pairs(root, cache)
    return duplicates


# The table does not depend on the root: its pair cache only makes the search faster.
@task(name="find-duplicates", cache_policy=CLEAN_CACHE - "root")
def duplicates_task(
    candidates: pa.Table, config: NearDupConfig, root: DataRoot | None = None
) -> pa.Table:
    """Exact, pHash and dHash duplicates grouped; one row per dropped image
    (`find_root_duplicates`)."""
    return find_root_duplicates(candidates, config, root)


@task(name="clean-result", cache_policy=NO_CACHE)
def result_task(
    root: DataRoot,
    quality: pa.Table,
    duplicates: pa.Table,
    images: int,
    tables: Mapping[str, str],
    computed: int,
) -> CleanResult:
    """What the run did, once its tables are written: counts and the cleaned set's size.

    Args:
        root: the data root, its `quality` and `duplicates` tables already written.
        quality: the `quality` table written.
        duplicates: the `duplicates` table written.
        images: images checked.
        tables: ``{name: sha256}`` of the tables written.
        computed: images hashed and assessed (the others reused).
    """
    return CleanResult(
        images=images,
        cleaned=cleaned_images(root).num_rows,
        junk_by_reason=count_junk(quality),
        duplicates_by_kind=count_duplicates(duplicates),
        tables=dict(tables),
        computed=computed,
    )
