"""Hashes: sha256 for exact duplicates, 64-bit pHash and dHash (imagehash) for near duplicates.

Every hash is stored as lowercase hex so DuckDB can compare them without Python::

    SELECT bit_count(xor(('0x' || a.phash)::UBIGINT, ('0x' || b.phash)::UBIGINT)) AS d ...

Fast path. Decoding a JPEG dominates hashing, and pHash only looks at a 32x32 grey
thumbnail, so JPEGs are decoded at reduced scale: ``Image.draft("L", (s, s))`` makes libjpeg
skip the chroma planes and run its scaled IDCT (1/2, 1/4 or 1/8) so the decoded image keeps
both sides >= s. The thumbnail is then resized with the *box* that ``draft()`` returns: the
reduced image rounds its size up, so resizing the whole of it would shift the geometry by up
to one source block, which (not the DCT scaling) is what used to flip hash bits. Measured on
600 generated photo-like JPEGs (320..1280 px, q 50..95, mixed subsampling/progressive),
agreement with imagehash on the fully decoded image, Hamming <= 2:

======  =====  =====
draft   pHash  dHash
======  =====  =====
64      99.7%  96.5%
96      99.8%  98.8%
======  =====  =====

96 costs the same as 64 at 640x480 (both decode at 1/4) and ~10% more on large images,
so it is the default. Non-JPEG inputs (PNG, WebP, GIF, ...) are never drafted and their
hashes are bit-identical to imagehash's. EXIF orientation is not applied, as in imagehash.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from io import BytesIO
from typing import Any

import imagehash
import numpy as np
import pyarrow as pa
from PIL import Image

from tv100.storage.schemas import HASHES
from tv100.tasks import cancel
from tv100.tasks.clean.config import HASH_BITS, PHASH_SIDE, HashConfig
from tv100.tasks.errors import error_text
from tv100.tasks.localfiles import read_local_file
from tv100.tasks.parallel import map_ordered
from tv100.tasks.progress import track
from tv100.tasks.web.config import HttpConfig

HASH_BYTES = HASH_BITS // 8
#: imagehash.phash resizes to hash_size * highfreq_factor = 8 * 4 pixels square.
PHASH_INPUT = (PHASH_SIDE, PHASH_SIDE)
#: imagehash.dhash resizes to (hash_size + 1, hash_size).
DHASH_INPUT = (9, 8)
_LANCZOS = Image.Resampling.LANCZOS
#: The largest image file read: the HTTP layer's body cap, which bounds every image the
#: collect stage downloads. A larger file (in a folder given to ``tv100 dedupe``) is a
#: ``decode_error`` row naming the cap, never read.
MAX_IMAGE_BYTES = HttpConfig.max_bytes
#: Hashing's progress artifact (`tv100.tasks.progress`).
HASH_PROGRESS = "clean-hash-progress"


def perceptual_hashes(
    img: Image.Image, fast: bool = HashConfig.fast, draft_size: int = HashConfig.draft_size
) -> tuple[str, str]:
    """pHash and dHash of an opened (not yet loaded) image, as 16-digit hex strings.

    Args:
        img: a freshly opened PIL image; drafting only works before it is loaded.
        fast: draft JPEGs to at least ``draft_size`` pixels a side in mode "L".
        draft_size: see `HashConfig.draft_size`.

    Returns:
        ``(phash_hex, dhash_hex)``, equal to ``str(imagehash.phash(img))`` and
        ``str(imagehash.dhash(img))`` exactly for non-JPEG inputs and within a few bits
        for drafted JPEGs.
    """
    box: tuple[float, float, float, float] | None = None
    if fast and img.format == "JPEG":
        drafted = img.draft("L", (draft_size, draft_size))
        if drafted is not None:
            box = drafted[1]  # the original image's extent in drafted pixels
    # One grey conversion shared by both hashes; imagehash would convert twice.
    gray = img.convert("L")
    if box is None:
        box = (0.0, 0.0, float(gray.width), float(gray.height))
    # imagehash resizes with LANCZOS to exactly these sizes; handing it an image that
    # already has that size makes its own resize a copy, so its bit logic is reused.
    ph = imagehash.phash(gray.resize(PHASH_INPUT, _LANCZOS, box=box))
    dh = imagehash.dhash(gray.resize(DHASH_INPUT, _LANCZOS, box=box))
    return str(ph), str(dh)


def hash_bytes(data: bytes, config: HashConfig | None = None) -> dict[str, Any]:
    """Hash one encoded image; never raises.

    Args:
        data: the file's bytes.
        config: `HashConfig` (only `fast` and `draft_size` matter here).

    Returns:
        A dict with the `HASHES` columns except ``image_id``. A file Pillow cannot decode
        gets ``status="decode_error"`` with the reason; its sha256 is still filled in so
        byte-identical broken files are still recognised as copies.
    """
    cfg = config or HashConfig()
    row: dict[str, Any] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "phash": None,
        "dhash": None,
        "width": None,
        "height": None,
        "status": "ok",
        "error_message": None,
    }
    try:
        with Image.open(BytesIO(data)) as img:
            row["width"], row["height"] = img.size
            row["phash"], row["dhash"] = perceptual_hashes(img, cfg.fast, cfg.draft_size)
    except Exception as err:  # Pillow raises many types (OSError, SyntaxError, ...)
        row.update(phash=None, dhash=None, status="decode_error", error_message=error_text(err))
    return row


def hash_file(
    path: str | os.PathLike[str],
    config: HashConfig | None = None,
    max_bytes: int = MAX_IMAGE_BYTES,
) -> dict[str, Any]:
    """Hash one file; an unreadable file is a ``decode_error`` row, never an exception.

    Only a regular file of at most `max_bytes` is read (`tv100.tasks.localfiles`): a FIFO,
    a device (``/dev/zero`` behind an ``x.jpg`` symlink) or a larger file is such a row too.
    """
    try:
        data = read_local_file(path, max_bytes)
    except OSError as err:
        return _unreadable(error_text(err))
    return hash_bytes(data, config)


def _unreadable(message: str) -> dict[str, Any]:
    """The row of a file that could not be read: no hashes, status ``decode_error``."""
    return {
        "sha256": None,
        "phash": None,
        "dhash": None,
        "width": None,
        "height": None,
        "status": "decode_error",
        "error_message": message,
    }


def _hash_item(item: tuple[str, str, HashConfig]) -> dict[str, Any]:
    image_id, path, cfg = item
    return {"image_id": image_id, **hash_file(path, cfg)}


def _crash_row(item: tuple[str, str, HashConfig], err: BaseException) -> dict[str, Any]:
    return {
        "image_id": item[0],
        **_unreadable(f"hashing worker process died: {error_text(err)}"),
    }


def hash_files(
    items: Sequence[tuple[str, str | os.PathLike[str]]], config: HashConfig | None = None
) -> pa.Table:
    """Hash many files on a process pool; one `HASHES` row per item, in input order.

    Args:
        items: ``(image_id, path)`` pairs.
        config: `HashConfig`; `workers` bounds the pool (default 2).

    Returns:
        The `hashes` table. Unreadable or undecodable files are rows with
        ``status="decode_error"`` and the reason in ``error_message``.

    Raises:
        tv100.tasks.cancel.Cancelled: the run was cancelled meanwhile. A signal sent to the
            whole process group also ends the pool's workers, and the images left are then
            rows of a "worker process died": a table never to be written or cached.
    """
    cfg = config or HashConfig()
    work = [(str(image_id), os.fspath(path), cfg) for image_id, path in items]
    with track("hash", len(work), "images", HASH_PROGRESS) as tracker:
        rows = map_ordered(
            _hash_item, work, cfg.workers, cfg.chunksize, on_crash=_crash_row, progress=tracker
        )
    cancel.check()
    return pa.Table.from_pylist(rows, schema=HASHES)


def hex_to_code(hex_hash: str) -> bytes:
    """A 16-digit hex hash as the 8 bytes FAISS binary indexes take.

    Raises:
        ValueError: naming the value when it is not 16 hex digits.
    """
    if len(hex_hash) != 2 * HASH_BYTES:
        raise ValueError(f"hash {hex_hash!r} is invalid; expected {2 * HASH_BYTES} hex digits")
    return bytes.fromhex(hex_hash)


def codes_array(hex_hashes: Sequence[str]) -> np.ndarray:
    """``(n, 8)`` uint8 array of hex hashes, for FAISS binary indexes."""
    if not hex_hashes:
        return np.zeros((0, HASH_BYTES), dtype=np.uint8)
    raw = b"".join(hex_to_code(h) for h in hex_hashes)
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(hex_hashes), HASH_BYTES).copy()


def hamming(a: str, b: str) -> int:
    """Hamming distance of two hex hashes of equal length."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
