"""IMDb parsers: advanced-search list pages, title pages and the TSV datasets.

Page parsers are pure functions on bytes. They rely on the page structure only (CSS classes,
the ``__NEXT_DATA__`` JSON, JSON-LD), never on words of a UI language, so the English and the
localized sites (``/de/`` ...) parse the same way. They never raise on broken markup: bad
items are skipped and missing values come back as None (lists as ``[]``).

`read_datasets` reads IMDb's ``title.basics`` / ``title.ratings`` / ``title.akas`` TSV files
(gzip or plain) with DuckDB, streaming, and returns the ``series`` table.
"""

from __future__ import annotations

import gzip
import html
import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from selectolax.lexbor import LexborHTMLParser, LexborNode

from tv100.storage.schemas import SERIES
from tv100.tasks.web.markup import limit_nesting

SERIES_KINDS: tuple[str, ...] = ("tvSeries", "tvMiniSeries")

#: ISO 639-2/3 codes IMDb uses → ISO 639-1 (Mandarin and Cantonese count as Chinese).
LANGUAGE_ALIASES: dict[str, str] = {
    "cmn": "zh", "yue": "zh", "zho": "zh", "chi": "zh", "nan": "zh", "wuu": "zh", "hak": "zh",
    "jpn": "ja", "kor": "ko", "tha": "th", "eng": "en", "fil": "tl", "qbn": "nl",
}  # fmt: skip

_ID_RE = re.compile(r"/title/(tt\d{7,9})\b")
_TCONST_RE = re.compile(r"^tt\d{7,9}$")
_RANK_RE = re.compile(r"^\s*\d+\.\s+")
_DASHES = "\u2013\u2014\u2012\u2212-"
_YEARS_RE = re.compile(rf"^\s*(\d{{4}})\s*(?:([{_DASHES}])\s*(\d{{4}})?)?\s*$")
_RATING_RE = re.compile(r"(?<![\d.,])(\d{1,2})(?:[.,](\d+))?(?![\d])")
_SPACES = "\u00a0\u202f\u2009\u2007 '\u2019"
_VOTES_RE = re.compile(rf"(\d[\d.,{_SPACES}]*)\s*([^\W\d_]*)\.?")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")


# ============================================================================ small parsers


def parse_years(text: str | None) -> tuple[int | None, int | None] | None:
    """Parse a years label: ``2023– `` (ongoing), ``2021–2023``, ``2025`` (single year).

    Returns:
        (start_year, end_year) with end_year None when ongoing and equal to start_year for a
        single year; None when `text` is not a years label.
    """
    if not text:
        return None
    m = _YEARS_RE.match(text.replace("\u00a0", " "))
    if m is None:
        return None
    start = int(m.group(1))
    if m.group(2) is None:
        return start, start
    return start, int(m.group(3)) if m.group(3) else None


def parse_rating(text: str | None) -> float | None:
    """Parse ``8.7`` or ``8,7`` (0-10); None when absent or out of range."""
    if not text:
        return None
    m = _RATING_RE.search(text)
    if m is None:
        return None
    value = float(f"{m.group(1)}.{m.group(2) or 0}")
    return value if 0.0 <= value <= 10.0 else None


def _multiplier(suffix: str) -> float | None:
    s = suffix.lower()
    if not s:
        return 1.0
    if s.startswith(("mrd", "bn", "b")):
        return 1e9
    if s.startswith("m"):  # M, Mio, Mn, Mil
        return 1e6
    if s.startswith(("k", "t")):  # K, k, Tsd, Tausend
        return 1e3
    return None


def parse_votes(text: str | None) -> int | None:
    """Parse a vote count: ``(646.623)``, ``(646,623)``, ``(646K)``, ``(1.2M)``, ``(1,2 Mio.)``.

    Without a magnitude suffix every ``.``/``,``/space is a thousands separator; with one the
    last separator followed by 1-2 digits is the decimal mark.
    """
    if not text:
        return None
    m = _VOTES_RE.search(text)
    if m is None:
        return None
    number, suffix = m.group(1), m.group(2)
    mult = _multiplier(suffix)
    if mult is None:
        return None
    for ch in _SPACES:
        number = number.replace(ch, "")
    number = number.rstrip(".,")
    if not number:
        return None
    seps = [i for i, ch in enumerate(number) if ch in ".,"]
    if not seps:
        return int(round(int(number) * mult))
    last = seps[-1]
    tail = number[last + 1 :]
    if (mult > 1 and 1 <= len(tail) <= 2) or (mult == 1 and len(tail) != 3):
        whole = re.sub(r"[.,]", "", number[:last])
        value = float(f"{whole or 0}.{tail}")
    else:
        value = float(re.sub(r"[.,]", "", number))
    return int(round(value * mult))


def normalize_country(code: object) -> str | None:
    """ISO 3166 alpha-2 code upper-cased, or None (IMDb's XWW, SUHH ... are dropped)."""
    if not isinstance(code, str):
        return None
    c = code.strip().upper()
    return c if _COUNTRY_RE.match(c) else None


def normalize_language(code: object) -> str | None:
    """ISO 639-1 code (``cmn`` → ``zh``); other 3-letter codes are kept lower-cased."""
    if not isinstance(code, str):
        return None
    c = code.strip().lower()
    c = LANGUAGE_ALIASES.get(c, c)
    return c if _LANGUAGE_RE.match(c) else None


def _dedupe(values: list[str | None]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


# ============================================================================ list pages


def _to_text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    if not isinstance(data, bytes | bytearray | memoryview):
        return ""
    return bytes(data).decode("utf-8", errors="replace")


def _parse_html(data: bytes | str) -> LexborHTMLParser | None:
    try:
        text = _to_text(data)
        if not text.strip():
            return None
        return LexborHTMLParser(limit_nesting(text))
    except Exception:  # selectolax raises on pathological input; the contract is "never raise"
        return None


def _text(node: LexborNode | None) -> str:
    if node is None:
        return ""
    try:
        return node.text(deep=True) or ""
    except Exception:
        return ""


def list_page_url(
    base_url: str, since: int, start: int, locale: str | None = None, count: int | None = None
) -> str:
    """URL of an advanced-search page of TV series and miniseries released after `since`.

    Args:
        base_url: site root, e.g. ``https://www.imdb.com`` (no trailing slash needed).
        since: keep titles released after this year (``release_date=<since+1>-01-01,``).
        start: 1-based index of the first result on the page.
        locale: None/"en" for the English site, else a locale prefix such as "de".
        count: page size (the sandbox honours it; imdb.com uses 50).
    """
    prefix = "" if locale in (None, "", "en") else f"/{locale}"
    url = (
        f"{base_url.rstrip('/')}{prefix}/search/title/?title_type=tv_series,tv_miniseries"
        f"&release_date={since + 1}-01-01,&start={int(start)}"
    )
    if count is not None:
        url += f"&count={int(count)}"
    return url


def _list_item(li: LexborNode) -> dict[str, Any] | None:
    link = li.css_first("a.ipc-title-link-wrapper[href]")
    href = link.attributes.get("href") if link is not None else None
    m = _ID_RE.search(href or "")
    if m is None:
        for a in li.css("a[href]"):
            m = _ID_RE.search(a.attributes.get("href") or "")
            if m is not None:
                break
    if m is None:
        return None
    heading = li.css_first(".ipc-title__text") or link
    raw_title = _text(heading).strip()
    rank_m = _RANK_RE.match(raw_title)
    rank = int(raw_title[: rank_m.end()].strip().rstrip(".")) if rank_m else None
    title = raw_title[rank_m.end() :].strip() if rank_m else raw_title
    start_year = end_year = None
    for item in li.css(".dli-title-metadata-item"):
        years = parse_years(_text(item))
        if years is not None:
            start_year, end_year = years
            break
    type_node = li.css_first(".dli-title-type-data")
    rating_node = li.css_first(".ipc-rating-star--rating")
    votes_node = li.css_first(".ipc-rating-star--voteCount")
    return {
        "series_id": m.group(1),
        "title": title or None,
        "rank": rank,
        "start_year": start_year,
        "end_year": end_year,
        "rating": parse_rating(_text(rating_node)) if rating_node is not None else None,
        "num_votes": parse_votes(_text(votes_node)) if votes_node is not None else None,
        "type_label": _text(type_node).strip() or None if type_node is not None else None,
    }


def parse_list_page(html_bytes: bytes) -> list[dict[str, Any]]:
    """Parse an advanced-search result page.

    Returns:
        One dict per ``li.ipc-metadata-list-summary-item`` that links a title: series_id,
        title (rank prefix ``12. `` stripped, once), rank, start_year, end_year, rating,
        num_votes, type_label (raw text, locale-dependent). Empty list for an empty or
        unparsable page.
    """
    tree = _parse_html(html_bytes)
    if tree is None:
        return []
    out: list[dict[str, Any]] = []
    try:
        items = tree.css("li.ipc-metadata-list-summary-item")
    except Exception:
        return []
    for li in items:
        try:
            item = _list_item(li)
        except Exception:
            item = None
        if item is not None:
            out.append(item)
    return out


# ============================================================================ title pages


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        return parse_rating(value)
    return None


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _ids(items: Any, key: str = "id") -> list[Any]:
    if not isinstance(items, list):
        return []
    return [x.get(key) if isinstance(x, Mapping) else None for x in items]


def _from_next_data(data: Any) -> dict[str, Any] | None:
    props = _get(data, "props", "pageProps")
    above = _get(props, "aboveTheFoldData")
    if not isinstance(above, Mapping):
        return None
    main = _get(props, "mainColumnData")
    series_id = _as_str(above.get("id")) or _as_str(_get(props, "tconst"))
    if series_id is None or not _TCONST_RE.match(series_id):
        return None
    title = _as_str(_get(above, "titleText", "text"))
    kind = _as_str(_get(above, "titleType", "id"))
    is_series = _get(above, "titleType", "isSeries")
    if not isinstance(is_series, bool):
        is_series = kind in SERIES_KINDS if kind else None
    countries: list[Any] = []
    languages: list[Any] = []
    for block in (main, above):
        if not countries:
            countries = _ids(_get(block, "countriesOfOrigin", "countries"))
        if not languages:
            languages = _ids(_get(block, "spokenLanguages", "spokenLanguages"))
    genres_raw = _get(above, "genres", "genres")
    genres = []
    if isinstance(genres_raw, list):
        for g in genres_raw:
            if isinstance(g, Mapping):
                genres.append(_as_str(g.get("id")) or _as_str(g.get("text")))
    rating = _as_float(_get(above, "ratingsSummary", "aggregateRating"))
    votes = _as_int(_get(above, "ratingsSummary", "voteCount"))
    if rating is None and not votes:
        votes = None
    is_adult = above.get("isAdult")
    return {
        "series_id": series_id,
        "title": title,
        "original_title": _as_str(_get(above, "originalTitleText", "text")) or title,
        "kind": kind,
        "is_series": is_series,
        "start_year": _as_int(_get(above, "releaseYear", "year")),
        "end_year": _as_int(_get(above, "releaseYear", "endYear")),
        "is_adult": is_adult if isinstance(is_adult, bool) else None,
        "genres": _dedupe(genres),
        "countries": _dedupe([normalize_country(c) for c in countries]),
        "languages": _dedupe([normalize_language(x) for x in languages]),
        "rating": rating,
        "num_votes": votes,
        "image_url": _as_str(_get(above, "primaryImage", "url")),
        "parent_id": _as_str(_get(above, "series", "series", "id")),
        "parsed_from": "next_data",
    }


_LD_KINDS = {"TVSeries": "tvSeries", "Movie": "movie", "TVEpisode": "tvEpisode"}


def _ld_candidates(data: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(data, list):
        for x in data:
            yield from _ld_candidates(x)
    elif isinstance(data, Mapping):
        if "@graph" in data:
            yield from _ld_candidates(data["@graph"])
        if data.get("@type") is not None and data.get("name") is not None:
            yield data


def _unescape(value: Any) -> str | None:
    text = _as_str(value)
    return html.unescape(text) if text is not None else None


def _from_json_ld(data: Any, fallback_id: str | None) -> dict[str, Any] | None:
    for obj in _ld_candidates(data):
        ld_type = obj.get("@type")
        types = ld_type if isinstance(ld_type, list) else [ld_type]
        kind = next((_LD_KINDS[t] for t in types if isinstance(t, str) and t in _LD_KINDS), None)
        m = _ID_RE.search(_as_str(obj.get("url")) or "")
        series_id = m.group(1) if m else fallback_id
        if series_id is None:
            continue
        title = _unescape(obj.get("name"))
        image = obj.get("image")
        if isinstance(image, Mapping):
            image = image.get("url")
        genre = obj.get("genre")
        genres = [genre] if isinstance(genre, str) else genre if isinstance(genre, list) else []
        year_m = re.match(r"^\s*(\d{4})", _as_str(obj.get("datePublished")) or "")
        rating = _as_float(_get(obj, "aggregateRating", "ratingValue"))
        raw_votes = _get(obj, "aggregateRating", "ratingCount")
        votes = parse_votes(raw_votes) if isinstance(raw_votes, str) else _as_int(raw_votes)
        return {
            "series_id": series_id,
            "title": title,
            "original_title": _unescape(obj.get("alternateName")) or title,
            "kind": kind,
            "is_series": kind in SERIES_KINDS if kind else None,
            "start_year": int(year_m.group(1)) if year_m else None,
            "end_year": None,
            "is_adult": None,
            "genres": _dedupe([_unescape(g) for g in genres]),
            "countries": [],
            "languages": [],
            "rating": rating,
            "num_votes": votes if rating is not None else None,
            "image_url": _as_str(image),
            "parent_id": None,
            "parsed_from": "json_ld",
        }
    return None


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def parse_title_page(html_bytes: bytes) -> dict[str, Any] | None:
    """Parse a title page: ``__NEXT_DATA__`` first, JSON-LD as the fallback.

    Returns:
        series_id, title, original_title, kind (IMDb titleType id), is_series, start_year,
        end_year, is_adult, genres (IMDb genre ids), countries (ISO 3166 alpha-2), languages
        (ISO 639-1), rating, num_votes, image_url, plus parent_id (episodes) and parsed_from
        ("next_data" | "json_ld"). From JSON-LD, end_year and is_adult are None and
        countries/languages are ``[]`` (JSON-LD has none). None when neither source is usable.
    """
    tree = _parse_html(html_bytes)
    if tree is None:
        return None
    try:
        node = tree.css_first("script#__NEXT_DATA__")
        if node is not None:
            parsed = _from_next_data(_loads(_text(node)))
            if parsed is not None:
                return parsed
        fallback_id = None
        meta = tree.css_first('meta[property="imdb:pageConst"]')
        if meta is not None:
            content = meta.attributes.get("content") or ""
            fallback_id = content if _TCONST_RE.match(content) else None
        if fallback_id is None:
            link = tree.css_first('link[rel="canonical"]')
            m = _ID_RE.search((link.attributes.get("href") or "") if link is not None else "")
            fallback_id = m.group(1) if m else None
        for script in tree.css('script[type="application/ld+json"]'):
            parsed = _from_json_ld(_loads(_text(script)), fallback_id)
            if parsed is not None:
                return parsed
    except Exception:  # never raise on hostile markup
        return None
    return None


# ============================================================================ datasets

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


def _open_text(path: Path) -> Any:
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

    Keeps titleType tvSeries/tvMiniSeries, startYear > `since`, isAdult = 0 and, when
    `min_votes` is given, numVotes >= min_votes (unrated titles are then dropped). Ratings
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
    sql = f"""
    WITH b AS (
        SELECT tconst, titleType, primaryTitle, originalTitle, startYear, endYear, genres
        FROM {_reader(paths["basics"], BASICS_COLUMNS)}
        WHERE titleType IN ('tvSeries', 'tvMiniSeries') AND startYear > $since AND isAdult = 0
    ),
    r AS (SELECT tconst, averageRating, numVotes
          FROM {_reader(paths["ratings"], RATINGS_COLUMNS)}),
    br AS (
        SELECT b.*, r.averageRating, r.numVotes FROM b LEFT JOIN r USING (tconst)
        WHERE $min_votes IS NULL OR r.numVotes >= $min_votes
    ),
    a AS (
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
    con = duckdb.connect()
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
        "discovered_at": pa.array([when] * n, pa.timestamp("us", tz="UTC")),
    }
    out = pa.table(columns)
    return out.cast(SERIES)


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
