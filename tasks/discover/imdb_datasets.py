"""IMDb's TSV datasets → the ``series`` table, read with DuckDB (streaming, no pandas).

`read_datasets` reads ``title.basics`` / ``title.ratings`` / ``title.akas`` (gzip or plain,
detected by content); a malformed file is a ValueError naming the file and the line.

The real files hold 12 M, 1.5 M and 50 M rows. DuckDB streams them with explicit columns and
types (IMDb's TSV has no quoting: ``quote=''``, ``escape=''``, ``\\N`` for null), filters in
SQL and hands Python only the series rows; its memory is capped (`MEMORY_LIMIT`, spilling to a
temp folder beyond it) and it runs one thread per core (`bench/discover.py` measures it).
"""

from __future__ import annotations

import gzip
import re
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import duckdb
import pyarrow as pa

from tv100.storage.schemas import SERIES
from tv100.tasks.discover.imdb_codes import LANGUAGE_ALIASES, SERIES_KINDS
from tv100.tasks.parallel import local_cores

MEMORY_LIMIT = "1GiB"
"""DuckDB's memory cap while reading the datasets (the process stays well under 2 GiB)."""

BASICS_COLUMNS: dict[str, str] = {
    "tconst": "VARCHAR", "titleType": "VARCHAR", "primaryTitle": "VARCHAR",
    "originalTitle": "VARCHAR", "isAdult": "INTEGER", "startYear": "INTEGER",
    "endYear": "INTEGER", "runtimeMinutes": "VARCHAR", "genres": "VARCHAR",
}  # fmt: skip
RATINGS_COLUMNS: dict[str, str] = {
    "tconst": "VARCHAR", "averageRating": "DOUBLE", "numVotes": "BIGINT",
}  # fmt: skip
AKAS_COLUMNS: dict[str, str] = {
    "titleId": "VARCHAR", "ordering": "INTEGER", "title": "VARCHAR", "region": "VARCHAR",
    "language": "VARCHAR", "types": "VARCHAR", "attributes": "VARCHAR",
    "isOriginalTitle": "INTEGER",
}  # fmt: skip

_LINE_RE = re.compile(r"Line:\s*(\d+)")
_FILE_RE = re.compile(r"^\s*file = (.+)$", re.MULTILINE)


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open_text(path: Path) -> IO[str]:
    if _is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="\n")
    return path.open("rt", encoding="utf-8", errors="replace", newline="\n")


def _check_header(path: Path, columns: Mapping[str, str]) -> None:
    expected = list(columns)
    try:
        with _open_text(path) as fh:
            first = fh.readline()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ValueError(f"{path}: line 1: cannot read file ({err})") from err
    got = first.rstrip("\r\n").split("\t")
    if got != expected:
        raise ValueError(
            f"{path}: line 1: header {got!r} does not match the expected columns {expected!r}"
        )


def _find_bad_line(path: Path, n_columns: int) -> tuple[int, str] | None:
    """Stream the file; return (line number, reason) of the first row with a wrong
    number of fields, or None."""
    try:
        with _open_text(path) as fh:
            for number, line in enumerate(fh, start=1):
                fields = line.rstrip("\r\n").count("\t") + 1
                if fields != n_columns:
                    return number, f"expected {n_columns} tab-separated fields, found {fields}"
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        return -1, f"cannot read file ({err})"
    return None


def _reader(path: Path, columns: Mapping[str, str]) -> str:
    cols = ", ".join(f"'{k}': '{v}'" for k, v in columns.items())
    quoted = str(path).replace("'", "''")
    compression = "gzip" if _is_gzip(path) else "none"  # by content, not by file name
    return (
        f"read_csv('{quoted}', delim='\t', header=true, quote='', escape='', "
        f"compression='{compression}', "
        f"nullstr='\\N', auto_detect=false, columns={{{cols}}}, strict_mode=true, "
        f"max_line_size=10000000)"
    )


def _language_case(column: str) -> str:
    whens = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in sorted(LANGUAGE_ALIASES.items()))
    return f"(CASE lower({column}) {whens} ELSE lower({column}) END)"


def read_datasets(
    basics: str | Path,
    ratings: str | Path,
    akas: str | Path,
    since: int = 2021,
    min_votes: int | None = None,
    discovered_at: datetime | None = None,
) -> pa.Table:
    """Read IMDb's TSV datasets into the ``series`` table (source ``imdb-datasets``).

    Keeps titleType in `SERIES_KINDS` (tvSeries, tvMiniSeries), startYear > `since`, isAdult = 0
    and, when `min_votes` is given, numVotes >= min_votes (unrated titles are then dropped). Ratings
    are left-joined. title = primaryTitle, original_title = originalTitle, genres split on ",".

    Countries and languages come from ``title.akas``: each aka row gets a rank, 1 when it
    is the original title (``isOriginalTitle = 1`` or ``types`` contains "original"), 2 when
    its title equals the basics originalTitle, 3 otherwise. Countries are the ISO alpha-2
    regions of the best-ranked rows that have a region (IMDb's original-title row usually has
    none, so this is normally rank 2: the production countries' rows); languages are the
    languages of rows of that rank or better (``cmn``/``yue`` → ``zh``). Both keep akas
    ``ordering``. Codes that are not ISO (XWW, SUHH ...) are ignored.

    Args:
        basics: path of title.basics.tsv[.gz].
        ratings: path of title.ratings.tsv[.gz].
        akas: path of title.akas.tsv[.gz].
        since: keep series whose start year is greater than this.
        min_votes: optional lower bound on numVotes.
        discovered_at: value of the discovered_at column (default: now, UTC).

    Returns:
        A table with exactly the `tv100.storage.schemas.SERIES` schema, sorted by series_id.

    Raises:
        ValueError: a file is missing columns, has a short/long row or an unparsable value;
            the message names the file and the line number.
    """
    paths = {"basics": Path(basics), "ratings": Path(ratings), "akas": Path(akas)}
    specs = {"basics": BASICS_COLUMNS, "ratings": RATINGS_COLUMNS, "akas": AKAS_COLUMNS}
    for key, path in paths.items():
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        _check_header(path, specs[key])
    when = discovered_at or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    lang = _language_case("a.language")
    kinds = ", ".join(f"'{k}'" for k in SERIES_KINDS)
    sql = f"""
    WITH b AS (
        SELECT tconst, titleType, primaryTitle, originalTitle, startYear, endYear, genres
        FROM {_reader(paths["basics"], BASICS_COLUMNS)}
        WHERE titleType IN ({kinds}) AND startYear > $since AND isAdult = 0
    ),
    r AS (SELECT tconst, averageRating, numVotes
          FROM {_reader(paths["ratings"], RATINGS_COLUMNS)}),
    br AS MATERIALIZED (
        SELECT b.*, r.averageRating, r.numVotes FROM b LEFT JOIN r USING (tconst)
        WHERE $min_votes IS NULL OR r.numVotes >= $min_votes
    ),
    a AS MATERIALIZED (
        SELECT a.titleId, a.ordering,
               CASE WHEN regexp_full_match(upper(trim(a.region)), '[A-Z]{{2}}')
                    THEN upper(trim(a.region)) END AS region,
               CASE WHEN regexp_full_match({lang}, '[a-z]{{2,3}}') THEN {lang} END AS language,
               CASE WHEN a.isOriginalTitle = 1 OR coalesce(a.types, '') LIKE '%original%'
                    THEN 1 WHEN a.title = br.originalTitle THEN 2 ELSE 3 END AS rnk
        FROM {_reader(paths["akas"], AKAS_COLUMNS)} AS a
        JOIN br ON a.titleId = br.tconst
    ),
    best AS (SELECT titleId, min(rnk) AS best FROM a WHERE region IS NOT NULL GROUP BY titleId),
    cr AS (
        SELECT a.titleId, a.region, min(a.ordering) AS o FROM a JOIN best USING (titleId)
        WHERE a.region IS NOT NULL AND a.rnk = best.best GROUP BY a.titleId, a.region
    ),
    countries AS (SELECT titleId, list(region ORDER BY o) AS countries FROM cr GROUP BY titleId),
    lr AS (
        SELECT a.titleId, a.language, min(a.ordering) AS o
        FROM a LEFT JOIN best USING (titleId)
        WHERE a.language IS NOT NULL AND a.rnk <= coalesce(best.best, 3)
        GROUP BY a.titleId, a.language
    ),
    languages AS (
        SELECT titleId, list(language ORDER BY o) AS languages FROM lr GROUP BY titleId
    )
    SELECT br.tconst AS series_id, br.primaryTitle AS title, br.originalTitle AS original_title,
           br.titleType AS kind, br.startYear AS start_year, br.endYear AS end_year,
           CASE WHEN br.genres IS NULL OR br.genres = '' THEN []::VARCHAR[]
                ELSE string_split(br.genres, ',') END AS genres,
           coalesce(c.countries, []::VARCHAR[]) AS countries,
           coalesce(l.languages, []::VARCHAR[]) AS languages,
           br.averageRating AS rating, br.numVotes AS num_votes
    FROM br
    LEFT JOIN countries c ON c.titleId = br.tconst
    LEFT JOIN languages l ON l.titleId = br.tconst
    ORDER BY br.tconst
    """
    with tempfile.TemporaryDirectory(prefix="tv100-duckdb-") as spill:
        con = _connect(spill)
        try:
            table = _run(con, sql, since, min_votes, paths, specs)
        finally:
            con.close()
    n = table.num_rows
    columns = {
        "series_id": table.column("series_id"),
        "title": table.column("title"),
        "original_title": table.column("original_title"),
        "kind": table.column("kind"),
        "start_year": table.column("start_year"),
        "end_year": table.column("end_year"),
        "genres": table.column("genres"),
        "countries": table.column("countries"),
        "languages": table.column("languages"),
        "rating": table.column("rating"),
        "num_votes": table.column("num_votes"),
        "source": pa.array(["imdb-datasets"] * n, pa.string()),
        "parsed_from": pa.nulls(n, pa.string()),  # a page-parser column: null for datasets
        "discovered_at": pa.array([when] * n, pa.timestamp("us", tz="UTC")),
    }
    out = pa.table(columns)
    return out.cast(SERIES)


def _connect(spill: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with bounded memory, one thread per core, spilling to `spill`."""
    return duckdb.connect(
        config={
            "memory_limit": MEMORY_LIMIT,
            "threads": local_cores(),
            "temp_directory": spill,
            "preserve_insertion_order": False,  # the result is sorted by series_id anyway
        }
    )


def _run(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    since: int,
    min_votes: int | None,
    paths: Mapping[str, Path],
    specs: Mapping[str, Mapping[str, str]],
) -> pa.Table:
    try:
        relation = con.sql(
            sql,
            params={
                "since": int(since),
                "min_votes": None if min_votes is None else int(min_votes),
            },
        )
        return _arrow(relation)
    except duckdb.Error as err:
        raise _dataset_error(err, paths, specs) from err


def _arrow(result: Any) -> pa.Table:
    for name in ("to_arrow_table", "fetch_arrow_table", "arrow"):
        method = getattr(result, name, None)
        if method is not None:
            table = method()
            if isinstance(table, pa.RecordBatchReader):
                table = table.read_all()
            return table
    raise RuntimeError("this duckdb version has no arrow export")


def _dataset_error(
    err: duckdb.Error, paths: Mapping[str, Path], specs: Mapping[str, Mapping[str, str]]
) -> ValueError:
    message = str(err)
    # Locate the file: DuckDB names it in its CSV errors ("  file = /path/...").
    file_m = _FILE_RE.search(message)
    named = file_m.group(1).strip() if file_m else None
    culprit = next((k for k, p in paths.items() if named is not None and str(p) == named), None)
    keys = [culprit] if culprit else list(paths)
    for key in keys:
        bad = _find_bad_line(paths[key], len(specs[key]))
        if bad is not None:
            line, reason = bad
            where = f"line {line}" if line > 0 else "unreadable"
            return ValueError(f"{paths[key]}: {where}: {reason}")
    lines = [x.strip() for x in message.strip().splitlines() if x.strip()]
    detail = next(
        (x for x in lines if x.startswith(("Error when converting", "Could not convert"))),
        lines[0] if lines else type(err).__name__,
    )
    line_m = _LINE_RE.search(message)
    if culprit is not None:
        where = f"line {line_m.group(1)}" if line_m else "unknown line"
        return ValueError(f"{paths[culprit]}: {where}: {detail}")
    names = ", ".join(str(p) for p in paths.values())
    return ValueError(f"cannot read IMDb datasets ({names}): {detail}")
