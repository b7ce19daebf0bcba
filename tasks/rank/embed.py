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
priority, which workers always get). So on 2 cores there is no worker process; instead one
decode *thread* (`Prefetcher`; Pillow's decode and resize release the GIL), at lower priority,
decodes the next batch while the forward pass runs, and when the forward pass is done the main
thread decodes the rest of that batch alongside it. Serial decoding left one core idle for the
whole decode (sandbox CLIP: 0.81 of the raw throughput); now the decode of a batch is hidden
behind the forward pass as far as the cores allow and what is left of it runs on both cores:
per batch about F + D/2 instead of F + D (F the forward pass, D the serial decode), better
where the forward pass leaves a core idle. Measured (sandbox CLIP, 2 cores, quiet, one process
alternating the variants): serial 0.85 of raw, this 0.90; a decode thread at normal priority
0.72-0.89 (it preempts torch's threads); one torch thread beside the decode thread 0.63 (the
forward pass needs both cores). The decode thread runs no torch op on the fast path, so no
OpenMP team of its own competes with the model's (a preprocess of another form runs as it is,
torch ops included). Workers start with ``forkserver`` (``spawn`` where missing;
`tv100.tasks.parallel.mp_context`), with torch preloaded in the server so that each starts in
milliseconds; not ``fork``, which can deadlock a child of a process running Prefect's and
OpenMP's threads.

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
import itertools
import os
import queue
import sys
import threading
from collections.abc import Iterator, Sequence
from io import BytesIO
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from PIL import Image
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
from tv100.tasks.errors import error_text
from tv100.tasks.parallel import mp_context
from tv100.tasks.progress import track
from tv100.tasks.rank.clip import Clip, default_threads, load_clip, set_torch_threads
from tv100.tasks.rank.config import EmbedConfig, EmbedSummary
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


class ImageFiles:
    """Map-style dataset over image files under a data root (picklable for workers).

    Item ``i`` is ``(i, tensor | None, status, error_message | None)``: a read or decode
    failure is reported, not raised, so one bad file never stops a batch.
    """

    def __init__(
        self,
        root_url: str,
        relpaths: Sequence[str | None],
        preprocess: Any,
        draft_side: int | None = None,
    ) -> None:
        self.root_url = root_url
        self.relpaths = list(relpaths)
        self.preprocess = preprocess
        self.draft_side = draft_side
        self._root: DataRoot | None = None

    def __len__(self) -> int:
        return len(self.relpaths)

    def __getstate__(self) -> dict[str, Any]:
        # The filesystem object is rebuilt in each worker instead of pickled.
        return {**self.__dict__, "_root": None}

    def _read(self, rel: str) -> bytes:
        if self._root is None:
            self._root = DataRoot(self.root_url)
        root = self._root
        if root.is_local:
            with open(os.path.join(root.base, rel), "rb") as f:
                return f.read()
        with root.fs.open(root.path(rel), "rb") as f:
            data: bytes = f.read()
        return data

    def decode(self, i: int, steps: Any) -> tuple[Any, str, str | None]:
        """``(steps(image) | None, status, error_message | None)`` for item `i`."""
        rel = self.relpaths[i]
        if not rel:
            return None, "read_error", "no path"
        try:
            data = self._read(rel)
        except OSError as err:
            return None, "read_error", error_text(err)
        try:
            with Image.open(BytesIO(data)) as img:
                if self.draft_side and img.format == "JPEG":
                    img.draft("RGB", (self.draft_side, self.draft_side))
                img.load()
                return steps(img), "ok", None
        except Exception as err:  # Pillow raises many types (OSError, SyntaxError, ...)
            return None, "decode_error", error_text(err)

    def __getitem__(self, i: int) -> tuple[int, Any, str, str | None]:
        tensor, status, message = self.decode(i, self.preprocess)
        return i, tensor, status, message


class FastPreprocess:
    """open_clip's eval transform with to-tensor and normalise done in numpy, in place.

    The PIL steps (resize, crop, RGB conversion) run as they are; for an 8-bit RGB result the
    last two (``ToTensor``: ``/ 255``; ``Normalize``: ``- mean``, ``/ std``) are the same
    float32 operations in the same order written straight into the batch's array: the same
    bits as the torch transform, without its per-image small torch ops and stacking. Any
    other result (a PIL step that yields another mode) goes through the torch steps.
    """

    def __init__(self, pil_steps: Sequence[Any], tensor_steps: Any, mean: Any, std: Any) -> None:
        self.pil_steps = list(pil_steps)
        self.tensor_steps = tensor_steps
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(-1, 1, 1)

    @classmethod
    def of(cls, preprocess: Any) -> FastPreprocess | None:
        """The fast form of `preprocess`, or None when it is not ``[PIL steps..., ToTensor,
        Normalize]`` (then the preprocess is used as it is)."""
        import torch
        from torchvision import transforms as tv

        steps = getattr(preprocess, "transforms", None)
        if not isinstance(preprocess, tv.Compose) or not steps or len(steps) < 2:
            return None
        to_tensor, norm = steps[-2], steps[-1]
        if not (
            isinstance(to_tensor, tv.ToTensor)
            and type(norm) is tv.Normalize
            and torch.get_default_dtype() == torch.float32
            and len(norm.mean) == len(norm.std) == 3
        ):
            return None
        return cls(steps[:-2], tv.Compose([to_tensor, norm]), norm.mean, norm.std)

    def pil(self, img: Image.Image) -> Image.Image:
        for step in self.pil_steps:
            img = step(img)
        return img

    def into(self, img: Any, out: np.ndarray) -> None:
        """Write the preprocessed `img` (the result of `pil`) into `out` ``(3, H, W)``."""
        if isinstance(img, Image.Image) and img.mode == "RGB":
            pixels = np.asarray(img).transpose(2, 0, 1)
            np.divide(pixels, np.float32(255), out=out, dtype=np.float32)
            out -= self.mean
            out /= self.std
        else:
            out[...] = self.tensor_steps(img).numpy()


class _Batch:
    """One batch of items, decoded by the prefetch thread and the consumer together.

    Items are claimed one at a time from a shared counter, so whoever is free decodes the
    next one; the batch is done when every item is. Failures are recorded per item.
    """

    def __init__(self, files: ImageFiles, fast: FastPreprocess | None, start: int, stop: int):
        self.files = files
        self.fast = fast
        self.items = range(start, stop)
        self.out: np.ndarray | None = None
        self.tensors: dict[int, Any] = {}
        self.failures: dict[int, tuple[str, str | None]] = {}
        self.error: BaseException | None = None
        self._claim = itertools.count()
        self._lock = threading.Lock()
        self._finished = 0
        self._done = threading.Event()
        self.stopped = False

    def work(self) -> None:
        """Decode unclaimed items until none is left (safe from several threads)."""
        n = len(self.items)
        while not self.stopped and (k := next(self._claim)) < n:
            try:
                self._decode(k)
            except BaseException as err:  # a bug, not a bad file: re-raised in `result`
                self.error = err
                self.stopped = True
            with self._lock:
                self._finished += 1
                if self._finished == n:
                    self._done.set()
        if self.stopped:
            self._done.set()

    def _decode(self, k: int) -> None:
        i = self.items[k]
        if self.fast is None:
            tensor, status, message = self.files.decode(i, self.files.preprocess)
            if status == "ok":
                self.tensors[k] = tensor
        else:
            img, status, message = self.files.decode(i, self.fast.pil)
            if status == "ok":
                self.fast.into(img, self._slot(k, img))
        if status != "ok":
            self.failures[k] = (status, message)

    def _slot(self, k: int, img: Any) -> np.ndarray:
        with self._lock:
            if self.out is None:
                w, h = img.size
                self.out = np.empty((len(self.items), 3, h, w), np.float32)
        return self.out[k]

    def result(self) -> tuple[list[int], Any, list[tuple[int, str, str | None]]]:
        """``(indices, images, failures)`` as `collate` gives them, once all are decoded."""
        import torch

        self._done.wait()
        if self.error is not None:
            raise self.error
        start = self.items.start
        failed = [(start + k, st, msg) for k, (st, msg) in sorted(self.failures.items())]
        ok = [k for k in range(len(self.items)) if k not in self.failures]
        if not ok:
            return [], None, failed
        if self.fast is None:
            images = torch.stack([self.tensors[k] for k in ok])
        else:
            assert self.out is not None
            images = torch.from_numpy(self.out if not self.failures else self.out[ok])
        return [start + k for k in ok], images, failed


class Prefetcher:
    """Batches decoded one ahead by a background thread (see the module docstring).

    While the consumer runs the forward pass on batch k, the thread decodes batch k + 1;
    when the consumer asks for k + 1 it decodes the items the thread has not reached yet
    alongside it, then hands batch k + 2 to the thread. Pillow releases the GIL while it
    decodes and resizes, so the two really run at once.
    """

    def __init__(self, files: ImageFiles, batch_size: int) -> None:
        self.files = files
        self.batch_size = batch_size
        self.fast = FastPreprocess.of(files.preprocess)
        self._jobs: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="tv100-embed-decode", daemon=True)

    def _run(self) -> None:
        _lower_thread_priority()
        while (batch := self._jobs.get()) is not None:
            batch.work()

    def _batch(self, start: int) -> _Batch:
        stop = min(start + self.batch_size, len(self.files))
        batch = _Batch(self.files, self.fast, start, stop)
        self._jobs.put(batch)
        return batch

    def __iter__(self) -> Iterator[tuple[list[int], Any, list[tuple[int, str, str | None]]]]:
        if not len(self.files):
            return
        self._thread.start()
        upcoming = self._batch(0)
        try:
            for start in range(0, len(self.files), self.batch_size):
                batch = upcoming
                batch.work()  # decode, beside the thread, what it has not reached yet
                result = batch.result()
                if start + self.batch_size < len(self.files):
                    upcoming = self._batch(start + self.batch_size)
                yield result
        finally:
            upcoming.stopped = True
            self._jobs.put(None)
            self._thread.join()


def collate(
    items: list[tuple[int, Any, str, str | None]],
) -> tuple[list[int], Any, list[tuple[int, str, str | None]]]:
    """Stack the decoded images; set the failures aside as ``(index, status, message)``."""
    import torch

    ok = [(i, t) for i, t, status, _ in items if status == "ok"]
    failed = [(i, status, msg) for i, _, status, msg in items if status != "ok"]
    stacked = torch.stack([t for _, t in ok]) if ok else None
    return [i for i, _ in ok], stacked, failed


def _lower_priority(worker_id: int) -> None:
    """DataLoader worker init: when cores are contended, the model's threads go first.

    A decoding worker that preempts one of torch's OpenMP threads stalls the whole parallel
    region; at a lower priority it mostly runs in the gaps.
    """
    del worker_id
    try:
        os.nice(10)
    except OSError:  # not permitted here: run at normal priority
        pass


def _lower_thread_priority() -> None:
    """The decode thread yields to torch's threads (Linux nices threads one by one).

    While the forward pass runs, the thread then takes mostly what torch's threads leave
    idle instead of preempting one of them; the consumer decodes beside it afterwards.
    """
    if not sys.platform.startswith("linux"):  # elsewhere a thread id is no pid
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + 10))
    except OSError:  # not permitted here: run at normal priority
        pass


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
    if workers == 0:
        batches = iter(Prefetcher(dataset, cfg.batch_size))
    else:
        loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
            dataset,  # type: ignore[arg-type]  # any map-style object works
            batch_size=cfg.batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=clip.device.type == "cuda",
            multiprocessing_context=mp_context(preload=["__main__", "torch", __name__]),
            prefetch_factor=cfg.prefetch_batches,
            worker_init_fn=_lower_priority,
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
            yield indices, encode_tensor(clip, images), failures
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
    clip = model if isinstance(model, Clip) else load_clip(model, cfg.device)
    pairs = _items(items)
    already = embedded_ids(root, clip.key)
    pending = [(i, p) for i, p in pairs if i not in already]
    done = done_shards(root, TABLE)
    shards: list[tuple[str, list[tuple[str, str | None]]]] = []
    for start in range(0, len(pending), cfg.shard_size):
        chunk = pending[start : start + cfg.shard_size]
        sid = shard_id(clip.key, [i for i, _ in chunk])
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
    with tracker:
        for indices, vecs, fails in encode_batches(clip, root, [p for _, p in flat], cfg):
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
                table = _shard_table(clip.key, ids, part_vec, part_fail)
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
        model_key=clip.key,
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
