"""The made-up IMDb's non-commercial datasets, as files and over HTTP.

``title.basics``, ``title.ratings`` and ``title.akas`` (``.tsv.gz``): tab-separated, ``\\N``
for null, no quoting, deterministic gzip bytes. Served under ``/datasets/`` as a static file
server does (`serve_file`): ETag and Last-Modified (304 on revalidation), one byte range (206
with Content-Range, 416 past the end), variants with a missing file or a transfer broken off
midway (`DatasetSite`). `DatasetFolder` serves big files from disk the same way.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from tv100.sandbox.imdb import IMDB_LANGUAGE_ID
from tv100.sandbox.server import Request, Response
from tv100.sandbox.world import COUNTRY_LANGUAGE, Title, World
from tv100.storage.atomic import write_file_atomic

DATASET_NAMES: tuple[str, ...] = (
    "title.basics.tsv.gz",
    "title.ratings.tsv.gz",
    "title.akas.tsv.gz",
)

_NULL = "\\N"


def _cell(value: object) -> str:
    if value is None:
        return _NULL
    text = str(value)
    if "\t" in text or "\n" in text or "\r" in text:
        raise ValueError(f"value {text!r} cannot be written to a TSV cell")
    return text


def _tsv(header: list[str], rows: list[list[object]]) -> bytes:
    lines = ["\t".join(header)]
    lines.extend("\t".join(_cell(v) for v in row) for row in rows)
    return ("\n".join(lines) + "\n").encode("utf-8")


def dataset_tables(world: World) -> dict[str, bytes]:
    """The three datasets as uncompressed TSV bytes (keys: ``title.basics.tsv`` ...)."""
    basics: list[list[object]] = []
    ratings: list[list[object]] = []
    akas: list[list[object]] = []
    for t in world.titles:
        basics.append(
            [
                t.series_id,
                t.kind,
                t.title,
                t.original_title,
                1 if t.is_adult else 0,
                t.start_year,
                t.end_year,
                t.runtime_minutes,
                ",".join(t.genres) if t.genres else None,
            ]
        )
        if t.rating is not None and t.num_votes is not None:
            ratings.append([t.series_id, f"{t.rating:.1f}", t.num_votes])
        akas.extend(_aka_rows(t))
    return {
        "title.basics.tsv": _tsv(
            [
                "tconst",
                "titleType",
                "primaryTitle",
                "originalTitle",
                "isAdult",
                "startYear",
                "endYear",
                "runtimeMinutes",
                "genres",
            ],
            basics,
        ),  # fmt: skip
        "title.ratings.tsv": _tsv(["tconst", "averageRating", "numVotes"], ratings),
        "title.akas.tsv": _tsv(
            [
                "titleId",
                "ordering",
                "title",
                "region",
                "language",
                "types",
                "attributes",
                "isOriginalTitle",
            ],
            akas,
        ),  # fmt: skip
    }


def _aka_rows(t: Title) -> list[list[object]]:
    """akas rows like IMDb's: the original-title row has no region; one row per production
    country carries the original title (and its language); the world-wide English title is
    region XWW; the German title, when different, is region DE."""
    rows: list[list[object]] = [[t.original_title, None, None, "original", None, 1]]
    for country in t.countries:
        native = COUNTRY_LANGUAGE.get(country)
        lang = IMDB_LANGUAGE_ID.get(native) if native in t.languages and native else None
        rows.append([t.original_title, country, lang, "imdbDisplay", None, 0])
    if t.title != t.original_title:
        rows.append([t.title, "XWW", "en", "imdbDisplay", None, 0])
        if "US" not in t.countries:
            rows.append([t.title, "US", None, "imdbDisplay", None, 0])
    if t.title_de != t.original_title and "DE" not in t.countries:
        rows.append([t.title_de, "DE", None, "imdbDisplay", None, 0])
    if t.kind == "movie" and t.title != t.original_title:
        rows.append([t.title, "GB", None, "festival", "English title", 0])
    return [[t.series_id, i + 1, *row] for i, row in enumerate(rows)]


def build_datasets(world: World) -> dict[str, bytes]:
    """The three datasets gzip-compressed, deterministically (mtime 0, no file name)."""
    return {
        name + ".gz": gzip.compress(data, compresslevel=6, mtime=0)
        for name, data in dataset_tables(world).items()
    }


def write_datasets(world: World, directory: str | Path) -> dict[str, Path]:
    """Write ``title.basics.tsv.gz``, ``title.ratings.tsv.gz``, ``title.akas.tsv.gz``.

    Args:
        world: the ground truth.
        directory: target folder (created if missing).

    Returns:
        File name → path written.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, data in build_datasets(world).items():
        path = folder / name
        write_file_atomic(path, data)
        out[name] = path
    return out


_DATASET_RE = re.compile(r"^/datasets/(?:(?P<variant>[a-z0-9-]+)/)?(?P<name>[A-Za-z.]+)$")
_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class ServedFile:
    """One file as the dataset site serves it: its bytes (in memory or on disk), validators.

    Attributes:
        size: bytes.
        etag: strong ETag, quoted.
        modified: Last-Modified (timezone-aware).
        data: the bytes, for small files held in memory.
        path: the file on disk, read in 1 MiB blocks as it is sent (large files).
    """

    size: int
    etag: str
    modified: datetime
    data: bytes | None = None
    path: Path | None = None

    @classmethod
    def from_path(cls, path: Path) -> ServedFile:
        """A file on disk; its ETag and Last-Modified come from its size and mtime."""
        st = path.stat()
        mtime = datetime.fromtimestamp(int(st.st_mtime), tz=UTC)
        return cls(st.st_size, f'"{st.st_size:x}-{st.st_mtime_ns:x}"', mtime, path=path)

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (exclusive), in blocks."""
        if self.data is not None:
            for pos in range(start, end, _READ_BLOCK):
                yield self.data[pos : min(end, pos + _READ_BLOCK)]
            return
        assert self.path is not None
        with self.path.open("rb") as fh:
            fh.seek(start)
            left = end - start
            while left > 0:
                block = fh.read(min(left, _READ_BLOCK))
                if not block:
                    return
                left -= len(block)
                yield block


def _cut(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """The first `limit` bytes of `chunks` (a transfer the server breaks off)."""
    left = limit
    for chunk in chunks:
        if left <= 0:
            return
        yield chunk[:left]
        left -= len(chunk)


def _not_modified(request: Request, f: ServedFile) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = {x.strip().removeprefix("W/") for x in inm.split(",")}
        return "*" in tags or f.etag in tags
    ims = request.headers.get("if-modified-since")
    if ims is not None:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError, IndexError):
            return False
        return since.tzinfo is not None and f.modified <= since
    return False


def _byte_range(request: Request, f: ServedFile) -> tuple[int, int] | None | str:
    """The requested ``(start, end)`` (end exclusive); None: the whole file; "416": none
    of it. One range only (a multi-range or malformed header is ignored, as RFC 9110
    allows), and only when If-Range, if sent, still matches the file."""
    header = request.headers.get("range")
    m = _RANGE_RE.match(header or "")
    if m is None or (m.group(1) == "" and m.group(2) == ""):
        return None
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != f.etag:
        try:
            when = parsedate_to_datetime(if_range)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None or when != f.modified:
            return None
    first, last = m.group(1), m.group(2)
    if first == "":  # the last N bytes
        n = int(last)
        return (max(0, f.size - n), f.size) if n > 0 else "416"
    start = int(first)
    end = min(f.size, int(last) + 1) if last else f.size
    if start >= f.size or end <= start:
        return "416"
    return start, end


def serve_file(request: Request, f: ServedFile, cut_after: int | None = None) -> Response:
    """Answer a GET/HEAD of `f` like a static file server (IMDb's is S3 behind CloudFront).

    ETag / Last-Modified with 304 on If-None-Match / If-Modified-Since; one byte range
    (206 with Content-Range, 416 when it starts past the end, If-Range honoured).

    Args:
        request: the request.
        f: the file.
        cut_after: a fault: send only this many bytes of the body (its Content-Length still
            says the whole), then close the connection.
    """
    headers = {
        "ETag": f.etag,
        "Last-Modified": format_datetime(f.modified, usegmt=True),
        "Content-Type": "binary/octet-stream",
        "Accept-Ranges": "bytes",
    }
    if _not_modified(request, f):
        return Response(status=304, headers=headers)
    span = _byte_range(request, f)
    if span == "416":
        headers["Content-Range"] = f"bytes */{f.size}"
        return Response(status=416, headers=headers)
    status, (start, end) = (200, (0, f.size)) if span is None else (206, span)
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{f.size}"
    if cut_after is not None:
        return Response(
            status=status,
            headers=headers,
            chunks=_cut(f.chunks(start, end), cut_after),
            content_length=end - start,
            close=True,
        )
    if f.data is not None and status == 200:
        return Response(status=200, headers=headers, body=f.data)
    return Response(
        status=status, headers=headers, chunks=f.chunks(start, end), content_length=end - start
    )


class DatasetSite:
    """Route handler serving the datasets of one `World` under ``/datasets/``.

    Variants, for the tests of what goes wrong (the same three files otherwise):

    - ``/datasets/no-<kind>/``: ``title.<kind>.tsv.gz`` is missing (404).
    - ``/datasets/cut-<key>/``: the first request of each file with that key is broken off
      after half its body (a resume can then continue it); later ones are served whole.
    """

    prefixes: tuple[str, ...] = ("/datasets/",)

    def __init__(self, world: World) -> None:
        self.world = world
        self._lock = threading.Lock()
        self._datasets: dict[str, ServedFile] | None = None
        self._cut_done: set[tuple[str, str]] = set()

    def datasets(self) -> dict[str, ServedFile]:
        """File name → the file as served, built once."""
        with self._lock:
            if self._datasets is None:
                modified = self.world.datasets_modified
                self._datasets = {
                    name: ServedFile(
                        len(data),
                        '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"',
                        modified,
                        data=data,
                    )
                    for name, data in build_datasets(self.world).items()
                }
            return self._datasets

    def handle(self, request: Request) -> Response | None:
        """Answer a dataset request (None → 404)."""
        m = _DATASET_RE.match(request.path)
        if m is None:
            return None
        variant, name = m.group("variant") or "", m.group("name")
        f = self.datasets().get(name)
        if f is None or (variant.startswith("no-") and name == f"title.{variant[3:]}.tsv.gz"):
            return None
        cut_after = None
        if variant.startswith("cut-") and request.method == "GET":
            with self._lock:
                first = (variant, name) not in self._cut_done
                self._cut_done.add((variant, name))
            cut_after = f.size // 2 if first else None
        elif variant and not variant.startswith(("no-", "cut-")):
            return None
        return serve_file(request, f, cut_after)


class DatasetFolder:
    """Route handler serving every file of a folder on disk under `prefix` (big files).

    Files are read in blocks as they are sent, never whole; validators come from their
    size and mtime. `bench/discover.py` serves IMDb-sized generated files this way.
    """

    def __init__(self, folder: str | Path, prefix: str = "/files/") -> None:
        self.folder = Path(folder)
        self.prefixes: tuple[str, ...] = (prefix,)

    def handle(self, request: Request) -> Response | None:
        """Answer a file request (None → 404)."""
        name = request.path[len(self.prefixes[0]) :]
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or name.startswith("."):
            return None
        path = self.folder / name
        if not path.is_file():
            return None
        return serve_file(request, ServedFile.from_path(path))
