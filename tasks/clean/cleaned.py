"""Clean stage glue: which images to hash, the Prefect task wrappers, the cleaned set.

The checks themselves live in `tv100.tasks.clean.quality` (junk), `tv100.tasks.clean.hashing` (encode) and
`tv100.tasks.clean.neardup` (search); this module feeds them the downloaded images and defines
"cleaned": downloaded, not junk, not dropped as a duplicate.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from tv100.storage.root import DataRoot, resolve_root
from tv100.storage.tables import read_table, table_exists
from tv100.tasks.clean.hashing import HashConfig, hash_files
from tv100.tasks.clean.neardup import NearDupConfig, find_duplicates
from tv100.tasks.clean.quality import QualityConfig, assess_images

Item = tuple[str, str, str]  # image_id, path relative to the data root, sha256 of the file


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


def file_sha256(path: str | None) -> str | None:
    """Content hash of an optional input file (for cache keys); None when no file."""
    if not path:
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def duplicate_candidates(root: DataRoot, hashes: pa.Table) -> pa.Table:
    """`hashes` joined with each image's series and search rank, as `find_duplicates` wants."""
    images = read_table(root, "images").select(["image_id", "series_id", "rank"])
    return hashes.join(images, "image_id", join_type="left outer").sort_by("image_id")


def cleaned_images(root: DataRoot) -> pa.Table:
    """Images downloaded ok, not junk, not dropped as duplicates: image_id, series_id, path.

    Sorted by image_id. Stages after clean read their inputs from here.
    """
    images = read_table(root, "images").filter(pc.equal(pc.field("status"), "ok"))
    images = images.select(["image_id", "series_id", "path", "sha256", "width", "height"])
    drop: set[str] = set()
    if table_exists(root, "quality"):
        q = read_table(root, "quality")
        drop |= set(q.filter(pc.field("is_junk")).column("image_id").to_pylist())
    if table_exists(root, "duplicates"):
        d = read_table(root, "duplicates")
        d = d.filter(pc.equal(pc.field("action"), "drop"))
        drop |= set(d.column("image_id").to_pylist())
    keep = pc.invert(pc.is_in(images.column("image_id"), pa.array(sorted(drop), pa.string())))
    return images.filter(keep).sort_by("image_id")


# --- Prefect tasks: cached on content (image ids + file hashes), not on paths ----------------

CLEAN_CACHE = INPUTS + TASK_SOURCE


#: Images per mapped hashing / quality task when the flow runs on Dask. Fixed (not sized to
#: the cluster) so a chunk's cache key does not depend on how many machines there are.
CHUNK_SIZE = 256


def chunked(items: list[Item], size: int = CHUNK_SIZE) -> list[list[Item]]:
    """`items` in consecutive chunks of `size` (one empty chunk when there are none).

    Every per-image result depends on its image alone, so the tables of the chunks,
    concatenated in this order, equal the table of all items at once.
    """
    if size < 1:
        raise ValueError(f"chunk size {size!r} is invalid; expected >= 1")
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


@task(name="hash-images", cache_policy=CLEAN_CACHE)
def hash_task(data: str, items: list[Item], config: HashConfig) -> pa.Table:
    """sha256, pHash and dHash of downloaded images (a process pool of `config.workers`)."""
    return hash_files(_local(resolve_root(data), items), config)


@task(name="assess-quality", cache_policy=CLEAN_CACHE)
def quality_task(
    data: str,
    items: list[Item],
    config: QualityConfig,
    exclusions: str | None,
    exclusions_sha256: str | None,
    workers: int = 2,
) -> pa.Table:
    """Junk scores and flags; `exclusions_sha256` puts the list's content in the cache key.

    `workers`: processes (1 = in the task's own process, as on a Dask worker).
    """
    root = resolve_root(data)
    images = read_table(root, "images").select(["image_id", "url"]).to_pylist()
    urls = {r["image_id"]: r["url"] for r in images}
    return assess_images(_local(root, items), config, exclusions, urls=urls, workers=workers)


@task(name="find-duplicates", cache_policy=CLEAN_CACHE)
def duplicates_task(candidates: pa.Table, config: NearDupConfig) -> pa.Table:
    """Exact, pHash and dHash duplicates grouped; one row per dropped image."""
    return find_duplicates(candidates, config)


def clean_summary(quality: pa.Table, duplicates: pa.Table, n_items: int) -> dict[str, Any]:
    """Counts by junk reason and by duplicate kind and scope."""
    junk: dict[str, int] = {}
    for r in quality.filter(pc.field("is_junk")).column("reason").to_pylist():
        for reason in (r or "unknown").split(","):
            junk[reason] = junk.get(reason, 0) + 1
    dup: dict[str, int] = {}
    for kind, scope in zip(
        duplicates.column("kind").to_pylist(), duplicates.column("scope").to_pylist(), strict=True
    ):
        dup[f"{kind}/{scope}"] = dup.get(f"{kind}/{scope}", 0) + 1
    return {"images": n_items, "junk_by_reason": junk, "duplicates_by_kind": dup}
