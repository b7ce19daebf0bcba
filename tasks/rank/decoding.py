"""Decoding for a CLIP image tower: files to normalised batches, overlapped with the model.

`tv100.tasks.rank.embed` explains the plan per core count (workers, threads, why).

`ImageFiles` reads, drafts and decodes one stored image (a read or decode failure is a
status, never an exception); `FastPreprocess` is open_clip's preprocess with the final
to-tensor and normalise in numpy, bit for bit; `Prefetcher` decodes the next batch in a
lower-priority thread while the model runs, the consumer finishing it alongside;
`Lanes` decodes and encodes whole batches in several one-torch-thread threads side by side
(the CPU plan with 2 threads); `collate` stacks a batch for the DataLoader path.
"""

from __future__ import annotations

import itertools
import os
import queue
import sys
import threading
from collections.abc import Iterator, Sequence
from io import BytesIO
from typing import Any

import numpy as np
from PIL import Image

from tv100.storage.root import DataRoot
from tv100.tasks.errors import error_text


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
        lower_thread_priority()
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


class Lanes:
    """Batches decoded and encoded side by side by `lanes` threads of one torch thread each.

    Each lane claims the next batch, decodes it and runs the forward pass on it with one
    intra-op thread, so on 2 cores two lanes keep both cores busy with no OpenMP team to
    synchronise and no core idle while a batch decodes (see `tv100.tasks.rank.embed`).
    Batches are yielded in input order; a lane runs at most `lanes` batches ahead.
    """

    def __init__(self, files: ImageFiles, batch_size: int, encode: Any, lanes: int) -> None:
        self.files = files
        self.batch_size = batch_size
        self.encode = encode
        self.fast = FastPreprocess.of(files.preprocess)
        self.starts = range(0, len(files), batch_size)
        self._claim = itertools.count()
        self._done: dict[int, Any] = {}
        self._ready = threading.Condition()
        self._room = threading.Semaphore(2 * lanes)
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._lane, name="tv100-embed-lane", daemon=True)
            for _ in range(min(lanes, len(self.starts)))
        ]

    def _lane(self) -> None:
        import torch

        torch.set_num_threads(1)  # this thread's OpenMP team only
        while True:
            self._room.acquire()
            k = next(self._claim)
            if self._stopped or k >= len(self.starts):
                return
            try:
                start = self.starts[k]
                batch = _Batch(
                    self.files, self.fast, start, min(start + self.batch_size, len(self.files))
                )
                batch.work()
                indices, images, failures = batch.result()
                vectors = np.zeros((0, 0), np.float32) if images is None else self.encode(images)
                out: Any = (indices, vectors, failures)
            except BaseException as err:  # a bug, not a bad file: re-raised by the consumer
                out = err
            with self._ready:
                self._done[k] = out
                self._ready.notify_all()

    def __iter__(self) -> Iterator[tuple[list[int], np.ndarray, list[tuple[int, str, str | None]]]]:
        for thread in self._threads:
            thread.start()
        try:
            for k in range(len(self.starts)):
                with self._ready:
                    while k not in self._done:
                        self._ready.wait()
                    out = self._done.pop(k)
                if isinstance(out, BaseException):
                    raise out
                self._room.release()
                yield out
        finally:
            self._stopped = True
            for _ in self._threads:
                self._room.release()
            for thread in self._threads:
                thread.join()


def collate(
    items: list[tuple[int, Any, str, str | None]],
) -> tuple[list[int], Any, list[tuple[int, str, str | None]]]:
    """Stack the decoded images; set the failures aside as ``(index, status, message)``."""
    import torch

    ok = [(i, t) for i, t, status, _ in items if status == "ok"]
    failed = [(i, status, msg) for i, _, status, msg in items if status != "ok"]
    stacked = torch.stack([t for _, t in ok]) if ok else None
    return [i for i, _ in ok], stacked, failed


def lower_worker_priority(worker_id: int) -> None:
    """DataLoader worker init: when cores are contended, the model's threads go first.

    A decoding worker that preempts one of torch's OpenMP threads stalls the whole parallel
    region; at a lower priority it mostly runs in the gaps.
    """
    del worker_id
    try:
        os.nice(10)
    except OSError:  # not permitted here: run at normal priority
        pass


def lower_thread_priority() -> None:
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
