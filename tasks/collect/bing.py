"""Bing Images: the result-page parser and the engine.

Markup (as served in 2023-2024, and by the offline stand-in):
``/images/search?q=…&first=N&count=K`` lists result tiles ``<a class="iusc" m="…">``
whose `m` attribute is HTML-escaped JSON with ``murl`` (image), ``turl`` (thumbnail),
``purl`` (page) and ``t`` (title, query terms wrapped in U+E000/U+E001). The tile's
``href`` (``/images/search?view=detailV2&…&mediaurl=…&expw=W&exph=H``) is a second route
to the image URL and the only one to its size; any other ``mediaurl=`` link counts too.

Page classes (`tv100.tasks.collect.pages`): ``results`` when tiles or ``mediaurl=`` links are
there; ``no_results`` on Bing's "There are no results for …" block (``#b_no_results``,
``.b_no``); ``blocked`` on its captcha ("One last step", ``/turing/captcha/challenge``) or its
cookie-consent interstitial (``#bnp_container`` with no results behind it).
"""

from __future__ import annotations

import json
import re
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode

from tv100.tasks.collect.engine import (
    ResultPage,
    SearchEngine,
    SearchHit,
    clean_text,
    decode_page,
    img_alt,
    img_src,
    json_string,
    make_hit,
    parse_html,
    pixel_size,
    quote_query,
    unique_hits,
)
from tv100.tasks.collect.pages import marker, page_verdict
from tv100.tasks.web.urls import absolute_url, query_params

_JSONISH_FIELD = re.compile(
    r"""(?<![\w$])(?P<kq>["']?)(?P<key>murl|turl|purl|t)(?P=kq)\s*:\s*"""
    r"""(?P<q>["'])(?P<value>(?:\\.|(?!(?P=q)).)*)(?P=q)""",
    re.S,
)
_SIZE_TEXT = re.compile(r"(\d{1,6})\s*[×xX]\s*(\d{1,6})")
_NO_RESULTS_TEXT = re.compile(
    r"There are no results for|We didn.t find any results for|No results found for", re.I
)
MARKERS = (
    marker("captcha", "Bing's captcha (/turing/captcha/challenge)", r"/turing/captcha/"),
    marker("captcha", 'Bing\'s "One last step" challenge',
           r"One last step\s*</|solve the challenge below to continue"),
    marker("consent wall", "Bing's cookie consent interstitial (#bnp_container)",
           r"id=[\"']?bnp_(?:container|cookie_banner|btn_accept)\b"),
)
"""Bing's own challenge pages."""


def _tile_fields(m: str | None) -> dict[str, Any]:
    """The `m` attribute's fields: JSON when it is JSON, else a key-by-key scan."""
    if not m:
        return {}
    try:
        data = json.loads(m)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        return data
    fields: dict[str, Any] = {}
    for match in _JSONISH_FIELD.finditer(m):
        key = match.group("key")
        if key in fields:
            continue
        raw = match.group("value")
        if match.group("q") == "'":
            raw = raw.replace("\\'", "'").replace('"', '\\"')
        fields[key] = json_string(raw) or raw
    return fields


def _size_caption(anchor: LexborNode) -> tuple[int | None, int | None]:
    """The "1920 × 1080 · jpeg" caption of the tile holding `anchor`, if any."""
    node: LexborNode | None = anchor
    for _ in range(6):
        node = node.parent if node is not None else None
        if node is None:
            return None, None
        if node.tag == "li" or "iuscp" in (node.attributes.get("class") or "").split():
            break
    if node is None:
        return None, None
    for info in node.css(".img_info span, .img_info"):
        match = _SIZE_TEXT.search(info.text(deep=True) or "")
        if match:
            return int(match.group(1)), int(match.group(2))
    return None, None


def _tiles(tree: LexborHTMLParser) -> list[SearchHit | None]:
    """One entry per result tile or ``mediaurl=`` link (None where it holds no valid image).

    The page has results when one entry is valid: tiles without a valid image are a layout
    the parser does not understand (or a page that is not Bing's), not results.
    """
    hits: list[SearchHit | None] = []
    for anchor in tree.css("a"):
        attrs = anchor.attributes
        classes = (attrs.get("class") or "").split()
        href = attrs.get("href") or ""
        if "iusc" not in classes and "mediaurl=" not in href.lower():
            continue
        params = {k.lower(): v for k, v in query_params(href).items()}
        width, height = pixel_size(params.get("expw")), pixel_size(params.get("exph"))
        if "iusc" in classes:
            m = _tile_fields(attrs.get("m"))
            if width is None or height is None:
                width, height = _size_caption(anchor)
            hits.append(
                make_hit(
                    absolute_url(m.get("murl")) or params.get("mediaurl"),
                    absolute_url(m.get("turl")) or img_src(anchor),
                    m.get("purl"),
                    clean_text(m.get("t")) or img_alt(anchor),
                    width,
                    height,
                )
            )
        else:
            hits.append(
                make_hit(
                    params.get("mediaurl"),
                    img_src(anchor),
                    None,
                    img_alt(anchor),
                    width,
                    height,
                )
            )
    return hits


def _no_results(tree: LexborHTMLParser) -> bool:
    """Bing's explicit no-results block, or its message."""
    block = tree.css_first("#b_no_results, .b_no")
    if block is not None:
        return True
    body = tree.body
    return body is not None and bool(_NO_RESULTS_TEXT.search(body.text(deep=True) or ""))


def read_bing(content: bytes) -> ResultPage:
    """Hits and page class of a Bing Images result page (pure; never raises).

    Args:
        content: the page as served.

    Returns:
        The `ResultPage` (no `next`: Bing pages by offset).
    """
    text = decode_page(content)
    tree = parse_html(text)
    tiles = _tiles(tree) if tree is not None else []
    found = any(hit is not None for hit in tiles)
    verdict = page_verdict(
        has_results=found,
        no_results=not found and tree is not None and _no_results(tree),
        text=text,
        markers=MARKERS,
        expected="Bing image tiles (a.iusc), detail links (mediaurl=) or no-results block",
    )
    return ResultPage(unique_hits(tiles), None, *verdict)


def parse_bing(content: bytes) -> list[SearchHit]:
    """Hits of a Bing Images result page (``/images/search`` or ``/images/async``).

    Reads every ``a.iusc`` tile's `m` JSON (single-quoted or otherwise broken `m` is scanned
    key by key), falling back to the tile's ``mediaurl=`` link, and every other ``mediaurl=``
    link. Sizes come from the detail link's ``expw``/``exph`` or the tile's size caption.

    Args:
        content: the page as served.

    Returns:
        Valid hits in page order, one per image URL; [] for anything unreadable.
    """
    return read_bing(content).hits


class BingEngine(SearchEngine):
    """Bing Images: ``/images/search?q=…&first=N`` (1-based), ``count=`` sets the page size."""

    name = "bing"
    default_base_url = "https://www.bing.com"
    default_page_size = 35

    def read_page(self, content: bytes) -> ResultPage:
        return read_bing(content)

    def page_url(
        self, base_url: str, query: str, offset: int, page_size: int | None, state: Any
    ) -> str:
        params: dict[str, Any] = {"q": query, "form": "HDRSC2", "first": offset + 1}
        if page_size is not None:
            params["count"] = page_size
        return f"{base_url}/images/search?{quote_query(params)}"
