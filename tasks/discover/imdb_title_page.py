"""IMDb title pages: what a page says about one title, from ``__NEXT_DATA__`` or JSON-LD.

``__NEXT_DATA__`` (``props.pageProps``) is read in both layouts IMDb has served:

- current (2025): ``isAdult`` under ``mainColumnData``; genre names under
  ``aboveTheFoldData.titleGenres.genres[].genre.text`` and their ids under
  ``mainColumnData.genres.genres[].id``;
- earlier: ``isAdult`` and ``genres.genres[]`` (``{id, text}``) under ``aboveTheFoldData``.

Genres are IMDb's genre ids where the page has them, else the names it shows (localized on
``/de/`` pages). Countries and languages are read from ``mainColumnData``, else
``aboveTheFoldData``.

Pages without a usable ``__NEXT_DATA__`` fall back to JSON-LD, which says less and differently:
``name`` is the *original* title and ``alternateName`` the localized (English) one; its
``datePublished`` is one country's release date, so the years come from the page's visible
release year (the hero's ``releaseinfo`` link or inline metadata list, else the document
title's ``(TV Series 2021–2025)``); it has no countries, languages or adult flag (``()`` and
None); and its ``Movie`` type covers movies, TV movies and videos alike, so such a page's
`kind` is None (not a series, but which kind is unknown) while ``TVSeries`` gives ``tvSeries``
(JSON-LD has no mini-series type). No field is guessed beyond its source.

The parser never raises on broken markup: it returns None when neither source is usable.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from selectolax.lexbor import LexborHTMLParser

from tv100.tasks.discover.imdb_codes import SERIES_KINDS, normalize_country, normalize_language
from tv100.tasks.discover.imdb_markup import (
    ID_RE,
    TCONST_RE,
    as_float,
    as_int,
    as_str,
    dedupe,
    get,
    loads,
    next_data,
    node_text,
    parse_html,
    parse_votes,
    parse_years,
    votes_of,
)

#: JSON-LD ``@type`` → (kind, is_series); ``Movie`` is also a TV movie's or a video's type.
_LD_TYPES: dict[str, tuple[str | None, bool]] = {
    "TVSeries": ("tvSeries", True),
    "TVEpisode": ("tvEpisode", False),
    "Movie": (None, False),
}
_DOC_TITLE_YEARS = re.compile(r"\((?:[^()]*\s)?(\d{4}\s*[\u2013\u2014-]?\s*(?:\d{4})?)\s*\)")
#: How far up from the hero's ``<h1>`` its inline metadata list is looked for.
_HERO_LEVELS = 3


@dataclass(frozen=True)
class TitlePage:
    """What a title page says about one title; None (or ``()``) where the page does not say.

    Attributes:
        series_id: the IMDb id.
        title: the (possibly localized) title.
        original_title: the original title (the title when none is given).
        kind: IMDb titleType id (``tvSeries``, ``movie``, ...); None when the page cannot tell
            (a JSON-LD ``Movie`` may be a movie, a TV movie or a video).
        is_series: whether the title is a series.
        start_year: release (start) year.
        end_year: end year; None when ongoing or not a series.
        is_adult: adult title (None from JSON-LD).
        genres: IMDb genre ids (the shown names where a page has no ids).
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


# -- __NEXT_DATA__ -----------------------------------------------------------------------------


def _values(items: Any, *path: str) -> list[str | None]:
    if not isinstance(items, list):
        return []
    return [as_str(get(x, *path)) for x in items]


def _genres(above: Mapping[str, Any], main: Any) -> list[str | None]:
    ids = _values(get(main, "genres", "genres"), "id")  # current layout
    if any(ids):
        return ids
    earlier = get(above, "genres", "genres")
    if isinstance(earlier, list):
        return [as_str(get(g, "id")) or as_str(get(g, "text")) for g in earlier]
    current = get(above, "titleGenres", "genres")
    if not isinstance(current, list):
        return []
    return [as_str(get(g, "genre", "id")) or as_str(get(g, "genre", "text")) for g in current]


def _first_bool(*values: Any) -> bool | None:
    return next((v for v in values if isinstance(v, bool)), None)


def _from_next_data(data: Any) -> TitlePage | None:
    props = get(data, "props", "pageProps")
    above = get(props, "aboveTheFoldData")
    if not isinstance(above, Mapping):
        return None
    main = get(props, "mainColumnData")
    series_id = as_str(above.get("id")) or as_str(get(props, "tconst"))
    if series_id is None or not TCONST_RE.match(series_id):
        return None
    title = as_str(get(above, "titleText", "text"))
    kind = as_str(get(above, "titleType", "id"))
    is_series = _first_bool(get(above, "titleType", "isSeries"))
    if is_series is None and kind:
        is_series = kind in SERIES_KINDS
    countries: list[str | None] = []
    languages: list[str | None] = []
    for block in (main, above):
        countries = countries or _values(get(block, "countriesOfOrigin", "countries"), "id")
        languages = languages or _values(get(block, "spokenLanguages", "spokenLanguages"), "id")
    rating = as_float(get(above, "ratingsSummary", "aggregateRating"))
    return TitlePage(
        series_id=series_id,
        title=title,
        original_title=as_str(get(above, "originalTitleText", "text")) or title,
        kind=kind,
        is_series=is_series,
        start_year=as_int(get(above, "releaseYear", "year")),
        end_year=as_int(get(above, "releaseYear", "endYear")),
        is_adult=_first_bool(get(main, "isAdult"), above.get("isAdult")),
        genres=dedupe(_genres(above, main)),
        countries=dedupe([normalize_country(c) for c in countries if c]),
        languages=dedupe([normalize_language(x) for x in languages if x]),
        rating=rating,
        num_votes=votes_of(rating, get(above, "ratingsSummary", "voteCount")),
        image_url=as_str(get(above, "primaryImage", "url")),
        parent_id=as_str(get(above, "series", "series", "id")),
        parsed_from="next_data",
    )


# -- JSON-LD -----------------------------------------------------------------------------------


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
    text = as_str(value)
    return html.unescape(text) if text is not None else None


def release_years(tree: LexborHTMLParser) -> tuple[int | None, int | None] | None:
    """The release years the page shows: hero ``releaseinfo`` link, hero list, document title.

    Returns:
        (start_year, end_year) as `parse_years` gives them; None when the page shows none.
    """
    for link in tree.css('a[href*="/releaseinfo"]'):
        years = parse_years(node_text(link))
        if years is not None:
            return years
    node = tree.css_first('[data-testid="hero__pageTitle"]')
    for _ in range(_HERO_LEVELS):
        node = node.parent if node is not None else None
        if node is None:
            break
        for item in node.css("ul.ipc-inline-list li"):
            years = parse_years(node_text(item))
            if years is not None:
                return years
    found = _DOC_TITLE_YEARS.findall(node_text(tree.css_first("head > title")))
    return parse_years(found[-1]) if found else None  # the last: a title may hold "(2005)"


def _from_json_ld(
    data: Any, fallback_id: str | None, years: tuple[int | None, int | None] | None
) -> TitlePage | None:
    for obj in _ld_candidates(data):
        ld_type = obj.get("@type")
        types = ld_type if isinstance(ld_type, list) else [ld_type]
        kind, is_series = next(
            (_LD_TYPES[t] for t in types if isinstance(t, str) and t in _LD_TYPES), (None, None)
        )
        m = ID_RE.search(as_str(obj.get("url")) or "")
        series_id = m.group(1) if m else fallback_id
        if series_id is None:
            continue
        original = _unescape(obj.get("name"))
        image = obj.get("image")
        if isinstance(image, Mapping):
            image = image.get("url")
        genre = obj.get("genre")
        genres = [genre] if isinstance(genre, str) else genre if isinstance(genre, list) else []
        rating = as_float(get(obj, "aggregateRating", "ratingValue"))
        raw_votes = get(obj, "aggregateRating", "ratingCount")
        votes = parse_votes(raw_votes) if isinstance(raw_votes, str) else as_int(raw_votes)
        start, end = years if years is not None else (None, None)
        return TitlePage(
            series_id=series_id,
            title=_unescape(obj.get("alternateName")) or original,
            original_title=original,
            kind=kind,
            is_series=is_series,
            start_year=start,
            end_year=end if is_series is not False else None,
            is_adult=None,
            genres=dedupe([_unescape(g) for g in genres]),
            countries=(),
            languages=(),
            rating=rating,
            num_votes=votes if rating is not None else None,
            image_url=as_str(image),
            parent_id=None,
            parsed_from="json_ld",
        )
    return None


def _page_id(tree: LexborHTMLParser) -> str | None:
    meta = tree.css_first('meta[property="imdb:pageConst"]')
    content = (meta.attributes.get("content") or "") if meta is not None else ""
    if TCONST_RE.match(content):
        return content
    link = tree.css_first('link[rel="canonical"]')
    m = ID_RE.search((link.attributes.get("href") or "") if link is not None else "")
    return m.group(1) if m else None


def parse_title_page(html_bytes: bytes) -> TitlePage | None:
    """Parse a title page: ``__NEXT_DATA__`` first, JSON-LD as the fallback.

    Returns:
        A `TitlePage` (see the module docstring for what each source gives); None when
        neither source is usable.
    """
    tree = parse_html(html_bytes)
    if tree is None:
        return None
    try:
        parsed = _from_next_data(next_data(tree))
        if parsed is not None:
            return parsed
        scripts = tree.css('script[type="application/ld+json"]')
        if not scripts:
            return None
        fallback_id, years = _page_id(tree), release_years(tree)
        for script in scripts:
            parsed = _from_json_ld(loads(node_text(script)), fallback_id, years)
            if parsed is not None:
                return parsed
    except Exception:  # never raise on hostile markup
        return None
    return None
