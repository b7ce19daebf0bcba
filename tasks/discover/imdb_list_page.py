"""IMDb list pages (advanced search, find): their results, from ``__NEXT_DATA__`` or the HTML.

Both pages carry their results twice. ``__NEXT_DATA__`` holds them exactly (vote counts to the
vote, the titleType id, the original title): advanced search under
``props.pageProps.searchResults.titleResults.titleListItems[]``, find under
``props.pageProps.titleResults.results[]``, where each result is the item itself or wraps it
(``{"index": ..., "listItem": {...}}``). An item is ``{titleId, titleText, originalTitleText,
releaseYear{year, endYear}, titleType{id, text}, ratingsSummary{aggregateRating, voteCount}}``;
text values are plain strings or ``{"text": ...}`` and the ratings key is also spelled
``ratingSummary``. The parser does not hard-code one path: it takes the longest array in the
JSON whose objects (or their direct children) carry a ``titleId`` and a ``titleText``.

Without such an array the HTML is read by its structure, whatever the class prefix: every
``li.ipc-metadata-list-summary-item`` that links a title; the title in ``.ipc-title__text``
after its rank (``dli-`` and ``cli-`` pages) or ``a.ipc-metadata-list-summary-item__t`` (older
pages and find pages, no rank); the
years in a ``*-title-metadata-item`` (``dli-``/``cli-``) or ``…__li`` (older) element; the type
label in a ``*-title-type-data`` element (older pages have none of their own, so it is None);
the rating and vote count in the ``ipc-rating-star`` component. The HTML abbreviates vote
counts ("646K"), so they are the page's rounded figures.

Words of a UI language are never read, so English and localized (``/de/``) pages parse alike.
The parser never raises: bad items are skipped, missing values are None.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from selectolax.lexbor import LexborHTMLParser, LexborNode

from tv100.tasks.discover.imdb_markup import (
    ID_RE,
    TCONST_RE,
    as_float,
    as_int,
    as_str,
    get,
    next_data,
    node_text,
    parse_html,
    parse_rating,
    parse_votes,
    parse_years,
    text_of,
    votes_of,
)

_RANK_RE = re.compile(r"^\s*\d+\.\s+")
_LINK_SEL = "a.ipc-title-link-wrapper[href], a.ipc-metadata-list-summary-item__t[href]"
_HEADING_SEL = ".ipc-title__text, a.ipc-title-link-wrapper"
_OLDER_TITLE_SEL = "a.ipc-metadata-list-summary-item__t"
_YEARS_SEL = '[class*="title-metadata-item"], .ipc-metadata-list-summary-item__li'
_TYPE_SEL = '[class*="title-type-data"]'
#: ``__NEXT_DATA__`` "page" values of the pages this module reads.
LIST_PAGES = frozenset({"/search/title", "/find"})
#: Nodes of a ``__NEXT_DATA__`` tree visited at most, looking for the results.
_MAX_NODES = 1_000_000


@dataclass(frozen=True)
class ListedTitle:
    """One result of a list page; None where the page does not say.

    Attributes:
        series_id: the IMDb id (``tt`` + 7-9 digits).
        title: the (possibly localized) title; from HTML, the rank prefix ``12. `` stripped once.
        original_title: the original title (``__NEXT_DATA__`` only).
        kind: IMDb titleType id such as ``tvSeries`` (``__NEXT_DATA__`` only).
        rank: the rank shown before the title (HTML only).
        start_year: first year.
        end_year: last year; None when ongoing (HTML: start_year for a single-year label).
        rating: the IMDb rating (0-10).
        num_votes: the vote count (exact from ``__NEXT_DATA__``, the page's rounding from HTML).
        type_label: the raw type text (locale-dependent), e.g. "TV Series".
        parsed_from: ``next_data`` or ``html``.
    """

    series_id: str
    title: str | None
    original_title: str | None
    kind: str | None
    rank: int | None
    start_year: int | None
    end_year: int | None
    rating: float | None
    num_votes: int | None
    type_label: str | None
    parsed_from: Literal["next_data", "html"]

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


# -- __NEXT_DATA__ -----------------------------------------------------------------------------


def _is_item(obj: Mapping[str, Any]) -> bool:
    sid = obj.get("titleId")
    return isinstance(sid, str) and TCONST_RE.match(sid) is not None and "titleText" in obj


def _item_of(element: Any) -> Mapping[str, Any] | None:
    """The result object of one array element: the element, or one of its direct children."""
    if not isinstance(element, Mapping):
        return None
    if _is_item(element):
        return element
    for child in element.values():
        if isinstance(child, Mapping) and _is_item(child):
            return child
    return None


def _arrays(data: Any) -> Iterator[list[Any]]:
    """Every JSON array in `data`, outer ones first (iterative: no recursion limit)."""
    stack = [data]
    visited = 0
    while stack and visited < _MAX_NODES:
        node = stack.pop()
        visited += 1
        if isinstance(node, list):
            yield node
            stack.extend(reversed(node))
        elif isinstance(node, Mapping):
            stack.extend(reversed(list(node.values())))


def result_items(data: Any) -> list[Mapping[str, Any]] | None:
    """The result objects of a list page's ``__NEXT_DATA__``; None when it holds no results.

    The longest array whose elements carry titles wins (the first one on a tie).
    """
    best: list[Mapping[str, Any]] | None = None
    for array in _arrays(data):
        items = [item for item in map(_item_of, array) if item is not None]
        if items and (best is None or len(items) > len(best)):
            best = items
    return best


def _from_next_data_item(item: Mapping[str, Any]) -> ListedTitle:
    summary = item.get("ratingsSummary")
    if not isinstance(summary, Mapping):
        summary = item.get("ratingSummary")
    rating = as_float(get(summary, "aggregateRating"))
    start = as_int(get(item, "releaseYear", "year"))
    return ListedTitle(
        series_id=item["titleId"],
        title=text_of(item.get("titleText")),
        original_title=text_of(item.get("originalTitleText")),
        kind=as_str(get(item, "titleType", "id")),
        rank=None,
        start_year=start,
        end_year=as_int(get(item, "releaseYear", "endYear")) if start is not None else None,
        rating=rating if rating is None or 0.0 <= rating <= 10.0 else None,
        num_votes=votes_of(rating, get(summary, "voteCount")),
        type_label=text_of(item.get("titleType")),
        parsed_from="next_data",
    )


# -- HTML --------------------------------------------------------------------------------------


def _title_id(li: LexborNode) -> str | None:
    for link in (li.css_first(_LINK_SEL), *li.css("a[href]")):
        if link is None:
            continue
        m = ID_RE.search(link.attributes.get("href") or "")
        if m is not None:
            return m.group(1)
    return None


def _rating(li: LexborNode) -> float | None:
    node = li.css_first(".ipc-rating-star--rating")
    if node is not None:
        return parse_rating(node_text(node))
    star = li.css_first(".ipc-rating-star--imdb")  # older markup: the value is a text child
    return parse_rating(star.text(deep=False)) if star is not None else None


def _from_html_item(li: LexborNode) -> ListedTitle | None:
    series_id = _title_id(li)
    if series_id is None:
        return None
    heading = li.css_first(_HEADING_SEL)
    if heading is not None:  # "12. Title": the rank, then the title
        raw_title = node_text(heading).strip()
        rank_m = _RANK_RE.match(raw_title)
        rank = int(raw_title[: rank_m.end()].strip().rstrip(".")) if rank_m else None
        title = raw_title[rank_m.end() :].strip() if rank_m else raw_title
    else:  # older markup: the title alone
        rank, title = None, node_text(li.css_first(_OLDER_TITLE_SEL)).strip()
    years = next(
        (y for y in (parse_years(node_text(n)) for n in li.css(_YEARS_SEL)) if y is not None),
        (None, None),
    )
    votes_node = li.css_first(".ipc-rating-star--voteCount")
    return ListedTitle(
        series_id=series_id,
        title=title or None,
        original_title=None,
        kind=None,
        rank=rank,
        start_year=years[0],
        end_year=years[1],
        rating=_rating(li),
        num_votes=parse_votes(node_text(votes_node)) if votes_node is not None else None,
        type_label=node_text(li.css_first(_TYPE_SEL)).strip() or None,
        parsed_from="html",
    )


def _from_html(tree: LexborHTMLParser) -> list[ListedTitle]:
    out: list[ListedTitle] = []
    for li in tree.css("li.ipc-metadata-list-summary-item"):
        try:
            item = _from_html_item(li)
        except Exception:  # one hostile item never costs the others
            item = None
        if item is not None:
            out.append(item)
    return out


def parse_list_page(html_bytes: bytes) -> list[ListedTitle]:
    """Parse an advanced-search or find page: ``__NEXT_DATA__`` results first, else the HTML.

    Returns:
        The results in page order; empty for a page without results or an unparsable one.
    """
    tree = parse_html(html_bytes)
    if tree is None:
        return []
    try:
        items = result_items(next_data(tree))
        if items:
            return [_from_next_data_item(item) for item in items]
        return _from_html(tree)
    except Exception:  # never raise on hostile markup
        return []


def is_list_page(tree: LexborHTMLParser) -> bool:
    """Whether a page is an advanced-search or find page, with results or without.

    By structure: the ``page`` of its ``__NEXT_DATA__``, its canonical URL, or the
    advanced search's ``ul.detailed-list-view``.
    """
    page = get(next_data(tree), "page")
    if isinstance(page, str) and page.rstrip("/") in LIST_PAGES:
        return True
    link = tree.css_first('link[rel="canonical"]')
    href = (link.attributes.get("href") or "") if link is not None else ""
    path = re.sub(r"^[a-z]+://[^/]+", "", href)
    path = re.sub(r"^/[a-z]{2}(?:-[a-z]{2})?/", "/", path)
    if path.startswith(("/search/title", "/find")):
        return True
    return tree.css_first("ul.ipc-metadata-list.detailed-list-view") is not None
