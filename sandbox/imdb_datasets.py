"""The made-up IMDb's non-commercial datasets, as files and over HTTP.

``title.basics``, ``title.ratings`` and ``title.akas`` (``.tsv.gz``): tab-separated, ``\\N``
for null, no quoting, deterministic gzip bytes. Served under ``/datasets/`` with ETag and
Last-Modified (304 on revalidation).
"""

from __future__ import annotations

import gzip
import hashlib
import re
import threading
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


_DATASET_RE = re.compile(r"^/datasets/(?P<name>[A-Za-z.]+)$")


class DatasetSite:
    """Route handler serving the datasets of one `World` under ``/datasets/``."""

    prefixes: tuple[str, ...] = ("/datasets/",)

    def __init__(self, world: World) -> None:
        self.world = world
        self._lock = threading.Lock()
        self._datasets: dict[str, tuple[bytes, str]] | None = None

    def datasets(self) -> dict[str, tuple[bytes, str]]:
        """File name → (gzip bytes, ETag), built once."""
        with self._lock:
            if self._datasets is None:
                self._datasets = {
                    name: (data, '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"')
                    for name, data in build_datasets(self.world).items()
                }
            return self._datasets

    def handle(self, request: Request) -> Response | None:
        """Answer a dataset request (None → 404)."""
        if m := _DATASET_RE.match(request.path):
            return self._dataset(request, m.group("name"))
        return None

    def _dataset(self, request: Request, name: str) -> Response | None:
        entry = self.datasets().get(name)
        if entry is None:
            return None
        data, etag = entry
        modified = self.world.datasets_modified
        headers = {
            "ETag": etag,
            "Last-Modified": format_datetime(modified, usegmt=True),
            "Content-Type": "binary/octet-stream",
            "Accept-Ranges": "bytes",
        }
        inm = request.headers.get("if-none-match")
        ims = request.headers.get("if-modified-since")
        not_modified = False
        if inm is not None:
            tags = {x.strip().removeprefix("W/") for x in inm.split(",")}
            not_modified = "*" in tags or etag in tags
        elif ims is not None:
            try:
                since = parsedate_to_datetime(ims)
                not_modified = since.tzinfo is not None and modified <= since
            except (TypeError, ValueError, IndexError):
                not_modified = False
        if not_modified:
            return Response(status=304, headers=headers)
        return Response(status=200, headers=headers, body=data)
