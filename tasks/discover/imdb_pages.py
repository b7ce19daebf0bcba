"""IMDb page parsers: advanced-search list pages and title pages, pure functions on bytes.

They rely on the page structure only (CSS classes, the ``__NEXT_DATA__`` JSON, JSON-LD), never
on words of a UI language, so the English and the localized sites (``/de/`` ...) parse the same
way. They never raise on broken markup: bad items are skipped and missing values come back as
None (lists as ``()``).
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from selectolax.lexbor import LexborHTMLParser, LexborNode

from tv100.tasks.discover.imdb_codes import SERIES_KINDS, normalize_country, normalize_language
from tv100.tasks.web.markup import limit_nesting

_ID_RE = re.compile(r"/title/(tt\d{7,9})\b")
_TCONST_RE = re.compile(r"^tt\d{7,9}$")
_RANK_RE = re.compile(r"^\s*\d+\.\s+")
_DASHES = "\u2013\u2014\u2012\u2212-"
_YEARS_RE = re.compile(rf"^\s*(\d{{4}})\s*(?:([{_DASHES}])\s*(\d{{4}})?)?\s*$")
_RATING_RE = re.compile(r"(?<![\d.,])(\d{1,2})(?:[.,](\d+))?(?![\d])")
_SPACES = "\u00a0\u202f\u2009\u2007 '\u2019"
_VOTES_RE = re.compile(rf"(\d[\d.,{_SPACES}]*)\s*([^\W\d_]*)\.?")


@dataclass(frozen=True)
class ListedTitle:
    """One item of an advanced-search list page.

    Attributes:
        series_id: the IMDb id (``tt`` + 7-9 digits).
        title: the title, rank prefix ``12. `` stripped (once).
        rank: the rank shown before the title.
        start_year: first year of the years label.
        end_year: last year; None when ongoing, start_year for a single year.
        rating: the IMDb rating (0-10).
        num_votes: the vote count.
        type_label: the raw type text (locale-dependent), e.g. "TV Series".
    """

    series_id: str
    title: str | None
    rank: int | None
    start_year: int | None
    end_year: int | None
    rating: float | None
    num_votes: int | None
    type_label: str | None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class TitlePage:
    """What a title page says about one title.

    Attributes:
        series_id: the IMDb id.
        title: the (possibly localized) title.
        original_title: the original title (the title when none is given).
        kind: IMDb titleType id (``tvSeries``, ``movie``, ...).
        is_series: whether the title is a series.
        start_year: release (start) year.
        end_year: end year (None from JSON-LD).
        is_adult: adult title (None from JSON-LD).
        genres: IMDb genre ids.
        countries: ISO 3166 alpha-2 codes (``()`` from JSON-LD, which has none).
        languages: ISO 639-1 codes (``()`` from JSON-LD).
        rating: the IMDb rating (0-10).
        num_votes: the vote count.
        image_url: the poster URL.
        parent_id: the series of an episode.
        parsed_from: ``next_data`` or ``json_ld``.
    """

    series_id: str
    title: str | None
    original_title: str | None
    kind: str | None
    is_series: bool | None
    start_year: int | None
    end_year: int | None
    is_adult: bool | None
    genres: tuple[str, ...]
    countries: tuple[str, ...]
    languages: tuple[str, ...]
    rating: float | None
    num_votes: int | None
    image_url: str | None
    parent_id: str | None
    parsed_from: Literal["next_data", "json_ld"]

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (sequences as lists)."""
        out = asdict(self)
        for key in ("genres", "countries", "languages"):
            out[key] = list(out[key])
        return out


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


def _dedupe(values: list[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))



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


def title_page_url(base_url: str, series_id: str, locale: str | None = None) -> str:
    """URL of a title page, e.g. ``https://www.imdb.com/de/title/tt0903747/``.

    Args:
        base_url: site root, e.g. ``https://www.imdb.com``.
        series_id: the IMDb id.
        locale: None for the English site, else a locale prefix such as "de".
    """
    prefix = f"/{locale}" if locale else ""
    return f"{base_url.rstrip('/')}{prefix}/title/{series_id}/"


def _list_item(li: LexborNode) -> ListedTitle | None:
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
    return ListedTitle(
        series_id=m.group(1),
        title=title or None,
        rank=rank,
        start_year=start_year,
        end_year=end_year,
        rating=parse_rating(_text(rating_node)) if rating_node is not None else None,
        num_votes=parse_votes(_text(votes_node)) if votes_node is not None else None,
        type_label=_text(type_node).strip() or None if type_node is not None else None,
    )


def parse_list_page(html_bytes: bytes) -> list[ListedTitle]:
    """Parse an advanced-search result page.

    Returns:
        One `ListedTitle` per ``li.ipc-metadata-list-summary-item`` that links a title, in
        page order. Empty list for an empty or unparsable page.
    """
    tree = _parse_html(html_bytes)
    if tree is None:
        return []
    out: list[ListedTitle] = []
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


def _from_next_data(data: Any) -> TitlePage | None:
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
    return TitlePage(
        series_id=series_id,
        title=title,
        original_title=_as_str(_get(above, "originalTitleText", "text")) or title,
        kind=kind,
        is_series=is_series,
        start_year=_as_int(_get(above, "releaseYear", "year")),
        end_year=_as_int(_get(above, "releaseYear", "endYear")),
        is_adult=is_adult if isinstance(is_adult, bool) else None,
        genres=_dedupe(genres),
        countries=_dedupe([normalize_country(c) for c in countries]),
        languages=_dedupe([normalize_language(x) for x in languages]),
        rating=rating,
        num_votes=votes,
        image_url=_as_str(_get(above, "primaryImage", "url")),
        parent_id=_as_str(_get(above, "series", "series", "id")),
        parsed_from="next_data",
    )


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


def _from_json_ld(data: Any, fallback_id: str | None) -> TitlePage | None:
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
        return TitlePage(
            series_id=series_id,
            title=title,
            original_title=_unescape(obj.get("alternateName")) or title,
            kind=kind,
            is_series=kind in SERIES_KINDS if kind else None,
            start_year=int(year_m.group(1)) if year_m else None,
            end_year=None,
            is_adult=None,
            genres=_dedupe([_unescape(g) for g in genres]),
            countries=(),
            languages=(),
            rating=rating,
            num_votes=votes if rating is not None else None,
            image_url=_as_str(image),
            parent_id=None,
            parsed_from="json_ld",
        )
    return None


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def parse_title_page(html_bytes: bytes) -> TitlePage | None:
    """Parse a title page: ``__NEXT_DATA__`` first, JSON-LD as the fallback.

    Returns:
        A `TitlePage`; from JSON-LD, end_year and is_adult are None and countries/languages
        are ``()`` (JSON-LD has none). None when neither source is usable.
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
