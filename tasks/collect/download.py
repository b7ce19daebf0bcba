"""Collect, second half: download every search hit politely and store it normalised.

Validation is by decoding, never by extension or Content-Type. Each hit ends as exactly
one `images` row whose `status` says what happened. Output is sharded (data first,
done-marker last) so a killed run resumes where it stopped, then compacted into one
sorted table; stored files are content-addressed, so a rerun never duplicates them.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

import pyarrow as pa
from PIL import Image, ImageOps, UnidentifiedImageError
from prefect import task

from tv100.storage.images import ImageStore
from tv100.storage.root import DataRoot, resolve_root
from tv100.storage.schemas import IMAGES
from tv100.storage.tables import compact, done_shards, read_table, table_exists, write_shard
from tv100.tasks.collect.search import canonical_url
from tv100.tasks.web.http import Fetched, HttpClient, HttpConfig

log = logging.getLogger("tv100.download")

STATUSES = (
    "ok",
    "http_error",
    "timeout",
    "too_large",
    "not_image",
    "decode_error",
    "opted_out",
    "blocked",
)
#: img2dataset's defaults: directives in X-Robots-Tag that opt an image out of AI datasets.
OPT_OUT_DIRECTIVES = ("noai", "noimageai", "noindex", "noimageindex")
SORT_KEYS = ["series_id", "engine", "rank", "image_id"]

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class DownloadConfig:
    """Knobs of the downloader.

    Args:
        max_side: the stored image's longer side is at most this (pixels).
        jpeg_quality: quality of the stored JPEG.
        max_pixels: larger source images are refused as decompression bombs.
        honour_opt_out: skip images whose X-Robots-Tag carries an opt-out directive.
        opt_out_directives: the directives that count as opting out.
        shard_size: hits per output shard (the unit of resume).
        processes: worker processes, each with its own event loop and decode threads (one
            Python process cannot keep two cores busy: the event loop holds the GIL); the
            per-host concurrency and rate limits are divided among them.
        decode_workers: threads decoding and resizing per process (Pillow releases the GIL
            there).
        in_flight: downloads in flight at once (bounded further per host by `http`).
        progress_every: log a progress line every this many hits.
        http: the HTTP layer's configuration.
    """

    max_side: int = 512
    jpeg_quality: int = 90
    max_pixels: int = 64_000_000
    honour_opt_out: bool = True
    opt_out_directives: tuple[str, ...] = OPT_OUT_DIRECTIVES
    shard_size: int = 256
    processes: int = 2
    decode_workers: int = 1
    in_flight: int = 32
    progress_every: int = 500
    http: HttpConfig = field(default_factory=lambda: HttpConfig(timeout_s=15.0, retries=2))

    def __post_init__(self) -> None:
        checks = {
            "max_side": (self.max_side, 16, 16384),
            "jpeg_quality": (self.jpeg_quality, 1, 100),
            "max_pixels": (self.max_pixels, 1, 10**10),
            "shard_size": (self.shard_size, 1, 1_000_000),
            "processes": (self.processes, 1, 256),
            "decode_workers": (self.decode_workers, 1, 256),
            "in_flight": (self.in_flight, 1, 10_000),
            "progress_every": (self.progress_every, 1, 10**9),
        }
        for name, (value, low, high) in checks.items():
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(
                    f"DownloadConfig.{name}={value!r} is invalid; expected an integer in "
                    f"[{low}, {high}]"
                )
        object.__setattr__(
            self, "opt_out_directives", tuple(d.lower() for d in self.opt_out_directives)
        )


def image_id_for(series_id: str, url: str) -> str:
    """A stable id per (series, image URL): the same pair always gives the same id."""
    return hashlib.sha256(f"{series_id}\x00{url}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Normalised:
    """The outcome of decoding one downloaded body."""

    status: str
    error_message: str | None = None
    data: bytes = b""
    width: int | None = None
    height: int | None = None
    format: str | None = None


#: Leading bytes of the formats Pillow decodes; bytes that start so but fail to decode are
#: a broken image (`decode_error`), anything else is `not_image`.
_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF
    b"MM\x00*",
)


def _looks_like_image(content: bytes) -> bool:
    return content.startswith(_IMAGE_MAGIC) or (
        content[:4] == b"RIFF" and content[8:12] == b"WEBP"
    )


def _looks_like_markup(content: bytes) -> bool:
    head = content[:512].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{", b"["))


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB on white for anything with transparency; 16-bit and CMYK converted properly."""
    if im.mode in ("I;16", "I;16B", "I;16L"):
        im = im.point(lambda v: v / 256).convert("L")
    elif im.mode == "I":  # 32-bit ints: Pillow's mode for 16-bit PGM/PNM and some TIFFs
        high = im.getextrema()[1]
        if isinstance(high, int | float) and high > 255:  # 16-bit (or wider) tones
            scale = 1 / 256 if high <= 65535 else 255 / high
            im = im.point(lambda v: v * scale)
        im = im.convert("L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB") if im.mode != "RGB" else im


def normalise(content: bytes, config: DownloadConfig) -> Normalised:
    """Decode, refuse bombs, EXIF-transpose, convert to RGB, shrink, re-encode as JPEG.

    JPEGs are decoded at reduced scale (`Image.draft`), the cheapest way to shrink them.
    """
    if not content:
        return Normalised("not_image", "empty body")
    try:
        im = Image.open(io.BytesIO(content))
    except UnidentifiedImageError:
        if _looks_like_image(content):
            return Normalised("decode_error", "corrupt image: header recognised, data not")
        what = "markup/text" if _looks_like_markup(content) else "unrecognised bytes"
        return Normalised("not_image", f"not an image ({what}, {len(content)} bytes)")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return Normalised("decode_error", f"decompression bomb refused: {err}")
    except Exception as err:  # Pillow raises many types on hostile headers
        return Normalised("decode_error", f"cannot open image: {type(err).__name__}: {err}")
    fmt = im.format
    w, h = im.size
    if w <= 0 or h <= 0:
        return Normalised("decode_error", f"invalid dimensions {w}x{h}", format=fmt)
    if w * h > config.max_pixels:
        return Normalised(
            "decode_error",
            f"decompression bomb refused: {w}x{h} = {w * h} pixels > max_pixels="
            f"{config.max_pixels}",
            format=fmt,
        )
    try:
        scale = config.max_side / max(w, h)
        if fmt == "JPEG" and scale < 1:
            # draft picks the largest DCT scale keeping both sides >= the requested size.
            im.draft("RGB", (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
        im.load()
        rgb = _to_rgb(ImageOps.exif_transpose(im) or im)
        if max(rgb.size) > config.max_side:
            rgb.thumbnail((config.max_side, config.max_side), Image.Resampling.BICUBIC)
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=config.jpeg_quality, optimize=False)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return Normalised("decode_error", f"decompression bomb refused: {err}", format=fmt)
    except Exception as err:  # truncated or corrupt data surfaces here
        return Normalised("decode_error", f"cannot decode {fmt} image: {err}", format=fmt)
    return Normalised("ok", None, out.getvalue(), rgb.size[0], rgb.size[1], fmt)


def opted_out(headers: dict[str, str], directives: Iterable[str]) -> str | None:
    """The opt-out directive found in X-Robots-Tag (``noai``, ``bot: noimageai`` ...)."""
    value = headers.get("x-robots-tag", "")
    wanted = set(directives)
    for part in value.lower().replace(";", ",").split(","):
        token = part.strip().rsplit(":", 1)[-1].strip()
        if token in wanted:
            return token
    return None


_HTTP_STATUS_MAP = {
    "http_error": "http_error",
    "timeout": "timeout",
    "too_large": "too_large",
    "blocked": "blocked",
    "error": "http_error",
}


@dataclass
class _Outcome:
    """What happened to one URL; shared by every hit that names it."""

    fetched: Fetched | None
    status: str
    error_message: str | None
    source_sha256: str | None = None
    sha256: str | None = None
    nbytes: int | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    path: str | None = None


def _store(content: bytes, store: ImageStore, config: DownloadConfig) -> _Outcome:
    norm = normalise(content, config)
    source_sha = hashlib.sha256(content).hexdigest()
    if norm.status != "ok":
        return _Outcome(None, norm.status, norm.error_message, source_sha, format=norm.format)
    sha, rel = store.put(norm.data, "jpg")
    return _Outcome(
        None, "ok", None, source_sha, sha, len(norm.data), norm.width, norm.height,
        norm.format, rel,
    )


async def _fetch_one(
    url: str,
    client: HttpClient,
    pool: ThreadPoolExecutor,
    store: ImageStore,
    config: DownloadConfig,
) -> _Outcome:
    fetched = await client.get(url)
    if fetched.status != "ok":
        out = _Outcome(
            fetched, _HTTP_STATUS_MAP.get(fetched.status, "http_error"), fetched.error_message
        )
        return out
    if config.honour_opt_out:
        directive = opted_out(fetched.headers, config.opt_out_directives)
        if directive:
            return _Outcome(fetched, "opted_out", f"X-Robots-Tag: {directive}")
    loop = asyncio.get_running_loop()
    out = await loop.run_in_executor(pool, _store, fetched.content, store, config)
    out.fetched = fetched
    return out


def _row(hit: dict[str, Any], out: _Outcome) -> dict[str, Any]:
    f = out.fetched
    return {
        "image_id": hit["image_id"],
        "series_id": hit["series_id"],
        "engine": hit["engine"],
        "rank": hit["rank"],
        "url": hit["image_url"],
        "final_url": f.final_url if f else None,
        "status": out.status,
        "http_status": f.http_status if f else None,
        "error_message": out.error_message,
        "source_sha256": out.source_sha256,
        "sha256": out.sha256,
        "bytes": out.nbytes,
        "width": out.width,
        "height": out.height,
        "format": out.format,
        "path": out.path,
        "downloaded_at": datetime.now(UTC),
    }


def plan_hits(hits: pa.Table) -> list[dict[str, Any]]:
    """One download per distinct image URL per series, in a deterministic order.

    Engines overlap: a URL found by several engines for one series becomes one `images`
    row carrying the best-ranked hit (ties broken by engine name); every hit maps to its
    row by (series_id, canonical URL). The same URL under two series stays two rows —
    the clean stage needs both to see the ambiguous label.
    """
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in hits.select(["series_id", "engine", "rank", "image_url"]).to_pylist():
        canon = canonical_url(r["image_url"]) or r["image_url"]
        key = (r["series_id"], canon)
        cur = best.get(key)
        if cur is None or (r["rank"], r["engine"]) < (cur["rank"], cur["engine"]):
            best[key] = {**r, "image_id": image_id_for(r["series_id"], canon)}
    return sorted(
        best.values(), key=lambda r: (r["series_id"], r["engine"], r["rank"], r["image_id"])
    )


def shard_id(image_ids: list[str]) -> str:
    """Content-derived: the same pending hits always form the same shard."""
    return hashlib.sha256("\n".join(image_ids).encode()).hexdigest()[:16]


def done_image_ids(root: DataRoot) -> set[str]:
    if not table_exists(root, "images"):
        return set()
    return set(read_table(root, "images").column("image_id").to_pylist())


async def _download(
    pending: list[dict[str, Any]],
    root: DataRoot,
    config: DownloadConfig,
    total: int,
    already: int,
    progress: ProgressFn | None,
) -> int:
    store = ImageStore(root)
    sem = asyncio.Semaphore(config.in_flight)
    outcomes: dict[str, asyncio.Future[_Outcome]] = {}
    done = already
    started = time.monotonic()

    with ThreadPoolExecutor(config.decode_workers, thread_name_prefix="tv100-decode") as pool:
        async with HttpClient(config.http) as client:

            async def by_url(url: str) -> _Outcome:
                async with sem:
                    return await _fetch_one(url, client, pool, store, config)

            def outcome(url: str) -> asyncio.Future[_Outcome]:
                # One download per URL per run, however many hits name it.
                if url not in outcomes:
                    outcomes[url] = asyncio.ensure_future(by_url(url))
                return outcomes[url]

            async def shard(chunk: list[dict[str, Any]]) -> None:
                nonlocal done
                results = await asyncio.gather(*(outcome(h["image_url"]) for h in chunk))
                rows = [_row(h, o) for h, o in zip(chunk, results, strict=True)]
                ids = [h["image_id"] for h in chunk]
                await asyncio.get_running_loop().run_in_executor(
                    None,
                    write_shard,
                    root,
                    "images",
                    shard_id(ids),
                    pa.Table.from_pylist(rows, schema=IMAGES),
                )
                before, done = done, done + len(chunk)
                if progress:
                    progress(done, total)
                if done // config.progress_every != before // config.progress_every:
                    rate = (done - already) / max(time.monotonic() - started, 1e-9)
                    log.info("downloaded %d/%d hits (%.1f/s)", done, total, rate)

            chunks = [
                pending[i : i + config.shard_size]
                for i in range(0, len(pending), config.shard_size)
            ]
            # Shards run concurrently (downloads interleave) but each is written whole.
            await asyncio.gather(*(shard(c) for c in chunks))
    return done - already


def _download_group(
    chunks: list[list[dict[str, Any]]], root_url: str, config: DownloadConfig
) -> int:
    """One worker process's share: its own event loop, HTTP client and decode threads."""
    pending = [h for c in chunks for h in c]
    return asyncio.run(_download(pending, DataRoot(root_url), config, len(pending), 0, None))


def _per_process(config: DownloadConfig) -> DownloadConfig:
    """Split the politeness limits so all processes together honour the configured ones."""
    n = config.processes
    http = config.http
    rate = http.rate_per_host / n if http.rate_per_host else None
    return replace(
        config,
        processes=1,
        in_flight=max(1, config.in_flight // n),
        http=replace(
            http,
            per_host=max(1, http.per_host // n),
            max_connections=max(1, http.max_connections // n),
            rate_per_host=rate,
        ),
    )


def _stop_pool(pool: ProcessPoolExecutor, grace_s: float = 5.0) -> None:
    """Stop a worker pool at once: queued work cancelled, running workers terminated.

    A worker killed mid-shard loses only that shard's unwritten rows (every shard is
    written whole); the rerun fetches them again.
    """
    workers = list((getattr(pool, "_processes", None) or {}).values())  # no public handle
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    deadline = time.monotonic() + grace_s
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join(1.0)


def _run_processes(
    pending: list[dict[str, Any]],
    root: DataRoot,
    config: DownloadConfig,
    total: int,
    already: int,
    progress: ProgressFn | None,
) -> int:
    chunks = [
        pending[i : i + config.shard_size] for i in range(0, len(pending), config.shard_size)
    ]
    groups = [chunks[i :: config.processes] for i in range(config.processes)]
    each = _per_process(config)
    before = len(done_shards(root, "images"))
    ctx = multiprocessing.get_context("forkserver")  # safe beside Prefect's threads
    pool = ProcessPoolExecutor(len(groups), mp_context=ctx)
    try:
        futures = [pool.submit(_download_group, g, root.url, each) for g in groups if g]
        last = -1
        while not all(f.done() for f in futures):
            time.sleep(0.5)
            shards = len(done_shards(root, "images")) - before
            done = already + min(len(pending), shards * config.shard_size)
            if progress and done != last:
                progress(done, total)
                last = done
        fetched = sum(f.result() for f in futures)
    except BaseException:  # SIGTERM (Prefect's TerminationSignal), Ctrl-C, an error
        _stop_pool(pool)  # now: the shards already written are the resume point
        raise
    pool.shutdown()
    if progress:
        progress(total, total)
    return fetched


def download_hits(
    hits: pa.Table,
    root: DataRoot,
    config: DownloadConfig | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Download every image without an `images` row yet; compact; return counts by status.

    Args:
        hits: the `search_hits` table (series_id, engine, rank, image_url at least).
        root: the data root (image store and tables).
        config: downloader knobs.
        progress: called with (hits done, hits total) as shards complete.
    """
    config = config or DownloadConfig()
    plan = plan_hits(hits)
    finished = done_image_ids(root)
    pending = [h for h in plan if h["image_id"] not in finished]
    fetched = 0
    already = len(plan) - len(pending)
    if pending and config.processes > 1 and len(pending) > config.shard_size:
        fetched = _run_processes(pending, root, config, len(plan), already, progress)
    elif pending:
        fetched = asyncio.run(
            _download(pending, root, replace(config, processes=1), len(plan), already, progress)
        )
    if done_shards(root, "images"):
        compact(root, "images", SORT_KEYS)
    counts: dict[str, int] = {}
    if table_exists(root, "images"):
        for s in read_table(root, "images").column("status").to_pylist():
            counts[s] = counts.get(s, 0) + 1
    return {"hits": len(plan), "downloaded_now": fetched, "status_counts": counts}


# --- Prefect task: a thin wrapper ---------------------------------------------------------


@task(name="download-images")
def download_task(data: str, hits: pa.Table, config: DownloadConfig) -> dict[str, Any]:
    """Uncached on purpose: the downloader resumes by itself and a rerun fetches nothing.

    Publishes a Prefect progress artifact updated after every shard.
    """
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    artifact_id = cast(
        UUID,
        create_progress_artifact(
            progress=0.0, key="collect-download-progress", description="images downloaded"
        ),
    )

    bar = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        update_progress_artifact(artifact_id, progress=100.0 * done / max(total, 1))
        if bar:  # a terminal: the CLI user gets a progress bar too
            filled = int(30 * done / max(total, 1))
            end = "\n" if done >= total else ""
            sys.stderr.write(f"\rimages [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}{end}")
            sys.stderr.flush()

    return download_hits(hits, resolve_root(data).ensure(), config, progress)
