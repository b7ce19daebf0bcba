"""Discover benchmark: IMDb-sized dataset files over loopback, tv100 vs DuckDB's read_csv.

Generates ``title.basics`` (12 M rows), ``title.ratings`` (1.5 M) and ``title.akas`` (50 M),
times ``--scale``, in IMDb's format (tab-separated, ``\\N`` nulls, no quoting, gzip) with
realistic columns and mixes: ~70 % tvEpisode, ~2.8 % tvSeries/tvMiniSeries, ~18 % of titles
started after 2021, ~2 % adult, ~4 akas per title. DuckDB writes them as plain TSV, zlib
gzips them (level 6, two at a time: a few minutes at full size); they are kept between runs
in ``$TMPDIR/tv100-bench-discover/scale-<s>-v<n>/``. A sandbox
server (`tv100.sandbox.imdb_datasets.DatasetFolder`) serves them on 127.0.0.1, read from
disk as they are sent. Then, each in a process of its own, one after the other:

  (a) baseline: DuckDB's plain ``read_csv`` of the three local files (same dialect, every
      column parsed: ``count(col)`` of each), DuckDB's default settings;
  (b) tv100 discover, first run: the stage's own functions into a fresh data root:
      `fetch_dataset_files` (streamed download over HTTP) + `series_from_datasets` + the
      two tables written (what the ``fetch-imdb-datasets``, ``series-from-datasets`` and
      ``write-tables`` tasks run, without Prefect's orchestration);
  (c) tv100 discover again on that root: three 304s, then the same read.

Each child reports its wall time and its own peak RSS (``ru_maxrss``); the parent checks the
series count against the generator's and prints, last, one JSON line with the figures and
the ratios to the baseline. Goal: peak RSS < 2 GiB and (b) within 1.5x of (a).

    .venv/bin/python bench/discover.py [--scale 0.01]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

FULL_ROWS = {"basics": 12_000_000, "ratings": 1_500_000, "akas": 50_000_000}
FILES = {"basics": "title.basics.tsv.gz", "ratings": "title.ratings.tsv.gz",
         "akas": "title.akas.tsv.gz"}  # fmt: skip
CACHE = os.path.join(tempfile.gettempdir(), "tv100-bench-discover")
SINCE = 2021
GEN_VERSION = 2  # bump when the generator changes: the cache is keyed on it

_WORDS = ["Love", "Night", "Road", "Secret", "Home", "City", "Blood", "Crown", "Sea", "Fire",
          "Moon", "Garden", "Winter", "Shadow", "River", "Dream", "King", "Queen", "Stone",
          "Glass", "Tiger", "Rain", "Star", "Ghost", "Island", "Mirror", "Summer", "Wolf",
          "Empire", "Doctor", "School", "Family"]  # fmt: skip
_GENRES = ["Drama", "Comedy", "Documentary", "Romance", "Action", "Crime", "Thriller",
           "Horror", "Family", "Adventure", "Fantasy", "Mystery", "Animation", "Reality-TV",
           "Talk-Show", "History", "Music", "Sci-Fi", "Biography", "Sport"]  # fmt: skip
_REGIONS = ["US", "GB", "DE", "FR", "JP", "KR", "CN", "IN", "XWW", "ES", "IT", "BR", "CA",
            "TW", "HK", "TH", "MX", "RU", "SUHH", "XWG"]  # fmt: skip
_LANGS = ["en", "ja", "ko", "cmn", "fr", "de", "es", "hi", "yue", "th", "ru", "pt"]
# titleType by hash bucket (per 10,000): IMDb's mix, roughly.
_TYPES = [(7000, "tvEpisode"), (7800, "short"), (8400, "movie"), (8600, "video"),
          (8830, "tvSeries"), (8880, "tvMiniSeries"), (9020, "tvMovie"), (9100, "tvSpecial"),
          (9180, "videoGame"), (9230, "tvShort"), (9235, "tvPilot"), (10000, "tvEpisode")]


def _sql_list(items: list[str]) -> str:
    return "[" + ", ".join(f"'{x}'" for x in items) + "]"


def _pick(items: list[str], key: str) -> str:
    """SQL: a deterministic pick from `items` keyed on the SQL expression `key`."""
    return f"{_sql_list(items)}[1 + (hash({key}) % {len(items)})::INTEGER]"


def _u(key: str) -> str:
    """SQL: a deterministic uniform number in [0, 1) keyed on `key`."""
    return f"((hash({key}) % 1000003)::DOUBLE / 1000003)"


def _title(i: str, salt: int) -> str:
    return (f"({_pick(_WORDS, f'{i} * 31 + {salt}')} || ' ' || "
            f"{_pick(_WORDS, f'{i} * 37 + {salt + 1}')} || ' ' || "
            f"({i} % 997)::VARCHAR)")


def _type_case(u: str) -> str:
    whens = " ".join(f"WHEN {u} < {edge} THEN '{name}'" for edge, name in _TYPES)
    return f"(CASE {whens} END)"


def _basics_sql(n: int) -> str:
    year = f"(2025 - floor(125 * pow({_u('i * 11 + 3')}, 2)))::INTEGER"
    genres = (f"CASE WHEN {_u('i * 13')} < 0.05 THEN NULL ELSE array_to_string("
              f"list_distinct([{_pick(_GENRES, 'i * 17')}, {_pick(_GENRES, 'i * 19')}]), ',') "
              "END")
    return f"""
    SELECT 'tt' || lpad((i + 1)::VARCHAR, 8, '0') AS tconst,
           {_type_case('(hash(i * 7 + 1) % 10000)')} AS titleType,
           {_title('i', 0)} AS primaryTitle,
           CASE WHEN {_u('i * 5')} < 0.8 THEN {_title('i', 0)} ELSE {_title('i', 50)} END
               AS originalTitle,
           CASE WHEN {_u('i * 23')} < 0.02 THEN 1 ELSE 0 END AS isAdult,
           CASE WHEN {_u('i * 29')} < 0.08 THEN NULL ELSE {year} END AS startYear,
           CASE WHEN {_u('i * 41')} < 0.1 THEN {year} + 2 END AS endYear,
           CASE WHEN {_u('i * 43')} < 0.3 THEN NULL
                ELSE (20 + hash(i * 47) % 160)::VARCHAR END AS runtimeMinutes,
           {genres} AS genres
    FROM range({n}) t(i)"""


def _ratings_sql(n: int, n_basics: int) -> str:
    step = max(1, n_basics // max(1, n))
    return f"""
    SELECT 'tt' || lpad((i * {step} + 1)::VARCHAR, 8, '0') AS tconst,
           round(1 + 9 * {_u('i * 53')}, 1) AS averageRating,
           (5 + floor(exp(12 * pow({_u('i * 59')}, 3))))::BIGINT AS numVotes
    FROM range({n}) t(i)"""


def _akas_sql(n: int, n_basics: int) -> str:
    # Title t gets the akas j with t = floor(j * n_basics / n), ordering from 1.
    t = f"((j * {n_basics}) // {n})"
    first = f"(({t} * {n} + {n_basics} - 1) // {n_basics})"
    return f"""
    SELECT 'tt' || lpad(({t} + 1)::VARCHAR, 8, '0') AS titleId,
           (j - {first} + 1)::INTEGER AS ordering,
           CASE WHEN j - {first} <= 1 AND {_u(f'{t} * 5')} < 0.8 THEN {_title(t, 0)}
                WHEN j - {first} <= 1 THEN {_title(t, 50)}
                ELSE {_title('j', 100)} END AS title,
           CASE WHEN j = {first} THEN NULL ELSE {_pick(_REGIONS, 'j * 61')} END AS region,
           CASE WHEN {_u('j * 67')} < 0.8 THEN NULL ELSE {_pick(_LANGS, 'j * 71')} END
               AS language,
           CASE WHEN j = {first} THEN 'original'
                WHEN {_u('j * 73')} < 0.6 THEN 'imdbDisplay'
                WHEN {_u('j * 73')} < 0.8 THEN NULL
                ELSE {_pick(['alternative', 'working', 'festival', 'dvd', 'tv'], 'j * 79')}
                END AS types,
           CASE WHEN {_u('j * 83')} < 0.97 THEN NULL
                ELSE {_pick(['literal title', 'short title', 'new title'], 'j * 89')} END
               AS attributes,
           CASE WHEN j = {first} THEN 1 ELSE 0 END AS isOriginalTitle
    FROM range({n}) t(j)"""


def _gzip_file(path: Path) -> None:
    """``path`` → ``path.gz`` (deterministic bytes: no name, mtime 0); ``path`` removed."""
    with path.open("rb") as src, (path.parent / (path.name + ".gz")).open("wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=raw, mtime=0) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    path.unlink()


def rows_at(scale: float) -> dict[str, int]:
    """Rows per file at `scale` (at least a few)."""
    return {k: max(8, round(v * scale)) for k, v in FULL_ROWS.items()}


def generate(folder: Path, scale: float) -> dict[str, Any]:
    """Write the three files into `folder` (kept: a manifest marks them done); the manifest.

    Returns:
        ``{"rows": {...}, "bytes": {...}, "expected_series": n}``; `expected_series` is
        counted on the generator's rows, not by reading the files back.
    """
    import duckdb

    from tv100.tasks.discover.imdb_codes import SERIES_KINDS

    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        return dict(json.loads(manifest_path.read_text()))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rows = rows_at(scale)
    sqls = {
        "basics": _basics_sql(rows["basics"]),
        "ratings": _ratings_sql(rows["ratings"], rows["basics"]),
        "akas": _akas_sql(rows["akas"], rows["basics"]),
    }
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    kinds = ", ".join(f"'{k}'" for k in SERIES_KINDS)
    expected = con.sql(
        f"SELECT count(*) FROM ({sqls['basics']}) WHERE titleType IN ({kinds}) "
        f"AND startYear > {SINCE} AND isAdult = 0"
    ).fetchall()[0][0]
    started = time.monotonic()
    plain = {key: folder / FILES[key].removesuffix(".gz") for key in sqls}
    for key, sql in sqls.items():  # DuckDB's own gzip writer is far slower than zlib
        con.execute(
            f"COPY ({sql}) TO '{plain[key]}' (FORMAT csv, DELIMITER '\t', HEADER true, "
            "QUOTE '', ESCAPE '', NULLSTR '\\N')"
        )
    con.close()
    with ThreadPoolExecutor(2) as pool:  # zlib releases the GIL: two files at once
        list(pool.map(_gzip_file, plain.values()))
    for key in sqls:
        print(f"generated {FILES[key]}: {rows[key]:,} rows, "
              f"{(folder / FILES[key]).stat().st_size / 1e6:.0f} MB", flush=True)
    print(f"generated in {time.monotonic() - started:.0f} s", flush=True)
    manifest = {
        "rows": rows,
        "bytes": {k: (folder / f).stat().st_size for k, f in FILES.items()},
        "expected_series": int(expected),
    }
    manifest_path.write_text(json.dumps(manifest))
    return manifest


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_baseline(folder: str) -> dict[str, Any]:
    """DuckDB's plain read_csv of the three files: every row, every column parsed."""
    import duckdb

    from tv100.tasks.discover.imdb_datasets import (
        AKAS_COLUMNS,
        BASICS_COLUMNS,
        RATINGS_COLUMNS,
    )

    specs = {"basics": BASICS_COLUMNS, "ratings": RATINGS_COLUMNS, "akas": AKAS_COLUMNS}
    started = time.monotonic()
    con = duckdb.connect()
    rows = 0
    for key, columns in specs.items():
        cols = ", ".join(f"'{k}': '{v}'" for k, v in columns.items())
        counts = ", ".join(f"count({k})" for k in columns)
        path = os.path.join(folder, FILES[key])
        rows += con.sql(
            f"SELECT count(*), {counts} FROM read_csv('{path}', delim='\t', header=true, "
            f"quote='', escape='', nullstr='\\N', auto_detect=false, columns={{{cols}}})"
        ).fetchall()[0][0]
    con.close()
    return {"seconds": time.monotonic() - started, "rows": rows, "peak_rss_mib": _peak_rss_mib()}


def child_discover(url: str, host: str, data: str) -> dict[str, Any]:
    """The discover stage's work on `url` into the data root `data`."""
    from tv100.storage.root import DataRoot
    from tv100.storage.tables import write_table
    from tv100.tasks.discover.config import DISCOVER
    from tv100.tasks.discover.datasets import fetch_dataset_files, series_from_datasets
    from tv100.tasks.discover.fetches import now_utc
    from tv100.tasks.web.config import HttpConfig

    started = time.monotonic()
    root = DataRoot(data).ensure()
    fetched = fetch_dataset_files(url, root, HttpConfig(allow_hosts=(host,)))
    downloaded = time.monotonic()
    series = series_from_datasets(fetched.files, DISCOVER.filter, now_utc())
    read = time.monotonic()
    write_table(root, "series", series)
    write_table(root, "discover_fetches", fetched.fetches)
    done = time.monotonic()
    return {
        "seconds": done - started,
        "download_s": downloaded - started,
        "read_s": read - downloaded,
        "write_s": done - read,
        "http_status": fetched.fetches.column("http_status").to_pylist(),
        "series": series.num_rows,
        "peak_rss_mib": _peak_rss_mib(),
    }


def run_child(*args: str) -> dict[str, Any]:
    """Run this script as a child with `args`; its last stdout line is a JSON object."""
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    )
    result = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    result["process_s"] = time.monotonic() - started  # interpreter start and imports too
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="row counts x scale (0.01: quick)")
    ap.add_argument("--work", default=CACHE, help="generated files and data roots go here")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_baseline(*rest) if kind == "baseline" else child_discover(*rest)
        print(json.dumps(result))
        return

    from tv100.sandbox.imdb_datasets import DatasetFolder
    from tv100.sandbox.server import SandboxServer
    from tv100.sandbox.world import build_world

    work = Path(args.work)
    files = work / f"scale-{args.scale:g}-v{GEN_VERSION}"
    manifest = generate(files, args.scale)
    rows = sum(manifest["rows"].values())
    print(f"inputs: {manifest['rows']} rows, {sum(manifest['bytes'].values()) / 1e6:.0f} MB "
          f"gzip, {manifest['expected_series']:,} series expected ({files})", flush=True)
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    site = DatasetFolder(files, prefix="/imdb/")
    with SandboxServer(build_world(seed=0, n_series=8)) as server:
        server.register("/imdb/", site.handle)
        host = server.base_url.split("://", 1)[1]
        baseline = run_child("baseline", str(files))
        first = run_child("discover", f"{server.base_url}/imdb/", host, str(data))
        second = run_child("discover", f"{server.base_url}/imdb/", host, str(data))
    shutil.rmtree(data, ignore_errors=True)
    ok = first["series"] == second["series"] == manifest["expected_series"]
    print(f"baseline read_csv: {baseline['seconds']:.1f} s, {baseline['peak_rss_mib']:.0f} MiB")
    for name, r in (("discover", first), ("discover again (304)", second)):
        print(f"{name}: {r['seconds']:.1f} s (download {r['download_s']:.1f}, read "
              f"{r['read_s']:.1f}, write {r['write_s']:.1f}), {r['peak_rss_mib']:.0f} MiB, "
              f"HTTP {r['http_status']}, {r['series']:,} series")
    figures = {
        "bench": "discover",
        "scale": args.scale,
        "rows": rows,
        "gzip_mb": round(sum(manifest["bytes"].values()) / 1e6, 1),
        "series": first["series"],
        "series_ok": ok,
        "baseline_s": round(baseline["seconds"], 2),
        "baseline_rows_per_s": round(rows / baseline["seconds"]),
        "baseline_peak_rss_mib": round(baseline["peak_rss_mib"]),
        "tv100_s": round(first["seconds"], 2),
        "tv100_download_s": round(first["download_s"], 2),
        "tv100_read_s": round(first["read_s"], 2),
        "tv100_rows_per_s": round(rows / first["seconds"]),
        "tv100_peak_rss_mib": round(first["peak_rss_mib"]),
        "tv100_again_s": round(second["seconds"], 2),
        "tv100_again_peak_rss_mib": round(second["peak_rss_mib"]),
        "ratio": round(first["seconds"] / baseline["seconds"], 3),
        "ratio_again": round(second["seconds"] / baseline["seconds"], 3),
    }
    print(json.dumps(figures))
    if not ok:
        sys.exit(f"wrong series count: expected {manifest['expected_series']}")


if __name__ == "__main__":
    main()
