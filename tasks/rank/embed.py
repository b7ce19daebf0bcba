"""Image embeddings: stored images through a CLIP image tower, into the `embeddings` table.

`embed_images(root, items, model)` encodes images stored under the data root (``image_id``,
``path`` relative to the root, as in the `images` table) with one CLIP and appends one row
per image to the sharded table `embeddings`: image_id, model_key, vector (unit length,
float32), status, error_message. Images that cannot be read or decoded are rows too, with a
null vector and ``status`` ``read_error`` / ``decode_error``, so every input is accounted for.

Pipeline: images are read, decoded and preprocessed ahead of the model while the main
thread runs the forward pass under ``torch.inference_mode`` (and autocast on CUDA). Decoding
is ``PIL.Image.open`` + the model's own preprocess, as in any open_clip evaluation, except
that JPEGs much larger than the model's input are decoded at reduced scale
(`EmbedConfig.draft`: libjpeg's DCT scaling, the largest reduction of 1/2 to 1/8 that keeps
both sides at least the input side), which makes decoding several times cheaper; with
``draft=False`` the vectors are bit for bit those of a plain ``Image.open`` + preprocess loop.
For open_clip's eval transform (resize, crop, RGB, to-tensor, normalise) the last two steps
run in numpy straight into the batch's array (`FastPreprocess`): the same float32 operations
in the same order, so the same bits, without a dozen small torch ops per image.

Decode threads and worker processes (`EmbedConfig.workers`, `EmbedConfig.threads`): torch gets
``min(2, cpu_count)`` intra-op threads and a DataLoader the cores left over as worker
processes (at most 4; none for inputs of a few batches, where starting a worker costs more
than it saves). The plan never has more busy processes than cores, because torch's OpenMP
threads degrade badly when anything else takes their core: each parallel region waits for its
slowest thread. Measured on 2 cores (bench/embed.py, ViT-B-32, batch 64): decoding in the main
process between forward passes (0 workers, 2 threads) reaches 0.90 of the raw forward
throughput; 1 worker + 1 thread 0.48 (the forward pass runs on one core); 1 worker + 2 threads
0.74 (the worker preempts a torch thread while it decodes; 0.79 with the worker at lower
priority, which workers always get). So on 2 cores there is no worker process; instead
(`Lanes`) as many threads as torch would get each claim the next batch, decode it and run
its forward pass with *one* intra-op thread, side by side, yielding in input order. A
2-thread forward pass of the sandbox CLIP keeps both cores busy (2.15 ms/image wall, 4.3
core-ms; 3.85 ms on one thread: the rest is OpenMP synchronisation), so there is no idle
core to hide decoding behind; two one-thread lanes drop that overhead and never leave a core
idle while a batch decodes. Measured (2 cores, one process alternating with the raw forward
pass, 4 rounds): sandbox CLIP 0.87 of raw (the earlier prefetch thread: 0.74), ViT-B-32 1.03
(0.96); bench/embed.py: sandbox 1.10, ViT-B-32 1.05. The vectors are those of a 1-thread
forward pass, equal to a 2-thread one up to float32 rounding (~1e-7). With one thread, or on
CUDA, a lower-priority decode *thread* (`Prefetcher`) decodes the next batch while the
forward pass runs and the main thread finishes it alongside (sandbox CLIP: 0.74-0.81, as
serial decoding; a decode thread at normal priority preempts torch's threads; a
``SCHED_IDLE`` one gained nothing on a quiet machine and stalled under load, holding the GIL
while starved). Workers start with
``forkserver`` (``spawn`` where missing; `tv100.tasks.parallel.mp_context`), with torch
preloaded in the server so that each starts in milliseconds; not ``fork``, which can deadlock
a child of a process running Prefect's and OpenMP's threads.

Resumable: pending images are split into shards of `EmbedConfig.shard_size`, each written
with `tv100.storage.tables.write_shard` (data first, done-marker last). A rerun skips images that
already have a row for this model key, so an interrupted run continues where it stopped
and a finished one does nothing. At the end the shards are compacted into
``tables/embeddings.parquet`` sorted by (model_key, image_id).

The vector column is ``list<float32>``, not ``fixed_size_list``: one table holds several
models of different widths (the zero-shot stage compares models), and a fixed-size list
would pin one width for the whole table. Every vector of a model has that model's width;
`load_embeddings` returns them as an ``(n, dim)`` array.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from prefect import task

from tv100.storage.root import DataRoot, file_sha256
from tv100.storage.schemas import EMBEDDINGS
from tv100.storage.tables import (
    column_pairs,
    compact,
    done_shards,
    table_exists,
    table_path,
    write_shard,
)
from tv100.tasks import cancel
from tv100.tasks.parallel import mp_context
from tv100.tasks.progress import track
from tv100.tasks.rank import models
from tv100.tasks.rank.clip import Clip, default_threads, load_clip, set_torch_threads
from tv100.tasks.rank.config import EmbedConfig, EmbedSummary
from tv100.tasks.rank.decoding import (
    ImageFiles,
    Lanes,
    Prefetcher,
    collate,
    lower_worker_priority,
)
from tv100.tasks.rank.models import ModelSpec

if TYPE_CHECKING:
    import torch


TABLE = "embeddings"
#: The embedding's progress artifact.
EMBED_PROGRESS = "rank-embed-progress"
SORT_KEYS = ["model_key", "image_id"]
STATUSES = ("ok", "read_error", "decode_error")


def plan_parallelism(config: EmbedConfig, n_items: int) -> tuple[int, int]:
    """``(workers, threads)`` for `n_items` images (explicit config values win).

    Auto: ``min(2, cpu_count)`` torch threads, and as workers the cores left over (at most
    4); none for inputs of at most 4 batches. On 2 cores that is 2 threads and no worker:
    see the module docstring for why.
    """
    cores = max(1, os.cpu_count() or 1)
    threads = config.threads if config.threads is not None else default_threads()
    if config.workers is not None:
        workers = config.workers
    elif n_items <= 4 * config.batch_size:
        workers = 0
    else:
        workers = max(0, min(4, cores - threads))
    return workers, threads


def encode_batches(
    clip: Clip,
    root: DataRoot,
    relpaths: Sequence[str | None],
    config: EmbedConfig | None = None,
) -> Iterator[tuple[list[int], np.ndarray, list[tuple[int, str, str | None]]]]:
    """Encode image files batch by batch.

    Args:
        clip: the loaded model.
        root: the data root the paths are relative to.
        relpaths: image paths relative to `root` (None: a ``read_error`` row).
        config: `EmbedConfig`.

    Yields:
        ``(indices, vectors, failures)`` per batch: `vectors` ``(len(indices), dim)``
        float32 unit rows for the inputs at `indices`; `failures` ``(index, status,
        message)`` for the inputs of the batch that could not be read or decoded.
    """
    import torch

    cfg = config or EmbedConfig()
    if not relpaths:
        return
    workers, threads = plan_parallelism(cfg, len(relpaths))
    previous_threads = torch.get_num_threads()
    set_torch_threads(threads)
    draft_side = clip.image_size if cfg.draft else None
    dataset = ImageFiles(root.url, relpaths, clip.preprocess, draft_side)
    batches: Iterator[tuple[list[int], Any, list[tuple[int, str, str | None]]]]
    lanes = workers == 0 and threads > 1 and clip.device.type == "cpu"
    if lanes:
        batches = iter(Lanes(dataset, cfg.batch_size, lambda x: encode_tensor(clip, x), threads))
    elif workers == 0:
        batches = iter(Prefetcher(dataset, cfg.batch_size))
    else:
        loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
            dataset,  # type: ignore[arg-type]  # any map-style object works
            batch_size=cfg.batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=clip.device.type == "cuda",
            multiprocessing_context=mp_context(preload=["torch", __name__]),
            prefetch_factor=cfg.prefetch_batches,
            worker_init_fn=lower_worker_priority,
        )
        batches = iter(loader)
    try:
        while True:
            cancel.check()  # SIGTERM / Ctrl-C: stop between batches; written shards stay
            batch = next(batches, None)
            if batch is None:
                break
            indices, images, failures = batch
            if images is None:
                yield [], np.zeros((0, 0), np.float32), failures
                continue
            yield indices, images if lanes else encode_tensor(clip, images), failures
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # stops the decode thread
        torch.set_num_threads(previous_threads)


def encode_tensor(clip: Clip, images: torch.Tensor) -> np.ndarray:
    """Unit-length image embeddings of a preprocessed batch, ``(n, dim)`` float32."""
    import torch

    with torch.inference_mode(), clip.autocast():
        x = images.to(clip.device, non_blocking=True)
        feats = clip.model.encode_image(x)
        feats = torch.nn.functional.normalize(feats.float(), dim=-1)
    return np.ascontiguousarray(feats.cpu().numpy(), dtype=np.float32)


def _items(items: pa.Table | Sequence[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    pairs = column_pairs(items, "image_id", "path", "embedding input (paths relative to the root)")
    out: dict[str, str | None] = {}
    for image_id, path in pairs:
        if not image_id:
            raise ValueError("embedding input has an empty image_id; expected non-empty ids")
        if image_id in out and out[image_id] != path:
            raise ValueError(
                f"embedding input has image_id {image_id!r} twice with different paths"
            )
        out[str(image_id)] = path
    return sorted(out.items())


def embedded_ids(root: DataRoot, model_key: str) -> set[str]:
    """Image ids that already have a row (any status) for `model_key`."""
    if not table_exists(root, TABLE):
        return set()
    from tv100.storage.catalog import connect

    con = connect(root)
    try:
        rows = con.execute(
            f"SELECT image_id FROM {TABLE} WHERE model_key = ?", [model_key]
        ).fetchall()
    finally:
        con.close()
    return {r[0] for r in rows}


def shard_id(model_key: str, image_ids: Sequence[str]) -> str:
    """Deterministic shard name: hash of the model key + hash of the ids it holds."""
    mk = hashlib.sha256(model_key.encode()).hexdigest()[:12]
    ids = hashlib.sha256("\n".join(image_ids).encode()).hexdigest()[:16]
    return f"{mk}-{ids}"


def _shard_table(
    model_key: str,
    ids: Sequence[str],
    vectors: dict[int, np.ndarray],
    failures: dict[int, tuple[str, str | None]],
) -> pa.Table:
    rows_vec: list[list[float] | None] = []
    status: list[str] = []
    errors: list[str | None] = []
    for i in range(len(ids)):
        if i in vectors:
            rows_vec.append(vectors[i])  # type: ignore[arg-type]  # arrow takes arrays
            status.append("ok")
            errors.append(None)
        else:
            st, msg = failures[i]
            rows_vec.append(None)
            status.append(st)
            errors.append(msg)
    return pa.table(
        {
            "image_id": pa.array(list(ids), pa.string()),
            "model_key": pa.array([model_key] * len(ids), pa.string()),
            "vector": pa.array(rows_vec, pa.list_(pa.float32())),
            "status": pa.array(status, pa.string()),
            "error_message": pa.array(errors, pa.string()),
        },
        schema=EMBEDDINGS,
    )


def embed_images(
    root: DataRoot,
    items: pa.Table | Sequence[tuple[str, str | None]],
    model: Clip | ModelSpec | str,
    config: EmbedConfig | None = None,
) -> EmbedSummary:
    """Embed every image that has no row yet for this model; resumable.

    Args:
        root: the data root (images are read from it, the table written to it).
        items: ``(image_id, path)`` pairs or a table with those columns (paths relative to
            the root, as in the `images` table).
        model: a loaded `tv100.tasks.rank.clip.Clip` or a spec to load.
        config: `EmbedConfig`.

    Returns:
        An `EmbedSummary`; its `table_sha256` is the compacted table's content hash (None
        without compaction or when nothing was ever written), a cache key for later stages.
    """
    cfg = config or EmbedConfig()
    root = root.ensure()
    # The key alone (a weights hash, memoised) decides what is left to embed; the model is
    # built only when something is: a warm re-run then skips seconds of model set-up.
    key = model.key if isinstance(model, Clip) else models.model_key(model)
    pairs = _items(items)
    already = embedded_ids(root, key)
    pending = [(i, p) for i, p in pairs if i not in already]
    done = done_shards(root, TABLE)
    shards: list[tuple[str, list[tuple[str, str | None]]]] = []
    for start in range(0, len(pending), cfg.shard_size):
        chunk = pending[start : start + cfg.shard_size]
        sid = shard_id(key, [i for i, _ in chunk])
        if sid not in done:  # a done shard not yet compacted is already in `already`
            shards.append((sid, chunk))
    flat = [item for _, chunk in shards for item in chunk]
    # One DataLoader for every pending image (workers start once); batches arrive in input
    # order, so a shard is complete, and written, as soon as the count passes its end.
    vectors: dict[int, np.ndarray] = {}
    failures: dict[int, tuple[str, str | None]] = {}
    processed = written = offset = embedded = failed = 0
    before = len(pairs) - len(flat)
    tracker = track("embed", len(pairs), "images", EMBED_PROGRESS, done=before)
    batches: Iterator[tuple[list[int], np.ndarray, list[tuple[int, str, str | None]]]] = iter(())
    if flat:
        clip = model if isinstance(model, Clip) else load_clip(model, cfg.device)
        batches = encode_batches(clip, root, [p for _, p in flat], cfg)
    with tracker:
        for indices, vecs, fails in batches:
            vectors.update(zip(indices, vecs, strict=True))
            failures.update({i: (st, msg) for i, st, msg in fails})
            processed += len(indices) + len(fails)
            tracker(before + processed)
            while written < len(shards) and offset + len(shards[written][1]) <= processed:
                sid, chunk = shards[written]
                span = range(offset, offset + len(chunk))
                part_vec = {i - offset: vectors.pop(i) for i in span if i in vectors}
                part_fail = {i - offset: failures.pop(i) for i in span if i in failures}
                ids = [i for i, _ in chunk]
                table = _shard_table(key, ids, part_vec, part_fail)
                write_shard(root, TABLE, sid, table, EMBEDDINGS)
                embedded += len(part_vec)
                failed += len(part_fail)
                offset += len(chunk)
                written += 1
    digest = None
    if cfg.compact and done_shards(root, TABLE):
        digest = compact(root, TABLE, SORT_KEYS, EMBEDDINGS)
    elif cfg.compact and root.fs.exists(table_path(root, TABLE)):
        digest = file_sha256(root, table_path(root, TABLE))  # nothing new: hash, no rewrite
    return EmbedSummary(
        model_key=key,
        images=len(pairs),
        embedded_now=embedded,
        failed_now=failed,
        already=len(pairs) - len(pending),
        shards=written,
        table_sha256=digest,
    )


def load_embeddings(
    root: DataRoot, model_key: str, image_ids: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """The ``ok`` vectors of one model, sorted by image_id.

    Args:
        root: the data root.
        model_key: `tv100.tasks.rank.clip.Clip.key` of the model.
        image_ids: only these (missing ones are simply absent from the result).

    Returns:
        ``(image_ids, vectors)``, vectors ``(n, dim)`` float32 unit rows.
    """
    if not table_exists(root, TABLE):
        return [], np.zeros((0, 0), np.float32)
    from tv100.storage.catalog import connect

    con = connect(root)
    try:
        sql = (
            f"SELECT image_id, vector FROM {TABLE} WHERE model_key = ? AND status = 'ok'"
            " ORDER BY image_id"
        )
        table: pa.Table = con.sql(sql, params=[model_key]).to_arrow_table()
    finally:
        con.close()
    if image_ids is not None:
        import pyarrow.compute as pc

        wanted = pa.array(sorted(set(image_ids)), pa.string())
        table = table.filter(pc.is_in(table.column("image_id"), value_set=wanted))
    ids = [str(i) for i in table.column("image_id").to_pylist()]
    if not ids:
        return [], np.zeros((0, 0), np.float32)
    vec = table.column("vector").combine_chunks()
    flat = np.asarray(vec.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return ids, flat.reshape(len(ids), -1)


@task(name="embed-images")
def embed_task(
    root: DataRoot, items: pa.Table, model: str, config: EmbedConfig | None = None
) -> EmbedSummary:
    """`embed_images`; uncached on purpose: it resumes by itself and a rerun embeds nothing.

    Returns:
        `embed_images`' summary; its ``table_sha256`` is the content hash to pass to the
        zero-shot task.
    """
    return embed_images(root, items, ModelSpec.parse(model), config)
