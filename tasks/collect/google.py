"""Google Images: the result-page parser and the engine.

Markup (as served in 2023-2024, and by the offline stand-in):
``/search?q=…&tbm=isch&start=N`` has ``AF_initDataCallback({key: …, data: […]})``
scripts (a JS object literal, not JSON) that hold one entry per result where a thumbnail
triple ``["https://encrypted-tbn0.gstatic.com/images?q\\u003dtbn:…", H, W]`` is followed
by the full-size triple ``["https://real/full.jpg", H, W]`` and, later in the same entry,
``{"2003": [null, id, page_url, title, …]}``. A truncated data block is scanned entry by
entry; the older ``/imgres?imgurl=…&imgrefurl=…&w=…&h=…`` links are a fallback.
Without JavaScript Google serves its basic-HTML layout instead: thumbnails and source pages
only (`tv100.tasks.collect.google_basic`, hits flagged ``thumbnail_only``).

Page classes (`tv100.tasks.collect.pages`): ``results`` when any of these layouts lists an
entry; ``no_results`` on "Your search - … - did not match any image results/documents";
``blocked`` on the unusual-traffic captcha (``/sorry/index``), the "enable JavaScript" bot
check (``/httpservice/retry/enablejs``) or the consent wall (``consent.google.com``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from selectolax.lexbor import LexborHTMLParser

from tv100.tasks.collect.engine import (
    ResultPage,
    SearchEngine,
    SearchHit,
    decode_page,
    img_alt,
    img_src,
    json_string,
    make_hit,
    parse_html,
    quote_query,
    unique_hits,
)
from tv100.tasks.collect.google_basic import basic_hits
from tv100.tasks.collect.pages import marker, page_verdict
from tv100.tasks.web.urls import absolute_url, query_params

_AF_START = "AF_initDataCallback("
_AF_DATA = re.compile(r"[{,]\s*data\s*:\s*")
_JSON_STR = r'"((?:[^"\\]|\\.)*)"'
_TRIPLE_PAIR = re.compile(
    r"\[\s*" + _JSON_STR + r"\s*,\s*(\d+)\s*,\s*(\d+)\s*\]\s*,\s*"
    r"\[\s*" + _JSON_STR + r"\s*,\s*(\d+)\s*,\s*(\d+)\s*\]"
)
_INFO_2003 = re.compile(
    r'"2003"\s*:\s*\[\s*null\s*,\s*(?:'
    + _JSON_STR
    + r"|null)\s*,\s*"
    + _JSON_STR
    + r"\s*,\s*"
    + _JSON_STR
)
_NO_RESULTS = re.compile(
    r"did not match any (?:image results|images|documents)|No results found for|"
    r"Your search did not match any",
    re.I,
)
MARKERS = (
    marker("captcha", "Google's unusual-traffic page (/sorry/index)",
           r"/sorry/index|unusual traffic from your computer network|id=[\"']?captcha-form"),
    marker("JavaScript challenge", "Google's enable-JavaScript page (/httpservice/retry/enablejs)",
           r"/httpservice/retry/enablejs"),
    marker("consent wall", "Google's consent page (consent.google.com)",
           r"consent\.google\.com/(?:ml|save|dl)\b|Before you continue to Google"),
)
"""Google's own challenge pages."""


def _af_blocks(text: str) -> list[str]:
    """The text of each ``AF_initDataCallback(…)`` call (to its script's end)."""
    blocks: list[str] = []
    start = text.find(_AF_START)
    while start != -1:
        body_start = start + len(_AF_START)
        end = len(text)
        for stop in (text.find(_AF_START, body_start), text.find("</script", body_start)):
            if stop != -1:
                end = min(end, stop)
        blocks.append(text[body_start:end])
        start = text.find(_AF_START, body_start)
    return blocks


def _af_data(block: str) -> Any:
    """The `data:` value of one callback as Python, or None if it cannot be decoded."""
    match = _AF_DATA.search(block)
    if match is None:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(block, match.end())
    except (ValueError, RecursionError):
        return None
    return value


def _triple(value: Any) -> tuple[str, int, int] | None:
    """``[url, height, width]`` with an http(s) URL, else None."""
    if (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and isinstance(value[2], int)
        and absolute_url(value[0]) is not None
    ):
        return value[0], value[1], value[2]
    return None


def _entry_info(items: Sequence[Any], exclude: set[str]) -> tuple[str | None, str | None]:
    """(page_url, title) from the result entry's ``{"2003": [null, id, page, title, …]}``."""
    fallback: tuple[str | None, str | None] = (None, None)
    for item in items:
        if not isinstance(item, dict):
            continue
        for key, value in item.items():
            if not isinstance(value, list):
                continue
            if key == "2003" and len(value) > 3 and absolute_url(value[2]) is not None:
                return value[2], value[3] if isinstance(value[3], str) else None
            if fallback == (None, None):
                for i, v in enumerate(value[:-1]):
                    if (
                        absolute_url(v) is not None
                        and v not in exclude
                        and isinstance(value[i + 1], str)
                    ):
                        fallback = (v, value[i + 1])
                        break
    return fallback


def _walk(data: Any) -> list[SearchHit | None]:
    """Result entries of a decoded data block, in document order."""
    hits: list[SearchHit | None] = []
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(reversed(list(node.values())))
            continue
        if not isinstance(node, list):
            continue
        entry: tuple[int, tuple[str, int, int], tuple[str, int, int]] | None = None
        for i in range(len(node) - 1):
            thumb, full = _triple(node[i]), _triple(node[i + 1])
            if thumb is not None and full is not None:
                entry = (i, thumb, full)
                break
        if entry is None:
            stack.extend(reversed(node))
            continue
        i, thumb, full = entry
        page, title = _entry_info(node[i + 2 :], {thumb[0], full[0]})
        hits.append(make_hit(full[0], thumb[0], page, title, full[2], full[1]))
    return hits


def _scan(block: str) -> list[SearchHit | None]:
    """Entry-by-entry scan of a data block that is not decodable (e.g. truncated)."""
    hits: list[SearchHit | None] = []
    matches = list(_TRIPLE_PAIR.finditer(block))
    for n, match in enumerate(matches):
        end = matches[n + 1].start() if n + 1 < len(matches) else len(block)
        info = _INFO_2003.search(block, match.end(), end)
        page = json_string(info.group(2)) if info else None
        title = json_string(info.group(3)) if info else None
        hits.append(
            make_hit(
                json_string(match.group(4)),
                json_string(match.group(1)),
                page,
                title,
                int(match.group(6)),
                int(match.group(5)),
            )
        )
    return hits


def _imgres(tree: LexborHTMLParser) -> list[SearchHit | None]:
    """The older ``/imgres?imgurl=…&imgrefurl=…&w=…&h=…`` result links."""
    hits: list[SearchHit | None] = []
    for anchor in tree.css("a"):
        href = anchor.attributes.get("href") or ""
        if "imgres?" not in href:
            continue
        params = query_params(href)
        hits.append(
            make_hit(
                params.get("imgurl"),
                img_src(anchor),
                params.get("imgrefurl"),
                img_alt(anchor) or params.get("title"),
                params.get("w"),
                params.get("h"),
            )
        )
    return hits


def read_google(content: bytes) -> ResultPage:
    """Hits and page class of a Google Images result page (pure; never raises).

    Reads the ``AF_initDataCallback`` data blocks (decoded when complete, scanned entry by
    entry when not) and the older ``imgres?imgurl=`` links; on a page with neither, the
    basic-HTML layout's thumbnail links (next to ``imgres`` results a thumbnail behind
    ``/url?q=`` is a web result, not an image result).

    Args:
        content: the page as served.

    Returns:
        The `ResultPage` (no `next`: Google pages by offset).
    """
    text = decode_page(content)
    entries: list[SearchHit | None] = []
    for block in _af_blocks(text):
        data = _af_data(block)
        entries.extend(_walk(data) if data is not None else _scan(block))
    with_imgres = "imgres?" in text
    if with_imgres or (not entries and "/url?" in text):
        tree = parse_html(text)
        if tree is not None:
            if with_imgres:
                entries.extend(_imgres(tree))
            if not any(entries):  # the basic layout: its /url?q= thumbnails are the results
                entries.extend(basic_hits(tree))
    found = any(entry is not None for entry in entries)
    verdict = page_verdict(
        has_results=found,
        no_results=not found and bool(_NO_RESULTS.search(text)),
        text=text,
        markers=MARKERS,
        expected="Google image results (AF_initDataCallback data, imgres links or "
        "basic-HTML thumbnails) or no-results message",
    )
    return ResultPage(unique_hits(entries), None, *verdict)


def parse_google(content: bytes) -> list[SearchHit]:
    """Hits of a Google Images result page, in page order, one per image URL (see
    `read_google`); [] for anything unreadable."""
    return read_google(content).hits


class GoogleEngine(SearchEngine):
    """Google Images: ``/search?q=…&tbm=isch&start=N`` (0-based), ``num=`` sets the size."""

    name = "google"
    default_base_url = "https://www.google.com"
    default_page_size = 100

    def read_page(self, content: bytes) -> ResultPage:
        return read_google(content)

    def page_url(
        self, base_url: str, query: str, offset: int, page_size: int | None, state: Any
    ) -> str:
        params: dict[str, Any] = {"q": query, "tbm": "isch", "hl": "en"}
        if offset:
            params["start"] = offset
        if page_size is not None:
            params["num"] = page_size
        return f"{base_url}/search?{quote_query(params)}"
